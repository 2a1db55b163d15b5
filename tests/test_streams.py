"""Streams: the ``cpu`` engine runs the batches of a call several at once, each on its share of the threads.

What must hold whatever the speed: the same vectors in the same order as one batch at a time, the streams'
session and threads only for calls of several batches, the activation bound shared between the batches
that run at once, a clear error for a bad setting, and nothing left running after a call or a close.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forking import exit_code_within

from fastembed_rt import SentenceTransformer
from fastembed_rt.batching import ActivationCost
from fastembed_rt.errors import ProviderError
from fastembed_rt.pipeline import MIN_BATCHES_PER_STREAM
from fastembed_rt.providers import ProviderOptions
from fastembed_rt.providers import onnxruntime as ort_engine
from fastembed_rt.providers.threads import available_cpus, default_streams

# Lengths from 1 to ~60 words, shuffled, so batches of 4 differ in length and finish out of order.
_TEXTS = [" ".join(["word"] * (1 + (i * 37) % 60)) + f" number {i}" for i in range(41)]


def _model(artifact: Path, streams: int, **kwargs: Any) -> SentenceTransformer:
    return SentenceTransformer(
        artifact, provider="cpu", intra_op_threads=2, provider_options=ProviderOptions(streams=streams), **kwargs
    )


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fastembed-rt-stream")]


@pytest.mark.parametrize(
    ("threads", "streams"),
    [(1, 1), (2, 2), (3, 3), (4, 4), (5, 1), (6, 3), (8, 4), (9, 3), (16, 4), (17, 1)],
)
def test_default_streams_split_the_threads_evenly_and_leave_none_idle(threads: int, streams: int) -> None:
    assert default_streams(threads) == streams
    assert threads % streams == 0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2"])
def test_streams_that_are_not_a_positive_whole_number_are_refused(bad: Any) -> None:
    with pytest.raises(ProviderError, match="streams must be a whole number >= 1"):
        ProviderOptions(streams=bad)


def test_a_call_of_several_batches_on_two_streams_gives_the_vectors_of_one_batch_at_a_time_in_order(
    minilm_artifact_session: Path,
) -> None:
    one, two = _model(minilm_artifact_session, 1), _model(minilm_artifact_session, 2)
    expected = one.encode(_TEXTS, batch_size=4)
    got = two.encode(_TEXTS, batch_size=4)
    assert two.last_encode_stats.batches == math.ceil(len(_TEXTS) / 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # each text alone (one batch: the first session, every thread) is the same vector as inside the streams
    alone = np.stack([two.encode(t) for t in _TEXTS[:5]])
    np.testing.assert_allclose(alone, got[:5], rtol=0, atol=1e-6)
    engine = two._pipeline.provider
    assert (engine.streams, engine.stream_threads) == (2, 1)
    assert engine._stream_session.get_session_options().intra_op_num_threads == 1
    assert engine._session.get_session_options().intra_op_num_threads == 2
    tokens_one = one.encode(_TEXTS, batch_size=4, output_value="token_embeddings")
    tokens_two = two.encode(_TEXTS, batch_size=4, output_value="token_embeddings")
    assert [t.shape for t in tokens_two] == [t.shape for t in tokens_one]
    assert max(float(np.abs(a - b).max()) for a, b in zip(tokens_one, tokens_two)) < 1e-5
    one.close()
    two.close()


def test_the_streams_session_and_threads_start_only_for_a_call_of_two_batches_per_stream(
    minilm_artifact_session: Path,
) -> None:
    before = len(_stream_threads())
    model = _model(minilm_artifact_session, 2)
    engine = model._pipeline.provider
    model.encode([f"texts of one length, number {i}" for i in range(8)], batch_size=32)
    assert model.last_encode_stats.batches == 1
    model.encode([f"texts of one length, number {i}" for i in range(12)], batch_size=4)
    assert model.last_encode_stats.batches == 3 < MIN_BATCHES_PER_STREAM * 2, "too few batches to stream"
    assert engine._stream_session is None and len(_stream_threads()) == before
    model.encode(_TEXTS, batch_size=4)
    assert engine._stream_session is not None
    assert len(_stream_threads()) == before + 2
    model.close()
    assert len(_stream_threads()) == before, "close() stops the streams' threads"
    with pytest.raises(ProviderError, match="closed"):
        model.encode(_TEXTS, batch_size=4)


def test_batches_running_at_once_share_the_activation_bound(minilm_artifact_session: Path) -> None:
    long = [" ".join(["token"] * 400) + f" {i}" for i in range(24)]  # each cut at max_seq_length
    one, two = _model(minilm_artifact_session, 1), _model(minilm_artifact_session, 2)
    length = one.max_seq_length
    cost = ActivationCost.of(one.manifest.source["backbone"])
    assert cost is not None
    rows = {n: max(1, one.max_batch_bytes // n // cost.batch_bytes(1, length)) for n in (1, 2)}
    # the bound must cut these batches, into enough of them to be streamed, for the test to mean anything
    assert rows[2] < rows[1] and math.ceil(len(long) / rows[1]) >= MIN_BATCHES_PER_STREAM * 2
    np.testing.assert_allclose(two.encode(long, batch_size=32), one.encode(long, batch_size=32), atol=1e-6)
    assert one.last_encode_stats.batches == math.ceil(len(long) / rows[1])
    assert two.last_encode_stats.batches == math.ceil(len(long) / rows[2])
    one.close()
    two.close()


def test_a_caller_that_stops_early_leaves_no_batch_running(minilm_artifact_session: Path) -> None:
    model = _model(minilm_artifact_session, 2)
    pipeline = model._pipeline
    prepared = pipeline.prepare(_TEXTS)
    run = pipeline.run(prepared, batch_size=2, outputs=["sentence_embedding"])
    rows, result, _ = next(run)
    assert len(rows) == len(result["sentence_embedding"]) <= 2
    run.close()  # the generator's cleanup cancels what has not started and waits for what has
    pool = model._pipeline.provider._stream_pool
    assert pool is not None and pool._work_queue.empty()
    assert model.encode(_TEXTS, batch_size=4).shape == (len(_TEXTS), 384)
    model.close()


def test_closing_a_model_while_another_thread_runs_a_call_of_many_batches_fails_that_call_clearly(
    minilm_artifact_session: Path,
) -> None:
    """A service closing its model (shutdown, a model swap, ``to()``) while a request ran a call of many batches: the
    call waited for ever on the batches the close had cancelled, or opened a new stream session and executor on
    the closed engine. The streams are held busy so that the call's batches are queued when the close comes."""
    model = _model(minilm_artifact_session, 2)
    model.encode(_TEXTS, batch_size=2)  # the streams start
    engine = model._pipeline.provider
    pool, gate = engine._stream_pool, threading.Event()
    busy = [pool.submit(gate.wait) for _ in range(engine.streams)]
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            model.encode(_TEXTS, batch_size=2)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 60
    while pool._work_queue.qsize() < 2 and time.monotonic() < deadline:  # its batches wait for a stream
        time.sleep(0.01)
    threading.Timer(0.5, gate.set).start()  # the streams' current work ends while the close waits for it
    model.close()
    caller.join(timeout=60)
    assert not caller.is_alive(), "the call still waits for the batches the close cancelled"
    assert all(b.done() for b in busy) and len(outcome) == 1
    assert isinstance(outcome[0], ProviderError) and "this model was closed" in str(outcome[0])
    assert engine._stream_pool is None and engine._stream_session is None
    assert not any(thread.is_alive() for thread in pool._threads)  # this engine's (other tests' models keep theirs)


def test_each_thread_reads_the_statistics_of_its_own_last_call(minilm_artifact_session: Path) -> None:
    """``last_encode_stats`` was the model's last call, whichever thread made it."""
    model = _model(minilm_artifact_session, 2)
    model.encode(["short", "word " * 400])
    other = threading.Thread(target=lambda: model.encode(_TEXTS))
    other.start()
    other.join()
    stats = model.last_encode_stats
    assert (stats.texts, stats.truncated) == (2, 1)
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(model.last_encode_stats.texts))
    reader.start()
    reader.join()
    assert seen == [0]  # a thread that made no call reads empty statistics
    model.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_process_forked_after_a_streamed_call_runs_its_own_calls_of_many_batches(
    minilm_artifact_session: Path,
) -> None:
    """Only the forking thread exists in a child: the parent's streams would take the child's batches and never
    run them (a worker of multiprocessing's fork, gunicorn --preload or Celery waited forever)."""
    model = _model(minilm_artifact_session, 2)
    expected = model.encode(_TEXTS, batch_size=4)  # the parent's streams are running now
    assert model._pipeline.provider._stream_pool is not None
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a process with threads
        pid = os.fork()
    if pid == 0:  # the child: its own streamed call, its vectors to the parent
        code = 1
        try:
            vectors = model.encode(_TEXTS, batch_size=4)
            with os.fdopen(write, "wb") as sink:
                sink.write(vectors.astype(np.float32).tobytes())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    code = exit_code_within(pid, 60)
    with os.fdopen(read, "rb") as source:
        got = np.frombuffer(source.read(), np.float32)
    assert code is not None, "the forked child's call of many batches did not finish in 60 s"
    assert code == 0
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=0, atol=1e-6)
    assert model.encode(_TEXTS, batch_size=4).shape == expected.shape, "the parent's streams still run"
    model.close()


def test_big_graphs_and_one_thread_run_one_batch_at_a_time_by_default(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_thread = SentenceTransformer(minilm_artifact_session, provider="cpu", intra_op_threads=1)
    assert one_thread._pipeline.provider.streams == 1
    default = SentenceTransformer(minilm_artifact_session, provider="cpu")
    assert default._pipeline.provider.streams == default_streams(available_cpus())
    monkeypatch.setattr(ort_engine, "STREAM_MAX_GRAPH_BYTES", 1 << 20)  # this graph now counts as big
    big = SentenceTransformer(minilm_artifact_session, provider="cpu", intra_op_threads=2)
    assert big._pipeline.provider.streams == 1
    big.encode(_TEXTS, batch_size=4)
    assert big._pipeline.provider._stream_session is None
    for model in (one_thread, default, big):
        model.close()


@pytest.mark.parametrize("cache", [False, True])
def test_the_streams_run_the_loaded_weights_after_the_artifact_is_replaced_or_removed(
    minilm_artifact_session: Path, tmp_path: Path, cache: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The streams' session opened the path as it was at the first long call: after `export --overwrite` that call
    ran the new weights (the same text alone and in a batch at cosine 0.02), after a removal it failed."""
    import shutil

    artifact = tmp_path / "artifact"
    shutil.copytree(minilm_artifact_session, artifact)
    options = ProviderOptions(streams=2, cache=cache, cache_dir=tmp_path / "cache")
    model = SentenceTransformer(artifact, provider="cpu", variant="fp32", intra_op_threads=2, provider_options=options)
    alone = np.stack([model.encode(text) for text in _TEXTS[:3]])
    shutil.rmtree(artifact)  # as a re-export renames the old folder away, or a hub cache prune
    if cache:
        shutil.rmtree(tmp_path / "cache")  # and another process's clean-up takes the cached copy
    with caplog.at_level("WARNING", logger="fastembed_rt"):
        batched = model.encode(_TEXTS, batch_size=4)
    assert model.last_encode_stats.batches >= 2 * MIN_BATCHES_PER_STREAM  # the call ran on the streams
    np.testing.assert_allclose(batched[:3], alone, atol=1e-5)
    assert "streams run on the loaded session" in caplog.text
    model.close()
