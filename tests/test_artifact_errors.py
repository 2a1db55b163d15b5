"""Missing, corrupt or wrong artifacts give an ArtifactError that names the file and the fix."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from permissions import where_permissions_apply

from fastembed_rt import ArtifactError, InputError, SentenceTransformer


def test_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"does not exist.*fastembed-rt export"):
        SentenceTransformer(tmp_path / "nope")


def test_model_directory_without_manifest_says_to_export(minilm_dir: Path) -> None:
    with pytest.raises(ArtifactError, match=r"model directory, not a fastembed-rt artifact.*fastembed-rt export"):
        SentenceTransformer(minilm_dir)


def test_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"manifest.json is missing"):
        SentenceTransformer(tmp_path)


def test_invalid_json_manifest_names_the_file(minilm_artifact: Path) -> None:
    (minilm_artifact / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest.json is not valid JSON"):
        SentenceTransformer(minilm_artifact)


def test_manifest_missing_a_key_names_the_key(minilm_artifact: Path) -> None:
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    del data["tokenizer"]["max_seq_length"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"tokenizer\.'max_seq_length'"):
        SentenceTransformer(minilm_artifact)


def test_newer_schema_version_asks_for_an_upgrade(minilm_artifact: Path) -> None:
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"schema_version 99 is not supported"):
        SentenceTransformer(minilm_artifact)


def test_artifacts_are_written_as_schema_2_and_version_1_ones_still_load(minilm_artifact: Path, tmp_path: Path) -> None:
    """Version 1 readers ignored settings later versions write (truncate_dim: other vectors, silently): artifacts
    written now say 2, which those readers refuse with their upgrade error, and version 1 artifacts read as before."""
    from fastembed_rt.artifact import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

    assert SCHEMA_VERSION == 2 and READABLE_SCHEMA_VERSIONS == (1, 2, 3)  # 3: routed artifacts only
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2
    expected = SentenceTransformer(minilm_artifact).encode(["a cat"])
    path.write_text(json.dumps({**data, "schema_version": 1}))
    old = SentenceTransformer(minilm_artifact, truncate_dim=64)
    np.testing.assert_array_equal(old.encode(["a cat"]), expected[:, :64])
    old.save(tmp_path / "saved")  # its truncate_dim is written: as version 2
    assert json.loads((tmp_path / "saved" / "manifest.json").read_text())["schema_version"] == 2
    # a change every version reads (tune's speed records, a calibration) keeps the artifact's version 1
    from fastembed_rt.artifact import load_manifest, update_manifest

    assert load_manifest(minilm_artifact).schema_version == 1
    update_manifest(minilm_artifact, speed=())
    assert json.loads(path.read_text())["schema_version"] == 1
    from fastembed_rt.calibration import calibrate_artifact

    calibrate_artifact(old, ["a cat sat", "stocks fell", "it rains"], "test")
    assert json.loads(path.read_text())["schema_version"] == 1
    update_manifest(minilm_artifact, truncate_dim=32)  # one a version 1 reader would ignore: version 2
    assert json.loads(path.read_text())["schema_version"] == 2
    data = json.loads(path.read_text())
    for bad in (True, "2", 4):
        path.write_text(json.dumps({**data, "schema_version": bad}))
        with pytest.raises(ArtifactError, match=rf"schema_version {bad!r} is not supported .*\(supports 1, 2, 3\)"):
            SentenceTransformer(minilm_artifact)


def test_missing_graph_file_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "onnx" / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model.onnx is missing"):
        SentenceTransformer(minilm_artifact)


def test_truncated_graph_file_is_detected_by_size(minilm_artifact: Path) -> None:
    graph = minilm_artifact / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"model.onnx is corrupt or truncated: 1000 bytes"):
        SentenceTransformer(minilm_artifact)


def test_same_size_corruption_is_caught_by_full_verification_and_by_the_loader(
    minilm_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = minilm_artifact / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[:64] = b"\xff" * 64  # same size, broken protobuf header
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model.onnx is corrupt: sha256"):
        SentenceTransformer(minilm_artifact, verify="full")
    with pytest.raises(ArtifactError, match=r"model.onnx could not be loaded by ONNX Runtime"):
        SentenceTransformer(minilm_artifact)
    # the graph is at fault, not the graph cache: a warning that the cache could not save it came first
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "cache" in r.getMessage()]


def test_missing_tokenizer_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer.json is missing"):
        SentenceTransformer(minilm_artifact)


def test_corrupt_tokenizer_is_named(minilm_artifact: Path) -> None:
    (minilm_artifact / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    with pytest.raises(ArtifactError, match=r"tokenizer.json is not a valid tokenizers file"):
        SentenceTransformer(minilm_artifact)


def test_unknown_variant_lists_the_available_ones(minilm_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no variant 'int8'; available: fp32"):
        SentenceTransformer(minilm_artifact, variant="int8")


def test_hub_id_not_in_cache_while_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtifactError, match=r"not in the hub cache .* while offline"):
        SentenceTransformer("someone/some-artifact", cache_dir=tmp_path / "cache")


def test_an_offline_miss_names_the_cache_it_looked_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$SENTENCE_TRANSFORMERS_HOME wins over HF_HUB_CACHE, and the error never said which folder was searched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st-home"))
    with pytest.raises(
        ArtifactError,
        match=rf"not in the hub cache {re.escape(str(tmp_path / 'st-home'))} "
        r"\(\$SENTENCE_TRANSFORMERS_HOME\) while offline",
    ):
        SentenceTransformer("someone/some-artifact")
    with pytest.raises(ArtifactError, match=rf"hub cache {re.escape(str(tmp_path / 'mine'))} \(cache_dir\)"):
        SentenceTransformer("someone/some-artifact", cache_dir=tmp_path / "mine")
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME")
    from huggingface_hub import constants

    with pytest.raises(ArtifactError, match=rf"hub cache {re.escape(str(constants.HF_HUB_CACHE))} while offline"):
        SentenceTransformer("someone/some-artifact")


def test_hub_id_resolves_from_the_local_cache_when_offline(
    minilm_artifact_session: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Lay the artifact out as huggingface_hub's cache does, then load it by repo id offline.
    import shutil

    snapshot = tmp_path / "cache" / "models--acme--minilm-rt" / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_artifact_session, snapshot)
    refs = tmp_path / "cache" / "models--acme--minilm-rt" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    model = SentenceTransformer("acme/minilm-rt", cache_dir=tmp_path / "cache")
    assert model.encode(["hello"]).shape == (1, 384)


def test_an_unreachable_hub_leaves_the_lookup_to_the_cache(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)}
    code = (
        "from fastembed_rt import ArtifactError, SentenceTransformer\n"
        "try:\n    SentenceTransformer('someone/artifact')\n"
        "except ArtifactError as exc:\n    print('ArtifactError:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ArtifactError: 'someone/artifact' is not a local directory and is not in the hub cache" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_manifest_update_replaces_a_linked_manifest_and_leaves_its_target(minilm_artifact: Path) -> None:
    from fastembed_rt.artifact import load_manifest, update_manifest

    blob = minilm_artifact.parent / "blob-manifest.json"  # as a hub cache snapshot links its files to blobs
    (minilm_artifact / "manifest.json").rename(blob)
    (minilm_artifact / "manifest.json").symlink_to(blob)
    before = blob.read_bytes()
    assert load_manifest(minilm_artifact).similarity_fn != "dot"
    update_manifest(minilm_artifact, similarity_fn="dot")
    assert blob.read_bytes() == before, "the linked blob is untouched"
    assert not (minilm_artifact / "manifest.json").is_symlink()
    assert load_manifest(minilm_artifact).similarity_fn == "dot"
    assert sorted(p.name for p in minilm_artifact.iterdir() if p.name.startswith(".")) == [], "no temporary left"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tokenizer.max_seq_length", -5, r"tokenizer.max_seq_length is -5; it must be a positive integer"),
        ("tokenizer.max_seq_length", 0, r"tokenizer.max_seq_length is 0; it must be a positive integer"),
        (
            "tokenizer.truncation_side",
            "middle",
            r"tokenizer.truncation_side is 'middle'; it must be one of left, right",
        ),
        ("tokenizer.padding_side", "up", r"tokenizer.padding_side is 'up'; it must be one of left, right"),
        ("graph.inputs", [], r"graph.inputs is \[\]; it must be a non-empty list of input names"),
        ("graph.inputs", "input_ids", r"graph.inputs is 'input_ids'; it must be a non-empty list of input names"),
        ("dim", 0, r"dim is 0; it must be a positive integer"),
        # an edited manifest: each one crashed (RecursionError, OverflowError, a petabyte allocation) or loaded a
        # model that ignored its cut (True and 1 switched truncation off, 3.7 became 3)
        ("dim", 10**15, r"dim is 1000000000000000; it must be a positive integer up to 4,194,304"),
        ("tokenizer.max_seq_length", True, r"tokenizer.max_seq_length is True; it must be a positive integer"),
        ("tokenizer.max_seq_length", 3.7, r"tokenizer.max_seq_length is 3.7; it must be a positive integer"),
        ("tokenizer.pad_token_id", 10**30, r"tokenizer.pad_token_id is 1000000000000000000000000000000; it must be"),
        ("tokenizer.pad_token_id", -1, r"tokenizer.pad_token_id is -1; it must be a token id"),
        ("tokenizer.special_token_ids", [101, "x"], r"tokenizer.special_token_ids\[\] is 'x'; it must be a token id"),
        (
            "variants.0.engine_properties",
            {"CACHE_DIR": "/tmp/x"},
            r"variant 'fp32' engine_properties.CACHE_DIR is '/tmp/x'; an artifact may set only "
            r"INFERENCE_PRECISION_HINT",
        ),
        (
            "variants.0.engine_properties",
            {"INFERENCE_PRECISION_HINT": "i4"},
            r"variant 'fp32' engine_properties.INFERENCE_PRECISION_HINT is 'i4'; an artifact may set only",
        ),
        ("dim", 768, r"dim is 768; graph.outputs.sentence_embedding declares 384, and the two must agree"),
        ("variants.0.fidelity.min_cosine", "x", r"variant 'fp32' fidelity.min_cosine is 'x'; it must be a number"),
        ("rejected_variants", "x", r"rejected_variants is 'x'; it must be a list"),
        ("rejected_variants", [{"foo": 1}], r"an entry of rejected_variants is \{'foo': 1\}; each must be"),
    ],
)
def test_a_manifest_value_out_of_range_is_an_artifact_error_naming_key_and_value(
    minilm_artifact: Path, key: str, value: object, message: str
) -> None:
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=rf"manifest.json: {message}.*fastembed-rt export"):
        SentenceTransformer(minilm_artifact)


@pytest.mark.parametrize(
    ("where", "value"),
    [("size", "1e999"), ("threads", "Infinity"), ("rate", "NaN"), ("rate", "-1"), ("rate", "Infinity")],
)
def test_a_number_json_reads_as_infinite_or_nan_is_a_malformed_manifest(
    minilm_artifact: Path, where: str, value: str
) -> None:
    """1e999 as a size and Infinity as a thread count raised a bare OverflowError (a traceback from the CLI); a NaN
    rate in a speed record failed the variant choice with "max() arg is an empty sequence"."""
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    record = {"machine": "x86_64", "cpu": "c", "isa": ["avx2"], "threads": 2, "texts": 1, "batch_size": 32}
    data["speed"] = [{**record, "sentences_per_s": {"fp32": [1.0]}, "source": "tune", "date": "2026-12-07"}]
    if where == "size":
        data["variants"][0]["size"] = "__X__"
    elif where == "threads":
        data["speed"][0]["threads"] = "__X__"
    else:
        data["speed"][0]["sentences_per_s"]["fp32"] = ["__X__"]
    path.write_text(json.dumps(data).replace('"__X__"', value))
    with pytest.raises(ArtifactError, match=r"manifest.json: malformed manifest .*fastembed-rt export"):
        SentenceTransformer(minilm_artifact, provider="cpu")


def test_an_artifact_under_a_path_that_is_not_utf_8_is_refused_naming_the_byte_and_a_link_works(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """A Latin-1 folder name (an old archive, an SMB mount): the tokenizer was called corrupt, to be exported again."""
    import os
    import shutil

    latin = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    shutil.copytree(minilm_artifact_session, latin)
    with pytest.raises(
        ArtifactError, match=r"holds a byte that is not UTF-8 \(0xe9\) in its path; .*rename the folder"
    ):
        SentenceTransformer(latin)
    (tmp_path / "cafe").symlink_to(latin)
    assert SentenceTransformer(tmp_path / "cafe").encode(["x"]).shape == (1, 384)


def test_a_fidelity_number_stored_as_null_reads_as_nan_and_survives_a_rewrite(minilm_artifact: Path) -> None:
    """Manifests store NaN as null (standard JSON); the reader refused null, so the first rewrite of a manifest
    holding a NaN (tune, calibrate, save) left an artifact that no load accepted."""
    import math

    from fastembed_rt.artifact import load_manifest, update_manifest

    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    data["variants"][0]["fidelity"]["stsb_spearman"] = None
    path.write_text(json.dumps(data))
    assert math.isnan(load_manifest(minilm_artifact).variants[0].fidelity["stsb_spearman"])
    update_manifest(minilm_artifact, truncate_dim=None)
    assert json.loads(path.read_text())["variants"][0]["fidelity"]["stsb_spearman"] is None
    assert SentenceTransformer(minilm_artifact, provider="cpu").encode(["a text"]).shape == (1, 384)


@pytest.mark.parametrize("record", [{"texts": 2}, ["calibration.npy"], "calibration.npy", {"file": 3}])
def test_a_calibration_record_without_its_file_name_is_an_artifact_error_naming_the_fix(
    minilm_artifact: Path, record: object
) -> None:
    """The artifact loaded and `info` showed the record; each int8 call then died of a bare KeyError/TypeError."""
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "calibration": record}))
    with pytest.raises(ArtifactError, match=r"calibration is .*; it must be an object naming its file.*calibrate"):
        SentenceTransformer(minilm_artifact, provider="cpu")
    path.write_text(json.dumps({**data, "calibration": {}}))  # an empty record: no calibration, as none
    with pytest.raises(ArtifactError, match="has no int8/uint8 calibration"):
        SentenceTransformer(minilm_artifact, provider="cpu").encode(["hello"], precision="int8")


@pytest.mark.parametrize("kept", [0, 100], ids=["empty", "truncated"])
def test_an_empty_or_truncated_calibration_file_is_an_artifact_error_naming_the_fix(
    minilm_artifact: Path, tmp_path: Path, kept: int
) -> None:
    from fastembed_rt.calibration import calibrate_artifact

    model = SentenceTransformer(minilm_artifact, provider="cpu")
    calibrate_artifact(model, ["A cat sat on the mat.", "Stocks fell sharply."], "test")
    calibration = minilm_artifact / "calibration.npy"
    calibration.write_bytes(calibration.read_bytes()[:kept])
    with pytest.raises(
        ArtifactError, match=r"calibration.npy cannot be read .*`fastembed-rt calibrate .* --texts FILE`"
    ):
        SentenceTransformer(minilm_artifact, provider="cpu").encode(["hello"], precision="int8")


@pytest.mark.parametrize("sample", ["empty", "nan"])
def test_a_calibration_set_with_no_rows_or_non_finite_values_is_named(minilm_artifact: Path, sample: str) -> None:
    """NaN rows gave all-zero int8 codes silently; an empty set numpy's 'zero-size array' error."""
    import numpy as np

    bad = np.zeros((0, 384), np.float32) if sample == "empty" else np.full((5, 384), np.nan, np.float32)
    np.save(minilm_artifact / "calibration.npy", bad)
    with pytest.raises(ArtifactError, match=r"calibration.npy holds .*no ranges to quantize with; re-create it"):
        SentenceTransformer(minilm_artifact, provider="cpu").encode(["hello"], precision="int8")


def test_a_calibration_set_changed_after_calibrating_is_refused(minilm_artifact: Path) -> None:
    """A replaced calibration.npy quantized with other ranges than the manifest publishes, silently."""
    from fastembed_rt.calibration import calibrate_artifact

    calibrate_artifact(SentenceTransformer(minilm_artifact), ["A cat sat on the mat.", "Stocks fell sharply."], "test")
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    # the ranges rounded to 6 places, as fastembed-rt wrote them before it wrote the float32 values: still this set
    manifest["calibration"]["ranges"] = np.round(manifest["calibration"]["ranges"], 6).tolist()
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    assert SentenceTransformer(minilm_artifact).encode(["hello"], precision="int8").shape == (1, 384)
    path = minilm_artifact / "calibration.npy"
    np.save(path, np.load(path) * 3)
    with pytest.raises(ArtifactError, match=r"calibration.npy is not the calibration set its manifest records"):
        SentenceTransformer(minilm_artifact, provider="cpu").encode(["hello"], precision="int8")


# -- file permissions ----------------------------------------------------------------------------------------------
UNREADABLE = """
import sys
from fastembed_rt import ArtifactError, SentenceTransformer
from fastembed_rt.cli import main
try:
    SentenceTransformer(sys.argv[1])
except ArtifactError as exc:
    print("ArtifactError:", exc)
print("exit", main(["info", sys.argv[1]]))
"""


def test_an_unreadable_manifest_is_an_artifact_error_naming_it(minilm_artifact: Path) -> None:
    manifest = minilm_artifact / "manifest.json"
    manifest.chmod(0)
    argv = where_permissions_apply([sys.executable, "-c", UNREADABLE, str(minilm_artifact)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    manifest.chmod(0o644)
    reason = f"{manifest} cannot be read (Permission denied); give this user read access to {minilm_artifact}"
    assert done.stdout.splitlines() == [f"ArtifactError: {reason} (chmod -R a+rX)", "exit 1"], done.stdout + done.stderr
    assert done.stderr == f"error: {reason} (chmod -R a+rX)\n"


LOAD_ONLY = """
import sys
from fastembed_rt import ArtifactError, SentenceTransformer
try:
    SentenceTransformer(sys.argv[1], variant="fp32")
except ArtifactError as exc:
    print("ArtifactError:", exc)
"""


@pytest.mark.parametrize("unreadable", ["tokenizer.json", "onnx/model.onnx", "onnx/model.onnx.data", "onnx"])
def test_an_unreadable_file_of_the_artifact_is_named_with_the_permission_fix(
    minilm_artifact: Path, unreadable: str
) -> None:
    """The tokenizer's and ONNX Runtime's errors called an unreadable file corrupt ("re-create the artifact"), the
    weights file was blamed on the graph, and an unreadable folder was a bare PermissionError traceback."""
    target = minilm_artifact / unreadable
    target.chmod(0)
    argv = where_permissions_apply([sys.executable, "-c", LOAD_ONLY, str(minilm_artifact)])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    finally:
        target.chmod(0o755 if target.is_dir() else 0o644)
    named = minilm_artifact / (unreadable if unreadable != "onnx" else "onnx/model.onnx")
    reason = f"{named} cannot be read (Permission denied); give this user read access to {minilm_artifact}"
    assert done.stdout.splitlines() == [f"ArtifactError: {reason} (chmod -R a+rX)"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_calibrating_a_read_only_artifact_changes_nothing_and_says_why(minilm_artifact: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("A cat sat on the mat.\nStocks fell sharply.\nEin Satz auf Deutsch.\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in minilm_artifact.iterdir() if p.is_file()}
    minilm_artifact.chmod(0o555)
    command = [sys.executable, "-m", "fastembed_rt.cli", "calibrate", str(minilm_artifact), "--texts", str(texts)]
    done = subprocess.run(where_permissions_apply(command), capture_output=True, text=True, timeout=300)
    minilm_artifact.chmod(0o755)
    assert done.returncode == 1 and done.stderr == (
        f"error: cannot write the calibration into {minilm_artifact} (Permission denied); make the directory writable "
        "or calibrate a writable copy of the artifact\n"
    ), done.stderr
    assert {p: p.read_bytes() for p in minilm_artifact.iterdir() if p.is_file()} == before


_SAVE_WITH_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
from fastembed_rt import InputError, SentenceTransformer
model = SentenceTransformer(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MB: the tokenizer fits, the weights do not
try:
    model.save(sys.argv[2], variants="loaded")
except InputError as exc:
    print(exc)
"""


def test_a_save_that_fails_midway_leaves_the_artifact_saved_there_before_as_it_was(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    """A failed copy (a full disk) left an old manifest among new and old files: the artifact saved there before
    no longer loaded, and the error said the folder held no manifest."""
    import subprocess
    import sys

    target = tmp_path / "saved"
    SentenceTransformer(minilm_artifact_session).save(target, variants="loaded")
    (target / "tokenizer.json").write_text((target / "tokenizer.json").read_text() + " ")  # this save's own copy
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    result = subprocess.run(
        [sys.executable, "-c", _SAVE_WITH_A_FILE_SIZE_LIMIT, str(minilm_artifact_session), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "File too large" in result.stdout and f"no file in {target} was changed" in result.stdout, result.stdout
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert SentenceTransformer(target).encode(["still loads"]).shape == (1, 384)


@pytest.mark.parametrize("name", ["my models/all-MiniLM-L6-v2", "out/..model", "a/b/c"])
def test_a_name_that_is_neither_a_directory_nor_a_repo_id_is_an_artifact_error(name: str) -> None:
    """huggingface_hub's HFValidationError (a ValueError) came out raw for a mistyped path with a space."""
    with pytest.raises(ArtifactError, match="is neither an existing directory nor a hub repo id"):
        SentenceTransformer(name, local_files_only=True)


def test_a_mistyped_path_under_a_folder_here_is_said_to_be_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``work/typo`` with ``work/`` in the working directory was only reported as a hub repo not in the cache."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    with pytest.raises(ArtifactError, match="was it a path\\? 'work/' is a folder here, but holds no 'typo'"):
        SentenceTransformer("work/typo", local_files_only=True)
    with pytest.raises(ArtifactError) as raised:
        SentenceTransformer("owner/typo", local_files_only=True)
    assert "is not in the hub cache" in str(raised.value) and "was it a path" not in str(raised.value)


def test_save_into_a_path_that_is_a_file_is_refused_before_anything_is_written(
    minilm_artifact_session: Path, tmp_path: Path
) -> None:
    model = SentenceTransformer(minilm_artifact_session)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InputError, match="a-file is a file where the copy needs a folder"):
        model.save(tmp_path / "a-file", variants="loaded")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "onnx").write_text("in the way")
    with pytest.raises(InputError, match=r"out/onnx is a file where the copy needs a folder"):
        model.save(tmp_path / "out", variants="loaded")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["onnx"], "nothing was written"


@pytest.mark.parametrize("name", ["../elsewhere/model.onnx", "/etc/model.onnx", "onnx/../../model.onnx"])
def test_a_manifest_naming_a_file_outside_the_artifact_is_refused(minilm_artifact: Path, name: str) -> None:
    """Such a variant was loaded from outside the folder, and save() wrote its files outside the target."""
    manifest = json.loads((minilm_artifact / "manifest.json").read_text())
    manifest["variants"][0]["file"] = name
    (minilm_artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="relative paths inside its folder"):
        SentenceTransformer(minilm_artifact)


@pytest.mark.parametrize("verify", [True, "sha256", "Full", None])
def test_a_verify_value_that_is_not_size_or_full_is_refused(minilm_artifact_session: Path, verify: object) -> None:
    """Anything but "full" skipped the sha256 check silently, even verify=True."""
    with pytest.raises(InputError, match="verify must be 'size' or 'full'"):
        SentenceTransformer(minilm_artifact_session, verify=verify)  # type: ignore[arg-type]


def test_another_models_tokenizer_in_the_artifact_is_refused(minilm_artifact: Path, tmp_path: Path) -> None:
    """A tokenizer.json of another model loaded silently (garbage embeddings) or failed in ONNX Runtime's Gather at
    encode time: the manifest records its vocabulary size (checked at every load) and sha256 (verify="full")."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(99)}}
    other = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    original = (minilm_artifact / "tokenizer.json").read_bytes()
    other.save(str(minilm_artifact / "tokenizer.json"))
    with pytest.raises(ArtifactError, match=r"tokenizer\.json holds 100 tokens, but the artifact was exported with"):
        SentenceTransformer(minilm_artifact)
    # the same vocabulary size, another file (a reordered vocabulary would be): only its sha256 tells
    data = json.loads(original)
    data["added_tokens"] = list(reversed(data["added_tokens"]))
    (minilm_artifact / "tokenizer.json").write_text(json.dumps(data))
    SentenceTransformer(minilm_artifact)  # the cheap default check passes it
    with pytest.raises(ArtifactError, match="is not the file the artifact was exported with"):
        SentenceTransformer(minilm_artifact, verify="full")


def test_a_snapshot_copied_without_the_files_its_links_point_to_says_so(tmp_path: Path) -> None:
    """A hub cache snapshot folder copied alone (cp -r, tar) holds links into blobs/ that are not there: it was
    called "not a fastembed-rt artifact"."""
    snapshot = tmp_path / "snapcopy"
    snapshot.mkdir()
    (snapshot / "manifest.json").symlink_to("../../blobs/0123456789abcdef")
    with pytest.raises(ArtifactError, match=r"manifest.json is a broken link .* copy it with the files themselves"):
        SentenceTransformer(snapshot)


def test_save_blames_the_source_for_a_file_it_lacks_and_leaves_out_an_optional_one(
    minilm_artifact: Path, tmp_path: Path
) -> None:
    """A source without tokenizer_config.json (which loading does without) failed to save as "cannot write
    <source file>", blaming the target, and left an empty target folder behind."""
    model = SentenceTransformer(minilm_artifact, variant="fp32")
    (minilm_artifact / "tokenizer_config.json").unlink()
    copy = model.save(tmp_path / "copy")
    assert not (copy / "tokenizer_config.json").exists()
    np.testing.assert_allclose(SentenceTransformer(copy).encode(["a text"]), model.encode(["a text"]), atol=1e-6)
    (minilm_artifact / "calibration.npy").unlink()
    with pytest.raises(ArtifactError, match=r"calibration.npy is missing from the artifact this model was loaded"):
        model.save(tmp_path / "second")
    assert not (tmp_path / "second").exists()


UNREADABLE_CALIBRATION = """
import sys
from pathlib import Path
from fastembed_rt import ArtifactError, SentenceTransformer
model = SentenceTransformer(sys.argv[1], variant="fp32")
for call in (lambda: model.encode(["hello"], precision="int8"), lambda: model.save(sys.argv[2])):
    try:
        call()
    except ArtifactError as exc:
        print("ArtifactError:", exc)
print("target made:", Path(sys.argv[2]).exists())
"""


def test_an_unreadable_calibration_file_is_named_with_the_permission_fix_at_encode_and_at_save(
    minilm_artifact: Path, tmp_path: Path
) -> None:
    """int8 told the user to re-create a calibration file that was whole, and ``save`` said it "cannot write" the
    source's file, blaming the target folder."""
    calibration = minilm_artifact / "calibration.npy"
    calibration.chmod(0)
    argv = [sys.executable, "-c", UNREADABLE_CALIBRATION, str(minilm_artifact), str(tmp_path / "copy")]
    try:
        done = subprocess.run(where_permissions_apply(argv), capture_output=True, text=True, timeout=300)
    finally:
        calibration.chmod(0o644)
    reason = f"{calibration} cannot be read (Permission denied); give this user read access to {minilm_artifact}"
    line = f"ArtifactError: {reason} (chmod -R a+rX)"
    assert done.stdout.splitlines() == [line, line, "target made: False"], done.stdout + done.stderr


def test_a_manifest_nested_thousands_deep_is_an_artifact_error(minilm_artifact: Path) -> None:
    """json's RecursionError escaped (a traceback from ``fastembed-rt info``)."""
    (minilm_artifact / "manifest.json").write_text("[" * 200_000)
    with pytest.raises(ArtifactError, match=r"manifest.json is not a manifest \(JSON nested too deeply\)"):
        SentenceTransformer(minilm_artifact)


@pytest.mark.parametrize(
    ("length", "message"),
    [(1, r"leaves no room for text: this tokenizer adds 2 special tokens"), (600, r"is more than the 512 tokens")],
)
def test_a_manifest_max_seq_length_the_model_cannot_run_is_refused_at_load(
    minilm_artifact: Path, length: int, message: str
) -> None:
    """1 left the tokenizer unable to truncate (whole texts reached the graph); 600 passed MiniLM's 512 positions:
    both loaded and failed at the first long text with ONNX Runtime's raw error."""
    path = minilm_artifact / "manifest.json"
    data = json.loads(path.read_text())
    data["tokenizer"]["max_seq_length"] = length
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=rf"tokenizer.max_seq_length {length} {message}"):
        SentenceTransformer(minilm_artifact)


def test_a_load_while_export_overwrite_swaps_the_folder_reads_the_new_artifact_whole(
    minilm_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export --overwrite` renames the new folder into place while a process loads it: the old manifest was read
    with the new graph ("corrupt or truncated, re-create it"; files of one size: a silent mix)."""
    import fastembed_rt.models.base as base

    SentenceTransformer(minilm_artifact, truncate_dim=64).save(tmp_path / "new")  # same graph, other manifest
    real = base.Tokenizer
    swapped = []

    def swap_then_read(*args: Any, **kwargs: Any) -> Any:
        if not swapped:  # between the manifest and the rest: the overwrite's two renames
            minilm_artifact.rename(tmp_path / "old")
            (tmp_path / "new").rename(minilm_artifact)
            swapped.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "Tokenizer", swap_then_read)
    model = SentenceTransformer(minilm_artifact)
    assert swapped and model.truncate_dim == 64 and model.encode(["a cat"]).shape == (1, 64)
    model.close()
