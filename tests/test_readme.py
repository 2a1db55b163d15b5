"""The Python code of the README and the docs runs as written (against the exported MiniLM artifact and a tiny
ColBERT)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    """(where, code) of every ``python`` block; ``py`` blocks need what only other tests build (a served model)."""
    blocks = []
    for page in PAGES:
        found = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
        blocks += [(f"{page.relative_to(ROOT)} block {i}", code) for i, code in enumerate(found)]
    return blocks


def test_readme_and_docs_have_python_examples() -> None:
    assert any(where.startswith("README.md") for where, _ in _python_blocks())
    assert len(_python_blocks()) >= 5


def test_every_docs_page_is_linked_from_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"]({page.relative_to(ROOT)})" in text, page.name


def test_relative_links_in_readme_and_docs_point_at_files_that_exist() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


@pytest.mark.parametrize("where", [where for where, _ in _python_blocks()])
def test_readme_python_block_runs(
    where: str,
    minilm_artifact_session: Path,
    tiny_multi_vector_artifact: Path,
    tmp_path: Path,
) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "all-MiniLM-L6-v2").symlink_to(minilm_artifact_session)
    # The late-interaction example runs on the tests' tiny random ColBERT (no trained one is available offline).
    (tmp_path / "artifacts" / "colbert").symlink_to(tiny_multi_vector_artifact)
    # As a user runs it: a script of its own, so a worker pool's spawned processes re-import it as they would
    # (the pool example without its __main__ guard passed under exec here and died when run as a file).
    script = tmp_path / "example.py"
    script.write_text(dict(_python_blocks())[where], encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-4000:]}"


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert re.search(r"^make test$", text, flags=re.M), "the test command stands alone on its line, as CI runs it"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.M)
