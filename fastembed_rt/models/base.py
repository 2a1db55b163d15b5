"""What every model type shares: the one loader, prompts, and the sentence-transformers properties.

``SentenceTransformer``, ``CrossEncoder`` and ``SparseEncoder`` are siblings: each is an
``ArtifactModel`` of one task. Opening one always goes the same way::

    model id or path ─► resolve_artifact ─► load_manifest (task checked)
                      ─► providers.open_graph (provider resolved, variant="auto" per provider,
                         file verified, the variant's engine properties, provider options, fallback)
                      ─► Tokenizer + Pipeline

so a reranker on ``openvino``, an int8 SPLADE model or a refused CUDA fallback behave exactly as
they do for a bi-encoder.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict, TypeVar

import numpy as np

from fastembed_rt.artifact import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    Manifest,
    artifact_files,
    check_contained,
    file_sha256,
    load_manifest,
    manifest_lock,
    resolve_artifact,
    unreadable,
    user_path,
    verify_variant_file,
)
from fastembed_rt.errors import MODEL_CLOSED, ArtifactError, InputError, LongInputError, ProviderError
from fastembed_rt.long_inputs import LongInputs, long_inputs_policy
from fastembed_rt.pipeline import BatchFeeds, EncodeStats, Pipeline, Prepared, check_texts, check_unicode
from fastembed_rt.providers import (
    ExecutionProvider,
    ProviderOptions,
    backend_of,
    open_graph,
    pool_devices,
    provider_for_device,
    runs_on,
    torch_device,
)
from fastembed_rt.providers.threads import available_cpus
from fastembed_rt.tensors import is_torch_dtype
from fastembed_rt.tokenizer import Tokenizer, TruncationDirection, with_prompt

if TYPE_CHECKING:
    from fastembed_rt.pool import MultiProcessPool

__all__ = [
    "DOCUMENT_PROMPT_NAMES",
    "TASK_PROMPT_NAMES",
    "ArtifactModel",
    "LoadOptions",
    "MultiProcessModel",
    "TextEncoder",
    "check_batch_size",
    "check_overlap",
    "check_positive_int",
    "renamed_arguments",
]

_Model = TypeVar("_Model", bound="ArtifactModel")
_F = TypeVar("_F", bound=Callable[..., Any])
logger = logging.getLogger("fastembed_rt")
_warned_renames: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` comes up in this process."""
    if key not in _warned_renames:
        _warned_renames.add(key)
        logger.warning("%s", message)


def renamed_arguments(**renames: str | None) -> Callable[[_F], _F]:
    """Take sentence-transformers' former keyword names, as it does: ``old="new"`` passes the value on as ``new``
    (dropped when the call also gives ``new``), ``old=None`` drops an argument that no longer does anything. Either
    logs a warning once per method and name."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                value = kwargs.pop(old)
                where = f"{method.__qualname__}({old}=...)"
                fix = f"use `{new}` instead" if new else "it has no effect and can be left out"
                _warn_once(where, f"{where}: `{old}` is a deprecated sentence-transformers name; {fix}")
                if new is not None:
                    kwargs.setdefault(new, value)
            return method(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# sentence-transformers' ONNX backend takes ONNX Runtime's provider in ``model_kwargs["provider"]``.
_ORT_PROVIDERS = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
}


def _torch_side_arguments(provider: str | ExecutionProvider, **given: Any) -> str | ExecutionProvider:
    """The provider after sentence-transformers' loading arguments that shape the torch model (its dtype, attention,
    config, tokenizer, model card), which an exported graph has fixed: each given is named in a warning once;
    ``model_kwargs["provider"]`` (an ONNX Runtime provider name) chooses the provider when it is ``"auto"``."""
    model_kwargs = dict(given.get("model_kwargs") or {})
    ort_provider = model_kwargs.pop("provider", None)
    if ort_provider is not None:
        if ort_provider not in _ORT_PROVIDERS:
            raise InputError(
                f"model_kwargs['provider'] {ort_provider!r} is not an ONNX Runtime provider fastembed-rt runs; "
                f"choose one of {sorted(_ORT_PROVIDERS)}, or pass provider='cpu' / 'cuda' / 'openvino' (OpenVINO "
                "runs natively: backend='openvino')"
            )
        if provider == "auto":
            provider = _ORT_PROVIDERS[ort_provider]
    ignored = [f"model_kwargs[{key!r}]" for key in model_kwargs] + [
        name for name, value in given.items() if name != "model_kwargs" and value
    ]
    for name in ignored:
        _warn_once(
            name,
            f"{name} does not apply to an exported artifact: its graph's dtype, attention and weights were fixed at "
            "export; choose variant= (e.g. 'fp16', 'int8') and provider= instead",
        )
    return provider


def _without_model_max_length(kwargs: dict[str, Any] | None) -> tuple[dict[str, Any] | None, int | None]:
    """``kwargs`` without ``model_max_length``, and its value (None: not there)."""
    if not kwargs or "model_max_length" not in kwargs:
        return kwargs, None
    rest = {key: value for key, value in kwargs.items() if key != "model_max_length"}
    return rest, kwargs["model_max_length"]


class DeviceName(str):
    """``model.device``: a device name (``"cpu"``, ``"cuda:0"``) that also answers as a ``torch.device`` does, for
    code written against sentence-transformers (``model.device.type == "cuda"``) without importing torch."""

    __slots__ = ()

    @property
    def type(self) -> str:
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:  # type: ignore[override]  # torch.device's index, in place of str.index
        number = self.partition(":")[2]
        return int(number) if number.isdigit() else None

    # ``model.device == torch.device("cpu")`` (torch.device compares by type and index): True as there. Its hash
    # stays the str's (a torch.device's cannot be matched), so a dict keyed by torch.device still misses it.
    def __eq__(self, other: object) -> bool:
        if type(other).__name__ == "device" and type(other).__module__.split(".")[0] == "torch":
            return str.__eq__(self, str(other))
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__


class ModelCardData:
    """``model.model_card_data``: where sentence-transformers' evaluators (``EmbeddingSimilarityEvaluator``,
    ``InformationRetrievalEvaluator``, ``CrossEncoderRerankingEvaluator``, ...) store their metrics at the end of
    each call, as they do on a sentence-transformers model (they failed here without it). ``push_to_hub`` writes
    its card from the manifest, not from these."""

    def __init__(self) -> None:
        self.eval_results_dict: dict[Any, dict[str, Any]] = {}

    def set_evaluation_metrics(self, evaluator: Any, metrics: dict[str, Any], epoch: int = 0, step: int = 0) -> None:
        """Keep ``evaluator``'s latest ``metrics`` (``epoch`` and ``step`` are training's: there is none here)."""
        del epoch, step
        self.eval_results_dict[evaluator] = dict(metrics)

    def __repr__(self) -> str:
        return f"ModelCardData({len(self.eval_results_dict)} evaluators' metrics)"


def finished_calls_stats(method: _F) -> _F:
    """A model call that fails or is interrupted (Ctrl-C) leaves ``last_encode_stats`` as the last finished call
    left them: a call of several passes (text groups, windows, host stages after the graph) had set a pass's."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = self._pipeline.last_stats
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self._pipeline.last_stats = before
            raise

    return wrapper  # type: ignore[return-value]


# The prompt names ``encode_document`` looks for, in order (sentence-transformers' own list).
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
# The prompt names ``encode_query`` / ``encode_document`` look for, by task.
TASK_PROMPT_NAMES: dict[str, tuple[str, ...]] = {"query": ("query",), "document": DOCUMENT_PROMPT_NAMES}


class LoadOptions(TypedDict, total=False):
    """The keyword arguments every model type takes to open its artifact (see ``ArtifactModel``)."""

    provider: str | ExecutionProvider
    variant: str
    prompts: dict[str, str] | None
    default_prompt_name: str | None
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    token: str | bool | None
    verify: Literal["size", "full"]
    intra_op_threads: int | None
    allow_fallback: bool
    provider_options: ProviderOptions | Mapping[str, Any] | None
    provider_cache_dir: str | os.PathLike[str] | None
    warmup: bool
    device: Any
    backend: Literal["torch", "onnx", "openvino"]
    cache_folder: str | os.PathLike[str] | None
    local_files_only: bool
    trust_remote_code: bool
    model_kwargs: dict[str, Any] | None
    processor_kwargs: dict[str, Any] | None
    config_kwargs: dict[str, Any] | None
    tokenizer_kwargs: dict[str, Any] | None
    model_card_data: Any
    modules: Any
    use_auth_token: str | bool | None


class ArtifactModel:
    """An artifact of one task opened on an execution provider, with its tokenizer and prompts.

    Args:
        model_name_or_path: an artifact directory, or a hub repo id holding one.
        provider: ``"auto"`` (cuda if usable, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"tensorrt"``, ``"openvino"``, ``"openvino:GPU"``, or an engine instance such as
            ``providers.fake.FakeProvider``. A provider that cannot run here raises ``ProviderError``.
        variant: variant name from the manifest; ``"auto"``: on the CPU, the fastest full-precision variant
            the manifest's speed record for this CPU class timed, else the provider's first preferred
            variant present (cpu: optimized, then fp32; cuda: fp16, then fp32; openvino: the OpenVINO IR,
            then fp32); ``"fastest"``: the fastest timed variant within its gate, int8 included
            (``fastembed_rt.speed``). ``variant_reason`` says why the variant was chosen.
        prompts: added to the artifact's prompts (a name it has too takes yours), as in sentence-transformers.
        default_prompt_name: replaces the artifact's default prompt name.
        revision / cache_dir / token: for hub repo ids (``huggingface_hub``).
        verify: ``"size"`` (cheap, default) or ``"full"`` (sha256) check of the graph file; ``"full"`` also runs
            the checked files themselves, never an engine's cached copy of them.
        intra_op_threads: CPU threads; default: the CPUs this process may use (affinity and
            cgroup quota), not the host's core count.
        allow_fallback: accept an engine that runs elsewhere than asked (e.g. CUDA → CPU) instead
            of raising ``ProviderError``; ``provider`` then says what runs.
        provider_options: further engine knobs (inter-op threads, spinning, device, engine-specific
            options); the arguments above override its fields.
        provider_cache_dir: where OpenVINO compiled models and TensorRT engines are cached
            (default ``$FASTEMBED_RT_CACHE`` or ``~/.cache/fastembed-rt``).
        warmup: run one short batch at load so the first real call does not pay for first-run setup.
        device / backend: sentence-transformers' names for where and on what the model runs: ``device`` ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``, ``backend`` ``"torch"`` (any provider: the exported graph runs in torch's
            place), ``"onnx"`` or ``"openvino"``; they choose the provider when it is ``"auto"`` and must agree with
            one named (``providers.provider_for_device``).
        cache_folder / local_files_only: sentence-transformers' names for the hub cache folder (as ``cache_dir``;
            default, as there, ``$SENTENCE_TRANSFORMERS_HOME``, else huggingface_hub's) and for loading from it
            without network access.
        trust_remote_code: accepted for sentence-transformers code; an artifact holds graphs and data, no code to run.
        model_card_data: kept as ``model.model_card_data`` (default: a ``ModelCardData``), which
            sentence-transformers' evaluators write their metrics into.
        model_kwargs / processor_kwargs / config_kwargs / tokenizer_kwargs: accepted for
            sentence-transformers code, with a warning: the export fixed the graph's dtype, attention and weights
            (choose ``variant`` / ``provider``); ``model_kwargs["provider"]``, sentence-transformers' ONNX Runtime
            provider name for ``backend="onnx"``, chooses the provider when it is ``"auto"``.
        modules: refused: an artifact is exported from a saved model, not assembled from modules here.
        use_auth_token: sentence-transformers' former name of ``token``.
    """

    task: ClassVar[str] = ""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        provider: str | ExecutionProvider = "auto",
        variant: str = "auto",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        verify: Literal["size", "full"] = "size",
        intra_op_threads: int | None = None,
        allow_fallback: bool = False,
        provider_options: ProviderOptions | Mapping[str, Any] | None = None,
        provider_cache_dir: str | os.PathLike[str] | None = None,
        warmup: bool = False,
        device: Any = None,
        backend: Literal["torch", "onnx", "openvino"] = "torch",
        cache_folder: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        model_card_data: Any = None,
        modules: Any = None,
        use_auth_token: str | bool | None = None,
    ) -> None:
        del trust_remote_code  # nothing in an artifact runs as code
        if use_auth_token is not None:  # as sentence-transformers takes its former name of token
            if token is not None:
                raise InputError("both `token` and its former name `use_auth_token` are given; pass `token` only")
            _warn_once(
                "use_auth_token", "`use_auth_token` is a deprecated sentence-transformers name; use `token` instead"
            )
            token = use_auth_token
        if modules is not None:
            raise InputError(
                "modules=...: fastembed-rt runs exported artifacts, not models assembled from modules; build it with "
                "sentence-transformers, save it, then `fastembed-rt export SAVED_DIR OUT_DIR`"
            )
        # The tokenizer's length is the one tokenizer setting a model still takes (sentence-transformers' max_seq_length
        # follows it): kept for after the load, not warned about as the rest.
        processor_kwargs, length = _without_model_max_length(processor_kwargs)
        tokenizer_kwargs, tokenizer_length = _without_model_max_length(tokenizer_kwargs)
        length = tokenizer_length if tokenizer_length is not None else length
        provider = _torch_side_arguments(
            provider,
            model_kwargs=model_kwargs,
            processor_kwargs=processor_kwargs,
            config_kwargs=config_kwargs,
            tokenizer_kwargs=tokenizer_kwargs,
        )
        # what sentence-transformers' evaluators write their metrics into as they finish (theirs, when given)
        self.model_card_data: Any = model_card_data if model_card_data is not None else ModelCardData()
        if model_name_or_path is None:  # os.fspath's TypeError named no argument
            raise InputError("model_name_or_path is None: name an artifact folder or hub id")
        if isinstance(model_name_or_path, str) and not model_name_or_path.strip():  # "" was the current folder
            raise InputError(f"model_name_or_path is empty ({model_name_or_path!r}): name an artifact folder or hub id")
        if verify not in ("size", "full"):  # any other value skipped the sha256 check it may have meant to ask for
            raise InputError(f"verify must be 'size' or 'full', got {verify!r}")
        if provider is None:
            raise InputError("provider=None: pass a provider name ('auto', 'cpu', 'cuda', 'openvino', ...)")
        provider = provider_for_device(provider, device, backend)
        if cache_folder is not None:
            if cache_dir is not None and Path(cache_dir) != Path(cache_folder):
                raise InputError(
                    f"cache_dir={str(cache_dir)!r} and cache_folder={str(cache_folder)!r} disagree; pass one"
                )
            cache_dir = cache_folder
        root = resolve_artifact(
            model_name_or_path, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only
        )
        options = _provider_options(provider_options)
        if intra_op_threads is not None:
            options = replace(options, intra_op_threads=intra_op_threads)
        if allow_fallback:
            options = replace(options, allow_fallback=True)
        if provider_cache_dir is not None:
            options = replace(options, cache_dir=Path(provider_cache_dir))
        # An export --overwrite swaps the folder while we read it: the old manifest with the new graph was a false
        # "corrupt, re-create it" error (or, files of equal size, a silent mix). Read again while the folder at
        # ``root`` changed under the load.
        for attempt in range(3):
            folder = _folder_identity(root)
            try:
                self._read_artifact(root, provider, variant, verify, options)
            except ArtifactError:
                if attempt == 2 or _folder_identity(root) == folder:
                    raise
                continue
            if _folder_identity(root) == folder or attempt == 2:
                break
            self._pipeline.provider.close()
        # As sentence-transformers: prompts given here are merged over the saved ones (theirs win on a shared name);
        # a None is "the saved one" ("" where none is saved): it was kept as None, saved as the text "None"
        saved = self.manifest.tokenizer.prompts
        self.prompts: dict[str, str] = {
            **saved,
            **{name: saved.get(name, "") if text is None else text for name, text in _checked_prompts(prompts).items()},
        }
        self.default_prompt_name = default_prompt_name or self.manifest.tokenizer.default_prompt_name
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise InputError(
                f"default_prompt_name {self.default_prompt_name!r} is not in prompts {sorted(self.prompts)}"
            )
        self._configure()
        if length is not None:
            self.max_seq_length = length
        if warmup:
            self._warm_up()
            self._pipeline.last_stats = EncodeStats()

    def _read_artifact(
        self, root: Path, provider: str | ExecutionProvider, variant: str, verify: str, options: ProviderOptions
    ) -> None:
        """The manifest, tokenizer and graph of the artifact at ``root``, checked, and the engine opened."""
        self.manifest: Manifest = load_manifest(root)
        if self.manifest.task != self.task:
            raise ArtifactError(
                f"{root} holds a {self.manifest.task!r} model; {type(self).__name__} loads {self.task!r} artifacts"
            )
        # How to open this model again (``to``, worker processes of a pool): the resolved artifact, no hub access.
        self._load: dict[str, Any] = {
            "model_name_or_path": root,
            "provider": provider,
            "variant": variant,
            "verify": verify,
            "provider_options": options,
        }
        self._tokenizer = Tokenizer(root, self.manifest.tokenizer)
        if problem := self._seq_length_problem(self.manifest.tokenizer.max_seq_length):  # an edited manifest
            raise ArtifactError(
                f"{root / MANIFEST_FILE}: tokenizer.max_seq_length {self.manifest.tokenizer.max_seq_length} {problem}"
            )
        recorded = self.manifest.tokenizer.sha256
        if (
            verify == "full"
            and recorded is not None
            and file_sha256(tokenizer := root / self.manifest.tokenizer.file) != recorded
        ):
            raise ArtifactError(
                f"{tokenizer} is not the file the artifact was exported with (sha256 differs from the manifest's "
                f"{recorded[:12]}…); restore the artifact's own tokenizer.json"
            )
        self._open_engine(provider)

    def _open_engine(self, provider: str | ExecutionProvider) -> None:
        """Open the graph on ``provider`` (the variant, options and file check this model was loaded with) behind a
        new pipeline; nothing changes if it fails."""
        load = self._load
        engine, choice = open_graph(
            self.manifest, provider, load["variant"], load["provider_options"], verify_full=load["verify"] == "full"
        )
        self.variant = choice.variant.name
        self.variant_reason = choice.reason
        self._pipeline = Pipeline(self.manifest, self._tokenizer, engine)
        self.provider = engine.name
        load["provider"] = provider

    def to(self: _Model, *args: Any, **kwargs: Any) -> _Model:
        """Run on sentence-transformers' ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``): where the model runs
        already, nothing happens; otherwise the artifact's graph opens on that device's provider (``variant="auto"``
        chooses again for it), the old engine is closed, and the tokenizer, prompts and token budget stay; the batch
        memory bound becomes the new engine's default. Returns the model, as ``torch.nn.Module.to`` does, whose
        forms it takes: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(device=..., dtype=...)``; a
        dtype casts nothing (as ``half()``; float32 says nothing, as ``float()``)."""
        device, dtype = _to_arguments(args, kwargs)
        if dtype is not None and str(dtype) != "torch.float32":
            self._precision_is_the_variants(f"to({dtype})")
        if device is None or runs_on(self.device, device):
            return self
        old = self._pipeline
        self._open_engine(provider_for_device("auto", device))
        self._pipeline.feeds.per_call_inputs |= old.feeds.per_call_inputs
        self._pipeline.token_budget = old.token_budget
        old.provider.close()
        return self

    def get_backend(self) -> str:
        """The engine that runs the model, in sentence-transformers' backend names: ``"onnx"`` (ONNX Runtime) or
        ``"openvino"``; an engine instance outside the registry: its name."""
        try:
            return backend_of(self.provider)
        except ProviderError:
            return self.provider

    def eval(self: _Model) -> _Model:
        """The model, unchanged: it only ever runs inference (sentence-transformers code calls ``model.eval()``)."""
        return self

    @property
    def training(self) -> bool:
        """False: the model only runs inference (``torch.nn.Module.training``)."""
        return False

    def train(self: _Model, mode: bool = True) -> _Model:
        """``train(False)``: the model, unchanged (as ``eval()``); ``train()``: an ``InputError``, an exported graph
        cannot be trained (train the PyTorch model, then export it)."""
        if mode:
            raise InputError(
                "an exported graph runs inference only: train the sentence-transformers model, then export it again"
            )
        return self

    def half(self: _Model) -> _Model:
        """The model, unchanged, with a warning once: the precision is the variant's, chosen at load
        (``variant="fp16"`` on a GPU, ``"int8"``, ...), not cast here as torch casts its weights."""
        return self._precision_is_the_variants("half()")

    def bfloat16(self: _Model) -> _Model:
        """As ``half()``: the precision is the variant's (``variant="openvino-bf16"``)."""
        return self._precision_is_the_variants("bfloat16()")

    def float(self: _Model) -> _Model:
        """The model, unchanged: the variant's precision (float32 for ``fp32``) is what the graph computes in."""
        return self

    def _precision_is_the_variants(self: _Model, call: str) -> _Model:
        _warn_once(
            f"cast:{call}",
            f"{type(self).__name__}.{call} changes nothing: an artifact's precision is its variant's "
            f"(this model runs {self.variant!r}); load another with variant=, e.g. 'fp16' on a GPU or 'int8'",
        )
        return self

    def save(
        self,
        path: str | os.PathLike[str],
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
        *,
        variants: Literal["all", "loaded"] | Sequence[str] = "all",
    ) -> Path:
        """Write the artifact to the folder ``path`` (created if needed), loadable from there offline, as
        sentence-transformers' ``save`` writes a model: the manifest, tokenizer and calibration files and the graphs
        of ``variants``: ``"all"`` (a hub artifact's variants not downloaded yet are fetched first), ``"loaded"``
        (the one this model runs) or a list of names; the manifest lists those. The model's ``max_seq_length``,
        ``prompts`` and ``default_prompt_name`` (and its type's own settings: ``similarity_fn_name``, a
        ``SentenceTransformer``'s ``truncate_dim``, a ``SparseEncoder``'s ``max_active_dims``, a ``CrossEncoder``'s
        ``activation_fn``) are saved as set. Files are checked against the
        manifest's sizes and copied (never linked into a hub cache). The sentence-transformers arguments
        (``model_name``, model card, datasets, serialization) have nothing to act on in an artifact.
        Returns the folder.

        Raises:
            InputError: ``path`` is the artifact itself, or ``variants`` names one the artifact lacks.
        """
        if not os.fspath(path):  # "" resolved to the working directory: an unset variable wrote the artifact there
            raise InputError("save(path): an empty path names no folder")
        if self.default_prompt_name is not None and self.default_prompt_name not in (self.prompts or {}):
            raise InputError(  # the copy would not load
                f"save: default_prompt_name {self.default_prompt_name!r} is not in prompts {sorted(self.prompts or {})}"
            )
        target = user_path(path).resolve()
        if target == self.manifest.root.resolve():
            raise InputError(f"save(path): {target} is the artifact this model was loaded from")
        known = {variant.name: variant for variant in self.manifest.variants}
        if variants == "all":
            chosen = list(self.manifest.variants)
        elif variants == "loaded":
            chosen = [known[self.variant]]
        else:
            names = [variants] if isinstance(variants, str) else list(variants)
            missing = [name for name in names if name not in known]
            if missing or not names:
                raise InputError(
                    f"save(variants=...) names {missing or 'no variant'}; this artifact has {', '.join(known)} "
                    "(or pass 'all' / 'loaded')"
                )
            chosen = [known[name] for name in dict.fromkeys(names)]
        for variant in chosen:
            verify_variant_file(self.manifest, variant)  # a hub artifact's missing variant is downloaded here
        names = artifact_files(self.manifest, chosen)[1:]  # every file but the manifest, written last
        # The source is checked first, and blamed for what it lacks: a tokenizer file the loader does without
        # (tokenizer_config.json) is left out of the copy; any other missing file is the artifact's fault.
        optional = set(self.manifest.tokenizer.files) - {self.manifest.tokenizer.file}
        absent = {name for name in names if not (self.manifest.root / name).is_file()}
        if absent - optional:
            lacking = self.manifest.root / sorted(absent - optional)[0]
            raise ArtifactError(
                f"save: {lacking} is missing from the artifact this model was loaded from; restore it, or export the "
                "model again (`fastembed-rt export MODEL OUT_DIR`)"
            )
        names = [name for name in names if name not in absent]
        for name in names:  # a link out of the artifact would copy (and push_to_hub upload) a file it does not hold
            check_contained(self.manifest.root / name, self.manifest.root)
        # Checked before anything is written: a file where the copy needs a folder (or the folder itself).
        folders = {target, *(target / Path(name).parent for name in names)}
        for folder in sorted(folders):
            if folder.exists() and not folder.is_dir():
                raise InputError(f"save(path): {folder} is a file where the copy needs a folder; choose another path")
        for name in [*names, MANIFEST_FILE]:  # and the other way: a folder where a file goes (rename(2) cannot)
            if (target / name).is_dir() and not (target / name).is_symlink():
                raise InputError(f"save(path): {target / name} is a folder where the copy writes a file")
        # the settings a user changed after loading go with the model, as sentence-transformers saves them
        tokenizer = replace(
            self.manifest.tokenizer,
            files=tuple(name for name in self.manifest.tokenizer.files if name not in absent),
            max_seq_length=self.max_seq_length,
            # a None set after loading is no prompt (as sentence-transformers reads one), not the text "None"
            prompts={name: "" if text is None else text for name, text in self.prompts.items()},
            default_prompt_name=self.default_prompt_name,
        )
        saved = replace(  # with this version's settings (truncate_dim, ...): as the schema that has them
            self._saved_manifest(),
            schema_version=SCHEMA_VERSION,
            root=target,
            variants=tuple(chosen),
            tokenizer=tokenizer,
        )
        # Each file (the manifest last) is copied under a temporary name beside its place and moved there once every
        # copy is whole: a failed copy (a full disk) leaves an artifact saved there before as it was, not a mix.
        staged: list[tuple[Path, Path]] = []
        created = not target.exists()
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                destination = target / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                # of this process and thread: two threads saving one model there staged under one name
                staging = f".{destination.name}.{os.getpid()}.{threading.get_ident()}.saving"
                staged.append((destination.with_name(staging), destination))
                shutil.copyfile(self.manifest.root / name, staged[-1][0])  # follows a hub cache's links to the blobs
            staged.append((saved.write_staged(), target / MANIFEST_FILE))
        except OSError as exc:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)
            if created:  # the folder this call made holds nothing now
                shutil.rmtree(target, ignore_errors=True)
            failed, source = Path(exc.filename or target), self.manifest.root
            if isinstance(exc, PermissionError) and failed.is_relative_to(source) and not failed.is_relative_to(target):
                raise unreadable(failed, source, exc) from exc  # a file it copies from: the source's fault
            raise InputError(
                f"save(path): cannot write {failed} ({exc.strerror or exc}); no file in {target} was "
                "changed: choose a path this user can write, with room for the artifact"
            ) from exc
        try:
            with manifest_lock(target):  # another save there (a thread, a process) moves its files before or after
                for temporary, destination in staged:
                    os.replace(temporary, destination)
        except OSError as exc:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)
            raise InputError(f"save(path): cannot move the copy into {target} ({exc.strerror or exc})") from exc
        return target

    def save_pretrained(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Path:
        """``save``: sentence-transformers' other name for it (its positional arguments too)."""
        return self.save(path, *args, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        local_model_path: str | os.PathLike[str] | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        *,
        variants: Literal["all", "loaded"] | Sequence[str] = "all",
    ) -> str:
        """Upload the artifact, as ``save(variants=...)`` writes it, to the hub repo ``repo_id`` (created, private
        when ``private``; an existing one only with ``exist_ok`` or ``create_pr``), as sentence-transformers'
        ``push_to_hub`` (huggingface_hub may split a large upload into several commits). A model card
        (``README.md``: the source model, how to load it, each variant's fidelity) is added unless the repo has
        one already (``replace_model_card=True`` replaces it). ``local_model_path``: upload that folder instead.
        ``revision``: the branch to commit to (created if missing); ``create_pr``: open a pull request instead.
        Loading it back: ``SentenceTransformer(repo_id)``. Returns the commit's URL (the pull request's with
        ``create_pr``).

        Raises:
            InputError: as ``save``; ArtifactError: the hub refused (repo, token, network), with its message.
        """
        import tempfile

        from huggingface_hub import HfApi

        from fastembed_rt.model_card import model_card

        del safe_serialization, train_datasets  # nothing to act on in an artifact
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="fastembed-rt-push-") as tmp:
            folder = Path(local_model_path) if local_model_path is not None else self.save(tmp, variants=variants)
            try:
                repo_id = api.create_repo(repo_id, private=private, exist_ok=exist_ok or create_pr).repo_id
                if revision is not None:
                    api.create_branch(repo_id, branch=revision, exist_ok=True)
                readme = folder / "README.md"
                if local_model_path is None and (
                    replace_model_card or not api.file_exists(repo_id, "README.md", revision=revision)
                ):
                    readme.write_text(model_card(load_manifest(folder), repo_id), encoding="utf-8")
                commit = api.upload_folder(
                    repo_id=repo_id,
                    folder_path=folder,
                    commit_message=commit_message or f"Add fastembed-rt {type(self).__name__} artifact",
                    revision=revision,
                    create_pr=create_pr,
                )
            except Exception as exc:  # huggingface_hub's HTTP and connection errors (requests', httpx's by version)
                what = local_model_path if local_model_path is not None else self.manifest.root
                raise ArtifactError(
                    f"could not push {what} to hub repo {repo_id!r}: {type(exc).__name__}: {exc}"
                ) from exc
        return str(commit.pr_url if create_pr else commit.commit_url)

    def save_to_hub(
        self,
        repo_id: str,
        organization: str | None = None,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        local_model_path: str | os.PathLike[str] | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
    ) -> str:
        """sentence-transformers' deprecated name of ``push_to_hub`` (logged as such, as there), with its
        ``organization``: put before a ``repo_id`` without one; a ``repo_id`` of another organization is refused."""
        logger.warning("save_to_hub is deprecated (as in sentence-transformers): use push_to_hub")
        if organization:
            if "/" not in repo_id:
                repo_id = f"{organization}/{repo_id}"
            elif repo_id.split("/")[0] != organization:
                raise InputError(
                    f"organization {organization!r} is not the one repo_id {repo_id!r} names; pass repo_id alone"
                )
        return self.push_to_hub(
            repo_id,
            token=token,
            private=private,
            safe_serialization=safe_serialization,
            commit_message=commit_message,
            local_model_path=local_model_path,
            exist_ok=exist_ok,
            replace_model_card=replace_model_card,
            train_datasets=train_datasets,
        )

    def _saved_manifest(self) -> Manifest:
        """The manifest ``save`` writes, before its root, variants and tokenizer length are set: a model type with
        settings of its own (``SentenceTransformer.similarity_fn_name``) puts them in."""
        return self.manifest

    def cpu(self: _Model) -> _Model:
        """``to("cpu")``, as ``torch.nn.Module.cpu``."""
        return self.to("cpu")

    def cuda(self: _Model, device: int | str | None = None) -> _Model:
        """``to("cuda")`` (``device``: a GPU index or a device name), as ``torch.nn.Module.cuda``."""
        if device is None:
            return self.to("cuda")
        return self.to(f"cuda:{device}" if isinstance(device, int) else device)

    @property
    def modalities(self) -> list[str]:
        """What the model takes, in sentence-transformers' names: ``["text"]`` (exported models are text models)."""
        return ["text"]

    def supports(self, modality: str | tuple[str, ...]) -> bool:
        """Whether the model takes ``modality`` (sentence-transformers' ``supports``): only ``"text"``."""
        return modality == "text"

    def _extra_arguments(self, method: str, extra: dict[str, Any], *, unknown: Literal["error", "warn"]) -> None:
        """sentence-transformers' rule for ``encode``'s keyword arguments beyond its own: ``task`` (a Router model's
        route; a model of one route ignores it, and those with routes take it as an argument) and ``processing_kwargs``
        pass, any other
        is a ``ValueError`` naming it (``unknown="warn"``: ignored with a warning, as its ``CrossEncoder.predict``
        ignores them). ``processing_kwargs`` that would change the tokenizer's settings are refused: they were fixed
        at export."""
        extra.pop("task", None)
        if processing := extra.pop("processing_kwargs", None):
            raise InputError(
                f"processing_kwargs={processing!r}: the tokenizer's settings were fixed at export; set "
                "model.max_seq_length for max_length, and truncation_direction= for the side truncation cuts"
            )
        if not extra:
            return
        names = sorted(extra)
        if unknown == "warn":
            _warn_once(f"{method}:{names}", f"{type(self).__name__}.{method}() ignores keyword arguments {names}")
            return
        raise InputError(
            f"{type(self).__name__}.{method}() has been called with additional keyword arguments that this model does "
            f"not use: {names}. As per get_model_kwargs(), this model does not accept any additional keyword arguments"
        )

    def get_model_kwargs(self) -> list[str]:
        """Model-specific keyword arguments of ``encode`` / ``predict`` beyond the common ones: none (a model whose
        forward pass takes a ``task`` is exported per task)."""
        return []

    def model_inputs(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """The tokenizer's padded int64 ``input_ids``, ``token_type_ids`` (when the model takes them) and
        ``attention_mask`` of prepared inputs: what sentence-transformers' ``preprocess`` / ``tokenize`` give."""
        encoded = prepared.encoded
        padded = BatchFeeds(self.manifest)  # padded even where the engine takes its batches packed
        padded.per_call_inputs = self._pipeline.feeds.per_call_inputs
        feeds = padded(encoded.ids, encoded.type_ids, prepared.prompt_length, encoded.attention)
        return {name: feeds[name] for name in ("input_ids", "token_type_ids", "attention_mask") if name in feeds}

    def features(self, prepared: Prepared, prompt: str | None, prompt_name: str | None) -> dict[str, Any]:
        """``model_inputs`` with what sentence-transformers' ``preprocess`` adds: ``modality``, and for a call
        with a prompt the prompt's token count ``prompt_length`` (an int, its leading special tokens included)."""
        features: dict[str, Any] = {**self.model_inputs(prepared), "modality": "text"}
        used = self._resolve_prompt(prompt, prompt_name) if prompt or prompt_name else None
        if used:  # an empty prompt adds no tokens, and no prompt_length there either
            features["prompt_length"] = self._tokenizer.prompt_length(used)
        return features

    def _configure(self) -> None:
        """Read the task's own manifest stages (heads); called before any warm-up."""

    def _warm_up(self) -> None:
        """Run one short input through the graph."""
        raise NotImplementedError

    # -- properties sentence-transformers users reach for ---------------------------------------
    @property
    def max_seq_length(self) -> int:
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        value = check_positive_int("max_seq_length", value)
        problem = self._seq_length_problem(value)
        if problem:
            raise InputError(f"max_seq_length {value} {problem}")
        self._tokenizer.max_seq_length = value

    def _seq_length_problem(self, value: int) -> str | None:
        """Why this model cannot run texts of ``value`` tokens, or None."""
        # At or below the special tokens the tokenizer cannot truncate (it silently kept whole texts, which then
        # failed inside the graph): room for one token of a text, or of each text of a cross-encoder's pair.
        pair = self.task == "cross-encoder"
        specials = self._tokenizer.special_count(pair)
        least = specials + (2 if pair else 1)
        if value < least:
            return (
                f"leaves no room for text: this tokenizer adds {specials} special tokens to each "
                f"{'pair' if pair else 'text'}; use at least {least}"
            )
        backbone = self.manifest.source.get("backbone") or {}
        # max_positions: the tokens the table holds (RoBERTa's family counts after its padding id: XLM-R's 514
        # positions hold 512); artifacts exported before it was recorded give the table's size.
        positions = backbone.get("max_positions", backbone.get("max_position_embeddings"))
        # Past its position table a model either fails inside the graph (learned positions: ONNX Runtime's raw
        # broadcast or index error at the first long text) or reads positions it never learned (rotary): refused.
        if isinstance(positions, int) and not isinstance(positions, bool) and 0 < positions < value:
            return (
                f"is more than the {positions} tokens this model's position table holds "
                f"({self.manifest.source.get('architecture', 'its')} backbone); use at most {positions}, or "
                "long_inputs='chunk' for longer texts"
            )
        return None

    @property
    def device(self) -> DeviceName:
        """Where the model runs, in sentence-transformers' device names: ``"cpu"`` or ``"cuda:N"`` (an engine on a
        device torch has no name for: its provider name, e.g. ``"openvino:GPU.0"``); a str that also has a
        ``torch.device``'s ``type`` and ``index``."""
        engine = self._pipeline.provider
        try:
            return DeviceName(torch_device(engine.name, getattr(engine, "device", None)))
        except ProviderError:  # an engine instance outside the registry (``FakeProvider``)
            return DeviceName(engine.name)

    def check_device(self, device: Any) -> None:
        """An ``InputError`` unless a call's ``device`` (sentence-transformers' per-call argument) is None or where
        the model runs: a call does not move the model (``to`` does); a ``ProviderError`` once the model is closed (an
        empty input answered one, where the docs say every call raises)."""
        self._check_open()
        if device is None:
            return
        if not runs_on(actual := self.device, device):
            raise InputError(
                f"this model runs on {actual!r}, not on device={device!r}; a call does not move the model: load it "
                f"with {type(self).__name__}(..., device={str(device)!r}) or call model.to({str(device)!r}) first"
            )

    @property
    def tokenizer(self) -> Any:
        """The Rust ``tokenizers.Tokenizer`` in use."""
        return self._tokenizer.backend

    @property
    def untruncated_tokenizer(self) -> Any:
        """The Rust ``tokenizers.Tokenizer`` without truncation or padding: whole-text tokens and offsets."""
        return self._tokenizer.untruncated

    @property
    def last_encode_stats(self) -> EncodeStats:
        """Inputs, truncated inputs, batches, padding and per-stage seconds of this thread's most recent call (threads
        sharing the model each read their own; read it in the thread that made the call: from asyncio, inside the
        function ``asyncio.to_thread`` runs)."""
        return self._pipeline.last_stats

    def get_max_seq_length(self) -> int:
        return self.max_seq_length

    @property
    def token_budget(self) -> int:
        """Most padded tokens in one graph run (rows are cut into batches by it and by ``batch_size``)."""
        return self._pipeline.token_budget

    @token_budget.setter
    def token_budget(self, value: int) -> None:
        self._pipeline.token_budget = check_positive_int("token_budget", value)

    @property
    def max_batch_bytes(self) -> int:
        """Most activation bytes one graph run may need, estimated from the backbone's shape (default 64 MiB on
        the CPU, 1 GiB on a GPU: ``fastembed_rt.providers.max_batch_bytes``); runs that go at once on the engine's
        streams (``ProviderOptions.streams``) share it.

        Long inputs run in smaller batches under it: attention holds heads × length² scores per row.
        Artifacts exported before the manifest recorded the backbone's shape are bounded by ``token_budget`` only.
        """
        return self._pipeline.max_batch_bytes

    @max_batch_bytes.setter
    def max_batch_bytes(self, value: int) -> None:
        self._pipeline.max_batch_bytes = check_positive_int("max_batch_bytes", value)

    def count_tokens(
        self, items: Sequence[str | tuple[str, str]], *, prompt_name: str | None = None, prompt: str | None = None
    ) -> list[int]:
        """Tokens of each text or pair with the call's prompt and special tokens, before any truncation; a str is one
        text, as ``encode`` takes it (it was counted character by character)."""
        from fastembed_rt.models.cross_encoder import check_item

        if isinstance(items, str):
            items = [items]
        if items is None or not isinstance(items, Iterable):
            raise InputError(f"items must be a str, a pair or a list of them, got {type(items).__name__}")
        checked = [check_item(item, f"items[{i}]") for i, item in enumerate(items)]  # a lone surrogate: named
        return self._tokenizer.count_tokens(with_prompt(checked, self._resolve_prompt(prompt, prompt_name)))

    # -- prompts --------------------------------------------------------------------------------
    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        """The prompt text of a call: ``prompt``, else the named one, else the default prompt."""
        if prompt is not None and prompt_name is not None:  # sentence-transformers' rule and warning
            _warn_once(
                "prompt-and-prompt-name",
                "Provide either a `prompt`, a `prompt_name`, or neither, but not both. "
                "Ignoring the `prompt_name` in favor of `prompt`.",
            )
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InputError(f"prompt must be a str, got {type(prompt).__name__}")
            check_unicode(prompt, "prompt")  # as texts: a lone surrogate was the tokenizer's bare TypeError
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

    def _worker_prompt(self, prompt: str | None, prompt_name: str | None) -> dict[str, Any]:
        """The call's prompt as a pool's workers get it: resolved here, as text. They hold the prompts of the pool's
        start: a prompt added or changed since was refused there (sentence-transformers' pool takes it)."""
        return {"prompt": self._resolve_prompt(prompt, prompt_name) or "", "prompt_name": None}

    def _with_prompt_name(self, kwargs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        """``kwargs`` with the first of ``names`` this model has as ``prompt_name``, unless the call chose one
        (a ``None`` prompt or prompt name chooses nothing, as in sentence-transformers)."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            for name in names:
                if name in self.prompts:
                    return {**kwargs, "prompt_name": name}
        return kwargs

    def close(self) -> None:
        """Release the engine (sessions, compiled models)."""
        self._pipeline.provider.close()
        self._closed = True

    def _check_open(self) -> None:
        """A ``ProviderError`` once ``close`` ran (as a call on the closed engine raises)."""
        if getattr(self, "_closed", False):
            raise ProviderError(MODEL_CLOSED)

    def _describe(self, **fields: object) -> str:
        details = "".join(f", {key}={value!r}" for key, value in fields.items())
        closed = ", closed" if getattr(self, "_closed", False) else ""
        return (
            f"{type(self).__name__}({str(self.manifest.root)!r}, provider={self.provider!r}, "
            f"variant={self.variant!r}{details}, max_seq_length={self.max_seq_length}{closed})"
        )

    def __repr__(self) -> str:
        return self._describe()


def _reopen(kind: type[_Model], load: dict[str, Any], settings: dict[str, Any]) -> _Model:
    """A pickled model (``MultiProcessModel.__reduce__``), opened again and set as it was."""
    model = kind(**load)
    for name, value in settings.items():
        setattr(model, name, value)
    return model


class MultiProcessModel(ArtifactModel):
    """A model whose calls can also run on worker processes, each with its own engine and share of the CPUs
    (``start_multi_process_pool``; ``fastembed_rt.pool``)."""

    def _pool_load(self) -> dict[str, Any]:
        """The model type's own settings as they stand, by attribute (``truncate_dim``, ``activation_fn``, ...)."""
        return {}

    def _settings(self) -> dict[str, Any]:
        """What a copy of this model (a pool's worker, an unpickled one) sets once opened, in order, so that it runs
        as this one does now: a setting the user cleared to None stays None (passed to the constructor, None means
        the artifact's default)."""
        return {
            "max_seq_length": self.max_seq_length,
            "prompts": dict(self.prompts),
            "default_prompt_name": self.default_prompt_name,
            **self._pool_load(),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickling (``pickle``, ``cloudpickle``, ``copy.deepcopy``, a process pool's or joblib's arguments) carries
        how to open the model, not its engine: the copy opens the same artifact folder again (by its absolute path;
        a hub artifact: its cached snapshot, no download) with its own engine, and this model's prompts, default
        prompt, ``max_seq_length`` and settings, as a sentence-transformers model pickles whole. The folder must be
        there where the copy is loaded."""
        if not isinstance(self._load["provider"], str):
            raise TypeError(f"{type(self).__name__} opened on an engine instance cannot be pickled; open it by name")
        # the memory bounds too (a pool's workers keep their own device's defaults)
        bounds = {"token_budget": self.token_budget, "max_batch_bytes": self.max_batch_bytes}
        return _reopen, (type(self), dict(self._load), {**self._settings(), **bounds})

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
            A pool for the model's calls (``pool=pool``); stop it with ``stop_multi_process_pool`` (or use it as a
            context manager).
        """
        self._check_open()
        if not isinstance(self._load["provider"], str):
            raise ProviderError(
                f"a multi-process pool loads the model again in each worker; provider {self.provider!r} is an "
                "engine instance, pass a provider name instead"
            )
        devices = (
            check_device_list(target_devices) if target_devices is not None else pool_devices(self._running_provider())
        )
        threads = intra_op_threads or max(1, available_cpus() // max(1, len(devices)))
        options: ProviderOptions = self._load["provider_options"]
        loads = [
            {
                **self._load,
                "provider": device,
                "provider_options": replace(options, intra_op_threads=threads, device=None),
            }
            for device in devices
        ]
        from fastembed_rt.pool import MultiProcessPool  # multiprocessing: only a process that starts a pool pays for it

        return MultiProcessPool(type(self), loads, self._settings())

    @staticmethod
    def stop_multi_process_pool(pool: MultiProcessPool) -> None:
        """Stop the workers of ``pool`` and free its queues."""
        pool.close()

    def _running_provider(self) -> str:
        """The provider name this model was opened with, or after an allowed fallback what really runs."""
        requested = str(self._load["provider"])
        return requested if requested.partition(":")[0] == self.provider else self.provider

    def _provider_on(self, device: Any) -> str:
        """The provider for a pool worker on sentence-transformers' ``device``: this model's own where it runs there,
        else what ``device=`` would open."""
        if runs_on(self.device, device):
            return self._running_provider()
        return str(provider_for_device("auto", device))

    @contextmanager
    def pool_for_call(self, pool: MultiProcessPool | None, device: Any) -> Iterator[MultiProcessPool]:
        """The pool a call with ``pool=`` or a list of devices (sentence-transformers' ``device=[...]``) runs on:
        ``pool`` (a single ``device`` must then be where this model runs), or one worker per listed device, started
        for the call and stopped after it."""
        self._check_open()  # a closed model's workers would load the artifact again and answer
        if isinstance(device, (list, tuple)):
            if pool is not None:
                raise InputError("pass pool= or a list of devices, not both")
            started = self.start_multi_process_pool([self._provider_on(item) for item in device])
            try:
                yield started
                self._pipeline.last_stats = started.last_stats
            finally:
                self.stop_multi_process_pool(started)
            return
        if pool is None:
            raise InputError("pool_for_call needs pool= or a list of devices")
        from fastembed_rt.pool import MultiProcessPool  # loaded already where a pool exists

        runs = getattr(pool, "model_type", None)
        if not isinstance(pool, MultiProcessPool) or not (
            issubclass(type(self), runs) or issubclass(runs, type(self))  # type: ignore[arg-type]
        ):
            made_by = getattr(getattr(pool, "model_type", None), "__name__", type(pool).__name__)
            raise InputError(
                f"pool= takes a pool from this {type(self).__name__}'s start_multi_process_pool(); this one runs "
                f"{made_by} workers"
            )
        mine = Path(os.path.realpath(self._load["model_name_or_path"]))
        if pool.artifact != mine:  # another model's pool answered with that model's rows
            raise InputError(
                f"pool= runs workers of the artifact {pool.artifact}, not of this model's {mine}: start a pool from "
                "this model"
            )
        self.check_device(device)
        yield pool
        self._pipeline.last_stats = pool.last_stats  # the workers' stats of this call, summed


class TextEncoder(ArtifactModel):
    """A model that encodes single texts (bi-encoders, sparse encoders): ``encode_query`` / ``encode_document``."""

    encode: Callable[..., Any]

    def task_prompt_name(self, task: str | None, prompt_name: str | None = None) -> str | None:
        """The prompt name a call for ``task`` uses, as ``encode_query`` / ``encode_document`` choose it:
        ``prompt_name`` if given, else the task's prompt when the model has one (None: the default prompt)."""
        chosen = self._with_prompt_name({"prompt_name": prompt_name}, TASK_PROMPT_NAMES.get(task or "", ()))
        return chosen.get("prompt_name")

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
    ) -> Prepared:
        """Tokenize ``sentences`` with the call's prompt (the first half of ``encode``).

        ``long_inputs``: a text over ``max_seq_length`` tokens is truncated (on ``truncation_direction``,
        default: the model's side; the result's ``truncated`` flags say which), refused, or cut into
        windows overlapping by ``chunk_overlap`` tokens (see ``fastembed_rt.long_inputs``).
        ``token_ids=True``: ``sentences`` are rows of token ids, used as given (no prompt, no special
        tokens added; truncated or refused, never chunked).
        """
        policy = long_inputs_policy(long_inputs)
        chunk_overlap = check_overlap(chunk_overlap)
        if token_ids:
            if policy is LongInputs.CHUNK:
                raise InputError("long_inputs='chunk' needs texts; token id rows can be truncated or refused")
            encoded = self._tokenizer.encode_ids(sentences, truncation_direction)  # type: ignore[arg-type]
            if policy is LongInputs.ERROR and encoded.truncated.any():
                over = np.flatnonzero(encoded.truncated).tolist()
                raise LongInputError({i: len(sentences[i]) for i in over}, self.max_seq_length, "'truncate'")
            return Prepared(encoded)
        texts = check_texts(sentences)
        resolved = self._resolve_prompt(prompt, prompt_name)
        return self._pipeline.prepare(texts, resolved, truncation_direction, policy, chunk_overlap)

    def preprocess(
        self, inputs: str | Sequence[str], prompt: str | None = None, prompt_name: str | None = None
    ) -> dict[str, Any]:
        """Padded int64 model inputs of ``inputs`` with the prompt, as sentence-transformers' ``preprocess``
        (``model_inputs``): the call's ``prompt`` or ``prompt_name`` only, not the model's default prompt, which
        ``encode`` alone applies (there too)."""
        prepared = self.prepare(inputs, prompt=explicit_prompt(prompt, prompt_name), prompt_name=prompt_name)
        return self.features(prepared, prompt, prompt_name)

    def tokenize(self, texts: str | Sequence[str], **kwargs: Any) -> dict[str, Any]:
        """``preprocess``: sentence-transformers' older name for it."""
        return self.preprocess(texts, **kwargs)

    @renamed_arguments(sentences="inputs")
    def encode_query(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` with the ``query`` prompt when the model defines one."""
        return self.encode(inputs, **self._with_prompt_name(kwargs, ("query",)))

    @renamed_arguments(sentences="inputs")
    def encode_document(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """``encode`` with the ``document`` (or ``passage``/``corpus``) prompt when the model defines one."""
        return self.encode(inputs, **self._with_prompt_name(kwargs, DOCUMENT_PROMPT_NAMES))


def _provider_options(value: object) -> ProviderOptions:
    """``provider_options`` as given: a ``ProviderOptions``, a dict of its fields, or None (the defaults)."""
    if value is None:
        return ProviderOptions()
    if isinstance(value, ProviderOptions):
        return value
    if isinstance(value, Mapping):
        known = sorted(f.name for f in fields(ProviderOptions))
        if unknown := sorted(map(str, set(value) - set(known))):
            raise InputError(f"provider_options: unknown keys {unknown}; ProviderOptions takes {known}")
        return ProviderOptions(**value)
    raise InputError(
        "provider_options must be a fastembed_rt.providers.ProviderOptions (or a dict of its fields), got "
        f"{type(value).__name__}"
    )


def _folder_identity(root: Path) -> tuple[int, int] | None:
    """What tells one folder at ``root`` from another renamed into its place (device and inode)."""
    try:
        info = os.stat(root)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _to_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(device, dtype) of ``torch.nn.Module.to``'s call forms (``non_blocking`` and ``copy`` change nothing here)."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None), kwargs.pop("copy", None)
    if kwargs:
        raise InputError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if is_torch_dtype(arg):
            dtype = arg
        elif device is None:
            device = arg
        else:
            raise InputError(f"to() takes a device and a dtype, got {args!r}")
    return device, dtype


def explicit_prompt(prompt: str | None, prompt_name: str | None) -> str | None:
    """``prompt`` for a ``preprocess`` call: ``""`` when it names no prompt, so the default prompt is not added
    (sentence-transformers' ``preprocess`` takes only the prompt it is given)."""
    return "" if prompt is None and prompt_name is None else prompt


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive int or numpy integer (not a bool), else an ``InputError`` naming
    ``name`` (sentence-transformers takes numpy integers: batch sizes and dims computed with numpy)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` if it is a positive int, else an ``InputError``."""
    return check_positive_int("batch_size", batch_size)


def check_overlap(chunk_overlap: object) -> int:
    """``chunk_overlap`` if it is a non-negative int, else an ``InputError``."""
    if not isinstance(chunk_overlap, (int, np.integer)) or isinstance(chunk_overlap, bool) or chunk_overlap < 0:
        raise InputError(f"chunk_overlap must be an int >= 0, got {chunk_overlap!r}")
    return int(chunk_overlap)


def _checked_prompts(prompts: Any) -> dict[str, str | None]:
    """``prompts`` as given to a constructor: a mapping of names to texts (or None), else an ``InputError`` now (a
    number was taken, then failed the first encode with a bare TypeError)."""
    if prompts is None:
        return {}
    if not isinstance(prompts, Mapping):
        raise InputError(f"prompts must be a dict of prompt names to texts, got {type(prompts).__name__}")
    for name, text in prompts.items():
        if not isinstance(name, str) or not (text is None or isinstance(text, str)):
            raise InputError(f"prompts[{name!r}] must be a text (str) named by a str, got {type(text).__name__}")
    return dict(prompts)


def check_device_list(devices: Any) -> list[Any]:
    """A pool's ``target_devices`` as a list, or an ``InputError`` for a str (its characters were taken for devices:
    'c', 'p', 'u') or an empty list."""
    if isinstance(devices, str):
        raise InputError(f"target_devices must be a list of devices, e.g. [{devices!r}], got a str")
    listed = list(devices)
    if not listed:
        raise InputError("target_devices is empty: name at least one device, or None for the default")
    return listed
