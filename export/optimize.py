"""``optimized`` and ``fp16`` variants: ONNX Runtime's transformer fusions and fp16 conversion.

Both work on the backbone graph (token_embeddings out) and re-append the fp32 output stages:
ONNX Runtime's symbolic shape inference, which its fusions need, does not get through the
pooling/precision stages, and the stages are cheap and numerically sensitive, so they stay fp32.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastembed_rt.export.build import BuildContext, BuildResult, NotApplicable
from fastembed_rt.export.onnx_files import save_graph, scratch_graph

__all__ = [
    "backbone_folder",
    "build_fp16",
    "build_optimized",
    "optimize_backbone",
    "optimized_graph_file",
    "require_fusions",
    "save_optimized",
]

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


def backbone_folder(context: BuildContext) -> contextlib.AbstractContextManager[Any]:
    """The working directory for reading an external-data backbone's tensors without loading them all: the
    data file's locations are relative to the backbone's folder (``onnx.numpy_helper.to_array`` finds a tensor
    from there). Export runs one step at a time in this process."""
    source = context.backbone
    return _working_directory(source.path.parent) if source.external_data else contextlib.nullcontext()


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    """``contextlib.chdir``, which Python 3.10 (supported) lacks."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def require_fusions(context: BuildContext) -> None:
    """``NotApplicable`` when ONNX Runtime's transformer optimizer has no fusions for the backbone's family."""
    architecture = context.backbone.architecture
    if architecture.ort_model_type is None:
        raise NotApplicable(f"ONNX Runtime's transformer optimizer has no fusions for {architecture.model_type}")


def optimize_backbone(
    context: BuildContext,
    *,
    skip_layer_norm: bool,
    attention: bool = True,
    packed_attention: bool = True,
    embed_layer_norm: bool = True,
    check: Callable[[Any], object] | None = None,
) -> tuple[Any, dict[str, int]]:
    """The backbone after our attention fusion (``attention``) and ONNX Runtime's transformer fusions.

    ``skip_layer_norm``: fuse Add + LayerNormalization into ``SkipLayerNormalization``. Off for the
    CPU graph: ONNX Runtime 1.32's CPU SkipLayerNormalization kernel made all-MiniLM-L6-v2 13 % slower
    than Add + LayerNormalization on STSb sentences here (992 against 1,127 sentences/s, 2 threads);
    on for the fp16 graph, which is for GPUs. ``packed_attention``: ``fuse_attention``'s ``packed`` (off: the
    Q/K/V projections stay MatMuls, for the int8 graph). ``embed_layer_norm``: let ONNX Runtime fuse the embedding
    lookups and their LayerNormalization into ``EmbedLayerNormalization`` (it does for MPNet and DistilBERT, not for
    BERT's graph); off for the int8 graphs, whose word-embedding table is stored at 8 bits and must stay read by a
    ``Gather`` (``quantize.quantize_embedding_tables``). Returns (ModelProto, fused-op counts).

    A backbone whose weights are in a data file (every one by default) is optimized without them: the
    fusions read the few tensors they inspect from the file, and ONNX Runtime's shape inference, which
    copies the whole graph, copies no weights, and the optimizer's 2 GB limit on in-memory graphs
    (microsoft/onnxruntime#15349) does not apply. Its result's external tensors still point at the
    backbone's data file: ``save_optimized`` loads them, ``optimized_graph_file`` shares them.

    ``check``: called on the loaded backbone's graph before the fusions, which take minutes on a large model
    (a builder refuses a family there; it may read tensors, from the backbone's folder).
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from fastembed_rt.export.fuse_attention import fuse_attention

    source = context.backbone
    backbone = onnx.load(str(source.path), load_external_data=not source.external_data)
    if check is not None:
        with backbone_folder(context):
            check(backbone.graph)
    model_type = source.architecture.ort_model_type
    fused: dict[str, int] = {}
    if model_type is None:  # ONNX Runtime has no fusion patterns for this family: the plain backbone
        model = backbone
    else:
        with backbone_folder(context):  # the fusions that read a tensor find it from there
            blocks = fuse_attention(backbone, source.num_heads, packed=packed_attention) if attention else 0
            fusions = FusionOptions(model_type)
            fusions.enable_skip_layer_norm = skip_layer_norm
            fusions.enable_bias_skip_layer_norm = skip_layer_norm
            fusions.enable_embed_layer_norm = embed_layer_norm
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
        # ORT counts the attention nodes in the graph: ours, as it fuses none
        fused["Attention" if packed_attention else "MultiHeadAttention"] = blocks
        model = optimized.model
        if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model, fused


def save_optimized(context: BuildContext, model: Any, file: str, details: dict[str, Any]) -> BuildResult:
    """Append the output stages to an optimized backbone, load the weights it still reads from the backbone's
    data file, and save it as the variant ``file``."""
    from onnx.external_data_helper import load_external_data_for_model

    details.update(context.append_stages(model))
    details["op_counts"] = dict(Counter(node.op_type for node in model.graph.node).most_common(12))
    load_external_data_for_model(model, str(context.backbone.path.parent))
    path = context.root / file
    weights = save_graph(model, path, external=context.backbone.external_data)
    weights_file = None if weights is None else str(Path(file).parent / weights)
    return BuildResult(file=file, optimization=details.pop("optimization"), details=details, weights_file=weights_file)


def build_optimized(context: BuildContext) -> BuildResult:
    """fp32 backbone for CPUs: fused attention and BiasGelu (no SkipLayerNormalization, see above)."""
    require_fusions(context)
    model, fused = optimize_backbone(context, skip_layer_norm=False)
    if not fused:
        logger.warning("ONNX Runtime fused no operators in the %s backbone", context.backbone.architecture.model_type)
    details = {"optimization": "ort-transformers", "fused_ops": fused}
    return save_optimized(context, model, "onnx/model_optimized.onnx", details)


@contextlib.contextmanager
def optimized_graph_file(
    context: BuildContext,
    name: str,
    *,
    skip_layer_norm: bool,
    attention: bool = True,
    packed_attention: bool = True,
    embed_layer_norm: bool = True,
) -> Iterator[tuple[Path, dict[str, int]]]:
    """``optimize_backbone``'s graph as a scratch file beside the backbone, for builders that read their input
    from a file; yields (path, fused-op counts) and removes the file on exit.

    The file shares the backbone's data file for every weight the fusions left alone (all of them without
    the attention fusion), so nothing of the weights is rewritten and nothing of them stays in memory.
    """
    model, fused = optimize_backbone(
        context,
        skip_layer_norm=skip_layer_norm,
        attention=attention,
        packed_attention=packed_attention,
        embed_layer_norm=embed_layer_norm,
    )
    with scratch_graph(context.backbone.path.parent, name) as path:
        save_graph(model, path, external=True, check=False)
        del model
        yield path, fused


def build_fp16(context: BuildContext) -> BuildResult:
    """The optimized backbone in fp16 (float32 inputs/outputs, fp32 reductions), fp32 stages.

    The converter reads the optimized graph from its file: its shape inference then runs on the file
    (``infer_shapes_path``), which has no 2 GB limit (4B/8B decoders, where fp16 halves what a GPU must hold).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    if context.backbone.architecture.no_fp16:
        raise NotApplicable(context.backbone.architecture.no_fp16)
    skip_layer_norm = context.backbone.architecture.fp16_skip_layer_norm
    with optimized_graph_file(context, "fp16-input.onnx", skip_layer_norm=skip_layer_norm) as (source, fused):
        model = convert_float_to_float16(str(source), keep_io_types=True, op_block_list=_FP16_KEEP_FP32)
    sortable = OnnxModel(model)
    sortable.topological_sort()  # the converter appends its Cast nodes at the end of the graph
    model = sortable.model
    details = {"optimization": "ort-transformers+fp16", "fused_ops": fused, "fp32_ops": _FP16_KEEP_FP32}
    return save_optimized(context, model, "onnx/model_fp16.onnx", details)
