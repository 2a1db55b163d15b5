"""fastembed_rt.util against sentence_transformers.util on the same random float32 inputs."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from fastembed_rt import util
from fastembed_rt.quantization import dequantize_embeddings, quantize_embeddings

DIM = 16
MATRIX_SCORES = ["cos_sim", "dot_score", "euclidean_sim", "manhattan_sim"]
PAIRWISE_SCORES = [
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
]


@pytest.fixture(scope="module")
def st_util() -> ModuleType:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed (pip install fastembed-rt[export])")
    import sentence_transformers.util as module

    return module


def _random(rows: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def _clustered(sizes: list[int], seed: int, spread: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), DIM))
    points = np.repeat(centres, sizes, axis=0) + spread * rng.standard_normal((sum(sizes), DIM))
    return points[rng.permutation(len(points))].astype(np.float32)


def _to_numpy(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _assert_same_hits(ours: list[list[util.SearchHit]], theirs: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    assert len(ours) == len(theirs)
    for our_hits, their_hits in zip(ours, theirs, strict=True):
        assert [hit["corpus_id"] for hit in our_hits] == [hit["corpus_id"] for hit in their_hits]
        np.testing.assert_allclose(
            [hit["score"] for hit in our_hits], [hit["score"] for hit in their_hits], rtol=1e-5, atol=1e-5
        )
        assert all(type(hit["corpus_id"]) is int and type(hit["score"]) is float for hit in our_hits)


def _naive_hamming(query_bits: np.ndarray, corpus_bits: np.ndarray) -> np.ndarray:
    query = np.unpackbits(query_bits, axis=-1).astype(np.int64)
    corpus = np.unpackbits(corpus_bits, axis=-1).astype(np.int64)
    return np.array([[int(np.sum(q != c)) for c in corpus] for q in query])


@pytest.mark.parametrize("name", MATRIX_SCORES)
def test_matrix_scores_equal_sentence_transformers(st_util: ModuleType, name: str) -> None:
    a, b = _random(30, 0), _random(40, 1)
    b[3] = a[5]  # an exact duplicate: distance 0, cosine 1

    ours = getattr(util, name)(a, b)
    theirs = _to_numpy(getattr(st_util, name)(a, b))

    assert ours.dtype == np.float32
    assert ours.shape == (30, 40)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", MATRIX_SCORES)
def test_matrix_scores_accept_one_embedding_and_lists(st_util: ModuleType, name: str) -> None:
    a, b = _random(1, 2)[0], _random(5, 3)

    ours = getattr(util, name)(a.tolist(), b.tolist())
    theirs = _to_numpy(getattr(st_util, name)(a, b))

    assert ours.shape == (1, 5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["euclidean_sim", "manhattan_sim"])
def test_distance_blocks_do_not_change_distances(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    a, b = _random(30, 4), _random(50, 5)
    whole = getattr(util, name)(a, b)

    monkeypatch.setattr(util, "_BLOCK_ELEMENTS", 3 * DIM)
    np.testing.assert_allclose(getattr(util, name)(a, b), whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", MATRIX_SCORES)
def test_empty_batches_give_empty_score_matrices(name: str) -> None:
    b = _random(4, 6)

    assert getattr(util, name)(np.zeros((0, DIM), np.float32), b).shape == (0, 4)
    assert getattr(util, name)([], b).shape == (0, 4)
    assert getattr(util, name)(b, []).shape == (4, 0)


@pytest.mark.parametrize("name", MATRIX_SCORES + PAIRWISE_SCORES)
def test_mismatched_dimensions_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"dimension|shape"):
        getattr(util, name)(_random(3, 7), _random(3, 8, dim=DIM + 1))


@pytest.mark.parametrize("name", PAIRWISE_SCORES)
@pytest.mark.parametrize("rows", [None, 25])
def test_pairwise_scores_equal_sentence_transformers(st_util: ModuleType, name: str, rows: int | None) -> None:
    a, b = _random(rows or 1, 8), _random(rows or 1, 9)
    if rows is None:
        a, b = a[0], b[0]

    ours = getattr(util, name)(a, b)
    theirs = _to_numpy(getattr(st_util, name)(a, b))

    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", PAIRWISE_SCORES)
@pytest.mark.parametrize(("left", "right"), [((5, DIM), (1, DIM)), ((DIM,), (5, DIM)), ((1, DIM), (5, DIM))])
def test_pairwise_scores_broadcast_one_row_against_many_as_sentence_transformers(
    st_util: ModuleType, name: str, left: tuple[int, ...], right: tuple[int, ...]
) -> None:
    a = _random(5, 10)[: left[0]] if len(left) == 2 else _random(1, 10)[0]
    b = _random(5, 11)[: right[0]]
    ours, theirs = getattr(util, name)(a, b), _to_numpy(getattr(st_util, name)(a, b))
    assert ours.shape == theirs.shape == (5,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one row against n"):
        getattr(util, name)(_random(5, 10), _random(3, 11))


@pytest.mark.parametrize("name", [*MATRIX_SCORES, *PAIRWISE_SCORES, "normalize_embeddings", "pairwise_angle_sim"])
def test_torch_tensors_in_give_sentence_transformers_tensors_out(st_util: ModuleType, name: str) -> None:
    import torch  # loaded by sentence-transformers already; fastembed_rt.util uses it, never imports it

    a, b = _random(6, 30), _random(6, 31)
    args = (a,) if name == "normalize_embeddings" else (a, b)
    tensors = [torch.from_numpy(x) for x in args]

    ours = getattr(util, name)(*tensors)
    theirs = getattr(st_util, name)(*tensors)

    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.numpy(), getattr(util, name)(*args))  # the numpy path, unchanged


@pytest.mark.parametrize("name", PAIRWISE_SCORES)
def test_pairwise_scores_of_two_single_tensors_are_a_0_d_tensor_as_sentence_transformers(
    st_util: ModuleType, name: str
) -> None:
    """They were shape (1,): torch.stack of per-pair scores gave [n, 1] where sentence-transformers gives [n]."""
    import torch

    a, b = torch.from_numpy(_random(1, 40)[0]), torch.from_numpy(_random(1, 41)[0])
    ours, theirs = getattr(util, name)(a, b), getattr(st_util, name)(a, b)
    assert isinstance(ours, torch.Tensor) and ours.shape == theirs.shape == ()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_select_max_active_dims_gives_a_tensor_for_a_tensor_as_sentence_transformers(st_util: ModuleType) -> None:
    import torch

    x = torch.from_numpy(_random(4, 42))
    ours, theirs = util.select_max_active_dims(x, 5), st_util.select_max_active_dims(x, 5)
    assert isinstance(ours, torch.Tensor) and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(ours.numpy(), util.select_max_active_dims(x.numpy(), 5))
    # None keeps the input as it came, as sentence-transformers does: a sparse or bf16 tensor was densified to float32
    for kept in (x.to_sparse(), x.to(torch.bfloat16)):
        assert util.select_max_active_dims(kept, None) is kept is st_util.select_max_active_dims(kept, None)


@pytest.mark.parametrize("precision", ["int8", "ubinary"])
def test_quantize_embeddings_reads_bfloat16_tensors_numpy_cannot_hold(precision: str) -> None:
    import torch

    x = torch.from_numpy(_random(8, 34)).to(torch.bfloat16)
    want = quantize_embeddings(x.float().numpy(), precision, calibration_embeddings=x.float().numpy())

    np.testing.assert_array_equal(quantize_embeddings(x, precision, calibration_embeddings=x), want)


def test_searches_take_tensors_on_any_layout_and_give_the_numpy_hits(st_util: ModuleType) -> None:
    import torch

    queries, corpus = _random(3, 32), _random(50, 33)
    want = util.semantic_search(queries, corpus, top_k=4)

    assert util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=4) == want
    assert util.semantic_search(torch.from_numpy(queries).to_sparse(), torch.from_numpy(corpus), top_k=4) == want
    bf16 = torch.from_numpy(corpus).to(torch.bfloat16)  # numpy has no bfloat16: widened to float32
    _assert_same_hits(
        util.semantic_search(queries, bf16, top_k=4),
        st_util.semantic_search(torch.from_numpy(queries), bf16.float(), top_k=4),
    )


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
@pytest.mark.parametrize("top_k", [1, 5, 100])
def test_semantic_search_equals_sentence_transformers(st_util: ModuleType, score: str, top_k: int) -> None:
    queries, corpus = _random(12, 10), _random(60, 11)

    ours = util.semantic_search(queries, corpus, top_k=top_k, score_function=getattr(util, score))
    theirs = st_util.semantic_search(queries, corpus, top_k=top_k, score_function=getattr(st_util, score))

    assert all(len(hits) == min(top_k, len(corpus)) for hits in ours)
    _assert_same_hits(ours, theirs)


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
def test_semantic_search_chunks_give_the_same_hits_as_one_chunk(score: str) -> None:
    queries, corpus = _random(23, 12), _random(97, 13)
    score_function = getattr(util, score)

    whole = util.semantic_search(queries, corpus, top_k=9, score_function=score_function)
    chunked = util.semantic_search(
        queries, corpus, query_chunk_size=5, corpus_chunk_size=7, top_k=9, score_function=score_function
    )

    _assert_same_hits(chunked, whole)


def test_ties_at_the_top_k_cut_keep_the_lowest_ids_whatever_the_chunk_sizes() -> None:
    """Equal scores (duplicate texts; a sparse corpus's zeros) tied at the cut: argpartition kept arbitrary ones,
    so the hits changed with the chunk sizes. Small integers make every dot product exact, so ties stay ties
    whichever BLAS kernel a chunk shape picks."""
    rng = np.random.default_rng(32)
    queries = rng.integers(-2, 3, (7, 8)).astype(np.float32)
    corpus = rng.integers(-2, 3, (90, 8)).astype(np.float32)
    corpus[[7, 22, 41, 55]] = corpus[3]  # five copies of one row
    corpus[60:80] = 0.0  # twenty zero rows: dot 0 for every query
    full = util.semantic_search(queries, corpus, top_k=90, score_function=util.dot_score)
    assert any(len({h["score"] for h in hits}) < 90 for hits in full)  # there are ties to resolve
    for top_k in (1, 3, 5, 30, 50):
        expected = [[h["corpus_id"] for h in hits[:top_k]] for hits in full]  # ties by id, cut at top_k
        for chunk in (90, 7, 4, 1):
            for query_chunk in (7, 2):
                found = util.semantic_search(
                    queries,
                    corpus,
                    top_k=top_k,
                    corpus_chunk_size=chunk,
                    query_chunk_size=query_chunk,
                    score_function=util.dot_score,
                )
                assert [[h["corpus_id"] for h in hits] for hits in found] == expected, (top_k, chunk)
    scores = queries @ corpus.T
    for q, hits in enumerate(full):  # the whole ranking is by score, then by id
        assert [h["corpus_id"] for h in hits] == np.lexsort((np.arange(90), -scores[q])).tolist()


def test_semantic_search_takes_one_query_embedding(st_util: ModuleType) -> None:
    query, corpus = _random(1, 14)[0], _random(20, 15)

    ours = util.semantic_search(query, corpus, top_k=3)

    _assert_same_hits(ours, st_util.semantic_search(query, corpus, top_k=3))


def test_semantic_search_over_an_empty_corpus_gives_empty_hit_lists() -> None:
    assert util.semantic_search(_random(3, 16), np.zeros((0, DIM), np.float32)) == [[], [], []]


def test_semantic_search_without_queries_gives_no_results() -> None:
    assert util.semantic_search(np.zeros((0, DIM), np.float32), _random(5, 17)) == []
    corpus_bits = quantize_embeddings(_random(5, 17), "ubinary")
    assert util.semantic_search([], _random(5, 17)) == util.semantic_search_quantized([], corpus_bits) == []


@pytest.mark.parametrize("form", ["scipy", "arrays"])
def test_semantic_search_gives_a_callers_own_score_function_sparse_rows_it_can_use(form: str) -> None:
    """The function got our internal SparseEmbeddings rows (no .T, no @): an AttributeError in the search."""
    queries, corpus = _sparse_rows(4, 1), _sparse_rows(9, 2)
    seen: list[Any] = []

    def dot(a: Any, b: Any) -> np.ndarray:
        seen.append(type(a))
        return np.asarray((a @ b.T).todense() if hasattr(a, "todense") else a @ b.T)

    hits = util.semantic_search(_forms(queries)[form], _forms(corpus)[form], top_k=3, score_function=dot)
    assert hits == util.semantic_search(queries, corpus, top_k=3, score_function=util.dot_score)
    assert seen and all(kind.__module__.startswith("scipy.sparse") for kind in seen)


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [("top_k", -1, ValueError), ("query_chunk_size", 0, ValueError), ("corpus_chunk_size", 2.5, TypeError)],
)
def test_semantic_search_rejects_bad_sizes_naming_the_argument(
    argument: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=argument):
        util.semantic_search(_random(2, 18), _random(5, 19), **{argument: value})


@pytest.mark.parametrize("max_pairs", [5, 1000])
def test_paraphrase_mining_equals_sentence_transformers(st_util: ModuleType, max_pairs: int) -> None:
    embeddings = _clustered([6, 5, 4, 3], seed=20)

    ours = util.paraphrase_mining_embeddings(embeddings, top_k=4, max_pairs=max_pairs)
    theirs = st_util.paraphrase_mining_embeddings(embeddings, top_k=4, max_pairs=max_pairs)

    assert [pair[1:] for pair in ours] == [pair[1:] for pair in theirs]
    np.testing.assert_allclose([pair[0] for pair in ours], [pair[0] for pair in theirs], rtol=1e-5)
    assert all(i < j for _, i, j in ours)
    assert len({(i, j) for _, i, j in ours}) == len(ours)


def test_paraphrase_mining_chunks_give_the_same_pairs_as_one_chunk() -> None:
    embeddings = _clustered([6, 5, 4, 3], seed=21)

    whole = util.paraphrase_mining_embeddings(embeddings, top_k=3, max_pairs=20)
    chunked = util.paraphrase_mining_embeddings(
        embeddings, query_chunk_size=4, corpus_chunk_size=5, top_k=3, max_pairs=20
    )

    assert [pair[1:] for pair in chunked] == [pair[1:] for pair in whole]
    np.testing.assert_allclose([pair[0] for pair in chunked], [pair[0] for pair in whole], rtol=1e-6)


def test_paraphrase_mining_encodes_the_sentences_once_with_the_given_options() -> None:
    embeddings = _clustered([4, 3], seed=22)
    sentences = [f"sentence {i}" for i in range(len(embeddings))]
    calls: list[tuple[list[str], int, bool]] = []

    class FakeEncoder:
        def encode(self, sentences: list[str], *, batch_size: int, show_progress_bar: bool) -> np.ndarray:
            calls.append((sentences, batch_size, show_progress_bar))
            return embeddings

    pairs = util.paraphrase_mining(FakeEncoder(), sentences, batch_size=8, top_k=2)

    assert calls == [(sentences, 8, False)]
    assert pairs == util.paraphrase_mining_embeddings(embeddings, top_k=2)


def test_paraphrase_mining_passes_truncate_dim_and_prompts_to_encode_as_sentence_transformers() -> None:
    embeddings = _clustered([4, 3], seed=23)
    options: list[dict[str, Any]] = []

    class Encoder:
        def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
            options.append(kwargs)
            return embeddings[:, : kwargs.get("truncate_dim")]

    sentences = [f"sentence {i}" for i in range(len(embeddings))]
    pairs = util.paraphrase_mining(Encoder(), sentences, truncate_dim=4, prompt_name="query", prompt="q: ", top_k=2)
    assert options == [
        {"batch_size": 32, "show_progress_bar": False, "truncate_dim": 4, "prompt_name": "query", "prompt": "q: "}
    ]
    assert pairs == util.paraphrase_mining_embeddings(embeddings[:, :4], top_k=2)


def test_truncate_embeddings_slices_without_renormalizing_and_pytorch_cos_sim_is_cos_sim() -> None:
    embeddings = _random(3, 7)
    np.testing.assert_array_equal(util.truncate_embeddings(embeddings, 4), embeddings[:, :4])
    assert util.truncate_embeddings(embeddings, None) is embeddings
    np.testing.assert_array_equal(util.truncate_embeddings(embeddings[0], 2), embeddings[0, :2])
    assert util.pytorch_cos_sim is util.cos_sim


def test_paraphrase_mining_of_no_embeddings_gives_no_pairs() -> None:
    assert util.paraphrase_mining_embeddings(np.zeros((0, DIM), np.float32)) == []


@pytest.mark.parametrize("batch_size", [1024, 7])
def test_community_detection_equals_sentence_transformers(st_util: ModuleType, batch_size: int) -> None:
    embeddings = _clustered([25, 15, 12, 9, 3], seed=23, spread=0.3)

    ours = util.community_detection(embeddings, threshold=0.8, min_community_size=5, batch_size=batch_size)
    theirs = st_util.community_detection(embeddings, threshold=0.8, min_community_size=5, batch_size=batch_size)

    assert ours == theirs
    assert len(ours) >= 3
    members = [index for community in ours for index in community]
    assert len(members) == len(set(members))


def test_community_detection_with_too_few_embeddings_finds_none() -> None:
    assert util.community_detection(_random(4, 24), min_community_size=5) == []
    assert util.community_detection(np.zeros((0, DIM), np.float32)) == []


def test_community_detection_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    util.community_detection(_random(10, 25), min_community_size=2, batch_size=4, show_progress_bar=True)

    assert "3/3 batches" in capsys.readouterr().err


@pytest.mark.parametrize("dim", [20, 128])  # a padded byte code and a whole number of 64-bit words
def test_quantized_scores_are_negative_hamming_distances(dim: int) -> None:
    queries, corpus = _random(7, 26, dim), _random(50, 27, dim)
    corpus_bits = quantize_embeddings(corpus, "ubinary")
    distances = _naive_hamming(quantize_embeddings(queries, "ubinary"), corpus_bits)

    results = util.semantic_search_quantized(queries, corpus_bits, top_k=len(corpus))

    for hits, row in zip(results, distances, strict=True):
        expected = sorted(range(len(corpus)), key=lambda corpus_id: (row[corpus_id], corpus_id))
        assert [hit["corpus_id"] for hit in hits] == expected
        assert [hit["score"] for hit in hits] == [-float(row[corpus_id]) for corpus_id in expected]


def test_quantized_search_takes_ubinary_queries_like_float_ones() -> None:
    queries, corpus = _random(5, 28), _random(40, 29)
    corpus_bits = quantize_embeddings(corpus, "ubinary")

    from_floats = util.semantic_search_quantized(queries, corpus_bits, top_k=6)
    from_codes = util.semantic_search_quantized(quantize_embeddings(queries, "ubinary"), corpus_bits, top_k=6)

    assert from_floats == from_codes


def test_float_rescoring_of_the_whole_corpus_equals_exact_dot_product_search(st_util: ModuleType) -> None:
    queries, corpus = _random(9, 30), _random(45, 31)

    ours = util.semantic_search_quantized(
        queries,
        quantize_embeddings(corpus, "ubinary"),
        top_k=5,
        rescore_multiplier=len(corpus),
        corpus_rescore=corpus,
        rescore_precision="float32",
    )
    theirs = st_util.semantic_search(queries, corpus, top_k=5, score_function=st_util.dot_score)

    _assert_same_hits(ours, theirs)


def test_int8_rescoring_ranks_hamming_candidates_by_dot_product_with_the_codes() -> None:
    queries, corpus = _random(6, 32), _random(80, 33)
    corpus_bits, corpus_int8 = quantize_embeddings(corpus, "ubinary"), quantize_embeddings(corpus, "int8")
    distances = _naive_hamming(quantize_embeddings(queries, "ubinary"), corpus_bits)

    results = util.semantic_search_quantized(
        queries, corpus_bits, top_k=4, rescore_multiplier=3, corpus_rescore=corpus_int8
    )

    for query, row, hits in zip(queries, distances, results, strict=True):
        candidates = sorted(range(len(corpus)), key=lambda corpus_id: (row[corpus_id], corpus_id))[:12]
        scores = {corpus_id: float(query @ corpus_int8[corpus_id].astype(np.float32)) for corpus_id in candidates}
        expected = sorted(candidates, key=lambda corpus_id: -scores[corpus_id])[:4]
        assert [hit["corpus_id"] for hit in hits] == expected
        np.testing.assert_allclose([hit["score"] for hit in hits], [scores[i] for i in expected], rtol=1e-5)


def test_int8_rescoring_with_ranges_scores_the_dequantized_codes() -> None:
    """Raw codes weigh a dimension by its range's inverse (MiniLM's steps span 1e-35 to 1e-2): with the ranges they
    were quantized with, candidates are rescored as the embeddings the codes stand for."""
    queries, corpus = _random(6, 36), _random(80, 37)
    ranges = np.stack([corpus.min(0), corpus.max(0)]) * np.linspace(0.5, 3.0, corpus.shape[1], dtype=np.float32)
    corpus_bits, corpus_int8 = (
        quantize_embeddings(corpus, "ubinary"),
        quantize_embeddings(corpus, "int8", ranges=ranges),
    )
    restored = dequantize_embeddings(corpus_int8, "int8", ranges)
    distances = _naive_hamming(quantize_embeddings(queries, "ubinary"), corpus_bits)

    results = util.semantic_search_quantized(
        queries, corpus_bits, top_k=4, rescore_multiplier=3, corpus_rescore=corpus_int8, ranges=ranges
    )

    for query, row, hits in zip(queries, distances, results, strict=True):
        candidates = sorted(range(len(corpus)), key=lambda corpus_id: (row[corpus_id], corpus_id))[:12]
        scores = {corpus_id: float(query @ restored[corpus_id]) for corpus_id in candidates}
        expected = sorted(candidates, key=lambda corpus_id: -scores[corpus_id])[:4]
        assert [hit["corpus_id"] for hit in hits] == expected
        np.testing.assert_allclose([hit["score"] for hit in hits], [scores[i] for i in expected], rtol=1e-5)
    with pytest.raises(ValueError, match="ranges dequantize an int8 corpus_rescore"):
        util.semantic_search_quantized(queries, corpus_bits, ranges=ranges)
    with pytest.raises(ValueError, match="ranges must have shape"):
        util.semantic_search_quantized(queries, corpus_bits, corpus_rescore=corpus_int8, ranges=ranges[:, :5])


def test_dequantize_refuses_codes_and_ranges_that_do_not_fit_and_takes_lists_of_ints() -> None:
    """uint8 bytes read as int8 codes, float arrays as codes and ranges of another width dequantized without an
    error (max error 3.4 where one bucket is 0.026): semantic_search_maxsim then ranked the exact match out of its
    top 3."""
    corpus = _random(20, 38, dim=8)
    ranges = np.stack([corpus.min(0), corpus.max(0)])
    codes = quantize_embeddings(corpus, "int8", ranges=ranges)
    restored = dequantize_embeddings(codes, "int8", ranges)
    np.testing.assert_array_equal(dequantize_embeddings(codes.tolist(), "int8", ranges), restored)  # JSON ints
    np.testing.assert_array_equal(dequantize_embeddings(codes.view(np.uint8).view(np.int8), "int8", ranges), restored)
    for bad, precision, message in (
        (codes.view(np.uint8), "int8", r"int8 codes are int8; got uint8 .*view them with .view\(np.int8\)"),
        (codes, "uint8", r"uint8 codes are uint8; got int8"),
        (corpus, "int8", "int8 codes are integers; got an array of float32"),
        (codes.astype(np.int64) * 3, "int8", r"int8 codes are in -128..127"),
    ):
        with pytest.raises(ValueError, match=message):
            dequantize_embeddings(bad, precision, ranges)
    for shape in ((2, 1), (2, 7), (8,)):
        with pytest.raises(ValueError, match=r"ranges must be \[2, dim\] = \[2, 8\]"):
            dequantize_embeddings(codes, "int8", np.ones(shape, dtype=np.float32))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantized_codes_are_refused_by_the_float_similarities_and_searches(dtype: str) -> None:
    """Packed bits were scored as numbers (STSb recall@10 0.33 against Hamming search's 0.75); sentence-transformers
    raises on integer tensors too."""
    floats = _random(4, 38)
    codes = quantize_embeddings(floats, "ubinary" if dtype == "uint8" else "int8")
    for function in (util.cos_sim, util.dot_score, util.euclidean_sim, util.manhattan_sim, util.pairwise_cos_sim):
        with pytest.raises(TypeError, match=f"holds {dtype} codes .* util.semantic_search_quantized"):
            function(codes, codes)
    with pytest.raises(TypeError, match=f"corpus_embeddings holds {dtype} codes"):
        util.semantic_search(floats, codes)
    assert util.cos_sim([[1, 0]], [[1, 1]])[0, 0] == pytest.approx(2**-0.5)  # whole numbers are still numbers


@pytest.mark.parametrize("rescore", [False, True])
def test_quantized_chunks_give_the_same_hits_as_one_chunk(rescore: bool) -> None:
    queries, corpus = _random(11, 34), _random(70, 35)
    options: dict[str, Any] = {"top_k": 5}
    if rescore:
        options["corpus_rescore"] = quantize_embeddings(corpus, "int8")
    corpus_bits = quantize_embeddings(corpus, "ubinary")

    whole = util.semantic_search_quantized(queries, corpus_bits, **options)
    chunked = util.semantic_search_quantized(queries, corpus_bits, query_chunk_size=3, corpus_chunk_size=4, **options)

    _assert_same_hits(chunked, whole)


def test_quantized_search_with_top_k_over_the_corpus_size_returns_the_whole_corpus() -> None:
    queries, corpus = _random(2, 36), _random(5, 37)

    results = util.semantic_search_quantized(
        queries,
        quantize_embeddings(corpus, "ubinary"),
        top_k=50,
        corpus_rescore=quantize_embeddings(corpus, "int8"),
    )

    assert [sorted(hit["corpus_id"] for hit in hits) for hits in results] == [list(range(5))] * 2


def test_quantized_search_over_empty_inputs_gives_empty_results() -> None:
    empty_corpus = np.zeros((0, DIM // 8), np.uint8)

    assert util.semantic_search_quantized(_random(2, 38), empty_corpus) == [[], []]
    assert (
        util.semantic_search_quantized(np.zeros((0, DIM), np.float32), quantize_embeddings(_random(4, 39), "ubinary"))
        == []
    )


def test_rescoring_ubinary_queries_raises_value_error() -> None:
    corpus = _random(10, 40)

    with pytest.raises(ValueError, match="corpus_rescore"):
        util.semantic_search_quantized(
            quantize_embeddings(_random(2, 41), "ubinary"),
            quantize_embeddings(corpus, "ubinary"),
            corpus_rescore=quantize_embeddings(corpus, "int8"),
        )


def test_rescore_corpus_of_another_precision_raises_type_error() -> None:
    corpus = _random(10, 42)

    with pytest.raises(TypeError, match=r"float32.*'int8'"):
        util.semantic_search_quantized(_random(2, 43), quantize_embeddings(corpus, "ubinary"), corpus_rescore=corpus)


def test_signed_binary_corpus_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"corpus_ubinary.*int8"):
        util.semantic_search_quantized(_random(2, 44), quantize_embeddings(_random(10, 45), "binary"))


# -- sparse and mixed inputs: what our SparseEncoder returns, scored as sentence-transformers scores them
def _sparse_rows(rows: int, seed: int, dim: int = 40) -> np.ndarray:
    """Dense float32 rows with about 85 % zeros and non-negative weights, like SPLADE's (one all-zero row)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((rows, dim)) < 0.15, rng.random((rows, dim)) * 3, 0).astype(np.float32)
    dense[-1] = 0
    return dense


def _forms(dense: np.ndarray) -> dict[str, Any]:
    """The forms SparseEncoder.encode returns (scipy csr_array, SparseEmbeddings) and a plain dense array."""
    import scipy.sparse

    from fastembed_rt.sparse import as_rows

    return {"scipy": scipy.sparse.csr_array(dense), "arrays": as_rows(dense)[0], "dense": dense}


SPARSE_MIXES = [("scipy", "scipy"), ("arrays", "arrays"), ("scipy", "dense"), ("dense", "arrays")]


def _st_sparse(function: Any, *args: Any) -> Any:
    """A sentence-transformers call on torch sparse tensors, without torch's warnings about its sparse support
    (invariant checks off, CSR in beta), which sentence-transformers' own code raises."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (invariant checks|CSR tensor support)", category=UserWarning)
        return function(*args)


@pytest.mark.parametrize("name", MATRIX_SCORES)
@pytest.mark.parametrize(("left", "right"), SPARSE_MIXES)
def test_matrix_scores_accept_sparse_and_mixed_inputs(st_util: ModuleType, name: str, left: str, right: str) -> None:
    import torch

    a, b = _sparse_rows(6, 0), _sparse_rows(9, 1)
    ours = getattr(util, name)(_forms(a)[left], _forms(b)[right])
    as_torch = {"scipy": lambda x: torch.from_numpy(x).to_sparse(), "arrays": lambda x: torch.from_numpy(x).to_sparse()}
    theirs = _st_sparse(
        getattr(st_util, name), as_torch.get(left, torch.from_numpy)(a), as_torch.get(right, torch.from_numpy)(b)
    )
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32 and ours.shape == (6, 9)
    assert not theirs.is_sparse  # sentence-transformers returns dense scores for sparse inputs too
    np.testing.assert_allclose(ours, _to_numpy(theirs), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", PAIRWISE_SCORES)
@pytest.mark.parametrize(("left", "right"), SPARSE_MIXES)
def test_pairwise_scores_accept_sparse_and_mixed_inputs(st_util: ModuleType, name: str, left: str, right: str) -> None:
    import torch

    a, b = _sparse_rows(7, 2), _sparse_rows(7, 3)
    ours = getattr(util, name)(_forms(a)[left], _forms(b)[right])
    to = {"dense": torch.from_numpy}
    theirs = _st_sparse(
        getattr(st_util, name),
        to.get(left, lambda x: torch.from_numpy(x).to_sparse())(a),
        to.get(right, lambda x: torch.from_numpy(x).to_sparse())(b),
    )
    assert ours.dtype == np.float32 and ours.shape == (7,)
    np.testing.assert_allclose(ours, _to_numpy(theirs), rtol=1e-5, atol=1e-4)


def test_sparse_encoder_output_scores_with_util(tiny_splade_artifact: Any, st_util: ModuleType) -> None:
    """The issue's report: our own SparseEncoder's output passed to util.cos_sim failed."""
    import torch

    from fastembed_rt import SparseEncoder

    model = SparseEncoder(tiny_splade_artifact)
    texts = ["The cat sat on the mat.", "A feline rested on the rug.", "Stocks fell."]
    # encode(convert_to_tensor=False)'s list of rows: every function failed on it ("setting an array element
    # with a sequence") where the model's own similarity took it
    rows = model.encode(texts, convert_to_tensor=False)
    dense_rows = model.encode(texts).toarray()
    for name in (*MATRIX_SCORES, "semantic_search"):
        if name == "semantic_search":
            hits = util.semantic_search(rows, rows, top_k=2, score_function=util.dot_score)
            dense_hits = util.semantic_search(dense_rows, dense_rows, top_k=2, score_function=util.dot_score)
            assert [[h["corpus_id"] for h in q] for q in hits] == [[h["corpus_id"] for h in q] for q in dense_hits]
            np.testing.assert_allclose(
                [[h["score"] for h in q] for q in hits], [[h["score"] for h in q] for q in dense_hits], rtol=1e-6
            )
            continue
        np.testing.assert_allclose(
            getattr(util, name)(rows, rows), getattr(util, name)(dense_rows, dense_rows), rtol=1e-5
        )
    np.testing.assert_allclose(util.pairwise_dot_score(rows, rows), np.sum(dense_rows * dense_rows, axis=1), rtol=1e-5)
    normalized = util.normalize_embeddings(rows)
    assert isinstance(normalized, list) and [type(row) for row in normalized] == [type(row) for row in rows]
    np.testing.assert_allclose(
        np.stack([row.toarray() for row in normalized]), util.normalize_embeddings(dense_rows), rtol=1e-6, atol=1e-7
    )
    for form in ("scipy", "arrays"):
        embeddings = model.encode(texts, sparse_format=form)
        dense = embeddings.toarray()
        for name in MATRIX_SCORES:
            # sentence-transformers' sparse euclidean path, sqrt(|a|² - 2ab + |b|²) in float32, is off by up to
            # 0.05 at distance 0 here: its dense path (and ours, in float64) is the exact reference.
            left = torch.from_numpy(dense) if name == "euclidean_sim" else torch.from_numpy(dense).to_sparse()
            expected = _to_numpy(_st_sparse(getattr(st_util, name), left, torch.from_numpy(dense)))
            np.testing.assert_allclose(getattr(util, name)(embeddings, dense), expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(util.cos_sim(embeddings[0], embeddings), util.cos_sim(dense[:1], dense), rtol=1e-6)
        # the model's own similarity (dot for SPLADE) takes sparse/dense mixes too
        np.testing.assert_allclose(model.similarity(embeddings, dense), util.dot_score(dense, dense), rtol=1e-5)
    model.close()


@pytest.mark.parametrize("form", ["dense", "scipy", "arrays"])
def test_normalize_embeddings_equals_sentence_transformers(st_util: ModuleType, form: str) -> None:
    import torch

    dense = _sparse_rows(5, 4)
    ours = util.normalize_embeddings(_forms(dense)[form])
    theirs = _st_sparse(
        st_util.normalize_embeddings,
        torch.from_numpy(dense).to_sparse() if form != "dense" else torch.from_numpy(dense),
    )
    if form == "dense":
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    else:
        assert type(ours) is type(_forms(dense)[form])  # sparse stays sparse, in its own type
        ours = ours.toarray()
    np.testing.assert_allclose(ours, theirs.to_dense().numpy(), rtol=1e-6, atol=1e-7)


def test_normalize_embeddings_keeps_a_sparse_tensor_sparse_as_sentence_transformers(st_util: ModuleType) -> None:
    """A sparse COO tensor came back dense (2,000 x 30,522 rows: 244 MB)."""
    import torch

    dense = _sparse_rows(6, 5)
    for tensor in (torch.from_numpy(dense).to_sparse(), torch.from_numpy(dense[0]).to_sparse()):
        ours, theirs = util.normalize_embeddings(tensor), st_util.normalize_embeddings(tensor)
        assert ours.layout == theirs.layout == torch.sparse_coo and ours.shape == theirs.shape
        np.testing.assert_allclose(ours.to_dense().numpy(), theirs.to_dense().numpy(), rtol=1e-6, atol=1e-7)


def test_euclidean_sim_of_a_row_holding_inf_is_minus_inf_as_sentence_transformers(st_util: ModuleType) -> None:
    """|a|² - 2ab + |b|² is inf - inf there: NaN scores, where torch.cdist (and our pairwise function) give -inf."""
    a = np.array([[np.inf, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    b = np.abs(_random(3, 8, dim=3)) + 0.1  # positive: a·b is +inf, so |a|² - 2ab is inf - inf
    for left, right in ((a, b), (b, a)):
        ours, theirs = util.euclidean_sim(left, right), _to_numpy(st_util.euclidean_sim(left, right))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # -inf where theirs is (allclose holds infs equal)
    assert np.isneginf(util.euclidean_sim(a, b)[0]).all() and np.isfinite(util.euclidean_sim(a, b)[1]).all()


def test_euclidean_sim_measures_near_duplicates_exactly_as_its_pairwise_form() -> None:
    """|a|² - 2ab + |b|² cancels to its rounding for rows close to each other: a row was 2e-8 from itself, its
    copy one float32 step away tied with it, and rows of norm 3e4 that differ by 1e-4 were 0 apart."""
    a = _random(1, 4, dim=384)[0]
    a /= np.linalg.norm(a)
    near = a.copy()
    near[7] = np.nextafter(near[7], np.float32(2))
    corpus = np.stack([near, a, _random(2, 4, dim=384)[0]])
    scores = util.euclidean_sim(a, corpus)[0]
    assert scores[1] == 0.0 and scores[0] == pytest.approx(-abs(float(near[7]) - float(a[7])), rel=1e-6)
    assert scores[1] > scores[0] > scores[2]
    np.testing.assert_allclose(scores, util.pairwise_euclidean_sim(np.stack([a] * 3), corpus), rtol=1e-6)
    big = np.array([[3e4, 0.0]], dtype=np.float32), np.array([[3e4, 1e-4]], dtype=np.float32)
    assert util.euclidean_sim(*big)[0, 0] == pytest.approx(-1e-4, rel=1e-3)


def test_normalize_embeddings_refuses_int8_codes_as_every_float_function() -> None:
    """Codes came back as unit floats of the code values, where every other float function refuses them."""
    codes = np.array([[3, 4], [1, -2]], dtype=np.int8)
    with pytest.raises(TypeError, match="int8 codes"):
        util.normalize_embeddings(codes)


@pytest.mark.parametrize("dim", [16, 15])
@pytest.mark.parametrize("form", ["dense", "scipy"])
def test_pairwise_angle_sim_equals_sentence_transformers(st_util: ModuleType, dim: int, form: str) -> None:
    a, b = _random(9, 6, dim=dim), _random(9, 7, dim=dim)
    ours = util.pairwise_angle_sim(_forms(a)[form], _forms(b)[form])
    np.testing.assert_allclose(ours, _to_numpy(st_util.pairwise_angle_sim(a, b)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 40, None])
def test_select_max_active_dims_equals_sentence_transformers(st_util: ModuleType, k: int | None) -> None:
    dense = _random(6, 8, dim=40)
    ours = util.select_max_active_dims(dense, k)
    theirs = st_util.select_max_active_dims(dense, k)
    np.testing.assert_array_equal(ours, _to_numpy(theirs))
    assert ours.shape == dense.shape
    with pytest.raises(ValueError, match="positive"):
        util.select_max_active_dims(dense, 0)


@pytest.mark.parametrize(
    ("precision", "rescore"), [("float32", False), ("uint8", True), ("ubinary", True), ("ubinary", False)]
)
def test_semantic_search_faiss_equals_sentence_transformers(st_util: ModuleType, precision: str, rescore: bool) -> None:
    pytest.importorskip("faiss")
    queries, corpus = _random(6, 20, dim=32), _random(80, 21, dim=32)
    calibration = _random(200, 22, dim=32)
    codes = quantize_embeddings(corpus, precision, calibration_embeddings=calibration)
    kwargs: dict[str, Any] = dict(
        corpus_precision=precision, top_k=5, rescore=rescore, calibration_embeddings=calibration
    )
    ours, seconds = util.semantic_search_faiss(queries, codes, **kwargs)
    from sentence_transformers.util.quantization import semantic_search_faiss

    theirs, _ = semantic_search_faiss(queries, codes, **kwargs)
    _assert_same_hits(ours, theirs)
    assert seconds >= 0
    _, _, index = util.semantic_search_faiss(queries, codes, output_index=True, **kwargs)
    again, _ = util.semantic_search_faiss(queries, corpus_index=index, **kwargs)
    _assert_same_hits(again, ours)


@pytest.mark.parametrize(
    ("precision", "rescore"), [("float32", False), ("int8", True), ("binary", True), ("ubinary", False)]
)
def test_semantic_search_usearch_equals_sentence_transformers(
    st_util: ModuleType, precision: str, rescore: bool
) -> None:
    pytest.importorskip("usearch")
    queries, corpus = _random(6, 23, dim=32), _random(80, 24, dim=32)
    calibration = _random(200, 25, dim=32)
    codes = quantize_embeddings(corpus, precision, calibration_embeddings=calibration)
    kwargs: dict[str, Any] = dict(
        corpus_precision=precision, top_k=5, rescore=rescore, calibration_embeddings=calibration
    )
    from sentence_transformers.util.quantization import semantic_search_usearch

    ours, _, index = util.semantic_search_usearch(queries, codes, output_index=True, **kwargs)
    # One index for both: Hamming distances tie a lot, and two usearch indexes may order ties differently.
    theirs, _ = semantic_search_usearch(queries, corpus_index=index, **kwargs)
    _assert_same_hits(ours, theirs)


def test_index_searches_check_their_arguments() -> None:
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match="exactly one"):
        util.semantic_search_faiss(_random(2, 1))
    with pytest.raises(ValueError, match="corpus_precision"):
        util.semantic_search_faiss(_random(2, 1), _random(3, 2), corpus_precision="int4")


def test_index_searches_name_the_extra_when_the_engine_is_missing(run_without_torch: Any) -> None:
    script = """
import numpy as np
from fastembed_rt import util
for search in (util.semantic_search_faiss, util.semantic_search_usearch):
    try:
        search(np.ones((1, 8), np.float32), np.ones((2, 8), np.float32))
    except ImportError as exc:
        print(exc)
"""
    result = run_without_torch(script, also_block=("faiss", "usearch"))
    assert result.returncode == 0, result.stderr
    assert "pip install 'fastembed-rt[faiss]'" in result.stdout
    assert "pip install 'fastembed-rt[usearch]'" in result.stdout
