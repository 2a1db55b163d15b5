"""fastembed-rt: torch-free inference for Sentence Transformers models.

>>> from fastembed_rt import SentenceTransformer
>>> model = SentenceTransformer("artifacts/all-MiniLM-L6-v2")   # doctest: +SKIP
>>> model.encode(["The cat sat on the mat."]).shape              # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# ONNX Runtime's import writes a device id and a queued usage event (OS, CPU, container detection, the executable's
# path) under ~/.cache/Microsoft, decided at its import; fastembed-rt declines that, as it declines OpenVINO's, unless
# the process chose (ORT_DISABLE_TELEMETRY=0) or imported onnxruntime before fastembed_rt.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from fastembed_rt import util
from fastembed_rt.errors import (
    ArtifactError,
    ExportError,
    FastEmbedError,
    InputError,
    LongInputError,
    NotEnoughMemoryError,
    ParityError,
    ProviderError,
)
from fastembed_rt.logging_handler import LoggingHandler
from fastembed_rt.models import SentenceTransformer, load_model
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.similarity import SimilarityFunction

if TYPE_CHECKING:
    from fastembed_rt.hard_negatives import mine_hard_negatives
    from fastembed_rt.models import CrossEncoder, MultiVectorEncoder, SparseEncoder

__version__ = "0.1.0"

# Imported on first use: a process that only encodes does not pay for them at start (cold start is a
# target: issue 13). ``util`` is not lazy: ``similarity`` imports it anyway.
_LAZY = {
    "mine_hard_negatives": "fastembed_rt.hard_negatives",
    "CrossEncoder": "fastembed_rt.models",
    "MultiVectorEncoder": "fastembed_rt.models",
    "SparseEncoder": "fastembed_rt.models",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fastembed_rt' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "ArtifactError",
    "CrossEncoder",
    "ExportError",
    "FastEmbedError",
    "InputError",
    "LoggingHandler",
    "LongInputError",
    "MultiVectorEncoder",
    "NotEnoughMemoryError",
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
