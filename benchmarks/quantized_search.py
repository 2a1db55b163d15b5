"""Memory, search time and retrieval agreement of quantized embeddings against float search.

    .venv/bin/python benchmarks/quantized_search.py [--artifact artifacts/all-MiniLM-L6-v2]

Corpus: every distinct STSb sentence (train + dev + test, English) except the queries; queries:
the distinct first sentences of the STSb test pairs. All codes come from the artifact's graph
(``encode(precision=...)``, calibrated int8 ranges). Recall@10 is the overlap of each method's
top 10 with exact float32 cosine search's top 10, averaged over queries.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt import SentenceTransformer
from fastembed_rt.bench import machine_name
from fastembed_rt.stsb import load_stsb
from fastembed_rt.util import dot_score, semantic_search, semantic_search_quantized

TOP_K = 10


def _ids(hits: list[list[Any]]) -> list[set[int]]:
    return [{int(h["corpus_id"]) for h in row} for row in hits]


def _recall(found: list[set[int]], truth: list[set[int]]) -> float:
    return float(np.mean([len(f & t) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    splits = [load_stsb(s, "en", args.stsb) for s in ("train", "dev", "test")]
    queries = sorted(set(splits[2].sentences1))
    query_set = set(queries)
    corpus = sorted({t for s in splits for t in s.sentences1 + s.sentences2} - query_set)
    model = SentenceTransformer(Path(args.artifact))

    t0 = time.perf_counter()
    corpus_f32 = model.encode(corpus)
    encode_s = time.perf_counter() - t0
    corpus_i8 = model.encode(corpus, precision="int8")
    corpus_ub = model.encode(corpus, precision="ubinary")
    q_f32 = model.encode(queries)
    q_ub = model.encode(queries, precision="ubinary")

    rows: list[tuple[str, int, float]] = []

    def timed(name: str, bytes_per_vector: int, search: Any) -> list[set[int]]:
        start = time.perf_counter()
        hits = search()
        elapsed = time.perf_counter() - start
        found = _ids(hits)
        rows.append((name, bytes_per_vector, elapsed))
        return found

    truth = timed(
        "float32 exact (cosine)", 4 * corpus_f32.shape[1], lambda: semantic_search(q_f32, corpus_f32, top_k=TOP_K)
    )
    results = {
        "int8 (float query · int8 codes)": timed(
            "int8 (float query · int8 codes)",
            corpus_i8.shape[1],
            # exhaustive: float query against int8 codes (stored as int8, cast per chunk to multiply)
            lambda: semantic_search(q_f32, corpus_i8.astype(np.float32), top_k=TOP_K, score_function=dot_score),
        ),
        "binary (Hamming only)": timed(
            "binary (Hamming only)",
            corpus_ub.shape[1],
            lambda: semantic_search_quantized(q_ub, corpus_ub, top_k=TOP_K),
        ),
        "binary + int8 rescore (×4)": timed(
            "binary + int8 rescore (×4)",
            corpus_ub.shape[1] + corpus_i8.shape[1],
            lambda: semantic_search_quantized(
                q_f32,
                corpus_ub,
                top_k=TOP_K,
                rescore_multiplier=4,
                corpus_rescore=corpus_i8,
                rescore_precision="int8",
            ),
        ),
        "binary + float32 rescore (×4)": timed(
            "binary + float32 rescore (×4)",
            corpus_ub.shape[1] + 4 * corpus_f32.shape[1],
            lambda: semantic_search_quantized(
                q_f32,
                corpus_ub,
                top_k=TOP_K,
                rescore_multiplier=4,
                corpus_rescore=corpus_f32,
                rescore_precision="float32",
            ),
        ),
    }
    recalls = {"float32 exact (cosine)": 1.0, **{name: _recall(found, truth) for name, found in results.items()}}

    print(
        f"\n{len(queries)} queries × {len(corpus)} corpus sentences (STSb en, all splits), top {TOP_K}; "
        f"{machine_name()}, corpus encoded in {encode_s:.1f} s\n"
    )
    print("| method | bytes / vector | index MB | search s (all queries) | recall@10 vs float |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, size, elapsed in rows:
        print(f"| {name} | {size} | {size * len(corpus) / 1e6:.2f} | {elapsed:.3f} | {recalls[name]:.3f} |")


if __name__ == "__main__":
    main()
