"""The variant registry: every graph an artifact can ship, keyed by task and variant name.

A variant is data (``VariantSpec``: format, precision, typed gate) plus one builder function
(``optimize``, ``quantize``, ``openvino_ir``). The artifact writer builds each requested variant,
validates it against PyTorch through the runtime and ships it only within its gate (DESIGN §6);
a variant that misses is recorded in ``rejected_variants``, never shipped. ``fp32`` has no
builder: it is the graph the task's exporter writes and every other variant derives from.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastembed_rt.artifact import Task, VariantFormat, VariantPrecision
from fastembed_rt.errors import ExportError
from fastembed_rt.export.build import Builder
from fastembed_rt.export.fidelity import CosineGate, Gate, Measured, ScoreGate, ToleranceGate
from fastembed_rt.export.openvino_ir import (
    build_openvino,
    build_openvino_bf16,
    build_openvino_int4,
    build_openvino_int8,
    build_openvino_int8_weights,
)
from fastembed_rt.export.optimize import build_fp16, build_optimized
from fastembed_rt.export.pack import build_packed
from fastembed_rt.export.quantize import build_int4, build_int8, build_int8_avx2, build_int8_weights

__all__ = ["VARIANTS", "VariantSpec", "parse_variants"]

logger = logging.getLogger("fastembed_rt.export")

F = TypeVar("F", bound=Measured)

_OPENVINO_INSTALL = "pip install 'fastembed-rt[export,openvino]'"


@dataclass(frozen=True)
class VariantSpec(Generic[F]):
    """One variant of one task: what it is, the gate it must pass and the function that builds it.

    ``default``: built when the caller names no variants. ``needs``: modules beyond the export
    extra that the builder imports (OpenVINO's), checked before the export starts.
    """

    name: str
    format: VariantFormat
    precision: VariantPrecision
    gate: Gate[F]
    build: Builder | None = None
    default: bool = True
    needs: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The modules in ``needs`` that are not installed."""
        return [module for module in self.needs if importlib.util.find_spec(module) is None]


def _by_name(*specs: VariantSpec[Any]) -> dict[str, VariantSpec[Any]]:
    return {spec.name: spec for spec in specs}


_ONNX, _OPENVINO = VariantFormat.ONNX, VariantFormat.OPENVINO
_FP32, _FP16, _BF16 = VariantPrecision.FP32, VariantPrecision.FP16, VariantPrecision.BF16
_INT8, _INT4 = VariantPrecision.INT8, VariantPrecision.INT4
_FP32_GATE = CosineGate(min_cosine=0.9999, max_stsb_drop=0.05)
_FP16_GATE = CosineGate(min_cosine=0.999)
# The worst text as well as the mean (DESIGN §6): a static int8 IR once shipped at mean cosine 0.998
# with one held-out text at 0.91.
_INT8_GATE = CosineGate(min_cosine=0.98, mean_cosine=0.99, max_stsb_drop=1.0)
_SCORE_TOLERANCE = ToleranceGate(atol=1e-4, rtol=1e-4)
# The absolute term only forgives dimensions at the activation's edge (weights below 1e-6, where a last-bit
# difference in the logits decides whether relu lets them through).
_SPARSE_TOLERANCE = ToleranceGate(atol=1e-5, rtol=1e-4)
# int8 keeps reranking order per label and does not let batch neighbours move a score.
_RERANK_GATE = ScoreGate(0.99, batch_tolerance=_SCORE_TOLERANCE)
# The bi-encoder int8 gate on the vocabulary-sized vectors.
_SPARSE_INT8_GATE = CosineGate(mean_cosine=0.99)
_OV = ("openvino",)
_NNCF = (*_OV, "nncf")

VARIANTS: dict[Task, dict[str, VariantSpec[Any]]] = {
    Task.EMBEDDING: _by_name(
        VariantSpec("fp32", _ONNX, _FP32, _FP32_GATE),
        VariantSpec("optimized", _ONNX, _FP32, _FP32_GATE, build_optimized),
        # optimized, fed without padding: for batches of unrelated lengths (a server's), see fastembed_rt.packing.
        VariantSpec("packed", _ONNX, _FP32, _FP32_GATE, build_packed),
        VariantSpec("fp16", _ONNX, _FP16, _FP16_GATE, build_fp16),
        VariantSpec("int8", _ONNX, _INT8, _INT8_GATE, build_int8),
        # int8's scheme with weights in [-64, 64]: the fast exact 8-bit kernel on x86 without VNNI (export.smoothquant).
        VariantSpec("int8-avx2", _ONNX, _INT8, _INT8_GATE, build_int8_avx2),
        VariantSpec("openvino", _OPENVINO, _FP32, _FP32_GATE, build_openvino, needs=_OV),
        # bf16 has fewer mantissa bits than fp16: the fp16 gate (DESIGN §6) applies.
        VariantSpec("openvino-bf16", _OPENVINO, _BF16, _FP16_GATE, build_openvino_bf16, needs=_OV),
        VariantSpec("openvino-int8", _OPENVINO, _INT8, _INT8_GATE, build_openvino_int8, needs=_NNCF),
        # Weight-only (fp32 activations), for large models, where reading the weights is what takes the
        # time: built only when named. On all-MiniLM-L6-v2 none ran faster than int8 / openvino-int8.
        VariantSpec("int8-weights", _ONNX, _INT8, _INT8_GATE, build_int8_weights, default=False),
        VariantSpec("int4", _ONNX, _INT4, _INT8_GATE, build_int4, default=False),
        VariantSpec(
            "openvino-int8-weights",
            _OPENVINO,
            _INT8,
            _INT8_GATE,
            build_openvino_int8_weights,
            default=False,
            needs=_NNCF,
        ),
        VariantSpec("openvino-int4", _OPENVINO, _INT4, _INT8_GATE, build_openvino_int4, default=False, needs=_NNCF),
    ),
    # DESIGN §6 has no row for heads: each gets the gate that matches its use, against PyTorch.
    Task.CROSS_ENCODER: _by_name(
        VariantSpec("fp32", _ONNX, _FP32, _SCORE_TOLERANCE),
        VariantSpec("optimized", _ONNX, _FP32, _SCORE_TOLERANCE, build_optimized),
        VariantSpec("int8", _ONNX, _INT8, _RERANK_GATE, build_int8, default=False),
        VariantSpec("int8-avx2", _ONNX, _INT8, _RERANK_GATE, build_int8_avx2, default=False),
    ),
    # Every kept token vector against PyTorch, by cosine (DESIGN §6's fp32 row, per token).
    Task.MULTI_VECTOR: _by_name(VariantSpec("fp32", _ONNX, _FP32, CosineGate(min_cosine=0.9999))),
    Task.SPARSE: _by_name(
        VariantSpec("fp32", _ONNX, _FP32, _SPARSE_TOLERANCE),
        VariantSpec("optimized", _ONNX, _FP32, _SPARSE_TOLERANCE, build_optimized),
        VariantSpec("int8", _ONNX, _INT8, _SPARSE_INT8_GATE, build_int8, default=False),
        VariantSpec("int8-avx2", _ONNX, _INT8, _SPARSE_INT8_GATE, build_int8_avx2, default=False),
    ),
}


def parse_variants(names: str | Sequence[str] | None, task: Task) -> tuple[VariantSpec[Any], ...]:
    """The variants to build for a ``task`` artifact, ``fp32`` first (every other variant derives from it).

    ``names``: comma-separated or a sequence; None: the task's default variants, less those whose
    engine is not installed here (logged).

    Raises:
        ExportError: an unknown name (listing the valid ones) or a named variant whose engine is not installed.
    """
    registry = VARIANTS[task]
    if names is None:
        defaults = [spec for spec in registry.values() if spec.default]
        for spec in defaults:
            if spec.missing():
                logger.warning("variant %s is not built: %s (%s)", spec.name, _missing(spec), _OPENVINO_INSTALL)
        return tuple(spec for spec in defaults if not spec.missing())
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else map(str, names))]
    if not any(items):  # as the CLI refuses --variants "": an empty list is not a choice of fp32 alone
        raise ExportError("no variant named; name some (fp32 alone: 'fp32') or pass None for the defaults")
    unknown = [n for n in items if n and n not in registry]
    if unknown:
        raise ExportError(f"unknown variant(s) {', '.join(unknown)} for {task} artifacts; valid: {', '.join(registry)}")
    chosen = [registry[n] for n in dict.fromkeys(["fp32", *items]) if n]
    for spec in chosen:
        if spec.missing():
            raise ExportError(f"variant {spec.name} cannot be built: {_missing(spec)}; {_OPENVINO_INSTALL}")
    return tuple(chosen)


def _missing(spec: VariantSpec[Any]) -> str:
    return f"{', '.join(spec.missing())} is not installed"
