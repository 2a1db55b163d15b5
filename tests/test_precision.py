"""int8 / uint8 / binary / ubinary and Matryoshka outputs computed in the graph (real MiniLM).

The graph's quantization is elementwise, so given the graph's own float output it must equal the
numpy reference bit for bit. Ranges come from the artifact's calibration set, never the batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import ArtifactError, InputError, SentenceTransformer
from fastembed_rt.cli import main
from fastembed_rt.kernels import reference
from fastembed_rt.kernels.spec import Precision
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.stsb import load_stsb

QUANTIZED = [Precision.INT8, Precision.UINT8, Precision.BINARY, Precision.UBINARY]


@pytest.fixture(scope="module")
def stsb_sentences() -> list[str]:
    data = load_stsb("test", "en")
    return data.sentences1 + data.sentences2


@pytest.fixture(scope="module")
def stsb_floats(minilm_runtime: Any, stsb_sentences: list[str]) -> np.ndarray:
    return np.asarray(minilm_runtime.encode(stsb_sentences))


def _expected_ranges(artifact: Path, output_dim: int, normalize_output: bool) -> np.ndarray:
    """Ranges computed here from the stored calibration set, independently of the runtime's code."""
    sample = np.load(artifact / "calibration.npy")
    values = sample[:, :output_dim]
    if normalize_output:
        values = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
    return np.stack([values.min(0), values.max(0)]).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("precision", QUANTIZED, ids=lambda p: p.value)
def test_graph_codes_equal_the_numpy_reference_on_every_stsb_test_sentence(
    minilm_runtime: Any,
    minilm_artifact_session: Path,
    stsb_sentences: list[str],
    stsb_floats: np.ndarray,
    precision: Precision,
) -> None:
    floats = stsb_floats
    codes = minilm_runtime.encode(stsb_sentences, precision=precision.value)
    ranges = _expected_ranges(minilm_artifact_session, 384, normalize_output=False)
    expected = reference.quantize(floats, precision, ranges)
    assert codes.dtype == expected.dtype and codes.shape == expected.shape
    assert np.array_equal(codes, expected), f"{int((codes != expected).sum())} codes differ"


@pytest.mark.parametrize("precision", QUANTIZED, ids=lambda p: p.value)
@pytest.mark.parametrize(("truncate_dim", "normalize"), [(128, True), (100, True), (100, False)])
def test_truncated_codes_equal_the_reference_on_prefixes_normalized_as_asked(
    minilm_runtime: Any,
    minilm_artifact_session: Path,
    stsb_sentences: list[str],
    precision: Precision,
    truncate_dim: int,
    normalize: bool,
) -> None:
    texts = stsb_sentences[:300]
    floats = minilm_runtime.encode(texts, truncate_dim=truncate_dim, normalize_embeddings=normalize)
    full = minilm_runtime.encode(texts)
    np.testing.assert_allclose(floats, reference.matryoshka(full, truncate_dim, normalize), atol=2e-7)
    codes = minilm_runtime.encode(
        texts, precision=precision.value, truncate_dim=truncate_dim, normalize_embeddings=normalize
    )
    ranges = _expected_ranges(minilm_artifact_session, truncate_dim, normalize_output=normalize)
    expected = reference.quantize(floats, precision, ranges)
    width = -(-truncate_dim // 8) if precision.packed else truncate_dim
    assert codes.shape == (len(texts), width)
    assert np.array_equal(codes, expected)


@pytest.mark.parametrize("precision", QUANTIZED, ids=lambda p: p.value)
def test_graph_codes_equal_sentence_transformers_quantize_embeddings_with_the_same_ranges(
    minilm_runtime: Any, minilm_artifact_session: Path, stsb_sentences: list[str], precision: Precision
) -> None:
    from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

    texts = stsb_sentences[:400]
    floats = minilm_runtime.encode(texts)
    ranges = _expected_ranges(minilm_artifact_session, 384, normalize_output=False)
    ours = minilm_runtime.encode(texts, precision=precision.value)
    theirs = st_quantize(floats, precision.value, ranges=ranges)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(quantize_embeddings(floats, precision, ranges=ranges), theirs)


def test_normalized_floats_quantized_with_the_models_ranges_give_encodes_int8_codes(
    minilm_runtime: Any, stsb_sentences: list[str]
) -> None:
    """``normalize_embeddings=True`` floats were normalized by numpy in float64, the int8 codes by the graph in
    float32: 2 of 1,000 STSb texts got a code one apart from their stored floats quantized afterwards."""
    texts = list(dict.fromkeys(stsb_sentences))[:1000]
    floats = minilm_runtime.encode(texts, normalize_embeddings=True)
    codes = minilm_runtime.encode(texts, precision="int8", normalize_embeddings=True)
    ranges = minilm_runtime.quantization_ranges(None, normalize_embeddings=True)
    assert np.array_equal(quantize_embeddings(floats, "int8", ranges=ranges), codes)


@pytest.mark.parametrize("precision", QUANTIZED, ids=lambda p: p.value)
def test_a_text_gets_the_same_codes_alone_and_inside_any_batch(
    minilm_runtime: Any, stsb_sentences: list[str], precision: Precision
) -> None:
    """Ranges are fixed, so codes do not follow the batch. The float embeddings themselves differ
    by ≤ 1e-7 between batchings (ONNX Runtime's GEMM blocking depends on the batch shape), which
    can move a value sitting exactly on a code boundary by one code; nothing more is allowed."""
    texts = stsb_sentences[:64]
    alone = np.stack([minilm_runtime.encode([t], precision=precision.value)[0] for t in texts])
    for batch_size in (7, 32, 64):
        batched = minilm_runtime.encode(texts, precision=precision.value, batch_size=batch_size)
        if precision.packed:
            # a sign flip needs |x| < 1e-7: at most a bit or two of 3,072 bytes
            assert np.unpackbits((batched ^ alone).view(np.uint8)).sum() <= 2
        else:
            diff = np.abs(batched.astype(np.int16) - alone.astype(np.int16))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    reversed_order = minilm_runtime.encode(texts[::-1], precision=precision.value)[::-1]
    assert (reversed_order == alone).mean() > 0.999


def test_sentence_transformers_batch_local_ranges_do_change_codes_with_the_batch(
    minilm_torch: Any, stsb_sentences: list[str]
) -> None:
    """The contrast the in-graph stage fixes: same text, other neighbours, other int8 codes."""
    first = minilm_torch.encode(stsb_sentences[:50], precision="int8", show_progress_bar=False)[0]
    again = minilm_torch.encode([stsb_sentences[0], *stsb_sentences[500:549]], precision="int8")[0]
    assert (first != again).mean() > 0.05


@pytest.mark.parametrize("precision", list(Precision), ids=lambda p: p.value)
def test_empty_input_gives_zero_rows_of_the_right_dtype_and_width(minilm_runtime: Any, precision: Precision) -> None:
    out = minilm_runtime.encode([], precision=precision.value, truncate_dim=100)
    assert out.shape == (0, 13 if precision.packed else 100)
    assert out.dtype == np.dtype(precision.dtype)


def test_single_text_gives_a_single_code_vector(minilm_runtime: Any) -> None:
    assert minilm_runtime.encode("hello", precision="ubinary").shape == (48,)


def test_unknown_precision_lists_the_valid_ones(minilm_runtime: Any) -> None:
    with pytest.raises(InputError, match="valid: 'float32', 'int8', 'uint8', 'binary', 'ubinary'"):
        minilm_runtime.encode(["a"], precision="int4")


def test_normalize_embeddings_is_applied_before_quantization(minilm_runtime: Any) -> None:
    texts = ["a cat", "a dog", "stock markets"]
    floats = minilm_runtime.encode(texts, truncate_dim=64, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(
        minilm_runtime.encode(texts, truncate_dim=64, normalize_embeddings=True, precision="ubinary"),
        np.packbits(floats > 0, axis=-1),
    )


@pytest.mark.parametrize(("truncate_dim", "normalize"), [(None, False), (64, False), (None, True)])
def test_quantization_ranges_are_the_ones_encode_quantized_with(
    minilm_runtime: Any, minilm_artifact_session: Path, truncate_dim: int | None, normalize: bool
) -> None:
    """Rescoring or dequantizing calibrated codes needs their ranges; only the manifest's rounded copy was public
    (1,355 of 153,600 STSb codes came out otherwise)."""
    texts = ["A man is playing a guitar.", "Stocks fell sharply.", "a cat"]
    ranges = minilm_runtime.quantization_ranges(truncate_dim, normalize)
    width = truncate_dim or 384
    assert ranges.shape == (2, width) and ranges.dtype == np.float32
    expected = _expected_ranges(minilm_artifact_session, width, normalize_output=normalize)
    np.testing.assert_allclose(ranges, expected, rtol=1e-6)  # normalized here in another order of operations
    floats = minilm_runtime.encode(texts, truncate_dim=truncate_dim, normalize_embeddings=normalize)
    for precision in ("int8", "uint8"):
        codes = minilm_runtime.encode(
            texts, truncate_dim=truncate_dim, normalize_embeddings=normalize, precision=precision
        )
        assert np.array_equal(codes, quantize_embeddings(floats, precision, ranges=ranges))
    if truncate_dim is None and not normalize:  # the manifest's copy is exact now
        stored = json.loads((minilm_artifact_session / "manifest.json").read_text())["calibration"]["ranges"]
        assert np.array_equal(np.asarray(stored, dtype=np.float32), ranges)


def test_artifact_without_calibration_refuses_int8_but_still_gives_binary(minilm_artifact: Path) -> None:
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["calibration"] = None
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    model = SentenceTransformer(minilm_artifact)
    with pytest.raises(ArtifactError, match=r"no int8/uint8 calibration.*fastembed-rt calibrate"):
        model.encode(["a"], precision="int8")
    with pytest.raises(ArtifactError, match=r"no int8/uint8 calibration"):
        model.quantization_ranges()
    assert model.encode(["a"], precision="binary").dtype == np.int8


def test_calibrate_command_replaces_the_ranges_with_the_users_domain(
    minilm_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "domain.txt"
    domain = [f"Invoice {i} for order {i * 7} is overdue by {i % 30} days." for i in range(300)]
    texts.write_text("\n".join([*domain, "", domain[0]]) + "\n", encoding="utf-8")
    before = SentenceTransformer(minilm_artifact).encode(domain[:20], precision="int8")

    assert main(["calibrate", str(minilm_artifact), "--texts", str(texts)]) == 0
    assert "on 300 distinct texts" in capsys.readouterr().out

    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    assert manifest["calibration"]["texts"] == 300 and manifest["calibration"]["source"] == "file:domain.txt"
    model = SentenceTransformer(minilm_artifact)
    after = model.encode(domain[:20], precision="int8")
    floats = model.encode(domain[:20])
    assert not np.array_equal(before, after)
    assert np.array_equal(
        after, reference.quantize(floats, Precision.INT8, _expected_ranges(minilm_artifact, 384, False))
    )


def test_calibration_needs_at_least_two_texts(
    minilm_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "one.txt"
    texts.write_text("only one\n\n", encoding="utf-8")
    assert main(["calibrate", str(minilm_artifact), "--texts", str(texts)]) == 1
    assert "at least 2 distinct non-empty texts, got 1" in capsys.readouterr().err


def test_calibrating_on_few_texts_warns_that_codes_will_saturate(
    minilm_artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """3 texts were taken silently; their ranges saturated 57 % of the int8 codes of STSb test sentences."""
    texts = tmp_path / "three.txt"
    texts.write_text("a cat\na dog\nstock markets\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="fastembed_rt"):
        assert main(["calibrate", str(minilm_artifact), "--texts", str(texts)]) == 0
    assert "calibrating on only 3 distinct texts" in caplog.text and "at least 100" in caplog.text
