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
those of the padded graph. Attention scores grow with the row's length squared: rows are cut at
``PACK_ROW_TOKENS`` (or the longest input, when longer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "PACKED_ATTENTION_MASK",
    "PACKED_INPUTS",
    "PACK_ROW_TOKENS",
    "POSITION_IDS",
    "UNPACK_INDEX",
    "pack_batch",
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


def pack_batch(
    ids: Sequence[np.ndarray],
    type_ids: Sequence[np.ndarray],
    attention_mask: np.ndarray,
    pad_id: int,
    left: bool = False,
    row_tokens: int = PACK_ROW_TOKENS,
) -> dict[str, np.ndarray]:
    """The packed feeds of one batch: ``input_ids``, ``token_type_ids``, ``position_ids`` (int64
    ``[rows, length]``), ``packed_attention_mask`` (int32 ``[rows, length, length]``) and ``unpack_index``
    (int64 ``[batch, sequence]``: where each padded position's token lies in the flattened packed rows).

    ``attention_mask`` is the padded batch's mask (``[batch, sequence]``, on the ``left`` side when the
    tokenizer pads left); a token whose mask value is 0 is not attended to, as in the padded graph.
    Rows hold at most ``row_tokens`` tokens each (or the longest input's), evenly filled (longest input first, into
    the emptiest row it fits in).
    """
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    capacity = max(row_tokens, int(lengths.max(initial=1)))
    # As many rows as the tokens need at ``capacity`` each, filled evenly (longest input first, into the
    # emptiest row it fits in): every row runs at the fullest row's length, so an uneven last row would be
    # padding. An input that fits in no row opens one: filled past ``capacity``, 5 inputs of 100 tokens went two
    # to a row (4 rows of 200: 800 token slots where padding costs 500, attention at 200², twice the time).
    fill = [0] * max(1, -(-int(lengths.sum()) // capacity))
    place = np.empty((len(ids), 2), dtype=np.int64)  # (row, offset) of each input
    for i in np.argsort(-lengths, kind="stable"):
        length = int(lengths[i])
        fits = [row for row in range(len(fill)) if fill[row] + length <= capacity]
        if fits:
            row = min(fits, key=fill.__getitem__)
        else:
            row = len(fill)
            fill.append(0)
        place[i] = row, fill[row]
        fill[row] += length
    longest = int(lengths.max(initial=0))
    if len(fill) * max(fill) > len(ids) * longest:  # rows that run more slots than padding would: one input a row
        place[:, 0], place[:, 1], fill = np.arange(len(ids)), 0, [int(n) for n in lengths]
    rows, width = len(fill), max(max(fill), 1)
    sequence = attention_mask.shape[1]
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((rows, width), dtype=np.int64)
    position_ids = np.zeros((rows, width), dtype=np.int64)
    owner = np.full((rows, width), -1, dtype=np.int64)  # the input each packed token belongs to
    attended = np.zeros((rows, width), dtype=bool)
    unpack_index = np.zeros((len(ids), sequence), dtype=np.int64)
    for i, (row, offset) in enumerate(place):
        length = int(lengths[i])
        end = offset + length
        first = sequence - length if left else 0  # where the input's tokens start in the padded layout
        input_ids[row, offset:end] = ids[i]
        token_type_ids[row, offset:end] = type_ids[i]
        position_ids[row, offset:end] = np.arange(length)
        owner[row, offset:end] = i
        attended[row, offset:end] = attention_mask[i, first : first + length] != 0
        unpack_index[i, first : first + length] = row * width + np.arange(offset, end)
    keys = np.where(attended, owner, -2)  # a masked token is nobody's key
    mask = (owner[:, :, None] == keys[:, None, :]) & (owner[:, :, None] >= 0)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        POSITION_IDS: position_ids,
        PACKED_ATTENTION_MASK: mask.astype(np.int32),
        UNPACK_INDEX: unpack_index,
    }
