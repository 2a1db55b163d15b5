"""``MultiVectorEncoder``: late-interaction (ColBERT) token vectors from an exported artifact, the
sentence-transformers 6 way. Numpy out; no torch.

The graph projects and normalizes every token position (``token_vectors`` ``[batch, seq, dim]``); which
rows a text keeps is decided here on the host from its token ids, exactly as sentence-transformers'
``Transformer.preprocess`` and ``MultiVectorMask`` decide it:

- a call's *task* sets the length: ``query`` truncates at ``query_length``, ``document`` at
  ``document_length``, no task at ``max_seq_length`` (each falls back to ``max_seq_length``);
- query expansion (``task="query"`` with the model's ``query_expansion``): ``fixed`` truncates queries at
  ``length`` tokens, ``min`` at ``max(query_length, length)``; a query shorter than ``length`` is
  extended to it with the expansion token (``[MASK]``) on the tokenizer's padding side; the encoder
  attends to those positions only when ``attend`` is set, and they always count as query vectors;
- a text keeps its real tokens (prompt and special tokens included) and expansion positions, less the
  skiplist tokens when its task (no task counts as ``document``) is in ``skiplist_tasks``, and, for tasks
  other than ``query``, only ``keep_only_token_ids`` when the model sets them;
- a ``HierarchicalTokenPooling`` configured in the model pools the documents (``fastembed_rt.token_pooling``);
  ``normalize_embeddings`` and a per-call ``token_pooling`` follow, in that order.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from fastembed_rt.calibration import Calibration
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels import reference
from fastembed_rt.kernels.spec import TOKEN_VECTORS, Precision
from fastembed_rt.maxsim import maxsim, maxsim_pairwise
from fastembed_rt.models.base import (
    TASK_PROMPT_NAMES,
    MultiProcessModel,
    TextEncoder,
    check_batch_size,
    explicit_prompt,
    finished_calls_stats,
    renamed_arguments,
)
from fastembed_rt.models.cross_encoder import RankResult, check_rank_inputs, rank_results
from fastembed_rt.pipeline import Prepared, check_texts, wants_progress
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.token_pooling import HierarchicalTokenPooling
from fastembed_rt.tokenizer import Encoded, TruncationDirection

if TYPE_CHECKING:
    import os

    from typing_extensions import Unpack

    from fastembed_rt.artifact import Manifest
    from fastembed_rt.models.base import LoadOptions
    from fastembed_rt.pool import MultiProcessPool

__all__ = ["ExpansionStrategy", "LateInteraction", "MultiVectorEncoder", "MultiVectorSimilarity", "QueryExpansion"]


class ExpansionStrategy(str, enum.Enum):
    """sentence-transformers' ``query_expansion["strategy"]``."""

    FIXED = "fixed"  # every query is exactly ``length`` tokens
    MIN = "min"  # ``length`` is only the floor


class MultiVectorSimilarity(str, enum.Enum):
    MAXSIM = "maxsim"
    MEAN_MAXSIM = "meanmaxsim"


@dataclass(frozen=True)
class QueryExpansion:
    """ColBERT query expansion, resolved at export: the expansion token's id and the query width floor."""

    strategy: ExpansionStrategy
    attend: bool
    token_id: int
    length: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "attend": self.attend,
            "token_id": self.token_id,
            "length": self.length,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryExpansion:
        return cls(
            ExpansionStrategy(data["strategy"]), bool(data["attend"]), int(data["token_id"]), int(data["length"])
        )


@dataclass(frozen=True)
class LateInteraction:
    """What a multi-vector model's saved configuration says besides its graph (manifest ``stages.late_interaction``)."""

    query_length: int | None = None
    document_length: int | None = None
    query_expansion: QueryExpansion | None = None
    skiplist_ids: tuple[int, ...] = ()
    skiplist_tasks: tuple[str, ...] = ("document",)
    keep_only_token_ids: tuple[int, ...] | None = None
    token_pooling: HierarchicalTokenPooling | None = None
    skiplist_words: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "query_length": self.query_length,
            "document_length": self.document_length,
            "query_expansion": None if self.query_expansion is None else self.query_expansion.to_dict(),
            "skiplist_words": list(self.skiplist_words),
            "skiplist_ids": list(self.skiplist_ids),
            "skiplist_tasks": list(self.skiplist_tasks),
            "keep_only_token_ids": None if self.keep_only_token_ids is None else list(self.keep_only_token_ids),
            "token_pooling": None if self.token_pooling is None else self.token_pooling.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LateInteraction:
        def optional_int(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        expansion, pooling, keep = (
            data.get("query_expansion"),
            data.get("token_pooling"),
            data.get("keep_only_token_ids"),
        )
        return cls(
            query_length=optional_int("query_length"),
            document_length=optional_int("document_length"),
            query_expansion=None if expansion is None else QueryExpansion.from_dict(expansion),
            skiplist_ids=tuple(int(i) for i in data.get("skiplist_ids", ())),
            skiplist_tasks=tuple(str(t) for t in data.get("skiplist_tasks", ("document",))),
            keep_only_token_ids=None if keep is None else tuple(int(i) for i in keep),
            token_pooling=None if pooling is None else HierarchicalTokenPooling.from_dict(pooling),
            skiplist_words=tuple(str(w) for w in data.get("skiplist_words", ())),
        )


# The prompt names ``encode_query`` and ``encode_document`` look for, in order (sentence-transformers' own).


_POOLING_FIELDS = ("pool_factor", "num_protected_tokens", "normalize_embeddings", "tasks")


def _token_pooling(value: Any) -> HierarchicalTokenPooling | None:
    """``encode``'s ``token_pooling``: fastembed-rt's, or sentence-transformers' module of that name read by its
    settings (the same Ward clustering), or an ``InputError``."""
    if value is None or isinstance(value, HierarchicalTokenPooling):
        return value
    if type(value).__name__ == "HierarchicalTokenPooling" and all(hasattr(value, name) for name in _POOLING_FIELDS):
        return HierarchicalTokenPooling(
            float(value.pool_factor),
            num_protected_tokens=int(value.num_protected_tokens),
            normalize_embeddings=bool(value.normalize_embeddings),
            tasks=tuple(value.tasks),
        )
    kind = type(value)
    raise InputError(
        "token_pooling must be a fastembed_rt.token_pooling.HierarchicalTokenPooling (or sentence-transformers' "
        f"module of that name), got {kind.__module__}.{kind.__qualname__}"
    )


class MultiVectorEncoder(TextEncoder, MultiProcessModel):
    """Late-interaction token vectors from an exported artifact, as ``sentence_transformers.MultiVectorEncoder``.

    Args:
        model_name_or_path: an artifact directory (task ``multi-vector``), or a hub repo id holding one.
        similarity_fn_name: ``maxsim`` or ``meanmaxsim``; None: the model's (``maxsim`` unless it saved one).
        options: how to open the artifact (provider, variant, prompts, threads, ...), as for every model
            type: see ``fastembed_rt.models.base.ArtifactModel``.
    """

    task = "multi-vector"
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = tuple(fn.value for fn in MultiVectorSimilarity)

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        similarity_fn_name: str | None = None,
        **options: Unpack[LoadOptions],
    ) -> None:
        self._similarity_fn_arg = similarity_fn_name
        self._calibration: Calibration | None = None
        super().__init__(model_name_or_path, **options)

    def _saved_manifest(self) -> Manifest:
        """``similarity_fn_name`` as set, as sentence-transformers saves it."""
        return replace(self.manifest, similarity_fn=self.similarity_fn_name)

    def _pool_load(self) -> dict[str, Any]:
        return {"similarity_fn_name": self.similarity_fn_name}

    def _configure(self) -> None:
        try:
            self.late_interaction = LateInteraction.from_dict(self.manifest.stages["late_interaction"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{self.manifest.root}: manifest stages have no valid 'late_interaction' section ({exc!r}); re-create "
                "the artifact with `fastembed-rt export MODEL OUT_DIR`"
            ) from None
        self.similarity_fn_name = self._similarity_fn_arg or self.manifest.similarity_fn

    def _warm_up(self) -> None:
        self.encode(["warm-up"], batch_size=1, show_progress_bar=False)

    @property
    def similarity_fn_name(self) -> str:
        """``maxsim`` (the sum over query tokens) or ``meanmaxsim`` (divided by the query's token count)."""
        return self._similarity_fn_name.value

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str | MultiVectorSimilarity) -> None:
        try:  # a name, or a member of ours or sentence-transformers' SimilarityFunction (its MAXSIM, MEAN_MAXSIM)
            self._similarity_fn_name = MultiVectorSimilarity(value.value if isinstance(value, enum.Enum) else value)
        except ValueError:
            raise InputError(
                f"MultiVectorEncoder supports similarity_fn_name 'maxsim' or 'meanmaxsim', got {value!r}: cosine, "
                "dot, euclidean and manhattan are defined on single vectors"
            ) from None

    def get_embedding_dimension(self) -> int:
        """The dimension of every token vector."""
        return self.manifest.dim

    @property
    def query_length(self) -> int | None:
        return self.late_interaction.query_length

    @property
    def document_length(self) -> int | None:
        return self.late_interaction.document_length

    # -- tokenizing, the sentence-transformers way ----------------------------------------------
    def token_limit(self, task: str | None) -> int:
        """Where ``task``'s texts are cut, in tokens: the query or document length, else ``max_seq_length``."""
        return self._max_length(task) or self.max_seq_length

    def _max_length(self, task: str | None) -> int | None:
        config = self.late_interaction
        expansion = config.query_expansion if task == "query" else None
        if expansion is not None:
            if expansion.strategy is ExpansionStrategy.FIXED:
                return expansion.length
            return max(config.query_length, expansion.length) if config.query_length is not None else None
        return {"query": config.query_length, "document": config.document_length}.get(task or "")

    def preprocess(
        self,
        inputs: str | Sequence[str],
        prompt: str | None = None,
        prompt_name: str | None = None,
        task: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Padded int64 model inputs of ``inputs`` for ``task`` (``"query"``: expanded queries, their attention mask
        as the graph gets it, and sentence-transformers' bool ``query_expansion_positions``: the expansion tokens,
        which are scored even where the mask leaves them out), as sentence-transformers' ``preprocess``."""
        prompt = explicit_prompt(prompt, prompt_name)
        features = self.model_inputs(self.prepare(inputs, task=task, prompt=prompt, prompt_name=prompt_name))
        expansion = self.late_interaction.query_expansion if task == "query" else None
        if expansion is not None:
            resolved = self._resolve_prompt(prompt, prompt_name)
            texts = [resolved + t for t in check_texts(inputs)] if resolved else check_texts(inputs)
            lengths = [len(row) for row in self._tokenizer.encode(texts, None, self._max_length(task)).ids]
            ids = features["input_ids"]
            positions = np.zeros(ids.shape, dtype=bool)
            width = ids.shape[1]
            left = self.manifest.tokenizer.padding_side == "left"
            for i, length in enumerate(lengths):
                extra = max(0, expansion.length - length)
                start = width - length - extra if left else length
                positions[i, start : start + extra] = True
            features["query_expansion_positions"] = positions
        return features

    def prepare(  # type: ignore[override]
        self,
        sentences: str | Sequence[str],
        *,
        task: str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncation_direction: TruncationDirection | None = None,
    ) -> Prepared:
        """Tokenize ``sentences`` for ``task`` (``"query"``, ``"document"`` or None) with the call's prompt, at the
        task's length, queries expanded (the first half of ``encode``; ``encode_prepared`` is the second)."""
        if task not in (None, "query", "document"):
            raise InputError(f"task must be 'query', 'document' or None, got {task!r}")
        texts = check_texts(sentences)
        started = time.perf_counter()
        resolved = self._resolve_prompt(prompt, prompt_name)
        if resolved and truncation_direction == "left":
            # the marker is text before the text here: cut from the left, a long text lost its [Q] / [D] (PyLate
            # puts the marker in after truncation)
            raise InputError(
                f"truncation_direction='left' would cut the prompt {resolved!r} (the query/document marker) off the "
                "start of long texts; multi-vector texts are cut on the right"
            )
        full = [resolved + t for t in texts] if resolved else texts
        encoded = self._tokenizer.encode(full, truncation_direction, self._max_length(task))
        expansion = self.late_interaction.query_expansion if task == "query" else None
        if expansion is not None:
            encoded = self._expand(encoded, expansion)
        return Prepared(encoded, 0, time.perf_counter() - started)

    def kept_positions(self, ids: np.ndarray, task: str | None) -> np.ndarray:
        """Which positions of a prepared row (token ids, expansion included) give the text's vectors, bool:
        all but the skiplist tokens (for the tasks it names) and, unless ``task`` is ``query``, only the
        ``keep_only_token_ids`` when the model sets them."""
        config = self.late_interaction
        keep = np.ones(len(ids), dtype=bool)
        if (task or "document") in config.skiplist_tasks and config.skiplist_ids:
            keep &= ~np.isin(ids, np.asarray(config.skiplist_ids, dtype=np.int64))
        if task != "query" and config.keep_only_token_ids:
            keep &= np.isin(ids, np.asarray(config.keep_only_token_ids, dtype=np.int64))
        return keep

    def _expand(self, encoded: Encoded, expansion: QueryExpansion) -> Encoded:
        """Queries shorter than the floor extended with the expansion token on the padding side."""
        left = self.manifest.tokenizer.padding_side == "left"
        ids, type_ids, attention = [], [], []
        for row, types in zip(encoded.ids, encoded.type_ids):
            extra = max(0, expansion.length - len(row))
            added = np.full(extra, expansion.token_id, dtype=np.int64)
            seen = np.full(extra, int(expansion.attend), dtype=np.int64)
            parts = [(added, row), (np.zeros(extra, np.int64), types), (seen, np.ones(len(row), np.int64))]
            if not left:
                parts = [(b, a) for a, b in parts]
            ids.append(np.concatenate(parts[0]))
            type_ids.append(np.concatenate(parts[1]))
            attention.append(np.concatenate(parts[2]))
        return Encoded(ids, type_ids, encoded.truncated, attention)

    # -- encoding -------------------------------------------------------------------------------
    def encode_prepared(
        self, prepared: Prepared, *, task: str | None = None, batch_size: int = 32, show_progress_bar: bool = False
    ) -> list[np.ndarray]:
        """Float32 ``[kept_i, dim]`` token vectors of inputs prepared for ``task``, the model's own token pooling
        applied (the second half of ``encode``), in input order."""
        ids = prepared.encoded.ids
        out: list[np.ndarray] = [np.empty((0, self.manifest.dim), np.float32)] * len(ids)
        left = self.manifest.tokenizer.padding_side == "left"
        for rows, result, mask in self._pipeline.run(
            prepared, batch_size=batch_size, outputs=[TOKEN_VECTORS], show_progress_bar=show_progress_bar
        ):
            vectors = result[TOKEN_VECTORS]
            width = mask.shape[1]
            for j, row in enumerate(rows.tolist()):
                start = width - len(ids[row]) if left else 0
                out[row] = vectors[j, start : start + len(ids[row])][self.kept_positions(ids[row], task)]
        pooling = self.late_interaction.token_pooling
        return out if pooling is None else pooling.pool(out, task=task)

    @renamed_arguments(sentences="inputs")
    @finished_calls_stats
    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["token_embeddings"] = "token_embeddings",
        convert_to_numpy: bool = True,
        device: Any = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        normalize_embeddings: bool = False,
        token_pooling: HierarchicalTokenPooling | None = None,
        task: Literal["query", "document"] | None = None,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_tensor: Any = None,
        **kwargs: Any,
    ) -> list[np.ndarray] | np.ndarray:
        """Token vectors of ``inputs``: one ``[tokens_i, dim]`` matrix per text.

        Prefer ``encode_query`` / ``encode_document``, which set ``task`` and the matching prompt.

        Args:
            inputs: a str or a list of str.
            prompt_name / prompt: prepended to every text (default: the model's default prompt, if any).
            batch_size: most texts per graph run (batches are also cut by a padded-token budget).
            output_value: ``"token_embeddings"`` (sentence-transformers' ``None``, raw padded feature dicts,
                is not offered).
            convert_to_numpy: accepted for sentence-transformers compatibility; results are always numpy.
            convert_to_tensor: refused with the reason, as sentence-transformers: texts have different token counts,
                so there is no one tensor to stack them into.
            device: None or where the model runs (``self.device``; a call does not move the model), or a list of
                devices: the call runs on a pool of one worker process per device, started and stopped here.
            pool / chunk_size: a pool from ``start_multi_process_pool`` to spread the texts over, in chunks of
                ``chunk_size`` texts; the vectors are the same, in input order.
            normalize_embeddings: L2-normalize every token vector (after the model's own stages and pooling).
            token_pooling: a ``HierarchicalTokenPooling`` applied on top, to the tasks it names.
            task: ``"query"``, ``"document"`` or None (length, expansion, skiplist: see the module docstring).
            precision: ``float32``, or per-token-vector ``int8`` / ``uint8`` (the artifact's calibrated ranges,
                never the batch's) / ``binary`` / ``ubinary`` (8 dims per byte), as ``quantize_embeddings``.
        Returns:
            a list of ``[tokens_i, dim]`` arrays (float32, or the precision's codes); one array for a single str.
        """
        self._extra_arguments("encode", kwargs, unknown="error")
        if convert_to_tensor is not None:
            raise InputError(
                "MultiVectorEncoder.encode() has no convert_to_tensor: each text has its own number of token "
                "vectors, so there is no one tensor to stack them into; it returns a list of [tokens_i, dim] "
                "arrays. Drop the argument."
            )
        if output_value != "token_embeddings":
            raise InputError(
                f"output_value must be 'token_embeddings', got {output_value!r}: fastembed-rt returns the "
                "scored token vectors only"
            )
        token_pooling = _token_pooling(token_pooling)
        wanted = self._precision(precision)
        batch_size = check_batch_size(batch_size)
        single = isinstance(inputs, str)
        if pool is not None or isinstance(device, (list, tuple)):
            with self.pool_for_call(pool, device) as running:
                return running.encode(
                    inputs,
                    chunk_size=chunk_size,
                    model_settings=self._settings(),
                    show_progress_bar=show_progress_bar,
                    **self._worker_prompt(prompt, prompt_name),
                    batch_size=batch_size,
                    normalize_embeddings=normalize_embeddings,
                    token_pooling=token_pooling,
                    task=task,
                    precision=precision,
                )
        self.check_device(device)
        prepared = self.prepare(inputs, task=task, prompt_name=prompt_name, prompt=prompt)
        show = wants_progress(show_progress_bar)
        vectors = self.encode_prepared(prepared, task=task, batch_size=batch_size, show_progress_bar=show)
        if normalize_embeddings:
            vectors = [reference.normalize(v) for v in vectors]
        if token_pooling is not None:
            vectors = token_pooling.pool(vectors, task=task)
        if wanted is not Precision.FLOAT32:
            vectors = [quantize_embeddings(v, wanted, ranges=self._ranges(wanted)) for v in vectors]
        return vectors[0] if single else vectors

    @renamed_arguments(sentences="inputs")
    def encode_query(self, inputs: str | Sequence[str], **kwargs: Any) -> list[np.ndarray] | np.ndarray:
        """``encode`` as a query: the ``query`` prompt (when the model has one), ``query_length``, query expansion."""
        return self.encode(inputs, **{**self._with_prompt_name(kwargs, TASK_PROMPT_NAMES["query"]), "task": "query"})

    @renamed_arguments(sentences="inputs")
    def encode_document(self, inputs: str | Sequence[str], **kwargs: Any) -> list[np.ndarray] | np.ndarray:
        """``encode`` as a document: the ``document`` / ``passage`` / ``corpus`` prompt, ``document_length``,
        the skiplist and the model's token pooling."""
        return self.encode(
            inputs, **{**self._with_prompt_name(kwargs, TASK_PROMPT_NAMES["document"]), "task": "document"}
        )

    def _precision(self, precision: str | Precision) -> Precision:
        try:
            return Precision(precision)
        except ValueError:
            valid = ", ".join(repr(p.value) for p in Precision)
            raise InputError(f"precision {precision!r} is not supported; valid: {valid}") from None

    def _ranges(self, precision: Precision) -> np.ndarray | None:
        return self.quantization_ranges if precision in (Precision.INT8, Precision.UINT8) else None

    @property
    def quantization_ranges(self) -> np.ndarray:
        """float32 ``[2, dim]``: the per-dimension min and max the int8/uint8 token codes use, from the
        artifact's calibration set (``fastembed-rt calibrate``); pass them to ``util.semantic_search_maxsim``."""
        if self._calibration is None:
            self._calibration = Calibration(self.manifest)
        return self._calibration.ranges(self.manifest.dim, False)

    # -- scores -------------------------------------------------------------------------------------
    def similarity(
        self,
        embeddings1: Any,
        embeddings2: Any,
        *,
        chunk_elements: int | None = None,
        length_normalize: bool | None = None,
        device: Any = None,
    ) -> np.ndarray:
        """float32 ``[n, m]`` MaxSim (or MeanMaxSim) of every query matrix with every document matrix.

        ``chunk_elements`` / ``length_normalize``: as ``util.maxsim`` (None: MeanMaxSim's normalization when the
        model scores with it); ``device``: taken for sentence-transformers' signature (numpy scores on the CPU)."""
        return maxsim(
            embeddings1,
            embeddings2,
            chunk_elements=chunk_elements,
            length_normalize=self._length_normalize(length_normalize),
        )

    def similarity_pairwise(
        self,
        embeddings1: Any,
        embeddings2: Any,
        *,
        chunk_elements: int | None = None,
        length_normalize: bool | None = None,
        device: Any = None,
    ) -> np.ndarray:
        """float32 ``[n]`` MaxSim (or MeanMaxSim) of query i with document i (arguments: as ``similarity``)."""
        return maxsim_pairwise(
            embeddings1,
            embeddings2,
            chunk_elements=chunk_elements,
            length_normalize=self._length_normalize(length_normalize),
        )

    def _length_normalize(self, value: bool | None) -> bool:
        return self._similarity_fn_name is MultiVectorSimilarity.MEAN_MAXSIM if value is None else bool(value)

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> list[RankResult]:
        """Rerank ``documents`` for ``query`` by late interaction (``similarity``), as ``CrossEncoder.rank`` does.

        Returns:
            ``[{"corpus_id": int, "score": float[, "text": str]}]`` by decreasing score (ties: lower
            ``corpus_id`` first), at most ``top_k`` long (None: all).
        """
        docs = check_rank_inputs(query, documents, top_k)
        if not docs:
            return []
        show = wants_progress(show_progress_bar)
        query_vectors = self.encode_query([query], batch_size=batch_size, show_progress_bar=show)
        document_vectors = self.encode_document(docs, batch_size=batch_size, show_progress_bar=show)
        return rank_results(self.similarity(query_vectors, document_vectors)[0].tolist(), docs, top_k, return_documents)

    def __repr__(self) -> str:
        return self._describe(dim=self.manifest.dim, similarity_fn_name=self.similarity_fn_name)
