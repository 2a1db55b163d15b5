"""Routes of an inference-free SPLADE artifact: a query side that is a weight lookup, a document side that is the graph.

sentence-transformers 5 builds such models with a ``Router``: queries go through ``SparseStaticEmbedding`` (each
distinct token of the query, tokenized without special tokens, gets its stored weight, e.g. an IDF), documents
through the masked LM and ``SpladePooling``. The export keeps the query route as one float32 ``[vocab]`` array
(``.npy``) beside the graph and names the routes in the manifest's ``stages["router"]``::

    {"default_route": "document",
     "routes": {"query": {"module": "SparseStaticEmbedding", "file": "query_weights.npy", "sha256": "...",
                          "max_length": 512},
                "document": {"module": "graph"}}}

A lookup per token needs no engine: numpy does it in the calling process, microseconds per query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import ArtifactError, InputError

__all__ = ["GRAPH_ROUTE", "ROUTER_STAGE", "STATIC_MODULE", "Router", "StaticRoute", "static_rows"]

ROUTER_STAGE = "router"
GRAPH_ROUTE = "graph"  # the ``module`` of the route the artifact's graph runs
STATIC_MODULE = "SparseStaticEmbedding"
_EXPORT_HINT = "re-create it with `fastembed-rt export MODEL OUT_DIR`"


@dataclass(frozen=True)
class StaticRoute:
    """A route that is a weight per token: ``file`` holds float32 ``[vocab]`` weights."""

    file: str
    sha256: str | None
    max_length: int | None  # tokens a text is cut at (the route's tokenizer's model_max_length); None: never cut

    def to_dict(self) -> dict[str, Any]:
        return {"module": STATIC_MODULE, "file": self.file, "sha256": self.sha256, "max_length": self.max_length}


@dataclass(frozen=True)
class Router:
    """The routes of a routed artifact, by name; ``static`` holds the lookup routes, the others run the graph."""

    default_route: str | None  # None: every call names its task (sentence-transformers raises without one)
    graph_routes: tuple[str, ...]
    static: Mapping[str, StaticRoute]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Router:
        """Read ``stages["router"]``; an ``ArtifactError`` naming ``where`` for anything else."""
        try:
            routes = data["routes"]
            static: dict[str, StaticRoute] = {}
            graph: list[str] = []
            for name, route in routes.items():
                if not isinstance(name, str) or not name:
                    raise ValueError(f"route name {name!r}")
                if route["module"] == GRAPH_ROUTE:
                    graph.append(name)
                elif route["module"] == STATIC_MODULE:
                    length = route.get("max_length")
                    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
                        raise ValueError(f"max_length {length!r}")
                    sha = route.get("sha256")
                    static[name] = StaticRoute(str(route["file"]), None if sha is None else str(sha), length)
                else:
                    raise ValueError(f"module {route['module']!r} (known: {GRAPH_ROUTE}, {STATIC_MODULE})")
            default = data["default_route"]
            if (default is not None and default not in routes) or not graph:
                raise ValueError(f"default_route {default!r} of routes {sorted(routes)}, one running the graph")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{where}: stages.router is not valid ({exc!r}); {_EXPORT_HINT}") from None
        return cls(None if default is None else str(default), tuple(graph), static)

    def to_dict(self) -> dict[str, Any]:
        routes: dict[str, Any] = {name: {"module": GRAPH_ROUTE} for name in self.graph_routes}
        routes |= {name: route.to_dict() for name, route in self.static.items()}
        return {"default_route": self.default_route, "routes": routes}

    @property
    def names(self) -> list[str]:
        return [*self.static, *self.graph_routes]

    def resolve(self, task: str | None) -> str:
        """The route ``task`` takes (None: the default), as sentence-transformers' ``Router`` looks a task up."""
        if task is None:
            if self.default_route is None:
                raise InputError(
                    f"this model has no default route: pass task= (its routes: {', '.join(map(repr, self.names))}), "
                    "or use encode_query / encode_document"
                )
            return self.default_route
        if task in self.static or task in self.graph_routes:
            return task
        raise InputError(f"no route for task {task!r}; this model's routes: {', '.join(map(repr, self.names))}")


def load_weights(root: Path, route: StaticRoute, vocab_size: int, *, full: bool) -> np.ndarray:
    """The route's float32 ``[vocab_size]`` weights, checked (shape, dtype, finite; sha256 when ``full``)."""
    from fastembed_rt.artifact import check_readable, file_sha256

    path = root / route.file
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: the artifact's query route weighs tokens with it; {_EXPORT_HINT}")
    check_readable(path, root)
    if full and route.sha256 is not None and file_sha256(path) != route.sha256:
        raise ArtifactError(f"{path} is not the file the artifact was exported with (sha256 differs); {_EXPORT_HINT}")
    try:
        weights = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a numpy weights file ({exc}); {_EXPORT_HINT}") from None
    if weights.dtype != np.float32 or weights.shape != (vocab_size,) or not np.isfinite(weights).all():
        raise ArtifactError(
            f"{path} must hold {vocab_size} finite float32 weights (one per token); it holds {weights.dtype} "
            f"{list(weights.shape)}; {_EXPORT_HINT}"
        )
    weights.setflags(write=False)
    return weights


def static_rows(ids: Sequence[np.ndarray], weights: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each row's distinct tokens with a non-zero weight (``SparseStaticEmbedding``: a token counts once), at most
    the ``k`` of largest absolute weight (sentence-transformers' ``select_max_active_dims``; equal ones: the lower
    token id); ascending token ids."""
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for row in ids:
        tokens = np.unique(row)
        found = weights[tokens]
        tokens, found = tokens[found != 0], found[found != 0]
        if tokens.size > k:
            keep = np.sort(np.lexsort((tokens, -np.abs(found)))[:k])
            tokens, found = tokens[keep], found[keep]
        indices.append(tokens.astype(np.int64))
        values.append(found.astype(np.float32))
    return indices, values


def routed_files(stages: Mapping[str, Any]) -> list[str]:
    """The files a manifest's router stage names (the lookup routes' weights), for the artifact's file list."""
    router = stages.get(ROUTER_STAGE)
    routes = router.get("routes") if isinstance(router, Mapping) else None
    if not isinstance(routes, Mapping):
        return []
    return [str(route["file"]) for route in routes.values() if isinstance(route, Mapping) and route.get("file")]
