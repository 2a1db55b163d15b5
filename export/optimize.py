"""``optimized`` and ``fp16`` variants: ONNX Runtime's transformer fusions and fp16 conversion.

Both work on the backbone graph (token_embeddings out) and re-append the fp32 output stages:
ONNX Runtime's symbolic shape inference, which its fusions need, does not get through the
pooling/precision stages, and the stages are cheap and numerically sensitive, so they stay fp32.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from fastembed_rt.export.build import BuildContext, BuildResult, NotApplicable
from fastembed_rt.export.onnx_files import save_graph

__all__ = ["build_fp16", "build_optimized", "optimize_backbone"]

logger = logging.getLogger("fastembed_rt.export")

# Kept in fp32 in the fp16 graph: reductions and normalisations lose too much in fp16.
_FP16_KEEP_FP32 = [
    "LayerNormalization",
    "SkipLayerNormalization",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceL2",
    "Pow",
    "Sqrt",
    "Erf",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
]


def optimize_backbone(
    context: BuildContext, *, skip_layer_norm: bool, attention: bool = True
) -> tuple[Any, dict[str, int]]:
    """The backbone after our attention fusion (``attention``) and ONNX Runtime's transformer fusions.

    ``skip_layer_norm``: fuse Add + LayerNormalization into ``SkipLayerNormalization``. Off for the
    CPU graph: ONNX Runtime 1.32's CPU SkipLayerNormalization kernel made all-MiniLM-L6-v2 13 % slower
    than Add + LayerNormalization on STSb sentences here (992 against 1,127 sentences/s, 2 threads);
    on for the fp16 graph, which is for GPUs. Returns (ModelProto, fused-op counts).
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from fastembed_rt.export.fuse_attention import fuse_attention

    source = context.backbone
    backbone = onnx.load(str(source.path))
    model_type = source.architecture.ort_model_type
    if model_type is None:  # ONNX Runtime has no fusion patterns for this family: the plain backbone
        return backbone, {}
    attention_blocks = fuse_attention(backbone, source.num_heads) if attention else 0
    fusions = FusionOptions(model_type)
    fusions.enable_skip_layer_norm = skip_layer_norm
    fusions.enable_bias_skip_layer_norm = skip_layer_norm
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        optimized = optimize_model(
            backbone,
            model_type=model_type,
            num_heads=source.num_heads,
            hidden_size=source.hidden_size,
            optimization_options=fusions,
            opt_level=0,  # graph fusions only; ORT's own level-2+ optimizations run at session load
        )
    fused = {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}
    fused["Attention"] = attention_blocks  # ORT counts the Attention nodes in the graph: ours, as it fuses none here
    model = optimized.model
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model, fused


def _save(context: BuildContext, model: Any, file: str, details: dict[str, Any]) -> BuildResult:
    details.update(context.append_stages(model))
    details["op_counts"] = dict(Counter(node.op_type for node in model.graph.node).most_common(12))
    path = context.root / file
    weights = save_graph(model, path, external=context.backbone.external_data)
    weights_file = None if weights is None else str(Path(file).parent / weights)
    return BuildResult(file=file, optimization=details.pop("optimization"), details=details, weights_file=weights_file)


# ONNX Runtime's transformer optimizer works on the graph in memory, as one protobuf message: under 2 GiB
# whatever the file layout (microsoft/onnxruntime#15349). A little is left for the graph itself.
OPTIMIZER_MAX_WEIGHT_BYTES = (2 << 30) - (64 << 20)


def _over_optimizer_limit(context: BuildContext) -> str | None:
    """Why ONNX Runtime's transformer optimizer cannot take this backbone, or None when it can."""
    weight_bytes = 4 * int(context.backbone.shape.get("parameters", 0))
    if weight_bytes < OPTIMIZER_MAX_WEIGHT_BYTES:
        return None
    return (
        "ONNX Runtime's transformer optimizer works on in-memory graphs under 2 GB "
        f"(microsoft/onnxruntime#15349); this backbone holds {weight_bytes / (1 << 30):.1f} GiB of weights"
    )


def _check_size(context: BuildContext) -> None:
    reason = _over_optimizer_limit(context)
    if reason is not None:
        raise NotApplicable(reason)


def build_optimized(context: BuildContext) -> BuildResult:
    """fp32 backbone for CPUs: fused attention and BiasGelu (no SkipLayerNormalization, see above)."""
    _check_size(context)
    architecture = context.backbone.architecture
    if architecture.ort_model_type is None:
        raise NotApplicable(f"ONNX Runtime's transformer optimizer has no fusions for {architecture.model_type}")
    model, fused = optimize_backbone(context, skip_layer_norm=False)
    if not fused:
        logger.warning("ONNX Runtime fused no operators in the %s backbone", context.backbone.architecture.model_type)
    return _save(context, model, "onnx/model_optimized.onnx", {"optimization": "ort-transformers", "fused_ops": fused})


def build_fp16(context: BuildContext) -> BuildResult:
    """The optimized backbone in fp16 (float32 inputs/outputs, fp32 reductions), fp32 stages.

    Over the optimizer's 2 GB limit (4B/8B decoders, where fp16 halves what a GPU must hold) the
    plain backbone is converted instead, without fusions: the converter reads it from its file, so
    its shape inference runs on the file (``infer_shapes_path``), which has no 2 GB limit.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    if context.backbone.architecture.no_fp16:
        raise NotApplicable(context.backbone.architecture.no_fp16)
    too_large = _over_optimizer_limit(context)
    source: Any
    if too_large is None:
        skip_layer_norm = context.backbone.architecture.fp16_skip_layer_norm
        source, fused = optimize_backbone(context, skip_layer_norm=skip_layer_norm)
        details: dict[str, Any] = {"optimization": "ort-transformers+fp16", "fused_ops": fused}
    else:
        source = str(context.backbone.path)
        details = {"optimization": "fp16", "fused_ops": {}, "not_fused": too_large}
    model = convert_float_to_float16(source, keep_io_types=True, op_block_list=_FP16_KEEP_FP32)
    sortable = OnnxModel(model)
    sortable.topological_sort()  # the converter appends its Cast nodes at the end of the graph
    model = sortable.model
    return _save(context, model, "onnx/model_fp16.onnx", {**details, "fp32_ops": _FP16_KEEP_FP32})
