"""Data-parallel encoding: worker processes, each with its own engine and share of the CPUs.

Started by ``SentenceTransformer.start_multi_process_pool`` (or ``CrossEncoder``'s) and used through
``encode(..., pool=pool)`` (``predict(..., pool=pool)``), as in sentence-transformers. Workers are *spawned*,
never forked: each loads its own engine rather than a copy of the parent's, whose thread pools' threads do not exist
in a child (an engine forked with the user's process still runs there: ``onnxruntime._forget_streams_in_child``).

Texts (pairs) are cut into chunks, longest first (so the slowest chunks start first and each chunk pads
little), handed to whichever worker is free, and put back in input order. An exception a call raises in a
worker (bad input, say) is raised in the caller once the call's other chunks are back, and the pool stays
usable, as in sentence-transformers; a worker that dies, or fails to load, stops the pool.

Each worker answers through a pipe of its own, whose only writer is that worker: one that dies, even halfway
through sending a result, ends its pipe, so the caller is told at once (a shared queue's reader waited forever for
the rest of a half-sent message). Calls take the pool one at a time; ``close()`` waits for the running call,
``close(graceful=False)`` ends it.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.queues
import os
import pickle
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import InputError, LongInputError, ProviderError
from fastembed_rt.pipeline import EncodeStats, check_texts, progress, wants_progress

__all__ = ["MultiProcessPool"]

_POLL_S = 0.5
_STOP_TIMEOUT_S = 10.0
_STOPPED_DURING_CALL = "this multi-process pool was stopped during the call; start a new one"


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ``ProviderError`` carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ProviderError("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return exc


def _worker(
    index: int, open_model: Callable[..., Any], load: dict[str, Any], settings: dict[str, Any], tasks: Any, results: Any
) -> None:
    """Load a model, report ready, then run ``method(chunk, **kwargs)`` on each chunk until the ``None`` sentinel;
    every answer goes into ``results``, this worker's pipe: ``(kind, chunk_id, index, payload, stats)``."""
    try:
        model = open_model(**load)
        for name, value in settings.items():  # the parent's as they stand (a None it set is not the default)
            setattr(model, name, value)
    except BaseException as exc:
        results.send(("failed", -1, index, _portable(exc), None))
        return
    results.send(("ready", -1, index, model.provider, None))
    while True:
        task = tasks.get()
        if task is None:
            break
        chunk_id, method, items, kwargs, model_settings = task
        try:
            for name, value in model_settings.items():  # the calling model's as they stand now, as at start
                if getattr(model, name) != value:
                    setattr(model, name, value)
            output = getattr(model, method)(items, **kwargs)
        except BaseException as exc:
            results.send(("failed", chunk_id, index, _portable(exc), None))
        else:
            results.send(("done", chunk_id, index, output, model.last_encode_stats))
    model.close()


def _sendable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _check_sendable(value: Any, what: str, verb: str) -> None:
    """An ``InputError`` when ``value`` cannot be pickled to the workers (a local function, a lambda)."""
    try:
        pickle.dumps(value)
    except Exception as exc:
        raise InputError(
            f"{what} cannot be sent to the pool's worker processes ({exc}); {verb} names and values "
            "(e.g. activation_fn='sigmoid'), not local functions"
        ) from None


# Start methods a spawned child knows without importing anything (``multiprocessing.get_all_start_methods``' own).
_STANDARD_START_METHODS = ("fork", "spawn", "forkserver")
_START_METHOD_LOCK = threading.Lock()


@contextlib.contextmanager
def _spawn_preparation() -> Iterator[None]:
    """Workers start under a standard global start method. A spawned child sets the parent's global start method
    before anything else; in a joblib (loky) worker that method is ``loky``, which a plain spawned child cannot find:
    every worker died at start-up (``cannot find context for 'loky'``). The parent's method is put back after."""
    with _START_METHOD_LOCK:  # taken always: a pool starting in another thread meanwhile sees the method it set
        method = multiprocessing.get_start_method(allow_none=True)
        if method is None or method in _STANDARD_START_METHODS:
            yield
            return
        multiprocessing.set_start_method("spawn", force=True)
        try:
            yield
        finally:
            multiprocessing.set_start_method(method, force=True)


class MultiProcessPool:
    """Worker processes that each hold their own model.

    Args:
        open_model: opens the model in a worker: a model class (it reaches the worker by its import
            path, so this module imports no model type) called with one of ``loads``.
        loads: one keyword set per worker (artifact, provider, variant, options).
        settings: attributes set on each worker's model once loaded: the parent model's as they stand
            (``max_seq_length``, prompts, its type's settings).

    Raises:
        The first worker's load error (e.g. ``ProviderError``), after stopping the others.
    """

    def __init__(
        self, open_model: Callable[..., Any], loads: Sequence[dict[str, Any]], settings: dict[str, Any]
    ) -> None:
        if not loads:
            raise ProviderError("a multi-process pool needs at least one target device")
        # checked before any queue or process exists: Process.start raised PicklingError with both half made
        _check_sendable(settings, "the model's settings", "set")
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # A worker importing a script that starts a pool without a main guard: it dies here, as Process.start would
            # make it, before the queue's semaphores exist (their leak was reported at exit after the pool's error)
            raise RuntimeError(
                "a multi-process pool was started while this process was being spawned as a worker: the code that "
                'starts the pool must sit under `if __name__ == "__main__":`'
            )
        context = multiprocessing.get_context("spawn")
        self.model_type = open_model
        # the artifact its workers run: a call checks it is its model's (another model's pool gave that one's rows)
        self.artifact = Path(os.path.realpath(loads[0]["model_name_or_path"]))
        self.devices = tuple(str(load["provider"]) for load in loads)
        # each calling thread's own (threads sharing a pool read another's call's stats between its end and theirs)
        self._last_stats = threading.local()
        self._tasks: multiprocessing.queues.Queue[Any] | None = context.Queue()
        pipes = [context.Pipe(duplex=False) for _ in loads]
        self._readers = [reader for reader, _ in pipes]
        self._ended: set[int] = set()  # workers whose pipe ended (they exited, or died)
        self._lock = threading.RLock()
        self._stopping = threading.Lock()
        self._closed = False
        self._exits: list[str] = []  # each worker's name, pid and exit code, taken as the stop closes it
        self._processes = [
            context.Process(
                target=_worker,
                args=(i, open_model, dict(load), dict(settings), self._tasks, writer),
                name=f"fastembed-rt-{i}-{device}",
                daemon=True,
            )
            for i, ((_, writer), load, device) in enumerate(zip(pipes, loads, self.devices))
        ]
        self._views = [_Worker(process) for process in self._processes]
        with _spawn_preparation():
            for process in self._processes:
                process.start()
        for _, writer in pipes:  # the worker holds its pipe's only writer now: its death ends the pipe
            writer.close()
        self.providers: list[str] = [""] * len(self._processes)
        self._starting = True
        for _ in self._processes:
            _, _, index, provider, _ = self._receive()
            self.providers[index] = provider
        self._starting = False

    @property
    def processes(self) -> list[Any]:
        """The worker processes; closed once the pool stops (as sentence-transformers' stop closes them). Each is
        a view whose ``terminate``, ``join`` and ``close`` do nothing once the process object is closed:
        sentence-transformers' static stop loops over them while a call that saw a worker die may stop the pool
        and close them (its ``join`` raised ``ValueError: process object is closed``)."""
        return list(self._views)

    def __getitem__(self, key: str) -> Any:
        """``pool["processes"]``, as code written for sentence-transformers' pool (a dict) reads its workers, and
        ``pool["input"]`` / ``pool["output"]`` as far as its static ``stop_multi_process_pool`` uses them (LangChain's
        ``HuggingFaceEmbeddings(multi_process=True)`` stops our pool with it): closing one stops this pool."""
        if key == "processes":
            return self.processes
        if key in ("input", "output"):
            return _QueueEnd(self)
        raise KeyError(f"{key!r}: a fastembed-rt pool offers 'processes' (its workers); calls go through pool=")

    def _receive(self) -> tuple[str, int, int, Any, Any]:
        """The next worker message; stops the pool and raises on a failed load or a dead worker (a failed task is
        returned: its worker lives on)."""
        while True:
            if self._closed and not self._starting:
                raise ProviderError(_STOPPED_DURING_CALL)
            try:
                waiting: list[Any] = [*self._readers, *(p.sentinel for p in self._processes)]
            except ValueError:  # a process object closed by a stop from another thread since the check above
                raise ProviderError(_STOPPED_DURING_CALL) from None
            for ready in multiprocessing.connection.wait(waiting, timeout=_POLL_S):
                if ready not in self._readers:
                    continue  # a sentinel: its worker's pipe says below whether anything is left to read
                index = self._readers.index(ready)
                if index in self._ended:
                    continue
                try:
                    message = ready.recv()
                except (EOFError, OSError):  # its worker is gone, maybe halfway through a message
                    self._ended.add(index)
                    continue
                if message[0] == "failed" and message[1] < 0:
                    self.close(graceful=False)
                    raise message[3]
                return message
            dead = [
                i for i, p in enumerate(self._processes) if i in self._ended or (not _alive(p) and not self._pending(i))
            ]
            if dead:
                self._died(dead)

    def _pending(self, index: int) -> bool:
        """Whether worker ``index``'s pipe may still hold a message it sent before exiting (or its end, which the
        next ``recv`` reads)."""
        try:
            return bool(self._readers[index].poll())
        except (EOFError, OSError):
            return False

    def _died(self, dead: Sequence[int]) -> None:
        stopped = self._closed
        self.close(graceful=False)
        if stopped:
            raise ProviderError(_STOPPED_DURING_CALL)
        names = ", ".join(self._exits[i] for i in dead)
        why = (
            " (its error is on stderr above; a worker that dies while starting is most often a script without "
            '`if __name__ == "__main__":` around the code that starts the pool: workers are spawned and import the '
            "script again)"
            if self._starting
            else ""
        )
        raise ProviderError(f"multi-process pool worker died: {names}{why}; the pool was stopped, start a new one")

    def encode(
        self,
        sentences: str | Sequence[str],
        *,
        chunk_size: int | None = None,
        model_settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The model's ``encode`` over the workers; same arguments, same result, input order.

        ``chunk_size``: texts per task; default ``ceil(n / (4 × workers))``, at most 1,000. ``model_settings``: as
        ``map``'s.
        """
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        convert_to_numpy = kwargs.pop("convert_to_numpy", True)
        lengths = [len(text) for text in texts]
        merged = self.map("encode", texts, lengths, chunk_size=chunk_size, model_settings=model_settings, **kwargs)
        if isinstance(merged, np.ndarray):
            if single:
                return merged[0]
            return merged if convert_to_numpy else list(merged)
        return merged[0] if single else merged

    def map(
        self,
        method: str,
        items: Sequence[Any],
        lengths: Sequence[int],
        *,
        chunk_size: int | None = None,
        model_settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> np.ndarray | list[Any]:
        """``model.<method>(chunk, **kwargs)`` on the workers for chunks of ``items`` (checked by the caller), longest
        ``lengths`` first; each result row back at its item's place: one array when the chunks return arrays, else
        a list. ``chunk_size``: items per task; default ``ceil(n / (4 × workers))``, at most 1,000.
        ``model_settings``: the calling model's settings as they stand (``max_seq_length``, prompts, ...), set on a
        worker's model before the call where they differ: a ``max_seq_length`` set after the pool started was
        ignored by its workers.

        Raises:
            InputError: arguments that cannot be sent to a worker (a lambda as ``activation_fn``).
        """
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
        ):  # a ValueError, as sentence-transformers raises
            raise InputError(f"chunk_size must be a positive int, got {chunk_size!r}")
        chunk_size = None if chunk_size is None else int(chunk_size)
        show = wants_progress(kwargs.get("show_progress_bar"))  # a bar over chunks here (as sentence-transformers)
        kwargs["show_progress_bar"] = False  # and none in the workers
        # a queue pickles in a background thread, where a failure would drop the task and the call wait forever
        _check_sendable(kwargs, "the call's arguments", "pass")
        # a setting that cannot be pickled stays as the worker has it (a lambda set as activation_fn: the call sends
        # its own activation, or is refused for it above)
        settings = {name: value for name, value in (model_settings or {}).items() if _sendable(value)}
        size = chunk_size or max(1, min(math.ceil(len(items) / (4 * len(self._processes))), 1000))
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        chunks = [order[start : start + size] for start in range(0, len(items), size)] or [[]]
        outputs: list[Any] = [None] * len(chunks)
        stats: list[EncodeStats] = []
        failures: list[tuple[int, BaseException]] = []
        with self._lock:
            if self._closed or self._tasks is None:
                raise ProviderError("this multi-process pool was stopped; start a new one")
            bar = progress(len(chunks), show, desc="Chunks", unit="chunk")
            try:
                for chunk_id, rows in enumerate(chunks):
                    self._tasks.put((chunk_id, method, [items[i] for i in rows], kwargs, settings))
                for _ in chunks:  # every chunk's answer is taken, so none is left to a later call
                    kind, chunk_id, _, output, chunk_stats = self._receive()
                    if bar is not None:
                        bar.update(1)
                    if kind == "failed":
                        failures.append((chunk_id, output))
                    else:
                        outputs[chunk_id] = output
                        stats.append(chunk_stats)
            except ProviderError:  # a dead worker, or a stop during the call, said as such
                self.close(graceful=False)
                raise
            except BaseException as exc:
                stopped = self._closed  # close(graceful=False) from another thread closed the queue or pipes under us
                self.close(graceful=False)
                if stopped and isinstance(exc, Exception):
                    raise ProviderError(_STOPPED_DURING_CALL) from exc
                raise
            finally:
                if bar is not None:
                    bar.close()
        if failures:
            raise _first_failure(failures, chunks)
        self._last_stats.value = EncodeStats.total(stats)  # of a call whose every chunk ran
        if isinstance(outputs[0], np.ndarray):
            first = outputs[0]
            merged = np.empty((len(items), *first.shape[1:]), dtype=first.dtype)
            for rows, output in zip(chunks, outputs):
                merged[rows] = output
            return merged
        results: list[Any] = [None] * len(items)
        for rows, output in zip(chunks, outputs):
            for i, item in zip(rows, output):
                results[i] = item
        return results

    @property
    def last_stats(self) -> EncodeStats:
        """The stats of this thread's last call on the pool, summed over its workers."""
        return getattr(self._last_stats, "value", EncodeStats())

    def close(self, graceful: bool = True) -> None:
        """Stop the workers and free the pipes and queue. ``graceful``: after the running call, if any (calls
        waiting for the pool then get "stopped"), the workers finish and exit; else at once, the running call
        ending in a ``ProviderError``."""
        if graceful:
            with self._lock:
                self._stop(graceful=True)
        else:
            self._stop(graceful=False)

    def _stop(self, graceful: bool) -> None:
        with self._stopping:  # one stop at a time: an abrupt one from another thread and a dead worker's may meet
            self._stop_once(graceful)

    def _stop_once(self, graceful: bool) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = self._tasks
        assert tasks is not None  # made None only here, after _closed
        # a process object may be closed already: sentence-transformers' static stop_multi_process_pool terminates,
        # joins and closes pool["processes"] before it closes pool["input"]
        unclosed = [process for process in self._processes if not _closed(process)]
        if graceful:
            running = [process for process in unclosed if process.is_alive()]
            for _ in running:
                tasks.put(None)
            for process in running:
                process.join(_STOP_TIMEOUT_S)
        for process in unclosed:
            if process.is_alive():
                process.terminate()
            process.join()
            self._exits.append(f"{process.name} (pid {process.pid}, exit code {process.exitcode})")
            process.close()  # its pipe to the worker, held until collected otherwise (as sentence-transformers does)
        for reader in self._readers:
            reader.close()
        tasks.cancel_join_thread()
        tasks.close()
        # A queue's three semaphores (/dev/shm) go with the object: a stopped pool kept by its caller held them, and
        # 2 fds per worker, for as long as it was referenced
        self._tasks = None

    def __enter__(self) -> MultiProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running"
        return f"MultiProcessPool({', '.join(self.devices)}; {state})"


class _Worker:
    """A worker process as ``pool["processes"]`` gives it: the process, tolerant of a close that came first."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)

    def is_alive(self) -> bool:
        return not _closed(self._process) and self._process.is_alive()

    # each may meet a close made meanwhile by the pool's own stop (a ValueError of the process object): it ended
    def terminate(self) -> None:
        with contextlib.suppress(ValueError):
            self._process.terminate()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(ValueError):
            self._process.join(timeout)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._process.close()


class _QueueEnd:
    """``pool["input"]`` / ``pool["output"]``: what sentence-transformers' static ``stop_multi_process_pool`` calls
    on its pool's queues after ending the workers; ``close`` stops the pool (its queue and pipes)."""

    def __init__(self, pool: MultiProcessPool) -> None:
        self._pool = pool

    def cancel_join_thread(self) -> None:
        """Nothing to do: the pool's own stop cancels its queue's feeder thread."""

    def close(self) -> None:
        self._pool.close(graceful=False)


def _closed(process: multiprocessing.process.BaseProcess) -> bool:
    """Whether ``process`` was closed (its object refuses every question then)."""
    try:
        process.is_alive()
    except ValueError:
        return True
    return False


def _alive(process: multiprocessing.process.BaseProcess) -> bool:
    """``is_alive``, False for a process object a stop has closed (it joined the process first)."""
    try:
        return process.is_alive()
    except ValueError:
        return False


def _first_failure(failures: list[tuple[int, BaseException]], chunks: list[list[int]]) -> BaseException:
    """The error a call without a pool would raise: over-long inputs by their positions in the call (a chunk's
    worker counted them within the chunk, longest first), the first of them named; else the first chunk's error."""
    long = [exc.at(chunks[chunk_id]) for chunk_id, exc in failures if isinstance(exc, LongInputError)]
    if long:
        tokens = {position: n for exc in long for position, n in exc.tokens.items()}
        return LongInputError(tokens, long[0].limit, long[0].alternatives, long[0].limit_name)
    return min(failures, key=lambda failure: failure[0])[1]
