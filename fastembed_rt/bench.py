"""``fastembed-rt bench``: throughput and latency of an artifact on this machine, and the row format
the project's comparison runner (``benchmarks/run.py``) shares with it.

A bench run measures, for every provider × variant that can run the artifact here and every batch
size asked for, the throughput of encoding a set of texts (median of ``repeats`` passes after a
warm-up pass) and, per provider × variant, the latency of single-text calls. Each measurement is one
``BenchRow``; ``format_table`` prints rows as a markdown table, ``write_jsonl`` writes them one JSON
object a line.

Texts are the user's (one a line), or made up from the artifact's own vocabulary: whole-word tokens
drawn with a fixed seed, ``words`` per text ± 50 %, so batches have realistic padding.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, TextIO

import numpy as np

from fastembed_rt.machine import peak_rss_mb, this_cpu

__all__ = [
    "BenchRow",
    "CpuPeak",
    "bench_artifact",
    "cpu_peak",
    "encoder_flops",
    "format_table",
    "machine_name",
    "run_peak_note",
    "synthetic_texts",
    "write_jsonl",
]


@dataclass
class BenchRow:
    """One measurement: a contender on a workload at one batch size. The JSONL schema, field by field.

    ``workload`` is ``"texts"`` (or a data set name such as ``"stsb"``, ``"long"``): throughput over
    the whole set, one encode call per pass; or ``"query"``: one text per call, ``p50_ms``/``p99_ms``.
    ``sent_s``/``tok_s`` are medians over ``repeats`` passes (``sent_s_min``/``sent_s_max`` the range);
    ``tokens`` counts real tokens (special tokens included, padding not); ``padding_ratio`` is
    ``1 - real / padded`` tokens fed to the engine. ``mfu`` is model-FLOPs utilisation (achieved model
    FLOP/s over ``peak_gflops``, see ``encoder_flops`` and ``cpu_peak``), None when the model shape
    is unknown. ``cold_start_s``: load + first embedding (for ``benchmarks/run.py`` in a fresh
    process, imports included; for ``fastembed-rt bench`` in the running process). ``install_mb``:
    site-packages of the contender's environment. ``error`` is set, and the numbers are None, when the
    contender could not run.
    """

    contender: str
    engine: str
    provider: str
    variant: str
    workload: str
    batch: int
    threads: int
    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    padding_ratio: float | None = None
    repeats: int = 0
    sent_s: float | None = None
    sent_s_min: float | None = None
    sent_s_max: float | None = None
    tok_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cold_start_s: float | None = None
    peak_rss_mb: float | None = None
    install_mb: float | None = None
    stsb_spearman: float | None = None
    mfu: float | None = None
    peak_gflops: float | None = None
    load_avg: float | None = None
    machine: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# -- model FLOPs and the CPU's peak --------------------------------------------------------------
def encoder_flops(lengths: Iterable[int], layers: int, hidden: int, intermediate: int) -> float:
    """Forward-pass FLOPs of a BERT-style encoder over texts of the given real token lengths.

    Per token and layer, the matmuls hold ``4·H²`` (Q, K, V, output projections) ``+ 2·H·I`` (the two
    feed-forward layers) weights, each costing 2 FLOPs (multiply + add); attention scores ``Q·Kᵀ`` and
    the weighted sum ``A·V`` cost ``2·S·H`` each for a text of ``S`` tokens::

        FLOPs(text of S tokens) = S · L · (2·(4·H² + 2·H·I) + 4·S·H)

    Embedding look-ups, layer norms, softmax, GELU and pooling are left out (< 1 % for MiniLM). Only
    real tokens count: work spent on padding is waste, not utilisation.
    """
    per_token = 2.0 * (4 * hidden * hidden + 2 * hidden * intermediate)
    total = 0.0
    for s in lengths:
        total += s * layers * (per_token + 4.0 * s * hidden)
    return total


@dataclass(frozen=True)
class CpuPeak:
    """Peak fp32 FLOP/s of ``cores`` cores: ``cores × GHz × flops_per_cycle``, and where each came from.

    ``measured_gflops`` is what one large fp32 GEMM really reached here (``benchmarks/run.py``); the
    kernel's ``cpu MHz`` is often the base clock, so a GEMM can beat the nominal figure, and then
    the measured one is the peak (``gflops`` is the larger of the two).
    """

    cores: int
    ghz: float
    flops_per_cycle: int
    isa: str
    measured_gflops: float | None = None

    @property
    def nominal_gflops(self) -> float:
        return self.cores * self.ghz * self.flops_per_cycle

    @property
    def gflops(self) -> float:
        return max(self.nominal_gflops, self.measured_gflops or 0.0)

    def describe(self) -> str:
        text = (
            f"{self.cores} cores × {self.ghz:.2f} GHz × {self.flops_per_cycle} FLOP/cycle ({self.isa}) "
            f"= {self.nominal_gflops:.0f} GFLOP/s"
        )
        if self.measured_gflops is not None:
            text += f"; a 2048³ fp32 GEMM in ONNX Runtime reached {self.measured_gflops:.0f} GFLOP/s"
        return f"{text}; MFU is against {self.gflops:.0f} GFLOP/s"


def cpu_peak(cores: int, flops_per_cycle: int | None = None, measured_gflops: float | None = None) -> CpuPeak:
    """This CPU's peak fp32 FLOP/s on ``cores`` cores, from ``/proc/cpuinfo``.

    Assumptions: two FMA pipes per core, each one fused multiply-add (2 FLOPs) per fp32 lane per
    cycle: 32 FLOP/cycle with AVX2+FMA (8 lanes), 64 with AVX-512 (16 lanes; right for Zen 5 and
    server Xeons, twice too high for Zen 4, which splits 512-bit ops), 8 without FMA. The clock is
    ``cpu MHz`` as the kernel reports it (the base clock in most VMs; turbo makes the true peak
    higher and MFU lower). ``flops_per_cycle`` overrides the ISA guess.
    """
    flags: set[str] = set()
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "cpu MHz" and not mhz:
                mhz = float(value)
    except (OSError, ValueError):
        pass
    if "avx512f" in flags:
        isa, per_cycle = "AVX-512 FMA", 64
    elif {"avx2", "fma"} <= flags:
        isa, per_cycle = "AVX2 FMA", 32
    else:
        isa, per_cycle = "no FMA", 8
    if flops_per_cycle is not None:
        isa, per_cycle = "given", flops_per_cycle
    return CpuPeak(cores, (mhz or 2000.0) / 1000.0, per_cycle, isa, measured_gflops)


def target_line(label: str, value: float | None, goal: float, higher: bool, unit: str = "") -> str:
    """One benchmark target as a markdown list line: the measured value, the goal, ``met`` or ``MISSED``."""
    if value is None:
        return f"- {label}: not measured"
    ok = value >= goal if higher else value <= goal
    sign = "≥" if higher else "≤"
    return f"- {label}: {value:.2f}{unit} (target {sign} {goal}{unit}) {'met' if ok else 'MISSED'}"


def isa_flags() -> str:
    """The SIMD flags of this CPU that matter to inference kernels (``fastembed_rt.machine.ISA_FLAGS``)."""
    return " ".join(this_cpu().isa) or "unknown"


def machine_name() -> str:
    """CPU model and ISA flags, CPU count and Python version, for the table caption and every row."""
    cpu = this_cpu()
    return f"{cpu.describe()}, {os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}"


# -- output -------------------------------------------------------------------------------------
def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(rows: Sequence[BenchRow], reference: str | None = None) -> str:
    """A markdown table, one line per row. ``reference``: a contender whose throughput on the same
    workload and batch is the ``×`` column's denominator (default: the first row of each workload)."""
    header = (
        "| contender | workload | batch | sent/s (min–max) | tok/s | × ref | p50 / p99 ms | padding | MFU "
        "| cold start s | peak RSS MB | install MB | STSb |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    refs: dict[tuple[str, int], float] = {}
    for row in rows:
        key = (row.workload, row.batch)
        if row.sent_s is not None and (row.contender == reference or (reference is None and key not in refs)):
            refs[key] = row.sent_s
    lines = [header]
    for r in rows:
        if r.error:
            lines.append(f"| {r.contender} | {r.workload} | {r.batch} | failed: {r.error[:80]} |" + " |" * 9)
            continue
        throughput = (
            "–" if r.sent_s is None else f"{r.sent_s:.0f} ({_num(r.sent_s_min, '.0f')}–{_num(r.sent_s_max, '.0f')})"
        )
        ref = refs.get((r.workload, r.batch))
        ratio = f"{r.sent_s / ref:.2f}×" if r.sent_s is not None and ref else "–"
        latency = "–" if r.p50_ms is None else f"{r.p50_ms:.2f} / {_num(r.p99_ms, '.2f')}"
        padding = "–" if r.padding_ratio is None else f"{100 * r.padding_ratio:.0f} %"
        mfu = "–" if r.mfu is None else f"{100 * r.mfu:.1f} %"
        lines.append(
            f"| {r.contender} | {r.workload} | {r.batch} | {throughput} | {_num(r.tok_s, '.0f')} | {ratio} "
            f"| {latency} | {padding} | {mfu} | {_num(r.cold_start_s, '.2f')} | {_num(r.peak_rss_mb, '.0f')} "
            f"| {_num(r.install_mb, '.0f')} | {_num(r.stsb_spearman, '.2f')} |"
        )
    return "\n".join(lines)


def write_jsonl(rows: Iterable[BenchRow], out: str | os.PathLike[str] | IO[str]) -> None:
    """One JSON object per row, every ``BenchRow`` field present (None where not measured), to a file path or into
    an open text stream (``fastembed-rt bench`` opens its ``--jsonl`` file before the bench runs)."""
    if not isinstance(out, str | os.PathLike):
        out.writelines(json.dumps(asdict(row)) + "\n" for row in rows)
        return
    with open(out, "w", encoding="utf-8") as handle:
        write_jsonl(rows, handle)


# -- the user-facing bench ----------------------------------------------------------------------
def synthetic_texts(vocab: Iterable[str], count: int, words: int, seed: int = 0) -> list[str]:
    """``count`` texts of ``words`` ± 50 % whole-word tokens drawn from ``vocab`` with a fixed seed."""
    pool = sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3)
    if not pool:
        raise ValueError("the tokenizer vocabulary has no whole-word tokens to make texts from")
    rng = np.random.default_rng(seed)
    low, high = max(1, words // 2), max(1, words + words // 2)
    return [" ".join(rng.choice(pool, size=int(rng.integers(low, high + 1)))) for _ in range(count)]


class _Progress:
    """A one-line progress bar on stderr (tqdm is not a runtime dependency)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.started = time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        filled = round(24 * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.started
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total} {elapsed:5.0f} s  {label:<40}"
        )
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("fastembed-rt", "onnxruntime", "openvino", "tokenizers", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _configurations(
    manifest: Any, providers: Sequence[str] | None, variants: Sequence[str] | None
) -> list[tuple[str, str]]:
    """(provider, variant) pairs: every available provider × every variant of a format it runs."""
    from fastembed_rt.errors import ProviderError
    from fastembed_rt.providers import available_providers, provider_spec, resolve_provider

    names = list(providers) if providers else available_providers()
    # auto: the provider a model loaded with provider="auto" runs (it was refused as "not available" while the
    # same message listed it as available)
    formats = {variant.format for variant in manifest.variants}
    names = list(dict.fromkeys(resolve_provider(n, formats=formats)[0].name if n == "auto" else n for n in names))
    have = ", ".join(v.name for v in manifest.variants)
    if unknown := [name for name in variants or () if name not in {v.name for v in manifest.variants}]:
        raise ProviderError(f"variant(s) {', '.join(unknown)} not in this artifact; it has {have}")
    pairs = []
    for name in names:
        spec = provider_spec(name)
        if providers and spec.unavailable() is not None:
            raise ProviderError(f"provider {name!r} cannot run here: {spec.unavailable()}")
        for variant in manifest.variants:
            if variant.format in spec.formats and (not variants or variant.name in variants):
                pairs.append((name, variant.name))
    if left := [name for name in variants or () if all(name != variant for _, variant in pairs)]:
        raise ProviderError(f"no provider of {names} runs variant(s) {', '.join(left)} (their format)")
    if not pairs:
        raise ProviderError(
            f"no provider × variant to bench; providers {names}, variants asked {variants}, have {have}"
        )
    return pairs


def bench_artifact(
    artifact: str | os.PathLike[str],
    *,
    texts: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32, 64),
    providers: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    threads: int | None = None,
    repeats: int = 3,
    queries: int = 100,
    synthetic: tuple[int, int] = (1000, 12),
    show_progress_bar: bool = True,
) -> list[BenchRow]:
    """Measure ``artifact`` on this machine: throughput per provider × variant × batch size, and
    single-text latency per provider × variant.

    Args:
        texts: the texts to encode; default ``synthetic_texts`` (``synthetic = (count, words)``).
        batch_sizes: ``batch_size`` values passed to ``encode``.
        providers / variants: narrow the grid (default: everything that runs here).
        threads: intra-op threads (default: the CPUs this process may use).
        repeats: timed passes per configuration after one warm-up pass; median and range reported.
        queries: single-text calls for p50/p99 latency (cycling through ``texts``).
        show_progress_bar: a one-line progress bar on stderr.
    Returns:
        ``BenchRow``s: per configuration one ``"query"`` row, then one ``"texts"`` row per batch size.
    """
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.errors import FastEmbedError
    from fastembed_rt.providers.threads import available_cpus
    from fastembed_rt.tokenizer import Tokenizer

    _check_counts(
        batch_sizes=batch_sizes, threads=threads, repeats=repeats, queries=queries, synthetic=synthetic, texts=texts
    )
    manifest = load_manifest(Path(artifact))
    threads = threads or available_cpus()
    pairs = _configurations(manifest, providers, variants)
    if texts is None:
        vocab = Tokenizer(manifest.root, manifest.tokenizer).get_vocab()
        texts = synthetic_texts(vocab, *synthetic)
    steps = 1 + len(batch_sizes)
    bar = _Progress(len(pairs) * steps, sys.stderr) if show_progress_bar else None
    base = BenchRow(
        contender="", engine="fastembed-rt", provider="", variant="", workload="query", batch=1, threads=threads,
        machine=machine_name(), versions=_versions(),
    )  # fmt: skip
    rows: list[BenchRow] = []
    for provider, variant in pairs:
        row = replace(base, contender=f"{provider}/{variant}", provider=provider, variant=variant)
        done = len(rows)
        try:
            for measured in _bench_configuration(artifact, row, list(texts), batch_sizes, repeats, queries):
                rows.append(measured)
                if bar is not None:
                    bar.step(f"{row.contender} {measured.workload} batch {measured.batch}")
        except FastEmbedError as exc:  # one configuration that cannot run does not end the bench
            rows.append(replace(row, workload="texts", batch=0, error=str(exc)))
            for _ in range(steps - (len(rows) - done - 1)):
                if bar is not None:
                    bar.step(f"{row.contender} failed")
    if len(pairs) == 1:  # this process's peak is that configuration's; of several, it is no one row's (the largest
        # configuration's, or earlier ones' memory kept): `run_peak_note` says it below the table
        for measured in rows:
            measured.peak_rss_mb = peak_rss_mb()
    return rows


def run_peak_note(rows: Sequence[BenchRow]) -> str | None:
    """A line for the process's peak RSS when ``rows`` come from more than one configuration (their rows leave it
    out), else None."""
    configurations = {row.contender for row in rows}
    if len(configurations) < 2:
        return None
    return (
        f"peak RSS {peak_rss_mb():.0f} MB: this process's, over all {len(configurations)} configurations (bench one "
        "with --providers/--variants for its own, or benchmarks/run.py, which runs each in a fresh process)"
    )


def _check_counts(
    *,
    batch_sizes: Sequence[int],
    threads: int | None,
    repeats: int,
    queries: int,
    synthetic: tuple[int, int],
    texts: Sequence[str] | None,
) -> None:
    """The CLI's argument checks, for callers from Python: a zero or negative count is an InputError before anything
    loads (0 repeats ended the run in statistics' "no median for empty data" after the model had loaded)."""
    from fastembed_rt.errors import InputError

    def positive(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be an int >= 1, got {value!r}")

    positive("repeats", repeats)
    positive("queries", queries)
    if threads is not None:
        positive("threads", threads)
    if isinstance(batch_sizes, (str, bytes)) or not batch_sizes:
        raise InputError(f"batch_sizes must be a non-empty list of ints >= 1, got {batch_sizes!r}")
    for batch in batch_sizes:
        positive("each batch size", batch)
    if texts is None:
        if not isinstance(synthetic, tuple) or len(synthetic) != 2:
            raise InputError(f"synthetic must be (count, words), got {synthetic!r}")
        positive("synthetic's count", synthetic[0])
        positive("synthetic's words", synthetic[1])
    elif isinstance(texts, str) or len(texts) == 0:
        raise InputError(f"texts must be a non-empty list of str, got {texts!r:.80}")


def _bench_configuration(
    artifact: str | os.PathLike[str],
    row: BenchRow,
    texts: list[str],
    batch_sizes: Sequence[int],
    repeats: int,
    queries: int,
) -> Iterator[BenchRow]:
    """Load ``row.provider``/``row.variant``, then yield its query row and one row per batch size."""
    from fastembed_rt.models import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(artifact, provider=row.provider, variant=row.variant, intra_op_threads=row.threads)
    try:
        model.encode(texts[:1], show_progress_bar=False)
        row = replace(
            row,
            provider=model.provider,
            cold_start_s=time.perf_counter() - started,
            load_avg=os.getloadavg()[0],
        )
        latencies = []
        for i in range(queries + 10):
            t0 = time.perf_counter()
            model.encode([texts[i % len(texts)]], show_progress_bar=False)
            if i >= 10:  # the first calls allocate
                latencies.append(1000 * (time.perf_counter() - t0))
        yield replace(
            row,
            texts=queries,
            repeats=1,
            p50_ms=float(np.percentile(latencies, 50)),
            p99_ms=float(np.percentile(latencies, 99)),
        )
        tokens = sum(len(e.ids) for e in model.tokenizer.encode_batch(texts))
        for batch in batch_sizes:
            model.encode(texts, batch_size=batch, show_progress_bar=False)
            stats = model.last_encode_stats
            rates = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.encode(texts, batch_size=batch, show_progress_bar=False)
                rates.append(len(texts) / (time.perf_counter() - t0))
            median = statistics.median(rates)
            yield replace(
                row,
                workload="texts",
                batch=batch,
                texts=len(texts),
                tokens=tokens,
                padded_tokens=stats.padded_tokens,
                padding_ratio=stats.padding_ratio,
                repeats=repeats,
                sent_s=median,
                sent_s_min=min(rates),
                sent_s_max=max(rates),
                tok_s=median * tokens / len(texts),
            )
    finally:
        model.close()


def make_decoder_tokenizer(folder: str | os.PathLike[str], eos: str = "[SEP]", eos_id: int = 102) -> None:
    """Turn the BERT tokenizer files in ``folder`` into a decoder's: ``text <eos>``, no start token.

    As Qwen3-Embedding's ``text <|endoftext|>``, for random-weight decoders built without a download (tests,
    size-true benchmarks). The generic tokenizers class keeps that post-processor (a BertTokenizer would
    rebuild ``[CLS] … [SEP]``); padding side is left to the caller.
    """
    root = Path(folder)
    tokenizer = json.loads((root / "tokenizer.json").read_text(encoding="utf-8"))
    text, end = {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}
    tokenizer["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [text, end],
        "pair": [text, {"Sequence": {"id": "B", "type_id": 0}}, end],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    }
    (root / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    config = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(tokenizer_class="TokenizersBackend", eos_token=eos, pad_token="[PAD]")
    (root / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
