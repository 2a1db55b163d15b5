"""Growing an ONNX graph node by node: unique names under a prefix, constants, and counts.

The output stages (``onnx_stages``) and the task heads (``onnx_heads``) append their subgraphs
through one ``GraphBuilder``, so every node and initializer they add is named
``<prefix>/<hint>_<n>`` and counted for tests and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphBuilder", "StageCounts"]


@dataclass
class StageCounts:
    """What ``append_output_stages`` added, so tests and the manifest can state it."""

    nodes: int = 0
    initializers: int = 0
    pooling_modes: list[str] = field(default_factory=list)
    dense_layers: int = 0
    normalize: bool = False


class GraphBuilder:
    """Appends nodes and initializers to ``graph``, each named under ``prefix`` and counted in ``counts``."""

    def __init__(self, graph: onnx.GraphProto, prefix: str) -> None:
        self.graph = graph
        self.prefix = prefix
        self.counts = StageCounts()
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}/{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.counts.initializers += 1
        return name

    def drop_unused_constants(self) -> None:
        used = {name for node in self.graph.node for name in node.input}
        unused = [t for t in self.graph.initializer if t.name.startswith(self.prefix + "/") and t.name not in used]
        for tensor in unused:
            self.graph.initializer.remove(tensor)
        self.counts.initializers -= len(unused)

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.graph.node.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        self.counts.nodes += 1
        return out
