"""MaxSim (late interaction) scores of multi-vector embeddings, numpy only, and a search over a corpus of them.

``maxsim`` and ``maxsim_pairwise`` (and their ``mean_`` forms) are sentence-transformers 6's
``util.maxsim`` family; ``semantic_search_maxsim`` is ``util.semantic_search`` for multi-vector corpora,
scoring float queries against float or quantized document matrices. Imports only numpy and fastembed-rt's
quantization and tensor helpers: torch tensors (or lists of them) are taken where torch is already loaded, and the
scores come back as tensors for them, as sentence-transformers gives.

Each side is a list of per-text ``[tokens_i, dim]`` matrices, one padded ``[n, tokens, dim]`` array (rows
of all zeros are padding unless a mask says which tokens count, as sentence-transformers reads them), or one
``[tokens, dim]`` matrix (a batch of one). Exactly as sentence-transformers 6.2 computes them:

- ``maxsim(q, d) = Σ_i max_j q_i · d_j`` over the unmasked query tokens ``i`` and document tokens ``j``, in
  float32 (token similarities, their maxima and the sum);
- masked document tokens never win the max; a document with no unmasked token scores ``-1e9``
  (``EMPTY_DOCUMENT_SCORE``, ranking it below every real document);
- ``length_normalize`` (MeanMaxSim) divides by the query's unmasked token count, at least 1;
- integer inputs (quantized codes) are scored as their values, upcast to float32, as sentence-transformers
  does; ``semantic_search_maxsim`` dequantizes them first instead.

One difference, on purpose: with a list of matrices and a mask wider than a matrix, sentence-transformers counts
the zero rows it pads the list with wherever the mask says 1 (a padding token can win a max, scoring 0); here the
positions past each matrix's own tokens stay out whatever the mask says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fastembed_rt.quantization import Precision, dequantize_embeddings
from fastembed_rt.tensors import tensor_inputs, tensors_in_and_out

__all__ = [
    "EMPTY_DOCUMENT_SCORE",
    "maxsim",
    "maxsim_pairwise",
    "mean_maxsim",
    "mean_maxsim_pairwise",
    "semantic_search_maxsim",
]

EMPTY_DOCUMENT_SCORE = np.float32(-1e9)
# Elements of the largest temporary (token similarities of a chunk): 16M float32 values are 64 MiB.
_CHUNK_ELEMENTS = 1 << 24

MultiVectors = Sequence[npt.ArrayLike] | np.ndarray


def _padded(embeddings: Any, mask: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One side as float32 ``[n, tokens, dim]`` and a bool ``[n, tokens]`` mask of the tokens that count."""
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
        embeddings = embeddings[None]
        if mask is not None and np.ndim(mask) == 1:
            mask = np.asarray(mask)[None]
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 3:
        padded = embeddings.astype(np.float32, copy=False)
        found: np.ndarray = np.asarray(padded.any(axis=-1))
    elif isinstance(embeddings, (list, tuple)):
        items = [np.asarray(e) for e in embeddings]
        for i, item in enumerate(items):
            if item.ndim != 2:
                raise ValueError(f"{name}[{i}] must be a [tokens, dim] matrix; got shape {item.shape}")
        dims = {item.shape[1] for item in items if item.shape[0]}
        if len(dims) > 1:
            raise ValueError(f"{name} mixes embedding dimensions {sorted(dims)}; every matrix needs the same one")
        width = max((item.shape[0] for item in items), default=0)
        dim = dims.pop() if dims else (items[0].shape[1] if items else 0)
        padded = np.zeros((len(items), width, dim), dtype=np.float32)
        found = np.zeros((len(items), width), dtype=bool)
        for i, item in enumerate(items):
            padded[i, : item.shape[0]] = item
            found[i, : item.shape[0]] = True
    else:
        raise TypeError(
            f"{name} must be a list of [tokens, dim] matrices, a padded [n, tokens, dim] array or one "
            f"[tokens, dim] matrix; got {type(embeddings).__name__}"
        )
    if mask is None:
        return padded, found
    if isinstance(mask, (list, tuple)):
        rows = [np.asarray(m).astype(bool) for m in mask]
        given = np.zeros((len(rows), max((len(r) for r in rows), default=0)), dtype=bool)
        for i, row in enumerate(rows):
            given[i, : len(row)] = row
    else:
        given = np.asarray(mask).astype(bool)
    if given.shape[-1] != padded.shape[1]:
        raise ValueError(
            f"{name}_mask covers {given.shape[-1]} tokens, but the padded embeddings have {padded.shape[1]}"
        )
    given = np.broadcast_to(given, found.shape)
    # A mask overrides the all-zero-rows-are-padding reading of a padded array (an all-zero token it keeps counts, as
    # in sentence-transformers); a list's rows past each matrix's own tokens stay out whatever the mask says.
    return padded, np.asarray(given & found if isinstance(embeddings, (list, tuple)) else given)


def _query_counts(mask: np.ndarray) -> np.ndarray:
    return np.maximum(mask.sum(axis=1), 1).astype(np.float32)


@tensors_in_and_out
def maxsim(
    a: MultiVectors,
    b: MultiVectors,
    a_mask: npt.ArrayLike | None = None,
    b_mask: npt.ArrayLike | None = None,
    chunk_elements: int | None = None,
    length_normalize: bool = False,
) -> np.ndarray:
    """MaxSim of every query in ``a`` with every document in ``b`` (sentence-transformers' ``util.maxsim``).

    Args:
        a: query embeddings (see the module docstring for the forms).
        b: document embeddings.
        a_mask / b_mask: bool or 0/1 ``[n, tokens]`` (or per-item lists); 0 excludes a token.
        chunk_elements: most token similarities held at once (None: 16M; at least one document's);
            chunks change scores by float32 rounding at most (BLAS sums in other orders).
        length_normalize: MeanMaxSim, each score divided by the query's token count.
    Returns:
        float32 ``[len(a), len(b)]``.
    """
    queries, q_mask = _padded(a, a_mask, "a")
    documents, d_mask = _padded(b, b_mask, "b")
    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    if not len(queries) or not len(documents):
        return scores
    if queries.shape[2] != documents.shape[2] and queries.shape[1] and documents.shape[1]:
        raise ValueError(f"a has dimension {queries.shape[2]} but b has dimension {documents.shape[2]}")
    # Documents as one flat run of their unmasked tokens: no padding is scored, and each document's
    # maximum is a segment reduction (np.maximum.reduceat) over its own tokens.
    counts = d_mask.sum(axis=1)
    flat = documents[d_mask]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows = queries.shape[0] * queries.shape[1]
    flat_queries = queries.reshape(rows, queries.shape[2])
    tokens_per_chunk = max(1, (chunk_elements or _CHUNK_ELEMENTS) // max(rows, 1))
    start = 0
    while start < len(documents):
        end = max(start + 1, int(np.searchsorted(offsets, offsets[start] + tokens_per_chunk, side="right")) - 1)
        first, last = int(offsets[start]), int(offsets[end])
        nonempty = counts[start:end] > 0
        if rows and last > first:
            similarity = flat_queries @ flat[first:last].T  # [queries × query tokens, chunk tokens]
            best = np.zeros((rows, end - start), dtype=np.float32)
            best[:, nonempty] = np.maximum.reduceat(similarity, offsets[start:end][nonempty] - first, axis=1)
            best = np.where(q_mask.reshape(rows, 1), best, np.float32(0))
            scores[:, start:end] = best.reshape(queries.shape[0], queries.shape[1], -1).sum(axis=1, dtype=np.float32)
        scores[:, start:end][:, ~nonempty] = EMPTY_DOCUMENT_SCORE
        start = end
    if length_normalize:
        scores /= _query_counts(q_mask)[:, None]
    return scores


@tensors_in_and_out
def maxsim_pairwise(
    a: MultiVectors,
    b: MultiVectors,
    a_mask: npt.ArrayLike | None = None,
    b_mask: npt.ArrayLike | None = None,
    chunk_elements: int | None = None,
    length_normalize: bool = False,
) -> np.ndarray:
    """MaxSim of query ``a[i]`` with document ``b[i]`` (sentence-transformers' ``util.maxsim_pairwise``).

    Returns:
        float32 ``[n]``.
    Raises:
        ValueError: ``a`` and ``b`` hold different numbers of items.
    """
    queries, q_mask = _padded(a, a_mask, "a")
    documents, d_mask = _padded(b, b_mask, "b")
    if len(queries) != len(documents):
        raise ValueError(f"a and b must hold as many items to score as pairs; got {len(queries)} and {len(documents)}")
    scores = np.zeros(len(queries), dtype=np.float32)
    for i in range(len(queries)):
        if queries.shape[1] and documents.shape[1]:
            similarity = np.where(d_mask[i][None], queries[i] @ documents[i].T, -np.inf)
            scores[i] = np.where(q_mask[i], similarity.max(axis=-1), np.float32(0)).sum(dtype=np.float32)
    scores[~d_mask.any(axis=1)] = EMPTY_DOCUMENT_SCORE
    if length_normalize:
        scores /= _query_counts(q_mask)
    return scores


@tensors_in_and_out
def mean_maxsim(
    a: MultiVectors,
    b: MultiVectors,
    a_mask: npt.ArrayLike | None = None,
    b_mask: npt.ArrayLike | None = None,
    chunk_elements: int | None = None,
    length_normalize: bool = True,
) -> np.ndarray:
    """MeanMaxSim: ``maxsim`` divided by each query's token count (``length_normalize=False``: plain MaxSim)."""
    return maxsim(a, b, a_mask, b_mask, chunk_elements, length_normalize)


@tensors_in_and_out
def mean_maxsim_pairwise(
    a: MultiVectors,
    b: MultiVectors,
    a_mask: npt.ArrayLike | None = None,
    b_mask: npt.ArrayLike | None = None,
    chunk_elements: int | None = None,
    length_normalize: bool = True,
) -> np.ndarray:
    """Pairwise MeanMaxSim: ``maxsim_pairwise`` divided by each query's token count."""
    return maxsim_pairwise(a, b, a_mask, b_mask, chunk_elements, length_normalize)


def _document_floats(
    documents: Sequence[np.ndarray], precision: Precision, ranges: np.ndarray | None, dim: int
) -> list[np.ndarray]:
    """Float32 matrices of documents stored at ``precision``: int8/uint8 codes dequantized with ``ranges``,
    binary/ubinary bits as ±1 (which ranks documents exactly as the 0/1 bits sentence-transformers rescores
    with: per query token, ±1 scores are 2·(0/1 score) − Σq)."""
    out: list[np.ndarray] = []
    for matrix in documents:
        codes = np.asarray(matrix)
        if precision is Precision.FLOAT32:
            out.append(codes.astype(np.float32, copy=False))
        elif precision in (Precision.INT8, Precision.UINT8):
            if ranges is None:
                raise ValueError(
                    f"corpus_precision {precision.value!r} needs the ranges the corpus was quantized with "
                    "(MultiVectorEncoder.quantization_ranges)"
                )
            out.append(dequantize_embeddings(codes, precision, ranges))
        else:
            # codes read back from JSON or a database are Python ints (an int64 array): a view of those bytes read
            # the wrong bits, so they are cast to the code type, refused where they do not fit it
            # bytes (int8 or uint8, e.g. a database blob read back as uint8) are the same bits either way
            code_type = np.int8 if precision is Precision.BINARY else np.uint8
            limits = np.iinfo(code_type)
            if codes.dtype in (np.int8, np.uint8):
                raw = codes.view(np.uint8)
            elif codes.size and (codes.min() < limits.min or codes.max() > limits.max):
                raise ValueError(
                    f"corpus_precision {precision.value!r} codes are {np.dtype(code_type).name} "
                    f"({limits.min}..{limits.max}); got values from {codes.min()} to {codes.max()}"
                )
            else:
                raw = codes.astype(code_type).view(np.uint8)
            if precision is Precision.BINARY:
                raw = raw ^ np.uint8(0x80)
            bits = np.unpackbits(raw, axis=-1)[:, :dim]
            out.append(bits.astype(np.float32) * 2 - 1)
    return out


@tensor_inputs
def semantic_search_maxsim(
    query_embeddings: MultiVectors,
    corpus_embeddings: Sequence[npt.ArrayLike],
    top_k: int = 10,
    corpus_precision: Precision | str = Precision.FLOAT32,
    ranges: npt.ArrayLike | None = None,
    corpus_chunk_size: int = 1024,
    length_normalize: bool = False,
) -> list[list[dict[str, int | float]]]:
    """Exhaustive MaxSim search of float queries over a corpus of per-document token matrices.

    The corpus is scored ``corpus_chunk_size`` documents at a time (quantized ones dequantized per chunk, so
    memory holds one chunk of float matrices, plus the ``[queries, documents]`` float32 scores); chunk sizes
    change scores by float32 rounding at most.

    Args:
        query_embeddings: float query matrices (``MultiVectorEncoder.encode_query``).
        corpus_embeddings: one ``[tokens_i, dim]`` matrix per document: float32, or codes of
            ``corpus_precision`` (``encode_document(..., precision=...)``; bit-packed for binary/ubinary); or,
            for a float corpus, one padded ``[n, tokens, dim]`` array whose all-zero rows are padding.
        top_k: results per query, >= 0.
        corpus_precision: ``float32``, ``int8``, ``uint8``, ``binary`` or ``ubinary``.
        ranges: float32 ``[2, dim]`` calibration ranges the int8/uint8 corpus was quantized with.
        corpus_chunk_size: documents scored at once, >= 1.
        length_normalize: score with MeanMaxSim.
    Returns:
        One list per query of ``{"corpus_id": int, "score": float}`` by decreasing score (ties: lower
        ``corpus_id`` first), at most ``top_k`` long.
    """
    precision = Precision(corpus_precision)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0; got {top_k!r}")
    if (
        isinstance(corpus_chunk_size, bool)
        or not isinstance(corpus_chunk_size, (int, np.integer))
        or corpus_chunk_size < 1
    ):
        raise ValueError(f"corpus_chunk_size must be an integer >= 1; got {corpus_chunk_size!r}")
    queries, q_mask = _padded(query_embeddings, None, "query_embeddings")
    padded = isinstance(corpus_embeddings, np.ndarray) and corpus_embeddings.ndim == 3
    if padded and precision is not Precision.FLOAT32:
        raise ValueError(
            f"a padded [n, tokens, dim] corpus array is read as float32 with all-zero rows as padding; "
            f"{precision.value} codes have no padding value: pass a list of per-document code matrices"
        )
    bounds = None if ranges is None else np.asarray(ranges, dtype=np.float32)
    dim = queries.shape[2]
    scores = np.empty((len(queries), len(corpus_embeddings)), dtype=np.float32)
    for start in range(0, len(corpus_embeddings), corpus_chunk_size):
        chunk: Any
        if padded:  # kept 3-D: maxsim reads its all-zero rows as padding, as for any padded side
            chunk = np.asarray(corpus_embeddings[start : start + corpus_chunk_size], dtype=np.float32)
        else:
            codes = [np.asarray(e) for e in corpus_embeddings[start : start + corpus_chunk_size]]
            chunk = _document_floats(codes, precision, bounds, dim)
        scores[:, start : start + len(chunk)] = maxsim(queries, chunk, a_mask=q_mask, length_normalize=length_normalize)
    kept = min(top_k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kept]
    return [[{"corpus_id": int(i), "score": float(scores[q, i])} for i in row] for q, row in enumerate(order.tolist())]
