"""Every architecture in the export registry round-trips a tiny random model, and the exporter
refuses what it cannot express with an error that names the valid choices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import (
    DECODERS,
    HIDDEN_SIZE,
    PARITY_TEXTS,
    TINY_ARCHITECTURES,
    TinyExport,
    build_tiny_model,
    export_tiny_model,
    row_cosines,
)

from fastembed_rt import SentenceTransformer
from fastembed_rt.errors import ExportError, InputError
from fastembed_rt.export import export_model
from fastembed_rt.export.architectures import ARCHITECTURES
from fastembed_rt.providers import ProviderOptions

MIN_COSINE = 0.9999
# The whole registry: an architecture is supported only once a tiny model of it round-trips.
TESTED_ARCHITECTURES = sorted(ARCHITECTURES)

_RETRIEVAL_INSTRUCTION = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
# The families people deploy now, wrapped as their real sentence-transformers models are: pooling,
# Dense layers, prompts and the tokenizer's padding side. The BERT-era families pool (cls, mean).
REAL_SETUPS: dict[str, dict[str, Any]] = {
    "modernbert": {"pooling_mode": "cls", "normalize": True},  # gte-modernbert-base
    "nomic_bert": {  # nomic-embed-text-v1.5
        "pooling_mode": "mean",
        "normalize": True,
        "prompts": {"query": "search_query: ", "document": "search_document: "},
    },
    "qwen2": {  # gte-Qwen2-instruct: last token, right padding
        "pooling_mode": "lasttoken",
        "normalize": True,
        "padding_side": "right",
        "prompts": {"query": _RETRIEVAL_INSTRUCTION + " "},
    },
    "qwen3": {  # Qwen3-Embedding: last token, left padding, the end-of-text token appended
        "pooling_mode": "lasttoken",
        "normalize": True,
        "padding_side": "left",
        "prompts": {"query": _RETRIEVAL_INSTRUCTION, "document": ""},
    },
    "mistral": {  # e5-mistral-7b-instruct
        "pooling_mode": "lasttoken",
        "normalize": True,
        "padding_side": "right",
        "prompts": {"query": _RETRIEVAL_INSTRUCTION.replace("\nQuery:", "\nQuery: ")},
    },
    "gemma3_text": {  # EmbeddingGemma-300m: mean, Dense 768→3072→768 without bias, named prompts
        "pooling_mode": "mean",
        "normalize": True,
        "dense_layers": ((4 * HIDDEN_SIZE, False), (HIDDEN_SIZE, False)),
        "prompts": {
            "query": "task: search result | query: ",
            "document": "title: none | text: ",
            "Classification": "task: classification | query: ",
            "Clustering": "task: clustering | query: ",
            "STS": "task: sentence similarity | query: ",
        },
    },
}


@pytest.fixture(scope="module", params=TESTED_ARCHITECTURES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    architecture: str = request.param
    setup = dict(REAL_SETUPS.get(architecture, {"pooling_mode": ("cls", "mean")}))
    result = export_tiny_model(tmp_path_factory.mktemp(architecture), architecture, setup.pop("pooling_mode"), **setup)
    yield result
    result.close()


def _assert_matches_torch(
    exported: TinyExport, texts: list[str], batch_size: int, *, provider: str | None = None
) -> np.ndarray:
    runtime = exported.runtime if provider is None else SentenceTransformer(exported.artifact, provider=provider)
    ours = np.asarray(runtime.encode(texts, batch_size=batch_size))
    ref = exported.torch_model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    assert ours.shape == ref.shape == (len(texts), ref.shape[1])
    assert not np.isnan(ours).any()
    cosines = row_cosines(ours, ref)
    failures = [f"{texts[j][:30]!r}: {cosines[j]:.6f}" for j in np.flatnonzero(~(cosines >= MIN_COSINE))]
    assert not failures, failures
    return ours


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_architecture_matches_sentence_transformers(exported: TinyExport, batch_size: int) -> None:
    _assert_matches_torch(exported, PARITY_TEXTS, batch_size)


def test_text_embedding_does_not_depend_on_its_batch_neighbours(exported: TinyExport) -> None:
    text = "A man is playing a guitar."
    alone = _assert_matches_torch(exported, [text], batch_size=1)
    # Neighbours that pad the text by 0, 1 and many tokens.
    for neighbours in (["x"], [PARITY_TEXTS[3]], ["", PARITY_TEXTS[7], "Hi"]):
        batched = _assert_matches_torch(exported, [*neighbours, text], batch_size=8)
        assert row_cosines(batched[-1:], alone)[0] >= MIN_COSINE


def test_openvino_matches_on_mixed_length_batches_without_nan(exported: TinyExport) -> None:
    pytest.importorskip("openvino")
    # Fully masked query rows (left padding under a causal mask) gave NaN in OpenVINO (openvino#31630).
    _assert_matches_torch(exported, PARITY_TEXTS, batch_size=5, provider="openvino")


def test_query_and_document_prompts_match_sentence_transformers(exported: TinyExport) -> None:
    prompts = exported.torch_model.prompts
    if not prompts.get("query") and not prompts.get("document"):
        pytest.skip(f"{exported.architecture}'s tiny model has no query or document prompt")
    texts = ["what is a guitar", "", PARITY_TEXTS[3]]
    assert exported.runtime.prompts == prompts
    for ours, ref in (
        (exported.runtime.encode_query(texts), exported.torch_model.encode_query(texts, convert_to_numpy=True)),
        (exported.runtime.encode_document(texts), exported.torch_model.encode_document(texts, convert_to_numpy=True)),
    ):
        assert row_cosines(np.asarray(ours), ref).min() >= MIN_COSINE
    # The prompt changes the vector: encode_query really adds it.
    plain = exported.runtime.encode(texts[:1])
    if prompts.get("query"):
        assert row_cosines(exported.runtime.encode_query(texts[:1]), plain)[0] < 0.9999


def test_decoder_artifact_pads_on_the_tokenizers_side_and_ends_each_text_with_its_eos(exported: TinyExport) -> None:
    if exported.architecture not in DECODERS:
        pytest.skip("an encoder")
    tokenizer = exported.torch_model[0].tokenizer
    side = REAL_SETUPS[exported.architecture]["padding_side"]
    assert exported.runtime.manifest.tokenizer.padding_side == tokenizer.padding_side == side
    texts = ["Hi", "A man is playing a guitar."]
    ours = exported.runtime.tokenize(texts)
    ref = exported.torch_model.tokenize(texts)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[name], ref[name].numpy())
    short = ours["attention_mask"][0]
    assert (short[0], short[-1]) == ((0, 1) if side == "left" else (1, 0))
    for ids, mask in zip(ours["input_ids"], ours["attention_mask"]):
        assert ids[mask.astype(bool)][-1] == tokenizer.eos_token_id


def test_batches_of_long_texts_shrink_under_the_memory_bound_without_changing_vectors(exported: TinyExport) -> None:
    config = exported.torch_model[0].auto_model.config
    shape = exported.runtime.manifest.source["backbone"]
    assert shape["hidden_size"] == config.hidden_size
    assert shape["parameters"] == sum(p.numel() for p in exported.torch_model[0].auto_model.parameters()) + sum(
        b.numel() for b in exported.torch_model[0].auto_model.buffers()
    )
    texts = [PARITY_TEXTS[3]] * 6 + ["Hi"] * 6
    default = exported.runtime.encode(texts, batch_size=32)
    assert exported.runtime.last_encode_stats.batches == 2  # the long rows, then the short ones
    # one batch at a time: with streams, the batches that run at once split the bound (tests/test_streams.py)
    runtime = SentenceTransformer(exported.artifact, provider_options=ProviderOptions(streams=1))
    cost = runtime._pipeline.activation_cost
    assert cost is not None
    longest = int(max(len(ids) for ids in runtime.tokenize(texts[:1])["input_ids"]))
    runtime.max_batch_bytes = cost.batch_bytes(2, longest)  # two long rows per run
    bounded = runtime.encode(texts, batch_size=32)
    assert runtime.last_encode_stats.batches == 4  # 2 + 2 + 2 long rows, then the short ones
    assert row_cosines(bounded, default).min() >= MIN_COSINE
    runtime.close()


# Plain scaled-dot-product attention with a padding mask: every layer fuses. MPNet adds a relative-position
# bias to the scores, and the newer families use rotary or grouped-query attention: the pass leaves those alone.
FUSES_EVERY_LAYER = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"}


@pytest.mark.parametrize("packed", [True, False], ids=["Attention", "MultiHeadAttention"])
def test_attention_fusion_keeps_the_token_embeddings_of_the_exported_graph(exported: TinyExport, packed: bool) -> None:
    """export/fuse_attention.py on each family's exported graph: what fuses computes what it replaced, as one
    ``Attention`` with packed Q/K/V weights or as ``MultiHeadAttention`` after the three projections (int8)."""
    from collections import Counter

    import onnx
    import onnxruntime as ort

    from fastembed_rt.export.fuse_attention import fuse_attention

    graph = exported.artifact / "onnx" / "model.onnx"
    plain, fused = onnx.load(str(graph)), onnx.load(str(graph))
    heads = TINY_ARCHITECTURES[exported.architecture].get("num_attention_heads", 4)
    count = fuse_attention(fused, num_heads=heads, packed=packed)
    ops = Counter(node.op_type for node in fused.graph.node)
    assert count == ops["Attention" if packed else "MultiHeadAttention"]
    if count and not packed:  # the projections are still MatMuls of their own
        assert ops["MatMul"] == Counter(node.op_type for node in plain.graph.node)["MatMul"] - 2 * count
    layers = TINY_ARCHITECTURES[exported.architecture].get("num_hidden_layers", 2)
    assert count == (layers if exported.architecture in FUSES_EVERY_LAYER else 0), ops
    if count:
        assert ops["Softmax"] == 0, ops
    onnx.checker.check_model(fused)
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (plain, fused)]
    names = {i.name for i in sessions[0].get_inputs()}
    rng = np.random.default_rng(1)
    for batch, width, lengths in ((1, 7, [7]), (3, 19, [19, 4, 1]), (5, 33, [33, 2, 17, 9, 30])):
        mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
        ids = np.where(mask == 1, rng.integers(5, 1000, (batch, width)), 0).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v for k, v in feeds.items() if k in names}
        expected, got = (s.run(["token_embeddings"], feeds)[0] for s in sessions)
        # padded positions are never read downstream (pooling masks them), so compare real tokens.
        np.testing.assert_allclose(got[mask == 1], expected[mask == 1], rtol=1e-4, atol=1e-5)


def test_artifact_declares_architecture_inputs(exported: TinyExport) -> None:
    manifest = exported.runtime.manifest
    assert manifest.source["architecture"] == exported.architecture
    token_inputs = ARCHITECTURES[exported.architecture].inputs
    assert manifest.graph.inputs[: len(token_inputs)] == token_inputs
    # then only the precision stage's per-call inputs (output_dim, normalize_output, quantize_ranges)
    assert set(manifest.graph.inputs[len(token_inputs) :]) == {"output_dim", "normalize_output", "quantize_ranges"}


def test_every_registered_architecture_has_a_tiny_model() -> None:
    missing = set(ARCHITECTURES) - set(TINY_ARCHITECTURES)
    assert not missing, f"add a tiny config to tests/tiny_models.py for {sorted(missing)}"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert", "mean")


def test_unsupported_architecture_raises_naming_supported_ones(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "albert", "albert", "mean")
    out = tmp_path / "artifact"
    with pytest.raises(ExportError, match="'albert'") as info:
        export_model(model_dir, out, stsb=False)
    message = str(info.value)
    assert all(name in message for name in ARCHITECTURES), message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["albert"]


def test_unsupported_module_type_raises_naming_it(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    model = TorchSentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.append(LayerNorm(HIDDEN_SIZE))
    model_dir = tmp_path / "with-layer-norm"
    model.save(str(model_dir))
    out = tmp_path / "artifact"
    with pytest.raises(ExportError, match="unsupported sentence-transformers module") as info:
        export_model(model_dir, out, stsb=False)
    assert "LayerNorm" in str(info.value)
    assert "supported: Transformer, Pooling, Dense, Normalize" in str(info.value)
    assert not out.exists()


def test_export_into_non_empty_directory_without_overwrite_raises(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="overwrite"):
        export_model(tiny_bert_dir, out, stsb=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert keep.read_text(encoding="utf-8") == "mine"


def _variant_export(tmp_path: Path, architecture: str, variants: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shipped and rejected variants (by name) of a tiny ``architecture`` model exported with ``variants``."""
    setup = dict(REAL_SETUPS.get(architecture, {"pooling_mode": "mean", "normalize": True}))  # BERT-era: mean
    model_dir = build_tiny_model(tmp_path, architecture, setup.pop("pooling_mode"), **setup)
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants=variants)
    return {v.name: v for v in manifest.variants}, {r["name"]: r for r in manifest.rejected_variants}


def test_decoder_variants_fuse_rmsnorm_and_stay_within_their_gates(tmp_path: Path) -> None:
    shipped, rejected = _variant_export(tmp_path, "qwen3", "optimized,fp16,int8")
    assert not rejected, rejected
    assert set(shipped) == {"fp32", "optimized", "fp16", "int8"}
    fused = shipped["optimized"].stage_counts["fused_ops"]
    assert fused.get("SimplifiedLayerNormalization", 0) > 0, fused


def test_variants_a_family_cannot_have_are_recorded_as_not_applicable(tmp_path: Path) -> None:
    shipped, rejected = _variant_export(tmp_path, "gemma3_text", "optimized,fp16,int8")
    assert set(shipped) == {"fp32", "int8"}
    assert set(rejected) == {"optimized", "fp16"}
    assert "not applicable" in rejected["optimized"]["reasons"][0] and "fusions" in rejected["optimized"]["reasons"][0]
    assert "overflow" in rejected["fp16"]["reasons"][0]
    assert not (tmp_path / "artifact" / "onnx" / "model_fp16.onnx").exists()


FP16_ENCODERS = [a for a in TESTED_ARCHITECTURES if ARCHITECTURES[a].ort_model_type == "bert"]


@pytest.mark.parametrize("architecture", FP16_ENCODERS)
def test_every_encoder_family_ships_fp16_and_int8_within_their_gates_int8_with_an_8_bit_word_table(
    tmp_path: Path, architecture: str
) -> None:
    """MPNet's and DistilBERT's fp16 graphs failed to load (ORT's SkipLayerNormalization fusion), and that one variant
    failed the whole default export of all-mpnet-base-v2. Their int8 kept the fp32 word-embedding table (94 MB of
    all-mpnet-base-v2's int8): ONNX Runtime had fused the lookups into an EmbedLayerNormalization that reads it."""
    import onnx

    shipped, rejected = _variant_export(tmp_path, architecture, "fp16,int8")
    assert not rejected, rejected
    assert set(shipped) == {"fp32", "fp16", "int8"}
    (table,) = shipped["int8"].stage_counts["int8_embedding_tables"]  # word_embeddings, ModernBERT's tok_embeddings
    assert table.startswith("model.embeddings.") and table.endswith("_embeddings.weight"), table
    graph = onnx.load(str(tmp_path / "artifact" / shipped["int8"].file), load_external_data=False).graph
    float_tables = [
        t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.dims == [30522, HIDDEN_SIZE]
    ]
    assert float_tables == [], float_tables
    assert SentenceTransformer(tmp_path / "artifact", variant="int8").encode(["a text"]).shape == (1, HIDDEN_SIZE)


def test_a_variant_the_engine_cannot_load_is_rejected_and_the_export_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime 1.32 fuses MPNet's fp16 Add + LayerNormalization into a SkipLayerNormalization it then cannot load:
    the variant is recorded as not shipped, with the engine's words, and the rest of the artifact is written."""
    monkeypatch.setitem(ARCHITECTURES, "mpnet", replace(ARCHITECTURES["mpnet"], fp16_skip_layer_norm=True))
    shipped, rejected = _variant_export(tmp_path, "mpnet", "fp16,int8")
    assert set(shipped) == {"fp32", "int8"}
    assert rejected["fp16"]["reasons"][0].startswith("the engine cannot load it: ")
    assert "SkipLayerNormalization" in rejected["fp16"]["reasons"][0]
    assert not (tmp_path / "artifact" / "onnx" / "model_fp16.onnx").exists()
    assert SentenceTransformer(tmp_path / "artifact", variant="int8").encode(["a text"]).shape[0] == 1


def test_max_seq_length_is_bounded_by_the_tokens_the_position_table_holds(exported: TinyExport) -> None:
    """RoBERTa's family counts positions after its padding id, so 128 positions hold 127 tokens: max_seq_length 128
    passed the check and the first long text failed inside ONNX Runtime (GatherElements out of range)."""
    config = TINY_ARCHITECTURES[exported.architecture]
    family = ARCHITECTURES[exported.architecture]
    padding_idx = config["pad_token_id"] if family.padding_idx is None else family.padding_idx  # MPNet's: always 1
    usable = config["max_position_embeddings"] - (padding_idx + 1 if family.positions_after_padding else 0)
    model = SentenceTransformer(exported.artifact)
    with pytest.raises(InputError, match=f"max_seq_length {usable + 1} is more than the {usable} tokens"):
        model.max_seq_length = usable + 1
    model.max_seq_length = usable
    long = " ".join(["hello"] * 300)
    saved = exported.torch_model.max_seq_length
    exported.torch_model.max_seq_length = usable
    try:
        ref = exported.torch_model.encode([long], convert_to_numpy=True)
    finally:
        exported.torch_model.max_seq_length = saved
    assert row_cosines(model.encode([long]), ref)[0] >= MIN_COSINE
    model.close()


def test_a_saved_max_seq_length_past_the_positions_is_exported_at_the_positions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sentence-transformers loads such a model and fails at the first long text; the export failed with ONNX
    Runtime's broadcast traceback. It is exported at the length the model holds, saying so."""
    model_dir = build_tiny_model(tmp_path, "xlm-roberta", "mean", normalize=True)
    path = model_dir / "sentence_bert_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), "max_seq_length": 200}), "utf-8")
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        manifest = export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="fp32")
    assert "max_seq_length 200 is more than the 127 tokens its position table holds; exported with 127" in caplog.text
    assert manifest.tokenizer.max_seq_length == 127  # 128 positions after padding id 0
    assert SentenceTransformer(tmp_path / "artifact").encode([" ".join(["hello"] * 300)]).shape[0] == 1


def test_a_plain_transformers_directory_exports_as_sentence_transformers_wraps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sentence-transformers loads a directory without modules.json as Transformer + mean Pooling (with a warning);
    the export refused it."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from tiny_heads import _save_hf_model
    from transformers import AutoModel

    _save_hf_model(tmp_path / "plain", "bert", AutoModel)
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        manifest = export_model(tmp_path / "plain", tmp_path / "artifact", stsb=False, variants="fp32")
    assert "has no modules.json: exported as sentence-transformers loads it" in caplog.text
    assert manifest.stages["pooling"]["modes"] == ["mean"]
    reference = TorchSentenceTransformer(str(tmp_path / "plain"), device="cpu")
    ours = SentenceTransformer(tmp_path / "artifact").encode(PARITY_TEXTS)
    assert row_cosines(ours, reference.encode(PARITY_TEXTS)).min() >= MIN_COSINE
