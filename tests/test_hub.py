"""Artifacts on the hub: a repo of a model not yet exported fails at its first request; an artifact's variants
are downloaded when a model opens them, one at a time, and load from the cache offline. Against a hub on
127.0.0.1 (``fake_hub``), in fresh processes (huggingface_hub reads ``HF_ENDPOINT`` at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from fake_hub import serve_folder

from fastembed_rt import SentenceTransformer
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
from fastembed_rt import SentenceTransformer
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
