"""`/api/embed` and the legacy `/api/embeddings`, answered by the companion embedding engine
(see serving.protocols.embedding_engine) and written as Ollama writes them."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from serving.errors import OLLAMA, dialect_route
from serving.protocols.embedding_engine import embed
from serving.protocols.ollama.types import (
    EmbeddingsRequest,
    EmbedRequest,
    openapi_body,
    parse_body,
)
from serving.sidecar.interface import Call, work

Embeddings = Annotated[Call, Depends(work("embeddings"))]


def build_router() -> APIRouter:
    router = APIRouter(tags=["Ollama"], route_class=dialect_route(OLLAMA),
                       responses=OLLAMA.responses())

    @router.post("/api/embed", summary="Embeddings for one or more inputs",
                 openapi_extra=openapi_body(EmbedRequest))
    async def ollama_embed(request: Request, call: Embeddings) -> JSONResponse:
        # Parsed by hand: Ollama's own examples (curl -d) send JSON without a Content-Type.
        body = parse_body(EmbedRequest, await request.body())
        inputs = [body.input] if isinstance(body.input, str) else body.input
        started = time.perf_counter_ns()
        result = await embed(call, body.model, inputs, truncate=body.truncate,
                             dimensions=body.dimensions)
        return JSONResponse({
            "model": result["model"],
            "embeddings": [item["embedding"] for item in result["data"]],
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": 0,  # the model stays loaded on a dedicated server
            "prompt_eval_count": int((result.get("usage") or {}).get("prompt_tokens") or 0),
        })

    @router.post("/api/embeddings", summary="Embedding of one prompt (legacy)",
                 openapi_extra=openapi_body(EmbeddingsRequest))
    async def ollama_embeddings(request: Request, call: Embeddings) -> JSONResponse:
        body = parse_body(EmbeddingsRequest, await request.body())
        result = await embed(call, body.model, [body.prompt], truncate=True, dimensions=None)
        return JSONResponse({"embedding": result["data"][0]["embedding"],
                             "model": result["model"]})

    return router
