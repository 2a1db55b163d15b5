"""The real all-MiniLM-L6-v2: fastembed-rt against sentence-transformers on PyTorch, whole STSb test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastembed_rt.stsb import load_stsb, spearman


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


@pytest.mark.slow
def test_every_stsb_test_sentence_matches_pytorch_and_spearman_agrees(minilm_runtime: Any, minilm_torch: Any) -> None:
    data = load_stsb("test", "en")
    sentences = data.sentences1 + data.sentences2
    assert len(sentences) == 2 * 1379

    ours = minilm_runtime.encode(sentences, batch_size=32)
    ref = minilm_torch.encode(sentences, batch_size=32, convert_to_numpy=True, show_progress_bar=False)

    cos = _cosines(ours, ref)
    worst = int(np.argmin(cos))
    print(
        f"\nMiniLM parity on {len(sentences)} STSb test sentences: min cosine {cos.min():.7f}, "
        f"mean {cos.mean():.7f}, max abs diff {np.abs(ours - ref).max():.2e}"
    )
    assert cos.min() >= 0.9999, f"worst sentence {sentences[worst]!r}: cosine {cos[worst]}"

    n = len(data)
    ours_spearman = 100 * spearman(_cosines(ours[:n], ours[n:]), data.scores)
    torch_spearman = 100 * spearman(_cosines(ref[:n], ref[n:]), data.scores)
    print(f"STSb test Spearman: fastembed-rt {ours_spearman:.4f}, sentence-transformers {torch_spearman:.4f}")
    assert abs(ours_spearman - torch_spearman) <= 0.05
    assert ours_spearman > 80.0  # the published score of this model is 82.03


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, 500).astype(float)  # many ties
    b = a + rng.normal(0, 5, 500)
    assert spearman(a, b) == pytest.approx(float(spearmanr(a, b).statistic), abs=1e-12)


def test_stsb_spearman_encodes_each_distinct_sentence_once_and_scores_every_pair() -> None:
    from fastembed_rt.stsb import StsbSplit, stsb_spearman

    words = ["a cat", "a dog", "the sun", "a car", "rain"]
    vectors = {w: np.random.default_rng(i).normal(size=8) for i, w in enumerate(words)}
    pairs = [("a cat", "a dog"), ("a cat", "the sun"), ("a dog", "a cat"), ("a car", "rain"), ("rain", "a cat")]
    data = StsbSplit([p[0] for p in pairs], [p[1] for p in pairs], np.array([4.0, 1.0, 4.5, 0.5, 2.0]), "test")
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.stack([vectors[t] for t in texts])

    score = stsb_spearman(encode, data)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(words)
    e1, e2 = np.stack([vectors[s] for s in data.sentences1]), np.stack([vectors[s] for s in data.sentences2])
    assert score == pytest.approx(100 * spearman(_cosines(e1, e2), data.scores), abs=1e-12)
