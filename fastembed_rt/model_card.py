"""The README.md a pushed artifact gets on the hub (``ArtifactModel.push_to_hub``): what the model is, how to load
it, and each variant's measured fidelity, all read from the manifest."""

from __future__ import annotations

import re
from typing import Any

from fastembed_rt.artifact import Manifest, Task
from fastembed_rt.models import MODEL_TYPES

__all__ = ["model_card"]

# Per task: what it is, the hub's pipeline tag, and a first call for the card's example.
_TASKS = {
    Task.EMBEDDING: (
        "an embedding model",
        "sentence-similarity",
        'embeddings = model.encode(["The weather is lovely today.", "It is sunny outside."])',
    ),
    Task.CROSS_ENCODER: (
        "a cross-encoder (reranker)",
        "text-ranking",
        'scores = model.predict([("How many people live in Berlin?", "Berlin has 3.7 million.")])',
    ),
    Task.SPARSE: (
        "a sparse (SPLADE) encoder",
        "feature-extraction",
        'embeddings = model.encode(["The weather is lovely today."])',
    ),
    Task.MULTI_VECTOR: (
        "a multi-vector (late-interaction) encoder",
        "sentence-similarity",
        'token_vectors = model.encode(["The weather is lovely today."])',
    ),
}


def _cell(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def _agreement(fidelity: dict[str, Any]) -> str:
    """A variant's measured agreement with PyTorch as the export gated it: vectors by their worst cosine, a reranker's
    int8 scores by Spearman correlation, full-precision heads element by element."""
    for key, label, digits in (("min_cosine", "min cosine", 6), ("score_spearman", "score Spearman", 6)):
        if isinstance(fidelity.get(key), (int, float)):
            return f"{label} {fidelity[key]:.{digits}f}"
    if isinstance(fidelity.get("max_abs_diff"), (int, float)):
        return f"max abs diff {fidelity['max_abs_diff']:.3g}"
    return "–"


def model_card(manifest: Manifest, repo_id: str) -> str:
    """A model card (YAML front matter + Markdown) for the artifact of ``manifest`` published as ``repo_id``."""
    source = manifest.source.get("model") or "a sentence-transformers model"
    revision = manifest.source.get("revision")
    # base_model names a hub repo: never a local directory's path, which may look like one ("checkpoints/run1");
    # an artifact exported before the source recorded "local" is judged by the path's look
    hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None and not str(source).startswith(".")
    base = f"\nbase_model: {source}" if hub_id and not manifest.source.get("local", False) else ""
    cls = MODEL_TYPES[manifest.task.value].__name__
    kind, pipeline_tag, first_call = _TASKS[manifest.task]
    rows = "\n".join(
        f"| `{v.name}` | {v.format.value} | {v.precision.value} | {(v.size + (v.weights_size or 0)) / 1e6:.1f} | "
        f"{_agreement(v.fidelity)} | {_cell(v.fidelity.get('stsb_spearman'), 2)} |"
        for v in manifest.variants
    )
    at = f" (revision `{revision}`)" if revision else ""
    width = manifest.truncate_dim or manifest.dim  # what encode gives: a saved truncate_dim cuts it
    return f"""---
library_name: fastembed-rt
pipeline_tag: {pipeline_tag}
tags:
- fastembed-rt
- onnx
- sentence-transformers{base}
---

# {repo_id}

A fastembed-rt artifact of `{source}`{at}: {kind}
(dimension {width}, similarity `{manifest.similarity_fn}`, up to {manifest.tokenizer.max_seq_length} tokens)
exported to ONNX with its pooling and normalization inside the graph, each variant validated against the
PyTorch model at export. It runs without torch:

```python
from fastembed_rt import {cls}

model = {cls}("{repo_id}")  # variant="fastest" for the fastest variant within its gate on this CPU
{first_call}
```

| variant | format | precision | size MB | agreement with PyTorch | STSb Spearman |
| --- | --- | --- | ---: | ---: | ---: |
{rows}

A model loads only the files of the variant it runs.
"""
