"""The server's settings: what it serves and its limits (text-embeddings-inference's flag names where
TEI has the knob)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastembed_rt.batching import DEFAULT_TOKEN_BUDGET
from fastembed_rt.long_inputs import LongInputs
from fastembed_rt.providers.base import MAX_THREADS

DEFAULT_CLIENT_BATCH_SIZE = 512  # TEI's --max-client-batch-size default

# Longest waits the settings take: past a worker's batch wait of a minute no client is still there, and a far
# larger one (inf) overflowed the worker's timed wait; a day of draining is past any orchestrator's grace period.
MAX_BATCH_WAIT_MS = 60_000.0
MAX_GRACEFUL_TIMEOUT_S = 86_400.0

__all__ = ["ServedModel", "ServerConfig"]


@dataclass(frozen=True)
class ServedModel:
    """One artifact and the name clients use for it (``model`` in requests, ``/v1/models``).

    ``variant``: this model's variant, over the config's (Ray Serve pins the one its driver chose).
    """

    name: str
    artifact: str | Path
    variant: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``fastembed-rt serve`` can be told.

    Args:
        models: what to serve; the first is the default, and for each route the first model of the
            route's task is its default.
        provider / variant / intra_op_threads: how every model is opened (as the library's loader).
        streams: batches of one worker call the ``cpu`` engine runs at once (``ProviderOptions.streams``;
            None: its default).
        revision: the hub branch, tag or commit of every model given by hub repo id (None: main).
        access_log: one log line per request (``fastembed_rt.server.access``, info).
        max_concurrent_requests: input items (texts, pairs) admitted at once, queued or running;
            past it a request gets 429 with ``Retry-After`` at once.
        max_batch_tokens: padded tokens per graph run (the library's token budget).
        max_batch_size: rows per graph run.
        max_client_batch_size: most inputs one request may send (422 past it); None: 512, or
            ``max_concurrent_requests`` where that is smaller (as the CLI's default).
        payload_limit: most bytes of a request body (413 past it).
        auto_truncate: truncate over-long inputs when a request does not say (``truncate``);
            otherwise such an input is a 422 naming its position and token count.
        long_inputs: the policy for over-long inputs when a request does not say (``truncate`` or
            ``long_inputs``); None: ``truncate`` or ``error`` as ``auto_truncate`` says. ``chunk``
            embeds (scores) windows and pools them, as the library's ``long_inputs="chunk"``.
        chunk_overlap: tokens consecutive windows share; None: 32, or half a model's window where 32 does not fit.
        batch_wait_ms: how long a worker waits for more requests before running what it has
            (0: run at once; the benchmark measures the choice).
        api_key: when set, every route but the health checks (GET ``/health``, ``/ping``, ``/``) needs
            ``Authorization: Bearer <key>`` (surrounding whitespace ignored); an empty or blank key is no key, and a
            warning says auth is off.
        cors_allow_origin: the origins whose web pages may call the server from a browser (``*``: any); none by
            default (no CORS headers, so a page elsewhere cannot read an answer).
        graceful_timeout: seconds SIGTERM waits for accepted requests (any fraction; 0: none); then the
            requests still waiting for a model get a 503 and the process exits.
    """

    models: tuple[ServedModel, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    provider: str = "auto"
    variant: str = "auto"
    intra_op_threads: int | None = None
    streams: int | None = None
    revision: str | None = None
    access_log: bool = True
    max_concurrent_requests: int = 512
    max_batch_tokens: int = DEFAULT_TOKEN_BUDGET
    max_batch_size: int = 32
    max_client_batch_size: int = None  # type: ignore[assignment]  # None: resolved in __post_init__
    payload_limit: int = 2_000_000
    auto_truncate: bool = True
    long_inputs: LongInputs | Literal["truncate", "error", "chunk"] | None = None
    chunk_overlap: int | None = None
    batch_wait_ms: float = 0.0
    api_key: str | None = None
    cors_allow_origin: tuple[str, ...] = ()
    graceful_timeout: float = 30.0
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.max_client_batch_size is None:  # a config of max_concurrent_requests=64 alone was refused over 512
            resolved = min(DEFAULT_CLIENT_BATCH_SIZE, max(1, self.max_concurrent_requests))
            object.__setattr__(self, "max_client_batch_size", resolved)
        # the string the library's long_inputs= takes (a config read from YAML); the handlers compare the enum, so a
        # string "error" or "chunk" was read as truncate, silently
        if isinstance(self.long_inputs, str) and self.long_inputs in {policy.value for policy in LongInputs}:
            object.__setattr__(self, "long_inputs", LongInputs(self.long_inputs))

    @property
    def default_long_inputs(self) -> LongInputs:
        """The policy for requests that do not choose one."""
        if self.long_inputs is not None:
            return LongInputs(self.long_inputs)
        return LongInputs.TRUNCATE if self.auto_truncate else LongInputs.ERROR

    def check(self) -> list[str]:
        """Every setting that cannot work, one line each."""
        problems = []
        if not self.models:
            problems.append("no model to serve: pass at least one ARTIFACT")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"model names must be unique; repeated: {', '.join(duplicates)}")
        for model in self.models:
            if not model.name.strip():  # answered, but labelled as no model in metrics and logs
                problems.append(f"model {str(model.artifact)!r} has an empty name: NAME=ARTIFACT needs a NAME")
            if not str(model.artifact).strip():  # `x=` (or `x= path`): served the working directory as x
                problems.append(f"model {model.name!r} names no artifact: NAME=ARTIFACT needs an ARTIFACT")
        for name, value in (
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-batch-size", self.max_batch_size),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--payload-limit", self.payload_limit),
        ):
            if value < 1:
                problems.append(f"{name} must be at least 1, got {value}")
        if self.max_client_batch_size > self.max_concurrent_requests >= 1:  # below 1: its own error, above
            problems.append(
                f"--max-client-batch-size ({self.max_client_batch_size}) is larger than --max-concurrent-requests "
                f"({self.max_concurrent_requests}): such a request could never be admitted"
            )
        if self.long_inputs is not None and not isinstance(self.long_inputs, LongInputs):
            valid = ", ".join(policy.value for policy in LongInputs)
            problems.append(f"--long-inputs must be one of {valid}, got {self.long_inputs!r}")
        if self.chunk_overlap is not None and self.chunk_overlap < 0:
            problems.append(f"--chunk-overlap must not be negative, got {self.chunk_overlap}")
        for name, seconds, most in (
            ("--batch-wait-ms", self.batch_wait_ms, MAX_BATCH_WAIT_MS),
            ("--graceful-timeout", self.graceful_timeout, MAX_GRACEFUL_TIMEOUT_S),
        ):
            # inf stopped the model's worker (its wait overflowed: every request hung, /health 200), nan waited none,
            # and both crashed the shutdown
            if not 0 <= seconds <= most:
                problems.append(f"{name} must be a number from 0 to {most:g}, got {seconds:g}")
        key = (self.api_key or "").strip()
        if any(not " " <= char <= "~" for char in key):  # past ASCII: a 401 for every client, without a word
            problems.append(
                "--api-key (or $FASTEMBED_RT_API_KEY, $API_KEY) must be printable ASCII: HTTP clients send other "
                "characters in a header differently or not at all (httpx and OpenAI's client refuse them)"
            )
        if not 0 <= self.port <= 65535:  # uvicorn would bind the port number modulo 65536 and log the one asked for
            problems.append(f"--port (or $PORT) must be in 0..65535, got {self.port}")
        for name, threads in (("--threads", self.intra_op_threads), ("--streams", self.streams)):
            if threads is not None and not 1 <= threads <= MAX_THREADS:  # past it: refused only once uvicorn ran
                problems.append(f"{name} must be from 1 to {MAX_THREADS}, got {threads}")
        return problems
