"""ONNX Runtime engines: ``cpu`` (CPU EP), ``cuda`` (CUDA EP with IO binding) and ``tensorrt`` (TensorRT EP).

ONNX Runtime silently drops an execution provider it cannot use (not compiled in, no device, driver
mismatch) and runs on the CPU instead. Every engine here asks the session which providers it really
got and raises ``ProviderError`` unless the caller passed ``allow_fallback=True``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import threading
import warnings
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import MODEL_CLOSED, ArtifactError, NotEnoughMemoryError, ProviderError
from fastembed_rt.machine import this_cpu
from fastembed_rt.providers.base import (
    MARK_USED_S,
    STREAM_MAX_GRAPH_BYTES,
    ProviderOptions,
    UseMark,
    cache_root,
    graph_data_files,
    memory_short,
    out_of_memory_running,
)
from fastembed_rt.providers.threads import available_cpus, default_streams

__all__ = [
    "GPU_INSTALL",
    "OnnxRuntimeCPU",
    "OnnxRuntimeCUDA",
    "cuda_device_count",
    "cuda_unavailable",
    "onnxruntime_version",
    "session_options",
    "tensorrt_unavailable",
]

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
X64_QUANT_PRECISION = "session.x64quantprecision"
_THREADING_ENTRIES = ("session.intra_op.", "session.inter_op.", "session.force_spinning_stop")
logger = logging.getLogger("fastembed_rt")
# onnxruntime-gpu in place of onnxruntime, never beside it: both install into one `onnxruntime` folder, one's files
# over the other's (seen: a `[gpu]` extra gave onnxruntime 1.32 beside onnxruntime-gpu 1.31, and the CPU build
# loaded, without CUDA). Hence no such extra: an extra adds a package, it cannot take one away. Removing onnxruntime
# after installing onnxruntime-gpu would delete files the two share, hence this order.
GPU_INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
_GPU_HINT = f"install onnxruntime-gpu in place of onnxruntime ({GPU_INSTALL}) and an NVIDIA driver"


def cuda_device_count() -> int:
    """CUDA devices visible to this process (honours ``CUDA_VISIBLE_DEVICES``); 0 without a driver.

    Asks the driver library directly, so it needs neither torch nor a CUDA toolkit.
    """
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def _missing_ep(ep: str) -> str | None:
    import onnxruntime as ort

    if ep not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no {ep}, only {', '.join(ort.get_available_providers())}"
    return None


def cuda_unavailable() -> str | None:
    """Why the ``cuda`` provider cannot run here, or None."""
    reason = _missing_ep(CUDA_EP)
    if reason is None and cuda_device_count() == 0:
        reason = "no CUDA device is visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)"
    return reason


def tensorrt_unavailable() -> str | None:
    """Why the ``tensorrt`` provider cannot run here, or None."""
    return _missing_ep(TENSORRT_EP) or cuda_unavailable()


def session_options(options: ProviderOptions) -> Any:
    """The ``onnxruntime.SessionOptions`` every ONNX Runtime engine here starts from (``OnnxRuntimeCPU`` says
    why each is set), for tools that must open a graph exactly as the engine does (``benchmarks/profile_encode.py``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads or available_cpus()
    so.inter_op_num_threads = options.inter_op_threads or 1
    # ONNX Runtime runs operators side by side only in its parallel mode: inter_op_threads above 1 asks for it
    # (in sequential mode the setting did nothing; a transformer's operators mostly wait on each other)
    parallel = so.inter_op_num_threads > 1
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Memory patterns are planned per input shape; with a new (batch, sequence) shape on most calls
    # they keep one plan per shape alive: RSS +282 MB over 200 random batches here, +65 MB without.
    so.enable_mem_pattern = False
    for key, value in session_config(options).items():
        if key not in options.extra:  # left to the caller, who sets it (ONNX Runtime warns on every overwrite)
            so.add_session_config_entry(key, value)
    return so


def session_config(options: ProviderOptions) -> dict[str, str]:
    """The session config entries ``session_options`` sets (``options.extra`` not included)."""
    # Spinning: ONNX Runtime's own (allow_spinning), bounded to spin_us where this ONNX Runtime can bound it,
    # else none (ProviderOptions says why).
    bounded = options.spin_us > 0 and onnxruntime_version() >= (1, 26)
    entries: dict[str, str] = {}
    for pool in ("intra_op", "inter_op"):
        entries[f"session.{pool}.allow_spinning"] = "1" if options.allow_spinning or bounded else "0"
        if bounded and not options.allow_spinning:
            entries[f"session.{pool}.spin_duration_us"] = str(options.spin_us)
    # Spinning between calls kept 0.6 of a core busy in an idle process here, stolen from its neighbours.
    entries["session.force_spinning_stop"] = "1"
    # ONNX Runtime's u8 × s8 GEMM saturates pairs of products on x86 CPUs without VNNI: the int8 variant's
    # MatMulInteger graph (export.smoothquant) scored min cosine 0.9826 on those kernels against 0.9906 on
    # VNNI. This option runs its weights as u8 × u8, whose products are exact, so every CPU computes the
    # numbers the exporter validated. Not on VNNI CPUs, where ORT would convert as well and ran that graph
    # at 1.05× fp32 instead of 1.5–1.6×. ORT leaves weights within [-64, 64] signed (they cannot saturate):
    # the int8-avx2 variant's, which so keep the fast u8 × s8 kernel.
    if this_cpu().saturates_int8_products:
        entries[X64_QUANT_PRECISION] = "1"
    return entries


def graph_bytes(model_path: Path) -> int:
    """Bytes of a graph file and its external data file beside it (``model.onnx.data``), if any."""
    data = model_path.with_name(model_path.name + ".data")
    return model_path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def onnxruntime_version(text: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ONNX Runtime's version (or of ``text``: ``1.32.0``, ``1.27rc1``, ``1.26.0.dev1``)."""
    if text is None:
        import onnxruntime as ort

        text = ort.__version__
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _open_session(model_path: Path, so: Any, providers: list[Any], disabled_optimizers: tuple[str, ...] = ()) -> Any:
    import onnxruntime as ort

    try:
        with warnings.catch_warnings():
            # ONNX Runtime warns and drops a provider it lacks; the caller checks what it got instead.
            warnings.simplefilter("ignore")
            return ort.InferenceSession(
                str(model_path),
                sess_options=so,
                providers=providers,
                disabled_optimizers=list(disabled_optimizers) or None,
            )
    except Exception as exc:  # onnxruntime raises its own non-exported exception types
        if memory_short(exc):  # not the file's fault: the artifact (or the cache's copy of it) is kept
            raise NotEnoughMemoryError(
                f"not enough memory to load {model_path} with ONNX Runtime {ort.__version__} ({exc}); raise the "
                "process's memory limit or free memory"
            ) from exc
        raise ArtifactError(
            f"{model_path} could not be loaded by ONNX Runtime {ort.__version__} ({exc}); the file is corrupt "
            "or from a newer exporter: re-create the artifact with `fastembed-rt export MODEL OUT_DIR`"
        ) from exc


def _run(session: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    try:
        return dict(zip(output_names, session.run(output_names, feeds)))
    except Exception as exc:  # onnxruntime raises its own non-exported exception types
        if memory_short(exc):
            raise out_of_memory_running("ONNX Runtime", feeds, exc) from exc
        raise


def _files_identity(graph: Path) -> tuple[tuple[int, int, int], dict[str, dict[str, int]]] | None:
    """Inode, size and modification time of ``graph``, and its weights files as the engine caches know them
    (``graph_data_files``); None when the graph is gone."""
    try:
        stat = graph.stat()
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns), graph_data_files(graph)
    except OSError:
        return None


class _OnnxRuntimeSession:
    """What every ONNX Runtime engine shares: a session, its names, ``run`` and ``close``."""

    name = "cpu"
    _session: Any

    def _bind_names(self, session: Any) -> None:
        self._session = session
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.session_providers: tuple[str, ...] = tuple(session.get_providers())

    def _live_session(self) -> Any:
        if self._session is None:
            raise ProviderError(MODEL_CLOSED)
        return self._session

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        return _run(self._live_session(), feeds, output_names)

    def close(self) -> None:
        self._session = None


class OnnxRuntimeCPU(_OnnxRuntimeSession):
    """An ``onnxruntime.InferenceSession`` on ``CPUExecutionProvider``.

    Defaults (each overridable through ``ProviderOptions``): intra-op threads = CPUs this process may
    use (affinity and cgroup quota), inter-op 1, sequential execution, full graph optimisation,
    memory patterns off (shapes vary per call), workers spin at most ``spin_us`` (10 us) for the next
    operator of a call and never between calls, and no SkipLayerNormalization fusion (see
    ``DISABLED_OPTIMIZERS``). ``options.extra`` holds further session config entries, e.g.
    ``{"session.set_denormal_as_zero": "1"}``. A call of several batches runs ``streams`` of them at once
    (``submit``; ``ProviderOptions.streams`` says when and why).
    """

    name = "cpu"
    # ONNX Runtime 1.32's CPU SkipLayerNormalization kernel is slower than the Add + LayerNormalization
    # it replaces: all-MiniLM-L6-v2 on STSb sentences here ran 992 sentences/s with the fusion and
    # 1,127 without (2 threads, same graph, same run).
    DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

    def __init__(self, model_path: Path, options: ProviderOptions) -> None:
        session, self.graph_file = self._open(model_path, options)
        used = session.get_providers()
        if CPU_EP not in used:  # pragma: no cover - CPU EP is always compiled in
            raise ProviderError(f"ONNX Runtime did not give the CPU execution provider; got {used}")
        self.intra_op_threads = session.get_session_options().intra_op_num_threads
        self._bind_names(session)
        streams = options.streams
        if streams is None:
            small = graph_bytes(model_path) <= STREAM_MAX_GRAPH_BYTES
            streams = default_streams(self.intra_op_threads) if small else 1
        self.streams = streams
        self.stream_threads = max(1, self.intra_op_threads // streams)
        self._stream_options = replace(options, intra_op_threads=self.stream_threads)
        self._model_path = model_path
        # the files the session runs, as they were when it opened: the streams' session opens them again only if
        # they are still those (a re-export or a cache clean-up in between would give it other weights)
        self._graph_identity = _files_identity(self.graph_file)
        self._stream_session: Any = None
        self._stream_pool: ThreadPoolExecutor | None = None
        self._stream_lock = threading.Lock()
        from fastembed_rt.providers.onnxruntime_cache import ENTRY_FILE

        # the cache's copy this engine maps, marked used while calls run
        self._use = UseMark(None if self.graph_file == model_path else self.graph_file.parent / ENTRY_FILE)

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        self._use.touch(MARK_USED_S)
        return super().run(feeds, output_names)

    @classmethod
    def _options(cls, options: ProviderOptions) -> Any:
        """The engine's session options, then ``options.extra``'s config entries."""
        so = session_options(options)
        for key, value in options.extra.items():
            so.add_session_config_entry(str(key), str(value))
        return so

    @classmethod
    def _open(cls, model_path: Path, options: ProviderOptions) -> tuple[Any, Path]:
        """A CPU session of the graph and the graph file it runs: the cached optimized, pre-packed copy
        (``onnxruntime_cache``) unless ``options.cache`` is off or the cache cannot serve, else the artifact's."""
        try:
            return cls._open_graph(model_path, options)
        except ArtifactError as exc:
            if options.extra and cls._opens_without_extra(model_path, options):  # the caller's option, not the file
                raise ProviderError(
                    f"ONNX Runtime refused the session config entries of options.extra "
                    f"{ {str(k): str(v) for k, v in options.extra.items()} } ({exc.__cause__ or exc})"
                ) from exc
            raise

    @classmethod
    def _opens_without_extra(cls, model_path: Path, options: ProviderOptions) -> bool:
        """Whether the graph opens with the engine's own options alone (a failure's cause was then ``extra``)."""
        import onnxruntime as ort

        so = session_options(replace(options, extra={}))
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # opening is the question, fast
        try:
            _open_session(model_path, so, [CPU_EP])
        except (ArtifactError, NotEnoughMemoryError):
            return False
        return True

    @classmethod
    def _open_graph(cls, model_path: Path, options: ProviderOptions) -> tuple[Any, Path]:
        import onnxruntime as ort

        cached = cls._cached(model_path, options) if options.cache else None
        if cached is not None:
            so = cls._options(options)
            # Optimized when it was saved; what the level would run again is done.
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return _open_session(cached, so, [CPU_EP]), cached
            except ArtifactError as exc:
                logger.warning(
                    "ONNX Runtime graph cache: %s does not open (%s); removed, running %s", cached, exc, model_path
                )
                shutil.rmtree(cached.parent, ignore_errors=True)
        return _open_session(model_path, cls._options(options), [CPU_EP], cls.DISABLED_OPTIMIZERS), model_path

    @classmethod
    def _cached(cls, model_path: Path, options: ProviderOptions) -> Path | None:
        import onnxruntime as ort

        from fastembed_rt.providers.onnxruntime_cache import CACHE_MIN_ONNXRUNTIME, cached_graph

        if onnxruntime_version() < CACHE_MIN_ONNXRUNTIME:
            return None
        entries = {**session_config(options), **{str(k): str(v) for k, v in options.extra.items()}}
        # Threading entries change how a graph runs, not what ONNX Runtime makes of it: sessions that differ
        # only in them (the engine's streams) share one copy.
        config = {k: v for k, v in entries.items() if not k.startswith(_THREADING_ENTRIES)}
        config["disabled_optimizers"] = ",".join(cls.DISABLED_OPTIMIZERS)

        def build(path: Path, save_entries: dict[str, str]) -> None:
            so = cls._options(options)
            so.optimized_model_filepath = str(path)
            for key, value in save_entries.items():
                so.add_session_config_entry(key, value)
            _open_session(model_path, so, [CPU_EP], cls.DISABLED_OPTIMIZERS)

        try:
            root = cache_root(options.cache_dir, "onnxruntime")
        except OSError as exc:
            logger.warning("ONNX Runtime graph cache disabled for %s: %s", model_path, exc)
            return None
        return cached_graph(
            model_path,
            root,
            config,
            build,
            onnxruntime_version=ort.__version__,
            cpu=this_cpu().to_record(),
            graph_id=options.graph_id,
        )

    def submit(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> Future[dict[str, np.ndarray]]:
        """Run ``feeds`` on one of ``streams`` threads, on the session they share; for calls of several batches
        (``Pipeline.run``). That session and the threads start at the first call."""
        self._use.touch(MARK_USED_S)
        with self._stream_lock:  # held while submitting: a close in between cannot shut the executor under it
            self._live_session()
            if self._stream_pool is None:
                self._stream_session = self._open_stream_session()
                self._stream_pool = ThreadPoolExecutor(self.streams, thread_name_prefix="fastembed-rt-stream")
                _STREAMING.add(self)
            return self._stream_pool.submit(_run, self._stream_session, feeds, output_names)

    def _open_stream_session(self) -> Any:
        """A session of the graph file the engine runs, with the streams' threads; the engine's own session (which
        runs calls from several threads as well) when that file changed or went since the engine opened it."""
        import onnxruntime as ort

        graph = self.graph_file
        if _files_identity(graph) == self._graph_identity:
            options = self._options(self._stream_options)
            disabled: tuple[str, ...] = self.DISABLED_OPTIMIZERS
            if graph != self._model_path:  # the cache's copy: optimized when it was saved, as in ``_open``
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                disabled = ()
            try:
                return _open_session(graph, options, [CPU_EP], disabled)
            except (ArtifactError, NotEnoughMemoryError) as exc:  # a second session is an optimisation: the first runs
                reason = str(exc)
        else:
            reason = "it changed or was removed since the model loaded (a re-export or a cache clean-up)"
        logger.warning("%s: streams run on the loaded session: %s", graph, reason)
        return self._live_session()

    def close(self) -> None:
        # Closed first, under the lock: a call of another thread then submits nothing more (it opened a new stream
        # session and executor on the closing engine when the session was dropped after the executor's shutdown).
        with self._stream_lock:
            pool, self._stream_pool, self._stream_session = self._stream_pool, None, None
            super().close()
        if pool is not None:  # batches queued by a call still running are cancelled: it raises ProviderError
            pool.shutdown(wait=True, cancel_futures=True)


# Engines whose streams have started, for ``_forget_streams_in_child``.
_STREAMING: weakref.WeakSet[OnnxRuntimeCPU] = weakref.WeakSet()
# A forked child's copy of its parent's streams: kept, never run and never freed (freeing a session that a thread
# of the parent was inside could wait on a lock that no thread of the child will release).
_LEFT_BY_PARENT: list[tuple[Any, Any]] = []


def _forget_streams_in_child() -> None:
    """After ``fork``, in the child: only the forking thread exists there, so an engine's streams' executor would
    queue a batch for threads that are gone and the call wait forever (a process forked by ``multiprocessing``,
    gunicorn's ``--preload`` or Celery from one that had run a call of many batches). Each engine forgets its
    streams (their session too: a parent's thread may have been inside it) and opens them again at its next call
    of many batches. Its own session ran in a forked child as in the parent here."""
    for engine in list(_STREAMING):
        _LEFT_BY_PARENT.append((engine._stream_session, engine._stream_pool))
        engine._stream_lock = threading.Lock()
        engine._stream_pool = None
        engine._stream_session = None
    _STREAMING.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_streams_in_child)


class OnnxRuntimeCUDA(_OnnxRuntimeSession):
    """``CUDAExecutionProvider`` (or ``TensorrtExecutionProvider`` first) with IO binding.

    Each call copies the inputs to the device once, binds the outputs on the device and fetches them
    once. ``options.device`` is the CUDA device index (default ``"0"``); ``options.extra`` adds
    provider options (e.g. ``{"gpu_mem_limit": 4 << 30}``). With ``tensorrt=True`` the TensorRT EP
    comes first, with its engine cache in ``cache_dir/tensorrt`` so later loads skip the engine build.

    After the session is created the engine checks which providers it really got; if ONNX Runtime
    dropped the GPU one it raises ``ProviderError``, or with ``allow_fallback=True`` runs on the CPU
    and says so in ``name`` (``"cpu"``).
    """

    def __init__(self, model_path: Path, options: ProviderOptions, *, tensorrt: bool = False) -> None:
        wanted = "tensorrt" if tensorrt else "cuda"
        try:
            self.device_id = int(options.device or 0)
        except ValueError:
            raise ProviderError(
                f"CUDA device {options.device!r} is not a device index; use e.g. 'cuda' or 'cuda:1'"
            ) from None
        cuda_options: dict[str, Any] = {"device_id": self.device_id, "arena_extend_strategy": "kSameAsRequested"}
        providers: list[Any] = []
        if tensorrt:
            trt_options: dict[str, Any] = {"device_id": self.device_id}
            try:
                engine_cache = cache_root(options.cache_dir, "tensorrt")
                engine_cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # every load builds its engines (minutes for a large model): said
                logger.warning("TensorRT engine cache disabled, every load builds the engines: %s", exc)
            else:
                trt_options.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=str(engine_cache),
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=str(engine_cache),
                )
            trt_options.update(options.extra)
            providers.append((TENSORRT_EP, trt_options))
        else:
            cuda_options.update(options.extra)
        providers += [(CUDA_EP, cuda_options), CPU_EP]
        session = _open_session(model_path, session_options(options), providers)
        used = session.get_providers()
        first = TENSORRT_EP if tensorrt else CUDA_EP
        if used[0] != first and not options.allow_fallback:
            raise ProviderError(
                f"provider {wanted!r} was asked for, but ONNX Runtime ran {model_path.name} on {', '.join(used)} "
                f"({_missing_ep(first) or f'device {self.device_id} could not be initialised'}); "
                f"{_GPU_HINT}, choose provider='cpu', or pass allow_fallback=True to accept the fallback"
            )
        self.name = wanted if used[0] == first else "cpu"
        self.device = str(self.device_id)
        self._on_device = used[0] in (CUDA_EP, TENSORRT_EP)
        self._bind_names(session)

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        session = self._live_session()
        if not self._on_device:
            return super().run(feeds, output_names)
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in output_names:
            binding.bind_output(name, "cuda", self.device_id)
        session.run_with_iobinding(binding)
        return dict(zip(output_names, binding.copy_outputs_to_cpu()))
