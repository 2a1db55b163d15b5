"""The export stage (needs the ``export`` extra: torch, transformers, sentence-transformers, onnx).

``export_artifact(model, out_dir)`` turns a sentence-transformers model into a validated
fastembed-rt artifact with the exporter of its task (``detect_task``): ``export_model`` for
bi-encoders, ``export_cross_encoder`` for CrossEncoder rerankers, ``export_sparse_encoder`` for
SPLADE SparseEncoders and ``export_multi_vector_encoder`` for late-interaction (ColBERT)
MultiVectorEncoders. The runtime never imports this package.

Layout: ``tasks`` (task → exporter), ``bi_encoder`` / ``cross_encoder`` / ``sparse_encoder`` (one
task each; ``heads`` is the flow the two heads share), ``writer`` (the one artifact and manifest
writer), ``variants`` (the variant registry with its gates) and its builders ``optimize``,
``quantize``, ``openvino_ir`` (contract: ``build``), ``fidelity`` (measurements and typed gates),
``validate`` (parity grids), ``architectures`` / ``backbone`` / ``st_reader`` / ``source`` (the model side).
"""

from __future__ import annotations

try:
    import onnx  # noqa: F401
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised by the no-torch subprocess test
    raise ImportError(
        f"fastembed_rt.export needs the export extra ({_exc.name or _exc}): pip install 'fastembed-rt[export]'"
    ) from _exc

from fastembed_rt.export.bi_encoder import export_model
from fastembed_rt.export.cross_encoder import export_cross_encoder
from fastembed_rt.export.multi_vector_encoder import export_multi_vector_encoder
from fastembed_rt.export.sparse_encoder import export_sparse_encoder
from fastembed_rt.export.tasks import detect_task, export_artifact

__all__ = [
    "detect_task",
    "export_artifact",
    "export_cross_encoder",
    "export_model",
    "export_multi_vector_encoder",
    "export_sparse_encoder",
]
