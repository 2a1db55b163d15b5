"""The benchmark harness's workloads: built from the STSb split as its docstring says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastembed_rt.stsb import find_stsb_dir

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run

    yield run
    sys.modules.pop("run", None)


def test_the_long_workload_keeps_the_last_passage_and_a_split_too_short_for_it_stops_before_any_run(
    run_module: object, minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """The passage built from the split's last sentences was never added; a split too short for any passage ran
    every contender, then died dividing by zero before writing the table."""
    (tmp_path / "stsb-en-test.csv").write_text("A man plays.,A man plays a guitar.,4.0\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="makes no passage of 200-256 tokens"):
        run_module.load_texts(minilm_artifact_session, str(tmp_path), 3)  # type: ignore[attr-defined]
    # Eight sentences of ~60 tokens: four per passage under the 256-token budget, so the last passage holds the
    # last four (sentence1s come first, then sentence2s)
    sentence = " ".join(["the quick brown fox jumps over the lazy dog near the river bank on a sunny day"] * 3)
    rows = [f"{sentence} {i}.,{sentence} {i} again.,1.0" for i in range(4)]
    (tmp_path / "stsb-en-test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    texts, _ = run_module.load_texts(minilm_artifact_session, str(tmp_path), 3)  # type: ignore[attr-defined]
    assert len(texts["long"]) == 2
    assert texts["long"][-1].endswith(f"{sentence} 3 again.")


@pytest.mark.skipif(find_stsb_dir(None, "stsb-en-test.csv") is None, reason="no local STSb test split")
def test_every_long_passage_is_within_the_token_range(run_module: object, minilm_artifact_session: Path) -> None:
    from tokenizers import Tokenizer

    texts, _ = run_module.load_texts(minilm_artifact_session, None, 3)  # type: ignore[attr-defined]
    tokenizer = Tokenizer.from_file(str(minilm_artifact_session / "tokenizer.json"))
    low, high = run_module.LONG_TOKENS  # type: ignore[attr-defined]
    assert all(low <= len(e.ids) <= high for e in tokenizer.encode_batch(texts["long"]))
