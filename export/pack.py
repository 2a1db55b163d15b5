"""``packed`` variant: the optimized graph taking its batch packed, without padding (``fastembed_rt.packing``).

The optimized backbone already runs attention as ONNX Runtime's ``com.microsoft.Attention``, whose
mask may be 3-D (``[rows, length, length]``): a block-diagonal mask keeps every packed input to its
own tokens. Three rewires turn it into a packed backbone, the rest of the graph untouched:

- every Attention node's mask is the graph input ``packed_attention_mask`` (the padded mask fed them
  through a Cast, and nothing else: anything else reading it would see the wrong layout);
- the one lookup of learned absolute positions (a Gather of the position table by indices that depend
  on the input's shape only) reads the graph input ``position_ids``, which restart at every input;
- the last hidden states ``[rows, length, H]`` are flattened and gathered by ``unpack_index`` into the
  padded layout ``[batch, sequence, H]`` the output stages read with the padded ``attention_mask``.

Families whose positions are computed from the token values (XLM-RoBERTa), rotary (ModernBERT, Qwen3)
or relative (MPNet), or whose attention is not fused, are not applicable and say which rewire failed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from fastembed_rt.export.build import BuildContext, BuildResult, NotApplicable
from fastembed_rt.export.optimize import backbone_folder, optimize_backbone, require_fusions, save_optimized
from fastembed_rt.packing import PACKED_ATTENTION_MASK, POSITION_IDS, UNPACK_INDEX

__all__ = ["build_packed", "pack_backbone"]

_MS = "com.microsoft"


def build_packed(context: BuildContext) -> BuildResult:
    """The optimized fp32 backbone, packed (module docstring), with the task's fp32 output stages."""
    require_fusions(context)
    # The position lookup is checked on the backbone before the fusions, which take minutes on a large decoder
    # that cannot be packed anyway (rotary positions).
    model, fused = optimize_backbone(context, skip_layer_norm=False, check=_check_positions)
    with backbone_folder(context):  # the position table's index buffer may sit in the backbone's data file
        rewired = pack_backbone(model, context.backbone.hidden_size)
    details = {"optimization": "ort-transformers, packed", "fused_ops": fused, "packed_attention": rewired}
    return save_optimized(context, model, "onnx/model_packed.onnx", details)


def pack_backbone(model: Any, hidden_size: int) -> int:
    """Rewire an optimized backbone (``token_embeddings`` out) to take packed inputs, in place.

    Returns the number of Attention nodes that read the packed mask. Raises ``NotApplicable`` naming the
    part of the graph that cannot take packed inputs.
    """
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    graph = model.graph
    names = {i.name for i in graph.input}
    if not {"input_ids", "attention_mask"} <= names:
        raise NotApplicable(f"the backbone takes {sorted(names)}, not input_ids and attention_mask")
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers[name].append((node, index))

    attention = [n for n in graph.node if n.op_type == "Attention" and n.domain == _MS]
    if not attention:
        raise NotApplicable("the backbone has no fused Attention node to take a per-input (block-diagonal) mask")
    for node in attention:
        if any(node.input[4:]):
            raise NotApplicable(f"Attention node {node.name} has inputs past the mask (past state or bias)")

    # The padded mask may reach the Attention nodes' mask input only, through Casts (pruned below).
    frontier = ["attention_mask"]
    while frontier:
        for node, index in consumers[frontier.pop()]:
            if node.op_type == "Cast":
                frontier.append(node.output[0])
            elif not (node.op_type == "Attention" and node.domain == _MS and index == 3):
                raise NotApplicable(f"the attention mask also feeds {node.op_type} node {node.name}")
    for node in attention:
        node.input[3] = PACKED_ATTENTION_MASK

    _check_positions(graph)[0].input[1] = POSITION_IDS

    output = graph.output[0].name
    packed = f"{output}_packed"
    for node in graph.node:
        node.output[:] = [packed if name == output else name for name in node.output]
        node.input[:] = [packed if name == output else name for name in node.input]
    shape = numpy_helper.from_array(np.array([-1, hidden_size], np.int64), f"{output}_flat_shape")
    graph.initializer.append(shape)
    flat = f"{output}_flat"
    graph.node.append(helper.make_node("Reshape", [packed, shape.name], [flat], name=f"{output}_flatten"))
    graph.node.append(helper.make_node("Gather", [flat, UNPACK_INDEX], [output], name=f"{output}_unpack", axis=0))

    rows = ["rows", "packed_length"]
    for value in graph.input:
        if value.name in ("input_ids", "token_type_ids"):
            value.CopyFrom(helper.make_tensor_value_info(value.name, TensorProto.INT64, rows))
    graph.input.extend(
        [
            helper.make_tensor_value_info(POSITION_IDS, TensorProto.INT64, rows),
            helper.make_tensor_value_info(PACKED_ATTENTION_MASK, TensorProto.INT32, [*rows, "packed_length"]),
            helper.make_tensor_value_info(UNPACK_INDEX, TensorProto.INT64, ["batch", "sequence"]),
        ]
    )
    del graph.value_info[:]  # shapes inferred for the padded layout no longer hold
    # the padded mask's Casts and the old position indices' shape arithmetic are unread now
    OnnxModel(model).prune_graph(allow_remove_graph_inputs=False)
    return len(attention)


def _check_positions(graph: Any) -> list[Any]:
    """The graph's one lookup of learned absolute positions (as a list of one), or ``NotApplicable``."""
    positions = _position_lookups(graph)
    if len(positions) != 1:
        raise NotApplicable(
            f"found {len(positions)} lookups of learned absolute positions (packing needs exactly one): the "
            "family's positions are computed from the tokens, rotary or relative"
        )
    return positions


def _position_lookups(graph: Any) -> list[Any]:
    """Gathers from a table whose indices depend on no input's values (only shapes), and trace back to an
    ``arange`` buffer: the learned absolute position lookup (a token-type lookup of a zeros buffer is not one)."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    by_value = {i.name for i in graph.input}
    for node in graph.node:  # graph.node is in topological order
        if node.op_type != "Shape" and any(name in by_value for name in node.input):
            by_value.update(node.output)

    def traces_to_arange(name: str) -> bool:
        seen, stack = set(), [name]
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            if tensor in initializers:
                values = numpy_helper.to_array(initializers[tensor]).ravel()
                integer = values.size > 1 and np.issubdtype(values.dtype, np.integer)
                if integer and np.array_equal(values, np.arange(values.size)):
                    return True
            elif tensor in producer:
                stack.extend(producer[tensor].input)
        return False

    return [
        node
        for node in graph.node
        if node.op_type == "Gather"
        and node.input[0] in initializers
        and node.input[1] not in by_value
        and traces_to_arange(node.input[1])
    ]
