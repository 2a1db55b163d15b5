"""Code typed against sentence-transformers type-checks against fastembed-rt where the runtime accepts it (mypy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = """
from fastembed_rt import CrossEncoder, SentenceTransformer
from fastembed_rt.util import paraphrase_mining


def mined(model: SentenceTransformer) -> list[list[float | int]]:
    return paraphrase_mining(model, ["a cat", "a dog"])


def ranked(model: CrossEncoder) -> list[tuple[int, float]]:
    return [(hit["corpus_id"], hit["score"]) for hit in model.rank("q", ["d"])]
"""


def test_our_models_satisfy_the_encoder_protocol_util_takes(tmp_path: Path) -> None:
    """paraphrase_mining(our model) ran, yet failed type checks: the protocol named encode's argument `sentences`,
    ours (and sentence-transformers') `inputs`."""
    code = tmp_path / "app.py"
    code.write_text(SNIPPET, encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(code)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
