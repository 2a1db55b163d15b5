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
