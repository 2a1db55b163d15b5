"""``int8`` variants of CrossEncoder and SPLADE artifacts: the bi-encoder's int8 scheme under an fp32 head.

The backbone (with its classifier or masked-LM projection, which end in ``logits``) is quantized
exactly like the bi-encoder's ``int8`` variant (``quantize.quantize_int8``: 8-bit MatMulNBits,
per-row activations, an exclusion ladder), then the fused head (activation, or SPLADE's
log(1 + relu) max-pool and top-k) is appended in fp32. DESIGN §6 has no row for heads, so each
head gets the gate that matches its use, checked against PyTorch on a held-out set (the parity
grid plus STSb dev pairs or sentences when present):

- cross-encoder: the Spearman correlation of int8 and PyTorch scores ≥ ``MIN_SCORE_SPEARMAN``
  for each label (reranking keeps its order);
- SPLADE: mean cosine of the vocabulary-sized vectors ≥ ``MIN_SPARSE_MEAN_COSINE``, as the
  bi-encoder int8 gate.

Both also hold a text's output alone equal to its output inside a batch (int8 must not make
results depend on batch neighbours). A variant that misses is recorded in ``rejected_variants``
with every attempt, never shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import Manifest, Variant, VariantFormat, VariantPrecision, file_sha256
from fastembed_rt.errors import ExportError

__all__ = [
    "HEAD_VARIANTS",
    "MIN_BATCH_INVARIANCE",
    "MIN_SCORE_SPEARMAN",
    "MIN_SPARSE_MEAN_COSINE",
    "build_head_int8",
    "parse_head_variants",
]

logger = logging.getLogger("fastembed_rt.export")

HEAD_VARIANTS = ("fp32", "int8")
INT8_FILE = "onnx/model_int8.onnx"
MIN_SCORE_SPEARMAN = 0.99
MIN_SPARSE_MEAN_COSINE = 0.99
MIN_BATCH_INVARIANCE = 0.9999

# validate(manifest root) -> (fidelity numbers, gate misses)
Validate = Callable[[Path], tuple[dict[str, Any], list[str]]]


def parse_head_variants(names: str | Sequence[str] | None, task: str) -> tuple[str, ...]:
    """The variants to build for a head artifact; ``fp32`` always first."""
    if names is None:
        return ("fp32",)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n) for n in names]
    unknown = [n for n in items if n and n not in HEAD_VARIANTS]
    if unknown:
        raise ExportError(
            f"{task} artifacts have the variants {', '.join(HEAD_VARIANTS)}; got {', '.join(unknown)} "
            "(the other bi-encoder variants are not built for heads yet)"
        )
    return ("fp32", *[n for n in HEAD_VARIANTS[1:] if n in items])


def build_head_int8(
    manifest: Manifest,
    backbone_path: Path,
    append_head: Callable[[Any], dict[str, Any]],
    validate: Validate,
) -> Manifest:
    """Build, validate and gate the int8 variant of a head artifact; returns the updated manifest.

    ``manifest`` is the validated fp32 artifact (written in ``manifest.root``); the returned one
    lists the int8 variant with its fidelity, or a ``rejected_variants`` entry with the reasons.
    """
    import onnx

    from fastembed_rt.export.quantize import quantize_int8

    root = manifest.root
    backbone = onnx.load(str(backbone_path))
    seen: dict[str, Any] = {}

    def entry(details: dict[str, Any], fidelity: dict[str, Any] | None = None) -> Variant:
        path = root / INT8_FILE
        return Variant(
            name="int8",
            file=INT8_FILE,
            format=VariantFormat.ONNX,
            precision=VariantPrecision.INT8,
            optimization="int8",
            size=path.stat().st_size,
            sha256=file_sha256(path),
            fidelity=fidelity or {},
            stage_counts=details,
        )

    def try_candidate(model: Any, details: dict[str, Any]) -> list[str]:
        details.update(append_head(model))
        onnx.save(model, str(root / INT8_FILE))
        replace(manifest, variants=(*manifest.variants, entry(details))).write()
        try:
            fidelity, misses = validate(root)
        finally:
            manifest.write()
        seen["fidelity"] = fidelity
        return misses

    try:
        details = quantize_int8(backbone, try_candidate)
    except Exception as exc:  # a variant that cannot be built is reported, and the export goes on
        (root / INT8_FILE).unlink(missing_ok=True)
        reasons = [str(exc) if isinstance(exc, ExportError) else f"build failed: {type(exc).__name__}: {exc}"]
        logger.warning("variant int8 misses its gate and is not shipped: %s", reasons[0])
        rejected: dict[str, Any] = {"name": "int8", "reasons": reasons}
        if "fidelity" in seen:
            rejected["fidelity"] = seen["fidelity"]
        updated = replace(manifest, rejected_variants=(*manifest.rejected_variants, rejected))
    else:
        updated = replace(manifest, variants=(*manifest.variants, entry(details, seen["fidelity"])))
    updated.write()
    return updated
