"""Container-aware CPU defaults: threads follow affinity and the cgroup quota; the documented session defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import SentenceTransformer
from fastembed_rt.errors import ProviderError
from fastembed_rt.providers import ProviderOptions
from fastembed_rt.providers.base import SPIN_US
from fastembed_rt.providers.onnxruntime import onnxruntime_version
from fastembed_rt.providers.threads import available_cpus, cgroup_cpu_quota

_PINNED = """
import json, sys
from fastembed_rt import SentenceTransformer
cpu = SentenceTransformer(sys.argv[1], provider="cpu")
openvino = SentenceTransformer(sys.argv[1], provider="openvino", provider_cache_dir=sys.argv[2])
session = cpu._pipeline.provider._session.get_session_options()
print(json.dumps({"cpu": session.intra_op_num_threads, "openvino": openvino._pipeline.provider.intra_op_threads}))
"""


def _run_pinned(cpus: set[int], artifact: Path, cache: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PINNED, str(artifact), str(cache)],
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        capture_output=True,
        text=True,
        check=True,
        cwd=cache,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_process_pinned_to_one_cpu_gets_one_intra_op_thread(minilm_artifact_session: Path, tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    assert _run_pinned({first}, minilm_artifact_session, tmp_path) == {"cpu": 1, "openvino": 1}


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2 or available_cpus() < 2,
    reason="needs two usable CPUs",
)
def test_process_pinned_to_two_cpus_gets_two_intra_op_threads(minilm_artifact_session: Path, tmp_path: Path) -> None:
    two = set(sorted(os.sched_getaffinity(0))[:2])
    assert _run_pinned(two, minilm_artifact_session, tmp_path) == {"cpu": 2, "openvino": 2}


def _cgroup_tree(tmp_path: Path, files: dict[str, str], proc: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc_file = tmp_path / "proc_self_cgroup"
    proc_file.write_text(proc)
    return root, proc_file


def test_cgroup_v2_quota_in_a_container_namespace_is_read(tmp_path: Path) -> None:
    root, proc = _cgroup_tree(tmp_path, {"cpu.max": "150000 100000\n"}, "0::/\n")
    assert cgroup_cpu_quota(root, proc) == 1.5


def test_tightest_quota_among_cgroup_ancestors_wins(tmp_path: Path) -> None:
    files = {"cpu.max": "max 100000\n", "slice/cpu.max": "50000 100000\n", "slice/job/cpu.max": "max 100000\n"}
    root, proc = _cgroup_tree(tmp_path, files, "0::/slice/job\n")
    assert cgroup_cpu_quota(root, proc) == 0.5


def test_cgroup_v1_cfs_quota_is_read(tmp_path: Path) -> None:
    folder = "cpu,cpuacct/docker/abc"
    files = {f"{folder}/cpu.cfs_quota_us": "200000\n", f"{folder}/cpu.cfs_period_us": "100000\n"}
    root, proc = _cgroup_tree(tmp_path, files, "3:cpu,cpuacct:/docker/abc\n2:cpuacct:/\n")
    assert cgroup_cpu_quota(root, proc) == 2.0


def test_unlimited_cgroup_has_no_quota(tmp_path: Path) -> None:
    files = {"cpu.max": "max 100000\n", "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    root, proc = _cgroup_tree(tmp_path, files, "1:cpu:/\n0::/\n")
    assert cgroup_cpu_quota(root, proc) is None


def test_available_cpus_never_exceeds_the_affinity_set() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_cpu_session_defaults_are_the_documented_ones(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cpu")
    options = model._pipeline.provider._session.get_session_options()
    assert options.intra_op_num_threads == available_cpus()
    assert options.inter_op_num_threads == 1
    assert options.enable_mem_pattern is False
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    # workers spin SPIN_US for the next operator where ONNX Runtime can bound it (1.26 on), else not at all
    bounded = onnxruntime_version() >= (1, 26)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if bounded else "0")
    if bounded:
        assert options.get_session_config_entry("session.intra_op.spin_duration_us") == str(SPIN_US) == "10"
    model.close()


def _spin_entries(options: Any) -> tuple[str, str | None]:
    spin = options.get_session_config_entry("session.intra_op.allow_spinning")
    try:
        return spin, options.get_session_config_entry("session.intra_op.spin_duration_us")
    except RuntimeError:  # not set
        return spin, None


@pytest.mark.skipif(
    onnxruntime_version() < (1, 26),
    reason="ONNX Runtime bounds its spin from 1.26 on",
)
def test_spin_us_bounds_the_spin_zero_turns_it_off_and_allow_spinning_gives_onnxruntimes_own(
    minilm_artifact_session: Path,
) -> None:
    seen = {}
    for name, options in {
        "50 us": ProviderOptions(spin_us=50),
        "off": ProviderOptions(spin_us=0),
        "onnxruntime's": ProviderOptions(allow_spinning=True),
    }.items():
        model = SentenceTransformer(minilm_artifact_session, provider="cpu", provider_options=options)
        seen[name] = _spin_entries(model._pipeline.provider._session.get_session_options())
        assert model.encode(["spinning changes the speed, not the numbers"]).shape == (1, 384)
        model.close()
    assert seen == {"50 us": ("1", "50"), "off": ("0", None), "onnxruntime's": ("1", None)}


def test_onnxruntime_versions_are_read_from_releases_candidates_and_dev_builds() -> None:
    assert [onnxruntime_version(v) for v in ("1.32.0", "1.27rc1", "1.26.0.dev20260401", "2.0")] == [
        (1, 32),
        (1, 27),
        (1, 26),
        (2, 0),
    ]
    assert onnxruntime_version("unknown") == (0, 0)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_a_spin_that_is_not_whole_microseconds_is_refused(bad: Any) -> None:
    with pytest.raises(ProviderError, match="spin_us must be a whole number"):
        ProviderOptions(spin_us=bad)


def test_numpy_integers_are_taken_for_every_whole_number_option() -> None:
    """The thread counts took np.int64 (a config read by numpy, a sweep's np.arange); streams and spin_us refused it."""
    options = ProviderOptions(intra_op_threads=np.int64(2), streams=np.int64(2), spin_us=np.int32(50))
    assert (options.intra_op_threads, options.streams, options.spin_us) == (2, 2, 50)
    assert all(type(v) is int for v in (options.intra_op_threads, options.streams, options.spin_us))
    with pytest.raises(ProviderError, match="streams must be a whole number"):
        ProviderOptions(streams=np.bool_(True))


@pytest.mark.parametrize("bad", [-3, 1.5, "2", True, 10**6])
def test_a_thread_count_that_is_not_a_sane_whole_number_is_refused(minilm_artifact_session: Path, bad: Any) -> None:
    """1.5 and "2" raised pybind11's TypeError, -3 was accepted as is, 10**6 got the process killed for memory."""
    for name in ("intra_op_threads", "inter_op_threads"):
        with pytest.raises(ProviderError, match=f"{name} must be a whole number from 1 to 1024"):
            ProviderOptions(**{name: bad})
    with pytest.raises(ProviderError, match="intra_op_threads must be a whole number"):
        SentenceTransformer(minilm_artifact_session, provider="cpu", intra_op_threads=bad)


def test_a_numpy_thread_count_reaches_the_session(minilm_artifact_session: Path) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider="cpu", intra_op_threads=np.int64(1))
    assert model._pipeline.provider._session.get_session_options().intra_op_num_threads == 1


def test_cpu_session_defaults_are_overridable(minilm_artifact_session: Path) -> None:
    custom = ProviderOptions(inter_op_threads=2, extra={"session.intra_op.spin_duration_us": "5"})
    model = SentenceTransformer(minilm_artifact_session, provider="cpu", intra_op_threads=1, provider_options=custom)
    options = model._pipeline.provider._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)
    assert options.get_session_config_entry("session.intra_op.spin_duration_us") == "5"
    model.close()
