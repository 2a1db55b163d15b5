"""Batch inference with Ray Data: a dataset with a text column in, the same dataset with an output column out.

::

    ray.data.Dataset ─ map_batches(BatchModel, batch_format="pyarrow",
      │                  compute=ActorPoolStrategy(...), num_cpus=threads per actor)
      ▼
    actor (one per pool slot): artifact opened once (``worker.local_artifact``), ONNX Runtime with as
      many intra-op threads as the CPUs Ray reserved for it
      │ per batch of ``batch_size`` rows: texts checked (a bad row raises an ``InputError`` naming it),
      │ then the library's own call: tokenized at once, sorted by token length, run in padded-token
      │ budgeted graph batches, scattered back to row order
      ▼
    the batch's Arrow table, every column untouched, plus the output column(s)

Output columns: ``embed``: a tensor column (float32 ``[dim]``, int8/uint8 ``[dim]``, or packed bits
``[dim / 8]`` for binary/ubinary) as ``SentenceTransformer.encode`` gives; ``sparse_encode``:
``<output>_indices`` (int64, ascending) and ``<output>_values`` (float32) list columns, the CSR rows of
``SparseEncoder.encode``; ``predict``: float32 scores (``[num_labels]`` tensors for several labels).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from fastembed_rt.artifact import Task, load_manifest, local_path
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.models import MODEL_TYPES
from fastembed_rt.models.base import check_positive_int
from fastembed_rt.pipeline import check_unicode
from fastembed_rt.ray.worker import ShippedArtifact, assigned_cpus, local_artifact, ship_artifact

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data
    from typing_extensions import Unpack

__all__ = ["DEFAULT_BATCH_SIZE", "BatchModel", "MapOptions", "embed", "predict", "sparse_encode"]

# Rows per actor call. The library sorts each call's texts by token length before cutting graph batches of
# 32, so the more rows a call has, the less padding; fewer, larger calls balance worse across actors at the
# end of a job. 512 rows make 16 graph batches per call.
DEFAULT_BATCH_SIZE = 512


class MapOptions(TypedDict, total=False):
    """How ``embed``, ``sparse_encode`` and ``predict`` place the model on the cluster and open it.

    ``actors``: a fixed pool size, ``(min, max)`` for an autoscaling pool, or None (default) for Ray
    Data's own autoscaling pool. ``threads_per_actor``: CPUs reserved per actor (``num_cpus``), and so
    its ONNX Runtime threads (default 1). ``batch_size``: rows per actor call (default
    ``DEFAULT_BATCH_SIZE``). ``encode_batch_size``: most rows per graph run (default 32).
    ``provider`` (default ``"cpu"``) / ``variant`` / ``revision`` / ``cache_dir`` / ``token``: how each
    actor opens the artifact, as the library's loader. ``preserve_order``: rows come out in input
    order (default True: sets the dataset context's ``execution_options.preserve_order``).
    ``runtime_env``: Ray's runtime environment for the actors.
    """

    actors: int | tuple[int, int] | None
    threads_per_actor: int
    batch_size: int
    encode_batch_size: int
    provider: str
    variant: str
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    token: str | bool | None
    preserve_order: bool
    runtime_env: dict[str, Any] | None


@dataclass(frozen=True)
class _Job:
    """What every actor of one ``map_batches`` does: open ``artifact`` with ``load``, read ``inputs``,
    call the model with ``call``, write ``output``."""

    task: Task
    artifact: ShippedArtifact
    load: dict[str, Any]
    inputs: tuple[str, ...]
    output: str
    call: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # no progress bars from the actors (Ray's workers log at INFO, where the default would show one per call)
        self.call.setdefault("show_progress_bar", False)


def _describe_row(batch: pa.Table, row: int, inputs: tuple[str, ...]) -> str:
    """The row as its other columns show it (its id, if it has one), for error messages."""
    others = [name for name in batch.column_names if name not in inputs]
    if not others:
        return f"row {row} of a batch of {len(batch)} (add an id column to see which)"
    values = batch.select(others).slice(row, 1).to_pylist()[0]
    text = repr(values)
    return f"row {text[:200] + '…' if len(text) > 200 else text}"


def _texts(batch: pa.Table, column: str, inputs: tuple[str, ...]) -> list[str]:
    """The strings of ``column``, or an ``InputError`` naming the first bad row, its value and the fix."""
    if column not in batch.column_names:
        raise InputError(f"the dataset has no column {column!r}; its columns: {', '.join(batch.column_names)}")
    values = batch.column(column).to_pylist()
    for i, value in enumerate(values):
        try:
            if not isinstance(value, str):
                kind = "None" if value is None else f"{type(value).__name__} {value!r}"
                raise InputError(f"is {kind}, expected str")
            check_unicode(value, "the text")
        except InputError as exc:
            raise InputError(
                f"{_describe_row(batch, i, inputs)}: column {column!r} {exc}; drop or fix such rows before "
                f"encoding (e.g. dataset.filter(expr=col({column!r}).is_not_null()), col from ray.data.expressions)"
            ) from None
    return values


def _tensor_column(rows: np.ndarray) -> Any:
    from ray.data.extensions import ArrowTensorArray

    return ArrowTensorArray.from_numpy(np.ascontiguousarray(rows))


class BatchModel:
    """The callable class ``map_batches`` runs: one model per actor, opened in ``__init__``, mapping
    Arrow batches to the same batches with the output column(s) appended."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        load = {**job.load, "intra_op_threads": assigned_cpus()}
        if job.artifact.variant is not None:
            load["variant"] = job.artifact.variant
        self.model: Any = MODEL_TYPES[job.task](local_artifact(job.artifact), **load)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        job = self.job
        outputs = [f"{job.output}_indices", f"{job.output}_values"] if job.task is Task.SPARSE else [job.output]
        taken = [name for name in outputs if name in batch.column_names]
        if taken:
            raise InputError(f"the dataset already has a column {taken[0]!r}; pass another output_column")
        columns = [_texts(batch, name, job.inputs) for name in job.inputs]
        if job.task is Task.EMBEDDING:
            arrays = [_tensor_column(self.model.encode(columns[0], **job.call))]
        elif job.task is Task.SPARSE:
            call = dict(job.call)
            task = call.pop("task", None)  # as encode_query / encode_document: the task's prompt and route
            encode = {"query": self.model.encode_query, "document": self.model.encode_document}.get(task)
            if encode is None:
                encode, call["task"] = self.model.encode, task
            rows = encode(columns[0], sparse_format="arrays", **call)
            offsets = pa.array(rows.indptr, type=pa.int32())
            arrays = [
                pa.ListArray.from_arrays(offsets, pa.array(rows.indices, type=pa.int64())),
                pa.ListArray.from_arrays(offsets, pa.array(rows.data, type=pa.float32())),
            ]
        else:
            scores = self.model.predict(list(zip(*columns)), **job.call).reshape(len(batch), -1)
            arrays = [pa.array(scores[:, 0]) if scores.shape[1] == 1 else _tensor_column(scores)]
        for name, array in zip(outputs, arrays):
            batch = batch.append_column(name, array)
        return batch


def _map(
    dataset: ray.data.Dataset,
    model: str | os.PathLike[str],
    task: Task,
    inputs: tuple[str, ...],
    output: str,
    call: dict[str, Any],
    options: MapOptions,
) -> ray.data.Dataset:
    import ray.data

    unknown = sorted(set(options) - MapOptions.__optional_keys__)
    if unknown:
        valid = ", ".join(sorted(MapOptions.__optional_keys__))
        raise InputError(f"unknown option {unknown[0]!r}; valid options: {valid}")
    provider, variant = options.get("provider", "cpu"), options.get("variant", "auto")
    path = local_path(model)
    if path is not None:  # hub ids are resolved (and their task checked) on the workers
        found = load_manifest(path).task
        if found is not task:
            raise ArtifactError(f"{model} holds a {found!r} model; this call needs an artifact of task {task!r}")
    threads = options.get("threads_per_actor", 1)
    batch_size = options.get("batch_size", DEFAULT_BATCH_SIZE)
    encode_batch_size = options.get("encode_batch_size", 32)
    # Checked here, on the driver: in the actors a bad value failed after every model had loaded, under another name.
    threads = check_positive_int("threads_per_actor", threads)
    batch_size = check_positive_int("batch_size", batch_size)
    encode_batch_size = check_positive_int("encode_batch_size", encode_batch_size)
    actors = options.get("actors")
    counts = actors if isinstance(actors, tuple) and len(actors) == 2 else (actors,)
    if actors is not None and not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in counts):
        raise InputError(f"actors must be an int >= 1 or a (min, max) pair of them, got {actors!r}")
    if actors is None:
        compute = ray.data.ActorPoolStrategy(min_size=1, max_size=None)
    elif isinstance(actors, tuple):
        compute = ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    else:
        compute = ray.data.ActorPoolStrategy(size=actors)
    load = {"revision": options.get("revision"), "cache_dir": options.get("cache_dir"), "token": options.get("token")}
    job = _Job(
        task,
        ship_artifact(model, provider=provider, variant=variant),
        {**load, "provider": provider, "variant": variant},
        inputs,
        output,
        {**call, "batch_size": encode_batch_size},
    )
    result = dataset.map_batches(
        BatchModel,
        fn_constructor_kwargs={"job": job},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=threads,
        runtime_env=options.get("runtime_env"),
    )
    if options.get("preserve_order", True):
        # Ray hands a derived dataset its parent's DataContext itself (Dataset._from_parent): set on the copy of
        # it that the result gets, or the caller's dataset and every other pipeline from it run order-preserving
        context = copy.copy(result.context)
        context.execution_options = copy.copy(context.execution_options)
        context.execution_options.preserve_order = True
        result._context = context
        plan = getattr(result, "_logical_plan", None)
        if plan is not None and hasattr(plan, "context"):  # the planner reads the plan's reference to it
            plan.context = context
    return result


def embed(
    dataset: ray.data.Dataset,
    model: str | os.PathLike[str],
    *,
    text_column: str = "text",
    output_column: str = "embedding",
    precision: str = "float32",
    truncate_dim: int | None = None,
    normalize_embeddings: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    **options: Unpack[MapOptions],
) -> ray.data.Dataset:
    """``dataset`` with ``output_column``: each row's ``SentenceTransformer.encode`` of ``text_column``.

    ``precision`` (``float32``, ``int8``, ``uint8``, ``binary``, ``ubinary``), ``truncate_dim``,
    ``normalize_embeddings``, ``prompt_name`` and ``prompt`` as in ``encode``; ``options``: see
    ``MapOptions``. Lazy, as every Ray Data transform: the work runs when the dataset is consumed.
    """
    call = {"precision": precision, "truncate_dim": truncate_dim, "normalize_embeddings": normalize_embeddings}
    call |= {"prompt_name": prompt_name, "prompt": prompt}
    return _map(dataset, model, Task.EMBEDDING, (text_column,), output_column, call, options)


def sparse_encode(
    dataset: ray.data.Dataset,
    model: str | os.PathLike[str],
    *,
    text_column: str = "text",
    output_column: str = "sparse",
    max_active_dims: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    task: str | None = None,
    **options: Unpack[MapOptions],
) -> ray.data.Dataset:
    """``dataset`` with ``<output_column>_indices`` and ``<output_column>_values``: each row's SPLADE
    vector (``SparseEncoder.encode``) of ``text_column`` as its active dimensions, ascending, and their weights.
    ``task``: ``"query"`` / ``"document"`` encode as ``encode_query`` / ``encode_document`` (the task's prompt; an
    inference-free SPLADE model's route: queries are a token-weight lookup), another a route by name."""
    if task is not None and not isinstance(task, str):
        raise InputError(f"task must be a str or None, got {type(task).__name__}")
    call = {"max_active_dims": max_active_dims, "prompt_name": prompt_name, "prompt": prompt, "task": task}
    return _map(dataset, model, Task.SPARSE, (text_column,), output_column, call, options)


def predict(
    dataset: ray.data.Dataset,
    model: str | os.PathLike[str],
    *,
    query_column: str = "query",
    document_column: str = "document",
    output_column: str = "score",
    activation_fn: str | Callable[[np.ndarray], Any] | None = None,
    apply_softmax: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    **options: Unpack[MapOptions],
) -> ray.data.Dataset:
    """``dataset`` with ``output_column``: each row's ``CrossEncoder.predict`` score of the pair
    (``query_column``, ``document_column``)."""
    call = {"activation_fn": activation_fn, "apply_softmax": apply_softmax, "prompt_name": prompt_name}
    call["prompt"] = prompt
    return _map(dataset, model, Task.CROSS_ENCODER, (query_column, document_column), output_column, call, options)
