"""fastembed-rt on a real local Ray cluster (2 CPUs, no dashboard, loopback, started by this module):
Ray Data gives every row the library's own output (dense in three precisions over all STSb test
sentences, two of them in one job of chained operators; SPLADE; cross-encoder), with ids and other
columns kept in order; a bad row stops the job with an error naming it; a local artifact reaches
actors that cannot see it, checked by its checksums; Ray Serve serves the server's routes with the
library's outputs and answers overload with 429.

Every Ray Data run waits at most ``wait_for_min_actors_s`` for its actors; every HTTP call has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import RunWithoutTorch
from test_server import TEXTS, _free_port

from fastembed_rt import ArtifactError, CrossEncoder, InputError, SentenceTransformer, SparseEncoder
from fastembed_rt.stsb import load_stsb

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'fastembed-rt[ray]'")
pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'fastembed-rt[ray]'")

from fastembed_rt.providers.threads import available_cpus  # noqa: E402
from fastembed_rt.ray import embed, local_artifact, predict, ship_artifact, sparse_encode, worker  # noqa: E402
from fastembed_rt.ray.serve import build_app, run  # noqa: E402  (imports Ray Serve without its import warning)
from fastembed_rt.ray.worker import _fingerprint, assigned_cpus  # noqa: E402
from fastembed_rt.server import ServedModel, ServerConfig  # noqa: E402

serve = pytest.importorskip("ray.serve")

ACTOR_START_TIMEOUT_S = 180


_MARKER = "FASTEMBED_RT_TEST_RAY_CLUSTER"


def _cluster_processes(marker: str) -> list[int]:
    """Processes of this module's cluster still alive: every one inherits ``_MARKER=marker`` from this process."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{_MARKER}={marker}".encode() in environ:
                found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module; shut down (with Serve) at its end, its files removed, and any
    of its processes that outlive ``ray.shutdown`` ended (an actor still starting up can miss it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    os.environ[_MARKER] = temp
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp,
        log_to_driver=False,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(_MARKER, None)
        deadline = time.monotonic() + 10
        while _cluster_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _cluster_processes(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def stsb_rows() -> list[dict[str, Any]]:
    """All 2,758 STSb test sentences (both columns) with their position as ``id`` and a ``split`` column."""
    split = load_stsb("test")
    return [{"id": i, "text": text, "split": "test"} for i, text in enumerate(split.sentences1 + split.sentences2)]


def _collect(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    return dataset.take_batch(dataset.count(), batch_format="numpy")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- Ray Data ---------------------------------------------------------------------------------------------
def test_embed_gives_every_stsb_row_the_library_embedding_in_order(
    cluster: None,
    minilm_artifact_session: Path,
    minilm_runtime: SentenceTransformer,
    stsb_rows: list[dict[str, Any]],
) -> None:
    dataset = ray.data.from_items(stsb_rows)
    order_before = dataset.context.execution_options.preserve_order
    got = _collect(embed(dataset, minilm_artifact_session, actors=2, threads_per_actor=1))
    # the result preserves order; the caller's dataset (whose context Ray shares with the result) is as it was
    assert dataset.context.execution_options.preserve_order == order_before
    texts = [row["text"] for row in stsb_rows]
    expected = minilm_runtime.encode(texts)  # type: ignore[union-attr]
    assert list(got) == ["id", "text", "split", "embedding"]
    np.testing.assert_array_equal(got["id"], np.arange(len(stsb_rows)))
    assert got["text"].tolist() == texts and set(got["split"].tolist()) == {"test"}
    assert got["embedding"].dtype == np.float32 and got["embedding"].shape == expected.shape
    assert _cosines(got["embedding"], expected).min() >= 0.9999


def test_chained_embeds_give_every_stsb_row_the_librarys_int8_and_truncated_ubinary_codes(
    cluster: None,
    minilm_artifact_session: Path,
    minilm_runtime: SentenceTransformer,
    stsb_rows: list[dict[str, Any]],
) -> None:
    # Two precisions in one job, one actor × one thread each: the two operators stream the rows between them.
    dataset = embed(
        ray.data.from_items(stsb_rows), minilm_artifact_session, precision="int8", output_column="int8", actors=1
    )
    dataset = embed(
        dataset, minilm_artifact_session, precision="ubinary", truncate_dim=256, output_column="ubinary", actors=1
    )
    got = _collect(dataset)
    texts = [row["text"] for row in stsb_rows]
    assert list(got) == ["id", "text", "split", "int8", "ubinary"]
    np.testing.assert_array_equal(got["id"], np.arange(len(stsb_rows)))
    assert got["text"].tolist() == texts
    for column, precision, truncate_dim in (("int8", "int8", None), ("ubinary", "ubinary", 256)):
        expected = minilm_runtime.encode(texts, precision=precision, truncate_dim=truncate_dim)  # type: ignore[union-attr]
        assert got[column].dtype == expected.dtype and got[column].shape == expected.shape
        # 1-thread actors sum in another order than the library's threads: a value on a code's edge may move by one
        # code (int8), a sign by one bit of one byte (ubinary); the rest are equal
        if precision == "int8":
            assert np.abs(got[column].astype(np.int16) - expected).max() <= 1
        else:
            assert np.unpackbits(got[column] ^ expected).sum() <= 2
        assert (got[column] == expected).mean() > 0.999


def test_sparse_encode_gives_each_row_the_library_splade_vector(
    cluster: None, tiny_splade_artifact: Path, stsb_rows: list[dict[str, Any]]
) -> None:
    rows = stsb_rows[:300]
    out = _collect(sparse_encode(ray.data.from_items(rows), tiny_splade_artifact, actors=2, batch_size=64))
    expected = SparseEncoder(tiny_splade_artifact, provider="cpu").encode(
        [r["text"] for r in rows], sparse_format="arrays"
    )
    np.testing.assert_array_equal(out["id"], np.arange(len(rows)))
    for i in range(len(rows)):
        indices, values = expected.row(i)
        assert out["sparse_indices"][i].tolist() == indices.tolist()
        np.testing.assert_allclose(out["sparse_values"][i], values, rtol=1e-5, atol=1e-6)


def test_sparse_encode_of_an_inference_free_model_routes_by_task(
    cluster: None, inference_free_splade: tuple[Path, Path], stsb_rows: list[dict[str, Any]]
) -> None:
    """Queries of an inference-free SPLADE model are a token-weight lookup (encode_query), documents its graph."""
    _, artifact = inference_free_splade
    rows = stsb_rows[:40]
    model = SparseEncoder(artifact, provider="cpu")
    texts = [r["text"] for r in rows]
    for task, expected in (
        ("query", model.encode_query(texts, sparse_format="arrays")),
        (None, model.encode(texts, sparse_format="arrays")),
    ):
        out = _collect(sparse_encode(ray.data.from_items(rows), artifact, actors=1, batch_size=16, task=task))
        for i in range(len(rows)):
            indices, values = expected.row(i)
            assert out["sparse_indices"][i].tolist() == indices.tolist()
            np.testing.assert_allclose(out["sparse_values"][i], values, rtol=1e-5, atol=1e-6)
    looked_up = model.encode_query(texts, sparse_format="arrays")
    assert looked_up.nnz < model.encode(texts, sparse_format="arrays").nnz  # the routes differ: the test can fail
    model.close()
    with pytest.raises(InputError, match="task must be a str or None"):
        sparse_encode(ray.data.from_items(rows), artifact, task=1)  # type: ignore[arg-type]


def test_predict_scores_each_query_document_pair_as_the_library(cluster: None, tiny_reranker_artifact: Path) -> None:
    split = load_stsb("test")
    rows = [{"pair": i, "query": a, "document": b} for i, (a, b) in enumerate(zip(split.sentences1, split.sentences2))]
    rows = rows[:300]
    out = _collect(predict(ray.data.from_items(rows), tiny_reranker_artifact, actors=2, batch_size=64))
    expected = CrossEncoder(tiny_reranker_artifact, provider="cpu").predict([(r["query"], r["document"]) for r in rows])
    np.testing.assert_array_equal(out["pair"], np.arange(len(rows)))
    assert out["score"].dtype == np.float32
    np.testing.assert_allclose(out["score"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("bad", "shown"), [(None, "is None"), (42, "is int 42")], ids=["None", "int"])
def test_a_bad_row_stops_the_job_with_an_error_naming_it(
    cluster: None, minilm_artifact_session: Path, bad: object, shown: str
) -> None:
    import pandas as pd

    texts: list[object] = [f"sentence {i}" for i in range(40)]
    texts[17] = bad
    dataset = ray.data.from_pandas(pd.DataFrame({"id": range(40), "text": texts}))
    # Ray Data raises its own RayTaskError(UserCodeException) on the driver, carrying the actor's InputError.
    with pytest.raises(
        ray.exceptions.RayError, match=rf"row \{{'id': 17\}}: column 'text' {shown}, expected str"
    ) as caught:
        embed(dataset, minilm_artifact_session, actors=1).materialize()
    assert "drop or fix such rows" in str(caught.value)
    if bad is None:  # the filter the message suggests works in Ray ('text IS NOT NULL', suggested before, did not)
        from ray.data.expressions import col

        suggested = re.search(r"dataset\.filter\(expr=(col\('text'\)\.is_not_null\(\))\)", str(caught.value))
        assert suggested is not None, str(caught.value)
        # The message's own code. Only counted: the failed job's actor may still hold a CPU of the two.
        assert dataset.filter(expr=eval(suggested[1], {"col": col})).count() == 39


def test_a_task_mismatch_or_an_unknown_option_is_refused_before_anything_runs(
    cluster: None, minilm_artifact_session: Path, tiny_splade_artifact: Path
) -> None:
    dataset = ray.data.from_items([{"text": "a"}])
    with pytest.raises(ArtifactError, match="holds a 'sparse' model; this call needs an artifact of task 'embedding'"):
        embed(dataset, tiny_splade_artifact)
    with pytest.raises(InputError, match=r"unknown option 'actor'; valid options: actors, batch_size, "):
        embed(dataset, minilm_artifact_session, actor=2)  # type: ignore[call-arg]
    with pytest.raises(InputError, match="threads_per_actor must be a positive int, got 0"):
        embed(dataset, minilm_artifact_session, threads_per_actor=0)
    with pytest.raises(InputError, match="encode_batch_size must be a positive int, got 0"):  # was the actors' error
        embed(dataset, minilm_artifact_session, encode_batch_size=0)
    for actors in ((1,), (0, 2), 0, "2"):  # (1,) was a bare IndexError
        with pytest.raises(InputError, match="actors must be an int >= 1 or a \\(min, max\\) pair of them"):
            embed(dataset, minilm_artifact_session, actors=actors)  # type: ignore[arg-type]
    assert assigned_cpus() == available_cpus()  # on the driver: Ray's AssertionError before


# -- the artifact reaches every node ------------------------------------------------------------------
def test_a_local_artifact_reaches_actors_that_cannot_see_it(
    cluster: None,
    minilm_artifact_session: Path,
    minilm_runtime: SentenceTransformer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The driver names a directory relative to its own working directory, which the workers do not
    # share, gives the actors their own cache, and removes the directory before they start: only the
    # object store can bring it.
    shutil.copytree(minilm_artifact_session, tmp_path / "driver" / "minilm")
    monkeypatch.chdir(tmp_path / "driver")
    assert ray.get(ray.remote(lambda: os.getcwd()).remote()) != os.getcwd()  # a lambda travels by value
    cache = tmp_path / "actor-cache"
    texts = TEXTS * 5
    dataset = embed(
        ray.data.from_items([{"text": t} for t in texts]),
        "./minilm",
        actors=1,
        runtime_env={"env_vars": {"FASTEMBED_RT_CACHE": str(cache)}},
    )
    shutil.rmtree(tmp_path / "driver" / "minilm")
    got = _collect(dataset)["embedding"]
    assert _cosines(got, minilm_runtime.encode(texts)).min() >= 0.9999
    (fetched,) = (cache / "artifacts").iterdir()
    assert (fetched / "manifest.json").read_bytes() == (minilm_artifact_session / "manifest.json").read_bytes()


def test_workers_run_the_variant_the_driver_chose(cluster: None, minilm_artifact_session: Path, tmp_path: Path) -> None:
    """Speed records choose per CPU class: a job's actors on other CPUs must still run one graph."""
    from dataclasses import replace

    from fastembed_rt.artifact import SpeedRecord, load_manifest
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.ray.worker import ship_artifact

    root = tmp_path / "artifact"
    shutil.copytree(minilm_artifact_session, root)
    manifest = load_manifest(root)
    fp32 = manifest.variants[0]
    cpu = this_cpu()
    record = SpeedRecord(cpu.machine, cpu.model, cpu.isa, 2, 8, 8, {"fp32": [1.0], "optimized": [2.0]}, "tune", "x")
    # the fp32 files listed again as "optimized": choice reads the manifest, and both open
    replace(manifest, variants=(fp32, replace(fp32, name="optimized")), speed=(record,)).write()
    assert ship_artifact(root, provider="cpu").variant == "optimized"  # the faster one on this CPU class
    assert ship_artifact(root, provider="cpu", variant="fp32").variant == "fp32"
    assert ship_artifact(root, provider="auto").variant is None  # every variant shipped, chosen on the worker


def test_a_fetched_artifact_is_checked_against_what_was_shipped_and_its_manifest(
    cluster: None, minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTEMBED_RT_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "minilm"
    shutil.copytree(minilm_artifact_session, source)
    shipped = ship_artifact(source)
    shutil.rmtree(source)
    # A file that changed on its way: refused by the digest the driver shipped.
    tampered = dataclasses.replace(shipped.files[1], sha256="0" * 64)
    with pytest.raises(ArtifactError, match=r"arrived corrupt from the object store"):
        local_artifact(dataclasses.replace(shipped, files=(shipped.files[0], tampered, *shipped.files[2:])))
    assert not (tmp_path / "cache" / "artifacts" / _fingerprint(shipped)).exists()
    # A graph that no longer matches its manifest (same size, other bytes) on the driver: refused by the
    # manifest's sha256 where it arrives.
    shutil.copytree(minilm_artifact_session, source)
    graph = source / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    corrupt = ship_artifact(source)
    shutil.rmtree(source)
    with pytest.raises(ArtifactError, match=r"model.onnx is corrupt: sha256 .*, the manifest says"):
        local_artifact(corrupt)
    # The intact artifact arrives, once, and the second actor of the node finds it in place.
    first = local_artifact(shipped)
    assert first == str(tmp_path / "cache" / "artifacts" / _fingerprint(shipped)) == local_artifact(shipped)
    assert SentenceTransformer(first).encode(TEXTS).shape == (len(TEXTS), 384)
    # A copy changed in the cache since (same sizes): a new actor process hashes it, and fetches it again (it ran
    # the changed weights: vectors 0.028 off)
    weights = Path(first) / "onnx" / "model.onnx.data"
    changed = bytearray(weights.read_bytes())
    changed[1000:1064] = bytes(64)
    weights.write_bytes(bytes(changed))
    worker._CHECKED.clear()  # as in another actor process
    assert local_artifact(shipped) == first
    assert weights.read_bytes() == (minilm_artifact_session / "onnx" / "model.onnx.data").read_bytes()


def test_each_set_of_variants_shipped_from_one_artifact_gets_its_own_copy(
    cluster: None, minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One folder per manifest: a node that fetched one variant failed every later job shipping another (OSError:
    Directory not empty)."""
    from dataclasses import replace

    from fastembed_rt.artifact import load_manifest

    monkeypatch.setenv("FASTEMBED_RT_CACHE", str(tmp_path / "cache"))
    source = shutil.copytree(minilm_artifact_session, tmp_path / "two")
    manifest = load_manifest(source)
    fp32 = manifest.variants[0]
    shutil.copy(source / fp32.file, source / "onnx" / "copy.onnx")  # the same graph, under another name
    replace(manifest, variants=(fp32, replace(fp32, name="copy", file="onnx/copy.onnx"))).write()
    shipped = [ship_artifact(source, provider="cpu", variant=name) for name in ("fp32", "copy")]
    shutil.rmtree(source)  # as a node that does not see the driver's folder
    for one, name in zip(shipped, ("fp32", "copy")):
        folder = local_artifact(one)
        assert SentenceTransformer(folder, variant=name).encode(TEXTS).shape == (len(TEXTS), 384)
    assert len(list((tmp_path / "cache" / "artifacts").iterdir())) == 2


def test_a_hub_id_resolves_on_the_actors_as_locally(
    cluster: None, minilm_artifact_session: Path, minilm_runtime: SentenceTransformer, tmp_path: Path
) -> None:
    # Laid out as huggingface_hub's cache; the actors run with HF_HUB_OFFLINE=1 (set by conftest).
    snapshot = tmp_path / "hub" / "models--acme--minilm-rt" / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_artifact_session, snapshot)
    (tmp_path / "hub" / "models--acme--minilm-rt" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--minilm-rt" / "refs" / "main").write_text("0" * 40)
    out = embed(
        ray.data.from_items([{"text": t} for t in TEXTS]), "acme/minilm-rt", actors=1, cache_dir=tmp_path / "hub"
    )
    assert _cosines(_collect(out)["embedding"], minilm_runtime.encode(TEXTS)).min() >= 0.9999


# -- Ray Serve ------------------------------------------------------------------------------------------
def test_ray_serve_serves_the_server_routes_with_library_outputs_and_answers_backpressure_with_its_status(
    cluster: None,
    minilm_artifact_session: Path,
    minilm_runtime: SentenceTransformer,
    tiny_reranker_artifact: Path,
    tiny_splade_artifact: Path,
) -> None:
    config = ServerConfig(
        models=(
            ServedModel("all-MiniLM-L6-v2", minilm_artifact_session),
            ServedModel("reranker", tiny_reranker_artifact),
            ServedModel("splade", tiny_splade_artifact),
        ),
        max_client_batch_size=64,
    )
    port = _free_port()
    run(config, port=port, cpus_per_replica=1, max_ongoing_requests=2, max_queued_requests=2, retry_after_s=2)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/health").status_code == 200
            info = client.get("/info").json()
            assert [m["threads"] for m in info["models"]] == [1, 1, 1]  # the replica's one CPU
            dense = np.asarray(client.post("/embed", json={"inputs": TEXTS}).json(), dtype=np.float32)
            np.testing.assert_allclose(dense, minilm_runtime.encode(TEXTS, normalize_embeddings=True), atol=1e-5)
            openai = client.post("/v1/embeddings", json={"input": TEXTS, "model": "all-MiniLM-L6-v2"}).json()
            got = np.array([d["embedding"] for d in openai["data"]], dtype=np.float32)
            np.testing.assert_allclose(got, minilm_runtime.encode(TEXTS), atol=1e-5)
            sparse = client.post("/embed_sparse", json={"inputs": TEXTS, "model": "splade"}).json()
            expected_sparse = SparseEncoder(tiny_splade_artifact, provider="cpu").encode(TEXTS, sparse_format="arrays")
            for i, row in enumerate(sparse):
                assert [v["index"] for v in row] == expected_sparse.row(i)[0].tolist()
            query = "How many people live in Berlin?"
            ranked = client.post("/rerank", json={"query": query, "texts": TEXTS}).json()
            expected = CrossEncoder(tiny_reranker_artifact, provider="cpu").rank(query, TEXTS)
            assert [r["index"] for r in ranked] == [r["corpus_id"] for r in expected]
            np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in expected], atol=1e-6)

        texts = [[f"Request {i} asks about {'rivers and mountains ' * (i % 9)}the sea."] * 32 for i in range(40)]

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64)) as c:
                return await asyncio.gather(*(c.post("/embed", json={"inputs": t}) for t in texts))

        replies = asyncio.run(asyncio.wait_for(burst(), 180))
        statuses = [reply.status_code for reply in replies]
        assert set(statuses) <= {200, 429} and statuses.count(429) > 0 and statuses.count(200) > 0
        for request, reply in zip(texts, replies):
            if reply.status_code == 200:
                np.testing.assert_allclose(reply.json()[0], minilm_runtime.encode(request[0]), atol=1e-5)
            else:
                assert reply.headers["retry-after"] == "2"
                assert "max_queued_requests=2" in reply.text
        # The same deployment told to answer backpressure with 503 (redeployed in place).
        alone = dataclasses.replace(config, models=config.models[:1])
        run(
            alone, port=port, cpus_per_replica=1, max_ongoing_requests=1, max_queued_requests=1, backpressure_status=503
        )
        replies = asyncio.run(asyncio.wait_for(burst(), 180))
        statuses = [reply.status_code for reply in replies]
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
        assert all(
            "max_queued_requests=1" in r.text and r.headers["retry-after"] == "1"
            for r in replies
            if r.status_code == 503
        )
    finally:
        serve.shutdown()


def test_ray_serve_pins_the_variant_a_local_server_opens(minilm_served_artifact: Path) -> None:
    from fastembed_rt.ray.serve import _variant

    packed = ServedModel("minilm", str(minilm_served_artifact))
    config = ServerConfig(models=(packed,), provider="cpu")
    assert _variant(config, packed) == "packed"  # a server's batches mix lengths: what `serve` opens on the CPU
    assert _variant(config, dataclasses.replace(packed, variant="fp32")) == "fp32"
    # provider auto: the workers' hardware decides, every variant ships and each replica chooses
    assert _variant(dataclasses.replace(config, provider="auto"), packed) == "auto"


def test_ray_serve_refuses_settings_that_cannot_work(cluster: None, minilm_artifact_session: Path) -> None:
    config = ServerConfig(models=(ServedModel("m", minilm_artifact_session),))
    with pytest.raises(InputError, match="backpressure_status must be 429 or 503, got 500"):
        build_app(config, backpressure_status=500)  # type: ignore[typeddict-item]
    with pytest.raises(InputError, match="cpus_per_replica must be a positive int, got 0"):
        build_app(config, cpus_per_replica=0)
    with pytest.raises(InputError, match="unknown option 'replicas'; valid: backpressure_status, "):
        build_app(config, replicas=2)  # type: ignore[call-arg]


def test_the_ray_modules_import_without_torch(run_without_torch: RunWithoutTorch) -> None:
    script = (
        "\nimport fastembed_rt.ray, fastembed_rt.ray.serve\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))\n"
    )
    result = run_without_torch(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
