"""``fastembed-rt``: export, encode and inspect artifacts from the shell."""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from fastembed_rt.artifact import Manifest, Task, check_destination, local_path, resolve_artifact
from fastembed_rt.errors import FastEmbedError, InputError, LongInputError

__all__ = ["main"]


def _export(args: argparse.Namespace) -> int:
    # The exporter checks it too, but only once torch and the model are loaded: a wrong output path fails here in
    # no time.
    check_destination(Path(args.out), args.overwrite, model=args.model)
    variants = _variant_names(args.variants, "build the default ones")
    try:
        from fastembed_rt.export import export_artifact
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        with _log_progress(), _stop_on_sigterm():
            manifest = export_artifact(
                args.model,
                args.out,
                task=args.task,
                revision=args.revision,
                overwrite=args.overwrite,
                variants=variants,
                stsb=False if args.no_stsb else None,
                trust_remote_code=args.trust_remote_code,
            )
    except KeyboardInterrupt as exc:  # one line, not a traceback from wherever the export was
        how = "stopped by SIGTERM" if isinstance(exc, _Terminated) else "interrupted"
        if getattr(exc, "artifact_written", False):  # while removing the artifact it had just replaced
            print(f"export {how} after {args.out} was written: it holds the new artifact", file=sys.stderr)
        else:
            print(f"export {how}: {args.out} is as it was before the export", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, _Terminated) else 130
    detected = " detected from the model directory; --task overrides" if args.task == "auto" else ""
    print(f"exported {args.model} -> {args.out} ({manifest.task}{detected}) in {time.perf_counter() - started:.1f} s")
    _print_info(Path(args.out))
    return 0


# What a write of output meets on a full or failing disk (stdout redirected to a file, or -o).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (as Ctrl-C raises KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, ``docker stop``, a cancelled CI job) unwinds a command as Ctrl-C does, so an
    export's staging folder or an encode's staged ``-o`` file is removed and the output left as it was; by default
    the process died at once and left them (a whole artifact's size, a hidden ``.NAME.PID.tmp``) behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _log_progress() -> Iterator[None]:
    """Show the exporter's progress (each step, with the seconds since the export started) on stderr.

    Only fastembed-rt's own loggers, and not through the root logger: some libraries the exporter imports
    configure the root logger themselves, which otherwise decided whether these lines appeared. The
    logger is left as it was found afterwards (``main`` also runs inside other programs and tests).
    """
    begun = time.time()

    class Elapsed(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"[{record.created - begun:6.1f} s] {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Elapsed())
    logger = logging.getLogger("fastembed_rt")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _print_info(root: Path) -> None:
    from fastembed_rt.artifact import load_manifest

    m = load_manifest(root)
    tok = m.tokenizer
    print(f"artifact      {m.root}")
    print(f"task          {m.task}   source {m.source.get('model')} ({m.source.get('architecture')})")
    matryoshka = "" if m.truncate_dim is None else f"   truncate_dim {m.truncate_dim} (encode's default)"
    sides = f"truncates {tok.truncation_side}, pads {tok.padding_side}"  # a last-token decoder pads left
    print(f"dim           {m.dim}   similarity {m.similarity_fn}   max_seq_length {tok.max_seq_length}   ", end="")
    print(f"{sides}{matryoshka}")
    print(f"stages        {json.dumps(m.stages)}")
    print(f"graph inputs  {', '.join(m.graph.inputs)}   outputs {', '.join(m.graph.outputs)}")
    if tok.prompts:
        print(f"prompts       {json.dumps(tok.prompts)}   default {tok.default_prompt_name}")
    # Bi-encoders agree by cosine and STSb, multi-vector models by cosine per token vector; heads
    # (rerankers, SPLADE) by absolute/relative difference,
    # and their int8 variants by score rank (rerankers) or cosine (SPLADE).
    columns = (
        [
            ("min cos", "min_cosine", ".6f"),
            ("mean cos", "mean_cosine", ".6f"),
            ("rows", "texts", "d"),  # rows compared with PyTorch (the grid: 9 texts × 3 batch shapes = 27)
            ("STSb", "stsb_spearman", ".2f"),
        ]
        if m.task in ("embedding", "multi-vector")
        else [
            ("max abs", "max_abs_diff", ".2e"),
            ("max rel", "max_rel_diff", ".2e"),
            ("rank rho", "score_spearman", ".6f"),
            ("mean cos", "mean_cosine", ".6f"),
        ]
    )
    header = "".join(f" {title:>9}" for title, _, _ in columns)
    width = max([14, *(len(v.name) for v in m.variants)])
    print(f"{'variant':<{width}} {'format':<8} {'precision':<9} {'size MB':>8}{header}  file")
    for v in m.variants:
        cells = "".join(
            f" {format(v.fidelity[key], spec) if key in v.fidelity else '-':>9}" for _, key, spec in columns
        )
        size_mb = (v.size + (v.weights_size or 0)) / 1e6  # an IR's .bin counts too
        print(f"{v.name:<{width}} {v.format:<8} {v.precision:<9} {size_mb:>8.1f}{cells}  {v.file}")
    for rejected in m.rejected_variants:
        print(f"{rejected['name']:<{width}} not shipped: {'; '.join(rejected['reasons'])}")
    if m.calibration:
        source = m.calibration.get("source", "?")
        print(f"calibration   {m.calibration.get('texts', '?')} texts ({source}): the int8/uint8 output ranges")
    from fastembed_rt.machine import CpuIdentity

    validated = [CpuIdentity.from_record(v.fidelity.get("validated_on")) for v in m.variants]
    if places := sorted({cpu.describe() for cpu in validated if cpu is not None}):
        print(f"validated on  {'; '.join(places)}")
    _print_speed(m)


def _print_speed(m: Manifest) -> None:
    """The manifest's speed records, then what ``auto`` and ``fastest`` choose on this CPU and why."""
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.providers import choose_variant, provider_spec
    from fastembed_rt.speed import FASTEST, summarize

    for record in m.speed:
        rates = ", ".join(f"{name} {rate:.0f}" + (f" ({x:.2f}×)" if x else "") for name, rate, x in summarize(record))
        print(
            f"speed         {record.cpu} ({' '.join(record.isa)}), {record.threads} threads, batch "
            f"{record.batch_size}, {record.source} {record.date}: {rates} sentences/s (× fp32)"
        )
    print(f"this CPU      {this_cpu().describe()}")
    choices = []
    for provider in ("cpu", "openvino"):
        spec = provider_spec(provider)
        if spec.unavailable() is not None or not any(v.format in spec.formats for v in m.variants):
            continue
        choices += [(f"{provider}/{mode}", choose_variant(spec, m, mode, warn=False)) for mode in ("auto", FASTEST)]
    width = max((len(label) for label, _ in choices), default=0)  # "openvino/fastest" overran a fixed column
    for i, (label, choice) in enumerate(choices):
        print(f"{'' if i else 'chosen here':<13} {label:<{width}}  {choice.variant.name}: {choice.reason}")


def _info(args: argparse.Namespace) -> int:
    _print_info(resolve_artifact(args.artifact))
    return 0


def _read_lines(name: str) -> list[str]:
    """The lines of text file ``name`` (``-``: stdin), without their line ends.

    Lines end at ``\n`` (``\r\n`` too) only, from a file or stdin alike: a stray ``\r`` inside a line (PDF
    extraction, old Mac files) is part of its text, so output row ``i`` is line ``i`` (universal newlines split such
    a line in two and shifted every row after it). UTF-8 whatever the locale, a leading BOM dropped.

    Raises:
        InputError: the file is missing, a directory, unreadable or not UTF-8 (naming the line).
    """
    where = "stdin" if name == "-" else name
    try:
        if name != "-":
            with open(name, "rb") as handle:
                data = handle.read()
        else:
            if sys.stdin is None:  # started with stdin closed (`<&-`): said as any unreadable input is
                raise OSError(errno.EBADF, "stdin is closed")
            data = sys.stdin.buffer.read()
    except OSError as exc:
        raise InputError(
            f"cannot read texts from {where}: {exc.strerror or exc}; pass a readable text file, one text per line"
        ) from exc
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the last line's end, not an empty line after it
        lines.pop()
    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            texts.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{where}:{number} is not UTF-8 text (byte {line[exc.start]:#04x} at column {exc.start + 1}: "
                f"{exc.reason}); convert it to UTF-8 first, e.g. with iconv -t UTF-8"
            ) from None
        if b"\0" in line:  # UTF-16 without a BOM decodes as UTF-8 where it is ASCII, a NUL after each letter
            raise InputError(
                f"{where}:{number} holds a NUL byte (column {line.index(0) + 1}): it looks like UTF-16 or binary, "
                "not UTF-8 text; convert it to UTF-8 first, e.g. with iconv -f UTF-16LE -t UTF-8"
            )
    return texts


def _read_texts(args: argparse.Namespace) -> list[str]:
    if isinstance(getattr(args, "query", None), str):  # rank's QUERY (encode's --query is a flag)
        _check_argument(args.query, "the query argument")
    for number, text in enumerate(args.texts, start=1):
        _check_argument(text, f"text argument {number}")
    if args.field is not None and not args.file:
        raise InputError("--field reads JSON lines from --file: pass --file FILE ('-' for stdin)")
    lines = _read_lines(args.file) if args.file else []
    if args.field is not None:
        lines = _json_field(lines, args.field, "stdin" if args.file == "-" else args.file)
    return [*args.texts, *lines]


def _input_label(args: argparse.Namespace, row: int) -> str:
    """Where row ``row`` of ``_read_texts`` came from: ``text argument N`` or ``FILE:LINE`` (both from 1)."""
    texts = getattr(args, "texts", None) or []
    if row < len(texts):
        return f"text argument {row + 1}"
    file = getattr(args, "file", None)
    if file:
        return f"{'stdin' if file == '-' else file}:{row - len(texts) + 1}"
    return f"input {row + 1}"


def _json_field(lines: list[str], field: str, where: str) -> list[str]:
    """Field ``field`` of each JSON object line (JSON lines): texts that hold line breaks, which a file of one text
    per line cannot carry (``jq -r .text`` splits them over several rows, shifting every row after them)."""
    from fastembed_rt.pipeline import check_unicode

    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested past Python's stack
            raise InputError(f"{where}:{number} is not a JSON object line ({exc}); --field reads JSON lines") from None
        value = record.get(field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            got = "no such field" if not isinstance(record, dict) or field not in record else type(value).__name__
            raise InputError(f"{where}:{number}: field {field!r} must be a string, got {got}")
        check_unicode(value, f"{where}:{number}: field {field!r}")  # named by its line, not its row in the call
        texts.append(value)
    return texts


def _check_argument(text: str, what: str) -> None:
    """Python hands over a command-line argument's bytes that are not UTF-8 as lone surrogates (surrogateescape):
    said as the bytes they were, not as Python text that holds a surrogate."""
    bad = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:
        raise InputError(
            f"{what} is not UTF-8 (byte {ord(text[bad]) - 0xDC00:#04x} at character {bad + 1}); pass UTF-8 text "
            "(e.g. convert it with iconv -t UTF-8)"
        )


def _standard_descriptor(path: str) -> int | None:
    """The descriptor ``path`` names (``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``, ``/proc/self/fd/N``), or None."""
    named = {"/dev/stdout": 1, "/dev/stderr": 2, "/dev/stdin": 0}
    if path in named:
        return named[path]
    found = re.fullmatch(r"/(?:dev|proc/self)/fd/(\d+)", path)
    return int(found[1]) if found else None


class _WriteThrough(io.RawIOBase):
    """Writes to a descriptor at its position as the output is made, and cannot seek: the .npy header and each part's
    rows go out as they come and zipfile (``np.savez``, scipy's ``save_npz``) streams its archive, so a pipe gets
    a bulk run's output as it goes, not from a copy in memory at the end (1,000,000 rows of 384 floats: 1.5 GB)."""

    def __init__(self, descriptor: int, *, close: bool) -> None:
        super().__init__()
        self._descriptor, self._owned, self._flushed = descriptor, close, False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self._flushed:  # what print() left in stdout's buffer goes first, as `> path` would order it
            for standard in (sys.stdout, sys.stderr):
                standard.flush()
            self._flushed = True
        return os.write(self._descriptor, data)

    def close(self) -> None:
        if not self.closed and self._owned:
            os.close(self._descriptor)
        super().close()


@contextlib.contextmanager
def _output_file(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """``path``, exactly as given, opened for writing before the work that fills it: a path that cannot be written
    fails at once, not after the work. Written to a temporary file beside it (beside a symlink's target) and renamed
    over it at the end, so a run that fails leaves an earlier file of that name as it was; a pipe or device is
    written through as the output is made.

    Raises:
        InputError: ``path`` is a directory, or its directory is missing or not writable.
    """
    fix = "name a file in an existing directory this user can write"
    if Path(path).is_dir():
        raise InputError(f"cannot write {path}: it is a directory; {fix}")
    encoding = None if "b" in mode else "utf-8"
    descriptor = _standard_descriptor(path)
    if descriptor is not None or (Path(path).exists() and not Path(path).is_file()):
        # A FIFO, a terminal, a process substitution (>(...)): written through as `> path` would be; a file staged
        # beside it and renamed over it would replace the pipe with a file nobody reads. /dev/stdout (where stdout
        # may be a file: `>>`, a `{ ...; } >` group): through its descriptor, at its position; opened by name, or
        # renamed over, the whole file was replaced.
        try:
            target_descriptor = os.open(path, os.O_WRONLY) if descriptor is None else descriptor
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}; {fix}") from exc
        stream = io.BufferedWriter(_WriteThrough(target_descriptor, close=descriptor is None))
        handle: IO[Any] = stream if "b" in mode else io.TextIOWrapper(stream, encoding="utf-8")
        with handle:
            yield handle
        return
    target = Path(os.path.realpath(path))  # a symlink is written through: its target gets the file, the link stays
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if len(os.fsencode(staged.name)) > 255:  # a name near NAME_MAX: a valid -o was refused as too long
        staged = target.with_name(f".fastembed-rt.{os.getpid()}.tmp")
    try:
        handle = open(staged, mode, encoding=encoding)  # noqa: SIM115
        with contextlib.suppress(OSError):  # a file replaced keeps its permissions (a private 600 became 644)
            os.chmod(staged, stat.S_IMODE(target.stat().st_mode))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}; {fix}") from exc
    try:
        with handle:
            yield handle
        os.replace(staged, target)
    except OSError as exc:  # a full disk while writing (numpy's partial write names no errno)
        if exc.errno is not None and exc.errno not in _WRITE_ERRNOS:
            raise
        raise InputError(f"cannot write {path}: {exc.strerror or exc} (is its disk full?); {fix}") from exc
    finally:
        staged.unlink(missing_ok=True)


def _encode_multi_vector(args: argparse.Namespace, texts: list[str], output: IO[bytes] | None) -> str:
    """A multi-vector model's token vectors: one matrix per text, as documents (``--query``: as queries)."""
    from fastembed_rt.models import MultiVectorEncoder

    model = MultiVectorEncoder(args.artifact, provider=args.provider, variant=args.variant)
    encode = model.encode_query if args.query else model.encode_document
    matrices = encode(
        texts,
        batch_size=args.batch_size,
        prompt_name=args.prompt_name,
        normalize_embeddings=args.normalize,
        show_progress_bar=args.progress,
    )
    _note_truncated(model, model._max_length("query" if args.query else "document") or model.max_seq_length)
    if output is not None:
        np.savez(output, *matrices)
    else:
        for text, matrix in zip(texts, matrices):
            print(json.dumps({"text": text, "token_embeddings": [_exact(row) for row in matrix]}))
    return f"{len(matrices)} token matrices (arr_0 …)"


def _exact(values: np.ndarray | float) -> list[float]:
    """float32 ``values`` as the shortest decimals that read back as the same float32 (numpy's ``str``), so JSON lines
    hold what ``-o x.npy`` holds (rounded to 7 places they lost up to 5e-8, and values below it became 0)."""
    return [float(str(x)) for x in np.asarray(values, dtype=np.float32).reshape(-1)]


def _encode(args: argparse.Namespace) -> int:
    from fastembed_rt.artifact import load_manifest

    texts = _read_texts(args)
    if not texts and not args.file:
        print("error: no texts: pass them as arguments or with --file FILE ('-' for stdin)", file=sys.stderr)
        return 2
    if not texts:  # a nightly run's empty batch: an empty result, as encode([]) gives, not a failed job
        print(f"note: {args.file} holds no lines: the result is empty", file=sys.stderr)
    task = load_manifest(resolve_artifact(args.artifact)).task
    if task == "cross-encoder":
        print(
            "error: a cross-encoder scores pairs rather than embedding texts: "
            "`fastembed-rt rank ARTIFACT QUERY DOCUMENT ...`",
            file=sys.stderr,
        )
        return 2
    refused = [
        (args.truncate_dim is not None and task != "embedding", "--truncate-dim is for dense single-vector models"),
        (args.precision != "float32" and task != "embedding", "--precision is for dense single-vector models"),
        (
            args.query and task not in ("multi-vector", "sparse"),
            "--query is for multi-vector (late-interaction) and sparse models",
        ),
        (args.max_active_dims is not None and task != "sparse", "--max-active-dims is for sparse (SPLADE) models"),
        (
            args.long_inputs != "truncate" and task == "multi-vector",
            "--long-inputs is not offered for token vectors (truncated at the model's query or document length)",
        ),
        (args.normalize and task == "sparse", "--normalize is for dense and multi-vector models"),
    ]
    for wrong, message in refused:
        if wrong:
            print(f"error: {message}; {args.artifact} holds {task.a_model}", file=sys.stderr)
            return 2
    from fastembed_rt.sparse import has_scipy

    if args.output and task == "sparse" and not has_scipy():
        print(
            "error: --output writes a sparse model's rows as scipy's .npz, and scipy is not installed: pip install "
            "scipy (or leave out --output for JSON lines)",
            file=sys.stderr,
        )
        return 2
    if args.output and Path(args.output).suffix.lower() in (".json", ".jsonl", ".txt", ".csv", ".tsv"):
        kind = ".npy" if task == "embedding" else ".npz"  # what -o writes; JSON lines go to stdout
        print(f"note: --output writes {kind} format whatever its name; leave it out for JSON lines", file=sys.stderr)
    encode = {"multi-vector": _encode_multi_vector, "sparse": _encode_sparse}.get(task, _encode_single_vector)
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(_output_file(args.output)) if args.output else None
        written = encode(args, texts, output)
    if args.output:
        print(f"wrote {written} to {args.output}", file=sys.stderr)
    return 0


# Texts a dense model embeds per call of a bulk ``encode``: each part is written before the next is embedded, so a
# corpus of millions of lines needs memory for a part's vectors, not the whole array's (200,000 lines: 307 MB), and
# --progress moves every ~10 s at 700 texts/s; within 8,192 texts the length sort pads as little as over all.
TEXTS_PER_PART = 8_192


def _encode_single_vector(args: argparse.Namespace, texts: list[str], output: IO[bytes] | None) -> str:
    """One embedding per text, as JSON lines or into ``output`` (.npy), ``TEXTS_PER_PART`` texts at a time; returns
    what it holds."""
    from fastembed_rt.models import SentenceTransformer
    from fastembed_rt.pipeline import EncodeStats, progress

    model = SentenceTransformer(args.artifact, provider=args.provider, variant=args.variant)
    # JSON lines go out part by part: an over-long line is refused before the first is printed (an -o file is only
    # renamed into place at the end, so there each part's own check is enough)
    if output is None and args.long_inputs == "error" and len(texts) > TEXTS_PER_PART:
        counts = np.asarray(model.count_tokens(texts, prompt_name=args.prompt_name))
        over = np.flatnonzero(counts > model.max_seq_length)
        if over.size:
            raise LongInputError({int(i): int(counts[i]) for i in over}, model.max_seq_length, "'truncate' or 'chunk'")
    stats: list[EncodeStats] = []
    shape: tuple[int, ...] = ()
    bar = progress(len(texts), args.progress, "Texts", "text")
    try:
        for start in range(0, len(texts) or 1, TEXTS_PER_PART):  # once for no texts: the (0, dim) array
            part = texts[start : start + TEXTS_PER_PART]
            try:
                embeddings = model.encode(
                    part,
                    prompt_name=args.prompt_name,
                    normalize_embeddings=args.normalize,
                    truncate_dim=args.truncate_dim,
                    precision=args.precision,
                    **_batching(args),
                )
            except LongInputError as exc:  # named by its line in the whole input
                raise exc.at(list(range(start, start + len(part)))) from None
            assert isinstance(embeddings, np.ndarray)
            stats.append(model.last_encode_stats)
            if not shape:  # the whole array's header, once its width and type are known
                shape = (len(texts), *embeddings.shape[1:])
                if output is not None:
                    header = {"descr": np.lib.format.dtype_to_descr(embeddings.dtype), "fortran_order": False}
                    np.lib.format.write_array_header_1_0(output, {**header, "shape": shape})
            if output is not None:
                output.write(np.ascontiguousarray(embeddings).tobytes())
            else:
                floats = embeddings.dtype == np.float32
                for text, row in zip(part, embeddings):
                    values = _exact(row) if floats else row.tolist()
                    print(json.dumps({"text": text, "embedding": values}))
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    _note_truncated(model, stats=EncodeStats.total(stats))
    return f"{shape[0]}×{shape[1]} {embeddings.dtype}"


def _batching(args: argparse.Namespace) -> dict[str, Any]:
    """The options every text-taking command passes on as they are: batch size and long-input handling."""
    from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP

    overlap = DEFAULT_CHUNK_OVERLAP if args.chunk_overlap is None else args.chunk_overlap
    return {"batch_size": args.batch_size, "long_inputs": args.long_inputs, "chunk_overlap": overlap}


def _note_truncated(model: Any, length: int | None = None, stats: Any = None) -> None:
    """How many texts the last call (or ``stats``: several calls') cut, on stderr; ``length``: where a multi-vector
    model cut them (its query or document length; it has no --long-inputs chunk)."""
    stats = stats or model.last_encode_stats
    if stats.truncated:
        advice = "(--long-inputs chunk reads all of them)" if length is None else "(token vectors are not chunked)"
        print(
            f"note: {stats.truncated} of {stats.texts} texts were truncated to {length or model.max_seq_length} "
            f"tokens {advice}",
            file=sys.stderr,
        )


def _encode_sparse(args: argparse.Namespace, texts: list[str], output: IO[bytes] | None) -> str:
    """A SPLADE model's sparse rows: JSON lines of ``indices`` and ``values`` (with ``tokens``), or a scipy .npz."""
    from fastembed_rt.models import SparseEncoder

    model = SparseEncoder(args.artifact, provider=args.provider, variant=args.variant)
    # inference-free SPLADE: queries are a lookup, documents the graph (a model may have no default route)
    encode = model.encode_query if args.query else model.encode_document
    rows = encode(
        texts,
        prompt_name=args.prompt_name,
        max_active_dims=args.max_active_dims,
        sparse_format="scipy" if output is not None else "arrays",
        show_progress_bar=args.progress,
        **_batching(args),
    )
    _note_truncated(model)
    if output is not None:
        import scipy.sparse

        scipy.sparse.save_npz(output, rows)
    else:
        for i, text in enumerate(texts):
            indices, values = rows.row(i)
            order = np.argsort(-values, kind="stable")  # the heaviest terms first, as decode lists them
            ids = indices[order].tolist()
            tokens = [model.tokenizer.id_to_token(index) for index in ids]
            weights = _exact(values[order])
            print(json.dumps({"text": text, "indices": ids, "values": weights, "tokens": tokens}))
    return f"{rows.shape[0]}×{rows.shape[1]} sparse float32, {rows.nnz} active"


def _rank(args: argparse.Namespace) -> int:
    """Documents reranked for a query, best first, as JSON lines: a cross-encoder's scores or a multi-vector
    model's late-interaction ones."""
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.models import CrossEncoder, MultiVectorEncoder

    documents = _read_texts(args)
    if not documents:
        print("error: no documents: pass them after the query or with --file FILE ('-' for stdin)", file=sys.stderr)
        return 2
    task = load_manifest(resolve_artifact(args.artifact)).task
    options = {"provider": args.provider, "variant": args.variant}
    if task == "multi-vector":
        if args.long_inputs != "truncate" or args.raw:
            print(
                "error: --long-inputs and --raw are for cross-encoders (token vectors are truncated)", file=sys.stderr
            )
            return 2
        late = MultiVectorEncoder(args.artifact, **options)
        ranked = late.rank(args.query, documents, top_k=args.top_k, return_documents=True, batch_size=args.batch_size)
        _note_truncated(late, late._max_length("document") or late.max_seq_length)  # as --help says: on stderr
    elif task == "cross-encoder":
        model = CrossEncoder(args.artifact, **options)
        if model.num_labels != 1:  # the library's error names predict(), which this command line has not
            print(
                f"error: {args.artifact} scores {model.num_labels} labels per pair (a classifier); rank orders "
                "documents by a reranker's one score (in Python: CrossEncoder.predict gives every label's)",
                file=sys.stderr,
            )
            return 2
        activation = "identity" if args.raw else None
        ranked = model.rank(
            args.query, documents, top_k=args.top_k, return_documents=True, activation_fn=activation, **_batching(args)
        )
        _note_truncated(model)
    else:
        print(
            f"error: {args.artifact} holds {task.a_model}; rank takes a cross-encoder or a multi-vector model "
            "(`fastembed-rt encode` embeds texts)",
            file=sys.stderr,
        )
        return 2
    for hit in ranked:
        print(json.dumps({"corpus_id": hit["corpus_id"], "score": _exact(hit["score"])[0], "text": hit["text"]}))
    return 0


def _long_input_arguments(p: argparse.ArgumentParser) -> None:
    from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP

    p.add_argument(
        "--long-inputs",
        default="truncate",
        choices=["truncate", "error", "chunk"],
        help="texts over the model's max_seq_length: truncate (default, counted on stderr), error, or chunk "
        "(windows pooled into one result)",
    )
    p.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=None,  # given without --long-inputs chunk it would do nothing: refused (main)
        help=f"tokens two windows share, with --long-inputs chunk (default {DEFAULT_CHUNK_OVERLAP})",
    )


def _calibrate(args: argparse.Namespace) -> int:
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.calibration import calibrate_artifact
    from fastembed_rt.models import MultiVectorEncoder, SentenceTransformer

    texts = _read_lines(args.texts)
    kind = (
        MultiVectorEncoder
        if load_manifest(resolve_artifact(args.artifact)).task == "multi-vector"
        else SentenceTransformer
    )
    model = kind(args.artifact, provider="cpu")  # the reference engine fixes the ranges
    entry = calibrate_artifact(model, texts, source=f"file:{Path(args.texts).name}" if args.texts != "-" else "stdin")
    print(f"calibrated {args.artifact} on {entry['texts']} distinct texts; int8/uint8 outputs now use these ranges")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.speed import incomparable_rates, measure_speed, record_speed, speed_texts

    manifest = load_manifest(resolve_artifact(args.artifact))
    variants = _variant_names(args.variants, "time every one")
    texts = [t for t in (_read_lines(args.file) if args.file else speed_texts(manifest)) if t.strip()][: args.texts]
    workload = "default"
    if args.file:  # a record's rates are compared only with rates of the same texts
        digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:12]
        workload = f"file {Path(args.file).name}: {len(texts)} texts, sha256 {digest}"
    if variants:  # rates timed on other texts are dropped, not kept: those variants are timed again, so that the
        # record still times them (without them `auto` fell back to the static preference)
        stale = incomparable_rates(manifest, workload=workload, texts=len(texts), threads=args.threads)
        if others := [name for name in stale if name not in variants]:
            print(
                f"note: timing {', '.join(others)} as well: this CPU's record timed them on other texts or another "
                "batch size (an export's record: its held-out texts), or at another thread count or on another CPU "
                "model of this class, so their rates cannot be kept beside these",
                file=sys.stderr,
            )
            variants += others
    record = measure_speed(
        manifest,
        texts,
        variants=variants,
        rounds=args.rounds,
        threads=args.threads,
        workload=workload,
    )
    _print_speed(record_speed(manifest, record))
    return 0


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _provider_names(value: str | None) -> list[str] | None:
    """``--providers`` as names (None: not given); one naming none (``,``) benched every provider: refused."""
    return _listed(value, "--providers", "provider", "bench every one available")


def _variant_names(value: str | None, otherwise: str) -> list[str] | None:
    """``--variants`` as names (None: not given); one naming none (``,`` or ``""``): `export` built every default
    variant for it, as if it were not given: refused."""
    return _listed(value, "--variants", "variant", otherwise)


def _listed(value: str | None, option: str, noun: str, otherwise: str) -> list[str] | None:
    """A comma-separated option's names (None: not given), or an ``InputError`` for one that names none."""
    if value is None:
        return None
    names = _csv(value)
    if not names:
        raise InputError(f"{option} {value!r} names no {noun}; leave it out to {otherwise}")
    return names


def _whole_number(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1 (a count of texts, rounds, threads)."""
    return _whole_number(value, 1)


def non_negative_int(value: str) -> int:
    """An argparse type: a whole number of at least 0 (tokens two windows share)."""
    return _whole_number(value, 0)


def _positive_ints(value: str) -> list[int]:
    """An argparse type: comma-separated whole numbers of at least 1 (batch sizes)."""
    try:
        numbers = [positive_int(v.strip()) for v in value.split(",") if v.strip()]
    except argparse.ArgumentTypeError:
        numbers = []
    if not numbers:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers >= 1 such as 8,32, got {value!r}")
    return numbers


def _bench(args: argparse.Namespace) -> int:
    from fastembed_rt.artifact import load_manifest
    from fastembed_rt.bench import bench_artifact, format_table, machine_name, run_peak_note, write_jsonl

    texts = None
    if args.file:
        texts = [t for t in _read_lines(args.file) if t.strip()]
        if not texts:
            print(f"error: {args.file} holds no texts", file=sys.stderr)
            return 2
    root = resolve_artifact(args.artifact)
    task = load_manifest(root).task
    if task != "embedding":  # every row failed on opening it, and the command exited 0
        print(
            f"error: bench times embedding artifacts; {args.artifact} holds {task.a_model}: `fastembed-rt tune "
            f"{args.artifact}` times its variants",
            file=sys.stderr,
        )
        return 2
    with contextlib.ExitStack() as stack:
        jsonl = stack.enter_context(_output_file(args.jsonl, "w")) if args.jsonl else None
        rows = bench_artifact(
            root,
            texts=texts,
            batch_sizes=args.batch_sizes,
            providers=_provider_names(args.providers),
            variants=_variant_names(args.variants, "time every one a provider runs"),
            threads=args.threads,
            repeats=args.repeats,
            queries=args.queries,
            synthetic=(args.texts, args.words),
        )
        source = args.file or f"{args.texts} synthetic texts of ~{args.words} words"
        print(f"{args.artifact}: {source}; {rows[0].threads} threads, median of {args.repeats}; {machine_name()}\n")
        print(format_table(rows))
        if note := run_peak_note(rows):
            print(f"\n{note}")
        measured = [r for r in rows if r.workload == "texts" and r.sent_s]
        if measured:
            best = max(measured, key=lambda r: r.sent_s or 0.0)
            print(f"\nfastest in this run: {best.contender} at batch {best.batch} ({best.sent_s:.0f} sentences/s)")
        _print_speed(load_manifest(root))
        if jsonl is not None:
            write_jsonl(rows, jsonl)
    if args.jsonl:
        print(f"wrote {len(rows)} rows to {args.jsonl}", file=sys.stderr)
    if all(row.error for row in rows):
        print(f"error: every configuration failed; the first: {rows[0].error}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fastembed_rt.server.main import config_from_args, run

    return run(config_from_args(args), args.log_level)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve artifacts over HTTP, TEI- and OpenAI-compatible (fastembed-rt[server])")
    try:
        from fastembed_rt.server.main import add_arguments
    except ImportError as exc:
        message = str(exc)
        p.description = f"Not available here: {message}"
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=lambda _: _missing(message))
        return
    add_arguments(p)
    p.set_defaults(func=_serve)


def _missing(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from fastembed_rt import __version__

    parser = argparse.ArgumentParser(prog="fastembed-rt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastembed-rt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a sentence-transformers model to a validated artifact")
    p.add_argument("model", help="model directory or hub id")
    p.add_argument("out", help="artifact directory to create")
    p.add_argument("--revision", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing artifact directory")
    p.add_argument(
        "--no-stsb",
        action="store_true",
        help="skip the STSb Spearman score in the manifest (STSb is still read, where found, for the parity texts and "
        "the int8/uint8 output calibration)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run code shipped in the model's repository (e.g. Alibaba-NLP/gte-*, Jina v2): read it first",
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated variants to build and validate (fp32 always); each ships only if it passes its "
        "gate. Bi-encoders: fp32,optimized,packed,fp16,int8,int8-avx2,openvino,openvino-bf16,openvino-int8 "
        "(default: these; int8-avx2 is int8 for x86 CPUs without VNNI), and the weight-only "
        "int8-weights,int4,openvino-int8-weights,openvino-int4 for large models, built only when named; "
        "cross-encoder and sparse: fp32,optimized,int8,int8-avx2 (default: fp32,optimized); multi-vector: fp32",
    )
    p.add_argument(
        "--task",
        choices=("auto", *(task.value for task in Task)),
        default="auto",
        help="bi-encoder, CrossEncoder reranker, SPLADE SparseEncoder or late-interaction MultiVectorEncoder "
        "(auto: read from the model directory)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser("encode", help="embed texts with an artifact")
    _artifact_argument(p)
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--file", help="read texts from FILE, one per line ('-' for stdin)")
    p.add_argument(
        "--field",
        help="read --file as JSON lines and take each object's FIELD as its text (texts with line breaks)",
    )
    p.add_argument(
        "--output",
        "-o",
        help="write this file, .npy format, instead of JSON lines (multi-vector models: .npz, a matrix per text; "
        "sparse models: scipy's .npz, scipy.sparse.load_npz reads it); the name is used as given, a symlink or a "
        "pipe written through",
    )
    p.add_argument(
        "--query",
        action="store_true",
        help="multi-vector and sparse models: encode as queries (encode_query: the query prompt; inference-free "
        "SPLADE: its query route); default: as documents (encode_document)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="most texts per batch (default 32)")
    p.add_argument("--prompt-name", default=None, help="a prompt the model defines (see `info`), put before each text")
    p.add_argument("--normalize", action="store_true", help="dense and multi-vector models: L2-normalize each vector")
    p.add_argument("--truncate-dim", type=positive_int, default=None, help="dense models: keep the first N dimensions")
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "int8", "uint8", "binary", "ubinary"],
        help="dense models: the embeddings' precision (int8/uint8 with the artifact's calibrated ranges)",
    )
    p.add_argument("--max-active-dims", type=positive_int, default=None, help="sparse models: keep the k largest")
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    _long_input_arguments(p)
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda[:N], tensorrt, openvino[:DEVICE]")
    p.add_argument(
        "--variant",
        default="auto",
        help="a variant from the manifest, auto (the fastest full-precision one timed on this CPU, else the "
        "provider's choice) or fastest (the fastest within its gate)",
    )
    p.set_defaults(func=_encode)

    p = sub.add_parser("rank", help="rerank documents for a query with a cross-encoder or multi-vector artifact")
    _artifact_argument(p)
    p.add_argument("query")
    p.add_argument("texts", nargs="*", metavar="documents", help="documents to rank")
    p.add_argument("--file", help="read documents from FILE, one per line ('-' for stdin)")
    p.add_argument("--field", help="read --file as JSON lines and take each object's FIELD as its document")
    p.add_argument("--top-k", type=positive_int, default=None, help="print only the k best")
    p.add_argument("--raw", action="store_true", help="cross-encoders: logits, not the model's activation")
    p.add_argument("--batch-size", type=positive_int, default=32)
    _long_input_arguments(p)
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda[:N], tensorrt, openvino[:DEVICE]")
    p.add_argument("--variant", default="auto", help="a variant from the manifest, auto or fastest")
    p.set_defaults(func=_rank)

    p = sub.add_parser("calibrate", help="fix the int8/uint8 output ranges from your own texts")
    _artifact_argument(p)
    p.add_argument("--texts", required=True, help="text file, one text per line ('-' for stdin)")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("bench", help="throughput and latency of an artifact on this machine")
    _artifact_argument(p)
    p.add_argument("--file", help="texts to encode, one per line ('-' for stdin); default: synthetic texts")
    p.add_argument("--texts", type=positive_int, default=1000, help="number of synthetic texts")
    p.add_argument("--words", type=positive_int, default=12, help="words per synthetic text (± 50 %%)")
    p.add_argument("--batch-sizes", type=_positive_ints, default="1,8,32,64", help="comma-separated encode batch sizes")
    p.add_argument("--providers", default=None, help="comma-separated providers (default: every one available)")
    p.add_argument("--variants", default=None, help="comma-separated variants (default: every one a provider runs)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: the CPUs available)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed passes per configuration (median, min–max)")
    p.add_argument("--queries", type=positive_int, default=100, help="single-text calls for p50/p99 latency")
    p.add_argument("--jsonl", help="also write the rows as JSON lines to this file")
    p.set_defaults(func=_bench)

    p = sub.add_parser(
        "tune", help="time an artifact's variants on this CPU, so that variant='auto'/'fastest' choose by it"
    )
    _artifact_argument(p)
    p.add_argument("--file", help="texts to time, one per line; default: STSb dev sentences, else synthetic texts")
    p.add_argument("--texts", type=positive_int, default=512, help="at most this many texts")
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated variants, timed with their engine's fp32 beside them (default: every one runnable here)",
    )
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="timed passes, interleaved across variants (best counts)"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: the CPUs available)")
    p.set_defaults(func=_tune)

    _add_serve(sub)

    p = sub.add_parser("info", help="show an artifact's manifest, variants and their fidelity")
    _artifact_argument(p)
    p.set_defaults(func=_info)
    return parser


def _artifact_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="an artifact directory, or a hub repo id holding one")
    p.add_argument(
        "--revision",
        default=None,
        help="when ARTIFACT is a hub repo id: the branch, tag or commit to load (default: main); the token is "
        "HF_TOKEN's or `hf auth login`'s",
    )


def _looks_like_option(item: str) -> bool:
    """Whether argparse would read ``item`` as an option: a leading "-", no space, not a negative number."""
    return item.startswith("-") and item != "-" and " " not in item and not re.fullmatch(r"-\d+(\.\d*)?|-\.\d+", item)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # Texts after an option (`encode A --normalize "a text"`, `rank A q --raw d1 d2`) are texts too: argparse fills a
    # subcommand's trailing list once, before the first option, and calls the rest unrecognized
    # (and so are those after a `--` there: `encode A --normalize -- -x`)
    texts = getattr(args, "texts", None)
    if rest and isinstance(texts, list):
        ends = rest.index("--") if "--" in rest else len(rest)
        # as argparse reads them before the first option: a "-" with a space after it ("- a bullet item") or a
        # negative number is a text; "-x" / "--flag" an option nobody knows (both were refused after an option)
        if unknown := [item for item in rest[:ends] if _looks_like_option(item)]:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        texts.extend(rest[:ends] + rest[ends + 1 :])
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    windowed = getattr(args, "func", None) in (_encode, _rank)  # serve's requests may ask for chunk themselves
    if windowed and args.chunk_overlap is not None and args.long_inputs != "chunk":
        # a run asking for overlapping windows got truncated texts, and its note pointed to chunking
        parser.error(f"--chunk-overlap applies to --long-inputs chunk (this run: --long-inputs {args.long_inputs})")
    try:
        if getattr(args, "revision", None) and hasattr(args, "artifact"):  # that revision's snapshot, for every step
            if local_path(args.artifact) is not None:
                print(
                    f"note: {args.artifact} is a local folder: --revision {args.revision} does not apply",
                    file=sys.stderr,
                )
            args.artifact = str(resolve_artifact(args.artifact, revision=args.revision))
        with _stop_on_sigterm():  # a `-o` file being written is left as it was, its staged copy removed
            return int(args.func(args))
    except FastEmbedError as exc:
        message = str(exc)
        if isinstance(exc, LongInputError):  # the library's argument, as this command spells it
            head, _, choices = message.partition("pass long_inputs=")
            message = f"{head}pass --long-inputs {choices.replace(chr(39), '')}"
            first = min(exc.tokens)  # named as the command counts them (from 1), not by its 0-based row
            message = message.replace(f"input {first} is", f"{_input_label(args, first)} is", 1)
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: one line, not a traceback
        return _stopped(exc)
    except BrokenPipeError:  # the reader went away (`fastembed-rt info A | head`): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 141  # 128 + SIGPIPE
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        print(f"error: cannot write the output: {exc.strerror}", file=sys.stderr)  # stdout on a full disk
        return 1
    except Exception as exc:
        # Ctrl-C or SIGTERM inside an import (onnxruntime's, while the model loads) comes out as that module's
        # ImportError "initialization failed", the interrupt its cause
        interrupt = _interrupt_in(exc)
        if interrupt is None:
            raise
        return _stopped(interrupt)


def _interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc`` (its cause or context, at any depth), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _stopped(exc: KeyboardInterrupt) -> int:
    """The one line and exit status of a command stopped by Ctrl-C (130) or SIGTERM (143)."""
    if isinstance(exc, _Terminated):
        print("stopped by SIGTERM", file=sys.stderr)
        return 128 + exc.signum
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
