"""fastembed-rt on Ray: batch inference with Ray Data, online serving with Ray Serve (the ``ray`` extra).

::

    driver                                             cluster
    ──────                                             ───────
    embed / sparse_encode / predict (``data``)         Ray Data actors, one model each (``data.BatchModel``)
      ship_artifact: a local artifact directory ─────► local_artifact: used in place, or fetched from the
      goes through the object store (``worker``)         object store and checked by its checksums
    serve.build_app(ServerConfig) (``serve``) ───────► Ray Serve replicas, each the ``fastembed-rt serve``
                                                         ASGI app (same routes, handlers and limits)

``fastembed_rt.ray.serve`` also needs the ``server`` extra and is imported on its own.
"""

from __future__ import annotations

import warnings

try:
    import ray.data
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        f"fastembed_rt.ray needs the ray extra ({_exc.name or _exc}): pip install 'fastembed-rt[ray]'"
    ) from _exc

with warnings.catch_warnings():
    # Ray 2.60's DataContext() warns that its own deprecated fields (use_push_based_shuffle, use_polars) are
    # deprecated while it sets their defaults: create it here, once, so no user of ours sees that warning.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")
    ray.data.DataContext.get_current()

from fastembed_rt.ray.data import DEFAULT_BATCH_SIZE, MapOptions, embed, predict, sparse_encode
from fastembed_rt.ray.worker import ShippedArtifact, assigned_cpus, local_artifact, ship_artifact

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MapOptions",
    "ShippedArtifact",
    "assigned_cpus",
    "embed",
    "local_artifact",
    "predict",
    "ship_artifact",
    "sparse_encode",
]
