"""Embeddings: `/v1/embeddings` (OpenAI), `/api/embed` and `/api/embeddings` (Ollama).

gpt-oss has no embedding head, so these are served by the companion embedding engine
(serving.launcher.embedding_plan). A request naming the chat model (the seeds send
`"model": "gpt-oss:20b"`) is answered by the embedding model, and the response's `model`
field names the model that actually answered, so nobody mistakes the vectors for gpt-oss's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serving.errors import BadRequest, ServingError, error_responses, from_upstream_exception
from serving.protocols.ollama.model_routes import registry
from serving.protocols.ollama.types import parse_body
from serving.sidecar.deps import Principal, get_settings, require
from serving.sidecar.metrics import record_tokens

CHAT_ALIASES = ("gpt-oss:latest", "gpt-oss")


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]


class OllamaEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str]
    truncate: bool = Field(default=True, description="Cut inputs to the model's context.")
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None
    dimensions: int | None = Field(default=None, ge=1)


class OllamaEmbeddingsRequest(BaseModel):
    """The legacy single-prompt shape: `{"model", "prompt"}` → `{"embedding": [...]}`."""

    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body in the OpenAPI schema, for routes that parse it themselves."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings", tags=["OpenAI"], responses=error_responses("openai"),
                 summary="Embeddings (companion model)")
    async def openai_embeddings(
        request: Request,
        body: OpenAIEmbeddingRequest = Body(...),
        _: Principal = Depends(require("embeddings")),
    ) -> Response:
        payload = body.model_dump(exclude_unset=True)
        payload["model"] = embedding_model_for(request, body.model)
        upstream = await call_engine(request, payload)
        if upstream.status_code == 200:
            usage = upstream.json().get("usage") or {}
            record_tokens(request, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=0)
        return Response(upstream.content, upstream.status_code,
                        media_type="application/json")

    @router.post("/api/embed", tags=["Ollama"], responses=error_responses("ollama"),
                 summary="Embeddings for one or more inputs",
                 openapi_extra=_json_body(OllamaEmbedRequest))
    async def ollama_embed(
        request: Request, _: Principal = Depends(require("embeddings"))
    ) -> JSONResponse:
        # Parsed by hand: Ollama's own examples (curl -d) send JSON without a Content-Type.
        body = parse_body(OllamaEmbedRequest, await request.body())
        inputs = [body.input] if isinstance(body.input, str) else body.input
        started = time.perf_counter_ns()
        result = await embed(request, body.model, inputs, truncate=body.truncate,
                             dimensions=body.dimensions)
        return JSONResponse({
            "model": result["model"],
            "embeddings": [item["embedding"] for item in result["data"]],
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": 0,  # the model stays loaded on a dedicated server
            "prompt_eval_count": int((result.get("usage") or {}).get("prompt_tokens") or 0),
        })

    @router.post("/api/embeddings", tags=["Ollama"], responses=error_responses("ollama"),
                 summary="Embedding of one prompt (legacy)",
                 openapi_extra=_json_body(OllamaEmbeddingsRequest))
    async def ollama_embeddings(
        request: Request, _: Principal = Depends(require("embeddings"))
    ) -> JSONResponse:
        body = parse_body(OllamaEmbeddingsRequest, await request.body())
        result = await embed(request, body.model, [body.prompt], truncate=True, dimensions=None)
        return JSONResponse({"embedding": result["data"][0]["embedding"],
                             "model": result["model"]})

    return router


def embedding_model_for(request: Request, requested: str) -> str:
    """The embedding engine's model name for what the client asked for, or a clear error."""
    settings = get_settings(request)
    served = settings.embedding_model_name
    known = {served, f"{served}:latest", *settings.served_model_names, *CHAT_ALIASES}
    if requested not in known:
        registry(request).resolve(requested)  # aliases made with /api/copy; else 404
    if settings.embedding_upstream_url is None:
        raise BadRequest(f'"{requested}" does not support embeddings (the embedding engine '
                         "is off: SERVING_EMBEDDING_MODEL=off)", code="embeddings_unsupported")
    return served


async def embed(
    request: Request, model: str, inputs: list[str], *, truncate: bool, dimensions: int | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": embedding_model_for(request, model), "input": inputs}
    if truncate:
        payload["truncate_prompt_tokens"] = -1  # vLLM: cut to the model's maximum length
    if dimensions is not None:
        payload["dimensions"] = dimensions
    upstream = await call_engine(request, payload)
    if upstream.status_code != 200:
        raise _engine_error(upstream)
    result: dict[str, Any] = upstream.json()
    usage = result.get("usage") or {}
    record_tokens(request, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                  completion_tokens=0)
    return result


async def call_engine(request: Request, payload: dict[str, Any]) -> httpx.Response:
    client: httpx.AsyncClient | None = request.app.state.embedding_upstream
    if client is None:
        raise BadRequest("embeddings are not available: the embedding engine is off")
    try:
        return await client.post("/v1/embeddings", json=payload,
                                 headers={"x-request-id": request.state.request_id})
    except httpx.HTTPError as exc:
        raise from_upstream_exception(exc) from exc


def _engine_error(upstream: httpx.Response) -> ServingError:
    try:
        message = json.loads(upstream.content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = upstream.text[:500] or f"embedding engine answered {upstream.status_code}"
    err = ServingError(str(message))
    err.status_code = upstream.status_code if upstream.status_code < 500 else 503
    err.code = "embedding_error"
    return err
