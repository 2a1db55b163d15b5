"""The one exception tree of fastembed-rt, split by the phase that raises.

::

    FastEmbedError
     ├── ArtifactError      loading: missing/corrupt artifact, manifest, tokenizer or graph file
     ├── ProviderError      execution provider unknown, not installed, or silently replaced
     ├── InputError         bad user input (None, non-str, nested lists, over-long with policy "error")
     └── ExportError        export stage: unsupported model, module or architecture
          └── ParityError   an exported variant misses its fidelity gate against PyTorch

``InputError`` also subclasses ``ValueError`` and ``TypeError`` so code written against
sentence-transformers' exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ExportError",
    "FastEmbedError",
    "InputError",
    "ParityError",
    "ProviderError",
]


class FastEmbedError(Exception):
    """Base class of every error fastembed-rt raises on purpose."""


class ArtifactError(FastEmbedError):
    """An artifact directory, manifest or one of its files is missing, corrupt or unsupported."""


class ProviderError(FastEmbedError):
    """An execution provider cannot be used as asked."""


class InputError(FastEmbedError, ValueError, TypeError):
    """User input that cannot be encoded; the message names the position and the value seen."""


class ExportError(FastEmbedError):
    """The export stage cannot turn this model into an artifact."""


class ParityError(ExportError):
    """An exported graph disagrees with the PyTorch reference beyond its gate.

    ``failures`` holds one line per failing check so callers can show all of them.
    """

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures
