"""The server image, built from this working tree with podman and run for real on loopback.

The harness (not the Containerfile) carries what these machines need: no registry is reachable, so
the base image is Debian bookworm with python3 made by ``mmdebstrap`` and ``podman import``ed; RUN
steps reach PyPI with the host's CA bundle mounted at build time (never copied into the image); runs
use the runc runtime and the host's ulimits through a ``containers.conf``. Skipped only where podman,
mmdebstrap or runc are not installed (``make test`` installs them where it may: root with apt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/fastembed-rt-test-base:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("podman", "mmdebstrap", "runc")

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS), reason=f"needs {', '.join(TOOLS)} (Debian packages)"
)


def _podman(*args: str, env: dict[str, str], timeout: float = 600, check: bool = True) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-3000:]}")
    return result.stdout.strip()


def _logs(container: str, env: dict[str, str]) -> str:
    result = subprocess.run(["podman", "logs", container], capture_output=True, text=True, env=env, check=False)
    return (result.stdout + result.stderr)[-3000:]


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture(scope="module")
def base_image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian bookworm minbase with python3, made once per machine (kept in podman's store)."""
    if _podman("images", "--quiet", BASE_IMAGE, env=podman_env):
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("base") / "rootfs.tar"
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm", str(rootfs)],
        capture_output=True,
        check=True,
        timeout=900,
    )
    _podman("import", str(rootfs), BASE_IMAGE, env=podman_env)
    rootfs.unlink()
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], base_image: str) -> Iterator[str]:
    tag = f"localhost/fastembed-rt-test:{uuid.uuid4().hex[:8]}"
    volume = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    _podman(
        "build", "--format", "docker", "--pull=never", "--target", "serve", "-f", "Containerfile", "-t", tag,
        "--build-arg", f"BASE_IMAGE={base_image}", *volume, str(REPO), env=podman_env, timeout=1200,
    )  # fmt: skip
    yield tag
    _podman("rmi", "--force", tag, env=podman_env, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(image: str, env: dict[str, str], artifact: Path, *extra: str) -> tuple[str, int, float]:
    port = _free_port()
    started = time.perf_counter()
    container = _podman(
        "run", "--detach", "--network=host", "--env", f"PORT={port}", *extra,
        "-v", f"{artifact}:/models/model:ro", image, "/models/model", "--host", "127.0.0.1",
        env=env,
    )  # fmt: skip
    return container, port, started


def _first_embed(port: int, container: str, env: dict[str, str], timeout: float = 120) -> tuple[list[Any], float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = httpx.post(
                f"http://127.0.0.1:{port}/embed", json={"inputs": ["The cat sat on the mat."]}, timeout=5
            )
            if reply.status_code == 200:
                return reply.json(), time.perf_counter()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no successful /embed within {timeout} s; logs:\n{_logs(container, env)}")
        time.sleep(0.05)


def test_image_serves_the_library_output_runs_unprivileged_and_drains_on_sigterm(
    image: str, podman_env: dict[str, str], minilm_artifact_session: Path, minilm_runtime: Any
) -> None:
    container, port, started = _start(image, podman_env, minilm_artifact_session, "--cpus=2")
    try:
        first, answered = _first_embed(port, container, podman_env)
        print(f"cold start (container start -> first /embed): {answered - started:.2f} s")
        expected = minilm_runtime.encode(["The cat sat on the mat."], normalize_embeddings=True)
        np.testing.assert_allclose(first, expected, atol=1e-6)
        openai = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": ["A feline."]}, timeout=30).json()
        np.testing.assert_allclose(openai["data"][0]["embedding"], minilm_runtime.encode("A feline."), atol=1e-6)
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
        assert info["models"][0]["threads"] == 2, "threads sized from the container's CPU quota (--cpus=2)"
        assert _podman("exec", container, "id", "-u", env=podman_env) == "10001", "the server runs as non-root"
        health = subprocess.run(["podman", "healthcheck", "run", container], env=podman_env, capture_output=True)
        assert health.returncode == 0, health.stderr
        _podman("stop", "--time", "30", container, env=podman_env)  # SIGTERM, then SIGKILL after 30 s
        state = json.loads(_podman("inspect", container, env=podman_env))[0]["State"]
        assert state["ExitCode"] == 0, _logs(container, podman_env)
    finally:
        _podman("rm", "--force", container, env=podman_env, check=False)


def test_threads_follow_a_smaller_cpu_quota(
    image: str, podman_env: dict[str, str], minilm_artifact_session: Path
) -> None:
    container, port, _ = _start(image, podman_env, minilm_artifact_session, "--cpus=1")
    try:
        _first_embed(port, container, podman_env)
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
        assert info["models"][0]["threads"] == 1
    finally:
        _podman("rm", "--force", container, env=podman_env, check=False)


def test_image_holds_no_torch_no_pip_nor_an_onnxruntime_library_it_never_loads_and_reports_its_size(
    image: str, podman_env: dict[str, str]
) -> None:
    """onnxruntime's wheel ships its C-API library beside a Python binding that (1.32) is linked statically: 35 MB
    that no process importing onnxruntime maps. The image keeps only the libraries an import maps."""
    probe = (
        "import importlib.util as u, json, pathlib; "
        "print([m for m in ('torch', 'transformers', 'sentence_transformers', 'pip') if u.find_spec(m)]); "
        "import onnxruntime; "
        "capi = pathlib.Path(onnxruntime.__file__).parent / 'capi'; "
        "maps = pathlib.Path('/proc/self/maps').read_text(); "
        "print(json.dumps({p.name: str(p.resolve()) in maps for p in capi.glob('*.so*')}))"
    )
    found, libraries = _podman(
        "run", "--rm", "--entrypoint", "python3", image, "-c", probe, env=podman_env
    ).splitlines()
    assert found == "[]"
    mapped = json.loads(libraries)
    assert any(name.startswith("onnxruntime_pybind11_state") for name in mapped), mapped
    assert all(mapped.values()), f"onnxruntime libraries in the image that importing it does not load: {mapped}"
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", image, env=podman_env))
    base = int(_podman("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE, env=podman_env))
    print(f"image {size / 1e6:.0f} MB = base {base / 1e6:.0f} MB + fastembed-rt {(size - base) / 1e6:.0f} MB")


def test_an_artifact_baked_in_at_build_time_is_stored_once_read_only_and_served_to_any_user(
    image: str, podman_env: dict[str, str], base_image: str, minilm_artifact_session: Path, minilm_runtime: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A chown in the final stage stored the artifact a second time (915 MB for 276 MB of model over a 364 MB image),
    left it writable by the server, and kept the build context's modes (a 0600 file no other user could read)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Containerfile", ".containerignore", "pyproject.toml", "README.md", "LICENSE", "constraints.txt"):
        shutil.copy2(REPO / name, context / name)
    for name in ("fastembed_rt", "kernels", "export"):
        shutil.copytree(REPO / name, context / name, ignore=shutil.ignore_patterns("__pycache__"))
    model = context / "artifacts" / "model"
    shutil.copytree(minilm_artifact_session, model)
    (model / "manifest.json").chmod(0o600)
    model_bytes = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    tag = f"{image}-baked"
    volume = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    _podman(
        "build", "--format", "docker", "--pull=never", "-f", "Containerfile", "-t", tag,
        "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", "ARTIFACT=artifacts/model", *volume, str(context),
        env=podman_env, timeout=1200,
    )  # fmt: skip
    port = _free_port()
    container = _podman(
        "run", "--detach", "--network=host", "--user", "12345:0", "--env", f"PORT={port}", tag, "/models/model",
        "--host", "127.0.0.1", env=podman_env,
    )  # fmt: skip
    try:
        first, _ = _first_embed(port, container, podman_env)
        np.testing.assert_allclose(first, minilm_runtime.encode(["The cat sat on the mat."]), atol=1e-6)
        probe = "import os; print([os.access(p, os.W_OK) for p in ('/models/model', '/models/model/manifest.json')])"
        assert _podman("exec", container, "python3", "-c", probe, env=podman_env) == "[False, False]"
        grown = int(_podman("image", "inspect", "--format", "{{.Size}}", tag, env=podman_env)) - int(
            _podman("image", "inspect", "--format", "{{.Size}}", image, env=podman_env)
        )
        print(f"baked image: +{grown / 1e6:.0f} MB for {model_bytes / 1e6:.0f} MB of artifact")
        assert grown < 1.2 * model_bytes, (grown, model_bytes)
    finally:
        _podman("rm", "--force", container, env=podman_env, check=False)
        _podman("rmi", "--force", tag, env=podman_env, check=False)


def _cache_files(container: str, env: dict[str, str]) -> list[str]:
    listing = "import pathlib; print(*sorted(p.name for p in pathlib.Path('/home/fastembed/.cache').rglob('*.onnx')))"
    return _podman("exec", container, "python3", "-c", listing, env=env).split()


def test_an_arbitrary_user_and_a_read_only_root_keep_the_graph_cache(
    image: str, podman_env: dict[str, str], minilm_artifact_session: Path
) -> None:
    """Run as a user of group 0 that the image does not know (OpenShift), the server could not write its graph cache
    under the home (10001's alone) and held the optimized weights on its heap instead: 84 MB more per replica."""
    volume = f"fastembed-rt-test-cache-{uuid.uuid4().hex[:8]}"
    runs = {
        "arbitrary user": ("--user", "12345:0"),
        "read-only root, cache volume": ("--read-only", "--user", "12345:0", "-v", f"{volume}:/home/fastembed/.cache"),
    }
    try:
        for what, flags in runs.items():
            container, port, _ = _start(image, podman_env, minilm_artifact_session, *flags)
            try:
                _first_embed(port, container, podman_env)
                assert _cache_files(container, podman_env), f"{what}: no graph cache written"
                assert "cache disabled" not in _logs(container, podman_env), what
            finally:
                _podman("rm", "--force", container, env=podman_env, check=False)
    finally:
        _podman("volume", "rm", "--force", volume, env=podman_env, check=False)


def test_the_image_holds_the_dependency_versions_the_project_is_tested_with(
    image: str, podman_env: dict[str, str]
) -> None:
    """The build stage installed without constraints.txt: uvicorn 0.55.0 where 0.54.0 is tested (and the server
    subclasses uvicorn's internals)."""
    probe = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))"
    )
    installed = json.loads(_podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe, env=podman_env))
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    checked = {name: (installed[name], pins[name]) for name in installed.keys() & pins.keys()}
    assert {"onnxruntime", "tokenizers", "numpy", "uvicorn", "starlette"} <= checked.keys(), sorted(installed)
    assert all(have == want for have, want in checked.values()), checked


def _local_torch_wheels() -> Path | None:
    """A folder holding a CPU torch wheel for pip's --find-links (this workplace keeps one on disk)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True, check=False
    )
    for folder in [*result.stdout.split(), "/opt/wheels"]:
        path = Path(folder)
        if path.is_dir() and any(path.glob("torch-*.whl")):
            return path
    return None


def test_the_export_stage_turns_a_model_into_an_artifact_the_server_image_serves(
    image: str, podman_env: dict[str, str], base_image: str, minilm_dir: Path, minilm_runtime: Any, tmp_path: Path
) -> None:
    wheels = _local_torch_wheels()
    if wheels is None:
        pytest.skip("no CPU torch wheel on disk: the export stage would download a multi-GB CUDA torch")
    tag = f"{image}-export"
    volumes = ["-v", f"{wheels}:{wheels}:ro", *(["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else [])]
    _podman(
        "build", "--format", "docker", "--pull=never", "--target", "export", "-f", "Containerfile", "-t", tag,
        "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"TORCH_REQUIREMENT=torch --find-links {wheels}",
        *volumes, str(REPO), env=podman_env, timeout=1800,
    )  # fmt: skip
    out = tmp_path / "artifacts"
    out.mkdir()
    try:
        _podman(
            "run", "--rm", "--env", "HF_HUB_OFFLINE=1", "-v", f"{minilm_dir}:/model:ro", "-v", f"{out}:/out", tag,
            "/model", "/out/minilm", "--variants", "fp32", "--no-stsb", env=podman_env, timeout=900,
        )  # fmt: skip
    finally:
        _podman("rmi", "--force", tag, env=podman_env, check=False)
    container, port, _ = _start(image, podman_env, out / "minilm")
    try:
        first, _ = _first_embed(port, container, podman_env)
        np.testing.assert_allclose(first, minilm_runtime.encode(["The cat sat on the mat."]), atol=1e-6)
    finally:
        _podman("rm", "--force", container, env=podman_env, check=False)
