"""Execution providers on the real MiniLM: parity with PyTorch, honest selection, no silent fallback."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastembed_rt import ProviderError, SentenceTransformer
from fastembed_rt.artifact import file_sha256, load_manifest
from fastembed_rt.batching import ACCELERATOR_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_BYTES
from fastembed_rt.cli import main as cli_main
from fastembed_rt.providers import (
    ProviderOptions,
    available_providers,
    choose_variant,
    max_batch_bytes,
    provider_spec,
)
from fastembed_rt.providers.fake import FakeProvider
from fastembed_rt.providers.onnxruntime import OnnxRuntimeCUDA, cuda_unavailable

TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the river bank on a sunny afternoon.",
    "Hi",
    "",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    "Das ist ein Beispielsatz.",
    "word " * 300,
]
no_cuda = pytest.mark.skipif(cuda_unavailable() is None, reason="CUDA is usable here: nothing falls back")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def torch_embeddings(minilm_torch: Any) -> np.ndarray:
    return np.asarray(minilm_torch.encode(TEXTS, convert_to_numpy=True))


@pytest.fixture(scope="module")
def multi_variant_artifact(minilm_artifact_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MiniLM artifact plus an OpenVINO IR variant (fp32 weights) and ONNX copies named optimized and fp16."""
    import openvino as ov

    root = tmp_path_factory.mktemp("variants") / "artifact"
    shutil.copytree(minilm_artifact_session, root)
    (root / "openvino").mkdir()
    model = ov.Core().read_model(root / "onnx" / "model.onnx")
    ov.save_model(model, root / "openvino" / "model.xml", compress_to_fp16=False)
    for stand_in in ("model_fp16.onnx", "model_optimized.onnx"):  # copies stand in for those graphs
        shutil.copy(root / "onnx" / "model.onnx", root / "onnx" / stand_in)
    manifest = json.loads((root / "manifest.json").read_text())
    fp32 = manifest["variants"][0]
    for name, file, fmt in (
        ("fp16", "onnx/model_fp16.onnx", "onnx"),
        ("optimized", "onnx/model_optimized.onnx", "onnx"),
        ("openvino", "openvino/model.xml", "openvino"),
    ):
        path = root / file
        variant = {**fp32, "name": name, "file": file, "format": fmt, "size": path.stat().st_size}
        manifest["variants"].append({**variant, "sha256": file_sha256(path)})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


# -- parity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["cpu", "openvino"])
def test_provider_matches_pytorch_within_the_fp32_gate(
    provider: str, minilm_artifact_session: Path, torch_embeddings: np.ndarray, tmp_path: Path
) -> None:
    model = SentenceTransformer(minilm_artifact_session, provider=provider, provider_cache_dir=tmp_path)
    ours = model.encode(TEXTS)
    assert (model.provider, model.variant) == (provider, "fp32")
    assert _cos(ours, torch_embeddings).min() >= 0.9999
    model.close()


def test_openvino_matches_onnxruntime_cpu_on_varied_shapes(minilm_runtime: Any, tmp_path: Path) -> None:
    model = SentenceTransformer(minilm_runtime.manifest.root, provider="openvino", provider_cache_dir=tmp_path)
    texts = [" ".join(["token"] * n) for n in (1, 3, 17, 64, 255)] + TEXTS
    for batch_size in (1, 3, 32):  # new (batch, sequence) shapes on every call: the dims stay dynamic
        assert _cos(model.encode(texts, batch_size=batch_size), minilm_runtime.encode(texts)).min() >= 0.9999
    model.close()


def test_openvino_ir_variant_is_preferred_and_matches_cpu(multi_variant_artifact: Path, tmp_path: Path) -> None:
    cpu = SentenceTransformer(multi_variant_artifact, provider="cpu")
    openvino = SentenceTransformer(multi_variant_artifact, provider="openvino", provider_cache_dir=tmp_path)
    assert (cpu.variant, openvino.variant) == ("optimized", "openvino")
    assert _cos(openvino.encode(TEXTS), cpu.encode(TEXTS)).min() >= 0.9999


# -- selection ------------------------------------------------------------------------------------
def test_auto_picks_cuda_when_usable_else_cpu_and_openvino_only_when_asked(
    minilm_artifact_session: Path, multi_variant_artifact: Path, tmp_path: Path
) -> None:
    assert "cpu" in available_providers() and "openvino" in available_providers()
    gpu = cuda_unavailable() is None
    onnx_only = SentenceTransformer(minilm_artifact_session)
    with_ir = SentenceTransformer(multi_variant_artifact, provider_cache_dir=tmp_path)
    named_onnx = SentenceTransformer(multi_variant_artifact, variant="fp32")
    asked = SentenceTransformer(multi_variant_artifact, provider="openvino", provider_cache_dir=tmp_path)
    assert (onnx_only.provider, onnx_only.variant) == ("cuda" if gpu else "cpu", "fp32")
    assert (with_ir.provider, with_ir.variant) == ("cuda", "fp16") if gpu else ("cpu", "optimized")
    assert (named_onnx.provider, named_onnx.variant) == ("cuda" if gpu else "cpu", "fp32")
    assert (asked.provider, asked.variant) == ("openvino", "openvino")


@no_cuda
def test_cuda_without_a_gpu_raises_naming_the_alternatives(minilm_artifact_session: Path) -> None:
    with pytest.raises(ProviderError) as caught:
        SentenceTransformer(minilm_artifact_session, provider="cuda")
    message = str(caught.value)
    assert "provider 'cuda' is not available" in message
    assert "available: auto, cpu, openvino" in message
    assert "for cuda, tensorrt: pip uninstall -y onnxruntime && pip install onnxruntime-gpu" in message


def test_each_provider_prefers_its_variants_in_order(multi_variant_artifact: Path) -> None:
    manifest = load_manifest(multi_variant_artifact)
    picks = {name: choose_variant(provider_spec(name), manifest).variant.name for name in ("cpu", "cuda", "openvino")}
    assert picks == {"cpu": "optimized", "cuda": "fp16", "openvino": "openvino"}


def test_named_variant_the_provider_cannot_run_raises(multi_variant_artifact: Path) -> None:
    with pytest.raises(ProviderError, match="variant 'openvino' is a openvino graph, which provider 'cpu' cannot run"):
        SentenceTransformer(multi_variant_artifact, provider="cpu", variant="openvino")


def test_named_variant_is_used_as_asked(multi_variant_artifact: Path, tmp_path: Path) -> None:
    model = SentenceTransformer(
        multi_variant_artifact, provider="openvino", variant="fp32", provider_cache_dir=tmp_path
    )
    assert model.variant == "fp32"


# -- no silent fallback ---------------------------------------------------------------------------
@no_cuda
def test_cuda_session_that_falls_back_to_cpu_raises(minilm_artifact_session: Path) -> None:
    with pytest.raises(ProviderError, match=r"but ONNX Runtime ran model\.onnx on CPUExecutionProvider"):
        OnnxRuntimeCUDA(minilm_artifact_session / "onnx" / "model.onnx", ProviderOptions())


@no_cuda
def test_allowed_fallback_runs_on_cpu_and_says_so(minilm_artifact_session: Path, minilm_runtime: Any) -> None:
    engine = OnnxRuntimeCUDA(minilm_artifact_session / "onnx" / "model.onnx", ProviderOptions(allow_fallback=True))
    assert engine.name == "cpu" and engine.session_providers == ("CPUExecutionProvider",)
    model = SentenceTransformer(minilm_artifact_session, provider="cuda", allow_fallback=True)
    assert model.provider == "cpu"
    assert _cos(model.encode(TEXTS), minilm_runtime.encode(TEXTS)).min() >= 0.99999


def test_missing_openvino_device_raises_listing_the_devices(minilm_artifact_session: Path, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"OpenVINO device 'NPU' is not available; available: .*CPU"):
        SentenceTransformer(minilm_artifact_session, provider="openvino:NPU", provider_cache_dir=tmp_path)


# -- OpenVINO compiled-model cache ----------------------------------------------------------------
def test_openvino_second_load_reads_the_compiled_model_cache(minilm_artifact_session: Path, tmp_path: Path) -> None:
    first = SentenceTransformer(minilm_artifact_session, provider="openvino", provider_cache_dir=tmp_path)
    second = SentenceTransformer(minilm_artifact_session, provider="openvino", provider_cache_dir=tmp_path)
    assert first._pipeline.provider.loaded_from_cache is False
    assert second._pipeline.provider.loaded_from_cache is True
    assert any((tmp_path / "openvino").iterdir())
    np.testing.assert_allclose(first.encode(TEXTS), second.encode(TEXTS), atol=1e-6)


def test_openvino_cache_keeps_no_blobs_of_artifacts_that_are_gone(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """Each deleted temporary artifact (or pruned hub revision) kept its ~90 MB blob for good."""
    import shutil

    cache = tmp_path / "cache"
    for name in ("first", "second", "third"):
        copy = tmp_path / name
        shutil.copytree(minilm_artifact_session, copy)
        SentenceTransformer(copy, provider="openvino", variant="fp32", provider_cache_dir=cache).close()
        if name != "third":
            shutil.rmtree(copy)
    (folder,) = [f for f in (cache / "openvino").iterdir() if f.is_dir()]  # the third's: the others are gone
    record = json.loads((folder / "source.json").read_text())
    from fastembed_rt.providers.base import mount_identity

    assert record == {"graph": str((tmp_path / "third" / "onnx" / "model.onnx").resolve()), "mounts": mount_identity()}


def test_openvino_loads_wait_for_a_compile_into_the_same_cache(minilm_artifact_session: Path, tmp_path: Path) -> None:
    """Two loads compiling into one empty cache at once: the first one failed ("cannot set permissions ...
    .blob") in 1 of 6 rounds. A load now compiles under the cache folder's lock."""
    import threading

    from fastembed_rt.providers.onnxruntime_cache import _replacing

    def load() -> SentenceTransformer:
        return SentenceTransformer(
            minilm_artifact_session, provider="openvino", variant="fp32", provider_cache_dir=tmp_path
        )

    first = load()
    expected = first.encode(TEXTS)
    folder = first._pipeline.provider.cache_dir
    first.close()
    loaded: list[SentenceTransformer] = []
    with _replacing(folder):  # as a load in another process holds it while it compiles
        waiting = threading.Thread(target=lambda: loaded.append(load()))
        waiting.start()
        waiting.join(timeout=3)
        assert waiting.is_alive() and not loaded  # it waits for the lock
    waiting.join(timeout=120)
    assert len(loaded) == 1 and loaded[0]._pipeline.provider.loaded_from_cache
    np.testing.assert_allclose(loaded[0].encode(TEXTS), expected, atol=1e-6)


def test_openvino_never_serves_a_compiled_blob_of_weights_the_artifact_no_longer_has(
    minilm_artifact: Path, tmp_path: Path
) -> None:
    """OpenVINO's cache key covers the graph file, not its weights file: a re-export (a fine-tuned model) that
    changed only the weights (``model.bin`` of an IR, ``model.onnx.data`` here) was served from the old blob."""
    data_file = minilm_artifact / "onnx" / "model.onnx.data"
    cache = tmp_path / "cache"

    def load(**options: Any) -> SentenceTransformer:
        return SentenceTransformer(minilm_artifact, provider="openvino", variant="fp32", **options)

    before = load(provider_cache_dir=cache)
    old = before.encode(TEXTS)
    before.close()
    weights = bytearray(data_file.read_bytes())
    weights[: len(weights) // 2] = bytes(len(weights) // 2)  # half the weights zeroed: other embeddings, same size
    data_file.write_bytes(weights)
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    for variant in manifest["variants"]:  # as a re-export records them
        if variant.get("weights_file") == "onnx/model.onnx.data":
            variant["weights_sha256"] = file_sha256(data_file)
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    after = load(provider_cache_dir=cache)
    assert after._pipeline.provider.loaded_from_cache is False
    new = after.encode(TEXTS)
    np.testing.assert_array_equal(new, load(provider_options=ProviderOptions(cache=False)).encode(TEXTS))
    assert not np.allclose(new, old, atol=1e-3)
    assert len(list((cache / "openvino").iterdir())) == 1, "the former weights' blobs are removed"


def test_openvino_never_serves_a_blob_compiled_with_another_precision_hint(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """OpenVINO's cache key misses INFERENCE_PRECISION_HINT: a default load after an f16 one ran the f16 blob while
    reporting f32 (and after a bf16 one failed in its first encode)."""

    def load(threads: int = 2, **extra: str) -> SentenceTransformer:
        options = ProviderOptions(extra=extra, cache_dir=tmp_path, intra_op_threads=threads)
        return SentenceTransformer(minilm_artifact_session, provider="openvino", provider_options=options)

    load(INFERENCE_PRECISION_HINT="f16").encode(TEXTS)
    default = load()
    engine = default._pipeline.provider
    assert engine.loaded_from_cache is False and engine.inference_precision == "f32"
    uncached = SentenceTransformer(
        minilm_artifact_session, provider="openvino", provider_options=ProviderOptions(cache=False)
    )
    np.testing.assert_array_equal(default.encode(TEXTS), uncached.encode(TEXTS))
    one_thread = load(threads=1)  # threads are applied to a cached blob: no blob of their own
    assert one_thread._pipeline.provider.loaded_from_cache is True
    assert load(INFERENCE_PRECISION_HINT="f16")._pipeline.provider.loaded_from_cache is True


def test_openvino_devices_and_properties_it_cannot_use_are_provider_errors(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """They were ArtifactErrors telling the user to re-export (OpenVINO failed to load the GPU plugin, or refused a
    property, inside compile_model)."""
    import openvino as ov

    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU: the cases below need a machine without one")

    def load(provider: str, **extra: Any) -> SentenceTransformer:
        options = ProviderOptions(extra=extra, cache_dir=tmp_path)
        return SentenceTransformer(minilm_artifact_session, provider=provider, provider_options=options)

    for device, message in [
        ("AUTO:GPU", "'AUTO:GPU': GPU is not available; available: CPU"),
        ("HETERO:GPU,CPU", "'HETERO:GPU,CPU': GPU is not available"),  # HETERO runs on all it lists
        ("CPU.1", "'CPU.1' is not available; available: CPU"),
    ]:
        with pytest.raises(ProviderError, match=re.escape(message)):
            load(f"openvino:{device}")
    auto = load("openvino:AUTO:GPU,CPU")  # AUTO picks among those here
    assert auto.device == "openvino:AUTO:CPU" and auto.encode(TEXTS).shape == (len(TEXTS), 384)
    assert load("openvino:cpu").device == load("openvino:CPU").device  # was "'cpu' is not available; available: CPU"
    folders = set((tmp_path / "openvino").iterdir()) if (tmp_path / "openvino").exists() else set()
    with pytest.raises(ProviderError, match=r"refuses provider option extra=\{'NOT_A_PROPERTY': 1\}"):
        load("openvino", NOT_A_PROPERTY=1)
    with pytest.raises(ProviderError, match="Wrong value int3 for property key INFERENCE_PRECISION_HINT"):
        load("openvino", INFERENCE_PRECISION_HINT="int3")
    # refused before any compile: no cache folder made for them (it was, and the cache was blamed in a warning)
    assert (set((tmp_path / "openvino").iterdir()) if (tmp_path / "openvino").exists() else set()) == folders


def test_a_session_config_entry_onnx_runtime_refuses_is_a_provider_error_not_a_corrupt_artifact(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """It was an ArtifactError calling the file corrupt and asking for a re-export."""
    options = ProviderOptions(extra={"session.intra_op_thread_affinities": "banana"}, cache_dir=tmp_path)
    with pytest.raises(
        ProviderError, match=r"ONNX Runtime refused the session config entries of options.extra .*banana"
    ):
        SentenceTransformer(minilm_artifact_session, provider="cpu", provider_options=options)


def test_openvino_on_an_onnx_graph_runs_truncate_dim_and_precision_on_the_host(
    minilm_artifact_session: Path, minilm_runtime: SentenceTransformer, tmp_path: Path
) -> None:
    """OpenVINO's ONNX reader folds the precision stage's inputs into constants: every precision= and truncate_dim=
    call was a ProviderError (backend="openvino" on an artifact without IR picks the ONNX graph)."""
    from fastembed_rt.quantization import quantize_embeddings

    model = SentenceTransformer(minilm_artifact_session, provider="openvino", provider_cache_dir=tmp_path)
    assert model.manifest.variant(model.variant).format == "onnx"
    floats = model.encode(TEXTS)
    truncated = model.encode(TEXTS, truncate_dim=64)
    np.testing.assert_allclose(truncated, floats[:, :64], atol=1e-6)
    np.testing.assert_allclose(truncated, minilm_runtime.encode(TEXTS, truncate_dim=64), atol=1e-4)
    assert np.array_equal(model.encode(TEXTS, precision="ubinary"), quantize_embeddings(floats, "ubinary"))
    codes, on_cpu = model.encode(TEXTS, precision="int8"), minilm_runtime.encode(TEXTS, precision="int8")
    assert codes.dtype == np.int8 and np.abs(codes.astype(np.int16) - on_cpu).max() <= 1  # engines differ by ~1e-7
    assert model.encode(TEXTS, precision="int8", truncate_dim=32).shape == (len(TEXTS), 32)


# -- the fake engine, timings, warm-up, CLI --------------------------------------------------------
def test_fake_provider_sees_length_sorted_batches_and_rows_come_back_in_order(minilm_artifact_session: Path) -> None:
    def lengths(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        out = np.zeros((len(feeds["input_ids"]), 384), dtype=np.float32)
        out[:, 0] = feeds["attention_mask"].sum(1)
        return {"sentence_embedding": out}

    fake = FakeProvider(lengths)
    model = SentenceTransformer(minilm_artifact_session, provider=fake)
    out = model.encode(TEXTS, batch_size=2)
    np.testing.assert_array_equal(out[:, 0], model.tokenize(TEXTS)["attention_mask"].sum(1))
    assert model.provider == "fake"
    widths = [feeds["input_ids"].shape[1] for feeds, _ in fake.calls]
    assert widths == sorted(widths, reverse=True)
    model.close()
    with pytest.raises(ProviderError, match="closed"):
        model.encode(TEXTS)


def test_an_interrupted_call_leaves_the_last_finished_calls_stats(minilm_artifact_session: Path) -> None:
    """A call stopped by Ctrl-C set last_encode_stats as if it had run all its texts."""
    calls = 0

    def interrupted_on_the_third_batch(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return {"sentence_embedding": np.zeros((len(feeds["input_ids"]), 384), dtype=np.float32)}

    model = SentenceTransformer(minilm_artifact_session, provider=FakeProvider(interrupted_on_the_third_batch))
    model.encode(TEXTS[:2], batch_size=2)
    finished = model.last_encode_stats
    assert finished.texts == 2
    with pytest.raises(KeyboardInterrupt):
        model.encode(TEXTS * 10, batch_size=2)
    assert model.last_encode_stats == finished


def test_a_call_of_several_passes_interrupted_in_a_later_one_leaves_the_last_finished_calls_stats(
    minilm_artifact_session: Path,
) -> None:
    """Chunked texts over 1 MiB run in groups, one pass each: an interruption in the second left the first's stats."""
    model = SentenceTransformer(minilm_artifact_session)
    cat = model.tokenizer.token_to_id("cat")

    def interrupted_in_the_second_group(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        if (feeds["input_ids"] == cat).any():
            raise KeyboardInterrupt
        return {"sentence_embedding": np.ones((len(feeds["input_ids"]), 384), dtype=np.float32)}

    fake = SentenceTransformer(minilm_artifact_session, provider=FakeProvider(interrupted_in_the_second_group))
    fake.encode(["a", "b"])
    finished = fake.last_encode_stats
    with pytest.raises(KeyboardInterrupt):
        fake.encode(["word " * 220_000, "cat " * 220_000], long_inputs="chunk", batch_size=64)
    assert fake.last_encode_stats == finished
    model.close()


def test_encode_stats_split_time_into_tokenize_run_and_postprocess(minilm_runtime: Any) -> None:
    minilm_runtime.encode(TEXTS * 20, batch_size=8)
    stats = minilm_runtime.last_encode_stats
    assert stats.tokenize_s > 0 and stats.run_s > 0 and stats.postprocess_s > 0
    assert stats.run_s > stats.postprocess_s
    assert stats.total_s == pytest.approx(stats.tokenize_s + stats.run_s + stats.postprocess_s)
    assert 0 < stats.padding_ratio < 1


def test_warmup_runs_at_load_and_leaves_no_stats(minilm_artifact_session: Path) -> None:
    calls: list[int] = []

    def record(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        calls.append(len(feeds["input_ids"]))
        return {"sentence_embedding": np.zeros((len(feeds["input_ids"]), 384), np.float32)}

    model = SentenceTransformer(minilm_artifact_session, provider=FakeProvider(record), warmup=True)
    assert calls == [1] and model.last_encode_stats.texts == 0


def test_activation_bound_is_the_cpus_on_the_cpu_and_larger_on_a_gpu(minilm_artifact_session: Path) -> None:
    def zeros(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        return {"sentence_embedding": np.zeros((len(feeds["input_ids"]), 384), np.float32)}

    def engine(name: str, device: str | None = None) -> FakeProvider:
        fake = FakeProvider(zeros, name=name)
        if device is not None:
            fake.device = device  # type: ignore[attr-defined]
        return fake

    assert max_batch_bytes(engine("cpu")) == DEFAULT_MAX_BATCH_BYTES
    assert max_batch_bytes(engine("openvino", "CPU")) == DEFAULT_MAX_BATCH_BYTES
    assert max_batch_bytes(engine("my-engine")) == DEFAULT_MAX_BATCH_BYTES  # unknown: counted as the CPU
    assert max_batch_bytes(engine("cuda")) == ACCELERATOR_MAX_BATCH_BYTES > DEFAULT_MAX_BATCH_BYTES
    assert max_batch_bytes(engine("tensorrt")) == ACCELERATOR_MAX_BATCH_BYTES
    assert max_batch_bytes(engine("openvino", "GPU.0")) == ACCELERATOR_MAX_BATCH_BYTES
    on_gpu = SentenceTransformer(minilm_artifact_session, provider=engine("cuda"))
    assert on_gpu.max_batch_bytes == ACCELERATOR_MAX_BATCH_BYTES
    assert SentenceTransformer(minilm_artifact_session, provider="cpu").max_batch_bytes == DEFAULT_MAX_BATCH_BYTES


def test_cli_encode_takes_provider_and_variant(
    minilm_artifact_session: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli_main(["encode", str(minilm_artifact_session), "hello", "--provider", "cpu", "--variant", "fp32"]) == 0
    assert len(json.loads(capsys.readouterr().out.splitlines()[0])["embedding"]) == 384
    if cuda_unavailable() is not None:
        assert cli_main(["encode", str(minilm_artifact_session), "hello", "--provider", "cuda"]) == 1
        assert "available: auto, cpu" in capsys.readouterr().err


def test_onnx_runtimes_telemetry_store_is_not_written_unless_the_environment_asks(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """ONNX Runtime's import wrote a device id and a usage event (OS, CPU, executable path) under ~/.cache/Microsoft."""
    import subprocess
    import sys

    code = (
        "import os, sys; from fastembed_rt import SentenceTransformer; SentenceTransformer(sys.argv[1]).encode('x'); "
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    )
    written: dict[str | None, list[Path]] = {}
    for setting in (None, "0"):
        home = tmp_path / f"home-{setting}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
        env.update(HOME=str(home), FASTEMBED_RT_CACHE=str(tmp_path / "cache"))
        if setting is not None:
            env["ORT_DISABLE_TELEMETRY"] = setting
        run = subprocess.run(
            [sys.executable, "-c", code, str(minilm_artifact_session)],
            env=env,
            check=True,
            timeout=120,
            capture_output=True,
            text=True,
        )
        # What ONNX Runtime reads: our default where the environment is silent, the user's own choice kept.
        assert run.stdout.split()[-1] == ("1" if setting is None else setting), run.stdout
        written[setting] = list((home / ".cache" / "Microsoft").rglob("*"))
    assert written[None] == [], written[None]
    # "0" is ONNX Runtime's own default. Whether it then writes depends on the machine (it does on the workstation,
    # and did not on one CI machine), so the store is only checked against it where it wrote.
    if not written["0"]:
        pytest.skip("ONNX Runtime wrote no telemetry store here even when allowed; the environment check above ran")


@pytest.mark.parametrize("name", ["allow_fallback", "allow_spinning", "cache"])
def test_switches_take_only_booleans(name: str) -> None:
    """``cache="false"`` (a YAML or environment string) kept the cache on: the string is truthy."""
    for value in ("false", "no", 0, None):
        with pytest.raises(ProviderError, match=rf"{name} must be True or False, got {value!r}"):
            ProviderOptions(**{name: value})
    assert getattr(ProviderOptions(**{name: np.bool_(False)}), name) is False


def test_inter_op_threads_above_one_run_operators_in_parallel() -> None:
    """inter_op_threads did nothing: the session ran in sequential mode, which never uses the inter-op pool."""
    import onnxruntime as ort

    from fastembed_rt.providers.onnxruntime import session_options

    assert session_options(ProviderOptions()).execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    parallel = session_options(ProviderOptions(inter_op_threads=2))
    assert parallel.execution_mode == ort.ExecutionMode.ORT_PARALLEL and parallel.inter_op_num_threads == 2


def test_inter_op_threads_encode_as_the_sequential_session(minilm_artifact_session: Path) -> None:
    texts = ["a cat sat on the mat", "stocks fell sharply", "how many people live in berlin"]
    sequential = SentenceTransformer(minilm_artifact_session, variant="fp32")
    parallel = SentenceTransformer(minilm_artifact_session, variant="fp32", provider_options={"inter_op_threads": 2})
    np.testing.assert_allclose(parallel.encode(texts), sequential.encode(texts), atol=1e-6)
    sequential.close()
    parallel.close()


def test_a_cpu_device_that_is_not_an_index_is_refused(minilm_artifact_session: Path) -> None:
    """'cpu:abc' ran on the CPU with the suffix unread; 'cpu:0' is torch's name for it."""
    with pytest.raises(ProviderError, match=r"provider 'cpu:abc': the cpu provider has no device 'abc'"):
        SentenceTransformer(minilm_artifact_session, provider="cpu:abc")
    model = SentenceTransformer(minilm_artifact_session, provider="cpu:0")
    assert model.provider == "cpu"
    model.close()
