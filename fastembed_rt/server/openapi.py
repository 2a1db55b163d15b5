"""The OpenAPI 3.1 document of every route (``GET /openapi.json``), written as data.

The request schemas state what ``requests`` accepts (an optional field may be null: absent); tests hold every
route of the app to a path here, every example request here to its schema and a 200 from the server whose body
is valid under the response schema, and null in each optional field to a 200.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR = {"type": "string", "minLength": 1}
_TEXTS = {"oneOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}]}
_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
_TEXTS_OR_IDS = {  # a list may mix texts and rows of token ids, as TEI's
    "oneOf": [_STR, _IDS, {"type": "array", "items": {"oneOf": [_STR, _IDS]}, "minItems": 1}]
}
_TRUNCATE = {"type": ["boolean", "null"], "description": "null: the server's --auto-truncate"}
_LONG_INPUTS = {
    "type": ["string", "null"],
    "enum": ["truncate", "error", "chunk", None],
    "description": "over-long inputs: truncate, refuse (422) or chunk and pool; null: `truncate`, else the server's",
}
# TEI's schema names them Left/Right (its parser takes either case): both spellings valid here
_DIRECTION = {
    "type": "string",
    "enum": ["left", "right", "Left", "Right"],
    "default": "right",
    "description": "case ignored",
}
_MODEL = {"type": "string", "description": "a served model name (default: the first served model of this task)"}
_NUMBERS = {"type": "array", "items": {"type": "number"}}

SCHEMAS: dict[str, Any] = {
    "EmbedRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": _TEXTS_OR_IDS,
            "normalize": {"type": "boolean", "default": True},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
            "prompt_name": {"type": ["string", "null"]},
            "dimensions": {"type": ["integer", "null"], "minimum": 1, "description": "Matryoshka truncation"},
            "precision": {"type": "string", "enum": ["float32", "int8", "uint8", "binary", "ubinary"]},
            "model": _MODEL,
        },
        "example": {"inputs": ["What is Deep Learning?"]},
    },
    "EmbedResponse": {"type": "array", "items": _NUMBERS},
    "EmbedAllRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": _TEXTS,
            "truncate": _TRUNCATE,
            "long_inputs": {"type": ["string", "null"], "enum": ["truncate", "error", None]},
            "truncation_direction": _DIRECTION,
            "prompt_name": {"type": ["string", "null"]},
            "task": {
                "type": ["string", "null"],
                "enum": ["query", "document", None],
                "description": "multi-vector models: encode as queries or as documents (null: plain encode)",
            },
            "model": _MODEL,
        },
        "example": {"inputs": ["What is Deep Learning?"]},
    },
    "EmbedAllResponse": {"type": "array", "items": {"type": "array", "items": _NUMBERS}},
    "EmbedSparseRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": _TEXTS_OR_IDS,
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
            "prompt_name": {"type": ["string", "null"]},
            "max_active_dims": {"type": ["integer", "null"], "minimum": 1},
            "task": {
                "type": ["string", "null"],
                "description": "encode as encode_query ('query') or encode_document ('document') do: that task's "
                "prompt and, for an inference-free SPLADE model, its route (queries: a token-weight lookup); "
                "null: plain encode (the model's default route)",
            },
            "model": _MODEL,
        },
        "example": {"inputs": ["What is Deep Learning?"]},
    },
    "SparseValue": {
        "type": "object",
        "required": ["index", "value"],
        "properties": {"index": {"type": "integer"}, "value": {"type": "number"}},
    },
    "EmbedSparseResponse": {"type": "array", "items": {"type": "array", "items": _ref("SparseValue")}},
    "RerankRequest": {
        "type": "object",
        "required": ["query", "texts"],
        "properties": {
            "query": _STR,
            "texts": {"type": "array", "items": _STR, "minItems": 1},
            "raw_scores": {"type": "boolean", "default": False},
            "return_text": {"type": "boolean", "default": False},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
            "model": _MODEL,
        },
        "example": {"query": "What is Deep Learning?", "texts": ["Deep Learning is not...", "Deep learning is..."]},
    },
    "Rank": {
        "type": "object",
        "required": ["index", "score"],
        "properties": {"index": {"type": "integer"}, "score": {"type": "number"}, "text": {"type": "string"}},
    },
    "RerankResponse": {"type": "array", "items": _ref("Rank")},
    "OpenAIRerankRequest": {
        "type": "object",
        "required": ["query", "documents"],
        "properties": {
            "query": _STR,
            "documents": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [_STR, {"type": "object", "properties": {"text": _STR}, "required": ["text"]}]},
            },
            "top_n": {"type": ["integer", "null"], "minimum": 1},
            "return_documents": {"type": "boolean", "default": False},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "model": _MODEL,
        },
        "example": {"query": "What is Deep Learning?", "documents": ["Deep Learning is not...", "Deep learning is..."]},
    },
    "OpenAIRerankResponse": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "relevance_score": {"type": "number"},
                        "document": {"type": "object", "properties": {"text": {"type": "string"}}},
                    },
                },
            },
            "usage": {"type": "object", "properties": {"total_tokens": {"type": "integer"}}},
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "oneOf": [
                    _STR,
                    {"type": "array", "items": _STR, "minItems": 1, "maxItems": 2, "description": "a text or a pair"},
                    {
                        "type": "array",
                        "items": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 2},
                        "minItems": 1,
                    },
                ]
            },
            "raw_scores": {"type": "boolean", "default": False},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
            "model": _MODEL,
        },
        "example": {"inputs": ["What is Deep Learning?", "Deep learning is..."]},
    },
    "Prediction": {
        "type": "object",
        "required": ["score", "label"],
        "properties": {"score": {"type": "number"}, "label": {"type": "string"}},
    },
    "PredictResponse": {
        "oneOf": [
            {"type": "array", "items": _ref("Prediction")},
            {"type": "array", "items": {"type": "array", "items": _ref("Prediction")}},
        ]
    },
    "OpenAIEmbeddingsRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": _TEXTS_OR_IDS,
            "model": _MODEL,
            "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"},
            "dimensions": {"type": ["integer", "null"], "minimum": 1},
            "user": {"type": ["string", "null"]},
            "prompt_name": {"type": ["string", "null"]},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
        },
        "example": {"input": ["What is Deep Learning?"], "encoding_format": "float"},
    },
    "OpenAIEmbeddingsResponse": {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"const": "embedding"},
                        "embedding": {"oneOf": [_NUMBERS, {"type": "string", "contentEncoding": "base64"}]},
                        "index": {"type": "integer"},
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}},
            },
        },
    },
    "TokenizeRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": _TEXTS,
            "add_special_tokens": {"type": "boolean", "default": True},
            "prompt_name": {"type": ["string", "null"]},
            "truncate": _TRUNCATE,
            "long_inputs": _LONG_INPUTS,
            "truncation_direction": _DIRECTION,
            "model": _MODEL,
        },
        "example": {"inputs": "What is Deep Learning?"},
    },
    "SimpleToken": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "text": {"type": "string"},
            "special": {"type": "boolean"},
            "start": {
                "type": ["integer", "null"],
                "description": "UTF-8 byte offset of the token in the input (with the prompt before it), as TEI's; "
                "null for special tokens",
            },
            "stop": {"type": ["integer", "null"], "description": "UTF-8 byte offset just past the token"},
        },
    },
    "TokenizeResponse": {"type": "array", "items": {"type": "array", "items": _ref("SimpleToken")}},
    "DecodeRequest": {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {"oneOf": [_IDS, {"type": "array", "items": _IDS, "minItems": 1}]},
            "skip_special_tokens": {"type": "boolean", "default": True},
            "model": _MODEL,
        },
        "example": {"ids": [101, 2054, 2003, 2784, 4083, 1029, 102]},
    },
    "DecodeResponse": {"type": "array", "items": {"type": "string"}},
    "SimilarityRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "object",
                "required": ["source_sentence", "sentences"],
                "properties": {"source_sentence": _STR, "sentences": {"type": "array", "items": _STR, "minItems": 1}},
            },
            "parameters": {
                "type": ["object", "null"],
                "properties": {
                    "truncate": _TRUNCATE,
                    "long_inputs": _LONG_INPUTS,
                    "truncation_direction": _DIRECTION,
                    "prompt_name": {"type": ["string", "null"]},
                },
            },
            "model": _MODEL,
        },
        "example": {
            "inputs": {"source_sentence": "What is Deep Learning?", "sentences": ["What is Machine Learning?"]}
        },
    },
    "SimilarityResponse": {**_NUMBERS, "description": "cosine of source_sentence with each sentence, in order"},
    "DefaultRouteRequest": {
        "description": "the request of the route of the named (else the first served) model's task: /embed (or "
        "/similarity when `inputs` is an object), /embed_sparse, /embed_all (multi-vector), /rerank (a cross-encoder, "
        "with `query`) or /predict (anyOf: a body may fit several; the model decides which it is)",
        "anyOf": [_ref(name) for name in ("EmbedRequest", "SimilarityRequest", "EmbedSparseRequest", "EmbedAllRequest")]
        + [_ref(name) for name in ("RerankRequest", "PredictRequest")],
        "example": {"inputs": ["What is Deep Learning?"]},
    },
    "DefaultRouteResponse": {
        "anyOf": [
            _ref(name) for name in ("EmbedResponse", "SimilarityResponse", "EmbedSparseResponse", "EmbedAllResponse")
        ]
        + [_ref(name) for name in ("RerankResponse", "PredictResponse")],
    },
    "VertexRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "items": _ref("DefaultRouteRequest"),
                "minItems": 1,
                "description": "each a body of POST / (a rerank's with `query` and `texts`)",
            }
        },
        "example": {"instances": [{"inputs": ["What is Deep Learning?"]}, {"inputs": "What is Machine Learning?"}]},
    },
    "VertexResponse": {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": _ref("DefaultRouteResponse")}},
    },
    "InfoResponse": {
        "type": "object",
        "required": ["model_id", "max_input_length", "max_client_batch_size", "version", "models"],
        "properties": {
            **{
                name: {"type": "string"}
                for name in ("model_id", "model_dtype", "served_model_name", "version", "router")
            },
            **{
                name: {"type": "integer"}
                for name in (
                    "max_concurrent_requests",
                    "max_input_length",
                    "max_batch_tokens",
                    "max_client_batch_size",
                    "tokenization_workers",
                )
            },
            "model_sha": {"type": ["string", "null"]},
            "model_type": {"type": "object"},
            "max_batch_requests": {"type": ["integer", "null"]},
            "auto_truncate": {"type": "boolean"},
            "models": {"type": "array", "items": {"type": "object"}, "description": "every served model"},
        },
    },
    "ModelListResponse": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "model"},
                        "created": {"type": "integer"},
                        "owned_by": {"type": "string"},
                    },
                },
            },
        },
    },
    "ErrorResponse": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "error_type": {
                "type": "string",
                "enum": ["Validation", "Empty", "Overloaded", "Unhealthy", "Backend", "Tokenizer", "NotFound", "Auth"],
            },
        },
    },
    "OpenAIErrorResponse": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
}

# path → (summary, request schema, response schema, error schema)
_POSTS = {
    "/embed": ("Dense embeddings (TEI)", "EmbedRequest", "EmbedResponse", "ErrorResponse"),
    "/embed_all": (
        "Token vectors: a multi-vector model's, or a dense model's token embeddings (TEI)",
        "EmbedAllRequest",
        "EmbedAllResponse",
        "ErrorResponse",
    ),
    "/embed_sparse": ("SPLADE sparse embeddings (TEI)", "EmbedSparseRequest", "EmbedSparseResponse", "ErrorResponse"),
    "/rerank": ("Rerank texts against a query (TEI)", "RerankRequest", "RerankResponse", "ErrorResponse"),
    "/predict": ("Cross-encoder scores of texts and pairs (TEI)", "PredictRequest", "PredictResponse", "ErrorResponse"),
    "/tokenize": ("Token ids and offsets (TEI)", "TokenizeRequest", "TokenizeResponse", "ErrorResponse"),
    "/decode": ("Token ids back to text (TEI)", "DecodeRequest", "DecodeResponse", "ErrorResponse"),
    "/similarity": ("Sentence similarity (TEI)", "SimilarityRequest", "SimilarityResponse", "ErrorResponse"),
    "/": (
        "TEI's default route (huggingface_hub's InferenceClient): the served model's task route",
        "DefaultRouteRequest",
        "DefaultRouteResponse",
        "ErrorResponse",
    ),
    "/invocations": (
        "SageMaker's route: as POST /",
        "DefaultRouteRequest",
        "DefaultRouteResponse",
        "ErrorResponse",
    ),
    "/v1/embeddings": (
        "Embeddings (OpenAI)",
        "OpenAIEmbeddingsRequest",
        "OpenAIEmbeddingsResponse",
        "OpenAIErrorResponse",
    ),
    "/embeddings": (
        "Embeddings (OpenAI)",
        "OpenAIEmbeddingsRequest",
        "OpenAIEmbeddingsResponse",
        "OpenAIErrorResponse",
    ),
    "/v1/rerank": ("Rerank (Cohere / Jina)", "OpenAIRerankRequest", "OpenAIRerankResponse", "OpenAIErrorResponse"),
    "/vertex": (
        "Vertex AI's route (TEI): instances, each as POST /",
        "VertexRequest",
        "VertexResponse",
        "ErrorResponse",
    ),
}
# path → (summary, the 200 answer's content (None: no body), whether --api-key guards it, its errors' schema)
_GETS: dict[str, tuple[str, dict[str, Any] | None, bool, str]] = {
    "/health": (
        "200 once every model is loaded and warm; 503 while loading and while draining",
        None,
        False,
        "ErrorResponse",
    ),
    "/ping": ("As /health (SageMaker's health check)", None, False, "ErrorResponse"),
    "/": ("As /health (GET; POST / is the default route)", None, False, "ErrorResponse"),
    "/info": (
        "Served models and limits (TEI's Info, plus every served model)",
        {"application/json": {"schema": _ref("InfoResponse")}},
        True,
        "ErrorResponse",
    ),
    "/v1/models": (
        "Served models (OpenAI)",
        {"application/json": {"schema": _ref("ModelListResponse")}},
        True,
        "OpenAIErrorResponse",
    ),
    "/metrics": ("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}, True, "ErrorResponse"),
    "/openapi.json": ("This document", {"application/json": {"schema": {"type": "object"}}}, True, "ErrorResponse"),
    "/api-doc/openapi.json": (
        "This document, where TEI serves its own",
        {"application/json": {"schema": {"type": "object"}}},
        True,
        "ErrorResponse",
    ),
}
_ALWAYS_ANSWERED = ("/metrics", "/openapi.json", "/api-doc/openapi.json")  # while loading and draining too
_ERRORS = {
    "400": "Empty input or a body that is not JSON",
    "401": "Missing or wrong API key (--api-key)",
    "404": "Unknown model",
    "413": "Body over --payload-limit",
    "415": "A body not declared JSON (Content-Type), or compressed",
    "422": "Invalid field, too many inputs, or an over-long input with truncation off",
    "429": "Over --max-concurrent-requests; see Retry-After",
    "503": "Loading or shutting down",
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every optional property of an object also taking null (the server reads null as absent),
    its nested objects' too."""
    properties = schema.get("properties")
    if schema.get("type") not in ("object", ["object", "null"]) or not properties:
        return schema
    required = set(schema.get("required", ()))
    out = {}
    for name, prop in properties.items():
        prop = _nullable(prop)
        if name not in required and "type" in prop:
            types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            prop = {**prop, "type": [*types, "null"] if "null" not in types else types}
            if "enum" in prop and None not in prop["enum"]:
                prop["enum"] = [*prop["enum"], None]
        out[name] = prop
    return {**schema, "properties": out}


def _security(guarded: bool) -> list[dict[str, list[str]]]:
    """An operation's security: the Bearer key when the server has one (``{}``: none set), or none at all."""
    return [{"bearer": []}, {}] if guarded else []


def openapi_document(version: str) -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, Any] = {}
    for path, (summary, request, response, error) in _POSTS.items():
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": _ref(response)}}}
        }
        for status, description in _ERRORS.items():
            responses[status] = {"description": description, "content": {"application/json": {"schema": _ref(error)}}}
        paths[path] = {
            "post": {
                "summary": summary,
                "security": _security(True),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
                "responses": responses,
            }
        }
    for path, (summary, content, guarded, error) in _GETS.items():
        errors = {"application/json": {"schema": _ref(error)}}
        answers: dict[str, Any] = {"200": {"description": "OK", **({"content": content} if content else {})}}
        if guarded:
            answers["401"] = {"description": _ERRORS["401"], "content": errors}
        if path not in _ALWAYS_ANSWERED:
            answers["503"] = {"description": _ERRORS["503"], "content": errors}
        paths.setdefault(path, {})["get"] = {"summary": summary, "security": _security(guarded), "responses": answers}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fastembed-rt",
            "version": version,
            "description": "TEI- and OpenAI-compatible embedding server",
        },
        "paths": paths,
        "components": {
            "schemas": {
                name: _nullable(schema) if name.endswith("Request") else schema for name, schema in SCHEMAS.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the key of --api-key, when set"}
            },
        },
    }
