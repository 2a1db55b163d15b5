"""Models and errors cross process boundaries as sentence-transformers' do: a model pickles (pickle, deepcopy, a
process pool's arguments) as how to open it again; the library's errors keep their type and message."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from fastembed_rt import CrossEncoder, InputError, ProviderError, SentenceTransformer, SparseEncoder
from fastembed_rt.errors import ArtifactError, LongInputError, NotEnoughMemoryError, ParityError

TEXTS = ["A man is playing a guitar.", "A woman slices an onion on a board.", "Two dogs run across a field."]


def _encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    return model.encode(texts, prompt_name="query")


def test_a_pickled_model_opens_again_with_its_settings_and_gives_the_same_vectors(
    minilm_artifact_session: Path,
) -> None:
    """Pickling raised ONNX Runtime's 'cannot pickle InferenceSession' (sentence-transformers models pickle)."""
    model = SentenceTransformer(minilm_artifact_session, prompts={"query": "query: "}, truncate_dim=128)
    model.max_seq_length, model.token_budget = 64, 999
    copied = pickle.loads(pickle.dumps(model))
    assert (copied.max_seq_length, copied.truncate_dim, copied.prompts) == (64, 128, model.prompts)
    assert (copied.token_budget, copied.max_batch_bytes) == (999, model.max_batch_bytes)
    np.testing.assert_array_equal(copied.encode(TEXTS, prompt_name="query"), model.encode(TEXTS, prompt_name="query"))


def test_a_deep_copy_has_its_own_engine(minilm_artifact_session: Path) -> None:
    """copy.deepcopy gave the same TypeError; a copy that shared the engine would close the original with it."""
    model = SentenceTransformer(minilm_artifact_session)
    twin = copy.deepcopy(model)
    twin.close()
    with pytest.raises(ProviderError):
        twin.encode(TEXTS)
    assert model.encode(TEXTS).shape == (3, 384)


def test_cross_and_sparse_encoders_pickle_with_their_settings(
    tiny_reranker_artifact: Path, tiny_splade_artifact: Path
) -> None:
    """A reranker's activation was lost (its copy scored with the artifact's sigmoid)."""
    reranker = CrossEncoder(tiny_reranker_artifact, activation_fn="identity")
    pairs = [("a query", text) for text in TEXTS]
    copied_reranker = pickle.loads(pickle.dumps(reranker))
    assert copied_reranker.activation_fn == "identity"
    np.testing.assert_array_equal(copied_reranker.predict(pairs), reranker.predict(pairs))
    splade = SparseEncoder(tiny_splade_artifact, max_active_dims=5)
    copied = pickle.loads(pickle.dumps(splade))
    assert copied.max_active_dims == 5
    np.testing.assert_array_equal(copied.encode(TEXTS).toarray(), splade.encode(TEXTS).toarray())


def test_settings_cleared_to_none_stay_cleared_in_a_copy_and_in_pool_workers(minilm_artifact: Path) -> None:
    """None given to the constructor means the artifact's default: a copy or a pool worker opened with the cleared
    setting got the manifest's truncate_dim and default prompt back (other widths, other vectors)."""
    import json

    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["truncate_dim"] = 128
    manifest["tokenizer"]["prompts"] = {"query": "query: "}
    manifest["tokenizer"]["default_prompt_name"] = "query"
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    model = SentenceTransformer(minilm_artifact)
    model.truncate_dim, model.default_prompt_name = None, None
    expected = model.encode(TEXTS)
    assert expected.shape == (3, 384)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).encode(TEXTS), expected)
    pool = model.start_multi_process_pool(["cpu"])
    try:
        np.testing.assert_allclose(model.encode(TEXTS, pool=pool), expected, atol=1e-6)
    finally:
        model.stop_multi_process_pool(pool)


def test_a_model_opened_by_a_relative_path_reopens_that_folder_from_anywhere(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relative path was kept: after a chdir a copy or a pool worker opened whatever sat at that path there (or
    asked the hub for a repo of that name)."""
    monkeypatch.chdir(minilm_artifact_session.parent)
    model = SentenceTransformer(minilm_artifact_session.name)
    data = pickle.dumps(model)
    monkeypatch.chdir(tmp_path)
    (tmp_path / minilm_artifact_session.name).mkdir()  # another folder of that name, here
    np.testing.assert_array_equal(pickle.loads(data).encode(TEXTS), model.encode(TEXTS))
    assert model.manifest.root == minilm_artifact_session


def test_a_model_passed_to_a_spawned_process_pool_worker_encodes_there(minilm_artifact_session: Path) -> None:
    """ProcessPoolExecutor.submit(f, model, ...) pickles the model: the TypeError came back instead of vectors."""
    model = SentenceTransformer(minilm_artifact_session, provider="cpu")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
        vectors = executor.submit(SentenceTransformer.encode, model, TEXTS).result(timeout=300)
    np.testing.assert_allclose(vectors, model.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize(
    "error",
    [
        ParityError("variant fp32 disagrees with PyTorch", ["fp32: min cosine 0.91"]),
        LongInputError({2: 700}, 512, "'truncate' or 'chunk'"),
        NotEnoughMemoryError("bad_alloc"),
        ArtifactError("x is missing"),
        InputError("texts must be strings"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_librarys_errors_pickle_with_their_type_message_and_fields(error: Exception) -> None:
    """ParityError did not unpickle (a multiprocessing.Pool whose worker raised it hung for ever)."""
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is type(error) and str(copied) == str(error)
    assert vars(copied) == vars(error)


def test_the_servers_request_error_pickles_with_its_fields() -> None:
    from fastembed_rt.server.requests import RequestError

    error = RequestError(429, "too many", "Overloaded", retry_after=1, code="rate_limit_exceeded")
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.status, copied.message, copied.error_type, copied.retry_after, copied.code) == (
        429,
        "too many",
        "Overloaded",
        1,
        "rate_limit_exceeded",
    )


def test_a_pool_of_a_model_set_with_a_local_function_is_refused_clearly(tiny_reranker_artifact: Path) -> None:
    """The settings reach the workers pickled: a lambda activation was a raw PicklingError from Process.start."""
    reranker = CrossEncoder(tiny_reranker_artifact)
    reranker.activation_fn = lambda logits: logits
    with pytest.raises(InputError, match=r"settings cannot be sent to the pool's worker processes"):
        reranker.start_multi_process_pool(["cpu"])
