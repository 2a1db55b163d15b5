"""Export variants of the real all-MiniLM-L6-v2: each one ships only within its gate (DESIGN §6)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from int8_kernels import widened_weights
from tiny_models import build_tiny_model

from fastembed_rt import ArtifactError, SentenceTransformer
from fastembed_rt.artifact import Task, file_sha256, load_manifest
from fastembed_rt.cli import main
from fastembed_rt.export import export_model
from fastembed_rt.export.fidelity import CosineGate, Fidelity
from fastembed_rt.export.variants import VARIANTS, parse_variants
from fastembed_rt.stsb import load_stsb, spearman

ONNX_VARIANTS = ("optimized", "fp16", "int8", "int8-avx2")
EMBEDDING = VARIANTS[Task.EMBEDDING]


@pytest.fixture(scope="module")
def variants_artifact(minilm_variants_artifact: Path) -> Path:
    return minilm_variants_artifact


@pytest.fixture(scope="module")
def stsb_reference(minilm_torch: Any) -> tuple[list[str], np.ndarray, Any]:
    data = load_stsb("test", "en")
    sentences = data.sentences1 + data.sentences2
    ref = minilm_torch.encode(sentences, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    return sentences, ref, data


@pytest.fixture(scope="module")
def loaded(variants_artifact: Path) -> Iterator[dict[str, SentenceTransformer]]:
    models = {
        v.name: SentenceTransformer(variants_artifact, variant=v.name, provider="cpu", verify="full")
        for v in load_manifest(variants_artifact).variants
        if v.format == "onnx"
    }
    yield models
    for model in models.values():
        model.close()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_every_requested_onnx_variant_ships_with_its_fidelity_recorded(variants_artifact: Path) -> None:
    manifest = load_manifest(variants_artifact)
    shipped = {v.name for v in manifest.variants if v.format == "onnx"}
    assert shipped == {"fp32", *ONNX_VARIANTS} and not manifest.rejected_variants, manifest.rejected_variants
    for variant in manifest.variants:
        assert file_sha256(variants_artifact / variant.file) == variant.sha256
        for key in ("min_cosine", "mean_cosine", "stsb_spearman", "stsb_spearman_torch", "batch_invariance_min_cosine"):
            assert key in variant.fidelity, (variant.name, key)
        assert (
            EMBEDDING[variant.name].gate.check(
                Fidelity(
                    **{
                        k: variant.fidelity[k]
                        for k in (
                            "min_cosine",
                            "mean_cosine",
                            "stsb_spearman",
                            "stsb_spearman_torch",
                            "batch_invariance_min_cosine",
                        )
                    }
                )
            )
            == []
        )


def test_fp32_numbers_stand_on_the_same_held_out_rows_as_every_variant(variants_artifact: Path) -> None:
    """fp32 is gated on the grid and the held-out STSb dev sentences, as the other variants are (it was gated
    on the grid's 27 rows alone), and those sentences exclude what int8 calibrated on."""
    from fastembed_rt.calibration import select_texts
    from fastembed_rt.export.validate import parity_texts

    manifest = load_manifest(variants_artifact)
    rows = {v.name: v.fidelity["texts"] for v in manifest.variants if v.format == "onnx"}
    dev = load_stsb("dev", "en")
    train = load_stsb("train", "en")
    calibrated_on = set(select_texts(train.sentences1 + train.sentences2))
    held_out = [t for t in list(dict.fromkeys(dev.sentences1 + dev.sentences2))[:256] if t not in calibrated_on]
    assert 200 < len(held_out) < 256  # some dev sentences are calibration texts: dropped
    grid = 3 * len(parity_texts(manifest.tokenizer.max_seq_length))  # batches of 1, 3 and 5, no prompts here
    assert rows == {name: grid + len(held_out) for name in rows}, rows


@pytest.mark.slow
@pytest.mark.parametrize("name", ("fp32", *ONNX_VARIANTS))
def test_variant_meets_its_gate_on_every_stsb_test_sentence(
    loaded: dict[str, SentenceTransformer], stsb_reference: tuple[list[str], np.ndarray, Any], name: str
) -> None:
    sentences, ref, data = stsb_reference
    ours = np.asarray(loaded[name].encode(sentences, batch_size=32))
    cos = _cos(ours, ref)
    n = len(data)
    ours_spearman = 100 * spearman(_cos(ours[:n], ours[n:]), data.scores)
    torch_spearman = 100 * spearman(_cos(ref[:n], ref[n:]), data.scores)
    print(
        f"\n{name}: min cosine {cos.min():.6f}, mean {cos.mean():.6f}, "
        f"STSb {ours_spearman:.2f} (torch {torch_spearman:.2f})"
    )
    gate = EMBEDDING[name].gate
    fidelity = Fidelity(
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        stsb_spearman=ours_spearman,
        stsb_spearman_torch=torch_spearman,
    )
    assert gate.check(fidelity) == []


@pytest.mark.parametrize("name", ("fp32", *ONNX_VARIANTS))
def test_variant_embeddings_do_not_depend_on_batch_neighbours(
    loaded: dict[str, SentenceTransformer], stsb_reference: tuple[list[str], np.ndarray, Any], name: str
) -> None:
    texts = [*stsb_reference[0][:48], "word " * 300]
    alone = np.stack([np.asarray(loaded[name].encode(t)) for t in texts])
    for batch_size in (5, 32):
        assert _cos(np.asarray(loaded[name].encode(texts, batch_size=batch_size)), alone).min() >= 0.9999


def test_optimized_graph_really_contains_the_fusions(variants_artifact: Path) -> None:
    import onnx

    manifest = load_manifest(variants_artifact)
    optimized = manifest.variant("optimized")
    ops = [n.op_type for n in onnx.load(str(variants_artifact / optimized.file)).graph.node]
    # all-MiniLM-L6-v2 has 6 layers: one Attention and one BiasGelu each, no unfused attention left.
    assert ops.count("Attention") == optimized.stage_counts["fused_ops"]["Attention"] == 6
    assert ops.count("BiasGelu") == optimized.stage_counts["fused_ops"]["BiasGelu"] == 6
    assert ops.count("Softmax") == ops.count("Transpose") == 0
    # the CPU graph keeps Add + LayerNormalization (faster there), the fp16 GPU graph fuses them
    assert ops.count("SkipLayerNormalization") == 0
    fp16 = manifest.variant("fp16")
    fp16_ops = [n.op_type for n in onnx.load(str(variants_artifact / fp16.file)).graph.node]
    assert fp16_ops.count("SkipLayerNormalization") == fp16.stage_counts["fused_ops"]["SkipLayerNormalization"] >= 12
    assert fp16_ops.count("Attention") == 6


def test_int8_graph_runs_its_matmuls_on_8_bit_integers_and_is_smaller(variants_artifact: Path) -> None:
    import onnx

    manifest = load_manifest(variants_artifact)
    int8 = manifest.variant("int8")
    nodes = onnx.load(str(variants_artifact / int8.file)).graph.node
    # all-MiniLM-L6-v2 holds the gate with SmoothQuant on every weight MatMul (6 per layer)
    assert int8.optimization == "ort-transformers+smoothquant-int8"
    integer = [n for n in nodes if n.op_type == "MatMulIntegerToFloat"]
    assert len(integer) == int8.stage_counts["quantized_matmuls"] == 36
    assert int8.stage_counts["excluded_matmuls"] == [] and not [n for n in nodes if n.op_type == "MatMulNBits"]
    # Q, K and V read one tensor: 4 quantized activations per layer; the attention core is fused
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) == 24
    # LayerNorm outputs whose rows fill their range take one calibrated scale, the rest one per row: the six read by
    # Q, K and V (10th-percentile rows at 0.36-0.50 of the range, measured), not most FFN inputs (0.18-0.24)
    static = int8.stage_counts["static_inputs"]
    assert 6 <= len(static) < 12
    assert f"one calibrated scale on {len(static)} normalized inputs" in int8.stage_counts["scheme"]
    assert sum(n.op_type == "ReduceMax" for n in nodes) == 24 - len(static)
    fused = int8.stage_counts["fused_ops"]["MultiHeadAttention"]
    assert sum(n.op_type == "MultiHeadAttention" for n in nodes) == fused == 6
    assert int8.stage_counts["calibration_texts"] == 256
    # the word embeddings (30,522 rows) at 8 bits too; position and token-type tables stay float
    (table,) = int8.stage_counts["int8_embedding_tables"]
    graph = onnx.load(str(variants_artifact / int8.file))
    assert table not in {init.name for init in graph.graph.initializer}
    fp32 = manifest.variant("fp32")
    # 8-bit weights and table: about a quarter of the float graph (the small float tables and scales remain)
    assert int8.size + (int8.weights_size or 0) < 0.3 * (fp32.size + (fp32.weights_size or 0))


def test_int8_avx2_keeps_every_weight_within_64_so_onnx_runtime_keeps_the_fast_kernel_without_vnni(
    variants_artifact: Path, tmp_path: Path
) -> None:
    import onnx
    from onnx import numpy_helper

    manifest = load_manifest(variants_artifact)
    narrow, int8 = manifest.variant("int8-avx2"), manifest.variant("int8")
    assert narrow.optimization == "ort-transformers+smoothquant-int8-avx2" and narrow.stage_counts["weight_limit"] == 64
    assert narrow.stage_counts["quantized_matmuls"] == 36 and narrow.stage_counts["excluded_matmuls"] == []
    graph = onnx.load(str(variants_artifact / narrow.file)).graph
    codes = {node.input[1] for node in graph.node if node.op_type == "MatMulIntegerToFloat"}
    weights = [numpy_helper.to_array(init) for init in graph.initializer if init.name in codes]
    assert len(weights) == 36 and all(w.dtype == np.int8 for w in weights)
    assert max(int(np.abs(w.astype(np.int64)).max()) for w in weights) == 64

    def widened(variant: str) -> int:
        return len(widened_weights(variants_artifact / manifest.variant(variant).file, tmp_path))

    assert widened("int8") == 36 and widened("int8-avx2") == 0
    # the same calibration and smoothing as int8, one bit less of weight: within the same gate, a little behind
    assert narrow.fidelity["min_cosine"] >= 0.98 and narrow.fidelity["mean_cosine"] <= int8.fidelity["mean_cosine"]


@pytest.mark.parametrize("name", ONNX_VARIANTS)
def test_every_output_precision_works_on_every_variant(loaded: dict[str, SentenceTransformer], name: str) -> None:
    texts = ["a cat sits on a mat", "stocks fell sharply", "x"]
    floats = np.asarray(loaded[name].encode(texts))
    assert np.array_equal(loaded[name].encode(texts, precision="ubinary"), np.packbits(floats > 0, axis=-1))
    assert loaded[name].encode(texts, precision="int8", truncate_dim=128).shape == (3, 128)


def test_info_lists_every_variant(variants_artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(variants_artifact)]) == 0
    out = capsys.readouterr().out
    for name in ("fp32", *ONNX_VARIANTS):
        assert f"\n{name} " in out


def test_export_help_names_every_registered_variant(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = re.sub(r"-\n\s*", "-", capsys.readouterr().out)  # argparse may wrap a line after a hyphen
    words = set(re.split(r"[,;:()\s]+", text))
    registered = {name for task in VARIANTS.values() for name in task}
    assert registered <= words, registered - words


def test_unknown_variant_names_are_refused_with_the_valid_ones() -> None:
    from fastembed_rt import ExportError

    with pytest.raises(ExportError, match=r"unknown variant.*int3 for embedding artifacts; valid: fp32, optimized"):
        parse_variants("fp32,int3", Task.EMBEDDING)
    assert [spec.name for spec in parse_variants("int8,fp32,int8", Task.EMBEDDING)] == ["fp32", "int8"]
    valid = "valid: fp32, optimized, int8"
    with pytest.raises(ExportError, match=rf"unknown variant\(s\) fp16 for cross-encoder artifacts; {valid}"):
        parse_variants("int8,fp16", Task.CROSS_ENCODER)
    for empty in ("", " , ", [], ()):  # fp32 alone, silently, where the CLI refuses --variants ""
        with pytest.raises(ExportError, match="no variant named; name some"):
            parse_variants(empty, Task.EMBEDDING)


def test_gate_lists_every_miss() -> None:
    gate = CosineGate(min_cosine=0.9999, mean_cosine=0.99, max_stsb_drop=1.0)
    misses = gate.check(
        Fidelity(
            min_cosine=0.9,
            mean_cosine=0.95,
            stsb_spearman=70.0,
            stsb_spearman_torch=82.0,
            batch_invariance_min_cosine=0.95,
        )
    )
    assert len(misses) == 4 and any("batch neighbours" in m for m in misses)


def test_a_variant_that_misses_its_gate_is_reported_and_not_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean", normalize=True)
    impossible = dataclasses.replace(EMBEDDING["optimized"], gate=CosineGate(min_cosine=1.5))
    monkeypatch.setitem(EMBEDDING, "optimized", impossible)
    out = tmp_path / "artifact"
    manifest = export_model(model_dir, out, stsb=False, calibration_texts=[], variants="fp32,optimized")
    assert [v.name for v in manifest.variants] == ["fp32"]
    (rejected,) = manifest.rejected_variants
    assert rejected["name"] == "optimized" and "min cosine" in rejected["reasons"][0]
    assert not (out / "onnx" / "model_optimized.onnx").exists()
    with pytest.raises(ArtifactError, match="no variant 'optimized'"):
        SentenceTransformer(out, variant="optimized")
    assert json.loads((out / "manifest.json").read_text())["rejected_variants"][0]["name"] == "optimized"


def test_a_builder_that_crashes_fails_the_export_instead_of_being_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a measured gate miss is a rejection: a bug in a builder must not ship an artifact that looks fine."""
    from fastembed_rt.export.build import BuildContext, BuildResult

    def broken(context: BuildContext) -> BuildResult:
        raise RuntimeError("a bug in the builder")

    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean")
    monkeypatch.setitem(EMBEDDING, "optimized", dataclasses.replace(EMBEDDING["optimized"], build=broken))
    with pytest.raises(RuntimeError, match="a bug in the builder"):
        export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="fp32,optimized")
    assert not (tmp_path / "artifact").exists() and not list(tmp_path.glob(".artifact.tmp-*"))


def _recording_measure(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, bool, Any]], list[str]]:
    """Record each (variant, final, checked) the writer asks ``bi_encoder._measure``'s function for, and each
    variant the grid validation actually ran on."""
    from fastembed_rt.export import bi_encoder

    calls: list[tuple[str, bool, Any]] = []
    validated: list[str] = []
    real_measure, real_validate = bi_encoder._measure, bi_encoder.validate_embeddings

    def measure_factory(*args: Any) -> Any:
        measure = real_measure(*args)

        def recorded(spec: Any, final: bool, checked: Any) -> Any:
            calls.append((spec.name, final, checked))
            return measure(spec, final, checked)

        return recorded

    def validate(*args: Any, **kwargs: Any) -> Any:
        validated.append(kwargs.get("variant", "fp32"))
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(bi_encoder, "_measure", measure_factory)
    monkeypatch.setattr(bi_encoder, "validate_embeddings", validate)
    return calls, validated


def test_the_accepted_int8_candidate_is_validated_once_and_scored_on_stsb_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, validated = _recording_measure(monkeypatch)
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean", normalize=True)
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=True, calibration_texts=[], variants="fp32,int8")
    int8 = [(final, checked) for name, final, checked in calls if name == "int8"]
    assert [final for final, _ in int8] == [False, True]
    candidate = int8[0][1]
    assert candidate is None and isinstance(int8[1][1], Fidelity)  # the final run got the candidate's measurement
    assert validated.count("int8") == 1
    recorded = manifest.variant("int8").fidelity
    assert recorded is not None and recorded["stsb_spearman"] is not None  # STSb still scored on the built file
    assert recorded["min_cosine"] == pytest.approx(int8[1][1].min_cosine)


def test_a_built_file_that_differs_from_the_checked_candidate_is_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    from fastembed_rt.export.build import BuildContext, BuildResult

    real_build = EMBEDDING["optimized"].build
    assert real_build is not None

    def check_then_change(context: BuildContext) -> BuildResult:
        result = real_build(context)
        assert context.check(result.file) == []
        graph = onnx.load(str(context.root / result.file), load_external_data=False)
        graph.doc_string = "changed after its check"  # same weights, another graph file
        onnx.save(graph, str(context.root / result.file))
        return result

    monkeypatch.setitem(EMBEDDING, "optimized", dataclasses.replace(EMBEDDING["optimized"], build=check_then_change))
    calls, validated = _recording_measure(monkeypatch)
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean", normalize=True)
    export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="fp32,optimized")
    assert [(final, checked) for name, final, checked in calls if name == "optimized"] == [(False, None), (True, None)]
    assert validated.count("optimized") == 2
