"""``fastembed-rt bench`` on a tiny random model: the table and JSONL schema, never timings."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from fastembed_rt import InputError
from fastembed_rt.bench import BenchRow, bench_artifact, cpu_peak, encoder_flops, format_table, synthetic_texts
from fastembed_rt.cli import main

HEADER = "| contender | workload | batch | sent/s (min–max) | tok/s | × ref | p50 / p99 ms |"


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_model

    from fastembed_rt.export import export_model

    tmp = tmp_path_factory.mktemp("bench")
    # openvino: a variant the cpu provider cannot run
    export_model(
        build_tiny_model(tmp, "bert", "mean", normalize=True), tmp / "artifact", stsb=False, variants="fp32,openvino"
    )
    return tmp / "artifact"


def _bench(artifact: Path, *extra: str) -> int:
    return main(["bench", str(artifact), "--providers", "cpu", "--repeats", "1", "--queries", "3", *extra])


def test_bench_prints_a_table_and_writes_rows_of_the_fixed_schema(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "rows.jsonl"
    assert _bench(tiny_artifact, "--texts", "20", "--words", "6", "--batch-sizes", "1,4", "--jsonl", str(jsonl)) == 0
    captured = capsys.readouterr()
    assert HEADER in captured.out
    table = [line for line in captured.out.splitlines() if line.startswith("| cpu/fp32 |")]
    assert [line.split("|")[2:4] for line in table] == [[" query ", " 1 "], [" texts ", " 1 "], [" texts ", " 4 "]]
    assert "3/3" in captured.err  # the progress bar reached its end
    assert "fastest in this run: cpu/fp32 at batch" in captured.out
    assert re.search(r"\nchosen here +cpu/auto +fp32: ", captured.out)  # what a load picks here, and why

    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(set(row) == {f.name for f in fields(BenchRow)} for row in rows)
    query, *throughput = rows
    assert query["workload"] == "query" and query["p50_ms"] > 0 and query["p99_ms"] >= query["p50_ms"]
    for row in throughput:
        assert row["engine"] == "fastembed-rt" and row["provider"] == "cpu" and row["error"] is None
        assert row["texts"] == 20 and row["tokens"] > 20 and row["sent_s_min"] <= row["sent_s"] <= row["sent_s_max"]
        assert 0.0 <= row["padding_ratio"] < 1.0 and row["padded_tokens"] >= row["tokens"]
    assert throughput[0]["padding_ratio"] == 0.0  # batch 1 pads nothing
    assert all(row["peak_rss_mb"] > 0 for row in rows) and "over all" not in captured.out  # one configuration's own


def _small_bench_rows(artifact: Path, tmp_path: Path, providers: str) -> list[dict[str, Any]]:
    """The JSON rows of a small `bench` of ``providers``."""
    jsonl = tmp_path / "rows.jsonl"
    assert main(["bench", str(artifact), "--providers", providers, "--repeats", "1", "--queries", "2",
                 "--texts", "8", "--batch-sizes", "4", "--jsonl", str(jsonl)]) == 0  # fmt: skip
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_bench_of_several_configurations_gives_the_process_peak_once_not_as_each_rows(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row showed the whole run's peak, so a later configuration looked as large as the largest before it."""
    rows = _small_bench_rows(tiny_artifact, tmp_path, "cpu,openvino")
    out = capsys.readouterr().out
    assert len({row["contender"] for row in rows}) == 3  # cpu/fp32, openvino/fp32, openvino/openvino
    assert all(row["peak_rss_mb"] is None for row in rows)
    assert "peak RSS " in out and "this process's, over all 3 configurations" in out


def test_bench_reads_texts_from_a_file(tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("a short one\n\nthe second text is a little longer than the first\n", encoding="utf-8")
    assert _bench(tiny_artifact, "--file", str(texts), "--batch-sizes", "2") == 0
    out = capsys.readouterr().out
    assert str(texts) in out.splitlines()[0]
    assert "| cpu/fp32 | texts | 2 |" in out


def test_bench_rejects_a_variant_the_artifact_lacks_even_beside_one_it_has(
    tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo beside a real variant was dropped without a word: the run benched fp32 alone and exited 0."""
    for asked in ("nope", "fp32,int9"):
        assert _bench(tiny_artifact, "--variants", asked, "--batch-sizes", "2") == 1
        err = capsys.readouterr().err
        assert f"variant(s) {asked.split(',')[-1]} not in this artifact; it has fp32" in err, err


def test_bench_rejects_a_variant_no_chosen_provider_runs(
    tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastembed_rt.artifact import load_manifest

    assert [v.name for v in load_manifest(tiny_artifact).variants] == ["fp32", "openvino"]
    assert _bench(tiny_artifact, "--variants", "fp32,openvino", "--batch-sizes", "2") == 1
    assert "no provider of ['cpu'] runs variant(s) openvino" in capsys.readouterr().err


def test_encoder_flops_counts_matmuls_and_attention_per_real_token() -> None:
    layers, hidden, intermediate = 2, 4, 8
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)  # 256
    assert encoder_flops([3], layers, hidden, intermediate) == 3 * layers * (per_token + 4 * 3 * hidden)
    assert encoder_flops([3, 5], layers, hidden, intermediate) == sum(
        encoder_flops([n], layers, hidden, intermediate) for n in (3, 5)
    )


def test_cpu_peak_scales_with_cores_and_the_given_flops_per_cycle() -> None:
    one, two = cpu_peak(1, flops_per_cycle=32), cpu_peak(2, flops_per_cycle=32)
    assert two.gflops == pytest.approx(2 * one.gflops) and one.gflops > 0
    assert "FLOP/cycle" in two.describe()


def test_format_table_shows_failures_and_ratios_to_the_reference() -> None:
    common = {"engine": "x", "provider": "cpu", "variant": "fp32", "workload": "texts", "batch": 8, "threads": 1}
    rows = [
        BenchRow(contender="ref", sent_s=100.0, sent_s_min=90.0, sent_s_max=110.0, **common),
        BenchRow(contender="fast", sent_s=250.0, sent_s_min=240.0, sent_s_max=260.0, **common),
        BenchRow(contender="broken", error="ImportError: no module", **common),
    ]
    table = format_table(rows, reference="ref").splitlines()
    assert "| fast | texts | 8 | 250 (240–260) | – | 2.50× |" in table[3]
    assert "failed: ImportError: no module" in table[4]


def test_synthetic_texts_are_deterministic_whole_words() -> None:
    vocab = ["the", "##ing", "cat", "[CLS]", "house", "a", "mat"]
    texts = synthetic_texts(vocab, 5, 4, seed=1)
    assert texts == synthetic_texts(vocab, 5, 4, seed=1) and len(texts) == 5
    assert {w for t in texts for w in t.split()} <= {"the", "cat", "house", "mat"}
    assert all(2 <= len(t.split()) <= 6 for t in texts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 0}, "repeats must be an int >= 1, got 0"),
        ({"queries": -1}, "queries must be an int >= 1"),
        ({"threads": 0}, "threads must be an int >= 1"),
        ({"batch_sizes": []}, "batch_sizes must be a non-empty list"),
        ({"batch_sizes": [8, 0]}, "each batch size must be an int >= 1, got 0"),
        ({"texts": []}, "texts must be a non-empty list of str"),
        ({"texts": "one text"}, "texts must be a non-empty list of str"),
        ({"synthetic": (0, 12)}, "synthetic's count must be an int >= 1"),
    ],
)
def test_bench_artifact_from_python_checks_its_counts_as_the_cli_does(
    tiny_artifact: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        bench_artifact(tiny_artifact, show_progress_bar=False, **kwargs)


def test_bench_providers_auto_benches_the_provider_a_default_load_runs(tiny_artifact: Path, tmp_path: Path) -> None:
    """`--providers auto` was refused as "not available" by a message that listed auto as available."""
    from fastembed_rt import SentenceTransformer

    rows = _small_bench_rows(tiny_artifact, tmp_path, "auto,cpu")
    loaded = SentenceTransformer(tiny_artifact).provider
    assert {row["provider"] for row in rows} == {loaded, "cpu"}
    assert len(rows) == len({(row["contender"], row["workload"], row["batch"]) for row in rows})  # cpu once
