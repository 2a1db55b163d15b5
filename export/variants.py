"""Export variants: each a graph derived from the fp32 artifact graph, gated on fidelity.

A variant is data (``VariantPlan``: format, precision, gate) plus one builder function. The
export stage builds each requested variant, validates it against PyTorch through the runtime,
and keeps it only if it passes its gate (DESIGN §6); a failing variant is reported, never
shipped. Builders live in their own modules (``optimize``, ``quantize``, ``openvino_ir``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import VariantFormat, VariantPrecision
from fastembed_rt.errors import ExportError
from fastembed_rt.export.validate import Fidelity

__all__ = [
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "BuildContext",
    "BuildResult",
    "Gate",
    "VariantPlan",
    "parse_variants",
]

logger = logging.getLogger("fastembed_rt.export")


@dataclass(frozen=True)
class Gate:
    """Fidelity a variant must reach against PyTorch (DESIGN §6)."""

    min_cosine: float | None = None
    mean_cosine: float | None = None
    max_stsb_drop: float | None = None  # Spearman ×100 points below PyTorch's
    min_batch_invariance: float = 0.9999  # a text's embedding alone vs inside a batch

    def check(self, fidelity: Fidelity) -> list[str]:
        """Every way ``fidelity`` misses this gate, one line each."""
        misses = []
        if self.min_cosine is not None and not fidelity.min_cosine >= self.min_cosine:
            misses.append(f"min cosine {fidelity.min_cosine:.6f} < {self.min_cosine}")
        if self.mean_cosine is not None and not fidelity.mean_cosine >= self.mean_cosine:
            misses.append(f"mean cosine {fidelity.mean_cosine:.6f} < {self.mean_cosine}")
        if (
            self.max_stsb_drop is not None
            and fidelity.stsb_spearman is not None
            and fidelity.stsb_spearman_torch is not None
            and fidelity.stsb_spearman_torch - fidelity.stsb_spearman > self.max_stsb_drop
        ):
            misses.append(
                f"STSb Spearman {fidelity.stsb_spearman:.2f} is more than {self.max_stsb_drop} below "
                f"PyTorch's {fidelity.stsb_spearman_torch:.2f}"
            )
        invariance = fidelity.batch_invariance_min_cosine
        if invariance is not None and not invariance >= self.min_batch_invariance:
            misses.append(
                f"embeddings depend on batch neighbours: min cosine alone vs batched {invariance:.6f} "
                f"< {self.min_batch_invariance}"
            )
        return misses


@dataclass
class BuildContext:
    """What a variant builder may use. ``base`` is the validated fp32 graph of the artifact."""

    root: Path
    base: Path
    backbone: Path  # the graph before the output stages: token_embeddings out
    model_type: str
    hidden_size: int
    num_heads: int
    graph_inputs: tuple[str, ...]
    calibration_texts: Sequence[str]
    append_stages: Callable[[Any], dict[str, Any]]  # adds the fp32 output + precision stages to a backbone graph
    # Re-validates a candidate file (relative to ``root``) as this variant; builders that search
    # (e.g. int8 exclusions) call it to test each candidate against the gate.
    check: Callable[[str], list[str]] | None = None


@dataclass
class BuildResult:
    """A built variant: its graph ``file``, a separate ``weights_file`` if it has one (hashed by the
    export stage), the ``engine_properties`` it must run with, and what the build did (``details``)."""

    file: str
    optimization: str
    details: dict[str, Any] = field(default_factory=dict)
    weights_file: str | None = None
    engine_properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantPlan:
    name: str
    format: VariantFormat
    precision: VariantPrecision
    gate: Gate
    builder: str  # "module:function" in fastembed_rt.export, imported only when built

    def build(self, context: BuildContext) -> BuildResult:
        import importlib

        module_name, function = self.builder.split(":")
        module = importlib.import_module(f"fastembed_rt.export.{module_name}")
        result: BuildResult = getattr(module, function)(context)
        return result


_FP32 = Gate(min_cosine=0.9999, max_stsb_drop=0.05)
_ONNX, _OPENVINO = VariantFormat.ONNX, VariantFormat.OPENVINO
VARIANTS: dict[str, VariantPlan] = {
    plan.name: plan
    for plan in (
        VariantPlan("fp32", _ONNX, VariantPrecision.FP32, _FP32, builder=""),
        VariantPlan("optimized", _ONNX, VariantPrecision.FP32, _FP32, builder="optimize:build_optimized"),
        VariantPlan("fp16", _ONNX, VariantPrecision.FP16, Gate(min_cosine=0.999), builder="optimize:build_fp16"),
        VariantPlan(
            "int8",
            _ONNX,
            VariantPrecision.INT8,
            Gate(mean_cosine=0.99, max_stsb_drop=1.0),
            builder="quantize:build_int8",
        ),
        VariantPlan("openvino", _OPENVINO, VariantPrecision.FP32, _FP32, builder="openvino_ir:build_openvino"),
        # bf16 has fewer mantissa bits than fp16: the fp16 gate (DESIGN §6) applies.
        VariantPlan(
            "openvino-bf16",
            _OPENVINO,
            VariantPrecision.BF16,
            Gate(min_cosine=0.999),
            builder="openvino_ir:build_openvino_bf16",
        ),
        VariantPlan(
            "openvino-int8",
            _OPENVINO,
            VariantPrecision.INT8,
            Gate(mean_cosine=0.99, max_stsb_drop=1.0),
            builder="openvino_ir:build_openvino_int8",
        ),
    )
}
DEFAULT_VARIANTS = ("fp32", "optimized", "fp16", "int8", "openvino", "openvino-bf16", "openvino-int8")


def parse_variants(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated variant names; ``fp32`` always first (every other variant derives from it)."""
    if names is None:
        return DEFAULT_VARIANTS
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in items if n not in VARIANTS]
    if unknown:
        raise ExportError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    return ("fp32", *[n for n in dict.fromkeys(items) if n != "fp32"])
