"""Throughput of every provider × variant this machine can run, measured in one run.

    .venv/bin/python benchmarks/providers.py [--artifact artifacts/all-MiniLM-L6-v2] [--threads 2]
                                            [--repeats 3] [--rounds 2] [--rows cpu/fp32,openvino/openvino]

Each row runs in a fresh subprocess with the same thread budget, on the STSb test sentences
(2 × 1,379, through ``fastembed_rt.stsb.load_stsb``), batch 32. Rows are measured in
``--rounds`` interleaved rounds (row A, B, C, A, B, C, ...) and the median is reported, so a slow
minute on a shared machine does not land on one row only. Rows run with the default spin (workers
busy-wait ``ProviderOptions.spin_us`` for the next operator); ``cpu / fp32`` also with ONNX Runtime's
own spin and with none. ``openvino`` loads twice: the first load compiles
into an empty cache directory, the second reads the cache.

Columns: sentences/s (median over rounds of the median of ``--repeats`` passes), ratio to cpu/fp32,
CPU-seconds per 1,000 sentences (spinning burns CPU), single-query p50, load time (cold; cached for
openvino), the share of encode time inside the engine, and min cosine against cpu/fp32 on all
sentences. ``--rows`` keeps only the named provider/variant rows (cpu/fp32 always runs: the
reference). Prints a markdown table and writes JSONL rows to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUERY = "What is the capital of France?"
# cpu/fp32's further rows: ONNX Runtime's own spin and none, against the default bounded one
SPINS: dict[str, dict[str, Any]] = {"onnxruntime's own": {"allow_spinning": True}, "none": {"spin_us": 0}}


def _rows(artifact: Path, only: set[str] | None) -> list[dict[str, Any]]:
    """Every (provider, variant) the artifact and this machine allow, plus cpu/fp32 with the other spins;
    ``only``: just these ``provider/variant`` rows, and cpu/fp32."""
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.providers import available_providers, provider_spec

    manifest = load_manifest(artifact)
    rows = []
    for provider in available_providers():
        for variant in manifest.variants:
            if only is not None and f"{provider}/{variant.name}" not in only | {"cpu/fp32"}:
                continue
            if variant.format in provider_spec(provider).formats:
                rows.append({"provider": provider, "variant": variant.name, "spin": "default"})
                if (provider, variant.name) == ("cpu", "fp32"):  # the spinning tradeoff in docs/providers.md
                    rows += [{"provider": provider, "variant": variant.name, "spin": spin} for spin in SPINS]
    if missing := sorted((only or set()) - {f"{row['provider']}/{row['variant']}" for row in rows}):
        have = ", ".join(
            f"{p}/{v.name}"
            for p in available_providers()
            for v in manifest.variants
            if v.format in provider_spec(p).formats
        )
        raise SystemExit(f"--rows {', '.join(missing)}: not a provider/variant this artifact and machine run ({have})")
    return rows


def measure(row: dict[str, Any], artifact: Path, threads: int, repeats: int, out: Path) -> dict[str, Any]:
    """Run inside the row's own process."""
    import numpy as np

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.providers import ProviderOptions
    from fastembed_rt.stsb import load_stsb

    options = ProviderOptions(intra_op_threads=threads, **SPINS.get(row["spin"], {}))
    with tempfile.TemporaryDirectory() as cache:
        loads = []
        for _ in range(2 if row["provider"] == "openvino" else 1):
            started = time.perf_counter()
            model = SentenceTransformer(
                artifact,
                provider=row["provider"],
                variant=row["variant"],
                provider_options=options,
                provider_cache_dir=cache,
            )
            loads.append(time.perf_counter() - started)
    data = load_stsb("test", "en")
    sentences = data.sentences1 + data.sentences2
    model.encode(sentences[:256])
    rates, cpu = [], []
    for _ in range(repeats):
        wall, used = time.perf_counter(), time.process_time()
        embeddings = model.encode(sentences, batch_size=32)
        wall, used = time.perf_counter() - wall, time.process_time() - used
        rates.append(len(sentences) / wall)
        cpu.append(used / len(sentences) * 1000)
    stats = model.last_encode_stats
    np.save(out, embeddings)
    latencies = []
    for _ in range(100):
        started = time.perf_counter()
        model.encode([QUERY])
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        **row,
        "threads": threads,
        "batch": 32,
        "sentences": len(sentences),
        "throughput_median": statistics.median(rates),
        "cpu_s_per_1k": statistics.median(cpu),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "load_s": loads[0],
        "cached_load_s": loads[1] if len(loads) > 1 else None,
        "run_share": stats.run_s / stats.total_s if stats.total_s else None,
        "padding_ratio": stats.padding_ratio,
    }


def _label(row: dict[str, Any]) -> str:
    return f"{row['provider']} / {row['variant']}" + ("" if row["spin"] == "default" else f" / spin: {row['spin']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", help="comma-separated provider/variant rows to run (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    artifact = Path(args.artifact).resolve()

    if args.one:
        print(json.dumps(measure(json.loads(args.one), artifact, args.threads, args.repeats, Path(args.out))))
        return

    import numpy as np

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    rows = _rows(artifact, set(args.rows.split(",")) if args.rows else None)
    results: dict[str, list[dict[str, Any]]] = {_label(r): [] for r in rows}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for i, row in enumerate(rows):
                out = Path(scratch) / f"{i}.npy"
                cmd = [sys.executable, __file__, "--one", json.dumps(row), "--out", str(out)]
                cmd += ["--artifact", str(artifact), "--threads", str(args.threads), "--repeats", str(args.repeats)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    print(f"{_label(row)}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["embeddings"] = str(out)
                results[_label(row)].append(result)
                print(f"round {round_ + 1}: {_label(row)} {result['throughput_median']:.0f} sent/s", file=sys.stderr)
        reference = np.load(results["cpu / fp32"][-1]["embeddings"])
        summary = []
        for runs in results.values():
            if not runs:
                continue
            ours = np.load(runs[-1]["embeddings"])
            cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
            merged = {key: value for key, value in runs[-1].items() if key != "embeddings"}
            for key in ("throughput_median", "cpu_s_per_1k", "p50_ms", "p99_ms", "load_s", "run_share"):
                merged[key] = statistics.median(r[key] for r in runs)
            merged["rounds"] = [r["throughput_median"] for r in runs]
            merged["min_cosine_vs_cpu_fp32"] = float(cosine.min())
            summary.append(merged)

    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    try:
        from fastembed_rt.providers.openvino import import_openvino

        versions["openvino"] = import_openvino().__version__
    except ImportError:
        pass
    from fastembed_rt.machine import this_cpu

    machine = f"{this_cpu().describe()}, {len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}"
    base = next(r for r in summary if _label(r) == "cpu / fp32")["throughput_median"]
    print(
        f"\nall-MiniLM-L6-v2, STSb test sentences ({summary[0]['sentences']}), batch 32, {args.threads} threads, "
        f"median of {args.repeats} passes × {args.rounds} rounds; {machine}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + "\n"
    )
    print(
        "| provider / variant | sent/s (per round) | × cpu/fp32 | CPU s / 1k sent | query p50 ms | load s "
        "| in engine | min cos vs cpu/fp32 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in summary:
        load = f"{r['load_s']:.2f}" + (f" ({r['cached_load_s']:.2f} cached)" if r["cached_load_s"] is not None else "")
        rounds = "/".join(f"{x:.0f}" for x in r["rounds"])
        print(
            f"| {_label(r)} | {r['throughput_median']:.0f} ({rounds}) | {r['throughput_median'] / base:.2f}× "
            f"| {r['cpu_s_per_1k']:.2f} | {r['p50_ms']:.2f} | {load} | {r['run_share']:.0%} "
            f"| {r['min_cosine_vs_cpu_fp32']:.6f} |"
        )
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    with (out_dir / f"providers-{stamp}.jsonl").open("w") as handle:
        for r in summary:
            handle.write(json.dumps({"engine": "fastembed-rt", **r, "versions": versions, "machine": machine}) + "\n")


if __name__ == "__main__":
    main()
