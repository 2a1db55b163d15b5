"""Where a model comes from: a local sentence-transformers directory or a hub id, loaded on the CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastembed_rt.errors import ExportError

__all__ = ["load_st_model", "resolve_model_dir"]


def resolve_model_dir(model: str | os.PathLike[str], revision: str | None, token: str | bool | None) -> Path:
    """A local sentence-transformers model directory: a path as is, or a hub id downloaded."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(model).startswith((".", "/", "~")):
        raise ExportError(f"model directory {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(model), revision=revision, token=token))
    except LocalEntryNotFoundError as exc:
        raise ExportError(f"{model!r} is not a local directory nor in the hub cache while offline") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ExportError(f"could not download {model!r} from the hub: {exc}") from exc


def load_st_model(kind: type[Any], model_dir: Path) -> Any:
    """``model_dir`` loaded on the CPU as ``kind`` (sentence-transformers' SentenceTransformer, CrossEncoder, ...)."""
    try:
        return kind(str(model_dir), device="cpu")
    except Exception as exc:  # sentence-transformers raises many types on a bad directory
        raise ExportError(f"sentence-transformers could not load {model_dir} as a {kind.__name__}: {exc}") from exc
