"""Every model type opens through the one loader: same provider and variant choice, options, fallback
refusal and warm-up for a bi-encoder, a reranker and a SPLADE encoder; ``load_model`` picks the type.

The reranker and SPLADE model are the session's tiny random exports (fp32 + int8); the bi-encoder
is the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_heads import PAIRS

from fastembed_rt import CrossEncoder, ProviderError, SentenceTransformer, SparseEncoder, load_model
from fastembed_rt.models import MODEL_TYPES, ArtifactModel
from fastembed_rt.providers import ProviderOptions
from fastembed_rt.providers.onnxruntime import cuda_unavailable

TEXTS = [pair[1] for pair in PAIRS]
no_cuda = pytest.mark.skipif(cuda_unavailable() is None, reason="CUDA is usable here: nothing falls back")


@dataclass(frozen=True)
class Case:
    model_type: type[ArtifactModel]
    artifact: Path
    outputs: Callable[[Any], np.ndarray]  # the model's dense output on the test inputs


def _scores(model: Any) -> np.ndarray:
    return np.asarray(model.predict(PAIRS), dtype=np.float32)


def _sparse(model: Any) -> np.ndarray:
    return np.asarray(model.encode(TEXTS, convert_to_sparse_tensor=False), dtype=np.float32)


def _dense(model: Any) -> np.ndarray:
    return np.asarray(model.encode(TEXTS), dtype=np.float32)


@pytest.fixture(scope="module")
def cases(minilm_artifact_session: Path, tiny_reranker_artifact: Path, tiny_splade_artifact: Path) -> dict[str, Case]:
    return {
        "embedding": Case(SentenceTransformer, minilm_artifact_session, _dense),
        "cross-encoder": Case(CrossEncoder, tiny_reranker_artifact, _scores),
        "sparse": Case(SparseEncoder, tiny_splade_artifact, _sparse),
    }


HEADS = ["cross-encoder", "sparse"]
ALL = ["embedding", *HEADS]


@pytest.mark.parametrize("task", ALL)
def test_load_model_opens_the_type_the_manifest_names(cases: dict[str, Case], task: str) -> None:
    model = load_model(cases[task].artifact, provider="cpu")
    assert type(model) is cases[task].model_type is MODEL_TYPES[task]
    model.close()


@pytest.mark.parametrize("task", HEADS)
def test_heads_run_on_openvino_like_on_cpu(cases: dict[str, Case], task: str, tmp_path: Path) -> None:
    case = cases[task]
    cpu = case.model_type(case.artifact, provider="cpu")
    openvino = case.model_type(case.artifact, provider="openvino", provider_cache_dir=tmp_path)
    assert (openvino.provider, openvino.variant) == ("openvino", "fp32")
    np.testing.assert_allclose(case.outputs(openvino), case.outputs(cpu), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("task", HEADS)
def test_auto_variant_is_the_providers_choice_and_int8_runs_when_named(cases: dict[str, Case], task: str) -> None:
    case = cases[task]
    auto = case.model_type(case.artifact, provider="cpu")
    int8 = case.model_type(case.artifact, provider="cpu", variant="int8")
    assert auto.variant == "fp32" and int8.variant == "int8"
    graph_files = {Path(v.file).name for v in int8.manifest.variants}
    assert graph_files == {"model.onnx", "model_int8.onnx"}
    fp32_out, int8_out = case.outputs(auto), case.outputs(int8)
    assert fp32_out.shape == int8_out.shape and not np.array_equal(fp32_out, int8_out), "int8 ran the fp32 graph"


@no_cuda
@pytest.mark.parametrize("task", ALL)
def test_cuda_fallback_is_refused_unless_allowed(cases: dict[str, Case], task: str) -> None:
    case = cases[task]
    with pytest.raises(ProviderError, match="provider 'cuda' is not available"):
        case.model_type(case.artifact, provider="cuda")
    fallen = case.model_type(case.artifact, provider="cuda", allow_fallback=True)
    assert fallen.provider == "cpu"
    np.testing.assert_allclose(case.outputs(fallen), case.outputs(case.model_type(case.artifact, provider="cpu")))


@pytest.mark.parametrize("task", ALL)
def test_provider_options_and_threads_reach_the_engine(cases: dict[str, Case], task: str) -> None:
    case = cases[task]
    options = ProviderOptions(intra_op_threads=2, inter_op_threads=1)
    model = case.model_type(case.artifact, provider="cpu", provider_options=options, intra_op_threads=1)
    session = model._pipeline.provider._session.get_session_options()  # type: ignore[attr-defined]
    assert session.intra_op_num_threads == 1, "the intra_op_threads argument wins over provider_options"


@pytest.mark.parametrize("task", ALL)
def test_warmup_runs_at_load_and_leaves_no_stats(cases: dict[str, Case], task: str) -> None:
    case = cases[task]
    model = case.model_type(case.artifact, provider="cpu", warmup=True)
    assert model.last_encode_stats.texts == 0
    case.outputs(model)
    assert model.last_encode_stats.texts == len(TEXTS)


def test_a_process_that_only_embeds_imports_no_other_model_type_pool_or_hashlib(minilm_artifact_session: Path) -> None:
    """Cold start: the other model classes, the multi-process pool (multiprocessing) and hashlib (OpenSSL) load on
    first use, and each still resolves by name from both packages."""
    import subprocess
    import sys

    code = f"""
import sys
from fastembed_rt import SentenceTransformer
SentenceTransformer({str(minilm_artifact_session)!r}).encode(["one text"])
late = ["fastembed_rt.models.cross_encoder", "fastembed_rt.models.sparse_encoder",
        "fastembed_rt.models.multi_vector_encoder", "fastembed_rt.hard_negatives", "multiprocessing", "hashlib"]
print(sorted(m for m in late if m in sys.modules))
import fastembed_rt, fastembed_rt.models
print(fastembed_rt.CrossEncoder is fastembed_rt.models.CrossEncoder, fastembed_rt.SparseEncoder.task,
      fastembed_rt.MultiVectorEncoder.task, fastembed_rt.models.MODEL_TYPES["cross-encoder"].task)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "True sparse multi-vector cross-encoder"]
