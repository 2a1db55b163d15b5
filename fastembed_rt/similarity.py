"""``SimilarityFunction``: how two embeddings are scored, as in ``sentence_transformers.SimilarityFunction``.

Dense embeddings are scored by ``fastembed_rt.util``'s functions; sparse ones by
``fastembed_rt.sparse.sparse_similarity``, which takes the same names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np

from fastembed_rt import util
from fastembed_rt.errors import InputError

__all__ = ["SimilarityFnName", "SimilarityFunction", "dense_similarity", "similarity_function"]


class SimilarityFunction(str, enum.Enum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"


def similarity_function(name: str | SimilarityFunction) -> SimilarityFunction:
    """``name`` (or one of sentence-transformers' aliases) as a ``SimilarityFunction``, or an ``InputError``."""
    aliases = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot"}
    key = name.value if isinstance(name, SimilarityFunction) else str(name)
    try:
        return SimilarityFunction(aliases.get(key, key))
    except ValueError:
        valid = ", ".join(f.value for f in SimilarityFunction)
        raise InputError(f"similarity_fn_name {name!r} is not known; valid: {valid}") from None


class SimilarityFnName:
    """A model's ``similarity_fn_name`` attribute: set by name, alias or ``SimilarityFunction`` and checked at once (an
    unknown name is an ``InputError`` there, not at the next ``similarity`` call nor in a saved copy); None is
    cosine, as in sentence-transformers. Read, it is the name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, model: object, owner: type | None = None) -> str:
        return str(getattr(model, self._slot))

    def __set__(self, model: object, value: str | SimilarityFunction | None) -> None:
        setattr(model, self._slot, similarity_function(SimilarityFunction.COSINE if value is None else value).value)


_DENSE: dict[SimilarityFunction, tuple[Callable[[Any, Any], np.ndarray], Callable[[Any, Any], np.ndarray]]] = {
    SimilarityFunction.COSINE: (util.cos_sim, util.pairwise_cos_sim),
    SimilarityFunction.DOT: (util.dot_score, util.pairwise_dot_score),
    SimilarityFunction.EUCLIDEAN: (util.euclidean_sim, util.pairwise_euclidean_sim),
    SimilarityFunction.MANHATTAN: (util.manhattan_sim, util.pairwise_manhattan_sim),
}


def dense_similarity(function: SimilarityFunction, *, pairwise: bool = False) -> Callable[[Any, Any], np.ndarray]:
    """The ``util`` function scoring dense embeddings with ``function``: ``[n, m]``, or ``[n]`` when ``pairwise``."""
    return _DENSE[function][1 if pairwise else 0]
