"""Late-interaction export: a sentence-transformers ``MultiVectorEncoder`` (ColBERT) → validated artifact.

The transformer becomes an ONNX graph whose token embeddings go through the model's token-level Dense
projection and normalization in-graph (``kernels.onnx_stages.append_token_stages``): ``token_vectors``
``[batch, seq, dim]``. Everything else the saved configuration says (query/document lengths, query
expansion, the skiplist resolved to token ids, token pooling, the similarity function) goes to the
manifest's ``stages.late_interaction``, which the runtime reads to tokenize and drop rows on the host.
The artifact is written only when every token vector the runtime keeps, for queries, documents and
plain ``encode`` calls in batches of 1, 3 and 5, reaches the fp32 gate against sentence-transformers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.artifact import GraphContract, Manifest, Task, load_manifest, user_path
from fastembed_rt.errors import ExportError
from fastembed_rt.export.backbone import export_st_backbone
from fastembed_rt.export.bi_encoder import calibrate
from fastembed_rt.export.fidelity import Fidelity
from fastembed_rt.export.source import load_st_model, resolve_model_dir
from fastembed_rt.export.st_reader import check_features, dense_spec
from fastembed_rt.export.validate import UNCACHED, parity_texts, row_cosines
from fastembed_rt.export.variants import parse_variants
from fastembed_rt.export.writer import finish_graph, stage_artifact
from fastembed_rt.kernels.spec import TOKEN_VECTORS, DenseSpec, TokenStages
from fastembed_rt.models.multi_vector_encoder import ExpansionStrategy, LateInteraction, QueryExpansion
from fastembed_rt.token_pooling import HierarchicalTokenPooling

__all__ = ["describe_multi_vector", "export_multi_vector_encoder", "validate_multi_vector"]

logger = logging.getLogger("fastembed_rt.export")

# Besides the parity grid: punctuation (the skiplist), repeated words (token pooling merges them).
_EXTRA_TEXTS = (
    "Hello, world! Is this (really) the end?",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "cats cats cats and dogs dogs dogs, all of them sleeping in the sun.",
)


def _expansion(transformer: Any, where: str) -> QueryExpansion | None:
    config = transformer.query_expansion
    if config is None:
        return None
    tokenizer = transformer.tokenizer
    if config.get("token") is not None:
        token_id = tokenizer.convert_tokens_to_ids(config["token"])
    else:  # sentence-transformers' (and PyLate's) fallback: [MASK], else the end-of-text token
        token_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.eos_token_id
    if token_id is None:
        raise ExportError(f"{where}: query_expansion has no token and the tokenizer has no mask or eos token")
    return QueryExpansion(
        ExpansionStrategy(config["strategy"]), bool(config["attend"]), int(token_id), int(config["length"])
    )


def describe_multi_vector(model_dir: Path, mve: Any) -> tuple[TokenStages, LateInteraction, list[str]]:
    """The loaded ``sentence_transformers.MultiVectorEncoder`` as data: its graph stages, its host-side
    configuration and its module names.

    Supported pipelines: ``Transformer`` (feature extraction), token-level ``Dense`` layers, a token-level
    ``Normalize``, a ``HierarchicalTokenPooling``, in that order, and a ``MultiVectorMask`` anywhere before the
    pooling.

    Raises:
        ExportError: any other module, order or setting, naming it.
    """
    names = [type(m).__name__ for m in mve]
    order = {"Dense": 1, "Normalize": 2, "MultiVectorMask": 3, "HierarchicalTokenPooling": 4}
    if names[0] != "Transformer" or any(name not in order for name in names[1:]):
        raise ExportError(
            f"{model_dir}: MultiVectorEncoder modules {names} are not supported; supported: Transformer, then "
            "Dense..., Normalize, MultiVectorMask, HierarchicalTokenPooling"
        )
    # MultiVectorMask only rewrites the attention mask, which Dense and Normalize do not read: it may stand anywhere
    # before the pooling (sentence-transformers' own pipeline, Stanford ColBERT and PyLate checkpoints as it loads
    # them: Dense, MultiVectorMask, Normalize).
    ranks = [order[name] for name in names[1:] if name != "MultiVectorMask"]
    repeated = [name for name in order if name != "Dense" and names.count(name) > 1]
    pooled_first = "MultiVectorMask" in names and "HierarchicalTokenPooling" in names[: names.index("MultiVectorMask")]
    if ranks != sorted(ranks) or repeated or pooled_first:
        raise ExportError(
            f"{model_dir}: modules {names} must come in the order Dense..., Normalize, HierarchicalTokenPooling, "
            "with one MultiVectorMask anywhere before the pooling"
        )
    transformer = mve[0]
    if getattr(transformer, "transformer_task", "feature-extraction") != "feature-extraction":
        raise ExportError(f"{model_dir}: transformer_task {transformer.transformer_task!r} is not supported")
    dense: list[DenseSpec] = []
    normalize = False
    late: dict[str, Any] = {
        "query_length": transformer.query_length,
        "document_length": transformer.document_length,
        "query_expansion": _expansion(transformer, str(model_dir)),
    }
    for i, module in enumerate(mve):
        where = f"{model_dir} module {i} ({names[i]})"
        if names[i] == "Dense":
            dense.append(dense_spec(module, where, "token_embeddings"))
        elif names[i] == "Normalize":
            check_features(module, where, "token_embeddings")
            normalize = True
        elif names[i] == "MultiVectorMask":
            ids = module._skiplist_ids  # resolved by sentence-transformers with the model's tokenizer
            keep = module.keep_only_token_ids
            late.update(
                skiplist_words=tuple(module.skiplist_words),
                skiplist_ids=() if ids is None else tuple(int(t) for t in ids.tolist()),
                skiplist_tasks=tuple(module.skiplist_tasks),
                keep_only_token_ids=None if keep is None else tuple(int(t) for t in keep),
            )
        elif names[i] == "HierarchicalTokenPooling":
            late["token_pooling"] = HierarchicalTokenPooling(
                float(module.pool_factor),
                num_protected_tokens=int(module.num_protected_tokens),
                normalize_embeddings=bool(module.normalize_embeddings),
                tasks=tuple(module.tasks),
            )
    if late["query_expansion"] is not None and "MultiVectorMask" not in names:
        raise ExportError(
            f"{model_dir}: query_expansion is set but no MultiVectorMask follows the Transformer, so the "
            "expansion tokens are not scored (sentence-transformers warns about this too); add a MultiVectorMask"
        )
    return TokenStages(tuple(dense), normalize), LateInteraction(**late), names


def _matrix_failures(
    ours: list[np.ndarray], ref: list[np.ndarray], texts: list[str], case: str, min_cosine: float
) -> tuple[list[str], list[np.ndarray], float]:
    """Per-text comparison: equal row counts, then the cosine of each token vector pair."""
    failures: list[str] = []
    cosines: list[np.ndarray] = []
    max_abs = 0.0
    for text, mine, theirs in zip(texts, ours, ref):
        shown = text if len(text) < 40 else text[:37] + "..."
        if mine.shape != theirs.shape:
            failures.append(f"{case}, text {shown!r}: {mine.shape} token vectors vs torch {theirs.shape}")
            continue
        if not len(mine):
            continue
        cos = row_cosines(mine, theirs)
        cosines.append(cos)
        max_abs = max(max_abs, float(np.abs(mine - theirs).max()))
        if not cos.min() >= min_cosine:
            failures.append(f"{case}, text {shown!r}: token vector cosine {cos.min():.6f} < {min_cosine}")
    return failures, cosines, max_abs


def validate_multi_vector(artifact: Path, mve: Any, min_cosine: float) -> Fidelity:
    """Every kept token vector of the artifact vs ``mve`` on the grid: ``encode_query``, ``encode_document``
    and ``encode`` (no task), in batches of 1, 3 and 5; then batch invariance (each text alone vs batched)."""
    from fastembed_rt.models.multi_vector_encoder import MultiVectorEncoder

    runtime = MultiVectorEncoder(artifact, verify="full", provider_options=UNCACHED)
    texts = [*parity_texts(runtime.max_seq_length), *_EXTRA_TEXTS]
    fidelity = Fidelity()
    all_cos: list[np.ndarray] = []
    calls = ("encode_query", "encode_document", "encode")
    for call in calls:
        for size in (1, 3, 5):
            for start in range(0, len(texts), size):
                batch = texts[start : start + size]
                ours = getattr(runtime, call)(batch, batch_size=size)
                ref = getattr(mve, call)(batch, batch_size=size, convert_to_numpy=True, show_progress_bar=False)
                failures, cos, max_abs = _matrix_failures(ours, ref, batch, f"{call}, batch of {size}", min_cosine)
                fidelity.failures.extend(failures)
                all_cos.extend(cos)
                fidelity.max_abs_diff = max(fidelity.max_abs_diff, max_abs)
    cosines = np.concatenate(all_cos) if all_cos else np.ones(1)
    fidelity.min_cosine, fidelity.mean_cosine, fidelity.texts = float(cosines.min()), float(cosines.mean()), len(texts)
    fidelity.extra["token_vectors"] = int(cosines.size)
    alone = [runtime.encode_document(t, show_progress_bar=False) for t in texts]
    batched = runtime.encode_document(texts, batch_size=32, show_progress_bar=False)
    fidelity.batch_invariance_min_cosine = float(
        min((row_cosines(a, b).min() for a, b in zip(alone, batched) if len(a)), default=1.0)
    )
    runtime.close()
    return fidelity


def export_multi_vector_encoder(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    external_data_threshold: int | None = None,
    variants: str | Sequence[str] | None = None,
    calibration_texts: Sequence[str] | None = None,
    stsb_path: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Export a sentence-transformers ``MultiVectorEncoder`` to a fastembed-rt artifact at ``out_dir``.

    Graph inputs: the architecture's; output ``token_vectors`` float32 ``[batch, seq, dim]``. Written only if
    every kept token vector of the grid reaches min cosine 0.9999 against sentence-transformers.

    Args:
        model: a local MultiVectorEncoder directory (or a PyLate / Stanford ColBERT one that
            sentence-transformers loads as such) or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        variants: ``fp32`` (the only one for now).
        calibration_texts: texts whose token vectors fix the int8/uint8 ranges (None: the STSb train
            sentences when found, locally or on the hub; empty: no calibration).
        trust_remote_code: run code from the model's repository; off by default.
        external_data_threshold: fp32 weight bytes above which graphs keep their weights beside them.
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported modules or settings; ParityError: the graph misses its gate.
    """
    from sentence_transformers import MultiVectorEncoder

    from fastembed_rt.kernels.onnx_stages import append_token_stages

    started = time.perf_counter()
    out = user_path(out_dir)  # "~/artifacts/m" is under the home folder, as for model paths and save()
    parse_variants(variants, Task.MULTI_VECTOR)
    model_dir = resolve_model_dir(model, revision, token)
    mve = load_st_model(MultiVectorEncoder, model_dir, trust_remote_code=trust_remote_code)
    stages, late, names = describe_multi_vector(model_dir, mve)

    def append(graph: Any) -> dict[str, Any]:
        counts = append_token_stages(graph, stages)
        return finish_graph(
            graph, {"stage_nodes": counts.nodes, "dense_layers": counts.dense_layers, "normalize": counts.normalize}
        )

    with stage_artifact(out, overwrite, model=model, revision=revision, model_dir=model_dir) as writer:
        backbone = export_st_backbone(mve, writer.backbone, external_data_threshold=external_data_threshold)
        dim = stages.output_dim(backbone.hidden_size)
        writer.write_fp32(
            Task.MULTI_VECTOR,
            architecture=backbone.architecture.model_type,
            modules=names,
            tokenizer=writer.write_tokenizer(mve),
            graph=GraphContract(
                inputs=backbone.architecture.inputs,
                outputs={TOKEN_VECTORS: {"dtype": "float32", "dims": ["batch", "sequence", dim]}},
            ),
            stages={"token_stages": stages.to_dict(), "late_interaction": late.to_dict()},
            similarity_fn=str(mve.similarity_fn_name),
            dim=dim,
            backbone_shape=backbone.shape,
            append_stages=append,
        )
        min_cosine = backbone.architecture.min_cosine
        writer.accept_fp32(validate_multi_vector(writer.root, mve, min_cosine), f"min cosine {min_cosine}")
        calibrate(writer.root, calibration_texts, stsb_path, Task.MULTI_VECTOR)
    logger.info("exported multi-vector %s to %s in %.1f s", model, out, time.perf_counter() - started)
    return load_manifest(out)
