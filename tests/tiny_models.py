"""Tiny random sentence-transformers models, built from configs for export tests.

``build_tiny_model`` writes a real sentence-transformers model directory (``modules.json``,
``config_sentence_transformers.json``, a transformers backbone with random weights and the
all-MiniLM-L6-v2 WordPiece tokenizer), so tests run the exporter exactly as on a hub model,
in seconds and offline. ``export_tiny_model`` also exports it and loads both sides;
``PARITY_TEXTS`` and ``row_cosines`` are what the tests compare them on.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import minilm_model_dir

from fastembed_rt.artifact import artifact_files, load_manifest
from fastembed_rt.bench import make_decoder_tokenizer

__all__ = [
    "DECODERS",
    "DENSE_OUT_FEATURES",
    "HIDDEN_SIZE",
    "MAX_SEQ_LENGTH",
    "PARITY_TEXTS",
    "TINY_ARCHITECTURES",
    "TinyExport",
    "build_tiny_model",
    "build_tiny_multi_vector",
    "export_tiny_model",
    "row_cosines",
]

HIDDEN_SIZE = 32
MAX_SEQ_LENGTH = 64
DENSE_OUT_FEATURES = 24
_VOCAB_SIZE = 30522  # the MiniLM WordPiece vocabulary the tiny models share
_PAD_TOKEN_ID = 0  # "[PAD]" in that vocabulary
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

_COMMON: dict[str, Any] = {
    "vocab_size": _VOCAB_SIZE,
    "max_position_embeddings": 128,  # ≥ MAX_SEQ_LENGTH + 2: RoBERTa-style position ids start at pad + 1
    "pad_token_id": _PAD_TOKEN_ID,
}
_BERT_SHAPE: dict[str, Any] = {
    "hidden_size": HIDDEN_SIZE,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}
# Config keyword arguments per ``config.model_type``. "albert" is here because the exporter has
# no config for it: the tests use it as the unsupported architecture.
TINY_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "bert": {**_COMMON, **_BERT_SHAPE},
    "roberta": {**_COMMON, **_BERT_SHAPE, "type_vocab_size": 1},
    "xlm-roberta": {**_COMMON, **_BERT_SHAPE, "type_vocab_size": 1},
    "camembert": {**_COMMON, **_BERT_SHAPE, "type_vocab_size": 1},
    "mpnet": {**_COMMON, **_BERT_SHAPE},
    "distilbert": {**_COMMON, "dim": HIDDEN_SIZE, "n_layers": 2, "n_heads": 4, "hidden_dim": 64},
    "electra": {**_COMMON, **_BERT_SHAPE, "embedding_size": 16},
    "albert": {**_COMMON, **_BERT_SHAPE, "embedding_size": 16},
    # local_attention 16 (8 tokens each side) and a global layer every 2: texts of 64 tokens cross both.
    "modernbert": {
        **_COMMON,
        **_BERT_SHAPE,
        "num_hidden_layers": 3,
        "local_attention": 16,
        "global_attn_every_n_layers": 2,
        **{f"{name}_token_id": token for name, token in (("bos", 101), ("eos", 102), ("cls", 101), ("sep", 102))},
    },
    "nomic_bert": {**_COMMON, **_BERT_SHAPE},
    # Decoders: grouped-query attention (2 key/value heads for 4 query heads), as the real models.
    "qwen2": {**_COMMON, **_BERT_SHAPE, "num_key_value_heads": 2, "eos_token_id": 102},
    "qwen3": {**_COMMON, **_BERT_SHAPE, "num_key_value_heads": 2, "head_dim": 16, "eos_token_id": 102},
    "mistral": {**_COMMON, **_BERT_SHAPE, "num_key_value_heads": 2, "head_dim": 8, "eos_token_id": 102},
    # EmbeddingGemma's text model: bidirectional, a sliding window (8 here) shorter than the texts.
    "gemma3_text": {
        **_COMMON,
        **_BERT_SHAPE,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "use_bidirectional_attention": True,
        "bos_token_id": 101,
        "eos_token_id": 102,
    },
}
# Decoder families whose real tokenizers append an end-of-text token (pooled by last-token pooling)
# and add no start token; the tiny models get a WordPiece tokenizer that does the same with [SEP].
DECODERS = frozenset({"qwen2", "qwen3", "mistral"})


def _save_backbone(out: Path, architecture: str, padding_side: str | None) -> None:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(architecture, **TINY_ARCHITECTURES[architecture])
    AutoModel.from_config(config).save_pretrained(str(out))
    source = minilm_model_dir()
    for name in _TOKENIZER_FILES:
        shutil.copy(source / name, out / name)
    if architecture in DECODERS:
        make_decoder_tokenizer(out)
    if padding_side is not None:
        config_file = out / "tokenizer_config.json"
        tokenizer_config = json.loads(config_file.read_text(encoding="utf-8"))
        config_file.write_text(json.dumps({**tokenizer_config, "padding_side": padding_side}), encoding="utf-8")


def build_tiny_model(
    tmp_dir: Path,
    architecture: str,
    pooling_mode: str | tuple[str, ...],
    include_prompt: bool = True,
    dense: torch.nn.Module | None = None,
    normalize: bool = False,
    prompts: dict[str, str] | None = None,
    seed: int = 0,
    dense_layers: tuple[tuple[int, bool], ...] = (),
    padding_side: str | None = None,
    truncate_dim: int | None = None,
    dropout: float | None = None,
) -> Path:
    """Build and save a tiny random sentence-transformers bi-encoder.

    Args:
        tmp_dir: an empty scratch directory; the model goes to ``tmp_dir / "model"``.
        architecture: a ``config.model_type`` from ``TINY_ARCHITECTURES``.
        pooling_mode: one sentence-transformers pooling mode, or a tuple of them (concatenated).
        include_prompt: ``Pooling(include_prompt=...)``.
        dense: when given, a ``Dense(pooled_dim → 24)`` module with this activation follows pooling.
        normalize: append a ``Normalize`` module.
        prompts: the model's named prompts.
        seed: torch seed for every random weight; same arguments and seed give the same model.
        dense_layers: identity-activation Dense modules after pooling, each ``(out_features, bias)``
            (EmbeddingGemma's 768→3072→768 without bias is ``((4 * HIDDEN_SIZE, False), (HIDDEN_SIZE, False))``).
        padding_side: the tokenizer's padding side (None: the tokenizer's own, right).
        truncate_dim: a Matryoshka default saved with the model (``config_sentence_transformers.json``).
        dropout: when given, a ``Dropout`` module of this rate after pooling and after each Dense module.
    Returns:
        the sentence-transformers model directory (hidden size 32, max_seq_length 64).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Dropout, Normalize, Pooling, Transformer

    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"no tiny config for {architecture!r}; known: {', '.join(TINY_ARCHITECTURES)}")
    torch.manual_seed(seed)
    backbone_dir = tmp_dir / "backbone"
    _save_backbone(backbone_dir, architecture, padding_side)
    modules: list[torch.nn.Module] = [Transformer(str(backbone_dir), max_seq_length=MAX_SEQ_LENGTH)]
    pooling = Pooling(HIDDEN_SIZE, pooling_mode=pooling_mode, include_prompt=include_prompt)
    modules.append(pooling)
    dropouts = [Dropout(dropout)] if dropout is not None else []
    modules += dropouts
    if dense is not None:
        modules.append(Dense(pooling.get_embedding_dimension(), DENSE_OUT_FEATURES, activation_function=dense))
        modules += [Dropout(dropout)] if dropout is not None else []
    features = pooling.get_embedding_dimension()
    for out_features, bias in dense_layers:
        modules.append(Dense(features, out_features, bias=bias, activation_function=torch.nn.Identity()))
        features = out_features
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts, truncate_dim=truncate_dim, device="cpu")
    out = tmp_dir / "model"
    model.save(str(out))
    shutil.rmtree(backbone_dir)
    return out


MULTI_VECTOR_DIM = 8


def build_tiny_multi_vector(
    tmp_dir: Path,
    architecture: str = "bert",
    *,
    query_length: int | None = 16,
    document_length: int | None = 48,
    query_expansion: dict[str, Any] | None = None,
    skiplist_tasks: tuple[str, ...] = ("document",),
    pool_factor: float | None = 2.0,
    bias: bool = False,
    similarity_fn_name: str | None = None,
    prompts: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random sentence-transformers ``MultiVectorEncoder`` (ColBERT layout).

    Modules: Transformer (with the query/document lengths and query expansion), a token-level
    Dense(32 → 8), a token-level Normalize, a MultiVectorMask whose skiplist is ``string.punctuation``
    and, unless ``pool_factor`` is None, a HierarchicalTokenPooling. Returns the model directory.
    """
    import string

    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling, MultiVectorMask

    torch.manual_seed(seed)
    backbone_dir = tmp_dir / "backbone"
    _save_backbone(backbone_dir, architecture, None)
    modules: list[torch.nn.Module] = [
        Transformer(
            str(backbone_dir),
            max_seq_length=MAX_SEQ_LENGTH,
            query_length=query_length,
            document_length=document_length,
            query_expansion=query_expansion,  # type: ignore[arg-type]
        ),
        Dense(
            HIDDEN_SIZE,
            MULTI_VECTOR_DIM,
            bias=bias,
            activation_function=torch.nn.Identity(),
            module_input_name="token_embeddings",
        ),
        Normalize(module_input_name="token_embeddings"),
        MultiVectorMask(skiplist_words=list(string.punctuation), skiplist_tasks=list(skiplist_tasks)),
    ]
    if pool_factor is not None:
        modules.append(HierarchicalTokenPooling(pool_factor=pool_factor))
    model = MultiVectorEncoder(modules=modules, prompts=prompts, similarity_fn_name=similarity_fn_name, device="cpu")
    out = tmp_dir / "model"
    model.save(str(out))
    shutil.rmtree(backbone_dir)
    return out


_LONG = " ".join(f"token{i} and more words" for i in range(MAX_SEQ_LENGTH))
# Token lengths from 2 to far over MAX_SEQ_LENGTH, an empty text, accents and repeats.
PARITY_TEXTS = [
    "Hi",
    "A man is playing a guitar.",
    "",
    _LONG,
    "Das ist ein Satz auf Deutsch, mit Umlauten: Größe, Übung.",
    "x",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    _LONG + " " + _LONG,
    "A man is playing a guitar.",
]


def unlisted_files(artifact: Path) -> list[str]:
    """Files in ``artifact`` that its manifest does not list (a builder's scratch graphs left behind)."""
    listed = set(artifact_files(load_manifest(artifact)))
    files = (str(path.relative_to(artifact)) for path in artifact.rglob("*") if path.is_file())
    return sorted(name for name in files if name not in listed)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``, float64 ``[rows]``; two zero rows give 1."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (a64.shape, b64.shape)
    norms = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    both_zero = (np.abs(a64).max(axis=-1) == 0) & (np.abs(b64).max(axis=-1) == 0)
    return np.where(both_zero, 1.0, (a64 * b64).sum(axis=-1) / np.where(norms == 0, 1.0, norms))


@dataclass
class TinyExport:
    """A tiny model, its artifact, and both loaded: sentence-transformers (torch) and fastembed-rt."""

    architecture: str
    model_dir: Path
    artifact: Path
    torch_model: Any  # sentence_transformers.SentenceTransformer
    runtime: Any  # fastembed_rt.SentenceTransformer

    def close(self) -> None:
        self.runtime.close()


def export_tiny_model(
    tmp_dir: Path, architecture: str, pooling_mode: str | tuple[str, ...], **kwargs: Any
) -> TinyExport:
    """``build_tiny_model(tmp_dir, architecture, pooling_mode, **kwargs)``, exported with ``export_model``."""
    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_dir, architecture, pooling_mode, **kwargs)
    artifact = tmp_dir / "artifact"
    export_model(model_dir, artifact, stsb=False)
    return TinyExport(
        architecture=architecture,
        model_dir=model_dir,
        artifact=artifact,
        torch_model=TorchSentenceTransformer(str(model_dir), device="cpu"),
        runtime=SentenceTransformer(artifact),
    )
