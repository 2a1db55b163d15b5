"""fastembed-rt: torch-free inference for Sentence Transformers models.

>>> from fastembed_rt import SentenceTransformer
>>> model = SentenceTransformer("artifacts/all-MiniLM-L6-v2")   # doctest: +SKIP
>>> model.encode(["The cat sat on the mat."]).shape              # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import importlib
from typing import Any

from fastembed_rt import util
from fastembed_rt.errors import (
    ArtifactError,
    ExportError,
    FastEmbedError,
    InputError,
    ParityError,
    ProviderError,
)
from fastembed_rt.logging_handler import LoggingHandler
from fastembed_rt.models import CrossEncoder, MultiVectorEncoder, SentenceTransformer, SparseEncoder, load_model
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.similarity import SimilarityFunction

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The hard-negatives miner is imported on first use: a process that only encodes does not pay for it
    # at start (cold start is a target: issue 13). ``util`` is not lazy: ``similarity`` imports it anyway.
    if name != "mine_hard_negatives":
        raise AttributeError(f"module 'fastembed_rt' has no attribute {name!r}")
    return importlib.import_module("fastembed_rt.hard_negatives").mine_hard_negatives


__all__ = [
    "ArtifactError",
    "CrossEncoder",
    "ExportError",
    "FastEmbedError",
    "InputError",
    "LoggingHandler",
    "MultiVectorEncoder",
    "ParityError",
    "ProviderError",
    "SentenceTransformer",
    "SimilarityFunction",
    "SparseEncoder",
    "__version__",
    "load_model",
    "mine_hard_negatives",
    "quantize_embeddings",
    "util",
]
