"""SPLADE export: a sentence-transformers ``SparseEncoder`` (masked LM + ``SpladePooling``) → validated artifact.

The masked-LM model becomes one ONNX graph whose ``[batch, seq, vocab]`` logits never leave it: the
SPLADE head (``kernels.onnx_heads.append_splade_head``) pools them and keeps the top
``max_active_dims`` per text in-graph. The artifact is written only when, on every text of the grid,
with and without pruning, the runtime's active dimensions and weights agree with
``sentence_transformers.SparseEncoder`` on PyTorch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import SCHEMA_VERSION, GraphContract, Manifest, Task
from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.architectures import architecture_config
from fastembed_rt.export.common import library_versions, resolve_model_dir
from fastembed_rt.export.cross_encoder import (
    HeadFidelity,
    export_backbone_of,
    graph_variant,
    staged_artifact,
    tokenizer_info,
)
from fastembed_rt.export.head_variants import (
    MIN_BATCH_INVARIANCE,
    MIN_SPARSE_MEAN_COSINE,
    Validate,
    build_head_int8,
    parse_head_variants,
)
from fastembed_rt.export.validate import held_out_pairs, parity_texts, row_cosines
from fastembed_rt.kernels.heads import SpladeActivation, SpladePoolingStrategy, SpladeSpec
from fastembed_rt.kernels.onnx_heads import MAX_ACTIVE_DIMS, SPARSE_INDICES, SPARSE_VALUES, append_splade_head

__all__ = ["PRUNING_CHECK_K", "SPARSE_ATOL", "SPARSE_RTOL", "export_sparse_encoder"]

logger = logging.getLogger("fastembed_rt.export")

# Gate per dimension: |ours - torch| <= SPARSE_RTOL * |torch| + SPARSE_ATOL. The absolute term only
# forgives dimensions at the activation's edge (weights below 1e-6, where a last-bit difference in
# the logits decides whether relu lets them through).
SPARSE_RTOL = 1e-4
SPARSE_ATOL = 1e-5
# The top-k the grid also checks pruning with (besides the model's own max_active_dims).
PRUNING_CHECK_K = 8


def _load_sparse_encoder(model_dir: Path) -> Any:
    from sentence_transformers import SparseEncoder

    try:
        return SparseEncoder(str(model_dir), device="cpu")
    except Exception as exc:  # sentence-transformers raises many types on a bad directory
        raise ExportError(f"sentence-transformers could not load {model_dir} as a SparseEncoder: {exc}") from exc


def _describe(model_dir: Path, se: Any) -> SpladeSpec:
    modules = [type(m).__name__ for m in se]
    task = getattr(se[0], "transformer_task", None)
    if len(modules) != 2 or modules[1] != "SpladePooling" or task != "fill-mask":
        raise ExportError(
            f"{model_dir}: only SPLADE sparse encoders (a fill-mask Transformer, then SpladePooling) can be "
            f"exported; this one has modules {modules} (transformer_task {task!r}). CSR models "
            "(Pooling + SparseAutoEncoder) are not supported yet."
        )
    pooling = se[1]
    if getattr(pooling, "chunk_size", None):
        logger.info(
            "SpladePooling chunk_size %s only saves PyTorch memory; the graph pools in one pass", pooling.chunk_size
        )
    return SpladeSpec(
        vocab_size=int(se[0].auto_model.config.vocab_size),
        pooling=SpladePoolingStrategy(pooling.pooling_strategy),
        activation=SpladeActivation(pooling.activation_function),
        max_active_dims=se.max_active_dims,
    )


def _torch_dense(se: Any, texts: list[str], prompt: str | None) -> np.ndarray:
    """Unpruned SPLADE weights from sentence-transformers, float32 ``[len(texts), vocab]``."""
    default_k, se.max_active_dims = se.max_active_dims, None
    try:
        # Small batches: torch holds a [batch, seq, vocab] float32 logits tensor (0.5 GB for 8 × 512 × 30,522).
        embeddings = se.encode(
            texts, prompt=prompt, batch_size=2, convert_to_sparse_tensor=False, show_progress_bar=False
        )
    finally:
        se.max_active_dims = default_k
    return np.asarray(embeddings.detach().cpu().float().numpy(), dtype=np.float32)


def _torch_pruned(dense: np.ndarray, k: int) -> np.ndarray:
    """sentence-transformers' own top-k (``util.select_max_active_dims``) of unpruned weights."""
    import torch
    from sentence_transformers.util import select_max_active_dims

    return np.asarray(select_max_active_dims(torch.from_numpy(dense), max_active_dims=k).numpy(), dtype=np.float32)


def validate_sparse_encoder(artifact: Path, se: Any, spec: SpladeSpec) -> HeadFidelity:
    """Weights and active dimensions of the artifact vs ``se`` on the text grid, in batches of 1, 3 and 5.

    Checked without pruning, with ``PRUNING_CHECK_K`` and with the model's ``max_active_dims``; the
    PyTorch side runs each text once and prunes with sentence-transformers' ``select_max_active_dims``,
    exactly as ``SparseEncoder.encode`` does.
    """
    from fastembed_rt.sparse_encoder import SparseEncoder

    runtime = SparseEncoder(artifact, verify="full")
    texts = parity_texts(runtime.max_seq_length)
    ks = sorted({PRUNING_CHECK_K, *([] if spec.max_active_dims is None else [spec.max_active_dims])})
    fidelity = HeadFidelity(extra={"index_mismatches": 0, "pruning_k": ks})
    active_dims: list[int] = []
    for prompt in [None, *sorted({p for p in (se.prompts or {}).values() if p})]:
        unpruned = _torch_dense(se, texts, prompt)
        active_dims.extend((unpruned > 0).sum(axis=1).tolist())
        for k in [None, *ks]:
            reference = unpruned if k is None else _torch_pruned(unpruned, k)
            # Batching is checked unpruned; pruning, a per-row step after it, in batches of 5.
            for size in (1, 3, 5) if k is None else (5,):
                for start in range(0, len(texts), size):
                    batch = texts[start : start + size]
                    ours = runtime.encode(
                        batch,
                        prompt=prompt,
                        batch_size=size,
                        max_active_dims=k or spec.vocab_size,
                        convert_to_sparse_tensor=False,
                    )
                    ref = reference[start : start + size]
                    fidelity.observe(ours, ref)
                    fidelity.checked += len(batch)
                    fidelity.extra["index_mismatches"] += int(((ours > 0) != (ref > 0)).sum())
                    bad = np.abs(ours.astype(np.float64) - ref) > SPARSE_RTOL * np.abs(ref) + SPARSE_ATOL
                    for row in sorted({int(i) for i in np.argwhere(bad)[:, 0]}):
                        dims = np.flatnonzero(bad[row])
                        shown = batch[row] if len(batch[row]) < 30 else batch[row][:27] + "..."
                        fidelity.failures.append(
                            f"batch of {size}, prompt {prompt!r}, max_active_dims {k}, text {shown!r}: "
                            f"{dims.size} dims differ, e.g. dim {dims[0]}: {ours[row, dims[0]]:.7g} vs torch "
                            f"{ref[row, dims[0]]:.7g}"
                        )
    fidelity.extra["mean_active_dims"] = round(float(np.mean(active_dims)), 2)
    runtime.close()
    return fidelity


def int8_validator(se: Any, spec: SpladeSpec, max_seq_length: int) -> Validate:
    """Checks an int8 SPLADE artifact against ``se``'s unpruned weights (see ``head_variants``)."""
    from fastembed_rt.sparse_encoder import SparseEncoder

    texts = parity_texts(max_seq_length) + [t for pair in held_out_pairs(128) for t in pair]
    reference = _torch_dense(se, texts, None)
    alone_count = 16

    def validate(root: Path) -> tuple[dict[str, Any], list[str]]:
        runtime = SparseEncoder(root, variant="int8", provider="cpu", verify="full")
        try:
            ours = runtime.encode(texts, batch_size=32, max_active_dims=spec.vocab_size, convert_to_sparse_tensor=False)
            alone = runtime.encode(
                texts[:alone_count], batch_size=1, max_active_dims=spec.vocab_size, convert_to_sparse_tensor=False
            )
        finally:
            runtime.close()
        cos = row_cosines(ours, reference)
        active, ref_active = ours > 0, reference > 0
        union = (active | ref_active).sum(axis=1)
        jaccard = np.divide((active & ref_active).sum(axis=1), union, out=np.ones(len(texts)), where=union > 0)
        invariance = float(row_cosines(alone, ours[:alone_count]).min())
        fidelity = {
            "texts": len(texts),
            "min_cosine": round(float(cos.min()), 6),
            "mean_cosine": round(float(cos.mean()), 6),
            "mean_active_dims_jaccard": round(float(jaccard.mean()), 4),
            "mean_active_dims": round(float(active.sum(axis=1).mean()), 2),
            "mean_active_dims_torch": round(float(ref_active.sum(axis=1).mean()), 2),
            "batch_invariance_min_cosine": round(invariance, 6),
        }
        misses = []
        if not cos.mean() >= MIN_SPARSE_MEAN_COSINE:
            misses.append(f"mean cosine vs PyTorch {cos.mean():.6f} < {MIN_SPARSE_MEAN_COSINE}")
        if not invariance >= MIN_BATCH_INVARIANCE:
            misses.append(f"weights depend on batch neighbours: min cosine alone vs batched {invariance:.6f}")
        return fidelity, misses

    return validate


def export_sparse_encoder(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    variants: str | Sequence[str] | None = None,
) -> Manifest:
    """Export a sentence-transformers SPLADE SparseEncoder to a fastembed-rt artifact at ``out_dir``.

    Graph inputs: the architecture's plus ``max_active_dims`` int64 ``[1]``; outputs
    ``sparse_indices`` int64 and ``sparse_values`` float32, ``[batch, K]``. Written only if every
    weight of the grid is within ``SPARSE_RTOL * |torch| + SPARSE_ATOL`` of sentence-transformers.

    Args:
        model: a local model directory (sentence-transformers SparseEncoder, or a plain transformers
            ``*ForMaskedLM``, which sentence-transformers loads with max-pooling SPLADE) or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        variants: ``fp32`` (default) and/or ``int8`` (``head_variants``: shipped only within its gate).
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model, modules or variant; ParityError: the graph misses its gate
        (lists every failure).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    plans = parse_head_variants(variants, "sparse")
    model_dir = resolve_model_dir(model, revision, token)
    se = _load_sparse_encoder(model_dir)
    spec = _describe(model_dir, se)
    with staged_artifact(out, overwrite) as tmp:
        backbone_path = tmp / "onnx" / "backbone.onnx"
        model_type = export_backbone_of(se, backbone_path, "logits")
        variant = graph_variant(backbone_path, tmp, lambda m: append_splade_head(m, spec).to_dict())
        rows = ["batch", "active"]
        manifest = Manifest(
            root=tmp,
            task=Task.SPARSE,
            source={
                "model": str(model),
                "revision": revision,
                "architecture": model_type,
                "modules": [type(m).__name__ for m in se],
                "library_versions": library_versions(),
            },
            tokenizer=tokenizer_info(se, tmp),
            graph=GraphContract(
                inputs=(*architecture_config(model_type).inputs, MAX_ACTIVE_DIMS),
                outputs={
                    SPARSE_INDICES: {"dtype": "int64", "dims": rows},
                    SPARSE_VALUES: {"dtype": "float32", "dims": rows},
                },
            ),
            stages={"splade": spec.to_dict()},
            similarity_fn=str(se.similarity_fn_name),
            dim=spec.vocab_size,
            variants=(variant,),
            schema_version=SCHEMA_VERSION,
        )
        manifest.write()
        fidelity = validate_sparse_encoder(tmp, se, spec)
        if fidelity.failures:
            raise ParityError(
                f"exported graph of {model} misses the fp32 gate (|diff| <= {SPARSE_RTOL}·|torch| + {SPARSE_ATOL}) "
                f"on {len(fidelity.failures)} checks; nothing was written:\n  " + "\n  ".join(fidelity.failures),
                fidelity.failures,
            )
        manifest = replace(manifest, variants=(replace(variant, fidelity=fidelity.to_dict()),))
        manifest.write()
        if "int8" in plans:
            manifest = build_head_int8(
                manifest,
                backbone_path,
                lambda m: append_splade_head(m, spec).to_dict(),
                int8_validator(se, spec, int(se.max_seq_length)),
            )
        backbone_path.unlink()
    logger.info("exported sparse encoder %s to %s in %.1f s", model, out, time.perf_counter() - started)
    return replace(manifest, root=out)
