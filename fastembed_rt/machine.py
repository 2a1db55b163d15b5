"""What this CPU is: its model name and the SIMD features that decide which kernels the engines run.

The same variant is fast on one CPU and slow on another: an int8 MatMul with AVX-512 VNNI runs about
twice the fp32 one, the same graph on an AVX2-only CPU ran 0.42× fp32 (issue 13). Variant speeds are
therefore recorded per CPU (``fastembed_rt.speed``), and a record applies to the CPUs with the same
``isa`` features. Also this process's peak memory (``peak_rss_mb``), which benchmarks report beside
speed. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "CpuIdentity", "peak_rss_mb", "read_cpu", "return_freed_heap", "this_cpu"]

# The SIMD flags that decide which kernels ONNX Runtime and OpenVINO run (int8 and bf16 paths included);
# x86 names as /proc/cpuinfo spells them, then Arm's (asimddp: dot product, i8mm, bf16, sve).
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
)


@dataclass(frozen=True)
class CpuIdentity:
    """A CPU as far as kernel choice goes: ``machine`` (x86_64, aarch64, ...), ``model`` name, ``isa`` flags.

    ``isa`` holds the flags of ``ISA_FLAGS`` the CPU has, in that order; empty when unknown.
    """

    machine: str
    model: str
    isa: tuple[str, ...]

    @property
    def isa_class(self) -> str:
        """``machine`` and ``isa`` in one string: CPUs of one class run the same kernels."""
        return f"{self.machine}: {' '.join(self.isa) or 'unknown'}"

    def describe(self) -> str:
        return f"{self.model} ({' '.join(self.isa) or 'ISA unknown'})"

    def to_record(self) -> dict[str, Any]:
        """This CPU as a manifest keeps it (a variant's fidelity ``validated_on``)."""
        return {"machine": self.machine, "cpu": self.model, "isa": list(self.isa)}

    @classmethod
    def from_record(cls, record: object) -> CpuIdentity | None:
        """The CPU ``to_record`` wrote, or None where there is none (manifests from before it)."""
        if not isinstance(record, dict):
            return None
        return cls(str(record.get("machine", "")), str(record.get("cpu", "")), tuple(record.get("isa") or ()))

    @property
    def saturates_int8_products(self) -> bool:
        """An x86 CPU without VNNI (or whose features are unknown): ONNX Runtime's u8 × s8 GEMM sums each pair
        of 8-bit products into int16 there (``vpmaddubsw``), which saturates; VNNI sums them exactly."""
        x86 = self.machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
        return x86 and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.isa)


# Arm's /proc/cpuinfo names no model, only an implementer and a part number: the server cores a benchmark table
# is likely to meet (Graviton 2/3/4 are Neoverse N1/V1/V2, Ampere Altra N1), else the numbers themselves.
_ARM_PARTS = {
    ("0x41", "0xd0c"): "Arm Neoverse-N1",
    ("0x41", "0xd40"): "Arm Neoverse-V1",
    ("0x41", "0xd49"): "Arm Neoverse-N2",
    ("0x41", "0xd4f"): "Arm Neoverse-V2",
    ("0x41", "0xd8e"): "Arm Neoverse-N3",
    ("0x41", "0xd84"): "Arm Neoverse-V3",
    ("0xc0", "0xac3"): "AmpereOne",
}


def _cpuinfo(path: Path) -> tuple[str | None, set[str]]:
    """Model name and flags of the first CPU in a ``/proc/cpuinfo``-format file (None, empty: unreadable)."""
    model: str | None = None
    flags: set[str] = set()
    arm: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None, flags
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key in ("CPU implementer", "CPU part"):
            arm.setdefault(key, value.strip().lower())
    if model is None and len(arm) == 2:
        implementer, part = arm["CPU implementer"], arm["CPU part"]
        model = _ARM_PARTS.get((implementer, part), f"Arm CPU implementer {implementer} part {part}")
    return model, flags


def read_cpu(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> CpuIdentity:
    """The CPU described by ``cpuinfo`` (Linux), or what ``platform`` says elsewhere."""
    model, flags = _cpuinfo(Path(cpuinfo))
    return CpuIdentity(
        machine=platform.machine() or "unknown",
        model=model or platform.processor() or "unknown CPU",
        isa=tuple(flag for flag in ISA_FLAGS if flag in flags),
    )


@lru_cache(maxsize=1)
def this_cpu() -> CpuIdentity:
    """The CPU this process runs on (read once)."""
    return read_cpu()


def return_freed_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing): glibc keeps what a
    big step freed (a session built and dropped, a validated variant) and counts it against what runs after."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_rss_mb(status: str | os.PathLike[str] = "/proc/self/status") -> float:
    """This process's peak resident memory in MiB since it started its program.

    Linux's ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: a child's ``ru_maxrss`` starts at its parent's
    resident size when it forks, so every process a 1 GB benchmark runner started reported 1,061 MB
    (measured here). Where there is no ``/proc``, ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path(status).read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
