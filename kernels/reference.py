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
"""

from __future__ import annotations

import numpy as np

from fastembed_rt.kernels.spec import DenseActivation, DenseSpec, OutputStages, PoolingMode, PoolingSpec

__all__ = ["apply_dense", "apply_stages", "normalize", "pool", "pooling_mask"]

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
