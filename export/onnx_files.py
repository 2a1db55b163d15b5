"""ONNX graph files of an artifact: the graph, and its weights in a data file beside it.

Every graph keeps every tensor of 1 KiB or more in one file named after it (``model.onnx`` →
``model.onnx.data``), which the manifest lists as the variant's ``weights_file`` with its size and
sha256. ONNX Runtime memory-maps that file instead of parsing the weights out of the protobuf: on
all-MiniLM-L6-v2 a session opened in 0.06 s instead of 0.18 s and the process peaked at 108 MB
instead of 191 MB (issue 13). It is also the only way for models over protobuf's 2 GiB
(Qwen3-Embedding-0.6B in fp32 is already 2.4 GB). ``external_data_threshold`` keeps smaller models'
weights inline when asked.

The fp32 graph is the backbone plus small output stages: it is written without reading the
backbone's weights at all (both graphs share one data file, offsets unchanged), so the export
holds no second copy of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "EXTERNAL_DATA_THRESHOLD",
    "check_graph",
    "data_file",
    "external_data_file",
    "link_graph",
    "parameter_bytes",
    "save_graph",
    "scratch_graph",
]

# Parameter bytes above which graphs are written with external data: every graph (see above).
EXTERNAL_DATA_THRESHOLD = 0
_MIN_EXTERNAL_TENSOR = 1024


# ONNX Runtime registers a few contrib ops (its RMSNorm fusions) in the default domain, where the onnx
# checker does not know them; the runtime load and parity validation that follow check those graphs.
_ORT_DEFAULT_DOMAIN_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")


def check_graph(model: Any) -> None:
    """``onnx.checker`` on a graph (a ModelProto, or a path: graphs with external data are checked from their file)."""
    import onnx

    try:
        onnx.checker.check_model(str(model) if isinstance(model, Path) else model)
    except onnx.checker.ValidationError as exc:
        if not any(f"No Op registered for {op} " in str(exc) for op in _ORT_DEFAULT_DOMAIN_OPS):
            raise


def data_file(graph: str) -> str:
    """The external data file of the graph file ``graph`` (same folder)."""
    return f"{graph}.data"


def parameter_bytes(model: Any) -> int:
    """Bytes of a torch module's parameters and buffers as float32 (what the exported graph holds)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(4 * int(t.numel()) for t in tensors)


def external_data_file(path: Path) -> Path | None:
    """The data file the graph at ``path`` keeps its weights in, or None when they are inline."""
    data = path.with_name(data_file(path.name))
    return data if data.is_file() else None


def save_graph(model: Any, path: Path, *, external: bool, check: bool = True) -> str | None:
    """Write ``model`` to ``path``; returns its data file name when ``external`` and it wrote one, else None.

    With ``external``, the tensors it holds go to ``path``'s data file; tensors still in another graph's data
    file keep pointing at it (a scratch graph beside that graph shares its weights).

    ``check``: run the onnx checker on the written graph (off for scratch graphs, which nothing ships or loads
    before it is rebuilt and checked as a variant).
    """
    import onnx

    if not external:
        onnx.save_model(model, str(path))
        return None
    data = path.with_name(data_file(path.name))
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=_MIN_EXTERNAL_TENSOR,
    )
    if check:
        check_graph(path)
    if not data.exists():  # every tensor it holds is small, or already in another graph's data file (scratch graphs)
        return None
    data.chmod(path.stat().st_mode & 0o777)  # onnx creates it 0600: readable as the graph is (non-root containers)
    return data.name


@contextlib.contextmanager
def scratch_graph(folder: Path, name: str) -> Iterator[Path]:
    """A path for a builder's scratch graph ``.name`` in ``folder`` (beside the graphs whose data file it may
    point at), removed with its data file on exit, so an artifact never ships one."""
    path = folder / f".{name}"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        path.with_name(data_file(path.name)).unlink(missing_ok=True)


def link_graph(model: Any, source: Path, path: Path) -> str:
    """Write ``model``, loaded without its weights from ``source``, to ``path`` sharing ``source``'s data file.

    The data file is renamed to ``path``'s data file name and both graphs point their external tensors
    at it (no copy, and no hard link: the onnx checker and ONNX Runtime refuse hard-linked data);
    tensors added since the load (output stages) stay inline. Returns the data file name.
    """
    import onnx

    source_data = external_data_file(source)
    if source_data is None:
        raise FileNotFoundError(f"{source} has no external data file {data_file(source.name)}")
    if source.parent != path.parent:
        raise ValueError(f"{source} and {path} must share a folder to share a data file")
    target = path.with_name(data_file(path.name))
    source_graph = onnx.load(str(source), load_external_data=False)
    for graph in (model, source_graph):
        _relocate(graph, source_data.name, target.name)
    source_data.rename(target)
    onnx.save_model(source_graph, str(source))
    onnx.save_model(model, str(path))
    check_graph(path)
    return target.name


def _relocate(model: Any, old: str, new: str) -> None:
    """Point every external tensor of ``model`` stored in ``old`` at ``new`` (same bytes, same offsets)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors

    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = ExternalDataInfo(tensor).location
        if location != old:
            raise ValueError(f"{tensor.name} is stored in {location}, not {old}")
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = new
