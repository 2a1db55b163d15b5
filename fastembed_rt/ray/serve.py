"""Online serving with Ray Serve: replicas of the very ASGI app ``fastembed-rt serve`` runs.

::

    client ─HTTP─► Ray Serve proxy (127.0.0.1 unless told otherwise)
                     │ at most max_queued_requests waiting per proxy: past it 429 + Retry-After
                     │ (Ray Serve's own backpressure, ``backpressure_status``), never a hang
                     ▼
                   replica × num_replicas, each on cpus_per_replica CPUs: the server's Starlette app
                     (``fastembed_rt.server.create_app``: same routes, handlers, limits, metrics) with
                     models loaded before the replica reports ready, ONNX Runtime threads = its CPUs;
                     at most max_ongoing_requests requests inside, and the app's own admission
                     (max_concurrent_requests input items: 429 + Retry-After past it)

Needs the ``ray`` and ``server`` extras. Local artifact directories reach replicas on other nodes
through the object store, as for Ray Data (``fastembed_rt.ray.worker``). The process that built the
application owns that copy: a replica started on a node without the directory after that process has
exited cannot fetch it; serve a hub id, or a directory every node sees, for long-lived deployments.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from fastembed_rt.errors import InputError
from fastembed_rt.ray.worker import ShippedArtifact, assigned_cpus, local_artifact, ship_artifact
from fastembed_rt.server.app import create_app
from fastembed_rt.server.config import ServedModel, ServerConfig
from fastembed_rt.server.state import ServerState, serving_variant

with warnings.catch_warnings():
    # Ray Serve 2.60's config models pass pydantic's deprecated extra keywords to Field when imported.
    warnings.filterwarnings("ignore", "Using extra keyword arguments on `Field`", DeprecationWarning)
    from ray import serve
    from ray.serve.config import BackpressureConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ServeOptions", "ServerReplica", "build_app", "run"]


class ServeOptions(TypedDict, total=False):
    """How the deployment is sized and protected.

    ``num_replicas``: replicas (default 1), or ``"auto"`` for Ray Serve's autoscaling.
    ``cpus_per_replica``: CPUs reserved per replica (default 1), and so its ONNX Runtime threads.
    ``max_ongoing_requests``: requests one replica holds at once (default 64: enough to batch across
    requests). ``max_queued_requests``: requests each proxy keeps waiting for a replica (default 128);
    past it the request gets ``backpressure_status`` (429, or 503) with ``Retry-After:
    retry_after_s`` (default 1). ``name``: the deployment's name (default ``"fastembed-rt"``).
    """

    num_replicas: int | str
    cpus_per_replica: int
    max_ongoing_requests: int
    max_queued_requests: int
    backpressure_status: Literal[429, 503]
    retry_after_s: float
    name: str


class ServerReplica:
    """One replica: the models of ``config`` opened from the shipped artifacts, threads from the CPUs Ray
    reserved for it, loaded before the replica reports ready; Ray Serve mounts the server's ASGI app."""

    def __init__(self, config: ServerConfig, artifacts: tuple[ShippedArtifact, ...]) -> None:
        models = tuple(
            replace(m, artifact=local_artifact(a), variant=a.variant or m.variant)
            for m, a in zip(config.models, artifacts)
        )
        self.config = replace(config, models=models, intra_op_threads=config.intra_op_threads or assigned_cpus())
        self.state = ServerState(self.config)
        self.state.load_models()

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.config, state=self.state)

    def check_health(self) -> None:
        """Ray Serve's health probe: a replica whose models failed to load is replaced."""
        if self.state.load_error is not None:
            raise RuntimeError(f"loading models failed: {self.state.load_error}")


def _variant(config: ServerConfig, model: ServedModel) -> str:
    """What the driver pins for ``model``: on the CPU, what a local server opens (``serving_variant``: packed under
    auto); with ``provider="auto"`` the workers' hardware decides, so auto stays auto and every variant ships."""
    variant = model.variant or config.variant
    return serving_variant(model.artifact, "cpu", variant, config.revision)[0] if config.provider == "cpu" else variant


def build_app(config: ServerConfig, **options: Unpack[ServeOptions]) -> serve.Application:
    """The Ray Serve application serving ``config``'s models with ``fastembed-rt serve``'s routes.

    Deploy it with ``serve.run(app, route_prefix="/")`` (or ``run`` below, which binds the proxy to
    127.0.0.1). ``config.intra_op_threads`` None (default): each replica's CPUs.

    Raises:
        ValueError / InputError: a setting that cannot work, before anything is deployed.
    """
    problems = config.check()
    if problems:
        raise ValueError("; ".join(problems))
    unknown = sorted(set(options) - ServeOptions.__optional_keys__)
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(ServeOptions.__optional_keys__))}")
    cpus = options.get("cpus_per_replica", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise InputError(f"cpus_per_replica must be a positive int, got {cpus!r}")
    status = options.get("backpressure_status", 429)
    if status not in (429, 503):
        raise InputError(f"backpressure_status must be 429 or 503, got {status!r}")
    artifacts = tuple(
        ship_artifact(m.artifact, provider=config.provider, variant=_variant(config, m)) for m in config.models
    )
    deployment = serve.deployment(
        name=options.get("name", "fastembed-rt"),
        num_replicas=options.get("num_replicas", 1),
        max_ongoing_requests=options.get("max_ongoing_requests", 64),
        max_queued_requests=options.get("max_queued_requests", 128),
        backpressure_config=BackpressureConfig(status_code=status, retry_after_s=options.get("retry_after_s", 1.0)),
        ray_actor_options={"num_cpus": cpus},
    )(serve.ingress()(ServerReplica))
    return deployment.bind(config, artifacts)


def run(
    config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, **options: Unpack[ServeOptions]
) -> serve.handle.DeploymentHandle:
    """Start Ray Serve's proxy on ``host:port`` (loopback by default) and deploy ``build_app(config)`` at ``/``;
    returns when every replica has loaded its models."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(config, **options), name=options.get("name", "fastembed-rt"), route_prefix="/")
