"""The fastembed-rt command line: info, encode and export, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastembed_rt.artifact import load_manifest
from fastembed_rt.cli import main


def test_info_prints_variants_with_fidelity(minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = load_manifest(minilm_artifact_session)
    assert main(["info", str(minilm_artifact_session)]) == 0
    out = capsys.readouterr().out
    assert f"dim           {manifest.dim} " in out
    (fp32_row,) = [line for line in out.splitlines() if line.startswith("fp32 ")]
    min_cosine = manifest.variant("fp32").fidelity["min_cosine"]
    assert min_cosine >= 0.9999  # what export recorded, within the fp32 gate
    fp32 = manifest.variant("fp32")
    graph_and_weights_mb = (fp32.size + (fp32.weights_size or 0)) / 1e6
    assert fp32_row.split()[1:4] == ["onnx", "fp32", f"{graph_and_weights_mb:.1f}"]
    assert fp32_row.split()[4] == f"{min_cosine:.6f}" and fp32_row.endswith(" onnx/model.onnx")
    from fastembed_rt.machine import this_cpu

    assert f"validated on  {this_cpu().describe()}" in out  # the exporter's CPU: the session fixture ran here


def test_encode_prints_json_lines_in_order(minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(minilm_artifact_session), "first text", "second"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["first text", "second"]
    assert len(rows[0]["embedding"]) == 384


def test_encode_reads_a_file_writes_npy_and_reports_truncation(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo\n" + "long " * 400 + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["encode", str(minilm_artifact_session), "--file", str(texts), "-o", str(out)]) == 0
    assert np.load(out).shape == (3, 384)
    limit = load_manifest(minilm_artifact_session).tokenizer.max_seq_length
    assert f"1 of 3 texts were truncated to {limit} tokens" in capsys.readouterr().err


def test_encode_without_texts_is_a_usage_error(
    minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", str(minilm_artifact_session)]) == 2
    assert "no texts" in capsys.readouterr().err


def test_missing_artifact_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_a_non_empty_output_directory(
    minilm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["export", str(minilm_dir), str(tmp_path / "out")]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").exists()


def test_export_shows_each_step_with_elapsed_seconds_and_restores_logging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import re

    from tiny_models import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    out = tmp_path / "artifact"
    assert main(["export", str(model_dir), str(out), "--variants", "fp32,optimized", "--no-stsb"]) == 0
    steps = [line for line in capsys.readouterr().err.splitlines() if re.match(r"\[ *\d+\.\d s\] ", line)]
    assert any("exported to ONNX in" in line for line in steps), steps
    assert any("fp32 graph validated against PyTorch (min cosine" in line for line in steps), steps
    assert any("variant optimized built and validated in" in line for line in steps), steps
    # The command's handler is gone afterwards: the library logs through the root logger again.
    logger = logging.getLogger("fastembed_rt")
    assert logger.propagate and not logger.handlers and logger.level == logging.NOTSET
