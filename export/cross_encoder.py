"""Cross-encoder export: a sentence-transformers ``CrossEncoder`` (sequence classification) → validated artifact.

The classifier model (backbone and its head, e.g. BERT's pooler + linear, ELECTRA's two-layer head)
becomes one ONNX graph with the ``logits`` output; the activation sentence-transformers applies by
default (``CrossEncoder.activation_fn``: from the model's config, else sigmoid for one label and
identity for more) is fused in as the ``scores`` output. The artifact is written only when the
runtime's scores and logits agree with PyTorch on every pair of the grid (the fp32 gate of
``export.variants``); the shared flow is ``export.heads``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import Manifest, Task
from fastembed_rt.errors import ExportError
from fastembed_rt.export.fidelity import HeadFidelity, Measured, ScoreFidelity, ToleranceGate
from fastembed_rt.export.heads import HeadPlan, export_head
from fastembed_rt.export.validate import (
    REFERENCE_PROVIDER,
    UNCACHED,
    check_finite,
    held_out_pairs,
    parity_texts,
    prompt_cases,
)
from fastembed_rt.export.variants import VariantSpec
from fastembed_rt.export.writer import Measure
from fastembed_rt.kernels.onnx_heads import append_classifier_head
from fastembed_rt.kernels.spec import LOGITS, SCORES, ClassifierActivation, ClassifierHeadSpec

__all__ = ["export_cross_encoder", "parity_pairs", "validate_cross_encoder"]

# sentence-transformers saves Softmax() without dim and torch warns on every call; the label axis
# is what it means for [batch, labels] logits (and what we fuse).
_SOFTMAX_WARNING = "Implicit dimension choice for softmax"
# Pairs the int8 check also scores one at a time, against their scores inside batches of 32.
_ALONE_PAIRS = 16


def parity_pairs(max_seq_length: int) -> list[tuple[str, str]]:
    """12 pairs over the parity texts: short and long halves, empty ones, and pairs over the limit."""
    texts = parity_texts(max_seq_length)
    n = len(texts)
    return [(texts[i], texts[(3 * i + 1) % n]) for i in range(n)] + [
        (texts[4], texts[8]),
        ("", ""),
        (texts[1], texts[1]),
    ]


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
    num_labels = int(ce.num_labels)
    id2label = getattr(getattr(ce, "config", None), "id2label", None) or {}
    labels = tuple(str(id2label.get(i, f"LABEL_{i}")) for i in range(num_labels)) if id2label else ()
    return ClassifierHeadSpec(num_labels, classifier_activation(ce.activation_fn, str(model_dir)), labels)


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
    return check_finite(np.asarray(scores, dtype=np.float32), pairs)


def validate_cross_encoder(artifact: Path, ce: Any, tolerance: ToleranceGate, variant: str = "fp32") -> HeadFidelity:
    """Scores (fused activation) and logits of the artifact's ``variant`` vs ``ce`` over the pair grid in batches
    of 1, 3, 5.

    The PyTorch side scores every pair once per prompt; the runtime scores it in each batching.
    Every score or logit outside ``tolerance`` is a failure.
    """
    from fastembed_rt.models.cross_encoder import CrossEncoder

    runtime = CrossEncoder(artifact, variant=variant, provider="cpu", verify="full", provider_options=UNCACHED)
    pairs = parity_pairs(runtime.max_seq_length)
    fidelity = HeadFidelity()
    for prompt in prompt_cases(ce.prompts):
        for identity in (False, True):
            reference = _torch_predict(ce, pairs, prompt, identity)
            for size in (1, 3, 5):
                for start in range(0, len(pairs), size):
                    batch = pairs[start : start + size]
                    ours = np.asarray(
                        runtime.predict(
                            batch,
                            prompt=prompt,
                            batch_size=size,
                            activation_fn="identity" if identity else None,
                            show_progress_bar=False,
                        )
                    )
                    ref = reference[start : start + size]
                    rel = fidelity.observe(ours, ref)
                    fidelity.checked += ref.size
                    bad = tolerance.exceeded(ours, ref)
                    for row in sorted({int(i) for i in np.argwhere(bad)[:, 0]}):
                        query, doc = (t if len(t) < 30 else t[:27] + "..." for t in batch[row])
                        fidelity.failures.append(
                            f"batch of {size}, prompt {prompt!r}, {'logits' if identity else 'scores'} of "
                            f"({query!r}, {doc!r}): {ours[row]} vs torch {ref[row]} (rel {rel[row].max():.2g})"
                        )
    runtime.close()
    return fidelity


def _measure(ce: Any, root: Path) -> Measure:
    """A further variant against ``ce``: a full-precision one (``ToleranceGate``) as the fp32 graph is validated;
    int8 by its scores over the pair grid plus STSb dev pairs (when here), in batches of 32."""
    from fastembed_rt.models.cross_encoder import CrossEncoder
    from fastembed_rt.stsb import spearman

    pairs = parity_pairs(int(ce.max_seq_length)) + held_out_pairs()
    computed: list[np.ndarray] = []  # PyTorch's scores, once, when the first int8 candidate needs them

    def measure(spec: VariantSpec[Any], final: bool, checked: Measured | None) -> ScoreFidelity | HeadFidelity:
        if isinstance(spec.gate, ToleranceGate):
            return validate_cross_encoder(root, ce, spec.gate, spec.name)
        if isinstance(checked, ScoreFidelity):  # the accepted candidate is this file; final adds nothing here
            return checked
        if not computed:
            computed.append(_torch_predict(ce, pairs, None, identity=False).reshape(len(pairs), -1))
        reference = computed[0]
        runtime = CrossEncoder(
            root,
            variant=spec.name,
            provider=REFERENCE_PROVIDER[spec.format],
            verify="full",
            provider_options=UNCACHED,
        )
        try:
            ours = np.asarray(runtime.predict(pairs, batch_size=32, show_progress_bar=False)).reshape(len(pairs), -1)
            # without STSb the pairs are the 12 parity pairs alone: fewer than _ALONE_PAIRS (the reshape failed)
            count = min(_ALONE_PAIRS, len(pairs))
            alone = np.asarray(runtime.predict(pairs[:count], batch_size=1, show_progress_bar=False)).reshape(count, -1)
        finally:
            runtime.close()
        diff = np.abs(ours.astype(np.float64) - reference)
        return ScoreFidelity(
            pairs=len(pairs),
            score_spearman=min(spearman(ours[:, j], reference[:, j]) for j in range(reference.shape[1])),
            max_abs_diff=float(diff.max()),
            mean_abs_diff=float(diff.mean()),
            alone=alone,
            batched=ours[:count],
        )

    return measure


def _plan(model_dir: Path, ce: Any) -> HeadPlan:
    head = _describe(model_dir, ce)
    dims = {"dtype": "float32", "dims": ["batch", head.num_labels]}
    return HeadPlan(
        append_head=lambda graph: append_classifier_head(graph, head).to_dict(),
        modules=["Transformer"],
        extra_inputs=(),
        outputs={LOGITS: dims, SCORES: dims},
        stages={"classifier": head.to_dict()},
        similarity_fn="none",
        dim=head.num_labels,
        validate=lambda root, tolerance: validate_cross_encoder(root, ce, tolerance),
        measure=lambda root: _measure(ce, root),
    )


def export_cross_encoder(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    external_data_threshold: int | None = None,
    variants: str | Sequence[str] | None = None,
) -> Manifest:
    """Export a sentence-transformers CrossEncoder to a fastembed-rt artifact at ``out_dir``.

    Graph inputs: the architecture's (``input_ids``, ``attention_mask``[, ``token_type_ids``]);
    outputs ``logits`` and ``scores`` (the model's default activation fused), float32
    ``[batch, num_labels]``. Written only if every score and logit of the pair grid is within the
    fp32 tolerance (``export.variants.VARIANTS[Task.CROSS_ENCODER]["fp32"]``) of sentence-transformers
    on PyTorch.

    Args:
        model: a local model directory (sentence-transformers or plain transformers
            ``*ForSequenceClassification``) or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        variants: ``fp32`` (default) and/or ``int8`` (shipped only within its gate: score rank vs PyTorch).
        trust_remote_code: run code from the model's repository (its own model class or modules); off by default.
        external_data_threshold: fp32 weight bytes above which graphs keep their weights in a data file beside
            them (None: 0, every graph: ONNX Runtime memory-maps the file; over 2 GiB there is no other way).
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model, head, activation or variant; ParityError: the graph misses its
        gate (lists every failure).
    """
    from sentence_transformers import CrossEncoder

    return export_head(
        model,
        out_dir,
        Task.CROSS_ENCODER,
        CrossEncoder,
        _plan,
        revision=revision,
        token=token,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        external_data_threshold=external_data_threshold,
        variants=variants,
    )
