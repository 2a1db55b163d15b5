"""``openvino``, ``openvino-bf16`` and ``openvino-int8`` variants: OpenVINO IR (xml + bin) of the fused graph.

Both start from the artifact's fp32 ONNX graph, so the IR has the same inputs and outputs, output
and precision stages included, with dynamic batch and sequence dims. OpenVINO's ONNX reader folds
graph inputs that have an initializer (the precision stage's ``output_dim``, ``normalize_output``,
``quantize_ranges`` defaults) into constants; the converter is given the graph without those
defaults so they stay inputs, as ONNX Runtime sees them.

``openvino-bf16`` is the same graph with fp16-stored weights (half the file) that the runtime compiles
with ``INFERENCE_PRECISION_HINT=bf16``, declared in the manifest (``engine_properties``) so every load
runs what was validated. On CPUs with AVX512-BF16 or AMX that is bf16 compute: all-MiniLM-L6-v2
ran 1.67× the fp32 IR here (1,809 against 1,096 sentences/s) at min cosine 0.99993 against the
fp32 graph; elsewhere OpenVINO computes in f32 (its hint is a preference, not a demand).

``openvino-int8`` tries two NNCF schemes on the backbone (the ``stages/`` and ``precision/``
nodes stay fp32) and ships the faster one that passes its gate:

- ``static``: ``nncf.quantize`` (transformer preset), int8 weights and int8 activations with
  scales fixed by the calibration texts, so a text's embedding never depends on its batch
  neighbours (dynamic per-tensor activation scales would, DESIGN §7).
- ``weights``: ``nncf.compress_weights`` INT8_ASYM, int8 weights decompressed to fp32 compute
  (the IR turns off the CPU plugin's on-the-fly activation quantization, see ``_save``).

When a scheme misses the gate, sensitive MatMuls are excluded step by step (``quantize``'s ladder)
and the exclusions are reported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import ExportError, ParityError
from fastembed_rt.export.build import BuildContext, BuildResult
from fastembed_rt.export.quantize import exclusion_ladder
from fastembed_rt.kernels.spec import SENTENCE_EMBEDDING

__all__ = ["BF16_PROPERTIES", "build_openvino", "build_openvino_bf16", "build_openvino_int8"]

logger = logging.getLogger("fastembed_rt.export")

FILE = "openvino/model.xml"
BF16_FILE = "openvino/model_bf16.xml"
# What the runtime passes to OpenVINO for the bf16 variant (read from the manifest by providers.open_graph).
BF16_PROPERTIES = {"INFERENCE_PRECISION_HINT": "bf16"}
INT8_FILE = "openvino/model_int8.xml"
TIMING_FP32_FILE = "openvino/model_fp32_timing.xml"
# Node-name prefixes of the output and precision stages (kernels.onnx_stages): never quantized.
STAGE_PATTERNS = ("stages/.*", "precision/.*")
CALIBRATION_SAMPLES = 300  # NNCF's default subset size; one text per sample, so no padding rows
TIMING_TEXTS = 512
TIMING_ROUNDS = 3
TIMING_BATCH = 32


def _import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError("OpenVINO variants need openvino: pip install 'fastembed-rt[export,openvino]'") from exc
    return ov


def _import_nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise ExportError("openvino-int8 needs NNCF: pip install 'fastembed-rt[export,openvino]'") from exc
    return nncf


def _convert(context: BuildContext) -> Any:
    """The fp32 graph as an ``ov.Model`` with every ONNX graph input kept an input (the runtime feeds
    the precision stage's defaults itself, ``pipeline.BatchFeeds``)."""
    import onnx

    ov = _import_openvino()
    graph = onnx.load(str(context.base))
    inputs = {i.name for i in graph.graph.input}
    kept = [i for i in graph.graph.initializer if i.name not in inputs]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    with tempfile.TemporaryDirectory(prefix="fastembed-rt-ov-") as tmp:
        # External data: the converter reads the file, and protobuf cannot hold graphs over 2 GB.
        path = Path(tmp) / "model.onnx"
        onnx.save(graph, str(path), save_as_external_data=True, location="model.onnx.data")
        model = ov.convert_model(str(path))
    converted = {i.get_any_name() for i in model.inputs}
    if converted != inputs:
        raise ExportError(
            f"OpenVINO converted {context.base} with inputs {sorted(converted)}, the graph has {sorted(inputs)}"
        )
    return model


def _save(context: BuildContext, model: Any, file: str, *, fp16_weights: bool = False) -> str:
    """Write the IR (fp32 weights as they are, or stored as fp16); returns its weights file (the .bin)."""
    ov = _import_openvino()
    xml = context.root / file
    xml.parent.mkdir(parents=True, exist_ok=True)
    # OpenVINO's CPU plugin quantizes the activations of int8-weight MatMuls on the fly by default,
    # which let batch neighbours move MiniLM embeddings (min cosine 0.99989 alone vs batched); the IR
    # carries the option that turns it off, so every runtime that loads it gets the same numbers.
    model.set_rt_info("0", ["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"])
    ov.save_model(model, str(xml), compress_to_fp16=fp16_weights)
    return str(Path(file).with_suffix(".bin"))


def _details(model: Any) -> dict[str, Any]:
    return {"op_counts": _op_counts(model), "openvino_version": _import_openvino().__version__}


def _op_counts(model: Any) -> dict[str, int]:
    from collections import Counter

    counts = Counter(op.get_type_name() for op in model.get_ordered_ops())
    return {op: counts[op] for op in ("MatMul", "FakeQuantize", "Convert", "Parameter", "Result") if counts[op]}


def build_openvino(context: BuildContext) -> BuildResult:
    """fp32 OpenVINO IR of the fused graph (``openvino/model.xml`` + ``.bin``)."""
    model = _convert(context)
    weights = _save(context, model, FILE)
    return BuildResult(FILE, "openvino-ir", _details(model), weights_file=weights)


def build_openvino_bf16(context: BuildContext) -> BuildResult:
    """The IR with fp16-stored weights, compiled with bf16 inference precision (``openvino/model_bf16.xml``)."""
    model = _convert(context)
    weights = _save(context, model, BF16_FILE, fp16_weights=True)
    return BuildResult(
        BF16_FILE, "openvino-ir+bf16", _details(model), weights_file=weights, engine_properties=dict(BF16_PROPERTIES)
    )


def _feeds(context: BuildContext, texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """One feed dict per text (batch of 1), as the runtime feeds the graph."""
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.pipeline import BatchFeeds
    from fastembed_rt.tokenizer import Tokenizer

    manifest = load_manifest(context.root)
    encoded = Tokenizer(context.root, manifest.tokenizer).encode(list(texts))
    feeds = BatchFeeds(manifest)
    return [feeds([ids], [type_ids]) for ids, type_ids in zip(encoded.ids, encoded.type_ids, strict=True)]


def _weight_matmuls(model: Any) -> list[str]:
    """Friendly names of the backbone MatMuls with a constant (weight) operand, in graph order."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name().startswith(("stages/", "precision/")):
            continue
        source = op.input_value(1).get_node()
        while source.get_type_name() == "Convert":  # fp16/compressed weights are decompressed by a Convert
            source = source.input_value(0).get_node()
        if source.get_type_name() == "Constant":
            names.append(op.get_friendly_name())
    return names


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs every ignored node at INFO and draws progress bars on stdout: keep both for debug logs."""
    nncf = _import_nncf()
    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.WARNING)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield
    finally:
        nncf.set_log_level(level)
        if captured.getvalue().strip():
            logger.debug("NNCF output:\n%s", captured.getvalue())


def _quantize_static(model: Any, samples: list[dict[str, np.ndarray]], exclude: list[str]) -> Any:
    nncf = _import_nncf()
    with _quiet_nncf():
        return nncf.quantize(
            model,
            nncf.Dataset(samples),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
            ignored_scope=nncf.IgnoredScope(names=exclude, patterns=list(STAGE_PATTERNS)),
        )


def _compress_weights(model: Any, _samples: list[dict[str, np.ndarray]], exclude: list[str]) -> Any:
    nncf = _import_nncf()
    with _quiet_nncf():
        return nncf.compress_weights(
            model,
            mode=nncf.CompressWeightsMode.INT8_ASYM,
            ignored_scope=nncf.IgnoredScope(names=exclude, patterns=list(STAGE_PATTERNS)),
        )


_SCHEMES: dict[str, tuple[str, Callable[[Any, list[dict[str, np.ndarray]], list[str]], Any]]] = {
    "static": (
        "NNCF post-training quantization: int8 weights and activations, static calibrated scales",
        _quantize_static,
    ),
    "weights": ("NNCF weight compression INT8_ASYM: int8 weights, fp32 activations", _compress_weights),
}


def _throughput(context: BuildContext, files: dict[str, str], texts: Sequence[str]) -> dict[str, list[float]]:
    """Sentences per second of each IR file through the runtime's OpenVINO engine, rounds interleaved."""
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.pipeline import Pipeline
    from fastembed_rt.providers import ProviderOptions, open_graph_file
    from fastembed_rt.tokenizer import Tokenizer

    manifest = load_manifest(context.root)
    tokenizer = Tokenizer(context.root, manifest.tokenizer)
    rates: dict[str, list[float]] = {name: [] for name in files}
    with tempfile.TemporaryDirectory(prefix="fastembed-rt-ov-cache-") as cache:
        pipelines = {
            name: Pipeline(
                manifest,
                tokenizer,
                open_graph_file("openvino", context.root / file, "openvino", ProviderOptions(cache_dir=Path(cache))),
            )
            for name, file in files.items()
        }
        try:
            for pipeline in pipelines.values():  # warm-up: first-call allocations
                pipeline.embed(pipeline.prepare(texts[:TIMING_BATCH]), batch_size=TIMING_BATCH)
            for _ in range(TIMING_ROUNDS):
                for name, pipeline in pipelines.items():
                    started = time.perf_counter()
                    pipeline.embed(pipeline.prepare(texts), batch_size=TIMING_BATCH, output_name=SENTENCE_EMBEDDING)
                    rates[name].append(round(len(texts) / (time.perf_counter() - started), 1))
        finally:
            for pipeline in pipelines.values():
                pipeline.provider.close()
    return rates


def _scheme_file(scheme: str) -> str:
    return f"openvino/model_int8_{scheme}.xml"


def build_openvino_int8(context: BuildContext) -> BuildResult:
    """int8 OpenVINO IR: the faster of static int8 and int8 weight compression that passes the gate."""
    try:
        return _build_int8(context)
    finally:  # the shipped file has been renamed to INT8_FILE by now; candidates and timing copies go
        _remove(context, [*(_scheme_file(scheme) for scheme in _SCHEMES), TIMING_FP32_FILE])


def _build_int8(context: BuildContext) -> BuildResult:
    from importlib.metadata import version

    base = _convert(context)
    texts = list(context.calibration_texts)
    if not texts:
        raise ExportError("openvino-int8 needs calibration texts (export_model(..., calibration_texts=...))")
    samples = _feeds(context, texts[:CALIBRATION_SAMPLES])
    ladder = exclusion_ladder(_weight_matmuls(base))
    schemes: dict[str, dict[str, Any]] = {}
    passed: dict[str, str] = {}  # scheme -> its file
    for scheme, (description, quantize) in _SCHEMES.items():
        file = _scheme_file(scheme)
        schemes[scheme] = {"description": description}
        tried: list[str] = []
        for exclude in ladder:
            model = quantize(base.clone(), samples, exclude)
            _save(context, model, file)
            misses = context.check(file)
            if not misses:
                schemes[scheme].update(excluded_matmuls=exclude, op_counts=_op_counts(model))
                passed[scheme] = file
                break
            tried.append(f"excluding {len(exclude)} MatMuls: {'; '.join(misses)}")
            logger.info("openvino-int8 %s attempt missed its gate (%s)", scheme, "; ".join(misses))
        if tried:
            schemes[scheme]["missed_gate"] = tried
    if not passed:
        misses = [f"{scheme}: {' / '.join(s['missed_gate'])}" for scheme, s in schemes.items()]
        raise ParityError(
            "openvino-int8 misses its gate with every scheme and exclusion tried: " + " | ".join(misses), misses
        )
    # The fp32 IR is timed beside the candidates, so the details say what int8 buys on this CPU.
    _save(context, base, TIMING_FP32_FILE)
    rates = _throughput(context, passed | {"fp32": TIMING_FP32_FILE}, texts[:TIMING_TEXTS])
    chosen = max(passed, key=lambda scheme: max(rates[scheme]))
    for suffix in (".xml", ".bin"):
        (context.root / passed[chosen]).with_suffix(suffix).rename((context.root / INT8_FILE).with_suffix(suffix))
    details = {
        "scheme": chosen,
        **schemes[chosen],
        "openvino_version": _import_openvino().__version__,
        "calibration_samples": len(samples),
        "throughput": {
            "texts": len(texts[:TIMING_TEXTS]),
            "batch_size": TIMING_BATCH,
            "sentences_per_s": rates,  # interleaved rounds; the scheme with the best round is shipped
        },
        "other_schemes": {scheme: s for scheme, s in schemes.items() if scheme != chosen},
        "nncf_version": version("nncf"),
    }
    weights = str(Path(INT8_FILE).with_suffix(".bin"))
    return BuildResult(INT8_FILE, f"openvino-ir+nncf-{chosen}", details, weights_file=weights)


def _remove(context: BuildContext, files: list[str]) -> None:
    for file in files:
        for suffix in (".xml", ".bin"):
            (context.root / file).with_suffix(suffix).unlink(missing_ok=True)
