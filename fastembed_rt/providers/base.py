"""The execution-provider contract: one narrow seam between the pipeline and an engine.

An engine is ``run(feeds, output_names) -> dict`` plus ``close()``. What the registry needs to know
about an engine (can it run here, which variants it prefers, how to install it) is a
``ProviderSpec``: data, not code paths elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["CACHE_ENV", "ExecutionProvider", "ProviderFactory", "ProviderOptions", "ProviderSpec", "cache_root"]

CACHE_ENV = "FASTEMBED_RT_CACHE"


@dataclass(frozen=True)
class ProviderOptions:
    """Engine-independent knobs. ``None`` means the provider's documented default.

    Args:
        intra_op_threads: threads inside one operator; default: the CPUs this process may use
            (affinity and cgroup quota, see ``threads.available_cpus``).
        inter_op_threads: threads running independent operators in parallel; default 1.
        device: the device after the ``:`` of a provider name (``"cuda:1"`` → ``"1"``,
            ``"openvino:GPU.0"`` → ``"GPU.0"``); default: the provider's first device.
        allow_fallback: accept an engine that silently runs elsewhere (e.g. CUDA → CPU) instead of
            raising ``ProviderError``; the provider's ``name`` then says what really runs.
        allow_spinning: let ONNX Runtime worker threads busy-wait for work while a call runs
            (they never spin between calls). Off by default: on STSb sentences here (2 threads,
            a shared 2-CPU machine) spinning gave 268 sentences/s against 433 without, and 1.6×
            the CPU time per sentence; turn it on for a machine the model has to itself.
        cache_dir: where compiled models (OpenVINO) and engines (TensorRT) are cached; default
            ``$FASTEMBED_RT_CACHE`` or ``~/.cache/fastembed-rt``.
        extra: engine-specific options passed through unchanged (ONNX Runtime session config
            entries for ``cpu``, CUDA / TensorRT provider options, OpenVINO properties).
    """

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    device: str | None = None
    allow_fallback: bool = False
    allow_spinning: bool = False
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
        install: the pip requirement that brings it.
        formats: variant formats it runs (``"onnx"``, ``"openvino"``).
        auto_formats: ``provider="auto"`` considers it only for artifacts with a variant in one of
            these formats.
        preferred_variants: variant names ``variant="auto"`` tries, in order.
        pool_devices: provider names for one worker each when a multi-process pool is started
            without ``target_devices``.
        on_cpu: whether it runs on the CPU for a device (None: the default one), so that the
            manifest's CPU speed records choose its ``variant="auto"`` (``fastembed_rt.speed``).
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


def cache_root(cache_dir: Path | None, engine: str) -> Path:
    """``cache_dir/engine``; default ``$FASTEMBED_RT_CACHE`` or ``$XDG_CACHE_HOME``/``~/.cache`` + ``fastembed-rt``."""
    if cache_dir is None:
        env = os.environ.get(CACHE_ENV)
        if env:
            cache_dir = Path(env)
        else:
            cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastembed-rt"
    return Path(cache_dir).expanduser() / engine
