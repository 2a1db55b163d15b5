"""The model types, siblings over one loader (``base.ArtifactModel``): one file per task.

==================== ================= ==========================================
task (manifest)      class             sentence-transformers counterpart
==================== ================= ==========================================
``embedding``        SentenceTransformer  ``SentenceTransformer``
``cross-encoder``    CrossEncoder      ``CrossEncoder``
``sparse``           SparseEncoder     ``SparseEncoder`` (SPLADE)
``multi-vector``     MultiVectorEncoder ``MultiVectorEncoder`` (ColBERT, late interaction)
==================== ================= ==========================================

``load_model`` opens any artifact as the type its manifest names (the server uses it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastembed_rt.artifact import load_manifest, resolve_artifact
from fastembed_rt.errors import ArtifactError
from fastembed_rt.models.base import ArtifactModel, LoadOptions, TextEncoder
from fastembed_rt.models.cross_encoder import CrossEncoder
from fastembed_rt.models.multi_vector_encoder import MultiVectorEncoder
from fastembed_rt.models.sentence_transformer import SentenceTransformer
from fastembed_rt.models.sparse_encoder import SparseEncoder

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MODEL_TYPES",
    "ArtifactModel",
    "CrossEncoder",
    "LoadOptions",
    "MultiVectorEncoder",
    "SentenceTransformer",
    "SparseEncoder",
    "TextEncoder",
    "load_model",
]

MODEL_TYPES: dict[str, type[ArtifactModel]] = {
    model.task: model for model in (SentenceTransformer, CrossEncoder, SparseEncoder, MultiVectorEncoder)
}


def load_model(model_name_or_path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> ArtifactModel:
    """Open an artifact as the model type of its task (``MODEL_TYPES``), with the loader every type shares.

    Raises:
        ArtifactError: the artifact is missing or malformed, or its task has no model type here.
    """
    root = resolve_artifact(
        model_name_or_path,
        revision=options.get("revision"),
        cache_dir=options.get("cache_dir"),
        token=options.get("token"),
    )
    task = load_manifest(root).task
    if task not in MODEL_TYPES:
        raise ArtifactError(f"{root} holds a {task!r} model; this fastembed-rt loads {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[task](root, **options)
