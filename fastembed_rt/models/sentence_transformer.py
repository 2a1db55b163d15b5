"""``SentenceTransformer``: dense embeddings from an exported bi-encoder artifact, the sentence-transformers way.

Numpy out; no torch. The graph pools, applies Dense layers and normalizes itself; Matryoshka
truncation and int8 / uint8 / binary outputs run in its precision stage when a call asks for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fastembed_rt.calibration import Calibration
from fastembed_rt.errors import ArtifactError, InputError, ProviderError
from fastembed_rt.kernels.spec import NORMALIZE_OUTPUT, OUTPUT_DIM, QUANTIZE_RANGES, Precision
from fastembed_rt.models.base import TextEncoder, check_batch_size, no_tensors
from fastembed_rt.pipeline import Prepared, check_texts
from fastembed_rt.pool import MultiProcessPool
from fastembed_rt.providers import ProviderOptions, pool_devices
from fastembed_rt.providers.threads import available_cpus
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.similarity import SimilarityFunction, dense_similarity, similarity_function

if TYPE_CHECKING:
    import os

    from typing_extensions import Unpack

    from fastembed_rt.models.base import LoadOptions

__all__ = ["EmbedOptions", "SentenceTransformer"]


@dataclass(frozen=True)
class EmbedOptions:
    """What one ``encode`` call asks of the output: its precision, its (Matryoshka) width and whether
    to L2-normalize it. Equal options can share a graph run, so this is hashable."""

    precision: Precision = Precision.FLOAT32
    output_dim: int = 0
    normalize: bool = False


class SentenceTransformer(TextEncoder):
    """Encode texts with an exported artifact, the way ``sentence_transformers.SentenceTransformer`` does.

    Args:
        model_name_or_path: an artifact directory (task ``embedding``), or a hub repo id holding one.
        truncate_dim: default Matryoshka dimension for ``encode``.
        options: how to open the artifact (provider, variant, prompts, threads, ...), as for every
            model type: see ``fastembed_rt.models.base.ArtifactModel``.
    """

    task = "embedding"

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        truncate_dim: int | None = None,
        **options: Unpack[LoadOptions],
    ) -> None:
        self.truncate_dim = truncate_dim
        self._calibration: Calibration | None = None
        super().__init__(model_name_or_path, **options)

    def _configure(self) -> None:
        self.similarity_fn_name = similarity_function(self.manifest.similarity_fn).value

    def _warm_up(self) -> None:
        self._pipeline.embed(self._pipeline.prepare(["warm-up"]), batch_size=1)

    # -- properties sentence-transformers users reach for ---------------------------------------
    def get_sentence_embedding_dimension(self) -> int:
        return self.truncate_dim or self.manifest.dim

    # -- encoding -------------------------------------------------------------------------------
    def tokenize(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Padded model inputs for ``texts`` (``input_ids``, ``attention_mask``, ...), int64."""
        items = check_texts(texts)
        encoded = self._tokenizer.encode(items)
        feeds = self._pipeline.feeds(encoded.ids, encoded.type_ids)
        return {name: value for name, value in feeds.items() if name not in self._pipeline.feeds.per_call_inputs}

    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] = "sentence_embedding",
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed ``sentences``.

        Returns:
            float32 ``[n, dim]`` (``[dim]`` for a single str); a list of 1-D arrays when
            ``convert_to_numpy=False``; per-text ``[tokens, hidden]`` arrays for
            ``output_value="token_embeddings"``. ``truncate_dim`` slices, then re-normalizes when the
            model normalizes or ``normalize_embeddings`` is set. With ``pool`` (from
            ``start_multi_process_pool``) the work is spread over its processes in chunks of
            ``chunk_size`` texts; the result is the same, in input order.
        """
        no_tensors(convert_to_tensor)
        if pool is not None:
            return pool.encode(
                sentences,
                chunk_size=chunk_size,
                prompt_name=prompt_name,
                prompt=prompt,
                batch_size=batch_size,
                output_value=output_value,
                precision=precision,
                convert_to_numpy=convert_to_numpy,
                normalize_embeddings=normalize_embeddings,
                truncate_dim=truncate_dim,
            )
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        check_batch_size(batch_size)
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise InputError(
                f"output_value {output_value!r} is not supported; valid: 'sentence_embedding', 'token_embeddings'"
            )
        call = self.embed_options(precision, truncate_dim, normalize_embeddings)
        prepared = self.prepare(texts, prompt_name=prompt_name, prompt=prompt)
        show = bool(show_progress_bar)
        if output_value == "token_embeddings":
            tokens = self._pipeline.token_embeddings(prepared, batch_size=batch_size, show_progress_bar=show)
            return tokens[0] if single else tokens
        embeddings = self.embed_prepared(prepared, call, batch_size=batch_size, show_progress_bar=show)
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
    ) -> EmbedOptions:
        """The output options of one ``encode`` call, checked (``truncate_dim`` None: the model's default)."""
        try:
            wanted = Precision(precision)
        except ValueError:
            valid = ", ".join(repr(p.value) for p in Precision)
            raise InputError(f"precision {precision!r} is not supported; valid: {valid}") from None
        dim_limit = truncate_dim if truncate_dim is not None else self.truncate_dim
        if dim_limit is not None and not (
            isinstance(dim_limit, int) and not isinstance(dim_limit, bool) and 0 < dim_limit <= self.manifest.dim
        ):
            raise InputError(f"truncate_dim must be an int in 1..{self.manifest.dim}, got {dim_limit!r}")
        output_dim = dim_limit if dim_limit is not None else self.manifest.dim
        return EmbedOptions(wanted, output_dim, bool(normalize_embeddings))

    def embed_prepared(
        self, prepared: Prepared, options: EmbedOptions, *, batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Embeddings of prepared inputs (the second half of ``encode``): ``[len(prepared), dim]`` rows of
        float32, or int8 / uint8 / packed bits for the other precisions, in input order."""
        if options.precision is not Precision.FLOAT32 or options.output_dim < self.manifest.dim:
            return self._encode_in_graph(prepared, options, batch_size, show_progress_bar)
        if not len(prepared):
            return np.empty((0, self.manifest.dim), dtype=np.float32)
        embeddings = self._pipeline.embed(prepared, batch_size=batch_size, show_progress_bar=show_progress_bar)
        if options.normalize:
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = np.ascontiguousarray(embeddings / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)
        return embeddings

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
        # A normalizing model's truncated output is re-normalized (Matryoshka); otherwise only on request.
        normalize_output = options.normalize or (self.manifest.normalizes and output_dim < self.manifest.dim)
        if precision in (Precision.INT8, Precision.UINT8):
            if self._calibration is None:
                self._calibration = Calibration(self.manifest)
            ranges = self._calibration.ranges(output_dim, normalize_output)
        else:
            ranges = np.zeros((2, output_dim), dtype=np.float32)  # read only by the int8/uint8 outputs
        if not len(prepared):
            return quantize_embeddings(np.empty((0, output_dim), np.float32), precision, ranges=ranges)
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

    def set_similarity_fn(self, name: str | SimilarityFunction) -> None:
        self.similarity_fn_name = similarity_function(name).value

    # -- data-parallel encoding -----------------------------------------------------------------
    def start_multi_process_pool(
        self, target_devices: list[str] | None = None, *, intra_op_threads: int | None = None
    ) -> MultiProcessPool:
        """Start worker processes, each loading this artifact with its own engine.

        Args:
            target_devices: one provider name per worker, e.g. ``["cpu"] * 4`` or
                ``["cuda:0", "cuda:1"]``. Default: one worker per visible GPU for cuda/tensorrt,
                else ``min(4, CPUs)`` workers of this model's provider.
            intra_op_threads: threads per worker; default: this process's CPUs split evenly.

        Returns:
            A pool for ``encode(..., pool=pool)``; stop it with ``stop_multi_process_pool`` (or use
            it as a context manager).
        """
        if not isinstance(self._load["provider"], str):
            raise ProviderError(
                f"a multi-process pool loads the model again in each worker; provider {self.provider!r} is an "
                "engine instance, pass a provider name instead"
            )
        requested = str(self._load["provider"])
        # After an allowed fallback the engine differs from the request: pool on what really runs.
        name = requested if requested.partition(":")[0] == self.provider else self.provider
        devices = list(target_devices) if target_devices is not None else pool_devices(name)
        threads = intra_op_threads or max(1, available_cpus() // max(1, len(devices)))
        options: ProviderOptions = self._load["provider_options"]
        loads = [
            {
                **self._load,
                "provider": device,
                "provider_options": replace(options, intra_op_threads=threads, device=None),
                "truncate_dim": self.truncate_dim,
                "prompts": self.prompts,
                "default_prompt_name": self.default_prompt_name,
            }
            for device in devices
        ]
        return MultiProcessPool(SentenceTransformer, loads, self.max_seq_length)

    @staticmethod
    def stop_multi_process_pool(pool: MultiProcessPool) -> None:
        """Stop the workers of ``pool`` and free its queues."""
        pool.close()

    def __repr__(self) -> str:
        return self._describe(dim=self.manifest.dim)
