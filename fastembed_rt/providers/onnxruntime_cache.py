"""ONNX Runtime's optimized graph with its pre-packed weights, saved on a graph's first load and memory-mapped after.

ONNX Runtime optimizes a graph and *pre-packs* its MatMul weights (copies them into the layout its GEMM kernels read)
every time it opens a session, onto the heap. Since 1.21 it can save both: the optimized graph, with the packed
weights in its external data file (``session.save_external_prepacked_constant_initializers``), which later sessions
memory-map instead of packing again. The ``cpu`` engine keeps one such copy per graph, ONNX Runtime version, CPU and
session configuration under ``cache_dir/onnxruntime`` and opens it instead of the artifact's graph:

- the packed weights are file pages, not heap: the engine's second session (its streams), other processes of the
  same model (pool workers, server replicas) and later runs share one copy in the page cache, which the kernel may
  also reclaim; each session packed its own before. all-MiniLM-L6-v2's default (``optimized``) run over the STSb
  test sentences: proportional set 221 against 259 MB, heap 117 against 199 MB (``benchmarks/memory.py``, Intel
  Xeon with AMX, 2 threads, 2026-12-05); two single-threaded processes of it, 138 against 157 MB each;
- a session opens sooner: 41-44 against 49-52 ms for that graph, 1.2 against 1.9 s for 800 MB of MatMul weights;
- the outputs are bit-identical to the artifact graph's (tests hold them equal for fp32 and int8 graphs), and the
  speed is the same (interleaved runs: 818-833 against 800-836 sentences/s).

Packed layouts depend on the CPU's ISA and the ONNX Runtime build, and the optimized graph on the session's config
entries (``session.x64quantprecision`` changes how int8 weights pack), so all of them key a copy, with the graph
(``_source``). A copy costs disk (the graph's weights plus the packed ones: 132 MB for that 91 MB graph) and, once,
the time to build and write it (0.3 s; 4.9 s for the 800 MB). Building one removes the copies of another version of
the graph at the same path, those whose graph is gone and those unused for ``UNUSED_DAYS``; the first two only of
copies built where paths mean what they mean here (``mount_identity``: one cache volume mounted in several
containers, whose model paths name other files or none in each, removed each other's copies), or unused for
``FOREIGN_UNUSED_DAYS`` (a restarted container's superseded copy); builders racing for one
copy (threads, processes) leave one, under the cache's lock. The cache is best-effort: a
directory that cannot be written, or a copy that fails to open, leaves the artifact's graph to run as without it
(logged), never an error. ``ProviderOptions(cache=False)`` turns it off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fastembed_rt.machine import return_freed_heap
from fastembed_rt.providers.base import FOREIGN_UNUSED_DAYS, graph_data_files, judged_here, mount_identity

__all__ = [
    "CACHE_MIN_ONNXRUNTIME",
    "ENTRY_FILE",
    "FOREIGN_UNUSED_DAYS",
    "GRAPH_FILE",
    "LOCK_FILE",
    "UNUSED_DAYS",
    "cached_graph",
]

logger = logging.getLogger("fastembed_rt")
# ONNX Runtime's errors for a graph file it cannot read: a corrupt artifact, which the plain load then names (a
# warning that the cache "could not save" it came first)
_GRAPH_AT_FAULT = ("InvalidProtobuf", "InvalidGraph", "NoModel")

# The first ONNX Runtime that saves pre-packed weights to the external data file (microsoft/onnxruntime#23069).
CACHE_MIN_ONNXRUNTIME = (1, 21)
GRAPH_FILE = "model.onnx"
DATA_FILE = GRAPH_FILE + ".data"
ENTRY_FILE = "entry.json"
LOCK_FILE = ".lock"
SOURCE_FILE = "source.onnx"  # the artifact graph file the copy was built from (small: its weights are external)
# Larger graph files hold their weights themselves: known by path, not hashed at every load.
HASHED_GRAPH_BYTES = 16 << 20
UNUSED_DAYS = 30
_SAVE_ENTRIES = {
    "session.optimized_model_external_initializers_file_name": DATA_FILE,
    # every initializer but scalars in the data file, so that they (and their packed copies) are mapped
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
    "session.save_external_prepacked_constant_initializers": "1",
}


def _source(model_path: Path, graph_id: str | None = None) -> tuple[dict[str, Any], bytes | None]:
    """What tells one graph from another without reading its weights, and the graph file's bytes: the graph file's
    size and CRC-32 (it is small: the weights are in a data file), checked byte for byte against the copy's record
    of it, and the size and modification time of each file beside it whose name extends the graph file's (its
    external data: ``model.onnx.data``, ``model.onnx_data``). Copies made with their times (``shutil.copytree``,
    ``cp -p``, a container layer) share one cached copy; a re-export writes a new one. A graph file over
    ``HASHED_GRAPH_BYTES`` holds its weights itself and is known by its resolved path, size and time instead.
    (CRC-32, not SHA-256: hashlib loads OpenSSL, which a process that only embeds does not, for its cold start.)
    ``graph_id``, the manifest's sha256 of the files, joins them: two exports of one architecture have the same
    graph file and same-size data files, and with equal times (a reproducible image) shared one copy, the second
    running the first one's weights."""
    graph = model_path.resolve()
    stat = graph.stat()
    source: dict[str, Any] = {"name": model_path.name, "size": stat.st_size}
    content = None
    if stat.st_size <= HASHED_GRAPH_BYTES:
        content = graph.read_bytes()
        source["crc32"] = zlib.crc32(content)
    else:
        source.update(path=str(graph), mtime_ns=stat.st_mtime_ns)
    data = graph_data_files(model_path)
    if data:
        source["data"] = data
    if graph_id is not None:
        source["manifest_sha256"] = graph_id
    return source, content


def _digest(value: object) -> str:
    """A folder name for ``value`` (64 bits; the entry file holds the whole key, checked on every lookup)."""
    text = json.dumps(value, sort_keys=True).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def _read_entry(folder: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _complete(folder: Path, entry: Mapping[str, Any]) -> bool:
    """Whether the copy's files are all there at the sizes written (a truncated or half-deleted copy is not)."""
    sizes = entry.get("files")
    if not isinstance(sizes, dict) or GRAPH_FILE not in sizes:
        return False
    try:
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except OSError:
        return False


def _served_paths(entry: Mapping[str, Any]) -> list[str]:
    """The graph files the copy serves: the one it was built from and identical ones loaded since (``also_from``)."""
    also = entry.get("also_from")
    return (
        [str(entry.get("built_from", "")), *(str(p) for p in also if isinstance(p, str))]
        if isinstance(also, list)
        else [str(entry.get("built_from", ""))]
    )


def _still_holds(path: str, source: Mapping[str, Any]) -> bool:
    """Whether the graph at ``path`` is still the one ``source`` describes (it may have been exported again)."""
    try:
        return _source(Path(path), source.get("manifest_sha256"))[0] == source
    except OSError:
        return False


def _note_path(root: Path, folder: Path, path: str) -> None:
    """Add ``path`` to the paths the copy serves (written whole, under the cache's lock); a read-only cache is left
    as it is. Without it, removing or changing the first copy of a graph removed the entry the others ran."""
    with contextlib.suppress(OSError), _replacing(root):
        entry = _read_entry(folder)
        if entry is None or path in _served_paths(entry):
            return
        # paths gone since are dropped (each load of a temporary copy added one)
        entry["also_from"] = [p for p in _served_paths(entry)[1:] if Path(p).exists()] + [path]
        staged = folder / f".{ENTRY_FILE}.{os.getpid()}.{threading.get_ident()}"
        staged.write_text(json.dumps(entry, indent=1))
        os.replace(staged, folder / ENTRY_FILE)


def _serves(folder: Path, key: Mapping[str, Any], content: bytes | None) -> bool:
    """Whether ``folder`` holds a complete copy built for ``key`` from a graph file of exactly ``content``."""
    entry = _read_entry(folder)
    return entry is not None and entry.get("key") == key and _complete(folder, entry) and _same(folder, content)


@contextlib.contextmanager
def _replacing(root: Path) -> Iterator[None]:
    """Hold the cache's lock (``root/.lock``, POSIX ``flock``) while a built copy replaces what is in its place, so
    that no builder removes a copy that another has just completed and a load is opening. Where ``fcntl`` is
    missing (Windows) a folder that exists cannot be renamed onto either, so a race leaves one builder's copy."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        handle = open(root / LOCK_FILE, "a")  # noqa: SIM115 - closed by the with below
    except OSError:
        try:  # a lock file another user made (a cache shared by user ids): flock needs no write access
            handle = open(root / LOCK_FILE)  # noqa: SIM115
        except OSError:  # a read-only cache without one: this process writes nothing there to guard
            yield
            return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _same(folder: Path, content: bytes | None) -> bool:
    """Whether the copy was built from a graph file of exactly these bytes (None: a graph known by path)."""
    if content is None:
        return True
    try:
        return (folder / SOURCE_FILE).read_bytes() == content
    except OSError:
        return False


def _stale(folder: Path, built_from: str, source: Mapping[str, Any]) -> str | None:
    """Why ``folder`` should go, or None: it copies another version of the graph at ``built_from`` (for any CPU or
    configuration), its graph is gone, no load used it for ``UNUSED_DAYS`` (a load touches its entry file), or it
    was left half-written a day ago (by a process that was killed)."""
    building = folder.name.startswith(".building-")
    try:
        idle_days = (time.time() - (folder if building else folder / ENTRY_FILE).stat().st_mtime) / 86400
    except OSError:
        return None
    if building:
        return "left half-written" if idle_days > 1 else None
    entry = _read_entry(folder)
    if entry is None:
        return None  # not ours
    paths, key = _served_paths(entry), entry.get("key") or {}
    # Built in another container sharing this cache's volume (or before a restart of this one: a new mount
    # namespace): its path names something else here, or nothing. Judged by it only once nothing used it for
    # FOREIGN_UNUSED_DAYS (a load marks it used, and a running engine hourly): a redeploy's superseded copy goes then.
    here = judged_here(entry.get("mounts"), idle_days, mount_identity())
    # an identical copy of the graph elsewhere (copytree, an image layer) shares the entry: kept while one still holds
    # this graph (one re-exported since holds another)
    others = [path for path in paths if path != built_from and _still_holds(path, key.get("source") or {})]
    if here and built_from in paths and key.get("source") != source and not others:
        return "another version of its graph was cached"
    if here and not any(Path(path).exists() for path in paths):
        return "its graph is gone"
    if idle_days > UNUSED_DAYS:
        return f"unused for {idle_days:.0f} days"
    return None


def _remove_stale(root: Path, keep: Path, built_from: str, source: Mapping[str, Any]) -> None:
    for folder in root.iterdir():
        reason = _stale(folder, built_from, source) if folder != keep else None
        if reason:
            shutil.rmtree(folder, ignore_errors=True)
            logger.debug("removed the cached ONNX Runtime graph %s: %s", folder, reason)


def cached_graph(
    model_path: Path,
    root: Path,
    config: Mapping[str, str],
    build: Callable[[Path, dict[str, str]], None],
    *,
    onnxruntime_version: str,
    cpu: Mapping[str, Any],
    graph_id: str | None = None,
) -> Path | None:
    """The cached optimized, pre-packed copy of ``model_path`` for this configuration, built if missing; or None.

    ``config``: every session config entry and option that shapes the optimized graph or its packed weights (the
    caller's session options, its disabled optimizers). ``build(path, entries)`` opens a session of
    ``model_path`` that saves its optimized graph to ``path`` with the extra config ``entries``; it is called only
    when no complete copy exists. Returns the copy's graph file, or None when the cache cannot serve (logged).
    """
    try:
        source, content = _source(model_path, graph_id)
    except OSError:
        return None
    key = {"source": source, "onnxruntime": onnxruntime_version, "cpu": dict(cpu), "config": dict(config)}
    folder = root / _digest(key)
    if _serves(folder, key, content):
        with contextlib.suppress(OSError):  # marks the copy used (a read-only cache still serves)
            os.utime(folder / ENTRY_FILE)
        with contextlib.suppress(OSError):
            _note_path(root, folder, str(model_path.resolve()))
        return folder / GRAPH_FILE
    scratch = root / f".building-{os.getpid()}-{threading.get_ident()}"
    try:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
    except OSError as exc:
        logger.warning("ONNX Runtime graph cache disabled for %s: cannot write %s (%s)", model_path, root, exc)
        return None
    built_from = str(model_path.resolve())
    try:
        build(scratch / GRAPH_FILE, dict(_SAVE_ENTRIES))
        # glibc kept the building session's freed heap (16 MB of all-MiniLM-L6-v2's packed weights) in the process
        # that then runs the copy
        return_freed_heap()
        if content is not None:
            (scratch / SOURCE_FILE).write_bytes(content)
        sizes = {p.name: p.stat().st_size for p in scratch.iterdir()}
        record = {"key": key, "built_from": built_from, "mounts": mount_identity(), "files": sizes}
        (scratch / ENTRY_FILE).write_text(json.dumps(record, indent=1))
        with _replacing(root):
            if _serves(folder, key, content):  # another process or thread finished the same copy first: use theirs
                shutil.rmtree(scratch, ignore_errors=True)
            else:  # none, or an incomplete one
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(scratch, folder)
    except Exception as exc:  # ONNX Runtime raises its own types; a full disk raises OSError
        shutil.rmtree(scratch, ignore_errors=True)
        cause = exc.__cause__ or exc
        if type(cause).__name__ in _GRAPH_AT_FAULT:  # the artifact's graph itself: opening it says so, not the cache
            logger.debug("ONNX Runtime graph cache: %s cannot be optimized (%s)", model_path, cause)
            return None
        # ONNX Runtime's own message (a full disk, a read-only folder): not the loader's advice to re-export, which
        # wraps it, since the artifact itself opens (the engine then runs it)
        logger.warning(
            "ONNX Runtime graph cache: could not save the optimized graph of %s into %s (%s); running the artifact's",
            model_path,
            root,
            cause,
        )
        return None
    _remove_stale(root, folder, built_from, source)
    logger.debug("cached ONNX Runtime's optimized, pre-packed graph of %s in %s", model_path, folder)
    return folder / GRAPH_FILE
