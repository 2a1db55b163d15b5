"""The attention fusion pass (export/fuse_attention.py) on hand-built and edge-case graphs.

Its parity on every registered architecture is checked in test_export_architectures.py, on the graph of
each family's tiny exported model (one export per family serves both).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from tiny_models import TINY_ARCHITECTURES

from fastembed_rt.export.architectures import ARCHITECTURES
from fastembed_rt.export.backbone import export_backbone
from fastembed_rt.export.fuse_attention import fuse_attention

LAYERS = 2  # in every tiny model


def _export_tiny_backbone(architecture: str, folder: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(architecture, **TINY_ARCHITECTURES[architecture]))
    path = folder / "backbone.onnx"
    export_backbone(model, ARCHITECTURES[architecture], path, vocab_size=1000)
    return path


def test_graph_without_attention_mask_is_left_alone() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g", [x], [y]))
    assert fuse_attention(model, num_heads=1) == 0
    assert [n.op_type for n in model.graph.node] == ["Softmax"]


def test_a_block_whose_inner_tensor_is_read_elsewhere_is_not_fused(tmp_path: Path) -> None:
    path = _export_tiny_backbone("bert", tmp_path)
    model = onnx.load(str(path))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    model.graph.output.append(onnx.helper.make_tensor_value_info(softmax.output[0], onnx.TensorProto.FLOAT, None))
    assert fuse_attention(model, num_heads=4) == LAYERS - 1
    assert softmax.output[0] in {o for n in model.graph.node for o in n.output}
    assert fuse_attention(onnx.load(str(path)), num_heads=0) == 0, "no head count, no fusion"
