"""Models whose repository ships its own code: exported only when the user opts in, never by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import PARITY_TEXTS, build_tiny_model, row_cosines

from fastembed_rt import SentenceTransformer
from fastembed_rt.errors import ExportError
from fastembed_rt.export import export_model

# A repository's own config and model classes, as Alibaba-NLP/gte-* and Jina v2 ship them. Importing
# the model module leaves a marker file, so a test can tell whether the export ran the repository's code.
_CONFIGURATION = """
from transformers import BertConfig


class TinyRemoteConfig(BertConfig):
    model_type = "tiny_remote_bert"
"""
_MODELING = """
import os
from pathlib import Path

from transformers import BertModel

from .configuration_tiny_remote import TinyRemoteConfig

if os.environ.get("TINY_REMOTE_MARKER"):
    Path(os.environ["TINY_REMOTE_MARKER"]).touch()


class TinyRemoteModel(BertModel):
    config_class = TinyRemoteConfig
"""


@pytest.fixture(scope="module")
def remote_code_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = build_tiny_model(tmp_path_factory.mktemp("remote-code"), "bert", "mean", normalize=True)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "tiny_remote_bert"
    config["auto_map"] = {
        "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
        "AutoModel": "modeling_tiny_remote.TinyRemoteModel",
    }
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (model_dir / "configuration_tiny_remote.py").write_text(_CONFIGURATION, encoding="utf-8")
    (model_dir / "modeling_tiny_remote.py").write_text(_MODELING, encoding="utf-8")
    return model_dir


def test_a_model_with_repository_code_is_refused_without_running_it(
    remote_code_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    monkeypatch.setenv("TINY_REMOTE_MARKER", str(marker))
    with pytest.raises(ExportError, match="--trust-remote-code") as info:
        export_model(remote_code_model, tmp_path / "artifact", stsb=False)
    assert "modeling_tiny_remote.TinyRemoteModel" in str(info.value)
    assert not marker.exists(), "the repository's code ran although the user did not opt in"
    assert not (tmp_path / "artifact").exists()


def test_an_opted_in_export_runs_the_repository_code_and_matches_it(
    remote_code_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    marker = tmp_path / "imported"
    monkeypatch.setenv("TINY_REMOTE_MARKER", str(marker))
    manifest = export_model(remote_code_model, tmp_path / "artifact", stsb=False, trust_remote_code=True)
    assert marker.exists()
    assert manifest.source["architecture"] == "tiny_remote_bert"
    assert manifest.graph.inputs[:3] == ("input_ids", "attention_mask", "token_type_ids")
    reference = TorchSentenceTransformer(str(remote_code_model), device="cpu", trust_remote_code=True)
    runtime = SentenceTransformer(tmp_path / "artifact")
    ours = runtime.encode(PARITY_TEXTS, batch_size=4)
    ref = reference.encode(PARITY_TEXTS, batch_size=4, convert_to_numpy=True)
    assert row_cosines(np.asarray(ours), ref).min() >= 0.9999
    runtime.close()


def test_a_native_family_with_a_leftover_auto_map_needs_no_opt_in(tmp_path: Path) -> None:
    # nomic-embed-text-v1.5 still maps its classes to nomic-ai code; transformers now has nomic_bert itself.
    model_dir = build_tiny_model(tmp_path, "nomic_bert", "mean")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {  # as nomic-embed-text-v1.5's (transformers has no NomicBertForPreTraining: not loaded)
        "AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
        "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel",
        "AutoModelForMaskedLM": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertForPreTraining",
    }
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    manifest = export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert manifest.source["architecture"] == "nomic_bert"


def test_a_native_model_type_mapped_to_classes_transformers_lacks_needs_the_opt_in(tmp_path: Path) -> None:
    """Jina v2's config says "bert" and maps AutoModel to its own JinaBertModel (ALiBi): the export loaded plain BERT
    and blamed the checkpoint ("re-save the model") instead of naming the code it would run."""
    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {
        "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
        "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
    }
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ExportError, match=r"auto_map AutoModel -> .*JinaBertModel.*--trust-remote-code"):
        export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert not (tmp_path / "artifact").exists()


def test_the_cli_exposes_the_opt_in() -> None:
    from fastembed_rt.cli import build_parser

    args = build_parser().parse_args(["export", "m", "out", "--trust-remote-code"])
    assert args.trust_remote_code is True
    assert build_parser().parse_args(["export", "m", "out"]).trust_remote_code is False
