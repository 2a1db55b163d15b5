"""Calibration of int8/uint8 output ranges: fixed once per artifact, never taken from a batch.

sentence-transformers' ``encode(precision="int8")`` derives ranges from the batch being encoded,
so one text gets different codes in different batches. Here the ranges come from a calibration
set of embeddings stored in the artifact (``calibration.npy``, float32 ``[n, dim]``, the graph's
``sentence_embedding`` of up to ``MAX_CALIBRATION_TEXTS`` texts): for an output of ``k``
dimensions the range of dimension ``j`` is the min/max over the set of
``matryoshka(sample, k, normalize)[:, j]``, so truncated and re-normalized outputs get ranges of
their own scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastembed_rt.artifact import Manifest, file_sha256, update_manifest
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels import reference

__all__ = ["CALIBRATION_FILE", "MAX_CALIBRATION_TEXTS", "Calibration", "calibrate_artifact", "select_texts"]

CALIBRATION_FILE = "calibration.npy"
MAX_CALIBRATION_TEXTS = 2048


class Calibration:
    """Per-dimension ranges for every Matryoshka dimension, from the artifact's calibration set."""

    def __init__(self, manifest: Manifest) -> None:
        info = manifest.calibration
        if not info:
            raise ArtifactError(
                f"{manifest.root} has no int8/uint8 calibration; add one with "
                f"`fastembed-rt calibrate {manifest.root} --texts FILE`"
            )
        path = manifest.root / str(info["file"])
        try:
            sample = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} cannot be read ({exc}); re-run `fastembed-rt calibrate`") from exc
        if sample.ndim != 2 or sample.shape[1] != manifest.dim or sample.dtype != np.float32:
            raise ArtifactError(
                f"{path} holds {sample.dtype} {sample.shape}, expected float32 [n, {manifest.dim}]; "
                "re-run `fastembed-rt calibrate`"
            )
        self.sample = sample
        self._ranges: dict[tuple[int, bool], np.ndarray] = {}

    def ranges(self, output_dim: int, normalize_output: bool) -> np.ndarray:
        """float32 ``[2, output_dim]``: min and max per dimension."""
        key = (output_dim, normalize_output)
        if key not in self._ranges:
            values = reference.matryoshka(self.sample, output_dim, normalize_output)
            self._ranges[key] = np.stack([values.min(axis=0), values.max(axis=0)]).astype(np.float32)
        return self._ranges[key]


def select_texts(texts: Sequence[str], limit: int = MAX_CALIBRATION_TEXTS) -> list[str]:
    """Up to ``limit`` distinct non-empty texts, a deterministic spread over the input."""
    unique = sorted({t for t in texts if isinstance(t, str) and t.strip()})
    if len(unique) <= limit:
        return unique
    picks = np.random.default_rng(0).choice(len(unique), size=limit, replace=False)
    return [unique[i] for i in sorted(picks)]


def calibrate_artifact(model: Any, texts: Sequence[str], source: str) -> dict[str, Any]:
    """Encode ``texts`` with ``model`` (a fastembed-rt SentenceTransformer or MultiVectorEncoder), store the
    calibration set (a multi-vector model's: the token vectors of the texts).

    Writes ``calibration.npy`` next to the manifest and records it in ``manifest.json``.
    Returns the manifest's new ``calibration`` entry.
    """
    chosen = select_texts(texts)
    if len(chosen) < 2:
        raise InputError(f"calibration needs at least 2 distinct non-empty texts, got {len(chosen)}")
    manifest: Manifest = model.manifest
    embeddings = model.encode(chosen, batch_size=32)
    # A multi-vector model gives one [tokens, dim] matrix per text: every token vector is a sample.
    sample = np.concatenate(embeddings) if isinstance(embeddings, list) else np.asarray(embeddings, np.float32)
    path = manifest.root / CALIBRATION_FILE
    np.save(path, sample.astype(np.float32), allow_pickle=False)
    entry = {
        "file": CALIBRATION_FILE,
        "texts": len(chosen),
        "source": source,
        "sha256": file_sha256(path),
        "ranges": np.stack([sample.min(axis=0), sample.max(axis=0)]).round(6).tolist(),
    }
    update_manifest(manifest.root, calibration=entry)
    return entry
