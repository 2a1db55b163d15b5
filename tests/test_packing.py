"""Sequence packing: the feeds lay every input's tokens out once, and the ``packed`` variant answers
exactly as the padded graph it derives from, on batches of mixed lengths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import build_tiny_model

from fastembed_rt import SentenceTransformer
from fastembed_rt.batching import (
    DEFAULT_MAX_BATCH_BYTES,
    RUN_OVERHEAD_TOKENS,
    ActivationCost,
    pad_batch,
    plan_batches,
)
from fastembed_rt.packing import (
    DEFAULT_ATTENTION_SPAN,
    PACKED_ATTENTION_MASK,
    POSITION_IDS,
    UNPACK_INDEX,
    attention_span,
    layout_cost,
    pack_batch,
    pack_layout,
)

PAD = 0


def _rows(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 1000, size=n).astype(np.int64) for n in lengths]


@pytest.mark.parametrize("left", [False, True])
def test_packing_places_every_token_once_with_positions_restarting_and_attention_inside_its_input(left: bool) -> None:
    lengths = [5, 30, 12, 1, 14, 22, 9, 40, 11, 3]
    ids = _rows(lengths)
    type_ids = [np.full(n, k % 2, np.int64) for k, n in enumerate(lengths)]
    _, mask = pad_batch(ids, PAD, left)
    feeds = pack_batch(ids, type_ids, mask, PAD, left, row_tokens=32)

    flat_ids = feeds["input_ids"].ravel()
    flat_types = feeds["token_type_ids"].ravel()
    flat_positions = feeds[POSITION_IDS].ravel()
    index = feeds[UNPACK_INDEX]
    width = feeds["input_ids"].shape[1]
    attention = feeds[PACKED_ATTENTION_MASK]
    used: set[int] = set()
    for i, n in enumerate(lengths):
        where = index[i][mask[i] == 1]  # the packed places of input i's tokens, in its order
        assert len(where) == n
        assert np.array_equal(flat_ids[where], ids[i]) and np.array_equal(flat_types[where], type_ids[i])
        assert np.array_equal(flat_positions[where], np.arange(n))
        assert not used & set(where.tolist())
        used |= set(where.tolist())
        row, columns = where[0] // width, where % width
        assert np.all(where // width == row)  # one input never spans two rows
        own = np.zeros(width, bool)
        own[columns] = True
        for column in columns:  # a token attends to exactly its own input's tokens
            assert np.array_equal(attention[row, column].astype(bool), own)
    assert len(used) == sum(lengths)
    assert attention.dtype == np.int32


def test_packed_rows_are_filled_evenly_so_no_row_runs_mostly_padding() -> None:
    lengths = [40, 38, 30, 20, 12, 12, 9, 7, 5, 4, 3, 2]
    ids = _rows(lengths)
    _, mask = pad_batch(ids, PAD)
    feeds = pack_batch(ids, [np.zeros_like(r) for r in ids], mask, PAD, row_tokens=64)
    rows, width = feeds["input_ids"].shape
    assert rows == -(-sum(lengths) // 64)  # as many rows as the tokens need
    filled = (feeds[PACKED_ATTENTION_MASK].any(axis=2)).sum(axis=1)
    assert filled.min() >= 0.8 * filled.max(), filled
    assert rows * width <= 1.15 * sum(lengths)  # a padded batch runs 12 × 40 = 480 tokens for these 182


@pytest.mark.parametrize(
    "lengths", [[100] * 5, [70] * 4, [100] * 32, [128, 64, 64, 1], [300, 100, 100, 90, 12], [65, 64, 64, 63, 2]]
)
def test_no_packed_row_holds_more_than_its_capacity_nor_runs_more_tokens_than_padding(lengths: list[int]) -> None:
    """Rows were filled past their capacity: 5 inputs of 100 tokens went two to a row, 4 rows of 200 (800 token
    slots where the padded batch runs 500, and attention at 200²): twice the padded graph's time."""
    ids = _rows(lengths)
    _, mask = pad_batch(ids, PAD)
    feeds = pack_batch(ids, [np.zeros_like(r) for r in ids], mask, PAD, row_tokens=128)
    rows, width = feeds["input_ids"].shape
    assert width <= max(128, *lengths), (rows, width)
    assert rows * width <= len(lengths) * max(lengths), (rows, width)  # never more than padding runs
    restored = feeds["input_ids"].reshape(-1)[feeds[UNPACK_INDEX]]
    for i, row in enumerate(ids):
        np.testing.assert_array_equal(restored[i, : len(row)], row)  # every input laid out once, whole


def test_a_masked_token_is_no_ones_key_in_the_packed_batch() -> None:
    ids = _rows([4, 6])
    _, mask = pad_batch(ids, PAD)
    mask[1, 2] = 0  # e.g. a query-expansion token that attends but is not attended to
    feeds = pack_batch(ids, [np.zeros_like(r) for r in ids], mask, PAD)
    column = feeds[UNPACK_INDEX][1, 2] % feeds["input_ids"].shape[1]
    assert not feeds[PACKED_ATTENTION_MASK][0, :, column].any()


def test_a_packed_plan_keeps_short_inputs_of_mixed_lengths_together_up_to_its_bounds() -> None:
    lengths = np.array([5, 30, 12, 8, 14, 22, 9, 40, 11, 3, 6, 7])
    assert len(plan_batches(lengths, 32)) > 1  # padded, they are cut where their lengths jump
    assert len(plan_batches(lengths, 32, packed=True)) == 1
    budgeted = plan_batches(lengths, 32, token_budget=64, packed=True)
    assert all(int(lengths[b].sum()) <= 64 or len(b) == 1 for b in budgeted)
    assert sorted(np.concatenate(budgeted).tolist()) == list(range(len(lengths)))
    assert sorted(len(b) for b in plan_batches(lengths, 5, packed=True)) in ([2, 5, 5], [3, 4, 5], [4, 4, 4])


def test_inputs_too_long_to_share_a_row_are_laid_out_at_the_longest_inputs_length() -> None:
    """In rows of 128, 70 and 68 tokens each took a row of their own beside at most one short input: 4 rows of 110
    tokens. At the longest input's length, only the two short ones share a row: 5 rows of 70, less padding and
    shorter attention."""
    lengths = np.array([70, 68, 66, 65, 40, 30])
    _, fill = pack_layout(lengths, row_tokens=128)
    assert (len(fill), max(fill)) == (5, 70)
    ids = _rows(lengths.tolist())
    _, mask = pad_batch(ids, PAD)
    assert pack_batch(ids, [np.zeros_like(r) for r in ids], mask, PAD, row_tokens=128)["input_ids"].shape == (5, 70)


@pytest.mark.parametrize("seed", range(6))
def test_a_layout_costs_no_more_than_padding_and_no_row_is_longer_than_128_or_the_longest_input(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, [30, 64, 128, 250, 512, 8][seed], int(rng.integers(2, 48)))
    _, fill = pack_layout(lengths)
    cost = float(layout_cost(len(fill), max(fill)))
    longest = int(lengths.max())
    assert max(fill) <= max(128, longest)
    assert cost <= float(layout_cost(len(lengths), longest)) + 1e-9  # one input a row: padding


def test_one_input_runs_in_one_row_of_its_own_length() -> None:
    assert [b.tolist() for b in plan_batches(np.array([37]), 32, packed=True)] == [[0]]
    ids = _rows([37])
    _, mask = pad_batch(ids, PAD)
    feeds = pack_batch(ids, [np.zeros_like(r) for r in ids], mask, PAD)
    assert feeds["input_ids"].shape == (1, 37) and np.array_equal(feeds["input_ids"][0], ids[0])
    assert feeds[PACKED_ATTENTION_MASK].all()


def test_attention_weighs_by_the_backbones_shape_and_defaults_to_all_minilm_l6_v2s() -> None:
    minilm = attention_span({"hidden_size": 384, "intermediate_size": 1536})
    assert minilm == DEFAULT_ATTENTION_SPAN == attention_span({})
    assert attention_span({"hidden_size": 768, "intermediate_size": 3072}) == 2 * minilm
    # the wider the rows, the more a token costs; the same tokens in fewer, longer rows cost more
    assert float(layout_cost(1, 256)) > float(layout_cost(2, 128)) > float(layout_cost(4, 64))


def test_a_packed_plan_cuts_where_inputs_too_long_to_share_a_row_jump_in_length() -> None:
    """Packed as one batch, 4 inputs of 128 tokens and 28 of 70 ran 32 rows of 128 (4,096 token slots, where the
    padded plan runs 512 + 28 × 70 = 2,472)."""
    rng = np.random.default_rng(0)
    lengths = rng.permutation(np.array([128] * 4 + [70] * 28))
    plan = plan_batches(lengths, 32, packed=True)
    assert sorted(sorted(lengths[b].tolist()) for b in plan) == [[70] * 28, [128] * 4]
    for batch in plan:
        _, fill = pack_layout(lengths[batch])
        assert len(fill) * max(fill) == int(lengths[batch].sum())  # one input a row, none padded


@pytest.mark.parametrize("seed", range(8))
def test_the_layout_a_packed_plan_runs_stays_within_its_token_budget_and_memory_bound(seed: int) -> None:
    """The planner checked its bounds against an estimate of the layout: [60, 59, 45, 44, 44] under a budget of 256
    ran 5 rows of 60 (300 slots), 36 inputs of 46 tokens and 92 of 12 ran 1.29x the 64 MiB bound."""
    cost = ActivationCost.of({"hidden_size": 384, "intermediate_size": 1536, "num_attention_heads": 12})
    assert cost is not None
    rng = np.random.default_rng(seed)
    cases = [(np.array([60, 59, 45, 44, 44]), 256, 256), (np.array([46] * 36 + [12] * 92), 256, 8192)]
    drawn = rng.integers(1, [30, 64, 128, 300][seed % 4], int(rng.integers(20, 300)))
    for lengths, batch_size, budget in [*cases, (drawn, 256, 2048)]:
        for batch in plan_batches(lengths, batch_size, token_budget=budget, cost=cost, packed=True):
            _, fill = pack_layout(lengths[batch])
            slots, width = len(fill) * max(fill), max(fill)
            assert len(batch) == 1 or slots <= budget, (lengths[batch].tolist(), slots)
            assert len(batch) == 1 or cost.batch_bytes(len(fill), width) <= DEFAULT_MAX_BATCH_BYTES


def _plan_cost(lengths: np.ndarray, packed: bool) -> float:
    """A plan's runs as ``layout_cost`` prices them, plus what each run costs beside its tokens."""
    total = 0.0
    for batch in plan_batches(lengths, 32, packed=packed):
        fill = pack_layout(lengths[batch])[1] if packed else [int(lengths[batch].max())] * len(batch)
        total += RUN_OVERHEAD_TOKENS + float(layout_cost(len(fill), max(fill)))
    return total


@pytest.mark.parametrize(
    ("low", "high", "most"), [(1, 30, 0.9), (5, 60, 1.0), (60, 128, 1.1), (100, 250, 1.1), (1, 512, 1.1)]
)
def test_a_packed_plan_costs_less_than_padding_on_short_inputs_and_about_as_much_on_long_ones(
    low: int, high: int, most: float
) -> None:
    """Server-like groups of 32 unrelated inputs. The packed plan used to cost 1.2-1.3× the padded one (by this
    cost) on inputs of 60 to 512 tokens, all in rows of 128 or of the longest input."""
    rng = np.random.default_rng(low * high)
    ratios = [
        _plan_cost(lengths, packed=True) / _plan_cost(lengths, packed=False)
        for lengths in (rng.integers(low, high + 1, 32) for _ in range(20))
    ]
    assert max(ratios) <= most, ratios


MIXED_TEXTS = [
    "a",
    "The cat sat on the mat while the dog slept by the fire all afternoon long.",
    "Stocks fell.",
    "Berlin",
    "A man is playing a flute in the park and a woman is singing along with him today.",
    "Two dogs run.",
    "word " * 80,  # past the tiny model's 64 tokens: truncated in both layouts
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module")
def padded_and_packed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from fastembed_rt.export import export_model

    root = tmp_path_factory.mktemp("packed")
    model_dir = build_tiny_model(root, "bert", ("cls", "mean"), include_prompt=False, prompts={"query": "query: "})
    manifest = export_model(model_dir, root / "artifact", stsb=False, variants="optimized,packed")
    assert {v.name for v in manifest.variants} == {"fp32", "optimized", "packed"}, manifest.rejected_variants
    padded = SentenceTransformer(root / "artifact", provider="cpu", variant="optimized")
    packed = SentenceTransformer(root / "artifact", provider="cpu", variant="packed")
    assert packed._pipeline.packed and not padded._pipeline.packed
    yield padded, packed
    padded.close()
    packed.close()


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_packed_variant_answers_as_the_padded_graph_on_mixed_lengths(
    padded_and_packed: tuple[Any, Any], batch_size: int
) -> None:
    padded, packed = padded_and_packed
    for kwargs in ({}, {"prompt_name": "query"}, {"normalize_embeddings": True, "truncate_dim": 16}):
        want = padded.encode(MIXED_TEXTS, batch_size=batch_size, **kwargs)
        got = packed.encode(MIXED_TEXTS, batch_size=batch_size, **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for precision in ("int8", "ubinary"):
        want = padded.encode(MIXED_TEXTS, batch_size=batch_size, precision=precision)
        got = packed.encode(MIXED_TEXTS, batch_size=batch_size, precision=precision)
        assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1
    tokens_want = padded.encode(MIXED_TEXTS, batch_size=batch_size, output_value="token_embeddings")
    tokens_got = packed.encode(MIXED_TEXTS, batch_size=batch_size, output_value="token_embeddings")
    for a, b in zip(tokens_got, tokens_want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert packed.last_encode_stats.truncated == 1


def test_packed_batches_run_fewer_tokens_than_padded_ones(padded_and_packed: tuple[Any, Any]) -> None:
    padded, packed = padded_and_packed
    padded.encode(MIXED_TEXTS[:6], batch_size=8)
    packed.encode(MIXED_TEXTS[:6], batch_size=8)
    assert packed.last_encode_stats.batches == 1
    assert packed.last_encode_stats.padding_ratio < padded.last_encode_stats.padding_ratio


def test_families_without_learned_absolute_positions_record_packing_as_not_applicable(tmp_path: Path) -> None:
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "roberta", "mean")  # positions counted from the token values
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="packed")
    assert [v.name for v in manifest.variants] == ["fp32"]
    (rejected,) = manifest.rejected_variants
    assert rejected["name"] == "packed"
    assert "not applicable" in rejected["reasons"][0] and "positions" in rejected["reasons"][0]
