"""OpenAI routes: authenticated pass-through to vLLM's own OpenAI server.

Requests are forwarded as sent (plus `stream_options.include_usage`, so tokens can be
counted per key); responses stream back event by event, never buffered. vLLM does the
validation, sampling, harmony parsing and tool calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from serving.errors import ServingError, error_responses, from_upstream_exception
from serving.protocols.openai import compat as compat
from serving.protocols.openai import stream as sse
from serving.relay_response import RelayResponse
from serving.sidecar.deps import Principal, get_settings, get_upstream, require
from serving.sidecar.metrics import record_tokens
from serving.upstream import (
    close_quietly,
    open_upstream,
    passthrough_headers,
    raw_reads,
    read_and_close,
    read_unless_disconnected,
)


class _OpenAIRequest(BaseModel):
    """Only what the sidecar itself looks at; every other field goes to vLLM untouched."""

    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool | None = None


class ChatCompletionRequest(_OpenAIRequest):
    messages: list[dict[str, Any]]


class CompletionRequest(_OpenAIRequest):
    prompt: str | list[Any]


class ResponsesRequest(_OpenAIRequest):
    input: str | list[Any]


# 200 is JSON, or an SSE stream with `"stream": true`.
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["OpenAI"], responses=error_responses("openai"))

    @router.post("/chat/completions", responses=_STREAMED,
                 summary="Chat completion (streaming or not)")
    async def chat_completions(
        request: Request,
        body: ChatCompletionRequest = Body(...),
        _: Principal = Depends(require("chat")),
    ) -> Response:
        return await forward(request, "/v1/chat/completions", body, alias_reasoning=True)

    @router.post("/completions", responses=_STREAMED,
                 summary="Text completion (raw prompt)")
    async def completions(
        request: Request,
        body: CompletionRequest = Body(...),
        _: Principal = Depends(require("completions")),
    ) -> Response:
        return await forward(request, "/v1/completions", body, alias_reasoning=False)

    @router.post("/responses", responses=_STREAMED,
                 summary="Responses API")
    async def responses(
        request: Request,
        body: ResponsesRequest = Body(...),
        _: Principal = Depends(require("chat")),
    ) -> Response:
        return await forward(request, "/v1/responses", body, alias_reasoning=False)

    @router.get("/models", summary="List the served model names")
    async def list_models(request: Request, _: Principal = Depends(require("models"))) -> Response:
        models = await forward_get(request, "/v1/models")
        return compat.models_response(models, compat.catalogue(get_settings(request)))

    @router.get("/models/{model_id:path}", summary="Describe one served model")
    async def get_model(
        request: Request, model_id: str, _: Principal = Depends(require("models"))
    ) -> Response:
        # Quoted: a decoded "../" or control character must not change the upstream path.
        return await forward_get(request, f"/v1/models/{quote(model_id, safe='')}")

    return router


async def forward_get(request: Request, path: str) -> Response:
    upstream = await open_upstream(get_upstream(request), "GET", path, headers=_trace(request))
    body = await read_and_close(upstream)
    return Response(body, upstream.status_code, headers=passthrough_headers(upstream))


async def forward(
    request: Request, path: str, body: _OpenAIRequest, *, alias_reasoning: bool
) -> Response:
    settings = get_settings(request)
    payload = compat.normalise(path, body.model_dump(exclude_unset=True),
                               compat.catalogue(settings))
    streaming = bool(payload.get("stream"))
    strip_usage = streaming and _request_usage(payload, path)
    upstream = await open_upstream(
        get_upstream(request), "POST", path, json=payload, headers=_trace(request)
    )
    alias = alias_reasoning and settings.reasoning_content_alias
    if streaming and upstream.status_code == 200:
        return RelayResponse(
            relay_stream(request, upstream, alias=alias, strip_usage=strip_usage),
            media_type="text/event-stream",
            headers=passthrough_headers(upstream),
        )
    try:
        raw = await read_unless_disconnected(request, upstream)
    finally:
        await close_quietly(upstream)
    if raw is None:  # our client left; vLLM's request was aborted with the connection
        return Response(status_code=499)
    if upstream.status_code == 200:
        raw = _account_and_alias(request, raw, alias=alias)
    return Response(raw, upstream.status_code, headers=passthrough_headers(upstream))


def _request_usage(payload: dict[str, Any], path: str) -> bool:
    """Ask vLLM for a usage chunk when the client did not; True if we must strip it again."""
    if path in ("/v1/responses", "/v1/messages"):  # these report usage in their events anyway
        return False
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return True


def _account_and_alias(request: Request, raw: bytes, *, alias: bool) -> bytes:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    if isinstance(usage, dict):
        record_tokens(
            request,
            prompt_tokens=int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
            completion_tokens=int(
                usage.get("completion_tokens") or usage.get("output_tokens") or 0
            ),
        )
    if not alias:
        return raw
    return json.dumps(sse.alias_reasoning_in_json(parsed), ensure_ascii=False).encode()


async def relay_stream(
    request: Request, upstream: httpx.Response, *, alias: bool, strip_usage: bool
) -> AsyncIterator[bytes]:
    """Forward SSE reads as they arrive; an upstream failure becomes an SSE error event.
    Per read: one `rfind` and two `in` scans (see `openai_stream.SSERelay`)."""
    relay = sse.SSERelay(alias=alias, strip_usage=strip_usage)
    try:
        async for read in raw_reads(upstream):
            if out := relay.feed(read):
                yield out
        if rest := relay.flush():
            yield rest
    except httpx.HTTPError as exc:
        err: ServingError = from_upstream_exception(exc)
        yield sse.error_event(err.message, code=err.code, error_type=err.error_type)
    finally:
        await close_quietly(upstream)
        if relay.usage is not None:
            record_tokens(request, prompt_tokens=relay.usage.prompt_tokens,
                          completion_tokens=relay.usage.completion_tokens)


def _trace(request: Request) -> dict[str, str]:
    return {"x-request-id": request.state.request_id}

