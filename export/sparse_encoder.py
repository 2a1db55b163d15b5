"""SPLADE export: a sentence-transformers ``SparseEncoder`` (masked LM + ``SpladePooling``) → validated artifact.

The masked-LM model becomes one ONNX graph whose ``[batch, seq, vocab]`` logits never leave it: the
SPLADE head (``kernels.onnx_heads.append_splade_head``) pools them and keeps the top
``max_active_dims`` per text in-graph. The artifact is written only when, on every text of the grid,
with and without pruning, the runtime's active dimensions and weights agree with
``sentence_transformers.SparseEncoder`` on PyTorch.

An inference-free SPLADE model (sentence-transformers' ``Router``: a ``SparseStaticEmbedding`` query route, a
masked-LM document route) exports its document route as that graph and its query route as the token weights
(``fastembed_rt.sparse_routes``); both routes are checked against PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import Manifest, Task
from fastembed_rt.errors import ExportError
from fastembed_rt.export.fidelity import Fidelity, HeadFidelity, Measured, ToleranceGate
from fastembed_rt.export.heads import HeadPlan, calibration_items, export_head
from fastembed_rt.export.source import check_graph_model
from fastembed_rt.export.validate import (
    REFERENCE_PROVIDER,
    UNCACHED,
    check_finite,
    held_out_pairs,
    parity_texts,
    prompt_cases,
    row_cosines,
)
from fastembed_rt.export.variants import VariantSpec
from fastembed_rt.export.writer import Measure
from fastembed_rt.kernels.onnx_heads import append_splade_head
from fastembed_rt.kernels.spec import (
    MAX_ACTIVE_DIMS,
    SPARSE_INDICES,
    SPARSE_VALUES,
    SpladeActivation,
    SpladePoolingStrategy,
    SpladeSpec,
)
from fastembed_rt.sparse_routes import ROUTER_STAGE, Router, StaticRoute

QUERY_WEIGHTS_FILE = "query_weights.npy"
# a tokenizer's model_max_length past this is transformers' "no limit" (VERY_LARGE_INTEGER): the route never cuts
_NO_LIMIT = 1 << 24

__all__ = ["PRUNING_CHECK_K", "export_sparse_encoder", "validate_sparse_encoder"]

logger = logging.getLogger("fastembed_rt.export")

# The top-k the grid also checks pruning with (besides the model's own max_active_dims).
PRUNING_CHECK_K = 8


@dataclass(frozen=True)
class _Routes:
    """A Router model split for export: its graph route as a model of its own, its lookup route's weights."""

    router: Router
    model: Any  # the loaded sentence_transformers.SparseEncoder, its Router first
    graph_model: Any  # a sentence_transformers.SparseEncoder of the graph route's modules (shared, not copied)
    weights: bytes  # the .npy file of the lookup route

    @property
    def lookup(self) -> str:
        return next(iter(self.router.static))

    @property
    def graph(self) -> str:
        return self.router.graph_routes[0]


def _split_router(model_dir: Path, se: Any) -> _Routes | None:
    """None for a model without a Router; else its two routes, or an ``ExportError`` for a Router this artifact
    cannot hold (one ``SparseStaticEmbedding`` route and one masked-LM SPLADE route, looked up by task name)."""
    router = se[0]
    if type(router).__name__ != "Router":
        return None
    routes = {name: list(modules) for name, modules in router.sub_modules.items()}
    shown = {name: [type(m).__name__ for m in modules] for name, modules in routes.items()}
    static = [name for name, kinds in shown.items() if kinds == ["SparseStaticEmbedding"]]
    graph = [name for name in routes if name not in static]
    if len(se) != 1 or len(static) != 1 or len(graph) != 1 or router.route_mappings:
        raise ExportError(
            f"{model_dir}: a Router model exports when it is inference-free SPLADE: one route of a "
            "SparseStaticEmbedding, one of a fill-mask Transformer and SpladePooling, chosen by task name; this one "
            f"has routes {shown}, route_mappings {dict(router.route_mappings)}"
            + ("" if len(se) == 1 else f" and modules after the Router ({[type(m).__name__ for m in se][1:]})")
        )
    from sentence_transformers import SparseEncoder

    lookup = routes[static[0]][0]
    view = SparseEncoder(
        modules=routes[graph[0]],
        device="cpu",
        similarity_fn_name=se.similarity_fn_name,
        prompts=dict(se.prompts or {}),
        default_prompt_name=se.default_prompt_name,
        max_active_dims=se.max_active_dims,
    )
    check_graph_model(view, model_dir, "SparseEncoder")
    document: Any = view[0]
    vocab_size = int(document.auto_model.config.vocab_size)
    weights = lookup.weight.detach().cpu().float().numpy()
    if weights.shape != (vocab_size,):
        raise ExportError(
            f"{model_dir}: the {static[0]!r} route weighs {weights.shape[0]} tokens, the {graph[0]!r} route's "
            f"vocabulary has {vocab_size}"
        )
    _same_tokenizer(model_dir, lookup.tokenizer, document.tokenizer, static[0], graph[0])
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(weights, dtype=np.float32), allow_pickle=False)
    data = buffer.getvalue()
    limit = int(lookup.max_seq_length)
    route = StaticRoute(QUERY_WEIGHTS_FILE, hashlib.sha256(data).hexdigest(), None if limit >= _NO_LIMIT else limit)
    default = None if router.default_route is None else str(router.default_route)
    described = Router(default, (graph[0],), {static[0]: route})
    return _Routes(described, se, view, data)


def _same_tokenizer(model_dir: Path, lookup: Any, document: Any, lookup_name: str, document_name: str) -> None:
    """The artifact holds one tokenizer: the lookup route's must tokenize as the graph route's does."""

    def settings(tokenizer: Any) -> tuple[Any, ...]:
        backend = json.loads(tokenizer.backend_tokenizer.to_str())
        backend.pop("truncation", None)
        backend.pop("padding", None)
        return backend, tokenizer.truncation_side, bool(getattr(tokenizer, "split_special_tokens", False))

    if settings(lookup) != settings(document):
        raise ExportError(
            f"{model_dir}: the {lookup_name!r} route's tokenizer differs from the {document_name!r} route's; an "
            "artifact holds one tokenizer, so routes with their own tokenizers are not supported"
        )


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
    return check_finite(np.asarray(embeddings.detach().cpu().float().numpy(), dtype=np.float32), texts)


def _torch_pruned(dense: np.ndarray, k: int) -> np.ndarray:
    """sentence-transformers' own top-k (``util.select_max_active_dims``) of unpruned weights."""
    import torch
    from sentence_transformers.util import select_max_active_dims

    return np.asarray(select_max_active_dims(torch.from_numpy(dense), max_active_dims=k).numpy(), dtype=np.float32)


def validate_sparse_encoder(
    artifact: Path,
    se: Any,
    spec: SpladeSpec,
    tolerance: ToleranceGate,
    variant: str = "fp32",
    routes: _Routes | None = None,
) -> HeadFidelity:
    """Weights and active dimensions of the artifact's ``variant`` vs ``se`` on the text grid, in batches of 1, 3
    and 5.

    Checked without pruning, with ``PRUNING_CHECK_K`` and with the model's ``max_active_dims``; the
    PyTorch side runs each text once and prunes with sentence-transformers' ``select_max_active_dims``,
    exactly as ``SparseEncoder.encode`` does. Every weight outside ``tolerance`` is a failure. A Router model
    (``routes``; ``se`` is then its graph route) has its lookup route checked too (``_check_lookup``).
    """
    from fastembed_rt.models.sparse_encoder import SparseEncoder

    runtime = SparseEncoder(artifact, variant=variant, provider="cpu", verify="full", provider_options=UNCACHED)
    texts = parity_texts(runtime.max_seq_length)
    ks = sorted({PRUNING_CHECK_K, *([] if spec.max_active_dims is None else [spec.max_active_dims])})
    fidelity = HeadFidelity(extra={"index_mismatches": 0, "pruning_k": ks})
    active_dims: list[int] = []
    for prompt in prompt_cases(se.prompts):
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
                        show_progress_bar=False,
                        task=None if routes is None else routes.graph,
                    )
                    ref = reference[start : start + size]
                    fidelity.observe(ours, ref)
                    fidelity.checked += len(batch)
                    fidelity.extra["index_mismatches"] += int(((ours > 0) != (ref > 0)).sum())
                    bad = tolerance.exceeded(ours, ref)
                    for row in sorted({int(i) for i in np.argwhere(bad)[:, 0]}):
                        dims = np.flatnonzero(bad[row])
                        shown = batch[row] if len(batch[row]) < 30 else batch[row][:27] + "..."
                        fidelity.failures.append(
                            f"batch of {size}, prompt {prompt!r}, max_active_dims {k}, text {shown!r}: "
                            f"{dims.size} dims differ, e.g. dim {dims[0]}: {ours[row, dims[0]]:.7g} vs torch "
                            f"{ref[row, dims[0]]:.7g}"
                        )
    fidelity.extra["mean_active_dims"] = round(float(np.mean(active_dims)), 2)
    if routes is not None:
        held_out = [text for pair in held_out_pairs(128) for text in pair]
        _check_lookup(runtime, routes, [*texts, " ".join(texts), *held_out], [None, *ks], fidelity)
    runtime.close()
    return fidelity


def _check_lookup(
    runtime: Any, routes: _Routes, texts: list[str], ks: list[int | None], fidelity: HeadFidelity
) -> None:
    """The lookup route (``encode(task=<its name>)``, with each of the model's prompts) against sentence-transformers'
    on ``texts``: the same weights on the same tokens, exactly (a lookup has no rounding); pruned (``ks``, or the
    model's own ``max_active_dims``), the same weights kept (which of equal weights at the cut is kept is torch's
    ``topk``'s choice: IDF weights tie often)."""
    checked = 0
    model = routes.model
    for prompt in prompt_cases(model.prompts):
        for k in ks:
            pruned = k or model.max_active_dims
            options = {"prompt": prompt, "task": routes.lookup, "max_active_dims": k, "show_progress_bar": False}
            theirs = model.encode(texts, convert_to_sparse_tensor=False, **options)
            reference = np.asarray(theirs.detach().cpu().float().numpy(), dtype=np.float32)
            ours = runtime.encode(texts, convert_to_sparse_tensor=False, **options)
            for row, text in enumerate(texts):
                checked += 1
                mine, theirs_row = ours[row], reference[row]
                same = (
                    np.array_equal(mine, theirs_row)
                    if pruned is None
                    else np.array_equal(np.sort(mine[mine != 0]), np.sort(theirs_row[theirs_row != 0]))
                )
                if not same:
                    shown = text if len(text) < 30 else text[:27] + "..."
                    fidelity.failures.append(
                        f"{routes.lookup!r} route, prompt {prompt!r}, max_active_dims {pruned}, text {shown!r}: "
                        f"weights {_active(mine)} vs torch {_active(theirs_row)}"
                    )
    fidelity.extra[f"{routes.lookup}_route_checked"] = checked


def _active(row: np.ndarray) -> str:
    dims = np.flatnonzero(row)
    pairs = ", ".join(f"{d}: {row[d]:.7g}" for d in dims[:5])
    return "{" + pairs + (", ..." if dims.size > 5 else "") + "}"


def _measure(se: Any, spec: SpladeSpec, root: Path, routes: _Routes | None) -> Measure:
    """A further variant against ``se``: a full-precision one (``ToleranceGate``) as the fp32 graph is validated;
    int8 by its unpruned weights on the text grid plus STSb dev sentences (when here)."""
    from fastembed_rt.models.sparse_encoder import SparseEncoder

    calibrated_on = set(calibration_items(Task.SPARSE))  # held out from int8's calibration too (14 of 256 were in it)
    held_out = [t for pair in held_out_pairs(128) for t in pair if t not in calibrated_on]
    texts = parity_texts(int(se.max_seq_length)) + held_out
    computed: list[np.ndarray] = []  # PyTorch's weights, once, when the first int8 candidate needs them
    graph_route = None if routes is None else routes.graph
    alone_count = 16

    def measure(variant: VariantSpec[Any], final: bool, checked: Measured | None) -> Fidelity | HeadFidelity:
        if isinstance(variant.gate, ToleranceGate):
            return validate_sparse_encoder(root, se, spec, variant.gate, variant.name, routes)
        if isinstance(checked, Fidelity):  # the accepted candidate is this file; final adds nothing here
            return checked
        if not computed:
            computed.append(_torch_dense(se, texts, None))
        reference = computed[0]
        runtime = SparseEncoder(
            root,
            variant=variant.name,
            provider=REFERENCE_PROVIDER[variant.format],
            verify="full",
            provider_options=UNCACHED,
        )
        try:
            ours = runtime.encode(
                texts,
                batch_size=32,
                max_active_dims=spec.vocab_size,
                convert_to_sparse_tensor=False,
                show_progress_bar=False,
                task=graph_route,
            )
            alone = runtime.encode(
                texts[:alone_count],
                batch_size=1,
                max_active_dims=spec.vocab_size,
                convert_to_sparse_tensor=False,
                show_progress_bar=False,
                task=graph_route,
            )
        finally:
            runtime.close()
        cos = row_cosines(ours, reference)
        active, ref_active = ours > 0, reference > 0
        union = (active | ref_active).sum(axis=1)
        jaccard = np.divide((active & ref_active).sum(axis=1), union, out=np.ones(len(texts)), where=union > 0)
        return Fidelity(
            min_cosine=float(cos.min()),
            mean_cosine=float(cos.mean()),
            max_abs_diff=float(np.abs(ours.astype(np.float64) - reference).max()),
            texts=len(texts),
            batch_invariance_min_cosine=float(row_cosines(alone, ours[:alone_count]).min()),
            extra={
                "mean_active_dims_jaccard": round(float(jaccard.mean()), 4),
                "mean_active_dims": round(float(active.sum(axis=1).mean()), 2),
                "mean_active_dims_torch": round(float(ref_active.sum(axis=1).mean()), 2),
            },
        )

    return measure


def _plan(model_dir: Path, loaded: Any) -> HeadPlan:
    routes = _split_router(model_dir, loaded)
    se = loaded if routes is None else routes.graph_model
    head = _describe(model_dir, se)
    rows = ["batch", "active"]
    stages: dict[str, Any] = {"splade": head.to_dict()}
    modules = [type(m).__name__ for m in se]
    if routes is not None:
        stages[ROUTER_STAGE] = routes.router.to_dict()
        modules = ["Router", "SparseStaticEmbedding", *modules]
    return HeadPlan(
        append_head=lambda graph: append_splade_head(graph, head).to_dict(),
        modules=modules,
        extra_inputs=(MAX_ACTIVE_DIMS,),
        outputs={
            SPARSE_INDICES: {"dtype": "int64", "dims": rows},
            SPARSE_VALUES: {"dtype": "float32", "dims": rows},
        },
        stages=stages,
        similarity_fn=str(se.similarity_fn_name),
        dim=head.vocab_size,
        validate=lambda root, tolerance: validate_sparse_encoder(root, se, head, tolerance, routes=routes),
        measure=lambda root: _measure(se, head, root, routes),
        graph_model=None if routes is None else routes.graph_model,
        write_files=None if routes is None else lambda root: (root / QUERY_WEIGHTS_FILE).write_bytes(routes.weights),
    )


def export_sparse_encoder(
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
    """Export a sentence-transformers SPLADE SparseEncoder to a fastembed-rt artifact at ``out_dir``.

    Graph inputs: the architecture's plus ``max_active_dims`` int64 ``[1]``; outputs
    ``sparse_indices`` int64 and ``sparse_values`` float32, ``[batch, K]``. Written only if every
    weight of the grid is within the fp32 tolerance (``export.variants.VARIANTS[Task.SPARSE]["fp32"]``)
    of sentence-transformers.

    Args:
        model: a local model directory (sentence-transformers SparseEncoder, or a plain transformers
            ``*ForMaskedLM``, which sentence-transformers loads with max-pooling SPLADE) or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        variants: ``fp32`` (default) and/or ``int8`` (shipped only within its gate: cosine vs PyTorch).
        trust_remote_code: run code from the model's repository (its own model class or modules); off by default.
        external_data_threshold: fp32 weight bytes above which graphs keep their weights in a data file beside
            them (None: 0, every graph: ONNX Runtime memory-maps the file; over 2 GiB there is no other way).
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model, modules or variant; ParityError: the graph misses its gate
        (lists every failure).
    """
    from sentence_transformers import SparseEncoder

    return export_head(
        model,
        out_dir,
        Task.SPARSE,
        SparseEncoder,
        _plan,
        revision=revision,
        token=token,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        external_data_threshold=external_data_threshold,
        variants=variants,
    )
