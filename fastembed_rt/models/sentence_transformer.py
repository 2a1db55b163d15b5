"""``SentenceTransformer``: dense embeddings from an exported bi-encoder artifact, the sentence-transformers way.

Numpy out (torch tensors on request when the caller has imported torch: ``fastembed_rt.tensors``). The graph pools,
applies Dense layers and normalizes itself; Matryoshka truncation and int8 / uint8 / binary outputs run in its
precision stage when a call asks for them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np

from fastembed_rt.artifact import Manifest
from fastembed_rt.calibration import Calibration
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels import reference
from fastembed_rt.kernels.spec import NORMALIZE_OUTPUT, OUTPUT_DIM, PROMPT_LENGTH, QUANTIZE_RANGES, Precision
from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP, LongInputs, long_inputs_policy, pool_windows
from fastembed_rt.models.base import (
    MultiProcessModel,
    TextEncoder,
    check_batch_size,
    check_positive_int,
    finished_calls_stats,
    renamed_arguments,
)
from fastembed_rt.pipeline import EncodeStats, Prepared, check_texts, wants_progress
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.similarity import SINGLE_VECTOR_NAMES, SimilarityFnName, SimilarityFunction, dense_similarity
from fastembed_rt.tensors import tensor_results

if TYPE_CHECKING:
    import os

    from typing_extensions import Unpack

    from fastembed_rt.models.base import LoadOptions
    from fastembed_rt.pool import MultiProcessPool
    from fastembed_rt.tokenizer import TruncationDirection

__all__ = ["ChunkEmbeddings", "EmbedOptions", "SentenceTransformer", "text_groups"]

# Chunked texts are prepared and run in groups of about this many characters, so that one huge text
# or thousands of long ones never hold all their windows at once.
_GROUP_CHARS = 1 << 20


def text_groups(texts: list[str]) -> list[list[str]]:
    """``texts`` in consecutive groups of about ``_GROUP_CHARS`` characters (one text per group at least)."""
    groups: list[list[str]] = []
    size = 0
    for text in texts:
        if not groups or size + len(text) > _GROUP_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text)
    return groups


@dataclass(frozen=True)
class ChunkEmbeddings:
    """One row per window of the encoded texts (``SentenceTransformer.encode_chunks``).

    ``embeddings[w]`` is window ``w``'s embedding, ``text_index[w]`` the text it comes from (windows
    of a text are consecutive, in order), ``spans[w]`` the ``(start, end)`` characters of that text it
    covers, ``tokens[w]`` how many of the text's tokens it holds.
    """

    embeddings: np.ndarray
    text_index: np.ndarray
    spans: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.text_index)


@dataclass(frozen=True)
class EmbedOptions:
    """What one ``encode`` call asks of the output: its precision, its (Matryoshka) width and whether
    to L2-normalize it. Equal options can share a graph run, so this is hashable."""

    precision: Precision = Precision.FLOAT32
    output_dim: int = 0
    normalize: bool = False


class SentenceTransformer(TextEncoder, MultiProcessModel):
    """Encode texts with an exported artifact, the way ``sentence_transformers.SentenceTransformer`` does.

    Args:
        model_name_or_path: an artifact directory (task ``embedding``), or a hub repo id holding one.
        truncate_dim: default Matryoshka dimension for ``encode`` (None: the one saved with the model, if any).
        similarity_fn_name: ``"cosine"``, ``"dot"``, ``"euclidean"`` or ``"manhattan"`` for ``similarity``
            (default: the model's own).
        options: how to open the artifact (provider, variant, prompts, threads, ...), as for every
            model type: see ``fastembed_rt.models.base.ArtifactModel``.
    """

    task = "embedding"
    similarity_fn_name = SimilarityFnName()
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = SINGLE_VECTOR_NAMES

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        truncate_dim: int | None = None,
        similarity_fn_name: str | SimilarityFunction | None = None,
        **options: Unpack[LoadOptions],
    ) -> None:
        self.truncate_dim = truncate_dim
        self._similarity_fn_arg = similarity_fn_name
        self._calibration: Calibration | None = None
        super().__init__(model_name_or_path, **options)

    def _configure(self) -> None:
        self.similarity_fn_name = self._similarity_fn_arg or self.manifest.similarity_fn
        if self.truncate_dim is None:  # as sentence-transformers: the model's saved Matryoshka default
            self.truncate_dim = self.manifest.truncate_dim

    def _warm_up(self) -> None:
        self._pipeline.embed(self._pipeline.prepare(["warm-up"]), batch_size=1)

    # -- properties sentence-transformers users reach for ---------------------------------------
    @property
    def truncate_dim(self) -> int | None:
        """``encode``'s default Matryoshka width (None: the whole embedding). Checked when set: a bad one given to
        the constructor loaded, reported it as the dimension and was saved into an artifact that would not load."""
        return self._truncate_dim

    @truncate_dim.setter
    def truncate_dim(self, value: int | None) -> None:
        self._truncate_dim = None if value is None else check_positive_int("truncate_dim", value)

    def get_embedding_dimension(self) -> int:
        """The width of ``encode``'s embeddings: ``truncate_dim`` when set, else the model's."""
        return min(self.truncate_dim or self.manifest.dim, self.manifest.dim)

    def get_sentence_embedding_dimension(self) -> int:
        """``get_embedding_dimension()``, by sentence-transformers' older name."""
        return self.get_embedding_dimension()

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        """sentence-transformers' switch of whether pooling counts the prompt's tokens: fixed in the exported graph,
        so only the value it has is taken (an ``InputError`` for the other: set it on the sentence-transformers
        model, save it, export it again)."""
        fixed = (
            PROMPT_LENGTH not in self.manifest.graph.inputs
        )  # pooling skips the prompt only where it is told its length
        if bool(include_prompt) != fixed:
            raise InputError(
                f"set_pooling_include_prompt({include_prompt!r}): this artifact's pooling was exported with "
                f"include_prompt={fixed}; call it on the sentence-transformers model, save it and export it again"
            )

    # -- encoding -------------------------------------------------------------------------------
    # Typed as it behaves for strict type checkers (as sentence-transformers' overloads): sentence embeddings as
    # numpy (the default) are an array; other outputs (tensors, lists, token matrices, dicts) are Any.
    @overload
    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding"] = "sentence_embedding",
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_numpy: Literal[True] = True,
        convert_to_tensor: Literal[False] = False,
        device: Any = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
        **kwargs: Any,
    ) -> np.ndarray: ...

    @overload
    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] | None = "sentence_embedding",
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Any = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
        **kwargs: Any,
    ) -> Any: ...

    @renamed_arguments(sentences="inputs")
    @tensor_results
    @finished_calls_stats
    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] | None = "sentence_embedding",
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Any = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
        **kwargs: Any,
    ) -> Any:
        """Embed ``inputs``.

        Args:
            inputs: a text, or a sequence of texts (a list, tuple, numpy array of str, pandas Series, generator).
            prompt_name: a key of ``prompts`` whose text is put before each input (default: ``default_prompt_name``).
            prompt: a prompt text to put before each input; takes precedence over ``prompt_name``.
            batch_size: texts per model run (texts are sorted by token length, so a batch pads little).
            show_progress_bar: a bar over batches on stderr; None (default) shows one when logging is at INFO or
                DEBUG, as in sentence-transformers.
            output_value: ``"sentence_embedding"``, ``"token_embeddings"`` or None (every output).
            precision: ``"float32"``, or quantized in the graph: ``"int8"`` / ``"uint8"`` (the artifact's
                calibrated ranges), ``"binary"`` / ``"ubinary"`` (sign bits packed 8 to a byte).
            convert_to_numpy: False gives a list of 1-D arrays.
            convert_to_tensor: torch tensors (when the caller has imported torch).
            normalize_embeddings: unit length (models whose graph normalizes already are unit length).
            truncate_dim: keep the first ``truncate_dim`` dimensions (Matryoshka); default ``self.truncate_dim``.
            kwargs: sentence-transformers' ``task`` (changes nothing: an artifact has one route) and empty
                ``processing_kwargs``; any other is an ``InputError`` (a ``ValueError``, as there).

        Returns:
            ``[n, dim]`` float32 (``[dim]`` for a single str), int8 / uint8 ``[n, dim]`` or packed bits
            ``[n, ceil(dim / 8)]`` for the other precisions; a list of 1-D arrays when
            ``convert_to_numpy=False``; per-text ``[tokens, hidden]`` arrays for
            ``output_value="token_embeddings"``; for ``output_value=None`` one dict per text of every output
            (``input_ids``, ``attention_mask``, ``token_type_ids`` where the model takes them, ``token_embeddings``,
            ``sentence_embedding``), each text's own tokens without padding. ``convert_to_tensor=True``: the same as
            torch tensors, when the caller has imported torch (``fastembed_rt.tensors``; an ``InputError`` otherwise).
            ``truncate_dim`` slices, then normalizes when ``normalize_embeddings`` is set, as sentence-transformers.
            With ``pool`` (from ``start_multi_process_pool``) the work is spread over its processes in chunks of
            ``chunk_size`` texts; the result is the same, in input order.

        Texts over ``max_seq_length`` tokens (``long_inputs``): ``"truncate"`` (default, on
        ``truncation_direction``, counted in ``last_encode_stats.truncated``), ``"error"`` (an
        ``InputError`` naming the first and its token count) or ``"chunk"``: windows of at most
        ``max_seq_length`` tokens overlapping by ``chunk_overlap``, run in the ordinary batches and
        pooled per text weighted by their token counts, normalized when the model normalizes;
        ``precision`` and ``truncate_dim`` then apply to the pooled vector (``encode_chunks`` gives
        the windows' own rows).

        ``device`` (sentence-transformers' per-call argument): None or where the model runs (``self.device``); a
        list of devices (``["cpu", "cpu"]``, ``["cuda:0", "cuda:1"]``) runs this call on a multi-process pool of one
        worker per device, started and stopped here. A call does not move the model: another single device is an
        ``InputError`` (``to`` moves it).
        """
        self._extra_arguments("encode", kwargs, unknown="error")
        if pool is not None or isinstance(device, (list, tuple)):
            with self.pool_for_call(pool, device) as running:
                return running.encode(
                    inputs,
                    chunk_size=chunk_size,
                    model_settings=self._settings(),
                    show_progress_bar=show_progress_bar,
                    **self._worker_prompt(prompt, prompt_name),
                    batch_size=batch_size,
                    output_value=output_value,
                    precision=precision,
                    convert_to_numpy=convert_to_numpy,
                    normalize_embeddings=normalize_embeddings,
                    # the model's default as it stands now (truncate_embeddings, or set since the pool started); its
                    # None is the full width, said as such (a worker reads None as the default it started with)
                    truncate_dim=truncate_dim if truncate_dim is not None else self.truncate_dim or self.manifest.dim,
                    long_inputs=long_inputs,
                    chunk_overlap=chunk_overlap,
                    truncation_direction=truncation_direction,
                )
        self.check_device(device)
        single = isinstance(inputs, str)
        texts = check_texts(inputs)
        batch_size = check_batch_size(batch_size)
        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise InputError(
                f"output_value {output_value!r} is not supported; valid: 'sentence_embedding', 'token_embeddings', "
                "None (every output)"
            )
        call = self.embed_options(precision, truncate_dim, normalize_embeddings)
        policy = long_inputs_policy(long_inputs)
        if output_value != "sentence_embedding" and policy is LongInputs.CHUNK:
            raise InputError(f"output_value={output_value!r} and long_inputs='chunk' do not mix: use encode_chunks")
        if output_value is None and call.precision is not Precision.FLOAT32:
            raise InputError(
                f"output_value=None gives float32 outputs; precision {precision!r} needs 'sentence_embedding'"
            )
        if output_value == "token_embeddings" and call.precision in (Precision.INT8, Precision.UINT8):
            # sentence-transformers would scale by the call's own min/max, so a token's codes changed with its
            # batch; the artifact's calibrated ranges are of sentence embeddings, not of token vectors.
            raise InputError(
                f"precision {call.precision.value!r} has calibrated ranges for sentence embeddings only; token "
                "embeddings take 'float32', 'binary' or 'ubinary' (or quantize them with ranges of your own: "
                "fastembed_rt.quantization.quantize_embeddings)"
            )
        show = wants_progress(show_progress_bar)
        how: dict[str, Any] = {"prompt_name": prompt_name, "prompt": prompt, "long_inputs": policy}
        how.update(truncation_direction=truncation_direction, chunk_overlap=chunk_overlap)
        if output_value == "token_embeddings":
            prepared = self.prepare(texts, **how)
            tokens = self.token_embeddings_prepared(prepared, batch_size=batch_size, show_progress_bar=show)
            if call.precision is not Precision.FLOAT32:  # binary / ubinary: the sign of each value, per token
                tokens = [quantize_embeddings(matrix, call.precision) for matrix in tokens]
            return tokens[0] if single else tokens
        if output_value is None:
            features = self._all_outputs(self.prepare(texts, **how), call, batch_size, show)
            return features[0] if single else features
        parts, stats = [], []
        for group in text_groups(texts) if policy is LongInputs.CHUNK and texts else [texts]:
            prepared = self.prepare(group, **how)
            parts.append(self.embed_prepared(prepared, call, batch_size=batch_size, show_progress_bar=show))
            stats.append(self._pipeline.last_stats if len(prepared) else EncodeStats())
        self._pipeline.last_stats = EncodeStats.total(stats)  # every group's (each run set only its own)
        embeddings = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if single:
            return embeddings[0]
        if not convert_to_numpy:
            return list(embeddings)
        return embeddings

    # -- the two halves of encode, for callers that batch across requests (the server) -----------
    def embed_options(
        self,
        precision: str | Precision = "float32",
        truncate_dim: int | None = None,
        normalize_embeddings: bool = False,
        *,
        wider_than_model: Literal["keep", "error"] = "keep",
    ) -> EmbedOptions:
        """The output options of one ``encode`` call, checked (``truncate_dim`` None: the model's default).

        A ``truncate_dim`` past the model's width keeps the whole embedding, as in sentence-transformers
        (``wider_than_model="keep"``), or is an ``InputError`` (``"error"``: the server's ``dimensions``, as TEI and
        OpenAI answer it)."""
        try:
            wanted = Precision(Precision.FLOAT32 if precision is None else precision)  # None: ST's float32
        except ValueError:
            valid = ", ".join(repr(p.value) for p in Precision)
            raise InputError(f"precision {precision!r} is not supported; valid: {valid}") from None
        dim_limit = truncate_dim if truncate_dim is not None else self.truncate_dim
        limit = self.manifest.dim if wider_than_model == "error" else None
        if dim_limit is not None and not (
            isinstance(dim_limit, (int, np.integer))
            and not isinstance(dim_limit, bool)
            and 0 < dim_limit <= (limit or dim_limit)
        ):
            wanted_range = f"an int in 1..{limit}" if limit else "a positive int"
            raise InputError(f"truncate_dim must be {wanted_range}, got {dim_limit!r}")
        dim_limit = None if dim_limit is None else int(dim_limit)
        output_dim = min(dim_limit, self.manifest.dim) if dim_limit is not None else self.manifest.dim
        return EmbedOptions(wanted, output_dim, bool(normalize_embeddings))

    def embed_prepared(
        self, prepared: Prepared, options: EmbedOptions, *, batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Embeddings of prepared inputs (the second half of ``encode``): ``[len(prepared), dim]`` rows of
        float32, or int8 / uint8 / packed bits for the other precisions, in input order."""
        if prepared.windows is not None:
            return self._pool_windows(prepared, options, batch_size, show_progress_bar)
        # normalize_embeddings too: the graph's float32 arithmetic, so that these floats quantized with
        # quantization_ranges() give encode(precision="int8")'s codes (numpy's norm moved 1 code in ~1,000 values)
        in_graph = options.normalize and QUANTIZE_RANGES in self.manifest.graph.inputs
        if options.precision is not Precision.FLOAT32 or options.output_dim < self.manifest.dim or in_graph:
            return self._encode_in_graph(prepared, options, batch_size, show_progress_bar)
        if not len(prepared):
            return np.empty((0, self.manifest.dim), dtype=np.float32)
        embeddings = self._pipeline.embed(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return reference.normalize(embeddings) if options.normalize else embeddings

    def token_embeddings_prepared(
        self, prepared: Prepared, *, batch_size: int = 32, show_progress_bar: bool = False
    ) -> list[np.ndarray]:
        """The backbone's float32 ``[tokens, hidden]`` token embeddings of prepared inputs (padding removed),
        in input order: ``encode(output_value="token_embeddings")``'s second half."""
        return self._pipeline.token_embeddings(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar)

    def _all_outputs(
        self, prepared: Prepared, options: EmbedOptions, batch_size: int, show_progress_bar: bool
    ) -> list[dict[str, Any]]:
        """``encode(output_value=None)``: every output per text, the sentence embedding truncated to the call's
        width and not normalized, as sentence-transformers gives them (it normalizes only the sentence embeddings
        ``output_value="sentence_embedding"`` returns)."""
        if not len(prepared):
            return []
        rows = self._pipeline.features(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar)
        if options.output_dim < self.manifest.dim:
            for row in rows:
                row["sentence_embedding"] = row["sentence_embedding"][: options.output_dim].copy()
        return rows

    def _pool_windows(
        self, prepared: Prepared, options: EmbedOptions, batch_size: int, show_progress_bar: bool
    ) -> np.ndarray:
        """Chunked inputs: full float rows per window, pooled per input, then the call's output stages
        on the host with the numpy references the graph's precision stage is held equal to."""
        windows = prepared.windows
        assert windows is not None
        dim = self.manifest.dim
        rows = (
            self._pipeline.embed(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar)
            if prepared.rows
            else np.empty((0, dim), np.float32)
        )
        pooled = pool_windows(rows, windows.owner, windows.weights, len(prepared), self.manifest.normalizes)
        if options.precision is Precision.FLOAT32 and options.output_dim == dim:
            return reference.normalize(pooled) if options.normalize else pooled
        return self._host_stages(pooled, options)

    def _normalize_output(self, options: EmbedOptions) -> bool:
        """Whether the call's output is normalized (after the Matryoshka slice): on request only, as
        sentence-transformers (a normalizing model's truncated rows are not unit length there either; re-normalizing
        them changed dot, Euclidean and Manhattan scores from its evaluators')."""
        return options.normalize

    def _host_stages(self, rows: np.ndarray, options: EmbedOptions) -> np.ndarray:
        """The graph's precision stage on the host, with the numpy references it is held equal to: float rows
        truncated, normalized as the call asks, then quantized."""
        normalize_output = self._normalize_output(options)
        sliced = reference.matryoshka(rows, options.output_dim, normalize_output)
        return quantize_embeddings(sliced, options.precision, ranges=self._ranges(options, normalize_output))

    def quantization_ranges(self, truncate_dim: int | None = None, normalize_embeddings: bool = False) -> np.ndarray:
        """float32 ``[2, dim]``: the per-dimension min and max that ``encode(precision="int8"/"uint8")`` quantizes
        with for the same ``truncate_dim`` and ``normalize_embeddings``, from the artifact's calibration set
        (``fastembed-rt calibrate``). Pass them on wherever int8/uint8 codes are read back:
        ``util.dequantize_embeddings``, ``util.semantic_search_quantized(..., ranges=...)``, and
        sentence-transformers' ``semantic_search_usearch`` / ``semantic_search_faiss`` (``ranges=``), which
        otherwise fall back to the queries' own min and max.

        Raises:
            ArtifactError: the artifact has no calibration.
        """
        options = self.embed_options(Precision.INT8, truncate_dim, normalize_embeddings)
        return self._ranges(options, self._normalize_output(options)).copy()

    def _ranges(self, options: EmbedOptions, normalize_output: bool) -> np.ndarray:
        """The calibrated ``[2, output_dim]`` int8/uint8 ranges (zeros for the other precisions)."""
        if options.precision in (Precision.INT8, Precision.UINT8):
            if self._calibration is None:
                self._calibration = Calibration(self.manifest)
            return self._calibration.ranges(options.output_dim, normalize_output)
        return np.zeros((2, options.output_dim), dtype=np.float32)  # read only by the int8/uint8 outputs

    @finished_calls_stats
    def encode_chunks(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> ChunkEmbeddings:
        """One embedding per window of every text (texts that fit are one window), for retrieval that
        wants several vectors per document.

        Returns:
            ``ChunkEmbeddings``: ``embeddings`` ``[windows, dim]`` (the call's precision and dim, as
            ``encode``), ``text_index`` ``[windows]`` (which text), ``spans`` ``[windows, 2]`` (the
            character span of the text each window covers), ``tokens`` (the text's tokens in it).
        """
        texts = check_texts(sentences)
        batch_size = check_batch_size(batch_size)
        call = self.embed_options(precision, truncate_dim, normalize_embeddings)
        parts: list[ChunkEmbeddings] = []
        self._check_open()
        stats: list[EncodeStats] = []
        offset = 0
        for group in text_groups(texts):
            prepared = self.prepare(
                group, prompt_name=prompt_name, prompt=prompt, long_inputs=LongInputs.CHUNK, chunk_overlap=chunk_overlap
            )
            windows = prepared.windows
            assert windows is not None
            rows = Prepared(prepared.encoded, prepared.prompt_length, prepared.tokenize_s)  # each window on its own
            show = wants_progress(show_progress_bar)
            embeddings = self.embed_prepared(rows, call, batch_size=batch_size, show_progress_bar=show)
            # the windows ran as inputs of their own: counted as what they are, texts cut into windows
            windowed = self._pipeline.last_stats
            windowed.texts, windowed.chunked, windowed.windows = len(group), int(prepared.chunked.sum()), rows.rows
            stats.append(windowed)
            tokens = windows.weights.astype(np.int64)
            parts.append(ChunkEmbeddings(embeddings, windows.owner + offset, windows.spans, tokens))
            offset += len(group)
        self._pipeline.last_stats = EncodeStats.total(stats)
        if not parts:
            empty = self.embed_prepared(Prepared(self._tokenizer.encode([])), call)
            return ChunkEmbeddings(empty, np.empty(0, np.int64), np.empty((0, 2), np.int64), np.empty(0, np.int64))
        fields = ("embeddings", "text_index", "spans", "tokens")
        return ChunkEmbeddings(*(np.concatenate([getattr(p, name) for p in parts]) for name in fields))

    def _encode_in_graph(
        self, prepared: Prepared, options: EmbedOptions, batch_size: int, show_progress_bar: bool
    ) -> np.ndarray:
        """Matryoshka truncation and quantization computed by the graph's precision stage."""
        if QUANTIZE_RANGES not in self.manifest.graph.inputs:
            raise ArtifactError(
                f"{self.manifest.root} was exported without the in-graph precision stage; "
                "re-export it with this fastembed-rt to use precision= or truncate_dim="
            )
        precision, output_dim = options.precision, options.output_dim
        if not len(prepared):
            return self._host_stages(np.empty((0, self.manifest.dim), np.float32), options)
        if getattr(self._pipeline.provider, "folds_input_defaults", False):
            # OpenVINO on an ONNX graph folded the stage's inputs to their defaults: float rows from the graph
            return self._host_stages(
                self._pipeline.embed(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar), options
            )
        normalize_output = self._normalize_output(options)
        ranges = self._ranges(options, normalize_output)
        return self._pipeline.embed(
            prepared,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            output_name=precision.output_name,
            extra_feeds={
                OUTPUT_DIM: np.array([output_dim], dtype=np.int64),
                NORMALIZE_OUTPUT: np.array([normalize_output], dtype=bool),
                QUANTIZE_RANGES: ranges,
            },
        )

    # -- similarity -----------------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n, m]`` scores with the model's similarity function."""
        return dense_similarity(SimilarityFunction(self.similarity_fn_name))(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n]`` scores of row i against row i."""
        return dense_similarity(SimilarityFunction(self.similarity_fn_name), pairwise=True)(embeddings1, embeddings2)

    def _saved_manifest(self) -> Manifest:
        # a truncate_dim past the width keeps the whole embedding (encode's reading): saved as none, since an artifact
        # naming one past its dim does not load
        wide = self.truncate_dim is not None and self.truncate_dim >= self.manifest.dim
        truncate_dim = None if wide else self.truncate_dim
        return replace(self.manifest, similarity_fn=self.similarity_fn_name, truncate_dim=truncate_dim)

    @staticmethod
    def load(input_path: str | os.PathLike[str]) -> SentenceTransformer:
        """sentence-transformers' deprecated ``SentenceTransformer.load(path)``: ``SentenceTransformer(path)``."""
        warnings.warn(
            "SentenceTransformer.load(...) is deprecated, use SentenceTransformer(...) instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return SentenceTransformer(input_path)

    def set_similarity_fn(self, name: str | SimilarityFunction) -> None:
        self.similarity_fn_name = name

    # -- data-parallel encoding (the pool itself: MultiProcessModel.start_multi_process_pool) ------------
    def _pool_load(self) -> dict[str, Any]:
        return {"truncate_dim": self.truncate_dim, "similarity_fn_name": self.similarity_fn_name}

    def encode_multi_process(
        self,
        sentences: Sequence[str],
        pool: MultiProcessPool,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        chunk_size: int | None = None,
        show_progress_bar: bool | None = None,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray | list[np.ndarray]:
        """``encode(sentences, pool=pool, ...)``: sentence-transformers' older name for it, with its positional
        arguments in its order."""
        return self.encode(
            sentences,
            pool=pool,
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            chunk_size=chunk_size,
            show_progress_bar=show_progress_bar,
            precision=precision,
            normalize_embeddings=normalize_embeddings,
            truncate_dim=truncate_dim,
            **kwargs,
        )

    @contextmanager
    def truncate_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Within the block, ``encode`` truncates to ``truncate_dim`` by default (None: the model's full width); the
        model's own default comes back after it."""
        saved, self.truncate_dim = self.truncate_dim, truncate_dim  # checked by the setter
        try:
            yield
        finally:
            self.truncate_dim = saved

    def truncate_sentence_embeddings(self, truncate_dim: int | None) -> AbstractContextManager[None]:
        """``truncate_embeddings``, by sentence-transformers' older name."""
        return self.truncate_embeddings(truncate_dim)

    def __repr__(self) -> str:
        cut = {} if self.get_embedding_dimension() == self.manifest.dim else {"truncate_dim": self.truncate_dim}
        return self._describe(dim=self.manifest.dim, **cut)
