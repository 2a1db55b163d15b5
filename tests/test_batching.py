"""Length-aware batch planning and padding."""

from __future__ import annotations

import numpy as np
import pytest

from fastembed_rt.batching import DEFAULT_MAX_BATCH_BYTES, ActivationCost, pad_batch, plan_batches


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


def _cost(batches: list[np.ndarray], lengths: np.ndarray, overhead: int) -> int:
    return sum(overhead + len(b) * int(lengths[b].max()) for b in batches)


def _greedy(lengths: np.ndarray, max_batch_size: int, budget: int) -> list[np.ndarray]:
    """Cut the sorted rows every max_batch_size rows (or fewer, within the budget): the plan before."""
    order = np.argsort(-lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        rows = max(1, min(max_batch_size, budget // max(int(lengths[order[start]]), 1)))
        out.append(order[start : start + rows])
        start += rows
    return out


@pytest.mark.parametrize("seed", range(5))
def test_plan_never_costs_more_padded_tokens_and_runs_than_cutting_every_max_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(5, 30, 40), rng.integers(60, 256, 8)])
    for max_rows, budget in [(32, 8192), (8, 512), (16, 1024)]:
        plan = plan_batches(lengths, max_rows, budget, run_overhead_tokens=32)
        assert _cost(plan, lengths, 32) <= _cost(_greedy(lengths, max_rows, budget), lengths, 32)


def test_plan_cuts_where_lengths_jump_and_keeps_similar_rows_together() -> None:
    lengths = np.array([100] + [10] * 15)
    plan = plan_batches(lengths, 32, 8192, run_overhead_tokens=32)
    assert [sorted(lengths[b].tolist()) for b in plan] == [[100], [10] * 15], "one long row does not pad 15 short ones"
    same = plan_batches(np.full(64, 12), 32, 8192, run_overhead_tokens=32)
    assert [len(b) for b in same] == [32, 32], "equal lengths: full batches"
    assert [len(b) for b in plan_batches(np.array([5, 5]), 32, 8192, run_overhead_tokens=10_000)] == [2]


# Qwen3-Embedding-0.6B's shape: hidden 1024, FFN 3072, 16 query heads.
QWEN3_0_6B = ActivationCost.of({"hidden_size": 1024, "intermediate_size": 3072, "num_attention_heads": 16})


def test_long_rows_run_in_smaller_batches_under_the_memory_bound() -> None:
    assert QWEN3_0_6B is not None
    lengths = np.array([4096] * 6 + [512] * 40 + [32] * 64)
    plan = plan_batches(lengths, 32, token_budget=1 << 20, cost=QWEN3_0_6B, max_batch_bytes=1 << 30)
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))
    by_length: dict[int, list[int]] = {}
    for rows in plan:
        longest = int(lengths[rows].max())
        by_length.setdefault(longest, []).append(len(rows))
        if len(rows) > 1:
            assert QWEN3_0_6B.batch_bytes(len(rows), longest) <= 1 << 30
    # One 4,096-token row alone needs 2.3 GB of scores: it runs alone rather than not at all.
    assert QWEN3_0_6B.batch_bytes(1, 4096) > 1 << 30
    assert by_length[4096] == [1] * 6
    assert max(by_length[512]) < 32 and max(by_length[512]) >= 4
    assert max(by_length[32]) == 32  # short rows batch as before


def test_without_a_backbone_shape_only_the_token_budget_bounds_batches() -> None:
    assert ActivationCost.of({}) is None
    lengths = np.array([4096] * 4)
    assert [len(rows) for rows in plan_batches(lengths, 32, token_budget=8192)] == [2, 2]


def test_the_default_bound_splits_long_passages_but_not_sentences_of_a_small_model() -> None:
    minilm = ActivationCost.of({"hidden_size": 384, "intermediate_size": 1536, "num_attention_heads": 12})
    assert minilm is not None
    passages = plan_batches(np.full(64, 250), 32, cost=minilm)
    sentences = plan_batches(np.full(64, 20), 32, cost=minilm)
    assert all(
        1 < len(rows) < 32 and minilm.batch_bytes(len(rows), 250) <= DEFAULT_MAX_BATCH_BYTES for rows in passages
    )
    assert [len(rows) for rows in sentences] == [32, 32]


def _exact_cost(lengths: np.ndarray, max_rows: int, budget: int, overhead: int) -> int:
    """The cheapest padded plan over every batch size (the planner's former search), by plain dynamic programming."""
    ordered = np.sort(lengths)[::-1]
    best = [0] + [1 << 62] * len(ordered)
    for j in range(1, len(ordered) + 1):
        for size in range(1, min(max_rows, j) + 1):
            longest = int(ordered[j - size])
            if size == 1 or size * longest <= budget:
                best[j] = min(best[j], best[j - size] + overhead + size * longest)
    return best[-1]


@pytest.mark.parametrize("seed", range(3))
def test_large_batch_sizes_are_planned_on_a_grid_within_a_percent_of_the_exact_plan(seed: int) -> None:
    """Pricing every size of batch_size=4096 took 36 s for 50,000 one-word texts (packed): sizes past 64 are priced
    in steps of 1/32, every one below exactly."""
    from fastembed_rt.batching import candidate_sizes

    assert candidate_sizes(32).tolist() == list(range(1, 33)) and candidate_sizes(64).tolist() == list(range(1, 65))
    grid = candidate_sizes(4096)
    assert grid[0] == 1 and grid[-1] == 4096 and len(grid) < 250 and (grid[64:] / grid[63:-1]).max() <= 1.05
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(3, 12, 500), rng.integers(20, 120, 100)])
    for max_rows, budget in [(400, 4096), (300, 100_000)]:
        plan = plan_batches(lengths, max_rows, budget, run_overhead_tokens=32)
        assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))
        assert all(len(b) <= max_rows and (len(b) == 1 or len(b) * lengths[b].max() <= budget) for b in plan)
        assert _cost(plan, lengths, 32) <= _exact_cost(lengths, max_rows, budget, 32) * 1.01
