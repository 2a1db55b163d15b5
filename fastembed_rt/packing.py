"""Sequence packing: a batch's inputs laid end to end in a few rows, so the graph runs no padding.

A padded batch runs every row at its longest row's length. Sorting thousands of texts by length
makes that cheap (STSb test sorted in batches of 32: 1.8 % padding), but a server's batch is the
few dozen unrelated requests that arrived together: 16 random STSb sentences padded to their
longest run 2.2× their tokens. The ``packed`` variant (``export.pack``) takes them packed instead::

    inputs  [a a a] [b b b b b b] [c c] [d d d d]     rows of at most ``row_tokens`` tokens
    packed  row 0: b b b b b b a a a               position_ids restart at every input;
            row 1: d d d d c c . . .               each token attends only to its own input
                                                   (``packed_attention_mask``, block-diagonal)

and gathers the packed token states back into the padded ``[batch, sequence]`` layout
(``unpack_index``) before the output stages, so pooling, normalization and every output are exactly
those of the padded graph. Attention grows with the row's length squared, and inputs longer than half a row
cannot share one: ``pack_layout`` lays a batch out in rows of ``PACK_ROW_TOKENS``, of its longest input's length
or of twice or four times that, whichever costs least (``layout_cost``), and the batch planner prices candidate
batches the same way (``estimate_layouts``), so long inputs run one a row in batches of similar lengths, as padded.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_ATTENTION_SPAN",
    "PACKED_ATTENTION_MASK",
    "PACKED_INPUTS",
    "PACK_ROW_TOKENS",
    "POSITION_IDS",
    "SPAN_PER_WIDTH",
    "UNPACK_INDEX",
    "attention_span",
    "estimate_layouts",
    "layout_cost",
    "pack_batch",
    "pack_layout",
]

POSITION_IDS = "position_ids"
PACKED_ATTENTION_MASK = "packed_attention_mask"
UNPACK_INDEX = "unpack_index"
# The graph inputs that make a graph packed; ``input_ids`` and ``token_type_ids`` are then the packed rows.
PACKED_INPUTS = (POSITION_IDS, PACKED_ATTENTION_MASK, UNPACK_INDEX)
# all-MiniLM-L6-v2, 2 threads (AVX-512 EPYC), groups of 32 random STSb sentences (14 tokens on average),
# median of 3 rounds: evenly filled rows of 64, 128 and 256 tokens ran 538, 537 and 501 sentences/s, one row
# of all ~450 tokens 431, padded (`optimized`) 417; groups of 6: 415, 464, 460, 453 and 355.
PACK_ROW_TOKENS = 128
# What a token costs beside its row's other tokens: attention (Q·Kᵀ and the weighted sum of V) takes 2 × hidden
# multiply-adds per (token, key), the projections and the FFN 4 × hidden² + 2 × hidden × intermediate per token, so a
# token in a row of ``width`` costs ``1 + width / span`` tokens' worth of a layer, ``span`` a multiple of ``2 × hidden
# + intermediate``. The multiple is measured: attention's softmax and mask run far below the GEMMs' rate. In
# all-MiniLM-L6-v2 (2 × 384 + 1,536 = 2,304; 2,048 tokens a run, 1 and 2 threads, AVX-512 EPYC) a token cost the
# same in rows of 16 to 64, and 1.06×, 1.12× and 1.24× that in rows of 128, 256 and 512: ``span`` 1,000 to 1,800.
SPAN_PER_WIDTH = 2 / 3
DEFAULT_ATTENTION_SPAN = 2304 * SPAN_PER_WIDTH  # all-MiniLM-L6-v2's: where an artifact records no backbone shape
# Row capacities tried besides the longest input's: it doubled, and doubled again, up to ``row_tokens``.
_DOUBLINGS = 2


def attention_span(shape: dict[str, object]) -> float:
    """``span`` of an artifact's backbone shape (``manifest.source["backbone"]``): ``SPAN_PER_WIDTH × (2 × hidden +
    intermediate)``, or ``DEFAULT_ATTENTION_SPAN`` where it records none."""
    hidden = int(str(shape.get("hidden_size") or 0))
    if hidden <= 0:
        return DEFAULT_ATTENTION_SPAN
    return SPAN_PER_WIDTH * (2 * hidden + int(str(shape.get("intermediate_size") or 4 * hidden)))


def layout_cost(rows: int | np.ndarray, width: int | np.ndarray, span: float = DEFAULT_ATTENTION_SPAN) -> np.ndarray:
    """What a graph run of ``rows × width`` token slots costs, in tokens of a layer (see ``DEFAULT_ATTENTION_SPAN``)."""
    return np.asarray(rows * width * (1.0 + np.asarray(width, dtype=np.float64) / span))


def _fill(lengths: np.ndarray, capacity: int, evenly: bool) -> tuple[np.ndarray, list[int]]:
    """``(row, offset)`` of each input and every row's tokens, longest input first. ``evenly``: into the emptiest
    row it fits in, starting from as many rows as the tokens need at ``capacity`` (every row runs at the fullest
    row's length, so an uneven last row would be padding); else into the fullest (best fit: fewer rows where
    inputs of a third to half a row leave gaps that an even fill cannot close). An input that fits in no row opens
    one: filled past ``capacity``, 5 inputs of 100 tokens went two to a row (4 rows of 200: 800 token slots where
    padding costs 500, attention at 200², twice the time)."""
    # A heap of (fill, row) (even) or a sorted list of them (best fit): each input takes O(log rows), not a pass over
    # every row (a batch of 4,096 two-token inputs, laid out at its longest input's length, took 1.2 s that way).
    fill = [0] * (max(1, -(-int(lengths.sum()) // capacity)) if evenly else 0)
    rows = [(0, row) for row in range(len(fill))]  # a heap when even (already one), sorted when best fit
    place = np.empty((len(lengths), 2), dtype=np.int64)
    for i in np.argsort(-lengths, kind="stable"):
        length = int(lengths[i])
        if evenly:
            if rows and rows[0][0] + length <= capacity:  # the emptiest row (lowest index of the emptiest) fits
                _, row = heapq.heappop(rows)
            else:
                row = len(fill)
                fill.append(0)
        else:
            fullest = bisect.bisect_right(rows, (capacity - length, len(fill))) - 1
            if fullest >= 0:  # the fullest row that fits, of those equally full the lowest index
                row = rows.pop(bisect.bisect_left(rows, (rows[fullest][0], -1)))[1]
            else:
                row = len(fill)
                fill.append(0)
        place[i] = row, fill[row]
        fill[row] += length
        if evenly:
            heapq.heappush(rows, (fill[row], row))
        else:
            bisect.insort(rows, (fill[row], row))
    return place, fill


def estimate_layouts(
    firsts: np.ndarray,
    ends: np.ndarray,
    tokens: np.ndarray,
    descending: np.ndarray,
    row_tokens: int = PACK_ROW_TOKENS,
    span: float = DEFAULT_ATTENTION_SPAN,
) -> np.ndarray:
    """The cost (``layout_cost``) of the cheapest packed layout of each batch of length-sorted inputs ``firsts[k] ..
    ends[k] - 1``, estimated without laying it out (the batch planner prices thousands of candidate batches).
    ``descending``: the negated lengths, longest first (ascending, for searchsorted); ``tokens``: their
    running sum from 0.

    Capacities tried: the longest input's, doubled and doubled again up to ``row_tokens``, and ``row_tokens`` (or
    the longest input's, when longer). At a capacity ``c`` inputs longer than ``c / 2`` take a row each (rows ``c``
    long), shorter inputs are counted in rows of their own (beside a long one they fit only where its row has room:
    41 tokens do not beside 118 in a row of 128), those longer than ``c / 3`` at most two to a row, the rest filling
    rows evenly, never shorter than the longest input. Long inputs then run apart from short ones unless that costs
    more runs than it saves; ``pack_layout`` lays a batch out for real.
    """
    longest = -descending[firsts]
    total = tokens[ends] - tokens[firsts]
    best = np.full(np.shape(firsts), np.inf)
    for capacity, valid in [
        *((longest << k, (longest << k) <= np.maximum(row_tokens, longest)) for k in range(_DOUBLINGS + 1)),
        (np.maximum(longest, row_tokens), True),
    ]:
        half = np.clip(np.searchsorted(descending, -(capacity // 2), side="left"), firsts, ends)
        third = np.clip(np.searchsorted(descending, -(capacity // 3), side="left"), half, ends)
        shared = np.maximum(-(-(tokens[ends] - tokens[half]) // capacity), -(-(third - half) // 2))
        rows = np.maximum((half - firsts) + shared, 1)
        width = np.where(half > firsts, capacity, np.minimum(capacity, np.maximum(longest, -(-total // rows))))
        best = np.minimum(best, np.where(valid, layout_cost(rows, width, span), np.inf))
    return best


def _capacities(longest: int, row_tokens: int) -> list[int]:
    """The row capacities a batch whose longest input has ``longest`` tokens is laid out at (``estimate_layouts``)."""
    top = max(row_tokens, longest)
    return sorted({top, *(longest << k for k in range(_DOUBLINGS + 1) if longest << k <= top)})


def pack_layout(
    lengths: np.ndarray, row_tokens: int = PACK_ROW_TOKENS, span: float = DEFAULT_ATTENTION_SPAN
) -> tuple[np.ndarray, list[int]]:
    """The cheapest layout (``layout_cost``) of inputs of ``lengths`` tokens: ``(row, offset)`` of each input and
    every row's tokens, at each capacity ``estimate_layouts`` tries, evenly filled or best fit (a few dozen
    microseconds each for 32 inputs, less than estimating them). Rows of 128 are not always cheapest: 32 inputs of
    60 to 128 tokens, each in a row of 128 beside at most one other, ran 1.66× the time of the padded graph (2
    threads, AVX-512 EPYC), and inputs of about one length run best one a row, at the longest input's length
    (which never costs more than padding)."""
    sizes = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    if len(sizes) <= 1:  # a single query: one row of its own
        return np.zeros((len(sizes), 2), dtype=np.int64), [int(n) for n in sizes] or [0]
    best: tuple[float, np.ndarray, list[int]] | None = None
    for capacity in _capacities(int(sizes.max(initial=1)), row_tokens):
        for evenly in (True, False):
            place, fill = _fill(sizes, capacity, evenly)
            cost = float(layout_cost(len(fill), max(fill, default=0), span))
            if best is None or cost < best[0]:
                best = (cost, place, fill)
    assert best is not None
    return best[1], best[2]


def pack_batch(
    ids: Sequence[np.ndarray],
    type_ids: Sequence[np.ndarray],
    attention_mask: np.ndarray,
    pad_id: int,
    left: bool = False,
    row_tokens: int = PACK_ROW_TOKENS,
    span: float = DEFAULT_ATTENTION_SPAN,
) -> dict[str, np.ndarray]:
    """The packed feeds of one batch: ``input_ids``, ``token_type_ids``, ``position_ids`` (int64
    ``[rows, length]``), ``packed_attention_mask`` (int32 ``[rows, length, length]``) and ``unpack_index``
    (int64 ``[batch, sequence]``: where each padded position's token lies in the flattened packed rows).

    ``attention_mask`` is the padded batch's mask (``[batch, sequence]``, on the ``left`` side when the
    tokenizer pads left); a token whose mask value is 0 is not attended to, as in the padded graph.
    Rows are laid out by ``pack_layout`` (``span``: the backbone's ``attention_span``).
    """
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    place, fill = pack_layout(lengths, row_tokens, span)
    rows, width = max(len(fill), 1), max(max(fill, default=0), 1)
    batch, sequence = attention_mask.shape
    # Every token at once (a loop over the inputs cost 0.2 ms a 32-text call): token j of input i goes from
    # ``source`` in the padded layout to ``packed`` in the flattened rows.
    starts = np.cumsum(lengths) - lengths
    step = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)  # j
    packed = np.repeat(place[:, 0] * width + place[:, 1], lengths) + step
    first = sequence - lengths if left else np.zeros_like(lengths)  # where each input starts in the padded layout
    source = np.repeat(np.arange(batch, dtype=np.int64) * sequence + first, lengths) + step
    input_ids = np.full(rows * width, pad_id, dtype=np.int64)
    token_type_ids = np.zeros(rows * width, dtype=np.int64)
    position_ids = np.zeros(rows * width, dtype=np.int64)
    # The input each packed token belongs to, as a query (-1: a padding slot) and as a key (-2 where masked, so a
    # padding query, -1, matches no key and a masked token is nobody's key).
    owner = np.full(rows * width, -1, dtype=np.int32)
    keys = np.full(rows * width, -2, dtype=np.int32)
    unpack_index = np.zeros(batch * sequence, dtype=np.int64)
    if len(packed):
        input_ids[packed] = np.concatenate(ids)
        token_type_ids[packed] = np.concatenate(type_ids)
        position_ids[packed] = step
        owner[packed] = np.repeat(np.arange(batch, dtype=np.int32), lengths)
        keys[packed] = np.where(attention_mask.reshape(-1)[source] != 0, owner[packed], -2)
        unpack_index[source] = packed
    # int32 straight from the comparison (a bool mask cast after: 2.6 against 0.5 ms for 32 rows of 250)
    mask = np.empty((rows, width, width), dtype=np.int32)
    np.equal(owner.reshape(rows, width, 1), keys.reshape(rows, 1, width), out=mask, casting="unsafe")
    return {
        "input_ids": input_ids.reshape(rows, width),
        "token_type_ids": token_type_ids.reshape(rows, width),
        POSITION_IDS: position_ids.reshape(rows, width),
        PACKED_ATTENTION_MASK: mask,
        UNPACK_INDEX: unpack_index.reshape(batch, sequence),
    }
