"""Execution providers: a registry of engines behind one protocol (``base.ExecutionProvider``).

Adding an engine is one module plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastembed_rt.errors import ProviderError
from fastembed_rt.providers.base import ExecutionProvider, ProviderOptions

__all__ = ["ExecutionProvider", "ProviderOptions", "available_providers", "create_provider"]


def _cpu(model_path: Path, options: ProviderOptions) -> ExecutionProvider:
    from fastembed_rt.providers.onnxruntime import OnnxRuntimeCPU

    return OnnxRuntimeCPU(model_path, options)


_REGISTRY: dict[str, Callable[[Path, ProviderOptions], ExecutionProvider]] = {
    "cpu": _cpu,
}
# Preference order of ``provider="auto"``.
_AUTO_ORDER = ("cpu",)


def available_providers() -> list[str]:
    return list(_REGISTRY)


def create_provider(name: str, model_path: Path, options: ProviderOptions | None = None) -> ExecutionProvider:
    """Open ``model_path`` on the provider called ``name`` (or the best one for ``"auto"``)."""
    options = options or ProviderOptions()
    if name == "auto":
        name = next(p for p in _AUTO_ORDER if p in _REGISTRY)
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ProviderError(f"provider {name!r} is not available; available: {', '.join(['auto', *_REGISTRY])}")
    return factory(model_path, options)
