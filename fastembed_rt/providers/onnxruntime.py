"""``cpu``: the ONNX Runtime CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastembed_rt.errors import ArtifactError, ProviderError
from fastembed_rt.providers.base import ProviderOptions
from fastembed_rt.providers.threads import available_cpus

__all__ = ["OnnxRuntimeCPU"]


class OnnxRuntimeCPU:
    """An ``onnxruntime.InferenceSession`` on ``CPUExecutionProvider``.

    Defaults: intra-op threads = CPUs this process may use (affinity and cgroup quota), inter-op 1,
    sequential execution, full graph optimisation, no spinning between calls.
    """

    name = "cpu"

    def __init__(self, model_path: Path, options: ProviderOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads or available_cpus()
        so.inter_op_num_threads = options.inter_op_threads or 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._session: ort.InferenceSession | None
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own non-exported exception types
            raise ArtifactError(
                f"{model_path} could not be loaded by ONNX Runtime {ort.__version__} ({exc}); the file is corrupt "
                "or from a newer exporter: re-create the artifact with `fastembed-rt export MODEL OUT_DIR`"
            ) from exc
        used = self._session.get_providers()
        if "CPUExecutionProvider" not in used:  # pragma: no cover - CPU EP is always compiled in
            raise ProviderError(f"ONNX Runtime did not give the CPU execution provider; got {used}")
        self.intra_op_threads = so.intra_op_num_threads
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise ProviderError("this model was closed; create a new one to encode again")
        outputs = self._session.run(output_names, feeds)
        return dict(zip(output_names, outputs))

    def close(self) -> None:
        self._session = None
