"""Exported output stages on tiny BERT agree with sentence-transformers text by text.

Five exports cover every pooling mode (one export, six modes concatenated, compared segment by
segment), a single-mode control, Dense (tanh, identity) + Normalize, and prompt exclusion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_models import (
    DENSE_OUT_FEATURES,
    HIDDEN_SIZE,
    PARITY_TEXTS,
    TinyExport,
    build_tiny_model,
    export_tiny_model,
    row_cosines,
)

MIN_COSINE = 0.9999
ALL_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Excluding the prompt moves mean, weightedmean and cls; lasttoken ([SEP]) must stay put.
PROMPT_MODES = ("mean", "weightedmean", "cls", "lasttoken")
PROMPTS = {"query": "query: represent this sentence for searching relevant passages: "}


def _exported(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[TinyExport]:
    exported = export_tiny_model(tmp_path_factory.mktemp(name), "bert", **kwargs)
    yield exported
    exported.close()


@pytest.fixture(scope="module")
def all_modes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    yield from _exported(tmp_path_factory, "all-modes", pooling_mode=ALL_MODES)


@pytest.fixture(scope="module")
def cls_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    yield from _exported(tmp_path_factory, "cls", pooling_mode="cls")


@pytest.fixture(scope="module", params=["tanh", "identity"])
def dense_normalize(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    activation = torch.nn.Tanh() if request.param == "tanh" else torch.nn.Identity()
    yield from _exported(
        tmp_path_factory, f"dense-{request.param}", pooling_mode="mean", dense=activation, normalize=True
    )


@pytest.fixture(scope="module")
def prompt_excluded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyExport]:
    yield from _exported(
        tmp_path_factory, "prompt-excluded", pooling_mode=PROMPT_MODES, include_prompt=False, prompts=PROMPTS
    )


def _encode_both(
    exported: TinyExport, texts: list[str], batch_size: int, **prompt: str
) -> tuple[np.ndarray, np.ndarray]:
    ours = exported.runtime.encode(texts, batch_size=batch_size, **prompt)
    ref = exported.torch_model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, **prompt
    )
    return np.asarray(ours), np.asarray(ref)


def _segment_cosines(ours: np.ndarray, ref: np.ndarray, modes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per pooling mode, the cosine of each text's ``HIDDEN_SIZE``-wide segment."""
    assert ours.shape == ref.shape == (ref.shape[0], HIDDEN_SIZE * len(modes))
    segments = [slice(i * HIDDEN_SIZE, (i + 1) * HIDDEN_SIZE) for i in range(len(modes))]
    return {mode: row_cosines(ours[:, seg], ref[:, seg]) for mode, seg in zip(modes, segments)}


def _assert_segments_match(ours: np.ndarray, ref: np.ndarray, modes: tuple[str, ...], texts: list[str]) -> None:
    failures = [
        f"{mode} of {texts[j][:30]!r}: cosine {cos[j]:.6f}"
        for mode, cos in _segment_cosines(ours, ref, modes).items()
        for j in np.flatnonzero(~(cos >= MIN_COSINE))
    ]
    assert not failures, failures


@pytest.mark.parametrize("prompt", [None, "query: "], ids=["no-prompt", "prompt"])
@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_every_pooling_mode_matches_sentence_transformers(
    all_modes: TinyExport, batch_size: int, prompt: str | None
) -> None:
    assert all_modes.runtime.get_sentence_embedding_dimension() == HIDDEN_SIZE * len(ALL_MODES)
    kwargs = {} if prompt is None else {"prompt": prompt}
    ours, ref = _encode_both(all_modes, PARITY_TEXTS, batch_size, **kwargs)
    _assert_segments_match(ours, ref, ALL_MODES, PARITY_TEXTS)


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_single_cls_mode_matches_sentence_transformers(cls_only: TinyExport, batch_size: int) -> None:
    ours, ref = _encode_both(cls_only, PARITY_TEXTS, batch_size)
    assert ours.shape == (len(PARITY_TEXTS), HIDDEN_SIZE)
    _assert_segments_match(ours, ref, ("cls",), PARITY_TEXTS)


def test_single_mode_export_equals_its_segment_of_all_modes_export(all_modes: TinyExport, cls_only: TinyExport) -> None:
    # Same seed, same backbone: the cls segment of the six-mode graph is the cls-only graph.
    concatenated = all_modes.runtime.encode(PARITY_TEXTS)
    alone = cls_only.runtime.encode(PARITY_TEXTS)
    assert (row_cosines(concatenated[:, :HIDDEN_SIZE], alone) >= MIN_COSINE).all()


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_dense_and_normalize_match_sentence_transformers(dense_normalize: TinyExport, batch_size: int) -> None:
    ours, ref = _encode_both(dense_normalize, PARITY_TEXTS, batch_size)
    assert ours.shape == (len(PARITY_TEXTS), DENSE_OUT_FEATURES)
    assert (row_cosines(ours, ref) >= MIN_COSINE).all(), row_cosines(ours, ref)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "prompt",
    [{"prompt": PROMPTS["query"]}, {"prompt_name": "query"}, {"prompt": "a: "}],
    ids=["prompt", "prompt_name", "short-prompt"],
)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_prompt_excluded_pooling_matches_sentence_transformers(
    prompt_excluded: TinyExport, batch_size: int, prompt: dict[str, str]
) -> None:
    ours, ref = _encode_both(prompt_excluded, PARITY_TEXTS, batch_size, **prompt)
    _assert_segments_match(ours, ref, PROMPT_MODES, PARITY_TEXTS)


def test_prompt_exclusion_changes_embeddings(prompt_excluded: TinyExport) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    ours = prompt_excluded.runtime.encode(PARITY_TEXTS, prompt_name="query")
    with_prompt_pooled = TorchSentenceTransformer(str(prompt_excluded.model_dir), device="cpu")
    pooling = with_prompt_pooled[1]
    assert isinstance(pooling, Pooling)
    pooling.include_prompt = True
    ref_included = with_prompt_pooled.encode(
        PARITY_TEXTS, prompt_name="query", convert_to_numpy=True, show_progress_bar=False
    )
    cosines = _segment_cosines(ours, ref_included, PROMPT_MODES)
    # The parity test above must be able to fail: ignoring the exclusion lands far below its gate.
    # (weightedmean moves least on truncated texts: the prompt tokens carry the smallest weights.)
    for mode in ("mean", "weightedmean", "cls"):
        assert cosines[mode].min() < 0.99, (mode, cosines[mode])
    # The last token ([SEP]) is never part of the prompt: exclusion leaves it alone.
    assert (cosines["lasttoken"] >= MIN_COSINE).all()


@pytest.mark.parametrize("fixture", ["all_modes", "prompt_excluded"])
def test_text_embedding_does_not_depend_on_its_batch_neighbours(request: pytest.FixtureRequest, fixture: str) -> None:
    exported: TinyExport = request.getfixturevalue(fixture)
    modes = ALL_MODES if fixture == "all_modes" else PROMPT_MODES
    prompt = {"prompt_name": "query"} if fixture == "prompt_excluded" else {}
    text = "A man is playing a guitar."
    for neighbours in (["x"], [PARITY_TEXTS[3]], ["", PARITY_TEXTS[7], "Hi"]):
        ours, ref = _encode_both(exported, [*neighbours, text], batch_size=8, **prompt)
        _assert_segments_match(ours, ref, modes, [*neighbours, text])
        alone, _ = _encode_both(exported, [text], batch_size=1, **prompt)
        _assert_segments_match(ours[-1:], alone, modes, [text])


def test_manifest_records_stages_and_prompts(all_modes: TinyExport, prompt_excluded: TinyExport) -> None:
    assert all_modes.runtime.manifest.stages["pooling"] == {"modes": list(ALL_MODES), "include_prompt": True}
    excluded = prompt_excluded.runtime.manifest
    assert excluded.stages["pooling"] == {"modes": list(PROMPT_MODES), "include_prompt": False}
    assert "prompt_length" in excluded.graph.inputs
    # sentence-transformers may add empty default prompts; the artifact keeps what it saved.
    assert prompt_excluded.runtime.prompts == prompt_excluded.torch_model.prompts
    assert prompt_excluded.runtime.prompts["query"] == PROMPTS["query"]


def test_a_saved_matryoshka_truncate_dim_is_the_runtimes_default_as_in_sentence_transformers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sentence-transformers 6 saves ``truncate_dim`` with the model and applies it; the export crashed on it
    (a numpy broadcast error comparing 16-wide PyTorch rows with the graph's 32-wide ones)."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.cli import main
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean", truncate_dim=16)
    export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32")
    reference = TorchSentenceTransformer(str(model_dir), device="cpu")
    model = SentenceTransformer(tmp_path / "artifact")
    assert model.truncate_dim == 16 and model.get_embedding_dimension() == reference.get_embedding_dimension() == 16
    ours, ref = model.encode(PARITY_TEXTS), reference.encode(PARITY_TEXTS, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(PARITY_TEXTS), 16)
    assert row_cosines(ours, ref).min() >= MIN_COSINE
    assert SentenceTransformer(tmp_path / "artifact", truncate_dim=8).encode(PARITY_TEXTS).shape[1] == 8
    assert main(["info", str(tmp_path / "artifact")]) == 0
    assert "truncate_dim 16 (encode's default)" in capsys.readouterr().out
    model.truncate_dim = 12
    model.save(tmp_path / "copy", variants="loaded")
    assert SentenceTransformer(tmp_path / "copy").truncate_dim == 12


def test_dropout_modules_export_as_the_identity_they_are_at_inference(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean", dense=torch.nn.Tanh(), normalize=True, dropout=0.5)
    export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32")
    reference = TorchSentenceTransformer(str(model_dir), device="cpu")
    assert [type(m).__name__ for m in reference].count("Dropout") == 2
    ours = SentenceTransformer(tmp_path / "artifact").encode(PARITY_TEXTS)
    assert row_cosines(ours, reference.encode(PARITY_TEXTS, convert_to_numpy=True)).min() >= MIN_COSINE


def test_a_saved_truncate_dim_past_the_width_exports_the_full_width_as_sentence_transformers_encodes(
    tmp_path: Path,
) -> None:
    """The export validated, then wrote truncate_dim 64 for a 32-wide model, refused its own manifest and left an
    artifact that no load accepted."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean", truncate_dim=2 * HIDDEN_SIZE)
    export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32")
    reference = TorchSentenceTransformer(str(model_dir), device="cpu")
    model = SentenceTransformer(tmp_path / "artifact")
    ours, ref = model.encode(PARITY_TEXTS), reference.encode(PARITY_TEXTS, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(PARITY_TEXTS), HIDDEN_SIZE) and model.truncate_dim is None
    assert row_cosines(ours, ref).min() >= MIN_COSINE


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("normalize-tokens", "Normalize reading 'token_embeddings' and writing 'token_embeddings' is not supported"),
        ("normalize-elsewhere", "Normalize reading 'sentence_embedding' and writing 'normalized' is not supported"),
        ("dense-elsewhere", "Dense reading 'sentence_embedding' and writing 'projected' is not supported"),
    ],
)
def test_a_dense_or_normalize_on_another_feature_key_is_refused_by_name(
    tmp_path: Path, module: str, message: str
) -> None:
    """sentence-transformers leaves the sentence embedding as it was under such a module; the export applied it (unit
    rows where sentence-transformers gives norms of 3-4: cosines agree, so its gate passed) or blamed the graph."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    base = TorchSentenceTransformer(str(build_tiny_model(tmp_path, "bert", "mean")), device="cpu")
    extra = {
        "normalize-tokens": lambda: Normalize(module_input_name="token_embeddings"),
        "normalize-elsewhere": lambda: Normalize(module_output_name="normalized"),
        "dense-elsewhere": lambda: Dense(HIDDEN_SIZE, HIDDEN_SIZE, module_output_name="projected"),
    }[module]()
    model = TorchSentenceTransformer(modules=[*base, extra], device="cpu")
    model.save(str(tmp_path / "saved"))
    with pytest.raises(ExportError, match=message):
        export_model(tmp_path / "saved", tmp_path / "artifact", stsb=False, variants="fp32")
    assert not (tmp_path / "artifact").exists()


def test_modules_are_read_in_the_files_order_as_sentence_transformers_loads_them(tmp_path: Path) -> None:
    """modules.json's entries were sorted by "idx", which sentence-transformers never reads: a null idx was a bare
    TypeError, swapped ones refused a model it runs."""
    import json

    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt.export.st_reader import describe_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    path = model_dir / "modules.json"
    entries = json.loads(path.read_text())
    for idx in ([None, None], [1, 0]):
        path.write_text(json.dumps([{**entry, "idx": i} for entry, i in zip(entries, idx, strict=True)]))
        st_model = TorchSentenceTransformer(str(model_dir), device="cpu")
        assert [type(m).__name__ for m in st_model] == ["Transformer", "Pooling"]
        assert describe_model(model_dir, st_model).modules == ["Transformer", "Pooling"]


def _patched(tmp_path: Path, config: str, **fields: Any) -> Path:
    """A tiny BERT bi-encoder whose ``config`` JSON file (in the model directory) gets ``fields``."""
    import json

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    path = model_dir / config
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return model_dir


@pytest.mark.parametrize(
    ("config", "fields", "message"),
    [
        (
            "sentence_bert_config.json",
            {"query_length": 16, "document_length": 48},
            r"\{'query_length': 16, 'document_length': 48\} truncate encode_query/encode_document texts",
        ),
        (
            "sentence_bert_config.json",
            {"processing_kwargs": {"text": {"add_special_tokens": False}}},
            r"processing_kwargs \{'text': \{'add_special_tokens': False\}\} change how sentence-transformers",
        ),
        (
            "sentence_bert_config.json",
            {
                "modality_config": {
                    "text": {"method": "forward", "method_output_name": "last_hidden_state"},
                    "message": {"method": "forward", "method_output_name": "last_hidden_state"},
                }
            },
            r"renders every text through the tokenizer's chat template \(modality_config has 'message'\)",
        ),
    ],
    ids=["per-task-lengths", "processing-kwargs", "chat-template"],
)
def test_tokenizer_settings_the_artifact_would_not_apply_are_refused_by_name(
    tmp_path: Path, config: str, fields: dict[str, Any], message: str
) -> None:
    """They failed the parity gate with cosines that blamed the graph, or (per-task lengths) passed it while
    encode_query differed from sentence-transformers (cosine 0.97)."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model_dir = _patched(tmp_path, config, **fields)
    with pytest.raises(ExportError, match=message):
        export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert not (tmp_path / "artifact").exists()


def test_a_processing_kwargs_text_max_length_is_where_the_artifact_truncates(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = _patched(tmp_path, "sentence_bert_config.json", processing_kwargs={"text": {"max_length": 32}})
    export_model(model_dir, tmp_path / "artifact", stsb=False)
    runtime, torch_model = SentenceTransformer(tmp_path / "artifact"), TorchSentenceTransformer(str(model_dir))
    text = " ".join(f"word{i}" for i in range(60))  # past 32 tokens and past the saved 64
    assert runtime.max_seq_length == 32 and runtime.tokenize([text])["input_ids"].shape[1] == 32
    ours = runtime.encode([text], normalize_embeddings=True)
    theirs = torch_model.encode([text], normalize_embeddings=True)
    assert float((ours * theirs).sum()) >= 0.9999
    runtime.close()


def test_a_processing_kwargs_max_length_past_the_position_table_is_fitted_to_it(tmp_path: Path) -> None:
    """The table was fitted before processing_kwargs set the length: the export failed after its work, naming its
    own staging folder ("tokenizer.max_seq_length 200 is more than the 128 tokens...")."""
    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = _patched(tmp_path, "sentence_bert_config.json", processing_kwargs={"text": {"max_length": 200}})
    export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32")
    runtime = SentenceTransformer(tmp_path / "artifact")
    assert runtime.max_seq_length == 128
    assert runtime.encode([" ".join(["word"] * 300)]).shape == (1, HIDDEN_SIZE)
    runtime.close()


def test_a_multi_vector_models_processing_kwargs_max_length_over_its_task_lengths_is_refused_by_name(
    tmp_path: Path,
) -> None:
    """sentence-transformers cuts queries and documents at processing_kwargs' max_length (not query_length and
    document_length); the export kept the task lengths and blamed its graph ((16, 8) vectors vs torch (30, 8))."""
    import json

    from tiny_models import build_tiny_multi_vector

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_artifact

    model_dir = build_tiny_multi_vector(tmp_path, pool_factor=None)
    path = model_dir / "sentence_bert_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "processing_kwargs": {"text": {"max_length": 32}}}))
    with pytest.raises(ExportError, match=r"processing_kwargs' text max_length 32 replaces \{'query_length': 16"):
        export_artifact(model_dir, tmp_path / "artifact", stsb=False)


def test_a_bert_reranker_whose_tokenizer_gives_no_type_ids_is_refused_by_name(tmp_path: Path) -> None:
    """sentence-transformers scores its pairs with type ids 0; the export failed on 3 % logit errors."""
    import json

    from tiny_heads import build_tiny_cross_encoder

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_cross_encoder

    model_dir = build_tiny_cross_encoder(tmp_path, "bert", 1)
    path = model_dir / "tokenizer_config.json"
    names = ["input_ids", "attention_mask"]
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_input_names": names}))
    with pytest.raises(
        ExportError, match=r"gives no token_type_ids \(model_input_names \['input_ids', 'attention_mask'\]\)"
    ):
        export_cross_encoder(model_dir, tmp_path / "artifact")


def test_the_exporters_graph_clean_up_survives_objects_that_refuse_attribute_lookups(tmp_path: Path) -> None:
    """numpy's NpzFile.f (a BagObj) raises AttributeError for __class__: one alive in the process (a test's open
    .npz) made isinstance() in the clean-up raise, and every later export failed."""
    from fastembed_rt.export.backbone import _forget_exported_graph

    np.savez(tmp_path / "a.npz", x=np.zeros(2))
    with np.load(tmp_path / "a.npz") as opened:
        bag = opened.f
        with pytest.raises(AttributeError):
            _ = bag.__class__  # the kind of object at stake
        _forget_exported_graph()


def _drop_weights(model_dir: Path, dropped: str) -> None:
    """Rewrite the model's safetensors without the tensors whose name contains ``dropped``."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    weights = load_file(str(path))
    kept = {name: tensor for name, tensor in weights.items() if dropped not in name}
    assert len(kept) < len(weights), f"no tensor named *{dropped}* in {sorted(weights)[:5]}"
    save_file(kept, str(path), metadata={"format": "pt"})


def test_a_checkpoint_missing_weights_is_refused_naming_them(tmp_path: Path) -> None:
    """transformers initialized the missing layer at random and the export validated against that same random
    layer: two exports of one folder gave different artifacts (cosine 0.9998), each "validated"."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    _drop_weights(model_dir, "layer.1.")
    with pytest.raises(ExportError, match=r"lacks \d+ weight\(s\) of BertModel .* at random \(encoder\.layer\.1\."):
        export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert not (tmp_path / "artifact").exists()


def test_a_bi_encoder_exported_as_a_cross_encoder_is_refused_for_its_random_head(tmp_path: Path) -> None:
    """`--task cross-encoder` on a bi-encoder folder: a new random classifier, scored differently at each export."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_cross_encoder

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    with pytest.raises(ExportError, match=r"\(classifier\.bias, classifier\.weight\).* the CrossEncoder's head"):
        export_cross_encoder(model_dir, tmp_path / "artifact")


def test_a_checkpoint_without_the_unused_pooler_exports(tmp_path: Path) -> None:
    """BERT's pooler feeds only pooler_output, which no sentence-transformers module reads: many checkpoints lack it."""
    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    _drop_weights(model_dir, "pooler.")
    export_model(model_dir, tmp_path / "artifact", variants=("fp32",), stsb=False)
    runtime = SentenceTransformer(tmp_path / "artifact")
    assert runtime.encode(["a text"]).shape == (1, HIDDEN_SIZE)
    runtime.close()


def test_a_model_folder_without_its_tokenizer_files_is_refused(tmp_path: Path) -> None:
    """It loaded with an empty 5-token tokenizer (every word [UNK]) and validated, PyTorch using the same one."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (model_dir / name).unlink(missing_ok=True)
    with pytest.raises(ExportError, match=r"its tokenizer has \d+ tokens where the model's embedding table has 30522"):
        export_model(model_dir, tmp_path / "artifact", stsb=False)
    assert not (tmp_path / "artifact").exists()


def test_an_export_removes_staging_folders_of_exports_that_were_killed_but_not_of_running_ones(
    tmp_path: Path,
) -> None:
    """A SIGKILLed (or OOM-killed) export leaves its staging folder; each export only cleared its own process id's."""
    import os
    import time

    from fastembed_rt.export import export_model
    from fastembed_rt.export.writer import STAGING_GRACE_SECONDS, STAGING_LOCK, _hold_lock

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    old = time.time() - STAGING_GRACE_SECONDS - 10
    killed, running, young, foreign = (tmp_path / f".artifact.tmp-{n}" for n in (7, 8, 9, 10))
    for folder in (killed, running, young, foreign):
        (folder / "onnx").mkdir(parents=True)
    for folder in (killed, running, young):
        (folder / STAGING_LOCK).touch()
    held = _hold_lock(running / STAGING_LOCK)  # an export still running: it holds its lock
    for folder in (killed, running):
        os.utime(folder / STAGING_LOCK, (old, old))
    try:
        export_model(model_dir, tmp_path / "artifact", variants=("fp32",), stsb=False)
    finally:
        if held is not None:
            os.close(held)
    assert not killed.exists()
    assert running.exists() and young.exists(), "a running export's folder, or one just created, is left alone"
    assert foreign.exists(), "a folder without the lock file is not known to be a staging folder"
    assert not (tmp_path / "artifact" / STAGING_LOCK).exists()


def test_an_export_whose_folder_another_export_filled_meanwhile_fails_and_leaves_that_artifact(tmp_path: Path) -> None:
    """Two exports to one new folder both passed the destination check; the later one replaced the earlier's
    artifact and both said they had written it."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export.writer import stage_artifact

    out = tmp_path / "artifact"
    filled = r"was filled while this export ran .*export again with --overwrite"
    with pytest.raises(ExportError, match=filled), stage_artifact(out, False, model="m", revision=None) as writer:
        (writer.root / "manifest.json").write_text("{}")
        out.mkdir()  # the other export finished first
        (out / "manifest.json").write_text('{"the": "other export"}')
    assert (out / "manifest.json").read_text() == '{"the": "other export"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"], "no staging folder is left"
    with stage_artifact(tmp_path / "empty", False, model="m", revision=None) as writer:
        (writer.root / "manifest.json").write_text("{}")
        (tmp_path / "empty").mkdir()  # an empty folder is still taken, as at the start
    assert (tmp_path / "empty" / "manifest.json").read_text() == "{}"
    # a link to an empty folder, or a dangling one, is replaced by the artifact as before (the link goes, its
    # target stays): refusing it as "filled" threw a whole export away at its end
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("link", "dangling"):
        with stage_artifact(tmp_path / name, False, model="m", revision=None) as writer:
            (writer.root / "manifest.json").write_text("{}")
        assert not (tmp_path / name).is_symlink() and (tmp_path / name / "manifest.json").is_file()
    assert (tmp_path / "target").is_dir() and not any((tmp_path / "target").iterdir())


def test_two_exports_of_one_process_id_to_one_folder_keep_their_own_staging_folders(tmp_path: Path) -> None:
    """Staging was named by the process id alone: two export containers (each process 1) writing to one shared
    folder removed each other's staging folder, and the first died of a bare FileNotFoundError."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export.writer import stage_artifact

    out = tmp_path / "artifact"
    filled = "was filled while this export ran"
    with pytest.raises(ExportError, match=filled), stage_artifact(out, False, model="m", revision=None) as first:
        (first.root / "manifest.json").write_text('{"the": "first"}')
        with stage_artifact(out, False, model="m", revision=None) as second:
            assert second.root != first.root and (first.root / "manifest.json").is_file()
            (second.root / "manifest.json").write_text('{"the": "second"}')
    assert (out / "manifest.json").read_text() == '{"the": "second"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def _artifact_files(writer: Any, artifact: Path) -> None:
    """A real artifact's files written by ``writer`` (what ``--overwrite`` checks it replaces)."""
    import shutil

    shutil.copytree(artifact, writer.root, dirs_exist_ok=True)


def test_an_output_path_under_home_written_with_a_tilde_goes_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export_model("m", "~/arts/m") wrote a folder literally named "~" in the working directory."""
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path / "tiny", "bert", "mean")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    export_model(model_dir, "~/arts/m", stsb=False, variants="fp32")
    assert (tmp_path / "home" / "arts" / "m" / "manifest.json").is_file() and not (tmp_path / "~").exists()


def test_an_output_name_near_name_max_is_staged_under_a_shorter_name(tmp_path: Path, cls_only: TinyExport) -> None:
    """A legal 245-character folder name could not be exported to: the staging name passed 255 bytes."""
    from fastembed_rt.export.writer import stage_artifact

    out = tmp_path / ("m" * 245)
    for overwrite in (False, True):
        with stage_artifact(out, overwrite, model="m", revision=None) as writer:
            _artifact_files(writer, cls_only.artifact)
            (writer.root / "written").write_text(str(overwrite))
    assert (out / "written").read_text() == "True"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_stop_while_the_replaced_artifact_is_deleted_says_the_new_one_is_written_and_leaves_no_lasting_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls_only: TinyExport
) -> None:
    """Ctrl-C while --overwrite deleted the artifact it replaced: the command said the folder was as before (it held
    the new artifact), the half-deleted copy stayed forever, and the next export by process 1 (a container) failed
    at its last step renaming onto it."""
    import shutil

    import fastembed_rt.export.writer as writer_module
    from fastembed_rt.export.writer import stage_artifact

    out = tmp_path / "artifact"
    shutil.copytree(cls_only.artifact, out)
    plain_rmtree = shutil.rmtree

    def stopped(path: Any, *args: Any, **kwargs: Any) -> None:
        if ".replaced-" in str(path):
            raise KeyboardInterrupt
        plain_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(writer_module.shutil, "rmtree", stopped)
    with pytest.raises(KeyboardInterrupt) as stop, stage_artifact(out, True, model="m", revision=None) as writer:
        _artifact_files(writer, cls_only.artifact)
        (writer.root / "written").write_text("new")
    monkeypatch.setattr(writer_module.shutil, "rmtree", plain_rmtree)
    assert getattr(stop.value, "artifact_written", False)
    assert (out / "written").read_text() == "new"
    (left,) = tmp_path.glob(".artifact.replaced-*")
    monkeypatch.setattr(writer_module, "STAGING_GRACE_SECONDS", 0.0)  # (a folder's change time cannot be set back)
    with stage_artifact(out, True, model="m", revision=None) as writer:
        _artifact_files(writer, cls_only.artifact)
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_a_variant_with_non_finite_outputs_is_rejected_as_such_in_a_manifest_any_json_reader_takes(
    tmp_path: Path,
) -> None:
    """fp16 of a model whose activations pass 65,504 gave NaN rows: the manifest recorded them as NaN (not JSON to
    any reader but Python's), a max_abs_diff of 0.0, and blamed batch neighbours."""
    import json

    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt.export import export_model

    model = TorchSentenceTransformer(str(build_tiny_model(tmp_path, "bert", "mean")), device="cpu")
    with torch.no_grad():
        norm = model[0].auto_model.encoder.layer[-1].output.LayerNorm
        norm.weight.mul_(2e5)
        norm.bias.mul_(2e5)
    model.save(str(tmp_path / "big"))
    manifest = export_model(tmp_path / "big", tmp_path / "artifact", stsb=False, variants="fp32,fp16")
    assert [v.name for v in manifest.variants] == ["fp32"]
    (rejected,) = manifest.rejected_variants

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in manifest.json")

    strict = json.loads((tmp_path / "artifact" / "manifest.json").read_text(), parse_constant=refuse)
    assert strict["rejected_variants"][0]["name"] == "fp16"
    assert "its outputs hold NaN or inf" in rejected["reasons"]
    assert not any("batch neighbours" in reason for reason in rejected["reasons"]), rejected["reasons"]
    assert rejected["fidelity"]["max_abs_diff"] != 0.0


def test_tolerance_gates_count_nan_and_inf_outputs_as_outside_every_tolerance() -> None:
    from fastembed_rt.export.fidelity import HeadFidelity, ToleranceGate

    gate = ToleranceGate(atol=1e-4, rtol=1e-4)
    ours, reference = np.array([np.nan, np.inf, 1.0, 0.5]), np.array([0.5, 0.5, 1.0, 0.5])
    assert gate.exceeded(ours, reference).tolist() == [True, True, False, False]
    fidelity = HeadFidelity()
    fidelity.observe(np.array([0.5001]), np.array([0.5]))
    fidelity.observe(ours, reference)
    assert fidelity.max_abs_diff == fidelity.max_rel_diff == float("inf")


def test_a_model_that_computes_nan_is_refused_as_such_not_as_a_graph_that_misses_its_gate(tmp_path: Path) -> None:
    """NaN weights gave 'exported graph ... misses the fp32 gate ... cosine nan', blaming the graph."""
    from safetensors.torch import load_file, save_file

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    weights = load_file(str(model_dir / "model.safetensors"))
    name = next(name for name in weights if "layer.0.output.dense.weight" in name)
    weights[name][0, 0] = float("nan")
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"PyTorch itself gives NaN or inf for \d+ of \d+ inputs"):
        export_model(model_dir, tmp_path / "artifact", stsb=False)


def test_a_bert_reranker_without_its_pooler_is_refused_as_the_pooler_feeds_its_classifier(tmp_path: Path) -> None:
    from tiny_heads import build_tiny_cross_encoder

    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_cross_encoder

    model_dir = build_tiny_cross_encoder(tmp_path, "bert", 1)
    _drop_weights(model_dir, "pooler.")
    with pytest.raises(ExportError, match=r"lacks 2 weight\(s\) of BertForSequenceClassification .*pooler\.dense"):
        export_cross_encoder(model_dir, tmp_path / "artifact")


def test_a_model_whose_pytorch_output_depends_on_left_padding_is_refused_naming_the_padding(tmp_path: Path) -> None:
    """BERT's learned positions count left padding, so PyTorch's own embedding of 'Hi' changes beside a longer text;
    the refusal listed cosines as though the graph were wrong."""
    from fastembed_rt.errors import ExportError
    from fastembed_rt.export import export_model

    model = build_tiny_model(tmp_path, "bert", "cls", padding_side="left")
    with pytest.raises(ExportError, match=r"PyTorch's own embedding of a text changes with its batch neighbours") as e:
        export_model(model, tmp_path / "out", stsb=False)
    assert '"padding_side": "right"' in str(e.value) and not (tmp_path / "out").exists()


def test_int8_with_nothing_to_calibrate_on_but_the_grid_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without STSb and calibration texts, int8 was calibrated and gated on the grid's 9 texts without a word."""
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    with caplog.at_level(logging.WARNING, logger="fastembed_rt"):
        export_model(model_dir, tmp_path / "artifact", stsb=False, calibration_texts=[], variants="int8")
    assert any("int8 variants are calibrated on the 9 parity texts only" in r.message for r in caplog.records)
