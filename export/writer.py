"""The artifact writer: the one place that stages an artifact directory and writes its ``manifest.json``.

Exporters hand it data (the model's facts, tokenizer, graph contract, output stages or head) and
their validators' measurements; the writer

1. stages the artifact in a temporary directory beside the destination, which becomes the
   destination only when the export succeeds; on any error nothing is left (``stage_artifact``);
2. writes the fp32 graph and the manifest around it (``write_fp32``), and refuses the artifact when
   that graph misses its gate (``accept_fp32``: ``ParityError``, nothing is written);
3. builds every further variant with its builder and ships it only within its gate
   (``build_variants``). A candidate is listed in the manifest only while it is validated; a
   measured miss, or a graph the engine cannot load (an ONNX Runtime fusion that breaks one family), is
   recorded in ``rejected_variants`` and its files removed; any other exception is an error and fails the export;
4. times the shipped variants on this CPU and records it (``fastembed_rt.speed``), so that
   ``variant="auto"`` on a CPU of this class runs the fastest one, never one slower than fp32.

After export the runtime changes an artifact only through ``fastembed_rt.artifact.update_manifest`` (and
``fastembed_rt.calibration.calibrate_artifact``, which renames a calibration file and its manifest in together).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import glob
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from fastembed_rt.artifact import (
    SCHEMA_VERSION,
    GraphContract,
    Manifest,
    Task,
    TokenizerInfo,
    Variant,
    check_destination,
    file_sha256,
    load_manifest,
    user_path,
)
from fastembed_rt.errors import ArtifactError, ExportError, NotEnoughMemoryError, ParityError
from fastembed_rt.export.backbone import ExportedBackbone
from fastembed_rt.export.build import BuildContext, BuildResult, NotApplicable
from fastembed_rt.export.fidelity import Measured
from fastembed_rt.export.onnx_files import check_graph, data_file, external_data_file, link_graph, save_graph
from fastembed_rt.export.source import snapshot_commit
from fastembed_rt.export.validate import release_memory
from fastembed_rt.export.variants import VARIANTS, VariantSpec

__all__ = ["ArtifactWriter", "Measure", "check_destination", "finish_graph", "stage_artifact"]

logger = logging.getLogger("fastembed_rt.export")

# Two interleaved rounds over up to 256 held-out texts, cut to what fp32 runs in about 1.5 s: enough to
# order variants that differ by more than the machine's noise, and bounded for a model of any size.
SPEED_ROUNDS = 2
SPEED_ROUND_SECONDS = 1.5
BACKBONE_FILE = "onnx/backbone.onnx"
GRAPH_FILE = "onnx/model.onnx"

# (variant, final, checked) -> its measured agreement with PyTorch. ``final``: the built variant itself, not
# a candidate its builder is trying (the bi-encoder scores STSb only then). ``checked``: with ``final``, the
# measurement of this very file (same graph, weights and engine properties) as the candidate the builder
# accepted; the final measurement then adds only what candidates skip instead of repeating the run.
Measure = Callable[[VariantSpec[Any], bool, Measured | None], Measured]


class Validated(Measured, Protocol):
    """A measurement that lists every failing check (the fp32 graph's)."""

    failures: list[str]


def finish_graph(model: Any, counts: dict[str, Any]) -> dict[str, Any]:
    """Stamp a graph the artifact ships as fastembed-rt's and check it; returns ``counts`` plus its node count."""
    import onnx

    model.producer_name = "fastembed-rt"
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        check_graph(model)  # with external data: checked from its file once saved (``onnx_files``)
    return {**counts, "graph_nodes": len(model.graph.node)}


@contextlib.contextmanager
def stage_artifact(
    out: Path, overwrite: bool, *, model: str | os.PathLike[str], revision: str | None, model_dir: Path | None = None
) -> Iterator[ArtifactWriter]:
    """A writer on a fresh temporary directory beside ``out`` (with ``onnx/``) that becomes ``out`` on success.

    ``out`` is checked first (``check_destination``). On any exception the temporary directory is removed and
    ``out`` is left as it was; on success the backbone graph (``BACKBONE_FILE``), which only the variant builders
    need, is removed first, then the earlier ``out`` (``overwrite``) is moved aside, the new artifact renamed into
    its place, and only then the earlier one deleted.

    Raises:
        ExportError: ``out`` cannot be written or replaced (``check_destination``), or its folder is not writable.
    """
    out = out.absolute()  # "." has no name to stage beside; "link/.." kept for the OS to read (abspath cut it)
    check_destination(out, overwrite, model=model)
    # the process id alone is not this export's: every container of an export image is process 1, and two of them
    # writing to one shared folder removed each other's staging folder
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.parent / f"{_staging_prefix(out)}.tmp-{token}"
    lock = None
    swapped = False
    try:  # from the folder's creation on, any exception (Ctrl-C, SIGTERM: see cli) removes it
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(out)
            tmp.mkdir()
            (tmp / "onnx").mkdir()
            lock = _hold_lock(tmp / STAGING_LOCK)
        except OSError as exc:
            raise ExportError(
                f"cannot create the artifact {out}: {exc.strerror or exc} ({exc.filename}); choose an output "
                "directory in a folder this user can write"
            ) from exc
        yield ArtifactWriter(tmp, str(model), revision, None if model_dir is None else snapshot_commit(model_dir))
        (tmp / BACKBONE_FILE).unlink(missing_ok=True)
        (tmp / data_file(BACKBONE_FILE)).unlink(missing_ok=True)
        (tmp / STAGING_LOCK).unlink(missing_ok=True)  # held until the process ends; not part of the artifact
        if not overwrite and not out.is_symlink():
            _rename_into_place(tmp, out)
            return
        earlier = out.parent / f"{_staging_prefix(out)}.replaced-{token}"
        replacing = out.exists() or out.is_symlink()  # a link (to an empty folder, or dangling) is replaced
        if replacing:
            out.rename(earlier)
        try:
            tmp.rename(out)
        except BaseException:
            if replacing:
                earlier.rename(out)
            raise
        swapped = True
        if earlier.is_symlink():  # ``out`` was a link: the link goes, the folder it named stays as it was
            earlier.unlink()
        else:  # stopped halfway (Ctrl-C), what is left is removed by the next export beside ``out``
            shutil.rmtree(earlier, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if swapped:  # ``out`` holds the new artifact already: the caller must not say it is as it was
            exc.artifact_written = True  # type: ignore[attr-defined]
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _rename_into_place(tmp: Path, out: Path) -> None:
    """``tmp`` renamed to ``out`` where ``out`` is still missing or an empty folder, in one step: an artifact another
    export put there meanwhile (two exports to one new folder both passed ``check_destination``; the later one
    replaced the earlier's artifact and both said they had written it) makes this export fail instead."""
    try:
        tmp.rename(out)  # rename(2): fails where out is a folder that holds anything (or a file)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
        raise ExportError(
            f"{out} was filled while this export ran (another export to the same folder?); this export wrote nothing "
            "there: export again with --overwrite to replace it"
        ) from None


# A file in every staging folder that its export holds locked (``flock``) while it runs: a staging folder whose lock
# can be taken belongs to an export that was killed (SIGKILL, the OOM killer, a lost machine) before it could remove
# it, and the next export beside it removes it. Process ids would not do: a folder shared by containers or machines
# holds exports whose ids mean nothing here.
STAGING_LOCK = ".export.lock"
STAGING_GRACE_SECONDS = 60.0


def _hold_lock(path: Path) -> int | None:
    """``path`` created and locked for this process: its descriptor (None where ``flock`` does not exist)."""
    if fcntl is None:  # Windows: abandoned staging folders are left for the user
        return None
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def _staging_prefix(out: Path) -> str:
    """The start of the hidden names beside ``out`` that an export stages in: ``.<name>``, cut so that a name of up
    to NAME_MAX (255 bytes) still leaves room for the suffix (the staging folder's name was too long to create)."""
    name = out.name
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return f".{name}"


def _remove_abandoned(out: Path) -> None:
    """Remove the staging folders beside ``out`` (``.<name>.tmp-*``) of exports that are no longer running, and
    what an ``--overwrite`` stopped while deleting the artifact it replaced left (``.<name>.replaced-*``)."""
    prefix = glob.escape(_staging_prefix(out))
    for folder in out.parent.glob(f"{prefix}.replaced-*"):
        try:  # its export renamed it there: one that is still swapping did so within the last moments
            if folder.is_symlink() or time.time() - folder.lstat().st_ctime < STAGING_GRACE_SECONDS:
                continue
        except OSError:
            continue
        logger.info("removing %s, left by an export that was stopped while it removed the artifact it replaced", folder)
        shutil.rmtree(folder, ignore_errors=True)
    if fcntl is None:
        return
    for folder in out.parent.glob(f"{prefix}.tmp-*"):
        try:
            if time.time() - (folder / STAGING_LOCK).stat().st_mtime < STAGING_GRACE_SECONDS:
                continue  # just created: its export may not have locked it yet
            descriptor = os.open(folder / STAGING_LOCK, os.O_RDWR)
        except OSError:  # no lock file: not (or no longer) a staging folder of this kind; left alone
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: that export is running
            continue
        finally:
            os.close(descriptor)
        logger.info("removing %s, left by an export that was stopped before it finished", folder)
        shutil.rmtree(folder, ignore_errors=True)


class ArtifactWriter:
    """Writes one staged artifact (``root``): its files and every version of its manifest.

    Each change starts from the manifest on disk, so what the runtime writes in between
    (calibration) is kept.
    """

    def __init__(self, root: Path, model: str, revision: str | None, commit: str | None = None) -> None:
        self.root = root
        self.backbone = root / BACKBONE_FILE
        self._model = model
        self._revision = revision
        self._commit = commit  # the hub commit a hub id was downloaded at

    def write_tokenizer(self, st_model: Any) -> TokenizerInfo:
        """Save ``st_model[0]``'s tokenizer as sentence-transformers configured it; describe it for the manifest.

        ``tokenizer.json`` is written without padding and truncation: the runtime does both itself.
        """
        from tokenizers import Tokenizer

        hf_tokenizer = st_model[0].tokenizer
        saved = hf_tokenizer.save_pretrained(str(self.root))
        backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        backend.no_truncation()
        backend.save(str(self.root / "tokenizer.json"))
        return TokenizerInfo(
            file="tokenizer.json",
            vocab_size=backend.get_vocab_size(with_added_tokens=True),
            sha256=file_sha256(self.root / "tokenizer.json"),
            files=tuple(sorted({Path(p).name for p in saved} | {"tokenizer.json"})),
            max_seq_length=int(st_model.max_seq_length),
            pad_token_id=int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0),
            special_token_ids=tuple(int(i) for i in hf_tokenizer.all_special_ids),
            truncation_side=str(hf_tokenizer.truncation_side),
            padding_side=str(hf_tokenizer.padding_side),
            prompts=dict(st_model.prompts or {}),
            default_prompt_name=st_model.default_prompt_name,
            split_special_tokens=bool(getattr(hf_tokenizer, "split_special_tokens", False)),
        )

    def write_fp32(
        self,
        task: Task,
        *,
        architecture: str,
        modules: list[str],
        tokenizer: TokenizerInfo,
        graph: GraphContract,
        stages: dict[str, Any],
        similarity_fn: str,
        dim: int,
        append_stages: Callable[[Any], dict[str, Any]],
        backbone_shape: dict[str, int] | None = None,
    ) -> None:
        """Grow the backbone graph with ``append_stages`` into the fp32 graph; write the manifest that lists it.

        ``backbone_shape`` (``ExportedBackbone.shape``) goes to the manifest's ``source.backbone``.
        """
        import onnx

        path = self.root / GRAPH_FILE
        if external_data_file(self.backbone) is None:
            model = onnx.load(str(self.backbone))
            counts = append_stages(model)
            weights = save_graph(model, path, external=False)
        else:  # the backbone's weights are not read: its data file becomes the fp32 graph's
            model = onnx.load(str(self.backbone), load_external_data=False)
            counts = append_stages(model)
            weights = link_graph(model, self.backbone, path)
        del model
        weights_file = None if weights is None else f"{Path(GRAPH_FILE).parent}/{weights}"
        fp32 = self._variant(VARIANTS[task]["fp32"], BuildResult(GRAPH_FILE, "none", counts, weights_file=weights_file))
        local = user_path(self._model).is_dir()
        Manifest(
            root=self.root,
            task=task,
            source={
                "model": self._model,
                "revision": None if local else self._revision,  # a local folder is read as it is (source.py)
                "commit": None if local else self._commit,  # what the revision (a branch, a tag, none) was then
                # a local directory's path is no hub id (the model card names a hub id as its base_model)
                "local": local,
                "architecture": architecture,
                "backbone": dict(backbone_shape or {}),
                "modules": modules,
                "library_versions": _library_versions(),
            },
            tokenizer=tokenizer,
            graph=graph,
            stages=stages,
            similarity_fn=similarity_fn,
            dim=dim,
            variants=(fp32,),
            schema_version=SCHEMA_VERSION,
        ).write()

    def accept_fp32(self, fidelity: Validated, gate: object) -> None:
        """Record the fp32 graph's fidelity, or refuse the whole artifact when any check failed.

        Raises:
            ParityError: listing every failing check; nothing is written.
        """
        if fidelity.failures:
            raise ParityError(
                f"exported graph of {self._model} misses the fp32 gate ({gate}) on {len(fidelity.failures)} "
                "checks; nothing was written:\n  " + "\n  ".join(fidelity.failures),
                fidelity.failures,
            )
        manifest = load_manifest(self.root)
        fp32 = replace(manifest.variants[0], fidelity=_recorded(fidelity))
        replace(manifest, variants=(fp32, *manifest.variants[1:])).write()

    def build_variants(
        self,
        specs: Sequence[VariantSpec[Any]],
        measure: Measure,
        *,
        backbone: ExportedBackbone,
        calibration_texts: Sequence[str | tuple[str, str]],
        append_stages: Callable[[Any], dict[str, Any]],
        speed_texts: Sequence[str],
    ) -> None:
        """Build, validate and gate each variant in ``specs`` (fp32 excluded); ship those within their gate.

        ``append_stages``: what ``write_fp32`` grew the backbone with, for builders that start from
        the backbone. ``calibration_texts``: for builders that calibrate (int8 activation scales).
        ``speed_texts``: what the shipped variants are timed on, when there is more than one.
        """
        # The objects alive now (the libraries' modules, torch's and the caller's) are frozen out of the collections
        # below: a full collection scanned them in 0.3-0.4 s after every builder, 3 s of a 90 s MiniLM export.
        gc.freeze()
        try:
            for spec in specs:
                started = time.perf_counter()
                if self._build_variant(spec, measure, backbone, calibration_texts, append_stages):
                    logger.info("variant %s built and validated in %.1f s", spec.name, time.perf_counter() - started)
                # What a builder held may sit in reference cycles (model wrappers): free it before the next builder
                # loads its own copy (size-true Qwen3-0.6B peaked at 18.5 GB while openvino-int4 loaded its graph
                # and int4's 13 GB were not yet freed), and hand the freed heap back to the OS.
                release_memory()
        finally:
            gc.unfreeze()
        self._record_speed(speed_texts)

    def _record_speed(self, texts: Sequence[str]) -> None:
        import tempfile

        from fastembed_rt.machine import this_cpu
        from fastembed_rt.speed import measure_speed, record_speed, summarize

        manifest = load_manifest(self.root)
        if len(manifest.variants) < 2 or not texts:
            return
        if not this_cpu().isa:  # a record of unknown CPU features would match no CPU
            logger.info("variants not timed: this CPU's instruction set cannot be read")
            return
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fastembed-rt-speed-") as cache:
            record = measure_speed(
                manifest,
                texts,
                rounds=SPEED_ROUNDS,
                source="export",
                provider_cache_dir=cache,
                round_seconds=SPEED_ROUND_SECONDS,
                cache=False,
            )
        record_speed(manifest, record)
        ranking = ", ".join(f"{name} {rate:.0f}" for name, rate, _ in summarize(record))
        elapsed = time.perf_counter() - started
        logger.info("variants timed on %s in %.1f s: %s sentences/s", record.cpu, elapsed, ranking)

    def _build_variant(
        self,
        spec: VariantSpec[Any],
        measure: Measure,
        backbone: ExportedBackbone,
        calibration_texts: Sequence[str | tuple[str, str]],
        append_stages: Callable[[Any], dict[str, Any]],
    ) -> bool:
        """Ship ``spec``'s variant (True) or record why it missed its gate (False)."""
        if spec.build is None:
            raise ExportError(f"variant {spec.name} has no builder: it is the graph the exporter writes itself")
        base = load_manifest(self.root)
        candidates: list[str] = []
        measured: list[Measured] = []
        accepted: dict[tuple[Any, ...], Measured] = {}  # what makes a run identical -> the candidate's measurement

        def check(file: str) -> list[str]:
            candidates.append(file)
            candidate = self._variant(spec, BuildResult(file, "candidate"))
            measured.append(self._measure(base, spec, candidate, measure, False))
            misses = spec.gate.check(measured[-1])
            if not misses:
                accepted[self._run_key(candidate)] = measured[-1]
            return misses

        context = BuildContext(self.root, self.root / GRAPH_FILE, backbone, calibration_texts, append_stages, check)
        try:
            result = spec.build(context)
        except ParityError as miss:  # every candidate the builder tried missed the gate
            self._reject(base, spec, [str(miss)], measured[-1] if measured else None, candidates)
            return False
        except NotApplicable as reason:
            logger.warning("variant %s is not built for this model: %s", spec.name, reason)
            self._reject(base, spec, [f"not applicable: {reason}"], None, candidates, log=False)
            return False
        except (ArtifactError, NotEnoughMemoryError) as unloadable:  # one variant lost, not the artifact
            self._reject(base, spec, [f"the engine cannot load it: {unloadable}"], None, candidates)
            return False
        built = self._variant(spec, result)
        files = [*candidates, result.file, result.weights_file]
        checked = accepted.get(self._run_key(built)) if accepted else None  # no hashing when nothing was checked
        try:
            fidelity = self._measure(base, spec, built, measure, True, checked)
        except (ArtifactError, NotEnoughMemoryError) as unloadable:
            self._reject(base, spec, [f"the engine cannot load it: {unloadable}"], None, files)
            return False
        misses = spec.gate.check(fidelity)
        if misses:
            self._reject(base, spec, misses, fidelity, files)
            return False
        replace(base, variants=(*base.variants, replace(built, fidelity=_recorded(fidelity)))).write()
        return True

    def _measure(
        self,
        base: Manifest,
        spec: VariantSpec[Any],
        variant: Variant,
        measure: Measure,
        final: bool,
        checked: Measured | None = None,
    ) -> Measured:
        """``measure`` the variant while the manifest lists it (so the runtime can load it), then unlist it."""
        replace(base, variants=(*base.variants, variant)).write()
        try:
            return measure(spec, final, checked)
        finally:
            base.write()

    def _reject(
        self,
        base: Manifest,
        spec: VariantSpec[Any],
        reasons: list[str],
        fidelity: Measured | None,
        files: Sequence[str | None],
        *,
        log: bool = True,
    ) -> None:
        if log:
            logger.warning("variant %s misses its gate and is not shipped: %s", spec.name, "; ".join(reasons))
        for file in files:
            if file is not None:
                (self.root / file).unlink(missing_ok=True)
                (self.root / data_file(file)).unlink(missing_ok=True)
        rejected: dict[str, Any] = {"name": spec.name, "reasons": reasons}
        if fidelity is not None:
            rejected["fidelity"] = fidelity.to_dict()
        replace(base, rejected_variants=(*base.rejected_variants, rejected)).write()

    def _run_key(self, variant: Variant) -> tuple[Any, ...]:
        """What decides a variant's outputs at run time: its graph, the weights that load with it (a candidate's
        entry names none) and the engine's properties."""
        path = self.root / variant.file
        weights = path.with_suffix(".bin") if path.suffix == ".xml" else external_data_file(path)
        if variant.weights_file is not None and weights == self.root / variant.weights_file:
            weights_sha256 = variant.weights_sha256  # hashed for the entry already (a built variant's)
        else:
            weights_sha256 = file_sha256(weights) if weights is not None and weights.is_file() else None
        return variant.sha256, weights_sha256, tuple(sorted(variant.engine_properties.items()))

    def _variant(self, spec: VariantSpec[Any], result: BuildResult) -> Variant:
        path = self.root / result.file
        weights = None if result.weights_file is None else self.root / result.weights_file
        return Variant(
            name=spec.name,
            file=result.file,
            format=spec.format,
            precision=spec.precision,
            optimization=result.optimization,
            size=path.stat().st_size,
            sha256=file_sha256(path),
            stage_counts=result.details,
            engine_properties=result.engine_properties,
            weights_file=result.weights_file,
            weights_size=None if weights is None else weights.stat().st_size,
            weights_sha256=None if weights is None else file_sha256(weights),
        )


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for package in ("fastembed-rt", "torch", "transformers", "sentence-transformers", "onnx", "onnxruntime"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def _recorded(fidelity: Measured) -> dict[str, Any]:
    """A variant's fidelity as the manifest keeps it, with the CPU it was measured on: an engine whose kernels
    change with the ISA (OpenVINO's 8-bit products without VNNI) computes those numbers only on its class."""
    from fastembed_rt.machine import this_cpu

    return {**fidelity.to_dict(), "validated_on": this_cpu().to_record()}
