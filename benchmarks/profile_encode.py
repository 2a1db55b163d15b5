"""Where fastembed-rt's encode time goes, next to the floor's, and what ONNX Runtime's GEMMs allow at best.

    .venv/bin/python benchmarks/profile_encode.py [--artifact benchmarks/.envs/models/artifact] [--variant fp32]

Run ``benchmarks/run.py`` once first (it exports the artifact and cuts the floor's backbone graph).
Over the STSb test sentences, batch 32, 2 threads:

1. fastembed-rt's own stage timers (``last_encode_stats``: tokenize, engine, post-process);
2. ONNX Runtime's profiler, per operator type, on the same token-length-sorted batches for
   fastembed-rt's variant graph (opened as its engine opens it: ``session_options``, the same disabled
   fusions) and the floor's backbone graph (ONNX Runtime defaults), one after the other, twice;
3. the GEMM ceiling: every matrix product of that workload, run alone on MLAS (ONNX Runtime's CPU
   kernels) at its real shape, one operator per session, best of ``--repeats``, summed: the weight
   products from the fp32 graph (in fp32, and as the int8 variant runs them: u8 × s8
   ``MatMulIntegerToFloat``, exact u8 × u8 where the CPU has no VNNI; and with weights in [-64, 64],
   which stay u8 × s8 there, exact) and attention's ``Q·Kᵀ`` and ``A·V`` in fp32. A graph computing
   these products on these kernels takes at least that long: the floor's session time over the fp32
   ceiling bounds what any fp32 graph can lead the floor by on this CPU (up to what merging products
   into wider ones, e.g. Q, K and V into one, gains in GEMM efficiency).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# The ceilings: fp32; int8 weight products over the full int8 range; and over [-64, 64], where ONNX Runtime keeps
# its fast u8 × s8 kernel even with session.x64quantprecision (a pair of products cannot saturate 16 bits).
PRECISIONS = ("fp32", "int8", "int8 ±64")
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


def open_session(graph: Path, engine: bool, profile: bool = False) -> Any:
    """An ONNX Runtime session on ``graph``: opened as fastembed-rt's ``cpu`` engine opens it (``engine``) or with
    ONNX Runtime's defaults; with its profiler on when ``profile`` (which slows the calls: time without it)."""
    import onnxruntime as ort

    from fastembed_rt.providers import ProviderOptions
    from fastembed_rt.providers.onnxruntime import OnnxRuntimeCPU, session_options

    if engine:
        so, disabled = session_options(ProviderOptions(intra_op_threads=2)), list(OnnxRuntimeCPU.DISABLED_OPTIMIZERS)
    else:
        so, disabled = ort.SessionOptions(), []
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 2, 1, 3
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    return ort.InferenceSession(
        str(graph), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or None
    )


def timed_pass(session: Any, output: str, feeds: list[dict[str, np.ndarray]]) -> float:
    """Seconds of ``session.run`` over every batch of ``feeds``, after a warm-up on the first three."""
    names = [i.name for i in session.get_inputs()]
    for batch in feeds[:3]:
        session.run([output], {n: batch[n] for n in names if n in batch})
    started = time.perf_counter()
    for batch in feeds:
        session.run([output], {n: batch[n] for n in names if n in batch})
    return time.perf_counter() - started


def kernel_times(
    graph: Path, output: str, feeds: list[dict[str, np.ndarray]], engine: bool
) -> collections.Counter[str]:
    """ONNX Runtime's kernel time per operator type (µs) over one profiled pass of ``feeds``."""
    session = open_session(graph, engine, profile=True)
    timed_pass(session, output, feeds)
    kernels: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
    return kernels


@dataclass(frozen=True)
class Gemms:
    """The matrix products of an encoder: ``weights``, (K, N) of each product with a weight, in graph order;
    ``layers`` attention layers of ``heads`` heads over ``width`` channels (``Q·Kᵀ`` and ``A·V`` each; the
    width is the first weight product's input width, the hidden size of a BERT-style encoder)."""

    weights: list[tuple[int, int]]
    layers: int
    heads: int
    width: int


def find_gemms(artifact: Path) -> Gemms:
    """The products of the artifact's fp32 graph (unfused: one MatMul per weight, one Softmax per layer); the
    head count from a fused attention node of any ONNX variant (1 when none has one: same FLOPs)."""
    import onnx

    from fastembed_rt.artifact import load_manifest

    manifest = load_manifest(artifact)
    graph = onnx.load(str(artifact / manifest.variant("fp32").file), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    weights = [
        (int(shapes[node.input[1]][0]), int(shapes[node.input[1]][1]))
        for node in graph.node
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2
    ]
    heads = next(
        (
            next(a.i for a in node.attribute if a.name == "num_heads")
            for variant in manifest.variants
            if variant.format == "onnx" and variant.name != "fp32"
            for node in onnx.load(str(artifact / variant.file), load_external_data=False).graph.node
            if node.op_type in ("Attention", "MultiHeadAttention")
        ),
        1,
    )
    layers = sum(node.op_type == "Softmax" for node in graph.node)
    return Gemms(weights, layers, heads, weights[0][0])


def _one_op_session(node: Any, inputs: list[Any], initializers: list[Any], threads: int) -> Any:
    """A session holding one operator, opened with fastembed-rt's engine options (x64quantprecision included)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from fastembed_rt.providers import ProviderOptions
    from fastembed_rt.providers.onnxruntime import session_options

    output = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "gemm", inputs, [output], initializers)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    so = session_options(ProviderOptions(intra_op_threads=threads))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _best_run(session: Any, feeds: dict[str, np.ndarray], repeats: int) -> float:
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - started)
    return best


class GemmCeiling:
    """Every matrix product of an encoder, one ONNX Runtime session each (weight products in fp32 and in int8 with
    full-range and [-64, 64] weights, the attention product in fp32), to time a workload's products alone."""

    def __init__(self, gemms: Gemms, threads: int) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.gemms = gemms
        self.rng = np.random.default_rng(0)
        f32, u8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8
        # precision -> (session, how many weights of this shape, (K, N))
        self.sessions: dict[str, list[tuple[Any, int, tuple[int, int]]]] = {name: [] for name in PRECISIONS}
        for (k, n), count in collections.Counter(gemms.weights).items():
            weight = numpy_helper.from_array(self.rng.standard_normal((k, n), np.float32) * 0.05, "w")
            node = helper.make_node("MatMul", ["x", "w"], ["y"])
            x = helper.make_tensor_value_info("x", f32, ["rows", k])
            self.sessions["fp32"].append((_one_op_session(node, [x], [weight], threads), count, (k, n)))
            for name, limit in (("int8", 127), ("int8 ±64", 64)):
                int8 = [
                    numpy_helper.from_array(self.rng.integers(-limit, limit + 1, (k, n), dtype=np.int8), "w"),
                    numpy_helper.from_array(np.array(1.0, np.float32), "a_scale"),
                    numpy_helper.from_array(np.full(n, 0.01, np.float32), "w_scale"),
                    numpy_helper.from_array(np.array(128, np.uint8), "a_zero_point"),
                ]
                inputs = ["x", "w", "a_scale", "w_scale", "a_zero_point"]
                node = helper.make_node("MatMulIntegerToFloat", inputs, ["y"], domain="com.microsoft")
                x = helper.make_tensor_value_info("x", u8, ["rows", k])
                self.sessions[name].append((_one_op_session(node, [x], int8, threads), count, (k, n)))
        a = helper.make_tensor_value_info("a", f32, ["batch", "heads", "rows", "inner"])
        b = helper.make_tensor_value_info("b", f32, ["batch", "heads", "inner", "columns"])
        self.attention = _one_op_session(helper.make_node("MatMul", ["a", "b"], ["y"]), [a, b], [], threads)

    def measure(self, shapes: list[tuple[int, int]], repeats: int) -> dict[str, float]:
        """Seconds the products of batches of ``shapes`` ((batch, tokens) as fed to the graph) take alone, each
        the best of ``repeats`` runs: ``fp32`` (every product in fp32), ``int8`` and ``int8 ±64`` (the weight
        products in int8, attention in fp32) and ``attention`` (its part of each)."""
        gemms, rng = self.gemms, self.rng
        head = gemms.width // gemms.heads
        totals = dict.fromkeys([*PRECISIONS, "attention"], 0.0)
        for (batch, tokens), count in collections.Counter(shapes).items():
            for name in PRECISIONS:
                dtype = np.float32 if name == "fp32" else np.uint8
                for session, weights, (k, _) in self.sessions[name]:
                    feed = rng.integers(0, 256, (batch * tokens, k)).astype(dtype)
                    totals[name] += count * weights * _best_run(session, {"x": feed}, repeats)
            scores = {
                "a": rng.standard_normal((batch, gemms.heads, tokens, head), np.float32),
                "b": rng.standard_normal((batch, gemms.heads, head, tokens), np.float32),
            }
            context = {
                "a": rng.standard_normal((batch, gemms.heads, tokens, tokens), np.float32),
                "b": rng.standard_normal((batch, gemms.heads, tokens, head), np.float32),
            }
            seconds = sum(_best_run(self.attention, feeds, repeats) for feeds in (scores, context))
            totals["attention"] += count * gemms.layers * seconds
        for name in PRECISIONS:
            totals[name] += totals["attention"]
        return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=MODELS / "artifact")
    parser.add_argument("--backbone", type=Path, default=MODELS / "backbone" / "model.onnx")
    parser.add_argument("--variant", default="fp32", help="the fp32 variant to profile")
    parser.add_argument(
        "--int8-variant", default="int8", help="timed against the int8 ceiling (int8-avx2: ±64), if present"
    )
    parser.add_argument("--rounds", type=int, default=3, help="unprofiled passes per graph, interleaved; best counts")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each product alone; best counts")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.stsb import load_stsb

    data = load_stsb("test", "en", args.stsb)
    texts = data.sentences1 + data.sentences2
    print(f"{this_cpu().describe()}, 2 threads, batch 32, {len(texts)} STSb test sentences")
    model = SentenceTransformer(args.artifact, provider="cpu", variant=args.variant, intra_op_threads=2)
    model.encode(texts[:256])
    model.encode(texts)
    s = model.last_encode_stats
    print(
        f"fastembed-rt cpu/{args.variant}: tokenize+pad {s.tokenize_s:.3f} s, engine {s.run_s:.3f} s, "
        f"post-process {s.postprocess_s:.3f} s: the engine is {100 * s.run_s / s.total_s:.1f} % of encode"
    )
    model.close()
    manifest = load_manifest(args.artifact)
    feeds = batches(args.artifact, texts, 32)
    graphs = {  # name -> (graph file, opened as fastembed-rt's engine opens it, the ceiling it is held to)
        f"fastembed-rt cpu/{args.variant}": (args.artifact / manifest.variant(args.variant).file, True, "fp32"),
        "floor": (args.backbone, False, "fp32"),
    }
    if any(v.name == args.int8_variant for v in manifest.variants):
        quantized = manifest.variant(args.int8_variant)
        # int8-avx2's weights lie in [-64, 64]: held to that ceiling
        held_to = "int8 ±64" if quantized.stage_counts.get("weight_limit", 127) <= 64 else "int8"
        graphs[f"fastembed-rt cpu/{args.int8_variant}"] = (args.artifact / quantized.file, True, held_to)
    outputs = {True: "sentence_embedding", False: "token_embeddings"}
    for name, (graph, engine, _) in graphs.items():
        kernels = [kernel_times(graph, outputs[engine], feeds, engine) for _ in range(2)][-1]
        total = sum(kernels.values())
        print(f"\n{name}: kernel time by operator type (second of two profiled passes):")
        for op, us in kernels.most_common(10):
            print(f"  {op:<26} {us / 1e6:7.3f} s {100 * us / total:5.1f} %")

    # The ceiling is timed in each round beside the graphs: this host's speed drifts by 10-20 % over minutes.
    shapes = [batch["input_ids"].shape for batch in feeds]
    ceiling = GemmCeiling(find_gemms(args.artifact), 2)
    walls: dict[str, list[float]] = {name: [] for name in graphs}
    ceilings: list[dict[str, float]] = []
    sessions = {name: (open_session(graph, engine), outputs[engine]) for name, (graph, engine, _) in graphs.items()}
    for _ in range(args.rounds):
        for name, (session, output) in sessions.items():
            walls[name].append(timed_pass(session, output, feeds))
        ceilings.append(ceiling.measure(shapes, args.repeats))
    best = {name: min(times) for name, times in walls.items()}
    best_ceiling = {key: min(round_[key] for round_ in ceilings) for key in [*PRECISIONS, "attention"]}
    floor = best["floor"]
    print(
        f"\nsession.run over the same batches and the GEMM ceiling, {args.rounds} interleaved rounds: best time; "
        f"GEMM share = the ceiling over the graph's time in the same round, median (attention "
        f"{best_ceiling['attention']:.2f} s of each ceiling):\n"
    )
    print("| graph | seconds | sentences/s | × floor | GEMM share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (_, _, precision) in graphs.items():
        share = float(np.median([c[precision] / wall for c, wall in zip(ceilings, walls[name], strict=True)]))
        row = f"{best[name]:.2f} | {len(texts) / best[name]:.0f} | {floor / best[name]:.2f}×"
        print(f"| {name} | {row} | {100 * share:.0f} % ({precision}) |")
    labels = {
        "fp32": "fp32",
        "int8": "int8 weight products, fp32 attention",
        "int8 ±64": "the same, weights in [-64, 64]",
    }
    for precision, label in labels.items():
        seconds = best_ceiling[precision]
        print(f"| GEMMs alone, {label} | {seconds:.2f} | {len(texts) / seconds:.0f} | {floor / seconds:.2f}× | |")
    lead = float(np.median([wall / c["fp32"] for c, wall in zip(ceilings, walls["floor"], strict=True)]))
    int8, narrow = (float(np.median([c["fp32"] / c[key] for c in ceilings])) for key in ("int8", "int8 ±64"))
    print(
        f"\nAn fp32 graph on these kernels leads the floor by at most {floor / best_ceiling['fp32']:.2f}× here "
        f"(best passes; {lead:.2f}× as the median of the rounds). Medians of the rounds: int8 weight products make "
        f"the products {int8:.2f}× faster than fp32, {narrow:.2f}× with weights in [-64, 64]."
    )


if __name__ == "__main__":
    main()
