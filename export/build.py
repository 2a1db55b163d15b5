"""The contract between the artifact writer and a variant builder: what a builder gets and hands back.

A builder is a plain function ``BuildContext -> BuildResult`` (``optimize``, ``quantize``,
``openvino_ir``). It writes its graph into the staged artifact and returns where it is and what it
did; the writer hashes it, validates it and ships or rejects it. A builder that searches (an
exclusion ladder) calls ``context.check(file)`` on each candidate and raises ``ParityError`` when
none passes: that is a measured miss. A builder raises ``NotApplicable`` when its variant does not
exist for the model's family (no fusion patterns, a precision the family overflows): the writer
records that reason among the rejected variants. Any other exception is an error and fails the export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastembed_rt.errors import ExportError
from fastembed_rt.export.backbone import ExportedBackbone

__all__ = ["BuildContext", "BuildResult", "Builder", "NotApplicable"]


class NotApplicable(ExportError):
    """This variant does not exist for this model's family; the message says why."""


@dataclass(frozen=True)
class BuildContext:
    """What a variant builder may use. ``base`` is the validated fp32 graph of the artifact."""

    root: Path
    base: Path
    backbone: ExportedBackbone  # the graph before the output stages or head
    # What builders that calibrate (int8 activation scales) encode: texts, or (query, document) pairs for a
    # cross-encoder; never the held-out texts the variant is validated on.
    calibration_texts: Sequence[str | tuple[str, str]]
    # Adds the task's fp32 output stages (or head) to a backbone graph in place; returns what it added.
    append_stages: Callable[[Any], dict[str, Any]]
    # Validates a candidate file (relative to ``root``) as this variant; returns its gate misses.
    check: Callable[[str], list[str]]

    def feeds(self, texts: Sequence[str | tuple[str, str]]) -> list[dict[str, np.ndarray]]:
        """One feed dict per text or pair (a batch of 1, so nothing is padding), as the runtime feeds the
        artifact's graph: for builders that calibrate on activations."""
        from fastembed_rt.artifact import load_manifest
        from fastembed_rt.pipeline import BatchFeeds
        from fastembed_rt.tokenizer import Tokenizer

        manifest = load_manifest(self.root)
        encoded = Tokenizer(self.root, manifest.tokenizer).encode(list(texts))
        batch = BatchFeeds(manifest)
        batch.per_call_inputs |= set(manifest.graph.inputs)  # only the token inputs: a backbone reads no other
        return [batch([ids], [type_ids]) for ids, type_ids in zip(encoded.ids, encoded.type_ids, strict=True)]


@dataclass(frozen=True)
class BuildResult:
    """A built variant: its graph ``file`` (relative to the artifact), a separate ``weights_file`` if
    it has one, the ``engine_properties`` it must run with, and what the build did (``details``)."""

    file: str
    optimization: str
    details: dict[str, Any] = field(default_factory=dict)
    weights_file: str | None = None
    engine_properties: dict[str, str] = field(default_factory=dict)


Builder = Callable[[BuildContext], BuildResult]
