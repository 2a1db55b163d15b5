"""One contender, measured inside its own fresh process: ``python child.py JOB.json STARTED``.

``STARTED`` is the parent's ``time.time()`` just before it started this process, so cold start
counts interpreter start, imports, model load and the first embedding. Then, on each throughput
workload: a warm-up call, ``repeats`` timed calls over the whole set (embeddings of the first are
saved for STSb scoring), real/padded token counts of the last; then ``queries`` single-text calls
for latency. Prints one JSON object on the last stdout line. Standard library + numpy only (runs
in every benchmark venv).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's own peak RSS: ``VmHWM``, because ``ru_maxrss`` starts at the parent's RSS when it forks
    (a 1 GB runner made every contender report 1,061 MB). Same as ``fastembed_rt.machine.peak_rss_mb``, which
    the peers' venvs cannot import."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Measure one contender (run.py starts this; see the docstring).")
    parser.add_argument("job", type=Path, help="the job's JSON file, written by run.py")
    parser.add_argument("started", type=float, help="the parent's time.time() just before starting this process")
    args = parser.parse_args()
    job = json.loads(args.job.read_text())
    started = args.started
    from contenders import LOADERS  # beside this file: the script's folder is on sys.path

    encoder = LOADERS[job["spec"]["kind"]](job["spec"], job["threads"], job["batch"])
    encoder.encode([job["first_text"]])
    cold_start = time.time() - started
    data = json.loads(Path(job["data"]).read_text())

    import numpy as np

    out = Path(job["out"])
    result: dict[str, Any] = {"cold_start_s": cold_start, "versions": encoder.versions, "workloads": {}}
    for name in ("short", "long"):
        texts = data[name]
        encoder.encode(texts[: job["warmup"]])
        seconds = []
        for repeat in range(job["repeats"]):
            encoder.real_tokens = encoder.padded_tokens = 0
            t0 = time.perf_counter()
            embeddings = encoder.encode(texts)
            seconds.append(time.perf_counter() - t0)
            if repeat == 0:
                np.save(out / f"{name}.npy", np.asarray(embeddings, np.float32))
        result["workloads"][name] = {
            "seconds": seconds,
            "real_tokens": encoder.real_tokens,
            "padded_tokens": encoder.padded_tokens,
        }
    queries = data["queries"]
    for text in queries[:10]:  # first calls allocate
        encoder.encode([text])
    latencies = []
    for text in queries:
        t0 = time.perf_counter()
        encoder.encode([text])
        latencies.append(1000 * (time.perf_counter() - t0))
    result["workloads"]["query"] = {"latencies_ms": latencies}
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
