"""What a variant's agreement with PyTorch looks like, and the typed gates that judge it (DESIGN §6).

Three kinds of output, three measurements, each with the gate that reads it:

========================= ===================== ===================================================
measurement               gate                  used for
========================= ===================== ===================================================
``Fidelity``              ``CosineGate``        embeddings (every bi-encoder variant), SPLADE int8
``HeadFidelity``          ``ToleranceGate``     fp32 heads: each score, logit or weight vs PyTorch
``ScoreFidelity``         ``ScoreGate``         cross-encoder int8: score rank vs PyTorch
========================= ===================== ===================================================

A gate's ``check`` lists every way a measurement misses it, one line each (empty: it passes). A
measured miss is the only reason a variant is not shipped; an error while building or measuring
it is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = [
    "CosineGate",
    "Fidelity",
    "Gate",
    "HeadFidelity",
    "Measured",
    "ScoreFidelity",
    "ScoreGate",
    "ToleranceGate",
]


class Measured(Protocol):
    """A measurement the manifest records."""

    def to_dict(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=Measured, contravariant=True)


class Gate(Protocol[F]):
    """Judges one kind of measurement."""

    def check(self, fidelity: F) -> list[str]: ...


def worst(differences: np.ndarray) -> float:
    """The largest of ``differences`` (non-empty); inf where any is NaN or inf (``max`` would keep an earlier value
    over a NaN, and a record said 0.0 for outputs that were all NaN)."""
    return float(differences.max()) if np.isfinite(differences).all() else math.inf


@dataclass
class Fidelity:
    """Agreement of one variant's vectors with PyTorch on the same texts, by cosine.

    ``extra``: numbers a task adds to the record (e.g. SPLADE's active dimensions).
    """

    min_cosine: float = 1.0
    mean_cosine: float = 1.0
    max_abs_diff: float = 0.0
    texts: int = 0
    failures: list[str] = field(default_factory=list)
    stsb_spearman: float | None = None
    stsb_spearman_torch: float | None = None
    batch_invariance_min_cosine: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min_cosine": round(self.min_cosine, 7),
            "mean_cosine": round(self.mean_cosine, 7),
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "texts": self.texts,
        }
        if self.batch_invariance_min_cosine is not None:
            out["batch_invariance_min_cosine"] = round(self.batch_invariance_min_cosine, 7)
        if self.stsb_spearman is not None:
            out["stsb_spearman"] = round(self.stsb_spearman, 5)
            out["stsb_spearman_torch"] = round(self.stsb_spearman_torch or 0.0, 5)
        return {**out, **self.extra}


@dataclass(frozen=True)
class CosineGate:
    """Cosine fidelity a variant must reach against PyTorch (DESIGN §6)."""

    min_cosine: float | None = None
    mean_cosine: float | None = None
    max_stsb_drop: float | None = None  # Spearman ×100 points below PyTorch's
    min_batch_invariance: float = 0.9999  # a text's vector alone vs inside a batch

    def check(self, fidelity: Fidelity) -> list[str]:
        """Every way ``fidelity`` misses this gate, one line each."""
        misses = []
        if self.min_cosine is not None and not fidelity.min_cosine >= self.min_cosine:
            misses.append(f"min cosine {fidelity.min_cosine:.6f} < {self.min_cosine}")
        if self.mean_cosine is not None and not fidelity.mean_cosine >= self.mean_cosine:
            misses.append(f"mean cosine {fidelity.mean_cosine:.6f} < {self.mean_cosine}")
        if (
            self.max_stsb_drop is not None
            and fidelity.stsb_spearman is not None
            and fidelity.stsb_spearman_torch is not None
            and not fidelity.stsb_spearman_torch - fidelity.stsb_spearman <= self.max_stsb_drop  # NaN misses too
        ):
            misses.append(
                f"STSb Spearman {fidelity.stsb_spearman:.2f} is more than {self.max_stsb_drop} below "
                f"PyTorch's {fidelity.stsb_spearman_torch:.2f}"
            )
        invariance = fidelity.batch_invariance_min_cosine
        if not math.isfinite(fidelity.min_cosine):  # NaN/inf outputs: no cosine says anything about batches then
            misses.append("its outputs hold NaN or inf")
        elif invariance is not None and not invariance >= self.min_batch_invariance:
            misses.append(
                f"outputs depend on batch neighbours: min cosine alone vs batched {invariance:.6f} "
                f"< {self.min_batch_invariance}"
            )
        return misses


@dataclass
class HeadFidelity:
    """Agreement of a head graph with PyTorch: the largest differences seen and every failing check."""

    checked: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def observe(self, ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Record the differences of two arrays; returns the per-element relative difference."""
        diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
        rel = diff / np.maximum(np.abs(ref.astype(np.float64)), 1e-12)
        if diff.size:
            self.max_abs_diff = max(self.max_abs_diff, worst(diff))
            self.max_rel_diff = max(self.max_rel_diff, worst(rel))
        return rel

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "max_rel_diff": float(f"{self.max_rel_diff:.3g}"),
            **self.extra,
        }


@dataclass(frozen=True)
class ToleranceGate:
    """Every element within ``atol + rtol * |reference|`` of its reference (the fp32 gate of heads)."""

    atol: float
    rtol: float

    def exceeded(self, ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Boolean mask of the elements of ``ours`` outside the tolerance (compared in float64)."""
        ref = reference.astype(np.float64)
        # not "within": a NaN output (or an inf against a finite reference) is outside every tolerance
        return np.asarray(~(np.abs(ours.astype(np.float64) - ref) <= self.atol + self.rtol * np.abs(ref)))

    def check(self, fidelity: HeadFidelity) -> list[str]:
        """The failing checks the validation listed (it applies ``exceeded`` to every output it compares)."""
        return list(fidelity.failures)

    def __str__(self) -> str:
        return f"|diff| <= {self.atol} + {self.rtol}·|torch|"


@dataclass(frozen=True)
class ScoreFidelity:
    """Agreement of a reranker's scores with PyTorch over a set of pairs; ``alone``/``batched``: the
    first pairs' scores each in a batch of one and inside the big batch (for batch invariance)."""

    pairs: int
    score_spearman: float  # the smallest over the labels
    max_abs_diff: float
    mean_abs_diff: float
    alone: np.ndarray
    batched: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        drift = np.abs(self.alone - self.batched)
        return {
            "pairs": self.pairs,
            "score_spearman": round(self.score_spearman, 6),
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "mean_abs_diff": float(f"{self.mean_abs_diff:.3g}"),
            "batch_invariance_max_abs_diff": float(f"{drift.max():.3g}"),
        }


@dataclass(frozen=True)
class ScoreGate:
    """Reranking keeps its order: score Spearman vs PyTorch per label, and scores that ignore batch neighbours."""

    min_score_spearman: float
    batch_tolerance: ToleranceGate

    def check(self, fidelity: ScoreFidelity) -> list[str]:
        """Every way ``fidelity`` misses this gate, one line each."""
        misses = []
        if not fidelity.score_spearman >= self.min_score_spearman:
            misses.append(f"score Spearman vs PyTorch {fidelity.score_spearman:.6f} < {self.min_score_spearman}")
        if self.batch_tolerance.exceeded(fidelity.alone, fidelity.batched).any():
            drift = np.abs(fidelity.alone - fidelity.batched).max()
            misses.append(f"scores depend on batch neighbours: alone vs batched differ by up to {drift:.3g}")
        return misses
