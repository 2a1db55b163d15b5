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


def test_the_optimizer_is_recorded_not_applicable_over_2_gib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 2 GiB backbone is too big for the suite: the limit is lowered to the tiny model's size."""
    from fastembed_rt.export import optimize

    monkeypatch.setattr(optimize, "OPTIMIZER_MAX_WEIGHT_BYTES", 1)
    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="optimized")
    (rejected,) = manifest.rejected_variants
    assert rejected["name"] == "optimized"
    assert "not applicable" in rejected["reasons"][0] and "2 GB" in rejected["reasons"][0]


def test_fp16_over_2_gib_is_the_unfused_graph_in_fp16_within_its_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the optimizer cannot go (a 4B/8B decoder), fp16 still halves the weights a GPU holds."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt.export import optimize

    monkeypatch.setattr(optimize, "OPTIMIZER_MAX_WEIGHT_BYTES", 1)
    model_dir = build_tiny_model(tmp_path, "qwen3", "lasttoken", normalize=True, padding_side="left")
    artifact = tmp_path / "artifact"
    manifest = export_model(model_dir, artifact, stsb=False, calibration_texts=[], variants="fp16")
    assert not manifest.rejected_variants
    fp32, fp16 = manifest.variants
    assert fp16.name == "fp16" and fp16.optimization == "fp16"
    assert "2 GB" in fp16.stage_counts["not_fused"] and not fp16.stage_counts["fused_ops"]
    assert fp16.weights_file == "onnx/model_fp16.onnx.data"
    # fp16 weights: half the fp32 data file, give or take the fp32-kept tensors
    assert (artifact / fp16.weights_file).stat().st_size < 0.6 * (artifact / str(fp32.weights_file)).stat().st_size
    runtime = SentenceTransformer(artifact, variant="fp16")
    ours = runtime.encode(PARITY_TEXTS, batch_size=4)
    ref = TorchSentenceTransformer(str(model_dir), device="cpu").encode(PARITY_TEXTS, batch_size=4)
    assert row_cosines(np.asarray(ours), ref).min() >= 0.999
    runtime.close()


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
