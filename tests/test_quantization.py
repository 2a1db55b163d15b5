"""quantize_embeddings against sentence-transformers' own, precision by precision."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np
import pytest

from fastembed_rt.quantization import Precision, calibration_ranges, quantize_embeddings

PRECISIONS = ["float32", "int8", "uint8", "binary", "ubinary"]
DIM = 20  # not a multiple of 8, so the packed codes have a padded last byte


@pytest.fixture(scope="module")
def st_quantization() -> ModuleType:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed (pip install fastembed-rt[export])")
    import sentence_transformers.util.quantization as module

    return module


@pytest.fixture
def embeddings() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((120, DIM)).astype(np.float32)


@pytest.fixture
def calibration() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((300, DIM)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])  # float64: JSON read back, np.mean rows
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("source", ["batch", "ranges", "calibration"])
def test_codes_equal_sentence_transformers(
    st_quantization: ModuleType,
    embeddings: np.ndarray,
    calibration: np.ndarray,
    precision: str,
    source: str,
    dtype: str,
) -> None:
    """Codes equal sentence-transformers', which computes in the input's dtype (float64 codes took float32's)."""
    # in float64, values float32 cannot hold; some past the calibration's range (clipped codes)
    embeddings = (embeddings.astype(np.float64) * 1.7).astype(dtype)
    kwargs: dict[str, np.ndarray] = {}
    if source == "ranges":
        kwargs["ranges"] = np.vstack((calibration.min(axis=0), calibration.max(axis=0)))
    elif source == "calibration":
        kwargs["calibration_embeddings"] = calibration

    ours = quantize_embeddings(embeddings, precision, **kwargs)
    theirs = st_quantization.quantize_embeddings(embeddings, precision, **kwargs)

    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_single_float64_embedding_with_ranges_equals_sentence_transformers(
    st_quantization: ModuleType, calibration: np.ndarray, precision: str
) -> None:
    embedding = np.random.default_rng(2).standard_normal(DIM)
    ranges = calibration_ranges(calibration)

    ours = quantize_embeddings(embedding, precision, ranges=ranges)
    theirs = st_quantization.quantize_embeddings(embedding, precision, ranges=ranges)

    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_integer_embeddings_quantize_as_sentence_transformers_computes_them_in_float64(
    st_quantization: ModuleType, precision: str
) -> None:
    """int64 input was computed in float32: 61 of 12,800 codes differed (x=993: 127 where theirs is 126)."""
    embeddings = np.random.default_rng(3).integers(-1000, 1001, size=(200, 64))
    ranges = np.stack([embeddings.min(0), embeddings.max(0)]).astype(np.float32)
    ours = quantize_embeddings(embeddings, precision, ranges=ranges)
    theirs = st_quantization.quantize_embeddings(embeddings, precision, ranges=ranges)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_empty_batch_gives_empty_codes_like_sentence_transformers(st_quantization: ModuleType, precision: str) -> None:
    empty = np.zeros((0, DIM), dtype=np.float32)

    ours = quantize_embeddings(empty, precision)
    theirs = st_quantization.quantize_embeddings(empty, precision)

    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_codes_with_ranges_do_not_depend_on_the_batch(
    embeddings: np.ndarray, calibration: np.ndarray, precision: str
) -> None:
    ranges = calibration_ranges(calibration)

    batch = quantize_embeddings(embeddings, precision, ranges=ranges)
    one_by_one = np.vstack([quantize_embeddings(row[None], precision, ranges=ranges) for row in embeddings])

    np.testing.assert_array_equal(batch, one_by_one)


def test_ubinary_packs_sign_bits_most_significant_first(embeddings: np.ndarray) -> None:
    codes = quantize_embeddings(embeddings, "ubinary")

    bits = np.zeros((embeddings.shape[0], codes.shape[1] * 8), dtype=np.int64)
    bits[:, :DIM] = embeddings > 0
    weights = 2 ** np.arange(7, -1, -1)
    expected = (bits.reshape(len(bits), -1, 8) * weights).sum(axis=-1)
    np.testing.assert_array_equal(codes, expected)


def test_binary_is_ubinary_minus_128(embeddings: np.ndarray) -> None:
    binary = quantize_embeddings(embeddings, "binary").astype(np.int64)
    ubinary = quantize_embeddings(embeddings, "ubinary").astype(np.int64)

    np.testing.assert_array_equal(binary, ubinary - 128)


def test_precision_enum_and_strings_give_the_same_codes(embeddings: np.ndarray) -> None:
    for precision in Precision:
        np.testing.assert_array_equal(
            quantize_embeddings(embeddings, precision), quantize_embeddings(embeddings, precision.value)
        )
    assert [p.value for p in Precision] == PRECISIONS


def test_calibration_ranges_are_per_dimension_min_and_max(calibration: np.ndarray) -> None:
    ranges = calibration_ranges(calibration.astype(np.float64))

    assert ranges.dtype == np.float32
    assert ranges.shape == (2, DIM)
    for column in range(DIM):
        assert ranges[0, column] == min(calibration[:, column])
        assert ranges[1, column] == max(calibration[:, column])


def test_ranges_and_calibration_embeddings_give_the_same_codes(embeddings: np.ndarray, calibration: np.ndarray) -> None:
    np.testing.assert_array_equal(
        quantize_embeddings(embeddings, "int8", ranges=calibration_ranges(calibration)),
        quantize_embeddings(embeddings, "int8", calibration_embeddings=calibration),
    )


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_single_embedding_without_ranges_raises_value_error(precision: str) -> None:
    with pytest.raises(ValueError, match="single embedding"):
        quantize_embeddings(np.ones((1, DIM), dtype=np.float32), precision)


def test_unknown_precision_raises_value_error_listing_choices(embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"'int4'.*float32, int8, uint8, binary, ubinary"):
        quantize_embeddings(embeddings, "int4")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_already_quantized_embeddings_raise_type_error(dtype: type[np.generic]) -> None:
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        quantize_embeddings(np.ones((4, DIM), dtype=dtype), "int8")


def test_ranges_of_the_wrong_shape_raise_value_error(embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(2, 20\)"):
        quantize_embeddings(embeddings, "int8", ranges=np.zeros((2, DIM + 1)))


def test_calibration_of_another_dimension_raises_value_error(embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError, match="dimension"):
        quantize_embeddings(embeddings, "uint8", calibration_embeddings=np.ones((5, DIM + 1)))


def test_calibration_ranges_of_no_embeddings_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"\(0, 20\)"):
        calibration_ranges(np.zeros((0, DIM)))
