"""Virtual environments for the contenders whose dependencies clash with ours, created on first use.

``sentence-transformers[onnx,openvino]`` backtracks to sentence-transformers 5.7 with transformers < 4.58
(DESIGN §2), so it cannot share the development venv; fastembed pins its own stack. Each environment
lives in ``benchmarks/.envs/<name>`` (git-ignored), is created with ``python3 -m venv`` + pip when its
``.installed`` marker is missing or lists other requirements (for ``runtime``: also when this checkout's
runtime source changed since), and is reused as is otherwise.
torch is pinned in every venv: it installs from local disk here, an unpinned torch pulls a multi-GB
CUDA build.

The ``runtime``, ``runtime-openvino`` and ``st-torch`` environments also measure installed size: the runtime alone
(``pip install <repo>``, no extras), with the openvino extra its openvino rows need, against sentence-transformers +
torch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENVS", "ENV_ROOT", "REPO", "Env", "contender_environ", "ensure_env", "installed_mb"]

REPO = Path(__file__).resolve().parent.parent
ENV_ROOT = REPO / "benchmarks" / ".envs"
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Env:
    """A named venv and the pip requirement lines that fill it (installed in one pip call)."""

    name: str
    requirements: tuple[str, ...]
    note: str
    # Installed from this checkout: the env is rebuilt when these files change (a copy installed before a
    # change measured the old runtime: the 64 MiB activation bound ran with 1 GiB in a stale env).
    source: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return ENV_ROOT / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


ENVS: dict[str, Env] = {
    env.name: env
    for env in (
        Env(
            "runtime",
            (str(REPO),),
            "fastembed-rt alone, no extras: its installed size",
            source=("pyproject.toml", "fastembed_rt/**/*.py", "fastembed_rt/**/*.typed"),
        ),
        Env(
            "runtime-openvino",
            (f"{REPO}[openvino]",),
            "fastembed-rt with the openvino extra: the installed size of its openvino rows",
            source=("pyproject.toml", "fastembed_rt/**/*.py", "fastembed_rt/**/*.typed"),
        ),
        Env(
            "st-torch",
            (TORCH, "sentence-transformers==6.2.0", "transformers==5.23.0"),
            "sentence-transformers 6 on torch, as users install it",
        ),
        Env(
            "st-extras",
            # optimum-intel, optimum-onnx and nncf pinned to a set that resolves and imports: unpinned,
            # pip backtracked through dozens of optimum-intel releases for over 10 minutes here
            # (2026-11-30), and optimum-intel 1.26-1.27 import nncf.torch.patch_torch_operators,
            # which nncf 3 removed.
            (
                TORCH,
                "sentence-transformers[onnx,openvino]==5.7.0",
                "optimum-intel[openvino]==1.27.0",
                "optimum-onnx[onnxruntime]==0.1.0",
                "nncf==2.19.0",
                "datasets",
            ),
            "sentence-transformers' onnx and openvino backends (optimum pins transformers < 4.58)",
        ),
        Env("fastembed", ("fastembed==0.9.1",), "qdrant's fastembed (ONNX Runtime, no torch)"),
        Env(
            "st-fastapi",
            (
                TORCH,
                "sentence-transformers==6.2.0",
                "transformers==5.23.0",
                "fastapi==0.165.0",
                "uvicorn[standard]==0.54.0",
            ),
            "a hand-written FastAPI server around sentence-transformers (serve.py); apart from st-torch so that "
            "st-torch's installed size stays sentence-transformers + torch alone",
        ),
        Env(
            "infinity",
            # Both its CPU engines: optimum (ONNX Runtime; also exports the ONNX file it runs) and torch.
            # optimum 2 / optimum-onnx 0.1 are what pip resolves; infinity 0.0.78 predates them, so
            # serve.py works around two incompatibilities (see infinity_model there).
            (TORCH, "infinity-emb[server,torch,optimum]==0.0.78", "optimum==2.1.0", "optimum-onnx==0.1.0"),
            "infinity-emb's server (serve.py)",
        ),
    )
}


def ensure_env(name: str, log: Path | None = None) -> Env:
    """The environment ``name``, created (venv + one pip install) when it is not there yet.

    Raises:
        RuntimeError: pip failed; its output is in ``log`` (default ``<env>/pip.log``).
    """
    env = ENVS[name]
    marker = env.path / ".installed"
    wanted = "\n".join(env.requirements) + "\n" + _source_digest(env)
    if marker.exists() and marker.read_text() == wanted:
        return env
    if env.path.exists():
        shutil.rmtree(env.path)  # a half-built env from an interrupted run
    env.path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"creating benchmark env {name!r} ({env.note}) in {env.path} ...", file=sys.stderr, flush=True)
    subprocess.run(["python3", "-m", "venv", str(env.path)], check=True)
    log = log or env.path / "pip.log"
    with log.open("w") as handle:
        result = subprocess.run(
            [str(env.python), "-m", "pip", "install", "--no-input", *env.requirements],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            check=False,
        )
    if result.returncode != 0:
        # short, the log first: a table cell keeps 100 characters of it (the full path was cut before the log's name)
        shown = log.relative_to(REPO) if log.is_relative_to(REPO) else log
        raise RuntimeError(f"pip failed (exit {result.returncode}), see {shown}")
    marker.write_text(wanted)
    print(f"created {name!r} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return env


def _source_digest(env: Env) -> str:
    """A marker line fingerprinting the checkout files ``env`` installs (empty for envs from the registry)."""
    if not env.source:
        return ""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in env.source for p in REPO.glob(pattern) if p.is_file()}):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return f"source sha256 {digest.hexdigest()}\n"


def contender_environ(threads: int) -> dict[str, str]:
    """This process's environment for a contender's process: ``threads`` for every BLAS/OpenMP pool,
    no tokenizer threads of its own, no hub, quiet."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONWARNINGS": "ignore",
    }


def installed_mb(env: Env) -> float:
    """Bytes under the env's site-packages (what ``du`` counts as apparent size), in MB (10^6)."""
    total = 0
    for site in env.path.glob("lib/python*/site-packages"):
        for root, _, files in os.walk(site):
            for file in files:
                path = Path(root) / file
                if not path.is_symlink():
                    total += path.stat().st_size
    return total / 1e6


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Create (or check) the contenders' virtual environments.")
    parser.add_argument("envs", nargs="*", help=f"environments to make, of {', '.join(ENVS)} (default: all)")
    wanted = parser.parse_args().envs
    unknown = [name for name in wanted if name not in ENVS]
    if unknown:
        parser.error(f"unknown environment {unknown[0]!r}; known: {', '.join(ENVS)}")
    for env_name in wanted or list(ENVS):
        ensure_env(env_name)
        print(f"{env_name}: {installed_mb(ENVS[env_name]):.0f} MB")
