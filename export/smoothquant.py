"""Per-row (or calibrated) int8 activations × per-column int8 weights on ONNX Runtime's 8-bit GEMM, smoothed
(SmoothQuant).

The ``int8`` variant's first scheme. Each weight MatMul ``x @ W`` becomes::

    x ─► Mul(1/s) ─► xs ─► Abs ─► ReduceMax(last axis) ─► Max(ε) ─► r   (each row's maximum)
                      └──────────────────► Div(r) ─► QuantizeLinear(1/127, 128) ─► xq (uint8)
    xq ─► MatMulIntegerToFloat(Wq int8, a_scale 1/127, b_scale c, a_zero_point 128) ─► Mul(r) ─► y

with ``Wq = round(diag(s) W / c)``, ``c`` the per-column scale of ``diag(s) W``. MatMuls that read the
same tensor (a layer's Q, K and V projections) share one ``s``, one ``Mul`` and one quantized ``xq``.
An input channel that still dominates after smoothing (an *outlier channel*, below) is taken out of the
8-bit product and multiplied in fp32 beside it::

    x ─► Gather(outlier channels) ─► MatMul(W[outlier rows]) ─► Add to y     (its 1/s is 0: not in xq)
The input is the optimized backbone with the attention core fused into ``MultiHeadAttention`` and the
Q/K/V projections left as MatMuls (``fuse_attention(packed=False)``).

Why this scheme. Each row (token) gets its own activation scale, computed in the graph, so a text's
embedding does not depend on its batch neighbours (dynamic quantization's per-tensor scale moved
embeddings to cosine 0.951 between two batchings, DESIGN §7), and ONNX Runtime runs the product on
its fast 8-bit GEMM (u8 × s8), where our ``MatMulNBits`` int8 ran level with fp32 on AVX-512 VNNI
and at 0.61× on AVX2 kernels. Per-row granularity alone reached min cosine 0.9845 on
all-MiniLM-L6-v2 (1,024 STSb test sentences against fp32), just over the 0.98 gate: BERT's
activations have a few outlier channels that set every row's scale. SmoothQuant (Xiao et al. 2023)
moves part of that range into the weights, ``s_j = max|x_j|^α / max|W_j,:|^(1-α)`` per input
channel ``j`` from calibration texts: min cosine 0.9906, mean 0.9989, at α 0.5 (0.3: 0.9868,
0.7: 0.9844). BERT's post-LN output also feeds the residual, so ``1/s`` is an explicit ``Mul``
rather than folded into the LayerNorm.

Outlier channels. After smoothing, some MatMul inputs still have a channel or two far above the rest
(all-MiniLM-L6-v2: the FFN output MatMuls' inputs have one at 14–30× the median channel's calibrated
maximum); those set each row's scale and leave the other channels a few levels. LLM.int8() (Dettmers et
al. 2022) computes such channels in floating point beside the 8-bit product; here they are fixed at
calibration (the channels above ``OUTLIER_RATIO`` × the median smoothed maximum, at most
``MAX_OUTLIERS``), so the graph stays static and batch-invariant. It is the int8 builder's second
scheme, for a model whose plain scheme misses the gate at every exclusion step: on all-MiniLM-L6-v2
(export gate: grid, held-out STSb dev, STSb test) it took min / mean cosine against PyTorch from
0.99279 / 0.99864 to 0.99539 / 0.99930 and STSb from 81.85 to 81.98 (PyTorch 82.03), with 11 of 24
inputs split, but ran 0.92–0.94× the plain graph (8 interleaved rounds of the STSb test sentences);
the top 1 or 2 channels of every input reached 0.9976 at 0.86–0.92×, a ratio of 8 (4 inputs) 0.9950.
Excluding MatMuls, the ladder's remedy, costs more speed than that.

Static scales. A normalization's output (LayerNorm, RMSNorm: ``NORMALIZATIONS``) has no per-token
magnitude left to track, so one scale for the whole tensor, set at calibration (the largest smoothed channel
maximum / 127), can serve it as well as one per row: its group becomes ``Mul(1/(s·c)) ─► QuantizeLinear`` and
its products need no ``Mul(r)`` (``c`` is MatMulIntegerToFloat's ``a_scale``); a value past the calibrated
range saturates at the end code. It costs the rows whose maximum sits below the tensor's that many levels, so
an input goes static only where the calibration rows fill its range (``row_spreads``: the 10th-percentile
row's smoothed maximum at least a third of the largest). On all-MiniLM-L6-v2 that is the six Q/K/V inputs
(0.36–0.50) and the last FFN input (0.42), not the other FFN inputs (0.18–0.24): int8 went from 347 to 276
nodes and ran the STSb test sentences 1.04× (int8) and 1.07× (int8-avx2) as fast on a Zen 4 with VNNI, single
queries 6–9 % faster (6–8 interleaved rounds, batch 32); int8-avx2 on AVX2 kernels (``benchmarks/avx2_proxy.py``
once it hid AVX-VNNI too, 8 rounds) 1.025× (999 → 1,024 sentences/s), single queries 3 % faster,
with its worst text no worse: min / mean cosine against fp32 on 1,000 STSb test sentences 0.9927 / 0.9982
(0.9915 / 0.9983 before), int8-avx2 0.9868 / 0.9972 (0.9845 / 0.9973); STSb 81.86 (81.85). Every
LayerNorm output static instead (263 nodes, 1.06–1.09×) took those minima to 0.9888 and 0.9808, the attention
outputs as well to 0.9865 on the gate's texts, the GELU outputs to 0.786. The builder tries static scales
first, without the exclusion ladder (each exclusion costs more speed than static scales gain), then per-row
scales. A per-axis ``QuantizeLinear`` (one scale per channel, no ``Mul``) ran 0.3× as fast: ONNX Runtime 1.32
has no fast kernel for it. Dropping the ``Abs`` for a GELU output (its row's largest value, floored at
``max_j 0.171 / s_j``, bounds every |value|: GELU ≥ -0.16997) gave ONNX Runtime the same numbers at 1.01–1.03×,
but OpenVINO 2026.4 compiled that graph into one whose outputs depend on the batch (a text alone against batched:
min cosine 0.99945), so ``openvino-int8`` lost this scheme: not done.

On x86 CPUs without VNNI, ONNX Runtime's u8 × s8 kernel (``vpmaddubsw``) saturates each pair of
products to int16: the same file scored min cosine 0.9826 there (``benchmarks/avx2_proxy.py``).
The ONNX Runtime engine therefore asks for u8 × u8 on those CPUs (``session.x64quantprecision``,
see ``fastembed_rt.providers.onnxruntime``), which computes the exact integer products as VNNI
does: every CPU gets the numbers the exporter validated.

That exact u8 × u8 path runs the 8-bit products only 1.25–1.35× fp32 on AVX2 kernels (3× with VNNI).
ONNX Runtime widens the weights to u8 only when one lies outside [-64, 64]
(``Avx2WeightS8ToU8Transformer``): within it, two products of a u8 activation and such a weight sum to
at most 255 · 64 · 2 < 32,767, so the fast u8 × s8 kernel is exact, and ran the products 1.74× fp32 on
AVX2 kernels. ``weight_limit=64`` quantizes each column to those 129 levels (the ``int8-avx2`` variant,
``export.quantize``); on VNNI it runs the same kernel as 127 and only costs fidelity.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.export.onnx_files import scratch_graph

__all__ = [
    "AVX2_WEIGHT_LIMIT",
    "INT8_WEIGHT_LIMIT",
    "MAX_OUTLIERS",
    "MIN_ROW_SPREAD",
    "NORMALIZATIONS",
    "OUTLIER_RATIO",
    "SMOOTHING_ALPHA",
    "SmoothQuantScheme",
    "activation_maxima",
    "calibrate",
    "matmul_weights",
    "prune_unread",
    "row_spreads",
    "smooth_quantize",
    "split_channels",
    "weight_array",
]

logger = logging.getLogger("fastembed_rt.export")

SMOOTHING_ALPHA = 0.5
# An input channel whose smoothed calibration maximum exceeds this many times the input's median channel is
# computed in fp32 beside the 8-bit GEMM (module docstring); at most MAX_OUTLIERS per input.
OUTLIER_RATIO = 4.0
MAX_OUTLIERS = 8
# The largest weight code: symmetric int8, and the widest weights ONNX Runtime keeps signed on x86 without VNNI
# (module docstring).
INT8_WEIGHT_LIMIT = 127
AVX2_WEIGHT_LIMIT = 64
# Ops whose first output is normalized per token: the inputs that may take one calibrated scale (``row_spreads``
# decides; module docstring, "Static scales").
NORMALIZATIONS = frozenset(
    {
        "LayerNormalization",
        "SkipLayerNormalization",
        "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "RMSNormalization",
    }
)
# A normalized input goes on one scale when its rows' maxima (after smoothing), at this percentile, still reach
# MIN_ROW_SPREAD of the calibrated range: one scale then costs at most log2(3) = 1.6 bits on 90 % of its rows.
SPREAD_PERCENTILE = 10
MIN_ROW_SPREAD = 1 / 3
# Texts whose activations set the smoothing scales: 256 gave min cosine 0.9906 on all-MiniLM-L6-v2.
CALIBRATION_TEXTS = 256
_PREFIX = "smoothquant/"


def matmul_weights(model: Any) -> dict[str, tuple[Any, bool]]:
    """Each weight MatMul's output -> (the 2-D initializer it multiplies by, whether it reads it transposed).

    A weight is an initializer read directly, or through a ``Transpose`` of one: a decoder tied to the word
    embeddings (BERT's masked-LM projection to the vocabulary, SPLADE's largest MatMul) reads them that way.
    """
    from onnx import helper

    initializers = {init.name: init for init in model.graph.initializer if len(init.dims) == 2}
    transposed = {
        node.output[0]: initializers[node.input[0]]
        for node in model.graph.node
        if node.op_type == "Transpose"
        and node.input[0] in initializers
        and [list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"] in ([], [[1, 0]])
    }
    weights: dict[str, tuple[Any, bool]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers:
            weights[node.output[0]] = (initializers[node.input[1]], False)
        elif node.op_type == "MatMul" and node.input[1] in transposed:
            weights[node.output[0]] = (transposed[node.input[1]], True)
    return weights


def weight_matmul_inputs(model: Any) -> dict[str, list[Any]]:
    """The weight MatMuls (``matmul_weights``), grouped by the tensor they read, in graph order."""
    weights = matmul_weights(model)
    groups: dict[str, list[Any]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.output[0] in weights:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def weight_array(initializer: Any, transposed: bool) -> np.ndarray:
    """A ``matmul_weights`` entry as the float32 ``[K, N]`` matrix the MatMul multiplies by."""
    from onnx import numpy_helper

    weight = numpy_helper.to_array(initializer).astype(np.float32)
    return np.ascontiguousarray(weight.T) if transposed else weight


def _probe(graph: Path, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """``tensors``' values (in their order) for each feed: ``graph`` is read without its weights and saved beside
    itself with ``tensors`` as extra outputs, so the copy shares its data file; ONNX Runtime runs it on the CPU."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(graph), load_external_data=False)
    present = {output.name for output in model.graph.output}
    for name in tensors:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    with scratch_graph(graph.parent, "smoothquant-probe.onnx") as probe:
        onnx.save(model, str(probe))
        del model
        session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
        inputs = {i.name for i in session.get_inputs()}
        for feed in feeds:
            yield session.run(list(tensors), {k: v for k, v in feed.items() if k in inputs})


def activation_maxima(graph: Path, tensors: Sequence[str], feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per-channel max |value| of each of ``tensors`` (float32 ``[channels]``) over every row of every feed
    (``graph`` run as ``_probe`` runs it)."""
    maxima: dict[str, Any] = {}
    for outputs in _probe(graph, tensors, feeds):
        for name, value in zip(tensors, outputs, strict=True):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = peak if name not in maxima else np.maximum(maxima[name], peak)
    if not maxima:
        raise ValueError("no calibration feeds: activation maxima need at least one text")
    return maxima


def calibrate(graph: Path, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, Any]:
    """``activation_maxima`` of every weight MatMul's input in ``graph``."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    tensors = list(weight_matmul_inputs(model))
    del model
    return activation_maxima(graph, tensors, feeds)


def _smoothing_scales(
    maximum: np.ndarray, weights: Sequence[np.ndarray], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """(s, the calibrated maxima floored): ``s_j = max|x_j|^α / max|W_j,:|^(1-α)`` over every MatMul reading x."""
    act = np.maximum(np.asarray(maximum, np.float32), np.float32(1e-5))
    wmax = np.maximum(np.max([np.abs(w).max(axis=1) for w in weights], axis=0), np.float32(1e-5))
    return (act**alpha / wmax ** (1 - alpha)).astype(np.float32), act


def row_spreads(
    graph: Path, maxima: dict[str, Any], feeds: Sequence[dict[str, np.ndarray]], alpha: float = SMOOTHING_ALPHA
) -> dict[str, float]:
    """How evenly each normalized weight-MatMul input (written by one of ``NORMALIZATIONS``) fills its range: the
    ``SPREAD_PERCENTILE``-th percentile of its rows' maxima over their largest, smoothed as the static scheme
    smooths it (every MatMul reading it quantized, no channel split off). ``maxima``: ``calibrate``'s, from the
    same ``feeds``. A second pass over the feeds: the smoothing needs every channel's maximum first."""
    import onnx

    model = onnx.load(str(graph))  # the weights too: smoothing reads their per-channel maxima
    producers = {node.output[0]: node.op_type for node in model.graph.node if node.output}
    matrices = matmul_weights(model)
    smoothing = {
        source: _smoothing_scales(maxima[source], [weight_array(*matrices[n.output[0]]) for n in nodes], alpha)[0]
        for source, nodes in weight_matmul_inputs(model).items()
        if producers.get(source) in NORMALIZATIONS and source in maxima
    }
    del model, matrices
    names = list(smoothing)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for outputs in _probe(graph, names, feeds) if names else ():
        for name, value in zip(names, outputs, strict=True):
            rows[name].append(np.abs(value.reshape(-1, value.shape[-1]) / smoothing[name]).max(axis=1))
    spreads = {}
    for name, parts in rows.items():
        peaks = np.concatenate(parts)
        spreads[name] = float(np.percentile(peaks, SPREAD_PERCENTILE) / max(float(peaks.max()), 1e-12))
    return spreads


def prune_unread(graph: Any) -> None:
    """Drop what ``graph`` no longer reads after a rewrite: a tied decoder's ``Transpose`` once its MatMul reads a
    quantized or transposed copy of the table, then every initializer no node reads."""
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    nodes = [node for node in graph.node if node.op_type != "Transpose" or node.output[0] in read]
    if len(nodes) < len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _column_quantized(weight: np.ndarray, limit: int = INT8_WEIGHT_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column: (int8 ``[K, N]``, float32 scale ``[N]``); |q| ≤ ``limit``."""
    scale = np.maximum(np.abs(weight).max(axis=0), np.float32(1e-12)) / np.float32(limit)
    quantized = np.clip(np.rint(weight / scale), -limit, limit).astype(np.int8)
    return quantized, scale.astype(np.float32)


def outlier_channels(smoothed_maxima: np.ndarray, ratio: float | None, limit: int = MAX_OUTLIERS) -> np.ndarray:
    """The input channels computed in fp32 (int64, largest first): those whose smoothed calibration maximum
    exceeds ``ratio`` × the median channel's, at most ``limit``; none when ``ratio`` is None."""
    if ratio is None or limit <= 0:
        return np.zeros(0, np.int64)
    top = np.argsort(-smoothed_maxima, kind="stable")[:limit]
    return top[smoothed_maxima[top] > ratio * np.median(smoothed_maxima)].astype(np.int64)


def smooth_quantize(
    model: Any,
    maxima: dict[str, Any],
    alpha: float,
    exclude: Sequence[str] = (),
    outlier_ratio: float | None = OUTLIER_RATIO,
    weight_limit: int = INT8_WEIGHT_LIMIT,
    static_inputs: Collection[str] = (),
) -> tuple[int, int]:
    """Rewrite ``model``'s weight MatMuls (all but the nodes named in ``exclude``) in place as the module
    docstring sketches; ``maxima``: ``calibrate``'s result for this graph; ``outlier_ratio``: see
    ``outlier_channels`` (None: no channel in fp32); ``weight_limit``: the largest weight code (``INT8_WEIGHT_LIMIT``,
    or ``AVX2_WEIGHT_LIMIT`` for the fast exact kernel without VNNI); ``static_inputs``: the MatMul inputs quantized
    with one calibrated scale instead of one per row (module docstring, "Static scales"; ``row_spreads``). Returns
    how many MatMuls were rewritten and how many input channels (summed over the quantized inputs) were split off in
    fp32.

    Excluded MatMuls keep their float weights and are not smoothed. A MatMul whose input has no calibrated
    maximum (not reached by the calibration feeds) is left float as well.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    matrices = matmul_weights(model)
    added: list[Any] = []

    def constant(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, _PREFIX + name))
        return _PREFIX + name

    axes = constant("last_axis", np.array([-1], np.int64))
    # a per-row input is divided by its row's maximum and quantized in steps of 1/127 (the step rides in the GEMM's
    # a_scale): one op fewer per input than dividing the maximum by 127 first
    step = constant("step", np.array(1 / 127, np.float32))
    epsilon = constant("epsilon", np.array(127e-12, np.float32))
    one = constant("one", np.array(1.0, np.float32))
    zero_point = constant("zero_point", np.array(128, np.uint8))
    # Keyed by the MatMul's output (unique in a graph; node names need not be).
    replaced: dict[str, list[Any]] = {}  # the nodes that compute it
    group_start: dict[str, list[Any]] = {}  # a group's shared nodes, before its first MatMul
    rewritten = split = 0
    for index, (source, nodes) in enumerate(weight_matmul_inputs(model).items()):
        members = [node for node in nodes if node.name not in exclude and source in maxima]
        if not members:
            continue
        weights = [weight_array(*matrices[node.output[0]]) for node in members]
        smooth, act = _smoothing_scales(maxima[source], weights, alpha)
        outliers = outlier_channels(act / smooth, outlier_ratio)
        kept = np.ones_like(smooth)  # 0 on the outlier channels: they leave the 8-bit product
        kept[outliers] = 0
        split += len(outliers)
        p = f"{_PREFIX}g{index}/"
        static = source in static_inputs
        if static:
            # one scale for the whole tensor, from calibration: smoothing and scale in one Mul, no per-row scale
            tensor_scale = max(float((act * kept / smooth).max()), 1e-12) / 127
            a_scale = constant(f"g{index}/tensor_scale", np.array(tensor_scale, np.float32))
            inverse = constant(f"g{index}/inverse_scale", (kept / smooth / np.float32(tensor_scale)).astype(np.float32))
            group_start[members[0].output[0]] = [
                helper.make_node("Mul", [source, inverse], [p + "xr"], name=p + "smooth_scaled"),
                helper.make_node("QuantizeLinear", [p + "xr", one, zero_point], [p + "xq"], name=p + "quantize"),
            ]
        else:
            a_scale = step
            inverse = constant(f"g{index}/inverse_smoothing", (kept / smooth).astype(np.float32))
            group_start[members[0].output[0]] = [
                helper.make_node("Mul", [source, inverse], [p + "xs"], name=p + "smooth"),
                helper.make_node("Abs", [p + "xs"], [p + "abs"], name=p + "abs"),
                helper.make_node("ReduceMax", [p + "abs", axes], [p + "max"], name=p + "row_max", keepdims=1),
                helper.make_node("Max", [p + "max", epsilon], [p + "r"], name=p + "row_scale"),
                helper.make_node("Div", [p + "xs", p + "r"], [p + "xr"], name=p + "row_scaled"),
                helper.make_node("QuantizeLinear", [p + "xr", step, zero_point], [p + "xq"], name=p + "quantize"),
            ]
        if len(outliers):
            channels = constant(f"g{index}/outlier_channels", outliers)
            group_start[members[0].output[0]].append(
                helper.make_node("Gather", [source, channels], [p + "xo"], name=p + "outliers", axis=-1)
            )
        for node, weight in zip(members, weights, strict=True):
            quantized, column_scale = _column_quantized(weight * (smooth * kept)[:, None], weight_limit)
            q = f"{_PREFIX}{node.output[0]}/"
            weight_q = constant(f"{node.output[0]}/weight", quantized)
            scale = constant(f"{node.output[0]}/column_scale", column_scale)
            # the per-column scale rides in the GEMM's epilogue (3-5 % faster than Cast + Mul, 10 % on AVX2 kernels)
            product = q + "y8" if len(outliers) else node.output[0]
            replaced[node.output[0]] = [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [p + "xq", weight_q, a_scale, scale, zero_point],
                    [product if static else q + "y"],
                    name=q + "matmul",
                    domain="com.microsoft",
                ),
            ]
            if not static:
                replaced[node.output[0]].append(
                    helper.make_node("Mul", [q + "y", p + "r"], [product], name=q + "row_scale")
                )
            if len(outliers):
                rows = constant(f"{node.output[0]}/outlier_weight", np.ascontiguousarray(weight[outliers]))
                replaced[node.output[0]] += [
                    helper.make_node("MatMul", [p + "xo", rows], [q + "yo"], name=q + "outlier_matmul"),
                    helper.make_node("Add", [q + "y8", q + "yo"], [node.output[0]], name=q + "outlier_add"),
                ]
            rewritten += 1
    nodes = []
    for node in graph.node:
        if node.op_type == "MatMul" and node.output[0] in replaced:
            nodes += group_start.get(node.output[0], []) + replaced[node.output[0]]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    prune_unread(graph)
    if rewritten and not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return rewritten, split


@dataclass(frozen=True)
class SmoothQuantScheme:
    """The scheme as the exclusion ladder (``quantize.quantize_weights``) drives it: ``apply`` rewrites a
    freshly loaded graph with the sensitive MatMuls kept float."""

    maxima: dict[str, Any] = field(repr=False)
    calibration_texts: int
    alpha: float = SMOOTHING_ALPHA
    outlier_ratio: float | None = OUTLIER_RATIO
    sensitive_bits: int | None = None
    weight_limit: int = INT8_WEIGHT_LIMIT
    static_inputs: frozenset[str] = frozenset()

    def describe(self) -> str:
        text = f"8-bit GEMM: per-row uint8 activations x per-column int8 weights, SmoothQuant alpha {self.alpha}"
        if self.static_inputs:
            text += f", one calibrated scale on {len(self.static_inputs)} normalized inputs"
        if self.weight_limit != INT8_WEIGHT_LIMIT:
            text += f", weights in [-{self.weight_limit}, {self.weight_limit}]"
        if self.outlier_ratio is not None:
            text += f", input channels over {self.outlier_ratio:g}x the median in fp32"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_bits": 8,
            "weight_limit": self.weight_limit,
            "activation_bits": 8,
            "smoothing_alpha": self.alpha,
            "calibration_texts": self.calibration_texts,
            "outlier_ratio": self.outlier_ratio,
            "max_outliers": MAX_OUTLIERS,
            "static_inputs": sorted(self.static_inputs),
        }

    def apply(self, model: Any, sensitive: Sequence[str]) -> Any:
        smooth_quantize(
            model, self.maxima, self.alpha, sensitive, self.outlier_ratio, self.weight_limit, self.static_inputs
        )
        return model


def split_channels(model: Any) -> int:
    """How many input channels ``model``'s SmoothQuant MatMuls compute in fp32 (summed over their inputs)."""
    from onnx import numpy_helper

    return sum(
        numpy_helper.to_array(init).size
        for init in model.graph.initializer
        if init.name.startswith(_PREFIX) and init.name.endswith("/outlier_channels")
    )
