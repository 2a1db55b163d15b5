"""The ``cpu`` engine's graph cache: ONNX Runtime's optimized graph with its pre-packed weights, saved on a graph's
first load and memory-mapped after (``fastembed_rt.providers.onnxruntime_cache``).

What must hold: the cached graph computes bit for bit what the artifact's graph computes, a later load (or the
streams' second session, or a copy of the artifact) opens the same copy without building it again, a changed
graph gets a new copy, a damaged copy or a cache folder that cannot be written never stops a model from loading,
and ``cache=False`` leaves no trace.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import SentenceTransformer
from fastembed_rt.providers import ProviderOptions
from fastembed_rt.providers.onnxruntime_cache import ENTRY_FILE, GRAPH_FILE, LOCK_FILE, UNUSED_DAYS

# Lengths from 1 to ~60 words, so that batches of 4 differ in length and a call runs on both streams.
TEXTS = ["", "a", "Ünïcödé and emoji 🙂", *(" ".join(["word"] * (1 + (i * 37) % 60)) + f" {i}" for i in range(37))]


def _model(artifact: Path, cache_dir: Path, variant: str = "auto", **options: Any) -> SentenceTransformer:
    return SentenceTransformer(
        artifact,
        provider="cpu",
        variant=variant,
        intra_op_threads=2,
        provider_cache_dir=cache_dir,
        provider_options=ProviderOptions(**options),
    )


def _graph(model: SentenceTransformer) -> Path:
    return Path(model._pipeline.provider.graph_file)


def _copies(cache: Path) -> list[Path]:
    folder = cache / "onnxruntime"
    return sorted(p for p in folder.iterdir() if (p / ENTRY_FILE).exists()) if folder.exists() else []


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("variant", ["fp32", "optimized", "int8", "int8-avx2"])
def test_the_cached_graph_computes_bit_for_bit_what_the_artifact_graph_computes(
    minilm_variants_artifact: Path, tmp_path: Path, variant: str
) -> None:
    artifact_run = _model(minilm_variants_artifact, tmp_path / "unused", variant, cache=False)
    expected = artifact_run.encode(TEXTS, batch_size=4)
    tokens = artifact_run.encode(TEXTS[:6], output_value="token_embeddings")
    assert _graph(artifact_run).parent == minilm_variants_artifact / "onnx"
    for _ in range(2):  # the load that builds the copy, then one that finds it
        cached = _model(minilm_variants_artifact, tmp_path / "cache", variant)
        assert _graph(cached).is_relative_to(tmp_path / "cache" / "onnxruntime")
        np.testing.assert_array_equal(cached.encode(TEXTS, batch_size=4), expected)
        for got, want in zip(cached.encode(TEXTS[:6], output_value="token_embeddings"), tokens):
            np.testing.assert_array_equal(got, want)
        cached.close()
    assert len(_copies(tmp_path / "cache")) == 1


def test_a_later_load_and_the_streams_session_open_the_copy_the_first_load_built(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    first = _model(minilm_artifact_session, tmp_path, streams=2)
    (copy,) = _copies(tmp_path)
    data = copy / (GRAPH_FILE + ".data")
    built = data.stat()
    first.encode(TEXTS, batch_size=4)  # many batches: opens the streams' session of the same graph
    assert first._pipeline.provider._stream_session is not None
    second = _model(minilm_artifact_session, tmp_path, streams=2)
    assert _graph(second) == _graph(first) == copy / GRAPH_FILE
    assert _copies(tmp_path) == [copy]
    assert (data.stat().st_ino, data.stat().st_mtime_ns) == (built.st_ino, built.st_mtime_ns), "not rebuilt"
    if sys.platform == "linux":
        assert _mapped(data), "the packed weights are memory-mapped from the copy, not read onto the heap"
    first.close()
    second.close()


def test_copies_of_an_artifact_made_with_their_times_share_one_cached_copy(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    one = shutil.copytree(minilm_artifact_session, tmp_path / "one")  # copies keep modification times
    two = shutil.copytree(minilm_artifact_session, tmp_path / "two")
    models = [_model(artifact, tmp_path / "cache", "fp32") for artifact in (one, two)]
    assert _graph(models[0]) == _graph(models[1])
    assert len(_copies(tmp_path / "cache")) == 1
    # the first copy goes, then another graph is cached (which sweeps): the shared copy stays for the second
    # (it was removed as "its graph is gone", and the next load of the unchanged second built it again)
    shared = _graph(models[1])
    models[0].close()
    shutil.rmtree(one)
    _model(shutil.copytree(minilm_artifact_session, tmp_path / "other", copy_function=shutil.copy), tmp_path / "cache")
    assert shared.exists() and _graph(_model(two, tmp_path / "cache", "fp32")) == shared


def test_a_rewritten_graph_gets_a_new_copy_and_the_old_copy_is_removed(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    artifact = shutil.copytree(minilm_artifact_session, tmp_path / "artifact")
    cache = tmp_path / "cache"
    model = _model(artifact, cache, "fp32")
    before = model.encode(TEXTS)
    (old,) = _copies(cache)
    model.close()
    data = artifact / "onnx" / "model.onnx.data"
    later = data.stat().st_mtime_ns + 5_000_000_000
    os.utime(data, ns=(later, later))  # as a re-export to the same folder leaves it
    model = _model(artifact, cache, "fp32")
    (new,) = _copies(cache)
    assert new != old and not old.exists()
    np.testing.assert_array_equal(model.encode(TEXTS), before)


def test_a_truncated_copy_is_built_again(minilm_artifact_session: Path, tmp_path: Path) -> None:
    expected = _model(minilm_artifact_session, tmp_path, "fp32").encode(TEXTS)
    (copy,) = _copies(tmp_path)
    data = copy / (GRAPH_FILE + ".data")
    size = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(size // 2)
    model = _model(minilm_artifact_session, tmp_path, "fp32")
    assert _graph(model) == copy / GRAPH_FILE and data.stat().st_size == size
    np.testing.assert_array_equal(model.encode(TEXTS), expected)


def test_a_copy_onnxruntime_cannot_open_is_removed_and_the_artifact_graph_runs(
    minilm_artifact_session: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _model(minilm_artifact_session, tmp_path, "fp32").encode(TEXTS)
    (copy,) = _copies(tmp_path)
    graph = copy / GRAPH_FILE
    graph.write_bytes(b"\0" * graph.stat().st_size)  # damaged, though its size is as recorded
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        model = _model(minilm_artifact_session, tmp_path, "fp32")
    assert _graph(model) == minilm_artifact_session / "onnx" / "model.onnx"
    assert "does not open" in caplog.text and str(graph) in caplog.text
    assert not copy.exists()
    np.testing.assert_array_equal(model.encode(TEXTS), expected)
    assert _graph(_model(minilm_artifact_session, tmp_path, "fp32")) == graph, "the next load builds it again"


def test_a_cache_folder_that_cannot_be_written_leaves_the_artifact_graph_running_with_a_warning(
    minilm_artifact_session: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        model = _model(minilm_artifact_session, blocked, "fp32")
    assert _graph(model) == minilm_artifact_session / "onnx" / "model.onnx"
    assert "graph cache disabled" in caplog.text and str(blocked) in caplog.text
    reference = _model(minilm_artifact_session, tmp_path / "cache", "fp32")
    np.testing.assert_array_equal(model.encode(TEXTS), reference.encode(TEXTS))


def test_cache_off_reads_and_writes_no_cache(minilm_artifact_session: Path, tmp_path: Path) -> None:
    _model(minilm_artifact_session, tmp_path, "fp32")  # a copy exists: cache=False must not open it either
    (copy,) = _copies(tmp_path)
    model = _model(minilm_artifact_session, tmp_path / "other", "fp32", cache=False)
    assert _graph(model) == minilm_artifact_session / "onnx" / "model.onnx"
    assert not (tmp_path / "other").exists()
    off_here = _model(minilm_artifact_session, tmp_path, "fp32", cache=False)
    assert _graph(off_here).parent == minilm_artifact_session / "onnx"
    assert _copies(tmp_path) == [copy]


def test_building_a_copy_removes_those_whose_graph_is_gone_or_that_no_load_used_for_30_days(
    minilm_artifact_session: Path, minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    idle = _model(minilm_artifact_session, cache, "fp32")
    idle_copy = _graph(idle).parent
    gone = shutil.copytree(minilm_artifact_session, tmp_path / "gone", copy_function=shutil.copy)  # new times
    _model(gone, cache, "fp32")
    (gone_copy,) = set(_copies(cache)) - {idle_copy}
    shutil.rmtree(gone)
    long_ago = time.time() - (UNUSED_DAYS + 1) * 86400
    os.utime(idle_copy / ENTRY_FILE, (long_ago, long_ago))
    assert set(_copies(cache)) == {gone_copy, idle_copy}, "removed only when a copy is built"
    fresh = _model(minilm_variants_artifact, cache, "int8")
    assert _copies(cache) == [_graph(fresh).parent]
    # the idle model still runs: its files are gone from the folder, not from its mapping
    assert idle.encode(TEXTS).shape == (len(TEXTS), 384)


def test_loads_racing_to_build_the_same_copy_all_run_it_and_leave_one(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        models = list(pool.map(lambda _: _model(minilm_artifact_session, tmp_path, "fp32"), range(3)))
    (copy,) = _copies(tmp_path)
    assert {_graph(model) for model in models} == {copy / GRAPH_FILE}
    left = sorted(p.name for p in (tmp_path / "onnxruntime").iterdir())
    assert left == sorted([copy.name, LOCK_FILE]), "no half-written copy is left"
    first = models[0].encode(TEXTS)
    for model in models[1:]:
        np.testing.assert_array_equal(model.encode(TEXTS), first)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_cache_off_leaves_openvino_without_its_compiled_model_cache(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    model = SentenceTransformer(
        minilm_artifact_session,
        provider="openvino",
        provider_cache_dir=tmp_path,
        provider_options=ProviderOptions(cache=False),
    )
    assert model.encode(TEXTS).shape == (len(TEXTS), 384)
    assert model._pipeline.provider.cache_dir is None and not (tmp_path / "openvino").exists()
    cached = SentenceTransformer(minilm_artifact_session, provider="openvino", provider_cache_dir=tmp_path)
    assert cached._pipeline.provider.cache_dir.parent == tmp_path / "openvino"


def test_new_weights_under_the_same_graph_file_are_never_served_from_the_old_copy(tmp_path: Path) -> None:
    """The graph file is the same bytes; only its external data (named ``<graph>_data`` here, not ``.data``)
    changed: the copy must be rebuilt, or the old weights would be served packed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fastembed_rt.providers.onnxruntime import OnnxRuntimeCPU

    graph_file = tmp_path / "graph" / "matmul.onnx"
    x = np.random.default_rng(0).standard_normal((3, 64), dtype=np.float32)

    def write(weights: np.ndarray, folder: Path) -> None:
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "matmul",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
            [numpy_helper.from_array(weights, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        folder.mkdir()
        onnx.save(model, folder / graph_file.name, save_as_external_data=True, location="matmul.onnx_data")

    first, second = (np.random.default_rng(seed).standard_normal((64, 64), dtype=np.float32) for seed in (1, 2))
    write(first, graph_file.parent)
    write(second, tmp_path / "second")
    options = ProviderOptions(cache_dir=tmp_path / "cache", streams=1)
    graph_bytes = graph_file.read_bytes()
    for weights in (first, second):
        if weights is second:  # the same graph file, the second weights' data file (same layout) in place
            shutil.copyfile(tmp_path / "second" / "matmul.onnx_data", graph_file.parent / "matmul.onnx_data")
            assert graph_file.read_bytes() == graph_bytes
        engine = OnnxRuntimeCPU(graph_file, options)
        assert engine.graph_file.is_relative_to(tmp_path / "cache")
        np.testing.assert_allclose(engine.run({"x": x}, ["y"])["y"], x @ weights, rtol=1e-5, atol=1e-4)
        engine.close()
    assert len(_copies(tmp_path / "cache")) == 1, "the first weights' copy was removed"


def test_two_models_of_one_architecture_with_equal_file_times_never_share_a_copy(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """A fine-tuned model has the same graph file and a same-size data file as its base; with equal times (a
    reproducible image, ``tar --mtime``) the two shared one cached copy: the second ran the first one's weights.
    The manifest's sha256 keys the copy too. ``verify="full"`` runs the checked files, not a cached copy."""
    import json

    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    from fastembed_rt.artifact import file_sha256

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    shutil.copytree(minilm_artifact_session, base)
    shutil.copytree(minilm_artifact_session, tuned)
    graph = onnx.load(str(tuned / "onnx" / "model.onnx"), load_external_data=False)
    weight = next(t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2)
    info = ExternalDataInfo(weight)
    data = tuned / "onnx" / info.location
    values = np.memmap(data, dtype=np.float32, mode="r+", offset=info.offset, shape=(info.length // 4,))
    values *= 1.5  # "fine-tuning": one weight matrix changed, every size the same
    values.flush()
    del values
    manifest = json.loads((tuned / "manifest.json").read_text())
    for variant in manifest["variants"]:  # a legitimate artifact: its manifest knows its files
        if variant["file"] == "onnx/model.onnx":
            variant["weights_sha256"] = file_sha256(data)
    (tuned / "manifest.json").write_text(json.dumps(manifest))
    for artifact in (base, tuned):
        for file in (artifact / "onnx").iterdir():
            os.utime(file, ns=(1_000_000_000, 1_000_000_000))
    cache = tmp_path / "cache"
    uncached = [_model(a, cache, "fp32", cache=False).encode(TEXTS) for a in (base, tuned)]
    assert np.abs(uncached[0] - uncached[1]).max() > 1e-3, "the tuned weights must change the embeddings"
    for artifact, expected in zip((base, tuned), uncached):
        model = _model(artifact, cache, "fp32")
        assert _graph(model).is_relative_to(cache)
        np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-5)
    assert len(_copies(cache)) == 2
    checked = SentenceTransformer(tuned, provider="cpu", variant="fp32", verify="full", provider_cache_dir=cache)
    assert not _graph(checked).is_relative_to(cache)
