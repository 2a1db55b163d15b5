"""Hybrid score fusion: reciprocal-rank fusion and weighted sums over hits, mappings and score arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastembed_rt import InputError
from fastembed_rt.hybrid import RRF_K, reciprocal_rank_fusion, weighted_score_fusion
from fastembed_rt.util import semantic_search

DENSE = [{"corpus_id": 2, "score": 0.9}, {"corpus_id": 0, "score": 0.8}, {"corpus_id": 1, "score": 0.1}]
SPARSE = {0: 25.0, 3: 12.0, 2: 3.0}


def test_reciprocal_rank_fusion_sums_weighted_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([DENSE, SPARSE])
    expected = {
        0: 1 / (RRF_K + 2) + 1 / (RRF_K + 1),
        2: 1 / (RRF_K + 1) + 1 / (RRF_K + 3),
        3: 1 / (RRF_K + 2),
        1: 1 / (RRF_K + 3),
    }
    assert [hit["corpus_id"] for hit in fused] == [0, 2, 3, 1]
    assert all(hit["score"] == pytest.approx(expected[hit["corpus_id"]]) for hit in fused)
    weighted = reciprocal_rank_fusion([DENSE, SPARSE], k=0, weights=[2.0, 0.0], top_k=2)
    assert weighted == [{"corpus_id": 2, "score": 2.0}, {"corpus_id": 0, "score": 1.0}]


def test_rankings_may_be_hits_mappings_or_score_arrays() -> None:
    scores = np.array([0.8, 0.1, 0.9], dtype=np.float32)  # the same ranking as DENSE
    as_mapping = {2: 0.9, 0: 0.8, 1: 0.1}
    reference = reciprocal_rank_fusion([DENSE, SPARSE])
    assert reciprocal_rank_fusion([scores, SPARSE]) == reference
    assert reciprocal_rank_fusion([as_mapping, SPARSE]) == reference
    shuffled = [DENSE[1], DENSE[2], DENSE[0]]
    assert reciprocal_rank_fusion([shuffled, SPARSE]) == reference, "hits are ranked by score, not list order"


def test_a_torch_row_of_scores_is_a_ranking_as_its_numpy_twin() -> None:
    """model.similarity of tensors gives tensors: such a row was refused ("rankings[0] is Tensor")."""
    torch = pytest.importorskip("torch")
    scores = np.array([0.8, 0.1, 0.9], dtype=np.float32)
    for fuse in (reciprocal_rank_fusion, weighted_score_fusion):
        assert fuse([SPARSE, torch.from_numpy(scores)]) == fuse([SPARSE, scores])


def test_weighted_score_fusion_normalizes_each_ranking() -> None:
    fused = weighted_score_fusion([DENSE, SPARSE], weights=[0.7, 0.3])
    dense = {2: 1.0, 0: 0.7 / 0.8, 1: 0.0}
    sparse = {0: 1.0, 3: 9.0 / 22.0, 2: 0.0}
    expected = {i: 0.7 * dense.get(i, 0.0) + 0.3 * sparse.get(i, 0.0) for i in (0, 1, 2, 3)}
    assert [hit["corpus_id"] for hit in fused] == sorted(expected, key=lambda i: (-expected[i], i))
    assert all(hit["score"] == pytest.approx(expected[hit["corpus_id"]]) for hit in fused)
    raw = weighted_score_fusion([DENSE, SPARSE], normalization="none", top_k=1)
    assert raw == [{"corpus_id": 0, "score": pytest.approx(25.8)}]
    assert weighted_score_fusion([{7: 3.0, 8: 3.0}]) == [{"corpus_id": 7, "score": 1.0}, {"corpus_id": 8, "score": 1.0}]


def test_ties_and_empty_rankings() -> None:
    assert reciprocal_rank_fusion([]) == [] and weighted_score_fusion([[], {}]) == []
    tied = reciprocal_rank_fusion([{5: 1.0}, {3: 1.0}])
    assert [hit["corpus_id"] for hit in tied] == [3, 5], "equal fused scores: lower corpus_id first"


def test_tied_scores_share_a_rank_so_a_sparse_arrays_zeros_do_not_outrank_dense_hits() -> None:
    """9,998 of 10,000 SPLADE scores are 0 (no shared term): ranked by corpus_id, documents 0, 1, 2, 3 entered the
    fused top 10 ahead of the dense retriever's 4th to 10th hits."""
    sparse = np.zeros(10_000, np.float32)
    sparse[[7000, 9000]] = [25.1, 18.3]
    dense_ids = [7000, 8000, 9000, 6000, 5500, 8500, 9500, 6500, 7500, 5000]
    dense = [{"corpus_id": c, "score": 0.9 - 0.05 * r} for r, c in enumerate(dense_ids)]
    fused = reciprocal_rank_fusion([dense, sparse], top_k=10)
    assert [hit["corpus_id"] for hit in fused] == [7000, 9000, *[c for c in dense_ids if c not in (7000, 9000)]]
    zero_rank = (3 + 10_000) / 2  # ranks 3..10,000 shared
    assert fused[2]["score"] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + zero_rank))
    tied = reciprocal_rank_fusion([[{"corpus_id": 4, "score": 1.0}, {"corpus_id": 9, "score": 1.0}]], k=np.int64(0))
    assert tied == [{"corpus_id": 4, "score": 2 / 3}, {"corpus_id": 9, "score": 2 / 3}]  # both rank 1.5


def test_fusing_dense_and_sparse_search_results_end_to_end() -> None:
    rng = np.random.default_rng(0)
    corpus, query = rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    dense_hits = semantic_search(query, corpus, top_k=10)[0]
    sparse_scores = np.maximum(corpus, 0) @ np.maximum(query, 0)
    fused = reciprocal_rank_fusion([dense_hits, sparse_scores], top_k=5)
    # by hand: 1 / (k + rank) from each ranking; equal sparse scores (the zeros) share their mean rank
    assert (sparse_scores == 0).sum() > 1
    expected = {hit["corpus_id"]: 1 / (RRF_K + rank) for rank, hit in enumerate(dense_hits, start=1)}
    order = np.argsort(-sparse_scores, kind="stable").tolist()
    for corpus_id in order:
        tied = [p for p, i in enumerate(order, start=1) if sparse_scores[i] == sparse_scores[corpus_id]]
        expected[corpus_id] = expected.get(corpus_id, 0.0) + 1 / (RRF_K + sum(tied) / len(tied))
    best = sorted(expected, key=lambda i: (-expected[i], i))[:5]
    assert [hit["corpus_id"] for hit in fused] == best
    np.testing.assert_allclose([hit["score"] for hit in fused], [expected[i] for i in best], rtol=1e-12)


@pytest.mark.parametrize(
    ("rankings", "kwargs", "message"),
    [
        ("hits", {}, "rankings must be a list of rankings, got str"),
        ([[{"id": 1}]], {}, r"rankings\[0\]\[0\] is \{'id': 1\}; a hit is"),
        ([[{"corpus_id": "a", "score": 1.0}]], {}, "corpus ids are ints"),
        ([[{"corpus_id": -1, "score": 1.0}]], {}, "is -1; corpus ids are indexes into the corpus, >= 0"),  # faiss pad
        ([{-2: 0.5}], {}, r"key -2 is -2; corpus ids are indexes"),
        ([[{"corpus_id": 1, "score": None}]], {}, "scores are numbers"),
        ([[{"corpus_id": 1, "score": 1.0}, {"corpus_id": 1, "score": 0.5}]], {}, "lists corpus_id 1 twice"),
        ([np.ones((2, 2))], {}, "must be 1-D"),
        ([np.array([1.0, np.nan])], {}, "scores must be finite"),
        ([np.array([0.3, -np.inf, 0.9])], {}, "scores must be finite"),  # min-max made every fused score NaN
        ([[{"corpus_id": 1, "score": float("inf")}]], {}, "has score inf; scores must be finite"),
        ([42], {}, r"rankings\[0\] is int"),
        ([DENSE], {"weights": [1.0, 2.0]}, "weights has 2 values for 1 rankings"),
        ([DENSE], {"weights": [-1.0]}, "non-negative"),
        ([DENSE], {"weights": [float("inf")]}, "finite non-negative"),
        ([DENSE, DENSE], {"weights": "12"}, "weights must be a list of numbers"),  # was read as [1.0, 2.0]
        ([DENSE], {"weights": 1.0}, "weights must be a list of numbers"),
        ([DENSE], {"weights": ["a"]}, "finite non-negative numbers"),
        ([DENSE], {"top_k": -1}, "top_k must be None or an int >= 0"),
        # masked entries counted (as NaN, or their hidden values); a str array was numpy's bare ValueError, a
        # complex one fused its real parts; a 0-d weights array was a bare TypeError
        ([np.ma.masked_invalid([0.9, np.nan, 0.5])], {}, r"rankings\[0\] is a masked array; scores must be finite"),
        ([np.ma.array([0.9, 0.99, 0.5], mask=[0, 1, 0])], {}, "is a masked array"),
        ([np.array(["a", "b"])], {}, r"is an array of <U1; scores are real numbers"),
        ([np.array([1 + 2j, 0.5])], {}, "is an array of complex128; scores are real numbers"),
        ([DENSE], {"weights": np.array(1.0)}, "weights must be a list of numbers"),
    ],
)
def test_bad_input_is_named(rankings: Any, kwargs: dict[str, Any], message: str) -> None:
    for fuse in (reciprocal_rank_fusion, weighted_score_fusion):
        with pytest.raises(InputError, match=message):
            fuse(rankings, **kwargs)


def test_min_max_of_scores_spanning_the_float_range_stays_finite() -> None:
    """high - low overflowed to inf: the best document scored NaN (ranked first), the middle one 0."""
    hits_in = [{"corpus_id": 0, "score": 1e308}, {"corpus_id": 1, "score": -1e308}, {"corpus_id": 2, "score": 0.0}]
    for ranking in (hits_in, np.array([1.7e308, -1.7e308, 0.0])):
        hits = weighted_score_fusion([ranking])
        assert [(hit["corpus_id"], hit["score"]) for hit in hits] == [(0, 1.0), (2, 0.5), (1, 0.0)]
    # a subnormal span (high/2 - low/2 is 0 there) normalizes exactly, not in halves
    assert [hit["score"] for hit in weighted_score_fusion([{0: 5e-324, 1: 0.0}])] == [1.0, 0.0]
    # ordinary scores normalize as before
    assert [hit["score"] for hit in weighted_score_fusion([np.array([0.2, 0.7, 0.45])])] == pytest.approx([1, 0.5, 0])


def test_bad_options_are_named() -> None:
    for k in (-1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="k must be a finite number >= 0"):
            reciprocal_rank_fusion([DENSE], k=k)
    with pytest.raises(InputError, match="normalization 'zscore' is not known"):
        weighted_score_fusion([DENSE], normalization="zscore")  # type: ignore[arg-type]
