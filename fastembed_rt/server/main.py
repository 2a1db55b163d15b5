"""The server process: ``fastembed-rt serve ARTIFACT [NAME=ARTIFACT ...]`` and ``python -m fastembed_rt.server``.

SIGTERM (and Ctrl-C) drain: ``/health`` and new requests answer 503, uvicorn stops accepting
connections, accepted requests have ``--graceful-timeout`` seconds to finish; then the ones still
waiting for a model get a 503, the workers stop and the process exits 0. A model that fails to load
stops the process with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn

from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP, LongInputs
from fastembed_rt.server.app import create_app
from fastembed_rt.server.config import DEFAULT_CLIENT_BATCH_SIZE, ServedModel, ServerConfig
from fastembed_rt.server.state import ServerState

__all__ = ["add_arguments", "config_from_args", "configure_logging", "main", "run"]

logger = logging.getLogger("fastembed_rt.server")


def _port(value: str | int) -> int:
    """``--port``, or ``$PORT`` as its default (argparse converts a str default only when the option is not given,
    so a bad ``$PORT`` is a usage error of ``serve`` alone, not a crash of every subcommand)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r} (from --port or $PORT)") from None


# text-embeddings-inference reads each of its flags from an environment variable of that name: a TEI deployment's
# settings (API_KEY above all: auth was silently off) carry over, by the name of the ServerConfig field each sets.
# Ours (FASTEMBED_RT_API_KEY) win. Not read: HOSTNAME (every container sets it, and TEI's 0.0.0.0 default is not
# ours) and MAX_CONCURRENT_REQUESTS (TEI counts requests, --max-concurrent-requests counts inputs).
TEI_ENVIRONMENT = {
    "API_KEY": "api_key",
    "MAX_BATCH_TOKENS": "max_batch_tokens",
    "MAX_CLIENT_BATCH_SIZE": "max_client_batch_size",
    "PAYLOAD_LIMIT": "payload_limit",
    "AUTO_TRUNCATE": "auto_truncate",
    "CORS_ALLOW_ORIGIN": "cors_allow_origin",
}


def tei_environment_used(config: ServerConfig) -> list[str]:
    """TEI's variables that set a value ``config`` holds (a flag given instead, or FASTEMBED_RT_API_KEY, wins)."""
    used = []
    for name, field in TEI_ENVIRONMENT.items():
        value = os.environ.get(name, "").strip()
        if not value or (name == "API_KEY" and os.environ.get("FASTEMBED_RT_API_KEY", "").strip()):
            continue
        held = getattr(config, field)
        if name == "AUTO_TRUNCATE":
            same = str(held).lower() == value.lower()
        elif name == "CORS_ALLOW_ORIGIN":
            same = held == _origins(value)
        elif isinstance(held, int):
            try:
                same = held == int(value)
            except ValueError:
                same = False
        else:
            same = str(held).strip() == value
        if same:
            used.append(name)
    return used


def _origins(text: str) -> tuple[str, ...]:
    """``$CORS_ALLOW_ORIGIN``'s origins: comma-separated, as TEI reads it."""
    return tuple(origin.strip() for origin in text.split(",") if origin.strip())


def _whole(variable: str) -> Callable[[str | int], int]:
    """``int`` for a flag whose default may come from TEI's ``variable``: a bad value names both."""

    def convert(value: str | int) -> int:
        try:
            return int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r} (from the flag or ${variable})") from None

    return convert


def _switch(value: str) -> str:
    """``--auto-truncate``'s value (TEI takes the bare flag as true, and any case)."""
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(
            f"expected true or false, got {value!r} (from the flag or $AUTO_TRUNCATE; a bare --auto-truncate takes "
            "the next word as its value: put it after the models, or write --auto-truncate true)"
        )
    return lowered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags (text-embeddings-inference's names where TEI has the knob)."""
    d = ServerConfig(models=())
    parser.add_argument(
        "models",
        nargs="+",
        metavar="[NAME=]ARTIFACT",
        help="artifact directories or hub ids to serve; the first is the default. NAME (default: the directory "
        "name) is what clients pass as `model`",
    )
    parser.add_argument(
        "--host",
        default=d.host,
        help=f"address to listen on (default {d.host}; 0.0.0.0: every IPv4 address; ::, every IPv4 and IPv6 one)",
    )
    parser.add_argument("--port", type=_port, default=_env("PORT", d.port), help="default $PORT or 8080")
    parser.add_argument("--provider", default=d.provider, help="auto, cpu, cuda[:N], tensorrt, openvino[:DEVICE]")
    parser.add_argument("--variant", default=d.variant, help="a variant from each manifest (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the CPUs available)")
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="no log line per request (default: one at info: method, route, status, ms, model, client address)",
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="the hub branch, tag or commit of every model given by hub repo id (default: main); the token is "
        "HF_TOKEN's, the cache $SENTENCE_TRANSFORMERS_HOME when set, else HF_HUB_CACHE's",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="batches of one call run at once on the cpu provider, each on its share of the threads (default: "
        "the largest divisor of the threads up to 4, for graphs up to 256 MB; 1: one batch at a time on all threads)",
    )
    parser.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=d.max_concurrent_requests,
        help="input items admitted at once (queued or running); past it: 429 + Retry-After",
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=_whole("MAX_BATCH_TOKENS"),
        default=_env("MAX_BATCH_TOKENS", d.max_batch_tokens),
        help="padded tokens per graph run",
    )
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="rows per graph run")
    parser.add_argument(
        "--max-client-batch-size",
        type=_whole("MAX_CLIENT_BATCH_SIZE"),
        default=_env("MAX_CLIENT_BATCH_SIZE"),
        help=f"most inputs in one request (422 past it); default {d.max_client_batch_size}, at most "
        "--max-concurrent-requests",
    )
    parser.add_argument(
        "--payload-limit",
        type=_whole("PAYLOAD_LIMIT"),
        default=_env("PAYLOAD_LIMIT", d.payload_limit),
        help="most bytes per request body (413)",
    )
    parser.add_argument(
        "--auto-truncate",
        type=_switch,
        nargs="?",
        const="true",
        default=_env("AUTO_TRUNCATE", "true"),
        help="truncate over-long inputs when a request does not say (false: 422 naming the input; the bare flag: true)",
    )
    parser.add_argument(
        "--long-inputs",
        default=None,
        choices=[p.value for p in LongInputs],
        help="policy for inputs over the model's limit when a request does not say (default: truncate, or error "
        "with --auto-truncate false); chunk pools windows",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=None,
        help=f"tokens windows share (chunk); default {DEFAULT_CHUNK_OVERLAP}, or half a model's window where it does "
        "not fit",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=d.batch_wait_ms,
        help="how long a worker waits for more requests before a run (default 0)",
    )
    parser.add_argument(
        "--api-key",
        # an empty FASTEMBED_RT_API_KEY (a template's unset ${KEY}) leaves TEI's API_KEY its say
        # (read raw, not as `env`: an empty key is said to leave auth off, below)
        default=ours
        if (ours := os.environ.get("FASTEMBED_RT_API_KEY")) and ours.strip()
        else os.environ.get("API_KEY") or ours,
        help="require 'Authorization: Bearer KEY' on every route but the health checks (GET /health, /ping, /) "
        "(default $FASTEMBED_RT_API_KEY, else TEI's $API_KEY; an empty or blank key leaves auth off, with a warning)",
    )
    parser.add_argument(
        "--cors-allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="let web pages of ORIGIN (e.g. https://app.example.com; * for any) call the server from a browser; "
        "repeat for more (default: $CORS_ALLOW_ORIGIN, comma-separated, else none: no CORS headers)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=d.graceful_timeout,
        help=f"seconds SIGTERM waits for accepted requests (default {d.graceful_timeout:g}; fractions too); then the "
        "ones still waiting for a model get 503 and the process exits. 0: do not wait",
    )
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _env(name: str, default: Any = None) -> Any:
    """``$name``, or ``default`` where it is unset or blank (a template's unset ``${KEY}``), as $API_KEY is read."""
    return os.environ.get(name, "").strip() or default


def _served(spec: str) -> ServedModel:
    name, sep, artifact = spec.partition("=")
    if not sep or Path(spec).exists():  # an existing path is one whole, `=` and all (run=3/model)
        artifact = spec
        name = Path(spec.rstrip("/")).name
        if name in ("", ".", ".."):  # `serve .` is named as its folder, not "."
            name = Path(spec).resolve().name or spec
    return ServedModel(name, artifact)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        models=tuple(_served(spec) for spec in args.models),
        host=args.host,
        port=args.port,
        provider=args.provider,
        variant=args.variant,
        intra_op_threads=args.threads,
        streams=args.streams,
        revision=args.revision,
        access_log=not args.no_access_log,
        max_concurrent_requests=args.max_concurrent_requests,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_size=args.max_batch_size,
        max_client_batch_size=(
            args.max_client_batch_size
            if args.max_client_batch_size is not None
            else min(DEFAULT_CLIENT_BATCH_SIZE, max(1, args.max_concurrent_requests))  # 0: its own error
        ),
        payload_limit=args.payload_limit,
        auto_truncate=args.auto_truncate == "true",
        cors_allow_origin=tuple(
            args.cors_allow_origin
            if args.cors_allow_origin is not None
            else _origins(os.environ.get("CORS_ALLOW_ORIGIN", ""))
        ),
        long_inputs=LongInputs(args.long_inputs) if args.long_inputs else None,
        chunk_overlap=args.chunk_overlap,
        batch_wait_ms=args.batch_wait_ms,
        api_key=args.api_key,
        graceful_timeout=args.graceful_timeout,
    )


# After --graceful-timeout, the requests still waiting get their 503; this long more is theirs to be sent before
# uvicorn cancels whatever is left (a client that does not read its answer, say).
ANSWER_GRACE_S = 1.0


class _Server(uvicorn.Server):
    """uvicorn's server, told to mark the app draining when a stop signal arrives, and to answer the requests
    still waiting for a model with a 503 when the graceful timeout ends."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.drain()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.state.config.graceful_timeout, self.state.abandon)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()


def _uvicorn_by_name(record: logging.LogRecord) -> bool:
    """uvicorn logs its lifecycle ("Started server process", "Shutting down") as ``uvicorn.error``: named
    ``uvicorn`` here, as they are no errors."""
    if record.name == "uvicorn.error":
        record.name = "uvicorn"
    return True


def configure_logging(log_level: str = "info", hub: bool = True) -> None:
    """One format for every log line the server prints, each printed once. ``hub``: a served model may come from
    the hub (local artifacts never import huggingface_hub, and start without it)."""
    level = log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Set on the server's own loggers too: basicConfig does nothing where the process configured logging before
    # (a service calling main()), and --log-level was then ignored. The renaming filter sits on uvicorn's logger,
    # not on the handlers, which may be the service's.
    for name in ("fastembed_rt", "uvicorn"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("uvicorn.error").addFilter(_uvicorn_by_name)
    # huggingface_hub gives its loggers a stderr handler of its own when imported: with the one above, every line it
    # logged while fetching a hub id came out twice (raw, then formatted). Imported now (7 ms) to take it off.
    if not hub:
        return
    try:
        import huggingface_hub.utils.logging  # noqa: F401
    except ImportError:
        return
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)


ALL_ADDRESSES_V6 = ("::", "[::]")


def listen_socket(host: str, port: int) -> socket.socket | None:
    """The socket to serve ``host`` on when uvicorn's own would not do: for ``::``, one that takes IPv4 as well.

    uvicorn binds ``::`` through asyncio, which sets ``IPV6_V6ONLY``: such a server answered ``[::1]`` but not
    ``127.0.0.1``, and a dual-stack cluster's IPv4 probes failed. Here ``::`` is every address of both families,
    as nginx's ``[::]:80 ipv6only=off``. On a machine without IPv6 (a container with it turned off) the socket
    binds ``0.0.0.0`` instead and says so. None: uvicorn binds ``host`` itself.

    Raises:
        OSError: the port cannot be bound (in use, no permission).
    """
    if host not in ALL_ADDRESSES_V6:
        return None
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError as exc:  # EAFNOSUPPORT: no IPv6 in this kernel or namespace
        return _ipv4_instead(port, exc)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own sockets
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:  # IPv6 turned off (net.ipv6.conf.all.disable_ipv6)
            return _ipv4_instead(port, exc)
        raise
    return sock


def _ipv4_instead(port: int, why: OSError) -> socket.socket:
    logger.warning("no IPv6 here (%s): listening on every IPv4 address (0.0.0.0) only", why.strerror or why)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def run(config: ServerConfig, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0, or 1 when a model failed to load)."""
    problems = config.check()
    taken = tei_environment_used(config)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if taken:
            print(f"note: TEI's environment variables {', '.join(taken)} set some of those values", file=sys.stderr)
        return 2
    configure_logging(log_level, hub=any(not Path(m.artifact).exists() for m in config.models))
    if "API_KEY" in taken:  # a generic name: a stray one turns auth on, said where --log-level warning shows it
        logger.warning("authentication is on with the key from $API_KEY (TEI's variable; --api-key overrides it)")
    if others := [name for name in taken if name != "API_KEY"]:
        logger.info("TEI's environment variables %s set the values of their flags", ", ".join(others))
    port = _env("PORT")
    if port and _number(port) != config.port:  # PORT=08080 is port 8080
        logger.warning(
            "serving on port %d, not $PORT (%s): a health check that probes $PORT (the fastembed-rt image's does) "
            "reports this server unhealthy; set PORT rather than --port",
            config.port,
            port,
        )
    try:
        sock = listen_socket(config.host, config.port)
    except OSError as exc:
        print(
            f"error: cannot listen on [{config.host.strip('[]')}]:{config.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    if sock is None:  # uvicorn binds it: a host that names no address was its exit 3, the flag unnamed
        try:
            found = socket.getaddrinfo(config.host.strip("[]"), config.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            print(f"error: --host {config.host!r} is no address this machine can listen on ({why})", file=sys.stderr)
            return 2
        # and one it can bind now: uvicorn binds after it started loading the models, and a port in use (or an
        # address not on this machine) was its exit 3 with no line naming the address
        family, kind, proto, _, address = found[0]
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's
                probe.bind(address)
        except OSError as exc:
            print(f"error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if sock is not None:  # uvicorn says where it listens only on sockets it bound itself
        address, port = sock.getsockname()[:2]
        both = sock.family == socket.AF_INET6
        where = f"[{address}]:{port} (every IPv4 and IPv6 address)" if both else f"{address}:{port}"
        logger.info("listening on http://%s", where)
    state = ServerState(config)
    app = create_app(config, state=state)
    uv_config = uvicorn.Config(
        app,
        host=config.host.strip("[]"),  # [::1] as a URL writes it: uvicorn resolves only the bare address
        port=config.port,
        log_level=log_level,
        # uvicorn's own handlers printed its lines without a time, in another format than the server's: its loggers
        # go through the one configure_logging set up instead
        log_config=None,
        access_log=False,
        # uvicorn annotates it int but hands it to asyncio.wait_for, which takes any seconds: 0.5 is 0.5 s (and
        # int() of it was 0, which uvicorn reads as "wait forever").
        timeout_graceful_shutdown=cast(Any, config.graceful_timeout + ANSWER_GRACE_S),
        lifespan="on",
    )
    server = _Server(uv_config, state)

    def watch_loading() -> None:  # a model that cannot load stops the process (and says why)
        while not state.ready.wait(0.2):
            if state.load_error is not None:
                server.should_exit = True
                return

    threading.Thread(target=watch_loading, name="fastembed-rt-watch", daemon=True).start()
    # uvicorn re-raises the stop signal after shutting down, through the handler that was installed
    # before it ran: a no-op one here, so a drained SIGTERM ends the process with exit code 0.
    previous: dict[int, Any] = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=None if sock is None else [sock])
    finally:
        if sock is not None:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = 0
    if state.load_error is not None:
        print(f"error: {state.load_error}", file=sys.stderr)
        code = 1
    if state.left_running:
        # A thread is still inside ONNX Runtime (a graph run past --graceful-timeout, or a model loading): the
        # interpreter's exit would run the engine's C++ destructors under it and abort ("terminate called without
        # an active exception"). Everything this process owes is written, so it ends here, without them.
        logger.warning("exiting while %s still runs in the engine", ", ".join(state.left_running))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastembed-rt serve", description="serve artifacts over HTTP")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(config_from_args(args), args.log_level)
