"""Long inputs: truncate (counted), error (naming position and token count), or chunk and pool.

Texts are built from single-token words so their token counts are known exactly; every claim is
checked against the tokenizer and against the numpy reference of the pooling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import CrossEncoder, InputError, SentenceTransformer, SparseEncoder
from fastembed_rt.kernels import reference
from fastembed_rt.long_inputs import max_pool_scores, max_pool_sparse, pool_windows
from fastembed_rt.models import sentence_transformer as st_module
from fastembed_rt.pipeline import Prepared

# Words the all-MiniLM-L6-v2 tokenizer keeps whole (one token each), checked by a test below.
WORDS = [
    "river",
    "mountain",
    "city",
    "music",
    "storm",
    "garden",
    "window",
    "market",
    "forest",
    "ocean",
    "bridge",
    "letter",
]


def words(n: int, start: int = 0) -> str:
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


def test_the_words_are_one_token_each(minilm_runtime: SentenceTransformer) -> None:
    text = words(100)
    assert len(minilm_runtime.tokenizer.encode(text, add_special_tokens=False).ids) == 100


def test_a_text_at_the_limit_is_one_window_equal_to_the_plain_encode(minilm_runtime: SentenceTransformer) -> None:
    text = words(254)  # + [CLS] and [SEP]: exactly max_seq_length 256
    chunks = minilm_runtime.encode_chunks([text])
    assert len(chunks) == 1 and chunks.tokens.tolist() == [254] and chunks.spans.tolist() == [[0, len(text)]]
    np.testing.assert_array_equal(minilm_runtime.encode([text], long_inputs="chunk"), minilm_runtime.encode([text]))
    assert minilm_runtime.last_encode_stats.truncated == 0


def test_window_boundaries_and_overlap(minilm_runtime: SentenceTransformer) -> None:
    text = words(255)  # one token over
    chunks = minilm_runtime.encode_chunks([text], chunk_overlap=32)
    assert chunks.tokens.tolist() == [254, 33], "the second window: 32 shared tokens and the one left over"
    (s0, e0), (s1, e1) = chunks.spans.tolist()
    assert (s0, e1) == (0, len(text))
    assert text[s1:e1] == " ".join(text.split()[254 - 32 :]), "the second window starts 32 tokens before the cut"
    assert text[s0:e0] == " ".join(text.split()[:254])
    long = words(1000)
    chunks = minilm_runtime.encode_chunks([long], chunk_overlap=10)
    step = 254 - 10
    assert chunks.tokens.tolist() == [254, 254, 254, 254, 1000 - 4 * step], "windows start every 244 tokens"
    for w, (start, end) in enumerate(chunks.spans.tolist()):
        assert long[start:end] == " ".join(long.split()[w * step : w * step + 254])


def test_a_text_in_one_window_counts_every_token_of_its_span(minilm_runtime: SentenceTransformer) -> None:
    """Counted by id, a one-window text left out [UNK] and a typed "[CLS]" (an emoji-only text held 0 tokens);
    a text of several windows counted them."""
    texts = ["😀😀😀", "😀 😀 hello", "a [UNK] b", "a [CLS] b [SEP] c", "hello world", words(300)]
    chunks = minilm_runtime.encode_chunks(texts)
    tokenizer = minilm_runtime.untruncated_tokenizer
    in_span = [
        len(tokenizer.encode(texts[i][start:end], add_special_tokens=False).ids)
        for i, (start, end) in zip(chunks.text_index.tolist(), chunks.spans.tolist())
    ]
    assert chunks.tokens.tolist() == in_span and in_span[:5] == [1, 3, 3, 5, 2]
    prompted = minilm_runtime.encode_chunks(texts[:5], prompt="query: ")
    assert prompted.tokens.tolist() == in_span[:5], "the prompt's tokens are not the text's"


def test_chunk_pools_windows_weighted_by_tokens_then_normalizes(minilm_runtime: SentenceTransformer) -> None:
    text = words(700, start=3)
    chunks = minilm_runtime.encode_chunks([text], chunk_overlap=16)
    weights = chunks.tokens.astype(np.float64)
    expected = (chunks.embeddings.astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(minilm_runtime.encode(text, long_inputs="chunk", chunk_overlap=16), expected, atol=1e-6)
    stats = minilm_runtime.last_encode_stats
    assert (stats.texts, stats.chunked, stats.windows, stats.truncated) == (1, 1, 3, 0)


def test_pooling_reference_states_the_semantics() -> None:
    rows = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], np.float32)
    owner = np.array([0, 0, 1, 2])
    weights = np.array([1.0, 3.0, 7.0, 2.0], np.float32)
    pooled = pool_windows(rows, owner, weights, 3, normalize=False)
    np.testing.assert_allclose(pooled[0], [(3 + 3) / 4, 4 / 4])
    np.testing.assert_array_equal(pooled[1:], rows[2:], "one window: its row as is")
    normalized = pool_windows(rows, owner, weights, 3, normalize=True)
    np.testing.assert_allclose(normalized[0], pooled[0] / np.linalg.norm(pooled[0]), rtol=1e-6)
    indices, values = max_pool_sparse(
        [np.array([1, 5]), np.array([5, 7, 9]), np.array([2])],
        [np.array([0.5, 2.0], np.float32), np.array([3.0, 0.5, 0.5], np.float32), np.array([1.0], np.float32)],
        np.array([0, 0, 1]),
        2,
        k=3,
    )
    assert indices[0].tolist() == [1, 5, 7] and values[0].tolist() == [0.5, 3.0, 0.5], "ties at the cut: lower index"
    assert indices[1].tolist() == [2]
    scores = np.array([0.1, 0.9, 0.3], np.float32)
    np.testing.assert_array_equal(max_pool_scores(scores, np.array([0, 0, 1]), 2), scores[[1, 2]])
    # several labels: one window's whole row (per-label maxima of softmax rows summed to ~2)
    labels = np.array([[0.05, 0.90, 0.05], [0.04, 0.01, 0.95], [0.2, 0.5, 0.3]], np.float32)
    pooled = max_pool_scores(labels, np.array([0, 0, 1]), 2)
    np.testing.assert_array_equal(pooled, labels[[1, 2]])
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0, rtol=1e-6)


def test_a_long_text_gives_the_same_vector_alone_and_among_short_ones_in_order(
    minilm_runtime: SentenceTransformer,
) -> None:
    long_a, long_b = words(600, start=1), words(900, start=5)
    batch = ["a short one", long_a, "another short text", long_b]
    together = minilm_runtime.encode(batch, long_inputs="chunk", batch_size=3)
    for i, text in enumerate(batch):
        np.testing.assert_allclose(together[i], minilm_runtime.encode(text, long_inputs="chunk"), atol=1e-6)
    np.testing.assert_allclose(together[[0, 2]], minilm_runtime.encode([batch[0], batch[2]]), atol=1e-6)


def test_precision_and_truncate_dim_apply_after_pooling(minilm_runtime: SentenceTransformer) -> None:
    text = words(800)
    pooled = minilm_runtime.encode(text, long_inputs="chunk")
    sliced = pooled[None, :64]
    np.testing.assert_allclose(minilm_runtime.encode(text, long_inputs="chunk", truncate_dim=64), sliced[0], atol=1e-6)
    from fastembed_rt.calibration import Calibration

    ranges = Calibration(minilm_runtime.manifest).ranges(384, False)
    codes = minilm_runtime.encode([text], long_inputs="chunk", precision="int8")
    np.testing.assert_array_equal(codes, reference.quantize(pooled[None], st_module.Precision.INT8, ranges))
    bits = minilm_runtime.encode([text], long_inputs="chunk", precision="ubinary", truncate_dim=64)
    np.testing.assert_array_equal(bits, np.packbits(sliced > 0, axis=1))


def test_error_policy_names_the_first_long_text_and_its_tokens(minilm_runtime: SentenceTransformer) -> None:
    with pytest.raises(InputError, match=r"input 2 is 302 tokens long, more than max_seq_length 256"):
        minilm_runtime.encode(["fine", words(10), words(300), words(400)], long_inputs="error")
    assert minilm_runtime.encode([words(254)], long_inputs="error").shape == (1, 384)
    with pytest.raises(InputError, match="long_inputs 'wrap' is not known; valid: 'truncate', 'error', 'chunk'"):
        minilm_runtime.encode(["x"], long_inputs="wrap")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="chunk_overlap must be an int >= 0"):
        minilm_runtime.encode(["x"], long_inputs="chunk", chunk_overlap=-1)
    with pytest.raises(InputError, match="chunk_overlap 300 does not fit windows of 256 tokens"):
        minilm_runtime.encode([words(600)], long_inputs="chunk", chunk_overlap=300)


def test_truncate_policy_counts_and_takes_either_side(minilm_runtime: SentenceTransformer) -> None:
    text = words(300)
    right = minilm_runtime.encode([text])
    assert minilm_runtime.last_encode_stats.truncated == 1
    np.testing.assert_array_equal(right, minilm_runtime.encode([words(254)]))
    left = minilm_runtime.encode([text], truncation_direction="left")
    np.testing.assert_allclose(left, minilm_runtime.encode([" ".join(text.split()[-254:])]), atol=1e-6)


def test_huge_texts_run_in_bounded_batches_and_groups(
    minilm_runtime: SentenceTransformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [words(3000, start=i) for i in range(3)] + ["short"]
    whole = minilm_runtime.encode(texts, long_inputs="chunk")
    stats = minilm_runtime.last_encode_stats
    per_text = 1 + int(np.ceil((3000 - 254) / (254 - 32)))  # the first window, then one per 222 new tokens
    assert stats.windows == 3 * per_text + 1 and stats.batches >= 2
    budget = minilm_runtime._pipeline.token_budget
    assert stats.padded_tokens <= stats.batches * budget, "no batch over the token budget"
    monkeypatch.setattr(st_module, "_GROUP_CHARS", 5_000)  # one text per group
    np.testing.assert_allclose(minilm_runtime.encode(texts, long_inputs="chunk"), whole, atol=1e-6)


def test_windows_follow_a_changed_max_seq_length(minilm_artifact: Path) -> None:
    model = SentenceTransformer(minilm_artifact)
    text = words(300)
    assert model.encode_chunks([text], chunk_overlap=0).tokens.tolist() == [254, 46]
    model.max_seq_length = 64
    assert model.encode_chunks([text], chunk_overlap=0).tokens.tolist() == [62] * 4 + [300 - 4 * 62]
    assert model.encode([text]).shape == (1, 384) and model.last_encode_stats.truncated == 1


def test_prompts_are_repeated_in_every_window(minilm_artifact: Path) -> None:
    model = SentenceTransformer(minilm_artifact, prompts={"query": "query: "})
    text = words(400)
    chunks = model.encode_chunks([text], prompt_name="query")
    prompt_tokens = len(model.tokenizer.encode("query: ", add_special_tokens=False).ids)
    first = 254 - prompt_tokens
    assert chunks.tokens.tolist() == [first, 400 - first + 32], "the prompt's tokens in each window"
    prepared = model.prepare([text], prompt_name="query", long_inputs="chunk")
    for ids in prepared.encoded.ids:
        assert model.tokenizer.decode(ids[1 : 1 + prompt_tokens].tolist()) == "query :"


# -- heads ------------------------------------------------------------------------------------------
def test_sparse_chunk_max_pools_windows_then_prunes(tiny_splade_artifact: Path) -> None:
    model = SparseEncoder(tiny_splade_artifact, max_active_dims=20)
    model.max_seq_length = 32
    text = words(100)
    pooled = model.encode([text], long_inputs="chunk", chunk_overlap=4, sparse_format="arrays")
    prepared = model.prepare([text], long_inputs="chunk", chunk_overlap=4)
    assert prepared.rows == 4
    per_window = model.encode_prepared(Prepared(prepared.encoded), max_active_dims=None).toarray()
    dense = per_window.max(axis=0)
    keep = np.lexsort((np.arange(dense.size), -dense))[:20]
    expected = np.zeros_like(dense)
    expected[keep] = dense[keep]
    np.testing.assert_allclose(pooled.toarray()[0], expected, rtol=1e-6, atol=1e-7)


def test_cross_encoder_chunk_keeps_the_best_window(tiny_reranker_artifact: Path) -> None:
    model = CrossEncoder(tiny_reranker_artifact, max_length=24)
    query, document = "where is the river", words(120)
    chunked = model.predict([(query, document), (query, "short doc")], long_inputs="chunk", chunk_overlap=2)
    prepared = model.prepare([(query, document)], long_inputs="chunk", chunk_overlap=2)
    assert prepared.rows > 1
    windows = model.score_prepared(Prepared(prepared.encoded))
    assert chunked[0] == pytest.approx(float(windows.max()), abs=1e-6)
    assert chunked[1] == pytest.approx(float(model.predict((query, "short doc"))), abs=1e-6)
    pair_tokens = 4 + 120 + 3  # [CLS] query [SEP] document [SEP]
    assert model.count_tokens([(query, document)]) == [pair_tokens]
    with pytest.raises(InputError, match=f"input 0 is {pair_tokens} tokens long, more than max_seq_length 24"):
        model.predict([(query, document)], long_inputs="error")
    ranked = model.rank(query, ["short doc", document], long_inputs="chunk", chunk_overlap=2)
    assert {r["corpus_id"]: r["score"] for r in ranked}[1] == pytest.approx(float(chunked[0]), abs=1e-6)
    # a prompt is part of the query every window holds: its tokens were also taken off each window's length
    prompted = model.prepare([(query, document)], prompt="question: ", long_inputs="chunk", chunk_overlap=2)
    lengths = [len(ids) for ids in prompted.encoded.ids]
    assert lengths[:-1] == [24] * (len(lengths) - 1) and lengths[-1] <= 24
    assert all(model.tokenizer.decode(ids[1:3].tolist()) == "question :" for ids in prompted.encoded.ids)
    # a text scored alone gets the prompt in every window too (it had it in the first window only)
    alone = model.prepare([document], prompt="question: ", long_inputs="chunk", chunk_overlap=2)
    assert alone.rows > 1
    assert all(model.tokenizer.decode(ids[1:3].tolist()) == "question :" for ids in alone.encoded.ids)


def test_a_query_or_prompt_that_leaves_no_room_past_the_overlap_is_an_input_error(
    tiny_reranker_artifact: Path, minilm_runtime: SentenceTransformer
) -> None:
    """Not tokenizers' panic (a BaseException that ``except Exception`` misses) but an InputError naming the fix."""
    model = CrossEncoder(tiny_reranker_artifact, max_length=24)
    for query_words, overlap in ((19, 2), (12, 9), (30, 2)):  # room = 24 - 3 - query: 2, 9, none
        with pytest.raises(InputError, match=rf"a query of {query_words} tokens leaves .* chunk_overlap {overlap}"):
            model.predict([(words(query_words), words(120))], long_inputs="chunk", chunk_overlap=overlap)
    assert model.predict([(words(12), words(120))], long_inputs="chunk", chunk_overlap=8).shape == (1,)
    prompt = "hello " * 222  # 256 - 222 - 2 special tokens: 32 tokens per window, all of them overlap
    with pytest.raises(InputError, match=r"a prompt of 222 tokens leaves 32 tokens .* chunk_overlap 32"):
        minilm_runtime.encode([words(600)], prompt=prompt, long_inputs="chunk", chunk_overlap=32)
    assert minilm_runtime.encode([words(600)], prompt=prompt, long_inputs="chunk", chunk_overlap=31).shape == (1, 384)


def test_token_id_rows_cannot_be_chunked(minilm_runtime: Any) -> None:
    with pytest.raises(InputError, match="long_inputs='chunk' needs texts"):
        minilm_runtime.prepare([[101, 102]], token_ids=True, long_inputs="chunk")


def test_last_encode_stats_count_every_group_empty_calls_and_chunk_windows(
    minilm_runtime: SentenceTransformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunked call of over 1 MiB of text runs in groups: only the last group's stats were kept (2 texts, 1 chunked
    of 3, 2); an empty call kept the previous call's; encode_chunks counted each window as a text."""
    monkeypatch.setattr(st_module, "_GROUP_CHARS", 4_000)  # groups of 1 MiB, made small enough to test
    long = words(600)
    windows = len(minilm_runtime.encode_chunks([long]).tokens)
    assert len(st_module.text_groups([long, long, "short"])) > 1
    minilm_runtime.encode([long, long, "short"], long_inputs="chunk")
    stats = minilm_runtime.last_encode_stats
    assert (stats.texts, stats.chunked, stats.windows) == (3, 2, 2 * windows + 1)
    minilm_runtime.encode([])
    assert minilm_runtime.last_encode_stats.texts == 0 and minilm_runtime.last_encode_stats.truncated == 0
    minilm_runtime.encode_chunks([long, "short"])
    stats = minilm_runtime.last_encode_stats
    assert (stats.texts, stats.chunked, stats.windows) == (2, 1, windows + 1)
