"""Per-architecture export settings, as data (optimum's exporter configs are the model).

Each entry names the graph inputs the backbone takes, the opset, the parity tolerance and the
model type ONNX Runtime's transformer optimizer knows it by; it also makes the sample inputs the
exporter traces with. Every entry is covered by a tiny-random-model test in
``tests/test_export_architectures.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastembed_rt.errors import ExportError

__all__ = ["ARCHITECTURES", "ArchitectureConfig", "architecture_config", "remote_code_config"]


@dataclass(frozen=True)
class ArchitectureConfig:
    """How one transformers architecture (``config.model_type``) exports."""

    model_type: str
    inputs: tuple[str, ...]
    opset: int = 18
    min_cosine: float = 0.9999
    # The model type ONNX Runtime's transformer optimizer fuses this family as: "bert" (LayerNorm,
    # Gelu, attention patterns) for the encoders, "qwen3" (RMSNorm into SimplifiedLayerNormalization)
    # for the RMSNorm decoders. None: it has no patterns for the family, and ``optimized`` is not built.
    ort_model_type: str | None = "bert"
    # Why an fp16 graph is not built for this family (None: fp16 is built and gated like any variant).
    no_fp16: str | None = None
    # Whether the fp16 graph fuses Add + LayerNormalization into SkipLayerNormalization. Off where ORT 1.32's
    # fusion breaks: ModernBERT's bias-free LayerNorm crashes it (IndexError); NomicBERT's, MPNet's and
    # DistilBERT's graphs then fail to load (SkipLayerNormalization bound to float16 and float).
    fp16_skip_layer_norm: bool = True
    # Whether position ids start after the padding id (transformers' create_position_ids_from_input_ids): such a
    # model holds max_position_embeddings - (padding_idx + 1) tokens (XLM-R: 514 positions, 512 tokens).
    positions_after_padding: bool = False
    # That padding_idx when the family fixes it (MPNet's embeddings use 1 whatever the config says); None: the
    # config's pad_token_id.
    padding_idx: int | None = None

    def sample_inputs(self, vocab_size: int) -> tuple[Any, ...]:
        """int64 torch tensors to trace with, one per graph input in ``inputs`` order.

        Batch 2 × sequence 16 with one padded row, so neither axis specialises to 0/1; token ids
        are drawn from a fixed seed below ``vocab_size``.
        """
        import torch

        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, max(6, min(vocab_size, 1000)), (2, 16), generator=gen)
        mask = torch.ones(2, 16, dtype=torch.int64)
        mask[1, 10:] = 0
        sample = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros(2, 16, dtype=torch.int64),
        }
        return tuple(sample[name] for name in self.inputs)


_WITH_TYPES = ("input_ids", "attention_mask", "token_type_ids")
_NO_TYPES = ("input_ids", "attention_mask")
# Gemma3's activations reach tens of thousands: fp16 overflows (microsoft/onnxruntime#32600), and TEI
# serves EmbeddingGemma in fp32 only. bf16 keeps fp32's range and is still built (openvino-bf16).
_GEMMA_FP16 = "Gemma3 activations overflow fp16 (microsoft/onnxruntime#32600); use fp32 or openvino-bf16"

ARCHITECTURES: dict[str, ArchitectureConfig] = {
    cfg.model_type: cfg
    for cfg in (
        ArchitectureConfig("bert", _WITH_TYPES),
        ArchitectureConfig("roberta", _NO_TYPES, positions_after_padding=True),
        ArchitectureConfig("xlm-roberta", _NO_TYPES, positions_after_padding=True),
        ArchitectureConfig("camembert", _NO_TYPES, positions_after_padding=True),
        ArchitectureConfig("mpnet", _NO_TYPES, fp16_skip_layer_norm=False, positions_after_padding=True, padding_idx=1),
        ArchitectureConfig("distilbert", _NO_TYPES, fp16_skip_layer_norm=False),
        ArchitectureConfig("electra", _WITH_TYPES),
        # Rotary families: cos/sin are computed in the graph from the sequence length (no cache traced at the
        # sample's length), and the mask is built in the graph from attention_mask, so every length exports.
        # ModernBERT: alternating global / sliding-window attention; NomicBERT (nomic-embed-text): SwiGLU.
        ArchitectureConfig("modernbert", _NO_TYPES, fp16_skip_layer_norm=False),
        ArchitectureConfig("nomic_bert", _WITH_TYPES, fp16_skip_layer_norm=False),
        # Decoders (causal attention, RMSNorm, last-token pooling in the model's Pooling module).
        ArchitectureConfig("qwen2", _NO_TYPES, ort_model_type="qwen3"),
        ArchitectureConfig("qwen3", _NO_TYPES, ort_model_type="qwen3"),
        ArchitectureConfig("mistral", _NO_TYPES, ort_model_type="qwen3"),
        # EmbeddingGemma: bidirectional attention when the config says use_bidirectional_attention.
        ArchitectureConfig("gemma3_text", _NO_TYPES, ort_model_type=None, no_fp16=_GEMMA_FP16),
    )
}


def architecture_config(model_type: str) -> ArchitectureConfig:
    """The export settings of ``model_type`` (``config.model_type`` of the transformers model)."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ExportError(
            f"architecture {model_type!r} has no export config yet; supported: {supported}. "
            "Add an ArchitectureConfig for it in export/architectures.py with a tiny-model test."
        ) from None


def remote_code_config(model: Any) -> ArchitectureConfig:
    """Export settings for a model whose class came from its repository (``trust_remote_code``).

    Its graph inputs are the token inputs its ``forward`` takes; ONNX Runtime's fusions are not
    applied (their patterns are for the families above); the fp32 parity gate still decides.
    """
    import inspect

    accepted = inspect.signature(model.forward).parameters
    inputs = tuple(name for name in _WITH_TYPES if name in accepted)
    if inputs[:2] != _NO_TYPES:
        raise ExportError(
            f"{type(model).__name__} (remote code) takes {list(accepted)}: it needs input_ids and attention_mask"
        )
    return ArchitectureConfig(str(model.config.model_type), inputs, ort_model_type=None)


def usable_positions(config: Any) -> int | None:
    """How many tokens a transformers ``config``'s position table holds: ``max_position_embeddings``, less the
    padding offset of the families that count positions after it; None when the config names no limit."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    family = ARCHITECTURES.get(str(getattr(config, "model_type", "")))
    if family is None or not family.positions_after_padding:
        return positions
    pad = family.padding_idx if family.padding_idx is not None else getattr(config, "pad_token_id", None)
    if isinstance(pad, int) and pad >= 0:
        return positions - (pad + 1)
    return positions
