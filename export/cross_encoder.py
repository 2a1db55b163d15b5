"""Cross-encoder export: a sentence-transformers ``CrossEncoder`` (sequence classification) → validated artifact.

The classifier model (backbone and its head, e.g. BERT's pooler + linear, ELECTRA's two-layer head)
becomes one ONNX graph with the ``logits`` output; the activation sentence-transformers applies by
default (``CrossEncoder.activation_fn``: from the model's config, else sigmoid for one label and
identity for more) is fused in as the ``scores`` output. The artifact is written only when the
runtime's scores and logits agree with PyTorch on every pair of the grid.

The staging helpers here (``staged_artifact``, ``tokenizer_info``, ``graph_variant``) are shared
with the SPLADE export in ``sparse_encoder``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import (
    SCHEMA_VERSION,
    GraphContract,
    Manifest,
    Task,
    TokenizerInfo,
    Variant,
    VariantFormat,
    VariantPrecision,
    file_sha256,
)
from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.architectures import architecture_config
from fastembed_rt.export.backbone import export_backbone
from fastembed_rt.export.common import library_versions, resolve_model_dir, write_tokenizer
from fastembed_rt.export.head_variants import MIN_SCORE_SPEARMAN, Validate, build_head_int8, parse_head_variants
from fastembed_rt.export.validate import held_out_pairs, parity_texts
from fastembed_rt.kernels.heads import ClassifierActivation, ClassifierHeadSpec
from fastembed_rt.kernels.onnx_heads import LOGITS, SCORES, append_classifier_head

__all__ = [
    "SCORE_ATOL",
    "SCORE_RTOL",
    "HeadFidelity",
    "export_cross_encoder",
    "graph_variant",
    "parity_pairs",
    "staged_artifact",
    "tokenizer_info",
]

logger = logging.getLogger("fastembed_rt.export")

# Gate on logits and scores: |ours - torch| <= SCORE_ATOL + SCORE_RTOL * |torch|.
SCORE_ATOL = 1e-4
SCORE_RTOL = 1e-4
# sentence-transformers saves Softmax() without dim and torch warns on every call; the label axis
# is what it means for [batch, labels] logits (and what we fuse).
_SOFTMAX_WARNING = "Implicit dimension choice for softmax"


@dataclass
class HeadFidelity:
    """Agreement of a head graph with PyTorch: the largest differences seen and every failing check."""

    checked: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def observe(self, ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Record the differences of two arrays; returns the per-element relative difference."""
        diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
        rel = diff / np.maximum(np.abs(ref.astype(np.float64)), 1e-12)
        if diff.size:
            self.max_abs_diff = max(self.max_abs_diff, float(diff.max()))
            self.max_rel_diff = max(self.max_rel_diff, float(rel.max()))
        return rel

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "max_rel_diff": float(f"{self.max_rel_diff:.3g}"),
            **self.extra,
        }


@contextlib.contextmanager
def staged_artifact(out: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh temporary directory beside ``out`` (with ``onnx/``) that becomes ``out`` on success.

    On any exception the temporary directory is removed and ``out`` is left as it was.
    """
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "onnx").mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tokenizer_info(st_model: Any, artifact: Path) -> TokenizerInfo:
    """Write the tokenizer of ``st_model[0]`` into ``artifact`` and describe it for the manifest."""
    files = write_tokenizer(st_model, artifact)
    hf_tokenizer = st_model[0].tokenizer
    return TokenizerInfo(
        file="tokenizer.json",
        files=files,
        max_seq_length=int(st_model.max_seq_length),
        pad_token_id=int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0),
        special_token_ids=tuple(int(i) for i in hf_tokenizer.all_special_ids),
        truncation_side=str(hf_tokenizer.truncation_side),
        padding_side=str(hf_tokenizer.padding_side),
        prompts={k: v for k, v in (st_model.prompts or {}).items()},
        default_prompt_name=st_model.default_prompt_name,
    )


def graph_variant(backbone_path: Path, artifact: Path, append_head: Callable[[Any], dict[str, Any]]) -> Variant:
    """Grow the backbone graph with ``append_head(model) -> stage counts``; save it as the fp32 variant.

    The backbone file stays (the int8 variant starts from it); the caller removes it.
    """
    import onnx

    graph_file = "onnx/model.onnx"
    model = onnx.load(str(backbone_path))
    counts = append_head(model)
    model.producer_name = "fastembed-rt"
    onnx.checker.check_model(model)
    onnx.save(model, str(artifact / graph_file))
    return Variant(
        name="fp32",
        file=graph_file,
        format=VariantFormat.ONNX,
        precision=VariantPrecision.FP32,
        optimization="none",
        size=(artifact / graph_file).stat().st_size,
        sha256=file_sha256(artifact / graph_file),
        stage_counts={**counts, "graph_nodes": len(model.graph.node)},
    )


def export_backbone_of(st_model: Any, path: Path, output: str) -> str:
    """Export ``st_model[0]``'s transformers model with its ``output`` field as the ``logits`` output.

    Returns the ``config.model_type``. The model's attention implementation is restored afterwards,
    so the PyTorch reference runs as users run it.
    """
    model = st_model[0].auto_model
    model_type = str(model.config.model_type)
    arch = architecture_config(model_type)
    attn = getattr(model.config, "_attn_implementation", None)
    export_backbone(model, arch, path, vocab_size=int(model.config.vocab_size), output=output, output_name="logits")
    if attn is not None and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
    return model_type


def parity_pairs(max_seq_length: int) -> list[tuple[str, str]]:
    """12 pairs over the parity texts: short and long halves, empty ones, and pairs over the limit."""
    texts = parity_texts(max_seq_length)
    n = len(texts)
    return [(texts[i], texts[(3 * i + 1) % n]) for i in range(n)] + [
        (texts[4], texts[8]),
        ("", ""),
        (texts[1], texts[1]),
    ]


def _load_cross_encoder(model_dir: Path) -> Any:
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(str(model_dir), device="cpu")
    except Exception as exc:  # sentence-transformers raises many types on a bad directory
        raise ExportError(f"sentence-transformers could not load {model_dir} as a CrossEncoder: {exc}") from exc


def classifier_activation(activation_fn: Any, where: str) -> ClassifierActivation:
    """The fusable activation of ``CrossEncoder.activation_fn`` (a torch module), or an ExportError."""
    name = type(activation_fn).__name__
    if name == "Identity":
        return ClassifierActivation.IDENTITY
    if name == "Sigmoid":
        return ClassifierActivation.SIGMOID
    if name == "Softmax" and getattr(activation_fn, "dim", None) in (None, 1, -1):
        return ClassifierActivation.SOFTMAX
    raise ExportError(
        f"{where}: activation_fn {activation_fn!r} cannot be fused; supported: Identity, Sigmoid, "
        "Softmax over the label axis. Save the model with one of them as activation_fn."
    )


def _describe(model_dir: Path, ce: Any) -> ClassifierHeadSpec:
    modules = [type(m).__name__ for m in ce]
    task = getattr(ce[0], "transformer_task", None)
    if modules != ["Transformer"] or task != "sequence-classification":
        raise ExportError(
            f"{model_dir}: only sequence-classification cross-encoders (one Transformer module) can be exported; "
            f"this one has modules {modules} with transformer_task {task!r}"
        )
    return ClassifierHeadSpec(int(ce.num_labels), classifier_activation(ce.activation_fn, str(model_dir)))


def _torch_predict(ce: Any, pairs: list[tuple[str, str]], prompt: str | None, identity: bool) -> np.ndarray:
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SOFTMAX_WARNING)
        scores = ce.predict(
            pairs,
            prompt=prompt,
            batch_size=len(pairs),
            activation_fn=torch.nn.Identity() if identity else None,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(scores, dtype=np.float32)


def validate_cross_encoder(artifact: Path, ce: Any) -> HeadFidelity:
    """Scores (fused activation) and logits of the artifact vs ``ce`` over the pair grid in batches of 1, 3, 5.

    The PyTorch side scores every pair once per prompt; the runtime scores it in each batching.
    """
    from fastembed_rt.cross_encoder import CrossEncoder

    runtime = CrossEncoder(artifact, verify="full")
    pairs = parity_pairs(runtime.max_seq_length)
    fidelity = HeadFidelity()
    for prompt in [None, *sorted({p for p in (ce.prompts or {}).values() if p})]:
        for identity in (False, True):
            reference = _torch_predict(ce, pairs, prompt, identity)
            for size in (1, 3, 5):
                for start in range(0, len(pairs), size):
                    batch = pairs[start : start + size]
                    ours = np.asarray(
                        runtime.predict(
                            batch, prompt=prompt, batch_size=size, activation_fn="identity" if identity else None
                        )
                    )
                    ref = reference[start : start + size]
                    rel = fidelity.observe(ours, ref)
                    fidelity.checked += ref.size
                    bad = np.abs(ours - ref) > SCORE_ATOL + SCORE_RTOL * np.abs(ref)
                    for row in sorted({int(i) for i in np.argwhere(bad)[:, 0]}):
                        query, doc = (t if len(t) < 30 else t[:27] + "..." for t in batch[row])
                        fidelity.failures.append(
                            f"batch of {size}, prompt {prompt!r}, {'logits' if identity else 'scores'} of "
                            f"({query!r}, {doc!r}): {ours[row]} vs torch {ref[row]} (rel {rel[row].max():.2g})"
                        )
    runtime.close()
    return fidelity


def int8_validator(ce: Any, max_seq_length: int) -> Validate:
    """Checks an int8 cross-encoder artifact against ``ce``'s scores (see ``head_variants``)."""
    from fastembed_rt.cross_encoder import CrossEncoder
    from fastembed_rt.evaluation import spearman

    pairs = parity_pairs(max_seq_length) + held_out_pairs()
    reference = _torch_predict(ce, pairs, None, identity=False).reshape(len(pairs), -1)
    alone_count = 16

    def validate(root: Path) -> tuple[dict[str, Any], list[str]]:
        runtime = CrossEncoder(root, variant="int8", provider="cpu", verify="full")
        try:
            ours = np.asarray(runtime.predict(pairs, batch_size=32)).reshape(len(pairs), -1)
            alone = np.asarray(runtime.predict(pairs[:alone_count], batch_size=1)).reshape(alone_count, -1)
        finally:
            runtime.close()
        rho = min(spearman(ours[:, j], reference[:, j]) for j in range(reference.shape[1]))
        diff = np.abs(ours.astype(np.float64) - reference)
        drift = np.abs(alone - ours[:alone_count])
        fidelity = {
            "pairs": len(pairs),
            "score_spearman": round(rho, 6),
            "max_abs_diff": float(f"{diff.max():.3g}"),
            "mean_abs_diff": float(f"{diff.mean():.3g}"),
            "batch_invariance_max_abs_diff": float(f"{drift.max():.3g}"),
        }
        misses = []
        if not rho >= MIN_SCORE_SPEARMAN:
            misses.append(f"score Spearman vs PyTorch {rho:.6f} < {MIN_SCORE_SPEARMAN}")
        if (drift > SCORE_ATOL + SCORE_RTOL * np.abs(ours[:alone_count])).any():
            misses.append(f"scores depend on batch neighbours: alone vs batched differ by up to {drift.max():.3g}")
        return fidelity, misses

    return validate


def export_cross_encoder(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    variants: str | Sequence[str] | None = None,
) -> Manifest:
    """Export a sentence-transformers CrossEncoder to a fastembed-rt artifact at ``out_dir``.

    Graph inputs: the architecture's (``input_ids``, ``attention_mask``[, ``token_type_ids``]);
    outputs ``logits`` and ``scores`` (the model's default activation fused), float32
    ``[batch, num_labels]``. Written only if every score and logit of the pair grid is within
    ``SCORE_ATOL + SCORE_RTOL * |torch|`` of sentence-transformers on PyTorch.

    Args:
        model: a local model directory (sentence-transformers or plain transformers
            ``*ForSequenceClassification``) or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        variants: ``fp32`` (default) and/or ``int8`` (``head_variants``: shipped only within its gate).
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model, head, activation or variant; ParityError: the graph misses its
        gate (lists every failure).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    plans = parse_head_variants(variants, "cross-encoder")
    model_dir = resolve_model_dir(model, revision, token)
    ce = _load_cross_encoder(model_dir)
    spec = _describe(model_dir, ce)
    with staged_artifact(out, overwrite) as tmp:
        backbone_path = tmp / "onnx" / "backbone.onnx"
        model_type = export_backbone_of(ce, backbone_path, "logits")
        variant = graph_variant(backbone_path, tmp, lambda m: append_classifier_head(m, spec).to_dict())
        dims = {"dtype": "float32", "dims": ["batch", spec.num_labels]}
        manifest = Manifest(
            root=tmp,
            task=Task.CROSS_ENCODER,
            source={
                "model": str(model),
                "revision": revision,
                "architecture": model_type,
                "modules": ["Transformer"],
                "library_versions": library_versions(),
            },
            tokenizer=tokenizer_info(ce, tmp),
            graph=GraphContract(inputs=architecture_config(model_type).inputs, outputs={LOGITS: dims, SCORES: dims}),
            stages={"classifier": spec.to_dict()},
            similarity_fn="none",
            dim=spec.num_labels,
            variants=(variant,),
            schema_version=SCHEMA_VERSION,
        )
        manifest.write()
        fidelity = validate_cross_encoder(tmp, ce)
        if fidelity.failures:
            raise ParityError(
                f"exported graph of {model} misses the fp32 gate (|diff| <= {SCORE_ATOL} + {SCORE_RTOL}·|torch|) on "
                f"{len(fidelity.failures)} checks; nothing was written:\n  " + "\n  ".join(fidelity.failures),
                fidelity.failures,
            )
        manifest = replace(manifest, variants=(replace(variant, fidelity=fidelity.to_dict()),))
        manifest.write()
        if "int8" in plans:
            manifest = build_head_int8(
                manifest,
                backbone_path,
                lambda m: append_classifier_head(m, spec).to_dict(),
                int8_validator(ce, int(ce.max_seq_length)),
            )
        backbone_path.unlink()
    logger.info("exported cross-encoder %s to %s in %.1f s", model, out, time.perf_counter() - started)
    return replace(manifest, root=out)
