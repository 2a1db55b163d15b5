"""Pieces every exporter shares: finding the model, saving its tokenizer, naming library versions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastembed_rt.errors import ExportError

__all__ = ["library_versions", "resolve_model_dir", "write_tokenizer"]


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


def write_tokenizer(st_model: Any, out: Path) -> tuple[str, ...]:
    """Save the tokenizer as sentence-transformers configured it; tokenizer.json without padding/truncation."""
    from tokenizers import Tokenizer

    hf_tokenizer = st_model[0].tokenizer
    saved = hf_tokenizer.save_pretrained(str(out))
    backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / "tokenizer.json"))
    return tuple(sorted({Path(p).name for p in saved} | {"tokenizer.json"}))


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for package in ("fastembed-rt", "torch", "transformers", "sentence-transformers", "onnx", "onnxruntime"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out
