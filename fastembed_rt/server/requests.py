"""Request bodies → typed, checked requests; every refusal is a ``RequestError`` naming the field.

Shapes follow text-embeddings-inference (``router/src/http/types.rs``) on its routes, the OpenAI
embeddings API on ``/v1/embeddings`` and Cohere / Jina on ``/v1/rerank``. Status codes follow TEI:
400 for an empty input or a body that is not JSON, 413 for a body over the payload limit, 422 for
a value of the wrong type or range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from fastembed_rt.kernels.spec import Precision
from fastembed_rt.long_inputs import LongInputs

__all__ = [
    "DecodeRequest",
    "EmbedAllRequest",
    "EmbedRequest",
    "ErrorType",
    "PredictRequest",
    "RequestError",
    "RerankRequest",
    "SparseRequest",
    "TokenizeRequest",
    "parse_body",
    "parse_decode",
    "parse_embed",
    "parse_embed_all",
    "parse_openai_embeddings",
    "parse_openai_rerank",
    "parse_predict",
    "parse_rerank",
    "parse_sparse",
    "parse_tokenize",
]

ErrorType = Literal["Validation", "Empty", "Overloaded", "Unhealthy", "Backend", "Tokenizer", "NotFound", "Auth"]
Direction = Literal["left", "right"]


# Characters of an error message sent back: messages quote what the client sent (a field's value, a model name),
# and a 1.9 MB value came back whole in a 1.9 MB error body (and its log line)
MESSAGE_CHARS = 2_000


def _bounded(message: str) -> str:
    """``message`` with its middle left out past ``MESSAGE_CHARS`` (the start names the field, the end the fix)."""
    if len(message) <= MESSAGE_CHARS:
        return message
    head, tail = MESSAGE_CHARS * 2 // 3, MESSAGE_CHARS // 4
    return f"{message[:head]} … [{len(message) - head - tail:,} characters left out] … {message[-tail:]}"


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a message naming the field, TEI's ``error_type``, and
    OpenAI's string ``code`` where OpenAI defines one (``"model_not_found"``; None: by the status, or none)."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: ErrorType = "Validation",
        *,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.retry_after = retry_after
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # by its arguments, keyword ones too (a Ray Serve replica's error crosses a process boundary pickled)
        return _request_error, (self.status, self.message, self.error_type, self.retry_after, self.code)


class TooLongError(RequestError):
    """A 422 for an input longer than the model's limit where the request asked not to truncate: ``position`` is
    its place among the request's inputs, which a route whose inputs are named otherwise renames (``named``)."""

    def __init__(self, position: int, tokens: int, limit: int) -> None:
        self.position, self.tokens, self.limit = position, tokens, limit
        super().__init__(422, self._message(f"input {position}", "send truncate=true"))

    def _message(self, label: str, hint: str) -> str:
        return (
            f"{label} is {self.tokens} tokens long, more than the model's limit of {self.limit}; shorten it or {hint}"
        )

    def named(self, label: str, hint: str) -> RequestError:
        return RequestError(422, self._message(label, hint))


def _request_error(
    status: int, message: str, error_type: ErrorType, retry_after: int | None, code: str | None
) -> RequestError:
    return RequestError(status, message, error_type, retry_after=retry_after, code=code)


def _invalid(message: str) -> RequestError:
    return RequestError(422, message)


_KINDS = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array", dict: "an object"}


def _too_many(count: int, limit: int) -> RequestError:
    return _invalid(f"batch size {count} > maximum allowed batch size {limit} (--max-client-batch-size)")


def _kind(value: object) -> str:
    """How a JSON value is named in error messages."""
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (UTF-8), or a 400 saying what is wrong with it."""
    if not body:
        raise RequestError(400, "the request body is empty; send a JSON object", "Empty")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # orjson says "str is not valid UTF-8: surrogates not allowed" at char 0 for any byte that is not UTF-8
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise RequestError(
                400,
                f"the request body is not UTF-8 (byte {body[bad.start]:#04x} at offset {bad.start}: {bad.reason}); "
                "send JSON in UTF-8",
            ) from None
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(422, f"the request body must be a JSON object, got {_kind(data)}")
    return data


def _bool(data: dict[str, Any], key: str, default: bool | None) -> bool | None:
    value = data.get(key)
    if value is None:  # absent or null: the default (null means absent, as the OpenAPI document says)
        return default
    if isinstance(value, bool):
        return value
    raise _invalid(f"`{key}` must be a boolean, got {_kind(value)}")


def _int(data: dict[str, Any], key: str, minimum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # 8.0: an integer to JSON Schema (and to OpenAI's API)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"`{key}` must be an integer, got {_kind(value)}")
    if value < minimum:
        raise _invalid(f"`{key}` must be at least {minimum}, got {value}")
    return value


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _invalid(f"`{key}` must be a string, got {_kind(value)}")


def _long_inputs(data: dict[str, Any]) -> LongInputs | None:
    value = data.get("long_inputs")
    if value is None:
        return None
    try:
        return LongInputs(value)
    except ValueError:
        raise _invalid(f"`long_inputs` must be 'truncate', 'error' or 'chunk', got {value!r}") from None


def _long_input_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``truncate``, ``long_inputs`` and ``truncation_direction``: how a TEI route's request treats long inputs."""
    return {
        "truncate": _bool(data, "truncate", None),
        "long_inputs": _long_inputs(data),
        "truncation_direction": _direction(data),
    }


def _direction(data: dict[str, Any]) -> Direction:
    value = data.get("truncation_direction")
    if value is None:  # absent or null: the default, as every optional field
        return "right"
    if isinstance(value, str) and value.lower() in ("left", "right"):
        return "left" if value.lower() == "left" else "right"
    raise _invalid(f"`truncation_direction` must be 'left' or 'right', got {value!r}")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"`{where}` must be a string, got {_kind(value)}")
    if not value:
        raise RequestError(400, f"`{where}` is an empty string; every input needs at least one character", "Empty")
    return value


# Token ids reach the graph as int64: a larger one would overflow there, so it is refused here, naming its place.
_MAX_TOKEN_ID = 2**63 - 1


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ids(value: list[Any], where: str) -> list[int]:
    if not value:
        raise RequestError(400, f"`{where}` is an empty list of token ids", "Empty")
    if any(isinstance(token, float) for token in value):  # 101.0: an integer to JSON Schema
        value = [int(token) if isinstance(token, float) and token.is_integer() else token for token in value]
    for j, token in enumerate(value):
        if isinstance(token, bool) or not isinstance(token, int):
            shown = f" {orjson.dumps(token).decode()}" if _is_number(token) else ""
            raise _invalid(f"`{where}[{j}]` must be a non-negative integer token id, got {_kind(token)}{shown}")
        if token < 0:
            raise _invalid(f"`{where}[{j}]` must be a non-negative integer token id, got {token}")
        if token > _MAX_TOKEN_ID:
            raise _invalid(
                f"`{where}[{j}]` must be a token id of at most 2^63-1 (the graph's int64 inputs), got {token}; "
                "token ids are below the model's vocabulary size"
            )
    return value


def _inputs(data: dict[str, Any], key: str, limit: int, *, ids: bool) -> tuple[list[Any], bool, bool | None]:
    """``(items, single, token_ids)`` of an input field: a string, a list of strings, or (``ids``)
    a list of token ids or a list of such lists, or a list mixing strings and such lists (TEI takes one too:
    ``token_ids`` is None then)."""
    if key not in data:
        raise _invalid(f"`{key}` is missing; pass a string or a list of strings")
    value = data[key]
    if isinstance(value, str):
        return [_text(value, key)], True, False
    if not isinstance(value, list):
        raise _invalid(f"`{key}` must be a string or a list of strings, got {_kind(value)}")
    if not value:
        raise RequestError(400, f"`{key}` cannot be empty", "Empty")
    if ids and _is_number(value[0]):  # one list of token ids; `_ids` names any item that is not one
        return [_ids(value, key)], True, True
    if len(value) > limit:
        raise _too_many(len(value), limit)
    if not ids:
        return [_text(v, f"{key}[{i}]") for i, v in enumerate(value)], False, False
    items: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, list):
            items.append(_ids(item, f"{key}[{i}]"))
        elif isinstance(item, str):
            items.append(_text(item, f"{key}[{i}]"))
        else:
            raise _invalid(f"`{key}[{i}]` must be a string or a list of token ids, got {_kind(item)}")
    texts = sum(isinstance(item, str) for item in items)
    return items, False, False if texts == len(items) else True if not texts else None


@dataclass(frozen=True)
class EmbedRequest:
    """``POST /embed`` (TEI) and ``POST /v1/embeddings`` (OpenAI)."""

    inputs: list[Any]  # str, or lists of token ids when ``token_ids`` (both when it is None)
    single: bool
    token_ids: bool | None = False
    model: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"
    prompt_name: str | None = None
    normalize: bool = True
    dimensions: int | None = None
    precision: Precision = Precision.FLOAT32
    encoding_format: Literal["float", "base64"] = "float"
    field: str = "inputs"  # the body's name for them (OpenAI's: input), for errors


def _precision(data: dict[str, Any]) -> Precision:
    value = data.get("precision")
    if value is None:  # absent or null, as encode(precision=None): float32
        return Precision.FLOAT32
    try:
        return Precision(value)
    except ValueError:
        valid = ", ".join(p.value for p in Precision)
        raise _invalid(f"`precision` must be one of {valid}; got {value!r}") from None


def parse_embed(data: dict[str, Any], max_client_batch_size: int) -> EmbedRequest:
    inputs, single, token_ids = _inputs(data, "inputs", max_client_batch_size, ids=True)
    return EmbedRequest(
        inputs,
        single,
        token_ids,
        model=_str(data, "model"),
        **_long_input_fields(data),
        prompt_name=_str(data, "prompt_name"),
        normalize=bool(_bool(data, "normalize", True)),
        dimensions=_int(data, "dimensions", 1),
        precision=_precision(data),
    )


def parse_openai_embeddings(data: dict[str, Any], max_client_batch_size: int) -> EmbedRequest:
    inputs, single, token_ids = _inputs(data, "input", max_client_batch_size, ids=True)
    value = data.get("encoding_format")
    value = "float" if value is None else value  # null is the default; false, 0 or "" are not a format
    if not isinstance(value, str) or value not in ("float", "base64"):
        raise _invalid(f"`encoding_format` must be 'float' or 'base64', got {value!r}")
    encoding: Literal["float", "base64"] = "base64" if value == "base64" else "float"
    _str(data, "user")
    return EmbedRequest(
        inputs,
        single,
        token_ids,
        model=_str(data, "model"),
        prompt_name=_str(data, "prompt_name"),  # TEI's, beside OpenAI's fields (was read by no one: the default's)
        **_long_input_fields(data),  # fastembed-rt's (and TEI's) fields beside OpenAI's, as every text route takes
        # unit length, cut to `dimensions` first, as OpenAI's embeddings and TEI's route (which normalizes there
        # whatever the model does): a model without a Normalize module gave other vectors here than on /embed
        normalize=True,
        dimensions=_int(data, "dimensions", 1),
        encoding_format=encoding,
        field="input",
    )


def parse_similarity(data: dict[str, Any], max_client_batch_size: int) -> EmbedRequest:
    """``POST /similarity`` (TEI; the hub's sentence-similarity task): ``inputs.source_sentence`` against each of
    ``inputs.sentences``, with ``truncate``, ``truncation_direction`` and ``prompt_name`` in ``parameters``. Read
    as the normalized embed request of ``[source_sentence, *sentences]``."""
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        raise _invalid(f"`inputs` must be an object with `source_sentence` and `sentences`, got {_kind(inputs)}")
    source = _text(inputs.get("source_sentence"), "inputs.source_sentence")
    sentences = inputs.get("sentences")
    if not isinstance(sentences, list):
        raise _invalid(f"`inputs.sentences` must be a list of strings, got {_kind(sentences)}")
    if not sentences:
        raise RequestError(400, "`inputs.sentences` cannot be empty", "Empty")
    if len(sentences) + 1 > max_client_batch_size:
        raise _too_many(len(sentences) + 1, max_client_batch_size)
    texts = [_text(sentence, f"inputs.sentences[{i}]") for i, sentence in enumerate(sentences)]
    parameters = {} if data.get("parameters") is None else data["parameters"]
    if not isinstance(parameters, dict):
        raise _invalid(f"`parameters` must be an object, got {_kind(parameters)}")
    return EmbedRequest(
        [source, *texts],
        False,
        model=_str(data, "model"),
        **_long_input_fields(parameters),
        prompt_name=_str(parameters, "prompt_name"),
    )


@dataclass(frozen=True)
class EmbedAllRequest:
    """``POST /embed_all`` (TEI): every kept token's vector of each input. ``task`` (``query`` / ``document``)
    is fastembed-rt's own field, for multi-vector models (their query and document sides)."""

    inputs: list[str]
    single: bool
    model: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"
    prompt_name: str | None = None
    task: Literal["query", "document"] | None = None


def parse_embed_all(data: dict[str, Any], max_client_batch_size: int) -> EmbedAllRequest:
    inputs, single, _ = _inputs(data, "inputs", max_client_batch_size, ids=False)
    task = _str(data, "task")
    if task not in (None, "query", "document"):
        raise _invalid(f"`task` must be 'query' or 'document', got {task!r}")
    return EmbedAllRequest(
        inputs,
        single,
        model=_str(data, "model"),
        **_long_input_fields(data),
        prompt_name=_str(data, "prompt_name"),
        task="query" if task == "query" else "document" if task == "document" else None,
    )


@dataclass(frozen=True)
class SparseRequest:
    """``POST /embed_sparse`` (TEI)."""

    inputs: list[Any]  # str, or lists of token ids when ``token_ids`` (both when it is None)
    single: bool
    token_ids: bool | None = False
    model: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"
    prompt_name: str | None = None
    max_active_dims: int | None = None
    task: str | None = None  # ``encode_query`` / ``encode_document``'s route and prompt ("query", "document")


def parse_sparse(data: dict[str, Any], max_client_batch_size: int) -> SparseRequest:
    inputs, single, token_ids = _inputs(data, "inputs", max_client_batch_size, ids=True)
    return SparseRequest(
        inputs,
        single,
        token_ids,
        model=_str(data, "model"),
        **_long_input_fields(data),
        prompt_name=_str(data, "prompt_name"),
        max_active_dims=_int(data, "max_active_dims", 1),
        task=_str(data, "task"),
    )


@dataclass(frozen=True)
class RerankRequest:
    """``POST /rerank`` (TEI: ``texts``, ``return_text``) and ``POST /v1/rerank`` (Cohere / Jina:
    ``documents``, ``top_n``, ``return_documents``)."""

    query: str
    texts: list[str]
    model: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"
    raw_scores: bool = False
    return_text: bool = False
    top_n: int | None = None


def _query(data: dict[str, Any]) -> str:
    if "query" not in data:
        raise _invalid("`query` is missing")
    return _text(data["query"], "query")


def parse_rerank(data: dict[str, Any], max_client_batch_size: int) -> RerankRequest:
    query = _query(data)
    texts, _, _ = _inputs(data, "texts", max_client_batch_size, ids=False)
    if isinstance(data["texts"], str):
        raise _invalid("`texts` must be a list of strings, got a string")
    return RerankRequest(
        query,
        texts,
        model=_str(data, "model"),
        **_long_input_fields(data),
        raw_scores=bool(_bool(data, "raw_scores", False)),
        return_text=bool(_bool(data, "return_text", False)),
    )


def parse_openai_rerank(data: dict[str, Any], max_client_batch_size: int) -> RerankRequest:
    query = _query(data)
    documents = data.get("documents")
    if not isinstance(documents, list):
        raise _invalid(f"`documents` must be a list of strings or of {{'text': ...}} objects, got {_kind(documents)}")
    texts = [
        doc["text"] if isinstance(doc, dict) and "text" in doc else doc for doc in documents
    ]  # Cohere and Jina accept {"text": ...} objects too
    checked, _, _ = _inputs({"documents": texts}, "documents", max_client_batch_size, ids=False)
    return RerankRequest(
        query,
        checked,
        model=_str(data, "model"),
        truncate=_bool(data, "truncate", None),
        long_inputs=_long_inputs(data),
        return_text=bool(_bool(data, "return_documents", False)),
        top_n=_int(data, "top_n", 1),
    )


@dataclass(frozen=True)
class PredictRequest:
    """``POST /predict`` (TEI): a text, a pair, or a batch of texts and pairs."""

    inputs: list[str | tuple[str, str]]
    single: bool
    model: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"
    raw_scores: bool = False


def _sequence(value: object, where: str) -> str | tuple[str, str]:
    if isinstance(value, list) and len(value) in (1, 2):
        texts = [_text(v, f"{where}[{j}]") for j, v in enumerate(value)]
        return texts[0] if len(texts) == 1 else (texts[0], texts[1])
    raise _invalid(f"`{where}` must be [text] or a pair [text, text], got {_kind(value)} {value!r:.60}")


def parse_predict(data: dict[str, Any], max_client_batch_size: int) -> PredictRequest:
    if "inputs" not in data:
        raise _invalid("`inputs` is missing; pass a text, a pair [text, text] or a list of those")
    value = data["inputs"]
    items: list[str | tuple[str, str]]
    if isinstance(value, str):
        items, single = [_text(value, "inputs")], True
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > 2:
            raise _invalid("`inputs` of strings is one text or one pair; a batch is a list of [text] or [text, text]")
        items, single = [_sequence(value, "inputs")], True
    elif isinstance(value, list):
        if not value:
            raise RequestError(400, "`inputs` cannot be empty", "Empty")
        if len(value) > max_client_batch_size:
            raise _too_many(len(value), max_client_batch_size)
        items, single = [_sequence(v, f"inputs[{i}]") for i, v in enumerate(value)], False
    else:
        raise _invalid(f"`inputs` must be a text, a pair or a list of those, got {_kind(value)}")
    return PredictRequest(
        items,
        single,
        model=_str(data, "model"),
        **_long_input_fields(data),
        raw_scores=bool(_bool(data, "raw_scores", False)),
    )


@dataclass(frozen=True)
class TokenizeRequest:
    """``POST /tokenize`` (TEI)."""

    inputs: list[str]
    single: bool
    model: str | None = None
    add_special_tokens: bool = True
    prompt_name: str | None = None
    truncate: bool | None = None
    long_inputs: LongInputs | None = None
    truncation_direction: Direction = "right"


def parse_tokenize(data: dict[str, Any], max_client_batch_size: int) -> TokenizeRequest:
    inputs, single, _ = _inputs(data, "inputs", max_client_batch_size, ids=False)
    return TokenizeRequest(
        inputs,
        single,
        model=_str(data, "model"),
        add_special_tokens=bool(_bool(data, "add_special_tokens", True)),
        prompt_name=_str(data, "prompt_name"),
        **_long_input_fields(data),
    )


@dataclass(frozen=True)
class DecodeRequest:
    """``POST /decode`` (TEI)."""

    ids: list[list[int]]
    model: str | None = None
    skip_special_tokens: bool = True
    single: bool = False  # `ids` was one flat list


def parse_decode(data: dict[str, Any], max_client_batch_size: int) -> DecodeRequest:
    value = data.get("ids")
    if not isinstance(value, list):
        raise _invalid(f"`ids` must be a list of token ids or a list of such lists, got {_kind(value)}")
    if not value:  # as TEI: the list is there, and empty
        raise RequestError(400, "`ids` cannot be empty", "Empty")
    if not isinstance(value[0], list):
        checked = [_ids(value, "ids")]
    else:
        if len(value) > max_client_batch_size:
            raise _too_many(len(value), max_client_batch_size)
        checked = []
        for i, row in enumerate(value):
            if not isinstance(row, list):
                raise _invalid(f"`ids[{i}]` must be a list of token ids like `ids[0]`, got {_kind(row)}")
            checked.append(_ids(row, f"ids[{i}]"))
    return DecodeRequest(
        checked,
        model=_str(data, "model"),
        skip_special_tokens=bool(_bool(data, "skip_special_tokens", True)),
        single=not isinstance(value[0], list),
    )


def parse_vertex(
    data: dict[str, Any], max_client_batch_size: int, scores_pairs: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """``POST /vertex`` (TEI; Vertex AI's prediction contract): ``instances``, each the body of a request to the
    default route; ``scores_pairs(instance)``: whether it goes to a cross-encoder's /predict (a list of strings
    there is one text or pair)."""
    instances = data.get("instances")
    if not isinstance(instances, list):
        raise _invalid(f"`instances` must be a list of request bodies, got {_kind(instances)}")
    if not instances:
        raise RequestError(400, "`instances` cannot be empty", "Empty")
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise _invalid(f"`instances[{i}]` must be a request body (an object), got {_kind(instance)}")
    # one request: its instances' inputs together within --max-client-batch-size (each alone was, and their sum
    # could pass --max-concurrent-requests: a 429 no retry could end)
    total = sum(_input_count(instance, scores_pairs(instance)) for instance in instances)
    if total > max_client_batch_size:
        raise _too_many(total, max_client_batch_size)
    return instances


def _input_count(body: dict[str, Any], pairs: bool) -> int:
    """The inputs a request body holds, for the batch limit: a rerank's texts; a list of token ids is one, and so is
    a /predict list of strings (``pairs``: one text or pair, as ``parse_predict`` reads it)."""
    value = body.get("texts", body.get("inputs"))
    if isinstance(value, dict):  # a similarity request: its source and sentences
        sentences = value.get("sentences")
        return 1 + (len(sentences) if isinstance(sentences, list) else 0)
    if not isinstance(value, list) or not value or _is_number(value[0]):
        return 1
    if pairs and "texts" not in body and all(isinstance(item, str) for item in value):
        return 1
    return len(value)
