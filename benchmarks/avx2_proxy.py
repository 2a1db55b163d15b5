"""Run a command with ONNX Runtime and OpenVINO confined to their AVX2 kernels on an AVX-512 CPU.

    .venv/bin/python benchmarks/avx2_proxy.py build
    .venv/bin/python benchmarks/avx2_proxy.py run -- .venv/bin/python benchmarks/run.py --only 'cpu/|floor'

A development proxy for AVX2-only CPUs, for when none is at hand: it shows which code paths an
AVX2 CPU takes (the kernels ONNX Runtime's MLAS and OpenVINO's oneDNN dispatch to, which variant
`auto` picks, which int8 scheme the exporter skips) and how slow a path with no AVX2 kernel is. It
does **not** give an AVX2 CPU's numbers: the instructions run on this CPU's execution units. On a
Zen 4, AVX2 int8 (``vpmaddwd``) issues twice per cycle where a Zen 2 issues it once, so int8
against fp32 comes out far better here than there (dynamic uint8 ONNX Runtime graph: 1.27× fp32
under this proxy on a Zen 4, 0.97× on a Zen 2). README tables come from real CPUs only.

How: both engines decide on AVX-512 by CPUID *and* by the OS having enabled the AVX-512 register
state, which they read with ``XGETBV``. ``build`` copies the ``onnxruntime`` and ``openvino``
packages of this interpreter to ``benchmarks/.envs/avx2-proxy/``, replaces each ``XGETBV`` in their
libraries with a breakpoint (``int3; nop; nop``), and compiles a preload library whose ``SIGTRAP``
handler executes the real ``XGETBV`` and clears the AVX-512 state bits (5-7) of its result, so each
engine takes the branch it takes on a CPU without AVX-512 (no VNNI, no bf16, no AVX-512 kernels).
The same library serves ``/proc/cpuinfo`` without the AVX-512 flags, so ``fastembed_rt.machine``
(the ISA the exporter records with its timings, the flags ``run.py`` prints) agrees with the
engines. ``run`` puts the copies first on ``PYTHONPATH``, preloads the library and sets
``ATEN_CPU_CAPABILITY=avx2`` for torch. Needs gcc and objdump; x86-64 Linux only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROXY = HERE / ".envs" / "avx2-proxy"
PACKAGES = ("onnxruntime", "openvino")
TRAP = "xgetbv_trap.so"
CPUINFO = "cpuinfo"

# Hand-written because no library does this: the handler emulates the trapped XGETBV (the patch leaves
# int3 + two nops, so the handler skips the nops) and the open() family serves the filtered cpuinfo.
TRAP_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

static void on_trap(int sig, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    unsigned char *ip = (unsigned char *)regs[REG_RIP];
    if (ip[-1] != 0xcc || ip[0] != 0x90 || ip[1] != 0x90) {  /* not one of ours: die as without us */
        signal(SIGTRAP, SIG_DFL);
        raise(SIGTRAP);
        return;
    }
    uint32_t lo, hi, index = (uint32_t)regs[REG_RCX];
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
    if (index == 0) lo &= ~0xE0u;  /* opmask, ZMM0-15 upper halves, ZMM16-31: no AVX-512 state */
    regs[REG_RAX] = lo;
    regs[REG_RDX] = hi;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_trap;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGTRAP, &action, NULL);
}

static const char *redirect(const char *path) {
    const char *filtered = getenv("AVX2_PROXY_CPUINFO");
    return (filtered && path && strcmp(path, "/proc/cpuinfo") == 0) ? filtered : path;
}

#define OPEN_LIKE(name)                                                       \
    int name(const char *path, int flags, ...) {                              \
        static int (*real)(const char *, int, ...);                           \
        if (!real) real = dlsym(RTLD_NEXT, #name);                            \
        va_list args; va_start(args, flags);                                  \
        int mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(args, int) : 0;  \
        va_end(args);                                                         \
        return real(redirect(path), flags, mode);                             \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(name)                                                     \
    int name(int dir, const char *path, int flags, ...) {                     \
        static int (*real)(int, const char *, int, ...);                      \
        if (!real) real = dlsym(RTLD_NEXT, #name);                            \
        va_list args; va_start(args, flags);                                  \
        int mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(args, int) : 0;  \
        va_end(args);                                                         \
        return real(dir, redirect(path), flags, mode);                        \
    }
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

#define FOPEN_LIKE(name)                                                      \
    FILE *name(const char *path, const char *mode) {                          \
        static FILE *(*real)(const char *, const char *);                     \
        if (!real) real = dlsym(RTLD_NEXT, #name);                            \
        return real(redirect(path), mode);                                    \
    }
FOPEN_LIKE(fopen)
FOPEN_LIKE(fopen64)
"""

XGETBV = re.compile(r"^\s*([0-9a-f]+):\s+0f 01 d0\s+xgetbv", re.MULTILINE)


def _file_offsets(library: Path) -> list[int]:
    """File offsets of every XGETBV instruction in ``library``'s executable segments."""
    listing = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    headers = subprocess.run(["readelf", "-lW", str(library)], capture_output=True, text=True, check=True).stdout
    segments = []  # (vaddr, size, file offset) of each LOAD segment
    for line in headers.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"]:
            segments.append((int(fields[2], 16), int(fields[4], 16), int(fields[1], 16)))
    offsets = []
    for match in XGETBV.finditer(listing):
        address = int(match.group(1), 16)
        segment = next((s for s in segments if s[0] <= address < s[0] + s[1]), None)
        if segment is None:
            raise SystemExit(f"{library}: XGETBV at {address:#x} lies in no LOAD segment")
        offsets.append(address - segment[0] + segment[2])
    return offsets


def _patch(library: Path) -> int:
    data = bytearray(library.read_bytes())
    offsets = _file_offsets(library)
    for offset in offsets:
        if data[offset : offset + 3] != b"\x0f\x01\xd0":
            raise SystemExit(f"{library}: no XGETBV at file offset {offset:#x}")
        data[offset : offset + 3] = b"\xcc\x90\x90"
    if offsets:
        library.write_bytes(bytes(data))
    return len(offsets)


def _filtered_cpuinfo() -> str:
    lines = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            kept = [f for f in value.split() if not f.startswith(("avx512", "amx")) and f != "avx_vnni"]
            line = f"{key}: {' '.join(kept)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def build() -> None:
    if os.uname().machine != "x86_64":
        raise SystemExit("the AVX2 proxy patches x86-64 libraries only")
    if "avx512f" not in Path("/proc/cpuinfo").read_text():
        raise SystemExit("this CPU has no AVX-512: run on it directly, no proxy needed")
    missing = [tool for tool in ("gcc", "objdump", "readelf") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"the AVX2 proxy needs {', '.join(missing)} (binutils, gcc)")
    shutil.rmtree(PROXY, ignore_errors=True)
    PROXY.mkdir(parents=True)
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise SystemExit(f"{package} is not installed in {sys.executable}")
        copy = PROXY / package
        shutil.copytree(Path(spec.origin).parent, copy, symlinks=True)
        for library in sorted(copy.rglob("*.so*")):
            if library.is_file() and not library.is_symlink():
                count = _patch(library)
                if count:
                    print(f"{library.relative_to(PROXY)}: {count} XGETBV trapped")
    source = PROXY / "xgetbv_trap.c"
    source.write_text(TRAP_SOURCE)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(PROXY / TRAP), str(source), "-ldl"], check=True)
    (PROXY / CPUINFO).write_text(_filtered_cpuinfo())
    print(f"built {PROXY}")


def run(command: list[str]) -> int:
    if not (PROXY / TRAP).exists():
        raise SystemExit(f"no proxy at {PROXY}: run `{sys.argv[0]} build` first")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROXY), *filter(None, [env.get("PYTHONPATH")])])
    env["LD_PRELOAD"] = " ".join([str(PROXY / TRAP), *filter(None, [env.get("LD_PRELOAD")])])
    env["AVX2_PROXY_CPUINFO"] = str(PROXY / CPUINFO)
    env["ATEN_CPU_CAPABILITY"] = "avx2"
    return subprocess.run(command, env=env).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build", help="copy and patch onnxruntime and openvino, compile the preload library")
    runner = sub.add_parser("run", help="run a command under the proxy")
    runner.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "build":
        build()
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run needs a command")
        raise SystemExit(run(command))


if __name__ == "__main__":
    main()
