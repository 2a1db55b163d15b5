"""Fuse the self-attention blocks of a dynamo-exported encoder into ONNX Runtime's ``Attention`` op.

ONNX Runtime's transformer optimizer recognises the attention subgraph of the TorchScript exporter,
not the one ``torch.onnx.export(dynamo=True)`` writes for transformers 5 (its mask arrives as a
[batch, 1, q, k] additive tensor built from ``attention_mask`` with GatherND/Where), so the
``optimized`` variant kept 4 Transposes, 4 Reshapes and 3 separate Q/K/V GEMMs per layer
(Transpose alone was 12 % of session time on all-MiniLM-L6-v2). This pass matches the eager
attention pattern directly::

    x ─MatMul(Wq)─Add(bq)─Reshape─Transpose(0,2,1,3)──────────┐
    x ─MatMul(Wk)─Add(bk)─Reshape─Transpose(0,2,3,1)─ MatMul(Q, Kᵀ)─Mul(scale)─Add(mask)─Softmax─┐
    x ─MatMul(Wv)─Add(bv)─Reshape─Transpose(0,2,1,3)──────────────────────────────── MatMul(P, V)
                                                   ─Transpose(0,2,1,3)─Reshape(b, s, hidden)─ out

and replaces it by one node::

    Attention(x, [Wq|Wk|Wv], [bq|bk|bv], mask_index=int32(attention_mask), num_heads, scale) ─ out

The additive mask of an encoder is 0 where ``attention_mask`` is 1 and the float minimum where it
is 0, for every query row; ``Attention`` with a 2-D raw mask computes exactly that. The pass only
fires when the mask tensor is computed from the graph input ``attention_mask``; anything else (a
relative-position bias as in MPNet, a pre-scaled query as in DistilBERT) is left as it is, and the
count says so. The variant's fidelity gate checks the fused graph against PyTorch either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["fuse_attention"]

_MASK_INPUT = "attention_mask"
_MASK_INT32 = "attention_mask_int32"


@dataclass(frozen=True)
class _Projection:
    """MatMul(x, W) → Add(b) → Reshape → Transpose(perm): one of Q, K, V."""

    source: str
    weight: Any
    bias: Any
    nodes: tuple[Any, ...]


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.constants = {
            node.output[0]: numpy_helper.to_array(node.attribute[0].t)
            for node in self.graph.node
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
        }

    def array(self, name: str) -> Any:
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        return self.constants.get(name)

    def node(self, name: str, op_type: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str, op_type: str) -> Any:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def perm(self, node: Any) -> tuple[int, ...]:
        for attr in node.attribute:
            if attr.name == "perm":
                return tuple(attr.ints)
        return ()

    def depends_on_input(self, name: str, graph_input: str) -> bool:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current == graph_input:
                return True
            if current in seen:
                continue
            seen.add(current)
            node = self.producer.get(current)
            if node is not None:
                stack.extend(node.input)
        return False


def _orders(node: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """A binary node's two inputs in both orders (Add and Mul commute)."""
    return (node.input[0], node.input[1]), (node.input[1], node.input[0])


def _projection(g: _Graph, name: str, perm: tuple[int, ...]) -> _Projection | None:
    transpose = g.node(name, "Transpose")
    if transpose is None or g.perm(transpose) != perm:
        return None
    reshape = g.node(transpose.input[0], "Reshape")
    add = g.node(reshape.input[0], "Add") if reshape is not None else None
    if add is None:
        return None
    for matmul_out, bias_name in _orders(add):
        matmul = g.node(matmul_out, "MatMul")
        bias = g.array(bias_name)
        if matmul is None or bias is None or bias.ndim != 1:
            continue
        weight = g.array(matmul.input[1])
        if weight is None or weight.ndim != 2 or weight.shape[1] != bias.shape[0]:
            continue
        return _Projection(matmul.input[0], weight, bias, (matmul, add, reshape, transpose))
    return None


def _match(g: _Graph, softmax: Any, num_heads: int, packed: bool) -> tuple[list[Any], Any] | None:
    """The nodes to remove and the fused node for the attention block around ``softmax``."""
    import numpy as np
    from onnx import helper

    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    if axis not in (-1, 3):
        return None
    add_mask = g.node(softmax.input[0], "Add")
    if add_mask is None:
        return None
    scaled = next(
        (
            (g.producer[a], b)
            for a, b in _orders(add_mask)
            if a in g.producer and g.producer[a].op_type in ("Mul", "Div")
        ),
        None,
    )
    if scaled is None or not g.depends_on_input(scaled[1], _MASK_INPUT):
        return None
    scale_node = scaled[0]
    scores, factor = next(
        ((g.node(a, "MatMul"), g.array(b)) for a, b in _orders(scale_node) if g.node(a, "MatMul") is not None),
        (None, None),
    )
    if scores is None or factor is None or factor.size != 1:
        return None
    value = float(factor.reshape(()))
    if scale_node.op_type == "Div" and (scores.output[0] != scale_node.input[0] or value == 0.0):
        return None  # only scores / constant is a scale
    scale = value if scale_node.op_type == "Mul" else 1.0 / value
    q = _projection(g, scores.input[0], (0, 2, 1, 3))
    k = _projection(g, scores.input[1], (0, 2, 3, 1))
    context = g.only_consumer(softmax.output[0], "MatMul")
    if q is None or k is None or context is None or context.input[0] != softmax.output[0]:
        return None
    v = _projection(g, context.input[1], (0, 2, 1, 3))
    merge = g.only_consumer(context.output[0], "Transpose")
    if v is None or merge is None or g.perm(merge) != (0, 2, 1, 3):
        return None
    out = g.only_consumer(merge.output[0], "Reshape")
    if out is None or not (q.source == k.source == v.source):
        return None
    hidden = q.weight.shape[1]
    if k.weight.shape[1] != hidden or v.weight.shape[1] != hidden or hidden % num_heads:
        return None
    removed = [*q.nodes, *k.nodes, *v.nodes, scores, scale_node, add_mask, softmax, context, merge, out]
    inside = {id(node) for node in removed}
    graph_outputs = {o.name for o in g.graph.output}
    for node in removed:  # nothing outside the block (no node, no graph output) may read its inner tensors
        for name in node.output:
            if name == out.output[0]:
                continue
            if name in graph_outputs or any(id(user) not in inside for user in g.consumers.get(name, [])):
                return None
    prefix = f"{softmax.name or softmax.output[0]}_fused"
    bias = helper.make_tensor(
        f"{prefix}_qkv_bias",
        1,  # FLOAT
        [3 * hidden],
        np.concatenate([q.bias, k.bias, v.bias]).astype(np.float32).tobytes(),
        raw=True,
    )
    if not packed:  # the projections stay MatMuls of their own, for a quantizer to rewrite
        g.graph.initializer.append(bias)
        projections = [q.nodes[0], k.nodes[0], v.nodes[0]]
        fused = helper.make_node(
            "MultiHeadAttention",
            [*(node.output[0] for node in projections), bias.name, _MASK_INT32],
            [out.output[0]],
            name=prefix,
            domain="com.microsoft",
            num_heads=num_heads,
            scale=scale,
        )
        return [node for node in removed if all(node is not p for p in projections)], fused
    weights = helper.make_tensor(
        f"{prefix}_qkv_weight",
        1,  # FLOAT
        [q.weight.shape[0], 3 * hidden],
        np.concatenate([q.weight, k.weight, v.weight], axis=1).astype(np.float32).tobytes(),
        raw=True,
    )
    g.graph.initializer.extend([weights, bias])
    fused = helper.make_node(
        "Attention",
        [q.source, weights.name, bias.name, _MASK_INT32],
        [out.output[0]],
        name=prefix,
        domain="com.microsoft",
        num_heads=num_heads,
        scale=scale,
    )
    return removed, fused


def fuse_attention(model: Any, num_heads: int, *, packed: bool = True) -> int:
    """Replace each matched attention block of ``model`` (an ``onnx.ModelProto``, edited in place).

    ``packed``: one ``Attention`` node with the Q/K/V weights packed into it. Otherwise the three
    projections stay MatMuls and ``MultiHeadAttention`` takes their outputs (with the three biases and
    the same mask): the int8 graph quantizes the projections, and the fused core still saves the
    per-head Transposes (7.5 % of its session time unfused, all-MiniLM-L6-v2).

    Returns the number of blocks fused. Nodes and initializers left without readers are removed.
    """
    from onnx import TensorProto, helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    if num_heads <= 0 or _MASK_INPUT not in {i.name for i in model.graph.input}:
        return 0
    g = _Graph(model)
    removed: list[Any] = []
    fused: list[Any] = []
    for node in list(g.graph.node):
        if node.op_type != "Softmax":
            continue
        match = _match(g, node, num_heads, packed)
        if match is not None:
            removed.extend(match[0])
            fused.append(match[1])
    if not fused:
        return 0
    gone = {id(node) for node in removed}
    kept = [node for node in g.graph.node if id(node) not in gone]
    cast = helper.make_node("Cast", [_MASK_INPUT], [_MASK_INT32], name="attention_mask_to_int32", to=TensorProto.INT32)
    del g.graph.node[:]
    g.graph.node.extend([cast, *kept, *fused])
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    edited = OnnxModel(model)
    edited.topological_sort()
    # the per-layer shape computations, the additive mask and the separate Q/K/V weights are unread now
    edited.prune_graph(allow_remove_graph_inputs=False)
    return len(fused)
