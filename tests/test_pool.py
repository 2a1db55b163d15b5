"""Multi-process encoding: same output as one process, in order; errors propagate and stop the pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import InputError, LongInputError, ProviderError, SentenceTransformer
from fastembed_rt.pool import MultiProcessPool

TEXTS = [f"Sentence {i} {'is a little longer than the others ' * (i % 7)}about topic {i % 13}." for i in range(150)]


def _stopped(pool: MultiProcessPool) -> bool:
    alive = {p.pid for p in multiprocessing.active_children()}
    return not any(_running(p, alive) for p in pool.processes)


def _running(process: multiprocessing.process.BaseProcess, alive: set[int | None]) -> bool:
    try:
        return process.is_alive() or process.pid in alive
    except ValueError:  # closed by the pool's stop, which joins a worker before closing it
        return False


def _in_background(call: Any) -> tuple[threading.Thread, list[Any]]:
    """``call()`` started on a thread; the list gets its result or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until_the_call_holds(pool: MultiProcessPool) -> None:
    deadline = time.monotonic() + 60
    while pool._lock.acquire(blocking=False):  # until the call holds the pool
        pool._lock.release()
        assert time.monotonic() < deadline, "the call never took the pool"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def cpu_pool(minilm_runtime: Any) -> Iterator[MultiProcessPool]:
    pool = minilm_runtime.start_multi_process_pool(["cpu", "cpu"])
    yield pool
    minilm_runtime.stop_multi_process_pool(pool)


def test_pool_encode_equals_single_process_encode_in_order(minilm_runtime: Any, cpu_pool: MultiProcessPool) -> None:
    single = minilm_runtime.encode(TEXTS)
    pooled = minilm_runtime.encode(TEXTS, pool=cpu_pool, chunk_size=16)
    assert pooled.shape == single.shape and pooled.dtype == single.dtype
    np.testing.assert_allclose(pooled, single, atol=1e-5)
    assert ((pooled * single).sum(1)).min() > 0.99999


def test_pool_keeps_encode_conventions(minilm_runtime: Any, cpu_pool: MultiProcessPool) -> None:
    one = minilm_runtime.encode(TEXTS[3], pool=cpu_pool)
    assert one.shape == (384,)
    np.testing.assert_allclose(one, minilm_runtime.encode(TEXTS[3]), atol=1e-5)
    assert minilm_runtime.encode([], pool=cpu_pool).shape == (0, 384)
    rows = minilm_runtime.encode(TEXTS[:5], pool=cpu_pool, convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 5 and rows[0].shape == (384,)
    tokens = minilm_runtime.encode(TEXTS[:5], pool=cpu_pool, output_value="token_embeddings", chunk_size=2)
    expected = minilm_runtime.encode(TEXTS[:5], output_value="token_embeddings")
    assert [t.shape for t in tokens] == [t.shape for t in expected]


def test_pool_encode_uses_the_models_truncate_dim_as_it_is_at_the_call(
    minilm_runtime: Any, cpu_pool: MultiProcessPool
) -> None:
    """Workers kept the truncate_dim of the pool's start: truncate_embeddings(64) gave 384-wide rows (and codes)."""
    with minilm_runtime.truncate_embeddings(64):
        pooled = minilm_runtime.encode(TEXTS[:8], pool=cpu_pool, precision="int8")
        assert pooled.shape == (8, 64)
        single = minilm_runtime.encode(TEXTS[:8], precision="int8")
        # a worker's one thread may sum in another order: a value on a bucket's edge may take the next code
        assert np.abs(pooled.astype(np.int16) - single).max() <= 1 and (pooled == single).mean() > 0.99
    minilm_runtime.truncate_dim = 32
    try:
        assert minilm_runtime.encode(TEXTS[:8], pool=cpu_pool).shape == (8, 32)
        assert minilm_runtime.encode(TEXTS[:8], pool=cpu_pool, truncate_dim=48).shape == (8, 48)  # the call's wins
    finally:
        minilm_runtime.truncate_dim = None
    assert minilm_runtime.encode(TEXTS[:8], pool=cpu_pool).shape == (8, 384)


def test_a_pool_started_with_a_truncate_dim_gives_full_rows_once_the_model_has_none(
    minilm_artifact_session: Path,
) -> None:
    """A worker read the call's None as the truncate_dim the pool started with: 32-wide rows from a model whose
    truncate_dim was set back to None (sentence-transformers gives 384)."""
    model = SentenceTransformer(minilm_artifact_session, truncate_dim=32)
    with model.start_multi_process_pool(["cpu"]) as pool:
        assert model.encode(TEXTS[:2], pool=pool).shape == (2, 32)
        with model.truncate_embeddings(None):
            assert model.encode(TEXTS[:2], pool=pool).shape == (2, 384)
        model.truncate_dim = None
        np.testing.assert_allclose(model.encode(TEXTS[:2], pool=pool), model.encode(TEXTS[:2]), atol=1e-6)
        with pytest.raises(InputError, match="truncate_dim must be a positive int, got 0"):  # as without a pool
            model.encode(TEXTS[:2], pool=pool, truncate_dim=0)


def test_pool_encode_uses_the_models_max_seq_length_as_it_is_at_the_call(
    minilm_runtime: Any, cpu_pool: MultiProcessPool
) -> None:
    """Workers kept the max_seq_length of the pool's start (rows 0.2 from the in-process ones at 8 tokens), while
    truncate_dim and prompts set since reached them."""
    before = minilm_runtime.max_seq_length
    minilm_runtime.max_seq_length = 8
    try:
        short = minilm_runtime.encode(TEXTS[:12], pool=cpu_pool, chunk_size=4)
        np.testing.assert_allclose(short, minilm_runtime.encode(TEXTS[:12]), atol=1e-5)
    finally:
        minilm_runtime.max_seq_length = before
    full = minilm_runtime.encode(TEXTS[:12], pool=cpu_pool, chunk_size=4)
    np.testing.assert_allclose(full, minilm_runtime.encode(TEXTS[:12]), atol=1e-5)
    assert np.abs(full - short).max() > 1e-2


def test_pool_workers_run_on_the_devices_asked(cpu_pool: MultiProcessPool) -> None:
    assert cpu_pool.devices == ("cpu", "cpu") and cpu_pool.providers == ["cpu", "cpu"]
    assert cpu_pool["processes"] == cpu_pool.processes and len(cpu_pool["processes"]) == 2  # ST's pool is a dict
    with pytest.raises(KeyError, match="offers 'processes'"):
        cpu_pool["tasks"]


def test_sentence_transformers_static_stop_ends_our_pool(minilm_runtime: Any) -> None:
    """LangChain's HuggingFaceEmbeddings(multi_process=True) stops the pool it started with sentence-transformers'
    static stop_multi_process_pool: a KeyError on pool["input"] after the work was done."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    pool = minilm_runtime.start_multi_process_pool(["cpu", "cpu"])
    rows = minilm_runtime.encode(TEXTS[:4], pool=pool)
    TorchSentenceTransformer.stop_multi_process_pool(pool)
    assert repr(pool).endswith("stopped)") and rows.shape == (4, 384)
    with pytest.raises(ProviderError, match="stopped"):
        minilm_runtime.encode(TEXTS[:4], pool=pool)
    minilm_runtime.stop_multi_process_pool(pool)  # and ours after it, as before


def test_sentence_transformers_static_stop_after_our_own_stop_closed_the_workers_returns(minilm_runtime: Any) -> None:
    """A call that saw a worker die stops the pool and closes its process objects; sentence-transformers' static
    stop, looping over pool["processes"] meanwhile, then joined a closed process: ValueError."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    pool = minilm_runtime.start_multi_process_pool(["cpu"])
    workers = pool["processes"]  # taken before the stop, as the static stop's loop holds them
    pool.close(graceful=False)  # what the call's own stop does first
    for worker in workers:
        worker.terminate(), worker.join(), worker.close()
    assert not any(worker.is_alive() for worker in workers)
    TorchSentenceTransformer.stop_multi_process_pool(pool)


def test_a_closed_model_refuses_pool_calls_and_a_pool_of_another_artifact_is_refused(
    minilm_artifact_session: Path, minilm_artifact: Path, tiny_splade_artifact: Path
) -> None:
    """A closed model still answered through worker processes (each loads the artifact again); a pool started by
    another model of the same type answered with that model's rows (384 wide for a 32-wide model)."""
    from tiny_models import build_tiny_model

    from fastembed_rt.export import export_model

    model = SentenceTransformer(minilm_artifact_session)
    pool = model.start_multi_process_pool(["cpu"])
    other_dir = build_tiny_model(minilm_artifact.parent / "tiny", "bert", "mean")
    export_model(other_dir, minilm_artifact.parent / "tiny-artifact", variants=("fp32",), stsb=False)
    other = SentenceTransformer(minilm_artifact.parent / "tiny-artifact")
    try:
        with pytest.raises(InputError, match=r"pool= runs workers of the artifact .*, not of this model's"):
            other.encode(TEXTS[:2], pool=pool)
        copy = SentenceTransformer(minilm_artifact_session)  # the same artifact: its pool serves it
        np.testing.assert_allclose(copy.encode(TEXTS[:2], pool=pool), copy.encode(TEXTS[:2]), atol=1e-6)
        copy.close()
        model.close()
        for call in (
            lambda: model.encode(TEXTS[:2], pool=pool),
            lambda: model.encode(TEXTS[:2], device=["cpu"]),
            lambda: model.start_multi_process_pool(["cpu"]),
        ):
            with pytest.raises(ProviderError, match="this model was closed"):
                call()
    finally:
        pool.close()
        other.close()


def test_a_calls_error_in_a_worker_is_raised_and_the_pool_stays_usable(minilm_artifact_session: Path) -> None:
    """As sentence-transformers: one bad call does not cost the caller its pool (nor leave answers for the next)."""
    model = SentenceTransformer(minilm_artifact_session)
    with model.start_multi_process_pool(["cpu", "cpu"], intra_op_threads=1) as pool:
        texts = [*TEXTS, "word " * 400, *TEXTS]
        with pytest.raises(InputError, match="tokens long, more than max_seq_length 256"):
            model.encode(texts, pool=pool, long_inputs="error", chunk_size=2)
        assert not _stopped(pool)
        np.testing.assert_allclose(model.encode(TEXTS, pool=pool, chunk_size=2), model.encode(TEXTS), atol=1e-6)


def test_a_pools_long_input_error_names_the_same_input_as_without_a_pool(
    minilm_runtime: Any, cpu_pool: MultiProcessPool
) -> None:
    """Chunks are cut longest first: the error named the input's place in its chunk ("input 0 is 702 tokens")."""
    texts = ["a b c"] * 5 + ["x " * 600] + ["y " * 700]
    with pytest.raises(InputError) as alone:
        minilm_runtime.encode(texts, long_inputs="error")
    for chunk_size in (None, 2):
        with pytest.raises(LongInputError) as pooled:
            minilm_runtime.encode(texts, long_inputs="error", pool=cpu_pool, chunk_size=chunk_size)
        assert str(pooled.value) == str(alone.value) and str(alone.value).startswith("input 5 is 602 tokens long")
        assert pooled.value.tokens == {5: 602, 6: 702}


def test_a_pool_call_sets_last_encode_stats_and_checks_its_arguments_as_sentence_transformers(
    minilm_runtime: Any, cpu_pool: MultiProcessPool, reranker: Any
) -> None:
    """Stats stayed the previous in-process call's (truncation went unseen); chunk_size=0 was no ValueError; another
    model type's pool failed on a missing attribute."""
    minilm_runtime.encode(["a"])
    minilm_runtime.encode(["word " * 400, "short one", "x " * 300], pool=cpu_pool, chunk_size=1)
    stats = minilm_runtime.last_encode_stats
    assert (stats.texts, stats.truncated, stats.batches) == (3, 2, 3)
    positional = minilm_runtime.encode_multi_process(TEXTS[:4], cpu_pool, None, None, 16, 2)  # ST's order
    np.testing.assert_allclose(positional, minilm_runtime.encode(TEXTS[:4]), atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        minilm_runtime.encode(TEXTS, pool=cpu_pool, chunk_size=0)
    with pytest.raises(InputError, match="pool= takes a pool from this CrossEncoder's start_multi_process_pool"):
        reranker.predict([("q", "d")], pool=cpu_pool)


def test_threads_sharing_a_pool_each_read_their_own_calls_stats(
    minilm_runtime: Any, cpu_pool: MultiProcessPool
) -> None:
    """The pool kept one last_stats: a thread whose call ended read the stats of a call another thread ran before
    its read (a few of every 150 calls of two threads)."""
    import threading

    first_done, second_done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        minilm_runtime.encode(["hello world"], pool=cpu_pool)
        first_done.set()
        second_done.wait(timeout=120)  # the other thread's call runs between this call's end and its read
        seen["first"] = cpu_pool.last_stats.texts  # what the model copies in as this call's stats

    def second() -> None:
        first_done.wait(timeout=120)
        minilm_runtime.encode(["hello world"] * 7, pool=cpu_pool)
        seen["second"] = cpu_pool.last_stats.texts
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"first": 1, "second": 7}


def test_a_worker_killed_while_sending_its_result_ends_the_call_with_an_error(minilm_artifact_session: Path) -> None:
    """A worker SIGKILLed halfway through a large result left the caller waiting forever for the rest of it."""
    model = SentenceTransformer(minilm_artifact_session)
    pool = model.start_multi_process_pool(["cpu"], intra_op_threads=1)
    pid = pool.processes[0].pid
    assert pid is not None
    # ~15 MB of token vectors: many pipe buffers' worth, so the kill lands within the message
    texts = ["word " * 300] * 40
    caller, outcome = _in_background(lambda: model.encode(texts, pool=pool, output_value="token_embeddings"))
    deadline = time.monotonic() + 120
    while not (sending := pool._readers[0].poll(0.001)) and time.monotonic() < deadline:
        pass
    os.kill(pid, signal.SIGKILL)
    assert sending, "the result never started arriving: the kill was no mid-message death"
    caller.join(60)
    assert not caller.is_alive(), "the call still waits for the dead worker's message"
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderError) and "worker died" in str(outcome[0])
    assert _stopped(pool)


def test_stopping_a_pool_lets_the_running_call_finish_and_tells_later_calls(minilm_artifact_session: Path) -> None:
    """A stop during a call gave "worker died" (exit code 0) or "Queue ... is closed"."""
    model = SentenceTransformer(minilm_artifact_session)
    pool = model.start_multi_process_pool(["cpu", "cpu"], intra_op_threads=1)
    caller, results = _in_background(lambda: model.encode(TEXTS * 4, pool=pool, chunk_size=8))
    _wait_until_the_call_holds(pool)
    assert caller.is_alive(), "the call ended before the stop: nothing shows the stop waited for it"
    model.stop_multi_process_pool(pool)
    caller.join(60)
    assert len(results) == 1 and results[0].shape == (len(TEXTS) * 4, 384)
    assert _stopped(pool)
    with pytest.raises(ProviderError, match="this multi-process pool was stopped; start a new one"):
        model.encode(TEXTS, pool=pool)


def test_a_stopped_pool_its_caller_keeps_holds_no_descriptor_or_semaphore(minilm_artifact_session: Path) -> None:
    """The stop docs say it frees the pipes and queue; a stopped pool still referenced (an attribute, a registry)
    held 2 descriptors per worker and its queue's three /dev/shm semaphores: each kept pool added to them."""
    import gc
    import os

    model = SentenceTransformer(minilm_artifact_session)
    model.stop_multi_process_pool(model.start_multi_process_pool(["cpu"], intra_op_threads=1))  # the tracker, once
    gc.collect()  # descriptors earlier tests' garbage still holds: closed now, not during the count
    before = len(os.listdir("/proc/self/fd"))
    kept = []
    for _ in range(3):
        pool = model.start_multi_process_pool(["cpu"], intra_op_threads=1)
        model.encode(TEXTS[:10], pool=pool)
        model.stop_multi_process_pool(pool)
        kept.append(pool)
    gc.collect()  # the kept pools are referenced: what this frees is not theirs
    assert len(os.listdir("/proc/self/fd")) <= before  # each kept pool held 2 more
    assert all(pool._tasks is None for pool in kept)  # the queue (and its semaphores) let go


def test_an_abrupt_stop_from_another_thread_ends_the_running_call_with_a_provider_error(
    minilm_artifact_session: Path,
) -> None:
    """close(graceful=False) closed the queue and pipes under the call: a raw 'Queue is closed' ValueError (read as
    bad input) or 'handle is closed' OSError."""
    model = SentenceTransformer(minilm_artifact_session)
    pool = model.start_multi_process_pool(["cpu", "cpu"], intra_op_threads=1)
    caller, outcome = _in_background(lambda: model.encode(TEXTS * 8, pool=pool, chunk_size=1))
    _wait_until_the_call_holds(pool)
    pool.close(graceful=False)
    caller.join(60)
    assert not caller.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], ProviderError), repr(outcome[0])
    assert "stopped during the call" in str(outcome[0]) and _stopped(pool)


def test_dead_worker_is_reported_and_the_pool_shuts_down(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    with model.start_multi_process_pool(["cpu", "cpu"], intra_op_threads=1) as pool:
        pid = pool.processes[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ProviderError, match="worker died"):
            model.encode(TEXTS * 20, pool=pool)
        assert _stopped(pool)


def test_a_script_without_a_main_guard_is_told_why_its_workers_died(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Spawned workers import the script again and die starting their own pool; the error said only 'worker died'."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from fastembed_rt import SentenceTransformer\n"
        f"model = SentenceTransformer({str(minilm_artifact_session)!r})\n"
        "pool = model.start_multi_process_pool(['cpu', 'cpu'])\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("fastembed_rt.errors.ProviderError")]
    assert error.startswith("fastembed_rt.errors.ProviderError: multi-process pool worker died: "), error
    assert 'without `if __name__ == "__main__":` around the code that starts the pool' in error
    # the workers die before they make the pool's queue: no semaphore is left for the resource tracker to report
    assert "leaked semaphore" not in done.stderr, done.stderr


def test_worker_that_cannot_load_fails_the_start_and_leaves_no_process(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    before = set(multiprocessing.active_children())
    with pytest.raises(ProviderError, match="OpenVINO device 'NPU' is not available"):
        model.start_multi_process_pool(["cpu", "openvino:NPU"], intra_op_threads=1)
    assert set(multiprocessing.active_children()) <= before


# -- CrossEncoder: predict and rank over a pool -------------------------------------------------------------
PAIRS = [(f"query {i % 5}", text) for i, text in enumerate(TEXTS[:60])]


def test_pool_encode_uses_the_models_prompts_as_they_are_at_the_call(
    minilm_runtime: Any, cpu_pool: MultiProcessPool
) -> None:
    """A prompt added after the pool started was refused by its workers ("not in this model's prompts"), a default
    prompt set since was not applied; sentence-transformers' pool takes both."""
    before = (dict(minilm_runtime.prompts), minilm_runtime.default_prompt_name)
    minilm_runtime.prompts = {**minilm_runtime.prompts, "q": "query: "}
    try:
        np.testing.assert_allclose(
            minilm_runtime.encode(TEXTS[:6], pool=cpu_pool, prompt_name="q"),
            minilm_runtime.encode(TEXTS[:6], prompt_name="q"),
            atol=1e-5,
        )
        minilm_runtime.default_prompt_name = "q"
        prompted = minilm_runtime.encode(TEXTS[:6])
        np.testing.assert_allclose(minilm_runtime.encode(TEXTS[:6], pool=cpu_pool), prompted, atol=1e-5)
        minilm_runtime.default_prompt_name = None
        plain = minilm_runtime.encode(TEXTS[:6], pool=cpu_pool)
        assert np.abs(plain - prompted).max() > 1e-3
        np.testing.assert_allclose(plain, minilm_runtime.encode(TEXTS[:6]), atol=1e-5)
    finally:
        minilm_runtime.prompts, minilm_runtime.default_prompt_name = before


@pytest.fixture(scope="module")
def reranker(tiny_reranker_artifact: Path) -> Iterator[Any]:
    from fastembed_rt import CrossEncoder

    model = CrossEncoder(tiny_reranker_artifact)
    yield model
    model.close()


def test_cross_encoder_pool_scores_equal_single_process_scores_in_order(reranker: Any) -> None:
    with reranker.start_multi_process_pool(["cpu", "cpu"]) as pool:
        assert pool.providers == ["cpu", "cpu"]
        np.testing.assert_allclose(reranker.predict(PAIRS, pool=pool, chunk_size=7), reranker.predict(PAIRS), atol=1e-6)
        logits = reranker.predict(PAIRS, pool=pool, activation_fn="identity")
        np.testing.assert_allclose(logits, reranker.predict(PAIRS, activation_fn="identity"), atol=1e-6)
        one = reranker.predict(PAIRS[4], pool=pool)
        assert np.ndim(one) == 0 and abs(float(one) - float(reranker.predict(PAIRS[4]))) < 1e-6
        # texts scored alone, in chunks of only texts: a worker read ["a", "b"] as one pair before
        mixed = [text if i % 3 else pair for i, (pair, text) in enumerate(zip(PAIRS, TEXTS))]
        np.testing.assert_allclose(reranker.predict(mixed, pool=pool, chunk_size=2), reranker.predict(mixed), atol=1e-6)
        documents = [text for _, text in PAIRS[:20]]
        assert [r["corpus_id"] for r in reranker.rank("query 1", documents, pool=pool)] == [
            r["corpus_id"] for r in reranker.rank("query 1", documents)
        ]
        with pytest.raises(InputError, match="cannot be sent to the pool's worker processes"):
            reranker.predict(PAIRS, pool=pool, activation_fn=lambda x: x)
        assert not _stopped(pool), "a call refused before dispatch leaves the pool running"
        # a model whose own activation cannot be sent still runs calls that name theirs (the settings each call
        # sends its workers made them refused)
        before = reranker.activation_fn
        reranker.activation_fn = lambda x: x
        try:
            named = reranker.predict(PAIRS, pool=pool, activation_fn="sigmoid")
            np.testing.assert_allclose(named, reranker.predict(PAIRS, activation_fn="sigmoid"), atol=1e-6)
        finally:
            reranker.activation_fn = before
    assert _stopped(pool)


def test_cross_encoder_list_of_devices_runs_the_call_on_a_pool(reranker: Any) -> None:
    np.testing.assert_allclose(reranker.predict(PAIRS, device=["cpu", "cpu"]), reranker.predict(PAIRS), atol=1e-6)


# -- SparseEncoder: encode over a pool -----------------------------------------------------------------------
def test_sparse_encoder_pool_rows_equal_single_process_rows_in_every_format(tiny_splade_artifact: Path) -> None:
    from fastembed_rt import SparseEncoder
    from fastembed_rt.sparse import SparseEmbeddings

    splade = SparseEncoder(tiny_splade_artifact, max_active_dims=16)
    texts = TEXTS[:40]
    with splade.start_multi_process_pool(["cpu", "cpu"]) as pool:
        dense = splade.encode(texts, pool=pool, chunk_size=6, convert_to_sparse_tensor=False)
        np.testing.assert_allclose(dense, splade.encode(texts, convert_to_sparse_tensor=False), atol=1e-6)
        assert (np.count_nonzero(dense, axis=1) <= 16).all(), "the parent's max_active_dims reaches the workers"
        arrays = splade.encode(texts, pool=pool, sparse_format="arrays")
        assert isinstance(arrays, SparseEmbeddings) and arrays.shape == dense.shape
        np.testing.assert_allclose(arrays.toarray(), dense, atol=1e-6)
        scipy_rows = splade.encode(texts, pool=pool, sparse_format="scipy")
        np.testing.assert_allclose(scipy_rows.toarray(), dense, atol=1e-6)
        one = splade.encode(texts[5], pool=pool, sparse_format="arrays")
        assert one.shape == (dense.shape[1],)
        np.testing.assert_allclose(one.toarray(), dense[5], atol=1e-6)
        assert len(splade.encode(texts[:3], pool=pool, convert_to_tensor=False)) == 3
        assert splade.encode([], pool=pool, sparse_format="arrays").shape == (0, dense.shape[1])
    listed = splade.encode(texts, device=["cpu", "cpu"], convert_to_sparse_tensor=False)
    np.testing.assert_allclose(listed, dense, atol=1e-6)
    with splade.start_multi_process_pool(["cpu"]) as pool:  # started at 16, then set to None: every dimension
        splade.max_active_dims = None
        everything = splade.encode(texts[:4], pool=pool, convert_to_sparse_tensor=False)
        np.testing.assert_allclose(everything, splade.encode(texts[:4], convert_to_sparse_tensor=False), atol=1e-6)
        assert (np.count_nonzero(everything, axis=1) > 16).any()


# -- MultiVectorEncoder: token vectors over a pool -------------------------------------------------------------
def test_multi_vector_pool_vectors_equal_single_process_vectors_in_order(tiny_multi_vector_artifact: Path) -> None:
    from fastembed_rt import MultiVectorEncoder

    colbert = MultiVectorEncoder(tiny_multi_vector_artifact)
    texts = TEXTS[:24]
    with colbert.start_multi_process_pool(["cpu", "cpu"]) as pool:
        for call in ("encode_query", "encode_document"):
            pooled = getattr(colbert, call)(texts, pool=pool, chunk_size=5)
            local = getattr(colbert, call)(texts)
            assert [v.shape for v in pooled] == [v.shape for v in local], call
            for ours, ref in zip(pooled, local):
                np.testing.assert_allclose(ours, ref, atol=1e-6)
        one = colbert.encode_query(texts[3], pool=pool)
        np.testing.assert_allclose(one, colbert.encode_query(texts[3]), atol=1e-6)
        codes = colbert.encode_document(texts[:4], pool=pool, precision="int8")
        assert [c.dtype for c in codes] == [np.int8] * 4


def test_a_pool_starts_inside_a_joblib_loky_worker(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """A loky worker's global start method is 'loky', which the pool's spawned workers could not find: each died at
    start-up and the error blamed a missing main guard."""
    pytest.importorskip("joblib")
    script = tmp_path / "nested.py"
    script.write_text(
        "from joblib import Parallel, delayed\n"
        "def job(texts):\n"
        "    from fastembed_rt import SentenceTransformer\n"
        f"    model = SentenceTransformer({str(minilm_artifact_session)!r}, provider='cpu')\n"
        "    return model.encode(texts, device=['cpu', 'cpu']).shape\n"
        "if __name__ == '__main__':\n"
        "    print(Parallel(n_jobs=2, backend='loky')(delayed(job)(['a b c'] * 40) for _ in range(2)))\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[(40, 384), (40, 384)]"


def test_a_pooled_call_shows_its_progress_over_chunks(
    minilm_runtime: Any, cpu_pool: MultiProcessPool, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show_progress_bar=True`` was dropped on the way to the pool (sentence-transformers shows its chunks)."""
    texts = [f"text number {i}" for i in range(12)]
    minilm_runtime.encode(texts, pool=cpu_pool, chunk_size=4, show_progress_bar=True)
    assert "Chunks" in capsys.readouterr().err
    minilm_runtime.encode(texts, pool=cpu_pool, chunk_size=4, show_progress_bar=False)
    assert "Chunks" not in capsys.readouterr().err
