"""Texts to token ids with Rust ``tokenizers``, matching sentence-transformers' preprocessing.

sentence-transformers tokenizes with ``truncation="longest_first"`` at ``max_seq_length`` and
prepends prompts as plain strings; the export stage saved the tokenizer exactly as it configured
it (lower-casing normalizers included), so here only truncation and padding are applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastembed_rt.artifact import TokenizerInfo
from fastembed_rt.errors import ArtifactError, InputError

__all__ = ["Encoded", "Tokenizer", "TruncationDirection"]

TruncationDirection = Literal["left", "right"]


@dataclass(frozen=True)
class Encoded:
    """Unpadded token ids of a list of texts.

    ``ids`` and ``type_ids`` hold one int64 array per text; ``truncated`` flags texts that were
    cut at ``max_seq_length``.
    """

    ids: list[np.ndarray]
    type_ids: list[np.ndarray]
    truncated: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(i) for i in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: Sequence[int] | np.ndarray) -> Encoded:
        """The rows ``rows`` of this encoding, in that order."""
        index = [int(i) for i in rows]
        return Encoded([self.ids[i] for i in index], [self.type_ids[i] for i in index], self.truncated[index])


class Tokenizer:
    """A ``tokenizers.Tokenizer`` configured from the artifact manifest.

    Texts are truncated at ``max_seq_length`` on the manifest's side unless a call names the other
    one (``truncation_direction``); each direction has its own Rust tokenizer, so calls never change
    shared truncation state under each other.
    """

    def __init__(self, root: Path, info: TokenizerInfo) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        path = root / info.file
        try:
            self._tok = RustTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on parse errors
            raise ArtifactError(
                f"{path} is not a valid tokenizers file ({exc}); re-create the artifact with "
                "`fastembed-rt export MODEL OUT_DIR`"
            ) from exc
        self.info = info
        self._tok.no_padding()
        self._backends: dict[str, Any] = {info.truncation_side: self._tok}
        self._truncate(self._tok, info.truncation_side)
        self._special = frozenset(info.special_token_ids)
        self._prompt_lengths: dict[str, int] = {}

    def _truncate(self, backend: Any, direction: str) -> None:
        backend.enable_truncation(max_length=self.info.max_seq_length, strategy="longest_first", direction=direction)

    def _backend(self, direction: str | None) -> Any:
        """The Rust tokenizer that truncates on ``direction`` (None: the manifest's side)."""
        side = direction or self.info.truncation_side
        if side not in self._backends:
            if side not in ("left", "right"):
                raise InputError(f"truncation_direction must be 'left' or 'right', got {direction!r}")
            backend = self._tok.from_str(self._tok.to_str())
            backend.no_padding()
            self._truncate(backend, side)
            self._backends[side] = backend
        return self._backends[side]

    @property
    def max_seq_length(self) -> int:
        return self.info.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.info = replace(self.info, max_seq_length=int(value))
        for direction, backend in self._backends.items():
            self._truncate(backend, direction)
        self._prompt_lengths.clear()

    @property
    def backend(self) -> object:
        """The underlying ``tokenizers.Tokenizer`` (for users who need offsets or tokens)."""
        return self._tok

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(
        self, texts: Sequence[str | tuple[str, str]], truncation_direction: TruncationDirection | None = None
    ) -> Encoded:
        """Token ids of ``texts`` (single texts or pairs), truncated, not padded."""
        encodings = self._backend(truncation_direction).encode_batch(list(texts), add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        type_ids = [np.asarray(e.type_ids, dtype=np.int64) for e in encodings]
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
        return Encoded(ids, type_ids, truncated)

    def encode_ids(
        self, rows: Sequence[Sequence[int]], truncation_direction: TruncationDirection | None = None
    ) -> Encoded:
        """Token id rows used as given (no special tokens added), truncated at ``max_seq_length``.

        Raises:
            InputError: an id outside the vocabulary, naming the row and the id.
        """
        limit, vocab = self.max_seq_length, self.vocab_size
        side = truncation_direction or self.info.truncation_side
        ids: list[np.ndarray] = []
        for i, row in enumerate(rows):
            array = np.asarray(row, dtype=np.int64)
            bad = np.flatnonzero((array < 0) | (array >= vocab))
            if bad.size:
                raise InputError(
                    f"inputs[{i}] holds token id {int(array[bad[0]])}, outside the vocabulary 0..{vocab - 1}"
                )
            ids.append(array[-limit:] if side == "left" else array[:limit])
        truncated = np.fromiter((len(row) > limit for row in rows), dtype=bool, count=len(rows))
        return Encoded(ids, [np.zeros_like(row) for row in ids], truncated)

    def count_tokens(self, texts: Sequence[str | tuple[str, str]]) -> list[int]:
        """Tokens of each text with special tokens and without truncation (for long-input errors)."""
        backend = self._tok.from_str(self._tok.to_str())
        backend.no_truncation()
        backend.no_padding()
        return [len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=True)]

    def prompt_length(self, prompt: str) -> int:
        """Tokens of ``prompt`` alone, minus a trailing special token (as sentence-transformers)."""
        if prompt not in self._prompt_lengths:
            ids = self._tok.encode(prompt, add_special_tokens=True).ids
            length = len(ids)
            if ids and ids[-1] in self._special:
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]
