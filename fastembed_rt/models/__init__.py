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

import importlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from fastembed_rt.artifact import load_manifest, resolve_artifact
from fastembed_rt.errors import ArtifactError
from fastembed_rt.models.base import ArtifactModel, LoadOptions, TextEncoder
from fastembed_rt.models.sentence_transformer import SentenceTransformer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fastembed_rt.models.cross_encoder import CrossEncoder
    from fastembed_rt.models.multi_vector_encoder import MultiVectorEncoder
    from fastembed_rt.models.sparse_encoder import SparseEncoder

# task -> (module, class). Only SentenceTransformer is imported with the package: the other types load on
# first use, so a process that only embeds does not import them at start (cold start is a target, issue 13).
_TYPES = {
    "embedding": ("fastembed_rt.models.sentence_transformer", "SentenceTransformer"),
    "cross-encoder": ("fastembed_rt.models.cross_encoder", "CrossEncoder"),
    "sparse": ("fastembed_rt.models.sparse_encoder", "SparseEncoder"),
    "multi-vector": ("fastembed_rt.models.multi_vector_encoder", "MultiVectorEncoder"),
}
_CLASSES = {name: module for module, name in _TYPES.values()}


def __getattr__(name: str) -> Any:
    if name not in _CLASSES:
        raise AttributeError(f"module 'fastembed_rt.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_CLASSES[name]), name)


class _ModelTypes(Mapping[str, "type[ArtifactModel]"]):
    """task -> model class, each imported when first looked up (through the module's ``__getattr__``)."""

    def __getitem__(self, task: str) -> type[ArtifactModel]:
        model: type[ArtifactModel] = __getattr__(_TYPES[task][1])
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(_TYPES)

    def __len__(self) -> int:
        return len(_TYPES)


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

MODEL_TYPES: Mapping[str, type[ArtifactModel]] = _ModelTypes()


def load_model(model_name_or_path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> ArtifactModel:
    """Open an artifact as the model type of its task (``MODEL_TYPES``), with the loader every type shares.

    Raises:
        ArtifactError: the artifact is missing or malformed, or its task has no model type here.
    """
    root = resolve_artifact(
        model_name_or_path,
        revision=options.get("revision"),
        cache_dir=options.get("cache_dir") or options.get("cache_folder"),
        token=options.get("token"),
        local_files_only=options.get("local_files_only", False),
    )
    task = load_manifest(root).task
    if task not in MODEL_TYPES:
        raise ArtifactError(f"{root} holds a {task!r} model; this fastembed-rt loads {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[task](root, **options)
