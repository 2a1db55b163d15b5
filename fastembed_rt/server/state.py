"""What the routes share: the served models and their workers, admission, readiness and draining.

``ServerState.load_models`` opens every artifact with the library's loader (in a thread at startup:
``start_loading``); ``run_job`` admits a request's inputs, queues them on the model's worker and waits for
its rows or for the client to leave; ``drain``, ``abandon`` and ``close`` stop it all on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request

from fastembed_rt.artifact import Task, load_manifest, local_path, resolve_artifact
from fastembed_rt.errors import FastEmbedError, InputError
from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP
from fastembed_rt.models import ArtifactModel, CrossEncoder, load_model
from fastembed_rt.pipeline import MIN_BATCHES_PER_STREAM
from fastembed_rt.providers import ProviderOptions, resolve_provider
from fastembed_rt.server.batcher import Job, JobResult, ModelWorker, Operation
from fastembed_rt.server.config import ServerConfig
from fastembed_rt.server.limits import Admission
from fastembed_rt.server.metrics import Metrics
from fastembed_rt.server.requests import RequestError

__all__ = ["ClientGone", "Served", "ServerState"]

T = TypeVar("T")

logger = logging.getLogger("fastembed_rt.server")


# The batches a server runs hold whatever unrelated requests arrived together, not texts sorted by length:
# padded, 17 random STSb sentences run 2.2× their tokens. all-MiniLM-L6-v2 behind `fastembed-rt serve` with 32
# closed-loop clients (2 threads, AVX-512 EPYC): 2.0 ms of graph time per input packed, 2.3-2.5 padded
# (`optimized`); 439-447 against 355-391 requests/s.
PACKED_REASON = "the server's batches mix unrelated lengths: run without padding (`packed`) on the CPU"

# A worker runs this many graph batches per stream in one model call, then checks for clients that left and runs
# the requests that arrived meanwhile: what a call needs to run on every stream. A one-text query waits for at most
# one such call of a bulk request; a request whose client left runs at most 64 more of its texts on one stream
# (2 × 32), 128 on two. Four per stream (until 2026-12-07) ran no faster (benchmarks in the commit).
BATCHES_PER_RUN = MIN_BATCHES_PER_STREAM


def serving_variant(
    artifact: str | Path, provider: str, variant: str, revision: str | None = None
) -> tuple[str, str | None]:
    """The variant a server opens for ``variant``, and why when it is not the library's choice.

    ``auto`` becomes ``packed`` when the artifact has it and the model runs on ONNX Runtime's CPU provider;
    any other name, and anything the lookup cannot decide, is left to the library's loader (and its errors).
    """
    if variant != "auto":
        return variant, None
    try:
        manifest = load_manifest(resolve_artifact(artifact, revision=revision))
        if "packed" not in {v.name for v in manifest.variants}:
            return variant, None
        spec, _ = resolve_provider(provider, formats={v.format for v in manifest.variants})
    except FastEmbedError:
        return variant, None
    return ("packed", PACKED_REASON) if spec.name == "cpu" else (variant, None)


# The served model answering the request of this asyncio task (each request runs in a task of its own), for its
# metrics and log line; "" until a route picks one.
ANSWERING: contextvars.ContextVar[str] = contextvars.ContextVar("fastembed_rt_answering", default="")


def a_model_of(task: str) -> str:
    """``"an embedding model"``, ``"a sparse model"``: a task in a sentence."""
    return Task(task).a_model


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nothing is sent."""


@dataclass
class Served:
    """A loaded model, its worker, and what the routes need to know of it."""

    name: str
    artifact: Path
    model: ArtifactModel
    worker: ModelWorker
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP  # tokens its chunk windows share (``_check_fits``)

    @property
    def untruncated(self) -> Any:
        """The model's Rust tokenizer without truncation, for /tokenize and /decode."""
        return self.model.untruncated_tokenizer

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def threads(self) -> int | None:
        """The engine's intra-op threads (sized from the CPUs the process may use: affinity, cgroup quota)."""
        return getattr(self.model._pipeline.provider, "intra_op_threads", None)

    @property
    def labels(self) -> list[str]:
        """Label names of a cross-encoder's scores (the model's id2label, else ``LABEL_i``)."""
        model = self.model
        return list(model.labels) if isinstance(model, CrossEncoder) else ["LABEL_0"]

    def tei_model_type(self) -> dict[str, Any]:
        """TEI's ``model_type`` of /info: ``{"embedding": {"pooling"}}`` (SPLADE: ``"splade"``), ``{"reranker" |
        "classifier": {"id2label", "label2id"}}``; a multi-vector model, which TEI has no type for, by its task."""
        stages = self.model.manifest.stages
        if self.task == "embedding":
            modes = (stages.get("pooling") or {}).get("modes") or ["none"]
            return {"embedding": {"pooling": "+".join("last_token" if m == "lasttoken" else m for m in modes)}}
        if self.task == "sparse":
            return {"embedding": {"pooling": "splade"}}
        if self.task == "cross-encoder":
            labels = self.labels
            kind = "reranker" if len(labels) == 1 else "classifier"
            id2label = {str(i): name for i, name in enumerate(labels)}  # JSON keys, as TEI sends them
            return {kind: {"id2label": id2label, "label2id": {name: i for i, name in enumerate(labels)}}}
        return {self.task: {}}

    def identity(self) -> tuple[str, str | None]:
        """TEI's ``model_id`` and ``model_sha``: the hub model the artifact was exported from and its commit; for
        one exported from a local folder (a path on the exporter's machine), the artifact's hub repo and commit
        when it was loaded from the hub, else the artifact as served."""
        from fastembed_rt.artifact import hub_source

        source = self.model.manifest.source
        if isinstance(source.get("model"), str) and source.get("local") is False:
            commit = source.get("commit")
            return source["model"], commit if isinstance(commit, str) else None
        hub = hub_source(self.model.manifest.root)
        if hub is not None:
            return hub.repo_id, hub.commit
        return str(self.artifact), None

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": self.name,
            "task": self.task,
            "model_type": self.tei_model_type(),
            "artifact": str(self.artifact),
            "source": m.manifest.source.get("model"),
            "provider": m.provider,
            "variant": m.variant,
            "variant_reason": m.variant_reason,
            "threads": self.threads,
            "streams": m._pipeline.streams,
            "dim": m.manifest.dim,
            "max_input_length": m.max_seq_length,
            "prompts": dict(m.prompts),
        }


class ServerState:
    """Everything the routes share: config, metrics, admission and the served models."""

    def __init__(self, config: ServerConfig) -> None:
        problems = config.check()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.metrics = Metrics()
        self.admission = Admission(config.max_concurrent_requests, self.metrics)
        self.models: dict[str, Served] = {}
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.draining = False
        self.started_at = int(time.time())
        # An empty key is what `FASTEMBED_RT_API_KEY=${KEY}` gives with KEY unset: a key nobody can send, so not one.
        self.api_key = (config.api_key or "").strip() or None
        if config.api_key is not None and self.api_key is None:
            logger.warning(
                "the API key is empty (--api-key or $FASTEMBED_RT_API_KEY): authentication is off, every route "
                "is open; set a non-empty key to require one"
            )
        self.left_running: list[str] = []  # what close() left inside the engine (see close)
        self.abandoned = False  # the graceful timeout is over (abandon)
        self.requests_running: set[asyncio.Task[Any]] = set()  # the routes' requests in flight (abandon ends them)
        self._threads_running: set[asyncio.Future[Any]] = set()  # work left in a thread by a client that went
        self._deadline: float | None = None  # when draining must end (time.monotonic)
        self._closing = False
        self._lock = threading.Lock()  # models and _closing, between the loading thread and close()
        self._loader: threading.Thread | None = None
        self._other_names: set[str] = set()  # names answered by the one served model (logged once each)

    # -- loading ---------------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """``load_models`` in a thread of its own (the app's startup); ``close`` waits for it."""
        self._loader = threading.Thread(target=self._load_quietly, name="fastembed-rt-load", daemon=True)
        self._loader.start()

    def _load_quietly(self) -> None:
        try:
            self.load_models()
        except BaseException:  # kept in self.load_error; /health reports it
            return

    def load_models(self) -> None:
        """Open and warm every model; a failure is kept for ``/health`` and logs. Stops (without an error)
        when ``close`` has begun: the models loaded so far are closed, the rest never opened."""

        cfg = self.config
        try:
            for spec in cfg.models:
                if self._closing:
                    logger.info("loading stopped: the server is shutting down")
                    return
                started = time.perf_counter()
                if cfg.revision and local_path(spec.artifact) is not None:
                    logger.warning("%s is a local folder: --revision %s does not apply", spec.artifact, cfg.revision)
                variant, reason = serving_variant(
                    spec.artifact, cfg.provider, spec.variant or cfg.variant, cfg.revision
                )
                model = load_model(
                    spec.artifact,
                    revision=cfg.revision,
                    provider=cfg.provider,
                    variant=variant,
                    intra_op_threads=cfg.intra_op_threads,
                    provider_options=ProviderOptions(streams=cfg.streams),
                    warmup=cfg.warmup,
                )
                if reason is not None:
                    model.variant_reason = reason
                try:
                    overlap = _check_fits(cfg, spec.name, model)
                except InputError:
                    model.close()
                    raise
                model.token_budget = min(model.token_budget, cfg.max_batch_tokens)  # SPLADE keeps its memory cap
                worker = ModelWorker(
                    spec.name,
                    model.max_seq_length,
                    self.metrics,
                    batch_wait_s=cfg.batch_wait_ms / 1000,
                    wait_for_items=cfg.max_batch_size,
                    inputs_per_run=cfg.max_batch_size * model._pipeline.streams * BATCHES_PER_RUN,
                )
                served = Served(spec.name, Path(spec.artifact), model, worker, overlap)
                with self._lock:
                    closing = self._closing
                    if not closing:
                        self.models[spec.name] = served
                if closing:  # close() has taken its list of models already: this one is closed here
                    worker.close()
                    model.close()
                    logger.info("loading stopped: the server is shutting down")
                    return
                self.metrics.add_model(spec.name, model.task, model.provider, model.variant)
                logger.info(
                    "model %s (%s) ready on %s/%s with %s threads in %.2f s",
                    spec.name,
                    model.task,
                    model.provider,
                    model.variant,
                    served.threads,
                    time.perf_counter() - started,
                )
        except BaseException as exc:
            self.load_error = exc
            # what the library refuses says all in its message; anything else is a bug: its traceback too
            logger.error("loading models failed: %s", exc, exc_info=None if isinstance(exc, FastEmbedError) else exc)
            raise
        self.ready.set()

    # -- stopping --------------------------------------------------------------------------------------
    def drain(self) -> None:
        """SIGTERM: ``/health`` and new requests answer 503; accepted ones have ``--graceful-timeout`` to finish."""
        if not self.draining:
            self._deadline = time.monotonic() + self.config.graceful_timeout
        self.draining = True

    def abandon(self) -> None:
        """The graceful timeout is over: every request still in flight gets its 503 now (``abandoned_error``), and
        the workers compute no more of them.

        Those waiting for a model get it from their worker; the others (reading a slow upload, tokenizing,
        writing their answer in a thread) are cancelled here, and their route answers the 503: uvicorn cancels
        what is left ``ANSWER_GRACE_S`` later, and a request it cancels gets a plain-text 500."""
        self.abandoned = True
        error = self.abandoned_error()
        with self._lock:
            served = list(self.models.values())
        for s in served:
            s.worker.abandon(error)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:  # called from another thread
            here = None
        for task in list(self.requests_running):
            if task.get_loop() is here:  # at once: a cancel left for later could land after the route returned,
                task.cancel()  # in the middle of sending its answer
            else:
                task.get_loop().call_soon_threadsafe(task.cancel)

    def abandoned_error(self) -> RequestError:
        timeout = self.config.graceful_timeout
        message = f"the server shut down before this request finished (--graceful-timeout {timeout:g} s)"
        return RequestError(503, message, "Unhealthy")

    def close(self) -> None:
        """Stop loading, stop every worker and close its model, waiting for them at most until the end of the
        drain (``--graceful-timeout`` after ``drain``; without one, ``--graceful-timeout`` from now).

        A model whose worker (or the loading thread) is still inside the engine then is left open, and named in
        ``left_running``: freeing an ONNX Runtime session under a thread that runs it aborts the process, and so
        does the interpreter's normal exit (its C++ destructors run under that thread). The process that owns
        this state ends without them (``main.run``); waiting instead could take as long as the longest graph run.
        """
        deadline = self._deadline if self._deadline is not None else time.monotonic() + self.config.graceful_timeout
        with self._lock:
            self._closing = True
            served = list(self.models.values())
        if self._loader is not None:
            self._loader.join(max(0.0, deadline - time.monotonic()))
            if self._loader.is_alive():
                self.left_running.append("loading")
        for s in served:
            if s.worker.close(max(0.0, deadline - time.monotonic())):
                s.model.close()
            else:
                logger.warning(
                    "model %s is still running a graph past --graceful-timeout %g s: left to the process exit",
                    s.name,
                    self.config.graceful_timeout,
                )
                self.left_running.append(s.name)

    # -- routing ---------------------------------------------------------------------------------------
    def pick(self, name: str | None, task: str | tuple[str, ...] | None, route: str) -> Served:
        """The model a request names, or the first served model of the route's ``task`` (a tuple: any of
        those tasks; None: any); the request's metrics and log line name it (``ANSWERING``)."""
        served = self._pick(name, task, route)
        ANSWERING.set(served.name)
        return served

    def _pick(self, name: str | None, task: str | tuple[str, ...] | None, route: str) -> Served:
        tasks = (task,) if isinstance(task, str) else task
        kinds = None if tasks is None else " or ".join(tasks)
        if name is not None:
            served = self.models.get(name)
            if served is None:  # a name typed in another Unicode form (macOS and rsync write folder names NFD)
                wanted = unicodedata.normalize("NFC", name)
                same = (s for key, s in self.models.items() if unicodedata.normalize("NFC", key) == wanted)
                served = next(same, None)
            if served is None and len(self.models) == 1:
                # One model served, as TEI always serves: its OpenAI route never reads `model`, so clients set up
                # for it send any name (LangChain's "text-embedding-ada-002"). With several, names must match.
                served = next(iter(self.models.values()))
                # bounded, names and their length: they come from clients (a 2 MB name was a 2 MB log line)
                if name not in self._other_names and len(self._other_names) < 64 and len(name) <= 256:
                    self._other_names.add(name)
                    logger.info("model %r is not served; the one served model %r answers for it", name, served.name)
            if served is None:
                raise RequestError(
                    404,
                    f"model {name!r} is not served here; served: {', '.join(self.models)}",
                    "NotFound",
                    code="model_not_found",
                )
            if tasks is not None and served.task not in tasks:
                raise RequestError(
                    422,
                    f"{route} serves {kinds} models; {served.name!r} is {a_model_of(served.task)}. "
                    f"{self.served_by_task()}",
                )
            return served
        for served in self.models.values():
            if tasks is None or served.task in tasks:
                return served
        raise RequestError(422, f"{route} serves {kinds} models and none is served here. {self.served_by_task()}")

    def served_by_task(self) -> str:
        return "Served: " + ", ".join(f"{s.name} ({s.task})" for s in self.models.values())

    # -- running a job ---------------------------------------------------------------------------------
    async def run_job(
        self,
        request: Request,
        served: Served,
        operation: Operation,
        items: list[Any],
        truncate: bool,
        positions: list[int] | None = None,
    ) -> JobResult:
        """Admit ``items``, queue them on the model's worker and wait for their rows (or the client to go);
        ``positions``: the items' places in the request, when they are a part of it (for errors)."""
        self.admission.acquire(len(items), served.worker.items_per_second)
        loop = asyncio.get_running_loop()
        job = Job(operation, items, truncate, loop.create_future(), loop, positions)
        held = [len(items)]  # permits not yet given back (both callers run on the event loop)

        def release() -> None:
            if held:
                self.admission.release(held.pop())

        # A job whose client left gives its permits back when the worker is done with it: its inputs may be running
        # (the engine's call is not stopped), and a retry admitted meanwhile ran beside them at half speed while
        # `inputs_in_flight` read 0.
        job.on_finished = release
        try:
            served.worker.submit(job)
            return await _while_connected(request, job.future)
        except (ClientGone, asyncio.CancelledError):
            served.worker.cancel(job)
            job.future.cancel()  # nothing reads it now: a 503 abandon() sets on it would be logged as never retrieved
            raise
        finally:
            # one still queued never runs (the worker drops it): its permits go back now
            if not job.cancelled or not served.worker.runs(job):
                release()

    async def run_in_thread(self, request: Request, inputs: int, items_per_second: float, work: Callable[[], T]) -> T:
        """``work()`` in a thread, its ``inputs`` admitted until it ends; ``ClientGone`` as soon as the client closes
        its connection (the thread cannot be stopped: it runs on, holding its permits, but nothing waits for it or
        answers it)."""
        self.admission.acquire(inputs, items_per_second)
        running = asyncio.ensure_future(asyncio.to_thread(work))
        self._threads_running.add(running)  # asyncio keeps tasks weakly: one nobody awaits is held here

        def finished(_: asyncio.Future[Any]) -> None:
            self._threads_running.discard(running)
            self.admission.release(inputs)
            if not running.cancelled():
                running.exception()  # retrieved: for a client that left, asyncio would log it as never retrieved

        running.add_done_callback(finished)
        return await _while_connected(request, running)


async def _while_connected(request: Request, work: asyncio.Future[T]) -> T:
    """``work``'s result, or ``ClientGone`` when the client closes its connection first."""
    gone: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if work not in done:
        raise ClientGone
    return work.result()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _check_fits(cfg: ServerConfig, name: str, model: Any) -> int:
    """Settings that only a loaded model can check: they failed every request they touched, after a clean start.
    Returns the chunk overlap of the model's windows."""
    length = model.max_seq_length
    if cfg.max_batch_tokens < length:  # a long input ran past the bound, silently; not refused (as TEI does): the
        # default bound is below long-context models' lengths (Qwen3-Embedding: 32,768)
        logger.warning(
            "--max-batch-tokens %d is below model %r's max_seq_length %d: an input longer than the bound runs alone, "
            "past it",
            cfg.max_batch_tokens,
            name,
            length,
        )
    room = length - model._tokenizer.special_count(False)
    if cfg.chunk_overlap is None:  # the default, not a choice: a model of short windows stopped the whole server
        if room > DEFAULT_CHUNK_OVERLAP:
            return DEFAULT_CHUNK_OVERLAP
        logger.info("model %r: its chunk windows share %d tokens (the default %d passes its %d)", name, room // 2,
                    DEFAULT_CHUNK_OVERLAP, room)  # fmt: skip
        return room // 2
    if cfg.chunk_overlap >= room:  # every chunked input was a 422 naming a setting clients cannot send
        raise InputError(
            f"--chunk-overlap {cfg.chunk_overlap} does not fit the windows of model {name!r}: {length} tokens ({room} "
            "of them for the text); lower it"
        )
    return cfg.chunk_overlap
