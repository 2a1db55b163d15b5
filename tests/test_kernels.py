"""Output stages: the ONNX subgraph equals the numpy reference, and the reference equals sentence-transformers.

Both comparisons run on the same random token embeddings with right padding, left padding, an
all-padding row, and prompt lengths that cover every token of a row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from fastembed_rt.kernels.onnx_stages import StageCounts, append_output_stages
from fastembed_rt.kernels.reference import apply_stages, pooling_mask
from fastembed_rt.kernels.spec import DenseActivation, DenseSpec, OutputStages, PoolingMode, PoolingSpec

BATCH, SEQ, HIDDEN = 6, 7, 5
ATOL = 1e-5
ALL_MODES = tuple(PoolingMode)
MODE_SETS = [pytest.param((m,), id=m.value) for m in PoolingMode] + [pytest.param(ALL_MODES, id="all-modes")]

# Rows: right padding, no padding, left padding, all padding, one token, left padding with one token.
MIXED_PADDING = np.array(
    [
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ],
    dtype=np.int64,
)
# Per row: every token (4 of 4), two of seven, three after the left padding, none to cover,
# more than the row has, and the single left-padded token.
PROMPT_LENGTH = np.array([4, 2, 3, 2, 3, 1], dtype=np.int64)
# Without left padding sentence-transformers takes another branch to drop the prompt.
RIGHT_PADDING = np.array(
    [
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
    ],
    dtype=np.int64,
)
MASKS = [pytest.param(MIXED_PADDING, id="mixed-padding"), pytest.param(RIGHT_PADDING, id="right-padding")]


def _token_embeddings(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, SEQ, HIDDEN)).astype(np.float32)


def _dense(in_features: int, activation: DenseActivation, seed: int = 1, bias: bool = True) -> DenseSpec:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((6, in_features)) / np.sqrt(in_features)).astype(np.float32)
    return DenseSpec(
        weight=weight, bias=rng.standard_normal(6).astype(np.float32) if bias else None, activation=activation
    )


def _stages_graph(stages: OutputStages) -> tuple[onnx.ModelProto, StageCounts]:
    """A graph with no backbone: inputs ``token_embeddings`` and ``attention_mask``, then the stages."""
    graph = helper.make_graph(
        [],
        "stages_only",
        [
            helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    counts = append_output_stages(model, stages)
    return model, counts


def _run_graph(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(["sentence_embedding"], feeds)
    return np.asarray(out)


def _run_onnx_stages(
    stages: OutputStages,
    x: np.ndarray,
    prompt_length: np.ndarray | None,
    attention_mask: np.ndarray = MIXED_PADDING,
) -> np.ndarray:
    model, _ = _stages_graph(stages)
    feeds = {"token_embeddings": x, "attention_mask": attention_mask}
    if not stages.pooling.include_prompt:
        assert prompt_length is not None
        feeds["prompt_length"] = prompt_length
    return _run_graph(model, feeds)


def _assert_equal_within(actual: np.ndarray, expected: np.ndarray) -> None:
    """Max abs diff ≤ ATOL; -inf (max pooling over no token) must match -inf exactly."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


# -- ONNX subgraph vs numpy reference -------------------------------------------------------------


@pytest.mark.parametrize("attention_mask", MASKS)
@pytest.mark.parametrize("include_prompt", [True, False], ids=["with-prompt", "prompt-excluded"])
@pytest.mark.parametrize("modes", MODE_SETS)
def test_onnx_pooling_matches_reference(
    modes: tuple[PoolingMode, ...], include_prompt: bool, attention_mask: np.ndarray
) -> None:
    stages = OutputStages(PoolingSpec(modes, include_prompt))
    x = _token_embeddings()
    expected = apply_stages(x, attention_mask, stages, PROMPT_LENGTH)
    actual = _run_onnx_stages(stages, x, PROMPT_LENGTH, attention_mask)
    assert actual.shape == (BATCH, HIDDEN * len(modes))
    _assert_equal_within(actual, expected)


def test_max_pooling_over_no_tokens_is_negative_infinity() -> None:
    stages = OutputStages(PoolingSpec((PoolingMode.MAX,), include_prompt=False))
    x = _token_embeddings()
    actual = _run_onnx_stages(stages, x, PROMPT_LENGTH)
    no_tokens = pooling_mask(MIXED_PADDING, PROMPT_LENGTH).sum(axis=1) == 0
    assert no_tokens.tolist() == [True, False, False, True, True, True]
    assert np.all(actual[no_tokens] == -np.inf)
    assert np.all(np.isfinite(actual[~no_tokens]))


def test_excluding_prompt_changes_pooled_rows_with_remaining_tokens() -> None:
    x = _token_embeddings()
    kept = _run_onnx_stages(OutputStages(PoolingSpec(ALL_MODES, True)), x, None)
    excluded = _run_onnx_stages(OutputStages(PoolingSpec(ALL_MODES, False)), x, PROMPT_LENGTH)
    # Rows 1 and 2 keep tokens after the prompt. max and lasttoken may legitimately not move.
    moving = [ALL_MODES.index(m) for m in ALL_MODES if m not in (PoolingMode.MAX, PoolingMode.LASTTOKEN)]
    for row in (1, 2):
        moved = np.abs(kept[row] - excluded[row]).reshape(len(ALL_MODES), HIDDEN).max(axis=1)
        assert (moved[moving] > 1e-3).all(), moved


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("activation", list(DenseActivation), ids=lambda a: a.value)
def test_onnx_dense_and_normalize_match_reference(activation: DenseActivation, normalize: bool) -> None:
    # mean pooling keeps the all-padding row finite (a zero vector), so normalize sees a zero norm.
    stages = OutputStages(
        PoolingSpec((PoolingMode.MEAN, PoolingMode.CLS)),
        dense=(_dense(2 * HIDDEN, activation),),
        normalize=normalize,
    )
    x = _token_embeddings()
    expected = apply_stages(x, MIXED_PADDING, stages)
    actual = _run_onnx_stages(stages, x, None)
    assert actual.shape == (BATCH, 6)
    _assert_equal_within(actual, expected)
    if normalize:
        norms = np.linalg.norm(actual, axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-6)


def test_onnx_stacked_dense_without_bias_then_normalize_matches_reference() -> None:
    first = _dense(HIDDEN, DenseActivation.GELU, seed=2, bias=False)
    second = _dense(6, DenseActivation.TANH, seed=3)
    stages = OutputStages(PoolingSpec((PoolingMode.WEIGHTEDMEAN,), False), dense=(first, second), normalize=True)
    x = _token_embeddings()
    expected = apply_stages(x, MIXED_PADDING, stages, PROMPT_LENGTH)
    _assert_equal_within(_run_onnx_stages(stages, x, PROMPT_LENGTH), expected)


def test_normalize_maps_zero_vector_to_zero_vector() -> None:
    stages = OutputStages(PoolingSpec((PoolingMode.MEAN,)), normalize=True)
    actual = _run_onnx_stages(stages, _token_embeddings(), None)
    assert np.all(actual[3] == 0)  # the all-padding row


# -- what append_output_stages reports and builds -------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "inputs"),
    [
        pytest.param(OutputStages(PoolingSpec()), ["token_embeddings", "attention_mask"], id="mean"),
        pytest.param(
            OutputStages(
                PoolingSpec(ALL_MODES, include_prompt=False),
                dense=(_dense(HIDDEN * len(ALL_MODES), DenseActivation.GELU), _dense(6, DenseActivation.IDENTITY)),
                normalize=True,
            ),
            ["token_embeddings", "attention_mask", "prompt_length"],
            id="all-modes-prompt-excluded-two-dense-normalize",
        ),
    ],
)
def test_stage_counts_describe_appended_graph(stages: OutputStages, inputs: list[str]) -> None:
    model, counts = _stages_graph(stages)
    onnx.checker.check_model(model, full_check=True)
    assert counts.pooling_modes == [m.value for m in stages.pooling.modes]
    assert counts.dense_layers == len(stages.dense)
    assert counts.normalize is stages.normalize
    assert counts.nodes == len(model.graph.node)
    assert counts.initializers == len(model.graph.initializer)
    used = {name for node in model.graph.node for name in node.input}
    assert all(init.name in used for init in model.graph.initializer)
    assert [i.name for i in model.graph.input] == inputs
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]
    op_types = {node.op_type for node in model.graph.node}
    assert ("ReduceL2" in op_types) is stages.normalize
    assert sum(node.op_type == "MatMul" for node in model.graph.node) == len(stages.dense)


# -- numpy reference vs sentence-transformers' torch modules --------------------------------------


@pytest.fixture(scope="module")
def st_modules() -> Any:
    import sentence_transformers.sentence_transformer.modules as modules

    return modules


def _st_pool(
    st_modules: Any,
    modes: tuple[PoolingMode, ...],
    include_prompt: bool,
    x: np.ndarray,
    attention_mask: np.ndarray,
    prompt_length: int,
) -> np.ndarray:
    import torch

    mode_names = tuple(m.value for m in modes)
    pooling = st_modules.Pooling(HIDDEN, pooling_mode=mode_names, include_prompt=include_prompt)
    features: dict[str, Any] = {
        "token_embeddings": torch.from_numpy(x),
        "attention_mask": torch.from_numpy(attention_mask),
    }
    if not include_prompt:
        features["prompt_length"] = prompt_length
    with torch.no_grad():
        return pooling(features)["sentence_embedding"].numpy()


# sentence-transformers takes one prompt length per batch (all texts share the prompt).
@pytest.mark.parametrize("prompt_length", [1, 3, 4])
@pytest.mark.parametrize("attention_mask", MASKS)
@pytest.mark.parametrize("include_prompt", [True, False], ids=["with-prompt", "prompt-excluded"])
@pytest.mark.parametrize("modes", MODE_SETS)
def test_reference_pooling_matches_sentence_transformers(
    st_modules: Any,
    modes: tuple[PoolingMode, ...],
    include_prompt: bool,
    attention_mask: np.ndarray,
    prompt_length: int,
) -> None:
    x = _token_embeddings(seed=prompt_length)
    expected = _st_pool(st_modules, modes, include_prompt, x, attention_mask, prompt_length)
    stages = OutputStages(PoolingSpec(modes, include_prompt))
    actual = apply_stages(x, attention_mask, stages, np.full(BATCH, prompt_length, dtype=np.int64))
    _assert_equal_within(actual, expected)


_TORCH_ACTIVATIONS = {
    DenseActivation.IDENTITY: "Identity",
    DenseActivation.TANH: "Tanh",
    DenseActivation.RELU: "ReLU",
    DenseActivation.SIGMOID: "Sigmoid",
    DenseActivation.GELU: "GELU",
    DenseActivation.SILU: "SiLU",
}


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("activation", list(DenseActivation), ids=lambda a: a.value)
def test_reference_dense_and_normalize_match_sentence_transformers(
    st_modules: Any, activation: DenseActivation, normalize: bool
) -> None:
    import torch

    x = _token_embeddings()
    modes = (PoolingMode.MEAN, PoolingMode.CLS)
    dense = _dense(2 * HIDDEN, activation)
    assert dense.bias is not None
    st_dense = st_modules.Dense(
        2 * HIDDEN,
        dense.out_features,
        activation_function=getattr(torch.nn, _TORCH_ACTIVATIONS[activation])(),
        init_weight=torch.from_numpy(dense.weight.copy()),
        init_bias=torch.from_numpy(dense.bias.copy()),
    )
    pooling = st_modules.Pooling(HIDDEN, pooling_mode=tuple(m.value for m in modes))
    pipeline: list[torch.nn.Module] = [pooling, st_dense, *([st_modules.Normalize()] if normalize else [])]
    features: dict[str, Any] = {
        "token_embeddings": torch.from_numpy(x),
        "attention_mask": torch.from_numpy(MIXED_PADDING),
    }
    with torch.no_grad():
        for module in pipeline:
            features = module(features)
    expected = features["sentence_embedding"].numpy()
    actual = apply_stages(x, MIXED_PADDING, OutputStages(PoolingSpec(modes), dense=(dense,), normalize=normalize))
    _assert_equal_within(actual, expected)
