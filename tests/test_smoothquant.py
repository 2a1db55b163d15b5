"""The ``int8`` variant's SmoothQuant scheme (``export.smoothquant``): per-row uint8 activations × per-column
int8 weights in ``MatMulInteger``.

The rewritten graph is held to a numpy reference of the scheme written from its docstring (smoothing
scales, per-row and per-column scales, exact integer products), rows are quantized independently of
their batch, and MatMuls that read one tensor share one quantization. The engine must compute the
8-bit products exactly on this CPU, whichever it is (``session.x64quantprecision`` on x86 without VNNI).
When the scheme misses its gate at every exclusion, ``int8`` ships ``MatMulNBits`` and says why.
The real all-MiniLM-L6-v2 int8 is checked in ``test_variants``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from int8_kernels import widened_weights
from tiny_models import build_tiny_model

from fastembed_rt.artifact import load_manifest
from fastembed_rt.export.smoothquant import (
    AVX2_WEIGHT_LIMIT,
    SmoothQuantScheme,
    activation_maxima,
    calibrate,
    outlier_channels,
    smooth_quantize,
    split_channels,
)
from fastembed_rt.machine import CpuIdentity
from fastembed_rt.providers.base import ProviderOptions
from fastembed_rt.providers.onnxruntime import X64_QUANT_PRECISION, OnnxRuntimeCPU, session_options

WIDTH = 64
ALPHA = 0.5


def _graph() -> Any:
    """x [batch, seq, 64] -> q = x @ wq, k = x @ wk (one input, one group) -> Relu(q + k) -> y = h @ wo.

    Channel 3 of x is an outlier channel (× 40), as BERT's hidden states have a few.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weights = [
        numpy_helper.from_array((rng.normal(size=(WIDTH, WIDTH)) / 8).astype(np.float32), name)
        for name in ("wq", "wk", "wo")
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        helper.make_node("Add", ["q", "k"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "wo"], ["y"], name="o_proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "qko",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", WIDTH])],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _feeds() -> list[dict[str, np.ndarray]]:
    """The calibration feeds: three batches of ``_inputs``."""
    return [{"x": _inputs(4, seed)} for seed in range(3)]


def _inputs(rows: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, 5, WIDTH)).astype(np.float32)
    x[..., 3] *= 40
    return x


def _session(model: Any) -> Any:
    """``model`` on ONNX Runtime with the engine's session options: exact 8-bit products on any CPU (on AVX2 kernels
    a plain session saturates them, and 72 % of the reference's outputs differed)."""
    import onnxruntime as ort

    options = session_options(ProviderOptions())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(model: Any, x: np.ndarray, output: str = "y") -> np.ndarray:
    return np.asarray(_session(model).run([output], {"x": x})[0])


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    import onnx

    path = tmp_path_factory.mktemp("smoothquant") / "qko.onnx"
    onnx.save(_graph(), str(path))
    return path, calibrate(path, _feeds())


def _reference_weights(weight: np.ndarray, smooth: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """W·s quantized per column to ``limit`` levels each side: (integer codes, column scales)."""
    smoothed = weight * smooth[:, None]
    column = np.maximum(np.abs(smoothed).max(axis=0), np.float32(1e-12)) / np.float32(limit)
    return np.clip(np.rint(smoothed / column), -limit, limit).astype(np.int64), column


def _reference_matmul(x: np.ndarray, weight: np.ndarray, smooth: np.ndarray, limit: int = 127) -> np.ndarray:
    """The scheme in numpy: x/s quantized per row in steps of the row's maximum / 127 (round half to even, zero
    point 128), W·s per column to ``limit`` levels each side, exact integer products, then both scales."""
    xs = x * (1 / smooth).astype(np.float32)
    row = np.maximum(np.abs(xs).max(axis=-1, keepdims=True), np.float32(127e-12))
    step = np.float32(1 / 127)
    xq = np.clip(np.rint(xs / row / step) + 128, 0, 255).astype(np.int64) - 128
    wq, column = _reference_weights(weight, smooth, limit)
    return (xq @ wq).astype(np.float32) * step * column * row


def _smoothing(maximum: np.ndarray, *weights: np.ndarray) -> np.ndarray:
    act = np.maximum(maximum, 1e-5)
    wmax = np.maximum(np.max([np.abs(w).max(axis=1) for w in weights], axis=0), 1e-5)
    return (act**ALPHA / wmax ** (1 - ALPHA)).astype(np.float32)


def test_calibration_takes_each_channels_maximum_over_every_row_of_every_feed(
    calibrated: tuple[Path, dict[str, Any]],
) -> None:
    path, maxima = calibrated
    assert set(maxima) == {"x", "h"}
    rows = np.concatenate([feed["x"].reshape(-1, WIDTH) for feed in _feeds()])
    np.testing.assert_array_equal(maxima["x"], np.abs(rows).max(axis=0))
    assert maxima["x"][3] > 10 * np.delete(maxima["x"], 3).max()
    # the probe graph it ran is a scratch file: nothing is left beside the graph
    assert sorted(p.name for p in path.parent.iterdir()) == ["qko.onnx"]


@pytest.mark.parametrize("limit", [127, AVX2_WEIGHT_LIMIT])
def test_rewritten_graph_equals_the_numpy_reference_of_the_scheme(
    calibrated: tuple[Path, dict[str, Any]], limit: int
) -> None:
    from onnx import numpy_helper

    _, maxima = calibrated
    model = _graph()
    w = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    assert smooth_quantize(model, maxima, ALPHA, outlier_ratio=None, weight_limit=limit) == (3, 0)
    x = _inputs(3, seed=7)
    s_x = _smoothing(maxima["x"], w["wq"], w["wk"])  # q and k read x: one smoothing for both
    h = np.maximum(_reference_matmul(x, w["wq"], s_x, limit) + _reference_matmul(x, w["wk"], s_x, limit), 0)
    expected = _reference_matmul(h, w["wo"], _smoothing(maxima["h"], w["wo"]), limit)
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # and it is an 8-bit approximation of the float graph, not something else
    exact = _run(_graph(), x)
    assert np.abs(_run(model, x) - exact).max() < 0.05 * np.abs(exact).max()
    # every column uses the whole range it is given, and no more
    codes = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("/weight")]
    assert len(codes) == 3
    for code in codes:
        assert code.dtype == np.int8 and np.all(np.abs(code.astype(np.int64)).max(axis=0) == limit)


def test_weights_within_64_keep_the_fast_8_bit_kernel_without_vnni(
    calibrated: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """ONNX Runtime's exact-product option widens a weight tensor to uint8 only when a code lies outside
    [-64, 64] (the graph transformation runs on any x86 CPU, so this checks what an AVX2 CPU gets)."""
    full, narrow = _graph(), _graph()
    smooth_quantize(full, calibrated[1], ALPHA, outlier_ratio=None)
    smooth_quantize(narrow, calibrated[1], ALPHA, outlier_ratio=None, weight_limit=AVX2_WEIGHT_LIMIT)
    assert widened_weights(full, tmp_path) == [f"smoothquant/{m}/weight" for m in ("k", "q", "y")]
    assert widened_weights(narrow, tmp_path) == []


def test_matmuls_reading_one_tensor_share_one_quantization(calibrated: tuple[Path, dict[str, Any]]) -> None:
    model = _graph()
    smooth_quantize(model, calibrated[1], ALPHA, outlier_ratio=None)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 3 and ops.count("MatMul") == 0
    assert ops.count("QuantizeLinear") == ops.count("ReduceMax") == 2  # x (q and k), h (o)
    names = {init.name for init in model.graph.initializer}
    assert not names & {"wq", "wk", "wo"}  # the float weights are gone


def test_excluded_matmuls_keep_their_float_weights(calibrated: tuple[Path, dict[str, Any]]) -> None:
    model = _graph()
    assert smooth_quantize(model, calibrated[1], ALPHA, exclude=["o_proj"], outlier_ratio=None) == (2, 0)
    assert [n.name for n in model.graph.node if n.op_type == "MatMul"] == ["o_proj"]
    assert "wo" in {init.name for init in model.graph.initializer}
    # an excluded member of a group leaves the group's other MatMul quantized
    model = _graph()
    assert smooth_quantize(model, calibrated[1], ALPHA, exclude=["q_proj"], outlier_ratio=None) == (2, 0)
    assert [n.name for n in model.graph.node if n.op_type == "MatMul"] == ["q_proj"]


def test_a_row_is_quantized_the_same_in_any_batch(calibrated: tuple[Path, dict[str, Any]]) -> None:
    model = _graph()
    smooth_quantize(model, calibrated[1], ALPHA)
    batch = _inputs(6, seed=11)
    together = _run(model, batch)
    alone = np.concatenate([_run(model, batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_array_equal(together, alone)


def test_the_scheme_applies_down_the_ladder_with_its_settings_recorded(calibrated: tuple[Path, dict[str, Any]]) -> None:
    scheme = SmoothQuantScheme(calibrated[1], calibration_texts=12)
    assert scheme.to_dict() == {
        "weight_bits": 8,
        "weight_limit": 127,
        "activation_bits": 8,
        "smoothing_alpha": 0.5,
        "calibration_texts": 12,
        "outlier_ratio": 4.0,
        "max_outliers": 8,
        "static_inputs": [],
    }
    assert "SmoothQuant" in scheme.describe() and "4x the median in fp32" in scheme.describe()
    assert scheme.sensitive_bits is None
    model = scheme.apply(_graph(), ["q_proj", "o_proj"])
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert matmuls == ["q_proj", "smoothquant/k/outlier_matmul", "o_proj"]  # x's outlier channel, for k_proj
    assert split_channels(model) == 1
    narrow = SmoothQuantScheme(calibrated[1], calibration_texts=12, weight_limit=AVX2_WEIGHT_LIMIT)
    assert narrow.to_dict()["weight_limit"] == 64 and "weights in [-64, 64]" in narrow.describe()
    assert "weights in" not in scheme.describe()


def test_activation_maxima_without_feeds_is_an_error(calibrated: tuple[Path, dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="at least one text"):
        activation_maxima(calibrated[0], ["x"], [])


@pytest.mark.parametrize(
    ("machine", "isa", "saturates"),
    [
        ("x86_64", ("avx", "avx2", "fma"), True),  # AVX2 only (Zen 2, Haswell): vpmaddubsw
        ("x86_64", ("avx", "avx2", "fma", "avx512f", "avx512bw"), True),  # Skylake-X: AVX-512 without VNNI
        ("x86_64", ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"), False),
        ("x86_64", ("avx", "avx2", "fma", "avx_vnni"), False),  # Alder Lake: VEX-encoded VNNI
        ("x86_64", (), True),  # features unknown: take the exact path
        ("AMD64", ("avx2",), True),
        ("aarch64", ("asimd", "asimddp"), False),
    ],
)
def test_cpus_whose_8_bit_products_saturate(machine: str, isa: tuple[str, ...], saturates: bool) -> None:
    assert CpuIdentity(machine, "cpu", isa).saturates_int8_products is saturates


def _entry(options: Any, key: str) -> str | None:
    try:
        return str(options.get_session_config_entry(key))
    except RuntimeError:  # ONNX Runtime's answer for a key that was never set
        return None


def test_the_exact_8_bit_option_is_set_where_products_saturate_unless_the_caller_sets_it() -> None:
    from fastembed_rt.machine import this_cpu

    expected = "1" if this_cpu().saturates_int8_products else None
    assert _entry(session_options(ProviderOptions()), X64_QUANT_PRECISION) == expected
    # the caller's own entry is left for the engine to apply, not set twice (ONNX Runtime warns on that)
    assert _entry(session_options(ProviderOptions(extra={X64_QUANT_PRECISION: "0"})), X64_QUANT_PRECISION) is None


@pytest.mark.parametrize(
    ("weight", "extra"),
    [(127, {}), (AVX2_WEIGHT_LIMIT, {X64_QUANT_PRECISION: "0"})],
    ids=["full-range-engine-options", "within-64-fast-kernel"],
)
def test_8_bit_products_are_exact_on_this_cpu(tmp_path: Path, weight: int, extra: dict[str, str]) -> None:
    """u8 255 × s8 127 pairs sum to 64,770, past int16: a saturating kernel gives 32,767 per pair. The op is
    the one the int8 graph runs; the sum (2,072,640) is exact in float32. Weights within [-64, 64] (int8-avx2's)
    are exact on the fast u8 × s8 kernel itself, the exact-product option off: 255 × 64 × 2 < 32,767."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    depth = 64
    graph = helper.make_graph(
        [
            helper.make_node(
                "MatMulIntegerToFloat", ["a", "b", "one", "one", "a_zero_point"], ["y"], domain="com.microsoft"
            )
        ],
        "exact",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["rows", depth])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 8])],
        initializer=[
            numpy_helper.from_array(np.full((depth, 8), weight, np.int8), "b"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(0, np.uint8), "a_zero_point"),
        ],
    )
    path = tmp_path / "exact.onnx"
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    engine = OnnxRuntimeCPU(path, ProviderOptions(extra=extra))
    y = engine.run({"a": np.full((16, depth), 255, np.uint8)}, ["y"])["y"]
    assert np.all(y == depth * 255 * weight)


def _int8_with_broken_smoothquant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, plain_only: bool) -> Any:
    """The int8 variant of a tiny random BERT exported with SmoothQuant's column scales × -1000 (in its forms
    without the outlier split only, when ``plain_only``). A tiny random BERT's layers add little to its residual
    stream: negating them alone still passed the gate."""
    from fastembed_rt.export import export_model, quantize

    class Broken(SmoothQuantScheme):
        def apply(self, model: Any, sensitive: Any) -> Any:
            from onnx import numpy_helper

            super().apply(model, sensitive)
            if not plain_only or self.outlier_ratio is None:
                for init in model.graph.initializer:
                    if init.name.endswith("/column_scale"):
                        init.CopyFrom(numpy_helper.from_array(-1000 * numpy_helper.to_array(init), init.name))
            return model

    monkeypatch.setattr(quantize, "SmoothQuantScheme", Broken)
    model_dir = build_tiny_model(tmp_path / "model", "bert", "mean", normalize=True)
    return export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32,int8").variant("int8")


def test_int8_ships_matmulnbits_when_smoothquant_misses_its_gate_at_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    int8 = _int8_with_broken_smoothquant(tmp_path, monkeypatch, plain_only=False)
    assert int8.optimization == "ort-transformers+int8" and "MatMulNBits" in int8.stage_counts["scheme"]
    # every SmoothQuant scheme: static scales without exclusions, then both per-row ones down their whole ladders
    static, plain, split = int8.stage_counts["other_schemes"]
    assert "one calibrated scale on" in static["scheme"] and len(static["missed_gate"]) == 1
    assert "SmoothQuant" in plain["scheme"] and "in fp32" not in plain["scheme"] and "in fp32" in split["scheme"]
    assert "calibrated scale" not in plain["scheme"] + split["scheme"]
    for missed in (plain, split):
        assert len(missed["missed_gate"]) == 3
    assert all("min cosine" in step for missed in (static, plain, split) for step in missed["missed_gate"])
    assert load_manifest(tmp_path / "artifact").variant("int8").stage_counts == int8.stage_counts


def test_int8_splits_outlier_channels_off_when_the_plain_scheme_misses_its_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    int8 = _int8_with_broken_smoothquant(tmp_path, monkeypatch, plain_only=True)
    assert int8.optimization == "ort-transformers+smoothquant-int8"
    assert int8.stage_counts["outlier_ratio"] == 4.0 and "in fp32" in int8.stage_counts["scheme"]
    static, plain = int8.stage_counts["other_schemes"]
    assert len(static["missed_gate"]) == 1 and len(plain["missed_gate"]) == 3
    assert plain["scheme"] != int8.stage_counts["scheme"] and "calibrated scale" not in int8.stage_counts["scheme"]


VOCAB = 96


def _tied_graph() -> Any:
    """A masked-LM head tied to its word embeddings: e = Gather(emb, ids); y = x @ Transpose(emb)."""
    from onnx import TensorProto, helper, numpy_helper

    emb = (np.random.default_rng(2).normal(size=(VOCAB, WIDTH)) / 8).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embeddings"),
        helper.make_node("Transpose", ["emb"], ["emb_t"], name="tied", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "emb_t"], ["y"], name="decoder"),
    ]
    graph = helper.make_graph(
        nodes,
        "tied",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", WIDTH]),
        ],
        [
            helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch", "seq", WIDTH]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", VOCAB]),
        ],
        initializer=[numpy_helper.from_array(emb, "emb")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run_tied(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = _session(model)
    ids = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2]) % VOCAB
    e, y = session.run(["e", "y"], {"ids": ids, "x": x})
    return np.asarray(e), np.asarray(y)


def test_a_decoder_tied_to_the_word_embeddings_is_a_weight_matmul_quantized_from_the_transposed_table(
    tmp_path: Path,
) -> None:
    import onnx
    from onnx import numpy_helper

    from fastembed_rt.export.quantize import weight_matmul_widths

    path = tmp_path / "tied.onnx"
    onnx.save(_tied_graph(), str(path))
    ids = np.zeros((4, 5), np.int64)
    maxima = calibrate(path, [{"ids": ids, "x": _inputs(4, seed)} for seed in range(3)])
    assert set(maxima) == {"x"}
    model = _tied_graph()
    assert weight_matmul_widths(model) == [("decoder", WIDTH)]  # the exclusion ladder sees it, K = hidden size
    emb = numpy_helper.to_array(model.graph.initializer[0])
    assert smooth_quantize(model, maxima, ALPHA, outlier_ratio=None) == (1, 0)
    ops = [node.op_type for node in model.graph.node]
    assert ops == [op for op in ops if op not in ("MatMul", "Transpose")] and "MatMulIntegerToFloat" in ops
    x = _inputs(3, seed=7)
    e, y = _run_tied(model, x)
    expected = _reference_matmul(x, np.ascontiguousarray(emb.T), _smoothing(maxima["x"], emb.T))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(e, _run_tied(_tied_graph(), x)[0])  # the embedding lookup keeps its float table


def test_matmulnbits_quantizes_a_tied_decoder_and_leaves_an_excluded_one_tied() -> None:
    from fastembed_rt.export.quantize import INT8

    x = _inputs(3, seed=7)
    _, exact = _run_tied(_tied_graph(), x)
    model = INT8.apply(_tied_graph(), [])
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMulNBits") == 1 and "Transpose" not in ops and "MatMul" not in ops
    _, y = _run_tied(model, x)
    assert np.abs(y - exact).max() < 0.02 * np.abs(exact).max()
    # kept float: still the Transpose of the one table, no float copy of it added
    model = INT8.apply(_tied_graph(), ["decoder"])
    assert [node.op_type for node in model.graph.node] == ["Gather", "Transpose", "MatMul"]
    assert [init.name for init in model.graph.initializer] == ["emb"]


def _tables_graph() -> tuple[Any, dict[str, np.ndarray]]:
    """Three tables: 'words' (5,000 rows) read by two Gathers, 'positions' (100 rows), and 'tied' (5,000 rows)
    also read by a Transpose (a decoder tied to it)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    tables = {
        "words": (rng.normal(size=(5000, 16)) * rng.uniform(0.01, 3, size=(5000, 1))).astype(np.float32),
        "positions": rng.normal(size=(100, 16)).astype(np.float32),
        "tied": rng.normal(size=(5000, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["words", "ids"], ["a"], name="words_a"),
        helper.make_node("Gather", ["words", "ids"], ["b"], name="words_b"),
        helper.make_node("Gather", ["positions", "pos"], ["c"], name="positions"),
        helper.make_node("Gather", ["tied", "ids"], ["d"], name="tied_lookup"),
        helper.make_node("Transpose", ["tied"], ["tied_t"], name="tied_t", perm=[1, 0]),
        helper.make_node("MatMul", ["c", "tied_t"], ["e"], name="decoder"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("ids", "pos")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abcde"]
    initializers = [numpy_helper.from_array(value, name) for name, value in tables.items()]
    graph = helper.make_graph(nodes, "tables", io, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tables


def test_word_embedding_tables_are_stored_at_8_bits_with_one_scale_per_row() -> None:
    import onnxruntime as ort

    from fastembed_rt.export.quantize import quantize_embedding_tables

    model, tables = _tables_graph()
    float_session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # only a large table that nothing but Gathers reads: not the 100-row one, not the one a decoder also reads
    assert quantize_embedding_tables(model) == ["words"]
    names = {init.name for init in model.graph.initializer}
    assert "words" not in names and {"positions", "tied"} <= names
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "ids": np.array([[0, 17, 4999], [3, 3, 2500]], np.int64),
        "pos": np.array([[0, 1, 2], [0, 1, 2]], np.int64),
    }
    ours = dict(zip("abcde", session.run(list("abcde"), feeds), strict=True))
    exact = dict(zip("abcde", float_session.run(list("abcde"), feeds), strict=True))
    rows = tables["words"][feeds["ids"]]
    scale = np.abs(rows).max(axis=-1, keepdims=True) / 127
    expected = np.clip(np.rint(rows / scale), -127, 127) * scale  # the numpy reference: symmetric, per row
    for name in "ab":
        np.testing.assert_allclose(ours[name], expected, rtol=1e-6, atol=1e-7)
        assert (np.abs(ours[name] - exact[name]) <= scale / 2 + 1e-6).all()  # within half a step of its own row
    for name in "cde":
        np.testing.assert_array_equal(ours[name], exact[name])


def test_outlier_channels_are_those_far_above_the_median_at_most_the_limit() -> None:
    maxima = np.array([1.0, 1.2, 9.0, 0.8, 5.0, 1.1, 30.0], np.float32)  # median 1.2
    np.testing.assert_array_equal(outlier_channels(maxima, 4.0), [6, 2, 4])  # largest first
    np.testing.assert_array_equal(outlier_channels(maxima, 7.0), [6, 2])
    np.testing.assert_array_equal(outlier_channels(maxima, 8.0), [6])  # 9 is not over 8 × 1.2
    np.testing.assert_array_equal(outlier_channels(maxima, 4.0, limit=1), [6])
    assert outlier_channels(maxima, None).size == 0
    assert outlier_channels(np.ones(8, np.float32), 4.0).size == 0  # no outlier: nothing split


def test_an_outlier_channel_is_multiplied_in_fp32_beside_the_8_bit_product(
    calibrated: tuple[Path, dict[str, Any]],
) -> None:
    from onnx import numpy_helper

    _, maxima = calibrated
    model = _graph()
    w = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    s_x = _smoothing(maxima["x"], w["wq"], w["wk"])
    s_h = _smoothing(maxima["h"], w["wo"])
    # after smoothing, x's channel 3 (× 40 in the data) is still far above the rest; h has no outlier
    assert list(outlier_channels(maxima["x"] / s_x, 4.0)) == [3]
    assert outlier_channels(np.maximum(maxima["h"], 1e-5) / s_h, 4.0).size == 0
    assert smooth_quantize(model, maxima, ALPHA) == (3, 1)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gather") == 1 and ops.count("MatMul") == 2  # one gather for the group, a MatMul per member
    x = _inputs(3, seed=7)
    kept = np.ones(WIDTH, np.float32)
    kept[3] = 0

    def split(x: np.ndarray, weight: np.ndarray, smooth: np.ndarray) -> np.ndarray:
        """8-bit product without channel 3 (its 1/s and its weight row are 0 there), plus channel 3 in fp32."""
        eight_bit = _reference_matmul(x * kept, weight * kept[:, None], smooth)
        return eight_bit + x[..., 3:4] @ weight[3:4]

    h = np.maximum(split(x, w["wq"], s_x) + split(x, w["wk"], s_x), 0)
    expected = _reference_matmul(h, w["wo"], s_h)
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # closer to the float graph than the same scheme without the split
    exact = _run(_graph(), x)
    plain = _graph()
    smooth_quantize(plain, maxima, ALPHA, outlier_ratio=None)
    assert np.abs(_run(model, x) - exact).max() < np.abs(_run(plain, x) - exact).max()


def _normalized_graph() -> Any:
    """``_graph`` with a LayerNormalization in front: n = LayerNorm(x) -> q, k -> Relu -> o; outputs y and n."""
    from onnx import TensorProto, helper, numpy_helper

    model = _graph()
    graph = model.graph
    rng = np.random.default_rng(4)
    graph.initializer.extend(
        [
            numpy_helper.from_array(rng.uniform(0.5, 2, WIDTH).astype(np.float32), "gamma"),
            numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32) / 4, "beta"),
        ]
    )
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[0] == "x":
            node.input[0] = "n"
    graph.node.insert(0, helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], name="norm", axis=-1))
    graph.output.append(helper.make_tensor_value_info("n", TensorProto.FLOAT, ["batch", "seq", WIDTH]))
    return model


@pytest.fixture(scope="module")
def calibrated_normalized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    import onnx

    path = tmp_path_factory.mktemp("smoothquant-normalized") / "norm.onnx"
    onnx.save(_normalized_graph(), str(path))
    return path, calibrate(path, _feeds())


def _reference_static_matmul(
    x: np.ndarray, weight: np.ndarray, smooth: np.ndarray, maximum: np.ndarray, limit: int = 127
) -> np.ndarray:
    """The static form in numpy: x/s quantized with one scale from the calibrated maxima (saturating at the
    uint8 range), W·s per column, exact integer products, then both scales."""
    tensor_scale = float((np.maximum(maximum, 1e-5) / smooth).max()) / 127
    inverse = (1 / smooth / np.float32(tensor_scale)).astype(np.float32)
    xq = np.clip(np.rint(x * inverse) + 128, 0, 255).astype(np.int64) - 128
    wq, column = _reference_weights(weight, smooth, limit)
    return (xq @ wq).astype(np.float32) * np.float32(tensor_scale) * column


def test_a_static_input_takes_one_calibrated_scale_and_saturates_beyond_it(
    calibrated_normalized: tuple[Path, dict[str, Any]],
) -> None:
    """One scale from calibration for the whole tensor, smoothing folded into the same Mul, no row maximum and no
    output rescale. Values past the calibrated range clip to the end codes; the ReLU output after it still gets
    its own scale per row."""
    from onnx import numpy_helper

    maxima = calibrated_normalized[1]
    assert set(maxima) == {"n", "h"}
    model = _normalized_graph()
    w = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    assert smooth_quantize(model, maxima, ALPHA, outlier_ratio=None, static_inputs={"n"}) == (3, 0)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("ReduceMax") == ops.count("Abs") == 1  # h's only
    assert [n.name for n in model.graph.node if n.name.endswith("/row_scale") and n.op_type == "Mul"] == [
        "smoothquant/y/row_scale"
    ]
    x = _inputs(3, seed=7)
    x[0, 0] = 0
    x[0, 0, 5] = 50  # one channel holds the whole token: its normalized value is far past the calibrated range
    y, n = _session(model).run(["y", "n"], {"x": x})
    s_n = _smoothing(maxima["n"], w["wq"], w["wk"])
    assert np.abs(n[0, 0, 5]) > 2 * maxima["n"][5]
    q = _reference_static_matmul(n, w["wq"], s_n, maxima["n"])
    k = _reference_static_matmul(n, w["wk"], s_n, maxima["n"])
    expected = _reference_matmul(np.maximum(q + k, 0), w["wo"], _smoothing(maxima["h"], w["wo"]))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # an approximation of the float graph on the calibrated tokens (the clipped one aside)
    exact = _session(_normalized_graph()).run(["y"], {"x": x})[0]
    assert np.abs(y - exact)[1:].max() < 0.05 * np.abs(exact).max()
    # not named: the same graph takes per-row scales everywhere
    plain = _normalized_graph()
    smooth_quantize(plain, maxima, ALPHA, outlier_ratio=None)
    assert [node.op_type for node in plain.graph.node].count("ReduceMax") == 2


def test_static_inputs_are_recorded_and_only_those_named_go_static(
    calibrated_normalized: tuple[Path, dict[str, Any]],
) -> None:
    maxima = calibrated_normalized[1]
    scheme = SmoothQuantScheme(maxima, calibration_texts=12, static_inputs=frozenset({"n"}))
    assert scheme.to_dict()["static_inputs"] == ["n"]
    assert "one calibrated scale on 1 normalized inputs" in scheme.describe()
    model = scheme.apply(_normalized_graph(), [])
    assert [node.op_type for node in model.graph.node].count("ReduceMax") == 1
    other = SmoothQuantScheme(maxima, calibration_texts=12, static_inputs=frozenset({"h"}))
    names = {node.name for node in other.apply(_normalized_graph(), []).graph.node}
    assert "smoothquant/g0/row_max" in names and "smoothquant/g1/row_max" not in names  # g0: n, g1: h


def test_row_spread_is_the_low_percentile_of_smoothed_row_maxima_over_the_largest(
    calibrated_normalized: tuple[Path, dict[str, Any]],
) -> None:
    """Measured for normalized inputs only (n, not the ReLU output h), after the smoothing the static scheme
    applies. (That the threshold separates inputs is checked on all-MiniLM-L6-v2 in ``test_variants``.)"""
    from onnx import numpy_helper

    from fastembed_rt.export.smoothquant import SPREAD_PERCENTILE, row_spreads

    path, maxima = calibrated_normalized
    w = {init.name: numpy_helper.to_array(init) for init in _normalized_graph().graph.initializer}
    session = _session(_normalized_graph())
    n = np.concatenate([session.run(["n"], feed)[0].reshape(-1, WIDTH) for feed in _feeds()])
    peaks = np.abs(n / _smoothing(maxima["n"], w["wq"], w["wk"])).max(axis=1)
    spreads = row_spreads(path, maxima, _feeds())
    assert set(spreads) == {"n"}
    assert spreads["n"] == pytest.approx(np.percentile(peaks, SPREAD_PERCENTILE) / peaks.max(), rel=1e-5)
    assert 0 < spreads["n"] < 1
