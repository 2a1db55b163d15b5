"""The ``packed`` variant against the padded graph it derives from, on what a server batches: unrelated texts.

    .venv/bin/python benchmarks/packing.py --artifact ARTIFACT [--variants optimized,packed] [--group 32]
        [--groups 12] [--rounds 5] [--ranges 5-30,10-60,40-128,60-128,100-250,5-250]

The artifact must hold the variants named (``fastembed-rt export MODEL OUT --variants optimized,packed``).
For each token-length range: ``--groups`` calls of ``--group`` texts whose lengths are drawn uniformly from
the range (windows of the STSb test sentences run together, cut at the tokenizer's offsets), each call one
``encode`` as a server's batch would be; every variant runs the same calls, in interleaved rounds whose order
flips each round. Prints the CPU, the median milliseconds per call (min–max over the rounds), the ratio to the
first variant and the token slots each ran per real token (1.00: no padding).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def length_groups(
    artifact: Path, stsb: str | None, ranges: list[tuple[int, int]], group: int, groups: int
) -> dict[str, list[list[str]]]:
    """Per range, ``groups`` lists of ``group`` texts of about a uniformly drawn number of tokens (specials
    included), cut from the STSb test sentences run together."""
    from run import tokenizer

    from fastembed_rt.stsb import load_stsb

    data = load_stsb("test", "en", stsb)
    stream = " ".join(data.sentences1 + data.sentences2)
    tok = tokenizer(artifact)
    tok.no_truncation()
    offsets = tok.encode(stream, add_special_tokens=False).offsets
    rng = random.Random(0)
    out: dict[str, list[list[str]]] = {}
    for low, high in ranges:
        calls = []
        for _ in range(groups):
            texts = []
            for _ in range(group):
                n = max(1, rng.randint(low, high) - 2)  # without [CLS] and [SEP]
                start = rng.randrange(len(offsets) - n)
                texts.append(stream[offsets[start][0] : offsets[start + n - 1][1]])
            calls.append(texts)
        out[f"{low}-{high}"] = calls
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--variants", default="optimized,packed")
    parser.add_argument("--group", type=int, default=32, help="texts per call")
    parser.add_argument("--groups", type=int, default=12, help="calls per range and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ranges", default="5-30,10-60,40-128,60-128,100-250,5-250")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the CPUs available)")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.providers.threads import available_cpus

    ranges = [(int(a), int(b)) for a, b in (r.split("-") for r in args.ranges.split(","))]
    calls = length_groups(args.artifact, args.stsb, ranges, args.group, args.groups)
    threads = args.threads or available_cpus()
    variants = args.variants.split(",")
    models = {
        v: SentenceTransformer(args.artifact, provider="cpu", variant=v, intra_op_threads=threads) for v in variants
    }
    for model in models.values():  # warm-up: sessions, arenas, the streams' session
        for texts in calls[next(iter(calls))][:2]:
            model.encode(texts, batch_size=args.group)
    print(
        f"{this_cpu().describe()}; {threads} threads; calls of {args.group} texts, {args.groups} calls per range; "
        f"{args.rounds} interleaved rounds; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print("| tokens | " + " | ".join(f"{v} ms/call | slots/token" for v in variants) + " |")
    print("| --- | " + " | ".join("---: | ---:" for _ in variants) + " |")
    for name, groups in calls.items():
        times: dict[str, list[float]] = {v: [] for v in variants}
        slots: dict[str, float] = {}
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                start = time.perf_counter()
                padded = real = 0
                for texts in groups:
                    models[v].encode(texts, batch_size=args.group)
                    padded += models[v].last_encode_stats.padded_tokens
                    real += models[v].last_encode_stats.real_tokens
                times[v].append(1000 * (time.perf_counter() - start) / len(groups))
                slots[v] = padded / max(real, 1)
        base = statistics.median(times[variants[0]])
        cells = []
        for v in variants:
            mid = statistics.median(times[v])
            cells.append(f"{mid:.1f} ({min(times[v]):.1f}–{max(times[v]):.1f}) {mid / base:.2f}× | {slots[v]:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for model in models.values():
        model.close()
    print(f"× = time per call over {variants[0]}'s (lower is faster); median (min–max) over the rounds")


if __name__ == "__main__":
    main()
