"""Cross-request batching: one worker thread per model turns many small requests into few graph runs.

The event loop only enqueues a ``Job`` and awaits its future. The worker takes every job queued
since its last run, groups those whose ``Operation.key`` is equal (same model call options),
tokenizes a group's inputs in one call, refuses the jobs that hold an over-long input they did not
allow to truncate, runs the rest together (the library sorts the rows by token length and cuts them
by the padded-token budget) at most ``inputs_per_run`` inputs at a time, and resolves each job's
future with exactly its own rows, in its order, once its last input has run::

    queue: [job A: 1 text] [job B: 3 texts] [job C: 1 pair] ...
             └──── same key ────┘
    prepare(A + B texts) ─► truncation policy per job ─► run(rows of A, B) ─► rows 0 → A, rows 1-3 → B

A job whose client went away is dropped, not computed: before its turn, or between two runs of a
group. A failure to prepare a group of several jobs is retried one job at a time, so one bad request
never fails its neighbours.

A request of many inputs takes several model calls (``inputs_per_run`` each). Small jobs queued while it runs
(together at most one call's inputs) do not wait for its end: between two of its calls (and between two groups)
the worker runs them, whole, then goes on with it, so a one-text query waits for one model call of a bulk request
rather than all of them; bulk jobs queued meanwhile wait for it, in their order. Within a group
the jobs run smallest first, so the small ones taken together with a bulk request are in its first call.
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
from fastembed_rt.server.requests import RequestError, TooLongError

__all__ = ["Job", "JobResult", "ModelWorker", "Operation", "Timings"]

logger = logging.getLogger("fastembed_rt.server")

_RATE_SMOOTHING = 0.3  # weight of the newest run in the items/s estimate behind Retry-After


@dataclass(frozen=True)
class Operation:
    """What to do with a job's inputs; jobs with equal ``key`` are tokenized and run together.

    ``prepare`` tokenizes a list of inputs, ``run`` computes a result over prepared rows,
    ``take(result, rows)`` is one job's part of that result (an array with one row per input, or a
    list; a job run in several parts gets them joined), ``count_tokens`` measures one input
    without truncation (for the error that names an over-long input).
    """

    key: Hashable
    prepare: Callable[[list[Any]], Prepared]
    run: Callable[[Prepared], Any]
    take: Callable[[Any, np.ndarray], Any]
    count_tokens: Callable[[Any], int]
    token_limit: int | None = None  # where inputs are cut, when not at the model's max_seq_length (a ColBERT query)


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
    positions: list[int] | None = None  # the items' places in the request when they are a part of it
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    # called on ``loop`` once the worker is done with the job (run, failed or dropped): a job whose client left
    # keeps its permits until then, as its inputs may still be running
    on_finished: Callable[[], None] | None = None


def _done_with(job: Job) -> None:
    """Tell ``job``'s handler (once) that the worker computes nothing more of it."""
    finished, job.on_finished = job.on_finished, None
    if finished is not None:
        job.loop.call_soon_threadsafe(finished)


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
        inputs_per_run: the most inputs of a group run in one model call; between calls the worker drops
            the rest of a job whose client left.
    """

    def __init__(
        self,
        name: str,
        max_seq_length: int,
        metrics: Metrics,
        *,
        batch_wait_s: float = 0.0,
        wait_for_items: int = 32,
        inputs_per_run: int = 256,
    ) -> None:
        self.name = name
        self.max_seq_length = max_seq_length
        self._metrics = metrics
        self._batch_wait_s = batch_wait_s
        self._wait_for_items = wait_for_items
        self._inputs_per_run = inputs_per_run
        self._queue: deque[Job] = deque()
        self._queued_items = 0
        self._running: list[Job] = []  # the jobs taken from the queue and not yet all settled
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

    def cancel(self, job: Job) -> None:
        """Compute no more of ``job`` (its client left; from the event loop thread): one still queued leaves the
        queue now, counted as dropped; one in the run under way has the rest of its inputs dropped by the worker."""
        with self._cond:
            job.cancelled = True
            if all(queued is not job for queued in self._queue):
                return
            self._queue = deque(queued for queued in self._queue if queued is not job)
            self._queued_items -= len(job.items)
            self._metrics.queue_inputs.labels(self.name).set(self._queued_items)
        self._metrics.dropped_inputs.labels(self.name).inc(len(job.items))

    def runs(self, job: Job) -> bool:
        """Whether ``job`` is in the run under way (its ``on_finished`` is still to come); a queued one is not."""
        with self._cond:
            return any(running is job for running in self._running)

    def close(self, timeout: float | None = None) -> bool:
        """Run what is queued, then stop the thread; whether it has stopped.

        An idle worker stops at once; one with jobs is waited for at most ``timeout`` seconds (None: until
        it is done). False: the thread is still inside a model call, so the model must not be closed.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
            idle = not self._queue and not self._running
        self._thread.join(None if idle else timeout)
        return not self._thread.is_alive()

    def abandon(self, error: RequestError) -> None:
        """Fail every job queued or running with ``error`` and compute no more of them (thread-safe)."""
        with self._cond:
            jobs = [*self._queue, *self._running]
        for job in jobs:
            job.cancelled = True
            job.loop.call_soon_threadsafe(_settle, job.future, error)

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
            self._running = jobs
            self._metrics.queue_inputs.labels(self.name).set(0)
            return jobs

    def _loop(self) -> None:
        while (jobs := self._take_jobs()) is not None:
            try:
                self._run_jobs(jobs, serve_arrivals=True)
            finally:
                with self._cond:
                    self._running = []
                for job in jobs:
                    _done_with(job)

    def _serve_arrivals(self) -> float:
        """Between two model calls of a run: the small jobs queued meanwhile (in queue order, together at most
        ``inputs_per_run`` inputs) run now, whole; a bulk one waits in the queue for the run to end, so bulk requests
        run in their order and a query waits for one call of whichever runs. Returns the seconds it took."""
        started = time.perf_counter()
        with self._cond:
            jobs: list[Job] = []
            room = self._inputs_per_run
            for job in self._queue:
                if len(job.items) <= room:
                    jobs.append(job)
                    room -= len(job.items)
            if not jobs:
                return 0.0
            self._queue = deque(job for job in self._queue if all(job is not taken for taken in jobs))
            self._queued_items = sum(len(job.items) for job in self._queue)
            self._running.extend(jobs)
            self._metrics.queue_inputs.labels(self.name).set(self._queued_items)
        try:
            self._run_jobs(jobs, serve_arrivals=False)
        finally:
            with self._cond:
                self._running = [job for job in self._running if all(job is not taken for taken in jobs)]
            for job in jobs:
                _done_with(job)
        return time.perf_counter() - started

    def _run_jobs(self, jobs: list[Job], serve_arrivals: bool) -> None:
        groups: dict[Hashable, list[Job]] = {}
        for job in jobs:
            if job.cancelled:
                self._metrics.dropped_inputs.labels(self.name).inc(len(job.items))
                _done_with(job)  # never run: its permits go back now, not after the others' run
                continue
            groups.setdefault(job.operation.key, []).append(job)
        for number, group in enumerate(groups.values()):
            if serve_arrivals and number:
                self._serve_arrivals()  # (the groups after it are not yet started: their queue time counts it)
            try:
                self._run_group(group, serve_arrivals)
            except BaseException as exc:  # never let the worker die: fail the group, keep serving
                logger.exception("model %s: a batch failed", self.name)
                for job in group:
                    job.loop.call_soon_threadsafe(_settle, job.future, _backend_error(exc))
                    _done_with(job)

    def _run_group(self, jobs: list[Job], serve_arrivals: bool = False) -> None:
        operation = jobs[0].operation
        started = time.perf_counter()
        items = [item for job in jobs for item in job.items]
        try:
            prepared = operation.prepare(items)
        # Any exception: preparing is the part of a run that reads one request's inputs, and tokenizers' panics
        # are BaseExceptions, so nothing narrower isolates a bad request from its neighbours.
        except BaseException as exc:
            if len(jobs) > 1:  # find the request at fault; its neighbours go on
                for job in jobs:
                    self._run_group([job], serve_arrivals)
                return
            self._fail(jobs[0], self._preparing_error(exc))
            return
        tokenized = time.perf_counter()
        accepted: list[tuple[Job, int, int]] = []
        start = 0
        cut = prepared.truncated
        for job in jobs:
            end = start + len(job.items)
            truncated = np.flatnonzero(cut[start:end])
            if truncated.size and not job.truncate:
                position = int(truncated[0])
                tokens = operation.count_tokens(job.items[position])
                where = position if job.positions is None else job.positions[position]  # its place in the request
                self._fail(job, TooLongError(where, tokens, operation.token_limit or self.max_seq_length))
            else:
                accepted.append((job, start, end))
            start = end
        if not accepted:
            return
        m = self._metrics
        m.tokenization_duration.labels(self.name).observe(tokenized - started)
        queue = m.queue_duration.labels(self.name)
        for job, _, _ in accepted:
            queue.observe(started - job.enqueued)
        accepted.sort(key=lambda span: span[2] - span[1])  # smallest first (a stable sort: else in queue order)
        self._run_in_parts(operation, prepared, accepted, started, tokenized, serve_arrivals)

    def _run_in_parts(
        self,
        operation: Operation,
        prepared: Prepared,
        accepted: list[tuple[Job, int, int]],
        started: float,
        tokenized: float,
        serve_arrivals: bool,
    ) -> None:
        """Run the ``accepted`` jobs' inputs (``[start, end)`` of ``prepared`` each) in job order, at most
        ``inputs_per_run`` per model call (each job's shortest first when that takes more than one call); a job
        whose client left by the next call has the rest of its inputs dropped, and each job is settled once its
        last input has run. With ``serve_arrivals``, jobs queued meanwhile run before each call after the first."""
        input_tokens, truncated = prepared.input_tokens, prepared.truncated
        # A group of several calls gives them each job's inputs shortest first: each call then pads as little as
        # if the library had sorted the whole job (it sorts within a call only). Rows go back in the job's order.
        several = len(prepared) > self._inputs_per_run
        orders = [
            start + (np.argsort(input_tokens[start:end], kind="stable") if several else np.arange(end - start))
            for _, start, end in accepted
        ]
        parts: list[list[Any]] = [[] for _ in accepted]
        taken = [0] * len(accepted)  # of each job's inputs, how many have gone into a call
        current = 0  # the first job with inputs left to run
        calls = 0
        waited = 0.0  # seconds of other requests' calls run between this run's: its jobs' queue time, not inference
        while current < len(accepted):
            if serve_arrivals and calls:
                waited += self._serve_arrivals()
            calls += 1
            keep: list[int] = []
            spans: list[tuple[int, int, int]] = []  # (job, its first row in this call, its rows in this call)
            while current < len(accepted) and len(keep) < self._inputs_per_run:
                job, start, end = accepted[current]
                if job.cancelled:
                    self._metrics.dropped_inputs.labels(self.name).inc(end - start - taken[current])
                    _done_with(job)  # the rest of its inputs will not run
                    current += 1
                    continue
                count = min(self._inputs_per_run - len(keep), end - start - taken[current])
                spans.append((current, len(keep), count))
                keep.extend(orders[current][taken[current] : taken[current] + count].tolist())
                taken[current] += count
                if taken[current] == end - start:
                    current += 1
            if not keep:
                return
            whole = len(keep) == len(prepared) and keep == list(range(len(keep)))  # (the length first: cheap)
            rows = prepared if whole else prepared.select(keep)
            run_started = time.perf_counter()
            result = operation.run(rows)
            done = time.perf_counter()
            self._count(len(rows), int(rows.lengths.sum()), int(rows.truncated.sum()), done - run_started)
            self._metrics.inference_duration.labels(self.name).observe(done - run_started)
            for index, first, count in spans:
                parts[index].append(operation.take(result, np.arange(first, first + count)))
                job, start, end = accepted[index]
                if taken[index] == end - start:  # its last input has run
                    outcome = JobResult(
                        _in_order(_join(parts[index]), orders[index] - start),
                        int(input_tokens[start:end].sum()),
                        int(truncated[start:end].sum()),
                        Timings(started - job.enqueued + waited, tokenized - started, done - tokenized - waited),
                    )
                    parts[index] = []
                    job.loop.call_soon_threadsafe(_settle, job.future, outcome)
                    _done_with(job)  # its permits go back now, not at the end of the others' calls

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
        _done_with(job)

    def _preparing_error(self, exc: BaseException) -> RequestError:
        """What one job whose inputs could not be prepared gets: a 422 for what the library refuses, else a 500
        (logged with its traceback)."""
        if isinstance(exc, RequestError):
            return exc
        if isinstance(exc, InputError):
            return RequestError(422, str(exc), "Tokenizer")
        logger.error("model %s: preparing a request's inputs failed", self.name, exc_info=exc)
        return _backend_error(exc, "preparing the inputs")


def _join(parts: list[Any]) -> Any:
    """One job's rows from the model calls its inputs took (``Operation.take``: an array or a list each)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [row for part in parts for row in part]


def _in_order(rows: Any, order: np.ndarray) -> Any:
    """A job's rows in its inputs' order, from ``rows`` whose ``k``-th is that of input ``order[k]``."""
    if bool(np.all(order[1:] > order[:-1])):
        return rows
    inverse = np.argsort(order)
    if isinstance(rows, np.ndarray):
        return rows[inverse]
    return [rows[i] for i in inverse.tolist()]


def _backend_error(exc: BaseException, step: str = "inference") -> RequestError:
    """An unexpected failure of a graph run (or of preparing inputs), as the 500 every job of it gets."""
    kind = "" if isinstance(exc, FastEmbedError) else f"{type(exc).__name__}: "
    return RequestError(500, f"{step} failed: {kind}{exc}", "Backend")
