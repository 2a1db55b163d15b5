"""The attention fusion pass (export/fuse_attention.py) on every registered architecture's backbone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tiny_models import TINY_ARCHITECTURES

from fastembed_rt.export.architectures import ARCHITECTURES
from fastembed_rt.export.backbone import export_backbone
from fastembed_rt.export.fuse_attention import fuse_attention

# Plain scaled-dot-product attention with a padding mask: every layer fuses. MPNet adds a
# relative-position bias to the scores, which the pass leaves alone (the count says 0).
FUSES_EVERY_LAYER = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"}
LAYERS = 2


def _export_tiny_backbone(architecture: str, folder: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(architecture, **TINY_ARCHITECTURES[architecture]))
    path = folder / "backbone.onnx"
    export_backbone(model, ARCHITECTURES[architecture], path, vocab_size=1000)
    return path


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def backbone(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    architecture = request.param
    return architecture, _export_tiny_backbone(architecture, tmp_path_factory.mktemp(f"attention-{architecture}"))


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _feeds(batch: int, width: int, lengths: list[int]) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 1000, (batch, width)).astype(np.int64)
    mask = np.zeros((batch, width), np.int64)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_fused_graph_computes_the_same_token_embeddings(backbone: tuple[str, Path]) -> None:
    architecture, path = backbone
    plain = onnx.load(str(path))
    fused = onnx.load(str(path))
    count = fuse_attention(fused, num_heads=TINY_ARCHITECTURES[architecture].get("num_attention_heads", 4))
    ops = Counter(node.op_type for node in fused.graph.node)
    assert count == ops["Attention"]
    assert count == (LAYERS if architecture in FUSES_EVERY_LAYER else 0), ops
    if count:
        assert ops["Softmax"] == 0 and ops["Transpose"] == 0, ops
    onnx.checker.check_model(fused)
    for batch, width, lengths in ((1, 7, [7]), (3, 19, [19, 4, 1]), (5, 33, [33, 2, 17, 9, 30])):
        feeds = _feeds(batch, width, lengths)
        expected = _run(plain, feeds)
        got = _run(fused, feeds)
        mask = feeds["attention_mask"].astype(bool)
        # padded positions are never read downstream (pooling masks them), so compare real tokens.
        np.testing.assert_allclose(got[mask], expected[mask], rtol=1e-4, atol=1e-5)


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
