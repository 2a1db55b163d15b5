"""The execution-provider contract: one narrow seam between the pipeline and an engine.

An engine is ``run(feeds, output_names) -> dict`` plus ``close()``. What the registry needs to know
about an engine (can it run here, which variants it prefers, how to install it) is a
``ProviderSpec``: data, not code paths elsewhere.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fastembed_rt.errors import NotEnoughMemoryError, ProviderError

__all__ = [
    "CACHE_ENV",
    "FOREIGN_UNUSED_DAYS",
    "MARK_USED_S",
    "SPIN_US",
    "STREAM_MAX_GRAPH_BYTES",
    "ExecutionProvider",
    "ProviderFactory",
    "ProviderOptions",
    "ProviderSpec",
    "UseMark",
    "cache_root",
    "judged_here",
    "memory_short",
    "mount_identity",
    "out_of_memory_running",
]

CACHE_ENV = "FASTEMBED_RT_CACHE"
# ``ProviderOptions.spin_us``'s default. all-MiniLM-L6-v2 on STSb test sentences, batch 32, 2 threads, configs
# interleaved in shared time windows (Zen 4, 2026-12-04). Alone: int8 1,763 sentences/s without spinning, 2,067
# at 10 us, 2,097 with ONNX Runtime's own spin; single-query p50 1.31, 0.92, 0.97 ms (optimized fp32: 1,080,
# 1,086, 1,116 sentences/s; 2.05, 1.80, 1.83 ms). Two processes on the 2 CPUs, sentences/s together: int8 2,142,
# 2,094, 1,475; fp32 1,151, 1,110, 752. 50 us already cost 18 % there (int8 1,759).
SPIN_US = 10
# More threads than any machine has cores for: a typo such as 10**6 made ONNX Runtime start them until the process
# was killed for memory.
MAX_THREADS = 1024
# ``ProviderOptions.streams`` is 1 by default for bigger graph files: a second session holds their weights
# again (all-MiniLM-L6-v2 fp32, 91 MB on disk: +50 MB resident; int8, 24 MB: +20 MB).
STREAM_MAX_GRAPH_BYTES = 256 << 20


@dataclass(frozen=True)
class ProviderOptions:
    """Engine-independent knobs. ``None`` means the provider's documented default.

    Args:
        intra_op_threads: threads inside one operator; default: the CPUs this process may use
            (affinity and cgroup quota, see ``threads.available_cpus``).
        inter_op_threads: threads running independent operators in parallel (ONNX Runtime's parallel execution
            mode, chosen when above 1); default 1.
        device: the device after the ``:`` of a provider name (``"cuda:1"`` → ``"1"``,
            ``"openvino:GPU.0"`` → ``"GPU.0"``); default: the provider's first device.
        allow_fallback: accept an engine that silently runs elsewhere (e.g. CUDA → CPU) instead of
            raising ``ProviderError``; the provider's ``name`` then says what really runs.
        spin_us: how long an idle ONNX Runtime worker busy-waits for the next operator of a call
            before it sleeps (ONNX Runtime 1.26 and later; older ones do not spin); 0: never. Default
            ``SPIN_US``: the next operator of a graph comes within microseconds, and without spinning
            a sleeping worker was woken for each (int8: 1,763 against 2,067 sentences/s, query p50
            1.31 against 0.92 ms); a longer spin steals CPU from whatever shares the machine.
        allow_spinning: ONNX Runtime's own spin instead of ``spin_us`` (up to ~1M pause loops, ~16 ms
            on a Zen CPU, per wait) while a call runs; workers never spin between calls. On a machine
            the model shares it costs a third of the speed (two processes on 2 CPUs, int8: 1,475
            against 2,142 sentences/s together without spinning).
        streams: how many batches of one call the ``cpu`` engine runs at once when the call has at least two
            per stream (``pipeline.MIN_BATCHES_PER_STREAM``), each on ``intra_op_threads // streams`` threads of
            a second session of the graph that the streams share (opened at the first such call: the graph's
            weights once more in memory). Smaller calls run on the first session with every thread, as with
            ``streams=1``. Default (None): ``threads.default_streams`` (2 CPUs: 2 streams of 1 thread) for
            graphs up to ``STREAM_MAX_GRAPH_BYTES`` on disk, else 1. Each batch on its own thread leaves no
            operator waiting for its slowest thread, and the next batch's feeds are built while the others run:
            on 2 CPUs (Zen 5),
            STSb sentences ran 1.08x (fp32) and 1.28x (int8) as fast as one batch at a time on both threads,
            1.07x and 1.13x on AVX2 kernels, and 1.15-1.37x beside a process using 30 % of one CPU
            (``benchmarks/streams.py``).
        cache_dir: where compiled models (OpenVINO), engines (TensorRT) and optimized, pre-packed graphs (ONNX
            Runtime CPU, ``providers.onnxruntime_cache``) are cached; default ``$FASTEMBED_RT_CACHE`` or
            ``~/.cache/fastembed-rt``.
        cache: False: neither read nor write that cache (OpenVINO compiles, ONNX Runtime optimizes and packs the
            weights at every load); TensorRT's engine cache stays on (an engine build takes minutes).
        extra: engine-specific options passed through unchanged (ONNX Runtime session config
            entries for ``cpu``, CUDA / TensorRT provider options, OpenVINO properties).
        graph_id: what the manifest records of the graph's files (their sha256), set when a model opens a variant:
            it keys the engines' caches beside the files' sizes and times, so two artifacts whose files differ only
            inside (the same sizes and times, as reproducible images and ``tar --mtime`` make them) never share a
            cached copy. None for a bare graph file.
    """

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    device: str | None = None
    allow_fallback: bool = False
    spin_us: int = SPIN_US
    allow_spinning: bool = False
    streams: int | None = None
    cache_dir: Path | None = None
    cache: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    graph_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= int(value) <= MAX_THREADS:
                raise ProviderError(
                    f"{name} must be a whole number from 1 to {MAX_THREADS} (0 or None: the default), got {value!r}"
                )
            object.__setattr__(self, name, int(value))  # numpy integers too, as the engines take only int
        for name in ("allow_fallback", "allow_spinning", "cache"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):  # "false" from a YAML or environment string was truthy
                raise ProviderError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if not _whole(self.spin_us, 0):
            raise ProviderError(f"spin_us must be a whole number of microseconds >= 0, got {self.spin_us!r}")
        object.__setattr__(self, "spin_us", int(self.spin_us))
        if self.streams is not None:
            if not _whole(self.streams, 1):
                raise ProviderError(
                    f"streams must be a whole number >= 1 (or None for the default), got {self.streams!r}"
                )
            object.__setattr__(self, "streams", int(self.streams))


def _whole(value: Any, minimum: int) -> bool:
    """An int (a numpy integer too, as the thread counts take) of at least ``minimum``; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and int(value) >= minimum


class ExecutionProvider(Protocol):
    """Runs one graph. ``run`` returns the named outputs as numpy arrays on the host."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(self, model_path: Path, options: ProviderOptions) -> ExecutionProvider: ...


@dataclass(frozen=True)
class ProviderSpec:
    """A registry entry: how to open an engine and what it needs.

    Args:
        name: the provider name users pass (``"cpu"``, ``"cuda"``, ...).
        open: opens a graph file; imports its engine only when called.
        unavailable: why this provider cannot run here (not installed, no device), or None.
        install: the command that installs it.
        formats: variant formats it runs (``"onnx"``, ``"openvino"``).
        auto_formats: ``provider="auto"`` considers it only for artifacts with a variant in one of
            these formats.
        preferred_variants: variant names ``variant="auto"`` tries, in order.
        pool_devices: provider names for one worker each when a multi-process pool is started
            without ``target_devices``.
        on_cpu: whether it runs on the CPU for a device (None: the default one), so that the
            manifest's CPU speed records choose its ``variant="auto"`` (``fastembed_rt.speed``).
        torch_device: the sentence-transformers (torch) device type it runs on when not on the CPU
            (``"cuda"`` for cuda and tensorrt; device index = the provider's device), or None.
    """

    name: str
    open: ProviderFactory
    unavailable: Callable[[], str | None]
    install: str
    formats: tuple[str, ...]
    auto_formats: tuple[str, ...]
    preferred_variants: tuple[str, ...]
    pool_devices: Callable[[], list[str]]
    on_cpu: Callable[[str | None], bool] = lambda device: False
    torch_device: str | None = None


def cache_root(cache_dir: Path | None, engine: str) -> Path:
    """``cache_dir/engine``; default ``$FASTEMBED_RT_CACHE`` or ``$XDG_CACHE_HOME``/``~/.cache`` + ``fastembed-rt``.

    Raises:
        OSError: no folder can be named: no ``$HOME`` and no home for the user (a container run as a user id that
            has no passwd entry), which the caches take as a folder they cannot write.
    """
    try:
        if cache_dir is None:
            env = os.environ.get(CACHE_ENV)
            if env:
                cache_dir = Path(env)
            else:
                cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastembed-rt"
        return Path(cache_dir).expanduser() / engine
    except (RuntimeError, KeyError) as exc:  # Path.home(): "Could not determine home directory"
        raise OSError(f"no cache folder for {engine}: {exc} (no $HOME); set ${CACHE_ENV} or HOME") from None


# How ONNX Runtime, OpenVINO and the C library say an allocation failed (an address-space or cgroup limit).
_MEMORY_SHORT = ("bad_alloc", "cannot allocate memory", "out of memory", "failed to allocate")


def memory_short(exc: BaseException) -> bool:
    """Whether an engine's error is an allocation that failed, which no file or device is to blame for."""
    return isinstance(exc, MemoryError) or any(mark in str(exc).lower() for mark in _MEMORY_SHORT)


def out_of_memory_running(engine: str, feeds: dict[str, np.ndarray], exc: BaseException) -> NotEnoughMemoryError:
    """The error for a graph run whose allocation failed (``memory_short``), naming the batch's shape."""
    shape = "x".join(str(n) for n in next(iter(feeds.values())).shape) if feeds else "?"
    return NotEnoughMemoryError(
        f"{engine} ran out of memory on a batch of {shape} tokens ({exc}); pass a smaller batch_size, or raise the "
        "process's memory limit"
    )


# An engine caches' entry built where the paths it records mean something else (another container sharing the
# cache's volume, or this one before a restart: a new mount namespace) is judged by them only once nothing used it
# for this many days.
FOREIGN_UNUSED_DAYS = 7
# How often a running engine marks the cache entry it maps used (``UseMark``).
MARK_USED_S = 3600.0


def judged_here(recorded_mounts: object, idle_days: float, here: str | None) -> bool:
    """Whether a cache entry's recorded graph path may be judged (gone, or holding another version) by a process
    that sees paths as ``here`` (``mount_identity``): an entry recorded without mounts, recorded here, or unused for
    ``FOREIGN_UNUSED_DAYS``."""
    return recorded_mounts in (None, here) or idle_days > FOREIGN_UNUSED_DAYS


class UseMark:
    """Marks a cache entry file used while its engine runs, at most once an ``interval``: the caches' sweeps judge
    an entry by when it was last used (a server that loaded its copy once and ran for days looked unused to the
    other processes sharing the cache, which could remove the file it maps). ``path`` None: nothing to mark."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._at = time.monotonic()

    def touch(self, interval: float) -> None:
        if self.path is not None and time.monotonic() - self._at > interval:
            self._at = time.monotonic()
            with contextlib.suppress(OSError):  # a read-only cache
                os.utime(self.path)


def mount_identity() -> str | None:
    """Which file system tree this process sees paths in: the host name and the mount namespace (``None`` where
    there is no ``/proc``). Caches shared between containers (one volume mounted in several) record it beside the
    graph path an entry was built from: only a process that sees the same tree can tell that path is gone or
    holds another graph; in another container the path names something else or nothing."""
    try:
        return f"{os.uname().nodename}/{os.readlink('/proc/self/ns/mnt')}"
    except (OSError, AttributeError):  # AttributeError: no os.uname (Windows)
        return None


def graph_data_files(model_path: Path) -> dict[str, dict[str, int]]:
    """The files beside a graph file that may hold its weights, by name, with their size and modification time:
    every file whose name extends the graph file's (ONNX external data: ``model.onnx.data``, ``model.onnx_data``)
    and an OpenVINO IR's ``.bin``. Links are followed (a hub snapshot's files link to blobs) but the folder is the
    graph's own. The engine caches key their copies by these, without reading the weights."""
    files: dict[str, dict[str, int]] = {}
    ir_weights = model_path.with_suffix(".bin").name if model_path.suffix == ".xml" else None
    for entry in os.scandir(model_path.parent):
        extends = entry.name != model_path.name and entry.name.startswith(model_path.name)
        if (extends or entry.name == ir_weights) and entry.is_file():
            stat = entry.stat()
            files[entry.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return files
