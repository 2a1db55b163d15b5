"""Where a container or an edge host locks things down: no home folder, a read-only cache, too little memory, one
cache volume mounted in several containers. The runtime runs (without a cache, said in the log) or says what is
short; it never blames the artifact for the machine and never removes a cache entry another container uses."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from permissions import where_permissions_apply

from fastembed_rt import NotEnoughMemoryError, SentenceTransformer
from fastembed_rt.cli import main
from fastembed_rt.providers import ProviderOptions

TEXTS = ["The cat sat on the mat.", "Stocks fell sharply.", "Ein Satz auf Deutsch."]
NO_HOME = "Could not determine home directory."  # what Path.home() raises for a user id without a passwd entry


def _without_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a container's user id that has no passwd entry and no ``$HOME`` sees it."""
    for name in ("HOME", "XDG_CACHE_HOME", "FASTEMBED_RT_CACHE"):
        monkeypatch.delenv(name, raising=False)

    def home() -> Path:
        raise RuntimeError(NO_HOME)

    monkeypatch.setattr(Path, "home", staticmethod(home))


def _hub_layout(artifact: Path, folder: Path) -> Path:
    """A copy of ``artifact`` laid out as a hub snapshot: its fp32 weights file a link to a blob in another folder
    (OpenVINO's ONNX reader refuses such a data file, so the engine puts the files side by side first)."""
    snapshot, blobs = folder / "snapshots" / ("0" * 40), folder / "blobs"
    shutil.copytree(artifact, snapshot)
    blobs.mkdir()
    data = snapshot / "onnx" / "model.onnx.data"
    shutil.move(data, blobs / "0123abcd")
    data.symlink_to(blobs / "0123abcd")
    return snapshot


def test_without_a_home_folder_the_cpu_engine_runs_without_its_graph_cache_and_says_why(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every load raised "RuntimeError: Could not determine home directory." (library, CLI and server)."""
    expected = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32").encode(TEXTS)
    _without_home(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        model = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32")
    assert model._pipeline.provider.graph_file.is_relative_to(minilm_artifact_session)  # not a cached copy
    assert f"ONNX Runtime graph cache disabled for {minilm_artifact_session}" in caplog.text
    assert f"{NO_HOME} (no $HOME); set $FASTEMBED_RT_CACHE or HOME" in caplog.text
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-6)


def test_without_a_home_folder_openvino_runs_without_its_cache_once_imported_and_says_why_when_not(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenVINO's telemetry reads the home folder when openvino is imported, whatever the consent: a process without
    one cannot import it, and was told so by a traceback from openvino_telemetry."""
    pytest.importorskip("openvino")
    from fastembed_rt.providers.openvino import import_openvino

    import_openvino()
    expected = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32").encode(TEXTS)
    _without_home(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        model = SentenceTransformer(minilm_artifact_session, provider="openvino", variant="fp32")
    assert model._pipeline.provider.cache_dir is None
    assert f"OpenVINO compiled-model cache disabled: no cache folder for openvino: {NO_HOME}" in caplog.text
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-5)
    model.close()

    fresh_process = f"""
import pathlib, sys
def home():
    raise RuntimeError({NO_HOME!r})
pathlib.Path.home = staticmethod(home)
from fastembed_rt import ProviderError, SentenceTransformer
try:
    SentenceTransformer(sys.argv[1], provider="openvino", variant="fp32")
except ProviderError as exc:
    print("ProviderError:", exc)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "FASTEMBED_RT_CACHE")}
    done = subprocess.run(
        [sys.executable, "-c", fresh_process, str(minilm_artifact_session)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.stdout.startswith("ProviderError: OpenVINO cannot be imported without a home folder"), done.stderr
    assert "set HOME (e.g. HOME=/tmp), or use provider='cpu'" in done.stdout


READ_ONLY_LOAD = """
import json, sys
import numpy as np
from fastembed_rt import SentenceTransformer
from fastembed_rt.providers import ProviderOptions
out = {}
for provider in ("cpu", "openvino"):
    for artifact in sys.argv[2:]:
        model = SentenceTransformer(artifact, provider=provider, variant="fp32", provider_cache_dir=sys.argv[1])
        engine = model._pipeline.provider
        if provider == "cpu":
            cached = not str(engine.graph_file).startswith(artifact)
        else:
            cached = engine.loaded_from_cache
        out[f"{provider} {artifact}"] = [bool(cached), model.encode(["The cat sat on the mat."])[0].tolist()]
        model.close()
print(json.dumps(out))
"""


def test_a_read_only_cache_made_by_another_user_is_served_and_a_hub_layout_artifact_runs_beside_it(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """A cache warmed at image build and mounted read-only (or made by another user id): OpenVINO's load raised
    PermissionError on the cache's lock file, and a hub snapshot's ONNX graph, whose data file OpenVINO must see
    beside it, was refused with advice to re-export the artifact."""
    pytest.importorskip("openvino")
    cache = tmp_path / "cache"
    snapshot = _hub_layout(minilm_artifact_session, tmp_path / "hub")
    expected = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32").encode(TEXTS[:1])[0]
    for provider in ("cpu", "openvino"):  # warm the cache, as an image build or the first replica does
        SentenceTransformer(minilm_artifact_session, provider=provider, variant="fp32", provider_cache_dir=cache)
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        argv = [sys.executable, "-c", READ_ONLY_LOAD, str(cache), str(minilm_artifact_session), str(snapshot)]
        done = subprocess.run(where_permissions_apply(argv), capture_output=True, text=True, timeout=300)
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for provider in ("cpu", "openvino"):
        served, vector = results[f"{provider} {minilm_artifact_session}"]
        assert served, f"{provider}: the warmed cache was not used"
        np.testing.assert_allclose(vector, expected, atol=1e-5)
        np.testing.assert_allclose(results[f"{provider} {snapshot}"][1], expected, atol=1e-5)
    assert "using a temporary folder" in done.stderr  # the snapshot's links could not go into the cache
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == before


def test_openvino_with_the_cache_off_writes_nothing_there_and_removes_its_temporary_links(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """``cache=False`` still hard-linked (or copied, across file systems) a hub snapshot's files into the cache."""
    pytest.importorskip("openvino")
    cache = tmp_path / "cache"
    snapshot = _hub_layout(minilm_artifact_session, tmp_path / "hub")
    model = SentenceTransformer(
        snapshot,
        provider="openvino",
        variant="fp32",
        provider_cache_dir=cache,
        provider_options=ProviderOptions(cache=False),
    )
    temporary = model._pipeline.provider._temporary
    assert temporary is not None and (temporary / "model.onnx.data").is_file()
    expected = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32").encode(TEXTS)
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-5)
    model.close()
    assert not temporary.exists() and not cache.exists()


def test_memory_short_at_load_is_a_memory_error_and_keeps_the_cached_graph(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under an address-space limit ONNX Runtime's std::bad_alloc was an ArtifactError telling the user to re-export
    a sound artifact, and the shared graph cache's copy was deleted as corrupt for every process of the machine.
    The allocation failure is injected into ONNX Runtime (a real limit crashes ONNX Runtime or the tokenizer
    natively at some margins, so a test under one could not be told from a broken build)."""
    import onnxruntime as ort

    from fastembed_rt.providers.base import memory_short

    cache = tmp_path / "cache"
    SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32", provider_cache_dir=cache)
    (entry,) = [p for p in (cache / "onnxruntime").iterdir() if p.is_dir()]
    real = ort.InferenceSession

    def short_of_memory(path: str, *args: object, **kwargs: object) -> object:
        if Path(path).is_relative_to(cache):
            raise RuntimeError(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: std::bad_alloc"
            )
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", short_of_memory)
    with pytest.raises(NotEnoughMemoryError, match=r"not enough memory to load .*std::bad_alloc\); raise the"):
        SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32", provider_cache_dir=cache)
    assert issubclass(NotEnoughMemoryError, MemoryError)  # what code catching allocation failures catches
    assert (entry / "model.onnx").is_file(), "the cached copy was removed as if it were corrupt"
    # one line from the command line (a FastEmbedError), not a traceback
    monkeypatch.setenv("FASTEMBED_RT_CACHE", str(cache))
    assert main(["encode", str(minilm_artifact_session), "--variant", "fp32", "--provider", "cpu", "x"]) == 1
    assert capsys.readouterr().err.startswith(f"error: not enough memory to load {cache}")
    # the engines' other ways of saying it (OpenVINO's mapping, a thread the C library could not start)
    for message in ("Can not create file mapping for 3, err=Cannot allocate memory", "Failed to allocate memory"):
        assert memory_short(RuntimeError(message))
    assert not memory_short(RuntimeError("Load model from x.onnx failed: Protobuf parsing failed"))


def test_a_cache_volume_shared_by_containers_keeps_the_entries_each_container_uses(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two containers serving different models from one cache volume: each load removed the other's copy, whose
    model path it could not see (or saw holding another graph), so every restart rebuilt it. An entry is judged by
    its path only where it was built (the host and mount namespace it records)."""
    from fastembed_rt.providers import onnxruntime_cache

    cache = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(minilm_artifact_session, first)

    def load_in(container: str, artifact: Path, options: ProviderOptions) -> None:
        monkeypatch.setattr(onnxruntime_cache, "mount_identity", lambda: container)
        model = SentenceTransformer(artifact, provider="cpu", provider_options=options, provider_cache_dir=cache)
        model.close()

    def entries() -> dict[str, Path]:
        folders = [p for p in (cache / "onnxruntime").iterdir() if p.is_dir()]
        return {json.loads((p / "entry.json").read_text())["mounts"]: p for p in folders}

    load_in("host-a/mnt:[1]", first, ProviderOptions())
    shutil.rmtree(first)  # as the second container sees that path: nothing there
    shutil.copytree(minilm_artifact_session, second)
    # another model there: another session setting stands for it (a copy of its own, whose build sweeps the cache)
    load_in("host-b/mnt:[2]", second, ProviderOptions(extra={"session.set_denormal_as_zero": "1"}))
    built = entries()
    assert set(built) == {"host-a/mnt:[1]", "host-b/mnt:[2]"}
    shutil.rmtree(second)
    elsewhere = str(tmp_path / "third" / "onnx" / "model.onnx")
    for container, verdicts in (
        ("host-b/mnt:[2]", {"host-a/mnt:[1]": None, "host-b/mnt:[2]": "its graph is gone"}),
        ("host-a/mnt:[1]", {"host-a/mnt:[1]": "its graph is gone", "host-b/mnt:[2]": None}),
    ):
        monkeypatch.setattr(onnxruntime_cache, "mount_identity", lambda container=container: container)
        for built_in, verdict in verdicts.items():
            assert onnxruntime_cache._stale(built[built_in], elsewhere, {}) == verdict, (container, built_in)
    # a copy no load used for FOREIGN_UNUSED_DAYS is judged anywhere (a restarted container: a new namespace)
    days_ago = time.time() - (onnxruntime_cache.FOREIGN_UNUSED_DAYS + 1) * 86400
    os.utime(built["host-a/mnt:[1]"] / "entry.json", (days_ago, days_ago))
    assert onnxruntime_cache._stale(built["host-a/mnt:[1]"], elsewhere, {}) == "its graph is gone"


def test_a_running_model_marks_its_cached_copy_used(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry's time was set by loads alone: a server that loaded once and ran for days looked unused to the other
    processes sharing the cache, whose sweeps could remove the file it maps. Calls mark it (hourly; here at once)."""
    from fastembed_rt.providers import onnxruntime as ort_engine

    model = SentenceTransformer(minilm_artifact_session, provider="cpu", variant="fp32", provider_cache_dir=tmp_path)
    entry = model._pipeline.provider.graph_file.parent / "entry.json"
    days_ago = time.time() - 10 * 86400
    os.utime(entry, (days_ago, days_ago))
    model.encode(TEXTS)
    assert entry.stat().st_mtime == days_ago  # within the hour: left alone
    monkeypatch.setattr(ort_engine, "MARK_USED_S", 0.0)
    model.encode(TEXTS)
    assert time.time() - entry.stat().st_mtime < 60
    model.close()
