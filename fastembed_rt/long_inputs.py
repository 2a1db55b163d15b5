"""Inputs longer than ``max_seq_length``: truncate (counted), refuse, or chunk and pool.

``LongInputs`` names the policy. With ``"chunk"`` an over-long input is cut into windows of at most
``max_seq_length`` tokens (``Tokenizer.encode_windows``), every window runs in the ordinary
length-sorted, token-budgeted batches, and the windows of one input are pooled back into one
result. The pooling functions here are the numpy statement of that semantics:

- dense (``pool_windows``): the mean of the windows' embeddings weighted by the number of the
  input's own tokens each window holds (special and prompt tokens not counted; overlapping tokens
  count in every window that holds them), then L2-normalized (``x / max(||x||, 1e-12)``) when the
  model normalizes. An input with one window keeps that window's row unchanged.
- sparse (``max_pool_sparse``): the element-wise maximum of the windows' sparse vectors (SPLADE's
  own pooling over tokens), then the top-k of the result. Each window's top-k suffices: a dimension
  in the pooled top-k holds its maximum in some window, where fewer than k dimensions are larger.
- scores (``max_pool_scores``): a (query, document) pair's best window's (the highest score; of several labels,
  the row whose top label scores highest).
"""

from __future__ import annotations

import enum

import numpy as np

from fastembed_rt.errors import InputError

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "LongInputs",
    "long_inputs_policy",
    "max_pool_scores",
    "max_pool_sparse",
    "pool_windows",
    "window_bounds",
]

_NORM_EPS = np.float32(1e-12)
# Tokens consecutive windows share by default: context across each cut for 1/8 more work at 256 tokens.
DEFAULT_CHUNK_OVERLAP = 32


class LongInputs(str, enum.Enum):
    """What happens to an input longer than ``max_seq_length`` tokens."""

    TRUNCATE = "truncate"  # cut at max_seq_length (counted in last_encode_stats.truncated), as sentence-transformers
    ERROR = "error"  # an InputError naming the first such input and its token count
    CHUNK = "chunk"  # windows of max_seq_length tokens, pooled back into one result per input


def long_inputs_policy(value: str | LongInputs) -> LongInputs:
    """``value`` as a ``LongInputs``, or an ``InputError`` listing the valid ones."""
    try:
        return LongInputs(value)
    except ValueError:
        valid = ", ".join(repr(p.value) for p in LongInputs)
        raise InputError(f"long_inputs {value!r} is not known; valid: {valid}") from None


def window_bounds(owner: np.ndarray, inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` row indices of each input's windows; ``owner`` is sorted (windows are consecutive)."""
    starts = np.searchsorted(owner, np.arange(inputs), side="left")
    ends = np.searchsorted(owner, np.arange(inputs), side="right")
    return starts.astype(np.int64), ends.astype(np.int64)


def pool_windows(rows: np.ndarray, owner: np.ndarray, weights: np.ndarray, inputs: int, normalize: bool) -> np.ndarray:
    """One float32 ``[inputs, dim]`` embedding per input from its windows' ``rows`` (see the module docstring)."""
    rows = np.asarray(rows, dtype=np.float32)
    starts, ends = window_bounds(owner, inputs)
    out = np.empty((inputs, rows.shape[1]), dtype=np.float32)
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        if end - start == 1:
            out[i] = rows[start]
            continue
        w = np.asarray(weights[start:end], dtype=np.float64)
        pooled = (rows[start:end].astype(np.float64) * w[:, None]).sum(axis=0) / max(w.sum(), 1.0)
        if normalize:
            pooled = pooled / max(float(np.linalg.norm(pooled)), float(_NORM_EPS))
        out[i] = pooled
    return out


def max_pool_sparse(
    indices: list[np.ndarray], values: list[np.ndarray], owner: np.ndarray, inputs: int, k: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per input, the element-wise maximum of its windows' sparse rows, pruned to the ``k`` largest.

    ``indices[w]`` / ``values[w]``: window ``w``'s active dimensions and weights (> 0). Returns per
    input its dimensions in ascending order and their weights; equal weights at the cut keep the
    lower dimension (ONNX TopK's rule, as the graph prunes).
    """
    starts, ends = window_bounds(owner, inputs)
    out_indices: list[np.ndarray] = []
    out_values: list[np.ndarray] = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start == 1:
            out_indices.append(indices[start])
            out_values.append(values[start])
            continue
        dims = np.concatenate(indices[start:end]) if end > start else np.empty(0, np.int64)
        weights = np.concatenate(values[start:end]) if end > start else np.empty(0, np.float32)
        unique, inverse = np.unique(dims, return_inverse=True)
        pooled = np.zeros(unique.size, dtype=np.float32)
        np.maximum.at(pooled, inverse, weights)
        keep = np.lexsort((unique, -pooled))[:k]  # largest first; ties: lower dimension
        keep.sort()
        out_indices.append(unique[keep].astype(np.int64))
        out_values.append(pooled[keep])
    return out_indices, out_values


def max_pool_scores(scores: np.ndarray, owner: np.ndarray, inputs: int) -> np.ndarray:
    """Per input, the scores of its best window: ``[windows]`` scores, the highest; ``[windows, labels]``, the whole
    row of the window whose top label scores highest. A row is one window's, never per-label maxima of different
    windows: those of a softmax over 3 labels summed to ~2."""
    scores = np.asarray(scores, dtype=np.float32)
    starts, ends = window_bounds(owner, inputs)
    if not inputs:
        return scores[:0]
    top = scores if scores.ndim == 1 else scores.max(axis=1)
    best = [start + int(np.argmax(top[start:end])) for start, end in zip(starts.tolist(), ends.tolist())]
    return scores[best]
