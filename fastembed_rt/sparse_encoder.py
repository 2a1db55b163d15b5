"""``SparseEncoder``: SPLADE sparse embeddings from an exported masked-LM artifact. No torch.

The graph pools ``log(1 + relu(logits))`` over each text's tokens and keeps the top
``max_active_dims`` dimensions itself, so only ``(indices, values)`` of the active dimensions leave
the session. ``encode`` returns them as CSR rows:

- ``scipy.sparse.csr_array`` when scipy is installed (``sparse_format="auto"`` or ``"scipy"``);
- otherwise ``SparseEmbeddings``, a light CSR structure with the same ``indptr`` / ``indices`` /
  ``data`` / ``shape`` / ``toarray()`` names (``sparse_format="arrays"`` asks for it explicitly);
- a dense float32 numpy array with ``convert_to_sparse_tensor=False``.

Column indices are sorted within each row. A single text gives a 1-D result, a list a 2-D one, as
sentence-transformers returns 1-D and 2-D tensors. ``decode``, ``similarity`` and ``sparsity``
accept any of these forms (and dense arrays).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fastembed_rt import util
from fastembed_rt.cross_encoder import ArtifactModel
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels.heads import SpladeSpec
from fastembed_rt.pipeline import check_texts

__all__ = ["SparseEmbeddings", "SparseEncoder", "sparse_similarity"]

MAX_ACTIVE_DIMS = "max_active_dims"
SPARSE_INDICES = "sparse_indices"
SPARSE_VALUES = "sparse_values"

# The graph holds a [batch, seq, vocab] float32 logits tensor (and its masked copy): cap it at
# 256 MiB per batch, 2,198 padded tokens for a 30,522-token vocabulary.
_LOGITS_BYTES_PER_BATCH = 256 << 20
_SIMILARITY = ("dot", "cosine", "euclidean", "manhattan")
_NORM_EPS = 1e-12

SparseFormat = Literal["auto", "scipy", "arrays"]


@dataclass(frozen=True)
class SparseEmbeddings:
    """Sparse rows in CSR layout, for when scipy is not installed.

    Row ``i`` has active dimensions ``indices[indptr[i]:indptr[i + 1]]`` (int64, ascending) with
    weights ``data[indptr[i]:indptr[i + 1]]`` (float32). ``shape`` is ``(rows, vocab_size)``, or
    ``(vocab_size,)`` for the single row of a 1-D result (then ``indptr`` is ``[0, nnz]``).
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return self.shape[0]

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, weights)`` of row ``i``."""
        start, end = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[start:end], self.data[start:end]

    def __getitem__(self, i: int) -> SparseEmbeddings:
        """Row ``i`` as a 1-D result (like ``csr_array[i]``)."""
        if self.ndim != 2:
            raise InputError("a 1-D SparseEmbeddings has no rows to index; use .row(0) or .toarray()")
        rows = self.shape[0]
        if not -rows <= i < rows:
            raise IndexError(f"row {i} is out of range for {rows} rows")
        indices, data = self.row(i % rows)
        return SparseEmbeddings(np.array([0, indices.size], np.int64), indices, data, (self.shape[1],))

    def toarray(self) -> np.ndarray:
        """Dense float32 ``shape`` array."""
        rows = self.indptr.size - 1
        dense = np.zeros((rows, self.shape[-1]), dtype=np.float32)
        dense[np.repeat(np.arange(rows), np.diff(self.indptr)), self.indices] = self.data
        return dense.reshape(self.shape)

    def to_scipy(self) -> Any:
        """The same rows as a ``scipy.sparse.csr_array`` (needs scipy)."""
        import scipy.sparse

        matrix = scipy.sparse.csr_array(
            (self.data, self.indices, self.indptr), shape=(self.indptr.size - 1, self.shape[-1])
        )
        return matrix if self.ndim == 2 else matrix[0].tocsr()


def _is_sparse(value: Any) -> bool:
    """A ``SparseEmbeddings`` or a scipy sparse array/matrix (recognised without importing scipy)."""
    return isinstance(value, SparseEmbeddings) or (hasattr(value, "tocsr") and hasattr(value, "shape"))


def _rows(embeddings: Any, name: str = "embeddings") -> tuple[SparseEmbeddings, bool]:
    """Any supported sparse or dense form as 2-D ``SparseEmbeddings`` rows, and whether it was 1-D."""
    if isinstance(embeddings, SparseEmbeddings):
        if embeddings.ndim == 1:
            return SparseEmbeddings(
                embeddings.indptr, embeddings.indices, embeddings.data, (1, embeddings.shape[0])
            ), True
        return embeddings, False
    if isinstance(embeddings, list) and embeddings and all(_is_sparse(e) for e in embeddings):
        parts = [_rows(e, name)[0] for e in embeddings]
        counts = np.concatenate([np.diff(p.indptr) for p in parts])
        return (
            SparseEmbeddings(
                np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                np.concatenate([p.indices for p in parts]),
                np.concatenate([p.data for p in parts]),
                (int(counts.size), parts[0].shape[1]),
            ),
            False,
        )
    if _is_sparse(embeddings):  # scipy.sparse, without importing it
        one_d = len(embeddings.shape) == 1
        matrix = (embeddings.reshape((1, embeddings.shape[0])) if one_d else embeddings).tocsr().copy()
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return (
            SparseEmbeddings(
                np.asarray(matrix.indptr, np.int64),
                np.asarray(matrix.indices, np.int64),
                np.asarray(matrix.data, np.float32),
                (int(matrix.shape[0]), int(matrix.shape[1])),
            ),
            one_d,
        )
    try:
        dense = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be sparse embeddings, a scipy sparse array or a numpy array: {exc}") from None
    if dense.ndim not in (1, 2):
        raise InputError(f"{name} must be 1-D or 2-D, got shape {dense.shape}")
    one_d = dense.ndim == 1
    dense = dense.reshape(1, -1) if one_d else dense
    rows, cols = np.nonzero(dense)
    counts = np.bincount(rows, minlength=dense.shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SparseEmbeddings(indptr, cols.astype(np.int64), dense[rows, cols], dense.shape), one_d


def _row_ids(rows: SparseEmbeddings) -> np.ndarray:
    return np.repeat(np.arange(rows.indptr.size - 1), np.diff(rows.indptr))


def _dot(a: SparseEmbeddings, b: SparseEmbeddings) -> np.ndarray:
    """``a @ b.T`` in float64: each row of ``a`` scattered dense once, gathered at ``b``'s nonzeros."""
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    b_rows = _row_ids(b)
    query = np.zeros(a.shape[1], dtype=np.float64)
    for i in range(len(a)):
        indices, data = a.row(i)
        if not indices.size:
            continue
        query[indices] = data
        out[i] = np.bincount(b_rows, weights=query[b.indices] * b.data, minlength=len(b))
        query[indices] = 0.0
    return out


def _norms(rows: SparseEmbeddings) -> np.ndarray:
    return np.sqrt(np.bincount(_row_ids(rows), weights=rows.data.astype(np.float64) ** 2, minlength=len(rows)))


def sparse_similarity(embeddings1: Any, embeddings2: Any, similarity_fn_name: str = "dot") -> np.ndarray:
    """Scores of every row of ``embeddings1`` against every row of ``embeddings2``; float32 ``[n, m]``.

    ``dot`` and ``cosine`` (rows divided by ``max(norm, 1e-12)``) run on the sparse rows; ``euclidean``
    and ``manhattan`` densify both sides and use ``fastembed_rt.util``.
    """
    if similarity_fn_name not in _SIMILARITY:
        raise InputError(f"similarity_fn_name {similarity_fn_name!r} is not known; valid: {', '.join(_SIMILARITY)}")
    a, _ = _rows(embeddings1, "embeddings1")
    b, _ = _rows(embeddings2, "embeddings2")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"embeddings1 has {a.shape[1]} dimensions but embeddings2 has {b.shape[1]}; they must match")
    if similarity_fn_name == "euclidean":
        return util.euclidean_sim(a.toarray(), b.toarray())
    if similarity_fn_name == "manhattan":
        return util.manhattan_sim(a.toarray(), b.toarray())
    scores = _dot(a, b)
    if similarity_fn_name == "cosine":
        scores /= np.maximum(_norms(a), _NORM_EPS)[:, None] * np.maximum(_norms(b), _NORM_EPS)[None, :]
    return scores.astype(np.float32)


class SparseEncoder(ArtifactModel):
    """SPLADE sparse embeddings with an exported artifact, the way ``sentence_transformers.SparseEncoder`` does.

    Args:
        model_name_or_path: an artifact directory (task ``sparse``), or a hub repo id holding one.
        provider: execution provider name (``"auto"`` picks the best available).
        variant: variant name from the manifest (``"auto"``: the portable fp32 graph).
        max_active_dims: default top-k per text (None: the model's, else every active dimension).
        similarity_fn_name: ``dot`` (SPLADE's), ``cosine``, ``euclidean`` or ``manhattan``; None: the model's.
        verify: ``"size"`` (cheap, default) or ``"full"`` (sha256) check of the graph file.
        intra_op_threads: CPU threads; default: the CPUs this process may use.
    """

    task = "sparse"

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        provider: str = "auto",
        variant: str = "auto",
        max_active_dims: int | None = None,
        similarity_fn_name: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        verify: Literal["size", "full"] = "size",
        intra_op_threads: int | None = None,
    ) -> None:
        super().__init__(
            model_name_or_path,
            provider=provider,
            variant=variant,
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            verify=verify,
            intra_op_threads=intra_op_threads,
        )
        try:
            self.spec = SpladeSpec.from_dict(self.manifest.stages["splade"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{self.manifest.root}: manifest stages have no valid 'splade' head ({exc!r}); re-create the artifact "
                "with `fastembed-rt export MODEL OUT_DIR --task sparse`"
            ) from None
        self._pipeline.per_call_inputs = self._pipeline.per_call_inputs | {MAX_ACTIVE_DIMS}
        self._pipeline.token_budget = max(1, _LOGITS_BYTES_PER_BATCH // (4 * self.spec.vocab_size))
        self.max_active_dims = self._check_k(self.spec.max_active_dims if max_active_dims is None else max_active_dims)
        self.similarity_fn_name = similarity_fn_name or self.manifest.similarity_fn
        if self.similarity_fn_name not in _SIMILARITY:
            raise InputError(
                f"similarity_fn_name {self.similarity_fn_name!r} is not known; valid: {', '.join(_SIMILARITY)}"
            )
        self._vocab: list[str] | None = None

    @staticmethod
    def _check_k(k: int | None) -> int | None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0):
            raise InputError(f"max_active_dims must be None or a positive int, got {k!r}")
        return None if k is None else int(k)

    def get_embedding_dimension(self) -> int:
        """The vocabulary size: the width of every embedding."""
        return self.spec.vocab_size

    # -- encoding -------------------------------------------------------------------------------
    def _encode_rows(
        self, texts: list[str], prompt: str | None, batch_size: int, k: int, show_progress_bar: bool
    ) -> SparseEmbeddings:
        vocab = self.spec.vocab_size
        row_indices: list[np.ndarray] = [np.empty(0, np.int64)] * len(texts)
        row_values: list[np.ndarray] = [np.empty(0, np.float32)] * len(texts)
        feeds = {MAX_ACTIVE_DIMS: np.array([k], dtype=np.int64)}
        for rows, result, _ in self._pipeline.run_batches(
            texts,
            prompt=prompt or None,
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
        counts = np.fromiter((r.size for r in row_indices), dtype=np.int64, count=len(texts))
        return SparseEmbeddings(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate(row_indices).astype(np.int64) if texts else np.empty(0, np.int64),
            np.concatenate(row_values).astype(np.float32) if texts else np.empty(0, np.float32),
            (len(texts), vocab),
        )

    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = True,
        convert_to_sparse_tensor: bool = True,
        max_active_dims: int | None = None,
        sparse_format: SparseFormat = "auto",
    ) -> Any:
        """Sparse SPLADE embeddings of ``sentences``.

        Args:
            sentences: a str or a list of str.
            prompt_name / prompt: prepended to every text.
            batch_size: most texts per batch (batches are also cut by a padded-token budget).
            convert_to_tensor: False gives a list of per-text rows instead of one stacked result.
            convert_to_sparse_tensor: False gives dense float32 numpy ``[n, vocab_size]`` rows.
            max_active_dims: keep the k largest weights per text (None: ``self.max_active_dims``).
            sparse_format: ``"auto"`` (scipy ``csr_array`` when scipy is installed, else
                ``SparseEmbeddings``), ``"scipy"`` or ``"arrays"`` (``SparseEmbeddings``).
        Returns:
            ``[n, vocab_size]`` rows (see the module docstring for the types); 1-D for a single str.
        """
        if sparse_format not in ("auto", "scipy", "arrays"):
            raise InputError(f"sparse_format {sparse_format!r} is not known; valid: 'auto', 'scipy', 'arrays'")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        k = self._check_k(max_active_dims) or self.max_active_dims or self.spec.vocab_size
        resolved = self._resolve_prompt(prompt, prompt_name)
        rows = self._encode_rows(texts, resolved, batch_size, k, bool(show_progress_bar))
        if not convert_to_sparse_tensor:
            dense = rows.toarray()
            if single:
                return dense[0]
            return dense if convert_to_tensor else list(dense)
        result: Any = rows
        if sparse_format == "scipy" or (sparse_format == "auto" and _has_scipy()):
            result = rows.to_scipy()
        if single:
            return _first_row(result)
        return result if convert_to_tensor else [_first_row(result, i) for i in range(len(texts))]

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` with the ``query`` prompt when the model defines one."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` with the ``document`` (or ``passage``/``corpus``) prompt when the model defines one."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    # -- scores and inspection ------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n, m]`` scores with the model's similarity function (``dot`` for SPLADE)."""
        return sparse_similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """float32 ``[n]`` scores of row i against row i."""
        a, _ = _rows(embeddings1, "embeddings1")
        b, _ = _rows(embeddings2, "embeddings2")
        if len(a) != len(b):
            raise InputError(f"pairwise scores need as many rows on both sides; got {len(a)} and {len(b)}")
        return np.array(
            [sparse_similarity(a[i], b[i], self.similarity_fn_name)[0, 0] for i in range(len(a))], dtype=np.float32
        )

    def _token(self, token_id: int) -> str:
        if self._vocab is None:
            backend = self._tokenizer.backend
            self._vocab = [backend.id_to_token(i) or "" for i in range(self.spec.vocab_size)]  # type: ignore[attr-defined]
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
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
            raise InputError(f"top_k must be None or a positive int, got {top_k!r}")
        rows, one_d = _rows(embeddings)
        decoded: list[list[tuple[str, float]]] = []
        for i in range(len(rows)):
            indices, data = rows.row(i)
            order = np.lexsort((indices, -data))[:top_k]
            decoded.append([(self._token(int(t)), float(w)) for t, w in zip(indices[order], data[order])])
        return decoded[0] if one_d else decoded

    @staticmethod
    def sparsity(embeddings: Any) -> dict[str, float]:
        """Mean active (non-zero) dimensions per embedding and the mean share of inactive ones.

        Returns:
            ``{"active_dims": float, "sparsity_ratio": float}``; ``{0.0, 1.0}`` for no embeddings.
        """
        rows, _ = _rows(embeddings)
        if len(rows) == 0 or rows.shape[1] == 0:
            return {"active_dims": 0.0, "sparsity_ratio": 1.0}
        active = float(np.mean(np.bincount(_row_ids(rows)[rows.data != 0], minlength=len(rows))))
        return {"active_dims": active, "sparsity_ratio": 1.0 - active / rows.shape[1]}

    def __repr__(self) -> str:
        return (
            f"SparseEncoder({str(self.manifest.root)!r}, provider={self.provider!r}, variant={self.variant!r}, "
            f"vocab_size={self.spec.vocab_size}, max_active_dims={self.max_active_dims}, "
            f"max_seq_length={self.max_seq_length})"
        )


def _has_scipy() -> bool:
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        return False
    return True


def _first_row(result: Any, i: int = 0) -> Any:
    """Row ``i`` of a 2-D sparse result as a 1-D one, in the result's own type."""
    if isinstance(result, SparseEmbeddings):
        return result[i]
    return result[i].tocsr()
