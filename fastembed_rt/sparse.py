"""Sparse embeddings (SPLADE) as CSR rows, and their similarity: what ``SparseEncoder.encode`` returns.

``SparseEncoder.encode`` gives:

- ``scipy.sparse.csr_array`` when scipy is installed (``sparse_format="auto"`` or ``"scipy"``);
- otherwise ``SparseEmbeddings``, a light CSR structure with the same ``indptr`` / ``indices`` /
  ``data`` / ``shape`` / ``toarray()`` names (``sparse_format="arrays"`` asks for it explicitly);
- a dense float32 numpy array with ``convert_to_sparse_tensor=False``;
- a sparse torch COO tensor with ``convert_to_sparse_tensor=True`` where the caller has imported torch.

Column indices are sorted within each row. A single text gives a 1-D result, a list a 2-D one, as
sentence-transformers returns 1-D and 2-D tensors. ``decode``, ``similarity`` and ``sparsity``
accept any of these forms, dense arrays, and torch tensors, sparse ones included (what sentence-transformers'
SparseEncoder returns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fastembed_rt import util
from fastembed_rt.errors import InputError
from fastembed_rt.similarity import SINGLE_VECTOR_NAMES, SimilarityFunction, similarity_function
from fastembed_rt.tensors import as_numpy, is_tensor, loaded_torch, tensor_out

__all__ = [
    "SparseEmbeddings",
    "SparseFormat",
    "as_rows",
    "first_row",
    "has_scipy",
    "intersection",
    "is_sparse",
    "normalize_sparse",
    "sparse_similarity",
    "sparse_similarity_pairwise",
    "sparsity",
    "torch_sparse",
]

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

    def __getitem__(self, i: int | slice) -> SparseEmbeddings:
        """Row ``i`` as a 1-D result, or the rows of a slice as a 2-D one (like ``csr_array[i]``, ``[a:b]``)."""
        if self.ndim != 2:
            raise InputError("a 1-D SparseEmbeddings has no rows to index; use .row(0) or .toarray()")
        rows = self.shape[0]
        if isinstance(i, slice):
            start, stop, step = i.indices(rows)
            if step == 1:
                return self.rows(start, max(start, stop))
            picked = [self.row(r) for r in range(start, stop, step)]
            counts = [indices.size for indices, _ in picked]
            return SparseEmbeddings(
                np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                np.concatenate([indices for indices, _ in picked] or [np.empty(0, np.int64)]),
                np.concatenate([data for _, data in picked] or [np.empty(0, np.float32)]),
                (len(picked), self.shape[1]),
            )
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"SparseEmbeddings indices are ints or slices, got {type(i).__name__}")
        if not -rows <= i < rows:
            raise IndexError(f"row {i} is out of range for {rows} rows")
        indices, data = self.row(i % rows)
        return SparseEmbeddings(np.array([0, indices.size], np.int64), indices, data, (self.shape[1],))

    def rows(self, start: int, stop: int) -> SparseEmbeddings:
        """Rows ``start:stop`` of a 2-D result, sharing this one's arrays (no copy)."""
        stop = min(stop, self.shape[0])
        first, last = int(self.indptr[start]), int(self.indptr[stop])
        return SparseEmbeddings(
            self.indptr[start : stop + 1] - first,
            self.indices[first:last],
            self.data[first:last],
            (stop - start, self.shape[1]),
        )

    def toarray(self) -> np.ndarray:
        """Dense float32 ``shape`` array."""
        rows = self.indptr.size - 1
        dense = np.zeros((rows, self.shape[-1]), dtype=np.float32)
        dense[np.repeat(np.arange(rows), np.diff(self.indptr)), self.indices] = self.data
        return dense.reshape(self.shape)

    def to_scipy(self) -> Any:
        """The same rows as a ``scipy.sparse.csr_array`` (needs scipy)."""
        try:
            import scipy.sparse
        except ImportError as exc:
            raise ImportError(f"{SCIPY_MISSING}, or keep the rows as SparseEmbeddings") from exc

        matrix = scipy.sparse.csr_array(
            (self.data, self.indices, self.indptr), shape=(self.indptr.size - 1, self.shape[-1])
        )
        return matrix if self.ndim == 2 else matrix[0].tocsr()


def is_sparse(value: Any) -> bool:
    """A ``SparseEmbeddings`` or a scipy sparse array/matrix (recognised without importing scipy)."""
    return isinstance(value, SparseEmbeddings) or (hasattr(value, "tocsr") and hasattr(value, "shape"))


def as_rows(embeddings: Any, name: str = "embeddings") -> tuple[SparseEmbeddings, bool]:
    """Any supported sparse or dense form as 2-D ``SparseEmbeddings`` rows, and whether it was 1-D."""
    if isinstance(embeddings, SparseEmbeddings):
        if embeddings.ndim == 1:
            return SparseEmbeddings(
                embeddings.indptr, embeddings.indices, embeddings.data, (1, embeddings.shape[0])
            ), True
        return embeddings, False
    # a list of rows: encode(convert_to_tensor=False)'s, ours (scipy) or sentence-transformers' (torch sparse)
    if isinstance(embeddings, list) and embeddings and all(is_sparse(e) or is_tensor(e) for e in embeddings):
        parts = [as_rows(e, name)[0] for e in embeddings]
        if len({p.shape[1] for p in parts}) > 1:
            raise InputError(f"{name} mixes widths {sorted({p.shape[1] for p in parts})}; rows of one vocabulary")
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
    if is_tensor(embeddings):
        return _tensor_rows(embeddings)
    if is_sparse(embeddings):  # scipy.sparse, without importing it
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


def _tensor_rows(tensor: Any) -> tuple[SparseEmbeddings, bool]:
    """A torch tensor (strided or sparse COO/CSR, 1-D or 2-D) as rows, without making a sparse one dense."""
    torch = loaded_torch()
    if tensor.layout == torch.strided:
        return as_rows(as_numpy(tensor))
    tensor = tensor.detach().cpu()
    if tensor.dim() not in (1, 2):
        raise InputError(f"sparse embeddings must be 1-D or 2-D, got a tensor of shape {tuple(tensor.shape)}")
    one_d = tensor.dim() == 1
    coo = (tensor.unsqueeze(0) if one_d else tensor).to_sparse_coo().coalesce()  # coalesced: sorted, no duplicates
    rows, cols = (index.numpy().astype(np.int64) for index in coo.indices())
    data = coo.values().float().numpy()
    keep = data != 0
    rows, cols, data = rows[keep], cols[keep], data[keep]
    counts = np.bincount(rows, minlength=coo.shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SparseEmbeddings(indptr, cols, data.astype(np.float32), (int(coo.shape[0]), int(coo.shape[1]))), one_d


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


@tensor_out
def sparse_similarity(
    embeddings1: Any, embeddings2: Any, similarity_fn_name: str | SimilarityFunction = SimilarityFunction.DOT
) -> np.ndarray:
    """Scores of every row of ``embeddings1`` against every row of ``embeddings2``; float32 ``[n, m]`` (a tensor where
    an input is one, as sentence-transformers gives).

    ``dot`` and ``cosine`` (rows divided by ``max(norm, 1e-12)``) run on the sparse rows; ``euclidean``
    and ``manhattan`` densify both sides and use ``fastembed_rt.util``.
    """
    function = similarity_function(similarity_fn_name, SINGLE_VECTOR_NAMES, "sparse_similarity")
    a, _ = as_rows(embeddings1, "embeddings1")
    b, _ = as_rows(embeddings2, "embeddings2")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"embeddings1 has {a.shape[1]} dimensions but embeddings2 has {b.shape[1]}; they must match")
    if function is SimilarityFunction.EUCLIDEAN:
        return util.euclidean_sim(a.toarray(), b.toarray())
    if function is SimilarityFunction.MANHATTAN:
        return util.manhattan_sim(a.toarray(), b.toarray())
    scores = _dot(a, b)
    if function is SimilarityFunction.COSINE:
        scores /= np.maximum(_norms(a), _NORM_EPS)[:, None] * np.maximum(_norms(b), _NORM_EPS)[None, :]
    return scores.astype(np.float32)


@tensor_out
def sparse_similarity_pairwise(
    embeddings1: Any, embeddings2: Any, similarity_fn_name: str | SimilarityFunction = SimilarityFunction.DOT
) -> np.ndarray:
    """Scores of row i of ``embeddings1`` against row i of ``embeddings2``; float32 ``[n]``."""
    a, _ = as_rows(embeddings1, "embeddings1")
    b, _ = as_rows(embeddings2, "embeddings2")
    if len(a) != len(b):
        raise InputError(f"pairwise scores need as many rows on both sides; got {len(a)} and {len(b)}")
    return np.array([sparse_similarity(a[i], b[i], similarity_fn_name)[0, 0] for i in range(len(a))], dtype=np.float32)


def normalize_sparse(embeddings: Any) -> Any:
    """Rows divided by their L2 norm (rows of norm 0 unchanged), in the input's own sparse type."""
    rows, one_d = as_rows(embeddings)
    norms = _norms(rows)
    scale = np.where(norms > 0, norms, 1.0)[_row_ids(rows)]
    data = (rows.data.astype(np.float64) / scale).astype(np.float32)
    normalized = SparseEmbeddings(rows.indptr, rows.indices, data, rows.shape)
    if is_tensor(embeddings):  # a sparse torch tensor stays one (as_numpy would have made it dense)
        return torch_sparse(normalized, one_d, embeddings.device)
    if one_d:
        normalized = normalized[0]
    return normalized if isinstance(embeddings, SparseEmbeddings) else normalized.to_scipy()


def torch_sparse(rows: SparseEmbeddings, one_d: bool = False, device: Any = "cpu") -> Any:
    """``rows`` as a coalesced sparse COO tensor on ``device`` (``[dim]`` when ``one_d``)."""
    torch = loaded_torch()
    cols = torch.from_numpy(rows.indices.astype(np.int64))
    values = torch.from_numpy(rows.data.astype(np.float32))
    # invariants checked (O(nnz)): said explicitly, as torch asks, or it warns on each tensor made
    if one_d:
        tensor = torch.sparse_coo_tensor(cols.unsqueeze(0), values, (rows.shape[1],), check_invariants=True)
    else:
        indices = torch.stack([torch.from_numpy(_row_ids(rows).astype(np.int64)), cols])
        tensor = torch.sparse_coo_tensor(indices, values, rows.shape, check_invariants=True)
    return tensor.coalesce().to(device)


def intersection(embeddings_1: Any, embeddings_2: Any) -> Any:
    """The active dimensions one embedding shares with each of ``embeddings_2``: the two weights multiplied, kept where
    the product is positive (sentence-transformers' ``SparseEncoder.intersection``; for SPLADE, where both are active).

    Args:
        embeddings_1: one embedding (1-D), in any form ``SparseEncoder.encode`` returns or a dense numpy row.
        embeddings_2: one embedding (1-D) or several (2-D) of the same vocabulary.
    Returns:
        ``embeddings_2``'s shape and type (``SparseEmbeddings``, a scipy sparse array, a torch sparse tensor for any
        torch tensor, or dense numpy), float32.
    """
    first, one_d = as_rows(embeddings_1, "embeddings_1")
    if not one_d:
        raise InputError(f"embeddings_1 must be one 1-D embedding, got shape {first.shape}")
    rows, rows_one_d = as_rows(embeddings_2, "embeddings_2")
    if first.shape[1] != rows.shape[1]:
        raise InputError(
            f"vocabularies differ: embeddings_1 has {first.shape[1]} dimensions, embeddings_2 {rows.shape[1]}"
        )
    weights = np.zeros(first.shape[1], dtype=np.float32)
    indices, data = first.row(0)
    weights[indices] = data
    product = rows.data * weights[rows.indices]
    keep = product > 0
    counts = np.bincount(_row_ids(rows)[keep], minlength=len(rows))
    shared = SparseEmbeddings(
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows.indices[keep], product[keep], rows.shape
    )
    if isinstance(embeddings_2, list) and embeddings_2:  # rows: the result as one 2-D value of the rows' kind
        embeddings_2 = embeddings_2[0]
    if is_tensor(embeddings_2):  # a torch sparse tensor, as sentence-transformers returns for its own
        return torch_sparse(shared, rows_one_d)
    if rows_one_d:
        shared = shared[0]
    if isinstance(embeddings_2, SparseEmbeddings):
        return shared
    return shared.to_scipy() if is_sparse(embeddings_2) else shared.toarray()


def sparsity(embeddings: Any) -> dict[str, float]:
    """Mean active (non-zero) dimensions per embedding and the mean share of inactive ones.

    Returns:
        ``{"active_dims": float, "sparsity_ratio": float}``; ``{0.0, 1.0}`` for no embeddings.
    """
    rows, _ = as_rows(embeddings)
    if len(rows) == 0 or rows.shape[1] == 0:
        return {"active_dims": 0.0, "sparsity_ratio": 1.0}
    active = float(np.mean(np.bincount(_row_ids(rows)[rows.data != 0], minlength=len(rows))))
    return {"active_dims": active, "sparsity_ratio": 1.0 - active / rows.shape[1]}


SCIPY_MISSING = "scipy's sparse arrays need scipy, which is not installed: pip install scipy"


def has_scipy() -> bool:
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        return False
    return True


def first_row(result: Any, i: int = 0) -> Any:
    """Row ``i`` of a 2-D sparse result as a 1-D one, in the result's own type."""
    if isinstance(result, SparseEmbeddings):
        return result[i]
    return result[i].tocsr()
