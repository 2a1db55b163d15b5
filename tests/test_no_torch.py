"""The runtime never imports torch, transformers, optimum or sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from conftest import RunWithoutTorch

TEXTS = ["The cat sat on the mat.", "A feline rested on the rug.", "", "Quarterly revenue grew by 12 percent."]

_ENCODE = """
import json
import fastembed_rt
from fastembed_rt import SentenceTransformer
from fastembed_rt import util, stsb, cli  # every runtime module
model = SentenceTransformer(sys.argv[1])
emb = model.encode(json.loads(sys.argv[2]))
try:  # code written for sentence-transformers asks for tensors: a clear error, never an import of torch
    model.encode(["x"], convert_to_tensor=True)
    tensor_error = None
except fastembed_rt.InputError as error:
    tensor_error = str(error)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"embeddings": emb.tolist(), "heavy": heavy, "tensor_error": tensor_error}))
"""


def test_runtime_loads_and_encodes_with_torch_transformers_optimum_unimportable(
    minilm_artifact_session: Path, minilm_torch: Any, run_without_torch: RunWithoutTorch
) -> None:
    result = run_without_torch(_ENCODE, str(minilm_artifact_session), json.dumps(TEXTS))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert "import torch before the call" in out["tensor_error"]
    ours = np.asarray(out["embeddings"], dtype=np.float64)
    # The parity bar of the fp32 gate, against sentence-transformers on PyTorch in this (the parent) process.
    reference = np.asarray(minilm_torch.encode(TEXTS, convert_to_numpy=True, show_progress_bar=False), dtype=np.float64)
    assert ours.shape == reference.shape
    cosines = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosines.min() >= 0.9999, cosines


def test_the_blocker_really_blocks(run_without_torch: RunWithoutTorch) -> None:
    result = run_without_torch("\nimport torch\n")
    assert result.returncode != 0 and "blocked in this test" in result.stderr


def test_cli_export_without_the_export_extra_gives_an_install_hint(run_without_torch: RunWithoutTorch) -> None:
    result = run_without_torch("\nfrom fastembed_rt.cli import main\nraise SystemExit(main(['export', 'x', 'y']))\n")
    assert result.returncode == 2
    assert "pip install 'fastembed-rt[export]'" in result.stderr


_MINE = """
import json
from fastembed_rt import SentenceTransformer, mine_hard_negatives
model = SentenceTransformer(sys.argv[1])
pairs = json.loads(sys.argv[2])
rows = mine_hard_negatives(pairs, model, num_negatives=1, verbose=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"rows": rows, "heavy": heavy}))
"""


def test_mine_hard_negatives_runs_on_plain_pairs_without_torch_datasets_or_faiss(
    minilm_artifact_session: Path, run_without_torch: RunWithoutTorch
) -> None:
    pairs = [[TEXTS[0], TEXTS[1]], [TEXTS[3], "Sales rose twelve percent this quarter."], ["Hello", "Hi there"]]
    result = run_without_torch(
        _MINE, str(minilm_artifact_session), json.dumps(pairs), also_block=("datasets", "pandas", "faiss")
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert [row[:2] for row in out["rows"]] == pairs
    for _, positive, negative in out["rows"]:
        assert negative != positive and negative in {p for _, p in pairs}


_MULTI_VECTOR = """
import json
from fastembed_rt import MultiVectorEncoder, util
model = MultiVectorEncoder(sys.argv[1])
texts = json.loads(sys.argv[2])
queries, documents = model.encode_query(texts), model.encode_document(texts, precision="int8")
ranges = model.quantization_ranges
hits = util.semantic_search_maxsim(queries, documents, top_k=2, corpus_precision="int8", ranges=ranges)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"queries": [q.tolist() for q in queries], "hits": hits, "heavy": heavy}))
"""


def test_multi_vector_encoder_runs_with_torch_unimportable(
    tiny_multi_vector_artifact: Path, tiny_multi_vector_dir: Path, run_without_torch: RunWithoutTorch
) -> None:
    from sentence_transformers import MultiVectorEncoder

    result = run_without_torch(_MULTI_VECTOR, str(tiny_multi_vector_artifact), json.dumps(TEXTS))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert [len(h) for h in out["hits"]] == [2] * len(TEXTS)
    reference = MultiVectorEncoder(str(tiny_multi_vector_dir), device="cpu").encode_query(TEXTS, convert_to_numpy=True)
    for ours, theirs in zip(out["queries"], reference):
        a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        assert a.shape == b.shape
        cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosines.min() >= 0.9999
