"""STS benchmark loading and Spearman scoring, shared by export, tests and benchmarks.

``load_stsb`` looks for ``stsb-<lang>-<split>.csv`` (rows ``sentence1,sentence2,score``, no header) in, in
order: the ``path`` argument, ``$FASTEMBED_RT_STSB``, ``../shared/data/stsb`` next to the working
directory or this checkout, and otherwise loads the public ``PhilipMay/stsb_multi_mt`` dataset
from the hub (needs the ``datasets`` package and network access). A folder named by ``path`` or the
variable must hold the files: it is an error, not a reason to read other data.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastembed_rt.errors import FastEmbedError, InputError

__all__ = [
    "STSB_ENV",
    "StsbNotFoundError",
    "StsbSplit",
    "available_stsb",
    "average_ranks",
    "find_stsb_dir",
    "load_stsb",
    "spearman",
    "stsb_spearman",
]

logger = logging.getLogger("fastembed_rt")

STSB_ENV = "FASTEMBED_RT_STSB"
_SPLITS = ("train", "dev", "test")


class StsbNotFoundError(FastEmbedError, FileNotFoundError):
    """The STSb folder a user named (``path``, ``$FASTEMBED_RT_STSB``) is missing or holds no split files."""


@dataclass(frozen=True)
class StsbSplit:
    """Sentence pairs and gold scores (0–5) of one STSb split."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.scores)


def find_stsb_dir(path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> Path | None:
    """The STSb folder to read: ``path`` or else ``$FASTEMBED_RT_STSB`` where set (either must hold
    ``stsb-<lang>-<split>.csv`` files: a folder the user named is never passed over for another), else the first
    ``../shared/data/stsb`` that holds them (``file_name``, where given: one without it is passed over), else None
    (the hub)."""
    if path is not None or os.environ.get(STSB_ENV):
        folder, what = (Path(path), "path") if path is not None else (Path(os.environ[STSB_ENV]), f"${STSB_ENV}")
        if not folder.is_dir():
            state = "is a file, not a folder" if folder.exists() else "does not exist"
            raise StsbNotFoundError(f"the STSb folder {folder} ({what}) {state}")
        if not any(folder.glob("stsb-*-*.csv")):
            raise StsbNotFoundError(f"no stsb-<lang>-<split>.csv files in {folder} ({what})")
        return folder
    for candidate in (
        Path.cwd().parent / "shared" / "data" / "stsb",
        Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "stsb",
    ):
        if candidate.is_dir() and (
            (candidate / file_name).is_file() if file_name else any(candidate.glob("stsb-*-*.csv"))
        ):
            return candidate
    return None


@functools.cache  # an export reads a split more than once; the datasets cache still costs a second a call
def _from_hub(split: str, lang: str) -> StsbSplit:
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise StsbNotFoundError(
            "STSb CSV files not found locally (pass path=..., or set $FASTEMBED_RT_STSB) and the "
            "`datasets` package is not installed to load PhilipMay/stsb_multi_mt from the hub: pip install datasets"
        ) from exc
    hub_split = {"dev": "dev", "train": "train", "test": "test"}[split]
    data = load_dataset("PhilipMay/stsb_multi_mt", lang, split=hub_split)
    return StsbSplit(
        list(data["sentence1"]),
        list(data["sentence2"]),
        np.asarray(data["similarity_score"], dtype=np.float64),
        f"hub:PhilipMay/stsb_multi_mt/{lang}/{split}",
    )


def load_stsb(split: str = "test", lang: str = "en", path: str | os.PathLike[str] | None = None) -> StsbSplit:
    """Load one STSb split (``train``, ``dev`` or ``test``) in ``lang``."""
    if split not in _SPLITS:
        raise InputError(f"split {split!r} is not one of {_SPLITS}")
    folder = find_stsb_dir(path, f"stsb-{lang}-{split}.csv")
    if folder is None:
        return _from_hub(split, lang)
    file = folder / f"stsb-{lang}-{split}.csv"
    if not file.is_file():
        raise StsbNotFoundError(
            f"{file} does not exist; languages here: "
            f"{sorted({p.name.split('-')[1] for p in folder.glob('stsb-*-*.csv')})}"
        )
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    try:
        # utf-8-sig: a byte-order mark (a spreadsheet's export) is not part of the first sentence or header
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for i, row in enumerate(reader):
                line = reader.line_num  # where the row ends in the file (a quoted sentence may span lines)
                if i == 0 and row[:3] == ["sentence1", "sentence2", "score"]:
                    continue  # the files here have no header; tolerate one
                if len(row) != 3:
                    raise InputError(f"{file}:{line}: expected 3 columns (sentence1,sentence2,score), got {len(row)}")
                try:
                    score = float(row[2])
                except ValueError:
                    raise InputError(f"{file}:{line}: the score {row[2]!r} is not a number") from None
                if not math.isfinite(score):
                    raise InputError(f"{file}:{line}: the score {row[2]!r} is not a finite number")
                s1.append(row[0])
                s2.append(row[1])
                scores.append(score)
    except UnicodeDecodeError as exc:
        raise InputError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not scores:
        raise InputError(f"{file} holds no sentence pairs")
    return StsbSplit(s1, s2, np.asarray(scores, dtype=np.float64), str(file))


# Why the hub's STSb could not be loaded in this process: tried once (offline, huggingface_hub retries ~24 s).
_hub_failure: str | None = None


def available_stsb(split: str, lang: str = "en", path: str | os.PathLike[str] | None = None) -> StsbSplit | None:
    """``load_stsb``, or None where there is no local data and the hub cannot give it (``datasets`` not installed,
    offline): a warning says why, once per process, and what goes without it is the caller's to say. A folder
    named by ``path`` or ``$FASTEMBED_RT_STSB`` that holds no data is still an error (``StsbNotFoundError``)."""
    global _hub_failure
    if split not in _SPLITS:
        raise InputError(f"split {split!r} is not one of {_SPLITS}")
    if find_stsb_dir(path, f"stsb-{lang}-{split}.csv") is not None:
        return load_stsb(split, lang, path)
    if _hub_failure is not None:
        return None
    logger.info("no local STSb data (%s, ../shared/data/stsb): loading PhilipMay/stsb_multi_mt from the hub", STSB_ENV)
    try:
        return _from_hub(split, lang)
    except Exception as exc:  # an optional download: whatever stops it (no datasets, offline, the hub's answer)
        why = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (ImportError, OSError)):  # this machine's lot (datasets missing, offline): for every split
            _hub_failure = why
        logger.warning(
            "STSb could not be loaded from the hub (%s); set %s (or pass stsb_path=...) to a folder of "
            "stsb-<lang>-<split>.csv files%s",
            why,
            STSB_ENV,
            # offline without it, huggingface_hub retries for ~25 s first
            "" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ", or HF_HUB_OFFLINE=1 with no network",
        )
        return None


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1 of ``x`` ascending, ties averaged (as scipy.stats.rankdata's default)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(sorted_x[1:] != sorted_x[:-1]) + 1  # (not np.diff: inf - inf is NaN, not a tie)
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(x)]))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end - 1) / 2.0 + 1.0
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two equally long sequences (ties get average ranks); NaN where either holds a
    NaN (as scipy's: ranking NaN last read NaN embeddings as the most similar pairs, a plausible score)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.isnan(a64).any() or np.isnan(b64).any():
        return math.nan
    ra, rb = average_ranks(a64), average_ranks(b64)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def stsb_spearman(encode: Callable[[list[str]], np.ndarray], data: StsbSplit) -> float:
    """Spearman ×100 between cosine similarity of ``encode``'s embeddings and the gold scores.

    ``encode`` gets each distinct sentence once, in one call (the English test split: 2,552 of 2,758; the
    exporter scores every variant on it)."""
    unique = list(dict.fromkeys([*data.sentences1, *data.sentences2]))
    row = {sentence: i for i, sentence in enumerate(unique)}
    embeddings = np.asarray(encode(unique), dtype=np.float64)
    e1 = embeddings[[row[s] for s in data.sentences1]]
    e2 = embeddings[[row[s] for s in data.sentences2]]
    cos = (e1 * e2).sum(axis=1) / np.maximum(np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1), 1e-12)
    return 100.0 * spearman(cos, data.scores)
