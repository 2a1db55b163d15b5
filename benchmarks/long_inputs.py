"""Why the long-input policy matters: retrieval over documents longer than the model reads.

The set (rebuild it from the STSb test split with the same seed): for every test pair with gold
score >= 4.0, in file order, the query is ``sentence1`` and its document is ``sentence2`` put at a
uniformly random position among ``--filler`` (default 40) other test sentences, drawn without
replacement from the split's ``sentence2`` column minus that pair's own (``random.Random(seed)``, one
generator for the whole set, seed 0 by default), joined with single spaces. Every document is far
past all-MiniLM-L6-v2's 256 tokens, so truncation keeps the answer only when it lands early.

Retrieval: each query against all documents by cosine similarity, recall@1 and MRR@10, for
- ``truncate``: one embedding per document, cut at 256 tokens (every peer's default);
- ``chunk``: one embedding per document, its windows pooled (``encode(long_inputs="chunk")``);
- ``chunk max-sim``: every window kept (``encode_chunks``), a document scored by its best window, with
  the model's 256-token windows and with smaller ones (``--small-windows``, overlap a quarter of a
  window at most) as retrieval systems that store several vectors per document use;
plus the document encoding throughput (document tokens/s) of each.

    .venv/bin/python benchmarks/long_inputs.py --artifact artifacts/all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

from fastembed_rt import SentenceTransformer
from fastembed_rt.bench import machine_name
from fastembed_rt.stsb import load_stsb


def build_set(seed: int, filler: int, stsb: str | None) -> tuple[list[str], list[str]]:
    """``(queries, documents)``: query ``i``'s answer is document ``i`` (see the module docstring)."""
    split = load_stsb("test", path=stsb)
    rng = random.Random(seed)
    pool = list(split.sentences2)
    queries, documents = [], []
    for i, (query, answer, score) in enumerate(zip(split.sentences1, split.sentences2, split.scores)):
        if score < 4.0:
            continue
        others = rng.sample([s for j, s in enumerate(pool) if j != i], filler)
        others.insert(rng.randrange(filler + 1), answer)
        queries.append(query)
        documents.append(" ".join(others))
    return queries, documents


def metrics(scores: np.ndarray) -> tuple[float, float]:
    """recall@1 and MRR@10 of ``scores[q, d]`` where document ``q`` is query ``q``'s answer."""
    ranks = (scores > scores[np.arange(len(scores)), np.arange(len(scores))][:, None]).sum(axis=1) + 1
    recall1 = float(np.mean(ranks == 1))
    mrr10 = float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0)))
    return recall1, mrr10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filler", type=int, default=40, help="other sentences around each answer")
    parser.add_argument("--overlap", type=int, default=32, help="chunk_overlap in tokens")
    parser.add_argument("--stsb", default=None, help="STSb folder (default: the loader's search)")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument(
        "--small-windows", default="128,64", type=lambda v: [int(x) for x in v.split(",") if x], help="also max-sim"
    )
    args = parser.parse_args()

    queries, documents = build_set(args.seed, args.filler, args.stsb)
    model = SentenceTransformer(args.artifact, provider=args.provider, warmup=True)
    limit = model.max_seq_length
    tokens = sum(model.count_tokens(documents))
    query_embeddings = model.encode(queries)
    rows = []

    started = time.perf_counter()
    truncated = model.encode(documents)
    rows.append(("truncate", query_embeddings @ truncated.T, time.perf_counter() - started))

    started = time.perf_counter()
    pooled = model.encode(documents, long_inputs="chunk", chunk_overlap=args.overlap)
    rows.append(("chunk (pooled)", query_embeddings @ pooled.T, time.perf_counter() - started))
    windows = model.last_encode_stats.windows

    for window in (model.max_seq_length, *args.small_windows):
        model.max_seq_length = window
        started = time.perf_counter()
        chunks = model.encode_chunks(documents, chunk_overlap=min(args.overlap, window // 4))
        window_scores = query_embeddings @ chunks.embeddings.T
        best = np.full((len(queries), len(documents)), -np.inf, dtype=np.float32)
        for d in range(len(documents)):
            best[:, d] = window_scores[:, chunks.text_index == d].max(axis=1)
        rows.append((f"chunk max-sim, {window}-token windows", best, time.perf_counter() - started))

    print(
        f"{len(queries)} queries, {len(documents)} documents of {tokens / len(documents):.0f} tokens on average "
        f"({windows} windows of <= {limit}, overlap {args.overlap}); seed {args.seed}, "
        f"filler {args.filler}; {args.provider}/{model.variant}; {machine_name()}\n"
    )
    print("| policy | recall@1 | MRR@10 | document tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, scores, seconds in rows:
        recall1, mrr10 = metrics(scores)
        print(f"| {name} | {recall1:.3f} | {mrr10:.3f} | {tokens / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
