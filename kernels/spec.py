"""Output-stage and task-head descriptions: data read by both the ONNX builders and the numpy reference.

Semantics follow sentence-transformers 6 (``sentence_transformers.sentence_transformer.modules.
pooling.Pooling``, ``base.modules.dense.Dense``, ``base.modules.normalize.Normalize``, the
CrossEncoder's activation and ``SpladePooling``); the reference module states them exactly. Every
graph input and output name the runtime feeds or reads is defined here, once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LOGITS",
    "MAX_ACTIVE_DIMS",
    "NORMALIZE_OUTPUT",
    "OUTPUT_DIM",
    "PROMPT_LENGTH",
    "QUANTIZE_RANGES",
    "SCORES",
    "SENTENCE_EMBEDDING",
    "SPARSE_INDICES",
    "SPARSE_VALUES",
    "TOKEN_EMBEDDINGS",
    "TOKEN_VECTORS",
    "ClassifierActivation",
    "ClassifierHeadSpec",
    "DenseActivation",
    "DenseSpec",
    "OutputStages",
    "PoolingMode",
    "PoolingSpec",
    "Precision",
    "SpladeActivation",
    "SpladePoolingStrategy",
    "SpladeSpec",
    "TokenStages",
]

# Graph input and output names: the contract between the graph builders and the runtime.
TOKEN_EMBEDDINGS = "token_embeddings"
SENTENCE_EMBEDDING = "sentence_embedding"
PROMPT_LENGTH = "prompt_length"
OUTPUT_DIM = "output_dim"
NORMALIZE_OUTPUT = "normalize_output"
QUANTIZE_RANGES = "quantize_ranges"
# Task heads: cross-encoder logits and scores, SPLADE's per-call top-k and its sparse outputs.
LOGITS = "logits"
SCORES = "scores"
MAX_ACTIVE_DIMS = "max_active_dims"
SPARSE_INDICES = "sparse_indices"
SPARSE_VALUES = "sparse_values"
# Late interaction (multi-vector): one projected, normalized vector per token position, padded [B,S,D].
TOKEN_VECTORS = "token_vectors"


class PoolingMode(str, enum.Enum):
    CLS = "cls"
    MEAN = "mean"
    MAX = "max"
    MEAN_SQRT_LEN_TOKENS = "mean_sqrt_len_tokens"
    WEIGHTEDMEAN = "weightedmean"
    LASTTOKEN = "lasttoken"


class Precision(str, enum.Enum):
    """Storage precision of a sentence embedding (sentence-transformers' ``precision``)."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    BINARY = "binary"
    UBINARY = "ubinary"

    @property
    def dtype(self) -> str:
        """numpy dtype name of the codes."""
        return {"binary": "int8", "ubinary": "uint8"}.get(self.value, self.value)

    @property
    def packed(self) -> bool:
        """True for the bit-packed precisions: 8 dimensions per byte."""
        return self in (Precision.BINARY, Precision.UBINARY)

    @property
    def output_name(self) -> str:
        """The graph output that carries embeddings of this precision."""
        return f"embedding_{self.value}"


class DenseActivation(str, enum.Enum):
    IDENTITY = "identity"
    TANH = "tanh"
    RELU = "relu"
    SIGMOID = "sigmoid"
    GELU = "gelu"
    SILU = "silu"


@dataclass(frozen=True)
class PoolingSpec:
    """Pool token embeddings into one vector per text.

    ``modes`` are concatenated in order (sentence-transformers allows several).
    ``include_prompt=False`` drops the first ``prompt_length`` valid tokens from the pool.
    """

    modes: tuple[PoolingMode, ...] = (PoolingMode.MEAN,)
    include_prompt: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"modes": [m.value for m in self.modes], "include_prompt": self.include_prompt}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolingSpec:
        return cls(tuple(PoolingMode(m) for m in data["modes"]), bool(data["include_prompt"]))


@dataclass(frozen=True, eq=False)
class DenseSpec:
    """``y = activation(x @ weight.T + bias)``; weight is ``[out_features, in_features]`` float32.

    The weights travel inside the graph; the manifest records only the shape and activation.
    """

    weight: np.ndarray
    bias: np.ndarray | None
    activation: DenseActivation = DenseActivation.IDENTITY

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "activation": self.activation.value,
        }


@dataclass(frozen=True)
class OutputStages:
    """Everything between the backbone's ``token_embeddings`` and ``sentence_embedding``."""

    pooling: PoolingSpec
    dense: tuple[DenseSpec, ...] = field(default_factory=tuple)
    normalize: bool = False

    def output_dim(self, hidden_size: int) -> int:
        if self.dense:
            return self.dense[-1].out_features
        return hidden_size * len(self.pooling.modes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling.to_dict(),
            "dense": [d.to_dict() for d in self.dense],
            "normalize": self.normalize,
        }


@dataclass(frozen=True)
class TokenStages:
    """Everything between the backbone's ``token_embeddings`` and a multi-vector model's ``token_vectors``:
    the token-level Dense projections (ColBERT's linear layer) and the per-token L2 normalization."""

    dense: tuple[DenseSpec, ...] = field(default_factory=tuple)
    normalize: bool = False

    def output_dim(self, hidden_size: int) -> int:
        return self.dense[-1].out_features if self.dense else hidden_size

    def to_dict(self) -> dict[str, Any]:
        return {"dense": [d.to_dict() for d in self.dense], "normalize": self.normalize}


class ClassifierActivation(str, enum.Enum):
    IDENTITY = "identity"
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"

    def __call__(self, logits: Any) -> Any:
        """The activation of logits ``[..., labels]`` (softmax over the last axis): numpy float32, or for a torch
        tensor (torch is loaded then, by the caller) the tensor's own sigmoid/softmax (its dtype, device and gradient
        kept), as sentence-transformers' ``model.activation_fn`` (a torch module) computes it."""
        import sys

        from fastembed_rt.kernels.reference import activate_scores  # here: reference imports this module

        torch = sys.modules.get("torch")
        if torch is not None and isinstance(logits, torch.Tensor):
            # the tensor's own methods, as torch.nn.Sigmoid/Softmax/Identity: its dtype, device and autograd kept
            if self is ClassifierActivation.SIGMOID:
                return logits.sigmoid()
            if self is ClassifierActivation.SOFTMAX:
                return logits.softmax(dim=-1)
            return logits
        return activate_scores(np.asarray(logits, dtype=np.float32), self)


@dataclass(frozen=True)
class ClassifierHeadSpec:
    """Sequence-classification logits ``[batch, num_labels]`` → scores with ``activation``."""

    num_labels: int
    activation: ClassifierActivation
    labels: tuple[str, ...] = ()  # the model config's id2label in id order (() in artifacts exported before them)
    # predict's default where a model was saved with an activation other than the fused one (CrossEncoder.save
    # after activation_fn="identity"); None: the fused one. Logits are a graph output, so any of them is exact.
    default_activation: ClassifierActivation | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"num_labels": self.num_labels, "activation": self.activation.value}
        if self.labels:
            data["labels"] = list(self.labels)
        if self.default_activation is not None and self.default_activation is not self.activation:
            data["default_activation"] = self.default_activation.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierHeadSpec:
        num_labels = int(data["num_labels"])
        labels = tuple(str(label) for label in data.get("labels") or ())
        if labels and len(labels) != num_labels:
            raise ValueError(f"classifier labels {list(labels)} do not match num_labels {num_labels}")
        default = data.get("default_activation")
        return cls(
            num_labels,
            ClassifierActivation(data["activation"]),
            labels,
            None if default is None else ClassifierActivation(default),
        )

    def label_names(self) -> tuple[str, ...]:
        """The labels, or transformers' defaults ``LABEL_0``... where the artifact has none."""
        return self.labels or tuple(f"LABEL_{i}" for i in range(self.num_labels))


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
