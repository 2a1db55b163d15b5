"""Export refuses to write an artifact that misses the fp32 gate, and lists every failure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny_model

from fastembed_rt import ParityError
from fastembed_rt.export import bi_encoder, export_model
from fastembed_rt.kernels.spec import PoolingMode, PoolingSpec


def test_a_graph_that_disagrees_with_torch_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    real_append = bi_encoder._append_stages

    def append_with_wrong_pooling(graph: Any, description: Any) -> dict[str, Any]:
        # Sabotage the graph only: max pooling where the model says mean.
        wrong = dataclasses.replace(description.stages, pooling=PoolingSpec((PoolingMode.MAX,)))
        return real_append(graph, dataclasses.replace(description, stages=wrong))

    monkeypatch.setattr(bi_encoder, "_append_stages", append_with_wrong_pooling)
    out = tmp_path / "artifact"
    with pytest.raises(ParityError) as info:
        export_model(model_dir, out, stsb=False)

    failures = info.value.failures
    assert len(failures) > 1, "every failing text is listed, not only the first"
    assert all("cosine" in line and "< 0.9999" in line for line in failures)
    assert str(len(failures)) in str(info.value) and "nothing was written" in str(info.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".artifact.tmp-*")), "the temporary export directory is cleaned up"


def test_an_honest_export_of_the_same_model_passes_the_gate(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False)
    fidelity = manifest.variants[0].fidelity
    assert fidelity["min_cosine"] >= 0.9999 and fidelity["texts"] > 0
    assert (tmp_path / "artifact" / "manifest.json").is_file()


def test_a_released_reference_answers_its_cached_batches_and_refuses_new_ones(tmp_path: Path) -> None:
    """The exporter frees PyTorch's model before building variants: each batch they are checked on must be
    computed by then, and a batch that was not is an error, never a silent recompute or a wrong answer."""
    import numpy as np
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export.validate import ReferenceEncoder, grid_batches

    model = TorchSentenceTransformer(str(build_tiny_model(tmp_path, "bert", "mean")), device="cpu")
    reference = ReferenceEncoder(model)
    batches = list(grid_batches(model.max_seq_length, {"query": "query: "}, ["held", "out", "texts"]))
    assert {(prompt, size) for prompt, size, _ in batches} == {
        (prompt, size) for prompt in (None, "query: ") for size in (1, 3, 5)
    } | {(None, 32)}
    before = [reference.encode(batch, prompt=prompt, batch_size=size) for prompt, size, batch in batches]
    reference.release()
    assert reference.st_model is None
    for (prompt, size, batch), expected in zip(batches, before):
        assert np.array_equal(reference.encode(batch, prompt=prompt, batch_size=size), expected)
    with pytest.raises(ExportError, match="released before a batch of 2 texts"):
        reference.encode(["held", "out"], batch_size=32)
