"""Drop-in: code written for sentence-transformers 6.2 runs on fastembed-rt.

- the top-level names inference code imports exist; every other name of sentence-transformers'
  ``__all__`` is classified with the reason fastembed-rt does not offer it, so a new name fails here;
- the API reference's inference examples, and its mine_hard_negatives example, give the same results
  with both libraries;
- a lone surrogate (from JSON escapes or PDF extractors) is an ``InputError`` naming the position;
- sentence-transformers' loading arguments (``device``, ``backend``, ``cache_folder``, ``local_files_only``,
  ``trust_remote_code``, ``similarity_fn_name``) and per-call ``device`` choose or check the provider.
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt import CrossEncoder, InputError, SentenceTransformer, SparseEncoder
from fastembed_rt.artifact import load_manifest
from fastembed_rt.errors import ArtifactError, ProviderError

# What fastembed-rt does with each name of sentence_transformers.__all__ (6.2).
PROVIDED = {"SentenceTransformer", "CrossEncoder", "SparseEncoder", "SimilarityFunction", "quantize_embeddings"}
PROVIDED |= {"LoggingHandler", "mine_hard_negatives", "MultiVectorEncoder"}
TRAINING = {  # training, datasets and model cards: the torch side, out of a runtime's scope
    "SentencesDataset",
    "ParallelSentencesDataset",
    "InputExample",
    "DefaultBatchSampler",
    "MultiDatasetDefaultBatchSampler",
    "resolve_ids",
    *(
        f"{kind}{part}"
        for kind in ("SentenceTransformer", "CrossEncoder", "SparseEncoder", "MultiVectorEncoder")
        for part in ("Trainer", "TrainingArguments", "ModelCardData")
    ),
}
EXPORT = {  # need torch and a loaded model: `fastembed-rt export` builds and validates these variants
    "export_optimized_onnx_model",
    "export_dynamic_quantized_onnx_model",
    "export_static_quantized_openvino_model",
}


def test_every_sentence_transformers_top_level_name_is_provided_or_classified() -> None:
    import sentence_transformers

    names = set(sentence_transformers.__all__)
    classified = PROVIDED | TRAINING | EXPORT
    assert names - classified == set(), "a new sentence-transformers name: provide it or classify it here"
    for name in PROVIDED:
        assert name in fastembed_rt.__all__ and hasattr(fastembed_rt, name), name
    assert isinstance(fastembed_rt.util, ModuleType) and "util" in fastembed_rt.__all__


def test_logging_handler_writes_records(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    logger = logging.getLogger("fastembed_rt.test_dropin")
    handler = fastembed_rt.LoggingHandler()
    logger.addHandler(handler)
    try:
        logger.warning("hello from the handler")
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    assert "hello from the handler" in captured.out + captured.err


# -- the API reference's inference examples, run by both libraries --------------------------------
SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
]
QUERY = "A man is eating pasta."


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "to_dense"):
        value = value.to_dense()
    if hasattr(value, "toarray"):
        value = value.toarray()
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _examples(lib: Any, bi: Any, ce: Any, sparse: Any) -> dict[str, Any]:
    """The API reference's examples, written once against either library's names."""
    out: dict[str, Any] = {}
    embeddings = bi.encode(SENTENCES)
    out["encode"] = _numpy(embeddings)
    out["similarity"] = _numpy(bi.similarity(embeddings, embeddings))
    out["binary"] = _numpy(lib.quantize_embeddings(embeddings, precision="ubinary"))
    out["int8"] = _numpy(lib.quantize_embeddings(embeddings, precision="int8", calibration_embeddings=embeddings))
    query = bi.encode(QUERY)
    out["semantic_search"] = [
        (hit["corpus_id"], round(float(hit["score"]), 5))
        for hit in lib.util.semantic_search(query, embeddings, top_k=3)[0]
    ]
    out["paraphrase_mining"] = [
        (i, j, round(float(score), 5)) for score, i, j in lib.util.paraphrase_mining(bi, SENTENCES)
    ]
    out["rank"] = [(r["corpus_id"], round(float(r["score"]), 5)) for r in ce.rank(QUERY, SENTENCES)]
    out["predict"] = _numpy(ce.predict([(QUERY, s) for s in SENTENCES]))
    sparse_embeddings = sparse.encode(SENTENCES[:3])
    out["sparse"] = _numpy(sparse_embeddings)
    decoded = sparse.decode(sparse_embeddings, top_k=5)
    out["decode"] = [(i, token, round(float(weight), 4)) for i, row in enumerate(decoded) for token, weight in row]
    with warnings.catch_warnings():  # torch warns that its sparse invariant checks are off, from inside ST's code
        warnings.simplefilter("ignore", UserWarning)
        shared = sparse.decode(sparse.intersection(sparse.encode_query(QUERY), sparse_embeddings), top_k=3)
    out["intersection"] = [(i, token, round(float(weight), 4)) for i, row in enumerate(shared) for token, weight in row]
    out["dimension"] = [("dense", bi.get_embedding_dimension()), ("sparse", sparse.get_embedding_dimension())]
    # The semantic-search tutorial: tensors out of encode, the model's similarity and torch.topk on them
    import torch

    corpus_embeddings = bi.encode(SENTENCES, convert_to_tensor=True)
    query_embedding = bi.encode(QUERY, convert_to_tensor=True)
    scores, indices = torch.topk(bi.similarity(query_embedding, corpus_embeddings)[0], k=3)
    out["tensor_topk"] = [(int(i), round(float(score), 5)) for score, i in zip(scores, indices)]
    hits = lib.util.semantic_search(query_embedding, corpus_embeddings, top_k=3)[0]
    out["tensor_search"] = [(hit["corpus_id"], round(float(hit["score"]), 5)) for hit in hits]
    ce_scores = ce.predict([(QUERY, s) for s in SENTENCES], convert_to_tensor=True)
    out["tensor_predict"] = [(int(i), round(float(ce_scores[i]), 5)) for i in torch.argsort(ce_scores, descending=True)]
    pairs = [(QUERY, s) for s in SENTENCES[:3]]
    for name, model, inputs in (("bi", bi, SENTENCES[:3]), ("ce", ce, pairs), ("sparse", sparse, SENTENCES[:3])):
        features = model.preprocess(inputs)
        out[f"preprocess_{name}"] = {key: _numpy(value) for key, value in features.items() if hasattr(value, "shape")}
        prompted = model.preprocess(inputs, prompt="query: ")  # ``modality`` always, ``prompt_length`` with a prompt
        empty = model.preprocess(inputs, prompt="")  # an empty prompt adds no tokens: no prompt_length
        out[f"preprocess_{name}_entries"] = [
            {key: value for key, value in entries.items() if not hasattr(value, "shape")}
            for entries in (features, prompted, empty)
        ]
    import torch

    out["model_api"] = [
        bi.cpu() is bi and ce.cpu() is ce,
        bi.to("cpu:0") is bi and ce.to(torch.device("cpu", 0)) is ce,  # torch's name of its CPU
        [bi.train(False) is bi, bi.float() is bi, bi.training],
        bi.modalities,
        [model.supports(m) for model in (bi, ce, sparse) for m in ("text", "image")],
        bi.get_model_kwargs(),
        ce.get_model_kwargs(),
    ]
    with bi.truncate_embeddings(truncate_dim=16):
        out["truncated"] = _numpy(bi.encode(SENTENCES[:2]))  # the slice as it is, not re-normalized
    return out


@pytest.fixture(scope="module")
def both(
    minilm_artifact_session: Path, minilm_dir: Path, tiny_reranker_artifact: Path, tiny_splade_artifact: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    import sentence_transformers as st

    from fastembed_rt.artifact import load_manifest

    reranker_dir = load_manifest(tiny_reranker_artifact).source["model"]
    splade_dir = load_manifest(tiny_splade_artifact).source["model"]
    ours = _examples(  # loaded as sentence-transformers code loads them: device="cpu"
        fastembed_rt,
        SentenceTransformer(minilm_artifact_session, device="cpu"),
        CrossEncoder(tiny_reranker_artifact, device="cpu"),
        SparseEncoder(tiny_splade_artifact, device="cpu"),
    )
    theirs = _examples(
        st,
        st.SentenceTransformer(str(minilm_dir), device="cpu"),
        st.CrossEncoder(reranker_dir, device="cpu"),
        st.SparseEncoder(splade_dir, device="cpu"),
    )
    return ours, theirs


@pytest.mark.parametrize("example", ["encode", "similarity", "predict", "sparse", "truncated"])
def test_api_reference_numbers_match_sentence_transformers(both: tuple[dict, dict], example: str) -> None:
    ours, theirs = both
    assert ours[example].shape == theirs[example].shape
    np.testing.assert_allclose(ours[example], theirs[example], rtol=1e-4, atol=1e-5)


def test_api_reference_codes_match_sentence_transformers(both: tuple[dict, dict]) -> None:
    ours, theirs = both
    np.testing.assert_array_equal(ours["binary"], theirs["binary"])
    # int8 codes of each library's own embeddings: the float inputs differ by < 1e-6, so a value on a
    # rounding boundary may move by one code (equality on the same input is tested in test_quantization).
    assert np.abs(ours["int8"].astype(int) - theirs["int8"].astype(int)).max() <= 1


@pytest.mark.parametrize(
    "example",
    [
        "semantic_search",
        "paraphrase_mining",
        "rank",
        "decode",
        "intersection",
        "dimension",
        "tensor_topk",
        "tensor_search",
        "tensor_predict",
    ],
)
def test_api_reference_results_match_sentence_transformers(both: tuple[dict, dict], example: str) -> None:
    ours, theirs = both
    assert [item[:-1] for item in ours[example]] == [item[:-1] for item in theirs[example]]
    np.testing.assert_allclose([item[-1] for item in ours[example]], [item[-1] for item in theirs[example]], atol=2e-4)


def test_output_value_none_gives_each_texts_outputs_as_sentence_transformers_without_padding(
    minilm_runtime: SentenceTransformer, minilm_torch: Any
) -> None:
    ours = minilm_runtime.encode(SENTENCES, output_value=None, batch_size=4)
    theirs = minilm_torch.encode(SENTENCES, output_value=None, batch_size=4)  # padded to each batch's longest text
    assert len(ours) == len(theirs) == len(SENTENCES)
    for mine, reference in zip(ours, theirs, strict=True):
        tensors = {"input_ids", "attention_mask", "token_type_ids", "token_embeddings", "sentence_embedding"}
        assert set(mine) == set(reference) == tensors | {"modality"} and mine["modality"] == reference["modality"]
        real = reference["attention_mask"].bool()
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(mine[name], _numpy(reference[name][real]))
        np.testing.assert_allclose(mine["token_embeddings"], _numpy(reference["token_embeddings"][real]), atol=1e-4)
        np.testing.assert_allclose(mine["sentence_embedding"], _numpy(reference["sentence_embedding"]), atol=1e-5)
    single = minilm_runtime.encode(SENTENCES[0], output_value=None, convert_to_tensor=True)
    assert isinstance(single, dict) and single["input_ids"].tolist() == ours[0]["input_ids"].tolist()
    assert single["modality"] == "text"  # the str entries stay as they are among the tensors
    prompted = minilm_runtime.encode(SENTENCES[:2], output_value=None, prompt="query: ")
    reference_prompted = minilm_torch.encode(SENTENCES[:2], output_value=None, prompt="query: ")
    assert [row["prompt_length"] for row in prompted] == [row["prompt_length"] for row in reference_prompted] == [3, 3]
    # truncated, not normalized (sentence-transformers normalizes only output_value="sentence_embedding"'s rows):
    # these were unit rows where its norms are 0.44, 0.41
    cut = {"truncate_dim": 64, "normalize_embeddings": True}
    ours_cut = minilm_runtime.encode(SENTENCES[:3], output_value=None, **cut)
    theirs_cut = minilm_torch.encode(SENTENCES[:3], output_value=None, **cut)
    for mine, reference in zip(ours_cut, theirs_cut, strict=True):
        assert mine["sentence_embedding"].shape == (64,)
        np.testing.assert_allclose(mine["sentence_embedding"], _numpy(reference["sentence_embedding"]), atol=1e-5)


@pytest.mark.parametrize("model", ["bi", "ce", "sparse"])
def test_preprocess_gives_sentence_transformers_model_inputs(both: tuple[dict, dict], model: str) -> None:
    ours, theirs = both
    mine, reference = ours[f"preprocess_{model}"], theirs[f"preprocess_{model}"]
    assert set(mine) == set(reference)
    for name, value in mine.items():
        assert value.dtype == np.int64
        np.testing.assert_array_equal(value, reference[name])
    assert ours[f"preprocess_{model}_entries"] == theirs[f"preprocess_{model}_entries"]


def test_device_moves_modalities_and_model_kwargs_answer_as_sentence_transformers(both: tuple[dict, dict]) -> None:
    ours, theirs = both
    assert ours["model_api"] == theirs["model_api"]


def test_save_writes_an_artifact_of_the_chosen_variants_that_loads_with_the_models_settings(
    minilm_variants_artifact: Path, tmp_path: Path
) -> None:
    model = SentenceTransformer(minilm_variants_artifact, variant="int8")
    model.max_seq_length, model.similarity_fn_name = 16, "dot"
    long_text = " ".join(["word"] * 40)

    assert model.save(tmp_path / "slim", variants="loaded") == tmp_path / "slim"
    slim = SentenceTransformer(tmp_path / "slim")
    assert [v.name for v in slim.manifest.variants] == ["int8"] and slim.variant == "int8"
    assert (slim.max_seq_length, slim.similarity_fn_name) == (16, "dot")
    np.testing.assert_array_equal(slim.encode([*SENTENCES, long_text]), model.encode([*SENTENCES, long_text]))
    assert slim.last_encode_stats.truncated == 1
    with pytest.raises(ArtifactError, match="no variant 'fp32'"):
        SentenceTransformer(tmp_path / "slim", variant="fp32")

    every = model.save_pretrained(tmp_path / "every")
    names = [v.name for v in model.manifest.variants]
    assert [v.name for v in load_manifest(every).variants] == names
    assert SentenceTransformer(every, variant=names[0]).variant == names[0]


def test_save_keeps_the_prompts_and_default_prompt_name_the_model_was_given(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Prompts given at load (or added to model.prompts) were lost: the saved model encoded without its default
    prompt and refused prompt_name="passage"; sentence-transformers saves both in its config."""
    model = SentenceTransformer(minilm_artifact_session, prompts={"query": "query: "}, default_prompt_name="query")
    model.prompts["passage"] = "passage: "
    saved = SentenceTransformer(model.save(tmp_path / "copy", variants="loaded"))
    assert saved.prompts == model.prompts and saved.default_prompt_name == "query"
    np.testing.assert_array_equal(saved.encode(SENTENCES), model.encode(SENTENCES))
    np.testing.assert_array_equal(
        saved.encode(SENTENCES, prompt_name="passage"), model.encode(SENTENCES, prompt="passage: ")
    )


def test_save_refuses_the_artifact_itself_and_variants_it_lacks(
    minilm_runtime: SentenceTransformer, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="is the artifact this model was loaded from"):
        minilm_runtime.save(minilm_runtime.manifest.root)
    with pytest.raises(InputError, match=r"names \['nope'\]; this artifact has"):
        minilm_runtime.save(tmp_path / "x", variants=["nope"])
    assert not (tmp_path / "x").exists(), "nothing written for a refused save"


def test_save_refuses_an_empty_path_a_folder_where_a_file_goes_and_a_default_prompt_it_lacks(
    minilm_runtime: SentenceTransformer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save("") wrote the artifact into the working directory; a folder where a file goes failed halfway (files
    replaced, ~90 MB of temporaries left, a bare IsADirectoryError); default_prompt_name naming no prompt saved a
    copy that did not load."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="an empty path names no folder"):
        minilm_runtime.save("")
    assert not any(tmp_path.iterdir())
    (tmp_path / "blocked" / "tokenizer_config.json").mkdir(parents=True)
    with pytest.raises(InputError, match=r"tokenizer_config.json is a folder where the copy writes a file"):
        minilm_runtime.save(tmp_path / "blocked", variants="loaded")
    assert sorted(p.name for p in (tmp_path / "blocked").iterdir()) == ["tokenizer_config.json"]
    model = SentenceTransformer(minilm_runtime.manifest.root, prompts={"query": "q: "})
    model.default_prompt_name = "nope"
    with pytest.raises(InputError, match=r"default_prompt_name 'nope' is not in prompts \[.*'query'\]"):
        model.save(tmp_path / "prompted", variants="loaded")
    assert not (tmp_path / "prompted").exists()


def test_threads_saving_one_model_to_one_folder_each_finish_and_save_pretrained_takes_positional_arguments(
    minilm_runtime: SentenceTransformer, tmp_path: Path
) -> None:
    """Two threads staged under one name (the process id): one died of a bare FileNotFoundError every time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        saved = list(pool.map(lambda _: minilm_runtime.save(tmp_path / "shared", variants="loaded"), range(2)))
    assert saved == [tmp_path / "shared"] * 2
    assert not [p.name for p in (tmp_path / "shared").rglob(".*saving")]
    np.testing.assert_array_equal(
        SentenceTransformer(tmp_path / "shared").encode(SENTENCES), minilm_runtime.encode(SENTENCES)
    )
    # sentence-transformers' save_pretrained(path, model_name, create_model_card, ...) positionally
    assert minilm_runtime.save_pretrained(tmp_path / "positional", "my-model", False) == tmp_path / "positional"


def test_a_model_card_gives_the_width_encode_gives(minilm_runtime: SentenceTransformer) -> None:
    """A copy saved with truncate_dim 64 encodes 64-wide rows; its card said dimension 384."""
    from dataclasses import replace

    from fastembed_rt.model_card import model_card

    assert "(dimension 384," in model_card(minilm_runtime.manifest, "me/minilm")
    assert "(dimension 64," in model_card(replace(minilm_runtime.manifest, truncate_dim=64), "me/minilm")


# -- the API reference's mine_hard_negatives example, run by both libraries -----------------------
def _mining_example(lib: Any, model: Any, dataset: Any) -> tuple[Any, Any]:
    """The example of sentence-transformers' ``mine_hard_negatives`` docstring, written once against
    either library's names; only the dataset is local (STSb pairs in the example's columns)."""
    random.seed(12)  # sampling_strategy="random" draws from Python's random, in both libraries alike
    dataset = lib.util.mine_hard_negatives(
        dataset=dataset,
        model=model,
        range_min=10,
        range_max=50,
        max_score=0.8,
        relative_margin=0.05,
        num_negatives=5,
        sampling_strategy="random",
        batch_size=128,
        use_faiss=True,
    )
    dataset_with_scores = lib.util.mine_hard_negatives(dataset=dataset, model=model, output_scores=True)
    return dataset, dataset_with_scores


def test_api_reference_mining_example_gives_sentence_transformers_rows(
    minilm_runtime: SentenceTransformer, minilm_torch: Any, stsb_mining_texts: tuple[list[tuple[str, str]], list[str]]
) -> None:
    import sentence_transformers as st
    from datasets import Dataset

    pairs = stsb_mining_texts[0][:150]
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "answer": [a for _, a in pairs]})
    theirs = _mining_example(st, minilm_torch, dataset)
    ours = _mining_example(fastembed_rt, minilm_runtime, dataset)
    assert ours[0].column_names == ["query", "answer", "negative"] and len(ours[0]) > len(pairs)
    for mine, reference in zip(ours, theirs):
        assert isinstance(mine, Dataset) and mine.column_names == reference.column_names
        mine_rows, reference_rows = mine.to_dict(), reference.to_dict()
        scores = mine_rows.pop("scores", None), reference_rows.pop("scores", None)
        assert mine_rows == reference_rows
        np.testing.assert_allclose(np.asarray(scores[0] or []), np.asarray(scores[1] or []), atol=1e-5)


# -- lone surrogates ---------------------------------------------------------------------------------
BAD = "ok \ud800 bad"


def test_a_lone_surrogate_is_an_input_error_naming_text_and_position(minilm_runtime: SentenceTransformer) -> None:
    with pytest.raises(InputError, match=r"texts\[1\] holds a lone surrogate \('\\ud800'\) at character 3"):
        minilm_runtime.encode(["fine", BAD])
    with pytest.raises(InputError, match=r"texts\[0\] holds a lone surrogate"):
        minilm_runtime.encode(BAD)
    assert minilm_runtime.encode(["ok \u00e9 \U0001f600 fine"]).shape == (1, 384), "real non-ASCII text is fine"


def test_a_lone_surrogate_in_pairs_and_sparse_texts_is_an_input_error(
    tiny_reranker_artifact: Path, tiny_splade_artifact: Path
) -> None:
    reranker, splade = CrossEncoder(tiny_reranker_artifact), SparseEncoder(tiny_splade_artifact)
    with pytest.raises(InputError, match=r"inputs\[1\]\[1\] holds a lone surrogate"):
        reranker.predict([("q", "d"), ("q", BAD)])
    with pytest.raises(InputError, match=r"documents\[0\] holds a lone surrogate"):
        reranker.rank("q", [BAD])
    with pytest.raises(InputError, match=r"query holds a lone surrogate"):
        reranker.rank(BAD, ["d"])
    with pytest.raises(InputError, match=r"texts\[2\] holds a lone surrogate"):
        splade.encode(["a", "b", BAD])


def test_count_tokens_names_a_lone_surrogate_and_counts_a_str_as_one_text(
    minilm_runtime: SentenceTransformer, tiny_splade_artifact: Path
) -> None:
    """count_tokens raised the tokenizer's bare TypeError, and counted a str's characters one by one."""
    for model in (minilm_runtime, SparseEncoder(tiny_splade_artifact)):
        with pytest.raises(InputError, match=r"items\[1\] holds a lone surrogate"):
            model.count_tokens(["fine", BAD])
        with pytest.raises(InputError, match=r"items\[0\]\[1\] holds a lone surrogate"):
            model.count_tokens([("q", BAD)])
        whole = len(model.untruncated_tokenizer.encode("東京タワー").ids)  # [CLS] ... [SEP]
        assert model.count_tokens("東京タワー") == model.count_tokens(["東京タワー"]) == [whole] and whole > 2


# -- sentence-transformers' device, backend and cache arguments ----------------------------------------------
def _gpu_provider_usable() -> bool:
    from fastembed_rt.providers import available_providers

    return "cuda" in available_providers()


@pytest.mark.parametrize(
    ("provider", "device", "backend", "expected"),
    [
        ("auto", None, "torch", "auto"),
        ("auto", "cpu", "torch", "cpu"),
        ("auto", "CPU", "torch", "cpu"),
        ("auto", "cuda", "torch", "cuda"),
        ("auto", "cuda:1", "torch", "cuda:1"),
        ("auto", None, "openvino", "openvino"),
        ("auto", "cpu", "openvino", "openvino"),
        ("openvino", "cpu", "torch", "openvino"),
        ("cpu", "cpu", "onnx", "cpu"),
        ("cuda:1", "cuda", "torch", "cuda:1"),
        ("tensorrt", "cuda:0", "onnx", "tensorrt"),
    ],
)
def test_device_and_backend_choose_the_provider_sentence_transformers_code_means(
    provider: str, device: str | None, backend: str, expected: str
) -> None:
    from fastembed_rt.providers import provider_for_device

    assert provider_for_device(provider, device, backend) == expected


def test_backend_onnx_alone_is_onnx_runtime_on_the_gpu_when_usable_else_the_cpu() -> None:
    from fastembed_rt.providers import provider_for_device

    assert provider_for_device("auto", None, "onnx") == ("cuda" if _gpu_provider_usable() else "cpu")


@pytest.mark.parametrize(
    ("provider", "device", "backend", "error", "message"),
    [
        ("auto", "mps", "torch", ProviderError, r"device 'mps' has no fastembed-rt provider; devices: 'cpu', 'cuda'"),
        ("auto", "xpu:0", "torch", ProviderError, r"device 'xpu:0' has no fastembed-rt provider"),
        ("cpu", "cuda", "torch", InputError, r"provider='cpu' runs on 'cpu', not on device='cuda'"),
        ("cuda:1", "cuda:0", "torch", InputError, r"provider='cuda:1' runs on 'cuda:1', not on device='cuda:0'"),
        ("openvino", None, "onnx", InputError, r"provider='openvino' does not run backend='onnx' graphs"),
        ("auto", "cuda", "openvino", InputError, r"backend='openvino' \(provider 'openvino'\) runs on 'cpu'"),
        ("auto", None, "tensorflow", InputError, r"backend 'tensorflow' is not supported; valid: 'torch', 'onnx'"),
    ],
)
def test_a_device_or_backend_no_provider_serves_is_a_clear_error(
    provider: str, device: str, backend: str, error: type[Exception], message: str
) -> None:
    from fastembed_rt.providers import provider_for_device

    with pytest.raises(error, match=message):
        provider_for_device(provider, device, backend)


class _TorchLikeDevice:
    """What a ``torch.device("cpu")`` looks like to fastembed-rt: its str."""

    def __str__(self) -> str:
        return "cpu"


def test_models_load_with_sentence_transformers_device_and_report_it(
    minilm_artifact_session: Path, minilm_runtime: SentenceTransformer, tiny_reranker_artifact: Path
) -> None:
    texts = ["The cat sat on the mat.", "Stocks fell sharply."]
    for device in ("cpu", _TorchLikeDevice()):
        model = SentenceTransformer(minilm_artifact_session, device=device, trust_remote_code=True)
        assert (model.provider, model.device) == ("cpu", "cpu")
        # as a torch.device answers (code reads model.device.type), and torch takes it as one
        assert (model.device.type, model.device.index) == ("cpu", None)
        np.testing.assert_array_equal(model.encode(texts), minilm_runtime.encode(texts))
        model.close()
    from fastembed_rt.models.base import DeviceName

    assert (DeviceName("cuda:1").type, DeviceName("cuda:1").index) == ("cuda", 1)
    reranker = CrossEncoder(tiny_reranker_artifact, device="cpu", backend="onnx")
    assert (reranker.provider, reranker.device) == ("cpu", "cpu")
    with pytest.raises(InputError, match=r"provider='cpu' runs on 'cpu', not on device='cuda'"):
        SentenceTransformer(minilm_artifact_session, provider="cpu", device="cuda")
    with pytest.raises(TypeError):  # an argument neither library knows is still Python's error
        SentenceTransformer(minilm_artifact_session, devices="cpu")


def test_backend_openvino_opens_the_openvino_engine(minilm_artifact_session: Path) -> None:
    from fastembed_rt.providers import available_providers

    if "openvino" not in available_providers():
        pytest.skip("openvino is not installed")
    model = SentenceTransformer(minilm_artifact_session, backend="openvino", device="cpu")
    assert (model.provider, model.device) == ("openvino", "cpu")
    model.close()


def test_similarity_fn_name_overrides_the_models_own(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, similarity_fn_name="dot")
    embeddings = model.encode(["a cat", "a dog"], normalize_embeddings=False)
    assert model.similarity_fn_name == "dot"
    np.testing.assert_allclose(model.similarity(embeddings, embeddings), embeddings @ embeddings.T, rtol=1e-5)
    with pytest.raises(InputError):
        SentenceTransformer(minilm_artifact_session, similarity_fn_name="jaccard")


def test_a_call_on_the_models_device_runs_and_another_device_is_an_error_naming_the_fix(
    minilm_runtime: SentenceTransformer, tiny_reranker_artifact: Path, tiny_splade_artifact: Path
) -> None:
    texts = ["The cat sat on the mat.", "Stocks fell sharply."]
    np.testing.assert_array_equal(minilm_runtime.encode(texts, device="cpu"), minilm_runtime.encode(texts))
    fix = r"runs on 'cpu', not on device='cuda:0'; .*SentenceTransformer\(\.\.\., device='cuda:0'\) or call model\.to\("
    with pytest.raises(InputError, match=fix):
        minilm_runtime.encode(texts, device="cuda:0")
    reranker, splade = CrossEncoder(tiny_reranker_artifact), SparseEncoder(tiny_splade_artifact)
    assert reranker.predict([("q", "d")], device="cpu").shape == (1,)
    assert len(reranker.rank("q", ["d", "e"], device="cpu")) == 2
    assert splade.encode(["a b"], device="cpu", convert_to_sparse_tensor=False).shape[0] == 1
    for call in (
        lambda: reranker.predict([("q", "d")], device="cuda"),
        lambda: reranker.rank("q", ["d"], device="cuda"),
        lambda: splade.encode(["a"], device="cuda"),
    ):
        with pytest.raises(InputError, match=r"this model runs on 'cpu', not on device='cuda'"):
            call()


def test_torchs_cpu_zero_is_the_cpu_for_loading_calls_and_pools(minilm_artifact_session: Path) -> None:
    """``"cpu:0"`` is what ``str(torch.device("cpu", 0))`` gives: sentence-transformers takes it everywhere."""
    model = SentenceTransformer(minilm_artifact_session, device="cpu:0")
    texts = ["The cat sat on the mat.", "Stocks fell sharply."]
    assert model.device == "cpu" and model.to("CPU:0") is model
    np.testing.assert_array_equal(model.encode(texts, device="cpu:0"), model.encode(texts))
    np.testing.assert_allclose(model.encode(texts, device=["cpu:0", "cpu:1"]), model.encode(texts), atol=1e-6)
    model.close()


def test_casts_and_training_mode_leave_the_variant_and_say_so(
    minilm_runtime: SentenceTransformer, caplog: pytest.LogCaptureFixture
) -> None:
    """``half()`` / ``to(torch.float16)`` cast torch's weights; an artifact's precision is its variant's: the model
    stays as it is, and a warning says which variant runs and how to load another. ``train()`` is refused."""
    import torch

    texts = ["The cat sat on the mat."]
    before = minilm_runtime.encode(texts)
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        assert minilm_runtime.to(torch.float32) is minilm_runtime and minilm_runtime.float() is minilm_runtime
        assert not caplog.text, "float32 is what the fp32 variant computes in: nothing to say"
        assert minilm_runtime.half() is minilm_runtime and minilm_runtime.to(torch.float16) is minilm_runtime
        assert minilm_runtime.bfloat16() is minilm_runtime
        # torch's other forms of to()
        assert minilm_runtime.to(dtype=torch.float16) is minilm_runtime
        assert minilm_runtime.to("cpu", torch.float16) is minilm_runtime
        assert minilm_runtime.to(device=torch.device("cpu"), dtype=torch.float16, non_blocking=True) is minilm_runtime
    assert "half() changes nothing: an artifact's precision is its variant's (this model runs 'fp32')" in caplog.text
    assert "to(torch.float16) changes nothing" in caplog.text
    np.testing.assert_array_equal(minilm_runtime.encode(texts), before)
    assert minilm_runtime.training is False and minilm_runtime.train(False) is minilm_runtime
    with pytest.raises(InputError, match="runs inference only: train the sentence-transformers model, then export"):
        minilm_runtime.train()


def test_padding_or_truncation_set_on_model_tokenizer_leaves_encode_as_it_was(minilm_artifact_session: Path) -> None:
    """Rust tokenizers keep padding and truncation as state: ``model.tokenizer.enable_padding()`` on the tokenizer
    that encoded made every later batch mean-pool over its pad tokens (cosine 0.45 to the true vector), silently."""
    model = SentenceTransformer(minilm_artifact_session)
    texts = ["A cat.", "The quick brown fox jumps over the lazy dog near the river bank today.", "Stocks fell."]
    before, tokens = model.encode(texts), model.encode(texts, output_value="token_embeddings")
    tokenizer = model.tokenizer
    assert tokenizer.encode(texts[1]).ids == model.tokenize(texts[1:2])["input_ids"][0].tolist()
    tokenizer.enable_padding(length=300)
    tokenizer.enable_truncation(max_length=8)
    np.testing.assert_array_equal(model.encode(texts), before)
    assert [t.shape for t in model.encode(texts, output_value="token_embeddings")] == [t.shape for t in tokens]
    assert model.last_encode_stats.truncated == 0
    model.max_seq_length = 5  # the model's length still reaches the tokenizer users hold (their padding stays)
    assert tokenizer.truncation["max_length"] == model.tokenizer.truncation["max_length"] == 5
    tokenizer.no_padding()
    assert len(tokenizer.encode(texts[1]).ids) == 5
    model.close()


def test_a_list_of_devices_encodes_on_a_pool_in_input_order(minilm_runtime: SentenceTransformer) -> None:
    texts = [f"sentence number {i} about {topic}" for i in range(40) for topic in ("cats", "stocks")][:60]
    expected = minilm_runtime.encode(texts)
    pooled = minilm_runtime.encode(texts, device=["cpu", "cpu"], chunk_size=16)
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    with pytest.raises(InputError, match="pass pool= or a list of devices, not both"):
        minilm_runtime.encode(texts, device=["cpu"], pool=object())  # type: ignore[arg-type]


def test_local_files_only_and_cache_folder_reach_the_hub_lookup(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"not in the hub cache .* while offline \(local_files_only=True\)"):
        SentenceTransformer("fastembed-rt/never-downloaded", cache_folder=tmp_path, local_files_only=True)
    with pytest.raises(InputError, match=r"cache_dir=.* and cache_folder=.* disagree"):
        SentenceTransformer("fastembed-rt/never-downloaded", cache_dir=tmp_path / "a", cache_folder=tmp_path / "b")


def test_to_a_device_the_model_is_on_keeps_its_engine_and_eval_is_the_model(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    engine = model._pipeline.provider
    assert model.to("cpu") is model and model.eval() is model
    assert model._pipeline.provider is engine


def test_to_reopens_the_graph_on_the_devices_provider_and_keeps_the_token_budget(
    minilm_artifact_session: Path, minilm_runtime: SentenceTransformer
) -> None:
    from fastembed_rt.providers.fake import FakeProvider

    fake = FakeProvider(lambda feeds, names: {})
    model = SentenceTransformer(minilm_artifact_session, provider=fake)
    model.token_budget = 777
    assert model.device == "fake"
    assert model.to("cpu") is model
    assert (model.provider, model.device, model.token_budget) == ("cpu", "cpu", 777)
    assert fake.closed
    texts = ["The cat sat on the mat.", "Stocks fell sharply."]
    np.testing.assert_array_equal(model.encode(texts), minilm_runtime.encode(texts))


def test_to_a_device_no_provider_here_serves_fails_and_leaves_the_model_running(
    minilm_artifact_session: Path,
) -> None:
    model = SentenceTransformer(minilm_artifact_session, device="cpu")
    with pytest.raises(ProviderError):
        model.to("cuda" if not _gpu_provider_usable() else "mps")
    assert (model.provider, model.device) == ("cpu", "cpu")
    assert model.encode("still here").shape == (384,)


def test_truncate_sentence_embeddings_sets_the_default_dimension_for_the_block(
    minilm_runtime: SentenceTransformer,
) -> None:
    with minilm_runtime.truncate_sentence_embeddings(64):
        inside = minilm_runtime.encode(["a cat"])
    assert inside.shape == (1, 64) and minilm_runtime.encode(["a cat"]).shape == (1, 384)
    np.testing.assert_allclose(inside, minilm_runtime.encode(["a cat"])[:, :64], atol=1e-6)
    with pytest.raises(InputError, match="truncate_dim must be a positive int"):
        minilm_runtime.truncate_sentence_embeddings(0).__enter__()


def test_encode_multi_process_is_encode_on_the_pool(minilm_runtime: SentenceTransformer) -> None:
    texts = [f"text {i}" for i in range(12)]
    with minilm_runtime.start_multi_process_pool(["cpu"]) as pool:
        np.testing.assert_allclose(
            minilm_runtime.encode_multi_process(texts, pool, batch_size=4), minilm_runtime.encode(texts), atol=1e-6
        )


def test_get_backend_names_the_engine_family(
    minilm_runtime: SentenceTransformer, minilm_artifact_session: Path
) -> None:
    from fastembed_rt.providers import available_providers

    assert minilm_runtime.get_backend() == "onnx"
    if "openvino" in available_providers():
        assert SentenceTransformer(minilm_artifact_session, backend="openvino").get_backend() == "openvino"


def test_intersection_keeps_each_rows_shared_dimensions_in_the_callers_type(tiny_splade_artifact: Path) -> None:
    from fastembed_rt.sparse import SparseEmbeddings

    splade = SparseEncoder(tiny_splade_artifact)
    query = splade.encode("a query about cats", sparse_format="arrays")
    docs = splade.encode(["cats sit on mats", "stocks fell", "a query"], sparse_format="arrays")
    dense_query, dense_docs = query.toarray(), docs.toarray()
    product = dense_query * dense_docs
    expected = np.where(product > 0, product, 0)
    shared = splade.intersection(query, docs)
    assert isinstance(shared, SparseEmbeddings) and shared.shape == docs.shape
    np.testing.assert_array_equal(shared.toarray(), expected)
    np.testing.assert_array_equal(splade.intersection(dense_query, dense_docs), expected)
    one = splade.intersection(query, docs[1])
    assert one.shape == (splade.get_embedding_dimension(),)
    np.testing.assert_array_equal(one.toarray(), expected[1])
    with pytest.raises(InputError, match="embeddings_1 must be one 1-D embedding"):
        splade.intersection(docs, docs)
    with pytest.raises(InputError, match="vocabularies differ"):
        splade.intersection(dense_query[:-1], dense_docs)


# -- names, arguments and types as sentence-transformers 6.2 takes them -----------------------------
def test_encode_takes_inputs_and_the_deprecated_sentences_keyword_with_one_warning(
    minilm_runtime: SentenceTransformer, tiny_splade_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = ["The cat sat on the mat.", "Stocks fell."]
    expected = minilm_runtime.encode(texts)
    np.testing.assert_array_equal(minilm_runtime.encode(inputs=texts), expected)
    np.testing.assert_array_equal(minilm_runtime.encode_query(inputs=texts), minilm_runtime.encode_query(texts))
    with caplog.at_level("WARNING", logger="fastembed_rt"):
        np.testing.assert_array_equal(minilm_runtime.encode(sentences=texts), expected)
        np.testing.assert_array_equal(minilm_runtime.encode(sentences=texts), expected)
    assert [r.getMessage() for r in caplog.records if "`sentences`" in r.getMessage()] == [
        "SentenceTransformer.encode(sentences=...): `sentences` is a deprecated sentence-transformers name; "
        "use `inputs` instead"
    ]
    splade = SparseEncoder(tiny_splade_artifact)
    assert splade.encode(inputs=texts, sparse_format="arrays").shape == splade.encode(texts).shape
    assert splade.encode(texts, save_to_cpu=True).shape == splade.encode(texts).shape  # no effect: host memory


def test_cross_encoder_takes_sentence_transformers_deprecated_names(tiny_reranker_artifact: Path) -> None:
    pairs = [("a query", "a document"), ("a query", "another document")]
    model = CrossEncoder(tiny_reranker_artifact)
    scores = model.predict(pairs)
    np.testing.assert_array_equal(model.predict(sentences=pairs), scores)
    np.testing.assert_array_equal(
        model.predict(pairs, activation_fct="identity", num_workers=2), model.predict(pairs, activation_fn="identity")
    )
    ranked = model.rank("a query", ["a document", "another document"], convert_to_tensor=True, apply_softmax=True)
    assert ranked == model.rank("a query", ["a document", "another document"])
    legacy = CrossEncoder(tiny_reranker_artifact, default_activation_function="identity")
    np.testing.assert_array_equal(legacy.predict(pairs), model.predict(pairs, activation_fn="identity"))


def test_cross_encoder_applies_any_torch_activation_as_sentence_transformers(tiny_reranker_artifact: Path) -> None:
    torch = pytest.importorskip("torch")
    pairs = [("a query", "a document"), ("a query", "another document"), ("q", "d")]
    model = CrossEncoder(tiny_reranker_artifact)
    logits = model.predict(pairs, activation_fn="identity")
    np.testing.assert_allclose(model.predict(pairs, activation_fn=torch.nn.Tanh()), np.tanh(logits), rtol=1e-6)
    np.testing.assert_allclose(model.predict(pairs, activation_fn=torch.relu), np.maximum(logits, 0), rtol=1e-6)
    tanh_model = CrossEncoder(tiny_reranker_artifact, activation_fn=torch.nn.Tanh())
    ranked = tanh_model.rank("a query", ["a document", "another document"])
    assert [r["score"] for r in ranked] == pytest.approx(sorted(np.tanh(logits[:2]).tolist(), reverse=True), rel=1e-6)


def test_truncate_dim_past_the_models_width_keeps_the_whole_embedding(minilm_artifact_session: Path) -> None:
    """As sentence-transformers (a slice past the end); the server's ``dimensions`` stays an error, as TEI's."""
    model = SentenceTransformer(minilm_artifact_session, truncate_dim=512)
    assert model.get_embedding_dimension() == 384
    full = SentenceTransformer(minilm_artifact_session).encode(["a cat"])
    np.testing.assert_array_equal(model.encode(["a cat"]), full)
    np.testing.assert_array_equal(model.encode(["a cat"], truncate_dim=1000), full)
    with pytest.raises(InputError, match=r"truncate_dim must be an int in 1\.\.384"):
        model.embed_options("float32", 512, wider_than_model="error")


def test_similarity_fn_name_is_checked_when_it_is_set(minilm_artifact_session: Path, tmp_path: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    with pytest.raises(InputError, match="similarity_fn_name 'cosin' is not known; valid: cosine, dot"):
        model.similarity_fn_name = "cosin"
    assert model.similarity_fn_name == "cosine"
    model.similarity_fn_name = "dot_score"  # sentence-transformers' alias
    assert model.similarity_fn_name == "dot"
    model.save(tmp_path / "copy", variants="loaded")
    assert SentenceTransformer(tmp_path / "copy").similarity_fn_name == "dot"
    model.similarity_fn_name = None  # type: ignore[assignment]
    assert model.similarity_fn_name == "cosine"


def test_the_deprecated_load_opens_the_model_and_warns_as_sentence_transformers(minilm_artifact_session: Path) -> None:
    """SentenceTransformer.load(path) (deprecated in sentence-transformers, still in its API) was an AttributeError."""
    with pytest.warns(DeprecationWarning, match=r"SentenceTransformer.load\(...\) is deprecated"):
        model = SentenceTransformer.load(str(minilm_artifact_session))
    assert isinstance(model, SentenceTransformer) and model.get_embedding_dimension() == 384


def test_similarity_fn_name_takes_sentence_transformers_own_enum(
    minilm_artifact_session: Path, tiny_multi_vector_artifact: Path
) -> None:
    """Migrated code passes sentence_transformers.SimilarityFunction members: they were 'not known'."""
    from sentence_transformers import SimilarityFunction as TheirFunction

    from fastembed_rt import MultiVectorEncoder, SimilarityFunction, util

    model = SentenceTransformer(minilm_artifact_session, similarity_fn_name=TheirFunction.DOT_PRODUCT)
    assert model.similarity_fn_name == "dot"
    model.similarity_fn_name = TheirFunction.MANHATTAN
    assert model.similarity_fn_name == "manhattan"
    model.similarity_fn_name = SimilarityFunction.DOT_PRODUCT  # ours has sentence-transformers' names too
    assert model.similarity_fn_name == "dot"
    assert SimilarityFunction.possible_values() == TheirFunction.possible_values()
    assert set(SimilarityFunction.__members__) == set(TheirFunction.__members__)
    assert SimilarityFunction.to_similarity_fn(TheirFunction.COSINE) is util.cos_sim
    assert SimilarityFunction.to_similarity_pairwise_fn("dot") is util.pairwise_dot_score
    colbert = MultiVectorEncoder(tiny_multi_vector_artifact, similarity_fn_name=TheirFunction.MEAN_MAXSIM)
    assert colbert.similarity_fn_name == "meanmaxsim"
    colbert.similarity_fn_name = SimilarityFunction.MAXSIM
    assert colbert.similarity_fn_name == "maxsim"


def test_similarity_function_scores_late_interaction_as_sentence_transformers_and_dense_models_refuse_it(
    minilm_artifact_session: Path,
) -> None:
    """sentence-transformers' SimilarityFunction has MAXSIM and MEAN_MAXSIM (its to_similarity_fn gives maxsim);
    ours lacked both. A single-vector model refuses them as sentence-transformers does, with its reason."""
    import torch
    from sentence_transformers import SimilarityFunction as TheirFunction

    from fastembed_rt import SimilarityFunction, util
    from fastembed_rt.sparse import sparse_similarity

    rng = np.random.default_rng(0)
    queries, documents = (
        rng.standard_normal((2, 5, 8)).astype(np.float32),
        rng.standard_normal((3, 7, 8)).astype(np.float32),
    )
    for name in ("maxsim", "meanmaxsim"):
        ours = SimilarityFunction.to_similarity_fn(name)(queries, documents)
        theirs = TheirFunction.to_similarity_fn(name)(torch.from_numpy(queries), torch.from_numpy(documents))
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5, atol=1e-5)
        pairwise = SimilarityFunction.to_similarity_pairwise_fn(name)(queries, documents[:2])
        their_pairwise = TheirFunction.to_similarity_pairwise_fn(name)(
            torch.from_numpy(queries), torch.from_numpy(documents[:2])
        )
        np.testing.assert_allclose(np.asarray(pairwise), their_pairwise.numpy(), rtol=1e-5, atol=1e-5)
    model = SentenceTransformer(minilm_artifact_session)
    for value in ("maxsim", SimilarityFunction.MEAN_MAXSIM, TheirFunction.MAXSIM):
        with pytest.raises(InputError, match="MultiVectorEncoder"):
            model.similarity_fn_name = value
    assert model.similarity_fn_name == "cosine"  # unchanged by the refused values
    assert SparseEncoder.SUPPORTED_SIMILARITY_FN_NAMES == ("cosine", "dot", "euclidean", "manhattan")
    with pytest.raises(InputError, match="MultiVectorEncoder"):
        sparse_similarity(np.ones((1, 4), dtype=np.float32), np.ones((1, 4), dtype=np.float32), "maxsim")
    assert util.cos_sim is SimilarityFunction.to_similarity_fn("cosine")


def test_semantic_search_takes_sparse_embeddings_as_sentence_transformers(tiny_splade_artifact: Path) -> None:
    from fastembed_rt import util

    splade = SparseEncoder(tiny_splade_artifact)
    corpus = [f"document {i} about {topic}" for i, topic in enumerate(["cats", "mats", "stocks", "rivers"] * 3)]
    queries = ["cats on mats", "falling stocks", "a river"]
    for sparse_format in ("arrays", "scipy"):
        q, c = splade.encode(queries, sparse_format=sparse_format), splade.encode(corpus, sparse_format=sparse_format)
        for score_function in (util.dot_score, util.cos_sim):
            expected = util.semantic_search(q.toarray(), c.toarray(), top_k=5, score_function=score_function)
            found = util.semantic_search(
                q, c, top_k=5, score_function=score_function, query_chunk_size=2, corpus_chunk_size=5
            )
            assert [[h["corpus_id"] for h in row] for row in found] == [
                [h["corpus_id"] for h in row] for row in expected
            ]
            for got, want in zip(found, expected):
                assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="sparse embeddings are scored by the similarity functions"):
        util.paraphrase_mining_embeddings(splade.encode(corpus, sparse_format="arrays"))


def test_sparse_methods_take_torch_sparse_tensors_as_sentence_transformers_returns(tiny_splade_artifact: Path) -> None:
    torch = pytest.importorskip("torch")
    splade = SparseEncoder(tiny_splade_artifact)
    texts = ["cats sit on mats", "stocks fell", "a query about cats"]
    ours = splade.encode(texts, sparse_format="arrays")
    tensor = torch.from_numpy(ours.toarray()).to_sparse()
    np.testing.assert_allclose(splade.similarity(tensor, tensor), splade.similarity(ours, ours), rtol=1e-6)
    assert splade.decode(tensor, top_k=3) == splade.decode(ours, top_k=3)
    assert splade.sparsity(tensor) == splade.sparsity(ours)
    shared = splade.intersection(tensor[2], tensor)
    assert shared.layout == torch.sparse_coo and tuple(shared.shape) == ours.shape
    np.testing.assert_array_equal(shared.to_dense().numpy(), splade.intersection(ours[2], ours).toarray())


def test_sentence_transformers_evaluators_run_on_our_models_with_their_scores(
    minilm_runtime: SentenceTransformer, minilm_torch: Any, tiny_reranker_artifact: Path
) -> None:
    """Every evaluator failed at its end: it stores its metrics in ``model.model_card_data``, which we lacked."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
        TranslationEvaluator,
    )

    from fastembed_rt.stsb import load_stsb

    dev = load_stsb("dev", "en")
    first, second, scores = dev.sentences1[:200], dev.sentences2[:200], dev.scores[:200].tolist()
    seen: set[str] = set()
    pairs = []  # pairs whose texts appear once: a repeated text ties, and ties fall either way in ranks
    for pair in zip(first, second):
        if not seen & set(pair):
            pairs.append(pair)
            seen |= set(pair)
    queries, corpus = (list(texts) for texts in zip(*pairs[:40]))
    evaluators = [
        EmbeddingSimilarityEvaluator(first, second, scores, name="sts-dev"),
        InformationRetrievalEvaluator(
            dict(enumerate(queries)), dict(enumerate(corpus)), {i: {i} for i in range(len(queries))}, name="pairs"
        ),
        TranslationEvaluator(queries, corpus, name="pairs"),  # it stacks convert_to_numpy=False's tensors
    ]
    for evaluator in evaluators:
        ours, theirs = evaluator(minilm_runtime), evaluator(minilm_torch)
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert abs(ours[key] - value) < 1e-4, (key, ours[key], value)
        assert minilm_runtime.model_card_data.eval_results_dict[evaluator] == ours
    reranker = CrossEncoder(tiny_reranker_artifact)
    correlation = CrossEncoderCorrelationEvaluator(list(zip(first[:20], second[:20])), scores[:20], name="sts")
    metrics = correlation(reranker)
    assert set(metrics) == {"sts_pearson", "sts_spearman"}
    assert reranker.model_card_data.eval_results_dict[correlation] == metrics


def test_sentence_transformers_sparse_evaluators_run_on_our_sparse_encoder_with_their_scores(
    tiny_splade_artifact: Path,
) -> None:
    """They ask for ``convert_to_sparse_tensor=True`` and read torch sparse tensors: on our scipy rows they failed
    ("sparse array length is ambiguous", "'csr_array' object has no attribute 'is_sparse'")."""
    import sentence_transformers as st
    import torch
    from sentence_transformers.sparse_encoder.evaluation import (
        SparseEmbeddingSimilarityEvaluator,
        SparseInformationRetrievalEvaluator,
    )

    from fastembed_rt.artifact import load_manifest

    ours, theirs = (
        SparseEncoder(tiny_splade_artifact),
        st.SparseEncoder(load_manifest(tiny_splade_artifact).source["model"]),
    )
    texts = ["the cat sat on the mat", "stocks fell sharply", "a man plays guitar", "a cat is on a rug"]
    tensor = ours.encode(texts, convert_to_sparse_tensor=True)
    assert tensor.layout == torch.sparse_coo and tuple(tensor.shape) == ours.encode(texts).shape
    np.testing.assert_array_equal(tensor.to_dense().numpy(), ours.encode(texts).toarray())
    one = ours.encode(texts[0], convert_to_sparse_tensor=True)
    assert one.layout == torch.sparse_coo and one.dim() == 1
    rows = ours.encode(texts, convert_to_sparse_tensor=True, convert_to_tensor=False)
    assert [row.dim() for row in rows] == [1] * len(texts) and all(r.layout == torch.sparse_coo for r in rows)
    assert not isinstance(ours.encode(texts), torch.Tensor)  # the default stays scipy
    evaluators = [
        SparseEmbeddingSimilarityEvaluator(texts[:2], texts[2:], [0.2, 0.9], name="sts"),
        SparseInformationRetrievalEvaluator(
            {"q1": "cat on a mat", "q2": "the stock market"},
            {"d1": texts[3], "d2": texts[1], "d3": texts[2]},
            {"q1": {"d1"}, "q2": {"d2"}},
            name="ir",
        ),
    ]
    for evaluator in evaluators:
        mine, reference = evaluator(ours), evaluator(theirs)
        assert mine.keys() == reference.keys()
        for key, value in reference.items():  # their sparsity counts are float32 means
            assert abs(mine[key] - value) < 1e-4 * max(1.0, abs(value)), (key, mine[key], value)


def test_encode_takes_sentence_transformers_task_and_refuses_other_extra_keywords_as_it_does(
    minilm_runtime: SentenceTransformer, tiny_reranker_artifact: Path
) -> None:
    """``task`` (which its encode_query passes) was a TypeError; an unknown keyword is its ValueError."""
    np.testing.assert_array_equal(minilm_runtime.encode(["a cat"], task="query"), minilm_runtime.encode(["a cat"]))
    with pytest.raises(ValueError, match=r"additional keyword arguments that this model does not use: \['task_name'\]"):
        minilm_runtime.encode(["a cat"], task_name="STS12")
    with pytest.raises(InputError, match=r"processing_kwargs=.*fixed at export; set model\.max_seq_length"):
        minilm_runtime.encode(["a cat"], processing_kwargs={"text": {"max_length": 8}})
    reranker = CrossEncoder(tiny_reranker_artifact)
    pair = ("a query", "a document")
    assert reranker.predict([pair], task_name="x") == reranker.predict([pair])  # ignored, as sentence-transformers


def test_cross_encoder_takes_sentence_transformers_former_constructor_arguments(
    tiny_reranker_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sentence-transformers 6.2 still takes them with a warning; each was a bare TypeError naming ArtifactModel."""
    pair = [("a query", "a document")]
    plain = CrossEncoder(tiny_reranker_artifact).predict(pair)
    by_position = CrossEncoder(tiny_reranker_artifact, 1, 64)  # num_labels, max_length
    assert by_position.max_length == 64 and by_position.num_labels == 1
    for kwargs in (
        {"model_name": tiny_reranker_artifact},
        {"automodel_args": {}, "tokenizer_args": {}, "config_args": {}, "classifier_dropout": 0.1},
        {"keep_in_fp32_modules": ["classifier"]},
    ):
        path = () if "model_name" in kwargs else (tiny_reranker_artifact,)
        np.testing.assert_array_equal(CrossEncoder(*path, **kwargs).predict(pair), plain)
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("num_labels", "max_length", "model_name", "automodel_args", "classifier_dropout", "keep_in_fp32"):
        assert name in warned, name
    with pytest.raises(TypeError, match="`max_length` both by position and by keyword"):
        CrossEncoder(tiny_reranker_artifact, 1, 64, max_length=32)


def test_cross_encoder_attributes_behave_as_sentence_transformers(tiny_reranker_artifact: Path) -> None:
    """activation_fn was an enum that could not be called (there: a torch module), num_labels could be set (then
    predict failed in numpy), default_activation_function was missing."""
    import torch

    model = CrossEncoder(tiny_reranker_artifact)
    logits = torch.tensor([[0.0], [2.0]])
    np.testing.assert_allclose(model.activation_fn(logits).numpy(), torch.sigmoid(logits).numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.activation_fn(np.array([[0.0, 2.0]])), [[0.5, 1 / (1 + np.exp(-2.0))]], rtol=1e-6)
    assert model.default_activation_function == model.activation_fn
    named = CrossEncoder(tiny_reranker_artifact, activation_fn="Identity")  # a name, given or set, is callable too
    np.testing.assert_array_equal(named.activation_fn(np.array([[-1.5]])), [[-1.5]])
    named.activation_fn = "softmax"
    np.testing.assert_allclose(named.activation_fn(np.array([[0.0, 0.0]])), [[0.5, 0.5]])
    with pytest.raises(InputError, match="activation_fn 'tanh' is not known"):
        named.activation_fn = "tanh"
    with pytest.raises(AttributeError):
        model.num_labels = 3  # type: ignore[misc]
    assert model.num_labels == 1


def test_model_attributes_read_as_sentence_transformers_code_reads_them(minilm_runtime: SentenceTransformer) -> None:
    import torch

    from fastembed_rt.providers import device_name

    assert minilm_runtime.device == torch.device("cpu") and minilm_runtime.device == "cpu"  # was False
    assert (minilm_runtime.device != torch.device("cpu")) is False  # != is =='s opposite (it was True too)
    assert (minilm_runtime.device == torch.device("cuda:0")) is False and minilm_runtime.device != torch.device("cuda")
    assert device_name(0) == "cuda:0" and device_name(torch.device("cpu")) == "cpu"  # model.to(0): torch's cuda:0
    assert hasattr(SentenceTransformer, "similarity_fn_name")  # read on the class: an internal AttributeError
    for cls in (SentenceTransformer, CrossEncoder, SparseEncoder):
        with pytest.raises(InputError, match="model_name_or_path is None"):
            cls(None)  # type: ignore[arg-type]
    minilm_runtime.set_pooling_include_prompt(True)  # what the graph does: taken
    with pytest.raises(InputError, match="exported with include_prompt=True"):
        minilm_runtime.set_pooling_include_prompt(False)


def test_tokenizer_kwargs_model_max_length_sets_max_seq_length_as_sentence_transformers(
    minilm_artifact_session: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It was ignored (texts of 129-256 tokens cut elsewhere than there) with a warning pointing at variant=."""
    for key in ("tokenizer_kwargs", "processor_kwargs"):
        model = SentenceTransformer(minilm_artifact_session, **{key: {"model_max_length": 128}})
        assert model.max_seq_length == 128
        model.close()
    assert not [r for r in caplog.records if "does not apply" in r.getMessage()]


def test_a_cross_encoders_num_labels_is_checked_against_the_exported_head(tiny_reranker_artifact: Path) -> None:
    """sentence-transformers examples pass num_labels=1: it was Python's bare TypeError."""
    assert CrossEncoder(tiny_reranker_artifact, num_labels=1).num_labels == 1
    with pytest.raises(InputError, match=r"num_labels=3: the artifact's classifier head has 1 label\(s\)"):
        CrossEncoder(tiny_reranker_artifact, num_labels=3)
