"""``openvino``: the native OpenVINO runtime, on OpenVINO IR variants or directly on the ONNX graph.

Compiled models are cached in ``cache_dir/openvino`` (OpenVINO's ``CACHE_DIR``): the first load of a
graph compiles it, later loads of the same file with the same settings read the compiled blob. OpenVINO's own
key covers the graph file but neither its weights file nor the precision hint, so each graph and compile setting
gets a folder of its own named by the graph's path, the size and modification time of the graph and weights files,
and the device and compile properties (all but the thread count and pinning, which OpenVINO applies to a cached
blob): re-exported weights at the same path compile afresh, and the folders of the former ones are removed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import Variant
from fastembed_rt.errors import MODEL_CLOSED, ArtifactError, NotEnoughMemoryError, ProviderError
from fastembed_rt.machine import CpuIdentity
from fastembed_rt.providers.base import (
    MARK_USED_S,
    ProviderOptions,
    UseMark,
    cache_root,
    graph_data_files,
    judged_here,
    memory_short,
    mount_identity,
    out_of_memory_running,
)
from fastembed_rt.providers.threads import available_cpus

__all__ = [
    "SMOOTHQUANT_INT8",
    "OpenVINO",
    "import_openvino",
    "openvino_unavailable",
    "saturation_warning",
    "telemetry_declined",
]

logger = logging.getLogger("fastembed_rt")

# The ``optimization`` of an openvino-int8 variant converted from the int8 ONNX variant's SmoothQuant graph.
SMOOTHQUANT_INT8 = "openvino-ir+smoothquant-int8"

_TELEMETRY_LOCK = threading.RLock()
# OpenVINO 2025's Python bindings initialize static tables on first use (Type.to_dtype) under a C++ guard while
# holding the GIL: two threads there at once can wait on each other for ever (1 in 8 fresh processes hung).
_BINDINGS_LOCK = threading.Lock()


def _compile(core: Any, model_path: Path, device: str, config: dict[str, Any], cache_dir: Path | None) -> Any:
    """``core.compile_model`` of the file; with a compiled-model cache, under its lock, so that two loads do not
    write the same blob at once (the first of two failed: "cannot set permissions ... .blob")."""
    if cache_dir is None:
        with _BINDINGS_LOCK:
            return core.compile_model(str(model_path), device, config)
    from fastembed_rt.providers.onnxruntime_cache import _replacing

    # A path (not a read model) lets the cache skip reading the graph when the blob is current.
    with _replacing(cache_dir), _BINDINGS_LOCK:
        return core.compile_model(str(model_path), device, config)


@contextlib.contextmanager
def telemetry_declined() -> Iterator[None]:
    """OpenVINO's usage telemetry, decided inside this block, is declined unless the user opted in.

    ``import openvino`` sets up OpenVINO's telemetry and sends an "import" event to Google Analytics, and its
    converter and NNCF send more, unless a consent file says no (``opt_in_out --opt_out``); OpenVINO's default
    without that file is to send, writing a client id to ``~/intel/openvino_ga_cid``. Each event forks the
    process, and the child waits up to 3 s for the network. On a 2-vCPU Zen 5 ``import openvino`` took 0.20 s
    instead of 0.15 s with it, the openvino provider's load and first MiniLM embedding 0.18 s instead of 0.16
    (a whole process 0.34 instead of 0.31 s), and a default all-MiniLM-L6-v2 export spent 22-26 s of system time
    instead of 15 (forking a 1-2 GB process from six sender threads; wall 89 and 95 s against 88 and 87).
    fastembed-rt does not report its users' runs: one who opted in (``opt_in_out --opt_in``) keeps reporting.
    OpenVINO's tools decide consent when the process's telemetry is set up (the import, each converter call,
    NNCF's import) and never report a CI job (``CI=true``), so that is what the environment says while they
    decide; it is restored after.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # OpenVINO without its telemetry package sends nothing
        yield
        return
    if OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.ACCEPTED:
        yield
        return
    with _TELEMETRY_LOCK:  # threads loading models at once must not restore each other's CI value
        before = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = before


def import_openvino() -> Any:
    """The ``openvino`` module, imported with its telemetry declined (``telemetry_declined``). Once imported it is
    returned as it is: the import decided telemetry, so later model loads read no consent file."""
    if "openvino" not in sys.modules:
        try:
            Path.home()
        except (RuntimeError, KeyError):
            # OpenVINO's telemetry reads the home folder at import (even when declined) and raises there
            raise ProviderError(
                "OpenVINO cannot be imported without a home folder (its telemetry reads ~ at import): no $HOME and "
                "no home for this user id; set HOME (e.g. HOME=/tmp), or use provider='cpu'"
            ) from None
        # read by oneDNN when the CPU plugin first loads (a variable the caller set wins): see SHAPE_CACHE_CAPACITY
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(SHAPE_CACHE_CAPACITY))
        with telemetry_declined():
            import openvino
    import openvino  # imported (a thread importing it now: this waits until it is done)

    return openvino


# Kernels the CPU plugin (CPU_RUNTIME_CACHE_CAPACITY, default 5,000) and oneDNN (ONEDNN_PRIMITIVE_CACHE_CAPACITY,
# default 1,024) keep per input shape. Every (batch, length) a server meets is a new shape: all-MiniLM-L6-v2's
# openvino-int8 grew by ~0.7 MB a shape without end (150 -> 739 MB over 600 calls of random shapes, 2 vCPU
# AVX-512 EPYC); with both at 64 it levelled at 277 MB after 150 calls and ran as fast (36 against 48 s for the 600,
# 11.3 against 13.0 s for 200 calls of 20 shapes seen before). Either alone still grew (the audit that found it).
SHAPE_CACHE_CAPACITY = 64

# Devices that place work on other devices themselves: what they chose is not a fallback.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def openvino_unavailable() -> str | None:
    """Why the ``openvino`` provider cannot run here, or None."""
    if importlib.util.find_spec("openvino") is None:
        return "the openvino package is not installed"
    return None


def saturation_warning(variant: Variant, cpu: CpuIdentity, device: str | None = None) -> str | None:
    """What to tell a user who runs the SmoothQuant int8 IR on a CPU where OpenVINO's 8-bit products saturate,
    or None. ONNX Runtime has an exact path there (``onnxruntime.X64_QUANT_PRECISION``); OpenVINO has none:
    all-MiniLM-L6-v2's IR went from min cosine 0.9916 to 0.9805 against fp32 on AVX2 kernels and ran 0.84× the
    fp32 IR (``benchmarks/avx2_proxy.py``, 2026-12-04); on the 2,552 distinct STSb test sentences (2026-12-05,
    OpenVINO 2026.4.1, ``benchmarks/batch_invariance.py``) min 0.9793 (VNNI: 0.9921), every text moved from its
    VNNI embedding (up to 0.02), 8 moved with their batch by more than 1e-4, and it ran 1.0× the fp32 IR.
    Nothing to say where the export measured these numbers: a variant validated on such a CPU (its fidelity's
    ``validated_on``, which the exporter records), or a candidate the export is validating (no fidelity yet)."""
    if variant.optimization != SMOOTHQUANT_INT8 or not cpu.saturates_int8_products or not variant.fidelity:
        return None  # not the SmoothQuant IR, a CPU with VNNI, or a candidate the export is validating now
    if device is not None and not device.upper().startswith("CPU"):
        return None
    validated = CpuIdentity.from_record(variant.fidelity.get("validated_on"))
    if validated is not None and validated.isa and validated.saturates_int8_products:
        return None  # validated on such a CPU: these are the numbers the export measured
    return (
        f"variant {variant.name!r} is the SmoothQuant int8 graph on OpenVINO; this CPU ({cpu.describe()}) has no "
        "VNNI, so OpenVINO sums its 8-bit products in saturating 16-bit pairs: embeddings drift further from "
        "fp32 than the export measured (all-MiniLM-L6-v2: min cosine 0.979 against 0.992, under the int8 gate's "
        "0.98; a few move with their batch) and it runs no faster than the fp32 IR. provider='cpu', "
        "variant='int8' computes the same graph exactly here."
    )


# Properties OpenVINO applies when it loads a cached blob: they need no blob of their own (a pool's 1-thread workers
# share the main process's 2-thread blob).
_LOAD_TIME_PROPERTIES = frozenset({"INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING"})


def _compiled_cache(
    root: Path, model_path: Path, device: str, config: dict[str, Any], graph_id: str | None = None
) -> Path:
    """The cache folder of ``model_path``'s compiled blobs: ``<path digest>-<files digest>-<compile digest>``, where
    the files are the graph and its weights files (``graph_data_files``), each known by size and modification time,
    with the manifest's sha256 of them (``graph_id``: a version untarred over another with the same sizes and times
    got the other's blobs), and the compile digest covers ``device`` and ``config`` but its load-time properties (an
    f16 blob served to an f32 load, and a bf16 one crashed). Folders of the same path with other files are removed."""
    files: dict[str, Any] = {}
    with contextlib.suppress(OSError):  # the compile that follows reports a missing graph
        stat = model_path.stat()
        files = {model_path.name: {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, **graph_data_files(model_path)}
    if graph_id is not None:
        files["manifest_sha256"] = graph_id
    compile_settings = {k: str(v) for k, v in config.items() if k not in _LOAD_TIME_PROPERTIES}
    path_key = f"{zlib.crc32(str(model_path.resolve()).encode()):08x}"
    files_key = f"{path_key}-{zlib.crc32(json.dumps(files, sort_keys=True).encode()):08x}"
    name = f"{files_key}-{zlib.crc32(json.dumps([device, compile_settings], sort_keys=True).encode()):08x}"
    with contextlib.suppress(OSError):
        for former in root.glob(f"{path_key}-*"):
            if not former.name.startswith(f"{files_key}-") and former.is_dir() and _built_here(former):
                shutil.rmtree(former, ignore_errors=True)
    folder = root / name
    record = folder / _SOURCE_FILE
    with contextlib.suppress(OSError):  # a read-only cache still serves
        if record.is_file():
            os.utime(record)  # a use now: the load reads no other folder (the sweep is the compile's work)
        else:  # a compile comes: whose blobs these are, and the folders of graphs gone or unused go
            _sweep(root, keep=folder)
            folder.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({"graph": str(model_path.resolve()), "mounts": mount_identity()}))
    return folder


_SOURCE_FILE = "source.json"


def _built_here(folder: Path) -> bool:
    """Whether ``folder``'s graph path may be judged here (``judged_here``, from its record)."""
    record = folder / _SOURCE_FILE
    try:
        recorded = json.loads(record.read_text()).get("mounts")
        idle_days = (time.time() - record.stat().st_mtime) / 86400
    except (OSError, ValueError, AttributeError):
        return True  # no record to say otherwise (written before records had mounts)
    return judged_here(recorded, idle_days, mount_identity())


def _linked_graph(root: Path | None, model_path: Path) -> tuple[Path, Path | None]:
    """The graph file for OpenVINO to read and a temporary folder to remove when the engine closes, or None.

    ``model_path`` itself, unless its ONNX external data lies outside its folder through links (a hub cache's
    snapshot, whose files link to blobs elsewhere): OpenVINO's ONNX reader refuses a data file that resolves
    outside the graph's folder. Then the same files hard-linked (copied across file systems) under their own names
    into a folder of the cache ``root``, recorded and swept as the compiled blobs' are (``_sweep``); without a
    cache (``cache=False``, or one that cannot be written) into a temporary folder of this engine's."""
    if model_path.suffix != ".onnx":
        return model_path, None
    try:
        base = model_path.parent.resolve()
        data = {name: (model_path.parent / name).resolve() for name in graph_data_files(model_path)}
        if all(path.is_relative_to(base) for path in data.values()):
            return model_path, None
        files = {model_path.name: model_path.resolve(), **data}
        identity = {name: [str(path), path.stat().st_size, path.stat().st_mtime_ns] for name, path in files.items()}
    except OSError:  # the compile reports a graph that cannot be read
        return model_path, None
    if root is not None:
        try:
            folder = root / f"links-{zlib.crc32(json.dumps(identity, sort_keys=True).encode()):08x}"
            record = folder / _SOURCE_FILE
            if record.is_file():
                with contextlib.suppress(OSError):  # a read-only cache still serves
                    os.utime(record)
                return folder / model_path.name, None
            staging = root / f".{folder.name}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            _link_or_copy(files, staging)
            (staging / _SOURCE_FILE).write_text(
                json.dumps({"graph": str(files[model_path.name]), "mounts": mount_identity()})
            )
            try:
                os.rename(staging, folder)
            except OSError:  # another load made it meanwhile
                shutil.rmtree(staging, ignore_errors=True)
            if record.is_file():
                return folder / model_path.name, None
        except OSError as exc:
            logger.warning(
                "cannot link %s's data files into OpenVINO's cache (%s); using a temporary folder", model_path, exc
            )
    try:
        temporary = Path(tempfile.mkdtemp(prefix="fastembed-rt-openvino-"))
    except OSError as exc:
        raise ProviderError(_OUTSIDE_DATA.format(graph=model_path, reason=exc)) from exc
    try:
        _link_or_copy(files, temporary)
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise ProviderError(_OUTSIDE_DATA.format(graph=model_path, reason=exc)) from exc
    return temporary / model_path.name, temporary


_OUTSIDE_DATA = (
    "OpenVINO reads no ONNX graph whose weights file lies outside its folder, as {graph}'s does (a hub snapshot's "
    "links), and neither the cache nor a temporary folder could hold the files side by side ({reason}); set "
    "FASTEMBED_RT_CACHE (or TMPDIR) to a writable folder, or use provider='cpu'"
)


def _link_or_copy(files: dict[str, Path], folder: Path) -> None:
    for name, path in files.items():
        try:
            os.link(path, folder / name)
        except OSError:
            shutil.copyfile(path, folder / name)


def _sweep(root: Path, keep: Path) -> None:
    """Remove the cache folders of graphs that are gone (a deleted temporary artifact, a pruned hub revision; only
    of folders made where paths mean what they mean here, ``_built_here``) and of those no load used for
    ``UNUSED_DAYS``, as the ONNX Runtime graph cache does: each blob is the size of the model's weights, and
    without this every artifact ever loaded kept one."""
    from fastembed_rt.providers.onnxruntime_cache import UNUSED_DAYS

    here = mount_identity()
    with contextlib.suppress(OSError):
        for folder in root.iterdir():
            if folder == keep or not folder.is_dir():
                continue
            record = folder / _SOURCE_FILE
            try:
                entry = json.loads(record.read_text())
                graph = Path(entry["graph"])
                idle_days = (time.time() - record.stat().st_mtime) / 86400
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours, or written before these records: left alone
            gone = not graph.exists() and judged_here(entry.get("mounts"), idle_days, here)
            if gone or idle_days > UNUSED_DAYS:
                shutil.rmtree(folder, ignore_errors=True)


def _check_device(device: str, available: list[str]) -> tuple[str, str]:
    """``(device to compile for, its kind)``, or a ``ProviderError`` when what ``device`` names is not here: a plain
    device or its numbered instance (``"GPU"``, ``"GPU.1"``); each device of ``"HETERO:..."`` / ``"MULTI:..."``
    (they run on all of them); for ``"AUTO:GPU,CPU"`` at least one, the others left out of its list (OpenVINO fails
    loading the plugin of an absent GPU instead of picking the CPU); ``"AUTO"`` alone picks among what is here."""
    device = device.upper()  # OpenVINO's names are upper case; `openvino:cpu` was "'cpu' is not available: CPU"
    kind = device.split(":")[0].split(".")[0]
    here = ", ".join(available) or "none"
    hint = "(GPU and NPU need Intel's drivers; see the OpenVINO install guide)"
    if kind not in _VIRTUAL_DEVICES:
        if not _is_here(device, available):
            raise ProviderError(f"OpenVINO device {device!r} is not available; available: {here} {hint}")
        return device, kind
    listed = [d.strip() for d in device.partition(":")[2].split(",") if d.strip()]
    present = [d for d in listed if _is_here(d.split("(")[0], available)]  # "GPU(4)": a batch size, not a device
    absent = [d for d in listed if d not in present]
    if absent and (kind != "AUTO" or not present):
        raise ProviderError(
            f"OpenVINO device {device!r}: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not available; "
            f"available: {here} {hint}"
        )
    if absent:
        logger.info("OpenVINO %s: %s not available here, AUTO picks among %s", device, ", ".join(absent), present)
        return f"AUTO:{','.join(present)}", kind
    return device, kind


def _why_no_cpu(core: Any) -> str:
    """What OpenVINO says when asked for its CPU plugin, which ``available_devices`` left out without a word."""
    try:
        core.get_property("CPU", "FULL_DEVICE_NAME")
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if memory_short(exc):
            return f"{reason} (too little memory for the process: raise its limit)"
        return f"{reason} (a broken OpenVINO install?)"
    return "the CPU plugin answers when asked alone (a broken OpenVINO install?)"


def _is_here(device: str, available: list[str]) -> bool:
    """A device name without an instance number matches any instance (``GPU`` ~ ``GPU.0``); with one, only itself
    (the CPU plugin has no ``CPU.1``)."""
    if "." in device:
        return device in available
    return any(d.split(".")[0] == device for d in available)


def _check_extra(core: Any, device: str, kind: str, extra: dict[str, Any]) -> None:
    """A ``ProviderError`` naming the property OpenVINO refuses among ``extra`` (an unknown name, a value it does not
    take), asked of the device's plugin one at a time (this provider's own Core; a virtual device's list is not)."""
    if kind in _VIRTUAL_DEVICES:
        return
    for key, value in extra.items():
        try:
            core.set_property(device.split(".")[0], {key: value})
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ProviderError(
                f"OpenVINO's {kind} plugin refuses provider option extra={{{key!r}: {value!r}}}: {reason}"
            ) from exc


class OpenVINO:
    """An OpenVINO compiled model with an infer request per concurrent call (one, when called from one thread).

    ``options.device`` is an OpenVINO device name (default ``"CPU"``; ``"GPU"``, ``"GPU.1"``, ``"NPU"``
    and ``"AUTO:GPU,CPU"`` pass through). Defaults: the latency hint (one stream), on CPU
    ``INFERENCE_NUM_THREADS`` = the CPUs this process may use and ``INFERENCE_PRECISION_HINT`` f32 (on
    CPUs with bf16/AMX OpenVINO would otherwise run fp32 graphs in bf16, outside the fp32 gate),
    no thread pinning (processes of a pool would pin to the same cores), kernels of at most
    ``SHAPE_CACHE_CAPACITY`` input shapes kept. Input shapes stay dynamic (batch, sequence) as the graph declares
    them. ``options.extra`` adds or overrides OpenVINO
    properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f16"}``.
    """

    name = "openvino"

    def __init__(self, model_path: Path, options: ProviderOptions) -> None:
        ov = import_openvino()
        core = ov.Core()
        device = options.device or "CPU"
        available = list(core.available_devices)
        if not available:  # not even the CPU: its plugin failed to load (an allocation, a broken install)
            raise ProviderError(f"OpenVINO lists no device here, not even the CPU: {_why_no_cpu(core)}")
        device, kind = _check_device(device, available)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if kind in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if kind == "CPU":
            config["INFERENCE_NUM_THREADS"] = options.intra_op_threads or available_cpus()
            config["ENABLE_CPU_PINNING"] = False
            config["CPU_RUNTIME_CACHE_CAPACITY"] = SHAPE_CACHE_CAPACITY  # memory bounded across input shapes
        config.update(options.extra)
        # a property the plugin refuses is the caller's mistake: said before a compile fails on it (it was blamed on
        # the compiled-model cache first, and left an empty cache folder behind)
        _check_extra(core, device, kind, dict(options.extra))
        self.cache_dir: Path | None = None
        root: Path | None = None
        if options.cache:
            try:
                root = cache_root(options.cache_dir, "openvino")
            except OSError as exc:
                logger.warning("OpenVINO compiled-model cache disabled: %s", exc)
        if root is not None:
            self.cache_dir = _compiled_cache(root, model_path, device, config, options.graph_id)
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                core.set_property({"CACHE_DIR": str(self.cache_dir)})
            except OSError as exc:  # e.g. a read-only home in a container: every load compiles
                logger.warning("OpenVINO compiled-model cache disabled: cannot create %s (%s)", self.cache_dir, exc)
                self.cache_dir = None
        source, self._temporary = _linked_graph(root, Path(model_path))
        if self._temporary is not None:  # removed at close, or when the engine is collected without one
            self._remove_temporary = weakref.finalize(self, shutil.rmtree, self._temporary, True)
        try:
            try:
                compiled = _compile(core, source, device, config, self.cache_dir)
            except RuntimeError as exc:
                if self.cache_dir is None:
                    raise
                # the cache's fault (a blob left half-written, a full disk) or the graph's: try without the cache
                logger.warning(
                    "OpenVINO compiled-model cache %s failed (%s); compiling without it", self.cache_dir, exc
                )
                self.cache_dir = None
                core.set_property({"CACHE_DIR": ""})
                compiled = _compile(core, source, device, config, None)
        except RuntimeError as exc:
            _check_extra(core, device, kind, dict(options.extra))  # a refused property is the caller's, not the file's
            if memory_short(exc):
                raise NotEnoughMemoryError(
                    f"not enough memory for OpenVINO {ov.__version__} to compile {model_path} for {device} ({exc}); "
                    "raise the process's memory limit or free memory"
                ) from exc
            raise ArtifactError(
                f"OpenVINO {ov.__version__} could not compile {model_path} for {device} ({exc}); the graph uses an "
                "operator OpenVINO lacks (choose another variant) or the file is corrupt (re-export the artifact)"
            ) from exc
        executed = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        elsewhere = kind not in _VIRTUAL_DEVICES and not all(d.split(".")[0] == kind for d in executed)
        if elsewhere and not options.allow_fallback:
            raise ProviderError(
                f"OpenVINO device {device!r} was asked for, but the model runs on {', '.join(executed)}; "
                "pass allow_fallback=True to accept that"
            )
        self.device = device
        self.execution_devices = tuple(executed)
        self.intra_op_threads = config.get("INFERENCE_NUM_THREADS")
        self.properties: dict[str, Any] = dict(config)  # what the model was compiled with (some it cannot report)
        self.loaded_from_cache = bool(compiled.get_property("LOADED_FROM_CACHE"))
        # what the device really computes in (a bf16 hint on a CPU without bf16 gives f32)
        try:
            hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            self.inference_precision = str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)
        except RuntimeError:  # devices that do not report it
            self.inference_precision = "unknown"
        self.input_names = tuple(i.get_any_name() for i in compiled.inputs)
        self.output_names = tuple(o.get_any_name() for o in compiled.outputs)
        self._inputs = frozenset(self.input_names)
        self._model_path = source
        # OpenVINO's ONNX reader folds graph inputs that have defaults into constants: a call cannot set them, so
        # callers compute what those inputs steer (the precision stage) on the host instead
        self.folds_input_defaults = self._model_path.suffix == ".onnx"
        self._folded: dict[str, np.ndarray] = {}  # read on first need: it costs a model read
        # IR variants keep the precision stage's per-call inputs, which ONNX gives defaults and OpenVINO
        # cannot: an input a call leaves out is fed zeros (0 on dynamic dims), never uninitialized memory,
        # which made the unrequested outputs' shapes garbage and the request fail at random.
        with _BINDINGS_LOCK:  # two threads in OpenVINO's first to_dtype calls can deadlock in its bindings
            self._unfed = {
                i.get_any_name(): np.zeros(
                    [d.get_length() if d.is_static else 0 for d in i.get_partial_shape()],
                    i.get_element_type().to_dtype(),
                )
                for i in compiled.inputs
            }
        self._compiled: Any = compiled
        # An infer request runs one call at a time ("Infer Request is busy" for a second thread's): each call takes
        # an idle one, or makes one, so threads sharing the model each run on their own (one request when not).
        self._idle: list[Any] | None = [compiled.create_infer_request()]
        # the blobs' folder marked used while calls run
        self._use = UseMark(None if self.cache_dir is None else self.cache_dir / _SOURCE_FILE)
        self._requests_lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        self._use.touch(MARK_USED_S)
        with self._requests_lock:
            if self._idle is None:
                raise ProviderError(MODEL_CLOSED)
            request = self._idle.pop() if self._idle else self._compiled.create_infer_request()
        try:
            if not feeds.keys() <= self._inputs:
                feeds = self._without_folded_inputs(feeds)
            missing = self._inputs - feeds.keys()
            if missing:
                feeds = {**{name: self._unfed[name] for name in missing}, **feeds}
            try:
                request.infer(feeds, share_inputs=True, share_outputs=True)
            except RuntimeError as exc:
                if memory_short(exc):
                    raise out_of_memory_running("OpenVINO", feeds, exc) from exc
                raise
            # The request reuses its output buffers on its next call: copy what the caller keeps.
            return {name: np.array(request.get_tensor(name).data, copy=True) for name in output_names}
        finally:
            with self._requests_lock:
                if self._idle is not None:
                    self._idle.append(request)

    def _without_folded_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``feeds`` minus the inputs OpenVINO folded into constants, if they carry exactly those values.

        OpenVINO's ONNX reader turns graph inputs that have an initializer (the precision stage's
        ``output_dim``, ``normalize_output``, ``quantize_ranges``) into constants. Feeding their
        default is a no-op; any other value cannot be honoured and raises.
        """
        extra = feeds.keys() - self._inputs
        if not extra <= self._folded.keys():
            model = import_openvino().Core().read_model(str(self._model_path))
            for op in model.get_ordered_ops():
                if op.get_type_name() == "Constant":
                    for name in op.output(0).get_names() & extra:
                        self._folded[name] = np.array(op.get_data(), copy=True)
            self._folded.update({name: np.empty(0) for name in extra - self._folded.keys()})  # not folded
        for name in extra:
            folded = self._folded[name]
            if folded.shape != feeds[name].shape or not np.array_equal(folded, feeds[name]):
                raise ProviderError(
                    f"the openvino provider runs {self._model_path.name} with graph input {name!r} folded into a "
                    "constant (OpenVINO's ONNX reader does this to inputs with defaults), so this call's value "
                    "cannot be used; use provider='cpu' or an OpenVINO IR variant for this call's options"
                )
        return {name: value for name, value in feeds.items() if name in self._inputs}

    def close(self) -> None:
        with self._requests_lock:
            self._idle = None
        self._compiled = None
        if self._temporary is not None:
            self._remove_temporary()
