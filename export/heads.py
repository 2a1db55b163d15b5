"""The export flow CrossEncoder and SPLADE artifacts share: a transformers model whose own head ends in ``logits``.

The model (backbone plus its classifier or masked-LM projection) becomes one ONNX graph with a
``logits`` output, and the task's fused head (``kernels.onnx_heads``) turns those into its outputs
in-graph. Each head task hands ``export_head`` a ``HeadPlan``: how to append its head, what the
manifest says about it, and how to check the graph against PyTorch; the artifact writer does the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import GraphContract, Manifest, Task, load_manifest, user_path
from fastembed_rt.export.backbone import export_st_backbone
from fastembed_rt.export.fidelity import HeadFidelity, ToleranceGate
from fastembed_rt.export.smoothquant import CALIBRATION_TEXTS
from fastembed_rt.export.source import load_st_model, resolve_model_dir
from fastembed_rt.export.validate import held_out_pairs, parity_texts
from fastembed_rt.export.variants import parse_variants
from fastembed_rt.export.writer import Measure, finish_graph, stage_artifact
from fastembed_rt.kernels.spec import LOGITS

__all__ = ["HeadPlan", "calibration_items", "export_head"]

logger = logging.getLogger("fastembed_rt.export")


@dataclass(frozen=True)
class HeadPlan:
    """What one head task adds to the shared flow, read from the loaded sentence-transformers model."""

    append_head: Callable[[Any], dict[str, Any]]  # appends the fused head to a graph ending in logits
    modules: list[str]
    extra_inputs: tuple[str, ...]  # graph inputs after the architecture's
    outputs: dict[str, dict[str, Any]]
    stages: dict[str, Any]
    similarity_fn: str
    dim: int
    validate: Callable[[Path, ToleranceGate], HeadFidelity]  # the fp32 graph vs PyTorch, every check listed
    measure: Callable[[Path], Measure]  # for further variants; computes the PyTorch reference once
    # the sentence-transformers model whose first module becomes the graph (None: the loaded one; a Router model's
    # graph route), and files the stages name, written into the artifact folder before its manifest
    graph_model: Any = None
    write_files: Callable[[Path], None] | None = None


def export_head(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    task: Task,
    kind: type[Any],
    plan: Callable[[Path, Any], HeadPlan],
    *,
    revision: str | None,
    token: str | bool | None,
    overwrite: bool,
    variants: str | Sequence[str] | None,
    trust_remote_code: bool = False,
    external_data_threshold: int | None = None,
) -> Manifest:
    """Export ``model`` (loaded as the sentence-transformers class ``kind``) as a ``task`` artifact at ``out_dir``.

    ``plan(model_dir, st_model)`` describes the head or raises ``ExportError`` for one it cannot fuse.
    Returns the written manifest.
    """
    started = time.perf_counter()
    out = user_path(out_dir)  # "~/artifacts/m" is under the home folder, as for model paths and save()
    specs = parse_variants(variants, task)
    model_dir = resolve_model_dir(model, revision, token)
    st_model = load_st_model(kind, model_dir, trust_remote_code=trust_remote_code)
    head = plan(model_dir, st_model)

    def append(graph: Any) -> dict[str, Any]:
        return finish_graph(graph, head.append_head(graph))

    graph_model = st_model if head.graph_model is None else head.graph_model
    with stage_artifact(out, overwrite, model=model, revision=revision, model_dir=model_dir) as writer:
        if head.write_files is not None:
            head.write_files(writer.root)
        backbone = export_st_backbone(
            graph_model,
            writer.backbone,
            output="logits",
            output_name=LOGITS,
            external_data_threshold=external_data_threshold,
        )
        writer.write_fp32(
            task,
            architecture=backbone.architecture.model_type,
            modules=head.modules,
            tokenizer=writer.write_tokenizer(graph_model),
            graph=GraphContract(inputs=(*backbone.architecture.inputs, *head.extra_inputs), outputs=head.outputs),
            stages=head.stages,
            similarity_fn=head.similarity_fn,
            dim=head.dim,
            backbone_shape=backbone.shape,
            append_stages=append,
        )
        tolerance = specs[0].gate
        writer.accept_fp32(head.validate(writer.root, tolerance), tolerance)
        if len(specs) > 1:
            writer.build_variants(
                specs[1:],
                head.measure(writer.root),
                backbone=backbone,
                calibration_texts=calibration_items(task),
                append_stages=append,
                speed_texts=[text for pair in held_out_pairs(128) for text in pair] or parity_texts(512),
            )
    logger.info("exported %s %s to %s in %.1f s", task, model, out, time.perf_counter() - started)
    return load_manifest(out)


def calibration_items(task: Task, count: int = CALIBRATION_TEXTS) -> list[str | tuple[str, str]]:
    """What a head's int8 sets its activation scales on: ``count`` STSb train pairs (a cross-encoder) or
    sentences, spread over the split, when STSb is found (the held-out texts come from dev); else the
    grid's non-empty texts, paired with each other for a cross-encoder."""
    from fastembed_rt.stsb import available_stsb

    pairs = task is Task.CROSS_ENCODER
    train = available_stsb("train", "en")
    if train is None:
        texts = [text for text in parity_texts(512) if text]
        return list(zip(texts, texts[1:] + texts[:1], strict=True)) if pairs else list(texts)
    items: list[str | tuple[str, str]] = []
    if pairs:
        items += zip(train.sentences1, train.sentences2, strict=True)
    else:
        items += train.sentences1 + train.sentences2
    picks = np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int))
    return [items[i] for i in picks]
