"""CrossEncoder: the classifier head graph equals its reference; exported tiny random cross-encoders
(BERT, ELECTRA, XLM-R; 1 and 3 labels; each fused activation) score and rank as
``sentence_transformers.CrossEncoder`` does; bad input gets clear errors; export refuses what it
cannot fuse or what misses the gate.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import RunWithoutTorch
from onnx import TensorProto, helper
from tiny_heads import ACTIVATIONS, PAIRS, build_tiny_cross_encoder

from fastembed_rt import ArtifactError, CrossEncoder, ExportError, InputError, ParityError
from fastembed_rt.artifact import Task, load_manifest
from fastembed_rt.export import cross_encoder as cross_export
from fastembed_rt.export import detect_task, export_cross_encoder
from fastembed_rt.export.tasks import EXPORTERS, TaskExporter
from fastembed_rt.export.variants import VARIANTS
from fastembed_rt.kernels.onnx_heads import append_classifier_head
from fastembed_rt.kernels.reference import activate_scores
from fastembed_rt.kernels.spec import ClassifierActivation, ClassifierHeadSpec

TOLERANCE = 1e-4
# name: (architecture, num_labels, activation saved in the model; None: sentence-transformers' default)
# Together they fuse each activation, for one and for three labels.
CASES: dict[str, tuple[str, int, str | None]] = {
    "bert-1": ("bert", 1, None),
    "xlm-roberta-1-identity": ("xlm-roberta", 1, "identity"),
    "electra-3": ("electra", 3, None),
    "bert-3-softmax": ("bert", 3, "softmax"),
}
NLI_LABELS = ("contradiction", "entailment", "neutral")  # as an NLI cross-encoder's config names them
ONE_LABEL = [name for name, (_, labels, _) in CASES.items() if labels == 1]
QUERY = "How many people live in Berlin?"
DOCUMENTS = [pair[1] for pair in PAIRS]
RETRIEVAL = Path(__file__).resolve().parent.parent / "docs" / "retrieval.md"


@dataclass
class Exported:
    model_dir: Path
    artifact: Path
    torch_model: Any  # sentence_transformers.CrossEncoder
    runtime: CrossEncoder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Exported]]:
    """Build and export each case once per module, on first use."""
    from sentence_transformers import CrossEncoder as TorchCrossEncoder

    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            architecture, labels, activation = CASES[name]
            root = tmp_path_factory.mktemp(name)
            names = NLI_LABELS if name == "bert-3-softmax" else None
            model_dir = build_tiny_cross_encoder(root, architecture, labels, activation, labels=names)
            export_cross_encoder(model_dir, root / "artifact")
            cache[name] = Exported(
                model_dir,
                root / "artifact",
                TorchCrossEncoder(str(model_dir), device="cpu"),
                CrossEncoder(root / "artifact"),
            )
        return cache[name]

    yield get
    for item in cache.values():
        item.runtime.close()


def _torch_predict(model: Any, pairs: Any, **kwargs: Any) -> np.ndarray:
    with warnings.catch_warnings():
        # Softmax() saved without dim: torch warns that it picks the label axis, which is what we fuse.
        warnings.filterwarnings("ignore", message="Implicit dimension choice for softmax")
        return np.asarray(model.predict(pairs, show_progress_bar=False, **kwargs), dtype=np.float32)


# -- the head as data: graph == reference == torch ------------------------------------------------
def _logits(labels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, labels)).astype(np.float32) * 4
    logits[0] = 80.0  # saturating sigmoid, overflowing a naive softmax
    logits[1] = -80.0
    return logits


@pytest.mark.parametrize("labels", [1, 3])
@pytest.mark.parametrize("activation", list(ClassifierActivation), ids=lambda a: a.value)
def test_classifier_head_graph_equals_reference(activation: ClassifierActivation, labels: int) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", labels])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    counts = append_classifier_head(model, ClassifierHeadSpec(labels, activation))
    onnx.checker.check_model(model)
    assert counts.head == f"classifier:{activation.value}" and counts.nodes >= 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = _logits(labels)
    raw, scores = session.run(["logits", "scores"], {"x": logits})
    np.testing.assert_array_equal(raw, logits)
    np.testing.assert_allclose(scores, activate_scores(logits, activation), rtol=1e-6, atol=1e-7)


def test_reference_activations_equal_torch() -> None:
    logits = _logits(3)
    x = torch.from_numpy(logits)
    np.testing.assert_allclose(activate_scores(logits, ClassifierActivation.SIGMOID), torch.sigmoid(x), atol=1e-7)
    np.testing.assert_allclose(activate_scores(logits, ClassifierActivation.SOFTMAX), x.softmax(-1), atol=1e-7)
    np.testing.assert_array_equal(activate_scores(logits, ClassifierActivation.IDENTITY), logits)


def test_an_activation_called_on_a_tensor_acts_as_the_torch_module_keeping_dtype_and_gradient() -> None:
    """CrossEncoder.activation_fn stands in for sentence-transformers' torch module: it returned float32 for every
    input and cut the gradient."""
    modules = {"sigmoid": torch.nn.Sigmoid(), "softmax": torch.nn.Softmax(dim=-1), "identity": torch.nn.Identity()}
    for dtype in (torch.float64, torch.float16, torch.float32):
        x = torch.from_numpy(_logits(3)).to(dtype).requires_grad_()
        for name, module in modules.items():
            ours, theirs = ClassifierActivation(name)(x), module(x)
            assert ours.dtype == theirs.dtype == dtype and ours.requires_grad
            torch.testing.assert_close(ours, theirs)


# -- parity with sentence-transformers -------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_scores_with_the_models_own_activation_match_sentence_transformers(
    case: str, exported: Callable[[str], Exported]
) -> None:
    model = exported(case)
    ours = model.runtime.predict(PAIRS)
    ref = _torch_predict(model.torch_model, PAIRS)
    assert ours.shape == ref.shape == ((len(PAIRS),) if CASES[case][1] == 1 else (len(PAIRS), 3))
    assert np.abs(ours - ref).max() <= TOLERANCE
    fused = model.runtime.manifest.stages["classifier"]["activation"]
    assert fused == (CASES[case][2] or ("sigmoid" if CASES[case][1] == 1 else "identity"))


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("case", ["bert-1", "xlm-roberta-1-identity", "electra-3"])
def test_each_activation_per_call_matches_sentence_transformers(
    case: str, activation: str, exported: Callable[[str], Exported]
) -> None:
    model = exported(case)
    ref = _torch_predict(model.torch_model, PAIRS, activation_fn=ACTIVATIONS[activation]())
    by_name = model.runtime.predict(PAIRS, activation_fn=activation)
    by_module = model.runtime.predict(PAIRS, activation_fn=ACTIVATIONS[activation]())
    by_callable = model.runtime.predict(
        PAIRS, activation_fn=lambda x: activate_scores(x, ClassifierActivation(activation))
    )
    for ours in (by_name, by_module, by_callable):
        assert np.abs(ours - ref).max() <= TOLERANCE


@pytest.mark.parametrize("case", ["electra-3", "bert-3-softmax"])
def test_apply_softmax_matches_sentence_transformers(case: str, exported: Callable[[str], Exported]) -> None:
    model = exported(case)
    ours = model.runtime.predict(PAIRS, apply_softmax=True)
    ref = _torch_predict(model.torch_model, PAIRS, apply_softmax=True)
    assert np.abs(ours - ref).max() <= TOLERANCE
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("top_k", [None, 3, 100])
@pytest.mark.parametrize("case", ONE_LABEL)
def test_rank_matches_sentence_transformers(case: str, top_k: int | None, exported: Callable[[str], Exported]) -> None:
    model = exported(case)
    ours = model.runtime.rank(QUERY, DOCUMENTS, top_k=top_k, return_documents=True)
    ref = model.torch_model.rank(QUERY, DOCUMENTS, top_k=top_k, return_documents=True)
    assert [r["corpus_id"] for r in ours] == [r["corpus_id"] for r in ref]
    assert [r["text"] for r in ours] == [r["text"] for r in ref]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(ours, ref)) <= TOLERANCE
    assert all(isinstance(r["score"], float) for r in ours)


@pytest.mark.parametrize("case", ["bert-1", "xlm-roberta-1-identity"])
def test_pairs_tokenize_as_sentence_transformers_does(case: str, exported: Callable[[str], Exported]) -> None:
    model = exported(case)
    assert model.runtime.max_seq_length == model.torch_model.max_seq_length
    features = model.torch_model.preprocess(PAIRS)
    encoded = model.runtime._tokenizer.encode(PAIRS)
    mask = features["attention_mask"].numpy().astype(bool)
    expected = [row[m].tolist() for row, m in zip(features["input_ids"].numpy(), mask)]
    assert [ids.tolist() for ids in encoded.ids] == expected
    if "token_type_ids" in features:
        expected_types = [row[m].tolist() for row, m in zip(features["token_type_ids"].numpy(), mask)]
        assert [t.tolist() for t in encoded.type_ids] == expected_types
    assert max(len(ids) for ids in encoded.ids) == model.runtime.max_seq_length  # over-long pairs were cut


def test_scores_do_not_depend_on_batching_or_order(exported: Callable[[str], Exported]) -> None:
    runtime = exported("electra-3").runtime
    together = runtime.predict(PAIRS, batch_size=32)
    one_by_one = runtime.predict(PAIRS, batch_size=1)
    reversed_ = runtime.predict(PAIRS[::-1], batch_size=4)[::-1]
    np.testing.assert_allclose(one_by_one, together, atol=1e-6)
    np.testing.assert_allclose(reversed_, together, atol=1e-6)
    assert runtime.last_encode_stats.texts == len(PAIRS) and runtime.last_encode_stats.truncated == 3


def test_single_pairs_lists_and_options(exported: Callable[[str], Exported]) -> None:
    one, three = exported("bert-1"), exported("electra-3")
    single = one.runtime.predict(PAIRS[0])
    assert np.ndim(single) == 0 and abs(float(single) - float(_torch_predict(one.torch_model, PAIRS[0]))) <= TOLERANCE
    assert one.runtime.predict(list(PAIRS[0])) == single
    assert three.runtime.predict(PAIRS[0]).shape == (3,)
    as_list = three.runtime.predict(PAIRS, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(PAIRS) and as_list[0].shape == (3,)
    assert three.runtime.predict(np.array(PAIRS)).shape == (len(PAIRS), 3)
    short = CrossEncoder(one.artifact, max_length=8)
    assert short.max_length == 8 and max(len(i) for i in short._tokenizer.encode(PAIRS).ids) == 8
    short.close()


def test_texts_alone_score_as_sentence_transformers_scores_them(exported: Callable[[str], Exported]) -> None:
    """A str is one text scored alone (a sequence classifier), also inside a list of pairs; they were refused."""
    model = exported("bert-1")
    runtime, reference = model.runtime, model.torch_model
    single = runtime.predict(QUERY)
    assert np.ndim(single) == 0
    assert abs(float(single) - float(_torch_predict(reference, QUERY))) <= TOLERANCE
    mixed = [PAIRS[0], QUERY, PAIRS[1], DOCUMENTS[0]]
    scores = runtime.predict(mixed)
    np.testing.assert_allclose(scores, _torch_predict(reference, mixed), atol=TOLERANCE)
    np.testing.assert_allclose(scores[[0, 1]], [runtime.predict(PAIRS[0]), single], atol=1e-6)  # as scored alone


def test_manifest_states_the_head_and_its_measured_fidelity(exported: Callable[[str], Exported]) -> None:
    manifest = exported("bert-3-softmax").runtime.manifest
    assert manifest.task == "cross-encoder" and manifest.dim == 3
    assert manifest.stages == {"classifier": {"num_labels": 3, "activation": "softmax", "labels": list(NLI_LABELS)}}
    assert exported("bert-3-softmax").runtime.labels == NLI_LABELS  # the config's id2label, in id order
    assert exported("electra-3").runtime.labels == ("LABEL_0", "LABEL_1", "LABEL_2")  # transformers' defaults
    assert set(manifest.graph.outputs) == {"logits", "scores"}
    assert manifest.graph.inputs == ("input_ids", "attention_mask", "token_type_ids")
    fidelity = manifest.variants[0].fidelity
    assert fidelity["checked"] > 0 and fidelity["max_abs_diff"] <= TOLERANCE
    assert manifest.variants[0].stage_counts["head"] == "classifier:softmax"


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("a", "b", "c")], r"inputs\[0\] is a tuple of 3 items; a pair has exactly 2"),
        ([("a", "b"), ("c",)], r"inputs\[1\] is a tuple of 1 items"),
        (("a", "b", "c"), r"inputs is a tuple of 3 items"),
        ([("a", None)], r"inputs\[0\]\[1\] is None, expected str"),
        ([("a", "b"), 3], r"inputs\[1\] is int; expected a \(query, document\) pair of two str, or a str"),
        (["a text"], r"inputs is a list of 1 items; a pair has exactly 2"),  # a list of str is one pair, as in ST
        (None, r"inputs is None"),
        (42, r"must be a pair, a text or a list of them, got int"),
    ],
)
def test_bad_pairs_raise_input_error_naming_the_position(
    inputs: Any, message: str, exported: Callable[[str], Exported]
) -> None:
    with pytest.raises(InputError, match=message):
        exported("bert-1").runtime.predict(inputs)


def test_a_saved_cross_encoder_loads_offline_and_scores_the_same(
    exported: Callable[[str], Exported], tmp_path: Path
) -> None:
    model = CrossEncoder(exported("bert-1").artifact, max_length=24)
    saved = CrossEncoder(model.save(tmp_path / "copy", variants="loaded"))
    assert [v.name for v in saved.manifest.variants] == [model.variant] and saved.max_length == 24
    np.testing.assert_array_equal(saved.predict(PAIRS), model.predict(PAIRS))


def test_a_saved_cross_encoder_keeps_its_activation_fn_as_sentence_transformers_does(
    exported: Callable[[str], Exported], tmp_path: Path
) -> None:
    """save() kept max_length but dropped activation_fn: the copy scored with the fused sigmoid again."""
    artifact = exported("bert-1").artifact
    logits = CrossEncoder(artifact, activation_fn="identity")
    copy = CrossEncoder(logits.save(tmp_path / "identity"))
    assert copy.activation_fn is ClassifierActivation.IDENTITY
    np.testing.assert_array_equal(copy.predict(PAIRS), logits.predict(PAIRS))
    back = CrossEncoder(copy.save(tmp_path / "sigmoid"), activation_fn="sigmoid")  # a per-load choice still wins
    np.testing.assert_array_equal(back.predict(PAIRS), CrossEncoder(artifact).predict(PAIRS))
    resaved = json.loads((back.save(tmp_path / "again") / "manifest.json").read_text())["stages"]["classifier"]
    assert "default_activation" not in resaved  # the fused activation again: nothing extra written
    # Any other callable cannot be written: save refuses rather than write a copy that scores with sigmoid (it warned)
    custom = CrossEncoder(artifact, activation_fn=np.tanh)
    with pytest.raises(InputError, match=r"cannot be saved in an artifact .* set model\.activation_fn"):
        custom.save(tmp_path / "custom")
    assert not (tmp_path / "custom").exists()
    custom.activation_fn = "identity"
    copy = CrossEncoder(custom.save(tmp_path / "custom"), activation_fn=np.tanh)
    np.testing.assert_allclose(copy.predict(PAIRS), np.tanh(logits.predict(PAIRS)), rtol=1e-6)


def test_predict_edge_cases(exported: Callable[[str], Exported]) -> None:
    model = exported("bert-1")
    empty = model.runtime.predict([])
    assert empty.shape == _torch_predict(model.torch_model, []).shape == (0,)
    assert model.runtime.predict([], convert_to_numpy=False) == []
    import torch  # imported by this test process's PyTorch reference already; the runtime uses it, never imports it

    scores = model.runtime.predict(PAIRS, convert_to_tensor=True)
    assert isinstance(scores, torch.Tensor)
    np.testing.assert_array_equal(scores.numpy(), model.runtime.predict(PAIRS))
    one = model.runtime.predict(PAIRS[0], convert_to_tensor=True)
    assert isinstance(one, torch.Tensor) and one.shape == torch.Size([]) and float(one) == scores[0]
    with pytest.raises(InputError, match="activation_fn 'tanh' is not known; valid: identity, sigmoid, softmax"):
        model.runtime.predict(PAIRS, activation_fn="tanh")
    with pytest.raises(InputError, match="batch_size"):
        model.runtime.predict(PAIRS, batch_size=0)
    with pytest.raises(InputError, match="max_seq_length must be a positive int, got 0"):
        CrossEncoder(model.artifact, max_length=0)
    with pytest.raises(InputError, match="adds 3 special tokens to each pair; use at least 5"):  # [CLS] q [SEP] d [SEP]
        CrossEncoder(model.artifact, max_length=4)
    assert CrossEncoder(model.artifact, max_length=5).predict([("a long query " * 20, "a document " * 30)]).shape == (
        1,
    )


def test_rank_edge_cases_match_sentence_transformers_where_it_defines_them(exported: Callable[[str], Exported]) -> None:
    model = exported("bert-1")
    runtime, reference = model.runtime, model.torch_model
    assert runtime.rank(QUERY, []) == reference.rank(QUERY, []) == []
    assert len(runtime.rank(QUERY, DOCUMENTS, top_k=1000)) == len(DOCUMENTS)
    assert runtime.rank(QUERY, DOCUMENTS, top_k=0) == reference.rank(QUERY, DOCUMENTS, top_k=0) == []
    ties = runtime.rank(QUERY, ["same", "other", "same"])
    same = [r["corpus_id"] for r in ties if r["corpus_id"] != 1]
    assert same == [0, 2], "equal scores keep the documents' order, as sentence-transformers' stable sort"
    for bad_top_k in (-1, 1.5, True):
        with pytest.raises(InputError, match="top_k must be None or an int >= 0"):
            runtime.rank(QUERY, DOCUMENTS, top_k=bad_top_k)  # type: ignore[arg-type]
    top = runtime.rank(QUERY, DOCUMENTS, top_k=np.int64(1))  # a numpy int, as sentence-transformers takes it
    assert [r["corpus_id"] for r in top] == [r["corpus_id"] for r in reference.rank(QUERY, DOCUMENTS, top_k=1)]
    with pytest.raises(InputError, match="documents must be a list of str, got a str"):
        runtime.rank(QUERY, "one document")
    with pytest.raises(InputError, match=r"documents\[1\] is None"):
        runtime.rank(QUERY, ["a", None])  # type: ignore[list-item]
    with pytest.raises(InputError, match="query must be a str"):
        runtime.rank(None, DOCUMENTS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_labels=1 \(this one has 3\)"):
        exported("electra-3").runtime.rank(QUERY, DOCUMENTS)


def test_other_tasks_are_refused_by_the_loader(exported: Callable[[str], Exported]) -> None:
    from fastembed_rt import SentenceTransformer, SparseEncoder

    artifact = exported("bert-1").artifact
    with pytest.raises(ArtifactError, match="holds a 'cross-encoder' model; SparseEncoder loads 'sparse' artifacts"):
        SparseEncoder(artifact)
    with pytest.raises(ArtifactError, match="holds a 'cross-encoder' model"):
        SentenceTransformer(artifact)


# -- export refusals and the CLI ------------------------------------------------------------------
def test_an_activation_that_cannot_be_fused_is_refused(tmp_path: Path) -> None:
    model_dir = build_tiny_cross_encoder(tmp_path / "m", "bert", 1)
    config_path = model_dir / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text())
    config["activation_fn"] = "torch.nn.modules.activation.Tanh"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"activation_fn Tanh\(\) cannot be fused; supported: Identity, Sigmoid"):
        export_cross_encoder(model_dir, tmp_path / "artifact")
    assert not (tmp_path / "artifact").exists()


def test_a_head_that_disagrees_with_torch_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_cross_encoder(tmp_path / "m", "bert", 1)
    real = cross_export.append_classifier_head

    def identity_instead_of_sigmoid(model: onnx.ModelProto, spec: ClassifierHeadSpec, **kwargs: Any) -> Any:
        return real(model, ClassifierHeadSpec(spec.num_labels, ClassifierActivation.IDENTITY), **kwargs)

    monkeypatch.setattr(cross_export, "append_classifier_head", identity_instead_of_sigmoid)
    with pytest.raises(ParityError) as info:
        export_cross_encoder(model_dir, tmp_path / "artifact")
    failures = info.value.failures
    assert len(failures) > 1 and all("scores of" in line for line in failures), "logits agree; every score is listed"
    assert "nothing was written" in str(info.value)
    assert not (tmp_path / "artifact").exists() and not list(tmp_path.glob(".artifact.tmp-*"))


def test_detect_task_and_cli_export_dispatch(
    tmp_path: Path, exported: Callable[[str], Exported], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from fastembed_rt.cli import main

    model = exported("bert-1")
    model_dir = model.model_dir
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def fake_export(source: str, out: str, **kwargs: Any) -> Any:
        calls.append((source, out, kwargs))
        shutil.copytree(model.artifact, out)
        return load_manifest(out)

    monkeypatch.setitem(EXPORTERS, Task.CROSS_ENCODER, TaskExporter(fake_export))
    assert detect_task(model_dir) == "cross-encoder"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(
        json.dumps({"architectures": ["XLMRobertaForSequenceClassification"]})
    )
    assert detect_task(tmp_path / "plain") == "cross-encoder"
    (tmp_path / "plain" / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    assert detect_task(tmp_path / "plain") == "sparse"
    assert main(["export", str(model_dir), str(tmp_path / "cli-artifact"), "--no-stsb"]) == 0
    (source, out, options) = calls[0]
    assert (source, out) == (str(model_dir), str(tmp_path / "cli-artifact")), "auto-detected: the cross-encoder export"
    assert "stsb" not in options, "only bi-encoders score STSb"
    assert main(["export", str(model_dir), str(tmp_path / "cli-2"), "--task", "cross-encoder"]) == 0
    assert len(calls) == 2


_NO_TORCH = """
import json
from fastembed_rt import CrossEncoder, SparseEncoder, hybrid
model = CrossEncoder(sys.argv[1])
ranked = model.rank("How many people live in Berlin?", ["Berlin had 3.5 million people.", "Museums."])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"ranked": [r["corpus_id"] for r in ranked], "heavy": heavy}))
"""


def test_runtime_scores_with_torch_unimportable(
    exported: Callable[[str], Exported], run_without_torch: RunWithoutTorch
) -> None:
    result = run_without_torch(_NO_TORCH, str(exported("bert-1").artifact))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(out["ranked"]) == [0, 1] and out["heavy"] == []


# -- the docs' retrieve-and-rerank example ------------------------------------------------------
def test_docs_retrieve_and_rerank_example_runs(
    minilm_artifact_session: Path, exported: Callable[[str], Exported], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``py`` block (not run by test_readme: no real reranker ships offline) runs with a tiny random one."""
    blocks = [
        b for b in re.findall(r"```py\n(.*?)```", RETRIEVAL.read_text(encoding="utf-8"), flags=re.S) if "rerank" in b
    ]
    assert len(blocks) == 1
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "all-MiniLM-L6-v2").symlink_to(minilm_artifact_session)
    (tmp_path / "artifacts" / "ms-marco-MiniLM-L6-v2").symlink_to(exported("bert-1").artifact)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/retrieval.md retrieve-and-rerank", "exec"), {"__name__": "__readme__"})


# -- optimized variant ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_optimized_variant_is_fused_and_scores_as_torch_does(case: str, exported: Callable[[str], Exported]) -> None:
    item = exported(case)
    manifest = load_manifest(item.artifact)
    optimized = manifest.variant("optimized")
    ops = [n.op_type for n in onnx.load(str(item.artifact / optimized.file)).graph.node]
    assert ops.count("Attention") == optimized.stage_counts["fused_ops"]["Attention"] > 0
    assert optimized.fidelity["checked"] == manifest.variant("fp32").fidelity["checked"]  # the fp32 graph's grid
    runtime = CrossEncoder(item.artifact, variant="optimized")
    for identity in (False, True):
        ours = np.asarray(runtime.predict(PAIRS, activation_fn="identity" if identity else None))
        reference = _torch_predict(
            item.torch_model, PAIRS, **({"activation_fn": torch.nn.Identity()} if identity else {})
        )
        np.testing.assert_allclose(ours, reference, atol=TOLERANCE, rtol=TOLERANCE)
    runtime.close()


def test_int8_calibrates_on_stsb_train_pairs_never_on_the_held_out_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastembed_rt import stsb
    from fastembed_rt.export.heads import calibration_items

    for split in ("train", "dev"):
        rows = [f"{split} query {i},{split} document {i},{i % 5}.0" for i in range(1000)]
        (tmp_path / f"stsb-en-{split}.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv(stsb.STSB_ENV, str(tmp_path))
    pairs = calibration_items(Task.CROSS_ENCODER, count=256)
    assert len(pairs) == 256 and len(set(pairs)) == 256
    numbers = []
    for pair in pairs:
        assert isinstance(pair, tuple)
        number = pair[0].rsplit(" ", 1)[-1]
        assert pair == (f"train query {number}", f"train document {number}")  # a pair of one row, from train
        numbers.append(int(number))
    assert max(numbers) > 900, "spread over the split, not its first rows"
    texts = calibration_items(Task.SPARSE, count=100)
    assert len(texts) == 100 and all(isinstance(t, str) and t.startswith("train ") for t in texts)
    assert any("document" in t for t in texts) and any("query" in t for t in texts)
    # without the data: the grid's non-empty texts, paired for a cross-encoder
    monkeypatch.setattr(stsb, "find_stsb_dir", lambda path=None, file_name=None: None)
    fallback = calibration_items(Task.CROSS_ENCODER)
    assert fallback and all(isinstance(p, tuple) and p[0] and p[1] and p[0] != p[1] for p in fallback)


def test_int8_exports_without_stsb_gated_on_the_parity_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no STSb (--no-stsb offline, or none found) the pairs were the 12 parity pairs, fewer than the 16 the
    batch-invariance check took: a ValueError from numpy's reshape ended the export."""
    from fastembed_rt import stsb

    monkeypatch.setattr(stsb, "find_stsb_dir", lambda path=None, file_name=None: None)
    monkeypatch.setattr(stsb, "_hub_failure", "offline (this test)")
    architecture, labels, activation = CASES["bert-1"]
    model_dir = build_tiny_cross_encoder(tmp_path, architecture, labels, activation)
    manifest = export_cross_encoder(model_dir, tmp_path / "artifact", variants="fp32,int8")
    shipped = {v.name: v for v in manifest.variants}
    rejected = {r["name"] for r in manifest.rejected_variants}
    assert "int8" in shipped or "int8" in rejected  # gated, either way, not crashed
    if "int8" in shipped:
        assert shipped["int8"].fidelity["pairs"] == 12


# -- int8 variant ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["bert-1", "bert-3-softmax"])
def test_int8_variant_ranks_as_torch_does_and_states_its_fidelity(case: str, tmp_path: Path) -> None:
    """int8 and int8-avx2 (weights in [-64, 64], for x86 without VNNI): the same scheme and gate."""
    min_score_spearman = VARIANTS[Task.CROSS_ENCODER]["int8"].gate.min_score_spearman
    architecture, labels, activation = CASES[case]
    model_dir = build_tiny_cross_encoder(tmp_path, architecture, labels, activation)
    manifest = export_cross_encoder(model_dir, tmp_path / "artifact", variants="fp32,int8,int8-avx2")
    assert [v.name for v in manifest.variants] == ["fp32", "int8", "int8-avx2"], manifest.rejected_variants
    torch_model = _load_torch_cross_encoder(model_dir)
    reference = _torch_predict(torch_model, PAIRS).reshape(len(PAIRS), -1)
    for name, limit in (("int8", 127), ("int8-avx2", 64)):
        int8 = manifest.variant(name)
        assert int8.fidelity["score_spearman"] >= min_score_spearman and int8.fidelity["pairs"] >= 12
        assert int8.fidelity["batch_invariance_max_abs_diff"] <= TOLERANCE
        # the per-row 8-bit GEMM scheme, calibrated on pairs, the classifier's dense layers left float
        assert int8.optimization.startswith("ort-transformers+smoothquant-int8"), int8.stage_counts.get("other_schemes")
        assert int8.stage_counts["calibration_texts"] == 256 and int8.stage_counts["excluded_matmuls"] == []
        assert int8.stage_counts["weight_limit"] == limit
        ops = [n.op_type for n in onnx.load(str(tmp_path / "artifact" / int8.file)).graph.node]
        assert ops.count("MatMulIntegerToFloat") == int8.stage_counts["quantized_matmuls"] > 0
        assert (
            "MatMulNBits" not in ops
            and ops.count("MultiHeadAttention") == int8.stage_counts["fused_ops"]["MultiHeadAttention"]
        )
        runtime = CrossEncoder(tmp_path / "artifact", variant=name)
        ours = np.asarray(runtime.predict(PAIRS)).reshape(len(PAIRS), -1)
        alone = np.asarray(runtime.predict(PAIRS, batch_size=1)).reshape(len(PAIRS), -1)
        runtime.close()
        # The tiny random heads score these few pairs almost alike, so near-ties may swap under int8: the
        # export gate ranks 268 pairs; here every score stays within 1e-3 of torch (the gate allows more).
        np.testing.assert_allclose(ours, reference, atol=1e-3)
        np.testing.assert_allclose(alone, ours, atol=TOLERANCE)
    assert not (tmp_path / "artifact" / "onnx" / "backbone.onnx").exists()
    assert CrossEncoder(tmp_path / "artifact").variant == "fp32", "auto keeps the exact graph"


def test_int8_variant_that_misses_its_gate_is_recorded_and_not_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    architecture, labels, activation = CASES["bert-1"]
    model_dir = build_tiny_cross_encoder(tmp_path, architecture, labels, activation)
    int8 = VARIANTS[Task.CROSS_ENCODER]["int8"]
    unreachable = dataclasses.replace(int8.gate, min_score_spearman=1.01)  # no graph can reach it
    monkeypatch.setitem(VARIANTS[Task.CROSS_ENCODER], "int8", dataclasses.replace(int8, gate=unreachable))
    manifest = export_cross_encoder(model_dir, tmp_path / "artifact", variants=["int8"])
    assert [v.name for v in manifest.variants] == ["fp32"]
    (rejected,) = manifest.rejected_variants
    assert rejected["name"] == "int8" and rejected["fidelity"]["score_spearman"] < 1.01
    assert rejected["reasons"][0].count("score Spearman vs PyTorch") == 3, "every exclusion step is listed"
    assert sorted(p.name for p in (tmp_path / "artifact" / "onnx").iterdir()) == ["model.onnx", "model.onnx.data"]
    with pytest.raises(ArtifactError, match="int8"):
        CrossEncoder(tmp_path / "artifact", variant="int8")


def test_head_variants_other_than_fp32_optimized_and_int8_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"unknown variant\(s\) fp16 for cross-encoder artifacts; valid: fp32, optimized, int8"
    ):
        export_cross_encoder(tmp_path / "no-model-needed", tmp_path / "artifact", variants="int8,fp16")
    assert not (tmp_path / "artifact").exists()


def _load_torch_cross_encoder(model_dir: Path) -> Any:
    from sentence_transformers import CrossEncoder as TorchCrossEncoder

    return TorchCrossEncoder(str(model_dir), device="cpu")


def test_left_truncation_scores_as_sentence_transformers_truncation_side_left(tmp_path: Path) -> None:
    """docs/python-api.md promises truncation_direction on predict and rank: both raised a TypeError."""
    from sentence_transformers import CrossEncoder as TorchCrossEncoder

    # weights wide enough (std 0.5) that which tokens a pair keeps shows in its score
    model_dir = build_tiny_cross_encoder(tmp_path, "bert", 1, "identity", initializer_range=0.5)
    export_cross_encoder(model_dir, tmp_path / "artifact", variants="fp32")
    torch_model = TorchCrossEncoder(str(model_dir), device="cpu")
    torch_model.tokenizer.truncation_side = "left"
    long_doc = " ".join(f"word{i} museum river" for i in range(60))  # far past max_length 64
    pairs = [(QUERY, long_doc), (QUERY, "Berlin is a city."), ("a long query " * 20, long_doc)]
    expected = _torch_predict(torch_model, pairs)
    runtime = CrossEncoder(tmp_path / "artifact")
    right = runtime.predict(pairs)
    left = runtime.predict(pairs, truncation_direction="left")
    np.testing.assert_allclose(left, expected, atol=TOLERANCE)
    assert np.abs(left - right)[[0, 2]].min() > 10 * TOLERANCE  # the truncated pairs' scores moved
    ranked = runtime.rank(QUERY, [long_doc, "Berlin is a city."], truncation_direction="left")
    assert {r["corpus_id"]: r["score"] for r in ranked} == pytest.approx({0: left[0], 1: left[1]}, abs=1e-6)
    runtime.close()


def test_rank_takes_sentence_transformers_arguments_by_position(exported: Callable[[str], Exported]) -> None:
    """ST's order ends activation_fn, device, pool, chunk_size: long_inputs sat where device goes ("cpu" refused)."""
    runtime = exported("bert-1").runtime
    by_position = runtime.rank(QUERY, DOCUMENTS, 2, True, None, None, 8, False, "identity", "cpu", None, None)
    by_name = runtime.rank(QUERY, DOCUMENTS, top_k=2, return_documents=True, activation_fn="identity", device="cpu")
    assert by_position == by_name and len(by_position) == 2 and "text" in by_position[0]


def test_table_inputs_are_read_as_rows_or_refused_never_as_their_column_names(tiny_reranker_artifact: Path) -> None:
    """rank(query, DataFrame or dict) ranked the column names or keys, silently; list(df.values) (numpy rows) was
    'a list of 3 items'; a missing value was 'float'."""
    import pandas as pd

    model = CrossEncoder(tiny_reranker_artifact)
    df = pd.DataFrame({"query": ["q1", "q2", "q3"], "document": ["d1", "d2", "d3"]})
    for table in (df[["document"]], {"a": "first document", "b": "second"}):
        with pytest.raises(InputError, match=r"documents is a (DataFrame|dict), whose iteration gives its keys"):
            model.rank("q", table)  # type: ignore[arg-type]
    np.testing.assert_array_equal(model.predict(list(df.values)), model.predict(df.values.tolist()))
    np.testing.assert_array_equal(model.predict(list(df.values)[:2]), model.predict(df.values.tolist()[:2]))
    missing = r"is NaN, expected str \(a missing value: drop or fill them first"
    with pytest.raises(InputError, match=rf"documents\[1\] {missing}"):
        model.rank("q", pd.Series(["d1", float("nan")]))
    with pytest.raises(InputError, match=r"inputs\[1\]\[1\] is NA, expected str \(a missing value"):
        model.predict(list(zip(df["query"], pd.Series(["d1", None, "d3"], dtype="string"))))
    # a 0-d array's tolist() is one str: it was ranked, or scored, character by character
    with pytest.raises(InputError, match="documents is a 0-d array"):
        model.rank("q", np.array("a cat sleeps on the mat"))
    with pytest.raises(InputError, match="inputs is a 0-d array"):
        model.predict(np.array("a cat sleeps"))
    model.close()


def test_cli_rank_of_a_classifier_says_what_the_command_line_can_do(
    exported: Callable[[str], Exported], capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the library's advice to use predict(), which the command line has not."""
    from fastembed_rt.cli import main

    artifact = str(exported("bert-3-softmax").runtime.manifest.root)
    assert main(["rank", artifact, "q", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert "scores 3 labels per pair (a classifier); rank orders documents by a reranker's one score" in err
    assert "use predict()" not in err
