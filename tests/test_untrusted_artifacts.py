"""An artifact from a stranger (an archive, a shared volume, a copied folder) cannot make the runtime read files
outside its folder through links: the engines would return their bytes as weights, ``save`` would copy them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from fastembed_rt import ArtifactError, SentenceTransformer

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")


def _link_out(artifact: Path, name: str, outside: Path) -> None:
    """Move the artifact's file ``name`` to ``outside`` and leave a link to it: same bytes, same size, so only where
    the link leads can tell."""
    target = outside / Path(name).name
    shutil.move(artifact / name, target)
    os.symlink(target, artifact / name)


@pytest.mark.parametrize("provider", ["cpu", pytest.param("openvino", marks=needs_openvino)])
def test_a_graph_weights_file_linking_outside_the_artifact_is_refused(
    minilm_artifact: Path, tmp_path: Path, provider: str
) -> None:
    """OpenVINO read such a file (our own linking of hub snapshots into its cache went round its refusal)."""
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    fp32 = next(v for v in manifest["variants"] if v["name"] == "fp32")
    (tmp_path / "elsewhere").mkdir()
    _link_out(minilm_artifact, fp32["weights_file"], tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match=r"model.onnx.data leads to .*elsewhere.*, outside the artifact"):
        SentenceTransformer(minilm_artifact, provider=provider, variant="fp32", provider_cache_dir=tmp_path / "c")


def test_a_tokenizer_linking_outside_the_artifact_is_refused(minilm_artifact: Path, tmp_path: Path) -> None:
    _link_out(minilm_artifact, "tokenizer.json", tmp_path)
    with pytest.raises(ArtifactError, match=r"tokenizer.json leads to .*, outside the artifact"):
        SentenceTransformer(minilm_artifact)


def test_save_copies_no_file_linking_outside_the_artifact(minilm_artifact: Path, tmp_path: Path) -> None:
    """A tokenizer file the loader does without (``tokenizer.files``) linked to a private file: save copied it into
    the new artifact readable by all, and push_to_hub would have uploaded it."""
    secret = tmp_path / "secret"
    secret.write_text("hf_not_for_you")
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["tokenizer"]["files"] = [*manifest["tokenizer"].get("files", []), "special_tokens_map.json"]
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    (minilm_artifact / "special_tokens_map.json").unlink(missing_ok=True)
    os.symlink(secret, minilm_artifact / "special_tokens_map.json")
    model = SentenceTransformer(minilm_artifact)
    with pytest.raises(ArtifactError, match=r"special_tokens_map.json leads to .*secret, outside the artifact"):
        model.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "special_tokens_map.json").exists()


def test_a_hub_snapshot_whose_files_link_to_its_repos_blobs_loads(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub cache's own layout: ``snapshots/<commit>/...`` links into ``blobs/`` of the same repo folder."""
    repo = tmp_path / "hub" / "models--someone--minilm"
    snapshot = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    for path in sorted(minilm_artifact_session.rglob("*")):
        if path.is_file():
            blob = repo / "blobs" / f"{len(list((repo / 'blobs').iterdir())):04d}"
            shutil.copyfile(path, blob)
            link = snapshot / path.relative_to(minilm_artifact_session)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
    model = SentenceTransformer(snapshot, provider="cpu", provider_cache_dir=tmp_path / "c")
    assert model.encode(["a sentence"]).shape == (1, 384)
    # reached through a link to it, or by a relative path from inside: the same snapshot
    os.symlink(snapshot, tmp_path / "link")
    assert SentenceTransformer(tmp_path / "link", provider="cpu").encode(["a sentence"]).shape == (1, 384)
    monkeypatch.chdir(snapshot)
    assert SentenceTransformer(".", provider="cpu").encode(["a sentence"]).shape == (1, 384)


def test_a_snapshot_like_folder_may_not_link_beyond_its_blobs(minilm_artifact: Path, tmp_path: Path) -> None:
    """Only the ``blobs`` folder beside ``snapshots`` is the snapshot's own, not the folder around it."""
    repo = tmp_path / "downloads"
    snapshot = repo / "snapshots" / "x"
    shutil.copytree(minilm_artifact, snapshot)
    (snapshot / "tokenizer.json").rename(repo / "tokenizer.json")
    os.symlink(repo / "tokenizer.json", snapshot / "tokenizer.json")
    with pytest.raises(ArtifactError, match=r"tokenizer.json leads to .*downloads/tokenizer.json, outside"):
        SentenceTransformer(snapshot)


def test_a_path_through_a_link_and_up_names_the_folder_the_system_finds(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``link/../b/model`` is the link target's sibling, as the OS reads it; made absolute by text it named another
    folder (or none)."""
    from fastembed_rt.artifact import local_path

    (tmp_path / "deep" / "a" / "b").mkdir(parents=True)
    shutil.copytree(minilm_artifact_session, tmp_path / "deep" / "a" / "b" / "model")
    os.symlink(tmp_path / "deep" / "a" / "b", tmp_path / "lnk")
    monkeypatch.chdir(tmp_path)
    found = local_path("lnk/../b/model")
    assert found is not None and found.resolve() == (tmp_path / "deep" / "a" / "b" / "model").resolve()
    assert SentenceTransformer("lnk/../b/model").encode(["a sentence"]).shape == (1, 384)
