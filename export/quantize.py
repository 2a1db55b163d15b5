"""``int8``, ``int8-avx2``, ``int8-weights`` and ``int4`` variants: 8-bit and 4-bit weights on ONNX Runtime's CPU
kernels.

Each scheme is tried down an exclusion ladder (``quantize_weights``): when a result misses its gate,
the ladder's sensitive MatMuls (``exclusion_ladder``) are kept in float (``int8``, ``int8-weights``)
or at 8 bits (``int4``) step by step, and what was done to which MatMul is reported.

``int8`` tries two schemes, both batch-invariant (a text's embedding never depends on its batch
neighbours), and ships the first within its gate:

1. ``export.smoothquant``: uint8 activations × per-column int8 weights, smoothed from the calibration
   texts, on ONNX Runtime's 8-bit GEMM; normalized activations whose rows fill their range on one
   calibrated scale, the others one per row (tried in that order, then all per row, then with outlier
   channels in fp32). all-MiniLM-L6-v2: min cosine 0.992 against PyTorch, 1.8–2.0× the optimized fp32
   graph on AVX-512 VNNI; on AVX2 kernels (run as u8 × u8) 1.0–1.2× (raw ONNX Runtime, interleaved runs,
   1,024 STSb sentences, before the static scales).
2. ``MatMulNBits`` 8-bit weights (blocks of 32 along K, symmetric) at accuracy level 4, which
   quantizes each row's activations per block on the fly: closer to fp32 (min cosine 0.998) but level
   with fp32 on VNNI and 0.61× on AVX2 kernels (no fast path for 8-bit weights there).

``int8-avx2`` is scheme 1 with each weight column quantized to [-64, 64] (``smoothquant.AVX2_WEIGHT_LIMIT``):
ONNX Runtime keeps such weights on its fast u8 × s8 kernel on x86 CPUs without VNNI, where int8's full-range
weights take the exact but slower u8 × u8 path. all-MiniLM-L6-v2: min / mean cosine 0.992287 / 0.997652 against
int8's 0.991886 / 0.998572; on AVX2 kernels 1.60× fp32 against int8's 1.30× (``benchmarks/providers.py``, before
the static scales); with VNNI the two run one kernel. It has no ``MatMulNBits`` fallback: that runs 0.61× fp32 on
AVX2.

``int8`` and ``int8-avx2`` store the word-embedding table at 8 bits as well, one scale per row
(``quantize_embedding_tables``): all-MiniLM-L6-v2's int8 graph is 23.7 MB, where its float table alone is 47 MB.

Ready-made alternatives failed on all-MiniLM-L6-v2: dynamic quantization computes one activation
scale per batch tensor (min cosine 0.951 between two batchings, DESIGN §7); static QDQ with
MinMax-calibrated per-tensor activation scales reached only mean cosine 0.919 against PyTorch
(activation outliers, which SmoothQuant's per-channel smoothing and the per-row scales handle).

``int8-weights`` and ``int4`` are weight-only (``MatMulNBits`` accuracy level 0): the weights are
dequantized and multiplied in fp32, for models whose activations do not survive int8 compute
(level 4 flipped results on Qwen3-0.6B, microsoft/onnxruntime#29849). They are for large models,
where reading the weights is what takes the time. ``int4``'s sensitive MatMuls get 8-bit weights
(mixed 4/8, as in Microsoft's Qwen3-Embedding int4 CPU recipe) when all-4-bit misses its gate.

ONNX Runtime 1.32's CPU EP has a fast kernel for 4-bit weights with fp32 compute but none for 8-bit
ones: one row through a 1024 × 4096 MatMul took 0.21 ms with 4-bit weights, 0.36 ms in fp32 and
9–23 ms with 8-bit weights at every accuracy level below 4 and either block size (0.07 ms at level
4); all-MiniLM-L6-v2 ran 0.5–0.8× fp32 as ``int8-weights``. So ``int8-weights``, and the 8-bit
MatMuls of a mixed ``int4``, are for fidelity, not for speed, on that engine.

The backbone is the ``optimized`` one with the attention core fused into ``MultiHeadAttention`` and
the Q/K/V projections left as MatMuls (``fuse_attention(packed=False)``): the packed weights of the
``Attention`` op are beyond both quantizers, and the unfused core's per-head Transposes took 7.5 %
of the int8 graph's session time on all-MiniLM-L6-v2.

Heads (CrossEncoder, SPLADE) take the same ``int8`` builder: their backbone ends in the classifier or
masked-LM projection (``logits``), quantized like any other weight MatMul (the ladder's first exclusion
keeps it float, as the graph's last), under the fp32 head; they calibrate on STSb train pairs or sentences
(``export.heads.calibration_items``). A classifier on the pooled vector is a ``Gemm`` and stays float.
Until 2026-12 heads had ``MatMulNBits`` only: a MiniLM-L6-shape reranker ran 0.61× fp32 on AVX2 kernels.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.build import BuildContext, BuildResult
from fastembed_rt.export.onnx_files import save_graph
from fastembed_rt.export.optimize import optimized_graph_file
from fastembed_rt.export.smoothquant import (
    AVX2_WEIGHT_LIMIT,
    CALIBRATION_TEXTS,
    INT8_WEIGHT_LIMIT,
    MIN_ROW_SPREAD,
    OUTLIER_RATIO,
    SmoothQuantScheme,
    calibrate,
    matmul_weights,
    prune_unread,
    row_spreads,
    split_channels,
    weight_array,
)

__all__ = [
    "INT4",
    "INT8",
    "INT8_WEIGHTS",
    "QuantizationScheme",
    "WeightScheme",
    "build_int4",
    "build_int8",
    "build_int8_avx2",
    "build_int8_weights",
    "exclusion_ladder",
    "quantize_embedding_tables",
    "quantize_weights",
    "untie_weights",
    "weight_matmul_widths",
]

logger = logging.getLogger("fastembed_rt.export")


class QuantizationScheme(Protocol):
    """What the exclusion ladder needs of a scheme: ``apply`` quantizes a freshly loaded graph in place,
    ``sensitive`` MatMuls kept float (or at ``sensitive_bits``); ``describe`` and ``to_dict`` go to the
    manifest."""

    @property
    def sensitive_bits(self) -> int | None: ...

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def apply(self, model: Any, sensitive: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class WeightScheme:
    """How ``MatMulNBits`` stores a backbone's weights and computes with them.

    ``accuracy_level``: 4 is int8 compute with each row's activations quantized at run time, 0 is
    fp32 compute on dequantized weights (weight-only). ``sensitive_bits``: what the exclusion
    ladder's MatMuls get when the graph misses its gate: None keeps them float, 8 gives them 8-bit
    weights (mixed with ``bits`` elsewhere).
    """

    bits: int
    block_size: int
    symmetric: bool
    accuracy_level: int
    sensitive_bits: int | None = None

    def describe(self) -> str:
        compute = "int8 compute (per-row activations)" if self.accuracy_level else "fp32 compute (weight-only)"
        symmetry = "symmetric" if self.symmetric else "asymmetric"
        return f"MatMulNBits {self.bits}-bit, block {self.block_size}, {symmetry}, {compute}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_bits": self.bits,
            "block_size": self.block_size,
            "symmetric": self.symmetric,
            "accuracy_level": self.accuracy_level,
        }

    def apply(self, model: Any, sensitive: Sequence[str]) -> Any:
        """``model`` quantized in place, the ``sensitive`` MatMuls float or at ``sensitive_bits``."""
        names = set(_weight_matmuls(model))
        others = names - set(sensitive)
        model = untie_weights(model, names if self.sensitive_bits is not None else others)
        quantized = _matmul_nbits(model, self.bits, self, set(sensitive))
        if self.sensitive_bits is None or not sensitive:
            return quantized
        return _matmul_nbits(quantized, self.sensitive_bits, self, others)


# 128 was as fast but let batch composition move embeddings (min cosine 0.9996): level 4 quantizes
# activations per block of K, so the block is also the activation quantization group.
INT8 = WeightScheme(bits=8, block_size=32, symmetric=True, accuracy_level=4)
# Blocks of 32 against 128 on all-MiniLM-L6-v2 (no faster with 128): int8-weights mean cosine to PyTorch
# 0.99987 against 0.99977; all-4-bit int4 0.974 against 0.958 asymmetric, 0.969 against 0.951 symmetric.
INT8_WEIGHTS = WeightScheme(bits=8, block_size=32, symmetric=True, accuracy_level=0)
INT4 = WeightScheme(bits=4, block_size=32, symmetric=False, accuracy_level=0, sensitive_bits=8)


def _weight_matmuls(model: Any) -> list[str]:
    """Names of the weight MatMuls (``weight_matmul_widths``), in graph order."""
    return [name for name, _ in weight_matmul_widths(model)]


def weight_matmul_widths(model: Any) -> list[tuple[str, int]]:
    """(name, input width) of each weight MatMul (``smoothquant.matmul_weights``: a decoder tied to the word
    embeddings included), in graph order."""
    weights = matmul_weights(model)
    widths = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.output[0] in weights:
            initializer, transposed = weights[node.output[0]]
            widths.append((node.name, int(initializer.dims[1 if transposed else 0])))
    return widths


def untie_weights(model: Any, names: set[str]) -> Any:
    """``model`` (in place) with the MatMuls in ``names`` that read a weight through a ``Transpose`` (a tied
    decoder) reading a transposed copy instead, which ``MatMulNBits``' quantizer takes (it takes initializers
    only). Only the MatMuls it is about to quantize: a float copy would add the whole embedding table."""
    from onnx import numpy_helper

    weights = matmul_weights(model)
    copies: dict[str, str] = {}
    for node in model.graph.node:
        entry = weights.get(node.output[0]) if node.op_type == "MatMul" else None
        if entry is None or not entry[1] or node.name not in names:
            continue
        initializer = entry[0]
        if initializer.name not in copies:
            copies[initializer.name] = f"{initializer.name}/transposed"
            model.graph.initializer.append(numpy_helper.from_array(weight_array(*entry), copies[initializer.name]))
        node.input[1] = copies[initializer.name]
    if copies:
        prune_unread(model.graph)
    return model


def _matmul_nbits(model: Any, bits: int, scheme: WeightScheme, exclude: set[str]) -> Any:
    """``model`` (modified in place) with every weight MatMul outside ``exclude`` as ``bits``-bit MatMulNBits."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer_logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quantizer_logger.level
    quantizer_logger.setLevel(logging.WARNING)  # it logs every node at INFO
    try:
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=scheme.block_size,
            is_symmetric=scheme.symmetric,
            accuracy_level=scheme.accuracy_level,
            nodes_to_exclude=sorted(exclude),
        )
        quantizer.process()
    finally:
        quantizer_logger.setLevel(level)
    return quantizer.model.model


def exclusion_ladder(weight_matmuls: list[tuple[str, int]]) -> list[list[str]]:
    """The sensitive MatMuls, step by step, for a quantized graph that misses its gate.

    ``weight_matmuls``: (name, input width) in graph order. Nothing; then the first and last weight
    MatMuls (the last is the output projection: the vocabulary projection of a masked-LM head, the
    classifier of a cross-encoder); then also every FFN output projection, found by its input, the
    widest of the graph (the intermediate size): layers differ per family (6 weight MatMuls in a BERT
    layer, 7 in a SwiGLU decoder's, 4 in ModernBERT's fused ones), the FFN's down projection does not,
    and it sees the widest activation range.
    """
    if not weight_matmuls:
        raise ExportError("the backbone has no MatMul with weights to quantize")
    widest = max(width for _, width in weight_matmuls)
    first_last = list(dict.fromkeys([weight_matmuls[0][0], weight_matmuls[-1][0]]))  # one MatMul: once
    also_widest = sorted({*first_last, *(name for name, width in weight_matmuls if width == widest)})
    steps = [[], first_last]
    if set(also_widest) != set(first_last):  # (one MatMul, or only two: the same step again)
        steps.append(also_widest)
    return steps


def quantize_weights(
    load: Callable[[], Any],
    scheme: QuantizationScheme,
    save_candidate: Callable[[Any, dict[str, Any]], None],
    check: Callable[[], list[str]],
    variant: str,
    steps: int | None = None,
) -> dict[str, Any]:
    """Quantize the backbone by ``scheme`` down the exclusion ladder (its first ``steps`` steps; None: all) until
    ``check`` accepts a candidate.

    ``load()`` returns the float backbone afresh for each attempt: quantizing in place a graph read
    from its file holds one float copy of the weights, where a deep copy of one kept in memory held
    two (Qwen3-Embedding-0.6B: 2.4 GB each). ``save_candidate(model, details)`` finishes the
    candidate (output stages or head) and saves it; ``check()`` returns its gate misses (empty:
    accepted). The candidate leaves memory before it is checked. Returns the accepted candidate's
    ``details``; raises ``ParityError`` listing every attempt when none passes.
    """
    model: Any = load()
    widths = weight_matmul_widths(model)
    mixed = scheme.sensitive_bits is not None
    tried: list[str] = []
    for sensitive in exclusion_ladder(widths)[:steps]:
        if not mixed and len(sensitive) == len(widths):  # every MatMul kept float (all as wide): no int8 variant
            continue
        details: dict[str, Any] = {
            "scheme": scheme.describe(),
            **scheme.to_dict(),
            "quantized_matmuls": len(widths) - (0 if mixed else len(sensitive)),
            "excluded_matmuls": [] if mixed else sensitive,
        }
        if mixed:
            details[f"matmuls_at_{scheme.sensitive_bits}_bits"] = sensitive
        if model is None:
            model = load()
        save_candidate(scheme.apply(model, sensitive), details)
        model = None
        gc.collect()  # what the quantizer's model wrapper held, in case it sits in a reference cycle
        misses = check()
        if not misses:
            if tried:
                details["earlier_attempts"] = tried
            return details
        action = f"{scheme.sensitive_bits}-bit weights on" if mixed else "excluding"
        tried.append(f"{action} {len(sensitive)} MatMuls: {'; '.join(misses)}")
        logger.info("%s attempt missed its gate (%s); escalating sensitive MatMuls", variant, "; ".join(misses))
    ladder = f"{scheme.sensitive_bits}-bit escalation" if mixed else "exclusion"
    raise ParityError(f"{variant} misses its gate with every {ladder} tried: " + " | ".join(tried), tried)


# A table with fewer rows stays float: position and token-type embeddings are a few hundred rows, a
# vocabulary's word embeddings tens of thousands.
MIN_TABLE_ROWS = 4096


def quantize_embedding_tables(model: Any, min_rows: int = MIN_TABLE_ROWS) -> list[str]:
    """Store ``model``'s word-embedding tables (in place) at 8 bits, one scale per row; returns their names.

    A table is a 2-D float initializer of at least ``min_rows`` rows that only ``Gather`` nodes read, on axis 0;
    each becomes ``Gather(int8 table) -> Cast -> Mul(Gather(row scales))``. all-MiniLM-L6-v2's word embeddings
    are 47 of the int8 graph's 59 MB in float. Written by hand: ONNX Runtime's weight-only quantizer takes a
    Gather's table to 4 bits only (``GatherBlockQuantized``); 8 bits with one scale per row are three standard
    ops, and dequantizing the looked-up rows costs little next to the layers.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    quantized: list[str] = []
    after: dict[str, list[Any]] = {}  # a quantized Gather's output -> the nodes that dequantize it
    for init in list(graph.initializer):
        nodes = readers.get(init.name, [])
        if (
            len(init.dims) != 2
            or init.dims[0] < min_rows
            or init.data_type != TensorProto.FLOAT
            or not nodes
            or any(n.op_type != "Gather" or n.input[0] != init.name for n in nodes)
            or any(a.name == "axis" and helper.get_attribute_value(a) != 0 for n in nodes for a in n.attribute)
        ):
            continue
        table = numpy_helper.to_array(init).astype(np.float32)
        scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), np.float32(1e-12)) / np.float32(127)
        codes = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
        prefix = f"int8_table/{init.name}/"
        graph.initializer.extend(
            [
                numpy_helper.from_array(codes, prefix + "codes"),
                numpy_helper.from_array(scale.astype(np.float32), prefix + "scales"),
            ]
        )
        for index, node in enumerate(nodes):
            out, ids, p = node.output[0], node.input[1], f"{prefix}{index}/"
            node.input[0], node.output[0] = prefix + "codes", p + "codes"
            after[p + "codes"] = [
                helper.make_node("Cast", [p + "codes"], [p + "values"], name=p + "cast", to=TensorProto.FLOAT),
                helper.make_node("Gather", [prefix + "scales", ids], [p + "scale"], name=p + "row_scale"),
                helper.make_node("Mul", [p + "values", p + "scale"], [out], name=p + "dequantize"),
            ]
        quantized.append(init.name)
    if quantized:
        ordered = [extra for node in graph.node for extra in [node, *after.get(node.output[0], [])]]
        del graph.node[:]
        graph.node.extend(ordered)
        prune_unread(graph)
    return quantized


def _build(
    context: BuildContext,
    load: Callable[[], Any],
    scheme: QuantizationScheme,
    variant: str,
    optimization: str,
    *,
    int8_tables: bool = False,
    steps: int | None = None,
    **details: Any,
) -> BuildResult:
    """Quantize the backbone by ``scheme`` down the exclusion ladder (``quantize_weights``' ``steps``) and save the
    accepted candidate as the variant; ``int8_tables``: also store its word-embedding tables at 8 bits
    (``quantize_embedding_tables``)."""
    file = f"onnx/model_{variant.replace('-', '_')}.onnx"
    weights: list[str | None] = [None]

    def save_candidate(model: Any, candidate: dict[str, Any]) -> None:
        candidate.update(details)
        if split := split_channels(model):
            candidate["outlier_channels"] = split
        if int8_tables:
            candidate["int8_embedding_tables"] = quantize_embedding_tables(model)
        candidate.update(context.append_stages(model))
        weights[0] = save_graph(model, context.root / file, external=context.backbone.external_data)

    accepted = quantize_weights(load, scheme, save_candidate, lambda: context.check(file), variant, steps)
    weights_file = None if weights[0] is None else f"onnx/{weights[0]}"
    return BuildResult(file=file, optimization=optimization, details=accepted, weights_file=weights_file)


def _build_backbone(context: BuildContext, scheme: WeightScheme, variant: str) -> BuildResult:
    """``_build`` on the optimized backbone, read back from its scratch file for each attempt, so no float copy
    stays in memory meanwhile."""
    import onnx

    name = f"{variant}-input.onnx"
    with optimized_graph_file(context, name, skip_layer_norm=False, packed_attention=False) as (source, fused):
        return _build(
            context, lambda: onnx.load(str(source)), scheme, variant, f"ort-transformers+{variant}", fused_ops=fused
        )


# The int8 variant's ``optimization`` when it ships the SmoothQuant scheme (openvino-int8 converts that graph).
SMOOTHQUANT_OPTIMIZATION = "ort-transformers+smoothquant-int8"
# int8-avx2's: the same scheme with weights in [-64, 64] (``smoothquant.AVX2_WEIGHT_LIMIT``).
SMOOTHQUANT_AVX2_OPTIMIZATION = "ort-transformers+smoothquant-int8-avx2"


def _build_smoothquant(
    context: BuildContext,
    variant: str,
    optimization: str,
    weight_limit: int,
    fallback: Callable[[Callable[[], Any], dict[str, int]], BuildResult] | None,
) -> BuildResult:
    """The SmoothQuant schemes in turn, each down the exclusion ladder: the plain one, then the one with outlier
    channels in fp32 (``smoothquant.outlier_channels``); the first within the gate ships. When both miss (or there
    are no calibration texts), ``fallback(load, fused_ops)`` builds the variant; without one, ``ParityError`` says
    what missed (``ExportError`` when there are no calibration texts). What missed is recorded as ``other_schemes``."""
    import onnx

    texts = list(context.calibration_texts)[:CALIBRATION_TEXTS]  # the head of select_texts (see its docstring)
    if not texts and fallback is None:
        raise ExportError(f"{variant} needs calibration texts (export_model(..., calibration_texts=...))")
    name = f"{variant}-input.onnx"
    # its word-embedding tables go to 8 bits, so they stay in Gathers (no EmbedLayerNormalization)
    with optimized_graph_file(context, name, skip_layer_norm=False, packed_attention=False, embed_layer_norm=False) as (
        source,
        fused,
    ):

        def load() -> Any:
            return onnx.load(str(source))

        missed: list[dict[str, Any]] = []
        if texts:
            feeds = context.feeds(texts)
            maxima = calibrate(source, feeds)
            static = frozenset(
                name for name, spread in row_spreads(source, maxima, feeds).items() if spread >= MIN_ROW_SPREAD
            )
            # fastest first: static scales on normalized inputs (no exclusions: each costs more speed than per-row
            # scales do), then per-row scales; splitting outlier channels off in fp32 costs 6-8 % of int8's speed
            schemes = [(static, None, 1)] if static else []
            for inputs, ratio, steps in [*schemes, (frozenset(), None, None), (frozenset(), OUTLIER_RATIO, None)]:
                smooth = SmoothQuantScheme(
                    maxima, len(texts), outlier_ratio=ratio, weight_limit=weight_limit, static_inputs=inputs
                )
                try:
                    result = _build(
                        context, load, smooth, variant, optimization, int8_tables=True, steps=steps, fused_ops=fused
                    )
                except ParityError as exc:
                    missed.append({"scheme": smooth.describe(), "missed_gate": exc.failures})
                    logger.info("%s scheme %s missed its gate at every step", variant, smooth.describe())
                    continue
                if missed:
                    result.details["other_schemes"] = missed
                return result
        if fallback is None:
            why = [f"{m['scheme']}: {' / '.join(m['missed_gate'])}" for m in missed]
            raise ParityError(f"{variant} misses its gate with every scheme tried: " + " | ".join(why), why)
        if missed:
            logger.info("%s SmoothQuant schemes missed their gate at every step; trying MatMulNBits", variant)
        result = fallback(load, fused)
        if missed:
            result.details["other_schemes"] = missed
        return result


def build_int8(context: BuildContext) -> BuildResult:
    """int8 backbone, int8 compute: SmoothQuant per-row 8-bit GEMMs when they hold the gate (with the exclusion
    ladder), then the same with outlier channels in fp32 (``smoothquant.outlier_channels``), else
    ``MatMulNBits`` level 4 (each with its own ladder); raises ``ParityError`` when none does."""

    def matmul_nbits(load: Callable[[], Any], fused: dict[str, int]) -> BuildResult:
        return _build(context, load, INT8, "int8", "ort-transformers+int8", int8_tables=True, fused_ops=fused)

    return _build_smoothquant(context, "int8", SMOOTHQUANT_OPTIMIZATION, INT8_WEIGHT_LIMIT, matmul_nbits)


def build_int8_avx2(context: BuildContext) -> BuildResult:
    """``build_int8``'s SmoothQuant schemes with weights in [-64, 64], which ONNX Runtime multiplies on its fast
    exact u8 × s8 kernel on x86 CPUs without VNNI (``smoothquant`` module docstring); no ``MatMulNBits`` fallback
    (0.61× fp32 there). Raises ``ParityError`` when neither scheme holds the gate."""
    return _build_smoothquant(context, "int8-avx2", SMOOTHQUANT_AVX2_OPTIMIZATION, AVX2_WEIGHT_LIMIT, None)


def build_int8_weights(context: BuildContext) -> BuildResult:
    """8-bit MatMulNBits weights, fp32 compute; excludes sensitive MatMuls until the gate holds (or gives up)."""
    return _build_backbone(context, INT8_WEIGHTS, "int8-weights")


def build_int4(context: BuildContext) -> BuildResult:
    """4-bit MatMulNBits weights, fp32 compute; sensitive MatMuls go to 8 bits until the gate holds (or gives up)."""
    return _build_backbone(context, INT4, "int4")
