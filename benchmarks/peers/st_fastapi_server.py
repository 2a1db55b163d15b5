"""The server users write by hand: FastAPI + sentence-transformers, one ``model.encode`` per request.

    python st_fastapi_server.py MODEL_DIR [--name minilm] [--port 8081] [--threads 2]

Runs in the ``st-fastapi`` benchmark venv (``benchmarks/envs.py``). It serves OpenAI's request and
response shape on ``POST /v1/embeddings`` (as fastembed-rt and infinity do, so every contender gets
the same request bytes) and ``GET /health``. The endpoint is a plain ``def``, as in FastAPI's
tutorials: FastAPI runs it on its thread pool, so concurrent requests call ``encode`` concurrently on
one torch intra-op pool of ``--threads`` threads. No batching across requests, no admission limit.
Binds 127.0.0.1; access logs off (as in the other servers under test).
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None


def create_app(model_dir: str, name: str) -> FastAPI:
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm up"])
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(request: EmbeddingRequest) -> dict:
        texts = [request.input] if isinstance(request.input, str) else request.input
        vectors = model.encode(texts)
        return {
            "object": "list",
            "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--name", default="minilm", help="the model name in responses")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.model_dir, args.name), host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
