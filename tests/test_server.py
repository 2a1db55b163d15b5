"""``fastembed-rt serve`` as a real process on 127.0.0.1: every route answers what the library answers
on the same artifact (plain HTTP and the official ``openai`` client), concurrent requests never mix,
overload is refused with 429 at once, bad input gets its status and message (a bug: a JSON 500), the API
key guards every route but /health, a client that leaves has its inputs dropped (queued or between model
calls), and SIGTERM drains: past --graceful-timeout, or while models load, the process still exits 0.

All load is bounded (a few hundred requests) and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import RunWithoutTorch

from fastembed_rt import CrossEncoder, MultiVectorEncoder, SentenceTransformer, SparseEncoder
from fastembed_rt.providers.threads import default_streams

pytest.importorskip("starlette", reason="the server extra is not installed")

STARTUP_TIMEOUT_S = 90
SERVING_DOC = Path(__file__).resolve().parent.parent / "docs" / "serving.md"
TEXTS = [
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "Stocks fell sharply after the announcement.",
    "Berlin had a population of 3,520,031 in 2019.",
]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PortTaken(Exception):
    """The port ``_free_port`` found was taken by another process before the server bound it."""


@contextlib.contextmanager
def serving(*models: str | Path, args: tuple[str, ...] = ()) -> Iterator[Server]:
    """Start ``python -m fastembed_rt.server`` on a free loopback port; stop it (SIGTERM, then kill).

    The port is free when chosen, not always when the server binds it (other test runs on this machine): a server
    that exits on "address already in use" is started again on another port, twice at most."""
    for attempt in range(3):
        try:
            with _serving_on(_free_port(), models, args, retry=attempt < 2) as running:
                yield running
            return
        except _PortTaken:
            continue


@contextlib.contextmanager
def _serving_on(port: int, models: tuple[str | Path, ...], args: tuple[str, ...], retry: bool) -> Iterator[Server]:
    command = [sys.executable, "-m", "fastembed_rt.server", *map(str, models), "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", *args]
    # the server reads TEI's environment variables (API_KEY, PAYLOAD_LIMIT, ...): the tests' servers see none
    from fastembed_rt.server.main import TEI_ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in TEI_ENVIRONMENT}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read()  # type: ignore[union-attr]
                if retry and "address already in use" in stderr.lower():
                    raise _PortTaken(port)
                raise AssertionError(f"the server exited with {process.returncode}: {stderr}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"the server was not healthy within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)
        yield Server(url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def minilm_runtime(minilm_served_artifact: Path) -> Iterator[SentenceTransformer]:
    """The library on the graph the server runs (overrides conftest's fp32 one)."""
    model = SentenceTransformer(minilm_served_artifact, variant="packed")
    yield model
    model.close()


@pytest.fixture(scope="module")
def server(
    minilm_served_artifact: Path,
    tiny_reranker_artifact: Path,
    tiny_splade_artifact: Path,
    tiny_multi_vector_artifact: Path,
) -> Iterator[Server]:
    with serving(
        f"all-MiniLM-L6-v2={minilm_served_artifact}",
        f"reranker={tiny_reranker_artifact}",
        f"splade={tiny_splade_artifact}",
        f"colbert={tiny_multi_vector_artifact}",
        args=("--max-client-batch-size", "64", "--max-concurrent-requests", "4096"),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def reranker(tiny_reranker_artifact: Path) -> Iterator[CrossEncoder]:
    model = CrossEncoder(tiny_reranker_artifact, provider="cpu")
    yield model
    model.close()


@pytest.fixture(scope="module")
def splade(tiny_splade_artifact: Path) -> Iterator[SparseEncoder]:
    model = SparseEncoder(tiny_splade_artifact, provider="cpu")
    yield model
    model.close()


def _post(server: Server, route: str, body: Any, **kwargs: Any) -> httpx.Response:
    with server.client() as client:
        return client.post(route, json=body, **kwargs)


# -- every route equals the library ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "library"),
    [
        ({}, {"normalize_embeddings": True}),
        ({"normalize": False}, {}),
        ({"dimensions": 128}, {"truncate_dim": 128, "normalize_embeddings": True}),
        ({"precision": "int8"}, {"precision": "int8", "normalize_embeddings": True}),
        ({"precision": "ubinary", "dimensions": 64}, {"precision": "ubinary", "truncate_dim": 64}),
    ],
    ids=["default", "raw", "matryoshka", "int8", "ubinary"],
)
def test_embed_equals_library_encode(
    server: Server, minilm_runtime: SentenceTransformer, options: dict[str, Any], library: dict[str, Any]
) -> None:
    response = _post(server, "/embed", {"inputs": TEXTS, **options})
    assert response.status_code == 200, response.text
    expected = minilm_runtime.encode(TEXTS, **library)
    got = np.asarray(response.json(), dtype=expected.dtype)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    one = np.asarray(_post(server, "/embed", {"inputs": TEXTS[1], **options}).json())
    assert one.shape == (1, *expected.shape[1:])  # TEI answers a list of rows for a single input too
    np.testing.assert_allclose(one[0], expected[1], atol=1e-6)


def test_similarity_is_the_library_cosine_of_the_source_with_each_sentence(
    server: Server, minilm_runtime: SentenceTransformer
) -> None:
    body = {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}}
    response = _post(server, "/similarity", body)
    assert response.status_code == 200, response.text
    source, others = minilm_runtime.encode(TEXTS[0]), minilm_runtime.encode(TEXTS[1:])
    expected = (others @ source) / (np.linalg.norm(others, axis=1) * np.linalg.norm(source))
    np.testing.assert_allclose(response.json(), expected, atol=1e-6)
    parameters = {"truncation_direction": "left", "truncate": True, "prompt_name": None}
    assert _post(server, "/similarity", {**body, "parameters": parameters}).status_code == 200


def test_huggingface_hub_inference_client_gets_the_library_embeddings_from_the_default_route(
    server: Server, minilm_runtime: SentenceTransformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the tests run offline; this server is local
    client = InferenceClient(base_url=server.url)
    got = client.feature_extraction(TEXTS[0])
    np.testing.assert_allclose(np.asarray(got).reshape(-1), minilm_runtime.encode(TEXTS[0]), atol=1e-6)
    scores = client.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
    library = _post(server, "/similarity", {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}})
    np.testing.assert_allclose(scores, library.json(), atol=1e-7)


def test_the_default_routes_answer_as_the_named_models_task_route(server: Server) -> None:
    bodies = [
        ("/embed", {"inputs": TEXTS[:2]}, None),
        ("/embed_sparse", {"inputs": TEXTS[:2]}, "splade"),
        ("/embed_all", {"inputs": TEXTS[:2]}, "colbert"),
        ("/rerank", {"query": "a question", "texts": TEXTS[:3]}, "reranker"),
        ("/predict", {"inputs": [["a question", TEXTS[0]]]}, "reranker"),
    ]
    for route, body, model in bodies:
        named = body if model is None else {**body, "model": model}
        expected = _post(server, route, named)
        assert expected.status_code == 200, (route, expected.text)
        for default in ("/", "/invocations"):
            response = _post(server, default, named)
            assert response.status_code == 200, (default, route, response.text)
            assert response.json() == expected.json(), (default, route)


def test_embed_headers_say_tokens_and_times(server: Server, minilm_runtime: SentenceTransformer) -> None:
    response = _post(server, "/embed", {"inputs": TEXTS})
    tokens = sum(len(e.ids) for e in minilm_runtime.tokenizer.encode_batch(TEXTS))
    assert int(response.headers["x-compute-tokens"]) == tokens
    assert int(response.headers["x-compute-characters"]) == sum(map(len, TEXTS))
    assert response.headers["x-compute-type"] == minilm_runtime.provider
    for header in ("x-total-time", "x-queue-time", "x-inference-time", "x-tokenization-time"):
        assert float(response.headers[header]) >= 0.0


def test_openai_client_gets_the_library_embeddings_as_float_and_base64(
    server: Server, minilm_runtime: SentenceTransformer
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    expected = minilm_runtime.encode(TEXTS)
    default = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64 by default
    as_float = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    for result in (default, as_float):
        np.testing.assert_allclose(np.array([d.embedding for d in result.data]), expected, atol=1e-6)
        assert [d.index for d in result.data] == [0, 1, 2, 3] and result.model == "all-MiniLM-L6-v2"
    tokens = sum(len(e.ids) for e in minilm_runtime.tokenizer.encode_batch(TEXTS))
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    short = client.embeddings.create(model="all-MiniLM-L6-v2", input="The cat sat on the mat.", dimensions=32)
    cut = minilm_runtime.encode(TEXTS[0], truncate_dim=32, normalize_embeddings=True)  # OpenAI's are unit length
    np.testing.assert_allclose(short.data[0].embedding, cut, atol=1e-6)
    assert [m.id for m in client.models.list().data] == ["all-MiniLM-L6-v2", "reranker", "splade", "colbert"]
    with pytest.raises(openai.NotFoundError, match="model 'text-embedding-3-small' is not served here") as missing:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert missing.value.code == "model_not_found" and missing.value.type == "not_found_error"  # OpenAI's strings


def test_openai_base64_is_little_endian_float32(server: Server, minilm_runtime: SentenceTransformer) -> None:
    body = _post(server, "/v1/embeddings", {"input": ["a cat"], "encoding_format": "base64"}).json()
    row = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(row, minilm_runtime.encode("a cat"), atol=1e-6)
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"


def test_token_id_inputs_embed_like_their_text(server: Server, minilm_runtime: SentenceTransformer) -> None:
    ids = [e.ids for e in minilm_runtime.tokenizer.encode_batch(TEXTS[:2])]
    body = _post(server, "/v1/embeddings", {"input": ids, "encoding_format": "float"}).json()
    got = np.array([d["embedding"] for d in body["data"]])
    np.testing.assert_allclose(got, minilm_runtime.encode(TEXTS[:2]), atol=1e-6)


def test_embed_sparse_equals_library_encode(server: Server, splade: SparseEncoder) -> None:
    body = _post(server, "/embed_sparse", {"inputs": TEXTS, "model": "splade"}).json()
    expected = splade.encode(TEXTS, sparse_format="arrays")
    assert len(body) == len(TEXTS)
    for i, row in enumerate(body):
        indices, values = expected.row(i)
        assert [v["index"] for v in row] == indices.tolist()
        np.testing.assert_allclose([v["value"] for v in row], values, rtol=1e-5, atol=1e-6)


def test_rerank_routes_equal_library_rank(server: Server, reranker: CrossEncoder) -> None:
    query = "How many people live in Berlin?"
    expected = reranker.rank(query, TEXTS, return_documents=True)
    tei = _post(server, "/rerank", {"query": query, "texts": TEXTS, "return_text": True}).json()
    assert [r["index"] for r in tei] == [r["corpus_id"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in tei], [r["score"] for r in expected], atol=1e-6)
    assert [r["text"] for r in tei] == [r["text"] for r in expected]
    raw = _post(server, "/rerank", {"query": query, "texts": TEXTS, "raw_scores": True}).json()
    logits = reranker.predict([(query, t) for t in TEXTS], activation_fn="identity")
    assert sorted(r["index"] for r in raw) == list(range(len(TEXTS)))
    np.testing.assert_allclose([r["score"] for r in raw], [logits[r["index"]] for r in raw], atol=1e-6)
    cohere = _post(server, "/v1/rerank", {"query": query, "documents": TEXTS, "top_n": 2, "return_documents": True})
    results = cohere.json()["results"]
    assert [r["index"] for r in results] == [r["corpus_id"] for r in expected[:2]]
    assert [r["document"]["text"] for r in results] == [r["text"] for r in expected[:2]]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [r["score"] for r in expected[:2]], atol=1e-6)


def test_predict_equals_library_predict(server: Server, reranker: CrossEncoder) -> None:
    pair = ["How many people live in Berlin?", TEXTS[3]]
    single = _post(server, "/predict", {"inputs": pair}).json()
    assert single == [{"score": pytest.approx(float(reranker.predict(tuple(pair))), abs=1e-6), "label": "LABEL_0"}]
    batch = _post(server, "/predict", {"inputs": [pair, [TEXTS[0]]]}).json()
    alone = reranker.prepare([TEXTS[0]])
    assert batch[0][0]["score"] == pytest.approx(single[0]["score"], abs=1e-6)
    assert batch[1][0]["score"] == pytest.approx(float(reranker.score_prepared(alone)[0]), abs=1e-6)


def test_scores_are_teis_sigmoid_or_softmax_unless_raw_whatever_the_models_activation(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """TEI applies sigmoid (one label) or softmax (several) to the logits unless raw_scores: an ms-marco reranker
    (saved with Identity) and an NLI model (Identity, sentence-transformers' default for several labels) gave
    their logits whatever raw_scores said, and Cohere clients' relevance_score left [0, 1]."""
    from tiny_heads import build_tiny_cross_encoder

    from fastembed_rt.export import export_cross_encoder

    root = tmp_path_factory.mktemp("tei-scores")
    artifacts = {}
    for name, labels, activation in (("msmarco", 1, "identity"), ("nli", 3, None)):
        model_dir = build_tiny_cross_encoder(root / name, "bert", labels, activation, initializer_range=0.5)
        export_cross_encoder(model_dir, root / name / "artifact", variants="fp32")
        artifacts[name] = root / name / "artifact"
    query, texts = "How many people live in Berlin?", TEXTS[:3]
    pairs = [[query, text] for text in texts]
    msmarco, nli = (CrossEncoder(artifacts[name], provider="cpu") for name in ("msmarco", "nli"))
    msmarco_logits = msmarco.predict(pairs, activation_fn="identity")
    nli_logits = nli.predict(pairs, activation_fn="identity")
    # the case at stake: both models' own scores are their logits
    np.testing.assert_array_equal(msmarco.predict(pairs), msmarco_logits)
    np.testing.assert_array_equal(nli.predict(pairs), nli_logits)
    msmarco.close(), nli.close()
    sigmoid = 1 / (1 + np.exp(-msmarco_logits))
    softmax = np.exp(nli_logits) / np.exp(nli_logits).sum(axis=1, keepdims=True)
    # the NLI model first: a rerank request naming no model goes to the first model that reranks (it went to nli, 422)
    served = [f"{name}={artifacts[name]}" for name in ("nli", "msmarco")]
    with serving(*served) as s, s.client() as client:
        named_nli = client.post("/rerank", json={"query": query, "texts": texts, "model": "nli"})
        assert named_nli.status_code == 422
        assert "model 'nli' has 3 labels. Served: nli (cross-encoder), msmarco (cross-encoder)" in named_nli.text
        for raw, expected in ((False, sigmoid), (True, msmarco_logits)):
            ranks = client.post("/rerank", json={"query": query, "texts": texts, "raw_scores": raw}).json()
            np.testing.assert_allclose(
                [r["score"] for r in sorted(ranks, key=lambda r: r["index"])], expected, atol=1e-5
            )
        cohere = client.post("/v1/rerank", json={"query": query, "documents": texts, "model": "msmarco"}).json()
        scores = {r["index"]: r["relevance_score"] for r in cohere["results"]}
        np.testing.assert_allclose([scores[i] for i in range(len(texts))], sigmoid, atol=1e-5)
        for raw, expected in ((False, softmax), (True, nli_logits)):
            body = {"inputs": pairs, "model": "nli", "raw_scores": raw}
            predictions = client.post("/predict", json=body).json()
            got = [{p["label"]: p["score"] for p in row} for row in predictions]
            np.testing.assert_allclose([[row[f"LABEL_{j}"] for j in range(3)] for row in got], expected, atol=1e-5)


def test_tokenize_and_decode_equal_the_tokenizer(server: Server, minilm_runtime: SentenceTransformer) -> None:
    """``start``/``stop`` are UTF-8 byte offsets, as TEI gives them (they were characters: a TEI client slicing the
    input's bytes got other characters for any text that is not ASCII)."""
    text = "Héllo wörld, 😀 漢字 tokenizers!"
    tokens = _post(server, "/tokenize", {"inputs": text}).json()[0]
    encoding = minilm_runtime.tokenizer.encode(text)
    assert [t["id"] for t in tokens] == encoding.ids
    assert [t["special"] for t in tokens] == [bool(s) for s in encoding.special_tokens_mask]
    for token in tokens:
        if not token["special"]:
            assert text.encode()[token["start"] : token["stop"]].decode() == token["text"]
    assert [(t["start"], t["stop"]) for t in tokens if t["text"] == "字"] == [(23, 26)]  # 3 bytes each, after 20 + "漢"
    decoded = _post(server, "/decode", {"ids": [encoding.ids, encoding.ids[:3]]}).json()
    assert decoded == [minilm_runtime.tokenizer.decode(encoding.ids), minilm_runtime.tokenizer.decode(encoding.ids[:3])]


def test_tokenize_gives_the_tokens_the_model_sees_as_long_inputs_and_truncate_say(
    server: Server, minilm_runtime: SentenceTransformer
) -> None:
    """/tokenize ignored long_inputs (docs: every route taking texts takes it) and tokenized every text whole: a 2 MB
    text gave 950,000 tokens, 41 s and ~1 GB of the server's memory per request. Truncated by default as /embed,
    the long text cut before tokenizing (left truncation too: offsets still into the whole input)."""
    text = "The quick brown fox jumps over the lazy dog. " * 2_000  # 20,000 tokens, 90,000 characters
    untruncated = minilm_runtime.tokenizer.from_str(minilm_runtime.tokenizer.to_str())
    untruncated.no_truncation()
    whole = untruncated.encode(text)
    for body, expected in (
        ({}, [*whole.ids[:255], 102]),
        ({"truncation_direction": "left"}, [101, *whole.ids[-255:]]),
        ({"long_inputs": "chunk"}, whole.ids),
        ({"truncate": True}, [*whole.ids[:255], 102]),
    ):
        tokens = _post(server, "/tokenize", {"inputs": [text, "short"], **body}).json()
        assert [t["id"] for t in tokens[0]] == expected, body
        assert all(text[t["start"] : t["stop"]] == t["text"] for t in tokens[0] if not t["special"])  # ASCII: bytes
        assert [t["text"] for t in tokens[1]] == ["[CLS]", "short", "[SEP]"]
    # shown without special tokens, the text keeps what the model keeps of it, and is refused as /embed refuses it
    bare = _post(server, "/tokenize", {"inputs": text, "add_special_tokens": False}).json()[0]
    assert [t["id"] for t in bare] == whole.ids[1:255]
    exact = " ".join(["word"] * 255)  # 257 tokens with [CLS] and [SEP]
    for route in ("/tokenize", "/embed"):
        refused = _post(server, route, {"inputs": exact, "truncate": False, "add_special_tokens": False})
        assert refused.status_code == 422 and "input 0 is 257 tokens long" in refused.text, route
    for body in ({"long_inputs": "error"}, {"truncate": False}):
        refused = _post(server, "/tokenize", {"inputs": ["short", text], **body})
        assert refused.status_code == 422, body
        assert f"input 1 is {len(whole.ids)} tokens long, more than the model's limit of 256" in refused.text
    unknown = _post(server, "/tokenize", {"inputs": "a", "long_inputs": "x"})
    assert unknown.status_code == 422 and "`long_inputs` must be" in unknown.text


def test_health_info_models_metrics_and_openapi(server: Server) -> None:
    with server.client() as client:
        assert client.get("/health").status_code == 200
        info = client.get("/info").json()
        assert [m["name"] for m in info["models"]] == ["all-MiniLM-L6-v2", "reranker", "splade", "colbert"]
        assert [m["task"] for m in info["models"]] == ["embedding", "cross-encoder", "sparse", "multi-vector"]
        assert info["max_client_batch_size"] == 64 and info["max_input_length"] == 256
        assert info["model_type"] == {"embedding": {"pooling": "mean"}}  # TEI's shape of the first model
        assert [m["model_type"] for m in info["models"][1:]] == [
            {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
            {"embedding": {"pooling": "splade"}},
            {"multi-vector": {}},  # TEI has no such type
        ]
        assert info["model_dtype"] == "float32"  # the packed graph's precision, as TEI names it
        # A server's batches mix unrelated lengths: on the CPU, auto serves the artifact's packed graph.
        minilm = info["models"][0]
        # exported from a local folder (a path on the exporter's machine): the artifact as served identifies it
        assert (info["model_id"], info["model_sha"]) == (minilm["artifact"], None)
        assert (minilm["provider"], minilm["variant"]) == ("cpu", "packed"), minilm
        assert "padding" in minilm["variant_reason"]
        assert minilm["streams"] == default_streams(minilm["threads"])  # a graph under the streams' size limit
        client.post("/embed", json={"inputs": "warm the counters"})
        metrics = client.get("/metrics").text
        # each request counted with the served model that answered it; process metrics beside the server's
        embedded = 'fastembed_rt_requests_total{route="/embed",status="200",model="all-MiniLM-L6-v2"}'
        assert _metric(metrics, embedded) >= 1 and _metric(metrics, 'fastembed_rt_requests_total{model=""}') >= 1
        assert "process_resident_memory_bytes" in metrics and "python_gc_collections_total" in metrics
        for served in info["models"]:  # every model's series from its load on, and what it runs
            name = served["name"]
            assert _metric(metrics, f'fastembed_rt_model_info{{model="{name}",task="{served["task"]}"}}') == 1
            assert f'fastembed_rt_queue_inputs{{model="{name}"}} 0.0' in metrics
        for name in ("batch_inputs", "batch_tokens", "queue_inputs", "inference_duration_seconds", "dropped_inputs"):
            assert f"fastembed_rt_{name}" in metrics
        document = client.get("/openapi.json").json()
    served_routes = {route.path for route in _app_routes()}
    assert served_routes == set(document["paths"]), "every route is documented and every documented path served"


def test_serve_streams_flag_reaches_the_config() -> None:
    import argparse

    from fastembed_rt.server.main import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["m=artifact", "--streams", "1"])).streams == 1
    assert config_from_args(parser.parse_args(["m=artifact"])).streams is None


def test_serve_flags_and_names_read_as_a_deployment_writes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A blank $PORT (a template's unset ${PORT}) stopped the server with a usage error; `serve .` was named "." and
    `x=` served the working directory as x; a Python config of max_concurrent_requests=64 alone was refused over the
    512 default the CLI lowers."""
    import argparse

    from fastembed_rt.server.config import ServedModel, ServerConfig
    from fastembed_rt.server.main import add_arguments, config_from_args

    for name in ("PORT", "MAX_BATCH_TOKENS", "PAYLOAD_LIMIT", "AUTO_TRUNCATE", "MAX_CLIENT_BATCH_SIZE"):
        monkeypatch.setenv(name, " ")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default = ServerConfig(models=())
    config = config_from_args(parser.parse_args(["m=artifact"]))
    assert (config.port, config.max_batch_tokens, config.payload_limit, config.auto_truncate) == (
        default.port, default.max_batch_tokens, default.payload_limit, default.auto_truncate
    )  # fmt: skip
    (tmp_path / "minilm").mkdir()
    monkeypatch.chdir(tmp_path / "minilm")
    assert [m.name for m in config_from_args(parser.parse_args([".", "../minilm/"])).models] == ["minilm"] * 2
    assert (
        "model 'x' names no artifact: NAME=ARTIFACT needs an ARTIFACT"
        in ServerConfig(models=(ServedModel("x", ""),)).check()
    )
    python_config = ServerConfig(models=(ServedModel("m", "artifact"),), max_concurrent_requests=64)
    assert python_config.check() == [] and python_config.max_client_batch_size == 64
    assert ServerConfig(models=()).max_client_batch_size == 512


def test_a_bracketed_ipv6_host_is_served_as_the_bare_address(minilm_served_artifact: Path, tmp_path: Path) -> None:
    """--host [::1] passed the host check (brackets stripped) and uvicorn, given "[::1]", exited 3."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback here")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fastembed_rt", "serve", str(minilm_served_artifact), "--host", "[::1]",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://[::1]:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None, log.read_text()
        assert httpx.get(f"http://[::1]:{port}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(30)


def test_listening_on_all_ipv6_addresses_takes_ipv4_too_and_falls_back_to_ipv4_without_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn binds ``::`` with IPV6_V6ONLY: ``serve --host ::`` answered [::1] but not 127.0.0.1. The sockets are
    bound, never listened on (nothing is served on a public address)."""
    from fastembed_rt.server.main import listen_socket

    assert listen_socket("127.0.0.1", 0) is None and listen_socket("::1", 0) is None  # uvicorn binds those itself
    if socket.has_ipv6:
        with listen_socket("[::]", 0) as sock:  # type: ignore[union-attr]
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    real_socket = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real_socket(family, *args)

    monkeypatch.setattr(socket, "socket", no_ipv6)  # a container whose kernel namespace has no IPv6
    with listen_socket("::", 0) as sock:  # type: ignore[union-attr]
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "0.0.0.0"


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(
    minilm_served_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastembed_rt.server.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(minilm_served_artifact), "--host", "::", "--port", str(port)]) == 1
        assert f"error: cannot listen on [::]:{port}: Address already in use" in capsys.readouterr().err
        # any other host too: uvicorn bound it after the models began loading, and exited 3 without the line
        assert main([str(minilm_served_artifact), "--host", "127.0.0.1", "--port", str(port)]) == 1
        assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_serving_variant_packs_only_what_auto_leaves_to_it(
    minilm_served_artifact: Path, tiny_reranker_artifact: Path
) -> None:
    from fastembed_rt.server.state import serving_variant

    assert serving_variant(minilm_served_artifact, "cpu", "auto")[0] == "packed"
    assert serving_variant(minilm_served_artifact, "cpu", "optimized") == ("optimized", None)
    assert serving_variant(minilm_served_artifact, "openvino", "auto") == ("auto", None)
    assert serving_variant(tiny_reranker_artifact, "cpu", "auto") == ("auto", None)  # it has no packed graph
    assert serving_variant(minilm_served_artifact, "no-such-provider", "auto") == ("auto", None)  # the loader says


def _app_routes() -> list[Any]:
    from fastembed_rt.server import ServedModel, ServerConfig, create_app

    return list(create_app(ServerConfig(models=(ServedModel("x", "unused"),))).routes)


def _schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) of ``schema``, its refs resolved in ``document``."""
    import jsonschema

    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def _request_schema(document: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    return name, document["components"]["schemas"][name]


# POST / answers as the named model's task: one body per kind of answer
_DEFAULT_ROUTE_BODIES = [
    {"inputs": "What is Deep Learning?", "model": "splade"},
    {"query": "What is Deep Learning?", "texts": ["Deep learning is...", "A cat."], "model": "reranker"},
    {"inputs": ["What is Deep Learning?", "Deep learning is..."], "model": "reranker"},
    {"inputs": {"source_sentence": "What is Deep Learning?", "sentences": ["What is ML?"]}},
]


def test_every_openapi_example_fits_its_schema_and_is_answered_as_the_document_says(server: Server) -> None:
    """Each route's example is valid under its request schema and gets a 200 whose body is valid under the route's
    response schema; POST / too for each kind of model (a body may fit several request schemas: anyOf)."""
    from fastembed_rt.server.openapi import openapi_document

    document = openapi_document("test")
    bodies = [
        (path, _request_schema(document, path)[1]["example"])
        for path, item in document["paths"].items()
        if "post" in item
    ]
    bodies += [("/", body) for body in _DEFAULT_ROUTE_BODIES]
    bodies += [("/vertex", {"instances": _DEFAULT_ROUTE_BODIES})]
    # TEI's own schema spells the direction Left/Right (a client generated from it sends that)
    left = {"truncation_direction": "Left"}
    bodies += [
        ("/embed", {"inputs": "hi", "truncation_direction": "Right"}),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": left}),
    ]
    for path, body in bodies:
        post = document["paths"][path]["post"]
        request_errors = list(
            _schema_validator(document, post["requestBody"]["content"]["application/json"]["schema"]).iter_errors(body)
        )
        assert not request_errors, (path, body, [e.message for e in request_errors])
        response = _post(server, path, body)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        schema = post["responses"]["200"]["content"]["application/json"]["schema"]
        response_errors = list(_schema_validator(document, schema).iter_errors(response.json()))
        assert not response_errors, (path, body, [e.message for e in response_errors])


def test_null_in_any_optional_field_is_taken_as_absent_as_the_document_says(server: Server) -> None:
    from fastembed_rt.server.openapi import openapi_document

    document = openapi_document("test")
    for path, item in document["paths"].items():
        if "post" not in item or path in ("/", "/invocations", "/vertex"):
            continue
        name, schema = _request_schema(document, path)
        optional = sorted(set(schema["properties"]) - set(schema.get("required", ())))
        assert optional, name
        validator = _schema_validator(document, {"$ref": f"#/components/schemas/{name}"})
        for field in optional:
            body = {**schema["example"], field: None}
            assert validator.is_valid(body), (name, field)
            response = _post(server, path, body)
            assert response.status_code == 200, (path, field, response.text)
            absent = {key: value for key, value in schema["example"].items() if key != field}
            assert response.json() == _post(server, path, absent).json(), (path, field)  # null booleans were false


def test_every_get_route_answers_with_the_content_the_document_declares(server: Server) -> None:
    from fastembed_rt.server.openapi import openapi_document

    document = openapi_document("test")
    with server.client() as client:
        for path, item in document["paths"].items():
            if "get" not in item:
                continue
            answer = item["get"]["responses"]["200"]
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            if "content" not in answer:
                assert response.content == b"", path
                continue
            (media_type, content), *_ = answer["content"].items()
            assert response.headers["content-type"].startswith(media_type), path
            body = response.json() if media_type == "application/json" else response.text
            errors = list(_schema_validator(document, content["schema"]).iter_errors(body))
            assert not errors, (path, [e.message for e in errors])


# -- late interaction: /embed_all and the rerank routes on a multi-vector model ----------------------
@pytest.fixture(scope="module")
def colbert(tiny_multi_vector_artifact: Path) -> Iterator[MultiVectorEncoder]:
    model = MultiVectorEncoder(tiny_multi_vector_artifact, provider="cpu")
    yield model
    model.close()


def _close_matrices(ours: list[Any], library: list[np.ndarray]) -> None:
    assert len(ours) == len(library)
    for matrix, expected in zip(ours, library):
        np.testing.assert_allclose(np.asarray(matrix, np.float32), expected, atol=1e-5)


def test_embed_all_answers_the_library_token_vectors(
    server: Server, colbert: MultiVectorEncoder, minilm_runtime: SentenceTransformer
) -> None:
    texts = [*TEXTS, "Hello, world!"]
    with server.client() as client:
        for task, call in (
            ("query", colbert.encode_query),
            ("document", colbert.encode_document),
            (None, colbert.encode),
        ):
            body = {"inputs": texts, "model": "colbert", **({"task": task} if task else {})}
            response = client.post("/embed_all", json=body)
            assert response.status_code == 200, response.text
            _close_matrices(response.json(), call(texts))  # TEI's shape: [input][token][dim]
        dense = client.post("/embed_all", json={"inputs": TEXTS[0], "model": "all-MiniLM-L6-v2"}).json()
        _close_matrices(dense, [minilm_runtime.encode(TEXTS[0], output_value="token_embeddings")])
        refused = client.post("/embed_all", json={"inputs": "x", "model": "splade"})
        assert refused.status_code == 422 and "multi-vector or embedding" in refused.json()["error"]
        refused = client.post("/embed_all", json={"inputs": "x", "model": "all-MiniLM-L6-v2", "task": "query"})
        assert refused.status_code == 422 and "multi-vector" in refused.json()["error"]


def test_a_multi_vector_models_length_errors_name_the_tasks_limit_and_a_left_cut_is_refused(
    server: Server, colbert: MultiVectorEncoder
) -> None:
    """An over-long query was refused naming max_seq_length (not the query length it is cut at), and a left cut
    took the query/document prompt (ColBERT's marker) off the start of a long text, silently."""
    long = " ".join(f"w{i}" for i in range(200))
    with server.client() as client:
        for task in ("query", "document"):
            body = {"inputs": [long], "model": "colbert", "task": task, "truncate": False}
            refused = client.post("/embed_all", json=body)
            limit = colbert.token_limit(task)
            assert refused.status_code == 422 and f"the model's limit of {limit};" in refused.json()["error"]
            assert limit < colbert.max_seq_length  # the fixture cuts both tasks short of it
            body = {"inputs": [long], "model": "colbert", "task": task, "truncation_direction": "left"}
            refused = client.post("/embed_all", json=body)
            assert refused.status_code == 422 and "would cut the prompt" in refused.json()["error"], refused.text
        body = {"query": "who?", "texts": [long], "model": "colbert", "truncation_direction": "left"}
        assert client.post("/rerank", json=body).status_code == 422


def test_rerank_routes_score_late_interaction_as_the_library(server: Server, colbert: MultiVectorEncoder) -> None:
    query = "Where do cats sleep?"
    expected = colbert.rank(query, TEXTS, return_documents=True)
    with server.client() as client:
        tei = client.post("/rerank", json={"query": query, "texts": TEXTS, "model": "colbert", "return_text": True})
        assert tei.status_code == 200, tei.text
        assert [r["index"] for r in tei.json()] == [hit["corpus_id"] for hit in expected]
        np.testing.assert_allclose([r["score"] for r in tei.json()], [hit["score"] for hit in expected], rtol=1e-5)
        assert tei.json()[0]["text"] == expected[0]["text"]
        cohere = client.post("/v1/rerank", json={"query": query, "documents": TEXTS, "model": "colbert", "top_n": 2})
        assert cohere.status_code == 200, cohere.text
        assert [r["index"] for r in cohere.json()["results"]] == [hit["corpus_id"] for hit in expected[:2]]


# -- concurrency: nothing mixes ---------------------------------------------------------------------
def test_a_burst_of_concurrent_requests_each_gets_exactly_its_own_rows(
    server: Server, minilm_runtime: SentenceTransformer
) -> None:
    rng = random.Random(7)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "cats",
        "dogs",
        "markets",
        "rivers",
        "Berlin",
        "Paris",
        "music",
        "storms",
    ]
    requests = [
        [" ".join(rng.choices(words, k=rng.randint(1, 60))) + f" #{i}.{j}" for j in range(rng.randint(1, 4))]
        for i in range(300)
    ]

    async def burst() -> list[Any]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            replies = await asyncio.gather(*(client.post("/embed", json={"inputs": texts}) for texts in requests))
        return [reply.json() for reply in replies if reply.status_code == 200 or pytest.fail(reply.text)]

    answers = asyncio.run(burst())
    flat = [text for texts in requests for text in texts]
    expected = minilm_runtime.encode(flat, normalize_embeddings=True)
    start = 0
    for texts, answer in zip(requests, answers):
        got = np.asarray(answer, dtype=np.float32)
        np.testing.assert_allclose(got, expected[start : start + len(texts)], atol=1e-5)
        start += len(texts)


def test_requests_run_in_several_model_calls_get_exactly_their_rows_in_order(
    minilm_served_artifact: Path, tiny_splade_artifact: Path, minilm_runtime: SentenceTransformer, splade: SparseEncoder
) -> None:
    # 4 rows a batch on one thread: a worker runs at most 8 inputs per model call (2 batches), so 40 texts take 5,
    # each of them shortest first.
    texts = [f"Sentence {i} about {'rivers and mountains ' * (i % 7)}the sea." for i in range(40)]
    args = ("--threads", "1", "--max-batch-size", "4")
    with serving(minilm_served_artifact, f"splade={tiny_splade_artifact}", args=args) as s:
        with s.client() as client:
            client.post("/embed", json={"inputs": texts})
            assert _metric(client.get("/metrics").text, "fastembed_rt_batch_inputs_count") == 5  # 5 x 8

        async def together() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                return await asyncio.gather(
                    c.post("/embed", json={"inputs": texts}),
                    c.post("/embed", json={"inputs": texts[5:12]}),
                    c.post("/embed", json={"inputs": texts[::-1]}),
                    c.post("/embed_all", json={"inputs": texts[:20]}),
                    c.post("/embed_sparse", json={"inputs": texts, "model": "splade"}),
                )

        dense, few, reverse, tokens, sparse = asyncio.run(asyncio.wait_for(together(), 90))
    expected = minilm_runtime.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(dense.json(), expected, atol=1e-5)
    np.testing.assert_allclose(few.json(), expected[5:12], atol=1e-5)
    np.testing.assert_allclose(reverse.json(), expected[::-1], atol=1e-5)
    _close_matrices(tokens.json(), minilm_runtime.encode(texts[:20], output_value="token_embeddings"))
    library = splade.encode(texts, sparse_format="arrays")
    for i, row in enumerate(sparse.json()):
        assert [v["index"] for v in row] == library.row(i)[0].tolist()


def test_a_worker_fails_only_the_job_whose_inputs_cannot_be_prepared(minilm_runtime: SentenceTransformer) -> None:
    from fastembed_rt.kernels.spec import Precision
    from fastembed_rt.server.batcher import Job, JobResult, ModelWorker, Operation
    from fastembed_rt.server.metrics import Metrics
    from fastembed_rt.server.requests import RequestError

    model = minilm_runtime
    options = model.embed_options(Precision.FLOAT32, None, True)
    operation = Operation(
        key="lowercased",
        prepare=lambda items: model.prepare([text.lower() for text in items]),  # fails on a non-text
        run=lambda prepared: model.embed_prepared(prepared, options, batch_size=32),
        take=lambda result, rows: result[rows],
        count_tokens=lambda item: model.count_tokens([item])[0],
    )
    requests: list[list[Any]] = [[TEXTS[0]], [TEXTS[1], 42], TEXTS[2:]]
    # The worker waits for all 5 inputs, so the three jobs are prepared as one group.
    worker = ModelWorker("m", model.max_seq_length, Metrics(), batch_wait_s=60, wait_for_items=5)

    async def submit_all() -> list[JobResult | BaseException]:
        loop = asyncio.get_running_loop()
        jobs = [Job(operation, items, True, loop.create_future(), loop) for items in requests]
        for job in jobs:
            worker.submit(job)
        return await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs), return_exceptions=True), 60)

    try:
        first, bad, last = asyncio.run(submit_all())
    finally:
        assert worker.close(10)
    assert isinstance(bad, RequestError) and bad.status == 500 and "AttributeError" in bad.message
    assert isinstance(first, JobResult) and isinstance(last, JobResult)
    expected = model.encode([t.lower() for t in TEXTS], normalize_embeddings=True)
    np.testing.assert_allclose(first.rows, expected[:1], atol=1e-6)
    np.testing.assert_allclose(last.rows, expected[2:], atol=1e-6)


def _recording_worker(model: SentenceTransformer, **worker_args: Any) -> tuple[Any, Any, list[int], list[list[int]]]:
    """A worker over ``model``'s dense embeddings, its operation, and the number of inputs of each model call it
    makes and their token counts, sorted (recorded by the operation's ``run``)."""
    from fastembed_rt.kernels.spec import Precision
    from fastembed_rt.server.batcher import ModelWorker, Operation
    from fastembed_rt.server.metrics import Metrics

    options = model.embed_options(Precision.FLOAT32, None, True)
    calls: list[int] = []
    call_tokens: list[list[int]] = []

    def run(prepared: Any) -> Any:
        calls.append(len(prepared))
        call_tokens.append(sorted(prepared.lengths.tolist()))
        return model.embed_prepared(prepared, options, batch_size=32)

    operation = Operation(
        key="dense",
        prepare=model.prepare,
        run=run,
        take=lambda result, rows: result[rows],
        count_tokens=lambda item: model.count_tokens([item])[0],
    )
    return ModelWorker("m", model.max_seq_length, Metrics(), **worker_args), operation, calls, call_tokens


def test_a_query_queued_during_a_bulk_request_runs_between_its_model_calls(minilm_runtime: SentenceTransformer) -> None:
    """A query waited for every call of a bulk request in progress; a second bulk request queued meanwhile waits
    for the first to end (it does not run between its calls, nor hold the query back)."""
    from fastembed_rt.server.batcher import Job

    model = minilm_runtime
    bulk = [
        f"bulk passage {i} about " + "rivers, mountains and the sea, " * (12 - i) for i in range(12)
    ]  # longest first
    second = [f"second bulk passage {i}" for i in range(8)]
    query = ["where do rivers begin?"]
    first_call, release = threading.Event(), threading.Event()
    worker, operation, calls, call_tokens = _recording_worker(model, inputs_per_run=4)
    plain_run = operation.run

    def run(prepared: Any) -> Any:
        if not first_call.is_set():  # the bulk request's first call holds until the others are queued
            first_call.set()
            assert release.wait(30)
        return plain_run(prepared)

    operation = dataclasses.replace(operation, run=run)

    async def scenario() -> tuple[list[str], list[Any]]:
        loop = asyncio.get_running_loop()
        finished: list[str] = []
        jobs = {name: Job(operation, items, True, loop.create_future(), loop) for name, items in
                (("bulk", bulk), ("second", second), ("query", query))}  # fmt: skip
        for name, job in jobs.items():
            job.future.add_done_callback(lambda _, name=name: finished.append(name))
        worker.submit(jobs["bulk"])
        assert await asyncio.to_thread(first_call.wait, 30)
        worker.submit(jobs["second"])
        worker.submit(jobs["query"])
        release.set()
        await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs.values())), 60)
        return finished, [job.future.result() for job in jobs.values()]

    try:
        finished, results = asyncio.run(scenario())
    finally:
        assert worker.close(10)
    # The bulk request's 12 texts take three calls of 4, shortest first (each call pads as little as the library's
    # own sort would); the query ran alone after the first, not after the third; the second bulk request after.
    assert calls == [4, 1, 4, 4, 4, 4]
    bulk_tokens = [tokens for tokens in call_tokens[:4] if len(tokens) == 4]
    assert bulk_tokens == [sorted(model.count_tokens(bulk))[i : i + 4] for i in (0, 4, 8)]
    assert finished == ["query", "bulk", "second"]
    big_result = results[0]
    for items, result in zip((bulk, second, query), results, strict=True):
        np.testing.assert_allclose(result.rows, model.encode(items, normalize_embeddings=True), atol=1e-6)
    # the query's call ran inside the bulk request's run: waiting for it, not the bulk request's inference
    assert big_result.timings.queue_s >= results[2].timings.inference_s


def test_small_jobs_taken_with_a_bulk_one_run_in_its_first_model_call(minilm_runtime: SentenceTransformer) -> None:
    from fastembed_rt.server.batcher import Job

    model = minilm_runtime
    bulk = [f"bulk passage {i} about rivers, mountains and the sea" for i in range(10)]
    queries = [["where do rivers begin?"], ["how high are the mountains?"]]
    # The worker waits for all 12 inputs, so it takes the three jobs together, the bulk one queued first.
    worker, operation, calls, _ = _recording_worker(model, inputs_per_run=4, batch_wait_s=60, wait_for_items=12)

    async def scenario() -> tuple[list[str], list[Any]]:
        loop = asyncio.get_running_loop()
        finished: list[str] = []
        jobs = [Job(operation, items, True, loop.create_future(), loop) for items in (bulk, *queries)]
        for name, job in zip(("bulk", "query 1", "query 2"), jobs, strict=True):
            job.future.add_done_callback(lambda _, name=name: finished.append(name))
            worker.submit(job)
        await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), 60)
        return finished, [job.future.result() for job in jobs]

    try:
        finished, results = asyncio.run(scenario())
    finally:
        assert worker.close(10)
    assert calls == [4, 4, 4]
    assert finished[-1] == "bulk"  # both queries were done after the first call; the bulk texts after the third
    for items, result in zip((bulk, *queries), results, strict=True):
        np.testing.assert_allclose(result.rows, model.encode(items, normalize_embeddings=True), atol=1e-6)


def test_a_job_gives_its_permits_back_when_its_last_input_has_run_not_at_the_end_of_the_run(
    minilm_runtime: SentenceTransformer,
) -> None:
    """The small jobs run in a bulk request's first call were settled then, but their permits (and a departed
    client's) came back only after the bulk request's last call: another client got a 429 meanwhile."""
    from fastembed_rt.server.batcher import Job

    model = minilm_runtime
    bulk = [f"bulk passage {i} about rivers, mountains and the sea" for i in range(10)]
    queries = [["where do rivers begin?"], ["how high are the mountains?"]]
    worker, operation, _, _ = _recording_worker(model, inputs_per_run=4, batch_wait_s=60, wait_for_items=12)
    both_finished = threading.Event()
    finished: list[str] = []
    released_before_call: list[bool] = []
    plain_run = operation.run

    def run(prepared: Any) -> Any:
        if released_before_call or finished:  # a later call: the queries' permits should be back by now
            released_before_call.append(both_finished.wait(10))
        else:
            released_before_call.append(False)  # (the first call: nothing has run yet)
        return plain_run(prepared)

    operation = dataclasses.replace(operation, run=run)

    def on_finished(name: str) -> None:
        finished.append(name)
        if {"query 1", "query 2"} <= set(finished):
            both_finished.set()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        jobs = [Job(operation, items, True, loop.create_future(), loop) for items in (bulk, *queries)]
        for name, job in zip(("bulk", "query 1", "query 2"), jobs, strict=True):
            job.on_finished = lambda name=name: on_finished(name)
            worker.submit(job)
        await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), 60)
        await asyncio.sleep(0.1)  # the bulk job's own on_finished, scheduled on this loop

    try:
        asyncio.run(scenario())
    finally:
        assert worker.close(10)
    assert released_before_call == [False, True, True]
    assert sorted(finished) == ["bulk", "query 1", "query 2"] and finished[-1] == "bulk"


def test_a_queued_job_whose_client_left_leaves_the_queue_gauge_at_once(minilm_runtime: SentenceTransformer) -> None:
    """fastembed_rt_queue_inputs counted a departed client's queued inputs until the run under way ended."""
    from fastembed_rt.server.batcher import Job

    model = minilm_runtime
    worker, operation, calls, _ = _recording_worker(model)
    first_call, release = threading.Event(), threading.Event()
    plain_run = operation.run

    def run(prepared: Any) -> Any:
        first_call.set()
        assert release.wait(30)
        return plain_run(prepared)

    operation = dataclasses.replace(operation, run=run)
    metrics = worker._metrics

    def gauge(name: str) -> float:
        return metrics.registry.get_sample_value(name, {"model": "m"}) or 0.0

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        running = Job(operation, ["a running text"], True, loop.create_future(), loop)
        queued = Job(operation, [f"queued {i}" for i in range(5)], True, loop.create_future(), loop)
        worker.submit(running)
        assert await asyncio.to_thread(first_call.wait, 30)
        worker.submit(queued)
        assert gauge("fastembed_rt_queue_inputs") == 5
        worker.cancel(queued)
        assert gauge("fastembed_rt_queue_inputs") == 0 and gauge("fastembed_rt_dropped_inputs_total") == 5
        assert queued.cancelled and not worker.runs(queued)
        release.set()
        await asyncio.wait_for(running.future, 60)

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        assert worker.close(10)
    assert calls == [1]  # the departed client's inputs never ran (nor were counted dropped twice, above)
    assert gauge("fastembed_rt_dropped_inputs_total") == 5


# -- limits and faults --------------------------------------------------------------------------------
def test_overload_gets_429_with_retry_after_at_once_and_every_accepted_request_is_right(
    minilm_served_artifact: Path, minilm_runtime: SentenceTransformer
) -> None:
    texts = [f"Request number {i} asks about {'rivers and mountains ' * (i % 9)}the sea." for i in range(32)]
    expected = minilm_runtime.encode(texts, normalize_embeddings=True)
    with serving(minilm_served_artifact, args=("--max-concurrent-requests", "4", "--max-client-batch-size", "4")) as s:

        async def burst() -> list[tuple[int, httpx.Response, float]]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=64)) as c:

                async def one(i: int) -> tuple[int, httpx.Response, float]:
                    started = time.perf_counter()
                    reply = await c.post("/embed", json={"inputs": texts[i]})
                    return i, reply, time.perf_counter() - started

                return await asyncio.gather(*(one(i) for i in range(len(texts))))

        results = asyncio.run(asyncio.wait_for(burst(), 90))
    statuses = [reply.status_code for _, reply, _ in results]
    assert set(statuses) <= {200, 429} and statuses.count(429) > 0 and statuses.count(200) > 0
    for i, reply, _ in results:
        if reply.status_code == 200:
            np.testing.assert_allclose(reply.json()[0], expected[i], atol=1e-5)
        else:
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.json()["error_type"] == "Overloaded"


BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("/embed", b"{not json", 400, "the request body is not valid JSON: "),
    (
        "/embed",
        b'{"inputs": "\xff\xfe"}',
        400,
        "the request body is not UTF-8 (byte 0xff at offset 12: invalid start byte)",
    ),
    ("/embed", b'{"inputs": "ok \\ud800 bad"}', 400, "surrogate"),
    ("/embed", b"", 400, "the request body is empty"),
    ("/embed", [1, 2], 422, "must be a JSON object"),
    ("/embed", {}, 422, "`inputs` is missing"),
    ("/embed", {"inputs": None}, 422, "`inputs` must be a string or a list of strings, got null"),
    ("/embed", {"inputs": []}, 400, "`inputs` cannot be empty"),
    ("/embed", {"inputs": ["ok", ""]}, 400, "`inputs[1]` is an empty string"),
    ("/embed", {"inputs": ["ok", 3]}, 422, "`inputs[1]` must be a string or a list of token ids, got an integer"),
    ("/embed", {"inputs": "ok", "normalize": "yes"}, 422, "`normalize` must be a boolean"),
    ("/embed", {"inputs": "ok", "dimensions": 0}, 422, "`dimensions` must be at least 1"),
    ("/embed", {"inputs": "ok", "dimensions": 999}, 422, "truncate_dim must be an int in 1..384"),
    ("/embed", {"inputs": "ok", "precision": "int4"}, 422, "`precision` must be one of"),
    ("/embed", {"inputs": "ok", "prompt_name": "passage"}, 422, "`prompt_name` 'passage' is not a prompt"),
    ("/embed", {"inputs": "ok", "truncation_direction": "up"}, 422, "`truncation_direction` must be"),
    (
        "/similarity",
        {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": False},
        422,
        "`parameters` must be an object",
    ),
    ("/embed", {"inputs": ["x"] * 65}, 422, "batch size 65 > maximum allowed batch size 64"),
    ("/embed", {"inputs": [[101, 99999, 102]]}, 422, "outside the vocabulary"),
    ("/embed", {"inputs": "ok", "model": "nope"}, 404, "'nope' is not served here; served: all-MiniLM-L6-v2, reranker"),
    ("/embed", {"inputs": "ok", "model": "splade"}, 422, "/embed serves embedding models; 'splade' is a sparse"),
    ("/rerank", {"query": "q", "texts": "a"}, 422, "`texts` must be a list of strings"),
    ("/rerank", {"texts": ["a"]}, 422, "`query` is missing"),
    ("/predict", {"inputs": [["a", "b", "c"]]}, 422, "must be [text] or a pair"),
    ("/decode", {"ids": [101, -1]}, 422, "non-negative integer token id"),
    ("/embed", b'{"inputs": [101, 9223372036854775808, 102]}', 422, "`inputs[1]` must be a token id of at most 2^63-1"),
    ("/embed", b'{"inputs": [[101], [101, 18446744073709551615]]}', 422, "`inputs[1][1]` must be a token id of at"),
    (
        "/embed",
        {"inputs": [101, 1.8e19, 102]},
        422,
        "`inputs[1]` must be a token id of at most 2^63-1 (the graph's int64 inputs), got 18000000000000000000",
    ),
    ("/embed", {"inputs": [101, True]}, 422, "`inputs[1]` must be a non-negative integer token id, got a boolean"),
    ("/decode", {"ids": [101, 9223372036854775808]}, 422, "`ids[1]` must be a token id of at most 2^63-1"),
    ("/decode", {"ids": [[101, 102], 5]}, 422, "`ids[1]` must be a list of token ids like `ids[0]`, got an integer"),
    ("/decode", {"ids": [[101], True]}, 422, "`ids[1]` must be a list of token ids like `ids[0]`, got a boolean"),
    ("/decode", {"ids": [[101], 1.5]}, 422, "`ids[1]` must be a list of token ids like `ids[0]`, got a number"),
    ("/v1/embeddings", {"input": "ok", "encoding_format": "hex"}, 422, "`encoding_format` must be"),
    ("/v1/embeddings", {"input": "ok", "encoding_format": False}, 422, "`encoding_format` must be"),
    ("/v1/embeddings", {"input": "ok", "encoding_format": ""}, 422, "`encoding_format` must be"),
    ("/v1/rerank", {"query": "q", "documents": 3}, 422, "`documents` must be a list"),
    ("/similarity", {"inputs": ["a", "b"]}, 422, "`inputs` must be an object with `source_sentence` and `sentences`"),
    ("/similarity", {"inputs": {"sentences": ["a"]}}, 422, "`inputs.source_sentence` must be a string, got null"),
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": []}}, 400, "`inputs.sentences` cannot be empty"),
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b", ""]}}, 400, "`inputs.sentences[1]` is an"),
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"] * 64}}, 422, "batch size 65 > maximum"),
    # a typo ran plain encode (no query prompt) with a 200
    ("/embed_sparse", {"inputs": "a", "task": "Query"}, 422, "`task` must be 'query' or 'document' (or null), got"),
    ("/embed", {"inputs": "a", "dimensions": 8.5}, 422, "`dimensions` must be an integer, got a number"),
    ("/embed", {"inputs": [101, 2.5]}, 422, "`inputs[1]` must be a non-negative integer token id, got a number 2.5"),
]


def test_an_error_quoting_a_huge_value_is_bounded_and_keeps_its_start_and_end(server: Server) -> None:
    """A 1.9 MB `precision` (or model name, or `long_inputs`) came back whole in a 1.9 MB error body."""
    huge = "x" * 1_900_000
    for route, body in (
        ("/embed", {"inputs": "ok", "precision": huge}),
        ("/embed", {"inputs": "ok", "model": huge}),
        ("/v1/embeddings", {"input": "ok", "encoding_format": huge}),
    ):
        response = _post(server, route, body)
        assert response.status_code in (404, 422) and len(response.content) < 3_000, route
        error = response.json()["error"]
        message = error["message"] if isinstance(error, dict) else error
        assert message.startswith(("`", "model")) and "characters left out] …" in message


def test_integral_numbers_are_integers_as_json_schema_counts_them(server: Server) -> None:
    with server.client() as client:
        ids = client.post("/tokenize", json={"inputs": "What is Deep Learning?"}).json()[0]
        ints = [token["id"] for token in ids]
        for route, body in (
            ("/embed", {"inputs": [float(i) for i in ints], "dimensions": 8.0}),
            ("/decode", {"ids": [float(i) for i in ints]}),
        ):
            as_ints = {**body, **({"inputs": ints, "dimensions": 8} if route == "/embed" else {"ids": ints})}
            floats, integers = client.post(route, json=body), client.post(route, json=as_ints)
            assert floats.status_code == integers.status_code == 200, (floats.text, integers.text)
            assert floats.json() == integers.json()


@pytest.mark.parametrize(("route", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_their_status_and_a_message_naming_the_field(
    server: Server, route: str, body: Any, status: int, message: str
) -> None:
    with server.client() as client:
        if isinstance(body, bytes):
            response = client.post(route, content=body, headers={"content-type": "application/json"})
        else:
            response = client.post(route, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    text = error["message"] if isinstance(error, dict) else error
    assert message in text, text
    if route.startswith("/v1/"):
        assert set(error) == {"message", "type", "param", "code"} and error["code"] is None  # OpenAI: str or null
    else:
        assert "error_type" in response.json()


def test_a_bad_decode_row_keeps_the_connection_open(server: Server) -> None:
    with server.client() as client:
        refused = client.post("/decode", json={"ids": [[101, 102], 5]})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/json"
        assert client.post("/decode", json={"ids": [101, 102]}).status_code == 200  # on the same connection


def test_an_unexpected_error_is_a_json_500_in_the_routes_shape_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from fastembed_rt.server import ServedModel, ServerConfig
    from fastembed_rt.server.app import _endpoint
    from fastembed_rt.server.responses import Api
    from fastembed_rt.server.state import ServerState

    state = ServerState(ServerConfig(models=(ServedModel("m", "unused"),)))
    state.ready.set()

    async def broken(state: ServerState, request: Any, data: dict[str, Any]) -> Any:
        return data["inputs"].upper()  # a bug on an integer input: AttributeError

    app = Starlette(
        routes=[
            Route("/tei", _endpoint(state, "/tei", broken, Api.TEI), methods=["POST"]),
            Route("/v1/openai", _endpoint(state, "/v1/openai", broken, Api.OPENAI), methods=["POST"]),
        ]
    )
    with TestClient(app) as client, caplog.at_level("ERROR", logger="fastembed_rt.server"):
        tei = client.post("/tei", json={"inputs": 3})
        openai = client.post("/v1/openai", json={"inputs": 3})
    assert tei.status_code == 500 and tei.json()["error_type"] == "Backend"
    assert "AttributeError" in tei.json()["error"]
    assert openai.status_code == 500 and openai.json()["error"]["type"] == "server_error"
    assert [r.exc_info is not None for r in caplog.records] == [True, True]  # each logged once, with its traceback
    metrics = state.metrics.exposition().decode()
    assert _metric(metrics, 'fastembed_rt_requests_total{route="/tei",status="500"}') == 1.0
    assert _metric(metrics, 'fastembed_rt_requests_total{route="/v1/openai",status="500"}') == 1.0


def test_tokenize_is_admitted_against_the_servers_input_limit(minilm_served_artifact: Path) -> None:
    """/tokenize ran outside admission: under --max-concurrent-requests 4 two 8-input calls were both served."""
    from starlette.testclient import TestClient

    from fastembed_rt.server import ServedModel, ServerConfig, create_app
    from fastembed_rt.server.state import ServerState

    config = ServerConfig(
        models=(ServedModel("m", str(minilm_served_artifact)),), max_concurrent_requests=4, max_client_batch_size=4
    )
    state = ServerState(config)
    with TestClient(create_app(config, state=state)) as client:
        assert state.ready.wait(120)
        state.admission.acquire(2, 0.0)  # two inputs of another request in flight
        refused = client.post("/tokenize", json={"inputs": ["a", "b", "c"]})
        assert refused.status_code == 429 and "limit of 4 inputs" in refused.json()["error"], refused.text
        assert "Retry-After" in refused.headers
        served = client.post("/tokenize", json={"inputs": ["a", "b"]})
        assert served.status_code == 200 and len(served.json()) == 2
        assert state.admission.in_use == 2  # its own permits given back
        state.admission.release(2)


def test_a_clients_long_model_name_is_answered_but_not_logged(
    minilm_served_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server of one model answers any `model` name and logs each new one once: a 500,000-character name was a
    500 kB log line (and held in memory)."""
    from starlette.testclient import TestClient

    from fastembed_rt.server import ServedModel, ServerConfig, create_app
    from fastembed_rt.server.state import ServerState

    config = ServerConfig(models=(ServedModel("m", str(minilm_served_artifact)),))
    state = ServerState(config)
    caplog.set_level(logging.INFO, logger="fastembed_rt.server")
    with TestClient(create_app(config, state=state)) as client:
        assert state.ready.wait(120)
        for name in ("text-embedding-ada-002", "A" * 500_000):
            answer = client.post("/v1/embeddings", json={"input": "The cat sat.", "model": name})
            assert answer.status_code == 200, answer.text[:200]
    named = [r.getMessage() for r in caplog.records if "is not served; the one served model" in r.getMessage()]
    assert named == ["model 'text-embedding-ada-002' is not served; the one served model 'm' answers for it"]
    assert max(len(r.getMessage()) for r in caplog.records) < 1_000


def test_a_model_that_fails_to_load_for_an_unexpected_reason_is_logged_with_its_traceback(
    minilm_served_artifact: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while loading (not an error the library raises on purpose) was logged as its message alone: a KeyError
    read "loading models failed: 'hidden_size'"."""
    from fastembed_rt.errors import ArtifactError
    from fastembed_rt.server import ServedModel, ServerConfig
    from fastembed_rt.server import state as server_state

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("hidden_size")

    monkeypatch.setattr(server_state, "load_model", failing)
    state = server_state.ServerState(ServerConfig(models=(ServedModel("m", str(minilm_served_artifact)),)))
    with pytest.raises(KeyError):
        state.load_models()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("loading models failed")]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    # what the library refuses on purpose says all in its message: no traceback
    caplog.clear()
    missing = server_state.ServerState(ServerConfig(models=(ServedModel("m", str(minilm_served_artifact / "no")),)))
    monkeypatch.undo()
    with pytest.raises(ArtifactError):
        missing.load_models()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("loading models failed")]
    assert record.exc_info is None


def test_log_level_holds_where_the_process_configured_logging_before(tmp_path: Path) -> None:
    """A service that set up logging and then called the server's main(): basicConfig did nothing, so
    --log-level was ignored (info lines hidden at `info`, shown at `warning`)."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=sys.argv[1], stream=sys.stdout, format='%(levelname)s %(name)s %(message)s')\n"
        "from fastembed_rt.server.main import configure_logging\n"
        "configure_logging(sys.argv[2], hub=False)\n"
        "logging.getLogger('fastembed_rt.server.access').info('an access line')\n"
        "logging.getLogger('uvicorn.error').info('Started server process')\n"
    )
    shown = {}
    for root, flag in (("WARNING", "info"), ("DEBUG", "warning")):
        done = subprocess.run([sys.executable, "-c", code, root, flag], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        shown[flag] = done.stdout
    assert "INFO fastembed_rt.server.access an access line" in shown["info"]
    assert "INFO uvicorn Started server process" in shown["info"]  # renamed by the filter on uvicorn's logger
    assert "an access line" not in shown["warning"]


def test_int8_of_an_uncalibrated_model_is_a_422_and_a_null_precision_is_float32(minilm_artifact: Path) -> None:
    """int8 without calibration failed in the batch: a 500 "Backend" error with a traceback in the log, counted as a
    server error; ``"precision": null`` was a 422 where encode(precision=None) and the other null fields are the
    default."""
    from starlette.testclient import TestClient

    from fastembed_rt.server import ServedModel, ServerConfig, create_app
    from fastembed_rt.server.state import ServerState

    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["calibration"] = None
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    config = ServerConfig(models=(ServedModel("m", str(minilm_artifact)),))
    state = ServerState(config)
    with TestClient(create_app(config, state=state)) as client:
        assert state.ready.wait(120)
        refused = client.post("/embed", json={"inputs": ["a"], "precision": "int8"})
        assert refused.status_code == 422, refused.text
        assert "`precision`: " in refused.json()["error"] and "fastembed-rt calibrate" in refused.json()["error"]
        plain = client.post("/embed", json={"inputs": ["a"]}).json()
        assert client.post("/embed", json={"inputs": ["a"], "precision": None}).json() == plain
        assert client.post("/embed", json={"inputs": ["a"], "precision": "ubinary"}).status_code == 200
        metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics


def test_unknown_routes_and_wrong_methods_get_json_errors_and_are_counted(server: Server) -> None:
    counters = (
        'fastembed_rt_requests_total{route="unmatched",status="404"}',
        'fastembed_rt_requests_total{route="/embed",status="405"}',
        'fastembed_rt_requests_total{route="/health",status="200"}',
    )
    with server.client() as client:
        before = client.get("/metrics").text
        assert client.get("/health").status_code == 200
        missing = client.post("/embedd", json={"inputs": "x"})
        assert missing.status_code == 404 and missing.json()["error_type"] == "NotFound"
        assert "/embedd" in missing.json()["error"] and "/embed" in missing.json()["error"]
        wrong = client.get("/embed")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json()["error"] == "GET is not allowed on /embed; use POST"
        openai = client.post("/v1/embedding", json={"input": "x"})
        assert openai.status_code == 404 and openai.json()["error"]["type"] == "not_found_error"
        # a trailing slash is an unknown path too: it got a bodyless 307 to a Location built from the Host header
        for slashed in (client.post("/embed/", json={"inputs": "x"}), client.get("/health/")):
            assert slashed.status_code == 404 and slashed.json()["error_type"] == "NotFound", slashed.text
        slashed = client.post("/v1/embeddings/", json={"input": "x"})
        assert slashed.status_code == 404 and slashed.json()["error"]["type"] == "not_found_error", slashed.text
        after = client.get("/metrics").text
    # every answered request counts in the error rate, an unknown path under one label whatever the path
    assert [_metric(after, name) - _metric(before, name) for name in counters] == [5, 1, 1]
    assert 'route="/embedd"' not in after


def test_a_compressed_body_is_refused_as_such(server: Server) -> None:
    """A gzip body was parsed as text and refused with a message about surrogates."""
    import gzip

    with server.client() as client:
        body = gzip.compress(json.dumps({"inputs": "a text"}).encode())
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        refused = client.post("/embed", content=body, headers=headers)
        assert refused.status_code == 415, refused.text
        assert refused.json()["error"] == "Content-Encoding 'gzip' is not supported: send the JSON body uncompressed"
        openai = client.post("/v1/embeddings", content=body, headers=headers)
        assert openai.status_code == 415 and openai.json()["error"]["type"] == "invalid_request_error", openai.text
        plain = client.post("/embed", json={"inputs": "a text"}, headers={"content-encoding": "identity"})
        assert plain.status_code == 200


def test_large_response_bodies_are_built_in_pieces_off_the_event_loop() -> None:
    import orjson

    from fastembed_rt.server.responses import json_body

    rng = np.random.default_rng(0)
    matrices = [rng.standard_normal((256, 384), dtype=np.float32) for _ in range(16)]
    payloads = [
        matrices,  # /embed_all
        np.concatenate(matrices),  # /embed
        {"object": "list", "data": [{"embedding": row, "index": i} for i, row in enumerate(matrices[0])]},
        [[{"index": i, "value": 0.5}] * 300 for i in range(512)],  # /embed_sparse
    ]

    async def build(payload: Any) -> tuple[bytes, int]:
        task = asyncio.ensure_future(json_body(payload))
        turns = 0  # how often the loop ran something else while the body was built
        while not task.done():
            turns += 1
            await asyncio.sleep(0)
        return await task, turns

    for payload in payloads:
        body, turns = asyncio.run(build(payload))
        assert body == orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        assert turns > 1, "the loop was blocked while the body was built"
    small, turns = asyncio.run(build(matrices[0][:4]))
    assert small == orjson.dumps(matrices[0][:4], option=orjson.OPT_SERIALIZE_NUMPY)
    assert turns <= 1  # a small body is written on the loop: no thread hop


def test_a_long_row_of_small_objects_is_written_in_runs_not_one_call_per_object() -> None:
    """One /tokenize row of 380 k token objects was dumped one object per orjson call, and each call's bytes held
    4 kB of heap: 1.6 GB for a 27 MB body, kept after the request."""
    import orjson

    from fastembed_rt.server.responses import _DEPTH, VALUES_PER_PIECE, _pieces

    token = {"id": 1037, "text": "river", "special": False, "start": 0, "stop": 5}
    rows = [[dict(token, start=i) for i in range(100_000)], [], [token] * 3]  # /tokenize: texts of token objects
    matrix = np.arange(VALUES_PER_PIECE * 3, dtype=np.float32).reshape(-1, 64)
    mixed = [[1, 2], matrix, {"a": [token] * 5}, matrix[:2], matrix, []]  # a big item between small ones
    for payload in (rows, mixed, [matrix, matrix], [[token] * 20_000] * 3):
        pieces = list(_pieces(payload, _DEPTH))
        assert b"".join(pieces) == orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    pieces = list(_pieces(rows, _DEPTH))
    values = 5 * 100_003
    assert len(pieces) < 8 * values / VALUES_PER_PIECE, len(pieces)  # runs of about VALUES_PER_PIECE values


def test_payload_limit_and_a_server_default_long_input_policy(
    minilm_served_artifact: Path, minilm_runtime: SentenceTransformer
) -> None:
    long_text = "river " * 700
    args = ("--payload-limit", "6000", "--long-inputs", "chunk", "--chunk-overlap", "16")
    with serving(minilm_served_artifact, args=args) as s, s.client() as client:
        response = client.post("/embed", json={"inputs": "x" * 7000})
        assert response.status_code == 413 and "--payload-limit" in response.json()["error"]
        chunked = client.post("/embed", json={"inputs": [long_text]})
        expected = minilm_runtime.encode([long_text], long_inputs="chunk", chunk_overlap=16, normalize_embeddings=True)
        np.testing.assert_allclose(chunked.json(), expected, atol=1e-6)
        truncated = client.post("/embed", json={"inputs": [long_text], "truncate": True})
        np.testing.assert_allclose(truncated.json(), minilm_runtime.encode([long_text]), atol=1e-6)
        openai = client.post("/v1/embeddings", json={"input": [long_text]}).json()["data"][0]["embedding"]
        np.testing.assert_allclose([openai], expected, atol=1e-6)
        # Token ids cannot be cut into windows: under the chunk default those that fit are served (every one was
        # refused), an over-long one is refused by name, on both routes; a request that asks for chunk is refused.
        ids = [101, 7592, 2088, 102]
        for route, key in (("/embed", "inputs"), ("/v1/embeddings", "input")):
            short = client.post(route, json={key: [ids]})
            assert short.status_code == 200, short.text
            refused = client.post(route, json={key: [ids, [101, *[7592] * 300, 102]]})
            assert refused.status_code == 422 and "input 1 is 302 tokens long" in refused.text
        asked = client.post("/embed", json={"inputs": [ids], "long_inputs": "chunk"})
        assert asked.status_code == 422 and "not offered for token id inputs" in asked.text
        # /embed_all cannot pool windows either: an over-long text is refused (it was cut silently), a short served
        vectors = client.post("/embed_all", json={"inputs": ["short text"]})
        assert vectors.status_code == 200 and np.asarray(vectors.json()).shape == (1, 4, 384)
        refused = client.post("/embed_all", json={"inputs": [long_text]})
        assert refused.status_code == 422 and "input 0 is 702 tokens long" in refused.text
        asked = client.post("/embed_all", json={"inputs": ["short text"], "long_inputs": "chunk"})
        assert asked.status_code == 422 and "not offered for /embed_all" in asked.text


def test_long_inputs_per_request_chunk_or_error(
    server: Server, minilm_runtime: SentenceTransformer, reranker: CrossEncoder, splade: SparseEncoder
) -> None:
    long_text = "Berlin museums and rivers. " * 120
    with server.client() as client:
        dense = client.post("/embed", json={"inputs": ["short", long_text], "long_inputs": "chunk"}).json()
        expected = minilm_runtime.encode(["short", long_text], long_inputs="chunk", normalize_embeddings=True)
        np.testing.assert_allclose(dense, expected, atol=1e-6)
        refused = client.post("/embed", json={"inputs": ["short", long_text], "long_inputs": "error"})
        assert refused.status_code == 422 and refused.json()["error"].startswith("input 1 is ")
        query = "How many people live in Berlin?"
        ranks = client.post("/rerank", json={"query": query, "texts": [long_text, "short"], "long_inputs": "chunk"})
        scores = reranker.predict([(query, long_text), (query, "short")], long_inputs="chunk")
        assert {r["index"]: r["score"] for r in ranks.json()} == {
            0: pytest.approx(float(scores[0]), abs=1e-6),
            1: pytest.approx(float(scores[1]), abs=1e-6),
        }
        sparse = client.post("/embed_sparse", json={"inputs": [long_text], "long_inputs": "chunk"}).json()[0]
        indices, _ = splade.encode([long_text], long_inputs="chunk", sparse_format="arrays").row(0)
        assert [v["index"] for v in sparse] == indices.tolist()
        bad = client.post("/embed", json={"inputs": ["x"], "long_inputs": "wrap"})
        assert bad.status_code == 422 and "`long_inputs` must be" in bad.json()["error"]
        # OpenAI's route takes the same fields (it ignored them: chunk gave the truncated row, error a 200)
        openai = client.post("/v1/embeddings", json={"input": ["short", long_text], "long_inputs": "chunk"})
        np.testing.assert_allclose([d["embedding"] for d in openai.json()["data"]], expected, atol=1e-6)
        for field in ({"long_inputs": "error"}, {"truncate": False}):
            refused = client.post("/v1/embeddings", json={"input": ["short", long_text], **field})
            assert refused.status_code == 422 and refused.json()["error"]["message"].startswith("input 1 is ")


def test_too_long_input_without_truncation_is_422_naming_position_and_tokens(
    server: Server, minilm_runtime: SentenceTransformer
) -> None:
    long_text = "word " * 400
    tokens = minilm_runtime.count_tokens([long_text])[0]
    assert tokens == 402  # 400 words and [CLS], [SEP]: more than the 256 the model takes
    with server.client() as client:
        refused = client.post("/embed", json={"inputs": ["short", long_text], "truncate": False})
        assert refused.status_code == 422
        assert refused.json()["error"] == (
            "input 1 is 402 tokens long, more than the model's limit of 256; shorten it or send truncate=true"
        )
        # /similarity names its own fields, and where its truncate goes (it said "input 1" for sentences[0])
        for inputs, label in (
            ({"source_sentence": "short", "sentences": [long_text]}, "`inputs.sentences[0]`"),
            ({"source_sentence": long_text, "sentences": ["short"]}, "`inputs.source_sentence`"),
        ):
            body = {"inputs": inputs, "parameters": {"truncate": False}}
            assert client.post("/similarity", json=body).json()["error"] == (
                f"{label} is 402 tokens long, more than the model's limit of 256; shorten it or send "
                "parameters.truncate=true"
            )
        # one flat list of token ids: a bad id is named by its position in it (it was `inputs[0]`)
        flat = client.post("/embed", json={"inputs": [101, 7592, 99_999, 102]})
        assert flat.status_code == 422 and flat.json()["error"].startswith("`inputs[2]` is token id 99999, outside")
        decoded = client.post("/decode", json={"ids": [101, 99_999]})
        assert decoded.status_code == 422 and decoded.json()["error"].startswith("`ids[1]` is token id 99999")
        truncated = client.post("/embed", json={"inputs": ["short", long_text]})  # --auto-truncate defaults to true
        assert truncated.status_code == 200
        np.testing.assert_allclose(
            truncated.json(), minilm_runtime.encode(["short", long_text], normalize_embeddings=True), atol=1e-6
        )


def _metric(text: str, name: str) -> float:
    """The sum of the samples of ``name`` in Prometheus text whose labels include the ones ``name`` gives
    (``requests_total{route="/embed",status="200"}``: of every model)."""
    base, _, labels = name.partition("{")
    wanted = {label for label in labels.rstrip("}").split(",") if label}
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        line_base, _, line_labels = head.partition("{")
        if not line.startswith("#") and line_base == base and wanted <= set(line_labels.rstrip("}").split(",")):
            total += float(value)
    return total


def test_one_served_model_answers_any_model_name_as_tei_does(
    minilm_served_artifact: Path, minilm_runtime: SentenceTransformer
) -> None:
    """TEI never reads `model`; OpenAI clients set up for it send their own names (LangChain: text-embedding-ada-002),
    which got a 404 from a server of one model (the container serves its model as "model")."""
    with serving(f"model={minilm_served_artifact}") as s, s.client() as client:
        answer = client.post("/v1/embeddings", json={"model": "text-embedding-ada-002", "input": ["The cat sat."]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "model"  # the model that answered
        expected = minilm_runtime.encode(["The cat sat."], normalize_embeddings=True)
        np.testing.assert_allclose([answer.json()["data"][0]["embedding"]], expected, atol=1e-5)
        assert client.post("/embed", json={"inputs": "x", "model": "anything"}).status_code == 200
        wrong_task = client.post("/rerank", json={"query": "q", "texts": ["a"], "model": "ms-marco"})
        assert wrong_task.status_code == 422 and "'model' is an embedding model" in wrong_task.text


def test_api_key_guards_every_route_but_health(minilm_served_artifact: Path) -> None:
    with serving(minilm_served_artifact, args=("--api-key", "s3cret")) as s, s.client() as client:
        assert client.get("/health").status_code == 200
        for method, route in [("post", "/embed"), ("get", "/info"), ("get", "/metrics"), ("post", "/v1/embeddings")]:
            body = {"inputs": "x", "input": "x"} if method == "post" else None
            assert getattr(client, method)(route, **({"json": body} if body else {})).status_code == 401
        wrong = client.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error_type"] == "Auth"
        openai_wrong = client.post("/v1/embeddings", json={"input": "x"}, headers={"authorization": "Bearer nope"})
        assert openai_wrong.json()["error"]["code"] == "invalid_api_key"  # a string, as OpenAI's clients expect
        assert (
            client.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer s3cret"}).status_code == 200
        )
        # an unknown path: a 404 either way, the routes listed only to a caller with the key
        assert client.post("/embedd", json={"inputs": "x"}).json()["error"] == "no route /embedd"
        keyed = client.post("/embedd", json={"inputs": "x"}, headers={"authorization": "Bearer s3cret"})
        assert (
            keyed.status_code == 404 and "routes: /, /api-doc/openapi.json, /decode, /embed," in keyed.json()["error"]
        )


def test_an_empty_api_key_leaves_auth_off_and_says_so(
    minilm_served_artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FASTEMBED_RT_API_KEY", "")  # `FASTEMBED_RT_API_KEY=${KEY}` with KEY unset
    with serving(minilm_served_artifact) as s, s.client() as client:
        assert client.post("/embed", json={"inputs": "x"}).status_code == 200
        s.process.send_signal(signal.SIGTERM)
        _, stderr = s.process.communicate(timeout=30)
    assert "the API key is empty" in stderr and "authentication is off" in stderr

    from fastembed_rt.server import ServedModel, ServerConfig
    from fastembed_rt.server.state import ServerState

    with caplog.at_level("WARNING", logger="fastembed_rt.server"):
        blank = ServerState(ServerConfig(models=(ServedModel("m", "unused"),), api_key=" \n"))
    assert blank.api_key is None and "authentication is off" in caplog.text
    assert ServerState(ServerConfig(models=(ServedModel("m", "unused"),), api_key=" k \n")).api_key == "k"


def _raw_post(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def test_a_client_that_disconnects_has_its_queued_inputs_dropped(minilm_served_artifact: Path) -> None:
    # 48 texts of 256 tokens on one thread: seconds of work, far longer than the 0.4 s the second client stays.
    long_texts = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(48)]
    with serving(minilm_served_artifact, args=("--threads", "1")) as s:
        port = int(s.url.rsplit(":", 1)[1])
        busy = _raw_post(port, json.dumps({"inputs": long_texts}).encode())  # occupies the worker for a while
        with s.client() as client:
            _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 48)
            gone = _raw_post(port, json.dumps({"inputs": ["dropped text", "and another"]}).encode())
            _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 50)  # queued, body read
        gone.close()  # leaves while its inputs wait behind the busy request
        busy.settimeout(60)
        assert busy.recv(64).startswith(b"HTTP/1.1 200")
        busy.close()
        with s.client() as client:
            deadline = time.monotonic() + 30
            while _metric(client.get("/metrics").text, "fastembed_rt_dropped_inputs_total") < 2:
                assert time.monotonic() < deadline, "the dropped inputs were never counted"
                time.sleep(0.2)
            metrics = client.get("/metrics").text
        assert _metric(metrics, "fastembed_rt_dropped_inputs_total") == 2.0
        assert _metric(metrics, "fastembed_rt_batch_inputs_sum") == len(long_texts), "the dropped ones never ran"


def test_a_vertex_request_refused_for_one_instance_runs_none_of_the_others(minilm_served_artifact: Path) -> None:
    long_texts = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(48)]
    limits = ("--max-concurrent-requests", "64", "--max-client-batch-size", "64")
    with serving(minilm_served_artifact, args=("--threads", "1", *limits)) as s:
        port = int(s.url.rsplit(":", 1)[1])
        busy = _raw_post(port, json.dumps({"inputs": long_texts}).encode())  # 48 of the 64 permits, for seconds
        with s.client() as client:
            _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 48)
            # the first instance fits the 16 permits left and queues behind the busy request; the second does not
            instances = [{"inputs": [f"queued {i}" for i in range(8)]}, {"inputs": [f"refused {i}" for i in range(10)]}]
            refused = client.post("/vertex", json={"instances": instances})
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"].startswith("`instances[1]`: ")
            assert int(refused.headers["retry-after"]) >= 1
        busy.settimeout(60)
        assert busy.recv(64).startswith(b"HTTP/1.1 200")
        busy.close()
        with s.client() as client:
            metrics = _wait_for_metric(client, "fastembed_rt_dropped_inputs_total", lambda v: v >= 8)
            assert _metric(metrics, "fastembed_rt_dropped_inputs_total") == 8.0
            assert _metric(metrics, "fastembed_rt_batch_inputs_sum") == len(long_texts), "the first instance never ran"
            assert _metric(metrics, "fastembed_rt_inputs_in_flight") == 0


def _wait_for_metric(client: httpx.Client, name: str, done: Any, timeout: float = 30) -> str:
    """The metrics text once ``done(value of name)`` holds (polled; fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not done(_metric(text := client.get("/metrics").text, name)):
        assert time.monotonic() < deadline, f"{name} never reached the expected value: {_metric(text, name)}"
        time.sleep(0.1)
    return text


def test_a_client_that_drops_mid_upload_is_counted_without_a_traceback(minilm_served_artifact: Path) -> None:
    with serving(minilm_served_artifact) as s, s.client() as client:
        sock = socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=30)
        sock.sendall(
            b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"inputs":'
        )
        time.sleep(0.3)
        sock.close()  # 990 bytes short
        _wait_for_metric(client, 'fastembed_rt_requests_total{route="/embed",status="499"}', lambda v: v == 1)
        assert client.get("/health").status_code == 200
        s.process.send_signal(signal.SIGTERM)
        _, stderr = s.process.communicate(timeout=30)
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr


def test_each_request_gets_one_access_log_line_without_bodies_or_keys(minilm_served_artifact: Path) -> None:
    """Nothing was logged per request, at any level: no 401 and no 500 could be traced in a log pipeline. Probes
    and scrapes that succeed (/health, /metrics 200) are not logged: one line per probe would drown the rest."""
    key, secret_text = "sekrit-key-42", "a private text that must not reach the log"
    runs = ((("--log-level", "info", "--api-key", key), True), (("--log-level", "info", "--no-access-log"), False))
    for args, logged in runs:
        with serving(minilm_served_artifact, args=args) as s, s.client() as client:
            auth = {"Authorization": f"Bearer {key}"} if logged else {}
            assert client.post("/embed", json={"inputs": [secret_text]}, headers=auth).status_code == 200
            if logged:
                assert client.post("/embed", json={"inputs": "x"}).status_code == 401
            assert client.post("/nope", json={"inputs": "x"}, headers=auth).status_code == 404
            assert client.get("/metrics", headers=auth).status_code == 200
            s.process.send_signal(signal.SIGTERM)
            _, stderr = s.process.communicate(timeout=30)
        marker = "fastembed_rt.server.access: "
        access = [line.split(marker, 1)[1] for line in stderr.splitlines() if marker in line]
        if not logged:
            assert access == [], access
            continue
        shapes = [re.sub(r" [0-9.]+ ms ", " ", line) for line in access if "/health" not in line]
        assert shapes == [
            f"POST /embed 200 model={minilm_served_artifact.name} client=127.0.0.1",
            "POST /embed 401 model=- client=127.0.0.1",
            "POST unmatched '/nope' 404 model=- client=127.0.0.1",
        ], access
        assert all(" 200 " not in line for line in access if "/health" in line)  # probes that pass: not logged
        assert key not in stderr and secret_text not in stderr


def test_a_client_that_leaves_has_its_running_request_stopped_between_runs(minilm_served_artifact: Path) -> None:
    # 512 texts of 256 tokens on one thread: tens of seconds of work, run a few graph batches at a time.
    texts = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(512)]
    with serving(minilm_served_artifact, args=("--threads", "1")) as s, s.client() as client:
        sock = _raw_post(int(s.url.rsplit(":", 1)[1]), json.dumps({"inputs": texts}).encode())
        tokenized = 'fastembed_rt_tokenization_duration_seconds_count{model="all-MiniLM-L6-v2"}'
        _wait_for_metric(client, tokenized, lambda v: v == 1)  # its first model call has begun
        sock.close()  # leaves while the worker runs its request
        _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 0)
        assert client.post("/embed", json={"inputs": "a fresh request"}).status_code == 200
        metrics = client.get("/metrics").text
    computed = _metric(metrics, "fastembed_rt_batch_inputs_sum") - 1
    assert 0 < computed < len(texts), "the request of the client that left was run to its end"
    assert _metric(metrics, "fastembed_rt_dropped_inputs_total") == len(texts) - computed


def test_a_client_that_leaves_keeps_its_permits_while_its_inputs_still_run(minilm_served_artifact: Path) -> None:
    """Its permits went back as soon as it left, while the worker ran on through its model call: a retry was
    admitted beside the orphaned inputs (and ran at half speed) with `inputs_in_flight` at 0. A queued request whose
    client left never runs: its permits go back at once."""
    running = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(512)]
    queued = [f"{i} another passage about mountains" for i in range(100)]
    # one model call for the whole of the first request: tens of seconds on one thread
    args = ("--threads", "1", "--max-batch-size", "512", "--max-concurrent-requests", "1024")
    with serving(minilm_served_artifact, args=args) as s, s.client() as client:
        port = int(s.url.rsplit(":", 1)[1])
        first = _raw_post(port, json.dumps({"inputs": running}).encode())
        tokenized = 'fastembed_rt_tokenization_duration_seconds_count{model="all-MiniLM-L6-v2"}'
        _wait_for_metric(client, tokenized, lambda v: v == 1)  # its model call has begun
        second = _raw_post(port, json.dumps({"inputs": queued}).encode())
        _wait_for_metric(client, "fastembed_rt_queue_inputs", lambda v: v == len(queued))
        second.close()
        left = 'fastembed_rt_requests_total{route="/embed",status="499"}'
        metrics = _wait_for_metric(client, left, lambda v: v == 1)
        assert _metric(metrics, "fastembed_rt_inputs_in_flight") == len(running)  # the queued one's went back
        first.close()
        metrics = _wait_for_metric(client, left, lambda v: v == 2)
        assert _metric(metrics, "fastembed_rt_batch_inputs_count") == 0  # its call still runs, and so
        assert _metric(metrics, "fastembed_rt_inputs_in_flight") == len(running)  # it holds its permits
        _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 0, timeout=300)  # back once it ends
        assert client.post("/embed", json={"inputs": "a fresh request"}).status_code == 200


def test_sigterm_finishes_accepted_requests_then_exits_zero(minilm_served_artifact: Path) -> None:
    # 32 texts of 256 tokens on one thread: a few seconds of work, so the request is still running when
    # SIGTERM arrives 0.3 s later, and well inside the server's 30 s --graceful-timeout on a busy 2-core CI.
    texts = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(32)]
    with serving(minilm_served_artifact, args=("--threads", "1")) as s:
        port = int(s.url.rsplit(":", 1)[1])
        replies: list[bytes] = []
        sock = _raw_post(port, json.dumps({"inputs": texts}).encode())

        def read() -> None:
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
            replies.append(b"".join(chunks))

        reader = threading.Thread(target=read)
        reader.start()
        with s.client() as client:  # the request is accepted and running
            _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == len(texts))
        s.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # no new connections while draining (the listening socket closes at once)
            try:
                httpx.post(f"{s.url}/embed", json={"inputs": "late"}, timeout=5)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "new connections were still accepted 10 s after SIGTERM"
            time.sleep(0.05)
        assert s.process.wait(60) == 0
        reader.join(60)
        sock.close()
    head, _, body = replies[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(json.loads(body)) == len(texts)


@pytest.mark.parametrize("graceful_timeout", ["1", "0.5", "0"])
def test_sigterm_past_the_graceful_timeout_answers_503_then_exits_zero(
    minilm_served_artifact: Path, graceful_timeout: str
) -> None:
    # 512 texts of 256 tokens on one thread: tens of seconds of work, far past each timeout; the graph is
    # still running when the timeout ends, and the process must neither wait for it nor free it under it.
    texts = [f"{i} " + "a long passage about the weather and the sea " * 40 for i in range(512)]
    args = ("--threads", "1", "--graceful-timeout", graceful_timeout)
    with serving(minilm_served_artifact, args=args) as s, s.client() as client:
        sock = _raw_post(int(s.url.rsplit(":", 1)[1]), json.dumps({"inputs": texts}).encode())
        _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 512)
        s.process.send_signal(signal.SIGTERM)
        reply = b""
        while chunk := sock.recv(1 << 16):
            reply += chunk
        sock.close()
        _, stderr = s.process.communicate(timeout=60)
    assert s.process.returncode == 0, stderr  # no abort: a graph still running was not freed under it
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), head
    message = f"the server shut down before this request finished (--graceful-timeout {float(graceful_timeout):g} s)"
    assert json.loads(body) == {"error": message, "error_type": "Unhealthy"}
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr


# 8 texts of 130,000 words (5.2 MB, past the default payload limit): seconds of tokenizing on any CPU, so the stop
# or the client's leaving lands while it runs
# every token of 8 long texts (chunk: whole, where truncation now tokenizes only the part it keeps): seconds of work
LONG_TOKENIZE = json.dumps({"inputs": ["word " * 130_000] * 8, "long_inputs": "chunk"}).encode()
TOKENIZE_LIMIT = ("--payload-limit", str(8 << 20))


def _send_head(port: int, path: str, body: bytes, send: int) -> socket.socket:
    """A POST of ``body`` to ``path`` with only its first ``send`` bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[:send])
    return sock


def _reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and body of the one answer on ``sock`` (read until the server closes it)."""
    reply = b""
    while chunk := sock.recv(1 << 16):
        reply += chunk
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def test_sigterm_past_the_graceful_timeout_answers_503_to_requests_outside_the_models_too(
    minilm_served_artifact: Path,
) -> None:
    """A request still uploading its body, or tokenizing in a thread, at the end of the graceful timeout was
    cancelled by uvicorn: a plain-text 500 and an "Exception in ASGI application" traceback in the log."""
    upload = json.dumps({"inputs": ["a text", "another"]}).encode()
    args = ("--graceful-timeout", "0.5", *TOKENIZE_LIMIT)
    with serving(minilm_served_artifact, args=args) as s, s.client() as client:
        port = int(s.url.rsplit(":", 1)[1])
        uploading = _send_head(port, "/embed", upload, len(upload) // 2)  # the rest never comes
        tokenizing = _send_head(port, "/tokenize", LONG_TOKENIZE, len(LONG_TOKENIZE))
        _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 8)  # /tokenize's texts
        s.process.send_signal(signal.SIGTERM)
        replies = [_reply(uploading), _reply(tokenizing)]
        _, stderr = s.process.communicate(timeout=60)
    message = "the server shut down before this request finished (--graceful-timeout 0.5 s)"
    for status, body in replies:
        assert status == b"HTTP/1.1 503 Service Unavailable", (status, body)
        assert json.loads(body) == {"error": message, "error_type": "Unhealthy"}
    assert s.process.returncode == 0 and "Traceback" not in stderr, stderr


def test_a_client_that_leaves_a_tokenize_request_is_counted_499_not_answered(minilm_served_artifact: Path) -> None:
    """/tokenize went on to build and count a 200 answer (27 MB here) for a client long gone."""
    gone = 'fastembed_rt_requests_total{route="/tokenize",status="499"}'
    with serving(minilm_served_artifact, args=TOKENIZE_LIMIT) as s, s.client() as client:
        sock = _send_head(int(s.url.rsplit(":", 1)[1]), "/tokenize", LONG_TOKENIZE, len(LONG_TOKENIZE))
        _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 8)
        sock.close()
        _wait_for_metric(client, gone, lambda v: v == 1)
        # the tokenizer cannot be stopped: its texts stay admitted until it ends, then every permit is back
        metrics = _wait_for_metric(client, "fastembed_rt_inputs_in_flight", lambda v: v == 0)
    assert _metric(metrics, 'fastembed_rt_requests_total{route="/tokenize",status="200"}') == 0


def test_sigterm_while_models_load_exits_zero_promptly(minilm_served_artifact: Path) -> None:
    port = _free_port()
    models = [f"m{i}={minilm_served_artifact}" for i in range(12)]
    command = [sys.executable, "-m", "fastembed_rt.server", *models, "--port", str(port), "--threads", "1"]
    process = subprocess.Popen([*command, "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:  # the app answers while its models load: 503 until the last is warm
            assert process.poll() is None and time.monotonic() < deadline, "the server never answered"
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                assert health.status_code == 503, "all 12 models loaded before the test could stop the server"
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr


def _serve_a_missing_model(tmp_path: Path, port: int, **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -m fastembed_rt.server`` on an artifact that does not exist: it starts, fails to load and exits."""
    return subprocess.run(
        [sys.executable, "-m", "fastembed_rt.server", str(tmp_path / "missing"), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **environment},
    )


def test_a_model_that_cannot_load_stops_the_server_with_exit_code_1(tmp_path: Path) -> None:
    result = _serve_a_missing_model(tmp_path, _free_port())
    assert result.returncode == 1
    assert f"error: artifact directory {tmp_path / 'missing'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_flag_that_is_not_port_from_the_environment_is_warned_about(tmp_path: Path) -> None:
    """The image's health check probes $PORT: a container started with --port reported itself unhealthy."""
    port = _free_port()
    for environment_port, warned in ((port + 1, True), (port, False)):
        result = _serve_a_missing_model(tmp_path, port, PORT=str(environment_port))
        assert result.returncode == 1
        assert (f"serving on port {port}, not $PORT ({environment_port})" in result.stderr) is warned, result.stderr


def test_uvicorns_lines_are_in_the_servers_format_with_a_time(tmp_path: Path) -> None:
    """uvicorn printed its own lines ("INFO:     Started server process") between the server's timestamped ones."""
    import re

    result = _serve_a_missing_model(tmp_path, _free_port())
    logged = [line for line in result.stderr.splitlines() if not line.startswith("error: ")]
    assert any("INFO uvicorn: Started server process" in line for line in logged), result.stderr
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")
    assert all(stamp.match(line) for line in logged), result.stderr


def test_the_server_prints_each_huggingface_hub_log_line_once_in_its_format() -> None:
    """huggingface_hub's own stderr handler printed every line it logged (fetching a hub id) a second time, raw."""
    code = (
        "from fastembed_rt.server.main import configure_logging; configure_logging('info'); "
        "import huggingface_hub, logging; logging.getLogger('huggingface_hub.file_download').warning('hub says hi')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr.count("hub says hi") == 1, result.stderr
    assert "WARNING huggingface_hub.file_download: hub says hi" in result.stderr


_NO_TORCH = """
import json
from fastembed_rt.server import ServedModel, ServerConfig, create_app, main
from fastembed_rt.server.state import ServerState
state = ServerState(ServerConfig(models=(ServedModel("m", sys.argv[1]),)))
create_app(state.config, state=state)
state.load_models()
state.close()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
"""


def test_the_server_loads_models_with_torch_unimportable(
    minilm_served_artifact: Path, run_without_torch: RunWithoutTorch
) -> None:
    result = run_without_torch(_NO_TORCH, str(minilm_served_artifact))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_docs_serve_examples_run_against_the_server(server: Server) -> None:
    section = SERVING_DOC.read_text(encoding="utf-8").split("## Serve over HTTP", 1)[1].split("\n## ", 1)[0]
    snippet = re.findall(r"```py\n(.*?)```", section, flags=re.S)[0].replace("http://127.0.0.1:8080", server.url)
    exec(compile(snippet, "docs/serving.md serve example", "exec"), {"__name__": "__readme__"})
    calls = re.findall(r"^curl -s 127\.0\.0\.1:8080(\S+) .*-d '(.*)'$", section, flags=re.M)
    assert [route for route, _ in calls] == ["/embed", "/rerank"]
    for route, body in calls:
        assert _post(server, route, json.loads(body)).status_code == 200


def test_a_host_that_names_no_address_is_refused_naming_the_flag(tmp_path: Path) -> None:
    """uvicorn exited with code 3 and its own resolver error, the flag unnamed."""
    result = subprocess.run(
        [sys.executable, "-m", "fastembed_rt.server", str(tmp_path / "missing"), "--host", "999.1.1.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "error: --host '999.1.1.1' is no address this machine can listen on" in result.stderr
