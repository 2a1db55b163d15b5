"""Missing, corrupt or wrong artifacts give an ArtifactError that names the file and the fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastembed_rt import ArtifactError, SentenceTransformer


def test_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"does not exist.*fastembed-rt export"):
        SentenceTransformer(tmp_path / "nope")


def test_model_directory_without_manifest_says_to_export(minilm_dir: Path) -> None:
    with pytest.raises(ArtifactError, match=r"model directory, not a fastembed-rt artifact.*fastembed-rt export"):
        SentenceTransformer(minilm_dir)


def test_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"manifest.json is missing"):
        SentenceTransformer(tmp_path)


def test_invalid_json_manifest_names_the_file(minilm_artifact: Path) -> None:
    (minilm_artifact / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest.json is not valid JSON"):
        SentenceTransformer(minilm_artifact)


def test_manifest_missing_a_key_names_the_key(minilm_artifact: Path) -> None:
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    del data["tokenizer"]["max_seq_length"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"tokenizer\.'max_seq_length'"):
        SentenceTransformer(minilm_artifact)


def test_newer_schema_version_asks_for_an_upgrade(minilm_artifact: Path) -> None:
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"schema_version 99 is not supported"):
        SentenceTransformer(minilm_artifact)


def test_missing_graph_file_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "onnx" / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model.onnx is missing"):
        SentenceTransformer(minilm_artifact)


def test_truncated_graph_file_is_detected_by_size(minilm_artifact: Path) -> None:
    graph = minilm_artifact / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"model.onnx is corrupt or truncated: 1000 bytes"):
        SentenceTransformer(minilm_artifact)


def test_same_size_corruption_is_caught_by_full_verification_and_by_the_loader(minilm_artifact: Path) -> None:
    graph = minilm_artifact / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[:64] = b"\xff" * 64  # same size, broken protobuf header
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model.onnx is corrupt: sha256"):
        SentenceTransformer(minilm_artifact, verify="full")
    with pytest.raises(ArtifactError, match=r"model.onnx could not be loaded by ONNX Runtime"):
        SentenceTransformer(minilm_artifact)


def test_missing_tokenizer_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer.json is missing"):
        SentenceTransformer(minilm_artifact)


def test_corrupt_tokenizer_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    with pytest.raises(ArtifactError, match=r"tokenizer.json is not a valid tokenizers file"):
        SentenceTransformer(minilm_artifact)


def test_unknown_variant_lists_the_available_ones(minilm_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no variant 'int8'; available: fp32"):
        SentenceTransformer(minilm_artifact, variant="int8")


def test_hub_id_not_in_cache_while_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtifactError, match=r"not in the hub cache while offline"):
        SentenceTransformer("someone/some-artifact", cache_dir=tmp_path / "cache")


def test_hub_id_resolves_from_the_local_cache_when_offline(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Lay the artifact out as huggingface_hub's cache does, then load it by repo id offline.
    import shutil

    snapshot = tmp_path / "cache" / "models--acme--minilm-rt" / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_artifact_session, snapshot)
    refs = tmp_path / "cache" / "models--acme--minilm-rt" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    model = SentenceTransformer("acme/minilm-rt", cache_dir=tmp_path / "cache")
    assert model.encode(["hello"]).shape == (1, 384)


def test_an_unreachable_hub_leaves_the_lookup_to_the_cache(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)}
    code = (
        "from fastembed_rt import ArtifactError, SentenceTransformer\n"
        "try:\n    SentenceTransformer('someone/artifact')\n"
        "except ArtifactError as exc:\n    print('ArtifactError:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ArtifactError: 'someone/artifact' is not a local directory and is not in the hub cache" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_manifest_update_replaces_a_linked_manifest_and_leaves_its_target(minilm_artifact: Path) -> None:
    from fastembed_rt.artifact import load_manifest, update_manifest

    blob = minilm_artifact.parent / "blob-manifest.json"  # as a hub cache snapshot links its files to blobs
    (minilm_artifact / "manifest.json").rename(blob)
    (minilm_artifact / "manifest.json").symlink_to(blob)
    before = blob.read_bytes()
    assert load_manifest(minilm_artifact).similarity_fn != "dot"
    update_manifest(minilm_artifact, similarity_fn="dot")
    assert blob.read_bytes() == before, "the linked blob is untouched"
    assert not (minilm_artifact / "manifest.json").is_symlink()
    assert load_manifest(minilm_artifact).similarity_fn == "dot"
    assert sorted(p.name for p in minilm_artifact.iterdir() if p.name.startswith(".")) == [], "no temporary left"
