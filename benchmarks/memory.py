"""Where an embedding process's memory goes: fastembed-rt against the floor, each in its own fresh process.

    .venv/bin/python benchmarks/memory.py [--artifact A] [--backbone B] [--rounds 2]

For each contender, the resident set (``VmRSS``, split into anonymous memory and file-backed pages such
as libraries and memory-mapped weights) after the imports (numpy, onnxruntime, tokenizers, and
fastembed_rt for its rows), after loading the model, after its first text, and after encoding the 2,758
STSb test sentences ``--rounds`` times (batch 32, 2 threads), with the process's peak (``VmHWM``): the
memory issue 13's "peak RSS of the default fp32 run" is made of; and the proportional set size (``Pss``) at the
end, what the process costs the machine (RSS counts a page of a file mapped twice, as the engine's two sessions
map the cached graph's packed weights, twice). Contenders: fastembed-rt ``cpu/auto`` (with its ONNX Runtime
graph cache warm, and off), ``cpu/fp32`` and ``cpu/int8``, the floor (tokenizers + onnxruntime sorted by token length,
``benchmarks/contenders.py``) and the floor's uint8 graph. Then two processes of ``cpu/auto`` (cache warm, and
off) and of the floor at once, one thread each, as a pool's workers or server replicas run: each one's PSS and RSS
while both are alive. Run ``benchmarks/run.py`` once first (it
exports the artifact and builds the floor's graphs), or pass ``--artifact`` and ``--backbone``.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contenders import floor_spec, run_job, warm_engine_caches

HERE = Path(__file__).resolve().parent
MODELS = HERE / ".envs" / "models"
STAGES = ("imports", "loaded", "first text", "STSb")

CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, {here!r})

def resident():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    sizes = {{key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}}
    rollup = Path("/proc/self/smaps_rollup").read_text().splitlines()
    sizes["Pss"] = sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
    return sizes

job = json.loads(Path(sys.argv[1]).read_text())
texts = json.loads(Path(job["texts"]).read_text())
import numpy, onnxruntime, tokenizers
if job["spec"]["kind"] == "fastembed-rt":
    import fastembed_rt
stages = {{"imports": resident()}}
from contenders import LOADERS
encoder = LOADERS[job["spec"]["kind"]](job["spec"], job.get("threads", 2), 32)
stages["loaded"] = resident()
encoder.encode(texts[:1])
stages["first text"] = resident()
for _ in range(job["rounds"]):
    encoder.encode(texts)
stages["STSb"] = resident()
if job.get("barrier"):  # measured once every process of the run is done, then left alive until all are measured
    import os, time
    for phase in ("done", "measured"):
        if phase == "measured":
            stages["together"] = resident()
        Path(job["barrier"], f"{{phase}}-{{os.getpid()}}").touch()
        deadline = time.time() + 600
        while len(list(Path(job["barrier"]).glob(phase + "-*"))) < job["peers"] and time.time() < deadline:
            time.sleep(0.05)
print(json.dumps(stages))
"""


def run_together(script: str, job: dict[str, object], folder: Path, count: int) -> list[dict[str, dict[str, float]]]:
    """``count`` processes of ``script`` on ``job`` at once (their own job files; one barrier folder); each one's
    stages, with ``together``: its memory while all of them were alive after their last stage."""
    barrier = folder / "barrier"
    barrier.mkdir(parents=True)
    running = []
    for i in range(count):
        path = folder / f"job{i}.json"
        path.write_text(json.dumps({**job, "barrier": str(barrier), "peers": count}))
        running.append(subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=1200)[0] for process in running]
    if any(process.returncode for process in running):
        raise RuntimeError(f"a process exited with {[process.returncode for process in running]}")
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


# the peers' rows: the backbone graph each runs, in the --backbone folder
FLOORS = {
    "floor (tokenizers + ORT, sorted)": "model.onnx",
    "floor uint8 (ORT-optimized + dynamic uint8)": "model_uint8.onnx",
}


def contenders(artifact: Path, backbone: Path) -> dict[str, dict[str, object]]:
    """Loader specs (``benchmarks/contenders.py``) by row name: ours, then the floor graphs that exist (``main``
    prints a row for each missing one)."""
    from fastembed_rt.artifact import load_manifest

    manifest = load_manifest(artifact)
    ours = {
        f"fastembed-rt cpu/{variant}": {
            "kind": "fastembed-rt",
            "artifact": str(artifact),
            "provider": "cpu",
            "variant": variant,
        }
        for variant in ("auto", "fp32", "int8")
        if variant == "auto" or any(v.name == variant for v in manifest.variants)
    }
    ours["fastembed-rt cpu/auto, graph cache off"] = {**ours["fastembed-rt cpu/auto"], "cache": False}
    shape = (manifest.tokenizer.max_seq_length, manifest.dim)
    return {
        **ours,
        **{name: floor_spec(backbone, graph, *shape) for name, graph in FLOORS.items() if (backbone / graph).exists()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=MODELS / "artifact")
    parser.add_argument("--backbone", type=Path, default=MODELS / "backbone")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the STSb test sentences")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from fastembed_rt.machine import this_cpu
    from fastembed_rt.providers.base import CACHE_ENV
    from fastembed_rt.stsb import load_stsb

    data = load_stsb("test", "en", args.stsb)
    sentences = data.sentences1 + data.sentences2
    print(
        f"{this_cpu().describe()}, 2 threads, batch 32, {len(sentences):,} STSb test sentences × {args.rounds}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        "\nRSS MB after each stage (anonymous + file-backed), the process's peak RSS, and its proportional set (PSS) "
        "after the last stage: RSS counts a file page once per mapping of it, PSS counts each page once, shared "
        "ones split between the processes that map them. fastembed-rt's ONNX Runtime graph cache is warm (built "
        "in a process before these, as any load after a machine's first finds it).\n"
    )
    print(f"| contender | {' | '.join(STAGES)} | peak RSS | PSS |")
    print(f"| --- | {' | '.join('---:' for _ in STAGES)} | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps(sentences))
        specs = contenders(args.artifact, args.backbone)
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        warm_engine_caches(specs.values(), 2, 32, sentences[0])
        for name in [name for name in FLOORS if name not in specs]:  # a row that says so, not a silent gap
            print(f"| {name} | not run: {args.backbone / FLOORS[name]} is missing (benchmarks/run.py builds it) |")
        for name, spec in specs.items():
            try:
                stages = run_job(
                    CHILD.format(here=str(HERE)), {"spec": spec, "texts": str(texts), "rounds": args.rounds}, Path(tmp)
                )
            except RuntimeError as failure:
                print(f"| {name} | failed: {failure} |")
                continue
            cells = [f"{s['VmRSS']:.0f} ({s['RssAnon']:.0f} + {s['RssFile']:.0f})" for s in stages.values()]
            print(f"| {name} | {' | '.join(cells)} | {stages['STSb']['VmHWM']:.0f} | {stages['STSb']['Pss']:.0f} |")
        print(
            "\nTwo processes of one model at once (a pool's workers, server replicas), one thread each, each over "
            "STSb: MB per process while both are alive, PSS (what each costs the machine) and RSS.\n"
        )
        print("| contender | PSS each | RSS each |")
        print("| --- | ---: | ---: |")
        pairs = {name: spec for name, spec in specs.items() if name.startswith(("fastembed-rt cpu/auto", "floor ("))}
        for index, (name, spec) in enumerate(pairs.items()):
            job = {"spec": spec, "texts": str(texts), "rounds": args.rounds, "threads": 1}
            try:
                both = run_together(CHILD.format(here=str(HERE)), job, Path(tmp) / f"pair{index}", 2)
            except (RuntimeError, subprocess.TimeoutExpired) as failure:
                print(f"| {name} | failed: {failure} |")
                continue
            pss = " / ".join(f"{s['together']['Pss']:.0f}" for s in both)
            rss = " / ".join(f"{s['together']['VmRSS']:.0f}" for s in both)
            print(f"| {name} | {pss} | {rss} |")


if __name__ == "__main__":
    main()
