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

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import (
    MANIFEST_FILE,
    Manifest,
    check_contained,
    file_sha256,
    load_manifest,
    manifest_lock,
    unreadable,
)
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels import reference

__all__ = ["CALIBRATION_FILE", "MAX_CALIBRATION_TEXTS", "Calibration", "calibrate_artifact", "select_texts"]

logger = logging.getLogger("fastembed_rt")

CALIBRATION_FILE = "calibration.npy"
MAX_CALIBRATION_TEXTS = 2048
# Fewer texts than this get a warning (sentence-transformers warns below 100 embeddings too): ranges from 3 texts
# saturated 57 % of MiniLM's int8 codes on STSb test sentences, from 525 texts 0.36 %.
FEW_CALIBRATION_TEXTS = 100


def _same_ranges(recorded: object, sample: np.ndarray) -> bool:
    """Whether the manifest's full-width ``ranges`` are the sample's per-dimension min and max."""
    try:
        stored = np.asarray(recorded, dtype=np.float32)
    except (TypeError, ValueError):
        return False
    actual = np.stack([sample.min(axis=0), sample.max(axis=0)])
    # within 1e-6: fastembed-rt wrote them rounded to 6 places before it wrote the float32 values
    return stored.shape == actual.shape and bool(np.allclose(stored, actual, rtol=0, atol=1e-6))


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
        check_contained(path, manifest.root)
        try:
            sample = np.load(path, allow_pickle=False)
        except PermissionError as exc:  # the file is whole: re-creating it would not help
            raise unreadable(path, manifest.root, exc) from exc
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or truncated file
            raise ArtifactError(
                f"{path} cannot be read ({type(exc).__name__}: {exc}); re-create it with "
                f"`fastembed-rt calibrate {manifest.root} --texts FILE`"
            ) from exc
        if sample.ndim != 2 or sample.shape[1] != manifest.dim or sample.dtype != np.float32:
            raise ArtifactError(
                f"{path} holds {sample.dtype} {sample.shape}, expected float32 [n, {manifest.dim}]; "
                "re-run `fastembed-rt calibrate`"
            )
        finite = bool(np.isfinite(sample).all())
        if sample.shape[0] < 2 or not finite:  # NaN ranges gave all-zero codes, no rows a numpy error
            raise ArtifactError(
                f"{path} holds {sample.shape[0]} embeddings{'' if finite else ', not all finite'}: "
                f"no ranges to quantize with; re-create it with `fastembed-rt calibrate {manifest.root} --texts FILE`"
            )
        recorded = info.get("ranges")  # absent in manifests from before it was recorded
        if recorded is not None and not _same_ranges(recorded, sample):
            # a replaced or damaged file changed every int8/uint8 code silently, and the codes no longer matched
            # the ranges the manifest publishes (that a reader dequantizes stored codes with)
            raise ArtifactError(
                f"{path} is not the calibration set its manifest records (its ranges differ from "
                f"calibration.ranges in {MANIFEST_FILE}): it was changed or replaced; re-create it with "
                f"`fastembed-rt calibrate {manifest.root} --texts FILE`"
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
    """Up to ``limit`` distinct non-empty texts: a deterministic random pick over the input, in alphabetical order
    (the output ranges take all of them; the int8 builders take the first 256, an alphabetical head: on MiniLM its
    SmoothQuant graph's min cosine against fp32 was 0.99780, an even spread's 0.99766, so the order is kept)."""
    unique = sorted({t for t in texts if isinstance(t, str) and t.strip()})
    if len(unique) <= limit:
        return unique
    picks = np.random.default_rng(0).choice(len(unique), size=limit, replace=False)
    return [unique[i] for i in sorted(picks)]


def calibrate_artifact(model: Any, texts: Sequence[str], source: str) -> dict[str, Any]:
    """Encode ``texts`` with ``model`` (a fastembed-rt SentenceTransformer or MultiVectorEncoder), store the
    calibration set (a multi-vector model's: the token vectors of the texts).

    Writes ``calibration.npy`` next to the manifest and records it in ``manifest.json``: both are written to
    temporary files in the artifact directory first and then renamed over the old ones, the calibration file
    first, so that a failure (a read-only directory, a full disk) leaves the old pair as it was.
    Returns the manifest's new ``calibration`` entry.

    Raises:
        InputError: fewer than 2 distinct non-empty texts.
        ArtifactError: the artifact directory cannot be written.
    """
    chosen = select_texts(texts)
    if len(chosen) < 2:
        raise InputError(f"calibration needs at least 2 distinct non-empty texts, got {len(chosen)}")
    manifest: Manifest = model.manifest
    root = manifest.root
    path = root / CALIBRATION_FILE
    # of this process and thread: two calibrations at once each rename their own file with their own manifest
    staged = root / f".{CALIBRATION_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    staged_manifest: Path | None = None
    try:
        # Opened before the texts are encoded: a directory that cannot be written fails at once.
        with staged.open("wb") as handle:
            if len(chosen) < FEW_CALIBRATION_TEXTS:  # said once the directory is known to take the calibration
                logger.warning(
                    "calibrating on only %d distinct texts: texts outside their ranges saturate at the int8/uint8 "
                    "limits; give at least %d representative of what you will encode",
                    len(chosen),
                    FEW_CALIBRATION_TEXTS,
                )
            # Full width: ranges are per graph dimension, whatever Matryoshka default the model has.
            full_width = model.truncate_embeddings(None) if hasattr(model, "truncate_embeddings") else nullcontext()
            with full_width:
                embeddings = model.encode(chosen, batch_size=32, show_progress_bar=False)
            # A multi-vector model gives one [tokens, dim] matrix per text: every token vector is a sample.
            sample = np.concatenate(embeddings) if isinstance(embeddings, list) else np.asarray(embeddings, np.float32)
            np.save(handle, sample.astype(np.float32), allow_pickle=False)
        entry = {
            "file": CALIBRATION_FILE,
            "texts": len(chosen),
            "source": source,
            "sha256": file_sha256(staged),
            # the float32 values exactly (rounded, 1,355 of 153,600 STSb codes came out otherwise): the full-width
            # ranges, for reading; a model's quantization_ranges() gives them for any truncate_dim
            "ranges": np.stack([sample.min(axis=0), sample.max(axis=0)]).tolist(),
        }
        with manifest_lock(root):  # read afresh and written under the lock: no other change is lost
            staged_manifest = replace(load_manifest(root), calibration=entry).write_staged()
            # Two renames within one directory: nothing between them can fail for want of permission or space.
            os.replace(staged, path)
            os.replace(staged_manifest, root / MANIFEST_FILE)
    except OSError as exc:
        raise ArtifactError(
            f"cannot write the calibration into {root} ({exc.strerror or exc}); make the directory writable or "
            "calibrate a writable copy of the artifact"
        ) from exc
    finally:
        # a read-only folder answers EROFS even for a file that is not there: the error above is the one to see
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
            if staged_manifest is not None:
                staged_manifest.unlink(missing_ok=True)
    return entry
