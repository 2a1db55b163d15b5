"""Streams against one batch at a time: the ``cpu`` engine's batches of a call run several at once, or not.

    .venv/bin/python benchmarks/streams.py --artifact ARTIFACT [--variants optimized,int8] [--rounds 6]
        [--neighbour 0.3]

For each variant, two models in one process: ``streams=1`` (every batch on all threads, the engine before
streams) and the default (``ProviderOptions.streams``: on 2 CPUs, 2 batches at once, a thread each), timed in
interleaved rounds (the order flips each round) on: the 2,758 STSb test sentences (batch 32), the long
passages of ``benchmarks/run.py``, calls of 32 texts (2-3 batches: too few to stream), calls of 128 texts and
single queries. ``--neighbour F`` runs, for the whole measurement, a process that keeps F of one CPU
busy in 10 ms periods: what a container shares with its neighbours. Prints the CPU, medians, min–max and the
ratio to ``streams=1``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _busy(fraction: float, stop: multiprocessing.synchronize.Event) -> None:
    """Keep ``fraction`` of one CPU busy in 10 ms periods until ``stop``."""
    period = 0.010
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < fraction * period:
            pass
        time.sleep((1 - fraction) * period)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--variants", default="optimized,int8")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the CPUs available)")
    parser.add_argument("--neighbour", type=float, default=0.0, help="fraction of one CPU a neighbour keeps busy")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from run import load_texts

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.providers import ProviderOptions
    from fastembed_rt.providers.threads import available_cpus

    texts, _ = load_texts(args.artifact, args.stsb, 200)
    threads = args.threads or available_cpus()
    calls = {
        "STSb sent/s": ("rate", [texts["short"]]),
        "long tok/s": ("tokens", [texts["long"]]),
        "32-text call ms": ("ms", [texts["short"][i : i + 32] for i in range(0, 32 * 40, 32)]),
        "128-text call ms": ("ms", [texts["short"][i : i + 128] for i in range(0, 128 * 10, 128)]),
        "query ms": ("ms", [[q] for q in texts["queries"]]),
    }
    stop = multiprocessing.Event()
    neighbour = None
    if args.neighbour > 0:
        neighbour = multiprocessing.Process(target=_busy, args=(args.neighbour, stop), daemon=True)
        neighbour.start()
    print(
        f"{this_cpu().describe()}; {threads} threads; {args.rounds} interleaved rounds; neighbour "
        f"{args.neighbour:.0%} of one CPU; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print("| variant | streams | " + " | ".join(calls) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in calls) + " |")
    try:
        for variant in args.variants.split(","):
            models = {
                "1": SentenceTransformer(
                    args.artifact,
                    provider="cpu",
                    variant=variant,
                    intra_op_threads=threads,
                    provider_options=ProviderOptions(streams=1),
                ),
                "default": SentenceTransformer(
                    args.artifact, provider="cpu", variant=variant, intra_op_threads=threads
                ),
            }
            label = {
                "1": "1",
                "default": f"{models['default']._pipeline.provider.streams} × "
                f"{models['default']._pipeline.provider.stream_threads} thread(s)",
            }
            long_tokens = sum(int(n) for n in models["1"]._pipeline.prepare(texts["long"]).lengths)
            results: dict[str, dict[str, list[float]]] = {name: {key: [] for key in calls} for name in models}
            for model in models.values():  # warm-up: sessions, arenas, the streams' session
                model.encode(texts["short"][:256])
            for r in range(args.rounds):
                order = list(models.items()) if r % 2 == 0 else list(models.items())[::-1]
                for name, model in order:
                    for key, (kind, batches) in calls.items():
                        times = []
                        for batch in batches:
                            start = time.perf_counter()
                            model.encode(batch, batch_size=32)
                            times.append(time.perf_counter() - start)
                        if kind == "rate":
                            results[name][key].append(len(batches[0]) / times[0])
                        elif kind == "tokens":
                            results[name][key].append(long_tokens / times[0])
                        else:
                            results[name][key].append(1000 * statistics.median(times))
            for name in models:
                cells = []
                for key, (kind, _) in calls.items():
                    values = results[name][key]
                    mid, base = statistics.median(values), statistics.median(results["1"][key])
                    ratio = (mid / base) if kind in ("rate", "tokens") else (base / mid)
                    digits = 2 if kind == "ms" else 0
                    cells.append(
                        f"{mid:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f}) {ratio:.2f}×"
                    )
                print(f"| {variant} | {label[name]} | " + " | ".join(cells) + " |")
            for model in models.values():
                model.close()
    finally:
        stop.set()
        if neighbour is not None:
            neighbour.join(timeout=5)
    print("× = speed relative to streams=1 (for ms: its time over this row's); median (min–max) over the rounds")


if __name__ == "__main__":
    main()
