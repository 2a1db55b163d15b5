"""ONNX builders of the task heads: the same semantics as ``reference``'s numpy heads.

Classifier head (cross-encoder)::

    logits [B,N] ──► Identity | Sigmoid | Softmax(axis=-1) ──► scores [B,N]

SPLADE head (sparse encoder)::

    logits [B,S,V] ─► Mul(mask) ─► ReduceMax(axis 1) ─► Relu ─► log1p (×2 for log1p_relu) ─► pooled [B,V]
                      (sum pooling: Relu ─► log1p ─► ReduceSum(axis 1), every token transformed)
    pooled ─► Greater(0) ─► count per row ─► ReduceMax ─┐
    max_active_dims [1] ────────────────────────────────┴─► Min ─► k
    pooled, k ─► TopK(largest, sorted) ─► sparse_indices [B,K] int64, sparse_values [B,K] float32

With max pooling the head pools before the activation: relu and log1p are monotone, so
``max(log1p(relu(x))) == log1p(relu(max(x)))``, and the transcendental runs on ``[B,V]`` instead of
``[B,S,V]``. ``K = min(max_active_dims, most active dimensions in the batch)``, so only a few
hundred values per row leave the session instead of the ``[B,S,V]`` logits. ONNX has no ``Log1p``;
``log(1 + x)`` in float32 loses every digit of ``x < 6e-8`` and 1e-3 relative at 1e-4, so the head
uses Goldberg's ``x * log(u) / (u - 1)`` with ``u = 1 + x`` (``x`` where ``u == 1``), accurate to
a few ulp in float32 on every provider.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from fastembed_rt.kernels.onnx_builder import GraphBuilder
from fastembed_rt.kernels.spec import (
    LOGITS,
    MAX_ACTIVE_DIMS,
    SCORES,
    SPARSE_INDICES,
    SPARSE_VALUES,
    ClassifierActivation,
    ClassifierHeadSpec,
    SpladeActivation,
    SpladePoolingStrategy,
    SpladeSpec,
)

__all__ = ["HeadCounts", "append_classifier_head", "append_splade_head"]


@dataclass(frozen=True)
class HeadCounts:
    """What a head builder added, for tests and the manifest's ``stage_counts``."""

    head: str
    nodes: int
    initializers: int

    def to_dict(self) -> dict[str, object]:
        return {"head": self.head, "stage_nodes": self.nodes, "stage_initializers": self.initializers}


def append_classifier_head(model: onnx.ModelProto, spec: ClassifierHeadSpec, *, logits: str = LOGITS) -> HeadCounts:
    """Add the graph output ``scores`` float32 ``[batch, num_labels]`` = activation(``logits``), in place.

    ``logits`` stays a graph output, so the runtime can apply another activation per call.
    """
    b = GraphBuilder(model.graph, "head")
    if spec.activation is ClassifierActivation.IDENTITY:
        y = b.op("Identity", [logits])
    elif spec.activation is ClassifierActivation.SIGMOID:
        y = b.op("Sigmoid", [logits])
    else:
        y = b.op("Softmax", [logits], axis=-1)
    model.graph.node.append(helper.make_node("Identity", [y], [SCORES], name=f"head/{SCORES}"))
    model.graph.output.append(helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, ["batch", spec.num_labels]))
    return HeadCounts(f"classifier:{spec.activation.value}", b.counts.nodes + 1, b.counts.initializers)


def _log1p(b: GraphBuilder, x: str) -> str:
    """``log1p(x)`` for ``x >= 0``: ``x`` where ``1 + x == 1``, ``log(1 + x)`` where ``1 + x > 2^24`` (there ``1 + x``
    is ``x`` in float32, and the ratio's ``x * log(u)`` overflows from ~4e36: inf, and NaN for an inf logit, which
    the top-k then counted out), else ``x * log(1 + x) / ((1 + x) - 1)``."""
    one = b.const(np.array(1.0, np.float32), "one")
    u = b.op("Add", [x, one], "u")
    log_u = b.op("Log", [u])
    ratio = b.op("Div", [b.op("Mul", [x, log_u]), b.op("Sub", [u, one])])
    large = b.op("Greater", [u, b.const(np.array(2.0**24, np.float32), "exact_beyond")])
    return b.op("Where", [b.op("Equal", [u, one]), x, b.op("Where", [large, log_u, ratio])], "log1p")


def _activate(b: GraphBuilder, x: str, spec: SpladeSpec) -> str:
    y = _log1p(b, b.op("Relu", [x]))
    if spec.activation is SpladeActivation.LOG1P_RELU:
        y = _log1p(b, y)
    return y


def append_splade_head(
    model: onnx.ModelProto,
    spec: SpladeSpec,
    *,
    logits: str = LOGITS,
    attention_mask: str = "attention_mask",
    keep_logits_output: bool = False,
) -> HeadCounts:
    """Replace the ``logits`` output with the SPLADE head, in place.

    Adds the graph input ``max_active_dims`` int64 ``[1]`` (k of the top-k; pass ``vocab_size`` to keep
    every active dimension) and the outputs ``sparse_indices`` int64 / ``sparse_values`` float32, both
    ``[batch, K]`` rows by decreasing value, zero-valued entries being padding. The ``[B,S,V]`` logits
    output is removed unless ``keep_logits_output``.
    """
    graph = model.graph
    b = GraphBuilder(graph, "splade")
    i64 = np.int64
    ax1 = b.const(np.array([1], i64), "axis1")
    mask = b.op("Unsqueeze", [b.op("Cast", [attention_mask], to=TensorProto.FLOAT), b.const(np.array([-1], i64), "ax")])
    masked = b.op("Mul", [logits, mask], "masked_logits")
    if spec.pooling is SpladePoolingStrategy.MAX:
        pooled = _activate(b, b.op("ReduceMax", [masked, ax1], "max_logits", keepdims=0), spec)
    else:
        pooled = b.op("ReduceSum", [_activate(b, masked, spec), ax1], "sum_pooled", keepdims=0)

    active = b.op("Cast", [b.op("Greater", [pooled, b.const(np.array(0.0, np.float32), "zero")])], to=TensorProto.INT64)
    most_active = b.op("ReduceMax", [b.op("ReduceSum", [active, ax1], keepdims=0)], keepdims=1)  # [1]
    graph.input.append(helper.make_tensor_value_info(MAX_ACTIVE_DIMS, TensorProto.INT64, [1]))
    k = b.op("Min", [MAX_ACTIVE_DIMS, most_active], "k")
    graph.node.append(
        helper.make_node(
            "TopK", [pooled, k], [SPARSE_VALUES, SPARSE_INDICES], name="splade/topk", axis=-1, largest=1, sorted=1
        )
    )
    b.counts.nodes += 1
    if not keep_logits_output:
        for output in [o for o in graph.output if o.name == logits]:
            graph.output.remove(output)
    graph.output.append(helper.make_tensor_value_info(SPARSE_INDICES, TensorProto.INT64, ["batch", "active"]))
    graph.output.append(helper.make_tensor_value_info(SPARSE_VALUES, TensorProto.FLOAT, ["batch", "active"]))
    b.drop_unused_constants()
    name = f"splade:{spec.pooling.value}:{spec.activation.value}"
    return HeadCounts(name, b.counts.nodes, b.counts.initializers)
