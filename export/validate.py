"""Parity of an exported artifact against the PyTorch sentence-transformers model.

The check runs the artifact through the runtime it feeds (tokenizer, batching, provider), on an
odd-shape grid: batches of 1, 3 and 5 texts, short, mid-length, empty and over-long texts, with
and without each of the model's prompts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import ExportError
from fastembed_rt.export.fidelity import Fidelity, worst
from fastembed_rt.machine import return_freed_heap
from fastembed_rt.providers.base import ProviderOptions
from fastembed_rt.speed import CPU_PROVIDER

__all__ = [
    "REFERENCE_PROVIDER",
    "UNCACHED",
    "ReferenceEncoder",
    "check_batch_independent",
    "grid_batches",
    "held_out_pairs",
    "parity_texts",
    "prompt_cases",
    "release_memory",
    "row_cosines",
    "validate_embeddings",
]

# The engine each graph format is validated on: the one every install has for it, on the CPU (where
# its speed is timed too).
REFERENCE_PROVIDER = CPU_PROVIDER

# The exporter's own loads run the artifact's graphs as written, with no cached optimized copy
# (``providers.onnxruntime_cache``): the graphs may still change or be discarded, and each copy costs a write.
UNCACHED = ProviderOptions(cache=False)

_MID = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch "
    "and wonders whether it will rain before the harvest is done."
)


def parity_texts(max_seq_length: int) -> list[str]:
    """Texts for the grid: 9 texts of very different token lengths, two longer than the limit."""
    long_words = " ".join(f"word{i} and more" for i in range(max_seq_length))
    return [
        "Hi",
        "A man is playing a guitar.",
        _MID,
        "",
        long_words,
        "Das ist ein Satz auf Deutsch, mit Umlauten: Größe, Übung.",
        _MID + " " + _MID,
        "x",
        long_words + " " + long_words,
    ]


def prompt_cases(prompts: dict[str, str] | None) -> list[str | None]:
    """No prompt, then each distinct non-empty prompt of the model: the grid runs every one."""
    return [None, *sorted({p for p in (prompts or {}).values() if p})]


def held_out_pairs(count: int = 256) -> list[tuple[str, str]]:
    """The first ``count`` STSb dev sentence pairs when the data is found, here or on the hub (never used for
    calibration)."""
    from fastembed_rt.stsb import available_stsb

    dev = available_stsb("dev", "en")
    return [] if dev is None else list(zip(dev.sentences1, dev.sentences2))[:count]


class ReferenceEncoder:
    """The PyTorch model's embeddings, computed once per distinct call and kept for the whole export.

    Every variant is validated on the same batches (grid, held-out texts, STSb test), so without this
    the export re-ran PyTorch on them once per candidate graph: most of an export's time on 2 cores.
    A call is keyed by its texts, prompt and batch size, so each reference is exactly what PyTorch gives
    for that batch, as if recomputed.

    Once every batch the variants will be checked on is cached, ``release()`` drops the PyTorch model:
    it held as much memory as the fp32 graph for the rest of the export (2.4 GB on Qwen3-Embedding-0.6B).
    """

    def __init__(self, st_model: Any) -> None:
        self.st_model: Any = st_model
        self._cache: dict[tuple[tuple[str, ...], str | None, int], np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, batch_size: int = 32) -> np.ndarray:
        """float32 ``(len(texts), dim)`` embeddings from the PyTorch model, as ``st_model.encode`` returns them."""
        key = (tuple(texts), prompt, batch_size)
        if key not in self._cache:
            if self.st_model is None:
                raise ExportError(
                    f"the PyTorch reference was released before a batch of {len(texts)} texts (prompt {prompt!r}, "
                    f"batch size {batch_size}) was computed: warm it with every batch the variants are checked on"
                )
            encoded = self.st_model.encode(
                list(texts), prompt=prompt, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            self._cache[key] = check_finite(np.asarray(encoded), texts)
        return self._cache[key]

    def release(self) -> None:
        """Drop the PyTorch model (and what the allocator keeps of it); cached batches still answer."""
        self.st_model = None
        release_memory()


def check_batch_independent(reference: ReferenceEncoder, padding_side: str, min_cosine: float) -> None:
    """Called when the fp32 graph missed its gate: an ExportError when PyTorch's own embedding of a short text
    changes with a longer batch neighbour, for no graph can match a reference that depends on its batch. Left
    padding does that to models whose learned absolute positions count the padding slots (BERT, ELECTRA, ...):
    the failures listed cosines as though the graph were wrong."""
    short, longer = "Hi", "A man is playing a large guitar on a stage in front of many people tonight."
    alone = reference.encode([short], batch_size=1)
    beside = reference.encode([short, longer], batch_size=2)[:1]
    cosine = float(row_cosines(alone, beside)[0])
    if cosine >= min_cosine:
        return
    cause = (
        'the tokenizer pads on the left and this model\'s positions count the padding; set "padding_side": '
        '"right" in tokenizer_config.json and export again'
        if padding_side == "left"
        else "the model's output depends on the padding of its batch"
    )
    raise ExportError(
        f"PyTorch's own embedding of a text changes with its batch neighbours (cosine {cosine:.6f} between {short!r} "
        f"alone and beside a longer text), so no graph can match it: {cause}"
    )


def check_finite(reference: np.ndarray, inputs: Sequence[Any]) -> np.ndarray:
    """``reference`` (PyTorch's outputs, one row per input), or an ExportError where it holds NaN or inf: the model
    itself computes them (non-finite weights, or an overflow in its dtype), and the gate would blame the graph."""
    if not len(inputs):
        return reference
    bad = np.flatnonzero(~np.isfinite(np.asarray(reference).reshape(len(inputs), -1)).all(axis=1))
    if len(bad):
        first = str(inputs[int(bad[0])])
        shown = first if len(first) < 40 else first[:37] + "..."
        raise ExportError(
            f"PyTorch itself gives NaN or inf for {len(bad)} of {len(inputs)} inputs (the first: {shown!r}): the "
            "model's weights hold non-finite values or overflow in its dtype; it cannot be exported as it is"
        )
    return reference


def release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the OS (glibc), so what a big step freed is not
    counted against the steps after it. On other C libraries only the collection runs."""
    import gc

    gc.collect()
    return_freed_heap()


def grid_batches(
    max_seq_length: int, prompts: dict[str, str] | None, extra_texts: Sequence[str] = ()
) -> Iterator[tuple[str | None, int, list[str]]]:
    """(prompt, batch size, batch) of every batch a variant is checked on: the odd-shape grid (batches of 1, 3
    and 5, every prompt), then ``extra_texts`` in batches of 32."""
    texts = parity_texts(max_seq_length)
    cases = [(prompt, size, texts) for prompt in prompt_cases(prompts) for size in (1, 3, 5)]
    if extra_texts:
        cases.append((None, 32, list(extra_texts)))
    for prompt, size, pool in cases:
        for start in range(0, len(pool), size):
            yield prompt, size, pool[start : start + size]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair in float64; two all-zero rows agree (1), one all-zero row does not (0).

    Raises:
        ExportError: the two sides' rows differ in shape (the graph computes something else than PyTorch).
    """
    if a.shape != b.shape:
        raise ExportError(
            f"the exported graph gives rows of shape {a.shape} where PyTorch gives {b.shape}: the model has a setting "
            "the export does not reproduce; please report it with the model's configuration"
        )
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # rows holding NaN or inf have a NaN cosine: a gate miss
        num = (a64 * b64).sum(axis=1)
        den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
        both_zero = den == 0
        return np.where(
            both_zero, np.where(np.abs(a64 - b64).max(axis=1) == 0, 1.0, 0.0), num / np.where(both_zero, 1, den)
        )


def validate_embeddings(
    artifact: Path,
    reference: ReferenceEncoder,
    prompts: dict[str, str],
    min_cosine: float | None,
    *,
    variant: str = "auto",
    provider: str = "auto",
    extra_texts: Sequence[str] = (),
    provider_cache_dir: Path | None = None,
) -> Fidelity:
    """Compare one variant of the artifact with the PyTorch model behind ``reference``.

    Runs the odd-shape grid (batches of 1, 3 and 5; every prompt) plus ``extra_texts`` in batches
    of 32. With ``min_cosine`` set, every text below it is listed in ``failures``. Also measures
    batch invariance: each grid/extra text encoded alone against inside a batch of 32.
    """
    from fastembed_rt.models import SentenceTransformer

    runtime = SentenceTransformer(
        artifact,
        verify="full",
        variant=variant,
        provider=provider,
        provider_cache_dir=provider_cache_dir,
        provider_options=UNCACHED,
    )
    texts = parity_texts(runtime.max_seq_length)
    fidelity = Fidelity()
    all_cos: list[np.ndarray] = []
    for prompt, size, batch in grid_batches(runtime.max_seq_length, prompts, extra_texts):
        ours = np.asarray(runtime.encode(batch, prompt=prompt, batch_size=size, show_progress_bar=False))
        ref = reference.encode(batch, prompt=prompt, batch_size=size)
        cos = row_cosines(ours, ref)
        all_cos.append(cos)
        fidelity.max_abs_diff = max(fidelity.max_abs_diff, worst(np.abs(ours - ref)))
        if min_cosine is None:
            continue
        for j in np.flatnonzero(~(cos >= min_cosine)):
            text = batch[j]
            shown = text if len(text) < 40 else text[:37] + "..."
            fidelity.failures.append(
                f"batch of {size}, prompt {prompt!r}, text {shown!r}: cosine {cos[j]:.6f} < {min_cosine}"
            )
    cosines = np.concatenate(all_cos)
    fidelity.min_cosine = float(np.nanmin(cosines)) if not np.isnan(cosines).any() else float("nan")
    fidelity.mean_cosine = float(np.mean(cosines))
    fidelity.texts = int(cosines.size)
    probe = [*texts, *list(extra_texts)[:96]]
    alone = np.stack([np.asarray(runtime.encode(t, show_progress_bar=False)) for t in probe])
    batched = np.asarray(runtime.encode(probe, batch_size=32, show_progress_bar=False))
    fidelity.batch_invariance_min_cosine = float(row_cosines(alone, batched).min())
    runtime.close()
    return fidelity
