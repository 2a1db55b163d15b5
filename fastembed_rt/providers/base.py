"""The execution-provider contract: one narrow seam between the pipeline and an engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["ExecutionProvider", "ProviderOptions"]


@dataclass(frozen=True)
class ProviderOptions:
    """Engine-independent knobs. ``None`` means the provider's documented default."""

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    device_id: int = 0
    allow_fallback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class ExecutionProvider(Protocol):
    """Runs one graph. ``run`` returns the named outputs as numpy arrays."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(self, model_path: Path, options: ProviderOptions) -> ExecutionProvider: ...
