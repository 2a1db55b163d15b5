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
libraries with a breakpoint (``int3; nop; nop``) and each ``CPUID`` with another (``int3; hlt``), and
compiles a preload library whose ``SIGTRAP`` handler executes the real instruction and edits its result:
``XGETBV`` without the AVX-512 state bits (5-7), ``CPUID`` leaf 7 without the AVX-512, AMX, AVX-VNNI,
AVX-IFMA, AVX-NE-CONVERT and AVX10 feature bits. So each engine takes the branch it takes on an AVX2-only
CPU (no VNNI, no bf16, no AVX-512 kernels). Hiding the AVX-512 state alone is not enough: AVX-VNNI (Zen 5,
Intel since Alder Lake) is VNNI in 256-bit VEX form, needing only the AVX2 state, and until 2026-12-05 this
proxy let it through, so on such a CPU ONNX Runtime's u8 × s8 GEMM and OpenVINO's int8 ran exact VNNI
kernels under it (a 64-deep u8 × s8 dot product of 255 × 127 came out 2,072,640 instead of the AVX2
kernel's saturated 1,048,544; int8-avx2 1,750 instead of 1,166 sentences/s on a Zen 5): int8 numbers from
the proxy on such CPUs before that date are VNNI numbers. A run traps a few dozen times, at start-up.
The same library serves ``/proc/cpuinfo`` without those flags, so ``fastembed_rt.machine``
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

/* CPUID leaf 7 bits of what an AVX2-only x86 CPU lacks (Intel SDM vol. 2A, CPUID). Subleaf 0: EBX AVX512F/DQ/
   IFMA/PF/ER/CD/BW/VL, ECX AVX512_VBMI/VBMI2/VNNI/BITALG/VPOPCNTDQ, EDX AVX512_4VNNIW/4FMAPS/VP2INTERSECT/AMX_BF16/
   AVX512_FP16/AMX_TILE/AMX_INT8. Subleaf 1: EAX AVX_VNNI/AVX512_BF16/AMX_FP16/AVX_IFMA, EDX AVX_VNNI_INT8/
   AVX_NE_CONVERT/AVX_VNNI_INT16/AVX10. */
#define LEAF7_EBX 0xDC230000u
#define LEAF7_ECX 0x00005842u
#define LEAF7_EDX 0x03C0010Cu
#define LEAF7_1_EAX 0x00A00030u
#define LEAF7_1_EDX 0x00080430u

static void emulate_cpuid(greg_t *regs) {
    uint32_t a, b, c, d, leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX];
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    if (leaf == 7 && sub == 0) { b &= ~LEAF7_EBX; c &= ~LEAF7_ECX; d &= ~LEAF7_EDX; }
    if (leaf == 7 && sub == 1) { a &= ~LEAF7_1_EAX; d &= ~LEAF7_1_EDX; }
    regs[REG_RAX] = a; regs[REG_RBX] = b; regs[REG_RCX] = c; regs[REG_RDX] = d;
}

static void on_trap(int sig, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    unsigned char *ip = (unsigned char *)regs[REG_RIP];
    if (ip[-1] == 0xcc && ip[0] == 0xf4) {  /* a patched CPUID: int3; hlt */
        emulate_cpuid(regs);
        regs[REG_RIP] += 1;
        return;
    }
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

# Each trapped instruction, its bytes, and what replaces them (the handler tells the two apart by the byte after int3).
PATCHES = {
    "xgetbv": (b"\x0f\x01\xd0", b"\xcc\x90\x90"),  # int3; nop; nop
    "cpuid": (b"\x0f\xa2", b"\xcc\xf4"),  # int3; hlt (never executed: the handler steps over it)
}
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(0f 01 d0\s+xgetbv|0f a2\s+cpuid)\b", re.MULTILINE)


def _file_offsets(library: Path) -> list[tuple[int, str]]:
    """File offset and name of every XGETBV and CPUID instruction in ``library``'s executable segments."""
    listing = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    headers = subprocess.run(["readelf", "-lW", str(library)], capture_output=True, text=True, check=True).stdout
    segments = []  # (vaddr, size, file offset) of each LOAD segment
    for line in headers.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"]:
            segments.append((int(fields[2], 16), int(fields[4], 16), int(fields[1], 16)))
    offsets = []
    for match in INSTRUCTION.finditer(listing):
        address, name = int(match.group(1), 16), match.group(2).split()[-1]
        segment = next((s for s in segments if s[0] <= address < s[0] + s[1]), None)
        if segment is None:
            raise SystemExit(f"{library}: {name} at {address:#x} lies in no LOAD segment")
        offsets.append((address - segment[0] + segment[2], name))
    return offsets


def _patch(library: Path) -> dict[str, int]:
    """Trap every XGETBV and CPUID of ``library`` in place; how many of each."""
    data = bytearray(library.read_bytes())
    counts = dict.fromkeys(PATCHES, 0)
    for offset, name in _file_offsets(library):
        original, trap = PATCHES[name]
        if data[offset : offset + len(original)] != original:
            raise SystemExit(f"{library}: no {name} at file offset {offset:#x}")
        data[offset : offset + len(original)] = trap
        counts[name] += 1
    if any(counts.values()):
        library.write_bytes(bytes(data))
    return counts


# /proc/cpuinfo flags of the extensions leaf 7 hides (the same list as the handler's masks).
_HIDDEN_FLAGS = ("avx512", "amx", "avx_vnni", "avx_ifma", "avx_ne_convert", "avx10")


def _filtered_cpuinfo() -> str:
    lines = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            kept = [f for f in value.split() if not f.startswith(_HIDDEN_FLAGS)]
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
                counts = _patch(library)
                if any(counts.values()):
                    trapped = ", ".join(f"{n} {name.upper()}" for name, n in counts.items() if n)
                    print(f"{library.relative_to(PROXY)}: {trapped} trapped")
    source = PROXY / "xgetbv_trap.c"
    source.write_text(TRAP_SOURCE)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(PROXY / TRAP), str(source), "-ldl"], check=True)
    (PROXY / CPUINFO).write_text(_filtered_cpuinfo())
    check()
    print(f"built {PROXY}")


# A u8 × s8 product only the AVX2 kernel gets wrong: 64 × (255 × 127) in pairs that each saturate at 32,767.
PROBE = """
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
a = helper.make_tensor_value_info("A", TensorProto.UINT8, [1, 64])
y = helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 1])
b = numpy_helper.from_array(np.full((64, 1), 127, np.int8), "B")
graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe", [a], [y], [b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print(int(session.run(None, {"A": np.full((1, 64), 255, np.uint8)})[0][0, 0]))
"""
SATURATED = 32 * 32_767


def check() -> None:
    """Fail unless ONNX Runtime under the proxy computes ``PROBE`` on its AVX2 kernel (saturated pairs)."""
    done = subprocess.run([sys.executable, "-c", PROBE], env=_environment(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the proxy's self-check failed to run: {done.stderr.strip().splitlines()[-1:]}")
    got = int(done.stdout.split()[-1])
    if got != SATURATED:
        raise SystemExit(
            f"ONNX Runtime under the proxy computed the probe exactly ({got}, the AVX2 kernel gives {SATURATED}): "
            "it still finds an 8-bit dot-product extension this proxy does not hide"
        )


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROXY), *filter(None, [env.get("PYTHONPATH")])])
    env["LD_PRELOAD"] = " ".join([str(PROXY / TRAP), *filter(None, [env.get("LD_PRELOAD")])])
    env["AVX2_PROXY_CPUINFO"] = str(PROXY / CPUINFO)
    env["ATEN_CPU_CAPABILITY"] = "avx2"
    return env


def run(command: list[str]) -> int:
    if not (PROXY / TRAP).exists():
        raise SystemExit(f"no proxy at {PROXY}: run `{sys.argv[0]} build` first")
    return subprocess.run(command, env=_environment()).returncode


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
