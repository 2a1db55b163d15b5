"""``fastembed-rt serve``: an HTTP server speaking text-embeddings-inference's and OpenAI's APIs.

Needs the ``server`` extra (starlette, uvicorn, orjson, prometheus-client); the library never
imports this package. One process serves one or more artifacts of any task::

    HTTP (uvicorn + starlette event loop: read, parse, validate, admit, respond; never tokenizes or runs)
      │ admission (``limits``): permits counted per input item → 429 + Retry-After when full
      ▼
    per-model worker thread (``batcher``): collects inputs across requests → tokenizes them in one
      call → sorts by length, cuts by a padded-token budget → runs the graph (the engine releases
      the GIL) → hands each request exactly its own rows, in its order
      ▼
    response: TEI shapes on TEI routes, OpenAI shapes on /v1/*, timing headers, Prometheus metrics

Modules: ``config`` (flags), ``requests`` (request bodies → typed requests), ``responses`` (bodies
and errors in each API's shape), ``batcher``, ``limits``, ``metrics``, ``state`` (the served models and
their workers), ``handlers`` (one function per route), ``openapi``, ``app`` (routes),
``main`` (the command line and the uvicorn process).
"""

from __future__ import annotations

import sys


def _run_as_main() -> bool:
    """Whether this import is Python locating ``python -m fastembed_rt.server`` (or ``.main``), not another module's
    import of the server package: while it imports the parents of the ``-m`` module, ``sys.argv[0]`` is ``"-m"``, and
    the module's name is in ``sys.orig_argv`` after ``-m`` (or joined to it, ``-mfastembed_rt.server``)."""
    if sys.argv[:1] != ["-m"]:
        return False
    argv = list(getattr(sys, "orig_argv", []))[1:]
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg.startswith("--"):
            return False  # a script or a long option: no -m before it
        letters = arg[1:]
        for j, letter in enumerate(letters):  # flags may be clustered: -um, -Im, -OOm, -Wd
            if letter == "m":
                target = letters[j + 1 :] or (argv[i + 1] if i + 1 < len(argv) else "")
                return target in ("fastembed_rt.server", "fastembed_rt.server.main", "fastembed_rt.server.__main__")
            if letter in "WX":  # the rest of the cluster, or the next argument, is its value
                i += 0 if letters[j + 1 :] else 1
                break
            if letter not in "bBdEhiIOPqsSuvV":
                return False
        i += 1
    return False


try:
    import orjson  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as _exc:
    _missing = f"fastembed-rt serve needs the server extra ({_exc.name or _exc}): pip install 'fastembed-rt[server]'"
    if _run_as_main():  # `python -m fastembed_rt.server`: the CLI's one line, not runpy's traceback
        print(f"error: {_missing}", file=sys.stderr)
        raise SystemExit(2) from None
    raise ImportError(_missing) from _exc

from fastembed_rt.server.app import create_app  # noqa: E402 - after the extra's check
from fastembed_rt.server.config import ServedModel, ServerConfig  # noqa: E402

__all__ = ["ServedModel", "ServerConfig", "create_app"]
