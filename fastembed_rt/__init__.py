"""fastembed-rt: torch-free inference for Sentence Transformers models.

>>> from fastembed_rt import SentenceTransformer
>>> model = SentenceTransformer("artifacts/all-MiniLM-L6-v2")   # doctest: +SKIP
>>> model.encode(["The cat sat on the mat."]).shape              # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import importlib
from typing import Any

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

# Imported on first use: a process that only encodes does not pay for them at start (cold start is a
# target: issue 13).
_LAZY = {
    "util": ("fastembed_rt.util", None),
    "mine_hard_negatives": ("fastembed_rt.hard_negatives", "mine_hard_negatives"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fastembed_rt' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


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
