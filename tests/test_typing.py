"""Code typed against sentence-transformers type-checks against fastembed-rt where the runtime accepts it (mypy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = """
import numpy as np

from fastembed_rt import CrossEncoder, SentenceTransformer, util
from fastembed_rt.util import paraphrase_mining


def mined(model: SentenceTransformer) -> list[list[float | int]]:
    return paraphrase_mining(model, ["a cat", "a dog"])


def ranked(model: CrossEncoder) -> list[tuple[int, float]]:
    return [(hit["corpus_id"], hit["score"]) for hit in model.rank("q", ["d"])]


def scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return util.cos_sim(a, b)


def embedded(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=64, normalize_embeddings=True)  # an array, not Any (--warn-return-any)
"""


def test_code_typed_for_sentence_transformers_type_checks_against_ours(tmp_path: Path) -> None:
    """paraphrase_mining(our model) ran, yet failed type checks (the protocol named encode's argument `sentences`,
    ours and sentence-transformers' `inputs`); default encode gave Any (a strict user's warn_return_any)."""
    code = tmp_path / "app.py"
    code.write_text(SNIPPET, encoding="utf-8")
    config = tmp_path / "mypy.ini"  # the snippet checked as a strict user's code; the library's own errors silent
    config.write_text("[mypy]\nwarn_return_any = True\n\n[mypy-fastembed_rt.*]\nfollow_imports = silent\n")
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(code),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
