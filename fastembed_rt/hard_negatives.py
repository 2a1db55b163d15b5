"""Hard-negative mining for (anchor, positive) training data: sentence-transformers' ``mine_hard_negatives``.

The algorithm, its arguments, duplicate handling, output formats and printed statistics are
sentence-transformers 6.2's, step for step::

    rows (anchor, positive)
      ─► queries: the distinct anchors; corpus: ``corpus`` + every positive, de-duplicated
      ─► embed: model.encode_query(queries), model.encode_document(corpus)   (normalized; a pool optional)
      ─► search: the range_max + max_positives best corpus rows per query (numpy in blocks, or faiss)
      ─► rescore candidates and positives with a CrossEncoder (only when a margin or score bound is set)
      ─► filter: the query's positives, margins, max_score / min_score  → score -inf
      ─► choose: ranks range_min..range_max, then the ``top`` or ``random`` num_negatives
      ─► rows in the output format (+ statistics printed when ``verbose``)

What differs, on purpose:

- Input: a ``datasets.Dataset`` (the result is a ``Dataset``), a dict of columns (the result is a dict
  of columns) or a list of (anchor, positive) pairs (the result is a list of tuples), so ``datasets``
  is needed only by those who use it.
- The exact search scores the corpus in blocks of ``corpus_chunk_size`` rows against
  ``faiss_batch_size`` queries, so memory is bounded by the block, not by the corpus (sentence-
  transformers holds ``faiss_batch_size × len(corpus)`` scores at once).
- A named column that the dataset lacks is an ``InputError`` (sentence-transformers silently takes
  the first or second column instead); so are non-str texts and a ``sampling_strategy`` it does not know.
- CrossEncoder rescoring runs in this process, in large sorted batches over many queries at once
  (``use_multi_process`` pools only the embedding); faiss indexes stay on the CPU.
- Candidates of exactly equal score (texts the model embeds alike: case variants, ``""`` and ``"  "``) rank
  lower corpus id first; ``torch.topk`` leaves their order unspecified, so at the ``num_negatives`` cut
  sentence-transformers may take another of the equal texts.
- ``cache_folder`` keys the embeddings on the graph the model runs (its files' sha256); sentence-transformers
  keys on the base model's name, shared by every local model.

``sampling_strategy="random"`` draws from Python's global ``random`` with the same calls as
sentence-transformers: ``random.seed(n)`` before the call makes it repeatable, and equal to
sentence-transformers' own draw on equal candidates.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from fastembed_rt import util
from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.pipeline import not_a_text, refuse_containers

if TYPE_CHECKING:
    from fastembed_rt.models import CrossEncoder, SentenceTransformer

__all__ = ["OutputFormat", "SamplingStrategy", "mine_hard_negatives"]

logger = logging.getLogger(__name__)

# Query-candidate pairs per CrossEncoder call: large enough for the length-sorted batching to pad
# little, small enough that the tokenized pairs stay a few hundred MB at 512 tokens.
_RESCORE_PAIRS = 16384


class OutputFormat(str, enum.Enum):
    """The shape of the mined rows (sentence-transformers' ``output_format``)."""

    TRIPLET = "triplet"  # (anchor, positive, negative), one row per negative
    N_TUPLE = "n-tuple"  # (anchor, positive, negative_1, ..., negative_n)
    LABELED_PAIR = "labeled-pair"  # (anchor, document, label 1 | 0)
    LABELED_LIST = "labeled-list"  # (anchor, [documents], [labels])


class SamplingStrategy(str, enum.Enum):
    """How negatives are taken from the candidates left after filtering."""

    TOP = "top"  # the best-scoring num_negatives
    RANDOM = "random"  # num_negatives drawn uniformly, then ordered by score


@dataclass(frozen=True)
class _Rows:
    """The (anchor, positive) rows of the input, and how to give the result back."""

    anchors: list[str]
    positives: list[str]
    anchor_column: str
    positive_column: str
    kind: Literal["dataset", "columns", "pairs"]


def _check_texts(values: Any, what: str) -> list[str]:
    """``values`` as a list of str (any sized iterable of str: a list, a tuple, a dataset column)."""
    if isinstance(values, str | bytes) or not (hasattr(values, "__iter__") and hasattr(values, "__len__")):
        raise InputError(f"{what} must be a list of str, got {type(values).__name__}")
    # a DataFrame's column names were mined as negatives, silently
    refuse_containers(values, what, "df['text'].tolist()")
    texts = list(values)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise not_a_text(text, f"{what}[{i}]")
    return texts


def _pick_column(given: str | None, columns: list[str], position: int, role: str) -> str:
    if not given:
        if len(columns) <= position:
            raise InputError(
                f"the dataset has columns {columns}: it needs at least two, anchors then positives, "
                f"or a {role}_column_name"
            )
        return columns[position]
    if given not in columns:
        raise InputError(f"{role}_column_name {given!r} is not a column of the dataset; its columns: {columns}")
    return given


def _read_rows(dataset: Any, anchor_column_name: str | None, positive_column_name: str | None) -> _Rows:
    datasets = sys.modules.get("datasets")  # a Dataset can only come from an imported `datasets`
    if datasets is not None and isinstance(dataset, datasets.Dataset):
        columns = list(dataset.column_names)
        kind: Literal["dataset", "columns", "pairs"] = "dataset"
    elif datasets is not None and isinstance(
        dataset, datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict
    ):
        raise InputError(
            f"dataset is a {type(dataset).__name__}; pass one datasets.Dataset (e.g. dataset['train'], "
            "or an iterable dataset's rows collected with Dataset.from_list)"
        )
    elif isinstance(dataset, Mapping):
        columns = list(dataset)
        kind = "columns"
    elif isinstance(dataset, Sequence) and not isinstance(dataset, str | bytes):
        if anchor_column_name or positive_column_name:
            raise InputError(
                "a list of (anchor, positive) pairs has no column names; pass a dict of columns to name them"
            )
        anchors, positives = [], []
        for i, pair in enumerate(dataset):
            if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InputError(f"dataset[{i}] must be an (anchor, positive) pair of str, got {pair!r:.80}")
            anchors.append(pair[0])
            positives.append(pair[1])
        if not anchors:
            raise InputError("the dataset is empty: give at least one (anchor, positive) pair")
        return _Rows(
            _check_texts(anchors, "anchors"), _check_texts(positives, "positives"), "anchor", "positive", "pairs"
        )
    else:
        raise InputError(
            "dataset must be a datasets.Dataset, a dict of columns or a list of (anchor, positive) pairs; "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0 or (kind == "columns" and all(len(dataset[name]) == 0 for name in dataset)):
        raise InputError("the dataset is empty: give at least one (anchor, positive) row")
    anchor_column = _pick_column(anchor_column_name, columns, 0, "anchor")
    positive_column = _pick_column(positive_column_name, columns, 1, "positive")
    if anchor_column == positive_column:  # the positives would be the anchors: other anchors mined as negatives
        raise InputError(
            f"the anchor and positive columns are both {anchor_column!r}; name two different columns of {columns}"
        )
    anchors = _check_texts(dataset[anchor_column], f"dataset[{anchor_column!r}]")
    positives = _check_texts(dataset[positive_column], f"dataset[{positive_column!r}]")
    if len(anchors) != len(positives):
        raise InputError(
            f"columns {anchor_column!r} and {positive_column!r} differ in length: {len(anchors)} and {len(positives)}"
        )
    return _Rows(anchors, positives, anchor_column, positive_column, kind)


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _choice(enum_type: type[enum.Enum], name: str, value: object) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        valid = ", ".join(repr(member.value) for member in enum_type)
        raise InputError(f"{name} {value!r} is not supported; valid: {valid}") from None


def _embed(
    model: SentenceTransformer,
    queries: list[str],
    corpus: list[str],
    *,
    query_prompt: tuple[str | None, str | None],
    corpus_prompt: tuple[str | None, str | None],
    batch_size: int,
    use_multi_process: list[str] | bool,
    cache_folder: str | None,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized query and corpus embeddings, read from and written to ``cache_folder`` when given."""
    files: dict[str, str] = {}
    found: dict[str, np.ndarray] = {}
    if cache_folder:
        os.makedirs(cache_folder, exist_ok=True)
        # The model's identity in the key: the graph it runs, by its files' sha256 (the source path typed at export
        # was no identity: two models exported from folders of one name, or a re-exported fine-tune, shared the
        # cache), and the settings that change its vectors (a truncate_dim or max_seq_length set on this model).
        model_name = _model_identity(model)
        settings = (getattr(model, "truncate_dim", None), getattr(model, "max_seq_length", None))
        for role, prompt, texts in (("query", query_prompt, queries), ("corpus", corpus_prompt, corpus)):
            key = repr((model_name, *settings, prompt[1], prompt[0], texts)).encode()
            files[role] = os.path.join(cache_folder, f"{role}_embeddings_{hashlib.sha256(key).hexdigest()}.npy")
            if os.path.exists(files[role]):
                found[role] = np.load(files[role])
                if verbose:
                    print(f"[Cache] Loaded {role} embeddings from {files[role]} (shape={found[role].shape})")
    if len(found) < 2:
        pool = None
        if use_multi_process:
            # a str goes to the pool as given, refused there by name ("cpu" was three workers, 'c', 'p' and 'u')
            devices = None if isinstance(use_multi_process, bool) else use_multi_process
            if not isinstance(devices, (str, type(None))):
                devices = list(devices)
            pool = model.start_multi_process_pool(target_devices=devices)
        try:
            common = {"pool": pool, "batch_size": batch_size, "normalize_embeddings": True}
            if "corpus" not in found:
                found["corpus"] = model.encode_document(
                    corpus, prompt_name=corpus_prompt[0], prompt=corpus_prompt[1], show_progress_bar=verbose, **common
                )
            if "query" not in found:
                found["query"] = model.encode_query(
                    queries, prompt_name=query_prompt[0], prompt=query_prompt[1], show_progress_bar=verbose, **common
                )
        finally:
            if pool is not None:
                model.stop_multi_process_pool(pool)
    for role, path in files.items():
        if not os.path.exists(path):
            np.save(path, found[role])
            if verbose:
                print(f"[Cache] Saved {role} embeddings to {path}")
    return np.asarray(found["query"], dtype=np.float32), np.asarray(found["corpus"], dtype=np.float32)


def _model_identity(model: Any) -> str:
    """What tells apart the vectors of two models: a fastembed-rt model's variant, by the sha256 of its graph and
    weights files; for another model (sentence-transformers' own), the base model sentence-transformers keys on."""
    manifest = getattr(model, "manifest", None)
    variant_name = getattr(model, "variant", None)
    if manifest is not None and variant_name is not None:
        try:
            variant = manifest.variant(variant_name)
        except ArtifactError:  # not one of its variants: keyed by its name below
            variant = None
        if variant is not None:
            return f"{variant.name}:{variant.sha256}:{variant.weights_sha256}"
    card = getattr(model, "model_card_data", None)
    return f"{getattr(card, 'base_model', None) or ''}:{variant_name or ''}"


def _search(
    model: SentenceTransformer,
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    k: int,
    *,
    use_faiss: bool,
    faiss_batch_size: int,
    corpus_chunk_size: int,
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """The ``k`` best corpus rows of each query by decreasing score, padded with score -inf and id -1
    where the corpus is smaller than ``k``: float32 and int64 ``[queries, k]``."""
    if use_faiss:
        import faiss

        index = faiss.IndexFlatIP(corpus_embeddings.shape[1])
        index.add(np.ascontiguousarray(corpus_embeddings))
        parts = [
            index.search(np.ascontiguousarray(query_embeddings[start : start + faiss_batch_size]), k)
            for start in range(0, len(query_embeddings), faiss_batch_size)
        ]
        return (
            np.concatenate([scores for scores, _ in parts]).astype(np.float32),
            np.concatenate([ids for _, ids in parts]).astype(np.int64),
        )
    scores, ids = util.search_top_k(
        query_embeddings,
        corpus_embeddings,
        top_k=k,
        query_chunk_size=faiss_batch_size,
        corpus_chunk_size=corpus_chunk_size,
        score_function=model.similarity,
    )
    missing = k - scores.shape[1]
    if missing > 0:
        scores = np.pad(scores, ((0, 0), (0, missing)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, missing)), constant_values=-1)
    return scores.astype(np.float32, copy=False), ids


def _rescore(
    cross_encoder: CrossEncoder,
    queries: list[str],
    corpus: list[str],
    ids: npt.NDArray[np.int64],
    scores: np.ndarray,
    batch_size: int,
    verbose: bool,
) -> None:
    """Replace ``scores[q, j]`` by the CrossEncoder's score of (query q, corpus row ids[q, j]), in place.

    Padding (id -1) is not scored: its score becomes -inf later anyway. Many queries go into one
    ``predict`` call, whose length-sorted batches pad far less than one call per query would.
    """
    per_call = max(1, _RESCORE_PAIRS // max(1, ids.shape[1]))
    for start in range(0, len(queries), per_call):
        block = ids[start : start + per_call]
        rows, columns = np.nonzero(block != -1)
        if not len(rows):
            continue
        pairs = [(queries[start + r], corpus[i]) for r, i in zip(rows.tolist(), block[rows, columns].tolist())]
        scores[start + rows, columns] = _predict(cross_encoder, pairs, batch_size, verbose)


def _predict(cross_encoder: CrossEncoder, pairs: list[tuple[str, str]], batch_size: int, verbose: bool) -> np.ndarray:
    return np.asarray(cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=verbose), np.float32)


# sentence-transformers' statistics in torch's definitions: the median is the lower middle value, the
# std is unbiased, quantiles interpolate linearly; an empty set gives nan, or +-inf for min/quantiles/max.
_STATISTICS: dict[str, tuple[Callable[[np.ndarray], Any], float]] = {
    "mean": (lambda v: v.mean(dtype=np.float64), math.nan),
    "median": (lambda v: np.sort(v)[(v.size - 1) // 2], math.nan),
    "std": (lambda v: v.std(dtype=np.float64, ddof=1) if v.size > 1 else math.nan, math.nan),
    "min": (np.min, math.inf),
    "25%": (lambda v: np.quantile(v, 0.25), math.inf),
    "50%": (lambda v: np.quantile(v, 0.5), math.inf),
    "75%": (lambda v: np.quantile(v, 0.75), math.inf),
    "max": (np.max, -math.inf),
}


def _statistics(positive: np.ndarray, negative: np.ndarray, difference: np.ndarray) -> list[str]:
    """The lines of sentence-transformers' table of positive, negative and difference scores."""
    row = "{:<6} {:>14} {:>14} {:>14}"
    lines = [
        row.format("Metric", "Positive", "Negative", "Difference"),
        row.format("Count", f"{len(positive):,}", f"{len(negative):,}", ""),
    ]
    for name, (statistic, empty) in _STATISTICS.items():
        cells = (f"{float(statistic(v) if v.size else empty):.4f}" for v in (positive, negative, difference))
        lines.append(row.format(name.capitalize(), *cells))
    return lines


def _lowest_per_query(positive_scores: np.ndarray, n_positives: npt.NDArray[np.int64]) -> np.ndarray:
    """The lowest (hardest) positive score of each query; positives come grouped by query, >= 1 each."""
    return np.minimum.reduceat(positive_scores, np.concatenate([[0], np.cumsum(n_positives)[:-1]]))


def _filter(
    scores: np.ndarray,
    lowest_positive: np.ndarray,
    *,
    absolute_margin: float | None,
    relative_margin: float | None,
    max_score: float | None,
    min_score: float | None,
) -> dict[str, tuple[int, float]]:
    """Set the score of every candidate a margin or bound rules out to -inf, in place.

    Returns:
        ``{option: (candidates skipped, ratio)}`` for the options that skipped any, with
        sentence-transformers' counting: the margins' ratios shrink the denominator as they go,
        the bounds' do not, and ``min_score`` counts candidates already at -inf.
    """
    skipped: dict[str, tuple[int, float]] = {}
    candidates = scores.size
    margins = (
        # the candidate must stay a margin below its query's hardest positive
        ("absolute_margin", absolute_margin, lambda m: scores + m > lowest_positive[:, None]),
        # |positive| * margin below the positive, whatever the positive's sign
        (
            "relative_margin",
            relative_margin,
            lambda m: scores > (lowest_positive - np.abs(lowest_positive) * m)[:, None],
        ),
    )
    for name, margin, rule in margins:
        if margin is not None:
            removed = rule(margin)
            scores[removed] = -np.inf
            if count := int(removed.sum()):
                skipped[name] = (count, count / candidates)
                candidates -= count
    for name, bound, removed_by in (("max_score", max_score, np.greater), ("min_score", min_score, np.less)):
        if bound is not None:
            removed = removed_by(scores, bound)
            scores[removed] = -np.inf
            if count := int(removed.sum()):
                skipped[name] = (count, count / candidates)
    return skipped


def _choose(
    scores: np.ndarray,
    indices: npt.NDArray[np.int64],
    range_min: int,
    range_max: int,
    num_negatives: int,
    strategy: SamplingStrategy,
) -> tuple[npt.NDArray[np.int64], np.ndarray]:
    """``(corpus rows, scores)`` ``[queries, num_negatives]`` of each query's negatives, by decreasing score
    (-inf where too few candidates are left)."""
    # Ranks range_min..range_max of the candidates left; stable: equal scores keep the search's order.
    order = np.argsort(-scores, axis=1, kind="stable")[:, range_min:range_max]
    negative_scores = np.take_along_axis(scores, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    if strategy is SamplingStrategy.TOP:
        return indices[:, :num_negatives], negative_scores[:, :num_negatives]
    # Draw among the candidates left (never a -inf one while there are enough), then order by score.
    options = np.maximum(indices.shape[1] - np.isinf(negative_scores).sum(axis=1), num_negatives)
    drawn = np.array([random.sample(range(n), k=num_negatives) for n in options.tolist()], dtype=np.int64)
    drawn = drawn.reshape(len(indices), num_negatives)
    negative_scores = np.take_along_axis(negative_scores, drawn, axis=1)
    indices = np.take_along_axis(indices, drawn, axis=1)
    order = np.argsort(-negative_scores, axis=1, kind="stable")
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(negative_scores, order, axis=1)


@dataclass(frozen=True)
class _Mined:
    """The output columns and what the statistics are computed from."""

    columns: dict[str, list[Any]]
    negative_scores: np.ndarray  # float32 [negatives in the output]
    difference_scores: np.ndarray  # float32, the positive's score minus each negative's
    maximum_possible_samples: int  # rows the output would have had every query enough negatives


def _build_rows(
    form: OutputFormat,
    output_scores: bool,
    names: tuple[str, str],
    queries: list[str],
    corpus: list[str],
    indices: npt.NDArray[np.int64],
    negative_scores: np.ndarray,
    positive_ids: npt.NDArray[np.int64],
    positive_query: npt.NDArray[np.int64],
    positive_scores: np.ndarray,
    input_rows: int,
) -> _Mined:
    """sentence-transformers' rows of ``form``: per positive (grouped by query), its query's negatives."""
    anchor_name, positive_name = names
    # A query with two positives gets two rows of its negatives.
    row_ids, row_scores = indices[positive_query], negative_scores[positive_query]
    found = row_scores != -np.inf
    anchors = [queries[q] for q in positive_query.tolist()]
    positives = [corpus[i] for i in positive_ids.tolist()]
    every_negative = row_scores[found]
    every_difference = np.broadcast_to(positive_scores[:, None], found.shape)[found] - every_negative
    if form is OutputFormat.TRIPLET:
        rows, ranks = np.nonzero(found)
        columns: dict[str, list[Any]] = {
            anchor_name: [anchors[r] for r in rows.tolist()],
            positive_name: [positives[r] for r in rows.tolist()],
            "negative": [corpus[i] for i in row_ids[rows, ranks].tolist()],
        }
        if output_scores:
            columns["scores"] = np.stack([positive_scores[rows], every_negative], axis=1).tolist()
        return _Mined(columns, every_negative, every_difference, found.size)
    if form is OutputFormat.N_TUPLE:
        rows = np.flatnonzero(found.all(axis=1))
        columns = {
            anchor_name: [anchors[r] for r in rows.tolist()],
            positive_name: [positives[r] for r in rows.tolist()],
        }
        for rank, column in enumerate(row_ids[rows].T.tolist(), start=1):
            columns[f"negative_{rank}"] = [corpus[i] for i in column]
        if output_scores:
            columns["scores"] = np.concatenate([positive_scores[rows, None], row_scores[rows]], axis=1).tolist()
        negatives = row_scores[rows].reshape(-1)
        difference = np.repeat(positive_scores[rows], row_scores.shape[1]) - negatives
        return _Mined(columns, negatives, difference, len(found))
    if form is OutputFormat.LABELED_LIST:
        kept = np.flatnonzero(found.any(axis=1)).tolist()
        columns = {
            anchor_name: [anchors[r] for r in kept],
            positive_name: [[positives[r], *(corpus[i] for i in row_ids[r][found[r]].tolist())] for r in kept],
        }
        if output_scores:
            columns["scores"] = [[float(positive_scores[r]), *row_scores[r][found[r]].tolist()] for r in kept]
        else:
            columns["labels"] = [[1] + [0] * int(found[r].sum()) for r in kept]
        return _Mined(columns, every_negative, every_difference, len(found))
    # labeled-pair: per query, its positives (label 1), then its negatives (label 0), each once
    anchor_list: list[str] = []
    documents: list[str] = []
    values: list[float] = []
    first = 0
    for q, count in enumerate(np.bincount(positive_query, minlength=len(queries)).tolist()):
        query_found = negative_scores[q] != -np.inf
        anchor_list += [queries[q]] * (count + int(query_found.sum()))
        documents += positives[first : first + count] + [corpus[i] for i in indices[q][query_found].tolist()]
        if output_scores:
            values += positive_scores[first : first + count].tolist() + negative_scores[q][query_found].tolist()
        else:
            values += [1] * count + [0] * int(query_found.sum())
        first += count
    columns = {anchor_name: anchor_list, positive_name: documents, "score" if output_scores else "label": values}
    maximum = len(queries) * row_scores.shape[1] + input_rows  # sentence-transformers' count, duplicates included
    return _Mined(columns, every_negative, every_difference, maximum)


def mine_hard_negatives(
    dataset: Any,
    model: SentenceTransformer,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
    cross_encoder: CrossEncoder | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool = False,
    use_multi_process: list[str] | bool = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    corpus_chunk_size: int = 2048,
) -> Any:
    """Add hard negatives to (anchor, positive) pairs, as ``sentence_transformers.util.mine_hard_negatives``.

    Every argument means what it means there (see this module's docstring for the few differences);
    in short:

    Args:
        dataset: a ``datasets.Dataset``, a dict of columns, or a list of (anchor, positive) pairs.
        model: a ``SentenceTransformer`` that embeds anchors (``encode_query``) and the corpus
            (``encode_document``), normalized.
        anchor_column_name / positive_column_name: default: the first / second column.
        corpus: more candidate texts besides the positives (which are always part of the corpus).
        cross_encoder: a one-label ``CrossEncoder`` that rescores candidates and positives, used only
            when a margin, ``max_score`` or ``min_score`` is set.
        range_min / range_max: ranks of the candidates considered (range_max default:
            ``range_min + num_negatives + max_positives``, with ``10 * num_negatives`` when filters apply).
        max_score / min_score: candidates scoring above / below are skipped.
        absolute_margin / relative_margin: candidates scoring above ``min_positive - absolute_margin``
            or ``min_positive - |min_positive| * relative_margin`` are skipped.
        num_negatives: negatives per positive row, >= 1.
        sampling_strategy: ``"top"`` or ``"random"`` (Python's ``random``; seed it with ``random.seed``).
        query_prompt_name / query_prompt / corpus_prompt_name / corpus_prompt: prompts of the two sides.
        include_positives: keep positives among the candidates (forces ``output_format="n-tuple"``).
        output_format: ``"triplet"``, ``"n-tuple"``, ``"labeled-pair"`` or ``"labeled-list"``.
        output_scores: add the scores (``scores`` / ``score`` columns instead of labels).
        batch_size: texts per encoding batch, pairs per CrossEncoder batch.
        faiss_batch_size: queries searched at once (faiss and the exact search alike).
        use_faiss: search with a faiss ``IndexFlatIP`` (the ``faiss`` extra) instead of numpy.
        use_multi_process: embed with a multi-process pool: True (the model's default devices) or a
            list of provider names, e.g. ``["cpu", "cpu"]``.
        verbose: print progress and sentence-transformers' statistics table.
        cache_folder: keep the embeddings there as ``.npy`` files and reuse them on the next call.
        as_triplets / margin: deprecated, as in sentence-transformers (``output_format`` /
            ``absolute_margin``).
        corpus_chunk_size: corpus rows scored at once by the exact search; memory holds about
            ``faiss_batch_size × corpus_chunk_size`` scores, whatever the corpus size.

    Returns:
        The mined rows, in the input's kind: a ``datasets.Dataset``, a dict of columns, or a list of
        tuples, with sentence-transformers' columns for ``output_format`` and ``output_scores``.

    Raises:
        InputError: an empty dataset, a missing column, non-str texts, a bad option or a
            ``num_negatives`` that ``range_min`` and ``range_max`` leave no room for.
        ImportError: ``use_faiss=True`` without faiss.
    """
    rows = _read_rows(dataset, anchor_column_name, positive_column_name)
    anchor_column_name, positive_column_name = rows.anchor_column, rows.positive_column
    if cross_encoder is not None and cross_encoder.num_labels != 1:
        raise InputError(
            f"rescoring needs one score per pair; this cross_encoder has num_labels={cross_encoder.num_labels} "
            "(num_labels must be 1)"
        )
    _check_count("faiss_batch_size", faiss_batch_size, 1)
    _check_count("corpus_chunk_size", corpus_chunk_size, 1)
    if use_faiss:
        try:
            import faiss  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "use_faiss=True needs faiss: pip install 'fastembed-rt[faiss]' (or faiss-cpu / faiss-gpu)"
            ) from exc

    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning(
            "The `as_triplets` parameter is deprecated. Use the `output_format` parameter instead. "
            f"Setting `output_format` to `{output_format}`."
        )
    if include_positives:
        if (
            range_min != 0
            or range_max is not None
            or max_score is not None
            or min_score is not None
            or absolute_margin is not None
            or relative_margin is not None
            or margin is not None
            or sampling_strategy != "top"
        ):
            logger.warning(
                "When using `include_positives=True`, updating `range_min`, `range_max`, `max_score`, `min_score`, "
                "`absolute_margin`, `relative_margin`, or `sampling_strategy` from the default values may still "
                "discard the positive values."
            )
        if output_format != "n-tuple":
            logger.warning(
                'When using `include_positives=True`, `output_format` will be set to `"n-tuple"` to ensure that '
                "the ranking order is preserved."
            )
            output_format = "n-tuple"
    if output_format == "n-tuple-scores":
        logger.warning(
            '`output_format="n-tuple-scores"` is deprecated. Use `output_format="n-tuple"` with '
            "`output_scores=True` instead for equivalent output formats."
        )
        output_format, output_scores = "n-tuple", True
    form = _choice(OutputFormat, "output_format", output_format)
    strategy = _choice(SamplingStrategy, "sampling_strategy", sampling_strategy)
    if margin is not None:
        absolute_margin = margin
        logger.warning(
            "The `margin` parameter is deprecated. Use the `absolute_margin` and/or `relative_margin` parameter "
            f"instead. Setting `absolute_margin` to `{absolute_margin}`."
        )

    # Rows per anchor, duplicates included (pandas' groupby count in sentence-transformers).
    positives_per_query = list(Counter(rows.anchors).values())
    max_positives = max(positives_per_query)
    num_negatives = _check_count("num_negatives", num_negatives, 1)
    range_min = _check_count("range_min", range_min, 0)
    filtering = absolute_margin is not None or relative_margin is not None or max_score is not None
    if range_max is None:
        if filtering or (cross_encoder is not None and min_score is not None):
            # some candidates will be skipped: ten per negative, plus room for the positives
            range_max = range_min + num_negatives * 10 + max_positives
        else:
            range_max = range_min + num_negatives + max_positives
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    range_max = _check_count("range_max", range_max, 0)
    if range_min >= range_max:
        raise InputError(
            f"range_min must be smaller than range_max, got range_min={range_min} and range_max={range_max}."
        )
    if num_negatives > range_max - range_min:
        raise InputError(
            f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates remain after "
            f"skipping the first range_min={range_min} of range_max={range_max}. Consider decreasing num_negatives "
            "or range_min, or increasing range_max."
        )

    # The corpus holds every positive once; queries are the distinct anchors.
    extra = [] if corpus is None else _check_texts(corpus, "corpus")
    corpus = list(dict.fromkeys((extra if corpus is not None else rows.positives) + rows.positives))
    corpus_idx = {text: i for i, text in enumerate(corpus)}
    queries = list(dict.fromkeys(rows.anchors))
    queries_idx = {query: i for i, query in enumerate(queries)}
    n_queries = len(queries)
    if n_queries != len(rows.anchors) and verbose:
        print(f"Found {n_queries} unique queries out of {len(rows.anchors)} total queries.")
    if max_positives > 1 and verbose:
        print(f"Found an average of {np.mean(positives_per_query):.3f} positives per query.")

    query_embeddings, corpus_embeddings = _embed(
        model,
        queries,
        corpus,
        query_prompt=(query_prompt_name, query_prompt),
        corpus_prompt=(corpus_prompt_name, corpus_prompt),
        batch_size=batch_size,
        use_multi_process=use_multi_process,
        cache_folder=cache_folder,
        verbose=verbose,
    )
    k = range_max + max_positives  # room for the positives, which are removed below
    scores, indices = _search(
        model,
        query_embeddings,
        corpus_embeddings,
        k,
        use_faiss=use_faiss,
        faiss_batch_size=faiss_batch_size,
        corpus_chunk_size=corpus_chunk_size,
    )

    # Each query's distinct positives (corpus rows), in first-seen order; rows grouped by query.
    positive_lists: list[list[int]] = [[] for _ in range(n_queries)]
    for anchor, positive in zip(rows.anchors, rows.positives):
        own = positive_lists[queries_idx[anchor]]
        if corpus_idx[positive] not in own:
            own.append(corpus_idx[positive])
    n_positives = np.array([len(own) for own in positive_lists], dtype=np.int64)
    positive_ids = np.array([i for own in positive_lists for i in own], dtype=np.int64)
    positive_query = np.repeat(np.arange(n_queries), n_positives)  # the query of each positive row
    positive_scores = np.asarray(
        model.similarity_pairwise(query_embeddings[positive_query], corpus_embeddings[positive_ids]), dtype=np.float32
    ).reshape(-1)
    del query_embeddings, corpus_embeddings

    if cross_encoder is not None and (filtering or min_score is not None):
        _rescore(cross_encoder, queries, corpus, indices, scores, batch_size, verbose)
        pairs = [(queries[q], corpus[i]) for q, i in zip(positive_query.tolist(), positive_ids.tolist())]
        positive_scores = _predict(cross_encoder, pairs, batch_size, verbose)
    scores[indices == -1] = -np.inf  # padding, after rescoring (which scores every column)

    if not include_positives:
        # One int64 key per (query, corpus row) finds every query's positives among its candidates at once.
        width = np.int64(len(corpus) + 1)
        candidate_keys = np.arange(n_queries, dtype=np.int64)[:, None] * width + indices
        scores[np.isin(candidate_keys, positive_query * width + positive_ids)] = -np.inf

    skipped = _filter(
        scores,
        _lowest_per_query(positive_scores, n_positives),
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        max_score=max_score,
        min_score=min_score,
    )
    indices, negative_scores = _choose(scores, indices, range_min, range_max, num_negatives, strategy)
    if verbose:
        print("Negative candidates mined, preparing dataset...")

    mined = _build_rows(
        form,
        output_scores,
        (anchor_column_name, positive_column_name),
        queries,
        corpus,
        indices,
        negative_scores,
        positive_ids,
        positive_query,
        positive_scores,
        len(rows.anchors),
    )
    if verbose:
        for line in _statistics(positive_scores, mined.negative_scores, mined.difference_scores):
            print(line)
        bounds = {
            "absolute_margin": absolute_margin,
            "relative_margin": relative_margin,
            "max_score": max_score,
            "min_score": min_score,
        }
        for name, (count, ratio) in skipped.items():
            print(f"Skipped {count:,} potential negatives ({ratio:.2%}) due to the {name} of {bounds[name]}.")
        missing = mined.maximum_possible_samples - len(mined.columns[anchor_column_name])
        if missing > 0:
            solutions = ["range_max", *(["range_min"] if range_min > 0 else [])]
            solutions += [name for name, value in bounds.items() if value is not None and name != "min_score"]
            considerations = ", ".join(solutions[:-1]) + " and " + solutions[-1] if len(solutions) > 1 else solutions[0]
            print(
                f"Could not find enough negatives for {missing} samples "
                f"({missing / mined.maximum_possible_samples:.2%}). Consider adjusting the {considerations} "
                f"parameter{'s' if len(solutions) > 1 else ''} if you'd like to find more valid negatives."
            )

    if rows.kind == "dataset":
        from datasets import Dataset

        return Dataset.from_dict(mined.columns)
    if rows.kind == "columns":
        return mined.columns
    return list(zip(*mined.columns.values()))
