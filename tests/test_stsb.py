"""The one STSb loader: the folder a user names is the one read, and a bad file is named in the error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastembed_rt import stsb
from fastembed_rt.errors import InputError
from fastembed_rt.stsb import StsbNotFoundError


def _split(folder: Path, rows: list[str], name: str = "stsb-en-test.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``../shared/data/stsb`` beside the working directory, as on the workstation: the fallback is there."""
    shared = _split(tmp_path / "shared" / "data" / "stsb", ["shared a,shared b,1.0"])
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv(stsb.STSB_ENV, raising=False)
    return shared


def test_the_shared_folder_is_read_when_nothing_is_named(shared_data: Path) -> None:
    data = stsb.load_stsb("test", "en")
    assert data.sentences1 == ["shared a"] and data.source == str(shared_data / "stsb-en-test.csv")


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_a_named_folder_without_the_files_is_an_error_not_a_reason_to_read_other_data(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    folder = tmp_path / "typo"
    if problem == "empty":
        folder.mkdir()
    with pytest.raises(StsbNotFoundError, match=r"typo \(path\)"):
        stsb.load_stsb("test", "en", folder)
    monkeypatch.setenv(stsb.STSB_ENV, str(folder))
    with pytest.raises(StsbNotFoundError, match=r"typo \(\$FASTEMBED_RT_STSB\)"):
        stsb.load_stsb("test", "en")


def test_the_path_argument_wins_over_the_environment_variable(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(stsb.STSB_ENV, str(_split(tmp_path / "env", ["env a,env b,2.0"])))
    assert stsb.load_stsb("test", "en").sentences1 == ["env a"]
    assert stsb.load_stsb("test", "en", _split(tmp_path / "arg", ["arg a,arg b,3.5"])).scores.tolist() == [3.5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a,b,1.0\nc,d,high\n", r"stsb-en-test\.csv:2: the score 'high' is not a number"),
        (b"sentence_a,sentence_b,label\na,b,1.0\n", r"stsb-en-test\.csv:1: the score 'label' is not a number"),
        (b"a,b\n", r"stsb-en-test\.csv:1: expected 3 columns"),
        (b"a,b,1.0\n\xff\xfe,c,2.0\n", r"stsb-en-test\.csv is not UTF-8 text"),
        # a row's line in the file, past a quoted sentence that spans two lines (the row count said 2)
        (b'a,"two\nlines",1.0\nc,d,x\n', r"stsb-en-test\.csv:3: the score 'x' is not a number"),
        (b"a,b,1.0\nc,d,nan\n", r"stsb-en-test\.csv:2: the score 'nan' is not a finite number"),
        (b"", r"stsb-en-test\.csv holds no sentence pairs"),
        (b"sentence1,sentence2,score\n", r"stsb-en-test\.csv holds no sentence pairs"),
    ],
)
def test_a_malformed_split_is_refused_naming_the_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "stsb-en-test.csv").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        stsb.load_stsb("test", "en", tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_header_or_the_first_sentence(tmp_path: Path) -> None:
    """A spreadsheet's UTF-8 export starts with a BOM: the header was refused as a row, a first sentence kept it."""
    for header in ("sentence1,sentence2,score\n", ""):
        (tmp_path / "stsb-en-test.csv").write_bytes(("\ufeff" + header + "A man.,b,1.5\n").encode())
        assert stsb.load_stsb("test", "en", tmp_path).sentences1 == ["A man."]


def test_a_found_shared_folder_without_the_language_asked_for_is_passed_over(shared_data: Path) -> None:
    """The first ../shared/data/stsb holding any split was taken: one without the language asked for blocked the
    checkout's folder and the hub ("does not exist; languages here: ['en']")."""
    assert stsb.find_stsb_dir(None, "stsb-en-test.csv") == shared_data
    assert stsb.find_stsb_dir(None, "stsb-de-test.csv") != shared_data


def test_spearman_is_nan_where_a_side_holds_nan_and_ties_infinities_as_scipy() -> None:
    """NaN ranked last (as the most similar pairs): a NaN embedding gave a plausible STSb score; inf - inf split a
    tie of infinities."""
    from scipy.stats import rankdata, spearmanr

    assert np.isnan(stsb.spearman([0.1, np.nan, 0.3, 0.2], [1.0, 2.0, 3.0, 4.0]))
    assert np.isnan(stsb.spearman([0.1, 0.2, 0.3], [1.0, np.nan, 3.0]))
    values = np.array([np.inf, np.inf, 1.0, -np.inf, -np.inf, 1.0])
    np.testing.assert_array_equal(stsb.average_ranks(values), rankdata(values))
    other = np.array([3.0, 1.0, 2.0, 0.5, 0.7, 2.0])
    assert stsb.spearman(values, other) == pytest.approx(spearmanr(values, other).statistic, abs=1e-12)
    encode_nan = lambda texts: np.full((len(texts), 4), np.nan)  # noqa: E731
    data = stsb.StsbSplit(["a", "b", "c"], ["d", "e", "f"], np.array([1.0, 2.0, 3.0]), "test")
    assert np.isnan(stsb.stsb_spearman(encode_nan, data))


def test_a_header_row_is_tolerated_and_scores_are_floats(tmp_path: Path) -> None:
    _split(tmp_path, ["sentence1,sentence2,score", '"a, quoted",b,4.25', "c,d,0"])
    data = stsb.load_stsb("test", "en", tmp_path)
    assert data.sentences1 == ["a, quoted", "c"] and data.scores.dtype == np.float64
    assert data.scores.tolist() == [4.25, 0.0]


def test_the_cli_reports_a_named_folder_without_the_files_as_an_error_not_a_traceback(
    minilm_artifact_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fastembed-rt export` with $FASTEMBED_RT_STSB mistyped ended in a FileNotFoundError traceback."""
    from fastembed_rt.cli import main

    monkeypatch.setenv(stsb.STSB_ENV, str(tmp_path / "typo"))
    assert main(["tune", str(minilm_artifact_session)]) == 1  # tune reads its texts from STSb dev first
    assert f"error: the STSb folder {tmp_path / 'typo'} ($FASTEMBED_RT_STSB) does not exist" in capsys.readouterr().err
    assert issubclass(StsbNotFoundError, FileNotFoundError)  # as callers caught before


def test_without_local_data_the_hub_is_tried_once_and_its_failure_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Offline, every hub attempt costs huggingface_hub's ~24 s of retries: an export asks for three splits."""
    calls: list[tuple[str, str]] = []

    def offline(split: str, lang: str) -> stsb.StsbSplit:
        calls.append((split, lang))
        raise ConnectionError("Couldn't reach 'PhilipMay/stsb_multi_mt' on the Hub")

    monkeypatch.setattr(stsb, "find_stsb_dir", lambda path=None, file_name=None: None)
    monkeypatch.setattr(stsb, "_from_hub", offline)
    monkeypatch.setattr(stsb, "_hub_failure", None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(InputError, match="split 'validation' is not one of"):  # a caller's slip disables nothing
        stsb.available_stsb("validation")
    assert calls == [] and stsb._hub_failure is None
    with caplog.at_level("WARNING", logger="fastembed_rt"):
        assert stsb.available_stsb("train") is None and stsb.available_stsb("dev") is None
    assert calls == [("train", "en")]
    assert caplog.text.count("STSb could not be loaded from the hub (ConnectionError: Couldn't reach") == 1
    assert "or HF_HUB_OFFLINE=1 with no network" in caplog.text  # which spares those retries


def test_without_local_data_the_export_scores_and_calibrates_on_the_hubs_stsb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export read STSb only from a local folder: outside this workplace an artifact had no Spearman and no
    int8/uint8 calibration, though the loader (and the docs) fall back to the hub."""
    from tiny_models import build_tiny_model

    from fastembed_rt.export import export_model

    splits = {split: stsb.load_stsb(split, "en") for split in ("train", "dev", "test")}  # what the hub would give
    served: list[str] = []

    def hub(split: str, lang: str) -> stsb.StsbSplit:
        served.append(split)
        return splits[split]

    monkeypatch.setattr(stsb, "find_stsb_dir", lambda path=None, file_name=None: None)
    monkeypatch.setattr(stsb, "_from_hub", hub)
    monkeypatch.setattr(stsb, "_hub_failure", None)
    manifest = export_model(build_tiny_model(tmp_path, "bert", "mean", normalize=True), tmp_path / "out")
    assert manifest.calibration is not None and manifest.calibration["source"] == "stsb-en-train"
    assert manifest.variants[0].fidelity["stsb_spearman"] is not None
    assert {"train", "dev", "test"} <= set(served)


def test_a_stsb_variable_naming_a_file_is_said_before_the_export_loads_the_model(
    minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file was called a folder that "does not exist", after the model had loaded and exported (~10 s)."""
    from fastembed_rt.export import export_artifact

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv(stsb.STSB_ENV, str(tmp_path / "afile"))
    with pytest.raises(StsbNotFoundError, match=r"\(\$FASTEMBED_RT_STSB\) is a file, not a folder"):
        export_artifact(minilm_dir, tmp_path / "out", variants="fp32")
    assert not (tmp_path / "out").exists()
