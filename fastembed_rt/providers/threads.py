"""How many CPUs this process may really use: affinity and the cgroup CPU quota, not the host's cores.

A container limited to 2 CPUs on a 64-core host that starts 64 ONNX Runtime threads spends its time
in contention; ONNX Runtime's own default looks at the host's cores.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["MAX_STREAMS", "available_cpus", "cgroup_cpu_quota", "default_streams"]

# At most this many batches of one call run at once by default (``default_streams``); measured with 2.
MAX_STREAMS = 4

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _read_quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _read_quota_v1(folder: Path) -> float | None:
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """``base/cgroup_path`` and each parent folder up to ``base`` itself."""
    parts = [p for p in cgroup_path.strip().split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_quota(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> float | None:
    """CPUs allowed by the tightest cgroup CPU quota on this process's cgroup path, or None if unlimited.

    Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us / cpu.cfs_period_us`` in the process's own
    cgroup (from ``/proc/self/cgroup``) and every ancestor up to the mount point, so it works both
    inside a container (own cgroup namespace: the path is ``/``) and on a host with nested slices.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    folders: list[tuple[Path, bool]] = []  # (folder, is_v2)
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            folders += [(f, True) for f in _ancestors(root, path)]
            folders += [(f, True) for f in _ancestors(root / "unified", path)]
        elif "cpu" in controllers.split(","):
            folders += [(f, False) for f in _ancestors(root / controllers, path)]
    if not folders:
        folders = [(root, True), (root / "cpu", False), (root / "cpu,cpuacct", False)]
    quotas = [q for folder, v2 in folders if (q := (_read_quota_v2 if v2 else _read_quota_v1)(folder)) is not None]
    return min(quotas) if quotas else None


def available_cpus() -> int:
    """The smaller of the CPU affinity set and the cgroup quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def default_streams(threads: int) -> int:
    """How many batches of one call run at once on ``threads`` CPU threads by default: the largest divisor of
    ``threads`` up to ``MAX_STREAMS``, so each stream gets the same whole number of threads and none is left idle
    (2 → 2 × 1, 3 → 3 × 1, 6 → 3 × 2, 16 → 4 × 4; a prime above ``MAX_STREAMS`` → 1, every batch on all
    threads)."""
    return max(n for n in range(1, min(max(threads, 1), MAX_STREAMS) + 1) if threads % n == 0)
