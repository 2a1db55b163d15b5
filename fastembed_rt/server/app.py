"""The ASGI app: routes, auth, health and draining around the shared ``state.ServerState``.

``create_app(config)`` gives a Starlette app; ``main`` runs it under uvicorn, and each Ray Serve
replica (``fastembed_rt.ray.serve``) mounts the same app over a state it loaded itself. Otherwise models
load in a background thread at startup: ``/health`` answers 503 until every model is loaded and warm,
then 200, and 503 again once SIGTERM starts draining (``ServerState.draining``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from fastembed_rt import __version__
from fastembed_rt.errors import FastEmbedError, InputError
from fastembed_rt.server.config import ServerConfig
from fastembed_rt.server.handlers import HANDLERS, Handler
from fastembed_rt.server.openapi import openapi_document
from fastembed_rt.server.requests import RequestError, parse_body
from fastembed_rt.server.responses import Api, error_response, json_body, json_response, timing_headers
from fastembed_rt.server.state import ANSWERING, ClientGone, Served, ServerState

__all__ = ["ServerState", "create_app"]

logger = logging.getLogger("fastembed_rt.server")
access_logger = logging.getLogger("fastembed_rt.server.access")
# GET routes a load balancer or scraper calls every few seconds: not logged when they pass
_PROBES = ("/health", "/ping", "GET /", "/metrics")
# TEI's model_dtype names of a variant's precision (int8 and int4 weights have none there: named as they are)
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


async def _read_body(request: Request, limit: int) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # a gzip body was read as text: a 400 about surrogates
        raise RequestError(415, f"Content-Encoding {encoding!r} is not supported: send the JSON body uncompressed")
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


def _check_json(request: Request) -> None:
    """A 415 unless the body is declared JSON (as TEI: ``application/json``, or a ``+json`` type). A browser sends
    ``text/plain``, a form or no type from any web page without asking the server first (no CORS preflight): taken
    as JSON, a page elsewhere made a server without an API key do its work."""
    declared = request.headers.get("content-type", "")
    media = declared.partition(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        got = f"got {declared!r}" if declared else "none was given"
        raise RequestError(415, f"send the body as JSON with 'Content-Type: application/json' ({got})")


def _authorized(state: ServerState, request: Request) -> bool:
    key = state.api_key
    if key is None:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _gate(state: ServerState, request: Request) -> None:
    """Auth, then readiness: the checks every route but the health checks passes before its work."""
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
        ANSWERING.set("")
        task = asyncio.current_task()
        if task is not None:
            state.requests_running.add(task)
        try:
            _gate(state, request)
            _check_json(request)
            data = parse_body(await _read_body(request, state.config.payload_limit))
            reply = await handler(state, request, data)
            body = await json_body(reply.payload)
            headers = timing_headers(reply.result, time.perf_counter() - started, reply.characters, reply.provider)
            response = Response(body, media_type="application/json", headers=headers)
        except RequestError as exc:
            response = error_response(api, exc)
        except (InputError, FastEmbedError) as exc:
            response = error_response(api, RequestError(422, str(exc)))
        except (ClientGone, ClientDisconnect):  # gone before its answer, or in the middle of sending its body
            response = Response(status_code=499)  # never reaches the client; counted as such
        except Exception as exc:  # a bug: the client still gets JSON in its API's shape, the log the traceback
            logger.exception("%s failed", route)
            message = f"the server failed on this request ({type(exc).__name__}: {exc}); its log has the traceback"
            response = error_response(api, RequestError(500, message, "Backend"))
        except asyncio.CancelledError:
            if not state.abandoned or task is None:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: the cancel abandon() sent is answered, not pending
                task.uncancel()
            response = error_response(api, state.abandoned_error())
        finally:
            state.requests_running.discard(task)
        _count(state, request, route, response.status_code, started)
        return response

    return endpoint


def _count(state: ServerState, request: Request, route: str, status: int, started: float) -> None:
    """A request's metrics, and its access log line (``fastembed_rt.server.access`` at info; ``--no-access-log``
    turns it off): method, route (a path no route serves: ``unmatched``, then the path, shortened), status,
    milliseconds, the served model, the client's address. Never a body, a header or a key; none for a /health or
    /metrics that answers 200 (probes and scrapes)."""
    seconds = time.perf_counter() - started
    model = ANSWERING.get()
    state.metrics.requests.labels(route, str(status), model).inc()
    state.metrics.request_duration.labels(route, str(status), model).observe(seconds)
    probe = route in _PROBES and status == 200  # a probe or scrape that passes: not a line each
    if state.config.access_log and not probe and access_logger.isEnabledFor(logging.INFO):
        path = route if route != "unmatched" else f"unmatched {request.url.path[:100]!r}"
        client = request.client.host if request.client is not None else "-"
        access_logger.info(
            "%s %s %d %.1f ms model=%s client=%s", request.method, path, status, seconds * 1000, model or "-", client
        )


def _dtype(served: Served) -> str:
    precision = served.model.manifest.variant(served.model.variant).precision.value
    return _DTYPES.get(precision, precision)


def create_app(config: ServerConfig, *, state: ServerState | None = None) -> Starlette:
    """The server as an ASGI app; models load when the app starts (its lifespan)."""
    state = state or ServerState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not state.ready.is_set():  # a Ray Serve replica loads its models before its app starts
            state.start_loading()
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
        model_id, model_sha = first.identity()
        return json_response(
            {
                "model_id": model_id,
                "model_sha": model_sha,
                "model_dtype": _dtype(first),
                "model_type": first.tei_model_type(),
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

    def counted(route: str, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        """A GET route counted in the request metrics as the model routes are (a 401 from a misconfigured scraper
        or load balancer shows in the error rate)."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            ANSWERING.set("")
            response = await handler(request)
            _count(state, request, route, response.status_code, started)
            return response

        return endpoint

    routes = [
        Route(path, counted(label, handler), methods=["GET"])
        for path, label, handler in (
            ("/health", "/health", health),
            # SageMaker's health check and the hub's, as TEI answers them; counted apart from POST /'s requests
            ("/ping", "/ping", health),
            ("/", "GET /", health),
            ("/info", "/info", info),
            ("/v1/models", "/v1/models", models),
            ("/metrics", "/metrics", metrics),
            ("/openapi.json", "/openapi.json", openapi),
            ("/api-doc/openapi.json", "/api-doc/openapi.json", openapi),  # where TEI serves its spec
        )
    ]
    for path, (handler, api) in HANDLERS.items():
        routes.append(Route(path, _endpoint(state, path, handler, Api(api)), methods=["POST"]))
    known = {route.path for route in routes}
    paths = ", ".join(sorted(known))
    # every method a path takes, for a 405's Allow (Starlette names only the first route of the path: GET / hid POST)
    methods: dict[str, set[str]] = {}
    for route in routes:
        methods.setdefault(route.path, set()).update(route.methods or ())

    async def no_route(request: Request, exc: Exception) -> Response:
        """Starlette's 404 and 405 (and any other HTTPException), as JSON in the path's API shape, counted under
        their route, or ``unmatched`` for a path no route serves (any path: the label stays bounded)."""
        started = time.perf_counter()
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        path, method = request.url.path, request.method
        allow = exc.headers.get("Allow") if isinstance(exc, HTTPException) and exc.headers else None
        if allow and path in methods:
            allow = ", ".join(sorted(methods[path]))
        if status == 404:  # the routes listed to those who may call them (as /openapi.json is)
            listed = f"; routes: {paths}" if _authorized(state, request) else ""
            error = RequestError(404, f"no route {path}{listed}", "NotFound")
        elif status == 405 and allow:
            error = RequestError(405, f"{method} is not allowed on {path}; use {allow}")
        else:
            error = RequestError(status, str(getattr(exc, "detail", exc)))
        response = error_response(_api_of(path), error)
        if allow:
            response.headers["Allow"] = allow
        ANSWERING.set("")
        _count(state, request, path if path in known else "unmatched", response.status_code, started)
        return response

    # redirect_slashes off: `/embed/` got a bodyless 307 to a Location built from the client's Host header, where
    # every other unknown path gets its JSON 404 (TEI answers 404 too)
    middleware = []
    if config.cors_allow_origin:  # off by default: no page elsewhere reads an answer (TEI allows any origin)
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_allow_origin),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],  # the OpenAI SDKs send x-stainless-* headers beside these
            )
        )
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: no_route}
    )
    app.router.redirect_slashes = False
    app.state.server = state
    return app


def _api_of(path: str) -> Api:
    """Whose error shape a path speaks when no route answers it."""
    return Api.OPENAI if path.startswith("/v1/") or path == "/embeddings" else Api.TEI
