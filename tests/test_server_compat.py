"""What a client of text-embeddings-inference (TEI) or OpenAI's embeddings meets when the server replaces them: their
routes, bodies, health checks, environment and browser rules (TEI's server.rs and OpenAI's API reference)."""

from __future__ import annotations

import argparse
import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient
from tiny_models import export_tiny_model

from fastembed_rt import SentenceTransformer
from fastembed_rt.server import ServedModel, ServerConfig, create_app
from fastembed_rt.server.main import add_arguments, config_from_args, tei_environment_used
from fastembed_rt.server.state import ServerState

TEXTS = ["A man is playing a guitar.", "A woman slices an onion."]


@pytest.fixture(scope="module")
def unnormalized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense model without a Normalize module: its own vectors are not unit length."""
    return export_tiny_model(tmp_path_factory.mktemp("unnormalized"), "bert", "mean").artifact


def _client(*models: tuple[str, Path], **settings: object) -> Iterator[TestClient]:
    config = ServerConfig(models=tuple(ServedModel(name, str(path)) for name, path in models), **settings)  # type: ignore[arg-type]
    state = ServerState(config)
    with TestClient(create_app(config, state=state)) as client:
        assert state.ready.wait(120)
        yield client


@pytest.fixture(scope="module")
def client(unnormalized: Path, tiny_splade_artifact: Path, tiny_reranker_artifact: Path) -> Iterator[TestClient]:
    yield from _client(("dense", unnormalized), ("splade", tiny_splade_artifact), ("reranker", tiny_reranker_artifact))


def test_openai_embeddings_are_unit_length_cut_to_dimensions_first(client: TestClient, unnormalized: Path) -> None:
    """The route gave the model's own vectors (norm ~4 here) where OpenAI and TEI's /v1/embeddings give unit ones;
    with ``dimensions`` TEI cuts, then normalizes."""
    model = SentenceTransformer(unnormalized)
    raw = model.encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3), "the model's own vectors are not unit length"
    full = client.post("/v1/embeddings", json={"input": TEXTS, "model": "dense"}).json()["data"]
    np.testing.assert_allclose(
        [row["embedding"] for row in full], raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6
    )
    cut = client.post("/v1/embeddings", json={"input": TEXTS, "model": "dense", "dimensions": 8}).json()["data"]
    expected = raw[:, :8] / np.linalg.norm(raw[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose([row["embedding"] for row in cut], expected, atol=1e-6)
    embed = client.post("/embed", json={"inputs": TEXTS, "model": "dense", "dimensions": 8}).json()
    np.testing.assert_allclose(embed, expected, atol=1e-6)
    encoded = client.post("/v1/embeddings", json={"input": TEXTS[0], "model": "dense", "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(encoded.json()["data"][0]["embedding"]), dtype="<f4")
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@pytest.mark.parametrize("path", ["/health", "/ping", "/"])
def test_every_health_route_tei_answers_is_a_200_once_ready(client: TestClient, path: str) -> None:
    """SageMaker probes GET /ping and the hub GET /: both were 404 and 405."""
    response = client.get(path)
    assert response.status_code == 200, response.text


def test_the_spec_is_also_where_tei_serves_it(client: TestClient) -> None:
    assert client.get("/api-doc/openapi.json").json() == client.get("/openapi.json").json()


@pytest.mark.parametrize("declared", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_not_declared_json_is_a_415(client: TestClient, declared: str | None) -> None:
    """A browser posts these from any web page without a CORS preflight: as JSON, a page elsewhere had a server
    without an API key do its work."""
    headers = {"content-type": declared} if declared else {}
    response = client.post("/embed", content=b'{"inputs": "a text", "model": "dense"}', headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["error"]
    openai = client.post("/v1/embeddings", content=b'{"input": "a text"}', headers=headers)
    assert openai.status_code == 415 and openai.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("declared", ["application/json; charset=utf-8", "Application/JSON", "application/vnd.x+json"])
def test_a_json_body_with_parameters_or_a_json_suffix_is_taken(client: TestClient, declared: str) -> None:
    response = client.post(
        "/embed", content=b'{"inputs": "a text", "model": "dense"}', headers={"content-type": declared}
    )
    assert response.status_code == 200, response.text


def test_sparse_embeddings_of_token_ids_equal_those_of_their_text(
    client: TestClient, tiny_splade_artifact: Path
) -> None:
    """TEI's /embed_sparse takes token ids as /embed does; they were a 422."""
    ids = client.post("/tokenize", json={"inputs": TEXTS[0], "model": "splade"}).json()[0]
    token_ids = [token["id"] for token in ids]
    from_text = client.post("/embed_sparse", json={"inputs": TEXTS[0], "model": "splade"}).json()
    from_ids = client.post("/embed_sparse", json={"inputs": token_ids, "model": "splade"})
    assert from_ids.status_code == 200, from_ids.text
    assert from_ids.json() == from_text
    too_big = client.post("/embed_sparse", json={"inputs": [[10**9]], "model": "splade"})
    assert too_big.status_code == 422 and "`inputs[0]` holds token id 1000000000" in too_big.json()["error"]


def test_a_list_mixing_texts_and_token_ids_is_served_in_its_order(client: TestClient) -> None:
    """TEI reads each item of a batch as a text or a row of token ids; ours refused a list mixing both."""
    tokens = client.post("/tokenize", json={"inputs": TEXTS, "model": "dense"}).json()
    ids = [[token["id"] for token in row] for row in tokens]
    mixed = [TEXTS[0], ids[1], ids[0], TEXTS[1]]
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[1]]
    for route, key in (("/embed", "inputs"), ("/v1/embeddings", "input")):
        got = client.post(route, json={key: mixed, "model": "dense"})
        assert got.status_code == 200, got.text
        want = client.post(route, json={key: texts, "model": "dense"}).json()
        if route == "/v1/embeddings":
            got_rows, want_rows = ([d["embedding"] for d in body["data"]] for body in (got.json(), want))
        else:
            got_rows, want_rows = got.json(), want
        np.testing.assert_allclose(got_rows, want_rows, atol=1e-6)
    splade = [
        [token["id"] for token in row]
        for row in client.post("/tokenize", json={"inputs": TEXTS, "model": "splade"}).json()
    ]
    sparse = client.post("/embed_sparse", json={"inputs": [splade[1], TEXTS[0]], "model": "splade"})
    assert sparse.status_code == 200, sparse.text
    want = client.post("/embed_sparse", json={"inputs": TEXTS[::-1], "model": "splade"}).json()
    for got_row, want_row in zip(sparse.json(), want, strict=True):
        assert [term["index"] for term in got_row] == [term["index"] for term in want_row]
        np.testing.assert_allclose([t["value"] for t in got_row], [t["value"] for t in want_row], atol=1e-6)


def test_errors_in_a_mixed_list_name_the_input_by_its_place_in_the_request(client: TestClient) -> None:
    long_text = "word " * 2000
    ok = client.post("/tokenize", json={"inputs": TEXTS[0], "model": "dense"}).json()[0]
    ids = [token["id"] for token in ok]
    refused = client.post("/embed", json={"inputs": [ids, TEXTS[0], long_text], "model": "dense", "truncate": False})
    assert refused.status_code == 422 and refused.json()["error"].startswith("input 2 is "), refused.text
    bad_id = client.post("/embed", json={"inputs": [TEXTS[0], [10**9]], "model": "dense"})
    assert bad_id.status_code == 422 and "`inputs[1]` holds token id 1000000000" in bad_id.json()["error"]
    chunk = client.post("/embed", json={"inputs": [TEXTS[0], ids], "model": "dense", "long_inputs": "chunk"})
    assert chunk.status_code == 422 and "not offered for token id inputs" in chunk.json()["error"]
    neither = client.post("/embed", json={"inputs": [TEXTS[0], {"ids": ids}], "model": "dense"})
    assert neither.status_code == 422
    assert "`inputs[1]` must be a string or a list of token ids, got an object" in neither.json()["error"]


def test_an_openai_error_names_openais_field(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": [99_999_999], "model": "dense"})
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("`input[0]` is token id 99999999, outside the vocabulary")


def test_decoding_no_ids_is_teis_empty_error(client: TestClient) -> None:
    """Was a 422 saying an array must be an array."""
    response = client.post("/decode", json={"ids": [], "model": "dense"})
    assert (response.status_code, response.json()) == (400, {"error": "`ids` cannot be empty", "error_type": "Empty"})


def test_vertex_answers_each_instance_as_the_default_route_in_order(client: TestClient) -> None:
    """TEI's Vertex AI route was a 404."""
    instances = [{"inputs": TEXTS, "model": "dense"}, {"inputs": TEXTS[1], "model": "dense"}]
    response = client.post("/vertex", json={"instances": instances})
    assert response.status_code == 200, response.text
    expected = [client.post("/", json=instance).json() for instance in instances]
    predictions = response.json()["predictions"]
    assert [np.shape(p) for p in predictions] == [(2, 32), (1, 32)]  # /embed is 2-D for one text too (TEI)
    for got, want in zip(predictions, expected):  # batched with each other: float noise of the batch's shape
        np.testing.assert_allclose(got, want, atol=1e-6)
    ranked = client.post("/vertex", json={"instances": [{"query": "q", "texts": TEXTS, "model": "reranker"}]})
    assert (
        ranked.json()["predictions"][0]
        == client.post("/rerank", json={"query": "q", "texts": TEXTS, "model": "reranker"}).json()
    )
    # one request: the instances' inputs together within --max-client-batch-size (each alone passed; their sum
    # could pass --max-concurrent-requests, a 429 no retry ends)
    many = client.post("/vertex", json={"instances": [{"inputs": ["a"] * 300, "model": "dense"}] * 2})
    assert many.status_code == 422 and "batch size 600 > maximum allowed batch size 512" in many.json()["error"]
    failing = client.post("/vertex", json={"instances": [instances[0], {"inputs": "", "model": "dense"}]})
    assert failing.status_code == 400 and failing.json()["error_type"] == "Empty"
    assert failing.json()["error"].startswith("`instances[1]`: ")  # which instance failed
    assert client.post("/vertex", json={"instances": []}).status_code == 400
    unknown = client.post("/vertex", json={"instances": [{"inputs": "a", "model": "nope"}, instances[0]]})
    assert unknown.status_code == 404 and unknown.json()["error"].startswith("`instances[0]`: model 'nope'")


def test_vertex_sends_the_token_count_and_stage_times_of_its_instances(client: TestClient) -> None:
    """/vertex runs on the model workers as /embed does but sent none of x-compute-tokens and the stage times."""
    instances = [{"inputs": TEXTS, "model": "dense"}, {"query": "q", "texts": TEXTS, "model": "reranker"}]
    response = client.post("/vertex", json={"instances": instances})
    assert response.status_code == 200, response.text
    tokens = [int(client.post("/", json=instance).headers["x-compute-tokens"]) for instance in instances]
    assert int(response.headers["x-compute-tokens"]) == sum(tokens) > 0
    for header in ("x-queue-time", "x-tokenization-time", "x-inference-time"):
        assert int(response.headers[header]) >= 0, header


def test_browser_calls_are_allowed_only_for_the_origins_given(unnormalized: Path) -> None:
    preflight = {"origin": "https://app.example.com", "access-control-request-method": "POST"}
    for client in _client(("dense", unnormalized)):
        assert (
            "access-control-allow-origin"
            not in client.post("/embed", json={"inputs": "a"}, headers={"origin": "https://app.example.com"}).headers
        )
        assert client.options("/embed", headers=preflight).status_code == 405
    for client in _client(("dense", unnormalized), cors_allow_origin=("https://app.example.com",)):
        allowed = client.options("/embed", headers={**preflight, "access-control-request-headers": "content-type"})
        assert (
            allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        )
        answered = client.post("/embed", json={"inputs": "a"}, headers={"origin": "https://app.example.com"})
        assert answered.headers["access-control-allow-origin"] == "https://app.example.com"
        assert client.options("/embed", headers={**preflight, "origin": "https://evil.example"}).status_code == 400


def _serve_config(argv: list[str]) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(["m=artifact", *argv]))


def test_teis_environment_variables_set_the_flags_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TEI deployment's API_KEY left auth off here, silently; its other settings were ignored too."""
    for name, value in {
        "API_KEY": "secret",
        "MAX_CONCURRENT_REQUESTS": "16",  # TEI's counts requests: not ours, which counts inputs
        "MAX_BATCH_TOKENS": "4096",
        "MAX_CLIENT_BATCH_SIZE": "8",
        "PAYLOAD_LIMIT": "1000",
        "AUTO_TRUNCATE": "False",
        "CORS_ALLOW_ORIGIN": "https://a.example, https://b.example",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FASTEMBED_RT_API_KEY", raising=False)
    config = _serve_config([])
    assert (config.api_key, config.max_concurrent_requests, config.max_batch_tokens) == ("secret", 512, 4096)
    assert (config.max_client_batch_size, config.payload_limit, config.auto_truncate) == (8, 1000, False)
    assert config.cors_allow_origin == ("https://a.example", "https://b.example")
    assert tei_environment_used(config) == [
        "API_KEY",
        "MAX_BATCH_TOKENS",
        "MAX_CLIENT_BATCH_SIZE",
        "PAYLOAD_LIMIT",
        "AUTO_TRUNCATE",
        "CORS_ALLOW_ORIGIN",
    ]
    flags = _serve_config(["--max-batch-tokens", "512", "--auto-truncate", "--cors-allow-origin", "*"])
    assert (flags.max_batch_tokens, flags.auto_truncate, flags.cors_allow_origin) == (512, True, ("*",))
    assert "MAX_BATCH_TOKENS" not in tei_environment_used(flags), "the flag set it, and the log must not say $VAR did"
    for blank in ("", "  "):  # an unset template variable, or a blank one: no key, so TEI's key still counts
        monkeypatch.setenv("FASTEMBED_RT_API_KEY", blank)
        assert _serve_config([]).api_key == "secret"
    monkeypatch.setenv("MAX_BATCH_TOKENS", "04096")  # the value it set, however written
    assert "MAX_BATCH_TOKENS" in tei_environment_used(_serve_config([]))
    monkeypatch.setenv("FASTEMBED_RT_API_KEY", "ours")
    assert _serve_config([]).api_key == "ours" and "API_KEY" not in tei_environment_used(_serve_config([]))


def test_a_bad_tei_environment_value_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_BATCH_TOKENS", "lots")
    with pytest.raises(SystemExit):
        _serve_config([])
    assert "not a whole number: 'lots' (from the flag or $MAX_BATCH_TOKENS)" in capsys.readouterr().err


def test_a_wrong_method_on_the_root_lists_every_method_it_takes(client: TestClient) -> None:
    """GET / (health) hid POST / (the default route) in the 405's Allow and message."""
    response = client.put("/", json={"inputs": "a"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST" and response.json()["error"].endswith("use GET, HEAD, POST")


def test_a_path_holding_an_equals_sign_is_served_whole(tmp_path: Path) -> None:
    """``run=3/model`` was split as NAME=ARTIFACT, and ``3/model`` looked up on the hub."""
    (tmp_path / "run=3" / "model").mkdir(parents=True)
    served = _serve_config([str(tmp_path / "run=3" / "model")]).models[1]
    assert (served.name, served.artifact) == ("model", str(tmp_path / "run=3" / "model"))
    assert _serve_config(["name=elsewhere/model"]).models[1] == ServedModel("name", "elsewhere/model")


def test_a_model_name_in_another_unicode_form_finds_its_model(unnormalized: Path) -> None:
    """A folder named in NFD (macOS, rsync) was 'not served' under the NFC name a client typed."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    for client in _client((nfd, unnormalized), ("other", unnormalized)):
        answered = client.post("/embed", json={"inputs": "a", "model": unicodedata.normalize("NFC", "café")})
        assert answered.status_code == 200, answered.text


def test_vertex_counts_a_cross_encoders_pair_as_one_input(tiny_reranker_artifact: Path) -> None:
    """["q", "d"] is one pair on /predict: /vertex counted two, and refused two pairs under a limit of 2."""
    for client in _client(("reranker", tiny_reranker_artifact), max_client_batch_size=2, max_concurrent_requests=2):
        body = {"instances": [{"inputs": ["q", "d"]}, {"inputs": ["q", "e"]}]}
        response = client.post("/vertex", json=body)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 2


def test_a_config_takes_the_long_input_policy_as_the_librarys_string() -> None:
    """ServerConfig(long_inputs="error") served over-long inputs truncated: the handlers compare the enum."""
    from fastembed_rt.long_inputs import LongInputs

    models = (ServedModel("m", "artifact"),)
    assert ServerConfig(models=models, long_inputs="error").default_long_inputs is LongInputs.ERROR
    assert ServerConfig(models=models, long_inputs="chunk").default_long_inputs is LongInputs.CHUNK
    assert ServerConfig(models=models, long_inputs="wrap").check() == [  # type: ignore[arg-type]
        "--long-inputs must be one of truncate, error, chunk, got 'wrap'"
    ]


def test_a_prompt_reaches_token_id_rows_tokenize_and_the_openai_route_as_on_embed(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Token id rows skipped the prompt (a text and its own ids got vectors 0.54 apart in one request; TEI decodes
    them and puts the prompt before), /tokenize left out the default prompt /embed applies, and /v1/embeddings
    read no prompt_name (the default's vectors, an unknown name a 200)."""
    prompts = {"query": "query: ", "doc": "passage: "}
    model = SentenceTransformer(minilm_artifact_session, prompts=prompts, default_prompt_name="query")
    model.save(tmp_path / "prompted")
    text = "how to bake bread"
    ids = model.tokenize([text])["input_ids"][0].tolist()  # the text's own ids: no prompt, special tokens included
    for client in _client(("dense", tmp_path / "prompted")):
        default = client.post("/embed", json={"inputs": [text, ids]}).json()
        named = client.post("/embed", json={"inputs": [ids, text], "prompt_name": "doc"}).json()
        only_ids = client.post("/embed", json={"inputs": [ids], "prompt_name": "doc"}).json()
        np.testing.assert_allclose(default, [model.encode(text)] * 2, atol=1e-6)
        np.testing.assert_allclose(named, [model.encode(text, prompt_name="doc")] * 2, atol=1e-6)
        np.testing.assert_allclose(only_ids, named[:1], atol=1e-6)
        tokens = client.post("/tokenize", json={"inputs": text}).json()[0]
        assert [t["id"] for t in tokens] == model.tokenize([text], prompt_name="query")["input_ids"][0].tolist()
        openai = client.post("/v1/embeddings", json={"input": [text], "prompt_name": "doc"}).json()
        np.testing.assert_allclose(openai["data"][0]["embedding"], named[0], atol=1e-6)
        unknown = client.post("/v1/embeddings", json={"input": [text], "prompt_name": "nope"})
        assert unknown.status_code == 422 and "`prompt_name` 'nope' is not a prompt" in unknown.text
    model.close()


def test_a_rerank_body_on_the_default_route_goes_to_the_first_model_that_reranks(client: TestClient) -> None:
    """A TEI rerank body without `model` went to the first model (an embedding one) and heard only that `inputs`
    was missing."""
    response = client.post("/", json={"query": "q", "texts": TEXTS})
    assert response.status_code == 200, response.text
    assert response.json() == client.post("/rerank", json={"query": "q", "texts": TEXTS, "model": "reranker"}).json()


def test_an_empty_model_name_is_refused_at_start() -> None:
    """`serve =ARTIFACT` served a model its metrics and access log showed as no model."""
    models = (ServedModel("", "art"), ServedModel("ok", "other"))
    assert ServerConfig(models=models).check() == ["model 'art' has an empty name: NAME=ARTIFACT needs a NAME"]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"batch_wait_ms": float("inf")}, "--batch-wait-ms must be a number from 0 to 60000, got inf"),
        ({"batch_wait_ms": float("nan")}, "--batch-wait-ms must be a number from 0 to 60000, got nan"),
        ({"batch_wait_ms": -1.0}, "--batch-wait-ms must be a number from 0 to 60000, got -1"),
        ({"graceful_timeout": float("nan")}, "--graceful-timeout must be a number from 0 to 86400, got nan"),
        ({"graceful_timeout": float("inf")}, "--graceful-timeout must be a number from 0 to 86400, got inf"),
        ({"intra_op_threads": 5000}, "--threads must be from 1 to 1024, got 5000"),
    ],
)
def test_waits_and_threads_that_cannot_work_are_refused_at_start(settings: dict[str, float], problem: str) -> None:
    """--batch-wait-ms inf was accepted and stopped the model's worker (every request hung, /health 200), nan waited
    not at all, and both crashed the shutdown; --threads 5000 failed only after uvicorn had started."""
    assert ServerConfig(models=(ServedModel("m", "artifact"),), **settings).check() == [problem]  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["ключ", "clé-secrète", "tab\tinside"])
def test_an_api_key_no_http_client_can_send_is_refused_at_start(key: str) -> None:
    """A key past ASCII started cleanly and then answered 401 to every client: curl sends its UTF-8 bytes, which
    the server read as Latin-1, and httpx (OpenAI's client) cannot send it at all."""
    (problem,) = ServerConfig(models=(ServedModel("m", "artifact"),), api_key=key).check()
    assert problem.startswith("--api-key (or $FASTEMBED_RT_API_KEY, $API_KEY) must be printable ASCII")
    assert ServerConfig(models=(ServedModel("m", "artifact"),), api_key=" s3cr3t-~!{} key\n").check() == []


def test_a_chunk_overlap_no_window_fits_stops_the_load_and_a_small_batch_bound_is_warned_about(
    minilm_artifact_session: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--chunk-overlap 300 on a 256-token model started cleanly, then every chunked input was a 422 naming a setting
    no client can send; --max-batch-tokens below max_seq_length was exceeded without a word."""
    from fastembed_rt import InputError

    models = (ServedModel("art", str(minilm_artifact_session)),)
    state = ServerState(ServerConfig(models=models, chunk_overlap=300))
    with pytest.raises(
        InputError, match=r"--chunk-overlap 300 does not fit the windows of model 'art': 256 tokens \(254"
    ):
        state.load_models()
    assert not state.models
    state = ServerState(ServerConfig(models=models, max_batch_tokens=100, chunk_overlap=253))
    with caplog.at_level("WARNING", logger="fastembed_rt.server"):
        state.load_models()
    assert "--max-batch-tokens 100 is below model 'art''s max_seq_length 256" in caplog.text
    state.close()


def test_a_model_of_short_windows_is_served_with_the_default_chunk_overlap_fitted_to_it(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """The default --chunk-overlap (32) stopped the whole server for a model of max_seq_length 20 that the library
    serves, though no request asked for chunk: the default is fitted to its windows; a chosen overlap still is not."""
    import json
    import os
    import shutil

    from fastembed_rt import InputError

    short = tmp_path / "short"
    shutil.copytree(minilm_artifact_session, short, copy_function=os.link)  # linked: only the manifest changes
    data = json.loads((short / "manifest.json").read_text())
    (short / "manifest.json").unlink()
    data["tokenizer"]["max_seq_length"] = 20
    (short / "manifest.json").write_text(json.dumps(data))
    state = ServerState(ServerConfig(models=(ServedModel("short", str(short)),)))
    state.load_models()
    (served,) = state.models.values()
    assert served.chunk_overlap == 9  # half of the 18 text tokens of a window
    assert served.model.encode([" ".join(["word"] * 60)], long_inputs="chunk", chunk_overlap=9).shape == (1, 384)
    state.close()
    for chosen in (30, 32):  # a chosen overlap, the default's value included, is refused where it does not fit
        with pytest.raises(InputError, match=f"--chunk-overlap {chosen} does not fit the windows of model 'short'"):
            ServerState(ServerConfig(models=(ServedModel("short", str(short)),), chunk_overlap=chosen)).load_models()
