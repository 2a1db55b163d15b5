"""The artifact contract: ``manifest.json`` read into frozen dataclasses, checked against its files.

An artifact directory fully describes a model for the runtime (DESIGN §3)::

    <artifact>/manifest.json       what is below, and how to run it
    <artifact>/tokenizer.json      Rust tokenizers file, exactly as sentence-transformers configured it
    <artifact>/onnx/model.onnx     fp32 graph with the output stages fused
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import reprlib
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from fastembed_rt.errors import ArtifactError, ExportError
from fastembed_rt.kernels.spec import SCORES, SENTENCE_EMBEDDING, TOKEN_VECTORS
from fastembed_rt.sparse_routes import routed_files

logger = logging.getLogger("fastembed_rt")

__all__ = [
    "MANIFEST_FILE",
    "READABLE_SCHEMA_VERSIONS",
    "ROUTED_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "GraphContract",
    "Manifest",
    "SpeedRecord",
    "Task",
    "TokenizerInfo",
    "Variant",
    "VariantFormat",
    "VariantPrecision",
    "artifact_files",
    "check_contained",
    "check_destination",
    "check_readable",
    "fetch_variant_files",
    "file_sha256",
    "hub_cache_folder",
    "hub_network_errors",
    "hub_offline",
    "hub_source",
    "load_manifest",
    "local_path",
    "manifest_lock",
    "path_hint",
    "resolve_artifact",
    "update_manifest",
    "user_path",
    "variant_files",
]

MANIFEST_FILE = "manifest.json"
# The manifest format this version writes, and those it reads. 2 (2026-12-07): what version 1 readers misread, so
# that they refuse it with their "upgrade fastembed-rt" error: they ignored settings later exports and `save` write
# (a Matryoshka `truncate_dim`, a cross-encoder's activation: other vectors and scores, silently) and crashed on
# packed graphs with ONNX Runtime's missing-input error. Nothing changed in what version 1 holds: it is read as is.
SCHEMA_VERSION = 2
# 3 (2026-12-07): an inference-free SPLADE model's routes (``stages.router``): version 2 readers would run its queries
# through the document graph, silently; only routed manifests say 3, so other artifacts still load in version 2 readers.
ROUTED_SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
_EXPORT_HINT = "re-create it with `fastembed-rt export MODEL OUT_DIR`"
# Widest output a manifest may declare: vocabularies reach 262,144 terms (Gemma); a hand-edited 10**15 made the
# first call allocate petabytes.
MAX_DIM = 1 << 22
# Token ids are int32 in the graphs' feeds.
_MAX_TOKEN_ID = (1 << 31) - 1
# The engine properties an artifact may ask for (the exporter writes OpenVINO's bf16 hint): any other key in a
# manifest reached the engines unchecked (an OpenVINO ``CACHE_DIR`` wrote compiled blobs wherever it named).
MANIFEST_ENGINE_PROPERTIES = {"INFERENCE_PRECISION_HINT": ("bf16", "f16", "f32")}


class _ManifestValue(str, enum.Enum):
    """A str enum that prints as the manifest writes it: messages that format a field read ``'sparse'``."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


class Task(_ManifestValue):
    """What the artifact's model does, and so which runtime class loads it."""

    EMBEDDING = "embedding"
    CROSS_ENCODER = "cross-encoder"
    SPARSE = "sparse"
    MULTI_VECTOR = "multi-vector"

    @property
    def a_model(self) -> str:
        """``"an embedding model"``, ``"a sparse model"``: the task in a sentence."""
        return f"{'an' if self.value[:1] in 'aeiou' else 'a'} {self.value} model"


class VariantFormat(_ManifestValue):
    """The file format of a variant's graph, which decides the engines that can run it."""

    ONNX = "onnx"
    OPENVINO = "openvino"


class VariantPrecision(_ManifestValue):
    """The precision of a variant's weights and compute.

    ``bf16``: fp16-stored weights run with a bf16 engine hint. ``int8``: 8-bit weights, with int8
    compute or (weight-only variants) fp32 compute; ``int4``: 4-bit weights, some MatMuls possibly
    at 8 bits, fp32 compute. The variant's ``stage_counts`` say which (``scheme``).
    """

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"


@dataclass(frozen=True)
class TokenizerInfo:
    """How texts become token ids, as sentence-transformers does it for this model."""

    file: str
    max_seq_length: int
    pad_token_id: int
    special_token_ids: tuple[int, ...]
    truncation_side: str = "right"
    padding_side: str = "right"
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    files: tuple[str, ...] = ()
    # transformers' split_special_tokens: "[SEP]" typed in a text is split as text, not read as the special token
    # (tokenizer.json cannot hold it; tokenizers' encode_special_tokens does it)
    split_special_tokens: bool = False
    # what the export wrote (None in artifacts of earlier exporters): another model's tokenizer.json put in its place
    # is refused at load by its vocabulary size, and with verify="full" by its sha256
    vocab_size: int | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "file": self.file,
            "files": list(self.files),
            "max_seq_length": self.max_seq_length,
            "pad_token_id": self.pad_token_id,
            "special_token_ids": list(self.special_token_ids),
            "truncation_side": self.truncation_side,
            "padding_side": self.padding_side,
            "prompts": dict(self.prompts),
            "default_prompt_name": self.default_prompt_name,
        }
        if self.split_special_tokens:  # written only when set: the manifests of other models stay as they were
            data["split_special_tokens"] = True
        if self.vocab_size is not None:
            data["vocab_size"] = self.vocab_size
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        return data


@dataclass(frozen=True)
class GraphContract:
    """Graph inputs and outputs by name; outputs map to ``{"dtype": str, "dims": [str|int]}``."""

    inputs: tuple[str, ...]
    outputs: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "outputs": self.outputs}


@dataclass(frozen=True)
class Variant:
    """One runnable graph of the artifact and the proof of its fidelity.

    ``engine_properties`` are passed to the engine whenever it opens this graph (e.g. OpenVINO's
    ``INFERENCE_PRECISION_HINT``), so every load runs what was validated. ``weights_file`` is the
    graph's separate weights file (an OpenVINO IR's ``.bin``), checked like the graph file.
    ``stage_counts`` are what the export stage did, for people and tests; the runtime never reads them.
    """

    name: str
    file: str
    format: VariantFormat
    precision: VariantPrecision
    optimization: str
    size: int
    sha256: str
    fidelity: dict[str, Any] = field(default_factory=dict)
    stage_counts: dict[str, Any] = field(default_factory=dict)
    engine_properties: dict[str, str] = field(default_factory=dict)
    weights_file: str | None = None
    weights_size: int | None = None
    weights_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "format": self.format.value,
            "precision": self.precision.value,
            "optimization": self.optimization,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.weights_file is not None:
            out.update(
                weights_file=self.weights_file, weights_size=self.weights_size, weights_sha256=self.weights_sha256
            )
        if self.engine_properties:
            out["engine_properties"] = dict(self.engine_properties)
        out.update(fidelity=self.fidelity, stage_counts=self.stage_counts)
        return out


@dataclass(frozen=True)
class SpeedRecord:
    """How fast each variant ran on one CPU: what ``variant="auto"`` and ``"fastest"`` choose by.

    ``cpu`` and ``isa``: the CPU's model name and SIMD flags (``fastembed_rt.machine``); a record
    applies to every CPU with the same ``machine`` and ``isa``. ``sentences_per_s``: variant name ->
    the rate of each timed round, interleaved across variants (so a noisy moment hits them all), each
    variant on the engine that validated it. ``source``: ``export`` or ``tune`` (``fastembed-rt tune``).
    ``workload``: what the texts were, ``default`` for ``speed.speed_texts`` (STSb dev sentences where found);
    rates of different workloads are never merged into one record.
    """

    machine: str
    cpu: str
    isa: tuple[str, ...]
    threads: int
    texts: int
    batch_size: int
    sentences_per_s: dict[str, list[float]]
    source: str
    date: str
    workload: str = "default"

    def best_rate(self, variant: str) -> float | None:
        """The variant's best round (the least disturbed by other work on the machine), or None if untimed."""
        rates = self.sentences_per_s.get(variant)
        return max(rates) if rates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "cpu": self.cpu,
            "isa": list(self.isa),
            "threads": self.threads,
            "texts": self.texts,
            "batch_size": self.batch_size,
            "sentences_per_s": {name: list(rates) for name, rates in self.sentences_per_s.items()},
            "source": self.source,
            "date": self.date,
            "workload": self.workload,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeedRecord:
        return cls(
            machine=str(data["machine"]),
            cpu=str(data["cpu"]),
            isa=tuple(str(flag) for flag in data["isa"]),
            threads=int(data["threads"]),
            texts=int(data["texts"]),
            batch_size=int(data["batch_size"]),
            sentences_per_s={str(k): [_rate(r) for r in v] for k, v in data["sentences_per_s"].items()},
            source=str(data["source"]),
            date=str(data["date"]),
            workload=str(data.get("workload", "default")),  # records from before it all timed the default texts
        )


def _rate(value: Any) -> float:
    """A recorded rate: a finite number >= 0 (NaN ranked nothing and failed the variant choice with a bare
    ValueError; the parse turns this one into a malformed-manifest ArtifactError)."""
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"a speed record's rate must be a finite number >= 0, got {value!r}")
    return rate


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one artifact directory."""

    root: Path
    task: Task
    source: dict[str, Any]
    tokenizer: TokenizerInfo
    graph: GraphContract
    stages: dict[str, Any]
    similarity_fn: str
    dim: int
    variants: tuple[Variant, ...]
    schema_version: int = SCHEMA_VERSION
    calibration: dict[str, Any] | None = None
    rejected_variants: tuple[dict[str, Any], ...] = ()
    speed: tuple[SpeedRecord, ...] = ()
    # A Matryoshka default saved with the model (sentence-transformers' ``truncate_dim`` config): ``encode``'s
    # default width; the graph's rows are ``dim`` wide.
    truncate_dim: int | None = None

    def __repr__(self) -> str:
        # the generated one printed every calibration float (~19 KB): what `export_artifact` returns last in a
        # notebook cell; `to_dict()` has it all
        variants = ", ".join(v.name for v in self.variants)
        return (
            f"Manifest({str(self.root)!r}, task={self.task.value!r}, dim={self.dim}, "
            f"max_seq_length={self.tokenizer.max_seq_length}, variants=[{variants}])"
        )

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = ", ".join(v.name for v in self.variants)
        raise ArtifactError(f"artifact {self.root} has no variant {name!r}; available: {names}")

    @property
    def normalizes(self) -> bool:
        return bool(self.stages.get("normalize", False))

    def to_dict(self) -> dict[str, Any]:
        optional = {} if self.truncate_dim is None else {"truncate_dim": self.truncate_dim}
        return {
            "schema_version": max(self.schema_version, ROUTED_SCHEMA_VERSION)
            if routed_files(self.stages)
            else self.schema_version,
            "task": self.task.value,
            "source": self.source,
            "tokenizer": self.tokenizer.to_dict(),
            "graph": self.graph.to_dict(),
            "stages": self.stages,
            "similarity_fn": self.similarity_fn,
            "dim": self.dim,
            **optional,
            "variants": [v.to_dict() for v in self.variants],
            "calibration": self.calibration,
            "rejected_variants": list(self.rejected_variants),
            "speed": [record.to_dict() for record in self.speed],
        }

    def write(self) -> Path:
        """Write ``root/manifest.json``. The export stage's artifact writer and ``update_manifest`` call this.

        Through a temporary file renamed over it: a reader never sees half a manifest, and in a hub cache snapshot,
        where ``manifest.json`` links to a blob that other snapshots may share, the link is replaced and the blob
        kept (a speed record from ``fastembed-rt tune`` stays in this snapshot)."""
        path = self.root / MANIFEST_FILE
        os.replace(self.write_staged(), path)
        return path

    def write_staged(self) -> Path:
        """Write the manifest to a temporary file beside ``manifest.json``; returns its path. For a caller that
        renames it over ``manifest.json`` only once a file the manifest names is in place (``calibrate_artifact``)."""
        # of this process and thread: two writers of one artifact (two `tune` runs, threads) each rename their own
        # whole file (a shared name was renamed in half-written: readers saw an empty manifest)
        temporary = self.root / f".{MANIFEST_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            text = json.dumps(_standard_json(self.to_dict()), indent=2, sort_keys=False, allow_nan=False)
            temporary.write_text(text + "\n", encoding="utf-8")
        except BaseException:  # a full disk: no half-written temporary is left behind
            temporary.unlink(missing_ok=True)
            raise
        return temporary


def file_sha256(path: Path) -> str:
    import hashlib  # OpenSSL's load is a few ms of every cold start; only verification hashes

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(data: dict[str, Any], key: str, where: str, path: Path) -> Any:
    if key not in data:
        raise ArtifactError(f"{path}: manifest has no {where}{key!r}; {_EXPORT_HINT}")
    return data[key]


_Value = TypeVar("_Value", bound=_ManifestValue)


def _member(kind: type[_Value], value: Any, where: str, path: Path) -> _Value:
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(member.value for member in kind)
        raise ArtifactError(
            f"{path}: {where} {value!r} is not one this fastembed-rt knows ({valid}); "
            f"upgrade fastembed-rt or {_EXPORT_HINT}"
        ) from None


# Artifacts exported before these were typed fields of a variant kept them in its stage_counts.
_LEGACY_STAGE_COUNT_KEYS = ("engine_properties", "weights_file", "weights_size", "weights_sha256")


# The fidelity numbers that ``fastembed-rt info`` formats and ``variant="auto"`` ranks by (``speed._AGREEMENT``).
_FIDELITY_NUMBERS = ("min_cosine", "mean_cosine", "max_abs_diff", "max_rel_diff", "stsb_spearman", "score_spearman")
_SIDES = ("left", "right")
# The output whose last axis is the manifest's ``dim``, by task (a sparse model's ``dim`` is its vocabulary size,
# which no output declares).
_DIM_OUTPUT = {Task.EMBEDDING: SENTENCE_EMBEDDING, Task.CROSS_ENCODER: SCORES, Task.MULTI_VECTOR: TOKEN_VECTORS}


def _invalid(path: Path, where: str, value: Any, expected: str) -> ArtifactError:
    return ArtifactError(f"{path}: {where} is {reprlib.repr(value)}; {expected}; {_EXPORT_HINT}")


def _positive(value: Any, where: str, path: Path, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
        raise _invalid(path, where, value, "it must be a positive integer" + (f" up to {most:,}" if most else ""))
    return value


def _token_id(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKEN_ID:
        raise _invalid(path, where, value, "it must be a token id (an integer from 0)")
    return value


def _engine_properties(value: Any, name: Any, path: Path) -> dict[str, str]:
    """A variant's engine properties, each one the runtime knows with a value it takes."""
    properties = {str(k): str(p) for k, p in (value or {}).items()}
    for key, setting in properties.items():
        if setting not in MANIFEST_ENGINE_PROPERTIES.get(key, ()):
            known = "; ".join(f"{k}: {', '.join(v)}" for k, v in MANIFEST_ENGINE_PROPERTIES.items())
            raise _invalid(
                path,
                f"variant {name!r} engine_properties.{key}",
                setting,
                f"an artifact may set only {known} (a newer fastembed-rt's artifact, or an edited one)",
            )
    return properties


def _side(value: Any, where: str, path: Path) -> str:
    if value not in _SIDES:
        raise _invalid(path, where, value, f"it must be one of {', '.join(_SIDES)}")
    return str(value)


def _standard_json(value: Any) -> Any:
    """``value`` with each NaN or infinite number as null: Python writes them as ``NaN``/``Infinity``, which no
    other JSON reader takes (a rejected variant's record of NaN outputs made the manifest unreadable to them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _standard_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_standard_json(item) for item in value]
    return value


def _fidelity(data: Any, name: Any, path: Path) -> dict[str, Any]:
    fidelity = dict(data)
    for key in _FIDELITY_NUMBERS:
        value = fidelity.get(key)
        if key in fidelity and value is None:  # a NaN as the writer stores it (standard JSON): read back as NaN
            fidelity[key] = value = math.nan
        if key in fidelity and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(path, f"variant {name!r} fidelity.{key}", value, "it must be a number")
    return fidelity


def _calibration(data: Any, path: Path) -> dict[str, Any] | None:
    """The int8/uint8 calibration record: absent, or an object naming its file (a record without one loaded, and
    each int8 call failed with a bare KeyError)."""
    if data is None or data == {}:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("file"), str) or not data["file"]:
        raise ArtifactError(
            f"{path}: calibration is {data!r}; it must be an object naming its file ({{'file': str, ...}}); "
            "re-create it with `fastembed-rt calibrate ARTIFACT --texts FILE`"
        )
    return data


def _rejected(data: Any, path: Path) -> tuple[dict[str, Any], ...]:
    entries = data or []
    if not isinstance(entries, list):
        raise _invalid(path, "rejected_variants", entries, "it must be a list")
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("reasons"), list)
            or not all(isinstance(reason, str) for reason in entry["reasons"])
        ):
            raise _invalid(path, "an entry of rejected_variants", entry, "each must be {'name': str, 'reasons': [str]}")
    return tuple(entries)


def _graph(data: Any, path: Path) -> GraphContract:
    inputs = _require(data, "inputs", "graph.", path)
    if not isinstance(inputs, list) or not inputs or not all(isinstance(name, str) for name in inputs):
        raise _invalid(path, "graph.inputs", inputs, "it must be a non-empty list of input names")
    return GraphContract(inputs=tuple(inputs), outputs=dict(_require(data, "outputs", "graph.", path)))


def _dim(value: Any, task: Task, graph: GraphContract, path: Path) -> int:
    """The manifest's ``dim``, checked against the width the graph contract declares for the task's output."""
    dim = _positive(value, "dim", path, MAX_DIM)
    name = _DIM_OUTPUT.get(task)
    declared = graph.outputs.get(name) if name is not None else None
    dims = declared.get("dims") if isinstance(declared, dict) else None
    if isinstance(dims, list) and dims and isinstance(dims[-1], int) and dims[-1] != dim:
        raise _invalid(path, "dim", value, f"graph.outputs.{name} declares {dims[-1]}, and the two must agree")
    return dim


def _truncate_dim(value: Any, dim: Any, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= int(dim):
        raise _invalid(path, "truncate_dim", value, f"it must be an int in 1..dim ({dim}) or absent")
    return value


def _parse_variant(v: dict[str, Any], path: Path) -> Variant:
    stage_counts = dict(v.get("stage_counts", {}))
    typed = {key: v[key] if key in v else stage_counts.pop(key, None) for key in _LEGACY_STAGE_COUNT_KEYS}
    weights_size, weights_sha256 = typed["weights_size"], typed["weights_sha256"]
    return Variant(
        name=str(v["name"]),
        file=str(v["file"]),
        format=_member(VariantFormat, v["format"], f"variant {v['name']!r} format", path),
        precision=_member(VariantPrecision, v["precision"], f"variant {v['name']!r} precision", path),
        optimization=str(v.get("optimization", "none")),
        size=int(v["size"]),
        sha256=str(v["sha256"]),
        fidelity=_fidelity(v.get("fidelity", {}), v["name"], path),
        stage_counts=stage_counts,
        engine_properties=_engine_properties(typed["engine_properties"], v["name"], path),
        weights_file=None if typed["weights_file"] is None else str(typed["weights_file"]),
        weights_size=None if weights_size is None else int(weights_size),
        weights_sha256=None if weights_sha256 is None else str(weights_sha256),
    )


def _parse(root: Path, data: Any, path: Path) -> Manifest:
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: manifest must be a JSON object, got {type(data).__name__}; {_EXPORT_HINT}")
    version = _require(data, "schema_version", "", path)
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        raise ArtifactError(
            f"{path}: schema_version {version!r} is not supported by this fastembed-rt "
            f"(supports {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade fastembed-rt or {_EXPORT_HINT}"
        )
    try:
        tok = _require(data, "tokenizer", "", path)
        tokenizer = TokenizerInfo(
            file=str(_require(tok, "file", "tokenizer.", path)),
            max_seq_length=_positive(
                _require(tok, "max_seq_length", "tokenizer.", path), "tokenizer.max_seq_length", path
            ),
            pad_token_id=_token_id(_require(tok, "pad_token_id", "tokenizer.", path), "tokenizer.pad_token_id", path),
            special_token_ids=tuple(
                _token_id(i, "tokenizer.special_token_ids[]", path) for i in tok.get("special_token_ids", ())
            ),
            truncation_side=_side(tok.get("truncation_side", "right"), "tokenizer.truncation_side", path),
            padding_side=_side(tok.get("padding_side", "right"), "tokenizer.padding_side", path),
            prompts={str(k): str(v) for k, v in (tok.get("prompts") or {}).items()},
            default_prompt_name=tok.get("default_prompt_name"),
            files=tuple(tok.get("files", ())),
            split_special_tokens=tok.get("split_special_tokens", False) is True,
            vocab_size=None
            if tok.get("vocab_size") is None
            else _positive(tok["vocab_size"], "tokenizer.vocab_size", path, _MAX_TOKEN_ID),
            sha256=None if tok.get("sha256") is None else str(tok["sha256"]),
        )
        graph = _graph(_require(data, "graph", "", path), path)
        variants = tuple(_parse_variant(v, path) for v in _require(data, "variants", "", path))
        task = _member(Task, _require(data, "task", "", path), "task", path)
        manifest = Manifest(
            schema_version=int(version),  # kept where a change a version 1 reader reads is written back (tune)
            root=root,
            task=task,
            source=dict(data.get("source", {})),
            tokenizer=tokenizer,
            graph=graph,
            stages=dict(_require(data, "stages", "", path)),
            similarity_fn=str(data.get("similarity_fn", "cosine")),
            dim=_dim(_require(data, "dim", "", path), task, graph, path),
            variants=variants,
            calibration=_calibration(data.get("calibration"), path),
            rejected_variants=_rejected(data.get("rejected_variants"), path),
            speed=tuple(SpeedRecord.from_dict(record) for record in data.get("speed") or ()),
            truncate_dim=_truncate_dim(data.get("truncate_dim"), data.get("dim"), path),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # 1e999 as an int: overflow
        raise ArtifactError(f"{path}: malformed manifest ({exc!r}); {_EXPORT_HINT}") from exc
    if not manifest.variants:
        raise ArtifactError(f"{path}: manifest lists no variants; {_EXPORT_HINT}")
    named = [tokenizer.file, *tokenizer.files, *(f for v in variants for f in variant_files(v))]
    named += routed_files(manifest.stages)
    if isinstance(manifest.calibration, dict):
        named.append(str(manifest.calibration.get("file")))
    for name in named:
        _inside(name, path)
    return manifest


def _inside(name: str, path: Path) -> None:
    """An ``ArtifactError`` unless ``name`` is a relative path within the artifact: a manifest naming
    ``../x/model.onnx`` (or ``/x``) was loaded from outside the folder, and ``save`` wrote such files outside its
    target."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise ArtifactError(
            f"{path} names {name!r}: an artifact's files are relative paths inside its folder; {_EXPORT_HINT}"
        )


def check_contained(path: Path, root: Path) -> None:
    """An ``ArtifactError`` when the artifact's file ``path`` (inside ``root`` by name) leads through a link to a
    place outside the artifact: a folder from a stranger (an archive, a shared volume) could otherwise hand any file
    this user can read to the engines, which return its bytes as weights, or to ``save``, which copies it. ONNX
    Runtime and OpenVINO refuse a graph's weights outside its folder for the same reason. A hub cache snapshot
    (``…/snapshots/<revision>``, however it is reached: a link to it, a relative path) links its files to the
    ``blobs`` folder beside ``snapshots``: those are inside."""
    try:
        real, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError):  # a link loop, a folder that went: opening the file reports it
        return
    bases = [base]
    if base.parent.name == "snapshots":
        bases.append(base.parent.parent / "blobs")
    if not any(real.is_relative_to(allowed) for allowed in bases):
        raise ArtifactError(
            f"{path} leads to {real}, outside the artifact {root}: an artifact's files must lie inside its folder "
            "(links included); if you trust that file, copy it in place of the link (cp -L)"
        )


def load_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Read and check ``root/manifest.json``; every named file must exist.

    Raises:
        ArtifactError: naming the missing or malformed file and how to fix it.
    """
    manifest = _read_manifest(Path(root))
    tokenizer_path = manifest.root / manifest.tokenizer.file
    if not tokenizer_path.is_file():
        raise ArtifactError(f"{tokenizer_path} is missing (named by {manifest.root / MANIFEST_FILE}); {_EXPORT_HINT}")
    check_contained(tokenizer_path, manifest.root)
    return manifest


def _read_manifest(root: Path) -> Manifest:
    """``root/manifest.json`` read and checked, without looking for the files it names."""
    path = root / MANIFEST_FILE
    try:
        if root.is_file():  # the manifest's own path, say
            raise ArtifactError(f"{root} is a file; an artifact is the folder that holds {MANIFEST_FILE}: pass that")
        if not root.is_dir():
            raise ArtifactError(f"artifact directory {root} does not exist; {_EXPORT_HINT}")
        if not path.is_file():
            if (root / "modules.json").is_file() or (root / "config.json").is_file():
                raise ArtifactError(
                    f"{root} is a model directory, not a fastembed-rt artifact (no {MANIFEST_FILE}); "
                    f"export it first: `fastembed-rt export {root} OUT_DIR`"
                )
            if path.is_symlink():  # a hub cache snapshot copied without the blobs its files link to
                raise ArtifactError(
                    f"{path} is a broken link (to {os.readlink(path)}): {root} was copied without the files its links "
                    "point to, as a hub cache snapshot copied alone; copy it with the files themselves (cp -rL, "
                    "rsync -L) or load the hub id"
                )
            raise ArtifactError(f"{path} is missing: {root} is not a fastembed-rt artifact; {_EXPORT_HINT}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); {_EXPORT_HINT}") from exc
    except RecursionError:  # thousands of nested brackets: no manifest the exporter writes
        raise ArtifactError(f"{path} is not a manifest (JSON nested too deeply); {_EXPORT_HINT}") from None
    except OSError as exc:  # an artifact of another user, or copied without read permission
        raise unreadable(path, root, exc) from exc
    return _parse(root, data, path)


_LOCKS_HELD = threading.local()
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def manifest_lock(root: str | os.PathLike[str]) -> Iterator[None]:
    """Held while a change of the artifact's manifest is read, made and written: changes by other threads and (where
    the OS has ``flock``; on the artifact's directory, so no file is left in it) other processes wait, so none is
    lost (two `tune` runs finishing together kept one record of two). Re-entrant within a thread."""
    key = os.path.realpath(root)
    held: set[str] = _LOCKS_HELD.__dict__.setdefault("roots", set())
    if key in held:
        yield
        return
    with _PROCESS_LOCKS_GUARD:
        in_process = _PROCESS_LOCKS.setdefault(key, threading.Lock())
    with in_process:
        descriptor = None
        try:
            import fcntl

            descriptor = os.open(key, os.O_RDONLY)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock (Windows), or a directory it cannot take: threads still wait
            pass
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            if descriptor is not None:
                os.close(descriptor)  # releases the flock


def update_manifest(root: str | os.PathLike[str], **fields: Any) -> Manifest:
    """Change top-level ``fields`` of the artifact's manifest on disk (e.g. ``speed=``); returns the result.

    The runtime's way to change an artifact after export (``calibrate_artifact`` alone stages the manifest with
    ``Manifest.write_staged``, to rename it in just after the calibration file it names). It reads the manifest
    afresh, so a change written since a model object loaded it is kept.
    """
    if set(fields) - _READ_BY_EVERY_VERSION:  # a change earlier readers would ignore: they must refuse it
        fields["schema_version"] = SCHEMA_VERSION
    with manifest_lock(root):
        updated = replace(load_manifest(root), **fields)
        updated.write()
    return updated


# Manifest fields that every schema version's readers read: a change of only these (a speed record of `tune`, a
# calibration) keeps the version the artifact has, so that the runtimes it was written for still load it.
_READ_BY_EVERY_VERSION = frozenset({"speed", "calibration"})


def artifact_files(manifest: Manifest, variants: Sequence[Variant] | None = None) -> list[str]:
    """The files an artifact consists of, relative to its root, each once: the manifest, the tokenizer, lookup-route
    weights and calibration files, and the graph and weights file of each of ``variants`` (None: every variant)."""
    names = [MANIFEST_FILE, manifest.tokenizer.file, *manifest.tokenizer.files, *routed_files(manifest.stages)]
    if manifest.calibration and manifest.calibration.get("file"):
        names.append(str(manifest.calibration["file"]))
    for variant in manifest.variants if variants is None else variants:
        names += variant_files(variant)
    return list(dict.fromkeys(names))


def variant_files(variant: Variant) -> list[str]:
    """A variant's graph file and, when it has one, its weights file (ONNX external data, an IR's ``.bin``)."""
    return [variant.file, *([variant.weights_file] if variant.weights_file else [])]


def verify_variant_file(manifest: Manifest, variant: Variant, *, full: bool = False) -> Path:
    """Check a variant's files against the manifest: size always, sha256 when ``full``; a hub artifact's variant is
    downloaded first if it is not in the cache yet (``fetch_variant_files``).

    A variant with a separate weights file (``weights_file``: an OpenVINO IR's ``.bin``) has it
    checked the same way. Returns the graph's path.
    """
    fetch_variant_files(manifest, variant)
    path = manifest.root / variant.file
    source = hub_source(manifest.root)
    with contextlib.nullcontext() if source is None else source.naming_errors():
        _verify_file(manifest, variant, path, variant.size, variant.sha256, full)
        if variant.weights_file is not None:
            weights = manifest.root / variant.weights_file
            _verify_file(manifest, variant, weights, variant.weights_size, variant.weights_sha256, full)
        # the files the engines read beside the graph whether the manifest names them or not (ONNX external data,
        # an IR's .bin)
        from fastembed_rt.providers.base import graph_data_files

        for name in [path.name, *graph_data_files(path)]:
            check_contained(path.with_name(name), manifest.root)
    return path


def unreadable(path: Path, root: Path, exc: OSError) -> ArtifactError:
    """The error for a file or folder of the artifact at ``root`` that this user may not read (another user's
    artifact, one copied without read permission): what to run, not "export again"."""
    return ArtifactError(
        f"{path} cannot be read ({exc.strerror}); give this user read access to {root} (chmod -R a+rX)"
    )


def check_readable(path: Path, root: Path) -> None:
    """An ``ArtifactError`` saying what to do when ``path`` cannot be opened for reading (permissions): the engines
    and tokenizers reported it as a corrupt file to export again, or pathlib as a bare PermissionError. A path that
    is not UTF-8 is refused too: both open files by UTF-8 paths only (and called this one corrupt)."""
    text = str(path)
    bad = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:
        raise ArtifactError(
            f"{text.encode('utf-8', 'backslashreplace').decode()} holds a byte that is not UTF-8 "
            f"({ord(text[bad]) - 0xDC00:#04x}) in its path; ONNX Runtime, OpenVINO and tokenizers open files by UTF-8 "
            "paths only: rename the folder (or link it under a UTF-8 name) and load it from there"
        )
    try:
        with path.open("rb"):
            pass
    except PermissionError as exc:
        raise unreadable(path, root, exc) from exc


def _verify_file(
    manifest: Manifest, variant: Variant, path: Path, size: int | None, sha256: str | None, full: bool
) -> None:
    try:
        with path.open("rb") as handle:  # one open at every load: there, readable, and its size
            found = os.fstat(handle.fileno()).st_size
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ArtifactError(
            f"{path} is missing (variant {variant.name!r} of {manifest.root}); {_EXPORT_HINT}"
        ) from None
    except PermissionError as exc:  # the file, or a folder of the artifact this user may not enter
        raise unreadable(path, manifest.root, exc) from exc
    if size is not None and found != size:
        raise ArtifactError(f"{path} is corrupt or truncated: {found} bytes, the manifest says {size}; {_EXPORT_HINT}")
    if full and sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            raise ArtifactError(
                f"{path} is corrupt: sha256 {digest[:12]}…, the manifest says {sha256[:12]}…; {_EXPORT_HINT}"
            )


def user_path(name: str | os.PathLike[str]) -> Path:
    """``name`` as a user means it: the path itself where it exists (a folder named ``~x`` here), else with ``~``
    expanded; ``~x`` of no user on this machine stays as named (pathlib raised RuntimeError)."""
    literal = Path(name)
    if literal.exists():
        return literal
    try:
        return literal.expanduser()
    except RuntimeError:
        return literal


def local_path(model: str | os.PathLike[str]) -> Path | None:
    """The local directory ``model`` names (an existing path, an absolute one, or one starting with ``.`` or
    ``~``), as an absolute path (links kept), or None when it is a hub repo id.

    Absolute: a model reopens its folder later (pool workers, a pickled copy, ``save``), maybe after the process
    changed directory, where a relative path named another folder or a hub repo. A folder named ``~x`` here is
    that folder (``~x`` is a user's home only where no such folder exists)."""
    path = user_path(model)
    if path.exists() or os.path.isabs(str(model)) or str(model).startswith((".", "~")):
        return path.absolute()  # not os.path.abspath: "link/.." is the link's target's parent, as the OS reads it
    return None


def resolve_artifact(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local artifact directory for ``model``: a path as is, or a hub repo id's snapshot in the hub cache.

    A hub id gets its manifest first (``huggingface_hub``, honouring ``HF_HUB_OFFLINE`` and the cache;
    ``local_files_only``: the cache only), so a repo of a model not yet exported fails at once; then its tokenizer
    and calibration files. A variant's graph and weights are downloaded when a model opens that variant
    (``verify_variant_file``): loading one variant of a nine-variant artifact fetches that one, not all nine.
    ``cache_dir`` None: ``$SENTENCE_TRANSFORMERS_HOME`` when set, as sentence-transformers, else the hub's cache.
    """
    path = local_path(model)
    if path is not None:
        return path
    repo_id = str(model)
    if repo_id.count("/") > 1 or not repo_id.strip():
        raise ArtifactError(f"{repo_id!r} is neither an existing directory nor a hub repo id ('owner/name')")
    folder = hub_cache_folder(cache_dir)
    with _naming_local_folder(repo_id):
        manifest_path = _download_manifest(repo_id, revision, folder, token, local_files_only)
    root = Path(manifest_path).parent
    source = _HubSnapshot.of(root, token=token, local_files_only=local_files_only)
    if source is None:  # pragma: no cover - hf_hub_download always answers from a cache snapshot folder
        raise ArtifactError(f"the hub download of {repo_id!r} is not in a cache snapshot folder: {root}")
    _HUB_SNAPSHOTS[str(root)] = source
    with source.naming_errors():
        source.download(
            artifact_files(_read_manifest(root), variants=[]),
            what="the files its variants share (tokenizer, calibration, query weights)",
        )
    return root


@contextlib.contextmanager
def _naming_local_folder(repo_id: str) -> Iterator[None]:
    """A hub error about ``repo_id`` ends with ``path_hint(repo_id)``."""
    try:
        yield
    except ArtifactError as exc:
        hint = path_hint(repo_id)
        if not hint:
            raise
        raise ArtifactError(f"{exc}{hint}") from exc


def path_hint(repo_id: str) -> str:
    """``"; was it a path? ..."`` when the ``owner`` of hub id ``owner/name`` is a folder here (``work/typo`` was most
    likely a mistyped path, and a hub error alone does not say so), else ``""``."""
    owner, _, name = repo_id.partition("/")
    if not name or not Path(owner).is_dir():
        return ""
    return f"; was it a path? {owner + '/'!r} is a folder here, but holds no {name!r}"


def _download_manifest(
    repo_id: str, revision: str | None, folder: Path | None, token: str | bool | None, local_files_only: bool
) -> str:
    """The cached path of hub repo ``repo_id``'s manifest, or an ``ArtifactError`` saying why there is none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return hf_hub_download(
            repo_id, MANIFEST_FILE, revision=revision, cache_dir=folder, token=token, local_files_only=local_files_only
        )
    except HFValidationError:  # a mistyped path ("my models/minilm") is no repo id either
        raise ArtifactError(f"{repo_id!r} is neither an existing directory nor a hub repo id ('owner/name')") from None
    except LocalEntryNotFoundError as exc:
        answered = _hub_status(exc)
        if answered is not None:  # the hub was reached and refused (403, 500): not an offline machine
            raise ArtifactError(f"could not download {repo_id!r} from the hub: it answered {answered}") from exc
        offline = os.environ.get("HF_HUB_OFFLINE", "")
        why = "local_files_only=True" if local_files_only else f"offline or unreachable, HF_HUB_OFFLINE={offline!r}"
        at = "" if revision is None else f" at revision {revision!r}"
        if folder is not None:  # which cache: $SENTENCE_TRANSFORMERS_HOME (or cache_dir) wins over HF_HUB_CACHE
            home = os.environ.get("SENTENCE_TRANSFORMERS_HOME")
            named = "$SENTENCE_TRANSFORMERS_HOME" if home and Path(home) == folder else "cache_dir"
            cache = f"the hub cache {folder} ({named})"
        else:
            from huggingface_hub import constants

            cache = f"the hub cache {constants.HF_HUB_CACHE}"
        raise ArtifactError(
            f"{repo_id!r}{at} is not a local directory and is not in {cache} while offline ({why}); pass an "
            "artifact directory, or download it once with network access"
        ) from exc
    except GatedRepoError as exc:  # a RepositoryNotFoundError too: told apart first
        raise ArtifactError(
            f"hub repo {repo_id!r} is gated: {_TOKEN_HINT} that was granted access (ask for it on the repo's page)"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ArtifactError(
            f"hub repo {repo_id!r} does not exist, or is private: {_TOKEN_HINT} that can read it"
        ) from exc
    except EntryNotFoundError as exc:
        at = "" if revision is None else f" at revision {revision!r}"
        raise ArtifactError(
            f"hub repo {repo_id!r}{at} holds no fastembed-rt artifact (no {MANIFEST_FILE}); a sentence-transformers "
            f"model is exported first: `fastembed-rt export {repo_id} OUT_DIR`, then load OUT_DIR"
        ) from exc
    except hub_network_errors() as exc:
        raise ArtifactError(f"could not download {repo_id!r} from the hub: {exc}") from exc


def hub_cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The hub cache folder to download into: ``cache_dir``, else sentence-transformers' own when set
    (``$SENTENCE_TRANSFORMERS_HOME``, which its loaders read too), else None (huggingface_hub's)."""
    chosen = cache_dir if cache_dir is not None else os.environ.get("SENTENCE_TRANSFORMERS_HOME") or None
    return None if chosen is None else Path(chosen)


def hub_offline() -> bool:
    """huggingface_hub's offline flag: ``is_offline_mode()`` from huggingface_hub 1.3, the constant before that."""
    from huggingface_hub import constants

    return bool(getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)())


_TOKEN_HINT = "pass token=... (the command line and the server read HF_TOKEN or `hf auth login`'s) for an account"


def hub_network_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a huggingface_hub download raises when the transfer fails: OSError (its own HTTP errors, requests' up
    to huggingface_hub 0.x) and the HTTP library's own errors from 1.0 on (httpx's, httpx2's from 2.x), which are
    not OSErrors: a connection dropped mid-file reached the user as httpx2.ConnectError."""
    errors: list[type[BaseException]] = [OSError, *more]
    for library in ("httpx", "httpx2"):
        module = sys.modules.get(library)
        if module is not None and isinstance(getattr(module, "HTTPError", None), type):
            errors.append(module.HTTPError)
    return tuple(errors)


def _hub_status(exc: BaseException) -> str | None:
    """The HTTP answer behind a huggingface_hub error (it wraps a 403 or 500 in LocalEntryNotFoundError when nothing
    is cached), e.g. ``"403 Forbidden"``; None when no response came (offline, unreachable)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return f"{status} {getattr(response, 'reason_phrase', '') or ''}".strip()
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class _HubSnapshot:
    """Where a hub artifact's snapshot folder came from: files are fetched into it at its commit."""

    root: Path  # <cache_dir>/models--owner--name/snapshots/<commit>
    repo_id: str
    token: str | bool | None = None
    local_files_only: bool = False

    @property
    def commit(self) -> str:
        return self.root.name

    @property
    def cache_dir(self) -> Path:
        return self.root.parents[2]

    @classmethod
    def of(cls, root: Path, token: str | bool | None = None, local_files_only: bool = False) -> _HubSnapshot | None:
        """The source of ``root`` when it is a hub cache snapshot (``<cache>/models--owner--name/snapshots/<commit>``),
        else None."""
        repo_folder = root.parent.parent
        if root.parent.name != "snapshots" or not repo_folder.name.startswith("models--"):
            return None
        owner, _, name = repo_folder.name.removeprefix("models--").partition("--")
        return cls(root, f"{owner}/{name}", token, local_files_only)

    @contextlib.contextmanager
    def naming_errors(self) -> Iterator[None]:
        """An ``ArtifactError`` about a file of the snapshot names the repo and commit a user asked for (the path
        alone is a cache folder they never typed), and says who can mend it: the repo, not this machine."""
        try:
            yield
        except ArtifactError as exc:
            if self.repo_id in str(exc):  # already named (a failed download)
                raise
            message = str(exc).replace(f"; {_EXPORT_HINT}", "")
            raise ArtifactError(
                f"hub repo {self.repo_id!r} (commit {self.commit[:12]}) holds a broken artifact: {message}; "
                "its owner must export and push it again, or load another revision=... (if only this machine's "
                f"copy was damaged, remove {self.root.parents[1]} to download it again)"
            ) from exc

    def download(self, names: Sequence[str], what: str, *, again: bool = False) -> None:
        """Fetch ``names`` (relative paths) into the snapshot (``again``: even those there, replacing a truncated
        copy); an ``ArtifactError`` naming ``what`` if that fails."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        offline = hub_offline()
        at = f"hub repo {self.repo_id!r} (commit {self.commit[:12]})"
        if again and (self.local_files_only or offline):  # huggingface_hub refuses force_download offline
            why = "local_files_only=True" if self.local_files_only else "offline (HF_HUB_OFFLINE)"
            raise ArtifactError(
                f"could not fetch {what} from {at}: the cached copy of {', '.join(names)} is truncated and {why} "
                "it cannot be downloaded again; load it once with network access, or choose a variant in the cache"
            )
        try:
            for name in names:
                if again or not (self.root / name).is_file():
                    hf_hub_download(
                        self.repo_id,
                        name,
                        revision=self.commit,
                        cache_dir=self.cache_dir,
                        token=self.token,
                        local_files_only=self.local_files_only or offline,
                        force_download=again,
                    )
        except LocalEntryNotFoundError as exc:  # nothing cached, and no file from the hub
            answered = _hub_status(exc)
            reason = f"the hub answered {answered}" if answered else "the hub cannot be reached"
            raise ArtifactError(
                f"could not fetch {what} from {at}: it is not in the hub cache and {reason} ({exc}); download it "
                "once with network access, or choose a variant that is in the cache"
            ) from exc
        except EntryNotFoundError as exc:
            raise ArtifactError(  # the hub answered that the repo lacks a file its manifest names
                f"{at} holds a broken artifact: its manifest names {what}'s files, and the repo lacks one ({exc}); "
                "its owner must export and push it again, or load another revision=..."
            ) from exc
        except hub_network_errors(ValueError) as exc:  # ValueError: "Force download failed", after its retries
            raise ArtifactError(
                f"could not fetch {what} from {at}: {exc}; try again once the hub can be reached, or choose a "
                "variant that is in the cache"
            ) from exc


# Hub snapshots resolved in this process (by root), with the token they were opened with.
_HUB_SNAPSHOTS: dict[str, _HubSnapshot] = {}


def hub_source(root: Path) -> _HubSnapshot | None:
    """Where the artifact at ``root`` came from when it is a hub cache snapshot (as resolved in this process, with
    its token, else read from the folder's name); None for a local artifact."""
    return _HUB_SNAPSHOTS.get(str(root)) or _HubSnapshot.of(root)


def fetch_variant_files(manifest: Manifest, variant: Variant) -> None:
    """Download ``variant``'s graph and weights into a hub artifact's snapshot when they are not there yet; a local
    artifact is left as it is (a missing file is ``verify_variant_file``'s to report)."""
    sizes = {variant.file: variant.size, variant.weights_file: variant.weights_size}
    missing: list[str] = []
    cut: list[str] = []
    for name in variant_files(variant):
        try:
            found = (manifest.root / name).stat().st_size
        except OSError:
            missing.append(name)
            continue
        if sizes.get(name) is not None and found != sizes[name]:
            cut.append(name)
    if not missing and not cut:
        return
    source = hub_source(manifest.root)
    if source is not None:
        logger.info("downloading variant %r of %s from the hub", variant.name, source.repo_id)
        source.download(missing, what=f"variant {variant.name!r}")
        if cut:  # an interrupted download or a damaged cache: fetched again, not left to fail every load
            logger.warning("re-downloading %s of %s: the cached copy is truncated", ", ".join(cut), source.repo_id)
            source.download(cut, what=f"variant {variant.name!r} (its cached copy is truncated)", again=True)


def check_destination(out: Path, overwrite: bool, *, model: str | os.PathLike[str]) -> None:
    """Refuse an output directory that the export must not write or replace (here, torch-free: the CLI checks it
    before the export stage's imports, which take seconds).

    ``out`` may not be, contain or lie inside the source model's directory (``model`` when it is a local
    directory): replacing it would delete the model. It must be a directory or not exist; when it holds
    anything, only ``overwrite`` lets it be replaced, and only when it is an artifact the runtime can read
    (a typo in the path must not delete some other directory).

    Raises:
        ExportError: naming ``out``, what is in the way and what to do.
    """
    source = user_path(model)
    if source.is_dir():
        target, origin = out.resolve(), source.resolve()
        if target == origin or origin in target.parents or target in origin.parents:
            relation = "is" if target == origin else "is inside" if origin in target.parents else "contains"
            raise ExportError(
                f"output directory {out} {relation} the source model directory {source}; the artifact would "
                "replace or mix with the model's files: choose an output directory outside it"
            )
    here = Path.cwd().resolve()
    if out.exists() and not out.is_symlink() and (out.resolve() == here or out.resolve() in here.parents):
        # the export swaps its folder in: the one this process (and the shell that started it) stands in would be
        # renamed away and deleted, leaving the shell in a folder that no longer exists
        raise ExportError(
            f"output directory {out} is the current directory (or holds it); the export replaces that folder whole: "
            "name a new folder, e.g. ./model"
        )
    try:
        if out.exists() and not out.is_dir():
            raise ExportError(
                f"output path {out} exists and is not a directory; choose a directory path for the artifact"
            )
        above = next((folder for folder in Path(os.path.abspath(out)).parents if folder.exists()), None)
        if above is not None and not above.is_dir():
            raise ExportError(f"output path {out} lies under {above}, which is a file: choose a path in a folder")
        if not out.exists() or not any(out.iterdir()):
            return
    except OSError as exc:
        raise ExportError(
            f"cannot look into the output directory {out} ({exc.strerror}); choose one this user can read"
        ) from exc
    if not overwrite:
        raise ExportError(f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite)")
    try:
        load_manifest(out)
    except ArtifactError as exc:
        raise ExportError(
            f"{out} is not empty and is not a fastembed-rt artifact, so overwrite does not replace it (it replaces "
            "only an artifact directory or an empty one): choose another output directory, or empty this one yourself"
        ) from exc
