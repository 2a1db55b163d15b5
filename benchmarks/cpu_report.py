"""Everything issue 13 asks of one CPU class, in one command: the numbers a README table per CPU class needs.

    .venv/bin/python benchmarks/cpu_report.py [--rounds 3] [--repeats 3] [--skip-run]

On the CPU to be measured (for issue 13 an AVX2-only one: no AVX-512, no VNNI), it runs in order, each step
logged with its wall time to ``benchmarks/results/cpu-report-<stamp>/``:

1. ``fastembed-rt export`` of the bundled all-MiniLM-L6-v2 with the default variants, timed (issue 13: all
   default variants in 3 minutes on 2 cores), into ``artifact/`` there;
2. ``benchmarks/run.py --artifact`` that export: every contender, peers included (the README's table);
3. ``benchmarks/profile_encode.py``: where the optimized fp32 graph's and int8-avx2's time goes, against the
   floor's graph (the backbone step 2 cuts; with ``--skip-run`` this script cuts it);
4. ``benchmarks/memory.py``: resident memory by stage;
5. ``benchmarks/streams.py``: whether running a call's batches on streams pays on this CPU (optimized and
   int8-avx2, against ``streams=1``);
6. ``fastembed-rt info``: which variant ``auto`` and ``fastest`` run on this CPU and why.

It prints the CPU model and ISA flags first, and says so when this CPU has AVX-512 or VNNI (then the numbers
are that class's; AVX2 code paths on such a CPU come from ``benchmarks/avx2_proxy.py run --``, which gives
code paths, not an AVX2 CPU's numbers). Without ``run.py`` (``--skip-run``) it took 6 minutes on a 2-vCPU
Zen 5 under ``avx2_proxy.py`` (export 83 s, profile 97 s, memory 37 s, streams 157 s); ``run.py`` adds ~17 minutes
at 3 rounds there (its docstring), ~25 more the first time (the peers' venvs); a CPU three times slower takes about
three times as long.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from run import ensure_backbone, minilm_dir

from fastembed_rt.cli import positive_int

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent


def _step(out: Path, name: str, command: list[str]) -> float:
    """Run ``command`` from the repository root with its output in ``out/<name>.log`` and on the terminal;
    returns its wall time. Raises on failure, naming the log."""
    log = out / f"{name}.log"
    print(f"\n== {name}: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    with log.open("w") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sink.write(line)
        code = process.wait()
        elapsed = time.perf_counter() - started
        sink.write(f"# exit {code}, {elapsed:.1f} s wall\n")
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}): see {log}")
    print(f"== {name}: {elapsed:.1f} s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # checked here: run.py would refuse a 0 only after the export step (minutes)
    parser.add_argument("--rounds", type=positive_int, default=3, help="run.py's interleaved rounds")
    parser.add_argument("--repeats", type=positive_int, default=3, help="run.py's timed passes per workload and round")
    parser.add_argument("--skip-run", action="store_true", help="leave out run.py (the longest step)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from fastembed_rt.machine import this_cpu

    cpu = this_cpu()
    out = args.out / f"cpu-report-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True)
    wide = [flag for flag in cpu.isa if flag.startswith("avx512") or "vnni" in flag or flag.startswith("amx")]
    print(f"CPU: {cpu.describe()}, {len(os.sched_getaffinity(0))} CPUs; report in {out}")
    if wide:
        print(f"note: this CPU has {' '.join(wide)}: these are its class's numbers, not an AVX2-only CPU's")
    python = str(BIN / "python")
    artifact = out / "artifact"
    times = {"export": _step(out, "1-export", [str(BIN / "fastembed-rt"), "export", str(minilm_dir()), str(artifact)])}
    if not args.skip_run:
        run = [python, "benchmarks/run.py", "--artifact", str(artifact), "--rounds", str(args.rounds)]
        times["run"] = _step(out, "2-run", [*run, "--repeats", str(args.repeats)])
    else:  # the floor's backbone graphs, which run.py cuts, for the profile and memory steps
        ensure_backbone(artifact, minilm_dir())
    profile = [python, "benchmarks/profile_encode.py", "--artifact", str(artifact), "--variant", "optimized"]
    times["profile"] = _step(
        out, "3-profile", [*profile, "--int8-variant", "int8-avx2", "--rounds", "5", "--repeats", "3"]
    )
    times["memory"] = _step(out, "4-memory", [python, "benchmarks/memory.py", "--artifact", str(artifact)])
    streams = [python, "benchmarks/streams.py", "--artifact", str(artifact), "--variants", "optimized,int8-avx2"]
    times["streams"] = _step(out, "5-streams", [*streams, "--rounds", "4"])
    times["info"] = _step(out, "6-info", [str(BIN / "fastembed-rt"), "info", str(artifact)])
    summary = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items())
    print(f"\nCPU: {cpu.describe()}; default export {times['export']:.0f} s (issue 13: at most 180); steps: {summary}")
    print(f"logs: {out}")


if __name__ == "__main__":
    main()
