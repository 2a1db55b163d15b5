"""Per-architecture export settings, as data (optimum's exporter configs are the model).

Each entry names the graph inputs the backbone takes, the opset and the parity tolerance.
Every entry is covered by a tiny-random-model test in ``tests/test_export_architectures.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastembed_rt.errors import ExportError

__all__ = ["ARCHITECTURES", "ArchitectureConfig", "architecture_config"]


@dataclass(frozen=True)
class ArchitectureConfig:
    model_type: str
    inputs: tuple[str, ...]
    opset: int = 18
    min_cosine: float = 0.9999


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
