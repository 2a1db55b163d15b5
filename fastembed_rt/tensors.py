"""torch tensors in and out, for code written against sentence-transformers, without importing torch.

fastembed-rt never imports torch (its install size and cold start are what the runtime saves). Code written for
sentence-transformers often asks for tensors (``encode(..., convert_to_tensor=True)``) and hands them to torch
operations (``torch.topk``) or to ``util`` functions that give tensors back. When that code has imported torch
itself, the runtime uses the torch already in ``sys.modules``: results become tensors sharing the numpy arrays'
memory, and tensors passed in (on any device) are read as numpy. When torch is not loaded, asking for a tensor is
an ``InputError`` naming the two ways out; nothing here ever runs ``import torch``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fastembed_rt.errors import InputError

__all__ = [
    "as_numpy",
    "is_tensor",
    "loaded_torch",
    "require_torch",
    "tensor_inputs",
    "tensor_out",
    "tensor_results",
    "tensors_in_and_out",
    "to_tensor",
]

F = TypeVar("F", bound=Callable[..., Any])


def loaded_torch() -> Any:
    """The torch module when the process has imported it already, else None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor (False whenever torch is not loaded: then nothing can be one)."""
    torch = loaded_torch()
    return torch is not None and isinstance(value, torch.Tensor)


def is_torch_dtype(value: object) -> bool:
    """Whether ``value`` is a ``torch.dtype`` (False whenever torch is not loaded)."""
    torch = loaded_torch()
    return torch is not None and isinstance(value, torch.dtype)


def require_torch(what: str = "convert_to_tensor=True") -> Any:
    """The loaded torch module, or an ``InputError`` for ``what`` (checked before any work is done)."""
    torch = loaded_torch()
    if torch is None:
        raise InputError(
            f"{what} returns torch tensors, and fastembed-rt never imports torch itself: import torch before the "
            "call (the tensors then share the numpy arrays' memory), or leave it out for numpy arrays, which "
            "fastembed_rt.util and the models' similarity take alike"
        )
    return torch


def as_numpy(value: Any) -> Any:
    """``value`` as a numpy array when it is a torch tensor (any device, sparse layouts made dense, bfloat16 widened to
    float32, which numpy lacks); anything else unchanged."""
    if not is_tensor(value):
        return value
    torch = loaded_torch()
    tensor = value.detach()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def to_tensor(value: Any, device: Any = None) -> Any:
    """``value`` (an array, a scalar, or a list or dict of them; of a dict, its arrays) as torch tensors, on ``device``
    when it names a GPU that torch can reach, else on the CPU sharing the array's memory. Needs torch loaded
    (``require_torch``)."""
    torch = require_torch()
    if isinstance(value, list):
        return [to_tensor(item, device) for item in value]
    if isinstance(value, dict):
        # arrays become tensors; other entries (``modality``, ``prompt_length``) stay as they are
        return {
            name: to_tensor(item, device) if isinstance(item, (np.ndarray, list, dict)) else item
            for name, item in value.items()
        }
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value) if value.ndim else value  # (ascontiguousarray makes a 0-d array 1-d)
        # torch tensors are writable: a read-only array (a memory-mapped or shared buffer) is copied first
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        tensor = torch.as_tensor(value)
    target = str(device) if device is not None else "cpu"
    if target.startswith("cuda") and torch.cuda.is_available():
        tensor = tensor.to(target)
    return tensor


def tensor_results(method: F) -> F:
    """A model method taking sentence-transformers' ``convert_to_tensor``: when a call sets it, torch must be
    loaded (checked before any work), the method runs with it off (and ``convert_to_numpy`` on) and its numpy result
    comes back as tensors on the model's ``device``. Calls without it go straight through (no argument binding on
    the hot path). ``convert_to_numpy=False`` (by keyword) gives a list of tensors when torch is loaded, as
    sentence-transformers does (its TranslationEvaluator stacks them with torch), else a list of arrays."""
    signature = inspect.signature(method)
    position = list(signature.parameters).index("convert_to_tensor")  # ``self`` included, as ``args`` has it

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("convert_to_tensor") and not (len(args) > position and args[position]):
            result = method(*args, **kwargs)
            converted = isinstance(result, (list, np.ndarray, np.generic))  # rows, or one text's row or pair's score
            if kwargs.get("convert_to_numpy", True) is False and converted and loaded_torch():
                return to_tensor(result, args[0].device)
            return result
        require_torch()
        bound = signature.bind(*args, **kwargs)
        bound.arguments["convert_to_tensor"] = False
        if "convert_to_numpy" in signature.parameters:  # one stacked result, as sentence-transformers gives
            bound.arguments["convert_to_numpy"] = True
        return to_tensor(method(*bound.args, **bound.kwargs), args[0].device)

    return wrapper  # type: ignore[return-value]


def _tensor_in(value: Any) -> Any:
    """``value`` when it is a tensor, else the first item of a list or tuple of tensors (per-text token matrices
    as a multi-vector model gives them), else None."""
    if is_tensor(value):
        return value
    if isinstance(value, (list, tuple)) and value and is_tensor(value[0]):
        return value[0]
    return None


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if loaded_torch() is None:  # the common case: no torch, nothing to look for
        return None
    return next((found for value in (*args, *kwargs.values()) if (found := _tensor_in(value)) is not None), None)


def _arrays(value: Any) -> Any:
    """A tensor, or each tensor of a list or tuple of them, as numpy; anything else unchanged."""
    if isinstance(value, (list, tuple)) and value and is_tensor(value[0]):
        return [as_numpy(item) for item in value]
    return as_numpy(value)


def tensor_inputs(function: F) -> F:
    """``function`` taking torch tensors (any device), or lists of them, for its array arguments: they are read as
    numpy."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _first_tensor(args, kwargs) is None:
            return function(*args, **kwargs)
        return function(*(_arrays(a) for a in args), **{k: _arrays(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def tensor_out(function: F) -> F:
    """``function``, which reads torch tensors itself (sparse ones without densifying them), returning its array
    result as a tensor on the first tensor argument's device when it was given one, as sentence-transformers does."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        first = _first_tensor(args, kwargs)
        return result if first is None else to_tensor(np.asarray(result), first.device)

    return wrapper  # type: ignore[return-value]


def tensors_in_and_out(function: F) -> F:
    """``function`` taking torch tensors (or lists of them) and, when it was given one, returning its array result
    as a tensor on the first tensor's device, as sentence-transformers' ``util`` does."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        first = _first_tensor(args, kwargs)
        if first is None:
            return function(*args, **kwargs)
        result = function(*(_arrays(a) for a in args), **{k: _arrays(v) for k, v in kwargs.items()})
        return to_tensor(np.asarray(result), first.device)

    return wrapper  # type: ignore[return-value]
