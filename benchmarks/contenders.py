"""How each contender loads and encodes, run inside its own process and environment.

Imports only the standard library and numpy at the top: the same file runs in the development venv
(fastembed-rt, the floor) and in the contenders' venvs (``benchmarks/envs.py``). Every loader gets
a spec (a dict from ``run.py``), the thread budget and the batch size, and returns an ``Encoder``:
``encode(texts) -> float32 [n, dim]`` in input order, plus the real and padded tokens it fed its
engine, counted where the contender pads (its tokenizer call or its session's inputs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LOADERS", "Encoder", "floor_spec", "run_job", "versions", "warm_engine_caches"]


@dataclass
class Encoder:
    encode: Callable[[list[str]], np.ndarray]
    real_tokens: int = 0
    padded_tokens: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    def count(self, mask: Any) -> None:
        """Add one padded batch's attention mask (numpy or torch) to the token counters."""
        self.real_tokens += int(mask.sum())
        self.padded_tokens += int(np.prod(tuple(mask.shape)))


def versions(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def load_fastembed_rt(spec: dict[str, Any], threads: int, batch: int) -> Encoder:
    from fastembed_rt import SentenceTransformer
    from fastembed_rt.providers import ProviderOptions

    model = SentenceTransformer(
        spec["artifact"],
        provider=spec["provider"],
        variant=spec["variant"],
        intra_op_threads=threads,
        provider_options=ProviderOptions(streams=spec.get("streams"), cache=spec.get("cache", True)),
    )

    def encode(texts: list[str]) -> np.ndarray:
        out = model.encode(texts, batch_size=batch)
        stats = model.last_encode_stats
        encoder.real_tokens += stats.real_tokens
        encoder.padded_tokens += stats.padded_tokens
        return np.asarray(out)

    encoder = Encoder(encode, versions=versions("fastembed-rt", "onnxruntime", "openvino", "tokenizers"))
    return encoder


def load_floor(spec: dict[str, Any], threads: int, batch: int) -> Encoder:
    """What a careful engineer writes by hand: tokenizers + onnxruntime, inputs sorted by token length."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["backbone"], so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(spec["tokenizer"])
    tok.no_padding()  # the model's tokenizer.json pads every text to 128 tokens
    tok.enable_truncation(spec["max_seq_length"])
    names = [i.name for i in session.get_inputs()]

    def encode(texts: list[str]) -> np.ndarray:
        encs = tok.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        out = np.empty((len(texts), spec["dim"]), np.float32)
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            width = max(len(encs[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for j, i in enumerate(rows):
                ids[j, : len(encs[i].ids)] = encs[i].ids
                mask[j, : len(encs[i].ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, {n: feeds[n] for n in names})[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
            encoder.count(mask)
        return out

    encoder = Encoder(encode, versions=versions("onnxruntime", "tokenizers"))
    return encoder


def load_sentence_transformers(spec: dict[str, Any], threads: int, batch: int) -> Encoder:
    """sentence-transformers on torch, or on its onnx / openvino backend from a pre-exported file."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    kwargs: dict[str, Any] = {}
    if spec["backend"] == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        kwargs = {"file_name": spec["file_name"], "provider": "CPUExecutionProvider", "session_options": so}
    elif spec["backend"] == "openvino":
        kwargs = {"file_name": spec["file_name"], "ov_config": {"INFERENCE_NUM_THREADS": str(threads)}}
    model = SentenceTransformer(spec["model_dir"], device="cpu", backend=spec["backend"], model_kwargs=kwargs or None)
    # sentence-transformers 6 pads in ``preprocess``, 5.x in ``tokenize``: count what it feeds.
    hook = "preprocess" if hasattr(model, "preprocess") else "tokenize"
    original = getattr(model, hook)

    def counted(*args: Any, **kw: Any) -> Any:
        features = original(*args, **kw)
        encoder.count(features["attention_mask"])
        return features

    setattr(model, hook, counted)

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False))

    encoder = Encoder(
        encode,
        versions=versions(
            "sentence-transformers",
            "transformers",
            "torch",
            "optimum",
            "optimum-onnx",
            "optimum-intel",
            "onnxruntime",
            "openvino",
        ),
    )
    return encoder


def load_fastembed(spec: dict[str, Any], threads: int, batch: int) -> Encoder:
    """qdrant's fastembed on a local ONNX export (no hub): a custom model with mean pooling."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "local/all-MiniLM-L6-v2"
    if name not in {m["model"] for m in TextEmbedding.list_supported_models()}:
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=name),
            dim=spec["dim"],
            model_file=spec["model_file"],
        )
    model = TextEmbedding(name, specific_model_path=spec["model_dir"], threads=threads)
    session = model.model.model  # fastembed's ONNX Runtime session: count the masks it is fed

    class CountingSession:
        def __getattr__(self, attr: str) -> Any:
            return getattr(session, attr)

        def run(self, output_names: Any, feeds: dict[str, np.ndarray], *args: Any) -> Any:
            encoder.count(feeds["attention_mask"])
            return session.run(output_names, feeds, *args)

    model.model.model = CountingSession()

    def encode(texts: list[str]) -> np.ndarray:
        return np.stack(list(model.embed(texts, batch_size=batch)))

    encoder = Encoder(encode, versions=versions("fastembed", "onnxruntime", "tokenizers"))
    return encoder


LOADERS: dict[str, Callable[[dict[str, Any], int, int], Encoder]] = {
    "fastembed-rt": load_fastembed_rt,
    "floor": load_floor,
    "sentence-transformers": load_sentence_transformers,
    "fastembed": load_fastembed,
}


def floor_spec(backbone: Path, graph: str, max_seq_length: int, dim: int) -> dict[str, Any]:
    """``load_floor``'s spec for ``graph`` (``model.onnx``, or its uint8 ``model_uint8.onnx``) in the folder
    ``run.py`` cuts the backbone into, beside its ``tokenizer.json``."""
    return {
        "kind": "floor",
        "backbone": str(backbone / graph),
        "tokenizer": str(backbone / "tokenizer.json"),
        "max_seq_length": max_seq_length,
        "dim": dim,
    }


def warm_engine_caches(specs: Iterable[dict[str, Any]], threads: int, batch: int, text: str) -> None:
    """Load each fastembed-rt spec once (here, before the measured processes), so that its engine's caches (ONNX
    Runtime's optimized, pre-packed graph; OpenVINO's compiled model) exist: a measured process then starts as any
    start of the model on a machine after its first. Specs with ``cache`` False are left alone."""
    for spec in specs:
        if spec.get("kind") == "fastembed-rt" and spec.get("cache", True):
            LOADERS["fastembed-rt"](spec, threads, batch).encode([text])


def run_job(script: str, job: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run the Python ``script`` in a fresh process of this interpreter, with ``job`` written as JSON to ``folder``
    and its path as the argument; its last stdout line, parsed. ``RuntimeError`` with its last stderr line when
    it fails (a process per run: each contender's memory and start-up are its own)."""
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
