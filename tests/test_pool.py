"""Multi-process encoding: same output as one process, in order; errors propagate and stop the pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import InputError, ProviderError, SentenceTransformer
from fastembed_rt.pool import MultiProcessPool

TEXTS = [f"Sentence {i} {'is a little longer than the others ' * (i % 7)}about topic {i % 13}." for i in range(150)]


def _stopped(pool: MultiProcessPool) -> bool:
    alive = {p.pid for p in multiprocessing.active_children()}
    return not any(p.is_alive() or p.pid in alive for p in pool.processes)


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


def test_pool_workers_split_the_cpus(cpu_pool: MultiProcessPool) -> None:
    assert cpu_pool.devices == ("cpu", "cpu") and cpu_pool.providers == ["cpu", "cpu"]


def test_worker_error_is_raised_and_the_pool_shuts_down(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    pool = model.start_multi_process_pool(["cpu"], intra_op_threads=1)
    with pytest.raises(InputError, match=r"truncate_dim must be an int in 1\.\.384"):
        model.encode(TEXTS, pool=pool, truncate_dim=10_000)
    assert _stopped(pool)
    with pytest.raises(ProviderError, match="pool was stopped"):
        model.encode(TEXTS, pool=pool)


def test_dead_worker_is_reported_and_the_pool_shuts_down(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    with model.start_multi_process_pool(["cpu", "cpu"], intra_op_threads=1) as pool:
        pid = pool.processes[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ProviderError, match="worker died"):
            model.encode(TEXTS * 20, pool=pool)
        assert _stopped(pool)


def test_worker_that_cannot_load_fails_the_start_and_leaves_no_process(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    before = set(multiprocessing.active_children())
    with pytest.raises(ProviderError, match="OpenVINO device 'NPU' is not available"):
        model.start_multi_process_pool(["cpu", "openvino:NPU"], intra_op_threads=1)
    assert set(multiprocessing.active_children()) <= before
