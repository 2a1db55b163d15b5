"""The fastembed-rt command line: info, encode and export, with clear errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt.artifact import load_manifest
from fastembed_rt.cli import main
from fastembed_rt.errors import InputError


def test_info_prints_variants_with_fidelity(minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = load_manifest(minilm_artifact_session)
    assert main(["info", str(minilm_artifact_session)]) == 0
    out = capsys.readouterr().out
    assert f"dim           {manifest.dim} " in out
    assert "max_seq_length 256   truncates right, pads right" in out  # a decoder's left padding is said likewise
    (fp32_row,) = [line for line in out.splitlines() if line.startswith("fp32 ")]
    min_cosine = manifest.variant("fp32").fidelity["min_cosine"]
    assert min_cosine >= 0.9999  # what export recorded, within the fp32 gate
    fp32 = manifest.variant("fp32")
    graph_and_weights_mb = (fp32.size + (fp32.weights_size or 0)) / 1e6
    assert fp32_row.split()[1:4] == ["onnx", "fp32", f"{graph_and_weights_mb:.1f}"]
    assert fp32_row.split()[4] == f"{min_cosine:.6f}" and fp32_row.endswith(" onnx/model.onnx")
    assert fp32_row.split()[6] == str(fp32.fidelity["texts"])  # how many rows the numbers stand on
    calibration = manifest.calibration
    assert calibration is not None
    assert f"calibration   {calibration['texts']} texts ({calibration['source']})" in out
    from fastembed_rt.machine import this_cpu

    assert f"validated on  {this_cpu().describe()}" in out  # the exporter's CPU: the session fixture ran here


def test_encode_prints_json_lines_in_order_holding_the_exact_float32_values(
    minilm_artifact_session: Path, minilm_runtime: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values were rounded to 7 places (up to 5e-8 off; the library, .npy and the server's JSON are exact)."""
    assert main(["encode", str(minilm_artifact_session), "first text", "second"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["first text", "second"]
    got = np.array([r["embedding"] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, minilm_runtime.encode(["first text", "second"]))


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


def test_encode_and_rank_read_a_field_of_json_lines_keeping_texts_with_line_breaks_whole(
    minilm_artifact_session: Path,
    minilm_runtime: Any,
    tiny_reranker_artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One text per line cannot carry a text with a line break (``jq -r .text`` split it over rows, shifting every
    row after it): ``--field`` reads JSON lines."""
    from fastembed_rt import CrossEncoder

    texts = ["first paragraph.\n\nsecond paragraph of it", "a short one", "tab\tand\r\nCRLF inside"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    out = tmp_path / "emb.npy"
    artifact = str(minilm_artifact_session)
    assert main(["encode", artifact, "--file", str(corpus), "--field", "text", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), minilm_runtime.encode(texts))
    capsys.readouterr()
    assert main(["rank", str(tiny_reranker_artifact), "query", "--file", str(corpus), "--field", "text"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reranker = CrossEncoder(tiny_reranker_artifact)
    expected = reranker.predict([("query", t) for t in texts])
    reranker.close()
    assert sorted(printed, key=lambda row: row["corpus_id"])[2]["text"] == texts[2]
    np.testing.assert_allclose(
        [row["score"] for row in sorted(printed, key=lambda r: r["corpus_id"])], expected, atol=1e-6
    )
    bad = tmp_path / "bad.jsonl"
    for content, reason in (
        ('{"text": "ok"}\nnot json\n', "bad.jsonl:2 is not a JSON object line"),
        ('{"text": "ok"}\n{"body": "x"}\n', "bad.jsonl:2: field 'text' must be a string, got no such field"),
        ('{"text": 5}\n', "bad.jsonl:1: field 'text' must be a string, got int"),
        ('["text"]\n', "bad.jsonl:1: field 'text' must be a string, got no such field"),
        ('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "bad.jsonl:1 is not a JSON object line"),
        ('{"text": "ok"}\n{"text": "\\ud800x"}\n', "bad.jsonl:2: field 'text' holds a lone surrogate"),
    ):
        bad.write_text(content, encoding="utf-8")
        assert main(["encode", artifact, "--file", str(bad), "--field", "text"]) == 1
        assert reason in capsys.readouterr().err
    assert main(["encode", artifact, "a text", "--field", "text"]) == 1
    assert "--field reads JSON lines from --file" in capsys.readouterr().err


def test_encode_takes_precision_and_long_inputs_as_the_library(
    minilm_artifact_session: Path, minilm_runtime: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["a short one", "river museum " * 200]
    artifact = str(minilm_artifact_session)
    assert main(["encode", artifact, *texts, "--precision", "ubinary"]) == 0
    rows = [json.loads(line)["embedding"] for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_array_equal(rows, minilm_runtime.encode(texts, precision="ubinary"))
    out = tmp_path / "chunked.npy"
    assert main(["encode", artifact, *texts, "--long-inputs", "chunk", "--chunk-overlap", "8", "-o", str(out)]) == 0
    assert "truncated" not in capsys.readouterr().err  # chunked, not cut
    expected = minilm_runtime.encode(texts, long_inputs="chunk", chunk_overlap=8)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    assert main(["encode", artifact, *texts, "--long-inputs", "error"]) == 1
    err = capsys.readouterr().err
    assert "text argument 2 is " in err and err.rstrip().endswith(
        "pass --long-inputs truncate or chunk"
    )  # the CLI's flag


def test_encode_gives_a_sparse_models_terms_and_rank_reranks(
    tiny_splade_artifact: Path,
    tiny_reranker_artifact: Path,
    tiny_multi_vector_artifact: Path,
    minilm_artifact_session: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """encode refused SPLADE artifacts and nothing on the command line took a cross-encoder."""
    import scipy.sparse

    from fastembed_rt import CrossEncoder, MultiVectorEncoder, SparseEncoder

    texts = ["cats sit on mats", "stocks fell sharply today"]
    assert main(["encode", str(tiny_splade_artifact), *texts, "--max-active-dims", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    splade = SparseEncoder(tiny_splade_artifact)
    expected = splade.encode(texts, max_active_dims=5, sparse_format="arrays")
    for i, row in enumerate(rows):
        indices, values = expected.row(i)
        assert row["text"] == texts[i] and sorted(row["indices"]) == indices.tolist()
        assert row["values"] == sorted(row["values"], reverse=True)  # heaviest first
        by_index = dict(zip(row["indices"], row["values"], strict=True))
        np.testing.assert_allclose([by_index[j] for j in indices.tolist()], values, atol=1e-6)
        assert row["tokens"] == [splade.tokenizer.id_to_token(j) for j in row["indices"]]
    out = tmp_path / "sparse.npz"
    assert main(["encode", str(tiny_splade_artifact), *texts, "-o", str(out)]) == 0
    np.testing.assert_allclose(scipy.sparse.load_npz(out).toarray(), splade.encode(texts).toarray(), atol=1e-6)
    capsys.readouterr()

    query, documents = "Who sat on the mat?", ["The cat sat on the mat.", "Stocks fell.", "A dog slept."]
    for artifact, model in (
        (tiny_reranker_artifact, CrossEncoder(tiny_reranker_artifact)),
        (tiny_multi_vector_artifact, MultiVectorEncoder(tiny_multi_vector_artifact)),
    ):
        assert main(["rank", str(artifact), query, *documents, "--top-k", "2"]) == 0
        ranked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        expected_ranks = model.rank(query, documents, top_k=2, return_documents=True)
        assert [(r["corpus_id"], r["text"]) for r in ranked] == [(r["corpus_id"], r["text"]) for r in expected_ranks]
        np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in expected_ranks], atol=1e-6)
    # a multi-vector model's long documents are cut (no chunking for token vectors): said on stderr, as --help says
    assert main(["rank", str(tiny_multi_vector_artifact), query, "word " * 400]) == 0
    assert "note: 1 of 1 texts were truncated to" in capsys.readouterr().err
    assert main(["rank", str(tiny_reranker_artifact), query, *documents, "--raw"]) == 0
    raw = {r["corpus_id"]: r["score"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    logits = CrossEncoder(tiny_reranker_artifact).predict([(query, d) for d in documents], activation_fn="identity")
    np.testing.assert_allclose([raw[i] for i in range(3)], logits, atol=1e-6)

    refusals = [
        (["encode", str(tiny_reranker_artifact), "x"], "`fastembed-rt rank ARTIFACT QUERY DOCUMENT ...`"),
        (["encode", str(tiny_splade_artifact), "x", "--precision", "int8"], "holds a sparse model"),
        (["encode", str(minilm_artifact_session), "x", "--max-active-dims", "3"], "holds an embedding model"),
        (["rank", str(minilm_artifact_session), "q", "d"], "rank takes a cross-encoder or a multi-vector model"),
        (["rank", str(tiny_reranker_artifact), "q"], "no documents"),
    ]
    for argv, message in refusals:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err


def test_encode_without_texts_is_a_usage_error(
    minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", str(minilm_artifact_session)]) == 2
    assert "no texts" in capsys.readouterr().err


def test_an_empty_file_gives_an_empty_result_of_the_models_shape(
    minilm_artifact_session: Path,
    tiny_splade_artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A nightly run with no new lines failed ('no texts', exit 2) where encode([]) gives a (0, dim) array."""
    import scipy.sparse

    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    empty = ["--file", str(tmp_path / "empty.txt")]
    assert main(["encode", str(minilm_artifact_session), *empty, "-o", str(tmp_path / "v.npy")]) == 0
    assert "holds no lines: the result is empty" in capsys.readouterr().err
    vectors = np.load(tmp_path / "v.npy")
    assert (vectors.shape, vectors.dtype) == ((0, 384), np.float32)
    assert (
        main(["encode", str(minilm_artifact_session), *empty, "--precision", "ubinary", "-o", str(tmp_path / "b.npy")])
        == 0
    )
    assert np.load(tmp_path / "b.npy").shape == (0, 48)
    assert main(["encode", str(minilm_artifact_session), *empty]) == 0
    assert capsys.readouterr().out == ""
    assert main(["encode", str(tiny_splade_artifact), *empty, "-o", str(tmp_path / "s.npz")]) == 0
    assert scipy.sparse.load_npz(tmp_path / "s.npz").shape[0] == 0


def test_missing_artifact_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_a_non_empty_output_directory_before_importing_torch(minilm_dir: Path, tmp_path: Path) -> None:
    """The refusal came after the export stage's imports (torch: ~15 s on a busy machine)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    script = (
        "import sys; from fastembed_rt.cli import main; "
        f"code = main(['export', {str(minilm_dir)!r}, {str(tmp_path / 'out')!r}]); "
        "print(code, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout.split() == ["1", "False"], run.stdout + run.stderr
    assert "exists and is not empty" in run.stderr
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


# -- export: the output directory ----------------------------------------------------------------------------------
def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_never_writes_into_over_or_around_its_own_source_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny_models import build_tiny_model

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model = build_tiny_model(tmp_path / "models" / "model", "bert", "mean")
    before = _tree(model)
    for out, relation in ((model, "is"), (model / "artifact", "is inside"), (model.parent, "contains")):
        assert main(["export", str(model), str(out), "--overwrite", "--variants", "fp32", "--no-stsb"]) == 1
        err = capsys.readouterr().err
        assert f"output directory {out} {relation} the source model directory {model}" in err, err
    # The exporter itself refuses too (an API caller has no CLI check in front of it), after loading the model.
    with pytest.raises(ExportError, match=r"output directory .* is the source model directory"):
        export_model(model, model, overwrite=True, stsb=False)
    assert _tree(model) == before, "the source model is untouched"


def test_export_overwrite_replaces_an_artifact_but_no_other_directory_and_never_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny_models import build_tiny_model

    model = str(build_tiny_model(tmp_path / "model", "bert", "mean"))
    options = ["--variants", "fp32", "--no-stsb", "--overwrite"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", model, str(other), *options]) == 1
    assert (
        "is not empty and is not a fastembed-rt artifact, so overwrite does not replace it" in capsys.readouterr().err
    )
    assert (other / "keep.txt").read_text() == "mine"

    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    for flags in (options, options[:-1]):
        assert main(["export", model, str(a_file), *flags]) == 1
        assert f"output path {a_file} exists and is not a directory" in capsys.readouterr().err
    assert main(["export", model, str(a_file / "artifact"), *options]) == 1  # its folder cannot be created
    assert f"output path {a_file / 'artifact'} lies under {a_file}, which is a file" in capsys.readouterr().err
    assert a_file.read_text() == "mine"

    artifact = tmp_path / "artifact"
    assert main(["export", model, str(artifact), *options]) == 0
    (artifact / "stale.txt").write_text("from an earlier export")
    assert main(["export", model, str(artifact), *options]) == 0
    assert load_manifest(artifact).variants and not (artifact / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "file.txt", "model", "notes"], "no leftovers"


# -- texts and output files ----------------------------------------------------------------------------------------
def test_text_files_that_cannot_be_read_are_one_line_errors_naming_them(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    artifact = str(minilm_artifact_session)
    cases = [
        (["encode", artifact, "--file", str(tmp_path / "missing.txt")], "No such file or directory"),
        (["encode", artifact, "--file", str(tmp_path)], "Is a directory"),
        (["encode", artifact, "--file", str(latin1)], "is not UTF-8 text (byte 0xe9"),
        (["calibrate", artifact, "--texts", str(tmp_path)], "Is a directory"),
        (["bench", artifact, "--file", str(latin1)], "is not UTF-8 text"),
        (["tune", artifact, "--file", str(tmp_path / "missing.txt")], "No such file or directory"),
    ]
    for argv, reason in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and reason in err and err.count("\n") == 1, (argv, err)


def test_encode_writes_exactly_the_output_path_given_and_checks_it_before_encoding(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "embeddings"  # no .npy suffix: numpy's np.save(name) would have written embeddings.npy
    assert main(["encode", str(minilm_artifact_session), "one", "two", "-o", str(out)]) == 0
    assert f"wrote 2×384 float32 to {out}" in capsys.readouterr().err
    assert np.load(out).shape == (2, 384)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings"]
    for bad, reason in ((tmp_path / "missing" / "x.npy", "No such file or directory"), (tmp_path, "it is a directory")):
        assert main(["encode", str(minilm_artifact_session), "one", "-o", str(bad)]) == 1
        err = capsys.readouterr().err
        assert err == f"error: cannot write {bad}: {reason}; name a file in an existing directory this user can write\n"


def test_encode_writes_through_a_symlink_and_into_a_pipe(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o replaced a symlink with a file (its target stayed empty) and a FIFO with a file nobody read."""
    import os
    import threading

    target, link, fifo = tmp_path / "target.npy", tmp_path / "link.npy", tmp_path / "fifo"
    link.symlink_to(target.name)
    assert main(["encode", str(minilm_artifact_session), "one", "-o", str(link)]) == 0
    assert link.is_symlink() and np.load(target).shape == (1, 384)
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(["encode", str(minilm_artifact_session), "one", "two", "-o", str(fifo)]) == 0
    reader.join(timeout=60)
    assert fifo.is_fifo() and np.load(io.BytesIO(received[0])).shape == (2, 384)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.npy", "target.npy"], "nothing staged is left"
    capsys.readouterr()


def test_a_pipe_gets_the_output_as_it_is_made_and_a_sparse_archive_streams_into_it(
    tiny_splade_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o into a pipe built the whole output in memory and wrote it at the end (a million 384-float rows: 1.5 GB);
    the rows of each part go out as they are made, and np.savez's zip archive streams into the pipe unseekable."""
    import threading

    from fastembed_rt.cli import _output_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    first: list[bytes] = []
    arrived = threading.Event()

    def read() -> None:
        with fifo.open("rb", buffering=0) as pipe:
            first.append(pipe.read(5))
            arrived.set()
            pipe.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with _output_file(str(fifo)) as output:
        output.write(b"part1")
        output.flush()
        assert arrived.wait(timeout=30), "the part written was held back until the end"
    reader.join(timeout=30)
    assert first == [b"part1"]
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    texts = ["one", "two words", "three"]
    assert main(["encode", str(tiny_splade_artifact), *texts, "-o", str(fifo)]) == 0
    reader.join(timeout=60)
    piped = np.load(io.BytesIO(received[0]))
    assert main(["encode", str(tiny_splade_artifact), *texts, "-o", str(tmp_path / "rows.npz")]) == 0
    written = np.load(tmp_path / "rows.npz")
    assert set(piped.files) == set(written.files) and piped["shape"].tolist() == [3, written["shape"][1]]
    for key in ("indices", "indptr", "data"):
        np.testing.assert_array_equal(piped[key], written[key])
    capsys.readouterr()


def test_output_to_dev_stdout_appends_where_stdout_is_a_file_and_a_replaced_file_keeps_its_mode(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o /dev/stdout >> log` resolved /dev/stdout to the log and renamed a new file over it (the log's content
    lost); -o over a private file made it world-readable; a name near NAME_MAX was refused as too long."""
    import stat
    import sys

    log = tmp_path / "log.bin"
    log.write_bytes(b"PREVIOUS\n")
    command = [sys.executable, "-m", "fastembed_rt.cli", "encode", str(minilm_artifact_session), "hello"]
    with log.open("ab") as appended:
        done = subprocess.run([*command, "-o", "/dev/stdout"], stdout=appended, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr
    content = log.read_bytes()
    assert content.startswith(b"PREVIOUS\n") and np.load(io.BytesIO(content[9:])).shape == (1, 384)
    private = tmp_path / "private.npy"
    private.write_bytes(b"old")
    private.chmod(0o600)
    assert main(["encode", str(minilm_artifact_session), "one", "-o", str(private)]) == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and np.load(private).shape == (1, 384)
    long_name = tmp_path / ("x" * (255 - len(".npy")) + ".npy")
    assert main(["encode", str(minilm_artifact_session), "one", "-o", str(long_name)]) == 0
    assert np.load(long_name).shape == (1, 384)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "nothing staged is left"
    capsys.readouterr()


def test_cli_errors_name_inputs_as_the_command_counts_them_and_dash_texts_after_options_are_texts(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long input was named by its 0-based row ("input 1" for line 2); "- a bullet item" or -5 after an option was
    an unrecognized argument (before one, a text); --providers "," benched every provider; stdin closed was a
    traceback."""
    import sys

    artifact = str(minilm_artifact_session)
    texts = tmp_path / "texts.txt"
    texts.write_text("short\n" + "word " * 300 + "\n")
    for argv, label in (
        (["encode", artifact, "--long-inputs", "error", "--file", str(texts)], f"{texts}:2"),
        (["encode", artifact, "ok", "--long-inputs", "error", "word " * 300], "text argument 2"),
        (["encode", artifact, "ok", "--long-inputs", "error", "--file", str(texts)], f"{texts}:2"),
    ):
        assert main(argv) == 1
        assert capsys.readouterr().err.startswith(f"error: {label} is 302 tokens long"), argv
    assert main(["encode", artifact, "--normalize", "- a bullet item", "-5"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["- a bullet item", "-5"]
    assert main(["bench", artifact, "--texts", "2", "--providers", ","]) == 1
    assert "--providers ',' names no provider" in capsys.readouterr().err
    closed = subprocess.run(
        [sys.executable, "-m", "fastembed_rt.cli", "encode", artifact, "--file", "-"],
        stdin=None,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: __import__("os").close(0),
    )
    assert closed.returncode == 1 and "cannot read texts from stdin" in closed.stderr, closed.stderr


def test_texts_after_an_option_are_texts_and_number_flags_are_usage_errors(
    minilm_artifact_session: Path, tiny_reranker_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`encode A --normalize "a text"` and `rank A q --raw d1 d2` were 'unrecognized arguments'; --batch-size 0 was a
    runtime error (exit 1) after the model loaded."""
    assert main(["encode", str(minilm_artifact_session), "first", "--normalize", "second", "third"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["first", "second", "third"]
    assert main(["rank", str(tiny_reranker_artifact), "q", "--raw", "d1", "d2"]) == 0
    assert sorted(json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()) == ["d1", "d2"]
    for option, value in (("--batch-size", "0"), ("--truncate-dim", "-1"), ("--chunk-overlap", "-1")):
        with pytest.raises(SystemExit) as exited:
            main(["encode", str(minilm_artifact_session), "x", option, value])
        assert exited.value.code == 2 and f"argument {option}: must be a whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["encode", str(minilm_artifact_session), "x", "--no-such-flag", "y"])
    assert exited.value.code == 2 and "unrecognized arguments: --no-such-flag\n" in capsys.readouterr().err
    # an overlap asked for without chunking did nothing: the texts were truncated
    for command in (["encode", str(minilm_artifact_session), "x"], ["rank", str(tiny_reranker_artifact), "q", "d"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--chunk-overlap", "16"])
        error = capsys.readouterr().err
        assert (
            exited.value.code == 2
            and "--chunk-overlap applies to --long-inputs chunk (this run: --long-inputs " in error
        )
    # after an option, `--` still ends the options: texts that start with "-"
    assert main(["encode", str(minilm_artifact_session), "--normalize", "--", "-x", "--y"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["-x", "--y"]


def test_stdin_is_read_as_utf_8_files_are(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """Under a C locale stdin took undecodable bytes as lone surrogates, and CRLF lines kept their \\r."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "fastembed_rt.cli", "encode", str(minilm_artifact_session), "--file", "-"]
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "", "PYTHONUTF8": "0"}
    crlf = subprocess.run(command, input="héllo\r\nworld\r\n".encode(), capture_output=True, env=env, check=True)
    assert [json.loads(line)["text"] for line in crlf.stdout.decode().splitlines()] == ["héllo", "world"]
    bad = subprocess.run(command, input=b"ok\n\xff\n", capture_output=True, env=env)
    assert bad.returncode == 1 and "stdin:2 is not UTF-8 text (byte 0xff at column 1" in bad.stderr.decode()


def test_utf_16_without_a_bom_and_arguments_that_are_not_utf_8_are_refused_naming_the_bytes(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """UTF-16 without a BOM is valid UTF-8 where it is ASCII: it was embedded as texts with a NUL after each letter,
    one row more than the file's lines. A command-line argument that is not UTF-8 was refused as Python text holding
    a lone surrogate, with advice for Python code."""
    import subprocess

    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("hello world\nsecond line\n".encode("utf-16-le"))
    command = [sys.executable, "-m", "fastembed_rt.cli", "encode", str(minilm_artifact_session)]
    done = subprocess.run([*command, "--file", str(utf16)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert f"{utf16}:1 holds a NUL byte (column 2): it looks like UTF-16 or binary, not UTF-8 text" in done.stderr
    rank = [sys.executable, "-m", "fastembed_rt.cli", "rank", str(minilm_artifact_session), b"caf\xe9 query", "doc"]
    done = subprocess.run(rank, capture_output=True, text=True, timeout=120)  # type: ignore[arg-type]
    assert done.stderr.startswith("error: the query argument is not UTF-8 (byte 0xe9 at character 4)"), done.stderr
    argv = [*command, "fine", b"bad \xff byte"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # type: ignore[arg-type]
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("error: text argument 2 is not UTF-8 (byte 0xff at character 5); pass UTF-8 text")


def test_a_stray_carriage_return_is_part_of_its_line_so_rows_stay_the_files_lines(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Universal newlines split 'a\\rb' in two: 3 rows for a 2-line file, every later row shifted by one."""
    texts = tmp_path / "pdf.txt"
    texts.write_bytes(b"\xef\xbb\xbfline one\rstill line one\r\nline two\n")
    assert main(["encode", str(minilm_artifact_session), "--file", str(texts)]) == 0
    rows = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    assert rows == ["line one\rstill line one", "line two"]  # the BOM is no text
    texts.write_bytes(b"good\nbad \xff\xfe here\nmore\n")
    assert main(["encode", str(minilm_artifact_session), "--file", str(texts)]) == 1
    assert f"{texts}:2 is not UTF-8 text (byte 0xff at column 5" in capsys.readouterr().err


def test_bench_refuses_an_artifact_it_cannot_time_and_encode_refuses_flags_a_model_ignores(
    tiny_reranker_artifact: Path,
    tiny_splade_artifact: Path,
    tiny_multi_vector_artifact: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bench printed a table of failed rows for a reranker and exited 0; --normalize on a SPLADE model and
    --long-inputs error on token vectors were accepted and did nothing."""
    assert main(["bench", str(tiny_reranker_artifact)]) == 2
    assert "bench times embedding artifacts" in capsys.readouterr().err
    assert main(["encode", str(tiny_splade_artifact), "x", "--normalize"]) == 2
    assert "--normalize is for dense and multi-vector models" in capsys.readouterr().err
    assert main(["encode", str(tiny_multi_vector_artifact), "x", "--long-inputs", "error"]) == 2
    assert "--long-inputs is not offered for token vectors" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("bench", "--texts", "0"),
        ("bench", "--repeats", "0"),
        ("bench", "--queries", "0"),
        ("bench", "--threads", "-1"),
        ("bench", "--batch-sizes", "8,x"),
        ("tune", "--rounds", "0"),
        ("tune", "--threads", "-1"),
        ("tune", "--texts", "0"),
    ],
)
def test_bench_and_tune_refuse_counts_below_one_as_usage_errors_and_write_nothing(
    minilm_artifact: Path, command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = (minilm_artifact / "manifest.json").read_bytes()
    with pytest.raises(SystemExit) as exited:
        main([command, str(minilm_artifact), option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and repr(value) in err, err
    assert (minilm_artifact / "manifest.json").read_bytes() == manifest, "no speed record was written"


def test_bench_checks_its_jsonl_path_before_the_bench_runs(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "missing" / "rows.jsonl"
    argv = ["bench", str(minilm_artifact_session), "--providers", "cpu", "--variants", "fp32", "--jsonl", str(jsonl)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: cannot write {jsonl}: No such file or directory; name a file in an existing directory this user can "
        "write\n"
    )
    assert captured.out == "", "nothing was benched"


# -- calibrate -----------------------------------------------------------------------------------------------------
def test_calibrate_that_cannot_write_the_manifest_leaves_the_calibration_as_it_was(
    minilm_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import threading

    from fastembed_rt import SentenceTransformer

    texts = tmp_path / "texts.txt"
    texts.write_text("A cat sat on the mat.\nStocks fell sharply.\nEin Satz auf Deutsch.\n", encoding="utf-8")
    before = _tree(minilm_artifact)
    # A directory where the manifest's temporary file goes: the manifest cannot be written, after the embeddings are.
    blocker = minilm_artifact / f".manifest.json.{os.getpid()}.{threading.get_ident()}.tmp"
    blocker.mkdir()
    assert main(["calibrate", str(minilm_artifact), "--texts", str(texts)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the calibration into {minilm_artifact} (Is a directory)"), err
    assert _tree(minilm_artifact) == before, "calibration.npy and manifest.json are as they were"

    blocker.rmdir()
    assert main(["calibrate", str(minilm_artifact), "--texts", str(texts)]) == 0
    assert load_manifest(minilm_artifact).calibration["texts"] == 3  # type: ignore[index]
    assert not [p.name for p in minilm_artifact.iterdir() if p.name.startswith(".")], "no temporary file is left"
    model = SentenceTransformer(minilm_artifact, provider="cpu")
    assert model.encode(["A cat sat on the mat."], precision="int8").dtype == np.int8


# -- hub repo ids --------------------------------------------------------------------------------------------------
def test_info_bench_and_tune_take_a_hub_repo_id_as_encode_does(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import huggingface_hub.constants

    # The artifact laid out as huggingface_hub's cache does, read offline (conftest sets HF_HUB_OFFLINE).
    repo = tmp_path / "hub" / "models--acme--minilm-rt"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_artifact_session, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert main(["info", "acme/minilm-rt"]) == 0
    assert f"artifact      {snapshot}\n" in capsys.readouterr().out
    bench = ["--providers", "cpu", "--variants", "fp32", "--batch-sizes", "8", "--texts", "8", "--repeats", "1"]
    assert main(["bench", "acme/minilm-rt", *bench, "--queries", "1"]) == 0
    assert "| cpu/fp32 | texts | 8 |" in capsys.readouterr().out
    assert main(["tune", "acme/minilm-rt", "--variants", "fp32", "--texts", "8", "--rounds", "1"]) == 0
    assert load_manifest(snapshot).speed[-1].source == "tune"


def test_a_bad_port_variable_is_a_usage_error_of_serve_alone(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``$PORT`` was read while every subcommand's parser was built: ``PORT=abc fastembed-rt info`` crashed."""
    monkeypatch.setenv("PORT", "abc")
    assert main(["info", str(minilm_artifact_session)]) == 0
    with pytest.raises(SystemExit) as usage:
        main(["serve", str(minilm_artifact_session)])
    assert usage.value.code == 2 and "not a port number: 'abc' (from --port or $PORT)" in capsys.readouterr().err
    monkeypatch.setenv("PORT", "99999")  # uvicorn bound 99999 - 65536 and logged 99999
    assert main(["serve", str(minilm_artifact_session)]) == 2
    assert "--port (or $PORT) must be in 0..65535, got 99999" in capsys.readouterr().err
    assert main(["serve", str(minilm_artifact_session), "--port", "8080", "--threads", "0"]) == 2
    assert "--threads must be from 1 to 1024, got 0" in capsys.readouterr().err
    assert main(["serve", str(minilm_artifact_session), "--port", "8080", "--max-concurrent-requests", "0"]) == 2
    err = capsys.readouterr().err  # one error: --max-client-batch-size, not given, followed it down to 0
    assert "--max-concurrent-requests must be at least 1, got 0" in err and "--max-client-batch-size" not in err


def test_output_into_a_closed_pipe_ends_quietly_as_shell_tools_do(minilm_artifact_session: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "fastembed_rt.cli", "info", str(minilm_artifact_session)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line (`| head -0`)
    with process.stderr:
        errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in errors and "BrokenPipeError" not in errors


def test_export_of_a_mistyped_path_under_a_folder_here_says_it_may_be_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``work/typo`` with ``work/`` here was reported only as a hub repo missing from the cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no retries of an unreachable hub
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    assert main(["export", "work/typo", str(tmp_path / "out")]) == 1
    assert "was it a path? 'work/' is a folder here, but holds no 'typo'" in capsys.readouterr().err


def test_export_of_a_path_that_is_neither_a_directory_nor_a_repo_id_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """huggingface_hub's HFValidationError for ``models/minilm/model`` came out as a traceback."""
    assert main(["export", "models/does_not_exist/model", str(tmp_path / "out")]) == 1
    assert "'models/does_not_exist/model' is neither an existing directory nor a hub repo id" in capsys.readouterr().err


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stopped_export_removes_its_staging_folder_and_says_so_in_one_line(tmp_path: Path, signum: str) -> None:
    """SIGTERM (kill, timeout, docker stop) killed the export at once and left its staging folder, a whole
    artifact's size, beside the output; Ctrl-C printed a 60-line traceback."""
    import signal
    import subprocess
    import sys
    import time

    from tiny_models import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    out = tmp_path / "artifact"
    command = [sys.executable, "-m", "fastembed_rt.cli", "export", str(model_dir), str(out), "--no-stsb"]
    # SIGINT as a terminal sends it: a test run started in the background (`cmd &`) ignores SIGINT, and so would the
    # export it starts, Python keeping an ignored SIGINT ignored
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".artifact.tmp-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".artifact.tmp-*")), "the export staged nothing before it ended"
    process.send_signal(getattr(signal, signum))
    _, errors = process.communicate(timeout=120)
    assert process.returncode == (143 if signum == "SIGTERM" else 130), errors
    assert "Traceback" not in errors
    how = "stopped by SIGTERM" if signum == "SIGTERM" else "interrupted"
    assert f"export {how}: {out} is as it was before the export" in errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no staging folder, no output"


def test_export_mistakes_get_one_line_that_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each was a misleading line: 'model directory ... does not exist' for a file, 'unknown variant(s)  optimized'
    for a space after a comma, modules that sentence-transformers made up for an overridden --task; a local
    folder's ignored --revision went into the manifest (and its model card)."""
    from tiny_models import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    cases = [
        (
            [str(model_dir / "config.json"), str(tmp_path / "a")],
            "config.json is a file; export takes a model directory",
        ),
        (
            [str(model_dir), str(tmp_path / "b"), "--task", "cross-encoder", "--no-stsb"],
            "the folder holds a model for task 'embedding', which --task cross-encoder overrides",
        ),
    ]
    for args, message in cases:
        assert main(["export", *args]) == 1
        assert message in capsys.readouterr().err
    out = tmp_path / "artifact"
    assert (
        main(["export", str(model_dir), str(out), "--variants", "fp32, optimized", "--revision", "v9", "--no-stsb"])
        == 0
    )
    assert "--revision v9 does not apply" in capsys.readouterr().err
    manifest = load_manifest(out)
    assert [v.name for v in manifest.variants][:2] == ["fp32", "optimized"] and manifest.source["revision"] is None


def test_sparse_output_without_scipy_is_refused_before_the_model_runs(
    tiny_splade_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A default install has no scipy: `encode SPLADE -o x.npz` ran the model, then died in a ModuleNotFoundError
    traceback; sparse_format='scipy' and to_scipy() raised the bare import error."""
    from fastembed_rt import SparseEncoder

    model = SparseEncoder(tiny_splade_artifact)
    rows = model.encode(["a text"], sparse_format="arrays")
    for name in ("scipy", "scipy.sparse"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import scipy` finds where it is not installed
    out = tmp_path / "rows.npz"
    assert main(["encode", str(tiny_splade_artifact), "a text", "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: --output writes a sparse model's rows as scipy's .npz, and scipy is not installed: pip install scipy "
        "(or leave out --output for JSON lines)\n"
    )
    assert not out.exists()
    with pytest.raises(InputError, match=r"sparse_format='scipy': .*pip install scipy \(or sparse_format='arrays'\)"):
        model.encode(["a text"], sparse_format="scipy")
    with pytest.raises(ImportError, match=r"pip install scipy, or keep the rows as SparseEmbeddings"):
        rows.to_scipy()
    assert main(["encode", str(tiny_splade_artifact), "a text"]) == 0  # JSON lines need no scipy


def test_version_and_python_dash_m_run_the_cli() -> None:
    """`fastembed-rt --version` said a command was required; `python -m fastembed_rt` had no __main__."""
    import subprocess

    from fastembed_rt import __version__

    done = subprocess.run(
        [sys.executable, "-m", "fastembed_rt", "--version"], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (0, f"fastembed-rt {__version__}\n"), done.stderr


def test_serve_without_the_server_extra_says_so_in_one_line_from_every_entry_point(tmp_path: Path) -> None:
    """`python -m fastembed_rt.server` printed the install hint inside runpy's traceback; `serve --help` listed a
    bare `rest` argument. A `uvicorn` module that fails to import stands in for an install without the extra."""
    import subprocess

    (tmp_path / "uvicorn.py").write_text("raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    hint = "error: fastembed-rt serve needs the server extra (uvicorn): pip install 'fastembed-rt[server]'\n"
    for flags, module in (("-m", "fastembed_rt"), ("-m", "fastembed_rt.server"), ("-um", "fastembed_rt.server.main")):
        command = [sys.executable, flags, module] + (["serve"] if module == "fastembed_rt" else []) + ["some-artifact"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert (done.returncode, done.stderr) == (2, hint), (flags, module)
    # another program's optional import of the server package, run with -m, is its own business (it was exited)
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text(
        "try:\n    import fastembed_rt.server as server\nexcept ImportError:\n    server = None\n"
    )
    (tmp_path / "myapp" / "main.py").write_text("import myapp\nprint('without the server:', myapp.server is None)\n")
    done = subprocess.run([sys.executable, "-m", "myapp.main"], capture_output=True, text=True, env=env, timeout=120)
    assert (done.returncode, done.stdout) == (0, "without the server: True\n"), done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "fastembed_rt", "serve", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert helped.returncode == 0 and "rest" not in helped.stdout
    assert "pip install 'fastembed-rt[server]'" in " ".join(helped.stdout.split())


@pytest.mark.parametrize("precision", ["float32", "ubinary"])
def test_a_bulk_encode_written_in_parts_equals_one_call_and_counts_truncation_over_all(
    minilm_artifact_session: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
) -> None:
    """A corpus is embedded and written part by part (memory for a part's vectors, not the whole array's): the .npy
    and the JSON lines hold what one call gives, in order, and the truncation note counts every part."""
    import fastembed_rt.cli as cli
    from fastembed_rt import SentenceTransformer

    monkeypatch.setattr(cli, "TEXTS_PER_PART", 3)
    texts = [f"text number {i}" + " long" * (400 if i in (1, 6) else 0) for i in range(8)]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    command = ["encode", str(minilm_artifact_session), "--file", str(tmp_path / "texts.txt"), "--precision", precision]
    assert main([*command, "-o", str(tmp_path / "v.npy")]) == 0
    model = SentenceTransformer(minilm_artifact_session)
    expected = model.encode(texts, precision=precision)
    written = np.load(tmp_path / "v.npy")
    assert written.dtype == expected.dtype and written.shape == expected.shape
    np.testing.assert_allclose(written.astype(np.float32), expected.astype(np.float32), atol=1e-6)
    assert "2 of 8 texts were truncated" in capsys.readouterr().err
    assert main(command) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == texts
    np.testing.assert_allclose([line["embedding"] for line in lines], expected.astype(np.float32), atol=1e-6)


def test_a_bulk_encode_refuses_an_over_long_line_by_its_place_before_printing_any(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastembed_rt.cli as cli

    monkeypatch.setattr(cli, "TEXTS_PER_PART", 3)
    texts = [f"text {i}" + " long" * (400 if i == 7 else 0) for i in range(8)]
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    argv = ["encode", str(minilm_artifact_session), "--file", str(tmp_path / "texts.txt"), "--long-inputs", "error"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"error: {tmp_path / 'texts.txt'}:8 is " in captured.err


def test_a_stopped_encode_removes_its_staged_output_and_says_so(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """SIGTERM (timeout, a cancelled job) killed encode at once: a hidden .NAME.PID.tmp stayed beside the output at
    every stopped run."""
    import signal
    import subprocess
    import time

    (tmp_path / "texts.txt").write_text("a sentence to embed, again and again\n" * 200_000, encoding="utf-8")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v.npy").write_bytes(b"yesterday's vectors")
    command = [sys.executable, "-m", "fastembed_rt.cli", "encode", str(minilm_artifact_session)]
    command += ["--file", str(tmp_path / "texts.txt"), "-o", str(tmp_path / "out" / "v.npy")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".v.npy.*.tmp")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list((tmp_path / "out").glob(".v.npy.*.tmp")), "encode staged nothing before it ended"
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 143, errors
    assert errors.strip().splitlines()[-1] == "stopped by SIGTERM" and "Traceback" not in errors
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["v.npy"]
    assert (tmp_path / "out" / "v.npy").read_bytes() == b"yesterday's vectors"


def test_a_full_disk_under_the_output_is_one_line(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """Writing JSON lines to a full disk (here /dev/full) ended in a traceback of print's OSError."""
    import subprocess

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    command = [sys.executable, "-m", "fastembed_rt.cli", "encode", str(minilm_artifact_session), "a", "b", "c"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (1, "error: cannot write the output: No space left on device")


def test_an_output_named_as_text_gets_a_note_that_it_holds_npy(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o vectors.jsonl`` silently wrote NumPy's binary format."""
    assert main(["encode", str(minilm_artifact_session), "a text", "-o", str(tmp_path / "vectors.jsonl")]) == 0
    assert "note: --output writes .npy format whatever its name; leave it out for JSON lines" in capsys.readouterr().err
    assert np.load(tmp_path / "vectors.jsonl").shape == (1, 384)


def test_awkward_but_legal_paths_work_as_named(
    minilm_artifact_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder named ``~x`` here crashed (pathlib's RuntimeError for an unknown user), even as ``./~x``; the
    manifest's own path was 'does not exist'; an export into ``.`` did the work, then crashed renaming the folder
    the shell stands in (refused at once now); stopped exports beside ``model[v2]`` were never cleaned (its name read
    as a glob); ``--overwrite`` onto a link left a hidden ``.NAME.replaced-PID`` link behind."""
    import shutil
    import time

    from tiny_models import build_tiny_model

    monkeypatch.chdir(tmp_path)
    shutil.copytree(minilm_artifact_session, tmp_path / "~nosuchuser")
    for name in ("~nosuchuser", "./~nosuchuser"):
        assert main(["encode", name, "a text"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["info", "~nosuchuser/manifest.json"]) == 1
    assert "manifest.json is a file; an artifact is the folder that holds manifest.json" in capsys.readouterr().err

    model_dir = build_tiny_model(tmp_path / "tiny", "bert", "mean")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["export", str(model_dir), ".", "--no-stsb", "--variants", "fp32"]) == 1
    assert "output directory . is the current directory (or holds it)" in capsys.readouterr().err
    assert (tmp_path / "here").is_dir() and not any((tmp_path / "here").iterdir()), "refused before any work"

    monkeypatch.chdir(tmp_path)
    stale = tmp_path / ".model[v2].tmp-99999"
    (stale / "onnx").mkdir(parents=True)
    (stale / ".export.lock").touch()
    os.utime(stale / ".export.lock", (time.time() - 7200, time.time() - 7200))
    assert main(["export", str(model_dir), "model[v2]", "--no-stsb", "--variants", "fp32"]) == 0
    assert not stale.exists(), "a stopped export's staging folder beside it is removed"

    os.symlink(tmp_path / "model[v2]", tmp_path / "link")
    assert main(["export", str(model_dir), "link", "--no-stsb", "--variants", "fp32", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert (tmp_path / "model[v2]" / "manifest.json").is_file(), "the folder the link named is left as it was"


def test_a_stop_signal_inside_an_import_is_still_one_line(
    minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the model loaded landed inside onnxruntime's import, which re-raised it as ImportError
    ("initialization failed"): a traceback and exit 1 instead of 143 (seen when a CI machine was slow to load)."""
    import fastembed_rt.cli as cli

    def loading(args: Any) -> int:
        try:
            raise cli._Terminated(15)
        except KeyboardInterrupt as exc:  # what onnxruntime/__init__.py does with any exception of its import
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "_encode", loading)  # the command main's parser runs
    assert main(["encode", str(minilm_artifact_session), "a text"]) == 143
    assert capsys.readouterr().err.strip() == "stopped by SIGTERM"


@pytest.mark.parametrize("value", [",", "", " , "])
def test_export_refuses_variants_that_name_none_before_importing_torch(
    minilm_dir: Path, tmp_path: Path, value: str
) -> None:
    """`--variants ,` built every default variant (minutes), as if the flag were not given; tune refused it."""
    script = (
        "import sys; from fastembed_rt.cli import main; "
        f"code = main(['export', {str(minilm_dir)!r}, {str(tmp_path / 'out')!r}, '--variants', {value!r}]); "
        "print(code, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout.split()[-2:] == ["1", "False"], run.stdout + run.stderr
    assert f"--variants {value!r} names no variant; leave it out to build the default ones" in run.stderr
    assert not (tmp_path / "out").exists()


def test_rank_notes_truncated_documents_without_calling_them_embedded(
    tiny_reranker_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rank", str(tiny_reranker_artifact), "q", "short", "word " * 2000]) == 0
    err = capsys.readouterr().err
    assert "note: 1 of 2 texts were truncated" in err and "(--long-inputs chunk reads all of them)" in err
