"""Where a model comes from: a local sentence-transformers directory or a hub id, loaded on the CPU.

Code shipped inside a model repository (``auto_map`` in config.json, a custom sentence-transformers
module) runs only when the caller opts in with ``trust_remote_code``; otherwise the export stops
before anything is imported, saying which code it would have run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import path_hint, user_path
from fastembed_rt.errors import ExportError
from fastembed_rt.export.architectures import usable_positions

__all__ = ["check_graph_model", "load_st_model", "read_json", "remote_code", "resolve_model_dir", "snapshot_commit"]

logger = logging.getLogger("fastembed_rt.export")


# Files of a hub repo that loading it with sentence-transformers never reads: other frameworks' weights and other
# runtimes' exports (all-MiniLM-L6-v2's repo holds ~1 GB of them beside its 90 MB of safetensors).
NOT_LOADED = (
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.onnx_data",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "*.gguf",
    "*.mlmodel",
    "coreml/*",
)
# torch's pickled weights, skipped where the repo has safetensors at its top (transformers prefers those)
PICKLED_WEIGHTS = ("pytorch_model*.bin",)


def resolve_model_dir(model: str | os.PathLike[str], revision: str | None, token: str | bool | None) -> Path:
    """A local sentence-transformers model directory: a path as is, or a hub id downloaded (without the files
    loading it never reads: ``NOT_LOADED``). Its snapshot folder's name is the commit it was downloaded at
    (``snapshot_commit``)."""
    path = user_path(model)
    if path.is_dir():
        if revision:
            _ignored_revision(str(path), revision)
        return _not_an_artifact(path, str(model))
    if path.exists():
        raise ExportError(f"{path} is a file; export takes a model directory (or a hub repo id)")
    if str(model).startswith((".", "/", "~")):
        raise ExportError(f"model directory {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    from fastembed_rt.artifact import hub_cache_folder, hub_network_errors

    try:
        ignored = list(NOT_LOADED) + (list(PICKLED_WEIGHTS) if _has_safetensors(str(model), revision, token) else [])
        downloaded = snapshot_download(
            str(model), revision=revision, token=token, ignore_patterns=ignored, cache_dir=hub_cache_folder()
        )
        return _not_an_artifact(Path(downloaded), str(model))
    except HFValidationError:  # e.g. a mistyped relative path such as models/minilm/model
        raise ExportError(f"{model!r} is neither an existing directory nor a hub repo id ('owner/name')") from None
    except LocalEntryNotFoundError as exc:
        raise ExportError(
            f"{model!r} is not a local directory, and not in the hub cache (the hub is offline or unreachable)"
            + path_hint(str(model))
        ) from exc
    except hub_network_errors() as exc:  # huggingface_hub's HTTP errors and its HTTP library's
        raise ExportError(f"could not download {model!r} from the hub: {exc}{path_hint(str(model))}") from exc


@functools.cache  # an export resolves its model in more than one step: one listing
def _has_safetensors(repo_id: str, revision: str | None, token: str | bool | None) -> bool:
    """Whether the repo holds safetensors weights at its top; False when it cannot be listed (offline: the
    download then takes what is cached)."""
    from huggingface_hub import HfApi

    from fastembed_rt.artifact import hub_offline

    if hub_offline():
        return False
    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:
        return False
    return any(name in ("model.safetensors", "model.safetensors.index.json") for name in files)


def snapshot_commit(model_dir: Path) -> str | None:
    """The commit a hub cache snapshot folder (``.../snapshots/<commit>``) holds; None for another folder."""
    if model_dir.parent.name == "snapshots" and len(model_dir.name) == 40:
        return model_dir.name
    return None


def _not_an_artifact(model_dir: Path, model: str) -> Path:
    """``model_dir``, unless it is a fastembed-rt artifact already (export takes the model it was made from)."""
    if (model_dir / "manifest.json").is_file() and not (model_dir / "config.json").is_file():
        source = (read_json(model_dir / "manifest.json") or {}).get("source") or {}
        origin = f" (exported from {source['model']})" if isinstance(source.get("model"), str) else ""
        raise ExportError(
            f"{model} is a fastembed-rt artifact already{origin}: load it with fastembed_rt (e.g. "
            "SentenceTransformer(...), `fastembed-rt serve`); export takes a sentence-transformers model"
        )
    return model_dir


@functools.cache  # once per folder and revision (an export resolves its model in more than one step)
def _ignored_revision(path: str, revision: str) -> None:
    logger.warning("%s is a local folder: it is exported as it is, --revision %s does not apply", path, revision)


def read_json(path: Path) -> Any:
    """A JSON file's content; None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def remote_code(model_dir: Path, kind: type[Any] | None = None) -> list[str]:
    """The code in ``model_dir``'s repository that loading it (as ``kind``) would run (empty: none).

    A config.json ``auto_map`` counts unless transformers has its own class for the ``model_type`` and the map's
    classes that ``kind`` loads are transformers' own (it then loads those, as for nomic-embed-text-v1.5's
    ``nomic_bert``; Jina v2's ``bert`` maps to ``JinaBertModel``, which it has not); so does every module in
    ``modules.json`` that is not sentence-transformers' own, nor one that ``kind`` loads as its own (a
    MultiVectorEncoder reads PyLate's ``pylate.models.Dense.Dense`` as its ``Dense``, importing no pylate).
    """
    import transformers
    from transformers import CONFIG_MAPPING

    found: list[str] = []
    config = read_json(model_dir / "config.json")
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if isinstance(auto_map, dict):
        native = str(config.get("model_type")) in CONFIG_MAPPING
        # the classes loading as ``kind`` reads: a native model_type whose map names a class transformers lacks
        # (Jina v2: "bert" with JinaBertModel, ALiBi) runs the repository's code once trusted, and plain BERT
        # (no ALiBi) otherwise; one naming transformers' own classes (nomic-embed-text-v1.5) loads those
        used = {"AutoConfig", _AUTO_CLASSES.get(getattr(kind, "__name__", ""), "AutoModel")}
        for name, ref in auto_map.items():
            class_name = str(ref[-1] if isinstance(ref, list) and ref else ref).rsplit(".", 1)[-1]
            if not native or (name in used and not hasattr(transformers, class_name)):
                found.append(f"config.json auto_map {name} -> {ref}")
    modules = read_json(model_dir / "modules.json")
    for entry in modules if isinstance(modules, list) else []:
        module = str(entry.get("type", "")) if isinstance(entry, dict) else ""
        module = _class_aliases(kind).get(module, module)
        if module and not module.startswith("sentence_transformers."):
            found.append(f"modules.json module {module}")
    return found


# The transformers auto class each sentence-transformers kind loads its backbone with (the rest: AutoModel).
_AUTO_CLASSES = {"CrossEncoder": "AutoModelForSequenceClassification", "SparseEncoder": "AutoModelForMaskedLM"}


def _class_aliases(kind: type[Any] | None) -> dict[str, str]:
    """The module class references that sentence-transformers' ``kind`` replaces by its own classes at load (its
    module's ``_CLASS_REF_ALIASES``; none where it has no such table)."""
    if kind is None:
        return {}
    aliases = getattr(sys.modules.get(kind.__module__), "_CLASS_REF_ALIASES", None)
    return {str(k): str(v) for k, v in aliases.items()} if isinstance(aliases, dict) else {}


def load_st_model(kind: type[Any], model_dir: Path, *, trust_remote_code: bool = False) -> Any:
    """``model_dir`` loaded on the CPU as ``kind`` (sentence-transformers' SentenceTransformer, CrossEncoder, ...).

    Raises:
        ExportError: the directory cannot be loaded, or it needs its own code and ``trust_remote_code`` is False.
    """
    if not trust_remote_code:
        code = remote_code(model_dir, kind)
        if code:
            raise ExportError(
                f"{model_dir} runs code from its repository ({'; '.join(code)}); export does not run it "
                "unless you opt in: read that code, then pass --trust-remote-code (trust_remote_code=True)"
            )
    try:
        with _weight_reports() as reports:
            model = kind(str(model_dir), device="cpu", trust_remote_code=trust_remote_code)
    except Exception as exc:  # sentence-transformers raises many types on a bad directory
        raise ExportError(f"sentence-transformers could not load {model_dir} as a {kind.__name__}: {exc}") from exc
    _check_weights(reports, model_dir, kind.__name__)
    if (
        type(model[0]).__name__ != "Router"
    ):  # a Router model's graph route is checked once split off (check_graph_model)
        check_graph_model(model, model_dir, kind.__name__)
    return model


def check_graph_model(model: Any, model_dir: Path, kind: str) -> None:
    """Fit ``model``'s ``max_seq_length`` to its position table and refuse tokenizer settings the artifact cannot
    apply; ``model[0]`` is the module holding the transformer that becomes the graph."""
    _check_tokenization(model, model_dir, kind)  # first: a processing_kwargs max_length is fitted too
    _fit_positions(model, model_dir)


# Weights a checkpoint may lack without changing what the artifact computes: BERT's pooler (its [CLS] dense + tanh
# feeds only ``pooler_output``, which no sentence-transformers module reads; many checkpoints are saved without it).
# Not in a sequence classifier: BERT's classifies that pooled output.
_UNUSED_WEIGHTS = ("pooler.",)


@contextlib.contextmanager
def _weight_reports() -> Iterator[list[tuple[str, set[str]]]]:
    """``(model class, weights not in the checkpoint)`` of every transformers model loaded inside, missing or
    re-initialized for a shape mismatch: transformers fills those at random and only logs a report, so the export's
    PyTorch reference would run those random weights too and the parity check could not notice.

    transformers 5 hands that report (``LoadStateDictInfo``) to ``modeling_utils.log_state_dict_report``; it is read
    there, the report still logged. Where a transformers version has no such function, nothing is recorded.
    """
    import transformers.modeling_utils as modeling_utils

    reports: list[tuple[str, set[str]]] = []
    original = getattr(modeling_utils, "log_state_dict_report", None)
    if original is None:
        logger.debug("this transformers has no log_state_dict_report: missing weights are not checked")
        yield reports
        return

    def record(*args: Any, **kwargs: Any) -> Any:
        info, model = kwargs.get("loading_info"), kwargs.get("model")
        if info is not None:
            missing = set(getattr(info, "missing_keys", ())) | {k[0] for k in getattr(info, "mismatched_keys", ())}
            reports.append((type(model).__name__, missing))
        return original(*args, **kwargs)

    modeling_utils.log_state_dict_report = record
    try:
        yield reports
    finally:
        modeling_utils.log_state_dict_report = original


def _check_weights(reports: list[tuple[str, set[str]]], model_dir: Path, kind: str) -> None:
    """Refuse a model whose checkpoint lacks weights the export would run (initialized at random by transformers):
    a partial or mis-saved checkpoint, or a bi-encoder exported with ``--task cross-encoder`` (a new, random
    classifier). Two exports of such a folder would give different artifacts, each "validated"."""
    for model_class, missing in reports:
        unused = () if "ForSequenceClassification" in model_class else _UNUSED_WEIGHTS
        used = sorted(key for key in missing if not any(part in key for part in unused))
        if missing and not used:
            logger.info("%s: %s loaded without %s (unused by the export)", model_dir, model_class, sorted(missing))
        if not used:
            continue
        shown = ", ".join(used[:6]) + (f" and {len(used) - 6} more" if len(used) > 6 else "")
        heads = ("classifier", "score", "cls.", "lm_head", "pre_classifier")  # the task heads transformers adds
        hint = (
            f" They are the {kind}'s head: the folder holds no trained {kind} (a bi-encoder exports with `--task "
            "embedding`, which `export` detects when --task is left out)."
            if all(key.startswith(heads) for key in used)
            else " The checkpoint is incomplete or saved for another architecture: re-save the model."
        )
        raise ExportError(
            f"{model_dir}: its checkpoint lacks {len(used)} weight(s) of {model_class} that the export would run, "
            f"which transformers initialized at random ({shown}), so the artifact would compute noise.{hint}"
        )


def _check_tokenization(model: Any, model_dir: Path, kind: str) -> None:
    """Refuse, naming the setting, what sentence-transformers does to texts that the artifact's tokenizer would
    not: the export's parity check would fail on it with cosines that blame the graph, or (per-task lengths)
    pass while ``encode_query`` differs.

    A ``processing_kwargs`` text ``max_length`` alone is honoured: it is where sentence-transformers truncates,
    so it becomes the artifact's ``max_seq_length``.
    """
    transformer = model[0]
    modalities = getattr(transformer, "modality_config", None) or {}
    if "message" in modalities:
        raise ExportError(
            f"{model_dir}: sentence-transformers renders every text through the tokenizer's chat template "
            "(modality_config has 'message'), which fastembed-rt's tokenizer does not apply yet; a model saved "
            "without that modality exports"
        )
    processing = dict(getattr(transformer, "processing_kwargs", None) or {})
    text = dict(processing.pop("text", None) or {})
    max_length = text.pop("max_length", None)
    others = {key: value for key, value in processing.items() if value} | ({"text": text} if text else {})
    if others:
        raise ExportError(
            f"{model_dir}: processing_kwargs {others} change how sentence-transformers tokenizes; fastembed-rt "
            "applies only a text max_length"
        )
    if isinstance(max_length, int) and max_length != getattr(model, "max_seq_length", None):
        logger.info(
            "%s: processing_kwargs truncate texts at %d tokens: the artifact's max_seq_length", model_dir, max_length
        )
        model.max_seq_length = max_length
    lengths = {name: getattr(transformer, name, None) for name in ("query_length", "document_length")}
    lengths = {name: value for name, value in lengths.items() if value is not None}
    if kind == "MultiVectorEncoder" and isinstance(max_length, int) and any(v != max_length for v in lengths.values()):
        raise ExportError(
            f"{model_dir}: processing_kwargs' text max_length {max_length} replaces {lengths} in sentence-transformers "
            "(queries and documents are both cut there); fastembed-rt applies the per-task lengths: save the model "
            "with query_length and document_length instead of a processing_kwargs max_length"
        )
    if lengths and kind != "MultiVectorEncoder":
        raise ExportError(
            f"{model_dir}: {lengths} truncate encode_query/encode_document texts at their own lengths; "
            "fastembed-rt applies per-task lengths to multi-vector models only, so far"
        )
    tokenizer = getattr(transformer, "tokenizer", None)
    names = getattr(tokenizer, "model_input_names", None)
    config = getattr(getattr(transformer, "auto_model", None), "config", None)
    vocab_size = getattr(config, "vocab_size", None)
    try:
        tokens = len(tokenizer) if tokenizer is not None else None
    except TypeError:
        tokens = None
    # A folder without its tokenizer files loads with an empty tokenizer (transformers 5: 5 tokens): every word
    # becomes [UNK], and the parity check passes, PyTorch using the same one. Models pad their embedding table past
    # the tokenizer's vocabulary (Qwen3: 151,669 tokens in 151,936 rows), never to twice it.
    if isinstance(vocab_size, int) and isinstance(tokens, int) and tokens < vocab_size // 2:
        raise ExportError(
            f"{model_dir}: its tokenizer has {tokens} tokens where the model's embedding table has {vocab_size} "
            "rows: are its tokenizer files (tokenizer.json, or vocab.txt / a sentencepiece model with "
            "tokenizer_config.json) missing? Copy them from the model the checkpoint was trained from"
        )
    types = getattr(config, "type_vocab_size", 0) or 0  # > 1: pairs' second texts get type 1 where they are fed
    if kind == "CrossEncoder" and names is not None and "token_type_ids" not in names and types > 1:
        raise ExportError(
            f"{model_dir}: its tokenizer gives no token_type_ids (model_input_names {list(names)}), so "
            "sentence-transformers scores pairs with every type id 0, where fastembed-rt feeds the "
            "post-processor's pair type ids; not supported yet"
        )


def _fit_positions(model: Any, model_dir: Path) -> None:
    """A saved ``max_seq_length`` past the backbone's position table is lowered to it, with a warning.

    sentence-transformers loads such a model and fails inside it (an index error) at the first text that long;
    the artifact would fail the same way in ONNX Runtime. Shorter texts encode the same either way.
    """
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    positions = None if config is None else usable_positions(config)
    saved = getattr(model, "max_seq_length", None)
    if positions is not None and isinstance(saved, int) and saved > positions:
        logger.warning(
            "%s: max_seq_length %d is more than the %d tokens its position table holds; exported with %d",
            model_dir,
            saved,
            positions,
            positions,
        )
        model.max_seq_length = positions
        # and where processing_kwargs cut texts (they win over max_seq_length): the PyTorch reference cut at the
        # saved length and failed on its first text past the table
        text = (getattr(model[0], "processing_kwargs", None) or {}).get("text")
        if isinstance(text, dict) and isinstance(text.get("max_length"), int) and text["max_length"] > positions:
            text["max_length"] = positions
