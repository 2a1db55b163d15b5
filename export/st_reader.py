"""Read a sentence-transformers model's module pipeline into output-stage data.

The module list and order come from the model's own ``modules.json``; settings and weights come
from the modules sentence-transformers loaded from those files, so what we export is exactly what
``SentenceTransformer(model)`` runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import ExportError
from fastembed_rt.kernels.spec import DenseActivation, DenseSpec, OutputStages, PoolingMode, PoolingSpec

__all__ = ["ModelDescription", "dense_spec", "describe_model", "read_modules"]

logger = logging.getLogger("fastembed_rt.export")

_SUPPORTED = ("Transformer", "Pooling", "Dense", "Normalize", "Dropout")
_ACTIVATIONS = {
    "Identity": DenseActivation.IDENTITY,
    "Tanh": DenseActivation.TANH,
    "ReLU": DenseActivation.RELU,
    "Sigmoid": DenseActivation.SIGMOID,
    "GELU": DenseActivation.GELU,
    "SiLU": DenseActivation.SILU,
}


@dataclass
class ModelDescription:
    """Everything the artifact needs to know about one bi-encoder, besides the backbone graph."""

    model_type: str
    hidden_size: int
    stages: OutputStages
    max_seq_length: int
    prompts: dict[str, str]
    default_prompt_name: str | None
    similarity_fn: str
    modules: list[str] = field(default_factory=list)
    truncate_dim: int | None = None  # a Matryoshka default saved with the model (config_sentence_transformers.json)


def read_modules(model_dir: Path, st_model: Any = None) -> list[dict[str, Any]]:
    """The entries of ``modules.json``; each names its class in ``type``. A plain transformers directory has none:
    its entries are then the modules ``st_model`` (sentence-transformers) made for it, a Transformer and a mean
    Pooling, as sentence-transformers warns."""
    path = model_dir / "modules.json"
    if not path.is_file():
        if st_model is None or not (model_dir / "config.json").is_file():
            raise ExportError(
                f"{model_dir} has no modules.json and no config.json: not a sentence-transformers or transformers "
                "model directory"
            )
        made = [type(m).__name__ for m in st_model]
        logger.warning(
            "%s has no modules.json: exported as sentence-transformers loads it, with the modules it makes (%s); "
            "save the model with sentence-transformers to choose its pooling",
            model_dir,
            ", ".join(made),
        )
        return [{"idx": i, "type": name, "path": ""} for i, name in enumerate(made)]
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise ExportError(f"{path} must be a non-empty list of modules (objects)")
    return modules  # in the file's order, as sentence-transformers loads them (it reads no "idx")


def _class_name(entry: dict[str, Any]) -> str:
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def check_features(module: Any, where: str, feature: str) -> None:
    """A ``Dense``/``Normalize`` module must read and write ``feature``: one on another key (or writing a new one)
    leaves the output as it was in sentence-transformers, where the graph stages would apply it.

    Raises:
        ExportError: naming the module and the keys it reads and writes.
    """
    reads = getattr(module, "module_input_name", feature) or feature
    writes = getattr(module, "module_output_name", None) or reads
    if reads != feature or writes != feature:
        raise ExportError(
            f"{where}: {type(module).__name__} reading {reads!r} and writing {writes!r} is not supported; "
            f"only one on {feature!r} is"
        )


def dense_spec(module: Any, where: str, input_name: str = "sentence_embedding") -> DenseSpec:
    """A loaded ``Dense`` module as data; it must read ``input_name`` (multi-vector models: ``token_embeddings``).

    Raises:
        ExportError: a residual Dense, another input, or an activation the graph stages cannot express.
    """
    if getattr(module, "use_residual", False):
        raise ExportError(f"{where}: Dense with use_residual=True is not supported yet")
    check_features(module, where, input_name)
    act_name = type(module.activation_function).__name__
    if act_name not in _ACTIVATIONS:
        raise ExportError(
            f"{where}: Dense activation {act_name} is not supported; supported: {', '.join(_ACTIVATIONS)}"
        )
    if act_name == "GELU" and getattr(module.activation_function, "approximate", "none") != "none":
        raise ExportError(f"{where}: tanh-approximate GELU in Dense is not supported")
    weight = module.linear.weight.detach().cpu().float().numpy().copy()
    bias = None if module.linear.bias is None else module.linear.bias.detach().cpu().float().numpy().copy()
    return DenseSpec(weight=np.asarray(weight), bias=bias, activation=_ACTIVATIONS[act_name])


def describe_model(model_dir: Path, st_model: Any) -> ModelDescription:
    """Turn ``modules.json`` plus the loaded ``sentence_transformers.SentenceTransformer`` into data.

    Raises:
        ExportError: for a module type or setting the graph stages cannot express.
    """
    entries = read_modules(model_dir, st_model)
    names = [_class_name(e) for e in entries]
    unsupported = [f"{e.get('type')} ({e.get('path') or '.'})" for e in entries if _class_name(e) not in _SUPPORTED]
    if unsupported:
        raise ExportError(
            f"{model_dir}: unsupported sentence-transformers module(s): {', '.join(unsupported)}; "
            f"supported: {', '.join(_SUPPORTED)}"
        )
    if names[0] != "Transformer" or names.count("Transformer") != 1 or names.count("Pooling") != 1:
        raise ExportError(
            f"{model_dir}: expected Transformer, Pooling[, Dense…][, Normalize]; modules.json has {names}"
        )
    if len(st_model) != len(entries):
        raise ExportError(
            f"{model_dir}: modules.json lists {len(entries)} modules, sentence-transformers loaded {len(st_model)}"
        )

    pooling: PoolingSpec | None = None
    dense: list[DenseSpec] = []
    normalize = False
    for i, (entry, name) in enumerate(zip(entries, names)):
        module = st_model[i]
        where = f"{model_dir}/{entry.get('path') or '.'}"
        if type(module).__name__ != name:
            raise ExportError(
                f"{where}: modules.json says {name}, sentence-transformers loaded {type(module).__name__}"
            )
        if name == "Pooling":
            modes = module.pooling_mode if isinstance(module.pooling_mode, (tuple, list)) else (module.pooling_mode,)
            pooling = PoolingSpec(tuple(PoolingMode(m) for m in modes), bool(module.include_prompt))
        elif name == "Dropout":
            continue  # the identity at inference (sentence-transformers encodes in eval mode)
        elif name == "Dense":
            if pooling is None:
                raise ExportError(f"{where}: Dense before Pooling is not supported")
            dense.append(dense_spec(module, where))
        elif name == "Normalize":
            if i != len(entries) - 1:
                raise ExportError(f"{where}: Normalize must be the last module, found at position {i}")
            check_features(module, where, "sentence_embedding")
            normalize = True
    assert pooling is not None  # guaranteed by the names check above
    backbone = st_model[0].auto_model
    return ModelDescription(
        model_type=str(backbone.config.model_type),
        hidden_size=int(backbone.config.hidden_size),
        stages=OutputStages(pooling=pooling, dense=tuple(dense), normalize=normalize),
        max_seq_length=int(st_model.max_seq_length),
        prompts={k: v for k, v in (st_model.prompts or {}).items()},
        default_prompt_name=st_model.default_prompt_name,
        similarity_fn=str(st_model.similarity_fn_name or "cosine"),
        modules=names,
        truncate_dim=getattr(st_model, "truncate_dim", None),
    )
