"""Similarity and search over embeddings: numpy-only equivalents of ``sentence_transformers.util``.

Imports only the standard library and numpy. Every function accepts numpy arrays, nested lists or
anything ``numpy.asarray`` understands and computes in float32, like sentence-transformers does for float32
embeddings; float64 input is computed in float32 too (where sentence-transformers keeps float64: values past ~1e19
overflow float32's norms here, and float64 tensors come back float32). Code that imported torch may pass tensors
(any device): the scoring functions then return tensors on the first tensor's device, as sentence-transformers'
do (``fastembed_rt.tensors``; torch is never imported here). Searches process the corpus in chunks and keep a
running top-k per query, so memory stays bounded by the chunk sizes, not by the corpus size.

Sparse embeddings (what ``SparseEncoder.encode`` returns: scipy sparse arrays or ``SparseEmbeddings``) and
sparse/dense mixes are accepted by every similarity function, which then returns a dense float32 array,
as sentence-transformers returns dense tensors for them. Late-interaction scores (``maxsim`` and its
family, ``semantic_search_maxsim``) live in ``fastembed_rt.maxsim`` and are offered here too.

Result formats are sentence-transformers' own: ``semantic_search`` gives one list per query of
``{"corpus_id": int, "score": float}`` by decreasing score, ``paraphrase_mining`` gives
``[score, i, j]`` triplets. Where sentence-transformers leaves the order of equal scores
unspecified, this module puts the lower corpus index first. Equal means equal floats: BLAS may score
identical rows a last bit apart depending on where they sit in a chunk (sentence-transformers' scores
vary alike), so among duplicate documents which one comes first is not fixed. ``mine_hard_negatives`` lives in
``fastembed_rt.hard_negatives`` and is offered here too, as sentence-transformers' util does.
"""

from __future__ import annotations

import heapq
import logging
import sys
import time
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from fastembed_rt.maxsim import (
    maxsim,
    maxsim_pairwise,
    mean_maxsim,
    mean_maxsim_pairwise,
    semantic_search_maxsim,
)
from fastembed_rt.quantization import Precision, calibration_ranges, dequantize_embeddings, quantize_embeddings
from fastembed_rt.tensors import is_tensor, loaded_torch, tensor_inputs, tensors_in_and_out

if TYPE_CHECKING:
    from fastembed_rt.hard_negatives import mine_hard_negatives

__all__ = [
    "ScoreFunction",
    "SearchHit",
    "SentenceEncoder",
    "community_detection",
    "cos_sim",
    "dequantize_embeddings",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "maxsim",
    "maxsim_pairwise",
    "mean_maxsim",
    "mean_maxsim_pairwise",
    "mine_hard_negatives",
    "normalize_embeddings",
    "pairwise_angle_sim",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "pytorch_cos_sim",
    "quantize_embeddings",
    "search_top_k",
    "select_max_active_dims",
    "semantic_search",
    "semantic_search_faiss",
    "semantic_search_maxsim",
    "semantic_search_quantized",
    "semantic_search_usearch",
    "truncate_embeddings",
]


def __getattr__(name: str) -> Any:
    # ``util.mine_hard_negatives`` as in sentence-transformers, imported on first use (cold start, issue 13).
    if name == "mine_hard_negatives":
        from fastembed_rt.hard_negatives import mine_hard_negatives

        return mine_hard_negatives
    raise AttributeError(f"module 'fastembed_rt.util' has no attribute {name!r}")


logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
ScoreFunction = Callable[[FloatArray, FloatArray], npt.NDArray[np.floating[Any]]]

# Elements per temporary of the blocked distance computations: 4M float64 values are 32 MiB.
_BLOCK_ELEMENTS = 1 << 22
# torch.nn.functional.normalize's default eps, which sentence-transformers' cos_sim uses.
_NORM_EPS = np.float32(1e-12)


class SearchHit(TypedDict):
    """One search result, as in sentence-transformers: a corpus row index and its score."""

    corpus_id: int
    score: float


class SentenceEncoder(Protocol):
    """Anything with sentence-transformers' ``encode`` keywords: fastembed-rt's models and
    ``SentenceTransformer`` alike."""

    # ``sentences`` positional-only: fastembed-rt's and sentence-transformers' encode name it ``inputs``
    def encode(self, sentences: list[str], /, *, batch_size: int, show_progress_bar: bool | None) -> npt.ArrayLike:
        """Embed ``sentences`` into an array of shape [len(sentences), dim]."""
        ...


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")


def _as_batch(embeddings: npt.ArrayLike, name: str) -> FloatArray:
    if _is_sparse(embeddings):
        raise ValueError(
            f"{name}: sparse embeddings are scored by the similarity functions and searched by semantic_search; "
            "pass dense ones here (.toarray())"
        )
    array = _floats(embeddings, name)
    if array.ndim == 1:
        # An empty list is an empty batch, not one embedding of dimension 0.
        return array.reshape(1, -1) if array.size else array.reshape(0, 0)
    if array.ndim != 2:
        raise ValueError(f"{name} must be one embedding [dim] or a batch [n, dim]; got shape {array.shape}")
    return array


def _floats(embeddings: npt.ArrayLike, name: str) -> FloatArray:
    """``embeddings`` as float32; quantized codes refused: a float score of int8/uint8 codes is no score of the
    texts (packed binary bytes scored as numbers: STSb recall@10 0.33 against Hamming search's 0.75).
    sentence-transformers' norms and distances raise on them (torch has none of integer tensors), and its dot
    products of int8 codes wrap around at int8 (two rows of [100, 100] score 32)."""
    array = np.asarray(embeddings)
    if array.dtype in (np.int8, np.uint8):
        raise TypeError(
            f"{name} holds {array.dtype} codes (encode(precision=...)), which float similarities do not score: search "
            "binary codes with util.semantic_search_quantized, or dequantize int8/uint8 ones first with "
            "util.dequantize_embeddings(codes, precision, model.quantization_ranges())"
        )
    return array.astype(np.float32, copy=False)


def _as_batches(
    a: npt.ArrayLike, b: npt.ArrayLike, a_name: str = "a", b_name: str = "b"
) -> tuple[FloatArray, FloatArray]:
    left, right = _as_batch(a, a_name), _as_batch(b, b_name)
    if left.shape[0] == 0:
        left = left.reshape(0, right.shape[1])
    elif right.shape[0] == 0:
        right = right.reshape(0, left.shape[1])
    elif left.shape[1] != right.shape[1]:
        raise ValueError(
            f"{a_name} has dimension {left.shape[1]} but {b_name} has dimension {right.shape[1]}; they must be equal"
        )
    return left, right


def _as_pairs(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``a`` and ``b`` as float32 arrays of one shape: rows broadcast as in torch, so one embedding scores against
    each of ``n`` (``[dim]`` or ``[1, dim]`` with ``[n, dim]``), as sentence-transformers' pairwise functions do."""
    left, right = _floats(a, "a"), _floats(b, "b")
    try:
        shape = np.broadcast_shapes(left.shape, right.shape)
    except ValueError:
        shape = ()
    if left.ndim == 0 or right.ndim == 0 or left.shape[-1] != right.shape[-1] or not shape:
        raise ValueError(
            f"pairwise scores need a and b of one shape [dim] or [n, dim] (or one row against n); got {left.shape} "
            f"and {right.shape}"
        )
    return np.broadcast_to(left, shape), np.broadcast_to(right, shape)


def _normalize(embeddings: FloatArray) -> FloatArray:
    norms: FloatArray = np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), _NORM_EPS)
    return embeddings / norms


def _is_sparse(value: object) -> bool:
    """A scipy sparse array/matrix or ``fastembed_rt.sparse.SparseEmbeddings`` (known by their CSR attributes), or
    a list of them (``SparseEncoder.encode(convert_to_tensor=False)``'s rows)."""
    if isinstance(value, list):
        return bool(value) and all(_is_sparse(item) for item in value)
    return hasattr(value, "indptr") or (hasattr(value, "tocsr") and hasattr(value, "shape"))


def _is_sparse_tensor(value: object) -> bool:
    torch = loaded_torch()
    return torch is not None and is_tensor(value) and value.layout != torch.strided  # type: ignore[attr-defined]


def _sparse_scores(a: Any, b: Any, function: str, pairwise: bool = False) -> FloatArray | None:
    """Scores of sparse (or sparse/dense mixed) inputs, dense float32; None when neither input is sparse."""
    if not (_is_sparse(a) or _is_sparse(b)):
        return None
    # Imported here: fastembed_rt.sparse scores euclidean and manhattan with this module's functions.
    from fastembed_rt.sparse import sparse_similarity, sparse_similarity_pairwise

    score = sparse_similarity_pairwise if pairwise else sparse_similarity
    return np.asarray(score(a, b, function), dtype=np.float32)


@tensors_in_and_out
def cos_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Rows are divided by ``max(norm, 1e-12)``, as ``torch.nn.functional.normalize`` does.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: embedding [dim] or embeddings [m, dim].

    Returns:
        float32 array [n, m] with ``res[i, j] = cos(a[i], b[j])`` (a 1-D input counts as n or m = 1).
    """
    sparse = _sparse_scores(a, b, "cosine")
    if sparse is not None:
        return sparse
    left, right = _as_batches(a, b)
    return _normalize(left) @ _normalize(right).T


@tensors_in_and_out
def dot_score(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Dot product of every row of ``a`` with every row of ``b``.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: embedding [dim] or embeddings [m, dim].

    Returns:
        float32 array [n, m] with ``res[i, j] = a[i] · b[j]``.
    """
    sparse = _sparse_scores(a, b, "dot")
    if sparse is not None:
        return sparse
    left, right = _as_batches(a, b)
    return left @ right.T


@tensors_in_and_out
def euclidean_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Negative Euclidean distance of every row of ``a`` to every row of ``b``.

    Computed as ``sqrt(max(|a|² - 2 a·b + |b|², 0))`` in float64 after both are shifted by the mean of ``b``'s rows, in
    blocks of rows of ``a``; pairs closer than a thousandth of their shifted norms (where that sum cancels down to its
    rounding) are measured directly, so a row's distance to itself is 0 and near-duplicates keep their order.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: embedding [dim] or embeddings [m, dim].

    Returns:
        float32 array [n, m] with ``res[i, j] = -||a[i] - b[j]||₂``.
    """
    sparse = _sparse_scores(a, b, "euclidean")
    if sparse is not None:
        return sparse
    left, right = _as_batches(a, b)
    out = np.empty((left.shape[0], right.shape[0]), dtype=np.float32)
    right64 = right.astype(np.float64)
    right_sq = np.einsum("ij,ij->i", right64, right64)
    # Distances do not move under a shift: where b's rows cluster away from the origin (near-copies), shifted by
    # their mean the norms (and the expansion's rounding) shrink to their spread, and few pairs need measuring
    # directly (256 x 20,000 identical rows: 7.2 s -> 0.35 s). Elsewhere (rows around the origin, an outlier row, a
    # row holding inf) no shift: it would cost a pass and move nothing.
    # (decided on about 1,000 rows spread over b: a pass over a large corpus cost a third of the call)
    center = np.zeros(right.shape[1])
    if right.shape[0]:
        sample = right64[:: max(1, right.shape[0] // 1024)]
        mean = sample.mean(axis=0)
        shifted = sample - mean if np.isfinite(mean).all() else None  # (a row holding inf: no shift)
        if shifted is not None and np.einsum("ij,ij->", shifted, shifted) < 0.01 * np.einsum("ij,ij->", sample, sample):
            center = mean
            right64 -= center
            right_sq = np.einsum("ij,ij->i", right64, right64)
    rows = max(1, _BLOCK_ELEMENTS // max(1, right.shape[0]))
    for start in range(0, left.shape[0], rows):
        block = left[start : start + rows].astype(np.float64) - center
        block_sq = np.einsum("ij,ij->i", block, block)[:, None]
        with np.errstate(invalid="ignore"):  # inf - inf, taken care of below
            squared = block_sq - 2 * (block @ right64.T) + right_sq
            # the sum's rounding is ~1e-16 of |a|² + |b|²: below 1e-6 of it, the distance is off by more than float32
            # resolves (a row 2e-8 from itself), so those pairs (near-duplicates: few) are measured directly
            close_i, close_j = np.nonzero(squared < 1e-6 * (block_sq + right_sq))
        pairs = max(1, _BLOCK_ELEMENTS // max(1, right.shape[1]))
        for at in range(0, close_i.size, pairs):
            near_i, near_j = close_i[at : at + pairs], close_j[at : at + pairs]
            difference = block[near_i] - right64[near_j]
            squared[near_i, near_j] = np.einsum("ij,ij->i", difference, difference)
        out[start : start + rows] = -np.sqrt(np.maximum(squared, 0.0))
    # A row holding inf made the expansion inf - inf = NaN: its distances taken directly (-inf, as torch.cdist's)
    for i in np.flatnonzero(~np.isfinite(left).all(axis=1)):
        out[i] = -np.linalg.norm(left[i].astype(np.float64) - center - right64, axis=1)
    for j in np.flatnonzero(~np.isfinite(right).all(axis=1)):
        out[:, j] = -np.linalg.norm(left.astype(np.float64) - center - right64[j], axis=1)
    return out


@tensors_in_and_out
def manhattan_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Negative Manhattan (L1) distance of every row of ``a`` to every row of ``b``.

    Computed from the element-wise differences in blocks of at most about 4M elements.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: embedding [dim] or embeddings [m, dim].

    Returns:
        float32 array [n, m] with ``res[i, j] = -sum(|a[i] - b[j]|)``.
    """
    sparse = _sparse_scores(a, b, "manhattan")
    if sparse is not None:
        return sparse
    left, right = _as_batches(a, b)
    out = np.empty((left.shape[0], right.shape[0]), dtype=np.float32)
    dim = max(1, left.shape[1])
    right_rows = max(1, min(right.shape[0], _BLOCK_ELEMENTS // dim))
    left_rows = max(1, _BLOCK_ELEMENTS // (right_rows * dim))
    for i in range(0, left.shape[0], left_rows):
        block = left[i : i + left_rows, None, :]
        for j in range(0, right.shape[0], right_rows):
            diff = np.abs(block - right[None, j : j + right_rows, :])
            out[i : i + left_rows, j : j + right_rows] = -diff.sum(axis=-1)
    return out


@tensors_in_and_out
def pairwise_cos_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Cosine similarity of ``a[i]`` with ``b[i]``.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: array of the shape of ``a``, or rows broadcast against it (one row against n), as in torch.

    Returns:
        float32 array [n] (a 0-d array for 1-D inputs) with ``res[i] = cos(a[i], b[i])``.
    """
    sparse = _sparse_scores(a, b, "cosine", pairwise=True)
    if sparse is not None:
        return sparse
    left, right = _as_pairs(a, b)
    scores: FloatArray = np.sum(_normalize(left) * _normalize(right), axis=-1)
    return scores


@tensors_in_and_out
def pairwise_dot_score(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Dot product of ``a[i]`` with ``b[i]``.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: array of the shape of ``a``, or rows broadcast against it (one row against n), as in torch.

    Returns:
        float32 array [n] (a 0-d array for 1-D inputs) with ``res[i] = a[i] · b[i]``.
    """
    sparse = _sparse_scores(a, b, "dot", pairwise=True)
    if sparse is not None:
        return sparse
    left, right = _as_pairs(a, b)
    scores: FloatArray = np.sum(left * right, axis=-1)
    return scores


@tensors_in_and_out
def pairwise_euclidean_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Negative Euclidean distance of ``a[i]`` to ``b[i]``.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: array of the shape of ``a``, or rows broadcast against it (one row against n), as in torch.

    Returns:
        float32 array [n] (a 0-d array for 1-D inputs) with ``res[i] = -||a[i] - b[i]||₂``.
    """
    sparse = _sparse_scores(a, b, "euclidean", pairwise=True)
    if sparse is not None:
        return sparse
    left, right = _as_pairs(a, b)
    distances: FloatArray = np.linalg.norm(left - right, axis=-1)
    return -distances


@tensors_in_and_out
def pairwise_manhattan_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Negative Manhattan (L1) distance of ``a[i]`` to ``b[i]``.

    Args:
        a: embedding [dim] or embeddings [n, dim].
        b: array of the shape of ``a``, or rows broadcast against it (one row against n), as in torch.

    Returns:
        float32 array [n] (a 0-d array for 1-D inputs) with ``res[i] = -sum(|a[i] - b[i]|)``.
    """
    sparse = _sparse_scores(a, b, "manhattan", pairwise=True)
    if sparse is not None:
        return sparse
    left, right = _as_pairs(a, b)
    distances: FloatArray = np.sum(np.abs(left - right), axis=-1)
    return -distances


# This module's score functions, which take SparseEmbeddings rows as they are.
_SPARSE_AWARE = (cos_sim, dot_score, euclidean_sim, manhattan_sim)


def _top_k_columns(scores: np.ndarray, k: int, ids: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.intp]:
    """Column positions of the k largest scores of each row, in no particular order; of scores tied at the cut,
    those of the lowest ``ids`` (None: the columns are in id order), as the final order ranks them, so the hits
    do not depend on how the corpus was chunked."""
    rows, columns = scores.shape
    if k >= columns:
        return np.broadcast_to(np.arange(columns), (rows, columns))
    if k <= 0:
        return np.empty((rows, 0), dtype=np.intp)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, top, axis=1).min(axis=1, keepdims=True)
    # argpartition keeps arbitrary members of a tie across the cut (duplicate texts; sparse scores of 0): in such
    # rows the scores above the cut stay and the tied ones of the lowest ids fill the rest, in one more pass
    for row in np.flatnonzero((scores >= kth).sum(axis=1) > k).tolist():
        above = np.flatnonzero(scores[row] > kth[row, 0])
        tied = np.flatnonzero(scores[row] == kth[row, 0])  # in column order
        if ids is not None:
            tied = tied[np.argsort(ids[row, tied], kind="stable")]
        top[row] = np.concatenate([above, tied[: k - len(above)]])
    return top


def _merge_top_k(
    best_scores: np.ndarray, best_ids: npt.NDArray[np.int64], scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """Fold one corpus chunk's scores [q, c] (corpus rows from ``offset``) into a running top-k."""
    columns = _top_k_columns(scores, k)
    merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, columns, axis=1)], axis=1)
    merged_ids = np.concatenate([best_ids, columns.astype(np.int64) + offset], axis=1)
    keep = _top_k_columns(merged_scores, k, merged_ids)
    return np.take_along_axis(merged_scores, keep, axis=1), np.take_along_axis(merged_ids, keep, axis=1)


def _sort_top_k(scores: np.ndarray, ids: npt.NDArray[np.int64]) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """Each row by decreasing score, equal scores by increasing id."""
    order = np.lexsort((ids, -scores), axis=-1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _hits(scores: np.ndarray, ids: npt.NDArray[np.int64]) -> list[list[SearchHit]]:
    """Rows of ranked (scores, ids) as lists of hits."""
    return [
        [SearchHit(corpus_id=corpus_id, score=score) for corpus_id, score in zip(row_ids, row_scores, strict=True)]
        for row_ids, row_scores in zip(ids.tolist(), scores.tolist(), strict=True)
    ]


def _sorted_hits(scores: np.ndarray, ids: npt.NDArray[np.int64]) -> list[list[SearchHit]]:
    return _hits(*_sort_top_k(scores, ids))


@tensor_inputs
def search_top_k(
    query_embeddings: npt.ArrayLike,
    corpus_embeddings: npt.ArrayLike,
    top_k: int = 10,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    score_function: ScoreFunction = cos_sim,
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """``semantic_search`` as two arrays, for callers that keep millions of hits (no dict per hit).

    Same search, chunking, memory bound and tie order as :func:`semantic_search`.

    Returns:
        ``(scores, corpus_ids)``: arrays ``[q, min(top_k, n)]`` of the score function's dtype (float32
        for this module's functions) and int64, each row by decreasing score (ties: lower corpus id first).
    """
    _check_int("query_chunk_size", query_chunk_size, 1)
    _check_int("corpus_chunk_size", corpus_chunk_size, 1)
    _check_int("top_k", top_k, 0)
    queries: Any
    corpus: Any
    if _is_sparse(query_embeddings) or _is_sparse(corpus_embeddings):
        # CSR rows, chunked without copies; this module's functions score them without making them dense.
        from fastembed_rt.sparse import as_rows

        queries = as_rows(query_embeddings, "query_embeddings")[0]
        corpus = as_rows(corpus_embeddings, "corpus_embeddings")[0]
        if queries.shape[1] != corpus.shape[1] and queries.shape[0] and corpus.shape[0]:
            raise ValueError(
                f"query_embeddings has dimension {queries.shape[1]} but corpus_embeddings has dimension "
                f"{corpus.shape[1]}; they must be equal"
            )
        rows_of: Callable[[Any, int, int], Any] = lambda rows, start, stop: rows.rows(start, stop)  # noqa: E731
        if score_function not in _SPARSE_AWARE:  # a caller's own function gets rows it can use: scipy's
            from fastembed_rt.sparse import has_scipy

            rows_of = lambda rows, start, stop: (  # noqa: E731
                rows.rows(start, stop).to_scipy() if has_scipy() else rows.rows(start, stop).toarray()
            )
        normalize = False
    else:
        queries, corpus = _as_batches(query_embeddings, corpus_embeddings, "query_embeddings", "corpus_embeddings")
        rows_of = lambda rows, start, stop: rows[start:stop]  # noqa: E731
        # Normalizing each corpus chunk once, rather than inside cos_sim for every query chunk, gives
        # the same scores for a fraction of the work.
        normalize = score_function is cos_sim
    query_starts = range(0, queries.shape[0], query_chunk_size)
    best: list[tuple[np.ndarray, npt.NDArray[np.int64]]] = []
    for start in query_starts:
        rows = min(query_chunk_size, queries.shape[0] - start)
        best.append((np.empty((rows, 0), np.float32), np.empty((rows, 0), np.int64)))

    for corpus_start in range(0, corpus.shape[0], corpus_chunk_size):
        chunk = rows_of(corpus, corpus_start, corpus_start + corpus_chunk_size)
        if normalize:
            chunk = _normalize(chunk)
        for slot, query_start in enumerate(query_starts):
            query_chunk = rows_of(queries, query_start, query_start + query_chunk_size)
            scores = _normalize(query_chunk) @ chunk.T if normalize else np.asarray(score_function(query_chunk, chunk))
            best[slot] = _merge_top_k(*best[slot], scores, corpus_start, top_k)

    kept = min(top_k, corpus.shape[0])
    if not best:
        return np.empty((0, kept), np.float32), np.empty((0, kept), np.int64)
    ranked = [_sort_top_k(scores, ids) for scores, ids in best]
    return np.concatenate([scores for scores, _ in ranked]), np.concatenate([ids for _, ids in ranked])


@tensor_inputs
def semantic_search(
    query_embeddings: npt.ArrayLike,
    corpus_embeddings: npt.ArrayLike,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: ScoreFunction = cos_sim,
) -> list[list[SearchHit]]:
    """Exhaustive top-k search of each query over a corpus, by default by cosine similarity.

    The corpus is scanned ``corpus_chunk_size`` rows at a time against ``query_chunk_size``
    queries at a time; peak memory is about one [query_chunk_size, corpus_chunk_size] score matrix.
    Chunk sizes do not change the results, up to the last bit of a score (see the module docstring on ties).

    Args:
        query_embeddings: embedding [dim] or embeddings [q, dim].
        corpus_embeddings: embeddings [n, dim].
        query_chunk_size: queries scored at once, >= 1.
        corpus_chunk_size: corpus rows scored at once, >= 1.
        top_k: results per query, >= 0; a corpus smaller than ``top_k`` gives all its rows.
        score_function: maps float32 [q, dim] and [c, dim] to scores [q, c]; higher is closer (sparse
            embeddings reach it as ``scipy.sparse.csr_array`` chunks, dense arrays without scipy).

    Returns:
        One list per query of ``{"corpus_id": int, "score": float}`` by decreasing score (ties:
        lower ``corpus_id`` first), at most ``top_k`` long; ``[]`` for no queries.
    """
    return _hits(
        *search_top_k(query_embeddings, corpus_embeddings, top_k, query_chunk_size, corpus_chunk_size, score_function)
    )


@tensor_inputs
def paraphrase_mining_embeddings(
    embeddings: npt.ArrayLike,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFunction = cos_sim,
) -> list[list[float | int]]:
    """The highest-scoring pairs of distinct embeddings, as sentence-transformers mines them.

    Each embedding keeps its ``top_k`` best other embeddings; of those candidates the
    ``max_pairs`` best pairs are kept, each pair once. Peak memory is about one
    [query_chunk_size, corpus_chunk_size] score matrix plus ``max_pairs`` pairs.

    Args:
        embeddings: embeddings [n, dim].
        query_chunk_size: embeddings scored at once as queries, >= 1.
        corpus_chunk_size: embeddings scored at once as corpus, >= 1.
        max_pairs: most pairs returned, >= 0.
        top_k: candidates kept per embedding, >= 0.
        score_function: maps float32 [q, dim] and [c, dim] to scores [q, c]; assumed symmetric,
            since only one direction's score is kept for each pair.

    Returns:
        ``[score, i, j]`` triplets with ``i < j`` (score a float, i and j ints), by decreasing score.
    """
    _check_int("query_chunk_size", query_chunk_size, 1)
    _check_int("corpus_chunk_size", corpus_chunk_size, 1)
    _check_int("max_pairs", max_pairs, 0)
    _check_int("top_k", top_k, 0)
    array = _as_batch(embeddings, "embeddings")
    count = array.shape[0]

    pairs: list[tuple[float, int, int]] = []  # min-heap of (score, i, j), i < j, at most max_pairs long
    queued: set[tuple[int, int]] = set()  # the (i, j) of every pair in `pairs`
    min_score = float("-inf")
    for query_start in range(0, count, query_chunk_size):
        query_chunk = array[query_start : query_start + query_chunk_size]
        best_scores: np.ndarray = np.empty((query_chunk.shape[0], 0), np.float32)
        best_ids = np.empty((query_chunk.shape[0], 0), np.int64)
        for corpus_start in range(0, count, corpus_chunk_size):
            scores = np.asarray(score_function(query_chunk, array[corpus_start : corpus_start + corpus_chunk_size]))
            # top_k + 1: the embedding itself is usually among its own best matches.
            best_scores, best_ids = _merge_top_k(best_scores, best_ids, scores, corpus_start, top_k + 1)

        for row, hits in enumerate(_sorted_hits(best_scores, best_ids)):
            i = query_start + row
            neighbours = [(hit["corpus_id"], hit["score"]) for hit in hits if hit["corpus_id"] != i][:top_k]
            for j, score in neighbours:
                if score <= min_score:
                    continue
                pair = (i, j) if i < j else (j, i)
                if pair in queued:
                    continue
                queued.add(pair)
                if len(pairs) < max_pairs:
                    heapq.heappush(pairs, (score, pair[0], pair[1]))
                else:
                    evicted = heapq.heappushpop(pairs, (score, pair[0], pair[1]))
                    queued.discard((evicted[1], evicted[2]))
                    min_score = evicted[0]

    return [[score, i, j] for score, i, j in sorted(pairs, key=itemgetter(0), reverse=True)]


def paraphrase_mining(
    model: SentenceEncoder,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFunction = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """Embed ``sentences`` with ``model`` and mine the most similar pairs.

    Args:
        model: anything with ``encode(sentences, batch_size=..., show_progress_bar=...)``.
        sentences: the texts to compare with each other.
        show_progress_bar: passed to ``model.encode``.
        batch_size: passed to ``model.encode``.
        truncate_dim, prompt_name, prompt: passed to ``model.encode`` when set.
        query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function: as in
            :func:`paraphrase_mining_embeddings`.

    Returns:
        ``[score, i, j]`` triplets with ``i < j`` indexing ``sentences``, by decreasing score.
    """
    options = {"truncate_dim": truncate_dim, "prompt_name": prompt_name, "prompt": prompt}
    embeddings = model.encode(
        sentences,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        **{name: value for name, value in options.items() if value is not None},
    )
    return paraphrase_mining_embeddings(
        embeddings,
        query_chunk_size=query_chunk_size,
        corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs,
        top_k=top_k,
        score_function=score_function,
    )


def truncate_embeddings(embeddings: Any, truncate_dim: int | None) -> Any:
    """The first ``truncate_dim`` dimensions of each embedding (None: all), as sentence-transformers' function: a
    slice of a numpy array or torch tensor, not re-normalized."""
    return embeddings if truncate_dim is None else embeddings[..., :truncate_dim]


# sentence-transformers' former name of ``cos_sim``.
pytorch_cos_sim = cos_sim


@tensor_inputs
def community_detection(
    embeddings: npt.ArrayLike,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Fast community detection, with sentence-transformers' algorithm and output.

    Every embedding with at least ``min_community_size`` embeddings (itself included) at cosine
    similarity >= ``threshold`` is a candidate centre; its community is those embeddings by
    decreasing similarity. Candidates are taken largest first; each drops the members already
    claimed and is kept if ``min_community_size`` members remain and its centre is unclaimed.

    Args:
        embeddings: embeddings [n, dim].
        threshold: least cosine similarity (compared in float32) to a centre.
        min_community_size: least community size, >= 1.
        batch_size: rows of the [n, n] similarity matrix computed at once, >= 1.
        show_progress_bar: write the number of finished batches to stderr.

    Returns:
        Non-overlapping communities as lists of row indices, largest first (ties: the order of
        their centres); each starts with its centre, then members by decreasing similarity.
    """
    _check_int("min_community_size", min_community_size, 1)
    _check_int("batch_size", batch_size, 1)
    array = _as_batch(embeddings, "embeddings")
    count = array.shape[0]
    if count < min_community_size:
        return []

    normalized = _normalize(array)
    limit = np.float32(threshold)
    candidates: list[tuple[int, npt.NDArray[np.intp]]] = []
    batches = range(0, count, batch_size)
    for done, start in enumerate(batches, 1):
        scores = normalized[start : start + batch_size] @ normalized.T
        close = scores >= limit
        for row in np.flatnonzero(close.sum(axis=1) >= min_community_size).tolist():
            members = np.flatnonzero(close[row])
            members = members[np.argsort(-scores[row, members], kind="stable")]
            candidates.append((start + row, members))
        if show_progress_bar:
            end = "\n" if done == len(batches) else ""
            sys.stderr.write(f"\rFinding clusters: {done}/{len(batches)} batches{end}")

    candidates.sort(key=lambda candidate: len(candidate[1]), reverse=True)
    communities: list[list[int]] = []
    claimed = np.zeros(count, dtype=bool)
    for centre, members in candidates:
        if claimed[centre]:
            continue
        unclaimed = members[~claimed[members]]
        if len(unclaimed) >= min_community_size:
            community = [centre, *unclaimed[unclaimed != centre].tolist()]
            communities.append(community)
            claimed[community] = True
    return sorted(communities, key=len, reverse=True)


def _hamming_distances(query_bits: npt.NDArray[np.uint8], corpus_bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Hamming distances [q, c] (int64) between packed bit codes [q, b] and [c, b]."""
    if query_bits.shape[1] % 8 == 0:
        # Whole 64-bit words: 3x faster than bytes (measured on 32 x 16384 codes of 128 bytes).
        query_bits = np.ascontiguousarray(query_bits).view(np.uint64)
        corpus_bits = np.ascontiguousarray(corpus_bits).view(np.uint64)
    differing = np.bitwise_count(query_bits[:, None, :] ^ corpus_bits[None, :, :])
    distances: npt.NDArray[np.int64] = differing.sum(axis=-1, dtype=np.int64)
    return distances


@tensor_inputs
def semantic_search_quantized(
    query_embeddings: npt.ArrayLike,
    corpus_ubinary: npt.ArrayLike,
    top_k: int = 10,
    rescore_multiplier: int = 4,
    corpus_rescore: npt.ArrayLike | None = None,
    rescore_precision: Precision | str = Precision.INT8,
    query_chunk_size: int = 64,
    corpus_chunk_size: int = 8192,
    ranges: npt.ArrayLike | None = None,
) -> list[list[SearchHit]]:
    """Exhaustive Hamming-distance search over binary codes, optionally rescored.

    Queries are float embeddings, binarized like ``quantize_embeddings(q, "ubinary")`` (bit
    ``x > 0``, ``numpy.packbits`` order), or ubinary codes already. The corpus is scanned
    ``corpus_chunk_size`` rows at a time; peak memory is about
    ``query_chunk_size * corpus_chunk_size * bytes_per_code`` bytes twice.

    - Without ``corpus_rescore``: the ``top_k`` nearest codes by Hamming distance, with
      ``score = -hamming_distance`` (a whole number as a float; higher is closer).
    - With ``corpus_rescore`` (float queries only): the ``top_k * rescore_multiplier`` nearest
      codes are rescored by the float32 dot product of the float query with their
      ``corpus_rescore`` rows, and the ``top_k`` best rescored are returned with that dot product as
      score. int8 rows are dequantized with ``ranges`` when given (the model's
      ``quantization_ranges()``; scores then approximate the float ones), else used as they are
      (scores in code units; dimensions of very different ranges then weigh wrongly: on STSb,
      recall@10 0.949 raw against 0.967 dequantized and 0.971 float).

    Ties in Hamming distance go to the lower corpus index, so chunk sizes never change results.

    Args:
        query_embeddings: float [dim] or [q, dim], or uint8 ubinary codes [b] or [q, b].
        corpus_ubinary: uint8 ubinary codes [n, b], ``b = ceil(dim / 8)``.
        top_k: results per query, >= 0; a corpus smaller than ``top_k`` gives all its rows.
        rescore_multiplier: candidates per result rescored, >= 1.
        corpus_rescore: int8 or float corpus embeddings [n, dim] for rescoring, or None.
        rescore_precision: what ``corpus_rescore`` holds: ``"int8"`` or ``"float32"``.
        query_chunk_size: queries compared at once, >= 1.
        corpus_chunk_size: corpus codes compared at once, >= 1.
        ranges: float ``[2, dim]``, the ranges the int8 ``corpus_rescore`` was quantized with.

    Returns:
        One list per query of ``{"corpus_id": int, "score": float}`` by decreasing score, at most
        ``top_k`` long; ``[]`` for no queries.

    Raises:
        TypeError: codes that are not uint8, or ``corpus_rescore`` not of ``rescore_precision``.
        ValueError: mismatched shapes, ``corpus_rescore`` with ubinary queries (nothing to
            rescore with), or a ``rescore_precision`` other than int8 or float32.
    """
    _check_int("top_k", top_k, 0)
    _check_int("rescore_multiplier", rescore_multiplier, 1)
    _check_int("query_chunk_size", query_chunk_size, 1)
    _check_int("corpus_chunk_size", corpus_chunk_size, 1)

    corpus = np.asarray(corpus_ubinary)
    if corpus.dtype != np.uint8 or corpus.ndim != 2:
        raise TypeError(
            "corpus_ubinary must be uint8 codes [n, ceil(dim / 8)] from quantize_embeddings(..., 'ubinary'); "
            f"got dtype {corpus.dtype} and shape {corpus.shape}"
        )
    queries = np.asarray(query_embeddings)
    if queries.shape == (0,):  # [] : no queries (as semantic_search), not one query of no dimensions
        return []
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2:
        raise ValueError(f"query_embeddings must be [dim] or [q, dim]; got shape {queries.shape}")
    if queries.dtype == np.uint8:
        query_bits, float_queries = queries, None
    elif np.issubdtype(queries.dtype, np.floating):
        query_bits = quantize_embeddings(queries, Precision.UBINARY)
        float_queries = queries.astype(np.float32)
    else:
        raise TypeError(f"query_embeddings must be float embeddings or uint8 ubinary codes; got dtype {queries.dtype}")
    if queries.shape[0] and corpus.shape[0] and query_bits.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"queries pack to {query_bits.shape[1]} bytes per code but corpus_ubinary has {corpus.shape[1]}"
        )

    rescoring: tuple[FloatArray, np.ndarray] | None = None  # float queries, corpus_rescore
    if corpus_rescore is not None:
        if float_queries is None:
            raise ValueError(
                "corpus_rescore is given but query_embeddings are ubinary codes, which cannot rescore; "
                "pass float query embeddings or leave corpus_rescore out"
            )
        shape = (corpus.shape[0], float_queries.shape[1])
        rescoring = float_queries, _rescore_matrix(corpus_rescore, rescore_precision, shape)
    bounds = None
    if ranges is not None:
        if rescoring is None or rescoring[1].dtype != np.int8:
            raise ValueError("ranges dequantize an int8 corpus_rescore; there is none to dequantize here")
        bounds = np.asarray(ranges, dtype=np.float32)
        if bounds.shape != (2, rescoring[1].shape[1]):
            raise ValueError(f"ranges must have shape (2, {rescoring[1].shape[1]}); got {bounds.shape}")

    corpus_count = corpus.shape[0]
    candidates = min(top_k * rescore_multiplier if rescoring is not None else top_k, corpus_count)
    if candidates == 0:
        return [[] for _ in range(queries.shape[0])]
    results: list[list[SearchHit]] = []
    for query_start in range(0, queries.shape[0], query_chunk_size):
        bits = query_bits[query_start : query_start + query_chunk_size]
        # One int64 key per (distance, corpus index) makes every key distinct, so the kept set and
        # its order do not depend on where the chunk borders fall.
        best = np.empty((bits.shape[0], 0), dtype=np.int64)
        for corpus_start in range(0, corpus_count, corpus_chunk_size):
            chunk = corpus[corpus_start : corpus_start + corpus_chunk_size]
            keys = _hamming_distances(bits, chunk) * corpus_count + np.arange(
                corpus_start, corpus_start + chunk.shape[0], dtype=np.int64
            )
            best = np.concatenate([best, keys], axis=1)
            if candidates < best.shape[1]:
                best = np.partition(best, candidates - 1, axis=1)[:, :candidates]
        best = np.sort(best, axis=1)
        ids = best % corpus_count

        if rescoring is not None:
            query_chunk = rescoring[0][query_start : query_start + query_chunk_size]
            rows = rescoring[1][ids]
            rows = rows.astype(np.float32) if bounds is None else dequantize_embeddings(rows, Precision.INT8, bounds)
            scores = np.einsum("qd,qkd->qk", query_chunk, rows)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
            ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        else:
            scores = -(best // corpus_count).astype(np.float64)
        results.extend(
            [SearchHit(corpus_id=corpus_id, score=score) for corpus_id, score in zip(row_ids, row_scores, strict=True)]
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist(), strict=True)
        )
    return results


def _rescore_matrix(
    corpus_rescore: npt.ArrayLike, rescore_precision: Precision | str, shape: tuple[int, int]
) -> np.ndarray:
    """Validate the rescoring corpus against its declared precision and the expected [n, dim]."""
    precision = next((p for p in (Precision.INT8, Precision.FLOAT32) if p == rescore_precision), None)
    if precision is None:
        raise ValueError(f"rescore_precision {rescore_precision!r} is not supported; valid choices: int8, float32")
    matrix = np.asarray(corpus_rescore)
    is_int8 = matrix.dtype == np.int8
    if (precision is Precision.INT8) != is_int8 or not (is_int8 or np.issubdtype(matrix.dtype, np.floating)):
        raise TypeError(
            f"corpus_rescore has dtype {matrix.dtype} but rescore_precision is {precision.value!r}; "
            "pass int8 codes with 'int8' or float embeddings with 'float32'"
        )
    if matrix.shape != shape:
        raise ValueError(f"corpus_rescore must have shape {shape} (corpus rows, query dim); got {matrix.shape}")
    return matrix


def normalize_embeddings(embeddings: Any) -> Any:
    """Each embedding divided by its L2 norm, as sentence-transformers' ``util.normalize_embeddings``.

    Dense rows are divided by ``max(norm, 1e-12)`` (``torch.nn.functional.normalize``); sparse rows (scipy,
    ``SparseEmbeddings`` or a sparse torch tensor, which stays sparse) by their norm, rows of norm 0 left as they are.

    Args:
        embeddings: dense ``[dim]`` / ``[n, dim]`` (``[..., dim]``), sparse rows, or a list of sparse rows
            (``SparseEncoder.encode(convert_to_tensor=False)``'s; each normalized on its own).
    Returns:
        float32 of the input's shape (a tensor for a tensor), or sparse rows of the input's type.

    Raises:
        TypeError: int8/uint8 codes (``encode(precision=...)``): dequantize them first.
    """
    # Imported here: fastembed_rt.sparse scores euclidean and manhattan with this module's functions.
    from fastembed_rt.sparse import normalize_sparse

    if isinstance(embeddings, list) and embeddings and all(_is_sparse(e) or _is_sparse_tensor(e) for e in embeddings):
        return [normalize_embeddings(row) for row in embeddings]
    if _is_sparse(embeddings) or _is_sparse_tensor(embeddings):
        return normalize_sparse(embeddings)
    return _normalize_dense(embeddings)


@tensors_in_and_out
def _normalize_dense(embeddings: Any) -> FloatArray:
    return _normalize(_floats(embeddings, "embeddings"))


@tensors_in_and_out
def pairwise_angle_sim(x: Any, y: Any) -> FloatArray:
    """AnglE similarity of ``x[i]`` with ``y[i]``: ``|cos + sin|`` of the L2-normalized rows, dimensions ``i``
    and ``i + D/2`` paired for the sine term (an odd ``D`` is padded with a zero), as sentence-transformers'
    ``util.pairwise_angle_sim``. Sparse inputs are densified, as there.

    Returns:
        float32 ``[n]``.
    """
    left, right = (np.asarray(v.toarray() if _is_sparse(v) else v, dtype=np.float32) for v in (x, y))
    left, right = _as_pairs(left, right)
    if left.shape[-1] % 2:
        left, right = (np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, 1)]) for v in (left, right))
    left, right = _normalize(left), _normalize(right)
    half = left.shape[-1] // 2
    cosines = np.sum(left * right, axis=-1)
    sines = np.sum(left[..., half:] * right[..., :half] - left[..., :half] * right[..., half:], axis=-1)
    return np.abs(cosines + sines).astype(np.float32)


def select_max_active_dims(embeddings: Any, max_active_dims: int | None) -> Any:
    """Only the ``max_active_dims`` largest values by magnitude of each embedding kept, the rest set to 0, as
    sentence-transformers' ``util.select_max_active_dims`` (equal magnitudes at the cut: lower index kept).

    Args:
        embeddings: dense ``[dim]`` or ``[n, dim]`` (sparse rows are densified).
        max_active_dims: values kept per embedding; None returns ``embeddings`` unchanged.
    Returns:
        a new dense float32 array of the input's shape (a tensor for a tensor, as sentence-transformers gives).
    Raises:
        ValueError: ``max_active_dims`` of 0 or less.
    """
    if max_active_dims is None:
        return embeddings  # as it came: a sparse or bf16 tensor is not densified into float32
    if max_active_dims <= 0:
        raise ValueError(f"max_active_dims must be a positive integer, got {max_active_dims}")
    return _select_max_active_dims(embeddings, max_active_dims)


@tensors_in_and_out
def _select_max_active_dims(embeddings: Any, max_active_dims: int) -> Any:
    dense = np.asarray(embeddings.toarray() if _is_sparse(embeddings) else embeddings, dtype=np.float32)
    keep = np.argsort(-np.abs(dense), axis=-1, kind="stable")[..., :max_active_dims]
    selected = np.zeros_like(dense)
    np.put_along_axis(selected, keep, np.take_along_axis(dense, keep, axis=-1), axis=-1)
    return selected


def _install_hint(module: str, extra: str) -> ImportError:
    return ImportError(f"{module} is not installed: pip install 'fastembed-rt[{extra}]' (or pip install {extra}-cpu)")


def _rescore_hits(
    query_floats: np.ndarray,
    candidates: np.ndarray,
    indices: np.ndarray,
    valid: np.ndarray,
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescore ``[q, k, dim]`` float candidates by the dot product with the float queries; keep the best ``top_k``."""
    scores = np.einsum("ij,ikj->ik", query_floats, candidates).astype(np.float64, copy=False)
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    return (
        np.take_along_axis(scores, order, axis=1),
        np.take_along_axis(indices, order, axis=1),
        np.take_along_axis(valid, order, axis=1),
    )


def _index_hits(scores: np.ndarray, indices: np.ndarray, valid: np.ndarray) -> list[list[SearchHit]]:
    return [
        [SearchHit(corpus_id=int(i), score=float(v)) for v, i, ok in zip(row_s, row_i, row_ok) if ok]
        for row_s, row_i, row_ok in zip(scores, indices, valid)
    ]


def _query_codes(
    query_embeddings: np.ndarray,
    precision: str,
    rescore: bool,
    quantized_corpus: bool,
    ranges: np.ndarray | None,
    calibration_embeddings: np.ndarray | None,
    function: str,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The queries as the index reads them, the float queries to rescore with (None: no rescoring), and the ranges.

    sentence-transformers' rules: rescoring needs float queries and a quantized corpus; int8/uint8 ranges
    default to those of the queries themselves when none are given.
    """
    if query_embeddings.dtype in (np.uint8, np.int8):
        if rescore:
            logger.warning("Rescoring is enabled but the query embeddings are quantized; pass rescore=False")
        return query_embeddings, None, ranges
    floats = None
    if rescore:
        if quantized_corpus:
            floats = query_embeddings.astype(np.float32)
        else:
            logger.warning(
                "Rescoring is enabled but the corpus is not quantized; pass rescore=False or quantize the corpus "
                "and pass corpus_precision to %s",
                function,
            )
    if floats is not None and precision.endswith("int8") and ranges is None:
        ranges = calibration_ranges(query_embeddings if calibration_embeddings is None else calibration_embeddings)
    codes = quantize_embeddings(
        query_embeddings, precision, ranges=ranges, calibration_embeddings=calibration_embeddings
    )
    return np.asarray(codes), floats, ranges


@tensor_inputs
def semantic_search_faiss(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray | None = None,
    corpus_index: Any = None,
    corpus_precision: str = "float32",
    top_k: int = 10,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
    rescore: bool = True,
    rescore_multiplier: int = 2,
    exact: bool = True,
    output_index: bool = False,
) -> tuple[list[list[SearchHit]], float] | tuple[list[list[SearchHit]], float, Any]:
    """Search with a FAISS index, as sentence-transformers' ``util.semantic_search_faiss`` (needs ``faiss-cpu``).

    ``corpus_precision`` ``float32`` / ``uint8`` build an inner-product index (``IndexFlatIP``, or HNSW
    when not ``exact``), ``ubinary`` a binary Hamming index. Float queries are quantized like the corpus;
    with ``rescore`` and a quantized corpus, ``top_k * rescore_multiplier`` candidates are found and
    rescored by the dot product of the float query with the candidates (uint8 dequantized with ``ranges``,
    bits as 0/1). Pass ``corpus_index`` to reuse an index (``output_index=True`` returns it).

    Returns:
        ``(hits, seconds)`` or ``(hits, seconds, index)``: one list per query of ``{"corpus_id", "score"}``
        by decreasing score, at most ``top_k`` long.
    Raises:
        ValueError: both or neither of ``corpus_embeddings`` and ``corpus_index``, or another precision.
        ImportError: faiss is not installed, with the install command.
    """
    try:
        import faiss
    except ImportError:
        raise _install_hint("faiss", "faiss") from None
    if (corpus_embeddings is None) == (corpus_index is None):
        raise ValueError("pass exactly one of corpus_embeddings and corpus_index")
    if corpus_precision not in ("float32", "uint8", "ubinary"):
        raise ValueError(
            f"corpus_precision must be 'float32', 'uint8' or 'ubinary' for faiss, got {corpus_precision!r}"
        )
    if corpus_index is None:
        assert corpus_embeddings is not None
        width = corpus_embeddings.shape[1]
        if corpus_precision == "ubinary":
            corpus_index = faiss.IndexBinaryFlat(width * 8) if exact else faiss.IndexBinaryHNSW(width * 8, 16)
        else:
            corpus_index = (
                faiss.IndexFlatIP(width) if exact else faiss.IndexHNSWFlat(width, 16, faiss.METRIC_INNER_PRODUCT)
            )
        corpus_index.add(corpus_embeddings)
    queries = np.asarray(query_embeddings)
    codes, floats, ranges = _query_codes(
        queries,
        corpus_precision,
        rescore,
        corpus_precision != "float32",
        ranges,
        calibration_embeddings,
        "semantic_search_faiss",
    )
    k = top_k * rescore_multiplier if floats is not None else top_k
    started = time.time()
    scores, indices = corpus_index.search(codes, k)
    valid = indices != -1
    if floats is not None:
        width = corpus_index.d // 8 if corpus_precision == "ubinary" else corpus_index.d
        dtype = np.uint8 if corpus_precision == "ubinary" else np.float32
        candidates = np.array(
            [[corpus_index.reconstruct(int(i)) if i != -1 else np.zeros(width, dtype) for i in row] for row in indices]
        )
        if corpus_precision == "ubinary":
            candidates = np.unpackbits(candidates, axis=-1)[..., : floats.shape[-1]]
        candidates = candidates.astype(np.float64)
        if corpus_precision == "uint8":
            assert ranges is not None
            candidates = dequantize_embeddings(candidates.astype(np.uint8), "uint8", ranges)
        scores, indices, valid = _rescore_hits(floats, candidates, indices, valid, top_k)
    elapsed = time.time() - started
    hits = _index_hits(scores, indices, valid)
    return (hits, elapsed, corpus_index) if output_index else (hits, elapsed)


@tensor_inputs
def semantic_search_usearch(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray | None = None,
    corpus_index: Any = None,
    corpus_precision: str = "float32",
    top_k: int = 10,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
    rescore: bool = True,
    rescore_multiplier: int = 2,
    exact: bool = True,
    output_index: bool = False,
) -> tuple[list[list[SearchHit]], float] | tuple[list[list[SearchHit]], float, Any]:
    """Search with a usearch index, as sentence-transformers' ``util.semantic_search_usearch`` (needs ``usearch``).

    ``corpus_precision`` ``float32`` builds a cosine index (scores are usearch's cosine *distances*, as
    there), ``int8`` an inner-product one, ``binary`` / ``ubinary`` a Hamming one. Rescoring as in
    ``semantic_search_faiss`` (int8 dequantized with ``ranges``, bits as 0/1).

    Returns:
        ``(hits, seconds)`` or ``(hits, seconds, index)``.
    Raises:
        ValueError: both or neither of ``corpus_embeddings`` and ``corpus_index``, or another precision.
        ImportError: usearch is not installed, with the install command.
    """
    try:
        from usearch.compiled import ScalarKind
        from usearch.index import Index
    except ImportError:
        raise ImportError("usearch is not installed: pip install 'fastembed-rt[usearch]'") from None
    if (corpus_embeddings is None) == (corpus_index is None):
        raise ValueError("pass exactly one of corpus_embeddings and corpus_index")
    if corpus_precision not in ("float32", "int8", "ubinary", "binary"):
        raise ValueError(
            f"corpus_precision must be 'float32', 'int8', 'ubinary' or 'binary' for usearch, got {corpus_precision!r}"
        )
    binary = corpus_precision in ("binary", "ubinary")
    if corpus_index is None:
        assert corpus_embeddings is not None
        width = corpus_embeddings.shape[1]
        if binary:
            corpus_index = Index(ndim=width * 8, metric="hamming", dtype="b1")
            if corpus_precision == "binary":  # a b1 index reads raw bytes: undo quantize_embeddings' -128
                corpus_embeddings = corpus_embeddings.view(np.uint8) ^ 0x80
        else:
            int8 = corpus_precision == "int8"
            corpus_index = Index(ndim=width, metric="ip" if int8 else "cos", dtype="i8" if int8 else "f32")
        corpus_index.add(np.arange(len(corpus_embeddings)), corpus_embeddings)
    queries = np.asarray(query_embeddings)
    codes, floats, ranges = _query_codes(
        queries,
        corpus_precision,
        rescore,
        corpus_index.dtype != ScalarKind.F32,
        ranges,
        calibration_embeddings,
        "semantic_search_usearch",
    )
    k = top_k * rescore_multiplier if floats is not None else top_k
    started = time.time()
    if corpus_precision == "binary":
        codes = codes.view(np.uint8) ^ 0x80
    matches = corpus_index.search(codes, count=k, exact=exact)
    scores, indices = np.atleast_2d(matches.distances), np.atleast_2d(matches.keys)
    counts = np.asarray(getattr(matches, "counts", indices.shape[1])).reshape(-1, 1)
    valid = np.arange(indices.shape[1]) < counts
    if floats is not None and valid.any():
        safe = np.where(valid, indices, indices[valid][0])
        candidates = np.array([corpus_index.get(row) for row in safe])
        if binary:
            candidates = np.unpackbits(candidates.astype(np.uint8), axis=-1)[..., : floats.shape[-1]]
        candidates = candidates.astype(np.float64)
        if corpus_precision == "int8":
            assert ranges is not None
            candidates = dequantize_embeddings(candidates.astype(np.int8), "int8", ranges)
        scores, indices, valid = _rescore_hits(floats, candidates, indices, valid, top_k)
    elapsed = time.time() - started
    hits = _index_hits(scores, indices, valid)
    return (hits, elapsed, corpus_index) if output_index else (hits, elapsed)
