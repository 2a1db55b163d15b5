"""Memory of one large ``encode`` call: fastembed-rt against the floor, each in its own fresh process.

    .venv/bin/python benchmarks/large_call.py [--artifact A] [--sizes 10000,100000]

What a user embedding a corpus in one call pays on top of the loaded model: the peak RSS during the call
over the RSS just before it (``/proc/self/clear_refs`` resets the peak after load and warm-up), next to
the returned float32 array's own size. STSb sentences (all English splits, repeated with a running number
to reach the size), batch 32, 2 threads. Contenders: fastembed-rt ``cpu/auto`` and the floor (tokenizers
+ onnxruntime sorted by token length, ``benchmarks/contenders.py``), which tokenizes the whole call at once.
Run ``benchmarks/run.py`` once first, or pass ``--artifact`` (the floor needs the backbone it cuts).
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from contenders import floor_spec, run_job

HERE = Path(__file__).resolve().parent
MODELS = HERE / ".envs" / "models"

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from child import peak_rss_mb
from contenders import LOADERS

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

job = json.loads(Path(sys.argv[1]).read_text())
encoder = LOADERS[job["spec"]["kind"]](job["spec"], 2, 32)
texts = json.loads(Path(job["texts"]).read_text())
encoder.encode(texts[:1024])
before = rss_mb()
Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
t0 = time.perf_counter()
out = encoder.encode(texts)
seconds = time.perf_counter() - t0
print(json.dumps({{"before": before, "peak": peak_rss_mb(), "output_mb": out.nbytes / 2**20, "seconds": seconds}}))
"""


def corpus(size: int, stsb: str | None) -> list[str]:
    from fastembed_rt.stsb import load_stsb

    sentences: list[str] = []
    for split in ("train", "dev", "test"):
        data = load_stsb(split, "en", stsb)
        sentences += data.sentences1 + data.sentences2
    return [f"{sentences[i % len(sentences)]} ({i // len(sentences)})" for i in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=MODELS / "artifact")
    parser.add_argument("--backbone", type=Path, default=MODELS / "backbone")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of texts per call")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.machine import this_cpu

    manifest = load_manifest(args.artifact)
    contenders = {
        "fastembed-rt cpu/auto": {
            "kind": "fastembed-rt",
            "artifact": str(args.artifact),
            "provider": "cpu",
            "variant": "auto",
        },
        "floor (tokenizers + ORT, sorted)": floor_spec(
            args.backbone, "model.onnx", manifest.tokenizer.max_seq_length, manifest.dim
        ),
    }
    print(f"{this_cpu().describe()}, 2 threads, batch 32, {time.strftime('%Y-%m-%d')}")
    print("\n| contender | texts | RSS before MB | peak during the call MB | growth MB | output MB | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            texts = Path(tmp) / "texts.json"
            texts.write_text(json.dumps(corpus(size, args.stsb)))
            for name, spec in contenders.items():
                try:
                    r = run_job(CHILD.format(here=str(HERE)), {"spec": spec, "texts": str(texts)}, Path(tmp))
                except RuntimeError as failure:
                    print(f"| {name} | {size:,} | failed: {failure} | | | | |")
                    continue
                print(
                    f"| {name} | {size:,} | {r['before']:.0f} | {r['peak']:.0f} | {r['peak'] - r['before']:.0f} "
                    f"| {r['output_mb']:.0f} | {r['seconds']:.1f} |"
                )


if __name__ == "__main__":
    main()
