"""``CrossEncoder``: score (query, document) pairs with an exported sequence-classification artifact.

Numpy out; no torch. Pairs are tokenized together (``[CLS] a [SEP] b [SEP]`` or the model's own
template) with ``longest_first`` truncation at ``max_length``, as sentence-transformers does, then
sorted by token length and cut into batches by a padded-token budget. The model's default
activation runs inside the graph (output ``scores``); another activation per call is applied to the
raw ``logits`` output on the host.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict

import numpy as np

from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels.reference import activate_scores, softmax
from fastembed_rt.kernels.spec import LOGITS, SCORES, ClassifierActivation, ClassifierHeadSpec
from fastembed_rt.long_inputs import DEFAULT_CHUNK_OVERLAP, LongInputs, long_inputs_policy, max_pool_scores
from fastembed_rt.models.base import (
    MultiProcessModel,
    _warn_once,
    check_batch_size,
    check_overlap,
    explicit_prompt,
    finished_calls_stats,
    renamed_arguments,
)
from fastembed_rt.pipeline import (
    Prepared,
    check_unicode,
    is_missing,
    not_a_text,
    refuse_containers,
    wants_progress,
)
from fastembed_rt.tensors import as_numpy, tensor_results, to_tensor
from fastembed_rt.tokenizer import TruncationDirection, with_prompt

if TYPE_CHECKING:
    import os

    from typing_extensions import Unpack

    from fastembed_rt.artifact import Manifest
    from fastembed_rt.models.base import LoadOptions
    from fastembed_rt.pool import MultiProcessPool

__all__ = ["CrossEncoder", "RankResult", "check_item", "check_pairs", "check_rank_inputs", "rank_results"]

ActivationLike: TypeAlias = str | ClassifierActivation | Callable[[np.ndarray], Any]


class _RankedDocument(TypedDict):
    corpus_id: int
    score: float


class RankResult(_RankedDocument, total=False):
    """One ``rank`` result, as in sentence-transformers: a document index and its score (always there), and its
    text with ``return_documents=True``."""

    text: str


def check_rank_inputs(query: object, documents: object, top_k: object) -> list[str]:
    """``rank``'s documents as a list of str, after checking the query, the documents and ``top_k``.

    Raises:
        InputError: a non-str query or document, or a ``top_k`` that is not None or an int >= 0.
    """
    if not isinstance(query, str):
        raise InputError(f"query must be a str, got {type(query).__name__}")
    check_unicode(query, "query")
    if isinstance(documents, str) or documents is None:
        kind = "None" if documents is None else "a str"
        raise InputError(f"documents must be a list of str, got {kind}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0):
        raise InputError(f"top_k must be None or an int >= 0, got {top_k!r}")
    if isinstance(documents, np.ndarray):
        if documents.ndim != 1:  # a 0-d array's tolist() is its one str, ranked character by character
            raise InputError(f"documents is a {documents.ndim}-d array; pass a list or 1-d array of str")
        documents = documents.tolist()
    # a DataFrame or dict ranked its column names or keys (as sentence-transformers' rank does), silently
    refuse_containers(documents, "documents", "df['text'].tolist()")
    docs = list(documents)  # type: ignore[call-overload]
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise not_a_text(doc, f"documents[{i}]")
        check_unicode(doc, f"documents[{i}]")
    return docs


def rank_results(
    scores: Sequence[float], documents: Sequence[str], top_k: int | None, return_documents: bool
) -> list[RankResult]:
    """``rank``'s answer from one score per document: by decreasing score (ties keep input order), at most ``top_k``."""
    results: list[RankResult] = []
    for i, score in enumerate(scores):
        result = RankResult(corpus_id=i, score=float(score))
        if return_documents:
            result["text"] = documents[i]
        results.append(result)
    results.sort(key=lambda r: r["score"], reverse=True)  # stable: ties keep input order
    return results[:top_k]


def _is_pair_container(value: object) -> bool:
    """A list, tuple or 1-d array (a DataFrame's ``list(df.values)`` rows) holds a pair."""
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def check_item(item: object, where: str) -> tuple[str, str] | str:
    """An item of a batch: a pair, or a str scored alone."""
    if isinstance(item, str):
        check_unicode(item, where)
        return item
    return _check_pair(item, where)


def _check_pair(item: object, where: str) -> tuple[str, str]:
    if isinstance(item, np.ndarray) and item.ndim == 1:
        item = item.tolist()
    if not isinstance(item, (list, tuple)):
        if is_missing(item):
            raise not_a_text(item, where)
        kind = "None" if item is None else type(item).__name__
        raise InputError(f"{where} is {kind}; expected a (query, document) pair of two str, or a str")
    if len(item) != 2:
        raise InputError(
            f"{where} is a {type(item).__name__} of {len(item)} items; a pair has exactly 2: (query, document)"
        )
    for j, text in enumerate(item):
        if not isinstance(text, str):
            raise not_a_text(text, f"{where}[{j}]")
        check_unicode(text, f"{where}[{j}]")
    return item[0], item[1]


def check_pairs(inputs: object) -> tuple[list[tuple[str, str] | str], bool]:
    """``inputs`` as a list of items, each a (str, str) pair or a str scored alone, and whether it was one item, or
    an ``InputError``.

    Like sentence-transformers: a str is one text scored alone (a sequence classifier's input); a list or tuple
    whose first item is not itself a list or tuple is one pair; in a list of items, a str item is a text scored
    alone; an empty list is an empty batch.
    """
    if inputs is None:
        raise InputError("inputs is None; pass a (query, document) pair, a text or a list of them")
    if isinstance(inputs, str):
        check_unicode(inputs, "inputs")
        return [inputs], True
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 0:  # its tolist() is its one str, which was scored character by character
            raise InputError("inputs is a 0-d array; pass a str, a pair or a list of them")
        inputs = inputs.tolist()
    refuse_containers(inputs, "inputs", "list(df[['query', 'document']].itertuples(index=False, name=None))")
    if not isinstance(inputs, Iterable):
        raise InputError(f"inputs must be a pair, a text or a list of them, got {type(inputs).__name__}")
    items = list(inputs)
    if _is_pair_container(inputs) and items and not _is_pair_container(items[0]):
        return [_check_pair(inputs, "inputs")], True
    return [check_item(item, f"inputs[{i}]") for i, item in enumerate(items)], False


def _activation_name(fn: object) -> ClassifierActivation | None:
    """A known activation by name: the enum, its value, or a torch module of that class (not imported)."""
    if isinstance(fn, ClassifierActivation):
        return fn
    if isinstance(fn, str):
        try:
            return ClassifierActivation(fn.lower())
        except ValueError:
            valid = ", ".join(a.value for a in ClassifierActivation)
            raise InputError(f"activation_fn {fn!r} is not known; valid: {valid}, or a callable on numpy") from None
    module = type(fn).__module__
    name = type(fn).__name__
    if module.startswith("torch.") and name in ("Identity", "Sigmoid", "Softmax"):
        if name == "Softmax" and getattr(fn, "dim", None) not in (None, 1, -1):
            raise InputError(f"activation_fn {fn!r}: only a softmax over the label axis is supported")
        return ClassifierActivation(name.lower())
    return None


def _call_activation(fn: Callable[[Any], Any], logits: np.ndarray) -> Any:
    """``fn(logits)``; a torch module or function (``torch.nn.Tanh()``, ``torch.tanh``: torch is loaded, as the caller
    made it) gets a tensor and gives back numpy, as sentence-transformers applies any activation module."""
    owner = getattr(fn, "__module__", None) or type(fn).__module__
    if str(owner).split(".")[0] == "torch" or type(fn).__module__.split(".")[0] == "torch":
        return as_numpy(fn(to_tensor(logits)))
    return fn(logits)


# sentence-transformers 5.3 and earlier took these by position after the model (6.2 still does, with a warning)
_LEGACY_POSITIONAL = ("num_labels", "max_length", "activation_fn", "device")


def _legacy_positional_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """``CrossEncoder(path, 1, 512)``: the arguments after the model taken by their former positions, with a
    warning once, as sentence-transformers takes them."""

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1 + len(_LEGACY_POSITIONAL):
            raise TypeError(
                f"CrossEncoder takes the model and at most {len(_LEGACY_POSITIONAL)} former positional arguments "
                f"({', '.join(_LEGACY_POSITIONAL)}); got {len(args)}"
            )
        for name, value in zip(_LEGACY_POSITIONAL, args[1:]):
            _warn_once(
                f"CrossEncoder({name} by position)",
                f"CrossEncoder: `{name}` by position is sentence-transformers' former use; pass {name}={value!r}",
            )
            if name in kwargs:
                raise TypeError(f"CrossEncoder got `{name}` both by position and by keyword")
            kwargs[name] = value
        init(self, *args[:1], **kwargs)

    return wrapper


class CrossEncoder(MultiProcessModel):
    """Score text pairs with an exported artifact, the way ``sentence_transformers.CrossEncoder`` does.

    Args:
        model_name_or_path: an artifact directory (task ``cross-encoder``), or a hub repo id holding one.
        max_length: truncate pairs to this many tokens (default: the model's ``max_seq_length``).
        activation_fn: default activation of ``predict``/``rank``: ``"identity"``, ``"sigmoid"``,
            ``"softmax"``, a torch module of those classes, or a callable on float32 ``[n, labels]``
            numpy logits. None: the model's own (fused in the graph).
        options: how to open the artifact (provider, variant — ``auto``: the provider's preferred
            variant —, prompts, threads, ...), as for every model type: see
            ``fastembed_rt.models.base.ArtifactModel``.
    """

    task = "cross-encoder"

    @_legacy_positional_arguments
    @renamed_arguments(
        default_activation_function="activation_fn",
        model_name="model_name_or_path",
        automodel_args="model_kwargs",
        tokenizer_args="processor_kwargs",
        config_args="config_kwargs",
        classifier_dropout=None,  # a training setting (sentence-transformers puts it in config_kwargs)
    )
    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        activation_fn: ActivationLike | None = None,
        num_labels: int | None = None,
        keep_in_fp32_modules: list[str] | None = None,
        **options: Unpack[LoadOptions],
    ) -> None:
        if keep_in_fp32_modules:
            _warn_once(
                "CrossEncoder(keep_in_fp32_modules=...)",
                "CrossEncoder(keep_in_fp32_modules=...) does not apply to an exported artifact: its precision is the "
                "variant's (fp32: `variant='fp32'`)",
            )
        self._activation_fn_arg = activation_fn
        super().__init__(model_name_or_path, **options)
        if max_length is not None:
            self.max_seq_length = max_length
        if num_labels is not None and num_labels != self.num_labels:
            # sentence-transformers sizes a new head with it; an artifact's head was exported, with its labels
            raise InputError(
                f"num_labels={num_labels!r}: the artifact's classifier head has {self.num_labels} label(s) "
                f"{list(self.labels)}; leave num_labels out (a head of another size needs training, then an export)"
            )

    def _configure(self) -> None:
        try:
            head = ClassifierHeadSpec.from_dict(self.manifest.stages["classifier"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(
                f"{self.manifest.root}: manifest stages have no valid 'classifier' head; re-create the artifact "
                "with `fastembed-rt export MODEL OUT_DIR --task cross-encoder`"
            ) from None
        self._head = head
        self._num_labels = head.num_labels
        self.labels: tuple[str, ...] = head.label_names()  # the model's id2label, in id order
        self._fused = head.activation
        fn = self._activation_fn_arg
        self.activation_fn = (head.default_activation or self._fused) if fn is None else fn

    def _pool_load(self) -> dict[str, Any]:
        return {"activation_fn": self.activation_fn}

    def _saved_manifest(self) -> Manifest:
        """The manifest with ``activation_fn`` as predict's default, as sentence-transformers saves it in its config:
        a name or an activation module. Any other callable cannot be written: refused, not dropped (the copy would
        score with another activation, and a warning is easily missed)."""
        head = self._head
        name = _activation_name(self.activation_fn)
        if name is None:
            raise InputError(
                f"activation_fn {self.activation_fn!r} cannot be saved in an artifact (only identity, sigmoid or "
                "softmax can be): set model.activation_fn to one of them before saving, and pass this activation_fn "
                "when loading the copy"
            )
        head = dataclasses.replace(head, default_activation=name)
        return dataclasses.replace(self.manifest, stages={**self.manifest.stages, "classifier": head.to_dict()})

    def _warm_up(self) -> None:
        self.predict([("warm-up", "warm-up")], batch_size=1, show_progress_bar=False)

    @property
    def activation_fn(self) -> ActivationLike:
        """``predict``'s default activation: a ``ClassifierActivation`` (a name, callable on logits as
        sentence-transformers' torch module is), or the module or callable it was set to."""
        return self._activation_fn

    @activation_fn.setter
    def activation_fn(self, fn: ActivationLike) -> None:
        name = self._activation_name(fn)  # fails at once on an unknown name
        self._activation_fn = name if isinstance(fn, str) and name is not None else fn

    @property
    def num_labels(self) -> int:
        """The classifier head's labels (read-only, as sentence-transformers': the head was exported)."""
        return self._num_labels

    @property
    def default_activation_function(self) -> ActivationLike:
        """``activation_fn`` under sentence-transformers' former name (a warning once)."""
        _warn_once(
            "CrossEncoder.default_activation_function",
            "CrossEncoder.default_activation_function is a deprecated sentence-transformers name; use activation_fn",
        )
        return self.activation_fn

    @property
    def max_length(self) -> int:
        """``max_seq_length`` under the name sentence-transformers' CrossEncoder uses."""
        return self.max_seq_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.max_seq_length = value

    def _activation_name(self, fn: ActivationLike) -> ClassifierActivation | None:
        name = _activation_name(fn)
        if name is None and not callable(fn):
            raise InputError(f"activation_fn must be a name, an activation module or a callable; got {fn!r}")
        return name

    # -- scoring --------------------------------------------------------------------------------
    @renamed_arguments(sentences="inputs", activation_fct="activation_fn", num_workers=None)
    @tensor_results
    @finished_calls_stats
    def predict(
        self,
        inputs: Sequence[tuple[str, str] | str] | tuple[str, str] | Sequence[list[str]] | list[str] | str,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: ActivationLike | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Any = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
        **kwargs: Any,
    ) -> Any:
        """Score (query, document) pairs, or texts alone (a str: sequence classification), as sentence-transformers.

        Args:
            inputs: one pair, one str, or a list of pairs and str.
            prompt_name / prompt: prepended to the first text of each pair.
            batch_size: most pairs per batch (batches are also cut by a padded-token budget).
            activation_fn: this call's activation (see the class); None: the model's.
            apply_softmax: for ``num_labels > 1``, a softmax over labels after the activation.
            convert_to_numpy: False gives a list of per-pair numpy values.
            convert_to_tensor: the scores as a torch tensor, when the caller has imported torch
                (``fastembed_rt.tensors``; an ``InputError`` otherwise).
            device: None or where the model runs (``self.device``; a call does not move the model), or a list of
                devices: the call runs on a pool of one worker process per device, started and stopped here.
            pool / chunk_size: a pool from ``start_multi_process_pool`` to spread the pairs over, in chunks of
                ``chunk_size`` pairs; the scores are the same, in input order.
            long_inputs: a pair over ``max_length`` tokens is truncated (``longest_first``, as
                sentence-transformers), refused (``"error"``), or (``"chunk"``) scored as the query
                against each window of the document (``chunk_overlap`` tokens shared), keeping the
                best window's scores (of several labels, the row of the window whose top label scores highest).
            truncation_direction: where a truncated pair loses tokens, ``"right"`` (its ends) or ``"left"`` (its
                beginnings); None: the tokenizer's, as sentence-transformers' ``truncation_side``.
            kwargs: sentence-transformers' ``task`` and empty ``processing_kwargs``; others are ignored with a
                warning, as sentence-transformers ignores them.
        Returns:
            float32 ``[n]`` (one label) or ``[n, num_labels]``; one pair gives a scalar or ``[num_labels]``;
            an empty list gives an empty ``(0,)`` array, as sentence-transformers does.
        """
        self._extra_arguments("predict", kwargs, unknown="warn")
        batch_size = check_batch_size(batch_size)
        pairs, single = check_pairs(inputs)
        fn = self.activation_fn if activation_fn is None else activation_fn
        name = self._activation_name(fn)
        self._check_open()
        if not pairs:
            return np.empty((0,), dtype=np.float32) if convert_to_numpy else []
        if pool is not None or isinstance(device, (list, tuple)):
            with self.pool_for_call(pool, device) as running:
                scores = running.map(
                    "_score_items",  # not predict: a chunk of texts alone, e.g. ["a", "b"], would read as one pair
                    pairs,
                    [sum(map(len, pair)) if isinstance(pair, tuple) else len(pair) for pair in pairs],
                    chunk_size=chunk_size,
                    model_settings=self._settings(),
                    show_progress_bar=show_progress_bar,
                    **self._worker_prompt(prompt, prompt_name),
                    batch_size=batch_size,
                    activation_fn=fn if name is None else name,  # a name reaches the workers without torch
                    apply_softmax=apply_softmax,
                    long_inputs=long_inputs,
                    chunk_overlap=chunk_overlap,
                    truncation_direction=truncation_direction,
                )
            return scores[0] if single else (scores if convert_to_numpy else list(scores))
        self.check_device(device)
        scores = self._score_items(
            pairs,
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            activation_fn=fn,
            apply_softmax=apply_softmax,
            long_inputs=long_inputs,
            chunk_overlap=chunk_overlap,
            truncation_direction=truncation_direction,
            show_progress_bar=show_progress_bar,
        )
        if single:
            return scores[0]
        return scores if convert_to_numpy else list(scores)

    def _score_items(
        self,
        items: Sequence[tuple[str, str] | str],
        *,
        prompt_name: str | None,
        prompt: str | None,
        batch_size: int,
        activation_fn: ActivationLike,
        apply_softmax: bool | None,
        long_inputs: str | LongInputs,
        chunk_overlap: int,
        truncation_direction: TruncationDirection | None,
        show_progress_bar: bool | None = False,
    ) -> np.ndarray:
        """``predict``'s scores of items it checked (pairs and texts alone), always a batch: what pool workers run."""
        prepared = self.prepare(
            items,
            prompt_name=prompt_name,
            prompt=prompt,
            truncation_direction=truncation_direction,
            long_inputs=long_inputs,
            chunk_overlap=chunk_overlap,
        )
        return self.score_prepared(
            prepared,
            activation_fn=activation_fn,
            apply_softmax=bool(apply_softmax),
            batch_size=batch_size,
            show_progress_bar=wants_progress(show_progress_bar),
        )

    # -- the two halves of predict, for callers that batch across requests (the server) ----------
    def prepare(
        self,
        pairs: Sequence[tuple[str, str] | str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncation_direction: TruncationDirection | None = None,
        long_inputs: str | LongInputs = LongInputs.TRUNCATE,
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    ) -> Prepared:
        """Tokenize (query, document) pairs together, the prompt before each query (first half of ``predict``).

        A single str item is scored alone (sequence classification), with the prompt before it.
        ``long_inputs`` / ``chunk_overlap``: as ``predict``.
        """
        policy = long_inputs_policy(long_inputs)
        chunk_overlap = check_overlap(chunk_overlap)
        resolved = self._resolve_prompt(prompt, prompt_name)
        if policy is LongInputs.CHUNK and resolved:
            # the windows take the prompt themselves: a text scored alone gets it in every window (given as part of
            # the text, only the first window had it); a pair's query carries it whole into each window either way
            windowed = self._pipeline.prepare(list(pairs), resolved, truncation_direction, policy, chunk_overlap)
            return dataclasses.replace(windowed, prompt_length=0)  # a head reads every token, prompt or not
        items = with_prompt(pairs, resolved)
        return self._pipeline.prepare(items, None, truncation_direction, policy, chunk_overlap)

    def preprocess(
        self,
        inputs: Sequence[tuple[str, str]] | tuple[str, str] | Sequence[list[str]] | list[str],
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> dict[str, Any]:
        """Padded int64 model inputs of pairs (query and document in one sequence) with the prompt before each query,
        as sentence-transformers' ``preprocess`` (``model_inputs``)."""
        pairs, _ = check_pairs(inputs)
        prepared = self.prepare(pairs, prompt=explicit_prompt(prompt, prompt_name), prompt_name=prompt_name)
        return self.features(prepared, prompt, prompt_name)

    def tokenize(
        self, inputs: Sequence[tuple[str, str]] | tuple[str, str] | Sequence[list[str]] | list[str], **kwargs: Any
    ) -> dict[str, Any]:
        """``preprocess``: sentence-transformers' older name for it."""
        return self.preprocess(inputs, **kwargs)

    def score_prepared(
        self,
        prepared: Prepared,
        *,
        activation_fn: ActivationLike | None = None,
        apply_softmax: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Scores of prepared pairs (second half of ``predict``): float32 ``[n]`` or ``[n, num_labels]``."""
        fn = self.activation_fn if activation_fn is None else activation_fn
        name = self._activation_name(fn)
        output = SCORES if name is self._fused else LOGITS
        raw = np.empty((prepared.rows, self.num_labels), dtype=np.float32)
        for rows, result, _ in self._pipeline.run(
            prepared, batch_size=batch_size, outputs=[output], show_progress_bar=show_progress_bar
        ):
            raw[rows] = result[output]
        if output == SCORES:
            scores = raw
        elif name is not None:
            scores = activate_scores(raw, name)
        else:
            assert callable(fn)
            scores = np.asarray(_call_activation(fn, raw), dtype=np.float32)
        if prepared.windows is not None:  # the best window of each pair, a whole row of one window
            scores = max_pool_scores(scores.reshape(prepared.rows, -1), prepared.windows.owner, len(prepared))
        if self.num_labels == 1 and scores.ndim > 1 and scores.shape[-1] == 1:
            scores = scores[..., 0]  # [n, 1] -> [n], as sentence-transformers squeezes
        if apply_softmax and scores.ndim > 1:
            scores = softmax(scores, axis=1)
        return np.ascontiguousarray(scores, dtype=np.float32)

    @renamed_arguments(
        activation_fct="activation_fn",
        num_workers=None,
        apply_softmax=None,
        convert_to_numpy=None,
        convert_to_tensor=None,
    )
    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: ActivationLike | None = None,
        device: Any = None,
        pool: MultiProcessPool | None = None,
        chunk_size: int | None = None,
        long_inputs: Literal["truncate", "error", "chunk"] = "truncate",
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        truncation_direction: TruncationDirection | None = None,
    ) -> list[RankResult]:
        """Score ``query`` against every document and sort, as sentence-transformers' ``rank`` (its arguments in
        its order; then fastembed-rt's own); ``device``, ``pool``, ``chunk_size``, ``long_inputs``,
        ``chunk_overlap`` and ``truncation_direction`` as ``predict``.

        Returns:
            ``[{"corpus_id": int, "score": float[, "text": str]}]`` by decreasing score (equal scores:
            lower ``corpus_id`` first), at most ``top_k`` long (None: all; larger than the list: all;
            0: none). An empty ``documents`` gives ``[]``.
        Raises:
            InputError: a model with more than one label, a non-str query or document, or a
            ``top_k`` that is not a non-negative int.
        """
        if self.num_labels != 1:
            raise InputError(
                f"rank() only works for models with num_labels=1 (this one has {self.num_labels}); "
                "use predict() with (query, document) pairs instead"
            )
        docs = check_rank_inputs(query, documents, top_k)
        self._check_open()
        if not docs:
            return []
        scores = self.predict(
            [(query, doc) for doc in docs],
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            long_inputs=long_inputs,
            chunk_overlap=chunk_overlap,
            truncation_direction=truncation_direction,
            device=device,
            pool=pool,
            chunk_size=chunk_size,
        ).tolist()
        return rank_results(scores, docs, top_k, return_documents)

    def __repr__(self) -> str:
        return self._describe(num_labels=self.num_labels, activation=self._fused.value)
