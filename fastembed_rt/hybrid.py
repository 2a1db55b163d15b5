"""Hybrid retrieval: fuse the rankings of several retrievers (dense, sparse, reranker) for one query.

Each ranking is one of:

- search hits, ``[{"corpus_id": int, "score": float}, ...]`` (``util.semantic_search`` for one
  query, ``CrossEncoder.rank``);
- a mapping ``{corpus_id: score}``;
- a 1-D array of scores over the whole corpus (``model.similarity(query, corpus)[0]``).

Within a ranking, documents are ranked by decreasing score; rank 1 is the best, and equal scores share
the mean of the ranks they span (a SPLADE score array's zeros, the documents sharing no term with the
query, all rank in the middle of their block, none ahead by its ``corpus_id``). Scores are similarities, higher
is better: ``semantic_search_usearch``'s float32 scores are cosine *distances* (as sentence-transformers gives
them), which would rank upside down; pass ``1 - distance``, or rescored hits. A document missing from a
ranking contributes nothing from it. Results come in ``semantic_search``'s format, by decreasing
fused score, equal scores by lower ``corpus_id``. Only the standard library and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from fastembed_rt.errors import InputError
from fastembed_rt.stsb import average_ranks
from fastembed_rt.tensors import as_numpy
from fastembed_rt.util import SearchHit

__all__ = ["reciprocal_rank_fusion", "weighted_score_fusion"]

# Cormack, Clarke & Büttcher (SIGIR 2009): k = 60 damps the head of each list; used by most engines.
RRF_K = 60


# Min-max normalization of a ranking with an infinite score makes every fused score NaN.
_NOT_FINITE = "scores must be finite numbers: leave masked or missing entries out of the ranking"


def _ranked(ranking: Any, position: int) -> list[tuple[int, float]]:
    """``(corpus_id, score)`` of one ranking, best first."""
    where = f"rankings[{position}]"
    ranking = as_numpy(ranking)  # a torch row of scores (model.similarity of tensors) is read as numpy
    if isinstance(ranking, Mapping):
        items = [
            (_corpus_id(key, f"{where} key {key!r}"), _score(value, f"{where}[{key!r}]"))
            for key, value in ranking.items()
        ]
        return sorted(items, key=lambda item: (-item[1], item[0]))
    if isinstance(ranking, np.ndarray) and ranking.dtype != object:
        if ranking.ndim != 1:
            raise InputError(f"{where} is an array of shape {ranking.shape}; a ranking of scores must be 1-D")
        if np.ma.is_masked(ranking):  # its masked entries would count (as NaN, or as their hidden values)
            raise InputError(f"{where} is a masked array; {_NOT_FINITE} (e.g. a {{corpus_id: score}} mapping)")
        if ranking.dtype.kind not in "biuf":
            raise InputError(f"{where} is an array of {ranking.dtype}; scores are real numbers")
        scores = np.asarray(ranking, dtype=np.float64)
        if not np.isfinite(scores).all():
            raise InputError(f"{where} has {_NOT_FINITE}")
        order = np.argsort(-scores, kind="stable")
        return [(int(i), float(scores[i])) for i in order]
    if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
        raise InputError(
            f"{where} is {type(ranking).__name__}; expected search hits, a {{corpus_id: score}} mapping or a 1-D array"
        )
    items = []
    for j, hit in enumerate(ranking):
        if not isinstance(hit, Mapping) or "corpus_id" not in hit or "score" not in hit:
            raise InputError(f"{where}[{j}] is {hit!r}; a hit is {{'corpus_id': int, 'score': float}}")
        items.append(
            (_corpus_id(hit["corpus_id"], f"{where}[{j}]['corpus_id']"), _score(hit["score"], f"{where}[{j}]"))
        )
    seen: set[int] = set()
    for corpus_id, _ in items:
        if corpus_id in seen:
            raise InputError(f"{where} lists corpus_id {corpus_id} twice")
        seen.add(corpus_id)
    return sorted(items, key=lambda item: -item[1])  # stable: equal scores keep their given order


def _corpus_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{where} is {value!r}; corpus ids are ints")
    if value < 0:  # an index into the corpus: -1 is a padding id (e.g. faiss for "no hit"), not a document
        raise InputError(f"{where} is {value}; corpus ids are indexes into the corpus, >= 0")
    return int(value)


def _score(value: Any, where: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where} has score {value!r}; scores are numbers") from None
    if not math.isfinite(score):
        raise InputError(f"{where} has score {score}; {_NOT_FINITE}")
    return score


def _weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    if (
        isinstance(weights, (str, bytes))
        or not isinstance(weights, (Sequence, np.ndarray))
        or (isinstance(weights, np.ndarray) and weights.ndim != 1)
    ):
        raise InputError(f"weights must be a list of numbers, one per ranking, got {weights!r}")
    try:
        values = [float(w) for w in weights if not isinstance(w, (bool, str, bytes))]
    except (TypeError, ValueError):
        values = []
    if len(values) != len(weights) or not all(math.isfinite(w) and w >= 0 for w in values):
        raise InputError(f"weights must be finite non-negative numbers, got {list(weights)}")
    if len(values) != count:
        raise InputError(f"weights has {len(values)} values for {count} rankings; give one per ranking")
    return values


def _check(rankings: Sequence[Any], top_k: int | None) -> None:
    if isinstance(rankings, (str, bytes, Mapping)) or not isinstance(rankings, Sequence):
        raise InputError(f"rankings must be a list of rankings, got {type(rankings).__name__}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0):
        raise InputError(f"top_k must be None or an int >= 0, got {top_k!r}")


def _hits(fused: dict[int, float], top_k: int | None) -> list[SearchHit]:
    ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return [SearchHit(corpus_id=corpus_id, score=score) for corpus_id, score in ordered[:top_k]]


def reciprocal_rank_fusion(
    rankings: Sequence[Any],
    *,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
    top_k: int | None = None,
) -> list[SearchHit]:
    """Reciprocal-rank fusion: ``score(d) = sum_i weights[i] / (k + rank_i(d))``, ranks from 1.

    Scores only decide the order within each ranking, so retrievers with incomparable scales
    (cosine, SPLADE dot products, reranker logits) fuse without normalization.

    Args:
        rankings: the rankings to fuse (see the module docstring), e.g. ``[dense_hits, sparse_hits]``.
        k: the damping constant, >= 0.
        weights: one non-negative weight per ranking (default: all 1).
        top_k: keep the best ``top_k`` (None: every document of any ranking).
    Returns:
        ``[{"corpus_id": int, "score": float}]`` by decreasing fused score.
    """
    _check(rankings, top_k)
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, float, np.integer, np.floating))
        or not (math.isfinite(k) and k >= 0)
    ):
        raise InputError(f"k must be a finite number >= 0, got {k!r}")
    fused: dict[int, float] = {}
    for i, (ranking, weight) in enumerate(zip(rankings, _weights(weights, len(rankings)))):
        for corpus_id, rank in _tied_ranks(_ranked(ranking, i)):
            fused[corpus_id] = fused.get(corpus_id, 0.0) + weight / (k + rank)
    return _hits(fused, top_k)


def _tied_ranks(items: list[tuple[int, float]]) -> Iterator[tuple[int, float]]:
    """``(corpus_id, rank)`` of items best first, ranks from 1; equal scores share the mean of the ranks they span.

    Ranks by position gave ties distinct ranks by corpus_id: a SPLADE score array over 10,000 documents, 9,998 of
    them 0 (no term shared with the query), put documents 0, 1, 2, ... above the dense retriever's 4th hit. Now
    those zeros rank ~5,001 each."""
    ranks = average_ranks(-np.array([score for _, score in items], dtype=np.float64))
    return zip([corpus_id for corpus_id, _ in items], ranks.tolist())


def weighted_score_fusion(
    rankings: Sequence[Any],
    *,
    weights: Sequence[float] | None = None,
    normalization: Literal["minmax", "none"] = "minmax",
    top_k: int | None = None,
) -> list[SearchHit]:
    """Weighted sum of (normalized) scores: ``score(d) = sum_i weights[i] * norm_i(score_i(d))``.

    ``minmax`` maps each ranking's scores to ``[0, 1]`` (``(s - min) / (max - min)``; every score 1
    when they are all equal), so a 0.8 cosine and a 25.0 SPLADE dot product weigh alike; ``none``
    sums raw scores. A document missing from a ranking gets 0 from it.

    Args:
        rankings: the rankings to fuse (see the module docstring), e.g. ``[dense_hits, sparse_hits]``.
        weights: one non-negative weight per ranking (default: all 1), e.g. ``[0.7, 0.3]``.
        normalization: ``"minmax"`` (default) or ``"none"``.
        top_k: keep the best ``top_k`` (None: every document of any ranking).
    Returns:
        ``[{"corpus_id": int, "score": float}]`` by decreasing fused score.
    """
    _check(rankings, top_k)
    if normalization not in ("minmax", "none"):
        raise InputError(f"normalization {normalization!r} is not known; valid: 'minmax', 'none'")
    fused: dict[int, float] = {}
    for i, (ranking, weight) in enumerate(zip(rankings, _weights(weights, len(rankings)))):
        items = _ranked(ranking, i)
        if not items:
            continue
        scores = [score for _, score in items]
        low, high = min(scores), max(scores)
        for corpus_id, score in items:
            if normalization == "minmax":  # in halves where high - low passes the float range (else exact)
                if high == low:
                    score = 1.0
                elif math.isinf(high - low):
                    score = (score / 2 - low / 2) / (high / 2 - low / 2)
                else:
                    score = (score - low) / (high - low)
            fused[corpus_id] = fused.get(corpus_id, 0.0) + weight * score
    return _hits(fused, top_k)
