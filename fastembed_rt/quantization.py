"""Embedding quantization with the exact semantics of ``sentence_transformers.quantize_embeddings``.

Imports only the standard library and numpy (torch tensors from code that imported torch are read as numpy:
``fastembed_rt.tensors``). The scalar (``int8``/``uint8``) codes depend on
per-dimension ranges; fastembed-rt's graph stores calibration ranges in the artifact so that codes
never depend on the batch they were computed in.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from fastembed_rt.kernels import reference
from fastembed_rt.kernels.spec import Precision
from fastembed_rt.tensors import tensor_inputs

__all__ = ["Precision", "calibration_ranges", "dequantize_embeddings", "quantize_embeddings"]

logger = logging.getLogger(__name__)


def _parse_precision(precision: Precision | str) -> Precision:
    try:
        return Precision(precision)
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise ValueError(f"precision {precision!r} is not supported; valid choices: {choices}") from None


def calibration_ranges(embeddings: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-dimension minimum and maximum of a set of embeddings, for scalar quantization.

    Args:
        embeddings: float array of shape [n, dim] with n >= 1.

    Returns:
        float32 array of shape [2, dim]: row 0 holds the minimum and row 1 the maximum of each
        dimension, the ``ranges`` argument of :func:`quantize_embeddings`.

    Raises:
        ValueError: if ``embeddings`` is not 2-D or has no rows.
    """
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"calibration embeddings must be a 2-D array [n, dim] with n >= 1; got shape {array.shape}")
    return np.vstack((array.min(axis=0), array.max(axis=0))).astype(np.float32)


def _scalar_ranges(
    embeddings: np.ndarray,
    precision: Precision,
    ranges: npt.ArrayLike | None,
    calibration_embeddings: npt.ArrayLike | None,
) -> npt.NDArray[np.float32]:
    dim = embeddings.shape[-1]
    if ranges is not None:
        array = np.asarray(ranges, dtype=np.float32)
        if array.shape != (2, dim):
            raise ValueError(f"ranges must have shape (2, {dim}) [min; max]; got shape {array.shape}")
        return array
    if calibration_embeddings is not None:
        found = calibration_ranges(calibration_embeddings)
        if found.shape[1] != dim:
            raise ValueError(
                f"calibration_embeddings have dimension {found.shape[1]}; the embeddings have dimension {dim}"
            )
        return found
    if embeddings.ndim == 1 or embeddings.shape[0] == 1:
        raise ValueError(
            f"cannot compute {precision.value} quantization ranges from a single embedding; "
            "pass `ranges` or `calibration_embeddings`"
        )
    if embeddings.shape[0] < 100:
        logger.warning(
            "computing %s quantization ranges from only %d embeddings; pass `ranges` or "
            "`calibration_embeddings` from a representative set instead",
            precision.value,
            embeddings.shape[0],
        )
    return calibration_ranges(embeddings)


def _quantize_matrices(
    matrices: list[npt.ArrayLike],
    precision: Precision,
    ranges: npt.ArrayLike | None,
    calibration_embeddings: npt.ArrayLike | None,
) -> list[np.ndarray]:
    """A list of ``[tokens_i, dim]`` matrices (multi-vector embeddings), each quantized with one set of
    ranges: ``ranges``, else those of ``calibration_embeddings``, else those of every matrix's rows together."""
    arrays = [np.asarray(m) for m in matrices]
    if ranges is None and arrays and precision in (Precision.INT8, Precision.UINT8):
        sample = np.concatenate(arrays) if calibration_embeddings is None else calibration_embeddings
        if len(sample):  # type: ignore[arg-type]
            ranges = _scalar_ranges(np.asarray(sample), precision, None, calibration_embeddings)
    return [quantize_embeddings(a, precision, ranges, calibration_embeddings) for a in arrays]


@tensor_inputs
def quantize_embeddings(
    embeddings: npt.ArrayLike | list[npt.ArrayLike],
    precision: Precision | str,
    ranges: npt.ArrayLike | None = None,
    calibration_embeddings: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Quantize float embeddings exactly like ``sentence_transformers.quantize_embeddings``.

    Semantics, per precision (``x`` is one float value, ``dim`` the embedding dimension):

    - ``float32``: ``x`` cast to float32; shape unchanged.
    - ``uint8``: ``clip(floor((x - min) / step), 0, 255)`` with ``step = (max - min) / 255``
      computed in float32 per dimension (a zero step becomes 1); dtype uint8, shape unchanged.
    - ``int8``: the ``uint8`` code minus 128; dtype int8, shape unchanged.
    - ``ubinary``: bit ``x > 0`` packed 8 per byte with ``numpy.packbits`` (most significant bit
      first, the last byte zero-padded); dtype uint8, shape [..., ceil(dim / 8)].
    - ``binary``: the ``ubinary`` byte minus 128; dtype int8, shape [..., ceil(dim / 8)].

    The per-dimension ``min``/``max`` of the scalar precisions come from ``ranges`` if given,
    else from ``calibration_embeddings``, else from ``embeddings`` themselves. The last makes
    each code depend on the rest of the batch (and fails for a single embedding); fastembed-rt's
    graph therefore uses calibration ranges stored in the artifact instead.

    Args:
        embeddings: float array of shape [dim] or [n, dim], or a list of [tokens_i, dim] matrices
            (multi-vector embeddings: each quantized with one set of ranges for them all, a list back;
            an empty list gives an empty list).
        precision: one of ``Precision``'s values.
        ranges: float array of shape [2, dim], row 0 the minimum and row 1 the maximum.
            Only used by ``int8`` and ``uint8``.
        calibration_embeddings: float array of shape [m, dim] whose per-dimension minimum and
            maximum give the ranges when ``ranges`` is None. Only used by ``int8`` and ``uint8``.

    Returns:
        The quantized embeddings, with the dtype and shape given above. An [0, dim] input gives
        an empty array of the output dtype and width (packed: ceil(dim / 8) bytes).

    Raises:
        ValueError: on an unknown precision, ranges of the wrong shape, or scalar precision
            without ranges or calibration for a single embedding.
        TypeError: if the embeddings are already int8 or uint8.
    """
    precision = _parse_precision(precision)
    if isinstance(embeddings, list) and (not embeddings or np.ndim(embeddings[0]) == 2):
        return _quantize_matrices(embeddings, precision, ranges, calibration_embeddings)  # type: ignore[return-value]
    array = np.asarray(embeddings)
    if array.dtype in (np.int8, np.uint8):
        raise TypeError(f"embeddings to quantize must be float; got dtype {array.dtype}, which is already quantized")

    if precision is Precision.FLOAT32:
        return array.astype(np.float32)
    if array.ndim == 2 and array.shape[0] == 0:  # nothing to calibrate or pack (a fully masked document)
        width = array.shape[1] if precision in (Precision.INT8, Precision.UINT8) else (array.shape[1] + 7) // 8
        return np.zeros((0, width), dtype=precision.dtype)
    if precision in (Precision.INT8, Precision.UINT8):
        bounds = _scalar_ranges(array, precision, ranges, calibration_embeddings)
        return reference.quantize(array, precision, bounds)
    return reference.quantize(array, precision)


def dequantize_embeddings(codes: npt.ArrayLike, precision: Precision | str, ranges: npt.ArrayLike) -> np.ndarray:
    """int8/uint8 codes back to float32 in the embeddings' coordinates: ``code × step + min`` (the bucket's
    lower edge), with the ``step`` of :func:`quantize_embeddings`; sentence-transformers' rescoring does the same.

    Args:
        codes: int8 or uint8 codes ``[..., dim]`` from ``quantize_embeddings(x, precision, ranges)``.
        precision: ``int8`` or ``uint8``, as they were quantized.
        ranges: the float ``[2, dim]`` ranges they were quantized with.
    Returns:
        float32, the shape of ``codes``.
    """
    wanted = _parse_precision(precision)
    if wanted not in (Precision.INT8, Precision.UINT8):
        raise ValueError(f"only int8 and uint8 codes can be dequantized; got precision {wanted.value!r}")
    array = np.asarray(codes)
    code_type = wanted.dtype
    if array.dtype.kind not in "iu":
        raise ValueError(f"{wanted.value} codes are integers; got an array of {array.dtype}")
    if array.dtype.kind != np.dtype(code_type).kind and array.dtype.itemsize == 1:
        # int8 codes read back as uint8 bytes (a database blob), or the other way: the same bytes, other numbers
        raise ValueError(
            f"{wanted.value} codes are {np.dtype(code_type)}; got {array.dtype} (bytes read back as the other type: "
            f"view them with .view(np.{np.dtype(code_type)}))"
        )
    limits = np.iinfo(code_type)
    if array.size and (array.min() < limits.min or array.max() > limits.max):
        raise ValueError(f"{wanted.value} codes are in {limits.min}..{limits.max}; got {array.min()}..{array.max()}")
    bounds = np.asarray(ranges, dtype=np.float32)
    if array.ndim == 0 or bounds.shape != (2, array.shape[-1]):
        raise ValueError(
            f"ranges must be [2, dim] = [2, {array.shape[-1] if array.ndim else '?'}] for these codes (the ranges "
            f"they were quantized with); got shape {bounds.shape}"
        )
    steps = (bounds[1] - bounds[0]) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps)
    values = array.astype(np.float64)
    if wanted is Precision.INT8:
        values += 128
    return (values * steps + bounds[0]).astype(np.float32)
