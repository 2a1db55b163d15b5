"""What ONNX Runtime makes of an int8 graph on x86 CPUs without VNNI, checked on any x86 CPU.

The engine turns on ONNX Runtime's exact-product option (``session.x64quantprecision``) there; ONNX Runtime
then widens every int8 weight tensor with a code outside [-64, 64] to uint8, a graph rewrite that runs
whatever this CPU is, so the optimized model it writes says which weights an AVX2 CPU runs on the slow
exact u8 × u8 kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ONNX Runtime's name for the uint8 copy of a widened weight
_WIDENED = "_s8_2_u8"


def widened_weights(graph: Any, scratch: Path) -> list[str]:
    """The weights (names ending ``/weight``, sorted) that ONNX Runtime widens to uint8 when it opens ``graph``
    (a ``ModelProto`` or a file) as the engine does on an x86 CPU without VNNI; ``scratch``: a folder for the
    optimized model it writes."""
    import onnx
    import onnxruntime as ort

    from fastembed_rt.providers.base import ProviderOptions
    from fastembed_rt.providers.onnxruntime import X64_QUANT_PRECISION, session_options

    # named in ``extra``, so session_options leaves it for us to set once, whatever this CPU
    options = session_options(ProviderOptions(extra={X64_QUANT_PRECISION: "1"}))
    options.add_session_config_entry(X64_QUANT_PRECISION, "1")
    options.optimized_model_filepath = str(scratch / "opened.onnx")
    source = graph.SerializeToString() if isinstance(graph, onnx.ModelProto) else str(graph)
    ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    opened = onnx.load(str(scratch / "opened.onnx"), load_external_data=False).graph.initializer
    names = [init.name.removesuffix(_WIDENED) for init in opened if init.name.endswith(_WIDENED)]
    return sorted(name for name in names if name.endswith("/weight"))  # not the zero point it adds
