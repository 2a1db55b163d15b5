"""Numpy references of the output stages: the executable statement of their semantics.

All inputs are ``token_embeddings`` float32 ``[batch, seq, hidden]``, ``attention_mask`` int
``[batch, seq]`` (1 = real token) and, when ``include_prompt=False``, ``prompt_length`` int
``[batch]``. Exactly as sentence-transformers 6:

- prompt exclusion: with ``first = argmax(attention_mask)`` (first real token; 0 for an all-zero
  row), positions ``< first + prompt_length`` are removed from the pooling mask;
- ``cls``: the token at ``argmax(pool_mask)`` (first pooled token);
- ``mean``: ``sum(x * m) / max(sum(m), 1e-9)``; ``mean_sqrt_len_tokens`` divides by the square root;
- ``max``: maximum over pooled tokens, ``-inf`` where a row has none;
- ``weightedmean``: weights ``position + 1 - first`` (positions of the *unexcluded* mask), so
  excluding a prompt keeps the remaining tokens' original weights; ``/ max(sum(w * m), 1e-9)``;
- ``lasttoken``: the last pooled token, a zero vector for a row with none;
- dense: ``activation(x @ W.T + b)``; normalize: ``x / max(||x||_2, 1e-12)`` (torch's F.normalize).
- token stages (multi-vector models): the same dense layers and normalize applied to every token
  position of ``[batch, seq, hidden]``, padding included (the runtime drops those rows afterwards).

Task heads, as sentence-transformers 6 computes them (the runtime also uses these for per-call
activation overrides):

- cross-encoder activation (``CrossEncoder.activation_fn``): ``identity``; ``sigmoid``
  ``1 / (1 + exp(-x))``; ``softmax`` over the label axis, ``exp(x - max) / sum(exp(x - max))``.
  ``Softmax()`` saved without ``dim`` acts on the label axis of ``[batch, labels]`` logits.
- SPLADE (``SpladePooling``): ``t = log1p(relu(logits * mask))`` (``log1p_relu`` applies ``log1p``
  twice), then ``max`` or ``sum`` over the sequence axis. Padding positions give ``t = 0``, so
  ``max`` pooling equals the maximum over valid tokens clipped at 0.
- top-k pruning (``select_max_active_dims``): per row, the ``k`` largest values stay, every other
  dimension becomes 0. Equal values at the cut keep the lower vocabulary index (ONNX ``TopK``'s rule;
  ``torch.topk`` leaves that order unspecified). ONNX Runtime's ``TopK`` keeps that rule for a row alone but not
  always inside a batch (measured: a row with values tied on a 0.1 grid at k = 5,000 of 30,522 kept another index
  batched), so an exact tie at the cut may resolve by batch in the graph, as it may in torch.
"""

from __future__ import annotations

import numpy as np

from fastembed_rt.kernels.spec import (
    ClassifierActivation,
    DenseActivation,
    DenseSpec,
    OutputStages,
    PoolingMode,
    PoolingSpec,
    Precision,
    SpladeActivation,
    SpladePoolingStrategy,
    SpladeSpec,
    TokenStages,
)

__all__ = [
    "activate_scores",
    "apply_dense",
    "apply_stages",
    "apply_token_stages",
    "matryoshka",
    "normalize",
    "pool",
    "pooling_mask",
    "prune_top_k",
    "quantize",
    "sigmoid",
    "softmax",
    "splade_pool",
]

_MEAN_EPS = np.float32(1e-9)
_NORM_EPS = np.float32(1e-12)


def pooling_mask(attention_mask: np.ndarray, prompt_length: np.ndarray | None) -> np.ndarray:
    """The attention mask with prompt tokens removed; int64 ``[batch, seq]``."""
    mask = attention_mask.astype(np.int64)
    if prompt_length is None:
        return mask
    first = mask.argmax(axis=1)
    positions = np.arange(mask.shape[1])[None, :]
    keep = positions >= (first + np.asarray(prompt_length, dtype=np.int64))[:, None]
    return mask * keep


def pool(
    token_embeddings: np.ndarray,
    attention_mask: np.ndarray,
    spec: PoolingSpec,
    prompt_length: np.ndarray | None = None,
) -> np.ndarray:
    """Pool ``[batch, seq, hidden]`` to float32 ``[batch, hidden * len(spec.modes)]``."""
    x = token_embeddings.astype(np.float32)
    batch, seq, hidden = x.shape
    original = attention_mask.astype(np.int64)
    mask = pooling_mask(original, None if spec.include_prompt else prompt_length)
    mask_f = mask.astype(np.float32)[:, :, None]
    rows = np.arange(batch)
    parts: list[np.ndarray] = []
    for mode in spec.modes:
        if mode is PoolingMode.CLS:
            parts.append(x[rows, mask.argmax(axis=1)])
        elif mode in (PoolingMode.MEAN, PoolingMode.MEAN_SQRT_LEN_TOKENS):
            total = (x * mask_f).sum(axis=1)
            count = np.maximum(mask_f.sum(axis=1), _MEAN_EPS)
            parts.append(total / (count if mode is PoolingMode.MEAN else np.sqrt(count)))
        elif mode is PoolingMode.MAX:
            parts.append(np.where(mask_f == 0, np.float32(-np.inf), x).max(axis=1))
        elif mode is PoolingMode.WEIGHTEDMEAN:
            weights = (np.arange(1, seq + 1)[None, :] - original.argmax(axis=1)[:, None]).astype(np.float32)
            weighted = mask.astype(np.float32) * weights
            total = (x * weighted[:, :, None]).sum(axis=1)
            parts.append(total / np.maximum(weighted.sum(axis=1, keepdims=True), _MEAN_EPS))
        elif mode is PoolingMode.LASTTOKEN:
            last = seq - 1 - mask[:, ::-1].argmax(axis=1)
            has_token = mask.max(axis=1) > 0
            index = np.where(has_token, last, 0)
            parts.append((x * mask_f)[rows, index])
        else:  # pragma: no cover - the enum is closed
            raise ValueError(f"unknown pooling mode {mode!r}")
    return np.concatenate(parts, axis=-1).astype(np.float32).reshape(batch, hidden * len(spec.modes))


def _activate(x: np.ndarray, activation: DenseActivation) -> np.ndarray:
    if activation is DenseActivation.IDENTITY:
        return x
    if activation is DenseActivation.TANH:
        return np.tanh(x)
    if activation is DenseActivation.RELU:
        return np.maximum(x, 0)
    if activation is DenseActivation.SIGMOID:
        return 1 / (1 + np.exp(-x))
    if activation is DenseActivation.SILU:
        return x / (1 + np.exp(-x))
    if activation is DenseActivation.GELU:
        from math import erf, sqrt

        return 0.5 * x * (1 + np.vectorize(erf)(x / sqrt(2)))
    raise ValueError(f"unknown dense activation {activation!r}")  # pragma: no cover


def apply_dense(x: np.ndarray, dense: DenseSpec) -> np.ndarray:
    """``activation(x @ weight.T + bias)``, float32 ``[batch, out_features]``."""
    y = x.astype(np.float64) @ dense.weight.astype(np.float64).T
    if dense.bias is not None:
        y = y + dense.bias.astype(np.float64)
    return _activate(y, dense.activation).astype(np.float32)


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows as ``torch.nn.functional.normalize`` (eps 1e-12), float32."""
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=-1, keepdims=True))
    return (x / np.maximum(norm, _NORM_EPS)).astype(np.float32)


def apply_stages(
    token_embeddings: np.ndarray,
    attention_mask: np.ndarray,
    stages: OutputStages,
    prompt_length: np.ndarray | None = None,
) -> np.ndarray:
    """Every stage in order: pool, dense layers, normalize. float32 ``[batch, dim]``."""
    x = pool(token_embeddings, attention_mask, stages.pooling, prompt_length)
    for dense in stages.dense:
        x = apply_dense(x, dense)
    if stages.normalize:
        x = normalize(x)
    return x


def apply_token_stages(token_embeddings: np.ndarray, stages: TokenStages) -> np.ndarray:
    """Dense layers then normalize on every token vector: float32 ``[batch, seq, dim]``."""
    x = np.asarray(token_embeddings, dtype=np.float32)
    for dense in stages.dense:
        x = apply_dense(x, dense)
    return normalize(x) if stages.normalize else x


def matryoshka(x: np.ndarray, output_dim: int, normalize_output: bool) -> np.ndarray:
    """Keep the first ``output_dim`` dimensions; L2-normalize them when ``normalize_output``."""
    sliced = x[:, :output_dim].astype(np.float32)
    return normalize(sliced) if normalize_output else sliced


def quantize(x: np.ndarray, precision: Precision, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize float32 ``[n, dim]`` rows exactly as ``sentence_transformers.quantize_embeddings``.

    - ``uint8``: ``clip(floor((x - min) / step), 0, 255)`` with ``step = (max - min) / 255`` in
      float32 (a zero step becomes 1); ``int8`` is that code minus 128. ``ranges`` is ``[2, dim]``
      (row 0 min, row 1 max), fixed by calibration, never taken from the batch.
    - ``ubinary``: bits ``x > 0`` packed 8 per byte, most significant bit first, the last byte
      zero-padded (``numpy.packbits``), ``[n, ceil(dim / 8)]`` uint8; ``binary`` is that byte
      minus 128 as int8.
    - ``float32``: ``x`` as float32.

    float64 rows are quantized in float64 against the float32 ranges, as sentence-transformers computes in the
    input's dtype (a value on a bucket's edge would take another code in float32); other floats in float32.
    """
    x = np.asarray(x)
    if x.dtype.kind in "iu" and precision is not Precision.FLOAT32:
        x = x.astype(np.float64)  # integers in float64, as sentence-transformers computes an int64 input
    if x.dtype != np.float64 or precision is Precision.FLOAT32:
        x = x.astype(np.float32, copy=False)
    if precision is Precision.FLOAT32:
        return x
    if precision in (Precision.INT8, Precision.UINT8):
        if ranges is None:
            raise ValueError(f"{precision.value} quantization needs ranges [2, dim]")
        bounds = np.asarray(ranges, dtype=np.float32)
        starts = bounds[0]
        steps = (bounds[1] - starts) / np.float32(255)
        steps = np.where(steps == 0, np.float32(1), steps)
        codes = np.clip(np.floor((x - starts) / steps), 0, 255)
        if precision is Precision.UINT8:
            return codes.astype(np.uint8)
        return (codes - 128).astype(np.int8)
    packed = np.packbits(x > 0, axis=-1)
    if precision is Precision.UBINARY:
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32, without overflow warnings for large ``|x|``."""
    x64 = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x64)
    positive = x64 >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x64[positive]))
    exp_x = np.exp(x64[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out.astype(np.float32)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``, float32."""
    x64 = np.asarray(x, dtype=np.float64)
    shifted = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (shifted / shifted.sum(axis=axis, keepdims=True)).astype(np.float32)


def activate_scores(logits: np.ndarray, activation: ClassifierActivation) -> np.ndarray:
    """Apply a cross-encoder activation to ``[batch, num_labels]`` logits; float32, same shape."""
    if activation is ClassifierActivation.IDENTITY:
        return np.asarray(logits, dtype=np.float32)
    if activation is ClassifierActivation.SIGMOID:
        return sigmoid(logits)
    if activation is ClassifierActivation.SOFTMAX:
        return softmax(logits, axis=-1)
    raise ValueError(f"unknown classifier activation {activation!r}")  # pragma: no cover - closed enum


def splade_pool(logits: np.ndarray, attention_mask: np.ndarray, spec: SpladeSpec) -> np.ndarray:
    """SPLADE pooling of ``[batch, seq, vocab]`` logits with an int ``[batch, seq]`` mask; float32 ``[batch, vocab]``.

    The order of operations is sentence-transformers' own: mask, relu, log1p (twice for
    ``log1p_relu``), then pool over the sequence.
    """
    x = np.asarray(logits, dtype=np.float32) * attention_mask.astype(np.float32)[:, :, None]
    t = np.log1p(np.maximum(x, np.float32(0)))
    if spec.activation is SpladeActivation.LOG1P_RELU:
        t = np.log1p(t)
    if spec.pooling is SpladePoolingStrategy.MAX:
        return t.max(axis=1).astype(np.float32)
    return t.sum(axis=1, dtype=np.float32)


def prune_top_k(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of each ``[batch, vocab]`` row, as the graph returns them.

    Returns ``(indices int64, values float32)``, both ``[batch, width]`` with
    ``width = min(k, most active dimensions of any row)``, each row by decreasing value (equal
    values: lower index first). Entries with value 0 are padding of rows with fewer active
    dimensions, not active dimensions.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    values = np.asarray(embeddings, dtype=np.float32)
    width = min(k, int((values > 0).sum(axis=1).max(initial=0)))
    order = np.argsort(-values, axis=1, kind="stable")[:, :width]
    return order.astype(np.int64), np.take_along_axis(values, order, axis=1)
