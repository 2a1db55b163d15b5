"""Execution providers: a registry of engines behind one protocol (``base.ExecutionProvider``).

Adding an engine is one module plus one ``ProviderSpec`` line in ``_REGISTRY``.

========== ========================================= ====================== ==================
provider   engine                                    variants (``auto``)    install
========== ========================================= ====================== ==================
cpu        ONNX Runtime CPU EP                       optimized, fp32        (core)
cuda       ONNX Runtime CUDA EP, IO binding          fp16, fp32             onnxruntime-gpu (``GPU_INSTALL``)
tensorrt   ONNX Runtime TensorRT EP, engine cache    fp32                   onnxruntime-gpu (``GPU_INSTALL``)
openvino   OpenVINO runtime, compiled-model cache    openvino (IR), fp32    fastembed-rt[openvino]
========== ========================================= ====================== ==================

``auto`` takes the first usable of ``_AUTO_ORDER``: ``cuda`` (onnxruntime-gpu installed and a device
visible), then ``cpu`` (always usable), so ``openvino`` runs only when asked for. Measured here in one
run (``benchmarks/providers.py``, all-MiniLM-L6-v2, 2,758 STSb test sentences, 2 threads, 2 rounds,
2026-11-30): ONNX Runtime on the ``optimized`` graph 1,188 sentences/s against 1,073 for the fp32
OpenVINO IR, single query 1.59 against 2.14 ms, load 0.17 s against 0.29 s (0.10 s from OpenVINO's
compiled-model cache). OpenVINO is faster on long passages (59 against 51 passages/s of ~250 tokens,
``benchmarks/run.py``) and runs the ``openvino-bf16`` (1.7×) and ``openvino-int8`` (2.65× the
fp32 throughput) variants within their gates: choose it for those. It needs an IR variant for
``truncate_dim=`` and ``precision=``: OpenVINO's ONNX reader folds the precision stage's per-call
inputs into constants.

A provider name may carry a device: ``"cuda:1"``, ``"openvino:GPU.0"``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from fastembed_rt.artifact import Manifest, verify_variant_file
from fastembed_rt.batching import ACCELERATOR_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_BYTES
from fastembed_rt.errors import InputError, ProviderError
from fastembed_rt.machine import CpuIdentity, this_cpu
from fastembed_rt.providers.base import ExecutionProvider, ProviderOptions, ProviderSpec
from fastembed_rt.providers.onnxruntime import (
    GPU_INSTALL,
    OnnxRuntimeCPU,
    OnnxRuntimeCUDA,
    cuda_device_count,
    cuda_unavailable,
    tensorrt_unavailable,
)
from fastembed_rt.providers.openvino import OpenVINO, openvino_unavailable, saturation_warning
from fastembed_rt.providers.threads import available_cpus
from fastembed_rt.speed import FASTEST, VariantChoice, choose_by_speed, recorded_slower

__all__ = [
    "BACKENDS",
    "ExecutionProvider",
    "ProviderOptions",
    "ProviderSpec",
    "available_providers",
    "backend_of",
    "choose_variant",
    "max_batch_bytes",
    "open_graph",
    "open_graph_file",
    "pool_devices",
    "provider_for_device",
    "provider_spec",
    "resolve_provider",
    "runs_on",
    "torch_device",
]

logger = logging.getLogger("fastembed_rt")


def _cpu_workers(name: str) -> list[str]:
    # sentence-transformers starts 4 CPU workers; never more workers than CPUs.
    return [name] * min(4, available_cpus())


def _gpu_workers(name: str) -> list[str]:
    return [f"{name}:{i}" for i in range(max(1, cuda_device_count()))]


_REGISTRY: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "cpu",
            OnnxRuntimeCPU,
            unavailable=lambda: None,
            install="pip install fastembed-rt",
            formats=("onnx",),
            auto_formats=("onnx",),
            # optimized: the fp32 gate, fused attention; 1.05–1.15× the fp32 graph here (benchmarks/providers.py)
            preferred_variants=("optimized", "fp32"),
            pool_devices=lambda: _cpu_workers("cpu"),
            on_cpu=lambda device: True,
        ),
        ProviderSpec(
            "cuda",
            OnnxRuntimeCUDA,
            unavailable=cuda_unavailable,
            install=GPU_INSTALL,
            formats=("onnx",),
            auto_formats=("onnx",),
            preferred_variants=("fp16", "fp32"),
            pool_devices=lambda: _gpu_workers("cuda"),
            torch_device="cuda",
        ),
        ProviderSpec(
            "tensorrt",
            lambda path, options: OnnxRuntimeCUDA(path, options, tensorrt=True),
            unavailable=tensorrt_unavailable,
            install=GPU_INSTALL,
            formats=("onnx",),
            auto_formats=("onnx",),
            preferred_variants=("fp32",),
            pool_devices=lambda: _gpu_workers("tensorrt"),
            torch_device="cuda",
        ),
        ProviderSpec(
            "openvino",
            OpenVINO,
            unavailable=openvino_unavailable,
            install="pip install 'fastembed-rt[openvino]'",
            formats=("openvino", "onnx"),
            auto_formats=("openvino",),
            preferred_variants=("openvino", "fp32"),
            pool_devices=lambda: _cpu_workers("openvino"),
            on_cpu=lambda device: device is None or device.upper().startswith("CPU"),
        ),
    )
}
# Preference order of ``provider="auto"`` (the module docstring gives the measurements).
_AUTO_ORDER = ("cuda", "cpu", "openvino")


def available_providers() -> list[str]:
    """Names of the providers that can run here, in registry order."""
    return [name for name, spec in _REGISTRY.items() if spec.unavailable() is None]


def provider_spec(name: str) -> ProviderSpec:
    """The registry entry of ``name`` (device suffix ignored), whether or not it can run here."""
    spec = _REGISTRY.get(name.partition(":")[0])
    if spec is None:
        raise ProviderError(f"provider {name!r} is not available; {_choices()}")
    return spec


def _choices() -> str:
    """``available: ...`` plus how to install the providers that are missing."""
    text = f"available: {', '.join(['auto', *available_providers()])}"
    missing: dict[str, list[str]] = {}
    for name, spec in _REGISTRY.items():
        if spec.unavailable() is not None:
            missing.setdefault(spec.install, []).append(name)
    for install, names in missing.items():
        text += f"; for {', '.join(names)}: {install}"
    return text


def resolve_provider(
    name: str, *, allow_fallback: bool = False, formats: Collection[str] = ("onnx",)
) -> tuple[ProviderSpec, str | None]:
    """The registry entry and device for a provider name such as ``"auto"``, ``"cpu"`` or ``"cuda:1"``.

    ``formats``: the variant formats the artifact has, which ``"auto"`` considers.

    Raises:
        ProviderError: unknown name, or a provider that cannot run here (not installed, no device),
            listing what is available and how to install the rest. With ``allow_fallback`` an
            unusable provider resolves to what ``auto`` picks instead.
    """
    base, _, device = name.partition(":")
    if base == "auto":
        for candidate in _AUTO_ORDER:
            spec = _REGISTRY[candidate]
            if set(spec.auto_formats) & set(formats) and spec.unavailable() is None:
                return spec, None
        return _REGISTRY["cpu"], None
    spec = provider_spec(name)
    if base == "cpu" and device and not device.isdigit():  # "cpu:abc" ran on the CPU, the suffix unread
        raise ProviderError(
            f"provider {name!r}: the cpu provider has no device {device!r}; name it 'cpu' (or 'cpu:N', torch's name)"
        )
    reason = spec.unavailable()
    if reason is not None and allow_fallback:
        return resolve_provider("auto", formats=formats)
    if reason is not None:
        raise ProviderError(f"provider {name!r} is not available here: {reason}; {_choices()}")
    return spec, device or None


def choose_variant(
    spec: ProviderSpec,
    manifest: Manifest,
    variant: str = "auto",
    *,
    device: str | None = None,
    cpu: CpuIdentity | None = None,
    warn: bool = True,
) -> VariantChoice:
    """The variant of ``manifest`` to run on ``spec`` (on ``device``), and why (``warn=False``: without the
    warning a load gets where ``"fastest"`` has no speed record: the reason says it).

    ``variant``: a name, ``"auto"`` or ``"fastest"``. On a provider that runs on the CPU, ``auto`` and
    ``fastest`` choose by the manifest's speed records for ``cpu`` (default: this CPU; see
    ``fastembed_rt.speed``); elsewhere, and without a record, ``auto`` takes the provider's first
    preferred variant present.

    Raises:
        ProviderError: the named variant has a format the provider cannot run, or none can.
    """
    if variant in ("auto", FASTEST):
        present = [v for v in manifest.variants if v.format in spec.formats]
        if not present:
            names = ", ".join(f"{v.name} ({v.format})" for v in manifest.variants)
            raise ProviderError(
                f"provider {spec.name!r} runs {', '.join(spec.formats)} graphs; {manifest.root} has only {names}"
            )
        preference = f"first of {spec.name}'s preference {', '.join(spec.preferred_variants)}"
        if spec.on_cpu(device):
            decided = choose_by_speed(present, manifest, variant, cpu or this_cpu(), spec.name, warn=warn)
            if isinstance(decided, VariantChoice):
                return decided
            preference = f"{decided}: {preference}"
        left_out: list[str] = []
        for name in spec.preferred_variants:
            for candidate in present:
                if candidate.name != name:
                    continue
                slower = recorded_slower(candidate, manifest, cpu or this_cpu()) if spec.on_cpu(device) else None
                if slower is None:
                    return VariantChoice(candidate, preference + "".join(f"; {why}" for why in left_out))
                left_out.append(slower)  # never a variant this CPU class's record times below fp32
        return VariantChoice(
            present[0], f"the first variant {spec.name} runs (none of {', '.join(spec.preferred_variants)})"
        )
    chosen = manifest.variant(variant)
    if chosen.format not in spec.formats:
        runnable = [v.name for v in manifest.variants if v.format in spec.formats]
        others = [n for n, s in _REGISTRY.items() if chosen.format in s.formats]
        raise ProviderError(
            f"variant {variant!r} is a {chosen.format} graph, which provider {spec.name!r} cannot run; "
            f"variants it runs: {', '.join(runnable) or 'none'}; providers that run {variant!r}: {', '.join(others)}"
        )
    return VariantChoice(chosen, "named by the caller")


def max_batch_bytes(engine: ExecutionProvider) -> int:
    """The activation bound of one graph run on ``engine``: ``DEFAULT_MAX_BATCH_BYTES`` where it runs on the CPU
    (ONNX Runtime's arena keeps the largest run resident), ``ACCELERATOR_MAX_BATCH_BYTES`` on a GPU (device
    memory; bigger batches keep it busy). An engine the registry does not know counts as the CPU."""
    try:
        on_cpu = provider_spec(engine.name).on_cpu(getattr(engine, "device", None))
    except ProviderError:
        on_cpu = True
    return DEFAULT_MAX_BATCH_BYTES if on_cpu else ACCELERATOR_MAX_BATCH_BYTES


def open_graph(
    manifest: Manifest,
    provider: str | ExecutionProvider,
    variant: str = "auto",
    options: ProviderOptions | None = None,
    *,
    verify_full: bool = False,
) -> tuple[ExecutionProvider, VariantChoice]:
    """Pick the variant for ``provider``, check its file and open it. Returns ``(engine, choice)``.

    ``provider`` may be an engine instance (e.g. ``FakeProvider``): it is used as is, with the named
    variant or the artifact's first one.
    """
    options = options or ProviderOptions()
    automatic = variant in ("auto", FASTEST)
    if not isinstance(provider, str):
        if automatic:
            return provider, VariantChoice(manifest.variants[0], "the artifact's first variant (engine given)")
        return provider, VariantChoice(manifest.variant(variant), "named by the caller")
    # ``auto`` with a named variant picks among the providers that run that variant's format.
    formats = {v.format for v in manifest.variants} if automatic else {manifest.variant(variant).format}
    spec, device = resolve_provider(provider, allow_fallback=options.allow_fallback, formats=formats)
    choice = choose_variant(spec, manifest, variant, device=device or options.device)
    chosen = choice.variant
    path = verify_variant_file(manifest, chosen, full=verify_full)
    if spec.name == "openvino" and (warning := saturation_warning(chosen, this_cpu(), device or options.device)):
        logger.warning(warning)
    # Engine properties the variant was validated with (e.g. OpenVINO's bf16 precision hint); the
    # caller's own ``extra`` still wins.
    extra = {**chosen.engine_properties, **options.extra}
    graph_id = ":".join(filter(None, (chosen.sha256, chosen.weights_sha256))) or None
    # verify="full": what runs is what was checked, not a cached copy built from some earlier file of that name
    cache = options.cache and not verify_full
    opened = replace(options, device=device or options.device, extra=extra, graph_id=graph_id, cache=cache)
    return spec.open(path, opened), choice


def open_graph_file(
    name: str, model_path: Path, graph_format: str, options: ProviderOptions | None = None
) -> ExecutionProvider:
    """Open a graph file that is not (yet) a variant of a manifest, e.g. an export candidate.

    ``graph_format`` (``"onnx"`` or ``"openvino"``) is declared by the caller, never guessed from the
    file name. Models open their graphs through ``open_graph``.
    """
    options = options or ProviderOptions()
    spec, device = resolve_provider(name, allow_fallback=options.allow_fallback, formats=(graph_format,))
    if graph_format not in spec.formats:
        raise ProviderError(f"provider {spec.name!r} runs {', '.join(spec.formats)} graphs, not {graph_format!r}")
    return spec.open(model_path, replace(options, device=device or options.device))


# sentence-transformers' ``backend`` argument -> the graph format it asks for; "torch" (its default) asks for none:
# fastembed-rt runs the exported graph in its place.
BACKENDS: dict[str, str | None] = {"torch": None, "onnx": "onnx", "openvino": "openvino"}
# The torch devices a provider runs on (``torch_device``): what ``device=`` may name.
_TORCH_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def backend_of(provider: str) -> str:
    """sentence-transformers' ``backend`` name for ``provider``'s engine: the graph format ``auto`` chooses it for
    (``"onnx"`` for ONNX Runtime's providers, ``"openvino"``)."""
    return provider_spec(provider).auto_formats[0]


def torch_device(provider: str, device: str | None = None) -> str:
    """Where ``provider`` (on ``device``, or the device its name carries) runs, in sentence-transformers' device
    names: ``"cpu"`` or ``"cuda:N"``; an engine on a device torch has no name for keeps its provider name
    (``"openvino:GPU.0"``)."""
    name, _, suffix = provider.partition(":")
    device = device or suffix or None
    spec = provider_spec(name)
    if spec.on_cpu(device):
        return "cpu"
    if spec.torch_device is not None:
        return f"{spec.torch_device}:{device or 0}"
    return f"{name}:{device}" if device else name


def device_name(device: object) -> str:
    """sentence-transformers' ``device`` (a str or ``torch.device``) as ``runs_on`` compares it: lower case,
    and ``"cpu:N"`` as ``"cpu"`` (torch's CPU index names no other device: ``str(torch.device("cpu", 0))``); an int
    is a CUDA device's index, as torch reads ``model.to(0)``."""
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return f"cuda:{device}"
    name = str(device).strip().lower()
    return "cpu" if re.fullmatch(r"cpu:\d+", name) else name


def runs_on(actual: str, wanted: object) -> bool:
    """Whether a provider running on ``actual`` (``torch_device``) is on sentence-transformers' device ``wanted``
    (read by ``device_name``); ``"cuda"`` is any CUDA device."""
    name = device_name(wanted)
    return actual == name or (":" not in name and actual.partition(":")[0] == name)


def provider_for_device(
    provider: str | ExecutionProvider, device: object = None, backend: str = "torch"
) -> str | ExecutionProvider:
    """The provider to open for sentence-transformers' ``device`` and ``backend`` arguments, given ``provider``.

    ``device``: None (``provider`` decides), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (a ``torch.device`` reads the
    same). ``backend``: ``"torch"`` (any provider: the exported graph runs in torch's place), ``"onnx"`` (ONNX
    Runtime: cuda if usable, else cpu) or ``"openvino"``. With ``provider="auto"`` they choose it (``"cuda"``
    without a usable GPU then fails to open as ``provider="cuda"`` does); an explicit provider must agree with them.

    Raises:
        ProviderError: a device no provider runs on (``"mps"``, ``"xpu"``, ``"npu"``), or an unknown provider.
        InputError: an unknown backend, or a provider that disagrees with ``device`` or ``backend``.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not supported; valid: {', '.join(map(repr, BACKENDS))}")
    graph_format = BACKENDS[backend]
    wanted = None if device is None else device_name(device)
    if wanted is not None and not _TORCH_DEVICE.fullmatch(wanted):
        raise ProviderError(
            f"device {device!r} has no fastembed-rt provider; devices: 'cpu', 'cuda', 'cuda:N' (an Intel GPU: "
            f"provider='openvino:GPU'); {_choices()}"
        )
    if not isinstance(provider, str):
        if wanted is not None or graph_format is not None:
            raise InputError("an engine instance runs where it was built: pass it without device= and backend=")
        return provider
    chosen_by = f"provider={provider!r}"
    if provider == "auto":
        if wanted is None and graph_format is None:
            return provider
        family, _, index = (wanted or "").partition(":")
        names = [name for name in _AUTO_ORDER if graph_format in (None, *_REGISTRY[name].auto_formats)]
        fitting = [name for name in names if wanted is None or torch_device(name).partition(":")[0] == family]
        usable = [name for name in fitting if _REGISTRY[name].unavailable() is None]
        provider = (usable or fitting or names)[0] + (f":{index}" if index else "")
        chosen_by = f"backend={backend!r} (provider {provider!r})" if graph_format else chosen_by
    if graph_format is not None and graph_format not in provider_spec(provider).auto_formats:
        raise InputError(f"{chosen_by} does not run backend={backend!r} graphs; pass one of the two")
    if wanted is not None and not runs_on(actual := torch_device(provider), wanted):
        raise InputError(f"{chosen_by} runs on {actual!r}, not on device={device!r}; pass one of the two")
    return provider


def pool_devices(name: str) -> list[str]:
    """Provider names, one per worker, for a multi-process pool on ``name``.

    A name with a device (``"cuda:1"``) gets one worker on that device; otherwise the provider's
    default: one worker per visible GPU for cuda/tensorrt, ``min(4, CPUs)`` workers for the others.
    """
    spec, device = resolve_provider(name)
    return [name] if device else spec.pool_devices()
