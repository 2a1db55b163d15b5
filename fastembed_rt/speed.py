"""Which variant runs fastest on this CPU: speed records in the manifest, measured, and read at load.

The exporter times every shipped variant on the CPU it exports on, and ``fastembed-rt tune`` on any
other; each timing is a ``SpeedRecord`` of the manifest, keyed by the CPU's ISA features
(``fastembed_rt.machine``), because the fastest variant changes with them: all-MiniLM-L6-v2's int8
graph ran 0.42× fp32 on an AVX2-only EPYC and faster than fp32 with AVX-512 VNNI (issue 13).

At load, on the providers that run on the CPU (``cpu``, ``openvino`` on its CPU device):

================ =========================================================================
``variant=``     picks
================ =========================================================================
``"auto"``       the fastest variant at full (fp32) precision that a record for this CPU's ISA
                 timed; without such a record, the provider's static preference
``"fastest"``    the fastest variant within its gate (int8 and bf16 included) that a record
                 for this CPU's ISA timed; without one, what ``"auto"`` picks (logged)
================ =========================================================================

Either way a variant that ran slower than fp32 on this CPU class is never chosen over fp32, and
variants within ``LEVEL_MARGIN`` of the fastest count as level: of those, the one closest to PyTorch
runs (higher precision, then the higher measured mean cosine, a reranker's score Spearman), so timing
noise never trades fidelity for nothing (``int8`` and ``int8-avx2`` run the same kernel on VNNI CPUs).
The choice comes with its reason (``VariantChoice.reason``; ``fastembed-rt info`` prints it). GPU
providers keep their static preference: the records time CPUs only.

A record is a table lookup, not a timing at load: timing several variants costs seconds of load,
and the same-ISA lookup held on the CPUs measured here (see ``benchmarks/run.py``).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastembed_rt.artifact import (
    Manifest,
    SpeedRecord,
    Variant,
    VariantFormat,
    VariantPrecision,
    load_manifest,
    manifest_lock,
    update_manifest,
)
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.machine import CpuIdentity, this_cpu

__all__ = [
    "CPU_PROVIDER",
    "FASTEST",
    "LEVEL_MARGIN",
    "VariantChoice",
    "applicable_record",
    "choose_by_speed",
    "measure_speed",
    "record_speed",
    "speed_texts",
    "summarize",
]

logger = logging.getLogger("fastembed_rt")

FASTEST = "fastest"
# The engine each graph format is timed (and validated) on: the one every install has for it, on the CPU.
CPU_PROVIDER = {VariantFormat.ONNX: "cpu", VariantFormat.OPENVINO: "openvino"}
# A graph of a huge model is opened, timed and closed on its own, not beside the other variants.
_LOAD_ALL_BYTES = 2 << 30
# Rates within this fraction of the fastest are level: int8 and int8-avx2, one kernel on a VNNI CPU, timed 8 %
# apart in an export's two short rounds here (1,390 and 1,274 sentences/s), so a smaller lead says nothing.
LEVEL_MARGIN = 0.1
# Closer to PyTorch first: a precision's rank, before a variant's measured agreement (``_AGREEMENT``).
_PRECISION_RANK = {
    VariantPrecision.FP32: 3,
    VariantPrecision.FP16: 2,
    VariantPrecision.BF16: 2,
    VariantPrecision.INT8: 1,
    VariantPrecision.INT4: 0,
}
# What a variant's fidelity record says of its agreement with PyTorch, by task: a bi-encoder's or SPLADE's mean
# cosine, a cross-encoder's score Spearman (one artifact has one task, so one of them). The mean over the gate's
# texts, not their minimum: two int8 graphs this close differ in their worst text by noise (all-MiniLM-L6-v2:
# int8-avx2's min cosine over the gate's 283 texts came out above int8's, 0.9923 against 0.9919, and below it over
# 1,000 STSb test sentences, 0.9868 against 0.9927; its mean was lower on both).
_AGREEMENT = ("mean_cosine", "score_spearman")


@dataclass(frozen=True)
class VariantChoice:
    """The variant a model runs and why it was chosen."""

    variant: Variant
    reason: str


def applicable_record(records: Sequence[SpeedRecord], cpu: CpuIdentity) -> SpeedRecord | None:
    """The record that speaks for ``cpu``: same machine and ISA flags (none where the flags are unknown); the same
    CPU model first, then the newest (of one day, the one written last)."""
    same_class = [(i, r) for i, r in enumerate(records) if r.machine == cpu.machine and r.isa == cpu.isa and r.isa]
    if not same_class:
        return None
    return max(same_class, key=lambda item: (item[1].cpu == cpu.model, item[1].date, item[0]))[1]


def choose_by_speed(
    candidates: Sequence[Variant], manifest: Manifest, mode: str, cpu: CpuIdentity, engine: str, *, warn: bool = True
) -> VariantChoice | str:
    """``mode`` (``"auto"`` or ``"fastest"``) among ``candidates`` (the variants CPU provider ``engine`` runs).

    Only variants timed on ``engine`` itself compete (a record times an ONNX graph on ONNX Runtime, so
    it says nothing about that graph on OpenVINO). Returns the choice, or why no record decides (the
    caller then takes its static preference); ``warn``: log a warning when ``"fastest"`` cannot be told (a load
    asking for it; ``info``, which prints the reason, does not).
    """
    from fastembed_rt.providers.openvino import saturation_warning

    eligible = [
        v
        for v in candidates
        if CPU_PROVIDER[v.format] == engine and (mode == FASTEST or v.precision == VariantPrecision.FP32)
    ]
    # below its gate on this CPU: never chosen for speed (and the reason says so, or a faster variant vanishes unsaid)
    saturating = [v.name for v in eligible if saturation_warning(v, cpu) is not None]
    pool = [v for v in eligible if v.name not in saturating]
    record = applicable_record(manifest.speed, cpu)
    timed = [] if record is None else [(rate, v) for v in pool if (rate := record.best_rate(v.name)) is not None]
    untimed = [] if record is None else [v.name for v in pool if record.best_rate(v.name) is None]
    unusable = None
    if timed and not any(v.precision == VariantPrecision.FP32 for _, v in timed):
        # nothing to hold the others to: a variant slower than fp32 here could win (a tune of int8 alone)
        unusable = f"the record for this CPU class times no full-precision variant of {engine}"
    elif timed and mode != FASTEST and untimed:
        # the static preference may be among the untimed: a part of the candidates says nothing of it
        unusable = f"the record for this CPU class does not time {', '.join(untimed)}"
    if unusable is not None:
        if warn and mode == FASTEST:
            logger.warning(
                "variant='fastest': %s of %s; using variant='auto'. Run `fastembed-rt tune %s` to time them here.",
                unusable,
                manifest.root,
                shlex.quote(str(manifest.root)),
            )
        return f"{unusable} ({cpu.isa_class})"
    if record is not None and timed:
        timed.sort(key=lambda item: -item[0])
        ranking = ", ".join(f"{v.name} {r:.0f}" for r, v in timed)
        kind = "variant within its gate" if mode == FASTEST else "full-precision variant"
        level = [item for item in timed if item[0] >= timed[0][0] * (1 - LEVEL_MARGIN)]
        chosen = max(level, key=lambda item: (_faithfulness(item[1]), item[0]))[1]
        reason = (
            f"fastest {kind} timed on this CPU class ({record.cpu}; {' '.join(record.isa)}; {record.threads} "
            f"threads, {record.source} {record.date}): {ranking} sentences/s"
        )
        if chosen is not timed[0][1]:
            reason += (
                f"; {chosen.name} runs: within {LEVEL_MARGIN:.0%} of {timed[0][1].name} and closer to PyTorch "
                f"({_closer(chosen, timed[0][1])})"
            )
        if saturating:
            reason += f"; left out: {', '.join(saturating)} (its int8 saturates on this CPU's instruction set)"
        return VariantChoice(chosen, reason)
    if warn and mode == FASTEST and not cpu.isa:
        logger.warning(
            "variant='fastest': this CPU's instruction set cannot be read (no /proc/cpuinfo), so no speed record "
            "applies; using variant='auto'"
        )
    elif warn and mode == FASTEST and record is None:
        logger.warning(
            "variant='fastest': no speed record of %s for this CPU class (%s); using variant='auto'. "
            "Run `fastembed-rt tune %s` to time its variants here.",
            manifest.root,
            cpu.isa_class,
            shlex.quote(str(manifest.root)),  # a command to paste: a path with spaces quoted
        )
    elif warn and mode == FASTEST and pool:  # a record from before these variants, or of another engine's: tune again
        logger.warning(
            "variant='fastest': the speed record of %s for this CPU class times none of %s; using variant='auto'. "
            "Run `fastembed-rt tune %s` to time them here.",
            manifest.root,
            ", ".join(v.name for v in pool),
            shlex.quote(str(manifest.root)),
        )
    why = "no speed record for this CPU class" if record is None else "no candidate timed on this CPU class"
    return f"{why} ({cpu.isa_class})"


# The plain full-precision graph of each CPU engine: what "slower than fp32" is measured against.
_PLAIN_FP32 = ("fp32", "openvino")


def plain_fp32(manifest: Manifest, engine: str) -> Variant | None:
    """``engine``'s plain fp32 variant in ``manifest`` (``fp32`` on ONNX Runtime, the ``openvino`` IR on OpenVINO;
    else its first full-precision one), or None."""
    full = [v for v in manifest.variants if CPU_PROVIDER[v.format] == engine and v.precision == VariantPrecision.FP32]
    full.sort(key=lambda v: v.name not in _PLAIN_FP32)
    return full[0] if full else None


def recorded_slower(variant: Variant, manifest: Manifest, cpu: CpuIdentity) -> str | None:
    """Why ``variant`` must not be chosen by a static preference here: the record for ``cpu``'s class times it below
    its engine's plain fp32 graph (a record of a few variants does not decide ``auto``, but still says that)."""
    record = applicable_record(manifest.speed, cpu)
    reference = plain_fp32(manifest, CPU_PROVIDER[variant.format])
    if record is None or reference is None or reference is variant:
        return None
    rate, base = record.best_rate(variant.name), record.best_rate(reference.name)
    if rate is None or base is None or rate >= base:
        return None
    return f"{variant.name} left out: timed at {rate / base:.2f}× {reference.name} on this CPU class"


def _faithfulness(variant: Variant) -> tuple[int, float]:
    """Higher is closer to PyTorch: the precision's rank, then (below full precision) the measured agreement
    (``_AGREEMENT``; 0 unmeasured). Full-precision variants tie: their cosines differ in the sixth decimal."""
    rank = _PRECISION_RANK.get(variant.precision, 0)
    if variant.precision == VariantPrecision.FP32:
        return rank, 1.0
    return rank, next((float(variant.fidelity[key]) for key in _AGREEMENT if key in variant.fidelity), 0.0)


def _closer(chosen: Variant, fastest: Variant) -> str:
    """How ``chosen`` is closer to PyTorch than ``fastest`` (``_faithfulness``), for the choice's reason."""
    if chosen.precision != fastest.precision:
        return f"{chosen.precision.value} against {fastest.precision.value}"
    # same precision and ranked above: ``chosen`` has a measured agreement
    key = next(key for key in _AGREEMENT if key in chosen.fidelity)
    theirs = fastest.fidelity.get(key)
    return f"{key.replace('_', ' ')} {chosen.fidelity[key]:.4f} against {'none' if theirs is None else f'{theirs:.4f}'}"


def _workload(model: Any, batch_size: int) -> Any:
    """``texts -> None``: the model's own call on ``texts`` (pairs of them for a cross-encoder; a routed model's
    graph route)."""
    from fastembed_rt.models import CrossEncoder

    if isinstance(model, CrossEncoder):
        return lambda texts: model.predict(
            list(zip(texts, reversed(texts))), batch_size=batch_size, show_progress_bar=False
        )
    graph = getattr(model, "graph_route", None)  # an inference-free SPLADE model: its graph's route is what varies
    routed = {} if graph is None else {"task": graph}
    return lambda texts: model.encode(texts, batch_size=batch_size, show_progress_bar=False, **routed)


def measure_speed(
    manifest: Manifest,
    texts: Sequence[str],
    *,
    variants: Sequence[str] | None = None,
    batch_size: int = 32,
    rounds: int = 3,
    threads: int | None = None,
    source: str = "tune",
    provider_cache_dir: str | os.PathLike[str] | None = None,
    round_seconds: float | None = None,
    cache: bool = True,
    workload: str = "default",
) -> SpeedRecord:
    """Time each variant (default: all whose engine is installed) on ``texts`` on this CPU; named ``variants``
    are timed with their engine's full-precision reference (``fp32``) beside them, so a record always holds the
    rate that every other is held to. ``workload``: what ``texts`` are (``default``: ``speed_texts``'), recorded.

    Every variant runs on its format's CPU engine (``CPU_PROVIDER``) with ``threads`` intra-op threads
    (default: the CPUs this process may use); after warm-up calls, ``rounds`` timed passes over
    ``texts`` interleaved across variants. ``round_seconds``: keep only as many texts (at least one
    batch) as the first variant runs in about that time, so that timing a large model stays bounded.
    ``cache``: False runs the artifact's graphs without the engines' caches (``ProviderOptions.cache``), as the
    exporter does. Nothing is written to the manifest (``record_speed`` does).

    Raises:
        ArtifactError: no texts, or a named variant is missing or its engine is not installed.
        InputError: ``rounds``, ``batch_size`` or ``threads`` below 1.
    """
    from fastembed_rt.models import load_model
    from fastembed_rt.pipeline import MIN_BATCHES_PER_STREAM
    from fastembed_rt.providers import ProviderOptions, provider_spec
    from fastembed_rt.providers.threads import available_cpus

    if not texts:
        raise ArtifactError("measuring variant speed needs at least one text")
    # Zero rounds would time nothing and record empty rates; a thread count below 1 would be recorded as measured.
    for name, value in (("rounds", rounds), ("batch_size", batch_size), ("threads", threads)):
        if value is not None and value < 1:
            raise InputError(f"measuring variant speed: {name}={value!r}; it must be at least 1")
    threads = threads or available_cpus()
    # each once (`--variants fp32,fp32` timed fp32 twice a round, recorded both, and left a model open)
    chosen = [manifest.variant(name) for name in dict.fromkeys(variants)] if variants else list(manifest.variants)
    for variant in list(chosen):  # a few named: each engine's plain fp32 graph is timed beside them (``optimized``
        # or ``packed`` alone left the record without the rate every other is held to)
        reference = plain_fp32(manifest, CPU_PROVIDER[variant.format])
        if reference is not None and reference not in chosen:
            chosen.append(reference)
    chosen.sort(key=lambda v: v.name != "fp32")  # fp32 first: ``round_seconds`` is measured on it
    runnable = []
    for variant in chosen:
        reason = provider_spec(CPU_PROVIDER[variant.format]).unavailable()
        if reason is None:
            runnable.append(variant)
        elif variants:
            raise ArtifactError(f"variant {variant.name!r} cannot be timed here: {reason}")
        else:
            logger.warning("variant %s is not timed: %s", variant.name, reason)
    options: dict[str, Any] = {
        "intra_op_threads": threads,
        "provider_cache_dir": provider_cache_dir,
        "provider_options": ProviderOptions(cache=cache),
    }

    def load(variant: Variant) -> Any:
        model = load_model(manifest.root, provider=CPU_PROVIDER[variant.format], variant=variant.name, **options)
        run = _workload(model, batch_size)
        run(list(texts[:batch_size]))  # warm-up: first-call allocations, OpenVINO's compile
        # and, on an engine with streams, a call of one-text batches that takes the streamed path (``Pipeline.run``):
        # it opens their session, which after the warm-up above put each ONNX variant's first round up to 31 %
        # below its second (exports on AVX2 kernels)
        streams = model._pipeline.streams
        if streams > 1:
            _workload(model, 1)(list(texts[: MIN_BATCHES_PER_STREAM * streams]))
        return model, run

    rates: dict[str, list[float]] = {v.name: [] for v in runnable}
    keep_loaded = sum(v.size + (v.weights_size or 0) for v in runnable) <= _LOAD_ALL_BYTES
    loaded: dict[str, Any] = {}
    texts = list(texts)
    try:  # from the first load on: a later variant that fails to load leaves none of the loaded ones open
        for variant in runnable if keep_loaded else ():
            loaded[variant.name] = load(variant)
        if round_seconds is not None and runnable and len(texts) > batch_size:
            model, run = loaded[runnable[0].name] if keep_loaded else load(runnable[0])
            started = time.perf_counter()
            run(texts[:batch_size])
            per_batch = time.perf_counter() - started
            texts = texts[: max(batch_size, int(round_seconds / max(per_batch, 1e-6)) * batch_size)]
            if not keep_loaded:
                model.close()
        for _ in range(rounds):
            for variant in runnable:
                model, run = loaded[variant.name] if keep_loaded else load(variant)
                started = time.perf_counter()
                run(list(texts))
                rates[variant.name].append(round(len(texts) / (time.perf_counter() - started), 1))
                if not keep_loaded:
                    model.close()
    finally:
        for model, _ in loaded.values():
            model.close()
    cpu = this_cpu()
    return SpeedRecord(
        machine=cpu.machine,
        cpu=cpu.model,
        isa=cpu.isa,
        threads=threads,
        texts=len(texts),
        batch_size=batch_size,
        sentences_per_s=rates,
        source=source,
        date=time.strftime("%Y-%m-%d"),
        workload=workload,
    )


def record_speed(manifest: Manifest, record: SpeedRecord) -> Manifest:
    """Write ``record`` into the artifact's manifest, in place of an earlier one for the same CPU and threads;
    variants the earlier one timed on the same texts (workload and count) and batch size and ``record`` does not (``tune
    --variants`` of a few) keep their rates; those of another workload are dropped (logged), never mixed in.

    ``manifest`` is the one the variants were timed from; the record goes into the manifest as it is on disk now
    (records written meanwhile kept).

    Raises:
        InputError: ``record`` times no variant, or lists one without a rate (nothing is written: it would
            replace a real record with an empty one).
        ArtifactError: a timed variant's files changed since ``manifest`` was read (``export --overwrite``
            meanwhile): its rates would describe graphs that are gone.
    """
    if not record.isa:
        raise ArtifactError(
            f"this CPU's instruction set cannot be read (no /proc/cpuinfo), so a speed record made here would match "
            f"no CPU; nothing was written to {manifest.root}: variant='auto' takes the provider's static preference"
        )
    bad = [
        f"{name} {rate!r}"
        for name, rates in record.sentences_per_s.items()
        for rate in rates
        if not 0 <= rate < math.inf
    ]
    if bad:  # a reader refuses the manifest then: every load of the artifact failed
        raise InputError(f"speed record rates must be finite numbers >= 0; got {', '.join(bad)}; nothing was written")
    untimed = [name for name, rates in record.sentences_per_s.items() if not rates]
    if not record.sentences_per_s or untimed:
        raise InputError(
            f"speed record for {record.cpu} has no rates for {', '.join(untimed) or 'any variant'}; nothing was "
            f"written to {manifest.root}: time every variant for at least one round (measure_speed, rounds >= 1)"
        )

    def same_cpu(r: SpeedRecord) -> bool:
        return _same_cpu(r, record.machine, record.cpu, record.isa, record.threads)

    try:
        with manifest_lock(manifest.root):  # another writer's record is read in, not overwritten
            return _merge_record(manifest, record, same_cpu)
    except OSError as exc:
        raise ArtifactError(
            f"cannot write the speed record into {manifest.root} ({exc}); time a writable copy of the artifact"
        ) from exc


def _timed_on(record: SpeedRecord) -> tuple[str, int, int]:
    """What a record's rates were timed on: rates of equal keys compare, others never mix."""
    return (record.workload, record.texts, record.batch_size)


def _same_cpu(record: SpeedRecord, machine: str, cpu: str, isa: Any, threads: int) -> bool:
    return (record.machine, record.cpu, record.isa, record.threads) == (machine, cpu, isa, threads)


def incomparable_rates(
    manifest: Manifest, *, workload: str, texts: int, batch_size: int = 32, threads: int | None = None
) -> list[str]:
    """The variants this CPU's record (at ``threads``) timed on other texts or another batch size than a record of
    ``workload`` over ``texts`` texts: ``record_speed`` would drop their rates (the export's, on its held-out texts,
    after a ``tune --variants`` of a few), so ``tune`` times them again beside the named ones; and those of the
    record that speaks for this CPU class now where it is of another CPU model or thread count (the new record
    would hide it)."""
    from fastembed_rt.providers.threads import available_cpus

    cpu = this_cpu()
    threads = threads or available_cpus()
    names = {v.name for v in manifest.variants}
    stale = {
        name
        for r in manifest.speed
        if _same_cpu(r, cpu.machine, cpu.model, cpu.isa, threads) and _timed_on(r) != (workload, texts, batch_size)
        for name in r.sentences_per_s
    }
    # and the record of this CPU class that speaks now, of another CPU model or thread count: the new record (this
    # model, newest) takes its place, so its rates are lost unless timed again
    current = applicable_record(manifest.speed, cpu)
    if current is not None and not _same_cpu(current, cpu.machine, cpu.model, cpu.isa, threads):
        stale |= set(current.sentences_per_s)
    return sorted(stale & names)


def _files_of(manifest: Manifest, name: str) -> tuple[Any, ...]:
    """What identifies a variant's graph: its files, sizes and hashes as the manifest lists them."""
    variant = manifest.variant(name)
    return (variant.file, variant.size, variant.sha256, variant.weights_file, variant.weights_sha256)


def summarize(record: SpeedRecord) -> list[tuple[str, float, float]]:
    """``(variant, best sentences/s, × fp32)`` per timed variant, fastest first (× fp32 is 0 without fp32)."""
    fp32 = record.best_rate("fp32")
    rows = [
        (name, best, best / fp32 if fp32 else 0.0)
        for name in record.sentences_per_s
        if (best := record.best_rate(name))
    ]
    return sorted(rows, key=lambda row: -row[1])


def speed_texts(manifest: Manifest, count: int = 512) -> list[str]:
    """Texts to time variants on: STSb dev sentences when the data is found, else synthetic ones from the vocabulary."""
    from fastembed_rt.bench import synthetic_texts
    from fastembed_rt.stsb import find_stsb_dir, load_stsb
    from fastembed_rt.tokenizer import Tokenizer

    if find_stsb_dir(None, "stsb-en-dev.csv") is not None:
        dev = load_stsb("dev", "en")
        return list(dict.fromkeys(dev.sentences1 + dev.sentences2))[:count]
    vocab = Tokenizer(manifest.root, manifest.tokenizer).get_vocab()
    return synthetic_texts(vocab, count, 12)


def _merge_record(manifest: Manifest, record: SpeedRecord, same_cpu: Callable[[SpeedRecord], bool]) -> Manifest:
    """``record`` written into the artifact's manifest as read now (``record_speed``, holding its lock)."""
    current = load_manifest(manifest.root)  # records written since ``manifest`` was read are kept
    names, timed_from = {v.name for v in current.variants}, {v.name for v in manifest.variants}
    for name in record.sentences_per_s.keys() & timed_from:
        if name not in names or _files_of(current, name) != _files_of(manifest, name):
            raise ArtifactError(
                f"variant {name!r} of {manifest.root} changed while it was timed (exported again?); nothing was "
                "written: time it again"
            )
    earlier = [r for r in current.speed if same_cpu(r)]
    # the same texts: the same workload, as many of them (`tune --texts 16` after `tune --texts 64`), batch size
    comparable = [r for r in earlier if _timed_on(r) == _timed_on(record)]
    rates = {name: rates for r in comparable for name, rates in r.sentences_per_s.items()}
    if dropped := sorted(
        {n for r in earlier if r not in comparable for n in r.sentences_per_s} - set(record.sentences_per_s)
    ):
        logger.warning(
            "%s: the rates of %s on this CPU were timed on other texts or another batch size than this record's "
            "(%s, %d texts, batch %d) and are dropped, not mixed in; time them with it to compare them",
            manifest.root,
            ", ".join(dropped),
            record.workload,
            record.texts,
            record.batch_size,
        )
    merged = replace(record, sentences_per_s={**rates, **record.sentences_per_s})
    kept = tuple(r for r in current.speed if not same_cpu(r))
    return update_manifest(manifest.root, speed=(*kept, merged))
