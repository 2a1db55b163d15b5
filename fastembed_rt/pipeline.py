"""One encode call: validate → tokenize → plan batches → run the fused graph → scatter back.

The graph already pools and normalizes; the host only pads, feeds and reorders.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastembed_rt.artifact import Manifest
from fastembed_rt.batching import (
    DEFAULT_TOKEN_BUDGET,
    ActivationCost,
    pad_batch,
    plan_batches,
)
from fastembed_rt.errors import InputError, LongInputError, ProviderError
from fastembed_rt.kernels.spec import (
    NORMALIZE_OUTPUT,
    OUTPUT_DIM,
    PROMPT_LENGTH,
    QUANTIZE_RANGES,
    SENTENCE_EMBEDDING,
    TOKEN_EMBEDDINGS,
)
from fastembed_rt.long_inputs import LongInputs, window_bounds
from fastembed_rt.packing import PACKED_INPUTS, attention_span, pack_batch
from fastembed_rt.providers import max_batch_bytes as engine_max_batch_bytes
from fastembed_rt.providers.base import ExecutionProvider
from fastembed_rt.tokenizer import Encoded, Tokenizer, TruncationDirection, Windows, with_prompt

__all__ = [
    "MIN_BATCHES_PER_STREAM",
    "BatchFeeds",
    "EncodeStats",
    "Pipeline",
    "Prepared",
    "check_texts",
    "check_unicode",
    "refuse_containers",
]

# A call runs its batches on the engine's streams only when it has at least this many per stream (``Pipeline.run``).
MIN_BATCHES_PER_STREAM = 2


def check_texts(texts: object) -> list[str]:
    """``texts`` as a list of str, or an ``InputError`` naming the first bad position."""
    if isinstance(texts, str):
        return [texts]
    if texts is None:
        raise InputError("texts is None; pass a str or a list of str")
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:  # tolist() of a 0-d array is its one str, which list() then split into characters
            raise InputError(f"texts is a {texts.ndim}-d array; pass a str or a 1-d array of str")
        texts = texts.tolist()
    refuse_containers(texts, "texts", "df['text'].tolist()")
    if not isinstance(texts, Iterable):
        raise InputError(f"texts must be a str or a list of str, got {type(texts).__name__}")
    items = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise not_a_text(item, f"texts[{i}]")
        check_unicode(item, f"texts[{i}]")
    return items


def not_a_text(item: object, where: str) -> InputError:
    """The error for ``item``, found at ``where`` where a str belongs: a missing value (None, NaN as pandas reads
    one, pandas' ``NA`` of its string dtypes) said as one, a nested list as one."""
    kind = "None" if item is None else type(item).__name__
    hint = " (nested lists are not accepted: flatten them first)" if isinstance(item, (list, tuple)) else ""
    if is_missing(item):
        kind = "NaN" if isinstance(item, float) else "NA"
        hint = " (a missing value: drop or fill them first, e.g. series.dropna())"
    return InputError(f"{where} is {kind}, expected str{hint}")


def is_missing(item: object) -> bool:
    """Whether ``item`` is a table's missing value: NaN (as pandas reads one) or pandas' ``NA``."""
    return (isinstance(item, float) and item != item) or type(item).__name__ == "NAType"


def refuse_containers(value: object, name: str, example: str) -> None:
    """An ``InputError`` for an iterable whose items are not its values: a mapping or DataFrame iterates over its keys
    or column names (a DataFrame was embedded as its column names), bytes-likes over their byte values
    (sentence-transformers refuses these too)."""
    kind = type(value).__name__
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InputError(f"{name} is {kind}; decode it to str first (e.g. value.decode('utf-8'))")
    if isinstance(value, Mapping) or (hasattr(value, "columns") and hasattr(value, "iterrows")):
        raise InputError(
            f"{name} is a {kind}, whose iteration gives its keys or column names, not its texts; pass its values, "
            f"e.g. {example}"
        )


def check_unicode(text: str, where: str) -> None:
    """An ``InputError`` naming ``where`` and the position when ``text`` holds a lone surrogate.

    Lone surrogates (``"\\ud800"``) arrive from JSON with escaped surrogates and from some PDF
    extractors; they are not Unicode text, and tokenizers would fail on them with a bare TypeError.
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{where} holds a lone surrogate ({text[exc.start]!r}) at character {exc.start}: it is not valid "
            "Unicode text; decode the source with errors='replace' or remove it"
        ) from None


@dataclass
class EncodeStats:
    """What the last encode call did: truncation or chunking, padding and where the time went.

    ``truncated``: inputs cut at ``max_seq_length``; ``chunked``: inputs cut into windows
    (``long_inputs="chunk"``), ``windows``: the windows run for them all.

    Seconds per stage, for tuning ``batch_size``: ``tokenize_s`` (tokenizing, batch planning and
    padding the feeds), ``run_s`` (the execution provider), ``postprocess_s`` (scattering rows back
    to input order and converting outputs). Reading them costs nothing; recording them costs four
    ``perf_counter`` calls per batch.
    """

    texts: int = 0
    truncated: int = 0
    chunked: int = 0
    windows: int = 0
    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    tokenize_s: float = 0.0
    run_s: float = 0.0
    postprocess_s: float = 0.0

    @classmethod
    def total(cls, parts: Sequence[EncodeStats]) -> EncodeStats:
        """One call's stats from its parts' (a pool's chunks, a long call's groups): every field summed."""
        return cls(**{f.name: sum(getattr(part, f.name) for part in parts) for f in dataclasses.fields(cls)})

    @property
    def padding_ratio(self) -> float:
        return 0.0 if not self.padded_tokens else 1.0 - self.real_tokens / self.padded_tokens

    @property
    def total_s(self) -> float:
        return self.tokenize_s + self.run_s + self.postprocess_s


def wants_progress(show_progress_bar: bool | None) -> bool:
    """``show_progress_bar`` as sentence-transformers reads it: None (the default) shows a bar when logging is at
    INFO or DEBUG for this library (``logging.basicConfig(level=logging.INFO)`` in a notebook turns it on)."""
    if show_progress_bar is None:
        return logging.getLogger("fastembed_rt").getEffectiveLevel() in (logging.INFO, logging.DEBUG)
    return bool(show_progress_bar)


def progress(total: int, enabled: bool, desc: str = "Batches", unit: str = "batch") -> Any:
    """A progress bar on stderr (tqdm's, else a plain counter), or None when not ``enabled``."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total, desc)
    return tqdm(total=total, desc=desc, unit=unit)


class _PlainProgress:
    """A stderr counter for when tqdm is not installed (it is not a runtime dependency)."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.done, self.desc = total, 0, desc

    def update(self, n: int = 1) -> None:
        self.done += n
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total}")
        if self.done >= self.total:
            sys.stderr.write("\n")

    def close(self) -> None:
        pass


class BatchFeeds:
    """Graph inputs of one batch, exactly as the runtime feeds the graph (export calibration uses it too).

    Call with unpadded token rows: gives padded ``input_ids`` and ``attention_mask`` (int64 ``[B, L]``,
    on the tokenizer's padding side), ``token_type_ids`` and ``prompt_length`` when the graph takes
    them, and the precision stage's defaults. ``per_call_inputs`` are graph inputs a caller feeds
    itself per call (``extra_feeds``, e.g. SPLADE's ``max_active_dims``); those without a default
    are left out. ``packed``: the graph takes the batch packed (``fastembed_rt.packing``): ``input_ids`` and
    ``token_type_ids`` are then the packed rows, ``attention_mask`` stays the padded batch's.
    """

    def __init__(self, manifest: Manifest, packed: bool = False) -> None:
        self.manifest = manifest
        self.packed = packed
        self.attention_span = attention_span(manifest.source.get("backbone") or {})  # what packed layouts cost
        self._inputs = tuple(manifest.graph.inputs)
        self._left = manifest.tokenizer.padding_side == "left"
        self._pad_id = manifest.tokenizer.pad_token_id
        self.per_call_inputs = frozenset((OUTPUT_DIM, NORMALIZE_OUTPUT, QUANTIZE_RANGES))
        # The precision stage's inputs, fed explicitly with the graph's own defaults (full dim, no
        # re-normalization) when a call does not set them: OpenVINO turns ONNX input defaults into
        # constants or leaves them uninitialized, so no engine is trusted to supply them.
        dim = manifest.dim
        self._per_call_defaults = {
            OUTPUT_DIM: np.array([dim], dtype=np.int64),
            NORMALIZE_OUTPUT: np.array([False]),
            QUANTIZE_RANGES: np.stack([-np.ones(dim, np.float32), np.ones(dim, np.float32)]),
        }

    def __call__(
        self,
        ids: Sequence[np.ndarray],
        type_ids: Sequence[np.ndarray],
        prompt_length: int = 0,
        attention: Sequence[np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """The feeds of one batch; ``attention``: per-row mask values (``Encoded.attention``), else all 1.

        Raises:
            InputError: the graph has an input fastembed-rt does not know how to feed.
        """
        input_ids, mask = pad_batch(ids, self._pad_id, self._left)
        if attention is not None:
            mask = pad_batch(attention, 0, self._left)[0]
        feeds: dict[str, np.ndarray] = {}
        for name in self._inputs:
            if name == "input_ids":
                feeds[name] = input_ids
            elif name == "attention_mask":
                feeds[name] = mask
            elif name == "token_type_ids":
                feeds[name] = pad_batch(type_ids, 0, self._left)[0]
            elif name == PROMPT_LENGTH:
                feeds[name] = np.full(len(ids), prompt_length, dtype=np.int64)
            elif name in self._per_call_defaults:
                feeds[name] = self._per_call_defaults[name]  # a call's ``extra_feeds`` replace these
            elif name in self.per_call_inputs:
                continue  # fed by the caller through ``extra_feeds``
            else:
                raise InputError(f"graph input {name!r} of {self.manifest.root} is not one fastembed-rt can feed")
        if self.packed:
            packed = pack_batch(ids, type_ids, mask, self._pad_id, self._left, span=self.attention_span)
            feeds.update({name: value for name, value in packed.items() if name in feeds or name in PACKED_INPUTS})
        return feeds


@dataclass(frozen=True)
class Prepared:
    """Inputs tokenized for one model call: token rows, and how many prompt tokens lead each row.

    The first half of every encode call (``Pipeline.prepare``); the second half runs it
    (``Pipeline.run``). Callers that batch across requests (the server) prepare many requests'
    inputs at once, drop the rows they refuse (``select``) and run the rest together.
    """

    encoded: Encoded
    prompt_length: int = 0
    tokenize_s: float = 0.0
    windows: Windows | None = None
    route: str | None = None  # a routed model's route these rows were tokenized for (None: the graph's only one)

    def __len__(self) -> int:
        """The number of inputs (with ``windows``: fewer than the rows)."""
        return len(self.windows.chunked) if self.windows is not None else len(self.encoded)

    @property
    def rows(self) -> int:
        """Graph rows: one per input, or one per window."""
        return len(self.encoded)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row (after truncation), int64."""
        return self.encoded.lengths

    @property
    def truncated(self) -> np.ndarray:
        """Whether each input was cut at ``max_seq_length``, bool (never, when chunked)."""
        if self.windows is not None:
            return np.zeros(len(self), dtype=bool)
        return self.encoded.truncated

    @property
    def chunked(self) -> np.ndarray:
        """Whether each input was cut into more than one window, bool."""
        return self.windows.chunked if self.windows is not None else np.zeros(len(self), dtype=bool)

    @property
    def input_tokens(self) -> np.ndarray:
        """Tokens the graph runs per input (all its windows), int64."""
        if self.windows is None:
            return self.lengths
        return np.bincount(self.windows.owner, weights=self.lengths, minlength=len(self)).astype(np.int64)

    def select(self, inputs: Sequence[int] | np.ndarray) -> Prepared:
        """These inputs only (with all their windows), in this order."""
        if self.windows is None:
            return Prepared(self.encoded.select(inputs), self.prompt_length, self.tokenize_s, route=self.route)
        w = self.windows
        starts, ends = window_bounds(w.owner, len(self))
        picked = [int(i) for i in inputs]
        rows = np.concatenate([np.arange(starts[i], ends[i]) for i in picked]) if picked else np.empty(0, np.int64)
        owner = np.repeat(np.arange(len(picked)), [int(ends[i] - starts[i]) for i in picked])
        windows = Windows(
            w.encoded.select(rows), owner.astype(np.int64), w.spans[rows], w.weights[rows], w.chunked[picked]
        )
        return Prepared(windows.encoded, self.prompt_length, self.tokenize_s, windows, self.route)


class Pipeline:
    """Runs a fused graph over tokenized inputs; owns tokenizer, feeds and provider, not the options."""

    def __init__(self, manifest: Manifest, tokenizer: Tokenizer, provider: ExecutionProvider) -> None:
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.provider = provider
        self.feeds = BatchFeeds(manifest, packed=set(PACKED_INPUTS) <= set(getattr(provider, "input_names", ())))
        self.token_budget = DEFAULT_TOKEN_BUDGET
        # True where the budget bounds memory (a sparse model's [batch, seq, vocab] logits): streamed batches run at
        # once, so each then gets its part of it, as of max_batch_bytes
        self.token_budget_bounds_memory = False
        # Artifacts from before the manifest recorded the backbone's shape have only the token budget.
        self.activation_cost = ActivationCost.of(manifest.source.get("backbone") or {})
        self.max_batch_bytes = engine_max_batch_bytes(provider)  # the CPU's bound, or a GPU's
        self._calls = threading.local()

    @property
    def last_stats(self) -> EncodeStats:
        """The statistics of the calling thread's last call: threads sharing a model each read their own (one that
        read the model's last call got another thread's in 1 of 1,000 calls under load)."""
        stats = getattr(self._calls, "stats", None)
        return stats if stats is not None else EncodeStats()

    @last_stats.setter
    def last_stats(self, stats: EncodeStats) -> None:
        self._calls.stats = stats

    @property
    def packed(self) -> bool:
        """Whether the graph takes its batches packed (``fastembed_rt.packing``)."""
        return self.feeds.packed

    @property
    def streams(self) -> int:
        """How many batches of a call the engine can run at once: an engine that can (``cpu``) has ``streams`` and
        ``submit(feeds, outputs) -> Future``; every other runs one at a time."""
        return getattr(self.provider, "streams", 1) if hasattr(self.provider, "submit") else 1

    def prepare(
        self,
        items: Sequence[str | tuple[str, str]],
        prompt: str | None = None,
        truncation_direction: TruncationDirection | None = None,
        long_inputs: LongInputs = LongInputs.TRUNCATE,
        chunk_overlap: int = 0,
    ) -> Prepared:
        """Tokenize texts (``prompt`` before each) or pairs (``prompt`` before each query).

        ``long_inputs``: inputs over ``max_seq_length`` tokens are truncated (on ``truncation_direction``),
        refused (``InputError`` naming the first and its token count) or cut into windows that
        overlap by ``chunk_overlap`` tokens (``Prepared.windows``).
        """
        started = time.perf_counter()
        if truncation_direction not in (None, "left", "right"):  # checked here: windows never truncate, and took any
            raise InputError(f"truncation_direction must be 'left' or 'right', got {truncation_direction!r}")
        if long_inputs is LongInputs.CHUNK:
            windows = self.tokenizer.encode_windows(items, prompt=prompt, overlap=chunk_overlap)
            prompt_length = self.tokenizer.prompt_length(prompt) if prompt else 0
            return Prepared(windows.encoded, prompt_length, time.perf_counter() - started, windows)
        full = with_prompt(items, prompt)
        encoded = self.tokenizer.encode(full, truncation_direction)
        if long_inputs is LongInputs.ERROR and encoded.truncated.any():
            over = np.flatnonzero(encoded.truncated).tolist()
            tokens = dict(zip(over, self.tokenizer.count_tokens([full[i] for i in over])))
            raise LongInputError(tokens, self.tokenizer.max_seq_length, "'truncate' or 'chunk'")
        prompt_length = self.tokenizer.prompt_length(prompt) if prompt else 0
        return Prepared(encoded, prompt_length, time.perf_counter() - started)

    def run(
        self,
        prepared: Prepared,
        *,
        batch_size: int,
        outputs: Sequence[str],
        show_progress_bar: bool = False,
        extra_feeds: dict[str, np.ndarray] | None = None,
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
        """Yield ``(row_indices, outputs, attention_mask)`` per batch, longest batch first.

        Rows are sorted by token length and cut into batches of at most ``batch_size`` rows,
        ``token_budget`` padded tokens and (when the manifest has the backbone's shape) an estimated
        ``max_batch_bytes`` of activations. ``extra_feeds`` are fed unchanged with every batch (per-call
        graph inputs such as ``output_dim``). The time the caller spends between two batches is
        recorded as post-processing in ``last_stats``. On an engine with ``streams`` > 1 (``cpu``) a call of at
        least ``MIN_BATCHES_PER_STREAM`` batches per stream runs that many at once, each with its share of
        ``max_batch_bytes``.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size}")
        clock = time.perf_counter()
        encoded, prompt_length = prepared.encoded, prepared.prompt_length
        lengths = encoded.lengths
        streams = self.streams
        submit: Any = getattr(self.provider, "submit", None)
        plan = self._plan(lengths, batch_size, self.max_batch_bytes)
        # Streams only for calls of at least two batches per stream: with fewer, a stream idles or finishes
        # alone on one thread (calls of 32 STSb sentences, 2-3 batches, ran 0.83-0.97x as fast streamed in fp32).
        streamed = streams > 1 and len(plan) >= MIN_BATCHES_PER_STREAM * streams
        if streamed:  # batches that run at once share the activation bound: each gets its part of it
            budget = max(1, self.token_budget // streams) if self.token_budget_bounds_memory else self.token_budget
            plan = self._plan(lengths, batch_size, self.max_batch_bytes // streams, budget)
        stats = EncodeStats(
            texts=len(prepared),
            truncated=int(prepared.truncated.sum()),
            chunked=int(prepared.chunked.sum()),
            windows=prepared.rows if prepared.windows is not None else 0,
            batches=len(plan),
        )
        stats.tokenize_s = prepared.tokenize_s
        bar = progress(len(plan), show_progress_bar)
        # Streamed: up to ``streams`` batches run while the next one's feeds are built; each is yielded in
        # plan order once it is done.
        pending: deque[tuple[np.ndarray, dict[str, np.ndarray], Future[dict[str, np.ndarray]]]] = deque()
        try:
            for index, rows in enumerate(plan):
                attention = None if encoded.attention is None else [encoded.attention[i] for i in rows]
                feeds = self.feeds(
                    [encoded.ids[i] for i in rows], [encoded.type_ids[i] for i in rows], prompt_length, attention
                )
                if extra_feeds:
                    feeds.update(extra_feeds)
                stats.real_tokens += int(lengths[rows].sum())
                stats.padded_tokens += int(feeds["input_ids"].size)
                fed = time.perf_counter()
                stats.tokenize_s += fed - clock
                if not streamed:
                    result = self.provider.run(feeds, list(outputs))
                    done = [(rows, result, feeds)]
                else:
                    pending.append((rows, feeds, submit(feeds, list(outputs))))
                    last = index == len(plan) - 1
                    done = []
                    while pending and (len(pending) > streams or last):
                        ready_rows, ready_feeds, future = pending.popleft()
                        try:
                            result = future.result()
                        except CancelledError:  # only the engine's close cancels a queued batch
                            raise ProviderError("this model was closed during the call; create a new one") from None
                        done.append((ready_rows, result, ready_feeds))
                clock = time.perf_counter()
                stats.run_s += clock - fed
                for ready_rows, result, ready_feeds in done:
                    if bar is not None:
                        bar.update(1)
                    yield ready_rows, result, ready_feeds["attention_mask"]
                    resumed = time.perf_counter()
                    stats.postprocess_s += resumed - clock
                    clock = resumed
            self.last_stats = stats  # a call that ran to its end: an interrupted one (Ctrl-C) said it had run whole
        finally:
            for _, _, future in pending:  # the caller stopped early or a batch failed: no run outlives the call
                future.cancel()
            # A future cancelled before it ran is never marked done for ``wait`` once its executor has shut down (the
            # engine closed by another thread): waiting on it hung the call; a running one is waited for.
            wait([future for _, _, future in pending if not future.cancelled()])
            if bar is not None:
                bar.close()

    def _plan(
        self, lengths: np.ndarray, batch_size: int, max_batch_bytes: int, token_budget: int | None = None
    ) -> list[np.ndarray]:
        return plan_batches(
            lengths,
            batch_size,
            self.token_budget if token_budget is None else token_budget,
            cost=self.activation_cost,
            max_batch_bytes=max_batch_bytes,
            packed=self.packed,
            span=self.feeds.attention_span,
        )

    def embed(
        self,
        prepared: Prepared,
        *,
        batch_size: int,
        show_progress_bar: bool = False,
        output_name: str = SENTENCE_EMBEDDING,
        extra_feeds: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """``[prepared.rows, width]`` rows of the graph output ``output_name``, in input order (a row per
        window when ``prepared`` holds windows).

        dtype and width are the graph output's; ``prepared`` must not be empty.
        """
        out: np.ndarray | None = None
        for rows, result, _ in self.run(
            prepared,
            batch_size=batch_size,
            outputs=[output_name],
            show_progress_bar=show_progress_bar,
            extra_feeds=extra_feeds,
        ):
            values = result[output_name]
            if out is None:
                out = np.empty((prepared.rows, *values.shape[1:]), dtype=values.dtype)
            out[rows] = values
        if out is None:
            raise InputError("nothing to encode")  # callers handle the empty list themselves
        return out

    def features(self, prepared: Prepared, *, batch_size: int, show_progress_bar: bool = False) -> list[dict[str, Any]]:
        """Every output of each row in one run, as sentence-transformers' ``encode(output_value=None)`` gives them:
        ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the graph takes them), ``token_embeddings``
        (float32 ``[tokens, hidden]``) and ``sentence_embedding``, each row's own tokens without padding, in input
        order; ``modality`` (``"text"``) and, where a prompt was applied, ``prompt_length`` (its tokens, the leading
        special token included), as sentence-transformers adds them."""
        encoded = prepared.encoded
        with_types = "token_type_ids" in self.manifest.graph.inputs
        extra: dict[str, Any] = {"modality": "text"}
        if prepared.prompt_length:
            extra["prompt_length"] = prepared.prompt_length
        out: list[dict[str, Any]] = [dict(extra) for _ in range(prepared.rows)]
        for rows, result, mask in self.run(
            prepared,
            batch_size=batch_size,
            outputs=[TOKEN_EMBEDDINGS, SENTENCE_EMBEDDING],
            show_progress_bar=show_progress_bar,
        ):
            for j, row in enumerate(rows):
                real = mask[j].astype(bool)
                ids = np.array(encoded.ids[row], dtype=np.int64)  # a copy: token rows are read-only views
                item = out[row]
                item["input_ids"] = ids
                item["attention_mask"] = np.ones_like(ids)
                if with_types:
                    item["token_type_ids"] = np.array(encoded.type_ids[row], dtype=np.int64)
                item["token_embeddings"] = result[TOKEN_EMBEDDINGS][j][real]
                item["sentence_embedding"] = result[SENTENCE_EMBEDDING][j].copy()
        return out

    def token_embeddings(
        self, prepared: Prepared, *, batch_size: int, show_progress_bar: bool = False
    ) -> list[np.ndarray]:
        """One float32 ``[tokens, hidden]`` array per row (padding removed), in input order."""
        out: list[np.ndarray] = [np.empty((0, 0), np.float32)] * prepared.rows
        for rows, result, mask in self.run(
            prepared,
            batch_size=batch_size,
            outputs=[TOKEN_EMBEDDINGS],
            show_progress_bar=show_progress_bar,
        ):
            for j, row in enumerate(rows):
                out[row] = result[TOKEN_EMBEDDINGS][j][mask[j].astype(bool)]
        return out
