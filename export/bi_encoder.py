"""Bi-encoder export: sentence-transformers model → validated artifact directory."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

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
    load_manifest,
)
from fastembed_rt.calibration import select_texts
from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.architectures import architecture_config
from fastembed_rt.export.backbone import export_backbone
from fastembed_rt.export.common import library_versions, resolve_model_dir, write_tokenizer
from fastembed_rt.export.st_reader import ModelDescription, describe_model
from fastembed_rt.export.validate import Fidelity, parity_texts, validate_embeddings
from fastembed_rt.export.variants import VARIANTS, BuildContext, BuildResult, VariantPlan, parse_variants
from fastembed_rt.kernels.spec import (
    NORMALIZE_OUTPUT,
    OUTPUT_DIM,
    PROMPT_LENGTH,
    QUANTIZE_RANGES,
    SENTENCE_EMBEDDING,
    TOKEN_EMBEDDINGS,
    Precision,
)

__all__ = ["export_model"]

logger = logging.getLogger("fastembed_rt.export")


def _load_sentence_transformer(model_dir: Path) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ExportError("export needs the export extra: pip install 'fastembed-rt[export]'") from exc
    try:
        return SentenceTransformer(str(model_dir), device="cpu")
    except Exception as exc:  # sentence-transformers raises many types on a bad directory
        raise ExportError(f"sentence-transformers could not load {model_dir}: {exc}") from exc


def _append_stages(model: Any, description: ModelDescription) -> dict[str, Any]:
    """Append the output stages and the precision stage to a backbone graph, in place."""
    import onnx

    from fastembed_rt.kernels.onnx_stages import append_output_precisions, append_output_stages

    counts = append_output_stages(model, description.stages, token_embeddings=TOKEN_EMBEDDINGS)
    precision_counts = append_output_precisions(model, description.stages.output_dim(description.hidden_size))
    model.producer_name = "fastembed-rt"
    onnx.checker.check_model(model)
    return {
        "stage_nodes": counts.nodes,
        "precision_nodes": precision_counts.nodes,
        "pooling_modes": counts.pooling_modes,
        "dense_layers": counts.dense_layers,
        "normalize": counts.normalize,
        "graph_nodes": len(model.graph.node),
    }


def _fuse_stages(backbone_path: Path, description: ModelDescription, out_path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(backbone_path))
    counts = _append_stages(model, description)
    onnx.save(model, str(out_path))
    return counts


def export_model(
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
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
        stsb: also score STSb test Spearman for the manifest (None: when the data is found locally).
        calibration_texts: texts whose embeddings fix the int8/uint8 ranges (None: the STSb train
            sentences when found locally; empty: no calibration).
        variants: which graphs to build besides fp32 (``export.variants.VARIANTS``; None: all).
            Each is validated against PyTorch and kept only if it passes its gate.
    Returns:
        the written manifest.
    Raises:
        ExportError: unsupported model; ParityError: the graph misses its gate (lists every failure).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite)")
    model_dir = resolve_model_dir(model, revision, token)
    st_model = _load_sentence_transformer(model_dir)
    description = describe_model(model_dir, st_model)
    arch = architecture_config(description.model_type)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "onnx").mkdir(parents=True)
    try:
        backbone = st_model[0].auto_model
        attn = getattr(backbone.config, "_attn_implementation", None)
        backbone_path = tmp / "onnx" / "backbone.onnx"
        export_backbone(backbone, arch, backbone_path, vocab_size=int(backbone.config.vocab_size))
        if attn is not None and hasattr(backbone, "set_attn_implementation"):
            backbone.set_attn_implementation(attn)  # the reference runs as users run it
        graph_file = "onnx/model.onnx"
        stage_counts = _fuse_stages(backbone_path, description, tmp / graph_file)
        tokenizer_files = write_tokenizer(st_model, tmp)
        hf_tokenizer = st_model[0].tokenizer
        dim = description.stages.output_dim(description.hidden_size)
        inputs = (
            arch.inputs
            + (() if description.stages.pooling.include_prompt else (PROMPT_LENGTH,))
            + (OUTPUT_DIM, NORMALIZE_OUTPUT, QUANTIZE_RANGES)
        )
        precision_outputs = {
            p.output_name: {"dtype": p.dtype, "dims": ["batch", "output_bytes" if p.packed else "output_dim"]}
            for p in Precision
        }
        variant = Variant(
            name="fp32",
            file=graph_file,
            format=VariantFormat.ONNX,
            precision=VariantPrecision.FP32,
            optimization="none",
            size=(tmp / graph_file).stat().st_size,
            sha256=file_sha256(tmp / graph_file),
            stage_counts=stage_counts,
        )
        manifest = Manifest(
            root=tmp,
            task=Task.EMBEDDING,
            source={
                "model": str(model),
                "revision": revision,
                "architecture": description.model_type,
                "modules": description.modules,
                "library_versions": library_versions(),
            },
            tokenizer=TokenizerInfo(
                file="tokenizer.json",
                files=tokenizer_files,
                max_seq_length=description.max_seq_length,
                pad_token_id=int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0),
                special_token_ids=tuple(int(i) for i in hf_tokenizer.all_special_ids),
                truncation_side=str(hf_tokenizer.truncation_side),
                padding_side=str(hf_tokenizer.padding_side),
                prompts=description.prompts,
                default_prompt_name=description.default_prompt_name,
            ),
            graph=GraphContract(
                inputs=inputs,
                outputs={
                    SENTENCE_EMBEDDING: {"dtype": "float32", "dims": ["batch", dim]},
                    TOKEN_EMBEDDINGS: {
                        "dtype": "float32",
                        "dims": ["batch", "sequence", description.hidden_size],
                    },
                    **precision_outputs,
                },
            ),
            stages=description.stages.to_dict(),
            similarity_fn=description.similarity_fn,
            dim=dim,
            variants=(variant,),
            schema_version=SCHEMA_VERSION,
        )
        manifest.write()
        fidelity = validate_embeddings(tmp, st_model, description.prompts, arch.min_cosine)
        if fidelity.failures:
            raise ParityError(
                f"exported graph of {model} misses the fp32 gate (min cosine {arch.min_cosine}) on "
                f"{len(fidelity.failures)} of {fidelity.texts} texts; nothing was written:\n  "
                + "\n  ".join(fidelity.failures),
                fidelity.failures,
            )
        _score_stsb(tmp, st_model, fidelity, stsb, stsb_path)
        manifest = replace(manifest, variants=(replace(variant, fidelity=fidelity.to_dict()),))
        manifest.write()
        used_texts = _calibrate(tmp, calibration_texts, stsb_path)
        plans = parse_variants(variants)
        if len(plans) > 1:
            context = BuildContext(
                root=tmp,
                base=tmp / graph_file,
                backbone=backbone_path,
                model_type=description.model_type,
                hidden_size=description.hidden_size,
                num_heads=int(getattr(backbone.config, "num_attention_heads", 0) or 0),
                graph_inputs=arch.inputs,
                calibration_texts=list(used_texts or parity_texts(description.max_seq_length)),
                append_stages=lambda graph: _append_stages(graph, description),
            )
            _build_variants(context, plans[1:], st_model, description.prompts, stsb, stsb_path)
        backbone_path.unlink()
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s to %s in %.1f s", model, out, time.perf_counter() - started)
    return load_manifest(out)


def _calibrate(
    artifact: Path, texts: Sequence[str] | None, stsb_path: str | os.PathLike[str] | None
) -> list[str] | None:
    """Store the int8/uint8 calibration set: ``texts``, or by default the STSb train sentences.

    Returns the texts chosen (also what int8 model quantization calibrates on), or None.
    """
    from fastembed_rt.calibration import calibrate_artifact
    from fastembed_rt.evaluation import find_stsb_dir, load_stsb
    from fastembed_rt.models import SentenceTransformer

    source = "user texts"
    if texts is None:
        if find_stsb_dir(stsb_path) is None:
            logger.warning(
                "no calibration texts and no local STSb data: int8/uint8 outputs need `fastembed-rt calibrate`"
            )
            return None
        train = load_stsb("train", "en", stsb_path)
        texts, source = train.sentences1 + train.sentences2, "stsb-en-train"
    if not texts:
        return None
    runtime = SentenceTransformer(artifact, provider="cpu")
    calibrate_artifact(runtime, texts, source)
    runtime.close()
    return select_texts(texts)


def _held_out_texts(stsb_path: str | os.PathLike[str] | None, count: int = 256) -> list[str]:
    """STSb dev sentences (never used for calibration) to validate variants on, when available."""
    from fastembed_rt.evaluation import find_stsb_dir, load_stsb

    if find_stsb_dir(stsb_path) is None:
        return []
    dev = load_stsb("dev", "en", stsb_path)
    return list(dict.fromkeys(dev.sentences1 + dev.sentences2))[:count]


def _build_variants(
    context: BuildContext,
    names: Sequence[str],
    st_model: Any,
    prompts: dict[str, str],
    stsb: bool | None,
    stsb_path: str | os.PathLike[str] | None,
) -> None:
    """Build, validate and gate each variant; keep those that pass, record those that do not."""
    # OpenVINO compiles each candidate while validating; those blobs go to a scratch cache, not the user's.
    with tempfile.TemporaryDirectory(prefix="fastembed-rt-validate-") as scratch:
        _build_each_variant(context, names, st_model, prompts, stsb, stsb_path, Path(scratch))


def _build_each_variant(
    context: BuildContext,
    names: Sequence[str],
    st_model: Any,
    prompts: dict[str, str],
    stsb: bool | None,
    stsb_path: str | os.PathLike[str] | None,
    cache: Path,
) -> None:
    held_out = _held_out_texts(stsb_path)

    def validate(plan: VariantPlan, provider: str) -> Fidelity:
        return validate_embeddings(
            context.root,
            st_model,
            prompts,
            None,
            variant=plan.name,
            provider=provider,
            extra_texts=held_out,
            provider_cache_dir=cache,
        )

    for name in names:
        plan = VARIANTS[name]
        provider = "openvino" if plan.format == "openvino" else "cpu"
        started = time.perf_counter()
        manifest = load_manifest(context.root)

        def check(
            file: str, plan: VariantPlan = plan, provider: str = provider, manifest: Manifest = manifest
        ) -> list[str]:
            candidate = _variant_entry(context.root, plan, BuildResult(file, "candidate"))
            replace(manifest, variants=(*manifest.variants, candidate)).write()
            try:
                return plan.gate.check(validate(plan, provider))
            finally:
                manifest.write()

        context.check = check
        result: BuildResult | None = None
        fidelity: Fidelity | None = None
        try:
            result = plan.build(context)
            entry = _variant_entry(context.root, plan, result)
            replace(manifest, variants=(*manifest.variants, entry)).write()
            fidelity = validate(plan, provider)
            _score_stsb(
                context.root,
                st_model,
                fidelity,
                stsb,
                stsb_path,
                variant=plan.name,
                provider=provider,
                provider_cache_dir=cache,
            )
            misses = plan.gate.check(fidelity)
        except Exception as exc:  # a variant that cannot be built is reported, and the export goes on
            logger.debug("variant %s failed to build", name, exc_info=True)
            misses = [f"build failed: {type(exc).__name__}: {exc}"]
        if misses or result is None or fidelity is None:
            logger.warning("variant %s misses its gate and is not shipped: %s", name, "; ".join(misses))
            if result is not None:
                for leftover in (result.file, result.weights_file):
                    if leftover is not None:
                        (context.root / leftover).unlink(missing_ok=True)
            rejected: dict[str, Any] = {"name": name, "reasons": misses}
            if fidelity is not None:
                rejected["fidelity"] = fidelity.to_dict()
            replace(manifest, rejected_variants=(*manifest.rejected_variants, rejected)).write()
            continue
        entry = _variant_entry(context.root, plan, result, fidelity.to_dict())
        replace(manifest, variants=(*manifest.variants, entry)).write()
        logger.info("variant %s built and validated in %.1f s", name, time.perf_counter() - started)


def _variant_entry(
    root: Path, plan: VariantPlan, result: BuildResult, fidelity: dict[str, Any] | None = None
) -> Variant:
    path = root / result.file
    weights = None if result.weights_file is None else root / result.weights_file
    return Variant(
        name=plan.name,
        file=result.file,
        format=plan.format,
        precision=plan.precision,
        optimization=result.optimization,
        size=path.stat().st_size,
        sha256=file_sha256(path),
        fidelity=fidelity or {},
        stage_counts=result.details,
        engine_properties=result.engine_properties,
        weights_file=result.weights_file,
        weights_size=None if weights is None else weights.stat().st_size,
        weights_sha256=None if weights is None else file_sha256(weights),
    )


def _score_stsb(
    artifact: Path,
    st_model: Any,
    fidelity: Fidelity,
    stsb: bool | None,
    path: str | os.PathLike[str] | None,
    variant: str = "auto",
    provider: str = "auto",
    provider_cache_dir: Path | None = None,
) -> None:
    from fastembed_rt.evaluation import find_stsb_dir, load_stsb, stsb_spearman
    from fastembed_rt.models import SentenceTransformer

    if stsb is False or (stsb is None and find_stsb_dir(path) is None):
        return
    data = load_stsb("test", "en", path)
    runtime = SentenceTransformer(artifact, variant=variant, provider=provider, provider_cache_dir=provider_cache_dir)
    fidelity.stsb_spearman = stsb_spearman(lambda t: runtime.encode(t), data)  # type: ignore[arg-type,return-value]
    fidelity.stsb_spearman_torch = stsb_spearman(
        lambda t: st_model.encode(t, convert_to_numpy=True, show_progress_bar=False), data
    )
    runtime.close()
