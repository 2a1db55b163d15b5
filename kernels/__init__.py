"""Output stages of fastembed-rt: specs, numpy references and ONNX subgraph builders.

``spec`` and ``reference`` need only numpy; ``onnx_stages`` needs the ``onnx`` package and is
imported where graphs are built (export time), never by the runtime's hot path.
"""

from fastembed_rt.kernels.spec import (
    DenseActivation,
    DenseSpec,
    OutputStages,
    PoolingMode,
    PoolingSpec,
    Precision,
)

__all__ = ["DenseActivation", "DenseSpec", "OutputStages", "PoolingMode", "PoolingSpec", "Precision"]
