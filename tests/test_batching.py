"""Length-aware batch planning and padding."""

from __future__ import annotations

import numpy as np
import pytest

from fastembed_rt.batching import pad_batch, plan_batches


@pytest.mark.parametrize("max_batch_size,budget", [(1, 100), (4, 64), (32, 8192), (7, 10)])
def test_plan_covers_every_row_once_within_size_and_budget(max_batch_size: int, budget: int) -> None:
    lengths = np.random.default_rng(1).integers(1, 60, 200)
    batches = plan_batches(lengths, max_batch_size, budget)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(200))
    for batch in batches:
        assert 1 <= len(batch) <= max_batch_size
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= budget


def test_plan_puts_longest_rows_first_and_sorts_by_length() -> None:
    lengths = np.array([3, 50, 7, 7, 1, 20])
    batches = plan_batches(lengths, 2, 10_000)
    flat = np.concatenate(batches)
    assert list(lengths[flat]) == sorted(lengths, reverse=True)


def test_plan_of_nothing_is_empty_and_bad_size_is_refused() -> None:
    assert plan_batches(np.array([], dtype=np.int64), 8) == []
    with pytest.raises(ValueError, match="max_batch_size"):
        plan_batches(np.array([1]), 0)


@pytest.mark.parametrize("left", [False, True])
def test_pad_batch_pads_to_longest_row_on_the_requested_side(left: bool) -> None:
    ids, mask = pad_batch([np.array([5, 6, 7]), np.array([9])], pad_id=0, left=left)
    assert ids.shape == mask.shape == (2, 3)
    assert mask.sum(axis=1).tolist() == [3, 1]
    assert ids[1].tolist() == ([0, 0, 9] if left else [9, 0, 0])
