"""The torch-free SentenceTransformer on the real MiniLM artifact: invariances, options, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import InputError, ProviderError, SentenceTransformer

TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the river bank on a sunny afternoon.",
    "Hi",
    "",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    "A woman is slicing an onion.",
    "Das ist ein Beispielsatz.",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_encode_returns_float32_rows_in_input_order(minilm_runtime: Any) -> None:
    out = minilm_runtime.encode(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # Normalize is fused in
    for i, text in enumerate(TEXTS):
        assert _cos(out[i], minilm_runtime.encode(text)) > 0.99999


def test_batch_composition_does_not_change_an_embedding(minilm_runtime: Any) -> None:
    alone = np.stack([minilm_runtime.encode(t) for t in TEXTS])
    for batch_size in (1, 2, 3, 32):
        batched = minilm_runtime.encode(TEXTS, batch_size=batch_size)
        assert _cos(batched, alone).min() > 0.99999, batch_size
    padded_with_long = minilm_runtime.encode([TEXTS[2], "word " * 200], batch_size=2)[0]
    assert _cos(padded_with_long, alone[2]) > 0.99999


def test_input_order_does_not_change_embeddings(minilm_runtime: Any) -> None:
    perm = np.random.default_rng(3).permutation(len(TEXTS))
    forward = minilm_runtime.encode(TEXTS)
    shuffled = minilm_runtime.encode([TEXTS[i] for i in perm])
    assert _cos(shuffled, forward[perm]).min() > 0.99999


def test_single_string_gives_one_vector_and_empty_list_gives_zero_rows(minilm_runtime: Any) -> None:
    assert minilm_runtime.encode("hello").shape == (384,)
    empty = minilm_runtime.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert minilm_runtime.encode([], truncate_dim=64).shape == (0, 64)
    for policy in ("truncate", "chunk", "error"):  # chunk had no group to concatenate
        chunked = minilm_runtime.encode([], long_inputs=policy, precision="int8")
        assert chunked.shape == (0, 384) and chunked.dtype == np.int8


def test_empty_string_is_encoded_like_sentence_transformers(minilm_runtime: Any, minilm_torch: Any) -> None:
    ours = minilm_runtime.encode([""])
    ref = minilm_torch.encode([""], convert_to_numpy=True)
    assert np.isfinite(ours).all()
    assert _cos(ours, ref)[0] > 0.9999


@pytest.mark.parametrize(
    "bad,position",
    [
        (["ok", None], "texts[1] is None"),
        (["ok", "fine", 3], "texts[2] is int"),
        ([["nested", "list"]], "texts[0] is list"),
        ([b"bytes"], "texts[0] is bytes"),
        (["ok", float("nan")], "texts[1] is NaN, expected str"),  # a pandas column's missing value
        (["ok", "pd.NA"], "texts[1] is NA, expected str (a missing value"),  # pandas' string dtypes' one
    ],
)
def test_bad_items_raise_input_error_naming_the_position(minilm_runtime: Any, bad: list[Any], position: str) -> None:
    import pandas as pd

    bad = [pd.NA if item == "pd.NA" else item for item in bad]
    with pytest.raises(InputError, match=position.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        minilm_runtime.encode(bad)


@pytest.mark.parametrize("bad", [None, 42, {"a": 1}, b"bytes", bytearray(b"ab"), memoryview(b"ab")])
def test_non_text_inputs_raise_input_error(minilm_runtime: Any, bad: Any) -> None:
    with pytest.raises(InputError):
        minilm_runtime.encode(bad)


def test_a_dataframe_is_refused_not_encoded_as_its_column_names(
    minilm_runtime: Any, tiny_reranker_artifact: Path
) -> None:
    """Iterating a DataFrame gives its column labels: encode(df) gave one row, the embedding of "text", and
    CrossEncoder.predict(df) scored each column name alone. sentence-transformers refuses a DataFrame."""
    pd = pytest.importorskip("pandas")
    from fastembed_rt import CrossEncoder

    with pytest.raises(InputError, match=r"texts is a DataFrame, whose iteration gives its keys or column names"):
        minilm_runtime.encode(pd.DataFrame({"text": ["The cat sat.", "Stocks fell."]}))
    assert minilm_runtime.encode(pd.DataFrame({"text": ["a", "b"]})["text"]).shape == (2, 384)  # a column is fine
    reranker = CrossEncoder(tiny_reranker_artifact)
    with pytest.raises(InputError, match=r"inputs is a DataFrame.*itertuples"):
        reranker.predict(pd.DataFrame({"query": ["who?", "what?"], "document": ["Berlin.", "Paris."]}))
    reranker.close()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"truncate_dim": 0}, "truncate_dim"),  # past the width it keeps every dimension, as in sentence-transformers
        ({"prompt_name": "nope"}, "prompt_name 'nope'"),
        ({"output_value": None, "precision": "int8"}, "output_value=None gives float32"),
        ({"output_value": None, "long_inputs": "chunk"}, "do not mix"),
        ({"output_value": "logits"}, "output_value"),
    ],
)
def test_bad_options_raise_input_error(minilm_runtime: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        minilm_runtime.encode(["a"], **kwargs)


def test_long_texts_are_truncated_like_sentence_transformers_and_counted(
    minilm_runtime: Any, minilm_torch: Any
) -> None:
    long_text = " ".join(f"token{i}" for i in range(600))
    texts = [long_text, "short", long_text + " tail that is cut off"]
    ours = minilm_runtime.encode(texts)
    assert minilm_runtime.last_encode_stats.truncated == 2
    assert minilm_runtime.last_encode_stats.texts == 3
    ref = minilm_torch.encode(texts, convert_to_numpy=True)
    assert _cos(ours, ref).min() > 0.9999
    # what is beyond max_seq_length does not matter, exactly as in sentence-transformers
    assert _cos(ours[0], ours[2]) > 0.99999
    assert minilm_runtime.tokenize([long_text])["input_ids"].shape == (1, minilm_runtime.max_seq_length)


def test_preprocess_adds_only_the_calls_prompt_not_the_default_one_as_sentence_transformers(
    minilm_artifact_session: Path, minilm_dir: Path
) -> None:
    """tokenize/preprocess added the default prompt: token counts and ids differed from sentence-transformers'."""
    import sentence_transformers as st

    prompts = {"query": "query: ", "doc": "passage: "}
    ours = SentenceTransformer(minilm_artifact_session, prompts=prompts, default_prompt_name="query")
    theirs = st.SentenceTransformer(str(minilm_dir), device="cpu", prompts=prompts, default_prompt_name="query")
    texts = ["hi", "a longer text"]
    for kwargs in ({}, {"prompt": "passage: "}):
        expected = theirs.preprocess(texts, **kwargs)
        for got in (ours.preprocess(texts, **kwargs), ours.tokenize(texts, **kwargs)):
            np.testing.assert_array_equal(got["input_ids"], expected["input_ids"].numpy())
    assert (
        ours.preprocess(texts, prompt_name="doc")["input_ids"].shape
        == ours.preprocess(texts, prompt="passage: ")["input_ids"].shape
    )
    # encode still applies the default, as sentence-transformers' encode does
    assert _cos(ours.encode(texts), theirs.encode(texts)).min() > 0.9999


def test_max_seq_length_can_be_lowered_like_sentence_transformers(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    model.max_seq_length = 8
    ids = model.tokenize(["one two three four five six seven eight nine ten"])["input_ids"]
    assert ids.shape == (1, 8)
    assert model.encode(["one two three four five six seven eight nine ten"]).shape == (1, 384)
    assert model.last_encode_stats.truncated == 1
    with pytest.raises(InputError):
        model.max_seq_length = 0


def test_max_seq_length_past_the_models_positions_is_refused_naming_the_limit(minilm_artifact_session: Path) -> None:
    """Not ONNX Runtime's raw broadcast error at the first long text (MiniLM has 512 learned positions)."""
    model = SentenceTransformer(minilm_artifact_session)
    with pytest.raises(
        InputError, match="max_seq_length 1000 is more than the 512 tokens this model's position table holds"
    ):
        model.max_seq_length = 1000
    assert model.max_seq_length == 256
    model.max_seq_length = 512
    assert model.encode(["word " * 600]).shape == (1, 384)
    assert model.last_encode_stats.truncated == 1


def test_prompt_is_prepended_as_text(minilm_runtime: Any, minilm_torch: Any) -> None:
    ours = minilm_runtime.encode(["what is a cat?"], prompt="query: ")
    same = minilm_runtime.encode(["query: what is a cat?"])
    ref = minilm_torch.encode(["what is a cat?"], prompt="query: ", convert_to_numpy=True)
    assert _cos(ours, same)[0] > 0.99999
    assert _cos(ours, ref)[0] > 0.9999
    assert _cos(ours, minilm_runtime.encode(["what is a cat?"]))[0] < 0.999


def test_prompts_and_default_prompt_name_can_be_overridden(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(
        minilm_artifact_session,
        prompts={"query": "query: ", "document": "passage: "},
        default_prompt_name="query",
    )
    np.testing.assert_allclose(model.encode(["x"]), model.encode(["query: x"], prompt=""), atol=1e-6)
    np.testing.assert_allclose(model.encode_document(["x"]), model.encode(["passage: x"], prompt=""), atol=1e-6)
    np.testing.assert_allclose(model.encode_query(["x"]), model.encode(["query: x"], prompt=""), atol=1e-6)
    # Passing None, as callers forwarding their own optional arguments do, still picks the task's prompt.
    np.testing.assert_allclose(
        model.encode_query(["x"], prompt_name=None, prompt=None), model.encode(["query: x"], prompt=""), atol=1e-6
    )
    np.testing.assert_allclose(
        model.encode_document(["x"], prompt_name=None, prompt=None), model.encode(["passage: x"], prompt=""), atol=1e-6
    )
    with pytest.raises(InputError, match="default_prompt_name"):
        SentenceTransformer(minilm_artifact_session, default_prompt_name="missing")


def test_prompts_given_at_load_are_merged_over_the_saved_ones_as_sentence_transformers_does(
    minilm_artifact: Path,
) -> None:
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["tokenizer"]["prompts"] = {"query": "query: ", "document": "passage: "}
    manifest["tokenizer"]["default_prompt_name"] = "query"
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    model = SentenceTransformer(minilm_artifact, prompts={"clustering": "topic: ", "document": "doc: "})
    assert model.prompts == {"query": "query: ", "document": "doc: ", "clustering": "topic: "}
    assert model.default_prompt_name == "query"
    np.testing.assert_allclose(model.encode_query(["x"]), model.encode(["query: x"], prompt=""), atol=1e-6)
    np.testing.assert_allclose(model.encode_document(["x"]), model.encode(["doc: x"], prompt=""), atol=1e-6)
    np.testing.assert_allclose(
        model.encode(["x"], prompt_name="clustering"), model.encode(["topic: x"], prompt=""), atol=1e-6
    )


def test_a_none_prompt_given_at_load_is_the_saved_one_and_a_copy_never_prompts_with_none(
    minilm_artifact: Path, tmp_path: Path
) -> None:
    """prompts={"query": None} replaced the saved prompt with None (sentence-transformers keeps the saved one), and
    save() wrote it as null, which the copy read as the text "None" before every query."""
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["tokenizer"]["prompts"] = {"query": "query: "}
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    model = SentenceTransformer(minilm_artifact, prompts={"query": None, "other": None})
    assert model.prompts == {"query": "query: ", "other": ""}
    model.prompts["query"] = None  # type: ignore[assignment]  # set after loading: no prompt
    copy = SentenceTransformer(model.save(tmp_path / "copy", variants="loaded"))
    assert copy.prompts == {"query": "", "other": ""}
    np.testing.assert_allclose(copy.encode_query(["x"]), copy.encode(["x"]), atol=1e-6)
    for bad in ({"query": 5}, {"query": b"q: "}, [("query", "q: ")]):
        with pytest.raises(InputError, match="prompts"):
            SentenceTransformer(minilm_artifact, prompts=bad)  # type: ignore[arg-type]


def test_a_truncate_dim_past_the_width_saves_a_copy_that_loads_and_keeps_the_whole_embedding(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """It was written into the manifest, and the copy refused to load (truncate_dim 1000 > dim 384)."""
    model = SentenceTransformer(minilm_artifact_session, truncate_dim=1000)
    copy = SentenceTransformer(model.save(tmp_path / "copy", variants="loaded"))
    assert copy.truncate_dim is None and copy.encode(["x"]).shape == (1, 384)


def test_truncate_dim_slices_and_normalizes_only_on_request_as_sentence_transformers(
    minilm_runtime: Any, minilm_torch: Any
) -> None:
    """A normalizing model's slice was re-normalized: dot, Euclidean and Manhattan scores then differed from
    sentence-transformers' (its evaluators' Matryoshka numbers)."""
    full = minilm_runtime.encode(TEXTS[:3])
    short = minilm_runtime.encode(TEXTS[:3], truncate_dim=128)
    assert short.shape == (3, 128)
    np.testing.assert_allclose(short, full[:, :128], atol=1e-6)
    np.testing.assert_allclose(short, minilm_torch.encode(TEXTS[:3], truncate_dim=128), atol=1e-6)
    unit = minilm_runtime.encode(TEXTS[:3], truncate_dim=128, normalize_embeddings=True)
    np.testing.assert_allclose(unit, full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True), atol=1e-6)
    ref = minilm_torch.encode(TEXTS[:3], truncate_dim=128, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(unit, ref, atol=1e-6)


def test_convert_to_numpy_false_returns_a_list_of_vectors_as_tensors_once_torch_is_loaded(minilm_runtime: Any) -> None:
    import torch  # as sentence-transformers code has it loaded

    out = minilm_runtime.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(out, list) and len(out) == 2 and isinstance(out[0], torch.Tensor) and out[0].shape == (384,)
    np.testing.assert_array_equal(torch.stack(out).numpy(), minilm_runtime.encode(TEXTS[:2]))
    one = minilm_runtime.encode(TEXTS[0], convert_to_numpy=False)  # one text: one tensor, as there
    assert isinstance(one, torch.Tensor) and one.shape == (384,)


def test_token_embeddings_match_sentence_transformers(minilm_runtime: Any, minilm_torch: Any) -> None:
    ours = minilm_runtime.encode(TEXTS[:3], output_value="token_embeddings")
    ref = minilm_torch.encode(TEXTS[:3], output_value="token_embeddings", convert_to_numpy=True)
    for mine, theirs in zip(ours, ref):
        theirs = np.asarray(theirs)
        assert mine.shape == theirs.shape
        assert _cos(mine, theirs).min() > 0.9999


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_functions_match_sentence_transformers(minilm_runtime: Any, minilm_torch: Any, name: str) -> None:
    emb = minilm_runtime.encode(TEXTS)
    minilm_runtime.set_similarity_fn(name)
    minilm_torch.similarity_fn_name = name
    try:
        ours = minilm_runtime.similarity(emb[:3], emb)
        ref = minilm_torch.similarity(emb[:3], emb).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-5)
        pair = minilm_runtime.similarity_pairwise(emb[:3], emb[3:6])
        np.testing.assert_allclose(pair, minilm_torch.similarity_pairwise(emb[:3], emb[3:6]).numpy(), atol=1e-5)
    finally:
        minilm_runtime.set_similarity_fn("cosine")
        minilm_torch.similarity_fn_name = "cosine"


def test_unknown_similarity_function_is_refused(minilm_runtime: Any) -> None:
    with pytest.raises(InputError, match="valid: cosine, dot, euclidean, manhattan"):
        minilm_runtime.set_similarity_fn("jaccard")


def test_sentence_embedding_dimension_and_repr(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, truncate_dim=256)
    assert model.get_sentence_embedding_dimension() == 256
    assert model.encode(["a"]).shape == (1, 256)
    assert "dim=384" in repr(model)


def test_unknown_provider_lists_the_available_ones(minilm_artifact_session: Path) -> None:
    with pytest.raises(ProviderError, match="provider 'tpu' is not available; available: auto, cpu"):
        SentenceTransformer(minilm_artifact_session, provider="tpu")


def test_progress_bar_does_not_change_results(minilm_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = minilm_runtime.encode(TEXTS)
    loud = minilm_runtime.encode(TEXTS, show_progress_bar=True, batch_size=2)
    np.testing.assert_allclose(quiet, loud, atol=1e-6)


def test_stats_report_padding_and_batches(minilm_runtime: Any) -> None:
    minilm_runtime.encode(TEXTS, batch_size=2)
    stats = minilm_runtime.last_encode_stats
    assert stats.batches == 4 and stats.texts == len(TEXTS)
    assert 0.0 <= stats.padding_ratio < 1.0
    assert stats.real_tokens <= stats.padded_tokens


# -- the two halves of encode (prepare, embed_prepared), as the server uses them ------------------
def test_prepare_then_embed_prepared_equals_encode(minilm_runtime: Any) -> None:
    texts = ["short", "a somewhat longer sentence about cats", "x " * 400]
    prepared = minilm_runtime.prepare(texts, prompt="query: ")
    assert prepared.truncated.tolist() == [False, False, True]
    options = minilm_runtime.embed_options("int8", truncate_dim=128)
    expected = minilm_runtime.encode(texts, prompt="query: ", precision="int8", truncate_dim=128)
    np.testing.assert_array_equal(minilm_runtime.embed_prepared(prepared, options), expected)
    reordered = minilm_runtime.embed_prepared(prepared.select([2, 0]), minilm_runtime.embed_options())
    np.testing.assert_allclose(reordered, minilm_runtime.encode([texts[2], texts[0]], prompt="query: "), atol=1e-6)


def test_truncation_direction_per_call_keeps_the_other_end_of_a_long_text(minilm_runtime: Any) -> None:
    head, tail = "Cats purr on warm windowsills. ", "Stock markets fell sharply today."
    long_text = head + "filler words without meaning " * 200 + tail
    right = minilm_runtime.embed_prepared(minilm_runtime.prepare([long_text]), minilm_runtime.embed_options())
    left = minilm_runtime.embed_prepared(
        minilm_runtime.prepare([long_text], truncation_direction="left"), minilm_runtime.embed_options()
    )
    cats, stocks = minilm_runtime.encode([head, tail])
    assert float(right[0] @ cats) > float(right[0] @ stocks)
    assert float(left[0] @ stocks) > float(left[0] @ cats)
    again = minilm_runtime.encode([long_text])  # the default side is untouched by the other call
    np.testing.assert_allclose(again, right, atol=1e-6)
    with pytest.raises(InputError, match="truncation_direction must be 'left' or 'right'"):
        minilm_runtime.prepare(["x"], truncation_direction="middle")
    with pytest.raises(InputError, match="truncation_direction must be 'left' or 'right'"):  # windows took anything
        minilm_runtime.encode(["x"], truncation_direction="middle", long_inputs="chunk")


def test_token_id_rows_run_as_given(minilm_runtime: Any) -> None:
    texts = ["The cat sat on the mat.", "Stocks fell."]
    ids = [e.ids for e in minilm_runtime.tokenizer.encode_batch(texts)]
    prepared = minilm_runtime.prepare(ids, token_ids=True)
    np.testing.assert_allclose(
        minilm_runtime.embed_prepared(prepared, minilm_runtime.embed_options()), minilm_runtime.encode(texts), atol=1e-6
    )
    long_ids = [101] + [2003] * 600 + [102]
    assert minilm_runtime.prepare([long_ids], token_ids=True).lengths.tolist() == [minilm_runtime.max_seq_length]
    with pytest.raises(InputError, match=r"inputs\[1\] holds token id 30522, outside the vocabulary 0..30521"):
        minilm_runtime.prepare([[101, 102], [101, 30522]], token_ids=True)
    for bad in (
        [101, 7592.9, 102],
        ["101", "2088", "102"],
        [True, False],
        [101, True, 102],
    ):  # 7592.9 ran as 7592, "2088" as 2088
        with pytest.raises(InputError, match=r"inputs\[1\] must be a list of token ids"):
            minilm_runtime.prepare([[101, 102], bad], token_ids=True)
    as_arrays = minilm_runtime.prepare([np.array([101, 102], np.uint16), np.array([101, 2088, 102])], token_ids=True)
    assert as_arrays.lengths.tolist() == [2, 3]


def test_token_embeddings_take_binary_precisions_as_sentence_transformers_and_refuse_uncalibrated_int8(
    minilm_runtime: Any,
) -> None:
    """precision was ignored for token embeddings (float32 came back for int8 and ubinary alike)."""
    from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

    texts = ["The cat sat on the mat.", "Stocks fell sharply on Monday morning."]
    floats = minilm_runtime.encode(texts, output_value="token_embeddings")
    for precision in ("binary", "ubinary"):
        codes = minilm_runtime.encode(texts, output_value="token_embeddings", precision=precision)
        for ours, matrix in zip(codes, floats):
            np.testing.assert_array_equal(ours, st_quantize(matrix, precision=precision))
    for precision in ("int8", "uint8"):  # ST would scale by the call's own min/max: batch-dependent codes
        with pytest.raises(InputError, match="calibrated ranges for sentence embeddings only"):
            minilm_runtime.encode(texts, output_value="token_embeddings", precision=precision)


def test_a_zero_d_array_is_refused_not_split_into_characters(minilm_runtime: Any) -> None:
    with pytest.raises(InputError, match="texts is a 0-d array"):
        minilm_runtime.encode(np.array("hello"))  # gave five embeddings, one per character
    with pytest.raises(InputError, match="texts is a 2-d array"):
        minilm_runtime.encode(np.array([["a", "b"]]))
    assert minilm_runtime.encode(np.array(["a", "b"])).shape == (2, 384)


def test_numpy_integers_and_a_none_precision_are_taken_as_sentence_transformers_takes_them(
    minilm_artifact_session: Path,
) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    texts = ["one text", "another text", "a third"]
    expected = model.encode(texts, batch_size=2, truncate_dim=64)
    ours = model.encode(texts, batch_size=np.int64(2), truncate_dim=np.int64(64), chunk_overlap=np.int64(8))
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(model.encode(texts, precision=None), model.encode(texts))  # type: ignore[arg-type]
    model.max_seq_length = np.int64(128)  # type: ignore[assignment]
    assert model.max_seq_length == 128 and type(model.max_seq_length) is int
    with pytest.raises(InputError, match="must be a positive int"):
        model.encode(texts, batch_size=np.float64(2))  # type: ignore[arg-type]


def test_max_seq_length_must_leave_room_for_text_after_the_special_tokens(minilm_artifact_session: Path) -> None:
    """max_seq_length 1 turned truncation off: a 1,130-token text reached ONNX Runtime's broadcast error."""
    model = SentenceTransformer(minilm_artifact_session)
    with pytest.raises(InputError, match="max_seq_length 2 leaves no room for text: this tokenizer adds 2 special"):
        model.max_seq_length = 2
    model.max_seq_length = 3
    assert model.encode(["word " * 600]).shape == (1, 384) and model.last_encode_stats.truncated == 1


def test_a_prompt_is_checked_as_texts_are(minilm_runtime: Any) -> None:
    with pytest.raises(InputError, match=r"prompt holds a lone surrogate \('\\ud800'\) at character 6"):
        minilm_runtime.encode(["a text"], prompt="query:\ud800 ")  # was the tokenizer's bare TypeError
    with pytest.raises(InputError, match="prompt must be a str, got int"):
        minilm_runtime.encode(["a text"], prompt=3)  # type: ignore[arg-type]


def test_the_default_progress_bar_follows_logging_as_in_sentence_transformers(
    minilm_runtime: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``show_progress_bar=None`` never showed a bar; sentence-transformers shows one at INFO or DEBUG."""
    texts = ["a short text", "another one", "a third"]
    caplog.set_level(logging.WARNING, logger="fastembed_rt")
    minilm_runtime.encode(texts, batch_size=1)
    assert "Batches" not in capsys.readouterr().err
    caplog.set_level(logging.INFO, logger="fastembed_rt")
    minilm_runtime.encode(texts, batch_size=1)
    assert "Batches" in capsys.readouterr().err
    minilm_runtime.encode(texts, batch_size=1, show_progress_bar=False)
    assert "Batches" not in capsys.readouterr().err


def test_repr_says_the_width_encode_gives_and_that_a_model_is_closed(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    assert "dim=384," in repr(model) and "truncate_dim" not in repr(model)
    model.truncate_dim = 64
    assert "dim=384, truncate_dim=64" in repr(model) and model.encode(["a"]).shape == (1, 64)
    model.close()
    assert repr(model).endswith(", closed)")


def test_every_call_on_a_closed_model_raises_empty_inputs_too(
    minilm_artifact_session: Path, tiny_reranker_artifact: Path, tiny_splade_artifact: Path
) -> None:
    """An empty input was answered with an empty result after close(); the docs say any later call raises."""
    from fastembed_rt import CrossEncoder, SparseEncoder

    model, reranker, splade = (
        SentenceTransformer(minilm_artifact_session),
        CrossEncoder(tiny_reranker_artifact),
        SparseEncoder(tiny_splade_artifact),
    )
    for closed in (model, reranker, splade):
        closed.close()
    calls = [
        lambda: model.encode([]),
        lambda: model.encode([], precision="int8"),
        lambda: model.encode([], output_value=None),
        lambda: model.encode_chunks([]),
        lambda: reranker.predict([]),
        lambda: reranker.rank("q", []),
        lambda: splade.encode([]),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(ProviderError, match="this model was closed"):
            call()
            pytest.fail(f"call {i} answered")


def test_a_manifests_repr_is_a_summary_not_its_calibration(minilm_runtime: Any) -> None:
    manifest = minilm_runtime.manifest
    assert manifest.calibration, "the fixture's artifact holds calibration ranges"
    shown = repr(manifest)
    assert len(shown) < 300 and "dim=384" in shown and "variants=[" in shown


def test_the_librarys_own_calls_show_no_bar_when_logging_is_at_info(
    tiny_reranker_artifact: Path,
    tiny_splade_artifact: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At INFO (the CLI's export log, the server) warm-ups, calibration and timings printed a bar each."""
    from fastembed_rt import CrossEncoder, SparseEncoder

    caplog.set_level(logging.INFO, logger="fastembed_rt")
    CrossEncoder(tiny_reranker_artifact, warmup=True).close()
    SparseEncoder(tiny_splade_artifact, warmup=True).close()
    assert "Batches" not in capsys.readouterr().err


def test_bad_settings_given_to_the_constructor_are_refused_there(minilm_artifact_session: Path) -> None:
    """A bad ``truncate_dim`` loaded, was reported as the dimension and saved into an artifact that would not load;
    ``""`` loaded the current folder; a dict of provider options was an AttributeError deep inside."""
    for bad in (0, -1, "64", True):
        with pytest.raises(InputError, match=f"truncate_dim must be a positive int, got {bad!r}"):
            SentenceTransformer(minilm_artifact_session, truncate_dim=bad)  # type: ignore[arg-type]
    model = SentenceTransformer(minilm_artifact_session, truncate_dim=64, provider_options={"inter_op_threads": 1})
    with pytest.raises(InputError, match="truncate_dim must be a positive int, got -1"):
        model.truncate_dim = -1
    assert model.truncate_dim == 64 and model.get_embedding_dimension() == 64
    model.close()
    with pytest.raises(InputError, match=r"provider_options: unknown keys \['thread'\]; ProviderOptions takes \["):
        SentenceTransformer(minilm_artifact_session, provider_options={"thread": 2})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(InputError, match=r"provider_options must be a fastembed_rt\.providers\.ProviderOptions"):
        SentenceTransformer(minilm_artifact_session, provider_options=[2])  # type: ignore[arg-type]
    for empty in ("", "  "):
        with pytest.raises(InputError, match="model_name_or_path is empty"):
            SentenceTransformer(empty)


def test_prompt_and_prompt_name_together_use_the_prompt_with_sentence_transformers_warning(
    minilm_artifact_session: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = SentenceTransformer(minilm_artifact_session, prompts={"query": "query: "})
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        both = model.encode(["a cat"], prompt="passage: ", prompt_name="query")
    assert "Ignoring the `prompt_name` in favor of `prompt`." in caplog.text
    np.testing.assert_array_equal(both, model.encode(["a cat"], prompt="passage: "))
    model.close()


def test_pool_devices_must_be_a_non_empty_list(minilm_runtime: SentenceTransformer) -> None:
    """A str was split into its characters ('provider 'c' is not available')."""
    with pytest.raises(InputError, match=r"target_devices must be a list of devices, e\.g\. \['cpu'\], got a str"):
        minilm_runtime.start_multi_process_pool("cpu")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="target_devices is empty"):
        minilm_runtime.start_multi_process_pool([])
