"""The README's Python code runs as written (against the exported MiniLM artifact and a tiny ColBERT)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert _python_blocks()


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(
    index: int,
    minilm_artifact_session: Path,
    tiny_multi_vector_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "all-MiniLM-L6-v2").symlink_to(minilm_artifact_session)
    # The late-interaction example runs on the tests' tiny random ColBERT (no trained one is available offline).
    (tmp_path / "artifacts" / "colbert").symlink_to(tiny_multi_vector_artifact)
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert re.search(r"^make test$", text, flags=re.M), "the test command stands alone on its line, as CI runs it"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.M)
