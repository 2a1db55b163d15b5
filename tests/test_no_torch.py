"""The runtime never imports torch, transformers, optimum or sentence-transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_BLOCKER = """
import importlib.abc, sys
BLOCKED = ("torch", "transformers", "optimum", "sentence_transformers")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
"""

_SCRIPT = (
    _BLOCKER
    + """
import json
import fastembed_rt
from fastembed_rt import SentenceTransformer
from fastembed_rt import util, stsb, cli  # every runtime module
model = SentenceTransformer(sys.argv[1])
emb = model.encode(["The cat sat on the mat.", "A feline rested on the rug."])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"shape": list(emb.shape), "cos": float(emb[0] @ emb[1]), "heavy": heavy}))
"""
)


def test_runtime_loads_and_encodes_with_torch_transformers_optimum_unimportable(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(minilm_artifact_session)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 384]
    assert out["cos"] > 0.5
    assert out["heavy"] == []


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    script = _BLOCKER + "\nimport torch\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "blocked in this test" in result.stderr


def test_cli_export_without_the_export_extra_gives_an_install_hint(tmp_path: Path) -> None:
    script = _BLOCKER + "\nfrom fastembed_rt.cli import main\nraise SystemExit(main(['export', 'x', 'y']))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "pip install 'fastembed-rt[export]'" in result.stderr
