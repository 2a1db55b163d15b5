"""Which exporter a model needs: its task, read from the model directory, and the task → exporter registry."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import Manifest, Task
from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.bi_encoder import export_model
from fastembed_rt.export.cross_encoder import export_cross_encoder
from fastembed_rt.export.multi_vector_encoder import export_multi_vector_encoder
from fastembed_rt.export.source import read_json, resolve_model_dir
from fastembed_rt.export.sparse_encoder import export_sparse_encoder

__all__ = ["EXPORTERS", "TaskExporter", "detect_task", "export_artifact"]


@dataclass(frozen=True)
class TaskExporter:
    """The exporter of one task. ``scores_stsb``: it takes ``stsb=`` (only bi-encoders record STSb Spearman)."""

    export: Callable[..., Manifest]
    scores_stsb: bool = False


EXPORTERS: dict[Task, TaskExporter] = {
    Task.EMBEDDING: TaskExporter(export_model, scores_stsb=True),
    Task.CROSS_ENCODER: TaskExporter(export_cross_encoder),
    Task.SPARSE: TaskExporter(export_sparse_encoder),
    Task.MULTI_VECTOR: TaskExporter(export_multi_vector_encoder),
}

# config_sentence_transformers.json "model_type" (sentence-transformers >= 5), then the transformers
# head class of config.json "architectures" for plain transformers directories.
_TASK_BY_ST_MODEL_TYPE = {
    "SentenceTransformer": Task.EMBEDDING,
    "CrossEncoder": Task.CROSS_ENCODER,
    "SparseEncoder": Task.SPARSE,
    "MultiVectorEncoder": Task.MULTI_VECTOR,
    "ColBERT": Task.MULTI_VECTOR,  # PyLate <= 3, which sentence-transformers loads as a MultiVectorEncoder
}
_TASK_BY_HEAD_SUFFIX = {
    "ForSequenceClassification": Task.CROSS_ENCODER,
    "ForMaskedLM": Task.SPARSE,
    "HF_ColBERT": Task.MULTI_VECTOR,  # Stanford ColBERT checkpoints
}


def _read_json(path: Path) -> dict[str, object]:
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def detect_task(model_dir: Path) -> Task:
    """``embedding``, ``cross-encoder``, ``sparse`` or ``multi-vector`` for a local model directory.

    A sentence-transformers directory says it in ``config_sentence_transformers.json``
    (``model_type``); a plain transformers directory by its head class (``*ForSequenceClassification``:
    cross-encoder, ``*ForMaskedLM``: SPLADE, as sentence-transformers loads them); anything else
    with ``modules.json`` is a bi-encoder.
    """
    st_type = _read_json(model_dir / "config_sentence_transformers.json").get("model_type")
    if isinstance(st_type, str) and st_type in _TASK_BY_ST_MODEL_TYPE:
        return _TASK_BY_ST_MODEL_TYPE[st_type]
    if not (model_dir / "modules.json").is_file():
        architectures = _read_json(model_dir / "config.json").get("architectures") or []
        for name in architectures if isinstance(architectures, list) else []:
            for suffix, task in _TASK_BY_HEAD_SUFFIX.items():
                if str(name).endswith(suffix):
                    return task
    return Task.EMBEDDING


def export_artifact(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    task: Task | str = "auto",
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    external_data_threshold: int | None = None,
    variants: str | Sequence[str] | None = None,
    stsb: bool | None = None,
) -> Manifest:
    """Export ``model`` with its task's exporter (``EXPORTERS``) to an artifact at ``out_dir``.

    Args:
        task: ``embedding``, ``cross-encoder``, ``sparse``, ``multi-vector``, or ``auto`` (``detect_task`` on
            the model directory).
        variants: the graphs to build besides fp32 (None: the task's default ones).
        stsb: bi-encoders also score STSb test Spearman (None: when the data is found, locally or on the hub);
            the other tasks record no STSb score.
        trust_remote_code: run code from the model's repository (its own model class or modules); off by default.
        external_data_threshold: fp32 weight bytes above which graphs keep their weights in a data file beside
            them (None: 0, every graph: ONNX Runtime memory-maps the file; over 2 GiB there is no other way).
    Returns:
        the written manifest; its ``task`` says which exporter ran.
    Raises:
        ExportError: an unknown task, and whatever the task's exporter raises.
    """
    if task != "auto" and task not in tuple(Task):
        raise ExportError(f"task {task!r} is not one of auto, {', '.join(t.value for t in Task)}")
    if stsb is not False:  # a $FASTEMBED_RT_STSB naming no data is said now, not after the model loaded and exported
        from fastembed_rt.stsb import find_stsb_dir

        find_stsb_dir()
    chosen = detect_task(resolve_model_dir(model, revision, token)) if task == "auto" else Task(task)
    exporter = EXPORTERS[chosen]
    options: dict[str, Any] = {"stsb": stsb} if exporter.scores_stsb else {}
    try:
        return exporter.export(
            model,
            out_dir,
            revision=revision,
            token=token,
            overwrite=overwrite,
            variants=variants,
            trust_remote_code=trust_remote_code,
            external_data_threshold=external_data_threshold,
            **options,
        )
    except ExportError as exc:
        # what the folder holds, asked only now: an export that works resolves a hub id no extra time
        detected: Task | None = chosen
        if task != "auto":
            try:
                detected = detect_task(resolve_model_dir(model, revision, token))
            except ExportError:  # the model itself could not be had: that is the error
                detected = None
        if detected is None or chosen is detected:
            raise
        # sentence-transformers' own message names modules it would have added for the other task
        note = (
            f"{exc} (by its configuration the folder holds a model for task {detected.value!r}, which --task "
            f"{chosen.value} overrides: leave --task out to export it as what it is)"
        )
        raise (ParityError(note, exc.failures) if isinstance(exc, ParityError) else ExportError(note)) from exc
