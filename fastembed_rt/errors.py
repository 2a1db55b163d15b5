"""The one exception tree of fastembed-rt, split by the phase that raises.

::

    FastEmbedError
     ├── ArtifactError      loading: missing/corrupt artifact, manifest, tokenizer or graph file
     ├── ProviderError      execution provider unknown, not installed, or silently replaced
     ├── NotEnoughMemoryError  an engine's allocation failed loading or running a graph (also a MemoryError)
     ├── InputError         bad user input (None, non-str, nested lists, over-long with policy "error")
     │    └── LongInputError  inputs over max_seq_length under long_inputs="error", by position
     └── ExportError        export stage: unsupported model, module or architecture
          └── ParityError   an exported variant misses its fidelity gate against PyTorch

``InputError`` also subclasses ``ValueError`` and ``TypeError`` so code written against
sentence-transformers' exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "MODEL_CLOSED",
    "ArtifactError",
    "ExportError",
    "FastEmbedError",
    "InputError",
    "LongInputError",
    "NotEnoughMemoryError",
    "ParityError",
    "ProviderError",
]


class FastEmbedError(Exception):
    """Base class of every error fastembed-rt raises on purpose."""


class ArtifactError(FastEmbedError):
    """An artifact directory, manifest or one of its files is missing, corrupt or unsupported."""


# what a call on a closed model raises, whichever layer finds it closed (its engine, or a pool call)
MODEL_CLOSED = "this model was closed; create a new one to encode again"


class ProviderError(FastEmbedError):
    """An execution provider cannot be used as asked."""


class NotEnoughMemoryError(FastEmbedError, MemoryError):
    """An engine could not allocate what loading or running a graph needs (an address-space or container memory
    limit): the machine's, not the artifact's fault. A ``MemoryError`` too."""


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

    def __reduce__(self) -> tuple[type[ParityError], tuple[str, list[str]]]:
        # pickled by its arguments: a worker process's export failure reached a multiprocessing.Pool as a TypeError
        # its result thread died of (the call hung), concurrent.futures' as "terminated abruptly"
        return type(self), (str(self), self.failures)


class LongInputError(InputError):
    """Inputs over ``max_seq_length`` under ``long_inputs="error"``: ``tokens`` maps each one's position in the call to
    its token count; the message names the first. A multi-process pool maps a chunk's positions back to the call's
    (``at``), so the error names the same input with a pool as without."""

    def __init__(
        self, tokens: dict[int, int], limit: int, alternatives: str, limit_name: str = "max_seq_length"
    ) -> None:
        first = min(tokens)
        super().__init__(
            f"input {first} is {tokens[first]} tokens long, more than {limit_name} {limit}; shorten it, or pass "
            f"long_inputs={alternatives}"
        )
        self.tokens, self.limit, self.alternatives, self.limit_name = dict(tokens), limit, alternatives, limit_name

    def __reduce__(self) -> tuple[type[LongInputError], tuple[dict[int, int], int, str, str]]:
        return type(self), (self.tokens, self.limit, self.alternatives, self.limit_name)

    def at(self, positions: list[int]) -> LongInputError:
        """This error for a part of a larger call whose input ``i`` was the call's ``positions[i]``."""
        moved = {positions[i]: n for i, n in self.tokens.items()}
        return LongInputError(moved, self.limit, self.alternatives, self.limit_name)
