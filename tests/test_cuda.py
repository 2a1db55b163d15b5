"""The cuda and tensorrt providers on a real GPU; skipped cleanly without onnxruntime-gpu or a visible device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import SentenceTransformer
from fastembed_rt.artifact import load_manifest
from fastembed_rt.providers.onnxruntime import cuda_device_count, cuda_unavailable, tensorrt_unavailable

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(cuda_unavailable() is not None, reason=f"cuda provider unusable: {cuda_unavailable()}"),
]

TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the river bank on a sunny afternoon.",
    "Hi",
    "",
    "word " * 300,
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_cuda_fp32_matches_pytorch_within_the_fp32_gate(minilm_artifact_session: Path, minilm_torch: Any) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cuda", variant="fp32")
    assert model.provider == "cuda"
    assert model._pipeline.provider.session_providers[0] == "CUDAExecutionProvider"
    expected = minilm_torch.encode(TEXTS, convert_to_numpy=True)
    assert _cos(model.encode(TEXTS), expected).min() >= 0.9999


def test_cuda_auto_variant_stays_within_its_gate(minilm_artifact_session: Path, minilm_torch: Any) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cuda")
    gate = 0.999 if load_manifest(minilm_artifact_session).variant(model.variant).precision == "fp16" else 0.9999
    expected = minilm_torch.encode(TEXTS, convert_to_numpy=True)
    assert _cos(model.encode(TEXTS, batch_size=2), expected).min() >= gate


def test_cuda_device_index_is_honoured(minilm_artifact_session: Path) -> None:
    last = cuda_device_count() - 1
    model = SentenceTransformer(minilm_artifact_session, provider=f"cuda:{last}")
    assert model._pipeline.provider.device_id == last
    assert model.encode(TEXTS).shape == (len(TEXTS), 384)


def test_pool_starts_one_worker_per_gpu_and_matches_single_process(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cuda", variant="fp32")
    texts = TEXTS * 40
    with model.start_multi_process_pool() as pool:
        assert pool.devices == tuple(f"cuda:{i}" for i in range(cuda_device_count()))
        pooled = model.encode(texts, pool=pool)
    assert _cos(pooled, model.encode(texts)).min() >= 0.99999


def test_sentence_transformers_device_loads_on_the_gpu_and_to_moves_a_cpu_model_there(
    minilm_artifact_session: Path,
) -> None:
    on_gpu = SentenceTransformer(minilm_artifact_session, device="cuda", variant="fp32")
    assert (on_gpu.provider, on_gpu.device) == ("cuda", "cuda:0")
    model = SentenceTransformer(minilm_artifact_session, device="cpu", variant="fp32")
    on_cpu = model.encode(TEXTS)
    assert model.to("cuda") is model and (model.provider, model.device) == ("cuda", "cuda:0")
    assert _cos(model.encode(TEXTS), on_cpu).min() >= 0.9999
    np.testing.assert_allclose(model.encode(TEXTS, device="cuda:0"), on_gpu.encode(TEXTS), atol=1e-5)


def test_tensors_of_a_gpu_model_are_on_its_device_when_torch_sees_the_gpu(minilm_artifact_session: Path) -> None:
    import torch

    model = SentenceTransformer(minilm_artifact_session, device="cuda", variant="fp32").cpu().cuda()
    assert model.device == "cuda:0"
    embeddings = model.encode(TEXTS, convert_to_tensor=True)
    assert embeddings.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    scores = model.similarity(embeddings, embeddings)  # tensors in: a tensor out on the first one's device
    assert isinstance(scores, torch.Tensor) and scores.device == embeddings.device
    np.testing.assert_allclose(embeddings.cpu().numpy(), model.encode(TEXTS), atol=1e-6)


@pytest.mark.skipif(tensorrt_unavailable() is not None, reason=f"tensorrt unusable: {tensorrt_unavailable()}")
def test_tensorrt_second_load_uses_the_engine_cache(minilm_artifact_session: Path, tmp_path: Path) -> None:
    first = SentenceTransformer(minilm_artifact_session, provider="tensorrt", provider_cache_dir=tmp_path)
    reference = first.encode(TEXTS)
    assert any((tmp_path / "tensorrt").iterdir())
    second = SentenceTransformer(minilm_artifact_session, provider="tensorrt", provider_cache_dir=tmp_path)
    assert _cos(second.encode(TEXTS), reference).min() >= 0.9999
