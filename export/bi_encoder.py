"""Bi-encoder export: sentence-transformers model → validated artifact directory."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import GraphContract, Manifest, Task, load_manifest, update_manifest, user_path
from fastembed_rt.calibration import select_texts
from fastembed_rt.export.backbone import export_st_backbone
from fastembed_rt.export.fidelity import Fidelity, Measured
from fastembed_rt.export.source import load_st_model, resolve_model_dir
from fastembed_rt.export.st_reader import ModelDescription, describe_model
from fastembed_rt.export.validate import (
    REFERENCE_PROVIDER,
    UNCACHED,
    ReferenceEncoder,
    check_batch_independent,
    parity_texts,
    validate_embeddings,
)
from fastembed_rt.export.variants import VariantSpec, parse_variants
from fastembed_rt.export.writer import Measure, finish_graph, stage_artifact
from fastembed_rt.kernels.spec import (
    NORMALIZE_OUTPUT,
    OUTPUT_DIM,
    PROMPT_LENGTH,
    QUANTIZE_RANGES,
    SENTENCE_EMBEDDING,
    TOKEN_EMBEDDINGS,
    Precision,
)

__all__ = ["calibrate", "export_model"]

logger = logging.getLogger("fastembed_rt.export")


def _append_stages(model: Any, description: ModelDescription) -> dict[str, Any]:
    """Append the output stages and the precision stage to a backbone graph, in place."""
    from fastembed_rt.kernels.onnx_stages import append_output_precisions, append_output_stages

    counts = append_output_stages(model, description.stages, token_embeddings=TOKEN_EMBEDDINGS)
    precision_counts = append_output_precisions(model, description.stages.output_dim(description.hidden_size))
    return finish_graph(
        model,
        {
            "stage_nodes": counts.nodes,
            "precision_nodes": precision_counts.nodes,
            "pooling_modes": counts.pooling_modes,
            "dense_layers": counts.dense_layers,
            "normalize": counts.normalize,
        },
    )


def _graph_contract(description: ModelDescription, inputs: tuple[str, ...]) -> GraphContract:
    """The fused graph's inputs (the architecture's, then the stages' per-call ones) and outputs."""
    dim = description.stages.output_dim(description.hidden_size)
    prompt_inputs = () if description.stages.pooling.include_prompt else (PROMPT_LENGTH,)
    return GraphContract(
        inputs=(*inputs, *prompt_inputs, OUTPUT_DIM, NORMALIZE_OUTPUT, QUANTIZE_RANGES),
        outputs={
            SENTENCE_EMBEDDING: {"dtype": "float32", "dims": ["batch", dim]},
            TOKEN_EMBEDDINGS: {"dtype": "float32", "dims": ["batch", "sequence", description.hidden_size]},
            **{
                p.output_name: {"dtype": p.dtype, "dims": ["batch", "output_bytes" if p.packed else "output_dim"]}
                for p in Precision
            },
        },
    )


def export_model(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    external_data_threshold: int | None = None,
    stsb: bool | None = None,
    stsb_path: str | os.PathLike[str] | None = None,
    calibration_texts: Sequence[str] | None = None,
    variants: str | Sequence[str] | None = ("fp32",),
) -> Manifest:
    """Export a sentence-transformers bi-encoder to a fastembed-rt artifact at ``out_dir``.

    The transformer becomes an ONNX graph with the Pooling/Dense/Normalize stages fused in; the
    result is validated against the PyTorch model and written only if every text of the grid
    reaches the fp32 gate (min cosine ≥ 0.9999).

    Args:
        model: a local model directory or a hub id.
        out_dir: where the artifact goes; must not exist unless ``overwrite``.
        stsb: also score STSb test Spearman for the manifest (None: when the data is found, locally or on the
            hub: ``fastembed_rt.stsb.load_stsb``).
        calibration_texts: texts whose embeddings fix the int8/uint8 ranges (None: the STSb train
            sentences when found; empty: no calibration).
        variants: which graphs to build besides fp32 (``export.variants.VARIANTS[Task.EMBEDDING]``;
            None: the default ones whose engine is installed). Each is validated against PyTorch and kept only if
            it passes its gate.
        trust_remote_code: run code from the model's repository (its own model class or modules); off by default.
        external_data_threshold: fp32 weight bytes above which graphs keep their weights in a data file beside
            them (None: 0, every graph: ONNX Runtime memory-maps the file; over 2 GiB there is no other way).
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model or variant; ParityError: the graph misses its gate (lists every failure).
    """
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    out = user_path(out_dir)  # "~/artifacts/m" is under the home folder, as for model paths and save()
    specs = parse_variants(variants, Task.EMBEDDING)
    model_dir = resolve_model_dir(model, revision, token)
    st_model = load_st_model(SentenceTransformer, model_dir, trust_remote_code=trust_remote_code)
    description = describe_model(model_dir, st_model)
    # The graph's rows are full width, and so are PyTorch's references; a saved Matryoshka default goes to the
    # manifest once the artifact is complete (below), so the export's own loads run full width too.
    st_model.truncate_dim = None
    reference = ReferenceEncoder(st_model)
    with stage_artifact(out, overwrite, model=model, revision=revision, model_dir=model_dir) as writer:
        backbone = export_st_backbone(st_model, writer.backbone, external_data_threshold=external_data_threshold)
        step = time.perf_counter()
        logger.info("PyTorch model loaded and exported to ONNX in %.1f s", step - started)
        arch = backbone.architecture
        writer.write_fp32(
            Task.EMBEDDING,
            architecture=description.model_type,
            modules=description.modules,
            tokenizer=writer.write_tokenizer(st_model),
            graph=_graph_contract(description, arch.inputs),
            stages=description.stages.to_dict(),
            similarity_fn=description.similarity_fn,
            dim=description.stages.output_dim(description.hidden_size),
            backbone_shape=backbone.shape,
            append_stages=lambda graph: _append_stages(graph, description),
        )
        # fp32 is held to its gate on the grid and on held-out STSb dev sentences (the int8 variants' too), which
        # exclude what int8 calibrates on: known before calibrating, which needs the accepted fp32 graph.
        source = calibration_source(calibration_texts, stsb_path)
        used_texts = select_texts(source[0]) if source else []  # what int8 model quantization calibrates on
        calibrated_on = set(used_texts)
        held_out = [text for text in _held_out_texts(stsb_path) if text not in calibrated_on]
        fidelity = validate_embeddings(
            writer.root, reference, description.prompts, arch.min_cosine, extra_texts=held_out
        )
        if fidelity.failures:
            check_batch_independent(reference, str(st_model.tokenizer.padding_side), arch.min_cosine)
        else:
            _score_stsb(writer.root, reference, fidelity, stsb, stsb_path)
        writer.accept_fp32(fidelity, f"min cosine {arch.min_cosine}")
        logger.info(
            "fp32 graph validated against PyTorch (min cosine %.6f, STSb %s) in %.1f s",
            fidelity.min_cosine,
            "not scored" if fidelity.stsb_spearman is None else f"{fidelity.stsb_spearman:.2f}",
            time.perf_counter() - step,
        )
        step = time.perf_counter()
        store_calibration(writer.root, source)
        if not used_texts and any(spec.name in ACTIVATION_CALIBRATED for spec in specs):
            logger.warning(
                "no calibration texts%s: int8 variants are calibrated on the %d parity texts only%s; pass calibration "
                "texts (or make STSb available: $FASTEMBED_RT_STSB) for a real calibration",
                "" if held_out else " and no STSb",
                len(parity_texts(description.max_seq_length)),
                f" (and checked on {len(held_out)} held-out STSb dev sentences)"
                if held_out
                else ", and checked on them",
            )
        # Every variant is checked on the batches fp32 was (grid plus held-out, PyTorch's vectors cached): free
        # PyTorch's model before any variant is built.
        del st_model
        reference.release()
        if used_texts:  # PyTorch's references were computed with fp32's validation
            logger.info("calibrated in %.1f s", time.perf_counter() - step)
        # OpenVINO compiles each candidate while validating; those blobs go to a scratch cache, not the user's.
        with tempfile.TemporaryDirectory(prefix="fastembed-rt-validate-") as cache:
            writer.build_variants(
                specs[1:],
                _measure(writer.root, reference, description.prompts, stsb, stsb_path, Path(cache), held_out),
                backbone=backbone,
                calibration_texts=list(used_texts or parity_texts(description.max_seq_length)),
                append_stages=lambda graph: _append_stages(graph, description),
                speed_texts=held_out or parity_texts(description.max_seq_length),
            )
        width = description.stages.output_dim(description.hidden_size)
        # encode's default width, as sentence-transformers applies it (one past the width cuts nothing there)
        if description.truncate_dim is not None and description.truncate_dim < width:
            update_manifest(writer.root, truncate_dim=description.truncate_dim)
    logger.info("exported %s to %s in %.1f s", model, out, time.perf_counter() - started)
    return load_manifest(out)


def calibration_source(
    texts: Sequence[str] | None, stsb_path: str | os.PathLike[str] | None
) -> tuple[Sequence[str], str] | None:
    """The texts to calibrate on and where they come from: ``texts`` (the user's), or by default the STSb train
    sentences; None when there are none."""
    from fastembed_rt.stsb import available_stsb

    if texts is not None:
        return (texts, "user texts") if texts else None
    train = available_stsb("train", "en", stsb_path)
    if train is None:
        logger.warning("no calibration texts and no STSb: int8/uint8 outputs need `fastembed-rt calibrate`")
        return None
    return train.sentences1 + train.sentences2, "stsb-en-train"


def calibrate(
    artifact: Path,
    texts: Sequence[str] | None,
    stsb_path: str | os.PathLike[str] | None,
    task: Task = Task.EMBEDDING,
) -> None:
    """Store the int8/uint8 calibration set: ``texts``, or by default the STSb train sentences, encoded
    by the runtime model of ``task`` (bi-encoders, multi-vector models)."""
    store_calibration(artifact, calibration_source(texts, stsb_path), task)


def store_calibration(artifact: Path, source: tuple[Sequence[str], str] | None, task: Task = Task.EMBEDDING) -> None:
    """``calibrate`` with what ``calibration_source`` gave (nothing where it gave None); the texts stored are
    ``select_texts`` of them."""
    from fastembed_rt.calibration import calibrate_artifact
    from fastembed_rt.models import MODEL_TYPES

    if source is None:
        return
    runtime = MODEL_TYPES[task](artifact, provider="cpu")
    calibrate_artifact(runtime, source[0], source[1])
    runtime.close()


# the variants whose activation scales come from the calibration texts (weight-only ones take none)
ACTIVATION_CALIBRATED = frozenset({"int8", "int8-avx2", "openvino-int8"})


def _held_out_texts(stsb_path: str | os.PathLike[str] | None, count: int = 256) -> list[str]:
    """STSb dev sentences to validate variants on, when available (the caller drops any calibration text)."""
    from fastembed_rt.stsb import available_stsb

    dev = available_stsb("dev", "en", stsb_path)
    return [] if dev is None else list(dict.fromkeys(dev.sentences1 + dev.sentences2))[:count]


def _measure(
    root: Path,
    reference: ReferenceEncoder,
    prompts: dict[str, str],
    stsb: bool | None,
    stsb_path: str | os.PathLike[str] | None,
    cache: Path,
    held_out: list[str],
) -> Measure:
    """A variant against PyTorch (``reference``) on the grid plus held-out STSb dev sentences; the built one also
    on STSb test."""

    def measure(spec: VariantSpec[Any], final: bool, checked: Measured | None) -> Fidelity:
        provider = REFERENCE_PROVIDER[spec.format]
        if isinstance(checked, Fidelity):  # the accepted candidate is this file: its grid run stands
            fidelity = checked
        else:
            fidelity = validate_embeddings(
                root,
                reference,
                prompts,
                None,
                variant=spec.name,
                provider=provider,
                extra_texts=held_out,
                provider_cache_dir=cache,
            )
        if final:
            _score_stsb(root, reference, fidelity, stsb, stsb_path, spec.name, provider, cache)
        return fidelity

    return measure


def _score_stsb(
    artifact: Path,
    reference: ReferenceEncoder,
    fidelity: Fidelity,
    stsb: bool | None,
    path: str | os.PathLike[str] | None,
    variant: str = "auto",
    provider: str = "auto",
    provider_cache_dir: Path | None = None,
) -> None:
    from fastembed_rt.models import SentenceTransformer
    from fastembed_rt.stsb import available_stsb, load_stsb, stsb_spearman

    if stsb is False:
        return
    data = load_stsb("test", "en", path) if stsb else available_stsb("test", "en", path)  # True: it must be there
    if data is None:
        return
    runtime = SentenceTransformer(
        artifact, variant=variant, provider=provider, provider_cache_dir=provider_cache_dir, provider_options=UNCACHED
    )
    fidelity.stsb_spearman = stsb_spearman(lambda t: runtime.encode(t, show_progress_bar=False), data)
    fidelity.stsb_spearman_torch = stsb_spearman(reference.encode, data)
    runtime.close()
