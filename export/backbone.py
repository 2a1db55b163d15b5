"""Export a transformers encoder to ONNX with dynamic batch and sequence axes.

Uses the dynamo-based ``torch.onnx.export``: the TorchScript exporter traces transformers 5's mask
construction into constants and gave max abs error 6.2 on all-MiniLM-L6-v2 here, the dynamo
exporter 5e-5.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastembed_rt.errors import ExportError
from fastembed_rt.export.architectures import (
    ARCHITECTURES,
    ArchitectureConfig,
    architecture_config,
    remote_code_config,
    usable_positions,
)
from fastembed_rt.export.onnx_files import EXTERNAL_DATA_THRESHOLD, parameter_bytes
from fastembed_rt.kernels.spec import TOKEN_EMBEDDINGS

__all__ = ["ExportedBackbone", "export_backbone", "export_st_backbone"]


@dataclass(frozen=True)
class ExportedBackbone:
    """The backbone graph of an artifact (before its output stages or head) and the facts variant builders need."""

    path: Path
    architecture: ArchitectureConfig
    hidden_size: int
    num_heads: int  # 0 when the config does not say
    external_data: bool = False  # weights in ``path``'s data file (``export.onnx_files``)
    # What the runtime sizes batches by (``batching.ActivationCost``), recorded as the manifest's source.backbone.
    shape: dict[str, int] = field(default_factory=dict)


def _wrapper(model: Any, inputs: tuple[str, ...], output: str) -> Any:
    import torch

    class Backbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return getattr(self.model(**dict(zip(inputs, args)), return_dict=True), output)

    return Backbone().eval()


def export_backbone(
    model: Any,
    config: ArchitectureConfig,
    path: Path,
    vocab_size: int,
    *,
    output: str = "last_hidden_state",
    output_name: str = TOKEN_EMBEDDINGS,
    external_data: bool = False,
) -> None:
    """Write ``model`` (a transformers ``PreTrainedModel``) as ONNX to ``path``.

    ``external_data``: weights go to ``path``'s data file (``export.onnx_files.data_file``), as graphs over 2 GiB must.

    The graph has inputs ``config.inputs`` (int64 [batch, sequence]) and one float32 output
    ``output_name``: the model output field ``output``. Defaults: ``token_embeddings``
    [batch, sequence, hidden]; heads export ``logits`` ([batch, labels] or [batch, sequence, vocab]).
    """
    import torch

    # Eager attention exports to plain MatMul/Softmax, which every provider runs and ORT fuses.
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    model = model.eval().float()
    wrapper = _wrapper(model, config.inputs, output)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in config.inputs}
    captured = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                config.sample_inputs(vocab_size),
                str(path),
                input_names=list(config.inputs),
                output_names=[output_name],
                dynamic_shapes={"args": tuple(dynamic[name] for name in config.inputs)},
                opset_version=config.opset,
                dynamo=True,
                external_data=external_data,
            )
    except Exception as exc:  # torch.export raises many unrelated types
        raise ExportError(
            f"torch.onnx.export failed for {type(model).__name__} ({config.model_type}): {exc}\n{captured.getvalue()}"
        ) from exc
    finally:
        _forget_exported_graph()


def _forget_exported_graph() -> None:
    """Drop what onnxscript's rewrite rules keep of the last graph they matched.

    torch.onnx.export runs onnxscript's optimizer, whose module-level rules keep their matcher's last
    graph (onnxscript 0.7: ``SimplePatternMatcher._graph``), and through its initializers every weight
    of the PyTorch model: freeing the model freed nothing (Qwen3-Embedding-0.6B: 2.4 GB held for the
    rest of the export). Each match sets these fields afresh, so clearing them changes no later export;
    on an onnxscript without that class this does nothing.
    """
    import gc

    try:
        from onnxscript.rewriter._matcher import SimplePatternMatcher
    except ImportError:
        return
    with warnings.catch_warnings():  # isinstance() on some of torch's lazy objects warns of their deprecation
        warnings.simplefilter("ignore")
        # by type, not isinstance: that asks an object for __class__, which some raise on (numpy's NpzFile.f,
        # a BagObj, raises AttributeError for any name it lacks; one alive in the process failed every export)
        matchers = [obj for obj in gc.get_objects() if issubclass(type(obj), SimplePatternMatcher)]
    for matcher in matchers:
        for name in ("_graph", "_current_node", "_match", "_tracer"):
            if name in vars(matcher):
                setattr(matcher, name, None)


def export_st_backbone(
    st_model: Any,
    path: Path,
    *,
    output: str = "last_hidden_state",
    output_name: str = TOKEN_EMBEDDINGS,
    external_data_threshold: int | None = None,
) -> ExportedBackbone:
    """Export the transformers model of a sentence-transformers model (``st_model[0]``) to ``path``.

    Its attention implementation is restored afterwards, so the PyTorch reference runs as users run it.
    Weights go to an external data file when their fp32 bytes exceed ``external_data_threshold``
    (None: ``onnx_files.EXTERNAL_DATA_THRESHOLD``).
    """
    model = st_model[0].auto_model
    config = model.config
    # transformers imports a repository's own code (trust_remote_code) as transformers_modules.*
    from_repository = type(model).__module__.startswith("transformers_modules.")
    registered = str(config.model_type) in ARCHITECTURES
    architecture = (
        remote_code_config(model) if from_repository and not registered else architecture_config(str(config.model_type))
    )
    attn = getattr(config, "_attn_implementation", None)
    threshold = EXTERNAL_DATA_THRESHOLD if external_data_threshold is None else external_data_threshold
    weight_bytes = parameter_bytes(model)
    external = weight_bytes > threshold
    vocab_size = int(config.vocab_size)
    export_backbone(
        model, architecture, path, vocab_size, output=output, output_name=output_name, external_data=external
    )
    if attn is not None and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
    return ExportedBackbone(
        path=path,
        architecture=architecture,
        hidden_size=int(config.hidden_size),
        num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
        external_data=external,
        shape=_shape(config, weight_bytes // 4),
    )


def _shape(config: Any, parameters: int) -> dict[str, int]:
    """The backbone's size facts from its transformers config (absent ones left out)."""
    names = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "max_position_embeddings")
    shape = {name: int(value) for name in names if isinstance(value := getattr(config, name, None), int)}
    positions = usable_positions(config)
    if positions is not None:
        shape["max_positions"] = positions  # the tokens it holds (RoBERTa's family: less its padding offset)
    return {**shape, "parameters": int(parameters)}
