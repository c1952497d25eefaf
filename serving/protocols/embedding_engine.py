"""The companion embedding engine, shared by both dialects' embedding routes
(`serving.protocols.openai.embeddings`, `serving.protocols.ollama.embeddings`).

gpt-oss has no embedding head, so embeddings are served by the companion engine
(serving.launcher.embedding_plan). A request naming the chat model (the seeds send
`"model": "gpt-oss:20b"`) is answered by the embedding model, and the response's `model`
field names the model that actually answered, so nobody mistakes the vectors for gpt-oss's.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from serving.errors import BadRequest, ServingError, from_upstream_exception
from serving.protocols.names import model_names
from serving.sidecar.interface import Call


def embedding_model_for(call: Call, requested: str) -> str:
    """The embedding engine's model name for what the client asked for, or a clear error."""
    settings = call.settings
    served = settings.embedding_model_name
    known = {served, f"{served}:latest", *settings.catalogue().names()}
    if requested not in known:
        model_names(settings).resolve(requested)  # aliases made with /api/copy; else 404
    if settings.embedding_upstream_url is None:
        raise BadRequest(f'"{requested}" does not support embeddings (the embedding engine '
                         "is off: SERVING_EMBEDDING_MODEL=off)", code="embeddings_unsupported")
    return served


async def embed(
    call: Call, model: str, inputs: list[str], *, truncate: bool, dimensions: int | None
) -> dict[str, Any]:
    """vLLM's OpenAI-shaped embedding result for `inputs` (engine errors raised)."""
    payload: dict[str, Any] = {"model": embedding_model_for(call, model), "input": inputs}
    if truncate:
        payload["truncate_prompt_tokens"] = -1  # vLLM: cut to the model's maximum length
    if dimensions is not None:
        payload["dimensions"] = dimensions
    upstream = await call_engine(call, payload)
    if upstream.status_code != 200:
        raise _engine_error(upstream)
    result: dict[str, Any] = upstream.json()
    record_prompt_tokens(call, result)
    return result


def record_prompt_tokens(call: Call, result: dict[str, Any]) -> None:
    usage = result.get("usage") or {}
    call.record_tokens(prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=0)


async def call_engine(call: Call, payload: dict[str, Any]) -> httpx.Response:
    try:
        return await call.embedding_upstream.post("/v1/embeddings", json=payload,
                                                  headers=call.trace_headers)
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
