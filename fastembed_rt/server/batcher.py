"""Cross-request batching: one worker thread per model turns many small requests into few graph runs.

The event loop only enqueues a ``Job`` and awaits its future. The worker takes every job queued
since its last run, groups those whose ``Operation.key`` is equal (same model call options),
tokenizes a group's inputs in one call, refuses the jobs that hold an over-long input they did not
allow to truncate, runs the rest together (the library sorts the rows by token length and cuts them
by the padded-token budget), and resolves each job's future with exactly its own rows, in its order::

    queue: [job A: 1 text] [job B: 3 texts] [job C: 1 pair] ...
             └──── same key ────┘
    prepare(A + B texts) ─► truncation policy per job ─► run(rows of A, B) ─► rows 0 → A, rows 1-3 → B

A job whose client went away before its turn is dropped, not computed. A tokenizing error in a
group of several jobs is retried one job at a time, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastembed_rt.errors import FastEmbedError, InputError
from fastembed_rt.pipeline import Prepared
from fastembed_rt.server.metrics import Metrics
from fastembed_rt.server.requests import RequestError

__all__ = ["Job", "JobResult", "ModelWorker", "Operation", "Timings"]

logger = logging.getLogger("fastembed_rt.server")

_RATE_SMOOTHING = 0.3  # weight of the newest run in the items/s estimate behind Retry-After


@dataclass(frozen=True)
class Operation:
    """What to do with a job's inputs; jobs with equal ``key`` are tokenized and run together.

    ``prepare`` tokenizes a list of inputs, ``run`` computes a result over prepared rows,
    ``take(result, rows)`` is one job's part of that result, ``count_tokens`` measures one input
    without truncation (for the error that names an over-long input).
    """

    key: Hashable
    prepare: Callable[[list[Any]], Prepared]
    run: Callable[[Prepared], Any]
    take: Callable[[Any, np.ndarray], Any]
    count_tokens: Callable[[Any], int]


@dataclass(frozen=True)
class Timings:
    """Seconds a job spent waiting for the worker, being tokenized and in the graph run it shared."""

    queue_s: float
    tokenize_s: float
    inference_s: float


@dataclass(frozen=True)
class JobResult:
    """One job's rows (``Operation.take``), the tokens they held and how many inputs were truncated."""

    rows: Any
    tokens: int
    truncated: int
    timings: Timings


@dataclass(eq=False)
class Job:
    """A request's inputs waiting for a worker; ``future`` is resolved on the event loop that made it."""

    operation: Operation
    items: list[Any]
    truncate: bool  # False: an input over the model's limit fails the job (422) instead of being truncated
    future: asyncio.Future[JobResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


def _settle(future: asyncio.Future[JobResult], outcome: JobResult | BaseException) -> None:
    if future.done():  # the handler gave up on it (client gone)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class ModelWorker:
    """The queue and worker thread of one served model.

    Args:
        name: the served model name (metrics label, log lines).
        max_seq_length: the model's token limit, named in over-long input errors.
        metrics: where queue depth, batch sizes, timings, truncated and dropped inputs are counted.
        batch_wait_s: after waking up with fewer than ``wait_for_items`` inputs queued, wait up to
            this long for more before running (0: run at once).
        wait_for_items: the number of queued inputs that ends a wait early (a full graph batch).
    """

    def __init__(
        self, name: str, max_seq_length: int, metrics: Metrics, *, batch_wait_s: float = 0.0, wait_for_items: int = 32
    ) -> None:
        self.name = name
        self.max_seq_length = max_seq_length
        self._metrics = metrics
        self._batch_wait_s = batch_wait_s
        self._wait_for_items = wait_for_items
        self._queue: deque[Job] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self.items_per_second = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"fastembed-rt-{name}", daemon=True)
        self._thread.start()

    @property
    def queued_items(self) -> int:
        return self._queued_items

    def submit(self, job: Job) -> None:
        """Queue ``job`` (from the event loop thread); its future resolves when its rows are ready."""
        with self._cond:
            if self._stopping:
                raise RequestError(503, f"model {self.name!r} is shutting down", "Unhealthy")
            self._queue.append(job)
            self._queued_items += len(job.items)
            self._metrics.queue_inputs.labels(self.name).set(self._queued_items)
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread (wait at most ``timeout`` seconds)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the worker thread ------------------------------------------------------------------------
    def _take_jobs(self) -> list[Job] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            if self._batch_wait_s > 0 and self._queued_items < self._wait_for_items and not self._stopping:
                deadline = time.monotonic() + self._batch_wait_s
                while self._queued_items < self._wait_for_items and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            jobs = list(self._queue)
            self._queue.clear()
            self._queued_items = 0
            self._metrics.queue_inputs.labels(self.name).set(0)
            return jobs

    def _loop(self) -> None:
        while (jobs := self._take_jobs()) is not None:
            groups: dict[Hashable, list[Job]] = {}
            for job in jobs:
                if job.cancelled:
                    self._metrics.dropped_inputs.labels(self.name).inc(len(job.items))
                    continue
                groups.setdefault(job.operation.key, []).append(job)
            for group in groups.values():
                try:
                    self._run_group(group)
                except BaseException as exc:  # never let the worker die: fail the group, keep serving
                    logger.exception("model %s: a batch failed", self.name)
                    for job in group:
                        job.loop.call_soon_threadsafe(_settle, job.future, _backend_error(exc))

    def _run_group(self, jobs: list[Job]) -> None:
        operation = jobs[0].operation
        started = time.perf_counter()
        items = [item for job in jobs for item in job.items]
        try:
            prepared = operation.prepare(items)
        except (InputError, RequestError) as exc:
            if len(jobs) > 1:  # find the request at fault; its neighbours go on
                for job in jobs:
                    self._run_group([job])
                return
            self._fail(jobs[0], exc if isinstance(exc, RequestError) else RequestError(422, str(exc), "Tokenizer"))
            return
        tokenized = time.perf_counter()
        accepted: list[tuple[Job, int, int]] = []
        keep: list[int] = []
        start = 0
        cut = prepared.truncated
        for job in jobs:
            end = start + len(job.items)
            truncated = np.flatnonzero(cut[start:end])
            if truncated.size and not job.truncate:
                position = int(truncated[0])
                tokens = operation.count_tokens(job.items[position])
                self._fail(
                    job,
                    RequestError(
                        422,
                        f"input {position} is {tokens} tokens long, more than the model's limit of "
                        f"{self.max_seq_length}; shorten it or send truncate=true",
                    ),
                )
            else:
                accepted.append((job, start, end))
                keep.extend(range(start, end))
            start = end
        if not accepted:
            return
        rows = prepared if len(keep) == len(prepared) else prepared.select(keep)
        result = operation.run(rows)
        done = time.perf_counter()
        input_tokens, truncated = rows.input_tokens, rows.truncated
        self._count(len(rows), int(rows.lengths.sum()), int(truncated.sum()), done - tokenized)
        m = self._metrics
        m.tokenization_duration.labels(self.name).observe(tokenized - started)
        m.inference_duration.labels(self.name).observe(done - tokenized)
        offset = 0
        queue = m.queue_duration.labels(self.name)
        for job, start, end in accepted:
            queue.observe(started - job.enqueued)
            own = np.arange(offset, offset + end - start)
            offset += end - start
            outcome = JobResult(
                operation.take(result, own),
                int(input_tokens[own].sum()),
                int(truncated[own].sum()),
                Timings(started - job.enqueued, tokenized - started, done - tokenized),
            )
            job.loop.call_soon_threadsafe(_settle, job.future, outcome)

    def _count(self, inputs: int, tokens: int, truncated: int, seconds: float) -> None:
        m, name = self._metrics, self.name
        m.batch_inputs.labels(name).observe(inputs)
        m.batch_tokens.labels(name).observe(tokens)
        m.truncated_inputs.labels(name).inc(truncated)
        if seconds > 0:
            rate = inputs / seconds
            self.items_per_second = (
                rate
                if not self.items_per_second
                else (_RATE_SMOOTHING * rate + (1 - _RATE_SMOOTHING) * self.items_per_second)
            )

    def _fail(self, job: Job, error: RequestError) -> None:
        job.loop.call_soon_threadsafe(_settle, job.future, error)


def _backend_error(exc: BaseException) -> RequestError:
    """An unexpected failure of a graph run, as the 500 every job of that run gets."""
    kind = "" if isinstance(exc, FastEmbedError) else f"{type(exc).__name__}: "
    return RequestError(500, f"inference failed: {kind}{exc}", "Backend")
