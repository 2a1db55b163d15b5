"""Artifacts on the hub: a repo of a model not yet exported fails at its first request; an artifact's variants
are downloaded when a model opens them, one at a time, and load from the cache offline. Against a hub on
127.0.0.1 (``fake_hub``), in fresh processes (huggingface_hub reads ``HF_ENDPOINT`` at import)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_hub import COMMIT, serve_folder

from fastembed_rt import InputError, SentenceTransformer, SparseEncoder
from fastembed_rt.artifact import artifact_files, load_manifest, variant_files

TEXTS = ["The cat sat on the mat.", "Stocks fell sharply.", "Ein Satz auf Deutsch."]

LOAD = """
import json, sys
import numpy as np
from fastembed_rt import ArtifactError, SentenceTransformer
out = {}
for variant in sys.argv[3].split(","):
    try:
        model = SentenceTransformer(sys.argv[1], variant=variant)
        np.save(f"{sys.argv[2]}/{model.variant}.npy", model.encode(json.loads(sys.argv[4])))
        out[variant] = model.variant
    except ArtifactError as exc:
        out[variant] = f"ArtifactError: {exc}"
print(json.dumps(out))
"""


def _load(repo: str, variants: str, endpoint: str, home: Path, out: Path, offline: bool = False) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, repo, str(out), variants, json.dumps(TEXTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_repo_of_a_model_not_yet_exported_fails_at_its_first_request_naming_the_export_command(
    minilm_dir: Path, tmp_path: Path
) -> None:
    with serve_folder(minilm_dir, "someone/plain-model") as hub:
        result = _load("someone/plain-model", "auto", hub.endpoint, tmp_path / "hf", tmp_path)
    assert result["auto"].startswith("ArtifactError: hub repo 'someone/plain-model' holds no fastembed-rt artifact")
    assert "`fastembed-rt export someone/plain-model OUT_DIR`" in result["auto"]
    assert [r for r in hub.requests if "plain-model" in r[1]] == [
        ("HEAD", "/someone/plain-model/resolve/main/manifest.json")
    ], "nothing of the model was downloaded"


def test_a_hub_artifact_downloads_each_variant_when_opened_and_loads_it_offline_after(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(minilm_variants_artifact)
    home, out = tmp_path / "hf", tmp_path / "out"
    out.mkdir()
    with serve_folder(minilm_variants_artifact, "me/minilm") as hub:
        assert _load("me/minilm", "int8", hub.endpoint, home, out) == {"int8": "int8"}
        assert sorted(hub.fetched) == sorted(artifact_files(manifest, [manifest.variant("int8")]))
        first = len(hub.fetched)
        chosen = _load("me/minilm", "auto", hub.endpoint, home, out)["auto"]
        assert chosen != "int8" and sorted(hub.fetched[first:]) == sorted(variant_files(manifest.variant(chosen)))
    for variant in ("int8", chosen):
        local = SentenceTransformer(minilm_variants_artifact, variant=variant)
        np.testing.assert_allclose(np.load(out / f"{variant}.npy"), local.encode(TEXTS), atol=1e-6)
    offline = _load("me/minilm", f"int8,{chosen},fp16", "http://127.0.0.1:9", home, out, offline=True)
    assert offline["int8"] == "int8" and offline[chosen] == chosen, "cached variants load offline"
    assert offline["fp16"].startswith("ArtifactError: could not fetch variant 'fp16' from hub repo 'me/minilm'")
    assert "choose a variant that is in the cache" in offline["fp16"]


SAVE = """
import sys
from fastembed_rt import SentenceTransformer, SparseEncoder
model = SentenceTransformer(sys.argv[1], variant="int8")
model.save(sys.argv[2], variants=["int8", "fp16"])
"""


def test_saving_a_hub_artifact_fetches_the_variants_it_lacks_and_copies_real_files(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(minilm_variants_artifact)
    saved = tmp_path / "saved"
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    with serve_folder(minilm_variants_artifact, "me/minilm") as hub:
        done = subprocess.run(
            [sys.executable, "-c", SAVE, "me/minilm", str(saved)],
            env={**env, "HF_ENDPOINT": hub.endpoint},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    wanted = [manifest.variant("int8"), manifest.variant("fp16")]
    assert sorted(hub.fetched) == sorted(artifact_files(manifest, wanted)), "fp16 fetched for the save, nothing more"
    files = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    assert files == sorted(artifact_files(manifest, wanted))
    assert not any(p.is_symlink() for p in saved.rglob("*")), "copies, not links into the hub cache"
    assert [v.name for v in load_manifest(saved).variants] == ["int8", "fp16"]
    for variant in ("int8", "fp16"):
        np.testing.assert_allclose(
            SentenceTransformer(saved, variant=variant).encode(TEXTS),
            SentenceTransformer(minilm_variants_artifact, variant=variant).encode(TEXTS),
            atol=1e-6,
        )


PUSH = """
import json, sys
from fastembed_rt import ArtifactError, SentenceTransformer
model = SentenceTransformer(sys.argv[1], variant="int8")
try:
    arguments = json.loads(sys.argv[2])
    repo_id = arguments.pop("repo_id", "me/pushed")
    url = getattr(model, sys.argv[3])(repo_id, token="hf_test", **arguments)
except ArtifactError as exc:
    url = f"ArtifactError: {exc}"
print(url)
"""


def _push(artifact: Path, endpoint: str, home: Path, method: str = "push_to_hub", **kwargs: object) -> str:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", PUSH, str(artifact), json.dumps(kwargs), method],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()  # the URL, or the whole message of the ArtifactError


def test_push_to_hub_uploads_the_chosen_variants_and_a_model_card_and_the_repo_loads_back(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(minilm_variants_artifact)
    repo, home, out = tmp_path / "repo", tmp_path / "hf", tmp_path / "out"
    repo.mkdir()
    out.mkdir()
    wanted = [manifest.variant("int8"), manifest.variant("optimized")]
    with serve_folder(repo, "me/pushed") as hub:
        url = _push(minilm_variants_artifact, hub.endpoint, home, variants=["int8", "optimized"])
        assert url == f"{hub.endpoint}/me/pushed/commit/{COMMIT}"
        # huggingface_hub splits an upload whose files all go inline (as this hub asks) into several commits
        assert {c["revision"] for c in hub.commits} == {"main"}
        assert str(hub.commits[0]["summary"]).startswith("Add fastembed-rt SentenceTransformer artifact")
        pushed = [path for c in hub.commits for path in c["paths"]]  # type: ignore[attr-defined]
        assert sorted(pushed) == sorted([*artifact_files(manifest, wanted), "README.md"])
        assert _load("me/pushed", "int8,optimized", hub.endpoint, home, out) == {
            "int8": "int8",
            "optimized": "optimized",
        }
    assert [v.name for v in load_manifest(repo).variants] == ["int8", "optimized"]
    card = (repo / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: fastembed-rt\npipeline_tag: sentence-similarity\n")
    assert 'SentenceTransformer("me/pushed")' in card
    assert "| `int8` | onnx | int8 | 23.7 |" in card and "| `fp16`" not in card
    for variant in ("int8", "optimized"):
        np.testing.assert_allclose(
            np.load(out / f"{variant}.npy"),
            SentenceTransformer(minilm_variants_artifact, variant=variant).encode(TEXTS),
            atol=1e-6,
        )


def test_push_to_an_existing_repo_needs_exist_ok_keeps_its_model_card_and_a_dead_hub_is_a_clear_error(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("my own card\n")
    with serve_folder(repo, "me/pushed") as hub:
        refused = _push(minilm_variants_artifact, hub.endpoint, tmp_path / "hf", variants="loaded")
        assert refused.startswith("ArtifactError: could not push ") and "409" in refused, "an existing repo, as in ST"
        assert hub.commits == []
        url = _push(
            minilm_variants_artifact, hub.endpoint, tmp_path / "hf", variants="loaded", revision="dev", exist_ok=True
        )
        assert url == f"{hub.endpoint}/me/pushed/commit/{COMMIT}"
        assert ("POST", "/api/models/me/pushed/branch/dev") in hub.requests, "the branch is created"
        assert {c["revision"] for c in hub.commits} == {"dev"}
        assert not any("README.md" in c["paths"] for c in hub.commits)  # type: ignore[operator]
    assert (repo / "README.md").read_text() == "my own card\n"
    assert [v.name for v in load_manifest(repo).variants] == ["int8"]
    dead = _push(minilm_variants_artifact, "http://127.0.0.1:9", tmp_path / "hf", variants="loaded")
    assert dead.startswith("ArtifactError: could not push ") and "to hub repo 'me/pushed'" in dead


def test_save_to_hub_is_sentence_transformers_deprecated_push_with_its_organization(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    """Migrated code calling save_to_hub(repo, organization=...) got an AttributeError."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with serve_folder(repo, "me/pushed") as hub:
        url = _push(
            minilm_variants_artifact,
            hub.endpoint,
            tmp_path / "hf",
            "save_to_hub",
            repo_id="pushed",
            organization="me",
            commit_message="from save_to_hub",
        )
        assert url == f"{hub.endpoint}/me/pushed/commit/{COMMIT}"
        assert str(hub.commits[0]["summary"]) == "from save_to_hub"
    assert "int8" in [v.name for v in load_manifest(repo).variants]  # all variants: push_to_hub's default
    model = SentenceTransformer(minilm_variants_artifact, variant="int8")
    with pytest.raises(InputError, match="organization 'other' is not the one repo_id 'me/pushed' names"):
        model.save_to_hub("me/pushed", organization="other")


def test_the_model_card_names_each_model_types_class_and_every_variants_agreement_with_pytorch(
    tiny_reranker_artifact: Path, tiny_splade_artifact: Path, tiny_multi_vector_artifact: Path
) -> None:
    from fastembed_rt.model_card import model_card

    for artifact, cls in [
        (tiny_reranker_artifact, "CrossEncoder"),
        (tiny_splade_artifact, "SparseEncoder"),
        (tiny_multi_vector_artifact, "MultiVectorEncoder"),
    ]:
        manifest = load_manifest(artifact)
        card = model_card(manifest, "me/model")
        assert f'from fastembed_rt import {cls}\n\nmodel = {cls}("me/model")' in card
        rows = [line for line in card.splitlines() if line.startswith("| `")]
        assert [row.split("`")[1] for row in rows] == [v.name for v in manifest.variants]
        assert all(row.split(" | ")[4].split()[-1][0].isdigit() for row in rows), "every variant's agreement shown"


def test_the_model_card_names_a_hub_id_as_base_model_never_a_local_path(minilm_artifact_session: Path) -> None:
    """A model exported from checkpoints/run1 got `base_model: checkpoints/run1`, someone else's repo id."""
    import yaml

    from fastembed_rt.model_card import model_card

    manifest = load_manifest(minilm_artifact_session)
    assert manifest.source["local"] is True  # exported here from a local directory

    def base_model(**source: Any) -> Any:
        card = model_card(replace(manifest, source={**manifest.source, **source}), "me/model")
        return yaml.safe_load(card.split("---")[1]).get("base_model")

    assert base_model(model="checkpoints/run1", local=True) is None
    assert base_model(model="models/minilm-ft/checkpoint-500", local=True) is None
    assert base_model(model="sentence-transformers/all-MiniLM-L6-v2", local=False) == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    source = {k: v for k, v in manifest.source.items() if k != "local"}  # an artifact from before "local"
    for model, expected in [("owner/name", "owner/name"), ("out/final/model", None), ("./owner/name", None)]:
        card = model_card(replace(manifest, source={**source, "model": model}), "me/model")
        assert yaml.safe_load(card.split("---")[1]).get("base_model") == expected, model


def test_openvino_runs_an_onnx_variant_from_the_hub_cache(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """OpenVINO's ONNX reader refuses external data that resolves outside the graph's folder, and a hub snapshot's
    files link to blobs elsewhere: no ONNX variant of a hub artifact loaded on provider='openvino'."""
    pytest.importorskip("openvino")
    home, out = tmp_path / "hf", tmp_path / "out"
    out.mkdir()
    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        assert _load("me/minilm", "fp32", hub.endpoint, home, out) == {"fp32": "fp32"}
    (snapshot,) = (home / "hub" / "models--me--minilm" / "snapshots").iterdir()
    data = snapshot / "onnx" / "model.onnx.data"
    assert data.is_symlink() and not data.resolve().is_relative_to(data.parent.resolve())
    model = SentenceTransformer(snapshot, provider="openvino", variant="fp32", provider_cache_dir=tmp_path / "cache")
    try:
        np.testing.assert_allclose(model.encode(TEXTS), np.load(out / "fp32.npy"), atol=1e-5)
    finally:
        model.close()
    assert data.is_symlink(), "the snapshot is left as it was"


def test_a_hub_that_refuses_is_named_with_its_answer_not_called_offline(minilm_dir: Path, tmp_path: Path) -> None:
    """huggingface_hub wraps a 403 in LocalEntryNotFoundError when nothing is cached; that was reported as offline."""
    with serve_folder(minilm_dir, "me/private") as hub:
        hub.refuse["manifest.json"] = 403
        result = _load("me/private", "auto", hub.endpoint, tmp_path / "hf", tmp_path)
    assert result["auto"].startswith("ArtifactError: could not download 'me/private' from the hub: it answered 403")
    assert "offline" not in result["auto"]


def test_a_truncated_variant_in_the_hub_cache_is_downloaded_again(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(minilm_variants_artifact)
    int8 = manifest.variant("int8")
    home, out = tmp_path / "hf", tmp_path / "out"
    out.mkdir()
    with serve_folder(minilm_variants_artifact, "me/minilm") as hub:
        assert _load("me/minilm", "int8", home=home, endpoint=hub.endpoint, out=out) == {"int8": "int8"}
        cached = next(home.rglob(int8.weights_file or int8.file))
        blob = cached.resolve()
        blob.write_bytes(blob.read_bytes()[:1000])  # an interrupted download, or a damaged disk
        before = len(hub.fetched)
        assert _load("me/minilm", "int8", home=home, endpoint=hub.endpoint, out=out) == {"int8": "int8"}
        assert hub.fetched[before:] == [int8.weights_file or int8.file]
    expected = SentenceTransformer(minilm_variants_artifact, variant="int8").encode(TEXTS)
    np.testing.assert_allclose(np.load(out / "int8.npy"), expected, atol=1e-6)


def test_a_broken_artifact_on_the_hub_is_named_by_its_repo_and_commit_not_a_cache_path(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Errors about a hub artifact's files named the cache snapshot folder and told the user to re-export, which only
    the repo's owner can do."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"format": ', encoding="utf-8")  # an upload cut short
    with serve_folder(broken, "me/broken") as hub:
        result = _load("me/broken", "auto", hub.endpoint, tmp_path / "hf", tmp_path)["auto"]
    assert result.startswith(f"ArtifactError: hub repo 'me/broken' (commit {COMMIT[:12]}) holds a broken artifact: ")
    assert "is not valid JSON" in result and "its owner must export and push it again" in result
    assert "fastembed-rt export MODEL OUT_DIR" not in result

    corrupt = tmp_path / "corrupt"
    shutil.copytree(minilm_artifact_session, corrupt)
    manifest = load_manifest(corrupt)
    graph = corrupt / manifest.variants[0].file
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 check sees it
    graph.write_bytes(bytes(data))
    check = (
        "import sys; from fastembed_rt.artifact import load_manifest, resolve_artifact, verify_variant_file\n"
        "m = load_manifest(resolve_artifact('me/corrupt'))\n"
        "try:\n    verify_variant_file(m, m.variants[0], full=True)\nexcept Exception as exc:\n    print(exc)\n"
    )
    with serve_folder(corrupt, "me/corrupt") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.startswith(f"hub repo 'me/corrupt' (commit {COMMIT[:12]}) holds a broken artifact: "), done
    assert "is corrupt: sha256" in done.stdout


def test_a_connection_dropped_mid_download_is_an_artifact_error_and_the_next_load_downloads_it_whole(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """huggingface_hub raises its HTTP library's errors for a dropped connection (httpx2's, not OSErrors): they
    reached the user as a traceback from the library, the CLI's too."""
    home, out = tmp_path / "hf", tmp_path / "out"
    out.mkdir()
    data = "onnx/model.onnx.data"
    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        hub.cut[data] = 1000
        failed = _load("me/minilm", "fp32", hub.endpoint, home, out)["fp32"]
        assert failed.startswith("ArtifactError: could not fetch variant 'fp32' from hub repo 'me/minilm' (commit ")
        assert "try again once the hub can be reached" in failed
        del hub.cut[data]
        assert _load("me/minilm", "fp32", hub.endpoint, home, out) == {"fp32": "fp32"}
    expected = SentenceTransformer(minilm_artifact_session, variant="fp32").encode(TEXTS)
    np.testing.assert_allclose(np.load(out / "fp32.npy"), expected, atol=1e-6)


def test_a_truncated_cached_file_offline_is_named_not_a_huggingface_hub_value_error(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Offline, the re-download of a truncated cached file passed force_download with local_files_only, which
    huggingface_hub refuses with a ValueError."""
    home, out = tmp_path / "hf", tmp_path / "out"
    out.mkdir()
    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        assert _load("me/minilm", "fp32", hub.endpoint, home, out) == {"fp32": "fp32"}
    blob = next(home.rglob("model.onnx.data")).resolve()
    blob.write_bytes(blob.read_bytes()[:1000])
    result = _load("me/minilm", "fp32", "http://127.0.0.1:9", home, out, offline=True)["fp32"]
    assert result.startswith("ArtifactError: could not fetch variant 'fp32' (its cached copy is truncated)")
    assert "onnx/model.onnx.data is truncated and offline (HF_HUB_OFFLINE) it cannot be downloaded again" in result


def test_a_gated_repo_is_called_gated_and_the_token_hint_fits_every_entry_point(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """A gated repo (or a token without access to it) was "does not exist or is private (pass token=...)"."""
    with serve_folder(minilm_artifact_session, "me/gated") as hub:
        hub.refuse["manifest.json"] = 403
        hub.error_codes["manifest.json"] = "GatedRepo"
        result = _load("me/gated", "auto", hub.endpoint, tmp_path / "hf", tmp_path)["auto"]
    assert result.startswith("ArtifactError: hub repo 'me/gated' is gated: pass token=... (the command line and")
    assert "granted access (ask for it on the repo's page)" in result


EXPORT_FROM_HUB = [sys.executable, "-m", "fastembed_rt.cli", "export", "--no-stsb", "--variants", "fp32"]


def test_an_export_by_hub_id_downloads_what_sentence_transformers_loads_and_records_the_commit(
    minilm_dir: Path, minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """snapshot_download fetched the whole repo: all-MiniLM-L6-v2's holds ~1 GB of ONNX, OpenVINO, TensorFlow, Rust
    and pickled weights beside its 90 MB of safetensors. The manifest named no commit for the branch it read."""
    repo = tmp_path / "repo"
    shutil.copytree(minilm_dir, repo)
    unread = ["onnx/model_O4.onnx", "openvino/openvino_model.bin", "tf_model.h5", "rust_model.ot", "pytorch_model.bin"]
    for name in unread:
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_bytes(b"not for sentence-transformers")
    out = tmp_path / "artifact"
    with serve_folder(repo, "me/minilm") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        env["SENTENCE_TRANSFORMERS_HOME"] = str(tmp_path / "st")  # its cache, as sentence-transformers' own loads
        done = subprocess.run(
            [*EXPORT_FROM_HUB, "me/minilm", str(out)], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "st" / "models--me--minilm" / "snapshots" / COMMIT / "modules.json").is_file()
        assert not set(unread) & set(hub.fetched) and "model.safetensors" in hub.fetched
    source = load_manifest(out).source
    assert (source["model"], source["revision"], source["commit"], source["local"]) == (
        "me/minilm",
        None,
        COMMIT,
        False,
    )
    with serve_folder(minilm_artifact_session, "me/artifact") as hub:  # an artifact is no model to export
        env = {**env, "HF_ENDPOINT": hub.endpoint}
        done = subprocess.run(
            [*EXPORT_FROM_HUB, "me/artifact", str(tmp_path / "again")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode != 0 and "me/artifact is a fastembed-rt artifact already (exported from" in done.stderr
        assert not [name for name in hub.fetched if name.startswith("onnx/")]


def test_sentence_transformers_loading_arguments_are_taken_as_it_takes_them(
    minilm_artifact_session: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """use_auth_token, model_kwargs and their siblings raised TypeError; SENTENCE_TRANSFORMERS_HOME was not read."""
    import logging

    from fastembed_rt import InputError

    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        model = SentenceTransformer(
            minilm_artifact_session,
            use_auth_token="hf_unused",
            model_kwargs={"torch_dtype": "float16", "provider": "CPUExecutionProvider"},
            config_kwargs={"attn_implementation": "sdpa"},
            backend="onnx",
        )
    assert model.provider == "cpu"  # sentence-transformers' ONNX Runtime provider name, honoured
    assert "`use_auth_token` is a deprecated sentence-transformers name; use `token` instead" in caplog.text
    for name in ("model_kwargs['torch_dtype']", "config_kwargs"):
        assert f"{name} does not apply to an exported artifact" in caplog.text
    with pytest.raises(InputError, match="model_kwargs\\['provider'\\] 'ROCMExecutionProvider' is not"):
        SentenceTransformer(minilm_artifact_session, model_kwargs={"provider": "ROCMExecutionProvider"})
    with pytest.raises(InputError, match=r"both `token` and its former name `use_auth_token` are given"):
        SentenceTransformer(minilm_artifact_session, token="hf_a", use_auth_token="hf_a")  # refused there too
    SentenceTransformer(minilm_artifact_session, token=None, use_auth_token="hf_a")  # a wrapper's default None
    with pytest.raises(InputError, match=r"'OpenVINOExecutionProvider' is not .* natively: backend='openvino'"):
        SentenceTransformer(
            minilm_artifact_session, backend="onnx", model_kwargs={"provider": "OpenVINOExecutionProvider"}
        )
    with pytest.raises(InputError, match=r"modules=\.\.\.: fastembed-rt runs exported artifacts"):
        SentenceTransformer(minilm_artifact_session, modules=[object()])
    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        home = tmp_path / "st-home"
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "SENTENCE_TRANSFORMERS_HOME": str(home),
        }
        env.pop("HF_HOME", None)
        code = "from fastembed_rt import SentenceTransformer; SentenceTransformer('me/minilm', variant='fp32')"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (home / "models--me--minilm" / "snapshots" / COMMIT / "manifest.json").is_file()


def test_the_command_line_and_the_server_pin_a_hub_revision(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """No command that opens an artifact, nor serve, took a revision: a hub id always loaded main."""
    pytest.importorskip("starlette")
    from fastembed_rt.cli import build_parser
    from fastembed_rt.server.main import config_from_args

    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        command = [sys.executable, "-m", "fastembed_rt.cli", "info", "me/minilm", "--revision", "v1.0"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert ("HEAD", "/me/minilm/resolve/v1.0/manifest.json") in hub.requests
    args = build_parser().parse_args(["serve", "me/minilm", "--revision", "v1.0"])
    assert config_from_args(args).revision == "v1.0"
    served = """
import json, time
from starlette.testclient import TestClient
from fastembed_rt.server import ServedModel, ServerConfig, create_app
config = ServerConfig(models=(ServedModel("m", "me/minilm"),), revision="v1.0")
with TestClient(create_app(config)) as client:
    for _ in range(600):  # the models load in the background
        if client.get("/health").status_code == 200:
            break
        time.sleep(0.1)
    embedded = client.post("/embed", json={"inputs": "hello"})
    print(json.dumps([embedded.status_code, client.get("/info").json()["model_id"]]))
"""
    with serve_folder(minilm_artifact_session, "me/minilm") as hub:
        env["HF_ENDPOINT"] = hub.endpoint
        done = subprocess.run([sys.executable, "-c", served], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])[0] == 200
    assert ("HEAD", "/me/minilm/resolve/v1.0/manifest.json") in hub.requests  # the server's load asked for it


ROUTED = """
import json, sys
from fastembed_rt import SparseEncoder
model = SparseEncoder(sys.argv[1])
query = model.encode_query(["cat on a mat"], sparse_format="arrays")
document = model.encode_document(["The cat sat on the mat."], sparse_format="arrays")
print(json.dumps({"query": query.indices.tolist(), "score": float(model.similarity(query, document)[0, 0])}))
"""


def test_an_inference_free_splade_artifact_from_the_hub_brings_its_query_weights(
    inference_free_splade: tuple[Path, Path], tmp_path: Path
) -> None:
    """The lookup route's weights are a file beside the graph: it comes with the tokenizer, and loads offline after."""
    _, artifact = inference_free_splade
    local = SparseEncoder(artifact)
    query = local.encode_query(["cat on a mat"], sparse_format="arrays")
    expected = float(local.similarity(query, local.encode_document(["The cat sat on the mat."]))[0, 0])
    local.close()
    home = tmp_path / "hf"
    with serve_folder(artifact, "me/splade-inference-free") as hub:
        for endpoint, offline in ((hub.endpoint, "0"), ("http://127.0.0.1:9", "1")):
            env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": offline, "HF_HOME": str(home)}
            done = subprocess.run(
                [sys.executable, "-c", ROUTED, "me/splade-inference-free"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout.strip().splitlines()[-1])
            assert out["query"] == query.indices.tolist() and out["score"] == pytest.approx(expected, rel=1e-6)
    assert "query_weights.npy" in hub.fetched
