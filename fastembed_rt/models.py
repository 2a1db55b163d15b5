"""The sentence-transformers-shaped API over a fastembed-rt artifact. Numpy out; no torch."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastembed_rt import util
from fastembed_rt.artifact import load_manifest, resolve_artifact
from fastembed_rt.calibration import Calibration
from fastembed_rt.errors import ArtifactError, InputError, ProviderError
from fastembed_rt.kernels.spec import NORMALIZE_OUTPUT, OUTPUT_DIM, QUANTIZE_RANGES, Precision
from fastembed_rt.pipeline import EncodeStats, Pipeline, check_texts
from fastembed_rt.pool import MultiProcessPool
from fastembed_rt.providers import ExecutionProvider, ProviderOptions, open_graph, pool_devices
from fastembed_rt.providers.threads import available_cpus
from fastembed_rt.quantization import quantize_embeddings
from fastembed_rt.tokenizer import Tokenizer

__all__ = ["SentenceTransformer", "SimilarityFunction"]


class SimilarityFunction(str, enum.Enum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"


_SIMILARITY = {
    SimilarityFunction.COSINE: (util.cos_sim, util.pairwise_cos_sim),
    SimilarityFunction.DOT: (util.dot_score, util.pairwise_dot_score),
    SimilarityFunction.EUCLIDEAN: (util.euclidean_sim, util.pairwise_euclidean_sim),
    SimilarityFunction.MANHATTAN: (util.manhattan_sim, util.pairwise_manhattan_sim),
}


def _similarity_function(name: str) -> SimilarityFunction:
    aliases = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot"}
    try:
        return SimilarityFunction(aliases.get(name, name))
    except ValueError:
        valid = ", ".join(f.value for f in SimilarityFunction)
        raise InputError(f"similarity_fn_name {name!r} is not known; valid: {valid}") from None


class SentenceTransformer:
    """Encode texts with an exported artifact, the way ``sentence_transformers.SentenceTransformer`` does.

    Args:
        model_name_or_path: an artifact directory, or a hub repo id holding one.
        provider: ``"auto"`` (cuda if usable, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"tensorrt"``, ``"openvino"``, ``"openvino:GPU"``, or an engine instance such as
            ``providers.fake.FakeProvider``. A provider that cannot run here raises ``ProviderError``.
        variant: variant name from the manifest; ``"auto"``: the provider's first preferred variant
            present (cpu: optimized, then fp32; cuda: fp16, then fp32; openvino: the OpenVINO IR, then fp32).
        truncate_dim: default Matryoshka dimension for ``encode``.
        prompts / default_prompt_name: override the artifact's prompts.
        verify: ``"size"`` (cheap, default) or ``"full"`` (sha256) check of the graph file.
        intra_op_threads: CPU threads; default: the CPUs this process may use (affinity and
            cgroup quota), not the host's core count.
        allow_fallback: accept an engine that runs elsewhere than asked (e.g. CUDA → CPU) instead
            of raising ``ProviderError``; ``provider`` then says what runs.
        provider_options: further engine knobs (inter-op threads, spinning, device, engine-specific
            options); the arguments above override its fields.
        provider_cache_dir: where OpenVINO compiled models and TensorRT engines are cached
            (default ``$FASTEMBED_RT_CACHE`` or ``~/.cache/fastembed-rt``).
        warmup: run one short batch at load so the first real call does not pay for first-run setup.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        provider: str | ExecutionProvider = "auto",
        variant: str = "auto",
        truncate_dim: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        verify: Literal["size", "full"] = "size",
        intra_op_threads: int | None = None,
        allow_fallback: bool = False,
        provider_options: ProviderOptions | None = None,
        provider_cache_dir: str | os.PathLike[str] | None = None,
        warmup: bool = False,
    ) -> None:
        root = resolve_artifact(model_name_or_path, revision=revision, cache_dir=cache_dir, token=token)
        self.manifest = load_manifest(root)
        if self.manifest.task != "embedding":
            raise ArtifactError(
                f"{root} holds a {self.manifest.task!r} model; SentenceTransformer loads 'embedding' artifacts"
            )
        options = provider_options or ProviderOptions()
        if intra_op_threads is not None:
            options = replace(options, intra_op_threads=intra_op_threads)
        if allow_fallback:
            options = replace(options, allow_fallback=True)
        if provider_cache_dir is not None:
            options = replace(options, cache_dir=Path(provider_cache_dir))
        engine, chosen = open_graph(self.manifest, provider, variant, options, verify_full=verify == "full")
        self.variant = chosen.name
        self._tokenizer = Tokenizer(root, self.manifest.tokenizer)
        self._pipeline = Pipeline(self.manifest, self._tokenizer, engine)
        self.provider = engine.name
        self._load: dict[str, Any] = {
            "model_name_or_path": root,
            "provider": provider,
            "variant": variant,
            "verify": verify,
            "provider_options": options,
        }
        self.prompts: dict[str, str] = dict(self.manifest.tokenizer.prompts if prompts is None else prompts)
        self.default_prompt_name = default_prompt_name or self.manifest.tokenizer.default_prompt_name
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise InputError(
                f"default_prompt_name {self.default_prompt_name!r} is not in prompts {sorted(self.prompts)}"
            )
        self.truncate_dim = truncate_dim
        self._calibration: Calibration | None = None
        self.similarity_fn_name = _similarity_function(self.manifest.similarity_fn).value
        if warmup:
            self._pipeline.embed(["warm-up"], prompt=None, batch_size=1)
            self._pipeline.last_stats = EncodeStats()

    # -- properties sentence-transformers users reach for ---------------------------------------
    @property
    def max_seq_length(self) -> int:
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise InputError(f"max_seq_length must be a positive int, got {value!r}")
        self._tokenizer.max_seq_length = value

    @property
    def tokenizer(self) -> Any:
        """The Rust ``tokenizers.Tokenizer`` in use."""
        return self._tokenizer.backend

    @property
    def last_encode_stats(self) -> EncodeStats:
        """Texts, truncated texts, batches, padding and per-stage seconds of the most recent encode call."""
        return self._pipeline.last_stats

    def get_sentence_embedding_dimension(self) -> int:
        return self.truncate_dim or self.manifest.dim

    def get_max_seq_length(self) -> int:
        return self.max_seq_length

    # -- encoding -------------------------------------------------------------------------------
    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise InputError(
                    f"prompt_name {prompt_name!r} is not in this model's prompts; available: {sorted(self.prompts)}"
                )
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    def tokenize(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Padded model inputs for ``texts`` (``input_ids``, ``attention_mask``, ...), int64."""
        items = check_texts(texts)
        encoded = self._tokenizer.encode(items)
        feeds = self._pipeline._feeds(encoded.ids, encoded.type_ids, 0)
        return {name: value for name, value in feeds.items() if name not in self._pipeline.per_call_inputs}

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
        if convert_to_tensor:
            raise InputError("convert_to_tensor=True needs torch; fastembed-rt returns numpy arrays")
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
        try:
            wanted = Precision(precision)
        except ValueError:
            valid = ", ".join(repr(p.value) for p in Precision)
            raise InputError(f"precision {precision!r} is not supported; valid: {valid}") from None
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        dim_limit = truncate_dim if truncate_dim is not None else self.truncate_dim
        if dim_limit is not None and not (isinstance(dim_limit, int) and 0 < dim_limit <= self.manifest.dim):
            raise InputError(f"truncate_dim must be an int in 1..{self.manifest.dim}, got {dim_limit!r}")
        resolved_prompt = self._resolve_prompt(prompt, prompt_name)
        show = bool(show_progress_bar)
        if output_value == "token_embeddings":
            tokens = self._pipeline.token_embeddings(
                texts, prompt=resolved_prompt, batch_size=batch_size, show_progress_bar=show
            )
            return tokens[0] if single else tokens
        if output_value != "sentence_embedding":
            raise InputError(
                f"output_value {output_value!r} is not supported; valid: 'sentence_embedding', 'token_embeddings'"
            )
        output_dim = dim_limit if dim_limit is not None else self.manifest.dim
        if wanted is not Precision.FLOAT32 or output_dim < self.manifest.dim:
            embeddings = self._encode_in_graph(
                texts, resolved_prompt, batch_size, show, wanted, output_dim, normalize_embeddings
            )
        else:
            embeddings = (
                self._pipeline.embed(texts, prompt=resolved_prompt, batch_size=batch_size, show_progress_bar=show)
                if texts
                else np.empty((0, self.manifest.dim), dtype=np.float32)
            )
            if normalize_embeddings:
                norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
                embeddings = np.ascontiguousarray(embeddings / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)
        if single:
            return embeddings[0]
        if not convert_to_numpy:
            return list(embeddings)
        return embeddings

    def _encode_in_graph(
        self,
        texts: list[str],
        prompt: str | None,
        batch_size: int,
        show_progress_bar: bool,
        precision: Precision,
        output_dim: int,
        normalize_embeddings: bool,
    ) -> np.ndarray:
        """Matryoshka truncation and quantization computed by the graph's precision stage."""
        if QUANTIZE_RANGES not in self.manifest.graph.inputs:
            raise ArtifactError(
                f"{self.manifest.root} was exported without the in-graph precision stage; "
                "re-export it with this fastembed-rt to use precision= or truncate_dim="
            )
        # A normalizing model's truncated output is re-normalized (Matryoshka); otherwise only on request.
        normalize_output = normalize_embeddings or (self.manifest.normalizes and output_dim < self.manifest.dim)
        if precision in (Precision.INT8, Precision.UINT8):
            if self._calibration is None:
                self._calibration = Calibration(self.manifest)
            ranges = self._calibration.ranges(output_dim, normalize_output)
        else:
            ranges = np.zeros((2, output_dim), dtype=np.float32)  # read only by the int8/uint8 outputs
        if not texts:
            return quantize_embeddings(np.empty((0, output_dim), np.float32), precision, ranges=ranges)
        return self._pipeline.embed(
            texts,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            output_name=precision.output_name,
            extra_feeds={
                OUTPUT_DIM: np.array([output_dim], dtype=np.int64),
                NORMALIZE_OUTPUT: np.array([normalize_output], dtype=bool),
                QUANTIZE_RANGES: ranges,
            },
        )

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        """``encode`` with the ``query`` prompt when the model defines one."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        """``encode`` with the ``document`` (or ``passage``/``corpus``) prompt when the model defines one."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    # -- similarity -----------------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n, m]`` scores with the model's similarity function."""
        return _SIMILARITY[SimilarityFunction(self.similarity_fn_name)][0](embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n]`` scores of row i against row i."""
        return _SIMILARITY[SimilarityFunction(self.similarity_fn_name)][1](embeddings1, embeddings2)

    def set_similarity_fn(self, name: str) -> None:
        self.similarity_fn_name = _similarity_function(name).value

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
        return MultiProcessPool(loads, self.max_seq_length)

    @staticmethod
    def stop_multi_process_pool(pool: MultiProcessPool) -> None:
        """Stop the workers of ``pool`` and free its queues."""
        pool.close()

    def close(self) -> None:
        self._pipeline.provider.close()

    def __repr__(self) -> str:
        return (
            f"SentenceTransformer({str(self.manifest.root)!r}, provider={self.provider!r}, "
            f"variant={self.variant!r}, dim={self.manifest.dim}, max_seq_length={self.max_seq_length})"
        )
