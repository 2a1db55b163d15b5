"""``int8`` variant: 8-bit weights with int8 compute and per-row activation quantization.

ONNX Runtime's ``MatMulNBits`` (8 bits, blocks of 32 along K, symmetric, accuracy level 4)
quantizes each *row's* activations on the fly, so a text's embedding does not depend on its
batch neighbours. Both ready-made alternatives failed here on all-MiniLM-L6-v2: dynamic
quantization computes one activation scale per batch tensor (min cosine 0.951 between two
batchings, DESIGN §7), and static QDQ with MinMax-calibrated per-tensor activation scales reached
only mean cosine 0.919 against PyTorch (activation outliers). The backbone is the ``optimized``
one without the attention fusion, whose packed Q/K/V weights MatMulNBits cannot quantize. When the
result misses its gate, sensitive MatMuls are excluded step by step and the exclusions are reported.

Heads (CrossEncoder, SPLADE) quantize their backbone the same way, with its classifier or
masked-LM projection (which end in ``logits``) and under their fp32 head (``build_head_int8``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.build import BuildContext, BuildResult
from fastembed_rt.export.onnx_files import save_graph
from fastembed_rt.export.optimize import optimize_backbone

__all__ = ["build_head_int8", "build_int8", "exclusion_ladder", "quantize_int8"]

logger = logging.getLogger("fastembed_rt.export")

FILE = "onnx/model_int8.onnx"
BLOCK_SIZE = 32  # 128 was as fast but let batch composition move embeddings (min cosine 0.9996)


def _weight_matmuls(model: Any) -> list[str]:
    """Names of MatMuls whose second input is a weight initializer, in graph order."""
    weights = {init.name for init in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def _quantize(model: Any, exclude: list[str]) -> Any:
    import copy

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer_logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quantizer_logger.level
    quantizer_logger.setLevel(logging.WARNING)  # it logs every node at INFO
    try:
        quantizer = MatMulNBitsQuantizer(
            copy.deepcopy(model),
            bits=8,
            block_size=BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=4,  # int8 compute: activations quantized per row block at run time
            nodes_to_exclude=exclude,
        )
        quantizer.process()
    finally:
        quantizer_logger.setLevel(level)
    return quantizer.model.model


def exclusion_ladder(weight_matmuls: list[str]) -> list[list[str]]:
    """The MatMuls to keep in float, step by step, for an int8 graph that misses its gate.

    Nothing; then the first and last weight MatMuls (the last is the output projection: the
    vocabulary projection of a masked-LM head, the classifier of a cross-encoder); then also every
    FFN output projection (6 weight MatMuls per BERT-style layer; they see the widest activation range).
    """
    if not weight_matmuls:
        raise ExportError("the backbone has no MatMul with weights to quantize")
    first_last = [weight_matmuls[0], weight_matmuls[-1]]
    return [[], first_last, sorted({*first_last, *weight_matmuls[5::6]})]


def quantize_int8(backbone: Any, try_candidate: Callable[[Any, dict[str, Any]], list[str]]) -> dict[str, Any]:
    """Quantize ``backbone`` down the exclusion ladder until ``try_candidate`` accepts a graph.

    ``try_candidate(model, details)`` finishes the candidate (output stages or head), saves it and
    returns its gate misses (empty: accepted). Returns the accepted candidate's ``details``; raises
    ``ParityError`` listing every attempt when none passes.
    """
    weight_matmuls = _weight_matmuls(backbone)
    tried: list[str] = []
    for exclude in exclusion_ladder(weight_matmuls):
        details: dict[str, Any] = {
            "scheme": f"MatMulNBits 8-bit, block {BLOCK_SIZE}, symmetric, int8 compute (per-row activations)",
            "quantized_matmuls": len(weight_matmuls) - len(exclude),
            "excluded_matmuls": exclude,
        }
        misses = try_candidate(_quantize(backbone, exclude), details)
        if not misses:
            if tried:
                details["earlier_attempts"] = tried
            return details
        tried.append(f"excluding {len(exclude)} MatMuls: {'; '.join(misses)}")
        logger.info("int8 attempt missed its gate (%s); excluding more MatMuls", "; ".join(misses))
    raise ParityError("int8 misses its gate with every exclusion tried: " + " | ".join(tried), tried)


def _build(context: BuildContext, backbone: Any, optimization: str, **details: Any) -> BuildResult:
    weights: list[str | None] = [None]

    def try_candidate(model: Any, candidate: dict[str, Any]) -> list[str]:
        candidate.update(details)
        candidate.update(context.append_stages(model))
        weights[0] = save_graph(model, context.root / FILE, external=context.backbone.external_data)
        return context.check(FILE)

    accepted = quantize_int8(backbone, try_candidate)
    weights_file = None if weights[0] is None else f"onnx/{weights[0]}"
    return BuildResult(file=FILE, optimization=optimization, details=accepted, weights_file=weights_file)


def build_int8(context: BuildContext) -> BuildResult:
    """int8 MatMulNBits backbone; excludes sensitive MatMuls until the gate holds (or gives up)."""
    backbone, fused = optimize_backbone(context, skip_layer_norm=False, attention=False)
    return _build(context, backbone, "ort-transformers+int8", fused_ops=fused)


def build_head_int8(context: BuildContext) -> BuildResult:
    """int8 MatMulNBits backbone of a head artifact (classifier or masked-LM projection included), fp32 head."""
    import onnx

    return _build(context, onnx.load(str(context.backbone.path)), "int8")
