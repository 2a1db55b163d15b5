"""Memory stays flat when every call brings a new (batch, sequence) shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastembed_rt import SentenceTransformer

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards"]
# Measured here: +0–1 MB between encode 200 and 2,000 of this loop. The bound leaves room for
# allocator caches; the failure it guards against is growth per new shape (ONNX Runtime's memory
# patterns: +282 MB over 200 batches of up to 32 × 150 words, against +65 MB without; docs/providers.md).
MAX_GROWTH_MB = 16


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident set from /proc")
def test_rss_stays_flat_over_2000_encodes_of_random_lengths(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cpu")
    rng = np.random.default_rng(0)

    def encode_random() -> None:
        texts = [" ".join(rng.choice(WORDS, int(rng.integers(1, 33)))) for _ in range(int(rng.integers(1, 5)))]
        model.encode(texts)

    for _ in range(200):  # warm-up: the arena grows to the largest shapes of the loop
        encode_random()
    start = _rss_mb()
    for _ in range(1800):
        encode_random()
    growth = _rss_mb() - start
    model.close()
    assert growth < MAX_GROWTH_MB, f"RSS grew by {growth:.1f} MB over 1,800 encodes of random shapes"


def test_a_models_weights_are_freed_with_it_after_its_backbone_export(tmp_path: Path) -> None:
    """The exporter frees PyTorch's model before building variants; the ONNX export must not keep its weights
    alive (onnxscript's rewrite rules held the last graph they matched, and every weight through it)."""
    import gc
    import weakref

    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from tiny_models import build_tiny_model

    from fastembed_rt.export.backbone import export_st_backbone

    model = TorchSentenceTransformer(str(build_tiny_model(tmp_path, "qwen3", "lasttoken")), device="cpu")
    weight = weakref.ref(model[0].auto_model.get_input_embeddings().weight)
    export_st_backbone(model, tmp_path / "backbone.onnx")
    del model
    gc.collect()
    assert weight() is None, [type(r).__name__ for r in gc.get_referrers(weight())]
