"""Response bodies and headers in each API's own shape.

Errors: ``{"error": message, "error_type": type}`` on text-embeddings-inference's routes, and
``{"error": {"message", "type", "param", "code"}}`` on OpenAI's (``/v1/*`` and ``/embeddings``).
Timing headers as TEI sends them (milliseconds): ``x-compute-time``, ``x-total-time``,
``x-tokenization-time``, ``x-queue-time``, ``x-inference-time``, plus ``x-compute-tokens`` and
``x-compute-characters``.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from starlette.responses import Response

from fastembed_rt.server.batcher import JobResult
from fastembed_rt.server.requests import RequestError

__all__ = ["Api", "error_response", "json_response", "timing_headers"]


class Api(str, enum.Enum):
    """Whose error shape a route speaks."""

    TEI = "tei"
    OPENAI = "openai"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``payload`` (numpy arrays included) as a JSON response, serialized by orjson."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(api: Api, error: RequestError) -> Response:
    """The error body of ``api`` for ``error``, with ``Retry-After`` on a 429."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    if api is Api.OPENAI:
        payload: dict[str, Any] = {
            "error": {
                "message": error.message,
                "type": _OPENAI_TYPES.get(error.status, "server_error"),
                "param": None,
                "code": error.status,
            }
        }
    else:
        payload = {"error": error.message, "error_type": error.error_type}
    return json_response(payload, error.status, headers)


def timing_headers(result: JobResult | None, total_s: float, characters: int, compute_type: str) -> dict[str, str]:
    """TEI's timing headers of one request (``result``: its job, None for work done on the loop)."""

    def ms(seconds: float) -> str:
        return str(round(seconds * 1000, 3))

    timings = result.timings if result is not None else None
    return {
        "x-compute-type": compute_type,
        "x-compute-time": ms(total_s),
        "x-total-time": ms(total_s),
        "x-compute-characters": str(characters),
        "x-compute-tokens": str(result.tokens if result is not None else 0),
        "x-tokenization-time": ms(timings.tokenize_s if timings else 0.0),
        "x-queue-time": ms(timings.queue_s if timings else 0.0),
        "x-inference-time": ms(timings.inference_s if timings else 0.0),
    }
