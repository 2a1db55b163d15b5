"""MultiVectorEncoder (late interaction, ColBERT): token stages as data, MaxSim and token pooling against
sentence-transformers, and tiny random models that encode, score and rank as
``sentence_transformers.MultiVectorEncoder`` does (query expansion, skiplist, lengths, pooling, prompts).
"""

from __future__ import annotations

import json
import shutil
import string
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import MULTI_VECTOR_CALIBRATION
from tiny_models import HIDDEN_SIZE, MULTI_VECTOR_DIM, PARITY_TEXTS, build_tiny_multi_vector, row_cosines

from fastembed_rt import ArtifactError, InputError, MultiVectorEncoder, SentenceTransformer, util
from fastembed_rt.artifact import Task
from fastembed_rt.export import detect_task
from fastembed_rt.kernels.onnx_stages import append_token_stages
from fastembed_rt.kernels.reference import apply_token_stages
from fastembed_rt.kernels.spec import DenseActivation, DenseSpec, TokenStages
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.token_pooling import HierarchicalTokenPooling

MIN_COSINE = 0.9999
TEXTS = [
    *PARITY_TEXTS,
    "Hello, world! Is this (really) the end?",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "cats cats cats and dogs dogs dogs, all of them sleeping in the sun.",
    "What is the capital of France?",
]


@dataclass
class Pair:
    torch_model: Any  # sentence_transformers.MultiVectorEncoder
    runtime: MultiVectorEncoder
    artifact: Path


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, tiny_multi_vector_dir: Path, tiny_multi_vector_artifact: Path
) -> Iterator[dict[str, Pair]]:
    """The session's tiny ColBERT (fixed expansion, pooling) and one with the same weights but min expansion
    attended, a skiplist on queries too, no document length, MeanMaxSim and no token pooling.

    The second shares the first's graph (same seed, same weights: the parity tests below prove it against
    its own sentence-transformers model); its manifest is what the exporter's reader makes of its
    directory, so the 20 s of a second ONNX export are saved.
    """
    from sentence_transformers import MultiVectorEncoder as TorchMultiVectorEncoder

    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.export.multi_vector_encoder import describe_multi_vector

    root = tmp_path_factory.mktemp("colbert-min")
    other = build_tiny_multi_vector(
        root,
        query_length=24,
        document_length=None,
        query_expansion={"strategy": "min", "attend": True, "length": 12},
        skiplist_tasks=("query", "document"),
        pool_factor=None,
        similarity_fn_name="meanmaxsim",
        prompts={"query": "query: ", "document": "passage: "},
    )
    other_torch = TorchMultiVectorEncoder(str(other), device="cpu")
    stages, late, _ = describe_multi_vector(other, other_torch)
    shutil.copytree(tiny_multi_vector_artifact, root / "artifact")
    manifest = load_manifest(root / "artifact")
    replace(
        manifest,
        stages={"token_stages": stages.to_dict(), "late_interaction": late.to_dict()},
        similarity_fn=other_torch.similarity_fn_name,
        calibration=None,
    ).write()
    out = {
        "fixed": Pair(
            TorchMultiVectorEncoder(str(tiny_multi_vector_dir), device="cpu"),
            MultiVectorEncoder(tiny_multi_vector_artifact),
            tiny_multi_vector_artifact,
        ),
        "min": Pair(other_torch, MultiVectorEncoder(root / "artifact"), root / "artifact"),
    }
    yield out
    for pair in out.values():
        pair.runtime.close()


def _torch(model: Any, call: str, texts: list[str], **kwargs: Any) -> list[np.ndarray]:
    return getattr(model, call)(texts, convert_to_numpy=True, show_progress_bar=False, **kwargs)


def _assert_same_vectors(ours: list[np.ndarray], ref: list[np.ndarray]) -> None:
    assert len(ours) == len(ref)
    for i, (mine, theirs) in enumerate(zip(ours, ref)):
        assert mine.dtype == np.float32
        assert mine.shape == theirs.shape, (i, mine.shape, theirs.shape)
        if len(mine):
            assert row_cosines(mine, theirs).min() >= MIN_COSINE, i


# -- token stages as data: graph == reference == sentence-transformers' Dense + Normalize -----------
def test_token_stages_graph_equals_reference_equals_sentence_transformers() -> None:
    from onnx import TensorProto, helper
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.base.modules.dense import Dense

    torch.manual_seed(0)
    dense = Dense(
        HIDDEN_SIZE,
        MULTI_VECTOR_DIM,
        bias=True,
        activation_function=torch.nn.Tanh(),
        module_input_name="token_embeddings",
    )
    spec = TokenStages(
        (
            DenseSpec(
                dense.linear.weight.detach().numpy().copy(),
                dense.linear.bias.detach().numpy().copy(),
                DenseActivation.TANH,
            ),
        ),
        normalize=True,
    )
    x = np.random.default_rng(0).standard_normal((3, 5, HIDDEN_SIZE)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["token_embeddings"])],
        "tokens",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", HIDDEN_SIZE])],
        [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    counts = append_token_stages(model, spec)
    onnx.checker.check_model(model)
    assert counts.dense_layers == 1 and counts.normalize
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph_out = session.run(["token_vectors"], {"x": x})[0]
    reference = apply_token_stages(x, spec)
    features = {"token_embeddings": torch.from_numpy(x)}
    with torch.no_grad():
        theirs = Normalize(module_input_name="token_embeddings")(dense(features))["token_embeddings"].numpy()
    assert graph_out.shape == reference.shape == (3, 5, MULTI_VECTOR_DIM)
    np.testing.assert_allclose(graph_out, reference, atol=1e-6)
    np.testing.assert_allclose(reference, theirs, atol=1e-6)


# -- MaxSim: numpy against sentence-transformers' util ----------------------------------------------
def _ragged(seed: int, count: int, dim: int = 6, empty: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, count)
    if empty:
        lengths[1] = 0
    return [rng.standard_normal((int(n), dim)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("name", ["maxsim", "mean_maxsim"])
def test_maxsim_equals_sentence_transformers_and_a_plain_loop(name: str) -> None:
    import sentence_transformers.util as st_util

    queries, documents = _ragged(0, 4), _ragged(1, 7, empty=True)
    ours = getattr(util, name)(queries, documents)
    theirs = getattr(st_util, name)([torch.from_numpy(q) for q in queries], [torch.from_numpy(d) for d in documents])
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-5)
    for i, q in enumerate(queries):  # the definition, one pair at a time
        for j, d in enumerate(documents):
            expected = (q @ d.T).max(axis=1).sum() if len(d) else -1e9
            expected /= len(q) if name == "mean_maxsim" else 1
            assert ours[i, j] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    # chunking changes a score by float32 rounding at most; a padded 3D array reads all-zero rows as padding
    np.testing.assert_allclose(getattr(util, name)(queries, documents, chunk_elements=7), ours, rtol=1e-6)
    padded = np.zeros((len(documents), 8, 6), np.float32)
    for j, d in enumerate(documents):
        padded[j, : len(d)] = d
    np.testing.assert_allclose(getattr(util, name)(queries, padded), ours, rtol=1e-6)


def test_maxsim_family_takes_tensors_and_gives_tensors_as_sentence_transformers() -> None:
    """Padded tensors raised a TypeError and lists of tensors gave numpy; ST gives tensors for both."""
    import sentence_transformers.util as st_util

    queries, documents = _ragged(4, 3), _ragged(5, 4)
    as_tensors = ([torch.from_numpy(q) for q in queries], [torch.from_numpy(d) for d in documents])
    padded = torch.zeros((len(documents), 8, 6))
    for j, d in enumerate(documents):
        padded[j, : len(d)] = torch.from_numpy(d)
    for name in ("maxsim", "mean_maxsim", "maxsim_pairwise", "mean_maxsim_pairwise"):
        size = 3 if "pairwise" in name else None
        theirs = getattr(st_util, name)(as_tensors[0], as_tensors[1][:size])
        for b in (as_tensors[1][:size], padded[:size]):
            ours = getattr(util, name)(as_tensors[0], b)
            assert isinstance(ours, torch.Tensor), name
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)
    hits = util.semantic_search_maxsim(as_tensors[0], as_tensors[1], top_k=2)
    assert hits == util.semantic_search_maxsim(queries, documents, top_k=2)


def test_semantic_search_maxsim_reads_a_padded_corpus_array_as_maxsim_does() -> None:
    """The padded rows of a [n, tokens, dim] corpus counted as tokens (a zero similarity beat a short document's
    negative ones); quantized codes have no padding value, so a padded code array is refused."""
    queries, documents = _ragged(6, 2), _ragged(7, 9)
    padded = np.zeros((len(documents), 8, 6), np.float32)
    for j, d in enumerate(documents):
        padded[j, : len(d)] = d
    want = util.semantic_search_maxsim(queries, documents, top_k=9)
    for chunk in (1024, 4):
        got = util.semantic_search_maxsim(queries, padded, top_k=9, corpus_chunk_size=chunk)
        # the same hits in the same order; the scores to float rounding (BLAS sums a chunk of 4 documents in another
        # order than one of 9 on some CPUs: 5e-7 apart on an AVX-512 EPYC, equal on a Xeon)
        assert [[hit["corpus_id"] for hit in hits] for hits in got] == [
            [hit["corpus_id"] for hit in hits] for hits in want
        ]
        for hits, expected in zip(got, want, strict=True):
            assert [hit["score"] for hit in hits] == pytest.approx([hit["score"] for hit in expected], rel=1e-6)
    scores = util.maxsim(queries, documents)
    first = util.semantic_search_maxsim(queries, padded, top_k=9)[0]
    assert [hit["score"] for hit in first] == pytest.approx(np.sort(scores[0])[::-1].tolist(), rel=1e-6)
    with pytest.raises(ValueError, match="int8 codes have no padding value"):
        util.semantic_search_maxsim(queries, padded.astype(np.int8), corpus_precision="int8", ranges=np.ones((2, 6)))


def test_a_mask_keeps_an_all_zero_token_of_a_padded_array_as_sentence_transformers() -> None:
    """Without a mask all-zero rows of a padded array are padding; a mask that keeps one makes it count."""
    import sentence_transformers.util as st_util

    query = np.ones((1, 1, 4), np.float32)
    document = np.zeros((1, 3, 4), np.float32)
    document[0, 0] = -1.0  # token 0 scores -4, token 1 (all zeros, kept by the mask) 0, token 2 is padding
    mask = np.array([[1, 1, 0]])
    theirs = st_util.maxsim(torch.from_numpy(query), torch.from_numpy(document), b_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(util.maxsim(query, document, b_mask=mask), theirs.numpy())
    assert util.maxsim(query, document, b_mask=mask)[0, 0] == 0.0
    assert util.maxsim(query, document)[0, 0] == -4.0  # no mask: the zero rows are padding


def test_maxsim_masks_single_matrices_pairwise_and_empty_sides() -> None:
    import sentence_transformers.util as st_util

    queries, documents = _ragged(2, 3), _ragged(3, 3, empty=True)
    q_mask = [np.arange(len(q)) % 2 == 0 for q in queries]
    d_mask = [np.arange(len(d)) % 3 != 1 for d in documents]
    ours = util.maxsim(queries, documents, a_mask=q_mask, b_mask=d_mask)
    theirs = st_util.maxsim(
        [torch.from_numpy(q) for q in queries],
        [torch.from_numpy(d) for d in documents],
        a_mask=[torch.from_numpy(m) for m in q_mask],
        b_mask=[torch.from_numpy(m) for m in d_mask],
    )
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-5)
    for name in ("maxsim_pairwise", "mean_maxsim_pairwise"):
        mine = getattr(util, name)(queries, documents)
        reference = getattr(st_util, name)(
            [torch.from_numpy(q) for q in queries], [torch.from_numpy(d) for d in documents]
        )
        np.testing.assert_allclose(mine, reference.numpy(), rtol=1e-6, atol=1e-5)
    single = util.maxsim(queries[0], documents[0])
    assert single.shape == (1, 1)
    assert single[0, 0] == pytest.approx(float((queries[0] @ documents[0].T).max(1).sum()), rel=1e-6)
    assert util.maxsim([], documents).shape == (0, 3)
    with pytest.raises(ValueError, match="as many items"):
        util.maxsim_pairwise(queries, documents[:2])


# -- token pooling: numpy Ward against sentence-transformers (scipy) ---------------------------------
@pytest.mark.parametrize(
    ("pool_factor", "protected", "normalize", "tokens"),
    [
        (2.0, 1, True, 9),
        (1.5, 1, True, 17),
        (3.0, 0, False, 30),
        (2.0, 1, True, 2),
        (1.0, 1, True, 7),
        (4.0, 2, True, 64),
    ],
)
def test_hierarchical_token_pooling_equals_sentence_transformers(
    pool_factor: float, protected: int, normalize: bool, tokens: int
) -> None:
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling as TorchPooling

    rng = np.random.default_rng(tokens)
    matrix = rng.standard_normal((tokens, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ours = HierarchicalTokenPooling(pool_factor, num_protected_tokens=protected, normalize_embeddings=normalize)
    theirs = TorchPooling(pool_factor, num_protected_tokens=protected, normalize_embeddings=normalize)
    pooled = ours.pool([matrix])[0]
    reference = theirs.pool([torch.from_numpy(matrix)])[0].numpy()
    assert pooled.shape == reference.shape
    np.testing.assert_allclose(pooled, reference, atol=1e-6)
    assert ours.pool([matrix], task="query")[0] is matrix  # documents only, by default


def test_hierarchical_token_pooling_takes_what_sentence_transformers_takes_and_refuses_nan() -> None:
    """tasks=None was a bare TypeError (sentence-transformers: ["document"]); numpy numbers were refused as not
    numbers; a NaN pool_factor passed and pooled nothing."""
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling as TorchPooling

    assert HierarchicalTokenPooling(2.0, tasks=None).tasks == tuple(TorchPooling(2.0, tasks=None).tasks)  # type: ignore[arg-type]
    matrix = np.random.default_rng(0).standard_normal((9, 8)).astype(np.float32)
    for factor in (np.int64(2), np.float32(2.0)):
        pooling = HierarchicalTokenPooling(factor, num_protected_tokens=np.int64(1))  # type: ignore[arg-type]
        assert pooling.pool_one(matrix).shape == HierarchicalTokenPooling(2).pool_one(matrix).shape == (5, 8)
    for bad in (float("nan"), float("inf"), 0.5, "2"):
        with pytest.raises(InputError, match="pool_factor must be a finite number >= 1"):
            HierarchicalTokenPooling(bad)  # type: ignore[arg-type]


# -- the tiny models against sentence-transformers --------------------------------------------------
@pytest.mark.parametrize("name", ["fixed", "min"])
@pytest.mark.parametrize("call", ["encode_query", "encode_document", "encode"])
def test_token_vectors_equal_sentence_transformers(models: dict[str, Pair], name: str, call: str) -> None:
    pair = models[name]
    ours = getattr(pair.runtime, call)(TEXTS, batch_size=4)
    _assert_same_vectors(ours, _torch(pair.torch_model, call, TEXTS, batch_size=4))
    alone = [getattr(pair.runtime, call)(text) for text in TEXTS]  # one text alone == inside a batch
    for single, batched in zip(alone, ours):
        assert single.shape == batched.shape
        if len(single):
            assert row_cosines(single, batched).min() >= MIN_COSINE


def test_queries_are_expanded_and_documents_drop_punctuation(models: dict[str, Pair]) -> None:
    fixed, other = models["fixed"].runtime, models["min"].runtime
    assert {q.shape[0] for q in fixed.encode_query(TEXTS)} == {16}  # fixed: exactly the expansion length
    # min: at least the floor (no prompt here: its ':' is skiplisted on this model's queries)
    assert [q.shape[0] for q in other.encode_query(["Hi", "x"], prompt="")] == [12, 12]
    assert max(q.shape[0] for q in other.encode_query(TEXTS, prompt="")) == 24  # ... up to query_length
    row = other.prepare(["Hello, world!"], task="document", prompt_name="document").encoded.ids[0]
    ids = row[other.kept_positions(row, "document")]
    punctuation = set(other.late_interaction.skiplist_ids)
    assert punctuation and not punctuation & set(ids.tolist())
    assert len(row) > len(ids)
    assert other.encode_document("Hello, world!").shape[0] == len(ids)
    # documents are pooled: [CLS] kept, the other vectors halved
    row = fixed.prepare([TEXTS[6]], task="document", prompt_name="document").encoded.ids[0]
    kept = int(fixed.kept_positions(row, "document").sum())
    assert fixed.encode_document(TEXTS[6]).shape[0] == 1 + (kept - 1) // 2
    assert fixed.late_interaction.token_pooling == HierarchicalTokenPooling(2.0)


@pytest.mark.parametrize("task", ["query", "document"])
def test_preprocess_gives_sentence_transformers_model_inputs_per_task(models: dict[str, Pair], task: str) -> None:
    for pair in models.values():
        ours = pair.runtime.preprocess(TEXTS[:4], prompt="", task=task)
        theirs = pair.torch_model.preprocess(TEXTS[:4], prompt="", task=task)
        arrays = {name: value.numpy() for name, value in theirs.items() if hasattr(value, "numpy")}
        # every array sentence-transformers gives (query_expansion_positions was left out: which positions score)
        assert set(ours) == set(arrays), set(ours) ^ set(arrays)
        for name, value in ours.items():
            np.testing.assert_array_equal(value, arrays[name])


def test_similarity_and_rank_equal_sentence_transformers(models: dict[str, Pair]) -> None:
    queries, documents = TEXTS[8:], TEXTS[:7]  # distinct documents: no tied scores to order
    for pair in models.values():
        torch_q, torch_d = (
            _torch(pair.torch_model, "encode_query", queries),
            _torch(pair.torch_model, "encode_document", documents),
        )
        our_q, our_d = pair.runtime.encode_query(queries), pair.runtime.encode_document(documents)
        expected = pair.torch_model.similarity(torch_q, torch_d).numpy()
        np.testing.assert_allclose(pair.runtime.similarity(our_q, our_d), expected, rtol=1e-4, atol=1e-4)
        expected_pairs = pair.torch_model.similarity_pairwise(torch_q, torch_d[: len(torch_q)]).numpy()
        np.testing.assert_allclose(
            pair.runtime.similarity_pairwise(our_q, our_d[: len(our_q)]), expected_pairs, rtol=1e-4, atol=1e-4
        )
        assert pair.runtime.similarity_fn_name == pair.torch_model.similarity_fn_name
        for options in ({"length_normalize": True, "chunk_elements": 64}, {"length_normalize": False}):  # ST's kwargs
            np.testing.assert_allclose(
                pair.runtime.similarity(our_q, our_d, **options),
                pair.torch_model.similarity(torch_q, torch_d, **options).numpy(),
                rtol=1e-4,
                atol=1e-4,
            )
            np.testing.assert_allclose(
                pair.runtime.similarity_pairwise(our_q, our_d[: len(our_q)], **options),
                pair.torch_model.similarity_pairwise(torch_q, torch_d[: len(torch_q)], **options).numpy(),
                rtol=1e-4,
                atol=1e-4,
            )
        ranked = pair.runtime.rank(queries[0], documents, top_k=3, return_documents=True)
        order = np.argsort(-expected[0], kind="stable")[:3]
        assert [hit["corpus_id"] for hit in ranked] == order.tolist()
        np.testing.assert_allclose([hit["score"] for hit in ranked], expected[0, order], rtol=1e-4)
        assert ranked[0]["text"] == documents[order[0]]


def test_per_call_normalize_and_token_pooling(models: dict[str, Pair]) -> None:
    pair = models["min"]
    pooling = HierarchicalTokenPooling(2.0)
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling as TorchPooling

    ours = pair.runtime.encode_document(TEXTS[:6], token_pooling=pooling, normalize_embeddings=True)
    theirs = _torch(
        pair.torch_model, "encode_document", TEXTS[:6], token_pooling=TorchPooling(2.0), normalize_embeddings=True
    )
    _assert_same_vectors(ours, theirs)
    # sentence-transformers' own module works too, by its settings (it was refused, naming the class it was)
    torch_pooled = pair.runtime.encode_document(TEXTS[:6], token_pooling=TorchPooling(2.0), normalize_embeddings=True)
    _assert_same_vectors(torch_pooled, theirs)
    with pytest.raises(InputError, match=r"token_pooling must be .* got builtins\.int"):
        pair.runtime.encode_document(TEXTS[:1], token_pooling=2)
    queries = pair.runtime.encode_query(TEXTS[:3], token_pooling=pooling)  # pools documents only
    _assert_same_vectors(queries, _torch(pair.torch_model, "encode_query", TEXTS[:3]))


# -- precision: per-token codes from the artifact's calibration, never from the batch --------------
@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_per_token_vector_is_batch_independent(models: dict[str, Pair], precision: str) -> None:
    model = models["fixed"].runtime
    floats = model.encode_document(TEXTS)
    codes = model.encode_document(TEXTS, precision=precision)
    ranges = model.quantization_ranges if precision.endswith("int8") else None
    for code, vectors in zip(codes, floats):
        np.testing.assert_array_equal(code, quantize_embeddings(vectors, precision, ranges=ranges))
    for text, code in zip(TEXTS, codes):  # alone as in the batch, up to a code on an edge (other GEMM blocking)
        alone = model.encode_document(text, precision=precision)
        if precision.endswith("int8"):
            assert np.abs(alone.astype(np.int16) - code).max() <= 1 and (alone == code).mean() > 0.99
        else:
            assert np.unpackbits((alone ^ code).view(np.uint8)).sum() <= 1
    assert codes[0].shape[1] == (MULTI_VECTOR_DIM if precision.endswith("int8") else MULTI_VECTOR_DIM // 8)


def test_int8_without_calibration_names_the_fix(models: dict[str, Pair]) -> None:
    with pytest.raises(ArtifactError, match="fastembed-rt calibrate"):
        models["min"].runtime.encode_document("x", precision="int8")


@pytest.mark.parametrize("precision", ["float32", "int8", "ubinary", "binary"])
def test_semantic_search_maxsim_on_quantized_documents(models: dict[str, Pair], precision: str) -> None:
    model = models["fixed"].runtime
    queries = model.encode_query(TEXTS[8:])
    corpus = model.encode_document(TEXTS, precision=precision)
    ranges = model.quantization_ranges if precision == "int8" else None
    hits = util.semantic_search_maxsim(
        queries, corpus, top_k=4, corpus_precision=precision, ranges=ranges, corpus_chunk_size=3
    )
    assert [len(h) for h in hits] == [4] * len(queries)
    if precision == "float32":
        scores = util.maxsim(queries, corpus)
    elif precision == "int8":
        from fastembed_rt.quantization import dequantize_embeddings

        scores = util.maxsim(queries, [dequantize_embeddings(c, "int8", ranges) for c in corpus])
    else:
        raw = [c.view(np.uint8) ^ 0x80 if precision == "binary" else c for c in corpus]
        scores = util.maxsim(queries, [np.unpackbits(r, axis=1)[:, :MULTI_VECTOR_DIM] * 2.0 - 1 for r in raw])
    for q, row in enumerate(hits):
        expected = np.argsort(-scores[q], kind="stable")[:4]
        assert [h["corpus_id"] for h in row] == expected.tolist()
        np.testing.assert_allclose([h["score"] for h in row], scores[q, expected], rtol=1e-6)
    # codes read back from JSON or a database (lists of Python ints) give the same hits: binary ones ranked by
    # the wrong bits (their int64 bytes were read as the codes)
    as_lists = [c.tolist() for c in corpus]
    again = util.semantic_search_maxsim(queries, as_lists, top_k=4, corpus_precision=precision, ranges=ranges)
    assert again == util.semantic_search_maxsim(queries, corpus, top_k=4, corpus_precision=precision, ranges=ranges)
    float_hits = util.semantic_search_maxsim(queries, model.encode_document(TEXTS), top_k=1)
    if precision == "int8":  # int8 keeps the best document of most queries
        agree = np.mean([a[0]["corpus_id"] == b[0]["corpus_id"] for a, b in zip(hits, float_hits)])
        assert agree >= 0.5


def test_semantic_search_maxsim_reads_binary_codes_given_as_lists_and_refuses_codes_that_do_not_fit() -> None:
    """Codes of two or more bytes per token read back as lists of Python ints were ranked by the bytes of their
    int64 array (the first byte of each code right, the rest its sign)."""
    rng = np.random.default_rng(8)
    queries = [rng.standard_normal((4, 16)).astype(np.float32)]
    documents = [rng.standard_normal((n, 16)).astype(np.float32) for n in (3, 5, 2, 4)]
    signs = [np.where(d > 0, 1.0, -1.0).astype(np.float32) for d in documents]
    expected = np.argsort(-util.maxsim(queries, signs)[0], kind="stable").tolist()
    for precision in ("binary", "ubinary"):
        codes = [quantize_embeddings(d, precision).tolist() for d in documents]
        hits = util.semantic_search_maxsim(queries, codes, top_k=4, corpus_precision=precision)[0]
        assert [h["corpus_id"] for h in hits] == expected, precision
        # the same bytes read back as the other byte type (a database blob as uint8) score the same
        blobs = [
            np.frombuffer(
                quantize_embeddings(d, precision).tobytes(), np.uint8 if precision == "binary" else np.int8
            ).reshape(len(d), -1)
            for d in documents
        ]
        again = util.semantic_search_maxsim(queries, blobs, top_k=4, corpus_precision=precision)[0]
        assert [h["corpus_id"] for h in again] == expected, precision
    for precision, codes in (("binary", [[200, 0]]), ("ubinary", [[-1, 0]])):
        with pytest.raises(ValueError, match=f"corpus_precision '{precision}' codes are"):
            util.semantic_search_maxsim(queries, [codes], corpus_precision=precision)


def test_quantize_embeddings_on_lists_of_matrices_and_empty_input_as_sentence_transformers() -> None:
    from sentence_transformers import quantize_embeddings as st_quantize

    matrices = _ragged(5, 4, dim=16, empty=True)
    for precision in ("int8", "uint8", "binary", "ubinary", "float32"):
        ours = quantize_embeddings(matrices, precision)
        theirs = st_quantize(matrices, precision)
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert quantize_embeddings([], "int8") == st_quantize([], "int8") == []
    for precision in ("int8", "binary"):
        empty = np.zeros((0, 16), np.float32)
        assert quantize_embeddings(empty, precision).shape == st_quantize(empty, precision).shape


# -- artifact, task detection, errors -----------------------------------------------------------------
def test_a_saved_multi_vector_encoder_keeps_the_similarity_it_was_given(
    models: dict[str, Pair], tmp_path: Path
) -> None:
    """save() wrote the artifact's similarity: a model set to meanmaxsim came back as maxsim."""
    runtime = models["fixed"].runtime
    assert runtime.similarity_fn_name == "maxsim"
    runtime.similarity_fn_name = "meanmaxsim"
    try:
        saved = MultiVectorEncoder(runtime.save(tmp_path / "copy", variants="loaded"))
    finally:
        runtime.similarity_fn_name = "maxsim"
    assert saved.similarity_fn_name == "meanmaxsim"
    saved.close()


def test_manifest_records_task_stages_and_config(models: dict[str, Pair], tiny_multi_vector_dir: Path) -> None:
    manifest = json.loads((models["fixed"].artifact / "manifest.json").read_text())
    assert manifest["task"] == "multi-vector"
    assert manifest["graph"]["outputs"] == {"token_vectors": {"dtype": "float32", "dims": ["batch", "sequence", 8]}}
    late = manifest["stages"]["late_interaction"]
    assert late["query_length"] == 16 and late["document_length"] == 48
    assert late["query_expansion"]["strategy"] == "fixed" and late["query_expansion"]["attend"] is False
    assert late["skiplist_words"] == list(string.punctuation)
    assert manifest["stages"]["token_stages"]["normalize"] is True
    assert manifest["variants"][0]["fidelity"]["min_cosine"] >= MIN_COSINE
    assert manifest["calibration"]["texts"] == len(MULTI_VECTOR_CALIBRATION)
    assert detect_task(tiny_multi_vector_dir) is Task.MULTI_VECTOR


def test_errors_name_the_value_and_the_fix(models: dict[str, Pair], minilm_artifact_session: Path) -> None:
    model = models["fixed"].runtime
    with pytest.raises(InputError, match="maxsim"):
        model.similarity_fn_name = "cosine"
    with pytest.raises(InputError, match="task must be"):
        model.encode("x", task="passage")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="precision"):
        model.encode("x", precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no convert_to_tensor: each text has its own number"):  # ST: a ValueError
        model.encode(["a", "b c"], convert_to_tensor=True)
    with pytest.raises(ArtifactError, match="multi-vector"):
        MultiVectorEncoder(minilm_artifact_session)
    with pytest.raises(ArtifactError, match="multi-vector"):
        SentenceTransformer(models["fixed"].artifact)


def test_cli_info_and_encode_handle_multi_vector_artifacts(
    models: dict[str, Pair], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastembed_rt.cli import main

    artifact = str(models["fixed"].artifact)
    assert main(["info", artifact]) == 0
    info = capsys.readouterr().out
    assert "multi-vector" in info and "min cos" in info and "fp32" in info
    assert main(["encode", artifact, "Hello, world!", "--query"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    np.testing.assert_allclose(
        line["token_embeddings"], models["fixed"].runtime.encode_query("Hello, world!"), atol=1e-6
    )
    assert main(["encode", artifact, "Hello, world!", "A man.", "-o", str(tmp_path / "docs.npz")]) == 0
    with np.load(tmp_path / "docs.npz") as saved:
        first = saved["arr_0"]
    np.testing.assert_allclose(first, models["fixed"].runtime.encode_document("Hello, world!"), atol=1e-6)
    assert main(["encode", artifact, "x", "--truncate-dim", "4"]) == 2
    assert "--truncate-dim is for dense single-vector models" in capsys.readouterr().err
    # a text past the document length is counted, as the single-vector encode counts it (it was cut unsaid)
    assert main(["encode", artifact, "short", "word " * 2000]) == 0
    length = models["fixed"].runtime.document_length or models["fixed"].runtime.max_seq_length
    note = f"note: 1 of 2 texts were truncated to {length} tokens (token vectors are not chunked)"
    assert note in capsys.readouterr().err


def _pylate_v3(source: Path, out: Path) -> Path:
    """``source`` (a tiny MultiVectorEncoder) saved as PyLate 3 saves a ColBERT: its Dense named as pylate's, no
    Normalize or mask module, the ColBERT settings in config_sentence_transformers.json."""
    shutil.copytree(source, out)
    for folder in out.glob("*_Normalize"):
        shutil.rmtree(folder)
    for folder in out.glob("*_MultiVectorMask"):
        shutil.rmtree(folder)
    for folder in out.glob("*_HierarchicalTokenPooling"):
        shutil.rmtree(folder)
    (out / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    dense = {"in_features": HIDDEN_SIZE, "out_features": MULTI_VECTOR_DIM, "bias": False, "use_residual": False}
    (out / "1_Dense" / "config.json").write_text(
        json.dumps({**dense, "activation_function": "torch.nn.modules.linear.Identity"})
    )
    settings = {
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "MaxSim",
        "query_prefix": "[unused0]",
        "document_prefix": "[unused1]",
        "query_length": 16,
        "document_length": 48,
        "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation),
        "model_type": "ColBERT",
    }
    (out / "config_sentence_transformers.json").write_text(json.dumps(settings))
    return out


def _pylate_16(minilm_dir: Path, out: Path) -> Path:
    """A tiny ColBERT laid out as PyLate 1.6 (with sentence-transformers 5.3) saves one, file by file as a real save
    of ``pylate.models.ColBERT(<tiny BERT>).save`` (2026-12-06): its ``[Q] `` / ``[D] `` prefixes added to the
    vocabulary (not special, normalized) and the embeddings grown for them, ``[MASK]`` as the pad token, empty
    query/document prompts beside the prefixes, ``do_query_expansion``, the Dense under PyLate's class name.
    Checked then in a venv of its own: PyLate 1.6.0 loads this folder, and our export of it gives PyLate's token
    vectors within 3e-7 (same shapes); sentence-transformers 6.2 gives exactly PyLate's vectors on its real save.
    So sentence-transformers is the reference here: PyLate pins sentence-transformers 5.3 and cannot share this
    environment."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(str(minilm_dir))
    tokenizer.add_tokens(["[Q] ", "[D] "])
    tokenizer.pad_token = tokenizer.mask_token
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "1_Dense").mkdir()
    save_file(
        {"linear.weight": torch.randn(MULTI_VECTOR_DIM, HIDDEN_SIZE) * 0.2}, str(out / "1_Dense" / "model.safetensors")
    )
    dense = {"in_features": HIDDEN_SIZE, "out_features": MULTI_VECTOR_DIM, "bias": False}
    files: dict[str, Any] = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
        "1_Dense/config.json": {
            **dense,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
        },
        "sentence_bert_config.json": {"max_seq_length": 128, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "model_type": "ColBERT",
            "__version__": {"sentence_transformers": "5.3.0", "transformers": "5.3.0", "pytorch": "2.11.0"},
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": "[Q] ",
            "document_prefix": "[D] ",
            "query_length": 16,
            "document_length": 48,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
        },
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2))
    return out


def test_a_pylate_1_6_save_exports_and_encodes_as_pylate(tmp_path: Path, minilm_dir: Path) -> None:
    """The suite's other PyLate fixture keeps sentence-transformers 6's config keys; this one is what PyLate 1.6
    writes, prefixes added to the vocabulary and all (``_pylate_16``)."""
    from sentence_transformers import MultiVectorEncoder as TorchMultiVectorEncoder

    from fastembed_rt.export.multi_vector_encoder import export_multi_vector_encoder

    model_dir = _pylate_16(minilm_dir, tmp_path / "pylate")
    torch_model = TorchMultiVectorEncoder(str(model_dir), device="cpu")
    export_multi_vector_encoder(model_dir, tmp_path / "artifact", calibration_texts=[])
    runtime = MultiVectorEncoder(tmp_path / "artifact")
    for call in ("encode_query", "encode_document"):
        ours, theirs = getattr(runtime, call)(TEXTS), getattr(torch_model, call)(TEXTS, convert_to_numpy=True)
        for mine, reference in zip(ours, theirs, strict=True):
            assert mine.shape == np.asarray(reference).shape
            assert row_cosines(mine, np.asarray(reference)).min() >= 0.9999
    assert {len(rows) for rows in runtime.encode_query(TEXTS)} == {16}  # expanded with [MASK] to query_length
    runtime.close()


def test_a_pylate_colbert_exports_without_remote_code_and_encodes_as_sentence_transformers(
    tmp_path: Path, tiny_multi_vector_dir: Path
) -> None:
    """Refused twice: as remote code (pylate.models.Dense.Dense, which sentence-transformers reads as its own Dense,
    importing no pylate), then for its module order (sentence-transformers loads it as Transformer, Dense,
    MultiVectorMask, Normalize, as Stanford ColBERT checkpoints and its own default pipeline)."""
    from sentence_transformers import MultiVectorEncoder as TorchMultiVectorEncoder

    from fastembed_rt.export.multi_vector_encoder import export_multi_vector_encoder

    model_dir = _pylate_v3(tiny_multi_vector_dir, tmp_path / "pylate")
    torch_model = TorchMultiVectorEncoder(str(model_dir), device="cpu")
    assert [type(m).__name__ for m in torch_model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    export_multi_vector_encoder(model_dir, tmp_path / "artifact", calibration_texts=[])
    runtime = MultiVectorEncoder(tmp_path / "artifact")
    for call in ("encode_query", "encode_document"):
        ours, theirs = getattr(runtime, call)(TEXTS), getattr(torch_model, call)(TEXTS, convert_to_numpy=True)
        for mine, reference in zip(ours, theirs, strict=True):
            assert mine.shape == reference.shape
            assert row_cosines(mine, np.asarray(reference)).min() >= 0.9999
    runtime.close()
