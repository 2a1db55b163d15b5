"""Response bodies and headers in each API's own shape.

Errors: ``{"error": message, "error_type": type}`` on text-embeddings-inference's routes, and
``{"error": {"message", "type", "param", "code"}}`` on OpenAI's (``/v1/*`` and ``/embeddings``).
Timing headers as TEI sends them (milliseconds): ``x-compute-time``, ``x-total-time``,
``x-tokenization-time``, ``x-queue-time``, ``x-inference-time``, plus ``x-compute-tokens`` and
``x-compute-characters``. A large body (``json_body``) is encoded in a worker thread, in pieces.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from fastembed_rt.server.batcher import JobResult
from fastembed_rt.server.requests import RequestError

__all__ = ["Api", "error_response", "json_body", "json_response", "timing_headers"]


class Api(str, enum.Enum):
    """Whose error shape a route speaks."""

    TEI = "tei"
    OPENAI = "openai"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}
# OpenAI's ``code`` is a string or null (clients compare it with e.g. "invalid_api_key"), never the HTTP status.
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``payload`` (numpy arrays included) as a JSON response, serialized by orjson."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


# orjson holds the GIL for a whole call: one call on the 256 × 256-token matrices of a long /embed_all (25 M
# floats, 268 MB) stalled every other thread 1.45 s; calls of at most this many values each stall it ~2 ms.
VALUES_PER_PIECE = 1 << 16
_DEPTH = 3  # objects and arrays split this deep: OpenAI's {"data": [{"embedding": row}]} reaches its rows


async def json_body(payload: Any) -> bytes:
    """``payload`` as JSON bytes (``orjson.dumps`` with numpy): at once on the event loop when it holds fewer than
    about ``VALUES_PER_PIECE`` values, else in a worker thread, piece by piece, so the loop keeps serving meanwhile."""
    if _estimate(payload, _DEPTH) < VALUES_PER_PIECE:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return await run_in_threadpool(lambda: b"".join(_pieces(payload, _DEPTH)))


def _estimate(value: Any, depth: int) -> int:
    """About how many values ``value`` holds, from a few of its items: an array its size, an object the sum of its
    values, a list its length times the larger of its first and last items (one response's rows are alike),
    ``depth`` containers deep (below that, one value)."""
    if isinstance(value, np.ndarray):
        return int(value.size)
    if depth == 0 or not value or not isinstance(value, (list, dict)):
        return 1
    if isinstance(value, dict):
        return sum(_estimate(item, depth - 1) for item in value.values())
    return len(value) * max(_estimate(value[0], depth - 1), _estimate(value[-1], depth - 1))


def _pieces(value: Any, depth: int) -> Iterator[bytes]:
    """The bytes of ``orjson.dumps(value)``, from calls of about ``VALUES_PER_PIECE`` values at most: an array
    (C-contiguous, as orjson needs) in blocks of rows, objects and lists item by item, ``depth`` levels deep."""
    if _estimate(value, depth) < VALUES_PER_PIECE:
        yield orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    elif isinstance(value, np.ndarray):
        step = max(1, VALUES_PER_PIECE * len(value) // value.size)
        yield b"["
        for start in range(0, len(value), step):
            block = orjson.dumps(value[start : start + step], option=orjson.OPT_SERIALIZE_NUMPY)
            yield (b"," if start else b"") + block[1:-1]
        yield b"]"
    elif isinstance(value, dict):
        yield b"{"
        for i, (key, item) in enumerate(value.items()):
            yield (b"," if i else b"") + orjson.dumps(key) + b":"
            yield from _pieces(item, depth - 1)
        yield b"}"
    else:
        # Small items are written in runs of about VALUES_PER_PIECE values, one call each: a call per item (a
        # /tokenize row of 380 k token objects) cost 4 kB of heap per call's bytes, 1.6 GB for a 27 MB body.
        yield b"["
        run: list[Any] = []
        size, written = 0, False
        for item in value:
            count = _estimate(item, depth - 1)
            if run and (size + count > VALUES_PER_PIECE or count >= VALUES_PER_PIECE):
                yield (b"," if written else b"") + orjson.dumps(run, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
                run, size, written = [], 0, True
            if count >= VALUES_PER_PIECE:
                if written:
                    yield b","
                yield from _pieces(item, depth - 1)
                written = True
            else:
                run.append(item)
                size += count
        if run:
            yield (b"," if written else b"") + orjson.dumps(run, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        yield b"]"


def error_response(api: Api, error: RequestError) -> Response:
    """The error body of ``api`` for ``error``, with ``Retry-After`` on a 429."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    if api is Api.OPENAI:
        payload: dict[str, Any] = {
            "error": {
                "message": error.message,
                "type": _OPENAI_TYPES.get(error.status, "server_error"),
                "param": None,
                "code": error.code or _OPENAI_CODES.get(error.status),
            }
        }
    else:
        payload = {"error": error.message, "error_type": error.error_type}
    return json_response(payload, error.status, headers)


def timing_headers(result: JobResult | None, total_s: float, characters: int, compute_type: str) -> dict[str, str]:
    """TEI's timing headers of one request, in whole milliseconds as TEI sends them (``as_millis``: clients parse
    them as integers). ``result``: its model worker's job; None for work done elsewhere (/tokenize in a thread),
    whose token count and stage times no worker measured: those headers are left out rather than sent as 0."""

    def ms(seconds: float) -> str:
        return str(int(seconds * 1000))

    headers = {
        "x-compute-type": compute_type,
        "x-compute-time": ms(total_s),
        "x-total-time": ms(total_s),
        "x-compute-characters": str(characters),
    }
    if result is not None:
        timings = result.timings
        headers.update(
            {
                "x-compute-tokens": str(result.tokens),
                "x-tokenization-time": ms(timings.tokenize_s),
                "x-queue-time": ms(timings.queue_s),
                "x-inference-time": ms(timings.inference_s),
            }
        )
    return headers
