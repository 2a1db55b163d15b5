"""The ASGI app: routes, the served models and their workers, admission, auth, health and draining.

``create_app(config)`` gives a Starlette app; ``main`` runs it under uvicorn, and a Ray Serve
deployment can mount the same app. Models load in a background thread at startup: ``/health``
answers 503 until every model is loaded and warm, then 200, and 503 again once SIGTERM starts
draining (``ServerState.draining``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastembed_rt import __version__
from fastembed_rt.errors import FastEmbedError, InputError
from fastembed_rt.models import ArtifactModel, CrossEncoder, load_model
from fastembed_rt.server.batcher import Job, JobResult, ModelWorker, Operation
from fastembed_rt.server.config import ServerConfig
from fastembed_rt.server.handlers import HANDLERS, Handler
from fastembed_rt.server.limits import Admission
from fastembed_rt.server.metrics import Metrics
from fastembed_rt.server.openapi import openapi_document
from fastembed_rt.server.requests import RequestError, parse_body
from fastembed_rt.server.responses import Api, error_response, json_response, timing_headers

__all__ = ["Served", "ServerState", "create_app"]

logger = logging.getLogger("fastembed_rt.server")


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nothing is sent."""


@dataclass
class Served:
    """A loaded model, its worker, and what the routes need to know of it."""

    name: str
    artifact: Path
    model: ArtifactModel
    worker: ModelWorker
    untruncated: Any  # a Rust tokenizer without truncation, for /tokenize and /decode

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def threads(self) -> int | None:
        """The engine's intra-op threads (sized from the CPUs the process may use: affinity, cgroup quota)."""
        return getattr(self.model._pipeline.provider, "intra_op_threads", None)

    @property
    def labels(self) -> list[str]:
        """Label names of a cross-encoder's scores (the manifest's, else ``LABEL_i``)."""
        model = self.model
        count = model.num_labels if isinstance(model, CrossEncoder) else 1
        names = model.manifest.stages.get("classifier", {}).get("labels") or []
        return [str(names[i]) if i < len(names) else f"LABEL_{i}" for i in range(count)]

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": self.name,
            "task": self.task,
            "artifact": str(self.artifact),
            "source": m.manifest.source.get("model"),
            "provider": m.provider,
            "variant": m.variant,
            "threads": self.threads,
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

    # -- loading ---------------------------------------------------------------------------------------
    def load_models(self) -> None:
        """Open and warm every model (in a thread at startup); a failure is kept for ``/health`` and logs."""
        from tokenizers import Tokenizer as RustTokenizer

        cfg = self.config
        try:
            for spec in cfg.models:
                started = time.perf_counter()
                model = load_model(
                    spec.artifact,
                    provider=cfg.provider,
                    variant=cfg.variant,
                    intra_op_threads=cfg.intra_op_threads,
                    warmup=cfg.warmup,
                )
                model.token_budget = min(model.token_budget, cfg.max_batch_tokens)  # SPLADE keeps its memory cap
                untruncated = RustTokenizer.from_file(str(model.manifest.root / model.manifest.tokenizer.file))
                untruncated.no_truncation()
                untruncated.no_padding()
                worker = ModelWorker(
                    spec.name,
                    model.max_seq_length,
                    self.metrics,
                    batch_wait_s=cfg.batch_wait_ms / 1000,
                    wait_for_items=cfg.max_batch_size,
                )
                served = Served(spec.name, Path(spec.artifact), model, worker, untruncated)
                self.models[spec.name] = served
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
            logger.error("loading models failed: %s", exc)
            raise
        self.ready.set()

    def close(self) -> None:
        for served in self.models.values():
            served.worker.close(self.config.graceful_timeout)
            served.model.close()

    # -- routing ---------------------------------------------------------------------------------------
    def pick(self, name: str | None, task: str | None, route: str) -> Served:
        """The model a request names, or the first served model of the route's ``task`` (None: any)."""
        if name is not None:
            served = self.models.get(name)
            if served is None:
                raise RequestError(
                    404, f"model {name!r} is not served here; served: {', '.join(self.models)}", "NotFound"
                )
            if task is not None and served.task != task:
                raise RequestError(
                    422, f"{route} serves {task} models; {name!r} is a {served.task} model. {self._by_task()}"
                )
            return served
        for served in self.models.values():
            if task is None or served.task == task:
                return served
        raise RequestError(422, f"{route} serves {task} models and none is served here. {self._by_task()}")

    def _by_task(self) -> str:
        return "Served: " + ", ".join(f"{s.name} ({s.task})" for s in self.models.values())

    # -- running a job ---------------------------------------------------------------------------------
    async def run_job(
        self, request: Request, served: Served, operation: Operation, items: list[Any], truncate: bool
    ) -> JobResult:
        """Admit ``items``, queue them on the model's worker and wait for their rows (or the client to go)."""
        self.admission.acquire(len(items), served.worker.items_per_second)
        loop = asyncio.get_running_loop()
        job = Job(operation, items, truncate, loop.create_future(), loop)
        try:
            served.worker.submit(job)
            gone: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
            waiting: set[asyncio.Future[Any]] = {job.future, gone}
            try:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
            if job.future not in done:
                job.cancelled = True
                raise ClientGone
            return job.future.result()
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        finally:
            self.admission.release(len(items))


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(
            413, f"the request body has {length} bytes, more than the limit of {limit} (--payload-limit)"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is longer than the limit of {limit} bytes (--payload-limit)")
        chunks.append(chunk)
    return b"".join(chunks)


def _authorized(state: ServerState, request: Request) -> bool:
    key = state.config.api_key
    if key is None:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _gate(state: ServerState, request: Request) -> None:
    """Auth, then readiness: the checks every route but ``/health`` passes before its work."""
    if not _authorized(state, request):
        raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "Auth")
    if state.draining:
        raise RequestError(503, "the server is shutting down", "Unhealthy")
    if not state.ready.is_set():
        reason = f"loading failed: {state.load_error}" if state.load_error else "models are still loading"
        raise RequestError(503, f"not ready: {reason}", "Unhealthy")


def _endpoint(state: ServerState, route: str, handler: Handler, api: Api) -> Any:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            _gate(state, request)
            data = parse_body(await _read_body(request, state.config.payload_limit))
            reply = await handler(state, request, data)
            served_type = next(iter(state.models.values())).model.provider if state.models else "cpu"
            headers = timing_headers(reply.result, time.perf_counter() - started, reply.characters, served_type)
            response = json_response(reply.payload, headers=headers)
        except RequestError as exc:
            response = error_response(api, exc)
        except (InputError, FastEmbedError) as exc:
            response = error_response(api, RequestError(422, str(exc)))
        except ClientGone:
            response = Response(status_code=499)  # never reaches the client; counted as such
        _count(state, route, response.status_code, started)
        return response

    return endpoint


def _count(state: ServerState, route: str, status: int, started: float) -> None:
    state.metrics.requests.labels(route, str(status)).inc()
    state.metrics.request_duration.labels(route).observe(time.perf_counter() - started)


def create_app(config: ServerConfig, *, state: ServerState | None = None) -> Starlette:
    """The server as an ASGI app; models load when the app starts (its lifespan)."""
    state = state or ServerState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loader = threading.Thread(target=_load_quietly, args=(state,), name="fastembed-rt-load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            state.close()

    async def health(request: Request) -> Response:
        if state.draining:
            return error_response(Api.TEI, RequestError(503, "the server is shutting down", "Unhealthy"))
        if not state.ready.is_set():
            reason = f"loading failed: {state.load_error}" if state.load_error else "models are still loading"
            return error_response(Api.TEI, RequestError(503, f"not ready: {reason}", "Unhealthy"))
        return Response(status_code=200)

    async def info(request: Request) -> Response:
        try:
            _gate(state, request)
        except RequestError as exc:
            return error_response(Api.TEI, exc)
        cfg = state.config
        first = next(iter(state.models.values()))
        return json_response(
            {
                "model_id": first.describe()["source"] or first.name,
                "model_sha": None,
                "model_dtype": first.model.variant,
                "model_type": {first.task: {}},
                "served_model_name": first.name,
                "max_concurrent_requests": cfg.max_concurrent_requests,
                "max_input_length": first.model.max_seq_length,
                "max_batch_tokens": cfg.max_batch_tokens,
                "max_batch_requests": None,
                "max_client_batch_size": cfg.max_client_batch_size,
                "auto_truncate": cfg.auto_truncate,
                "tokenization_workers": len(state.models),
                "version": __version__,
                "router": "fastembed-rt",
                "models": [served.describe() for served in state.models.values()],
            }
        )

    async def models(request: Request) -> Response:
        try:
            _gate(state, request)
        except RequestError as exc:
            return error_response(Api.OPENAI, exc)
        data = [
            {"id": name, "object": "model", "created": state.started_at, "owned_by": "fastembed-rt"}
            for name in state.models
        ]
        return json_response({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        if not _authorized(state, request):
            return error_response(Api.TEI, RequestError(401, "missing or wrong API key", "Auth"))
        return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        if not _authorized(state, request):
            return error_response(Api.TEI, RequestError(401, "missing or wrong API key", "Auth"))
        return json_response(openapi_document(__version__))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    for path, (handler, api) in HANDLERS.items():
        routes.append(Route(path, _endpoint(state, path, handler, Api(api)), methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = state
    return app


def _load_quietly(state: ServerState) -> None:
    try:
        state.load_models()
    except BaseException:  # kept in state.load_error; /health reports it
        return
