"""Token pooling of multi-vector documents: fewer vectors per document, for a smaller index. Numpy only.

``HierarchicalTokenPooling`` is sentence-transformers 6's module of that name, with its semantics:

- the first ``num_protected_tokens`` vectors (the ``[CLS]``) are kept as they are;
- the other ``n`` vectors are clustered into ``k = max(floor(n / pool_factor), 1)`` clusters by Ward
  linkage on the cosine distance ``clip(1 - x·y, 0, 2)`` (computed in float32, linked in float64, as
  scipy's ``linkage(squareform(d), "ward")``), cut where ``k`` clusters remain (``fcluster``'s
  ``maxclust``), each cluster replaced by the float32 mean of its vectors; nothing is merged when
  ``k >= n``;
- clusters come in the order ``fcluster`` numbers them: a depth-first walk of the dendrogram from its
  root, inner children (lower-numbered first) before a node's leaf children;
- with ``normalize_embeddings`` every output vector is L2-normalized (``x / max(||x||, 1e-12)``).

Exact equal merge distances (ties) may be broken differently than scipy or fastcluster break them, as
those two also differ from each other.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastembed_rt.errors import InputError
from fastembed_rt.kernels.reference import normalize

__all__ = ["HierarchicalTokenPooling", "ward_clusters"]


def ward_clusters(distances: np.ndarray, clusters: int) -> np.ndarray:
    """Cluster label (0-based, ``fcluster`` order) of each of ``n`` points from a ``[n, n]`` distance matrix.

    Agglomerates the closest pair of clusters ``n - clusters`` times with the Lance–Williams update of
    Ward's method, ``d(k, i∪j) = sqrt(((n_i+n_k) d_ki² + (n_j+n_k) d_kj² − n_k d_ij²) / (n_i+n_j+n_k))``,
    then numbers the clusters by a depth-first walk of the full dendrogram.
    """
    n = len(distances)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    d = np.asarray(distances, dtype=np.float64).copy()
    np.fill_diagonal(d, np.inf)
    size = np.ones(n, dtype=np.float64)
    node = np.arange(n)  # the dendrogram node each active slot holds
    active = np.ones(n, dtype=bool)
    children: list[tuple[int, int]] = []
    for _ in range(n - 1):
        flat = int(np.argmin(d))
        i, j = divmod(flat, n)
        dij = d[i, j]
        others = active.copy()
        others[[i, j]] = False
        k = np.flatnonzero(others)
        total = size[i] + size[j] + size[k]
        merged = np.sqrt(
            np.maximum((size[i] + size[k]) * d[i, k] ** 2 + (size[j] + size[k]) * d[j, k] ** 2 - size[k] * dij**2, 0)
            / total
        )
        children.append((min(node[i], node[j]), max(node[i], node[j])))
        d[i, k] = d[k, i] = merged
        d[j, :] = d[:, j] = np.inf
        active[j] = False
        size[i] += size[j]
        node[i] = n + len(children) - 1
    labels = np.empty(n, dtype=np.int64)
    below_cut = n + (n - clusters)  # nodes made by the first n - clusters merges are whole clusters
    next_label = 0

    def leaves(top: int) -> list[int]:
        found, pending = [], [top]
        while pending:
            item = pending.pop()
            if item < n:
                found.append(item)
            else:
                pending.extend(children[item - n])
        return found

    # fcluster's walk: a node under the cut is one cluster, numbered on entry; above the cut, a node's
    # inner children are walked (lower-numbered first) before its leaf children get numbers of their own.
    stack: list[tuple[int, bool]] = [(2 * n - 2, False)]
    while stack:
        top, inner_done = stack.pop()
        if top < below_cut:
            labels[leaves(top)] = next_label
            next_label += 1
            continue
        pair = children[top - n]
        if not inner_done:
            stack.append((top, True))
            stack.extend((child, False) for child in reversed(pair) if child >= n)
            continue
        for child in pair:
            if child < n:
                labels[child] = next_label
                next_label += 1
    return labels


@dataclass(frozen=True)
class HierarchicalTokenPooling:
    """Ward clustering of each document's token vectors (sentence-transformers' ``HierarchicalTokenPooling``).

    Args:
        pool_factor: keep about ``1 / pool_factor`` of the tokens (>= 1; 1 merges nothing).
        num_protected_tokens: leading tokens never pooled (the ``[CLS]``).
        normalize_embeddings: L2-normalize every output vector.
        tasks: the encode tasks it applies to (``"document"``; no task counts as ``"document"``).
    """

    pool_factor: float = 1.0
    num_protected_tokens: int = 1
    normalize_embeddings: bool = True
    tasks: tuple[str, ...] = field(default=("document",))

    def __post_init__(self) -> None:
        factor = self.pool_factor
        # numpy numbers as Python's; NaN passed "< 1" and pooled nothing (sentence-transformers refuses it)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not (1 <= float(factor) < math.inf):
            raise InputError(f"pool_factor must be a finite number >= 1, got {factor!r}")
        object.__setattr__(
            self, "pool_factor", float(factor) if not isinstance(factor, numbers.Integral) else int(factor)
        )
        protected = self.num_protected_tokens
        if isinstance(protected, bool) or not isinstance(protected, numbers.Integral) or protected < 0:
            raise InputError(f"num_protected_tokens must be an int >= 0, got {protected!r}")
        object.__setattr__(self, "num_protected_tokens", int(protected))
        tasks = ("document",) if self.tasks is None else self.tasks  # sentence-transformers' default for None
        object.__setattr__(self, "tasks", (tasks,) if isinstance(tasks, str) else tuple(tasks))

    def applies_to(self, task: str | None) -> bool:
        """Whether inputs encoded for ``task`` are pooled (no task counts as ``"document"``)."""
        return (task or "document") in self.tasks

    def pool_one(self, embedding: np.ndarray) -> np.ndarray:
        """One ``[tokens, dim]`` matrix pooled to ``[kept, dim]`` float32."""
        x = np.asarray(embedding, dtype=np.float32)
        if self.pool_factor > 1:
            protected, rest = x[: self.num_protected_tokens], x[self.num_protected_tokens :]
            clusters = max(int(len(rest) // self.pool_factor), 1)
            if clusters < len(rest):
                distances = np.clip(np.float32(1) - rest @ rest.T, 0, 2)
                labels = ward_clusters(distances, clusters)
                found = labels.max() + 1
                sums = np.zeros((found, x.shape[1]), dtype=np.float32)
                np.add.at(sums, labels, rest)
                means = sums / np.bincount(labels, minlength=found).astype(np.float32)[:, None]
                x = np.concatenate([protected, means])
        return normalize(x) if self.normalize_embeddings else x

    def pool(self, embeddings: Sequence[np.ndarray], *, task: str | None = None) -> list[np.ndarray]:
        """Each matrix pooled (or all returned unchanged when ``task`` is not one of ``tasks``)."""
        if not self.applies_to(task):
            return list(embeddings)
        return [self.pool_one(e) for e in embeddings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool_factor": self.pool_factor,
            "num_protected_tokens": self.num_protected_tokens,
            "normalize_embeddings": self.normalize_embeddings,
            "tasks": list(self.tasks),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HierarchicalTokenPooling:
        return cls(
            float(data["pool_factor"]),
            num_protected_tokens=int(data["num_protected_tokens"]),
            normalize_embeddings=bool(data["normalize_embeddings"]),
            tasks=tuple(data["tasks"]),
        )
