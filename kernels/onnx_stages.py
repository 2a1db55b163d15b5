"""ONNX subgraph builders for the output stages: the same semantics as ``reference``.

One pass, ``append_output_stages``, grows a backbone graph::

    input_ids ─┐
    attention_mask ─┼─► backbone ─► token_embeddings [B,S,H] ──┐
    (token_type_ids)┘                                          ▼
    attention_mask ─► Cast ─► (prompt exclusion) ─► pool mask ─► Pool(mode₁ … modeₙ) ─► Concat
    prompt_length [B] (only when include_prompt=False) ─┘                                 │
                                       Dense₁ … Denseₖ (MatMul, Add, activation) ◄────────┘
                                                   │
                                       Normalize (ReduceL2, Max eps, Div)
                                                   ▼
                                       sentence_embedding [B,D]

Only standard ONNX operators (opset ≥ 18), so the stages run on every execution provider.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fastembed_rt.kernels.onnx_builder import GraphBuilder, StageCounts
from fastembed_rt.kernels.spec import (
    NORMALIZE_OUTPUT,
    OUTPUT_DIM,
    PROMPT_LENGTH,
    QUANTIZE_RANGES,
    SENTENCE_EMBEDDING,
    TOKEN_EMBEDDINGS,
    TOKEN_VECTORS,
    DenseActivation,
    DenseSpec,
    OutputStages,
    PoolingMode,
    Precision,
    TokenStages,
)

__all__ = ["StageCounts", "append_output_precisions", "append_output_stages", "append_token_stages"]


def _activation(b: GraphBuilder, x: str, activation: DenseActivation) -> str:
    if activation is DenseActivation.IDENTITY:
        return x
    if activation is DenseActivation.TANH:
        return b.op("Tanh", [x])
    if activation is DenseActivation.RELU:
        return b.op("Relu", [x])
    if activation is DenseActivation.SIGMOID:
        return b.op("Sigmoid", [x])
    if activation is DenseActivation.SILU:
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if activation is DenseActivation.GELU:
        # Exact (erf) GELU as torch.nn.GELU(): 0.5 * x * (1 + erf(x / sqrt(2))).
        scaled = b.op("Div", [x, b.const(np.array(np.sqrt(2.0), np.float32), "sqrt2")])
        one_plus = b.op("Add", [b.op("Erf", [scaled]), b.const(np.array(1.0, np.float32), "one")])
        return b.op("Mul", [b.op("Mul", [x, one_plus]), b.const(np.array(0.5, np.float32), "half")])
    raise ValueError(f"unknown dense activation {activation!r}")  # pragma: no cover


def _gather_token(b: GraphBuilder, x: str, index_b1: str) -> str:
    """``x[b, index[b], :]`` for x [B,S,H] and an int64 index [B,1]: GatherElements on axis 1."""
    i64 = np.int64
    shape_x = b.op("Shape", [x])
    batch = b.op("Slice", [shape_x, b.const(np.array([0], i64), "s0"), b.const(np.array([1], i64), "s1")])
    hidden = b.op("Slice", [shape_x, b.const(np.array([2], i64), "s2"), b.const(np.array([3], i64), "s3")])
    target = b.op("Concat", [batch, b.const(np.array([1], i64), "one_dim"), hidden], axis=0)  # [B,1,H]
    index = b.op("Expand", [b.op("Unsqueeze", [index_b1, b.const(np.array([-1], i64), "ax")]), target])
    gathered = b.op("GatherElements", [x, index], axis=1)
    return b.op("Squeeze", [gathered, b.const(np.array([1], i64), "ax1")])


def append_output_stages(
    model: onnx.ModelProto,
    stages: OutputStages,
    *,
    token_embeddings: str = "token_embeddings",
    attention_mask: str = "attention_mask",
    output_name: str = SENTENCE_EMBEDDING,
) -> StageCounts:
    """Append pooling, dense and normalize stages to ``model`` in place.

    Args:
        model: a graph with input ``attention_mask`` [B,S] int64 and output ``token_embeddings``
            [B,S,H] float32.
        stages: what to append.
    Returns:
        counts of added nodes and initializers. Adds the graph output ``sentence_embedding``
        float32 [B, D] (and input ``prompt_length`` int64 [B] when ``include_prompt`` is False).
    """
    graph = model.graph
    b = GraphBuilder(graph, "stages")
    i64 = np.int64

    ax1 = b.const(np.array([1], i64), "axis1")
    ax_last = b.const(np.array([-1], i64), "axis_last")
    mask_orig = attention_mask
    if not stages.pooling.include_prompt:
        graph.input.append(helper.make_tensor_value_info(PROMPT_LENGTH, TensorProto.INT64, ["batch"]))
        first = b.op("ArgMax", [mask_orig], "first_valid", axis=1, keepdims=1)  # [B,1]
        seq_len = b.op("Gather", [b.op("Shape", [mask_orig]), b.const(np.array(1, i64), "one_i")])
        positions = b.op("Range", [b.const(np.array(0, i64), "zero_i"), seq_len, b.const(np.array(1, i64), "step")])
        cutoff = b.op("Add", [first, b.op("Unsqueeze", [PROMPT_LENGTH, ax1])])  # [B,1]
        keep = b.op("Cast", [b.op("GreaterOrEqual", [positions, cutoff])], to=TensorProto.INT64)
        mask_i = b.op("Mul", [mask_orig, keep], "pool_mask")
    else:
        mask_i = mask_orig
    mask_f = b.op("Cast", [mask_i], "pool_mask_f", to=TensorProto.FLOAT)  # [B,S]
    mask_f3 = b.op("Unsqueeze", [mask_f, ax_last])  # [B,S,1]
    x = token_embeddings
    eps_mean = b.const(np.array(1e-9, np.float32), "eps_mean")

    parts: list[str] = []
    mean_sum: str | None = None
    mean_count: str | None = None
    for mode in stages.pooling.modes:
        b.counts.pooling_modes.append(mode.value)
        if mode is PoolingMode.CLS:
            parts.append(_gather_token(b, x, b.op("ArgMax", [mask_i], "first_pooled", axis=1, keepdims=1)))
        elif mode in (PoolingMode.MEAN, PoolingMode.MEAN_SQRT_LEN_TOKENS):
            if mean_sum is None or mean_count is None:
                mean_sum = b.op("ReduceSum", [b.op("Mul", [x, mask_f3]), ax1], "mean_sum", keepdims=0)
                mean_count = b.op("Max", [b.op("ReduceSum", [mask_f, ax1], keepdims=1), eps_mean])
            denom = mean_count if mode is PoolingMode.MEAN else b.op("Sqrt", [mean_count])
            parts.append(b.op("Div", [mean_sum, denom], mode.value))
        elif mode is PoolingMode.MAX:
            is_pad = b.op("Equal", [mask_f3, b.const(np.array(0.0, np.float32), "zero_f")])
            neg_inf = b.const(np.array(-np.inf, np.float32), "neg_inf")
            parts.append(b.op("ReduceMax", [b.op("Where", [is_pad, neg_inf, x]), ax1], "max", keepdims=0))
        elif mode is PoolingMode.WEIGHTEDMEAN:
            first_orig = b.op("ArgMax", [mask_orig], "first_orig", axis=1, keepdims=1)  # [B,1]
            seq_len = b.op("Gather", [b.op("Shape", [mask_orig]), b.const(np.array(1, i64), "one_s")])
            pos1 = b.op(
                "Range",
                [
                    b.const(np.array(1, i64), "one_r"),
                    b.op("Add", [seq_len, b.const(np.array(1, i64), "one_a")]),
                    b.const(np.array(1, i64), "step_r"),
                ],
            )  # [S] = 1..S
            weights = b.op("Cast", [b.op("Sub", [pos1, first_orig])], to=TensorProto.FLOAT)  # [B,S]
            weighted = b.op("Mul", [mask_f, weights])
            total = b.op("ReduceSum", [b.op("Mul", [x, b.op("Unsqueeze", [weighted, ax_last])]), ax1], keepdims=0)
            denom = b.op("Max", [b.op("ReduceSum", [weighted, ax1], keepdims=1), eps_mean])
            parts.append(b.op("Div", [total, denom], "weightedmean"))
        elif mode is PoolingMode.LASTTOKEN:
            last = b.op("ArgMax", [mask_i], "last_pooled", axis=1, keepdims=1, select_last_index=1)
            has = b.op("Greater", [b.op("ReduceMax", [mask_i, ax1], keepdims=1), b.const(np.array(0, i64), "zero_l")])
            index = b.op("Where", [has, last, b.const(np.array(0, i64), "zero_idx")])
            parts.append(_gather_token(b, b.op("Mul", [x, mask_f3]), index))
    pooled = parts[0] if len(parts) == 1 else b.op("Concat", parts, "pooled", axis=-1)

    y = _dense_and_normalize(b, pooled, stages.dense, stages.normalize)
    graph.node.append(helper.make_node("Identity", [y], [output_name], name=f"stages/{output_name}"))
    b.counts.nodes += 1
    graph.output.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", "dim"]))
    b.drop_unused_constants()
    return b.counts


def _dense_and_normalize(b: GraphBuilder, x: str, dense: tuple[DenseSpec, ...], normalize: bool) -> str:
    """Dense layers (MatMul, Add, activation) then L2 normalize over the last axis, for [B,D] or [B,S,D]."""
    y = x
    for i, layer in enumerate(dense):
        w_t = b.const(np.ascontiguousarray(layer.weight.astype(np.float32).T), f"dense{i}_weight_t")
        y = b.op("MatMul", [y, w_t], f"dense{i}")
        if layer.bias is not None:
            y = b.op("Add", [y, b.const(layer.bias.astype(np.float32), f"dense{i}_bias")])
        y = _activation(b, y, layer.activation)
        b.counts.dense_layers += 1
    if normalize:
        norm = b.op("ReduceL2", [y, b.const(np.array([-1], np.int64), "axis_last")], "l2", keepdims=1)
        y = b.op("Div", [y, b.op("Max", [norm, b.const(np.array(1e-12, np.float32), "eps_norm")])], "normalized")
        b.counts.normalize = True
    return y


def append_token_stages(
    model: onnx.ModelProto,
    stages: TokenStages,
    *,
    token_embeddings: str = TOKEN_EMBEDDINGS,
    output_name: str = TOKEN_VECTORS,
) -> StageCounts:
    """Append a multi-vector model's token stages to ``model`` in place::

        token_embeddings [B,S,H] ─► Dense₁ … Denseₖ (MatMul, Add, activation) ─► Normalize ─► token_vectors [B,S,D]

    Every position is projected, padding included: which rows a text keeps (real tokens, query
    expansion, no skiplist tokens) is decided on the host from the token ids. Semantics:
    ``reference.apply_token_stages``. Returns the counts of what was added.
    """
    b = GraphBuilder(model.graph, "token_stages")
    y = _dense_and_normalize(b, token_embeddings, stages.dense, stages.normalize)
    model.graph.node.append(helper.make_node("Identity", [y], [output_name], name=f"token_stages/{output_name}"))
    b.counts.nodes += 1
    model.graph.output.append(
        helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", "sequence", "dim"])
    )
    b.drop_unused_constants()
    return b.counts


def append_output_precisions(model: onnx.ModelProto, dim: int, *, embedding: str = SENTENCE_EMBEDDING) -> StageCounts:
    """Append Matryoshka truncation and every output precision to ``model`` in place.

    ::

        sentence_embedding [B,D] ─► Slice[:, :output_dim] ─► (L2-normalize if normalize_output)
              ─► embedding_float32 [B,K]
              ─► (x - min) / step ─► Floor ─► Clip[0,255] ─► embedding_uint8 [B,K], ─128 ─► embedding_int8
              ─► x > 0 ─► pad to 8 ─► Σ bit·2^(7-i) ─► embedding_ubinary [B,⌈K/8⌉], ─128 ─► embedding_binary

    Inputs added: ``output_dim`` int64 [1] (K, 1..D), ``normalize_output`` bool [1], and
    ``quantize_ranges`` float32 [2, K] (per-dimension calibration min and max). Each has a default
    initializer (K = ``dim``, no re-normalization, ranges [-1, 1]), so a caller that wants only
    ``sentence_embedding`` need not feed them. ONNX Runtime only computes the outputs a caller
    asks for, so the unused precisions cost nothing.
    Semantics are those of ``reference.matryoshka`` and ``reference.quantize``.
    """
    graph = model.graph
    b = GraphBuilder(graph, "precision")
    i64, f32 = np.int64, np.float32
    graph.input.extend(
        [
            helper.make_tensor_value_info(OUTPUT_DIM, TensorProto.INT64, [1]),
            helper.make_tensor_value_info(NORMALIZE_OUTPUT, TensorProto.BOOL, [1]),
            helper.make_tensor_value_info(QUANTIZE_RANGES, TensorProto.FLOAT, [2, "output_dim"]),
        ]
    )
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([dim], i64), OUTPUT_DIM),
            numpy_helper.from_array(np.array([False]), NORMALIZE_OUTPUT),
            numpy_helper.from_array(np.stack([-np.ones(dim, f32), np.ones(dim, f32)]), QUANTIZE_RANGES),
        ]
    )
    zero, axis1, last = (b.const(np.array([v], i64), n) for v, n in ((0, "zero"), (1, "ax1"), (-1, "last")))
    sliced = b.op("Slice", [embedding, zero, OUTPUT_DIM, axis1], "sliced")
    norm = b.op("ReduceL2", [sliced, last], "l2", keepdims=1)
    renormed = b.op("Div", [sliced, b.op("Max", [norm, b.const(np.array(1e-12, f32), "eps")])], "renormed")
    x = b.op("Where", [NORMALIZE_OUTPUT, renormed, sliced], "matryoshka")
    outputs: list[tuple[str, str, int, list[str | int]]] = [
        (x, Precision.FLOAT32.output_name, TensorProto.FLOAT, ["batch", "output_dim"])
    ]

    starts = b.op("Gather", [QUANTIZE_RANGES, b.const(np.array(0, i64), "row0")], axis=0)
    ends = b.op("Gather", [QUANTIZE_RANGES, b.const(np.array(1, i64), "row1")], axis=0)
    steps = b.op("Div", [b.op("Sub", [ends, starts]), b.const(np.array(255, f32), "c255")])
    steps = b.op(
        "Where", [b.op("Equal", [steps, b.const(np.array(0, f32), "f0")]), b.const(np.array(1, f32), "f1"), steps]
    )
    codes = b.op("Floor", [b.op("Div", [b.op("Sub", [x, starts]), steps])])
    codes = b.op("Clip", [codes, b.const(np.array(0, f32), "lo"), b.const(np.array(255, f32), "hi")], "codes")
    outputs.append(
        (
            b.op("Cast", [codes], to=TensorProto.UINT8),
            Precision.UINT8.output_name,
            TensorProto.UINT8,
            ["batch", "output_dim"],
        )
    )
    shifted = b.op("Sub", [codes, b.const(np.array(128, f32), "c128")])
    outputs.append(
        (
            b.op("Cast", [shifted], to=TensorProto.INT8),
            Precision.INT8.output_name,
            TensorProto.INT8,
            ["batch", "output_dim"],
        )
    )

    bits = b.op("Cast", [b.op("Greater", [x, b.const(np.array(0, f32), "f0b")])], to=TensorProto.INT32)
    eight = b.const(np.array([8], i64), "eight")
    pad = b.op("Mod", [b.op("Sub", [eight, b.op("Mod", [OUTPUT_DIM, eight])]), eight])  # (8 - K % 8) % 8
    pads = b.op("Concat", [zero, zero, zero, pad], axis=0)
    padded = b.op("Pad", [bits, pads])
    grouped = b.op("Reshape", [padded, b.const(np.array([0, -1, 8], i64), "groups")])
    weights = b.const(np.array([128, 64, 32, 16, 8, 4, 2, 1], np.int32), "bit_weights")
    packed = b.op("ReduceSum", [b.op("Mul", [grouped, weights]), last], "packed", keepdims=0)
    outputs.append(
        (
            b.op("Cast", [packed], to=TensorProto.UINT8),
            Precision.UBINARY.output_name,
            TensorProto.UINT8,
            ["batch", "output_bytes"],
        )
    )
    signed = b.op("Sub", [packed, b.const(np.array(128, np.int32), "i128")])
    outputs.append(
        (
            b.op("Cast", [signed], to=TensorProto.INT8),
            Precision.BINARY.output_name,
            TensorProto.INT8,
            ["batch", "output_bytes"],
        )
    )

    for source, name, elem_type, dims in outputs:
        graph.node.append(helper.make_node("Identity", [source], [name], name=f"precision/{name}"))
        graph.output.append(helper.make_tensor_value_info(name, elem_type, dims))
        b.counts.nodes += 1
    b.drop_unused_constants()
    return b.counts
