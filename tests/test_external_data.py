"""Weights in a data file beside every graph, checksummed in the manifest: how ONNX Runtime memory-maps
them, and the only way past protobuf's 2 GiB (Qwen3-Embedding-0.6B and up).

A tiny decoder takes the path every large model takes (its threshold given as 0, the default).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tiny_models import PARITY_TEXTS, TinyExport, build_tiny_model, row_cosines

from fastembed_rt import SentenceTransformer
from fastembed_rt.artifact import file_sha256
from fastembed_rt.errors import ArtifactError
from fastembed_rt.export import export_model


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    tmp = tmp_path_factory.mktemp("external-data")
    model_dir = build_tiny_model(tmp, "qwen3", "lasttoken", normalize=True, padding_side="left")
    artifact = tmp / "artifact"
    export_model(
        model_dir, artifact, stsb=False, calibration_texts=[], variants="optimized,int8", external_data_threshold=0
    )
    reference = TorchSentenceTransformer(str(model_dir), device="cpu")
    result = TinyExport("qwen3", model_dir, artifact, reference, SentenceTransformer(artifact))
    yield result
    result.close()


def test_weights_go_to_a_data_file_the_manifest_checksums(external: TinyExport) -> None:
    manifest = external.runtime.manifest
    shipped = {v.name: v for v in manifest.variants}
    assert set(shipped) == {"fp32", "optimized", "int8"}
    for variant in shipped.values():
        assert variant.weights_file == f"{variant.file}.data"
        data = external.artifact / variant.weights_file
        assert variant.weights_size == data.stat().st_size
        assert variant.weights_sha256 == file_sha256(data)
        # the graph holds the output stages and small tensors only: the weights are in the data file
        assert (external.artifact / variant.file).stat().st_size < data.stat().st_size
        # readable by whoever may read the graph (a non-root container user mounting the artifact)
        assert data.stat().st_mode & 0o777 == (external.artifact / variant.file).stat().st_mode & 0o777
    assert sorted(p.name for p in (external.artifact / "onnx").iterdir()) == [
        "model.onnx",
        "model.onnx.data",
        "model_int8.onnx",
        "model_int8.onnx.data",
        "model_optimized.onnx",
        "model_optimized.onnx.data",
    ]


def test_the_optimizer_runs_on_external_data_graphs_under_2_gib(external: TinyExport) -> None:
    assert not external.runtime.manifest.rejected_variants


@pytest.mark.parametrize("architecture", ["bert", "qwen3"])
def test_the_optimizer_leaves_an_external_data_backbones_weights_in_their_file(
    tmp_path: Path, architecture: str
) -> None:
    """It holds the graph only (no 2 GB limit, no copies of the weights in shape inference), while the
    fusions that read a tensor (our attention fusion packs Q, K and V) still read it, from the data file."""
    import onnx
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt.export.backbone import export_st_backbone
    from fastembed_rt.export.build import BuildContext
    from fastembed_rt.export.optimize import optimize_backbone

    model_dir = build_tiny_model(tmp_path, architecture, "mean")
    path = tmp_path / "onnx" / "backbone.onnx"
    path.parent.mkdir()
    backbone = export_st_backbone(
        TorchSentenceTransformer(str(model_dir), device="cpu"), path, external_data_threshold=0
    )
    assert backbone.external_data
    context = BuildContext(tmp_path, path.with_name("model.onnx"), backbone, [], lambda _: {}, lambda _: [])
    model, fused = optimize_backbone(context, skip_layer_norm=False)
    big = [t for t in model.graph.initializer if np.prod(t.dims) * 4 >= 1024]
    external = [t for t in big if t.data_location == onnx.TensorProto.EXTERNAL]
    assert big and all(not t.HasField("raw_data") for t in external)
    if architecture == "bert":
        # the packed Q/K/V weights are new tensors, computed from the weights in the file; the rest stay there
        assert fused["Attention"] == 2
        assert {t.name for t in big} - {t.name for t in external} == {
            node.input[1] for node in model.graph.node if node.op_type == "Attention"
        }
    else:
        assert fused["SimplifiedLayerNormalization"] > 0 and len(external) == len(big)


@pytest.mark.parametrize("architecture", ["bert", "qwen3"])
def test_optimized_and_fp16_fuse_the_same_with_external_data_as_inline(tmp_path: Path, architecture: str) -> None:
    """The weightless optimizer path (every default export) and the in-memory one (a threshold above the
    model's size) build the same fused graphs; fp16 of the external one goes through a file (no 2 GB limit)."""
    model_dir = build_tiny_model(tmp_path, architecture, "mean")
    manifests = {
        threshold: export_model(
            model_dir,
            tmp_path / f"artifact-{threshold}",
            stsb=False,
            calibration_texts=[],
            variants="optimized,fp16",
            external_data_threshold=threshold,
        )
        for threshold in (0, 1 << 30)
    }
    external, inline = manifests[0], manifests[1 << 30]
    assert not external.rejected_variants and not inline.rejected_variants
    assert external.variant("fp16").weights_file == "onnx/model_fp16.onnx.data"
    assert inline.variant("fp16").weights_file is None
    for name in ("optimized", "fp16"):
        assert external.variant(name).stage_counts["fused_ops"] == inline.variant(name).stage_counts["fused_ops"]
        assert external.variant(name).stage_counts["op_counts"] == inline.variant(name).stage_counts["op_counts"]
        assert external.variant(name).fidelity["min_cosine"] >= 0.999


@pytest.mark.parametrize("provider", ["cpu", "openvino"])
def test_an_external_data_artifact_matches_sentence_transformers(external: TinyExport, provider: str) -> None:
    if provider == "openvino":
        pytest.importorskip("openvino")
    runtime = SentenceTransformer(external.artifact, provider=provider)
    ours = runtime.encode(PARITY_TEXTS, batch_size=4)
    ref = external.torch_model.encode(PARITY_TEXTS, batch_size=4, convert_to_numpy=True)
    assert row_cosines(np.asarray(ours), ref).min() >= 0.9999
    runtime.close()


def test_an_artifact_in_a_symlinked_hub_cache_layout_loads(external: TinyExport, tmp_path: Path) -> None:
    # huggingface_hub's cache: snapshots/<revision>/<file> are symlinks to blobs/<sha256> (qdrant/fastembed#603).
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "0123abcd"
    blobs.mkdir()
    for file in external.artifact.rglob("*"):
        if file.is_file():
            blob = blobs / hashlib.sha256(file.read_bytes()).hexdigest()
            shutil.copyfile(file, blob)
            link = snapshot / file.relative_to(external.artifact)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
    expected = external.runtime.encode(PARITY_TEXTS)
    for variant in ("fp32", "int8"):
        runtime = SentenceTransformer(snapshot, variant=variant, verify="full")
        got = runtime.encode(PARITY_TEXTS)
        assert row_cosines(got, expected).min() >= (0.9999 if variant == "fp32" else 0.99)
        runtime.close()


def test_a_truncated_or_altered_data_file_is_refused_naming_it(external: TinyExport, tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(external.artifact, copy)
    data = copy / "onnx" / "model.onnx.data"
    original = data.read_bytes()
    data.write_bytes(original[:-4096])
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data is corrupt or truncated"):
        SentenceTransformer(copy, variant="fp32")
    data.write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data is corrupt: sha256"):
        SentenceTransformer(copy, variant="fp32", verify="full")


def test_every_graph_keeps_its_weights_in_a_data_file_by_default(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert manifest.variants[0].weights_file == "onnx/model.onnx.data"
    assert sorted(p.name for p in (tmp_path / "artifact" / "onnx").iterdir()) == ["model.onnx", "model.onnx.data"]


def test_models_under_a_given_threshold_keep_their_weights_inline(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False, external_data_threshold=1 << 30)
    assert manifest.variants[0].weights_file is None
    assert sorted(p.name for p in (tmp_path / "artifact" / "onnx").iterdir()) == ["model.onnx"]
