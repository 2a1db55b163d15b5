"""Length-aware batching: sort by token length, then cut where padding costs more than another run.

Sorting by *token* length (not characters, as sentence-transformers does) was worth 1.6–1.85×
throughput on STSb here (DESIGN §7): every batch pads only to its own longest row. Where to cut the
sorted rows is chosen by a small dynamic program over the cost of a run, ``overhead + rows ×
longest row`` padded tokens, with at most ``max_batch_size`` rows and ``token_budget`` padded tokens
per batch. On thousands of sorted texts that is what cutting every ``max_batch_size`` rows gives;
on a few dozen texts of mixed lengths (what a server collects from concurrent requests) it splits
the batch where the lengths jump: 16 random STSb sentences padded to their longest waste 55 % of
the tokens they run (measured here), and a run costs about as much as 30 more padded tokens.

Long contexts add a memory bound: attention holds ``heads × length²`` scores per row, so a batch
of 8,192 tokens as one row of 8,192 needs 1,024 times the score memory of 32 rows of 256. With
the backbone's shape (``ActivationCost``) a batch also stays under ``max_batch_bytes``: 64 MiB where the
graph runs on the CPU, 1 GiB on an accelerator (``fastembed_rt.providers.max_batch_bytes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastembed_rt.packing import DEFAULT_ATTENTION_SPAN, PACK_ROW_TOKENS, estimate_layouts

__all__ = [
    "ACCELERATOR_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_TOKEN_BUDGET",
    "RUN_OVERHEAD_TOKENS",
    "ActivationCost",
    "pad_batch",
    "plan_batches",
]

# 32 rows of 256 tokens: batch 32 was the fastest size measured on 2 cores (DESIGN §7).
DEFAULT_TOKEN_BUDGET = 8192
# What one more graph run costs, in padded tokens: all-MiniLM-L6-v2 on 2 threads here ran one row of
# 8 tokens in 2.8 ms and spent 0.09 ms per further padded token (rows × length from 8 to 128).
RUN_OVERHEAD_TOKENS = 32
# The cut search looks back at most this many rows, so planning stays linear in the number of rows (each row
# prices at most ``len(candidate_sizes(batch_size))`` batches: 200 for batch_size 4096).
_PLAN_WINDOW = 4096
# Batch sizes up to this are all priced; larger ones in steps (``candidate_sizes``).
_EXACT_SIZES = 64
# Activation bytes of one graph run's largest layer (ONNX Runtime's arena grows to the largest run, and
# keeps it). all-MiniLM-L6-v2 on 135 passages of ~250 tokens, batch 32, 2 threads (issue 13): at 1 GiB
# (batches of 32) peak RSS 525 MB and 27 passages/s; at 64 MiB (batches of 6) 262 MB and 29/s; at 16 MiB
# 202 MB but 23/s. Short texts never reach the bound (32 STSb sentences: ~13 MiB).
DEFAULT_MAX_BATCH_BYTES = 64 << 20
# On a GPU the bound is device memory, and large batches are what keep the device busy: the bound every
# provider had before the CPU's was measured.
ACCELERATOR_MAX_BATCH_BYTES = 1 << 30


@dataclass(frozen=True)
class ActivationCost:
    """Float32 bytes the largest layer of one run holds: ``token_bytes`` per padded token (hidden
    states, Q/K/V and the FFN's widest tensors) plus ``pair_bytes`` per row × length² (attention
    scores and their softmax, per head). An estimate from the backbone's shape, not a measurement."""

    token_bytes: int
    pair_bytes: int

    @classmethod
    def of(cls, shape: dict[str, Any]) -> ActivationCost | None:
        """From an artifact's backbone shape (``manifest.source["backbone"]``); None when it lacks one."""
        hidden, heads = int(shape.get("hidden_size") or 0), int(shape.get("num_attention_heads") or 0)
        if hidden <= 0 or heads <= 0:
            return None
        intermediate = int(shape.get("intermediate_size") or 4 * hidden)
        return cls(token_bytes=4 * (4 * hidden + 2 * intermediate), pair_bytes=4 * 2 * heads)

    def batch_bytes(self, rows: int, length: int) -> int:
        return rows * length * (self.token_bytes + self.pair_bytes * length)


def plan_batches(
    lengths: np.ndarray,
    max_batch_size: int,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    run_overhead_tokens: int = RUN_OVERHEAD_TOKENS,
    cost: ActivationCost | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    packed: bool = False,
    span: float = DEFAULT_ATTENTION_SPAN,
) -> list[np.ndarray]:
    """Split row indices into batches, longest rows first, at the cheapest cuts.

    A batch holds at most ``max_batch_size`` rows and, padded to its longest row, at most
    ``token_budget`` tokens and (given the backbone's ``cost``) ``max_batch_bytes`` of activations;
    a single row over either bound still gets its own batch. Among such cuts of the length-sorted rows into
    batches of ``candidate_sizes``, the plan minimizes ``sum(run_overhead_tokens + rows × longest)`` over its
    batches. ``packed``: the graph runs the batch packed (``fastembed_rt.packing``),
    so a batch costs the token slots of its cheapest packed layout (``packing.layout_cost``, attention
    included: ``span``, the backbone's ``attention_span``), estimated: short inputs share rows and run
    about their tokens, so batches of them are cut only by the bounds; inputs too long to share a row run
    one a row, at their batch's longest, so these are cut where their lengths jump, as padded ones are. The
    bounds are the padded batch's, which no packed layout exceeds.

    Returns:
        int64 index arrays into ``lengths``; together they cover every row exactly once.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    lengths = np.asarray(lengths)
    if len(lengths) == 1:  # a single query: nothing to choose, and pricing the choice cost a tenth of its run
        return [np.zeros(1, dtype=np.int64)]
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    for start in range(0, len(order), _PLAN_WINDOW):
        part = order[start : start + _PLAN_WINDOW]
        sizes = _cheapest_cuts(
            np.maximum(lengths[part], 1).astype(np.int64),
            max_batch_size,
            token_budget,
            run_overhead_tokens,
            cost,
            max_batch_bytes,
            packed,
            span,
        )
        offset = 0
        for size in sizes:
            batches.append(part[offset : offset + size])
            offset += size
    return batches


def _cheapest_cuts(
    sorted_lengths: np.ndarray,
    max_rows: int,
    budget: int,
    overhead: int,
    activations: ActivationCost | None = None,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    packed: bool = False,
    span: float = DEFAULT_ATTENTION_SPAN,
) -> list[int]:
    """Batch sizes, in order, that cover rows sorted by decreasing length at the least total cost.

    ``cost[j]`` is the cheapest plan of the first ``j`` rows; a batch of rows ``i..j-1`` costs
    ``overhead + (j - i) × sorted_lengths[i]`` (its first row is its longest), or ``overhead`` + the
    cost of its cheapest packed layout when ``packed`` (``packing.estimate_layouts``).
    """
    n = len(sorted_lengths)
    max_rows = min(max_rows, max(n, 1))  # no candidate batch is longer than the rows (batch_size may be 10**5)
    tokens = np.concatenate([[0], np.cumsum(sorted_lengths)])
    descending = -sorted_lengths  # ascending, for searchsorted
    cost = np.full(n + 1, np.inf)
    cost[0] = 0.0
    take = np.zeros(n + 1, dtype=np.int64)
    sizes = candidate_sizes(max_rows)
    # What every candidate batch costs does not depend on the plan: priced for a block of ends at once (a few
    # numpy calls a block, not a row), the plan then only adds and compares.
    block = max(1, (1 << 16) // len(sizes))
    for start in range(1, n + 1, block):
        ends = np.arange(start, min(n, start + block - 1) + 1)[:, None]
        firsts = np.maximum(ends - sizes, 0)
        longest = sorted_lengths[firsts]
        if packed:
            run = estimate_layouts(firsts, ends, tokens, descending, span=span)
            # The bounds hold for whichever layout pack_layout then lays out: it never runs more slots than padding
            # (it costs no more, and its rows are no shorter than the longest input) nor rows longer than
            # max(PACK_ROW_TOKENS, longest). (Checked against the estimate, real layouts ran up to 1.5x the bounds.)
            padded = sizes * longest
            row = np.maximum(longest, PACK_ROW_TOKENS)
        else:
            padded = sizes * longest
            row = longest
            run = padded
        fits = padded <= budget
        if activations is not None:
            fits &= padded * (activations.token_bytes + activations.pair_bytes * row) <= max_bytes
        allowed = (fits | (sizes == 1)) & (sizes <= ends)
        priced = np.where(allowed, overhead + run, np.inf)
        for k, j in enumerate(ends[:, 0].tolist()):
            totals = cost[firsts[k]] + priced[k]
            best = int(np.argmin(totals))
            cost[j], take[j] = totals[best], sizes[best]
    cuts: list[int] = []
    j = n
    while j > 0:
        cuts.append(int(take[j]))
        j -= int(take[j])
    return cuts[::-1]


def candidate_sizes(max_rows: int) -> np.ndarray:
    """The batch sizes the planner prices: every one up to ``_EXACT_SIZES``, then a step of 1/32 of the size (and
    ``max_rows``). Pricing all 4,096 of ``batch_size=4096`` took 36 s for 50,000 one-word texts with the packed
    graph's layouts (the encoding itself: 20 s); a batch cut to the step below the best size costs at most ~3 % more
    runs of ``RUN_OVERHEAD_TOKENS`` each, its padding no more (its rows are sorted by length)."""
    exact = np.arange(1, min(max_rows, _EXACT_SIZES) + 1)
    if max_rows <= _EXACT_SIZES:
        return exact
    steps = np.geomspace(_EXACT_SIZES, max_rows, int(np.ceil(np.log(max_rows / _EXACT_SIZES) / np.log1p(1 / 32))) + 1)
    return np.unique(np.concatenate([exact, np.round(steps).astype(np.int64), [max_rows]]))


def pad_batch(rows: Sequence[np.ndarray], pad_id: int, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad int64 rows to the longest one. Returns ``(ids, attention_mask)``, both int64 [B, L]."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        if left:
            ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
        else:
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
    return ids, mask
