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

__all__ = ["ARCHITECTURES", "ArchitectureConfig", "architecture_config"]


@dataclass(frozen=True)
class ArchitectureConfig:
    """How one transformers architecture (``config.model_type``) exports."""

    model_type: str
    inputs: tuple[str, ...]
    opset: int = 18
    min_cosine: float = 0.9999
    # ONNX Runtime's optimizer fuses every encoder family here with its BERT patterns.
    ort_model_type: str = "bert"

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

ARCHITECTURES: dict[str, ArchitectureConfig] = {
    cfg.model_type: cfg
    for cfg in (
        ArchitectureConfig("bert", _WITH_TYPES),
        ArchitectureConfig("roberta", _NO_TYPES),
        ArchitectureConfig("xlm-roberta", _NO_TYPES),
        ArchitectureConfig("camembert", _NO_TYPES),
        ArchitectureConfig("mpnet", _NO_TYPES),
        ArchitectureConfig("distilbert", _NO_TYPES),
        ArchitectureConfig("electra", _WITH_TYPES),
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
