"""One function per route: parse the body, pick the model, build the worker's ``Operation``, shape the reply.

Every handler returns a ``Reply``; ``app`` turns it into a response with TEI's timing headers, and
any ``RequestError`` into the route's error shape. Outputs are the library's: a route answers what
``SentenceTransformer.encode`` / ``SparseEncoder.encode`` / ``CrossEncoder.predict`` /
``MultiVectorEncoder.encode_query``, ``encode_document`` and ``rank`` give for the same inputs and options.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from fastembed_rt.errors import ArtifactError, InputError
from fastembed_rt.kernels.spec import Precision
from fastembed_rt.long_inputs import LongInputs
from fastembed_rt.models import CrossEncoder, MultiVectorEncoder, SentenceTransformer, SparseEncoder
from fastembed_rt.models.base import TASK_PROMPT_NAMES
from fastembed_rt.server.batcher import JobResult, Operation, Timings
from fastembed_rt.server.requests import (
    RequestError,
    TooLongError,
    parse_decode,
    parse_embed,
    parse_embed_all,
    parse_openai_embeddings,
    parse_openai_rerank,
    parse_predict,
    parse_rerank,
    parse_similarity,
    parse_sparse,
    parse_tokenize,
    parse_vertex,
)
from fastembed_rt.server.state import a_model_of
from fastembed_rt.util import cos_sim

if TYPE_CHECKING:
    from starlette.requests import Request

    from fastembed_rt.server.state import Served, ServerState

__all__ = ["HANDLERS", "Reply"]

EMBEDDING, SPARSE, CROSS_ENCODER, MULTI_VECTOR = "embedding", "sparse", "cross-encoder", "multi-vector"


@dataclass(frozen=True)
class Reply:
    """A route's answer: the JSON payload, the job it ran (None: none), the characters it read and the
    provider of the model that answered (TEI's ``x-compute-type``)."""

    payload: Any
    result: JobResult | None
    characters: int
    provider: str


def _characters(items: list[Any]) -> int:
    return sum(len(i) if isinstance(i, str) else sum(map(len, i)) if isinstance(i, tuple) else len(i) for i in items)


def _check_prompt(served: Served, prompt_name: str | None) -> None:
    prompts = served.model.prompts
    if prompt_name is not None and prompt_name not in prompts:
        raise RequestError(
            422,
            f"`prompt_name` {prompt_name!r} is not a prompt of model {served.name!r}; its prompts: {sorted(prompts)}",
        )


def _policy(state: ServerState, req: Any, *, no_chunk: str | None = None) -> LongInputs:
    """The request's long-input policy: ``long_inputs``, else ``truncate`` (false: error), else the server's.

    ``no_chunk`` says why chunking cannot serve this request (its route or its inputs): a request that asks
    for it is refused with that reason; the server's ``--long-inputs chunk`` default becomes ``error`` there, so
    inputs that fit are served and an over-long one is refused by name, neither cut silently nor all refused."""
    chosen = getattr(req, "long_inputs", None)
    if chosen is not None:
        if chosen is LongInputs.CHUNK and no_chunk is not None:
            raise RequestError(422, f"long_inputs 'chunk' is not offered for {no_chunk}")
        return LongInputs(chosen)
    truncate = getattr(req, "truncate", None)
    if truncate is not None:
        return LongInputs.TRUNCATE if truncate else LongInputs.ERROR
    default = state.config.default_long_inputs
    if default is LongInputs.CHUNK and no_chunk is not None:
        return LongInputs.ERROR
    return default


_NO_CHUNK = "token id inputs (windows are cut from texts)"


def _windowing(policy: LongInputs) -> LongInputs:
    """How a worker tokenizes for ``policy``: windows for chunk; truncated otherwise (error is checked per job)."""
    return LongInputs.CHUNK if policy is LongInputs.CHUNK else LongInputs.TRUNCATE


def _check_ids(served: Served, rows: list[Any], field: str, single: bool = False) -> None:
    """A 422 naming the request's own field (``input`` on the OpenAI route) for a token id past the vocabulary
    (texts among the rows are passed over); ``single``: the field was one flat list of ids, named by position."""
    vocab = served.untruncated.get_vocab_size(with_added_tokens=True)
    for i, row in enumerate(rows):
        # max runs in C; the first id past the vocabulary is named
        if row and not isinstance(row, str) and max(row) >= vocab:
            j, bad = next((j, t) for j, t in enumerate(row) if t >= vocab)
            where = f"`{field}[{j}]` is" if single else f"`{field}[{i}]` holds"
            raise RequestError(422, f"{where} token id {bad}, outside the vocabulary 0..{vocab - 1}")


async def _prompted_ids_as_texts(served: Served, req: Any, field: str) -> Any:
    """``req`` with its token id rows as texts when a prompt applies (the request's ``prompt_name``, else the
    model's default), TEI's rule: each row is decoded without its special tokens and tokenized again after the
    prompt. Without a prompt the rows run as given. (The rows skipped the prompt: a text and its own ids got
    different vectors in one request.)"""
    if req.token_ids is False:
        return req
    _check_prompt(served, req.prompt_name)
    if not served.model._resolve_prompt(None, req.prompt_name):
        return req
    _check_ids(served, req.inputs, field, req.single)
    decode = served.untruncated.decode

    def texts() -> list[str]:
        return [item if isinstance(item, str) else decode(item, skip_special_tokens=True) for item in req.inputs]

    # the event loop never tokenizes: a request at the payload limit decodes for ~0.2 s
    return replace(req, inputs=await asyncio.to_thread(texts), token_ids=False)


def _text_tokens(served: Served, prompt_name: str | None, task: str | None = None) -> Callable[[Any], int]:
    routed = {} if task is None else {"task": task}  # a sparse model's route: a lookup's tokens lack special tokens

    def count(item: Any) -> int:
        return served.model.count_tokens([item], prompt_name=prompt_name, **routed)[0]

    return count


T = TypeVar("T")


def _together(rows: Any, results: list[JobResult], *, at_once: bool) -> JobResult:
    """One answer's job made of ``results``: their tokens, truncations and stage times summed; the time queued is the
    longest of jobs that waited ``at_once``, else (one after the other) the sum."""
    queued = [result.timings.queue_s for result in results]
    return JobResult(
        rows,
        sum(result.tokens for result in results),
        sum(result.truncated for result in results),
        Timings(
            max(queued, default=0.0) if at_once else sum(queued),
            sum(result.timings.tokenize_s for result in results),
            sum(result.timings.inference_s for result in results),
        ),
    )


async def _all_or_none(parts: list[Awaitable[T]]) -> list[T]:
    """Each part's result, in order, run at once; the first to fail cancels the others (queued inputs are dropped,
    their permits given back) and is raised, so a request that fails queues no more of itself (a part already in a
    model call finishes that call and holds its permits until then, as a client's that left)."""
    tasks = [asyncio.ensure_future(part) for part in parts]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # the others' outcomes retrieved, not logged as lost
        raise


async def _texts_and_ids(
    run: Callable[[Any, list[int]], Awaitable[JobResult]], req: Any, served: Served, field: str
) -> JobResult:
    """A batch mixing texts and token id rows (TEI takes one): the texts and the rows run as two jobs (each kind is
    tokenized its own way), their rows put back in the request's order; an error names an input by its place in
    the request. Chunking is not offered: a token id row has no text to cut windows from."""
    _check_ids(served, req.inputs, field)
    where = [[i for i, item in enumerate(req.inputs) if isinstance(item, str) is text] for text in (True, False)]
    parts = [
        replace(req, inputs=[req.inputs[i] for i in indices], token_ids=not text)
        for text, indices in zip((True, False), where)
    ]
    results = await _all_or_none([run(part, indices) for part, indices in zip(parts, where)])
    rows: Any
    if isinstance(results[0].rows, np.ndarray):
        first = results[0].rows
        rows = np.empty((len(req.inputs), *first.shape[1:]), dtype=first.dtype)
    else:
        rows = [None] * len(req.inputs)
    for indices, result in zip(where, results):
        for i, row in zip(indices, result.rows):
            rows[i] = row
    return _together(rows, results, at_once=True)


# -- dense embeddings ----------------------------------------------------------------------------------
async def _embed_job(
    state: ServerState, request: Request, served: Served, req: Any, positions: list[int] | None = None
) -> JobResult:
    if positions is None:
        req = await _prompted_ids_as_texts(served, req, req.field)
    if req.token_ids is None:
        return await _texts_and_ids(
            lambda part, where: _embed_job(state, request, served, part, where), req, served, req.field
        )
    model = cast(SentenceTransformer, served.model)
    _check_prompt(served, req.prompt_name)
    try:
        options = model.embed_options(req.precision, req.dimensions, req.normalize, wider_than_model="error")
    except InputError as exc:
        raise RequestError(422, f"`dimensions`: {exc}") from None
    if options.precision in (Precision.INT8, Precision.UINT8):
        try:  # an artifact without calibration cannot answer this request: said now, not as a 500 from the batch
            model.quantization_ranges(options.output_dim, options.normalize)
        except ArtifactError as exc:
            raise RequestError(422, f"`precision`: {exc}") from None
    if req.token_ids and positions is None:
        _check_ids(served, req.inputs, req.field, req.single)
    batch_size, overlap = state.config.max_batch_size, served.chunk_overlap
    policy = _policy(state, req, no_chunk=_NO_CHUNK if req.token_ids or positions is not None else None)
    tokenize = _windowing(policy)

    def prepare(items: list[Any]) -> Any:
        return model.prepare(
            items,
            prompt_name=req.prompt_name,
            truncation_direction=req.truncation_direction,
            token_ids=req.token_ids,
            long_inputs=tokenize,
            chunk_overlap=overlap,
        )

    operation = Operation(
        key=("embed", req.prompt_name, req.truncation_direction, req.token_ids, tokenize, options),
        prepare=prepare,
        run=lambda prepared: model.embed_prepared(prepared, options, batch_size=batch_size),
        take=lambda result, rows: result[rows],
        count_tokens=len if req.token_ids else _text_tokens(served, req.prompt_name),
    )
    return await state.run_job(request, served, operation, req.inputs, policy is not LongInputs.ERROR, positions)


async def embed(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_embed(data, state.config.max_client_batch_size)
    served = state.pick(req.model, EMBEDDING, "/embed")
    result = await _embed_job(state, request, served, req)
    return Reply(result.rows, result, _characters(req.inputs), served.model.provider)


async def openai_embeddings(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_openai_embeddings(data, state.config.max_client_batch_size)
    served = state.pick(req.model, EMBEDDING, "/v1/embeddings")
    result = await _embed_job(state, request, served, req)
    rows = np.ascontiguousarray(result.rows, dtype="<f4")
    if req.encoding_format == "base64":
        embeddings: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    else:
        embeddings = list(rows)  # float32 rows, which orjson writes as arrays of their shortest decimals
    payload = {
        "object": "list",
        "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(embeddings)],
        "model": served.name,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    }
    return Reply(payload, result, _characters(req.inputs), served.model.provider)


# -- token vectors: multi-vector models (late interaction), and dense models' token embeddings -----------
async def similarity(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    """TEI's ``/similarity``: the cosine of ``source_sentence`` with each sentence, from one embed job of all."""
    req = parse_similarity(data, state.config.max_client_batch_size)
    served = state.pick(req.model, EMBEDDING, "/similarity")
    try:
        result = await _embed_job(state, request, served, req)
    except TooLongError as error:  # its position counts the source sentence first
        i = error.position
        label = "`inputs.source_sentence`" if i == 0 else f"`inputs.sentences[{i - 1}]`"
        raise error.named(label, "send parameters.truncate=true") from None
    vectors = np.asarray(result.rows)
    scores = cos_sim(vectors[:1], vectors[1:])[0]
    return Reply(scores.tolist(), result, _characters(req.inputs), served.model.provider)


def _token_vectors_operation(
    state: ServerState, served: Served, task: str | None, prompt_name: str | None, direction: str
) -> Operation:
    """One text → its matrix of token vectors: a multi-vector model's kept vectors for ``task`` (its query
    or document side, as ``encode_query`` / ``encode_document``), or a dense model's token embeddings."""
    batch_size = state.config.max_batch_size
    model = served.model
    truncation = cast(Any, direction)
    limit = None
    if isinstance(model, MultiVectorEncoder):
        mve, name = model, model.task_prompt_name(task, prompt_name)
        limit = mve.token_limit(task)

        def prepare(items: list[Any]) -> Any:
            return mve.prepare(items, task=task, prompt_name=name, truncation_direction=truncation)

        def run(prepared: Any) -> Any:
            return mve.encode_prepared(prepared, task=task, batch_size=batch_size)

    elif isinstance(model, SentenceTransformer):
        dense, name = model, prompt_name

        def prepare(items: list[Any]) -> Any:
            return dense.prepare(items, prompt_name=name, truncation_direction=truncation)

        def run(prepared: Any) -> Any:
            return dense.token_embeddings_prepared(prepared, batch_size=batch_size)

    else:
        raise RequestError(422, f"model {served.name!r} is {a_model_of(served.task)}: it has no token vectors")
    return Operation(
        key=("token_vectors", task, name, direction),
        prepare=prepare,
        run=run,
        take=lambda result, rows: [result[i] for i in rows.tolist()],
        count_tokens=_text_tokens(served, name),
        token_limit=limit,
    )


async def embed_all(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_embed_all(data, state.config.max_client_batch_size)
    served = state.pick(req.model, (MULTI_VECTOR, EMBEDDING), "/embed_all")
    _check_prompt(served, req.prompt_name)
    if req.task is not None and served.task != MULTI_VECTOR:
        raise RequestError(422, f"`task` is for multi-vector models; {served.name!r} is {a_model_of(served.task)}")
    operation = _token_vectors_operation(state, served, req.task, req.prompt_name, req.truncation_direction)
    policy = _policy(state, req, no_chunk="/embed_all (token vectors are per window)")
    result = await state.run_job(request, served, operation, req.inputs, policy is not LongInputs.ERROR)
    payload = [np.ascontiguousarray(matrix) for matrix in result.rows]  # orjson writes C-contiguous arrays as is
    return Reply(payload, result, _characters(req.inputs), served.model.provider)


async def _late_interaction_job(
    state: ServerState, request: Request, served: Served, query: str, texts: list[str], req: Any
) -> JobResult:
    """A multi-vector model's rerank scores: the query's and the documents' token vectors through the same
    operation as /embed_all (each batched with other requests'), then MaxSim (``MultiVectorEncoder.similarity``)."""
    policy = _policy(state, req, no_chunk="late-interaction reranking")
    direction = getattr(req, "truncation_direction", "right")
    truncate = policy is not LongInputs.ERROR
    queries = await state.run_job(
        request, served, _token_vectors_operation(state, served, "query", None, direction), [query], truncate
    )
    documents = await state.run_job(
        request, served, _token_vectors_operation(state, served, "document", None, direction), texts, truncate
    )
    model = cast(MultiVectorEncoder, served.model)
    scores = await asyncio.to_thread(model.similarity, queries.rows, documents.rows)  # the event loop never scores
    return _together(scores[0], [queries, documents], at_once=False)


# -- sparse embeddings ---------------------------------------------------------------------------------
async def _sparse_job(
    state: ServerState, request: Request, served: Served, req: Any, positions: list[int] | None = None
) -> JobResult:
    model = cast(SparseEncoder, served.model)
    if positions is None:
        if req.task is None and model.router is not None and model.router.default_route is None:
            routes = ", ".join(map(repr, model.routes))
            raise RequestError(422, f"model {served.name!r} has no default route: send `task` (one of {routes})")
        model.lookup_route(req.task)  # an unknown route: 422, naming the model's routes
        if model.router is None and req.task not in (None, *TASK_PROMPT_NAMES):  # a typo ran plain encode
            tasks = " or ".join(map(repr, TASK_PROMPT_NAMES))
            raise RequestError(422, f"`task` must be {tasks} (or null), got {req.task!r}")
        # a task chooses its prompt as encode_query / encode_document do
        req = replace(req, prompt_name=model.task_prompt_name(req.task, req.prompt_name))
        req = await _prompted_ids_as_texts(served, req, "inputs")
    if req.token_ids is None:
        return await _texts_and_ids(
            lambda part, where: _sparse_job(state, request, served, part, where), req, served, "inputs"
        )
    _check_prompt(served, req.prompt_name)
    if req.token_ids and positions is None:
        _check_ids(served, req.inputs, "inputs", req.single)
    batch_size, overlap = state.config.max_batch_size, served.chunk_overlap
    policy = _policy(state, req, no_chunk=_NO_CHUNK if req.token_ids or positions is not None else None)
    tokenize = _windowing(policy)

    def take(result: Any, rows: np.ndarray) -> list[list[dict[str, Any]]]:
        out = []
        for row in rows.tolist():
            indices, values = result.row(row)
            out.append([{"index": i, "value": v} for i, v in zip(indices.tolist(), values.tolist())])
        return out

    operation = Operation(
        key=(
            "sparse",
            req.task,
            req.prompt_name,
            req.truncation_direction,
            req.token_ids,
            req.max_active_dims,
            tokenize,
        ),
        prepare=lambda items: model.prepare(
            items,
            prompt_name=req.prompt_name,
            truncation_direction=req.truncation_direction,
            token_ids=req.token_ids,
            long_inputs=tokenize,
            chunk_overlap=overlap,
            task=req.task,
        ),
        run=lambda prepared: model.encode_prepared(
            prepared, max_active_dims=req.max_active_dims, batch_size=batch_size
        ),
        take=take,
        count_tokens=len if req.token_ids else _text_tokens(served, req.prompt_name, req.task),
        token_limit=model.token_limit(req.task),
    )
    return await state.run_job(request, served, operation, req.inputs, policy is not LongInputs.ERROR, positions)


async def embed_sparse(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_sparse(data, state.config.max_client_batch_size)
    served = state.pick(req.model, SPARSE, "/embed_sparse")
    result = await _sparse_job(state, request, served, req)
    return Reply(result.rows, result, _characters(req.inputs), served.model.provider)


# -- cross-encoder scores ------------------------------------------------------------------------------
async def _score_job(
    state: ServerState,
    request: Request,
    served: Served,
    items: list[Any],
    *,
    raw: bool,
    req: Any,
    direction: str,
) -> JobResult:
    model = cast(CrossEncoder, served.model)
    batch_size, overlap = state.config.max_batch_size, served.chunk_overlap
    # TEI's scores, whatever activation the model was saved with (an ms-marco reranker's is Identity, an NLI
    # model's too): raw_scores gives the logits, else softmax over several labels or the sigmoid of one
    activation = "identity" if raw else "sigmoid" if model.num_labels == 1 else "softmax"
    policy = _policy(state, req)
    tokenize = _windowing(policy)

    def prepare(pairs: list[Any]) -> Any:
        return model.prepare(
            pairs,
            truncation_direction=direction,  # type: ignore[arg-type]
            long_inputs=tokenize,
            chunk_overlap=overlap,
        )

    operation = Operation(
        key=("score", raw, direction, tokenize),
        prepare=prepare,
        run=lambda prepared: model.score_prepared(prepared, activation_fn=activation, batch_size=batch_size),
        take=lambda result, rows: result[rows],
        count_tokens=_text_tokens(served, None),
    )
    return await state.run_job(request, served, operation, items, policy is not LongInputs.ERROR)


def _reranks(served: Served) -> bool:
    """Whether a model answers the rerank routes: a multi-vector model, or a cross-encoder of one label."""
    return served.task == MULTI_VECTOR or (
        served.task == CROSS_ENCODER and cast(CrossEncoder, served.model).num_labels == 1
    )


def _pick_reranker(state: ServerState, name: str | None, route: str) -> Served:
    """The model a rerank request names, or without one the first served model that reranks (a 3-label NLI
    cross-encoder served before the reranker took TEI's model-less rerank requests, all 422s)."""
    if name is None:
        name = next((served.name for served in state.models.values() if _reranks(served)), None)
    served = state.pick(name, (CROSS_ENCODER, MULTI_VECTOR), route)
    if not _reranks(served):
        labels = cast(CrossEncoder, served.model).num_labels
        raise RequestError(
            422,
            f"{route} needs a reranker with one score per pair; model {served.name!r} has {labels} labels. "
            f"{state.served_by_task()}",
        )
    return served


async def rerank(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_rerank(data, state.config.max_client_batch_size)
    served = _pick_reranker(state, req.model, "/rerank")
    pairs = [(req.query, text) for text in req.texts]
    if served.task == MULTI_VECTOR:
        result = await _late_interaction_job(state, request, served, req.query, req.texts, req)
    else:
        result = await _score_job(
            state, request, served, pairs, raw=req.raw_scores, req=req, direction=req.truncation_direction
        )
    order = np.argsort(-result.rows, kind="stable")
    ranks = []
    for i in order.tolist():
        rank: dict[str, Any] = {"index": i, "score": float(result.rows[i])}
        if req.return_text:
            rank["text"] = req.texts[i]
        ranks.append(rank)
    return Reply(ranks, result, _characters(pairs), served.model.provider)


async def openai_rerank(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_openai_rerank(data, state.config.max_client_batch_size)
    served = _pick_reranker(state, req.model, "/v1/rerank")
    pairs = [(req.query, text) for text in req.texts]
    if served.task == MULTI_VECTOR:
        result = await _late_interaction_job(state, request, served, req.query, req.texts, req)
    else:
        result = await _score_job(state, request, served, pairs, raw=False, req=req, direction="right")
    order = np.argsort(-result.rows, kind="stable")[: req.top_n]
    results = []
    for i in order.tolist():
        item: dict[str, Any] = {"index": i, "relevance_score": float(result.rows[i])}
        if req.return_text:
            item["document"] = {"text": req.texts[i]}
        results.append(item)
    payload = {"model": served.name, "results": results, "usage": {"total_tokens": result.tokens}}
    return Reply(payload, result, _characters(pairs), served.model.provider)


async def predict(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_predict(data, state.config.max_client_batch_size)
    served = state.pick(req.model, CROSS_ENCODER, "/predict")
    result = await _score_job(
        state,
        request,
        served,
        req.inputs,
        raw=req.raw_scores,
        req=req,
        direction=req.truncation_direction,
    )
    labels = served.labels
    scores = np.asarray(result.rows, dtype=np.float32).reshape(len(req.inputs), -1)
    predictions = [
        [{"score": float(row[j]), "label": labels[j]} for j in np.argsort(-row, kind="stable").tolist()]
        for row in scores
    ]
    payload = predictions[0] if req.single else predictions
    return Reply(payload, result, _characters(req.inputs), served.model.provider)


# -- tokenizer -----------------------------------------------------------------------------------------
async def tokenize(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_tokenize(data, state.config.max_client_batch_size)
    served = state.pick(req.model, None, "/tokenize")
    _check_prompt(served, req.prompt_name)
    # the model's default prompt without a prompt_name, as /embed applies it (and TEI's /tokenize)
    prompt = served.model._resolve_prompt(None, req.prompt_name) or ""
    texts = [prompt + text for text in req.inputs]
    # the tokens the model would see, as /embed's long_inputs and truncate say: truncated (its long texts cut before
    # tokenizing), or whole (chunk: every token is in a window); error: an over-long text refused by name. Whole
    # always, a 2 MB text's ~950,000 tokens cost 41 s and ~1 GB of the server's memory per request
    policy = _policy(state, req)
    tokenizer = served.model._tokenizer

    def run() -> list[list[dict[str, Any]]]:
        limit = tokenizer.max_seq_length
        # shown without the special tokens, the model still has them: the text keeps what they leave
        room = limit if req.add_special_tokens else limit - tokenizer.special_count(False)
        if policy is LongInputs.TRUNCATE:
            encodings = tokenizer.truncated_encodings(
                texts, req.truncation_direction, add_special_tokens=req.add_special_tokens, max_length=room
            )
        else:
            whole = served.untruncated.encode_batch(texts, add_special_tokens=req.add_special_tokens)
            if policy is LongInputs.ERROR and (over := [i for i, e in enumerate(whole) if len(e.ids) > room]):
                raise TooLongError(over[0], len(whole[over[0]].ids) + limit - room, limit)
            encodings = [(e, 0) for e in whole]
        out = []
        for text, (e, shift) in zip(texts, encodings):
            at_byte = _utf8_offsets(text)
            tokens = []
            for token_id, token, special, (start, stop) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets):
                is_special = bool(special)
                start, stop = start + shift, stop + shift
                tokens.append(
                    {
                        "id": token_id,
                        "text": token if is_special else text[start:stop],
                        "special": is_special,
                        "start": None if is_special else int(at_byte[start]),
                        "stop": None if is_special else int(at_byte[stop]),
                    }
                )
            out.append(tokens)
        return out

    # admitted as every input is (--max-concurrent-requests): a long text's tokens cost a thread and memory too;
    # the event loop never tokenizes
    tokens = await state.run_in_thread(request, len(texts), served.worker.items_per_second, run)
    return Reply(tokens, None, _characters(texts), served.model.provider)


def _utf8_offsets(text: str) -> Any:
    """Each character offset of ``text`` (0 to its length) as a UTF-8 byte offset: TEI's /tokenize answers
    ``start``/``stop`` in bytes of the input (Rust's offsets), where Python's tokenizers gives characters."""
    if text.isascii():
        return range(len(text) + 1)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
    return np.concatenate([[0], np.cumsum(widths)])


async def decode(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    req = parse_decode(data, state.config.max_client_batch_size)
    served = state.pick(req.model, None, "/decode")
    _check_ids(served, req.ids, "ids", req.single)
    texts = await asyncio.to_thread(
        served.untruncated.decode_batch, req.ids, skip_special_tokens=req.skip_special_tokens
    )
    return Reply(list(texts), None, 0, served.model.provider)


Handler = Callable[["ServerState", "Request", dict[str, Any]], Awaitable[Reply]]


async def default_route(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    """TEI's default route (``POST /``, SageMaker's ``/invocations``), where huggingface_hub's ``InferenceClient``
    posts: the route of the named (else the first served) model's task, as TEI answers for its model type; an
    embedding model's sentence-similarity request (``inputs`` an object) goes to ``/similarity``."""
    name = data.get("model")
    served = state.pick(name if isinstance(name, str) else None, None, "/")
    handler: Handler = {EMBEDDING: embed, SPARSE: embed_sparse, MULTI_VECTOR: embed_all}.get(served.task, predict)
    if served.task == CROSS_ENCODER and "query" in data:
        handler = rerank
    if served.task == EMBEDDING and isinstance(data.get("inputs"), dict):
        handler = similarity
    if name is None and "query" in data and "texts" in data:
        # TEI's rerank body, whatever model is served first: the first that reranks answers it (an embedding
        # model served first took it, and said only that `inputs` was missing)
        handler = rerank
    return await handler(state, request, data)


async def vertex(state: ServerState, request: Request, data: dict[str, Any]) -> Reply:
    """TEI's ``POST /vertex``: each of ``instances`` answered as the default route answers it (all at once, each
    batched with other requests), as ``{"predictions": [...]}`` in their order; a failing instance fails the request,
    as in TEI."""

    def scores_pairs(instance: dict[str, Any]) -> bool:
        name = instance.get("model")
        try:
            served = state._pick(name if isinstance(name, str) else None, None, "/vertex")
        except RequestError:  # an unknown model: that instance's own answer says so
            return False
        return served.task == CROSS_ENCODER and "query" not in instance

    instances = parse_vertex(data, state.config.max_client_batch_size, scores_pairs)

    def named(i: int, error: RequestError) -> RequestError:  # named by its place, as parse_vertex names a malformed one
        message = f"`instances[{i}]`: {error.message}"
        return RequestError(error.status, message, error.error_type, retry_after=error.retry_after, code=error.code)

    name = instances[0].get("model")  # the request's model label: the first instance's (the others run in tasks)
    try:
        state.pick(name if isinstance(name, str) else None, None, "/vertex")
    except RequestError as error:
        raise named(0, error) from error

    async def answer(i: int, instance: dict[str, Any]) -> Reply:
        try:
            return await default_route(state, request, instance)
        except RequestError as error:
            raise named(i, error) from error

    # The first instance to fail (a 429 among them, at once) fails the request: the others are dropped, not run.
    replies = await _all_or_none([answer(i, instance) for i, instance in enumerate(instances)])
    payload = {"predictions": [reply.payload for reply in replies]}
    ran = [reply.result for reply in replies if reply.result is not None]  # every instance runs on a model worker
    job = _together(None, ran, at_once=True) if len(ran) == len(replies) else None
    return Reply(payload, job, sum(reply.characters for reply in replies), replies[0].provider)


# route → (handler, whose error shape it speaks)
HANDLERS: dict[str, tuple[Handler, str]] = {
    "/embed": (embed, "tei"),
    "/embed_all": (embed_all, "tei"),
    "/embed_sparse": (embed_sparse, "tei"),
    "/similarity": (similarity, "tei"),
    "/rerank": (rerank, "tei"),
    "/predict": (predict, "tei"),
    "/tokenize": (tokenize, "tei"),
    "/decode": (decode, "tei"),
    "/v1/embeddings": (openai_embeddings, "openai"),
    "/embeddings": (openai_embeddings, "openai"),
    "/v1/rerank": (openai_rerank, "openai"),
    "/": (default_route, "tei"),
    "/invocations": (default_route, "tei"),
    "/vertex": (vertex, "tei"),
}
