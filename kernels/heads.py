"""Task heads after the backbone: cross-encoder score activation and SPLADE pooling with top-k pruning.

Specs (frozen dataclasses read by ``onnx_heads`` and by the manifest) and their numpy references,
which state the semantics exactly, as sentence-transformers 6 computes them:

- cross-encoder activation (``CrossEncoder.activation_fn``): ``identity``; ``sigmoid``
  ``1 / (1 + exp(-x))``; ``softmax`` over the label axis, ``exp(x - max) / sum(exp(x - max))``.
  ``Softmax()`` saved without ``dim`` acts on the label axis of ``[batch, labels]`` logits.
- SPLADE (``SpladePooling``): ``t = log1p(relu(logits * mask))`` (``log1p_relu`` applies ``log1p``
  twice), then ``max`` or ``sum`` over the sequence axis. Padding positions give ``t = 0``, so
  ``max`` pooling equals the maximum over valid tokens clipped at 0.
- top-k pruning (``select_max_active_dims``): per row, the ``k`` largest values stay, every other
  dimension becomes 0. Equal values at the cut keep the lower vocabulary index (ONNX ``TopK``'s rule;
  ``torch.topk`` leaves that order unspecified).

Only numpy; the runtime uses these references for per-call activation overrides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ClassifierActivation",
    "ClassifierHeadSpec",
    "SpladeActivation",
    "SpladePoolingStrategy",
    "SpladeSpec",
    "activate_scores",
    "prune_top_k",
    "sigmoid",
    "softmax",
    "splade_pool",
]


class ClassifierActivation(str, enum.Enum):
    IDENTITY = "identity"
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


@dataclass(frozen=True)
class ClassifierHeadSpec:
    """Sequence-classification logits ``[batch, num_labels]`` → scores with ``activation``."""

    num_labels: int
    activation: ClassifierActivation

    def to_dict(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "activation": self.activation.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierHeadSpec:
        return cls(int(data["num_labels"]), ClassifierActivation(data["activation"]))


class SpladePoolingStrategy(str, enum.Enum):
    MAX = "max"
    SUM = "sum"


class SpladeActivation(str, enum.Enum):
    RELU = "relu"
    LOG1P_RELU = "log1p_relu"


@dataclass(frozen=True)
class SpladeSpec:
    """Masked-LM logits ``[batch, seq, vocab_size]`` → one sparse ``[batch, vocab_size]`` row per text.

    ``max_active_dims`` is the model's default top-k (None: keep every active dimension); the graph
    takes the k of each call as an input.
    """

    vocab_size: int
    pooling: SpladePoolingStrategy = SpladePoolingStrategy.MAX
    activation: SpladeActivation = SpladeActivation.RELU
    max_active_dims: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "pooling": self.pooling.value,
            "activation": self.activation.value,
            "max_active_dims": self.max_active_dims,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpladeSpec:
        k = data.get("max_active_dims")
        return cls(
            int(data["vocab_size"]),
            SpladePoolingStrategy(data.get("pooling", "max")),
            SpladeActivation(data.get("activation", "relu")),
            None if k is None else int(k),
        )


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
