"""Where fastembed-rt's encode time goes, next to the floor's: host stages and ONNX Runtime's kernels.

    .venv/bin/python benchmarks/profile_encode.py [--artifact benchmarks/.envs/models/artifact] [--variant fp32]

Run ``benchmarks/run.py`` once first (it exports the artifact and cuts the floor's backbone graph).
Over the STSb test sentences, batch 32, 2 threads:

1. fastembed-rt's own stage timers (``last_encode_stats``: tokenize, engine, post-process);
2. ONNX Runtime's profiler, per operator type, on the same token-length-sorted batches for
   fastembed-rt's variant graph (with fastembed-rt's session options) and the floor's backbone graph
   (ONNX Runtime defaults), one after the other, twice.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / ".envs" / "models"


def batches(artifact: Path, texts: list[str], size: int) -> list[dict[str, np.ndarray]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    encs = tok.encode_batch(texts)
    order = np.argsort([-len(e.ids) for e in encs], kind="stable")
    out = []
    for start in range(0, len(texts), size):
        rows = order[start : start + size]
        width = max(len(encs[i].ids) for i in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros_like(ids)
        for j, i in enumerate(rows):
            ids[j, : len(encs[i].ids)] = encs[i].ids
            mask[j, : len(encs[i].ids)] = 1
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return out


def profile_graph(
    graph: Path, output: str, feeds: list[dict[str, np.ndarray]], runtime_options: bool
) -> dict[str, Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 2, 1, 3
    if runtime_options:  # as fastembed_rt.providers.onnxruntime sets them
        so.enable_mem_pattern = False
        so.add_session_config_entry("session.force_spinning_stop", "1")
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for batch in feeds[:3]:
        session.run([output], {n: batch[n] for n in names if n in batch})
    started = time.perf_counter()
    for batch in feeds:
        session.run([output], {n: batch[n] for n in names if n in batch})
    wall = time.perf_counter() - started
    kernels: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
    return {"wall_s": wall, "kernels": kernels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=MODELS / "artifact")
    parser.add_argument("--backbone", type=Path, default=MODELS / "backbone" / "model.onnx")
    parser.add_argument("--variant", default="fp32")
    args = parser.parse_args()

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.stsb import load_stsb

    data = load_stsb("test", "en")
    texts = data.sentences1 + data.sentences2
    model = SentenceTransformer(args.artifact, provider="cpu", variant=args.variant, intra_op_threads=2)
    model.encode(texts[:256])
    model.encode(texts)
    s = model.last_encode_stats
    print(
        f"fastembed-rt cpu/{args.variant}: tokenize+pad {s.tokenize_s:.3f} s, engine {s.run_s:.3f} s, "
        f"post-process {s.postprocess_s:.3f} s: the engine is {100 * s.run_s / s.total_s:.1f} % of encode"
    )
    graph = args.artifact / load_manifest(args.artifact).variant(args.variant).file
    feeds = batches(args.artifact, texts, 32)
    results: dict[str, list[dict[str, Any]]] = {"fastembed-rt": [], "floor": []}
    for _ in range(2):
        results["fastembed-rt"].append(profile_graph(graph, "sentence_embedding", feeds, True))
        results["floor"].append(profile_graph(args.backbone, "token_embeddings", feeds, False))
    for name, runs in results.items():
        kernels = runs[-1]["kernels"]
        total = sum(kernels.values())
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
        print(f"\n{name}: session.run over all batches {walls} s; kernel time by operator type (last run):")
        for op, us in kernels.most_common(10):
            print(f"  {op:<26} {us / 1e6:7.3f} s {100 * us / total:5.1f} %")


if __name__ == "__main__":
    main()
