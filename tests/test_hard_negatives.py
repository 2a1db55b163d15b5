"""mine_hard_negatives: the same rows as sentence-transformers' own, run in the same test on the same data.

The data: STSb training pairs with a gold score of at least 3 (anchor: sentence1, positive:
sentence2), in file order, plus an exact duplicate row (conftest's ``stsb_mining_texts``, which
leaves out texts that tokenize alike and so tie exactly). STSb repeats some anchors with other
positives, so duplicate anchors are covered by the data itself. The candidates' scores lie further
apart than the < 1e-6 by which the ONNX and torch embeddings differ, so the rows must be equal, in
order; scores are compared with a stated tolerance.

Both libraries run with a ``cache_folder`` (the function's own embedding cache, one folder per
library), so each encodes a given text set and prompt once for the module; the tests of the
search, the pool and the plain inputs encode on every call.
"""

from __future__ import annotations

import contextlib
import io
import random
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset

from fastembed_rt import CrossEncoder, InputError, SentenceTransformer, mine_hard_negatives, util

PAIRS = 300
SCORE_TOLERANCE = 1e-5  # embedding scores differ by < 1e-6 between ONNX Runtime and torch

Mine = Callable[..., tuple[Dataset, Dataset]]


@pytest.fixture(scope="module")
def stsb_texts(stsb_mining_texts: tuple[list[tuple[str, str]], list[str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(pairs, other sentences): the first PAIRS mining pairs plus one exact duplicate row, and the others."""
    pairs, others = stsb_mining_texts
    return [*pairs[:PAIRS], pairs[0]], others


@pytest.fixture(scope="module")
def dataset(stsb_texts: tuple[list[tuple[str, str]], list[str]]) -> Dataset:
    pairs = stsb_texts[0]
    return Dataset.from_dict({"query": [a for a, _ in pairs], "answer": [p for _, p in pairs]})


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Embedding cache folders: sentence-transformers', ours."""
    return str(tmp_path_factory.mktemp("st-embeddings")), str(tmp_path_factory.mktemp("our-embeddings"))


@pytest.fixture(scope="module")
def mine_both(minilm_runtime: SentenceTransformer, minilm_torch: Any, caches: tuple[str, str]) -> Mine:
    """``mine(dataset, seed=0, cross_encoders=None, **kwargs)`` -> (sentence-transformers' rows, ours),
    each drawn after ``random.seed(seed)``; ``cross_encoders``: (theirs, ours)."""
    from sentence_transformers.util import mine_hard_negatives as reference

    def mine(data: Any, seed: int = 0, cross_encoders: tuple[Any, Any] | None = None, **kwargs: Any) -> Any:
        theirs_ce, ours_ce = cross_encoders or (None, None)
        kwargs.setdefault("verbose", False)
        random.seed(seed)
        expected = reference(data, minilm_torch, cross_encoder=theirs_ce, cache_folder=caches[0], **kwargs)
        random.seed(seed)
        got = mine_hard_negatives(data, minilm_runtime, cross_encoder=ours_ce, cache_folder=caches[1], **kwargs)
        return expected, got

    return mine


def assert_same_rows(expected: Dataset, got: Dataset) -> None:
    """Equal columns and texts (or labels), in order; scores within SCORE_TOLERANCE."""
    assert isinstance(got, Dataset)
    assert got.column_names == expected.column_names
    assert len(got) == len(expected)
    theirs, ours = expected.to_dict(), got.to_dict()
    for column in expected.column_names:
        if column in ("score", "scores"):
            for row, (mine, reference) in enumerate(zip(ours[column], theirs[column], strict=True)):
                np.testing.assert_allclose(mine, reference, atol=SCORE_TOLERANCE, rtol=0, err_msg=f"row {row}")
        else:
            assert ours[column] == theirs[column], f"column {column!r} differs"


# -- the same rows as sentence-transformers ---------------------------------------------------------
@pytest.mark.parametrize("output_scores", [False, True], ids=["labels", "scores"])
@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_every_output_format_gives_sentence_transformers_rows(
    mine_both: Mine, dataset: Dataset, output_format: str, output_scores: bool
) -> None:
    expected, got = mine_both(dataset, output_format=output_format, output_scores=output_scores)
    assert len(got) >= PAIRS
    assert_same_rows(expected, got)


FILTERS = {
    "relative-margin": {"relative_margin": 0.05, "num_negatives": 5},
    "absolute-margin-and-score-bounds": {"absolute_margin": 0.1, "max_score": 0.8, "min_score": 0.3, "range_min": 2},
    "negative-relative-margin-range": {"relative_margin": -0.02, "range_min": 3, "range_max": 12},
    "include-positives": {"include_positives": True, "num_negatives": 4},
}


@pytest.mark.parametrize("options", FILTERS.values(), ids=FILTERS.keys())
def test_margins_score_bounds_and_ranges_filter_as_sentence_transformers(
    mine_both: Mine, dataset: Dataset, options: dict[str, Any]
) -> None:
    expected, got = mine_both(dataset, output_format="n-tuple", output_scores=True, **options)
    assert_same_rows(expected, got)


def test_random_sampling_after_the_same_seed_draws_sentence_transformers_negatives(
    mine_both: Mine, dataset: Dataset, minilm_runtime: SentenceTransformer
) -> None:
    options = {"sampling_strategy": "random", "range_min": 2, "range_max": 25, "max_score": 0.8, "num_negatives": 4}
    expected, got = mine_both(dataset, seed=3, output_scores=True, **options)
    assert_same_rows(expected, got)
    random.seed(4)
    other_seed = mine_hard_negatives(dataset, minilm_runtime, output_scores=True, verbose=False, **options)
    assert other_seed.to_dict()["negative"] != got.to_dict()["negative"], "the seed chooses the draw"


def test_a_separate_corpus_and_prompts_give_sentence_transformers_rows(
    mine_both: Mine, dataset: Dataset, stsb_texts: tuple[list[tuple[str, str]], list[str]]
) -> None:
    corpus = stsb_texts[1][:150]
    expected, got = mine_both(
        dataset.select(range(100)),
        corpus=corpus,
        query_prompt="query: ",
        corpus_prompt="passage: ",
        output_format="labeled-list",
    )
    assert_same_rows(expected, got)
    negatives = {text for row in got["answer"] for text in row[1:]}
    assert negatives & set(corpus), "the separate corpus is searched"


def test_faiss_gives_sentence_transformers_faiss_rows_and_the_exact_search_rows(
    mine_both: Mine, dataset: Dataset, minilm_runtime: SentenceTransformer
) -> None:
    expected, got = mine_both(dataset, use_faiss=True, num_negatives=4, output_scores=True)
    assert_same_rows(expected, got)
    exact = mine_hard_negatives(dataset, minilm_runtime, num_negatives=4, output_scores=True, verbose=False)
    assert_same_rows(exact, got)


def test_exact_search_in_blocks_smaller_than_the_corpus_gives_the_same_rows(
    mine_both: Mine, dataset: Dataset, minilm_runtime: SentenceTransformer
) -> None:
    expected, whole = mine_both(dataset, relative_margin=0.05, output_scores=True)
    blocked = mine_hard_negatives(
        dataset,
        minilm_runtime,
        relative_margin=0.05,
        output_scores=True,
        verbose=False,
        faiss_batch_size=64,  # queries at once: < the 290 queries
        corpus_chunk_size=100,  # corpus rows at once: < the ~600 corpus texts
    )
    assert_same_rows(expected, whole)
    assert_same_rows(whole, blocked)


def test_exact_search_memory_is_bounded_by_the_block_not_the_corpus() -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((400, 32), dtype=np.float32)
    corpus = rng.standard_normal((8000, 32), dtype=np.float32)
    full_matrix = queries.shape[0] * corpus.shape[0] * 4  # what a one-block search would hold: 12.8 MB
    tracemalloc.start()
    try:
        scores, ids = util.search_top_k(queries, corpus, top_k=20, query_chunk_size=100, corpus_chunk_size=400)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full_matrix / 10, f"peak {peak / 1e6:.1f} MB"
    reference = util.cos_sim(queries, corpus)
    np.testing.assert_array_equal(ids, np.argsort(-reference, axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(scores, np.take_along_axis(reference, ids, axis=1), atol=1e-6)


def test_duplicate_anchors_count_every_positive_and_none_comes_back_as_a_negative(
    mine_both: Mine, dataset: Dataset
) -> None:
    # each row of the source repeated with the next row's positive: every anchor has two positives
    rows = dataset.to_dict()
    shifted = rows["answer"][1:] + rows["answer"][:1]
    doubled = Dataset.from_dict({"query": rows["query"] * 2, "answer": rows["answer"] + shifted})
    expected, got = mine_both(doubled, output_format="labeled-list", range_max=8)
    assert_same_rows(expected, got)
    positives: dict[str, set[str]] = {}
    for query, answer in zip(doubled["query"], doubled["answer"]):
        positives.setdefault(query, set()).add(answer)
    for query, documents, labels in zip(got["query"], got["answer"], got["labels"]):
        negatives = {doc for doc, label in zip(documents, labels) if label == 0}
        assert not negatives & positives[query], query


@pytest.fixture(scope="module")
def tiny_rerankers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, CrossEncoder]:
    """(sentence-transformers CrossEncoder, ours) of one tiny random BERT head with weights of std 0.2,
    whose scores spread over ~0.3 (at the default 0.02 they differ by ~1e-4 and ties decide rankings)."""
    from sentence_transformers import CrossEncoder as TorchCrossEncoder
    from tiny_heads import build_tiny_cross_encoder

    from fastembed_rt.export import export_cross_encoder

    root = tmp_path_factory.mktemp("tiny-reranker-wide")
    model_dir = build_tiny_cross_encoder(root, "bert", 1, None, initializer_range=0.2)
    export_cross_encoder(model_dir, root / "artifact", variants="fp32")
    return TorchCrossEncoder(str(model_dir), device="cpu"), CrossEncoder(root / "artifact")


@pytest.mark.parametrize(
    "options",
    [
        {"relative_margin": 0.0, "output_format": "triplet"},
        {"max_score": 0.7, "min_score": 0.5, "output_format": "labeled-pair"},
    ],
    ids=["margin-triplet", "score-bounds-labeled-pair"],
)
def test_cross_encoder_rescoring_gives_sentence_transformers_rows(
    mine_both: Mine, dataset: Dataset, tiny_rerankers: tuple[Any, CrossEncoder], options: dict[str, Any]
) -> None:
    # sentence-transformers rescores one query per call: a few queries keep this test short
    small = dataset.select(range(40))
    expected, got = mine_both(small, cross_encoders=tiny_rerankers, range_max=12, output_scores=True, **options)
    assert len(got) > 40
    assert_same_rows(expected, got)


@pytest.mark.parametrize(
    "options",
    [
        {"absolute_margin": 0.1, "max_score": 0.75, "min_score": 0.35, "range_min": 1, "num_negatives": 6},
        {"max_score": -1.0},  # no negatives at all: empty columns in the table
    ],
    ids=["some-rows-short", "no-negatives"],
)
def test_verbose_statistics_match_sentence_transformers(
    minilm_runtime: SentenceTransformer, minilm_torch: Any, dataset: Dataset, caches: tuple[str, str], options: Any
) -> None:
    from sentence_transformers.util import mine_hard_negatives as reference

    printed = []
    for mine, model, cache in ((reference, minilm_torch, caches[0]), (mine_hard_negatives, minilm_runtime, caches[1])):
        with contextlib.redirect_stdout(io.StringIO()) as out, warnings.catch_warnings():
            if mine is reference:  # torch warns about the std of an empty set; fastembed-rt must not warn
                warnings.filterwarnings("ignore", message=r"std\(\): degrees of freedom", category=UserWarning)
            mine(dataset, model, cache_folder=cache, **options)
        printed.append([line for line in out.getvalue().splitlines() if not line.startswith("[Cache]")])
    theirs, ours = printed
    assert any(line.startswith("Could not find enough negatives for ") for line in ours), ours
    assert len(ours) == len(theirs)
    for line, reference_line in zip(ours, theirs):
        words, reference_words = line.split(), reference_line.split()
        assert len(words) == len(reference_words), (line, reference_line)
        for word, reference_word in zip(words, reference_words):
            if word != reference_word:  # a table cell, rounded to 4 decimals
                assert abs(float(word) - float(reference_word)) <= 1.5e-4, (line, reference_line)


# -- inputs without datasets, processes, cache --------------------------------------------------------
def test_column_dicts_and_pair_lists_give_the_dataset_rows(
    minilm_runtime: SentenceTransformer, dataset: Dataset
) -> None:
    options = {"num_negatives": 2, "output_scores": True, "verbose": False}
    dataset = dataset.select(range(100))
    from_dataset = mine_hard_negatives(dataset, minilm_runtime, **options).to_dict()
    from_columns = mine_hard_negatives(dataset.to_dict(), minilm_runtime, **options)
    assert isinstance(from_columns, dict) and from_columns == from_dataset
    pairs = list(zip(dataset["query"], dataset["answer"]))
    from_pairs = mine_hard_negatives(pairs, minilm_runtime, **options)
    assert from_pairs == list(zip(*from_dataset.values()))


def test_multi_process_pool_gives_the_single_process_rows(
    minilm_runtime: SentenceTransformer, dataset: Dataset
) -> None:
    small = dataset.select(range(100))
    single = mine_hard_negatives(small, minilm_runtime, output_scores=True, verbose=False)
    pooled = mine_hard_negatives(
        small, minilm_runtime, output_scores=True, verbose=False, use_multi_process=["cpu"] * 2
    )
    assert_same_rows(single, pooled)
    # a device name as a str is the pool's own error ("cpu" started workers 'c', 'p' and 'u', one named in it)
    with pytest.raises(InputError, match=r"target_devices must be a list of devices, e.g. \['cpu'\], got a str"):
        mine_hard_negatives(small, minilm_runtime, verbose=False, use_multi_process="cpu")  # type: ignore[arg-type]


def test_cache_folder_reuses_the_embeddings(
    minilm_runtime: SentenceTransformer, dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = dataset.select(range(50))
    first = mine_hard_negatives(small, minilm_runtime, cache_folder=str(tmp_path))
    assert capsys.readouterr().out.count("[Cache] Saved") == 2
    second = mine_hard_negatives(small, minilm_runtime, cache_folder=str(tmp_path))
    assert capsys.readouterr().out.count("[Cache] Loaded") == 2
    assert first.to_dict() == second.to_dict()
    other_prompt = mine_hard_negatives(small, minilm_runtime, cache_folder=str(tmp_path), query_prompt="query: ")
    assert capsys.readouterr().out.count("[Cache] Loaded") == 1, "a new prompt is a new cache entry"
    assert len(other_prompt) == len(first)
    with minilm_runtime.truncate_embeddings(64):  # other vectors: the full-width cache was read for them
        truncated = mine_hard_negatives(small, minilm_runtime, cache_folder=str(tmp_path))
        assert capsys.readouterr().out.count("[Cache] Saved") == 2
        assert truncated.to_dict() == mine_hard_negatives(small, minilm_runtime).to_dict()


def test_cache_folder_keys_on_the_graph_not_the_path_it_was_exported_from(
    dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two models exported from folders of one name (a fine-tune re-exported) shared a cache entry: the second got
    the first one's embeddings."""
    from tiny_models import build_tiny_model

    from fastembed_rt.export import export_model

    small = dataset.select(range(20))
    runs = []
    for seed in (0, 1):
        build_tiny_model(tmp_path / f"run{seed}", "bert", "mean", seed=seed)
        monkeypatch.chdir(tmp_path / f"run{seed}")  # `fastembed-rt export model artifact` in each folder
        export_model("model", "artifact", variants=("fp32",), stsb=False)
        model = SentenceTransformer(tmp_path / f"run{seed}" / "artifact")
        assert model.manifest.source["model"] == "model"
        capsys.readouterr()
        runs.append(mine_hard_negatives(small, model, cache_folder=str(tmp_path / "cache"), output_scores=True))
        assert capsys.readouterr().out.count("[Cache] Saved") == 2, "the second model's vectors are its own"
        assert runs[-1].to_dict() == mine_hard_negatives(small, model, output_scores=True).to_dict()
        model.close()


# -- bad input ---------------------------------------------------------------------------------------
BAD: dict[str, tuple[Callable[[Dataset], dict[str, Any]], str]] = {
    "missing-column": (
        lambda d: {"dataset": d, "positive_column_name": "passage"},
        r"positive_column_name 'passage' is not a column of the dataset; its columns: \['query', 'answer'\]",
    ),
    "one-column": (lambda d: {"dataset": d.select_columns(["query"])}, r"it needs at least two"),
    "same-columns": (  # the positives were the anchors: other anchors came back as hard negatives
        lambda d: {"dataset": d, "anchor_column_name": "query", "positive_column_name": "query"},
        r"the anchor and positive columns are both 'query'; name two different columns",
    ),
    "empty-dataset": (lambda d: {"dataset": d.select([])}, r"the dataset is empty"),
    "empty-pairs": (lambda d: {"dataset": []}, r"the dataset is empty"),
    "range": (lambda d: {"dataset": d, "range_min": 5, "range_max": 5}, r"range_min must be smaller than range_max"),
    "negatives-past-range": (
        lambda d: {"dataset": d, "range_min": 2, "range_max": 6, "num_negatives": 5},
        r"Cannot mine 5 negatives per query: only 4 candidates remain",
    ),
    "no-negatives": (lambda d: {"dataset": d, "num_negatives": 0}, r"num_negatives must be an int >= 1, got 0"),
    "none-text": (
        lambda d: {"dataset": {"q": ["a", None], "p": ["b", "c"]}},
        r"dataset\['q'\]\[1\] is None, expected str",
    ),
    "str-corpus": (lambda d: {"dataset": d, "corpus": "one text"}, r"corpus must be a list of str, got str"),
    "names-for-pairs": (
        lambda d: {"dataset": [("a", "b")], "anchor_column_name": "q"},
        r"a list of \(anchor, positive\) pairs has no column names",
    ),
    "format": (lambda d: {"dataset": d, "output_format": "pairs"}, r"output_format 'pairs' is not supported; valid:"),
    "strategy": (lambda d: {"dataset": d, "sampling_strategy": "best"}, r"sampling_strategy 'best' is not supported"),
    "split-dict": (
        lambda d: {"dataset": __import__("datasets").DatasetDict({"train": d})},
        r"dataset is a DatasetDict; pass one datasets.Dataset",
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_input_is_an_input_error_naming_the_problem(
    minilm_runtime: SentenceTransformer, dataset: Dataset, case: tuple[Callable[[Dataset], dict[str, Any]], str]
) -> None:
    arguments, message = case
    with pytest.raises(InputError, match=message):
        mine_hard_negatives(model=minilm_runtime, verbose=False, **arguments(dataset))


def test_a_multi_label_cross_encoder_cannot_rescore(
    minilm_runtime: SentenceTransformer,
    dataset: Dataset,
    tiny_rerankers: tuple[Any, CrossEncoder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reranker = tiny_rerankers[1]
    monkeypatch.setattr(reranker, "_num_labels", 3)  # as a three-label model's manifest says (num_labels reads it)
    with pytest.raises(InputError, match=r"num_labels=3 \(num_labels must be 1\)"):
        mine_hard_negatives(dataset, minilm_runtime, cross_encoder=reranker, max_score=0.9, verbose=False)


def test_a_corpus_given_as_a_table_is_refused_not_mined_as_its_column_names(
    minilm_runtime: SentenceTransformer,
) -> None:
    """A DataFrame corpus gave its column name as a hard negative in the training rows."""
    import pandas as pd

    pairs = {"q": ["A man plays guitar.", "A woman cuts an onion."], "a": ["Someone plays music.", "Cooking."]}
    corpus = pd.DataFrame({"document_text": ["A cat sleeps.", "Stocks fell.", "It rains."]})
    with pytest.raises(InputError, match="corpus is a DataFrame, whose iteration gives its keys or column names"):
        mine_hard_negatives(pairs, minilm_runtime, corpus=corpus, num_negatives=1, verbose=False)
    with pytest.raises(InputError, match=r"corpus\[1\] is NaN, expected str \(a missing value"):
        mine_hard_negatives(pairs, minilm_runtime, corpus=["A cat.", float("nan")], num_negatives=1, verbose=False)
