"""Texts to token ids with Rust ``tokenizers``, matching sentence-transformers' preprocessing.

sentence-transformers tokenizes with ``truncation="longest_first"`` at ``max_seq_length`` and
prepends prompts as plain strings; the export stage saved the tokenizer exactly as it configured
it (lower-casing normalizers included), so here only truncation and padding are applied.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import accumulate, chain
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from fastembed_rt.artifact import TokenizerInfo, check_readable
from fastembed_rt.errors import ArtifactError, InputError

__all__ = ["Encoded", "TokenRows", "Tokenizer", "TruncationDirection", "Windows", "with_prompt"]

TruncationDirection = Literal["left", "right"]


class TokenRows(Sequence[np.ndarray]):
    """int64 token rows stored flat: row ``i`` is a read-only view ``values[starts[i]:starts[i] + lengths[i]]``.

    What ``Tokenizer.encode`` returns instead of one array per text: a NumPy array costs ~112 bytes of header
    besides its data, more than the ~17 ids of an STSb sentence: 100,000 of them held 52 MB as two lists of
    arrays, 16.5 MB as rows (their token types, all 0 for single texts, one shared zero row).
    """

    __slots__ = ("lengths", "starts", "values")

    def __init__(self, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        values.flags.writeable = False
        self.values = values
        self.starts = starts
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start = int(self.starts[index])
        return self.values[start : start + int(self.lengths[index])]


@dataclass(frozen=True)
class Encoded:
    """Unpadded token ids of a list of texts.

    ``ids`` and ``type_ids`` hold one int64 array per text (``TokenRows`` from ``Tokenizer.encode``, lists
    elsewhere; treat rows as read-only); ``truncated`` flags texts that were cut at ``max_seq_length``.
    """

    ids: Sequence[np.ndarray]
    type_ids: Sequence[np.ndarray]
    truncated: np.ndarray
    # Per-row attention mask values when some real positions must not be attended (ColBERT's query
    # expansion tokens); None: every position of a row is attended.
    attention: Sequence[np.ndarray] | None = None

    @property
    def lengths(self) -> np.ndarray:
        if isinstance(self.ids, TokenRows):
            return self.ids.lengths.copy()
        return np.fromiter((len(i) for i in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: Sequence[int] | np.ndarray) -> Encoded:
        """The rows ``rows`` of this encoding, in that order."""
        index = [int(i) for i in rows]
        attention = None if self.attention is None else [self.attention[i] for i in index]
        return Encoded(
            [self.ids[i] for i in index], [self.type_ids[i] for i in index], self.truncated[index], attention
        )


# tokenizers' Encoding objects (tokens, offsets, masks and the overflow past the truncation) took 3.5 KB
# per STSb sentence here: a call on 100,000 texts held 345 MB of them at once, and most stayed with the
# allocator after they were freed (peak RSS 733 MB against 146 MB of output). Texts are tokenized in chunks
# of at most this many texts and characters, and only their ids are kept; chunks of 256 to 16,384 texts
# tokenized equally fast (53-59 thousand texts/s) on 2 cores.
TOKENIZE_CHUNK_TEXTS = 1024
# distinct prompts whose token count is kept (a model has a few; per-request prompts are counted again)
PROMPT_LENGTHS_CACHED = 1024
TOKENIZE_CHUNK_CHARS = 1 << 20
# A pair's text of more characters than this many per kept token is cut before the pairs are tokenized
# (``Tokenizer._cut_long_pair_texts``); a single text of more than four times as many, to this many
# (``Tokenizer._cut_long_texts``).
PAIR_CUT_CHARS_PER_TOKEN = 16


# Window tokenizers kept, one per (pair or not, chunk_overlap, length): a copy of the tokenizer each
WINDOW_TOKENIZERS_KEPT = 4


def _chunks(items: Sequence[str | tuple[str, str]]) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of ``items`` of at most ``TOKENIZE_CHUNK_TEXTS`` items and, unless one item alone
    is longer, ``TOKENIZE_CHUNK_CHARS`` characters."""
    runs: list[tuple[int, int]] = []
    start, chars = 0, 0
    for index, item in enumerate(items):
        size = len(item) if isinstance(item, str) else sum(len(part) for part in item)
        if index > start and (index - start >= TOKENIZE_CHUNK_TEXTS or chars + size > TOKENIZE_CHUNK_CHARS):
            runs.append((start, index))
            start, chars = index, 0
        chars += size
    if start < len(items):
        runs.append((start, len(items)))
    return runs


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """``parts`` as one array, without a copy when there is one part."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def with_prompt(items: Sequence[str | tuple[str, str]], prompt: str | None) -> list[Any]:
    """``prompt`` before each text, or before the first text (the query) of each pair."""
    if not prompt:
        return list(items)
    return [prompt + item if isinstance(item, str) else (prompt + item[0], item[1]) for item in items]


@dataclass(frozen=True)
class Windows:
    """Inputs cut into windows (``Tokenizer.encode_windows``): one ``encoded`` row per window.

    ``owner[w]`` is the input window ``w`` belongs to (windows of one input are consecutive, in
    order), ``spans[w]`` the character span ``(start, end)`` of the input's text it covers (for a
    pair: of the document), ``weights[w]`` how many of the input's own tokens it holds (no special
    or prompt tokens), and ``chunked[i]`` whether input ``i`` needed more than one window.
    """

    encoded: Encoded
    owner: np.ndarray
    spans: np.ndarray
    weights: np.ndarray
    chunked: np.ndarray


# Every Tokenizer, for a forked child to reset: a parent thread holding one's lock (or a tokenizer) at the fork
# is gone there, and the child's first call would wait for it forever.
_TOKENIZERS: weakref.WeakSet[Tokenizer] = weakref.WeakSet()


def _reset_in_child() -> None:
    for tokenizer in list(_TOKENIZERS):
        tokenizer._lock = threading.Lock()
        tokenizer._holding = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_in_child)


class Tokenizer:
    """A ``tokenizers.Tokenizer`` configured from the artifact manifest.

    Texts are truncated at ``max_seq_length`` on the manifest's side unless a call names the other
    one (``truncation_direction``). Each side and length has its own Rust tokenizer, and a call reads
    ``max_seq_length`` once: calls never change shared truncation state under each other, and a call running
    while ``max_seq_length`` changes cuts all its texts at one length, leaving nothing stale behind.
    """

    def __init__(self, root: Path, info: TokenizerInfo) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        path = root / info.file
        check_readable(path, root)
        try:
            self._tok = RustTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on parse errors
            raise ArtifactError(
                f"{path} is not a valid tokenizers file ({exc}); re-create the artifact with "
                "`fastembed-rt export MODEL OUT_DIR`"
            ) from exc
        vocab = self._tok.get_vocab_size(with_added_tokens=True)
        if info.vocab_size is not None and vocab != info.vocab_size:
            raise ArtifactError(
                f"{path} holds {vocab} tokens, but the artifact was exported with a tokenizer of {info.vocab_size}: "
                "it is another model's tokenizer; restore the artifact's own (or export the model again)"
            )
        self.info = info
        self._tok.encode_special_tokens = info.split_special_tokens
        self._tok.no_padding()
        self._truncate(self._tok, info.truncation_side)
        self._backends: dict[str, Any] = {f"{info.truncation_side}@{info.max_seq_length}": self._tok}
        # Calls holding a truncating tokenizer: with none, a new max_seq_length reconfigures them in place (a copy
        # of a tokenizer costs ~0.1-0.3 s, and `model.max_seq_length = n` after loading is common); with some, they
        # are left to those calls and the new length gets tokenizers of its own
        self._holding = 0
        self._lock = threading.Lock()
        _TOKENIZERS.add(self)
        self._special = frozenset(info.special_token_ids)
        # bounded (prompt_length): a prompt carrying per-request text (an instruction with the user's context) is a
        # new key each call, and an unbounded dict grew ~300 B a call for as long as the process ran
        self._prompt_lengths: dict[tuple[str, int], int] = {}
        self._template: tuple[list[int], list[int], list[int], list[int], int] | None = None

    def _copy(self) -> Any:
        """A copy of the Rust tokenizer to configure on its own (to_str does not carry encode_special_tokens)."""
        backend = self._tok.from_str(self._tok.to_str())
        backend.encode_special_tokens = self._tok.encode_special_tokens
        return backend

    def _truncate(self, backend: Any, direction: str) -> None:
        backend.enable_truncation(max_length=self.info.max_seq_length, strategy="longest_first", direction=direction)

    @contextmanager
    def _truncating(self, direction: str | None, max_length: int | None) -> Iterator[tuple[Any, int]]:
        """The Rust tokenizer that truncates on ``direction`` (None: the manifest's side) at ``max_length`` tokens
        (None: ``max_seq_length``, read once), and that length; held for the block: ``max_seq_length`` set meanwhile
        does not reconfigure it (one reconfigured in place cut a call's later texts at another length)."""
        side = direction or self.info.truncation_side
        if side not in ("left", "right"):
            raise InputError(f"truncation_direction must be 'left' or 'right', got {direction!r}")
        made = None
        while True:
            with self._lock:
                length = max_length or self.info.max_seq_length
                key = f"{side}@{length}"
                if made is not None and made[0] == key:
                    self._backends.setdefault(key, made[1])
                backend = self._backends.get(key)
                if backend is not None:
                    self._holding += 1
                    break
            copy = self._copy()  # made outside the lock: the other threads' calls do not wait for it
            copy.no_padding()
            copy.enable_truncation(max_length=length, strategy="longest_first", direction=side)
            made = (key, copy)
        try:
            yield backend, length
        finally:
            with self._lock:
                self._holding -= 1

    @property
    def max_seq_length(self) -> int:
        return self.info.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        with self._lock:
            old, self.info = self.info.max_seq_length, replace(self.info, max_seq_length=int(value))
            for key in list(self._backends):
                side, _, length = key.partition("@")
                if key == "public":  # the user's copy follows the length in place (nothing here encodes with it)
                    self._truncate(self._backends[key], self.info.truncation_side)
                elif key.startswith("windows:"):  # window sizes follow max_seq_length: made again on next use
                    del self._backends[key]
                elif length and length != str(self.info.max_seq_length):  # other lengths go: made again on next use
                    backend = self._backends.pop(key)
                    if length == str(old) and not self._holding:  # no call holds it: the new length's, in place
                        self._truncate(backend, side)
                        self._backends.setdefault(f"{side}@{self.info.max_seq_length}", backend)
            self._prompt_lengths.clear()

    @property
    def backend(self) -> object:
        """A ``tokenizers.Tokenizer`` for users who need offsets or tokens: a copy of the one encoding, truncating
        at ``max_seq_length`` on the manifest's side (kept so when it changes) and not padding. A copy because Rust
        tokenizers keep padding and truncation as state: a user's ``enable_padding()`` on the one that encodes
        made every later batch pool over its pad tokens, silently."""
        if "public" not in self._backends:
            backend = self._copy()
            backend.no_padding()
            self._truncate(backend, self.info.truncation_side)
            self._backends["public"] = backend
        return self._backends["public"]

    def get_vocab(self) -> dict[str, int]:
        """Token → id, read from the tokenizer that encodes (no copy of it is made, as ``backend`` makes)."""
        return dict(self._tok.get_vocab())

    def id_to_token(self, token_id: int) -> str | None:
        """The token of ``token_id`` (None: not in the vocabulary)."""
        token: str | None = self._tok.id_to_token(token_id)
        return token

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(
        self,
        texts: Sequence[str | tuple[str, str]],
        truncation_direction: TruncationDirection | None = None,
        max_length: int | None = None,
        *,
        add_special_tokens: bool = True,
    ) -> Encoded:
        """Token ids of ``texts`` (single texts or pairs), truncated at ``max_length`` (None:
        ``max_seq_length``; multi-vector models' query and document lengths), not padded; without the special
        tokens when not ``add_special_tokens`` (an inference-free SPLADE query route)."""
        with self._truncating(truncation_direction, max_length) as (backend, length):  # one length for the call
            return self._encode(backend, length, texts, truncation_direction, add_special_tokens)

    def truncated_encodings(
        self,
        texts: Sequence[str],
        truncation_direction: TruncationDirection | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[tuple[Any, int]]:
        """Each text's Rust encoding (tokens, offsets) truncated at ``max_length`` (None: ``max_seq_length``) as
        ``encode`` truncates it, with the characters cut from the text's start before its offsets (a long text
        left-truncated is tokenized from a suffix: ``_cut_long_texts``)."""
        side = truncation_direction or self.info.truncation_side
        with self._truncating(truncation_direction, max_length) as (backend, length):
            cut = self._cut_long_texts(list(texts), backend, side, length, add_special_tokens)
            encodings = backend.encode_batch(cut, add_special_tokens=add_special_tokens)
        left = side == "left"
        return [(e, len(text) - len(part) if left else 0) for e, text, part in zip(encodings, texts, cut)]

    def _encode(
        self,
        backend: Any,
        length: int,
        texts: Sequence[str | tuple[str, str]],
        truncation_direction: TruncationDirection | None,
        add_special_tokens: bool,
    ) -> Encoded:
        side = truncation_direction or self.info.truncation_side
        texts = self._cut_long_texts(list(texts), backend, side, length, add_special_tokens)
        texts = self._cut_long_pair_texts(texts, side, length)
        ids: list[np.ndarray] = []  # one flat array per chunk
        type_ids: list[np.ndarray] = []  # likewise, from the first chunk with a type other than 0 on
        lengths: list[int] = []
        starts: list[int] = []
        truncated: list[bool] = []
        tokens = 0
        for start, stop in _chunks(texts):
            encodings = backend.encode_batch(texts[start:stop], add_special_tokens=add_special_tokens)
            counts = [len(e) for e in encodings]
            offsets = list(accumulate(counts, initial=tokens))
            ids.append(np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64, offsets[-1] - tokens))
            types = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), np.int64, offsets[-1] - tokens)
            if type_ids or np.count_nonzero(types):
                type_ids.append(types if type_ids else np.concatenate([np.zeros(tokens, np.int64), types]))
            tokens = offsets.pop()
            lengths += counts
            starts += offsets
            truncated += [bool(e.overflowing) for e in encodings]
        rows, firsts = np.array(lengths, dtype=np.int64), np.array(starts, dtype=np.int64)
        if type_ids:
            type_rows = TokenRows(_joined(type_ids), firsts, rows)
        else:  # every type 0: one shared zero row
            type_rows = TokenRows(np.zeros(max(lengths, default=0), np.int64), np.zeros_like(rows), rows)
        return Encoded(TokenRows(_joined(ids), firsts, rows), type_rows, np.array(truncated, dtype=bool))

    def _cut_long_texts(
        self, items: list[Any], backend: Any, side: str, limit: int, add_special_tokens: bool
    ) -> list[Any]:
        """``items`` with each single text far longer than truncation keeps replaced by its part that truncation
        keeps, plus a margin: the first (``side`` right) or last ``PAIR_CUT_CHARS_PER_TOKEN × limit`` characters.

        Truncation tokenizes the whole text and then drops all but ``limit`` tokens: a server's 2 MB text took
        2.4 s of its model's worker (a one-text query grouped with four waited 12 s for them) and ~600 MB while
        its ~950,000 tokens existed. Normalizers, pre-tokenizers and the models within a word are local, so a cut
        changes the tokens of the word it splits and not those far from it; a cut is used only where the cut and
        one twice as long both overflow and keep the same ids, so a tokenizer whose tokens depend on text far away
        (one long word) keeps the whole text.
        """
        near = limit * PAIR_CUT_CHARS_PER_TOKEN
        long = [i for i, item in enumerate(items) if isinstance(item, str) and len(item) > 4 * near]
        if not long:
            return items
        left = side == "left"
        cuts = [
            part
            for i in long
            for part in ((items[i][-near:], items[i][-2 * near :]) if left else (items[i][:near], items[i][: 2 * near]))
        ]
        encodings = backend.encode_batch(cuts, add_special_tokens=add_special_tokens)  # all at once: Rust's threads
        out = list(items)
        for k, index in enumerate(long):
            first, second = encodings[2 * k], encodings[2 * k + 1]
            if (
                first.overflowing
                and second.overflowing
                and (first.ids, first.type_ids) == (second.ids, second.type_ids)
            ):
                out[index] = cuts[2 * k]
        return out

    def _cut_long_pair_texts(
        self, items: list[str | tuple[str, str]], side: str, limit: int
    ) -> list[str | tuple[str, str]]:
        """``items`` with the long texts of pairs cut to what truncation can keep of them, plus a few tokens.

        A pair truncates ``longest_first``: its texts are tokenized apart, then each keeps a count of tokens that
        depends only on which is longer and, where the shorter is short, its count; so a text of more than ``limit``
        tokens gives the same tokens cut anywhere that keeps those three facts. A rerank query repeated over every
        document was tokenized in full once per pair (a 900 kB query: 0.7 s per document, minutes of a server's
        model for one request): each distinct text of a pair with a long text is tokenized once here, and a long
        one is cut at a token boundary. A cut is used only where its kept side's first ``limit`` tokens are the
        full text's and the pair's order of lengths is unchanged, so every pair's tokens are the uncut pair's.
        """
        threshold = limit * PAIR_CUT_CHARS_PER_TOKEN
        long_pairs = [
            index
            for index, item in enumerate(items)
            if not isinstance(item, str) and max(len(item[0]), len(item[1])) > threshold
        ]
        if not long_pairs:
            return items
        backend = self.untruncated
        texts = list(dict.fromkeys(part for index in long_pairs for part in items[index]))
        full = dict(zip(texts, backend.encode_batch(texts, add_special_tokens=False)))
        versions: dict[tuple[str, int], tuple[str, int] | None] = {}

        def version(text: str, keep: int) -> tuple[str, int] | None:
            """``text`` cut to about ``keep`` tokens and its token count (itself where short), None where the cut
            changes the tokens truncation keeps."""
            encoding = full[text]
            if keep >= len(encoding.ids) or len(text) <= threshold:
                return text, len(encoding.ids)
            if (text, keep) not in versions:
                left = side == "left"
                cut = text[encoding.offsets[-keep][0] :] if left else text[: encoding.offsets[keep - 1][1]]
                ids = backend.encode(cut, add_special_tokens=False).ids
                kept = ids[-limit:] == encoding.ids[-limit:] if left else ids[:limit] == encoding.ids[:limit]
                versions[text, keep] = (cut, len(ids)) if kept and len(ids) > limit else None
            return versions[text, keep]

        base = limit + 8  # the most a text keeps, and a few tokens more so that a cut word lies past them
        out = list(items)
        for index in long_pairs:
            pair = items[index]
            counts = len(full[pair[0]].ids), len(full[pair[1]].ids)
            order = (counts[0] > counts[1]) - (counts[0] < counts[1])
            # the shorter keeps its count up to base; the longer stays longer, by a token past the shorter's cut
            shorter = 1 if order > 0 else 0
            short = version(pair[shorter], base)
            long = None if short is None else version(pair[1 - shorter], max(base, short[1] + (order != 0)))
            if short is None or long is None:
                continue
            cut = (long, short) if order > 0 else (short, long)
            if (cut[0][1] > cut[1][1]) - (cut[0][1] < cut[1][1]) == order:
                out[index] = (cut[0][0], cut[1][0])
        return out

    def encode_ids(
        self,
        rows: Sequence[Sequence[int]],
        truncation_direction: TruncationDirection | None = None,
        max_length: int | None = None,
    ) -> Encoded:
        """Token id rows used as given (no special tokens added), truncated at ``max_length`` (None:
        ``max_seq_length``).

        Raises:
            InputError: an id outside the vocabulary, naming the row and the id.
        """
        limit, vocab = max_length or self.max_seq_length, self.vocab_size
        side = truncation_direction or self.info.truncation_side
        ids: list[np.ndarray] = []
        for i, row in enumerate(rows):
            try:  # as given first: 7592.9 or "2088" cast straight to int64 were taken as ids 7592 and 2088
                given = np.asarray(row)
                whole = given.size == 0 or given.dtype.kind in "iu"  # a uint64 past int64 wraps negative: refused
                if whole and isinstance(row, (list, tuple)) and any(type(t) is bool for t in row):
                    whole = False  # [101, True, 102]: numpy makes it int64
                array = given.astype(np.int64) if whole else np.empty((0, 0), dtype=np.int64)  # refused below
            except (OverflowError, TypeError, ValueError):
                array = np.empty((0, 0), dtype=np.int64)  # refused below, naming the row
            if array.ndim != 1:
                raise InputError(f"inputs[{i}] must be a list of token ids (integers from 0 to {vocab - 1})")
            bad = np.flatnonzero((array < 0) | (array >= vocab))
            if bad.size:
                raise InputError(
                    f"inputs[{i}] holds token id {int(array[bad[0]])}, outside the vocabulary 0..{vocab - 1}"
                )
            ids.append(array[-limit:] if side == "left" else array[:limit])
        truncated = np.fromiter((len(row) > limit for row in rows), dtype=bool, count=len(rows))
        return Encoded(ids, [np.zeros_like(row) for row in ids], truncated)

    @property
    def untruncated(self) -> Any:
        """A copy of the Rust tokenizer that neither truncates nor pads (token counts, offsets, decoding)."""
        if "untruncated" not in self._backends:
            backend = self._copy()
            backend.no_truncation()
            backend.no_padding()
            self._backends["untruncated"] = backend
        return self._backends["untruncated"]

    def count_tokens(self, texts: Sequence[str | tuple[str, str]]) -> list[int]:
        """Tokens of each text with special tokens and without truncation (for long-input errors)."""
        return [len(e.ids) for e in self.untruncated.encode_batch(list(texts), add_special_tokens=True)]

    def encode_windows(
        self, items: Sequence[str | tuple[str, str]], *, prompt: str | None = None, overlap: int = 0
    ) -> Windows:
        """Inputs cut into windows of at most ``max_seq_length`` tokens instead of truncated.

        An input that fits is one window, tokenized exactly as ``encode`` does (``prompt`` + text).
        A longer text is split into windows sharing ``overlap`` tokens, each with the model's special
        tokens (tokenizers' own overflow windowing); with a ``prompt``, ``prompt + text`` is tokenized
        once and the prompt's tokens are repeated after the leading special tokens of every window, so
        the first window is the truncated encoding. A longer pair (query, document)
        keeps the query whole in every window and splits the document.

        Raises:
            InputError: ``overlap`` leaves no room for new tokens in a window, or a pair's query
                alone does not fit in a window.
        """
        full = with_prompt(items, prompt)
        with self._truncating(None, None) as (backend, length):  # one length for every window of the call
            plain = self._encode(backend, length, full, None, True)
        prompt_ids = self.untruncated.encode(prompt, add_special_tokens=False).ids if prompt else []
        # A text that fits: its tokens are those of prompt + text that end past the prompt, as for a longer one
        # (a byte-level BPE merges the prompt's trailing space into the text's first token: "query: " alone is
        # 5 tokens, 4 in "query: hello", and counting it apart took one of the text's tokens as the prompt's).
        fitting = [i for i, item in enumerate(items) if prompt and isinstance(item, str) and not plain.truncated[i]]
        joint = self.untruncated.encode_batch([full[i] for i in fitting], add_special_tokens=False) if fitting else []
        text_tokens = {i: sum(end > len(prompt or "") for _, end in e.offsets) for i, e in zip(fitting, joint)}
        ids: list[np.ndarray] = []
        type_ids: list[np.ndarray] = []
        owner: list[int] = []
        spans: list[tuple[int, int]] = []
        weights: list[int] = []
        for index, item in enumerate(items):
            row = plain.ids[index]
            if not plain.truncated[index]:
                ids.append(row)
                type_ids.append(plain.type_ids[index])
                owner.append(index)
                text = item if isinstance(item, str) else item[1]
                spans.append((0, len(text)))
                # all but what the post-processor added and the prompt (by id, [UNK] and a typed "[CLS]" were
                # left out: an emoji-only text held 0 tokens)
                added = self.special_count(not isinstance(item, str))
                weights.append(text_tokens.get(index, max(len(row) - added - len(prompt_ids), 0)))
                continue
            if isinstance(item, str) and prompt:
                self._prompted_windows(prompt, item, overlap, length, index, (ids, type_ids, owner, spans, weights))
                continue
            # a text without a prompt, or a pair (a prompt is part of its query, which every window holds whole)
            for window in self._windows(full[index] if not isinstance(item, str) else item, overlap, length):
                window_ids, window_types = window.ids, window.type_ids
                content = [
                    offset
                    for offset, is_special, sequence in zip(
                        window.offsets, window.special_tokens_mask, window.sequence_ids
                    )
                    if not is_special and sequence == (0 if isinstance(item, str) else 1)
                ]
                ids.append(np.asarray(window_ids, dtype=np.int64))
                type_ids.append(np.asarray(window_types, dtype=np.int64))
                owner.append(index)
                spans.append((content[0][0], content[-1][1]) if content else (0, 0))
                weights.append(len(content))
        encoded = Encoded(ids, type_ids, np.zeros(len(ids), dtype=bool))
        return Windows(
            encoded,
            np.asarray(owner, dtype=np.int64),
            np.asarray(spans, dtype=np.int64).reshape(-1, 2),
            np.asarray(weights, dtype=np.float32),
            plain.truncated.copy(),
        )

    def _prompted_windows(
        self, prompt: str, text: str, overlap: int, length: int, index: int, out: tuple[list[Any], ...]
    ) -> None:
        """``length``-token windows of an over-long ``text`` after ``prompt``, from one tokenization of
        ``prompt + text`` (appended to ``out``'s ids, type ids, owners, spans and weights).

        A byte-level BPE merges across the seam (``"Query: "`` + ``"world"`` gives ``Ġworld``), so tokenizing
        the prompt and the text apart gave the first window other tokens than the same text that fits, and than
        sentence-transformers' truncation. The prompt's tokens are those that end within it; each window is the
        special tokens around them and a run of the text's tokens, runs overlapping by ``overlap`` tokens.
        """
        ids, type_ids, owner, spans, weights = out
        joint = self.untruncated.encode(prompt + text, add_special_tokens=False)
        cut = 0
        while cut < len(joint.ids) and joint.offsets[cut][1] <= len(prompt):
            cut += 1
        head, body, offsets = joint.ids[:cut], joint.ids[cut:], joint.offsets[cut:]
        room = length - self.special_count(False) - cut
        if room <= overlap:
            raise InputError(
                f"a prompt of {cut} tokens leaves {max(room, 0)} tokens of each {length}-token "
                f"window for the text, no more than chunk_overlap {overlap}: shorten the prompt or lower chunk_overlap"
            )
        lead, trail, lead_types, trail_types, content_type = self._single_template()
        start = 0
        while True:
            piece = body[start : start + room]
            ids.append(np.asarray([*lead, *head, *piece, *trail], dtype=np.int64))
            content = [content_type] * (len(head) + len(piece))
            type_ids.append(np.asarray([*lead_types, *content, *trail_types], dtype=np.int64))
            owner.append(index)
            first, last = offsets[start], offsets[start + len(piece) - 1]
            spans.append((max(first[0] - len(prompt), 0), max(last[1] - len(prompt), 0)))
            weights.append(len(piece))
            if start + room >= len(body):
                return
            start += room - overlap

    def _single_template(self) -> tuple[list[int], list[int], list[int], list[int], int]:
        """The special tokens the post-processor puts before and after one text, their type ids, and the text's."""
        if self._template is None:
            probe = self.untruncated.encode("a", add_special_tokens=True)
            mask = probe.special_tokens_mask
            start = next((i for i, special in enumerate(mask) if not special), len(mask))
            end = len(mask) - next((i for i, special in enumerate(reversed(mask)) if not special), len(mask))
            content = probe.type_ids[start] if start < len(mask) else 0
            self._template = (probe.ids[:start], probe.ids[end:], probe.type_ids[:start], probe.type_ids[end:], content)
        return self._template

    def _windows(self, item: str | tuple[str, str], overlap: int, length: int) -> list[Any]:
        """tokenizers' overflow windows of ``length`` tokens of one over-long text or pair."""
        pair = not isinstance(item, str)
        # tokenizers panics (a BaseException, past any ``except Exception``) where the stride leaves no new
        # token in a window, so the room a window has for the text is checked here first.
        room = length - self.special_count(pair)
        if pair:
            query_tokens = len(self.untruncated.encode(item[0], add_special_tokens=False).ids)
            room -= query_tokens
            if room <= overlap:
                raise InputError(
                    f"a query of {query_tokens} tokens leaves {max(room, 0)} tokens of each "
                    f"{length}-token window for the document, no more than chunk_overlap {overlap}: "
                    "shorten the query or lower chunk_overlap"
                )
        elif room <= overlap:
            raise InputError(
                f"chunk_overlap {overlap} does not fit windows of {length} tokens ({room} of them for the text): "
                "lower chunk_overlap"
            )
        key = f"windows:{pair}:{overlap}@{length}"  # by length: one made for a length just replaced stays unused
        backend = self._backends.get(key)
        if backend is None:
            backend = self._copy()
            backend.no_padding()
            try:
                backend.enable_truncation(
                    max_length=length, stride=overlap, strategy="only_second" if pair else "longest_first"
                )
            except Exception as exc:  # tokenizers raises a bare Exception for a stride it cannot honour
                raise InputError(f"chunk_overlap {overlap} does not fit windows of {length} tokens: {exc}") from None
            with self._lock:  # the oldest go first: each overlap asked for kept a ~6 MB copy for good (200: 1.2 GB)
                if length == self.info.max_seq_length:  # not one of a length set meanwhile: used once, not kept
                    windows = [name for name in self._backends if name.startswith("windows:")]
                    for name in windows[: max(len(windows) - WINDOW_TOKENIZERS_KEPT + 1, 0)]:
                        del self._backends[name]
                    self._backends[key] = backend
        try:
            first = backend.encode(*(item if pair else (item,)), add_special_tokens=True)
        except Exception as exc:
            raise InputError(f"cannot cut this input into windows of {length} tokens: {exc}") from None
        return [first, *first.overflowing]

    def special_count(self, pair: bool) -> int:
        """Special tokens the post-processor adds to a text (3 for a BERT pair: [CLS] q [SEP] d [SEP])."""
        return self.untruncated.post_processor.num_special_tokens_to_add(pair) if self.untruncated.post_processor else 0

    def prompt_length(self, prompt: str) -> int:
        """Tokens of ``prompt`` alone, minus a trailing special token (as sentence-transformers)."""
        # at the length calls cut at now, by the tokenizer truncating there (the loaded one may be another length's
        # once a length was set while a call ran), cached by both: one counted as the length changed stays its own
        with self._truncating(None, None) as (backend, limit):
            length = self._prompt_lengths.get((prompt, limit))
            if length is None:
                ids = backend.encode(prompt, add_special_tokens=True).ids
                length = len(ids) - 1 if ids and ids[-1] in self._special else len(ids)
                if len(self._prompt_lengths) >= PROMPT_LENGTHS_CACHED:  # emptied when full: a model's own few
                    self._prompt_lengths.clear()  # prompts are counted again once, per-request ones never pile up
                self._prompt_lengths[prompt, limit] = length
        return length
