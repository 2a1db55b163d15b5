"""Every architecture in the export registry round-trips a tiny random model, and the exporter
refuses what it cannot express with an error that names the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tiny_models import (
    HIDDEN_SIZE,
    PARITY_TEXTS,
    TINY_ARCHITECTURES,
    TinyExport,
    build_tiny_model,
    export_tiny_model,
    row_cosines,
)

from fastembed_rt.errors import ExportError
from fastembed_rt.export import export_model
from fastembed_rt.export.architectures import ARCHITECTURES

MIN_COSINE = 0.9999
# The whole registry: an architecture is supported only once a tiny model of it round-trips.
TESTED_ARCHITECTURES = sorted(ARCHITECTURES)


@pytest.fixture(scope="module", params=TESTED_ARCHITECTURES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    architecture: str = request.param
    result = export_tiny_model(tmp_path_factory.mktemp(architecture), architecture, ("cls", "mean"))
    yield result
    result.close()


def _assert_matches_torch(exported: TinyExport, texts: list[str], batch_size: int) -> np.ndarray:
    ours = np.asarray(exported.runtime.encode(texts, batch_size=batch_size))
    ref = exported.torch_model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    assert ours.shape == (len(texts), 2 * HIDDEN_SIZE)
    cosines = row_cosines(ours, ref)
    failures = [f"{texts[j][:30]!r}: {cosines[j]:.6f}" for j in np.flatnonzero(~(cosines >= MIN_COSINE))]
    assert not failures, failures
    return ours


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_architecture_matches_sentence_transformers(exported: TinyExport, batch_size: int) -> None:
    _assert_matches_torch(exported, PARITY_TEXTS, batch_size)


def test_text_embedding_does_not_depend_on_its_batch_neighbours(exported: TinyExport) -> None:
    text = "A man is playing a guitar."
    alone = _assert_matches_torch(exported, [text], batch_size=1)
    # Neighbours that pad the text by 0, 1 and many tokens.
    for neighbours in (["x"], [PARITY_TEXTS[3]], ["", PARITY_TEXTS[7], "Hi"]):
        batched = _assert_matches_torch(exported, [*neighbours, text], batch_size=8)
        assert row_cosines(batched[-1:], alone)[0] >= MIN_COSINE


def test_artifact_declares_architecture_inputs(exported: TinyExport) -> None:
    manifest = exported.runtime.manifest
    assert manifest.source["architecture"] == exported.architecture
    token_inputs = ARCHITECTURES[exported.architecture].inputs
    assert manifest.graph.inputs[: len(token_inputs)] == token_inputs
    # then only the precision stage's per-call inputs (output_dim, normalize_output, quantize_ranges)
    assert set(manifest.graph.inputs[len(token_inputs) :]) == {"output_dim", "normalize_output", "quantize_ranges"}


def test_every_registered_architecture_has_a_tiny_model() -> None:
    missing = set(ARCHITECTURES) - set(TINY_ARCHITECTURES)
    assert not missing, f"add a tiny config to tests/tiny_models.py for {sorted(missing)}"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert", "mean")


def test_unsupported_architecture_raises_naming_supported_ones(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "albert", "albert", "mean")
    out = tmp_path / "artifact"
    with pytest.raises(ExportError, match="'albert'") as info:
        export_model(model_dir, out, stsb=False)
    message = str(info.value)
    assert all(name in message for name in ARCHITECTURES), message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["albert"]


def test_unsupported_module_type_raises_naming_it(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    model = TorchSentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.append(LayerNorm(HIDDEN_SIZE))
    model_dir = tmp_path / "with-layer-norm"
    model.save(str(model_dir))
    out = tmp_path / "artifact"
    with pytest.raises(ExportError, match="unsupported sentence-transformers module") as info:
        export_model(model_dir, out, stsb=False)
    assert "LayerNorm" in str(info.value)
    assert "supported: Transformer, Pooling, Dense, Normalize" in str(info.value)
    assert not out.exists()


def test_export_into_non_empty_directory_without_overwrite_raises(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="overwrite"):
        export_model(tiny_bert_dir, out, stsb=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert keep.read_text(encoding="utf-8") == "mine"
