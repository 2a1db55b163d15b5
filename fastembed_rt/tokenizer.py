"""Texts to token ids with Rust ``tokenizers``, matching sentence-transformers' preprocessing.

sentence-transformers tokenizes with ``truncation="longest_first"`` at ``max_seq_length`` and
prepends prompts as plain strings; the export stage saved the tokenizer exactly as it configured
it (lower-casing normalizers included), so here only truncation and padding are applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastembed_rt.artifact import TokenizerInfo
from fastembed_rt.errors import ArtifactError

__all__ = ["Encoded", "Tokenizer"]


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


class Tokenizer:
    """A ``tokenizers.Tokenizer`` configured from the artifact manifest."""

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
        self._tok.enable_truncation(
            max_length=info.max_seq_length, strategy="longest_first", direction=info.truncation_side
        )
        self._special = frozenset(info.special_token_ids)
        self._prompt_lengths: dict[str, int] = {}

    @property
    def max_seq_length(self) -> int:
        return self.info.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        from dataclasses import replace

        self.info = replace(self.info, max_seq_length=int(value))
        self._tok.enable_truncation(
            max_length=int(value), strategy="longest_first", direction=self.info.truncation_side
        )
        self._prompt_lengths.clear()

    @property
    def backend(self) -> object:
        """The underlying ``tokenizers.Tokenizer`` (for users who need offsets or tokens)."""
        return self._tok

    def encode(self, texts: list[str] | list[tuple[str, str]]) -> Encoded:
        """Token ids of ``texts`` (single texts or pairs), truncated, not padded."""
        encodings = self._tok.encode_batch(texts, add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        type_ids = [np.asarray(e.type_ids, dtype=np.int64) for e in encodings]
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
        return Encoded(ids, type_ids, truncated)

    def prompt_length(self, prompt: str) -> int:
        """Tokens of ``prompt`` alone, minus a trailing special token (as sentence-transformers)."""
        if prompt not in self._prompt_lengths:
            ids = self._tok.encode(prompt, add_special_tokens=True).ids
            length = len(ids)
            if ids and ids[-1] in self._special:
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]
