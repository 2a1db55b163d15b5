"""Throughput, latency and cold start of fastembed-rt against its peers, measured in one run.

    .venv/bin/python benchmarks/run.py [--artifact artifacts/all-MiniLM-L6-v2] [--threads 2] [--repeats 5]

Contenders, each in a fresh subprocess with the same thread budget, on the STSb test sentences
(2 × 1,379, loaded through fastembed_rt.evaluation.load_stsb), batch 32:

- ``fastembed-rt``: this runtime on the artifact's fp32 variant;
- ``floor``: a plain loop of tokenizers + onnxruntime on the same backbone graph, inputs sorted by
  token length, mean pooling and normalization in numpy: what a careful engineer writes by hand;
- ``st-torch``: sentence-transformers on PyTorch (needs the export extra).

Prints a markdown table with ratios to sentence-transformers and writes JSONL rows to
``benchmarks/results/``. Compare numbers only within one run (runs 40 minutes apart differed by up
to 13 % here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONTENDERS = ("fastembed-rt", "floor", "st-torch")
QUERY = "What is the capital of France?"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- contenders: each returns (encode(list[str]) -> np.ndarray, info) --------------------------------
def _load_fastembed_rt(artifact: Path, threads: int) -> Any:
    from fastembed_rt import SentenceTransformer

    model = SentenceTransformer(artifact, intra_op_threads=threads)
    return lambda texts: model.encode(texts, batch_size=32)


def _load_floor(artifact: Path, threads: int) -> Any:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor
    from tokenizers import Tokenizer

    manifest = json.loads((artifact / "manifest.json").read_text())
    backbone = artifact.parent / f".{artifact.name}.backbone.onnx"
    if not backbone.exists():
        inputs = [i for i in manifest["graph"]["inputs"] if i != "prompt_length"]
        model = Extractor(onnx.load(str(artifact / "onnx" / "model.onnx"))).extract_model(inputs, ["token_embeddings"])
        onnx.save(model, str(backbone))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(backbone), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tok.enable_truncation(manifest["tokenizer"]["max_seq_length"])
    names = [i.name for i in session.get_inputs()]

    def encode(texts: list[str]) -> Any:
        encs = tok.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        out = np.empty((len(texts), 384), np.float32)
        for start in range(0, len(texts), 32):
            rows = order[start : start + 32]
            width = max(len(encs[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for j, i in enumerate(rows):
                ids[j, : len(encs[i].ids)] = encs[i].ids
                mask[j, : len(encs[i].ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(["token_embeddings"], {n: feeds[n] for n in names})[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return encode


def _load_st_torch(artifact: Path, threads: int) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    source = json.loads((artifact / "manifest.json").read_text())["source"]["model"]
    model = SentenceTransformer(source, device="cpu")
    return lambda texts: model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)


LOADERS = {"fastembed-rt": _load_fastembed_rt, "floor": _load_floor, "st-torch": _load_st_torch}


def measure(contender: str, artifact: Path, threads: int, repeats: int, stsb_path: str | None) -> dict[str, Any]:
    """Run inside the contender's own process: cold start first, then warm measurements."""
    started = time.perf_counter()
    encode = LOADERS[contender](artifact, threads)
    encode([QUERY])
    cold_start = time.perf_counter() - started

    import numpy as np

    from fastembed_rt.evaluation import load_stsb, stsb_spearman

    data = load_stsb("test", "en", stsb_path)
    sentences = data.sentences1 + data.sentences2
    encode(sentences[:256])  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode(sentences)
        rates.append(len(sentences) / (time.perf_counter() - t0))
    latencies = []
    for _ in range(200):
        t0 = time.perf_counter()
        encode([QUERY])
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "engine": contender,
        "threads": threads,
        "batch": 32,
        "sentences": len(sentences),
        "throughput_median": statistics.median(rates),
        "throughput_min": min(rates),
        "throughput_max": max(rates),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "cold_start_s": cold_start,
        "stsb_spearman": stsb_spearman(encode, data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    artifact = Path(args.artifact).resolve()

    if args.one:
        print(json.dumps(measure(args.one, artifact, args.threads, args.repeats, args.stsb)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    rows = []
    for contender in args.contenders.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            contender,
            "--artifact",
            str(artifact),
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
        ] + (["--stsb", args.stsb] if args.stsb else [])
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            print(f"{contender}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"measured {contender}", file=sys.stderr)

    machine = f"{_cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    base = next((r for r in rows if r["engine"] == "st-torch"), None)
    print(
        f"\nall-MiniLM-L6-v2, STSb test sentences ({rows[0]['sentences'] if rows else 0}), batch 32, "
        f"{args.threads} threads, median of {args.repeats}; {machine}\n"
    )
    print("| engine | sent/s (min–max) | × st-torch | query p50 / p99 ms | cold start s | STSb |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = f"{r['throughput_median'] / base['throughput_median']:.2f}×" if base else "–"
        print(
            f"| {r['engine']} | {r['throughput_median']:.0f} ({r['throughput_min']:.0f}–{r['throughput_max']:.0f}) "
            f"| {ratio} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {r['cold_start_s']:.2f} | {r['stsb_spearman']:.2f} |"
        )
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    with (out_dir / f"encode-{stamp}.jsonl").open("w") as handle:
        for r in rows:
            handle.write(json.dumps({**r, "machine": machine}) + "\n")


if __name__ == "__main__":
    main()
