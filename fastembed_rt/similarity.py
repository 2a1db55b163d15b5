"""``SimilarityFunction``: how two embeddings are scored, as in ``sentence_transformers.SimilarityFunction``.

Dense embeddings are scored by ``fastembed_rt.util``'s functions; sparse ones by
``fastembed_rt.sparse.sparse_similarity``, which takes the same names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, overload

import numpy as np

from fastembed_rt import util
from fastembed_rt.errors import InputError

__all__ = [
    "SINGLE_VECTOR_NAMES",
    "SimilarityFnName",
    "SimilarityFunction",
    "dense_similarity",
    "similarity_function",
]


class SimilarityFunction(str, enum.Enum):
    COSINE = "cosine"
    DOT = "dot"
    DOT_PRODUCT = "dot"  # sentence-transformers' main name for it; an alias of DOT here
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"
    MAXSIM = "maxsim"  # late interaction: MultiVectorEncoder's, as in sentence-transformers
    MEAN_MAXSIM = "meanmaxsim"

    @staticmethod
    def possible_values() -> list[str]:
        """The names, as sentence-transformers lists them (the ``maxsim`` ones score ``MultiVectorEncoder`` output)."""
        return [function.value for function in SimilarityFunction]

    @staticmethod
    def to_similarity_fn(name: str | enum.Enum) -> Callable[[Any, Any], Any]:
        """The ``util`` function scoring every pair of two sets of embeddings by ``name``."""
        return dense_similarity(similarity_function(name))

    @staticmethod
    def to_similarity_pairwise_fn(name: str | enum.Enum) -> Callable[[Any, Any], Any]:
        """The ``util`` function scoring the i-th embeddings of two sets by ``name``."""
        return dense_similarity(similarity_function(name), pairwise=True)


#: The names that score one vector per text (SentenceTransformer's and SparseEncoder's ``similarity_fn_name``).
SINGLE_VECTOR_NAMES: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")


def similarity_function(
    name: str | enum.Enum, supported: tuple[str, ...] | None = None, owner: str = "this model"
) -> SimilarityFunction:
    """``name`` (or one of sentence-transformers' aliases, or a member of its ``SimilarityFunction``) as a
    ``SimilarityFunction``, or an ``InputError``; one outside ``supported`` (when given) is refused for ``owner``."""
    aliases = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot", "mean_maxsim": "meanmaxsim"}
    key = str(name.value) if isinstance(name, enum.Enum) else str(name)
    try:
        function = SimilarityFunction(aliases.get(key, key))
    except ValueError:
        valid = ", ".join(supported or [f.value for f in SimilarityFunction])
        raise InputError(f"similarity_fn_name {name!r} is not known; valid: {valid}") from None
    if supported is not None and function.value not in supported:
        hint = (
            "; MaxSim scores token vectors: use MultiVectorEncoder" if function.value not in SINGLE_VECTOR_NAMES else ""
        )
        raise InputError(f"{owner} supports similarity_fn_name in {supported}, got {function.value!r}{hint}")
    return function


class SimilarityFnName:
    """A model's ``similarity_fn_name`` attribute: set by name, alias or ``SimilarityFunction`` and checked at once (an
    unknown name is an ``InputError`` there, not at the next ``similarity`` call nor in a saved copy); None is
    cosine, as in sentence-transformers. Read, it is the name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    @overload
    def __get__(self, model: None, owner: type | None = None) -> SimilarityFnName: ...
    @overload
    def __get__(self, model: object, owner: type | None = None) -> str: ...
    def __get__(self, model: object, owner: type | None = None) -> str | SimilarityFnName:
        if model is None:  # read on the class (help(), inspect, hasattr): the attribute itself, as a property is
            return self
        return str(getattr(model, self._slot))

    def __set__(self, model: object, value: str | SimilarityFunction | None) -> None:
        supported = getattr(type(model), "SUPPORTED_SIMILARITY_FN_NAMES", SINGLE_VECTOR_NAMES)
        function = similarity_function(
            SimilarityFunction.COSINE if value is None else value, supported, type(model).__name__
        )
        setattr(model, self._slot, function.value)


_DENSE: dict[SimilarityFunction, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    SimilarityFunction.COSINE: (util.cos_sim, util.pairwise_cos_sim),
    SimilarityFunction.DOT: (util.dot_score, util.pairwise_dot_score),
    SimilarityFunction.EUCLIDEAN: (util.euclidean_sim, util.pairwise_euclidean_sim),
    SimilarityFunction.MANHATTAN: (util.manhattan_sim, util.pairwise_manhattan_sim),
    SimilarityFunction.MAXSIM: (util.maxsim, util.maxsim_pairwise),
    SimilarityFunction.MEAN_MAXSIM: (util.mean_maxsim, util.mean_maxsim_pairwise),
}


def dense_similarity(function: SimilarityFunction, *, pairwise: bool = False) -> Callable[..., np.ndarray]:
    """The ``util`` function scoring dense embeddings with ``function``: ``[n, m]``, or ``[n]`` when ``pairwise``
    (the MaxSim ones take token matrices and their masks, as ``util.maxsim``)."""
    return _DENSE[function][1 if pairwise else 0]
