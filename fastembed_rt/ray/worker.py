"""What a Ray worker needs to open a model: the artifact on its own node, and the CPUs Ray gave it.

The driver describes the artifact once (``ship_artifact``); every actor or replica opens it through
``local_artifact``, wherever it runs::

    driver                                          worker, on any node
    ──────                                          ───────────────────
    hub repo id ──────────────────────────────────► resolved there as locally (hub cache, HF_HUB_OFFLINE)
    local directory: manifest read, the files the   the same directory, when this node sees it with the
      provider loads put in the object store in       same manifest bytes and file sizes: used in place
      chunks of 64 MiB, with their sha256 ─────────► else fetched into $FASTEMBED_RT_CACHE/artifacts/<manifest
                                                      sha256>, every file checked against its sha256 and
                                                      each graph against the manifest's checksums, then
                                                      renamed into place: the actors of a node share one copy

The user never copies files, and a worker never runs a file that differs from the driver's.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastembed_rt.artifact import (
    MANIFEST_FILE,
    Manifest,
    Variant,
    artifact_files,
    load_manifest,
    local_path,
    verify_variant_file,
)
from fastembed_rt.errors import ArtifactError
from fastembed_rt.providers import choose_variant, provider_spec
from fastembed_rt.providers.base import cache_root
from fastembed_rt.providers.threads import available_cpus

__all__ = ["ShippedArtifact", "ShippedFile", "assigned_cpus", "local_artifact", "ship_artifact"]

# Object store chunk size: a multi-GB graph never needs one object (or one bytes copy) of its whole size.
_CHUNK_BYTES = 64 << 20


@dataclass(frozen=True)
class ShippedFile:
    """One file of a shipped artifact: its path under the artifact root, size, sha256 and object store chunks."""

    path: str
    size: int
    sha256: str
    chunks: tuple[Any, ...]


@dataclass(frozen=True)
class ShippedArtifact:
    """An artifact as the driver named it, and how a worker that cannot see it gets it.

    ``source`` is a hub repo id (``files`` empty: each worker resolves it) or the driver's absolute
    artifact directory; ``manifest_sha256`` identifies that artifact's exact manifest. ``variant``: the
    variant the driver chose for a named provider, which every worker runs: a worker on another CPU class
    would choose by its own speed record (``fastembed_rt.speed``), and one job's rows must come from one graph.
    """

    source: str
    manifest_sha256: str = ""
    files: tuple[ShippedFile, ...] = ()
    variant: str | None = None


def _shipped_variants(manifest: Manifest, provider: str, variant: str) -> list[Variant]:
    """The variants a worker may open: the one ``provider`` picks, or every one for provider ``auto``
    (which picks on the worker, perhaps a GPU node)."""
    if provider.partition(":")[0] == "auto":
        return [manifest.variant(variant)] if variant != "auto" else list(manifest.variants)
    return [choose_variant(provider_spec(provider), manifest, variant).variant]


def ship_artifact(model: str | os.PathLike[str], *, provider: str = "cpu", variant: str = "auto") -> ShippedArtifact:
    """Describe ``model`` for workers: a hub repo id as is; a local artifact directory read and put in
    Ray's object store (the manifest, tokenizer and calibration files, and the variants ``provider``
    can open). Needs a Ray connection (``ray.init`` is called if there is none), held as long as the
    returned object lives.

    Raises:
        ArtifactError: the directory is not a readable artifact.
        ProviderError: ``variant`` cannot run on ``provider``.
    """
    path = local_path(model)
    if path is None:
        return ShippedArtifact(str(model))
    import ray

    root = path.resolve()
    manifest = load_manifest(root)
    shipped = _shipped_variants(manifest, provider, variant)
    for chosen in shipped:
        verify_variant_file(manifest, chosen)  # present and of its size; full checksums on the worker
    files = []
    for name in artifact_files(manifest, shipped):
        digest, chunks = hashlib.sha256(), []
        with (root / name).open("rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
                digest.update(block)
                chunks.append(ray.put(block))
        files.append(ShippedFile(name, (root / name).stat().st_size, digest.hexdigest(), tuple(chunks)))
    pinned = shipped[0].name if len(shipped) == 1 else None
    return ShippedArtifact(str(root), files[0].sha256, tuple(files), pinned)


def _complete(root: Path, shipped: ShippedArtifact) -> bool:
    """Whether ``root`` holds the shipped artifact: the same manifest bytes and every file at its size."""
    try:
        if hashlib.sha256((root / MANIFEST_FILE).read_bytes()).hexdigest() != shipped.manifest_sha256:
            return False
        return all((root / f.path).stat().st_size == f.size for f in shipped.files)
    except OSError:
        return False


_CHECKED: set[tuple[str, str]] = set()  # copies of the cache whose every file this process hashed


def _fingerprint(shipped: ShippedArtifact) -> str:
    """A name for exactly these files: each variant set shipped from one artifact gets its own copy (one folder per
    manifest took one set's files, then failed every job that shipped another with a bare OSError)."""
    digest = hashlib.sha256()
    for f in sorted(shipped.files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.sha256}\0".encode())
    return digest.hexdigest()[:32]


def _checked(root: Path, shipped: ShippedArtifact) -> bool:
    """``_complete`` and, once per process, every file's sha256 as shipped: a copy changed in the cache since it
    was fetched (its sizes kept) is not run."""
    key = (str(root), _fingerprint(shipped))
    if key in _CHECKED:
        return _complete(root, shipped)
    if not _complete(root, shipped):
        return False
    for f in shipped.files:
        digest = hashlib.sha256()
        with (root / f.path).open("rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
                digest.update(block)
        if digest.hexdigest() != f.sha256:
            return False
    _CHECKED.add(key)
    return True


def local_artifact(shipped: ShippedArtifact) -> str:
    """The artifact for this worker to open: the hub id, the driver's directory when this node sees it,
    or a checked copy fetched from the object store into ``$FASTEMBED_RT_CACHE/artifacts`` (one per set of files
    shipped; a copy found there is hashed once per process before it runs, and fetched again if it differs).

    Raises:
        ArtifactError: a fetched file differs from what the driver shipped or from the manifest's checksums.
    """
    if not shipped.files or _complete(Path(shipped.source), shipped):
        return shipped.source
    target = cache_root(None, "artifacts") / _fingerprint(shipped)
    if not _checked(target, shipped):
        _fetch(shipped, target)
    return str(target)


def _fetch(shipped: ShippedArtifact, target: Path) -> None:
    """Write the shipped files into a staging folder beside ``target``, check them, rename it into place."""
    import ray

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}-", dir=target.parent))
    try:
        for shipped_file in shipped.files:
            path = staging / shipped_file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with path.open("wb") as out:
                for chunk in shipped_file.chunks:
                    block = ray.get(chunk)
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != shipped_file.sha256:
                raise ArtifactError(
                    f"{shipped_file.path} of {shipped.source} arrived corrupt from the object store (sha256 "
                    f"{digest.hexdigest()[:12]}…, shipped {shipped_file.sha256[:12]}…); run the job again"
                )
        manifest = load_manifest(staging)
        present = {f.path for f in shipped.files}
        for variant in manifest.variants:
            if variant.file in present:
                verify_variant_file(manifest, variant, full=True)
        try:
            staging.rename(target)
        except OSError:
            if _checked(target, shipped):  # another actor of this node finished first
                return
            # a copy that differs (changed in the cache since): replaced by the one just checked
            shutil.rmtree(target, ignore_errors=True)
            try:
                staging.rename(target)
            except OSError as exc:
                if not _checked(target, shipped):
                    raise ArtifactError(f"cannot place the fetched artifact at {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def assigned_cpus() -> int:
    """The CPUs Ray reserved for this actor or replica (its ``num_cpus``, rounded up), never more than the
    node lets this process use (affinity, cgroup quota); outside Ray, the CPUs this process may use."""
    import ray

    cpus = None
    context = ray.get_runtime_context() if ray.is_initialized() else None
    if context is not None and context.worker.mode == ray.WORKER_MODE:  # the driver has no assigned resources
        cpus = context.get_assigned_resources().get("CPU")
    if not cpus:
        return available_cpus()
    return max(1, min(math.ceil(cpus), available_cpus()))
