"""OpenAI routes: authenticated pass-through to vLLM's own OpenAI server.

Requests are forwarded as sent (plus `stream_options.include_usage`, so tokens can be
counted per key); responses stream back event by event, never buffered. vLLM does the
validation, sampling, harmony parsing and tool calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from serving.errors import OPENAI, ServingError, dialect_route
from serving.protocols.names import model_names
from serving.protocols.openai import compat as compat
from serving.protocols.openai import embeddings
from serving.protocols.openai import stream as sse
from serving.relay_response import RelayResponse
from serving.sidecar.interface import Call, work
from serving.upstream import (
    close_quietly,
    open_upstream,
    passthrough_headers,
    read_and_close,
    read_unless_disconnected,
)


class OpenAIRequest(BaseModel):
    """Only what the sidecar itself looks at; every other field goes to vLLM untouched."""

    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool | None = None


class ChatCompletionRequest(OpenAIRequest):
    messages: list[dict[str, Any]]


class CompletionRequest(OpenAIRequest):
    prompt: str | list[Any]


class ResponsesRequest(OpenAIRequest):
    input: str | list[Any]


# 200 is JSON, or an SSE stream with `"stream": true`.
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}}


Models = Annotated[Call, Depends(work("models"))]


@dataclass(frozen=True)
class PassThrough:
    """A route that forwards its body to the same path of vLLM."""

    path: str  # vLLM's path, under /v1
    body: type[OpenAIRequest]
    permission: str
    summary: str
    alias_reasoning: bool = False  # add `reasoning_content` next to vLLM's `reasoning`

    def add_to(self, router: APIRouter) -> None:
        call_dependency = Depends(work(self.permission))

        async def endpoint(
            request: Request, body: OpenAIRequest = Body(...), call: Call = call_dependency
        ) -> Response:
            return await forward(request, call, self.path, body,
                                 alias_reasoning=self.alias_reasoning)

        # The body's own model, so FastAPI validates and documents it (one endpoint function
        # serves every pass-through route).
        endpoint.__annotations__ = {**endpoint.__annotations__, "body": self.body}
        router.add_api_route(self.path.removeprefix("/v1"), endpoint, methods=["POST"],
                             summary=self.summary, responses=_STREAMED,
                             name=self.path.removeprefix("/v1/").replace("/", "_"))


PASS_THROUGH = (
    PassThrough("/v1/chat/completions", ChatCompletionRequest, "chat",
                "Chat completion (streaming or not)", alias_reasoning=True),
    PassThrough("/v1/completions", CompletionRequest, "completions",
                "Text completion (raw prompt)"),
    PassThrough("/v1/responses", ResponsesRequest, "chat", "Responses API"),
)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["OpenAI"], route_class=dialect_route(OPENAI),
                       responses=OPENAI.responses())
    for route in PASS_THROUGH:
        route.add_to(router)

    @router.get("/models", summary="List the served model names")
    async def list_models(call: Models) -> Response:
        models = await forward_get(call, "/v1/models")
        return compat.models_response(models, model_names(call.settings))

    @router.get("/models/{model_id:path}", summary="Describe one served model")
    async def get_model(call: Models, model_id: str) -> Response:
        # Quoted: a decoded "../" or control character must not change the upstream path.
        return await forward_get(call, f"/v1/models/{quote(model_id, safe='')}")

    router.include_router(embeddings.build_router(), prefix="")
    return router


async def forward_get(call: Call, path: str) -> Response:
    upstream = await open_upstream(call.upstream, "GET", path, headers=call.trace_headers)
    body = await read_and_close(upstream)
    return Response(body, upstream.status_code, headers=passthrough_headers(upstream))


async def forward(
    request: Request, call: Call, path: str, body: OpenAIRequest, *, alias_reasoning: bool
) -> Response:
    """Pass one request through to vLLM; `request` only to notice our client leaving."""
    payload = compat.normalise(path, body.model_dump(exclude_unset=True),
                               model_names(call.settings))
    streaming = bool(payload.get("stream"))
    strip_usage = streaming and _request_usage(payload, path)
    upstream = await open_upstream(
        call.upstream, "POST", path, json=payload, headers=call.trace_headers
    )
    alias = alias_reasoning and call.settings.reasoning_content_alias
    if streaming and upstream.status_code == 200:
        return RelayResponse(
            PassThroughRelay(call, upstream, alias=alias, strip_usage=strip_usage),
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
        raw = _account_and_alias(call, raw, alias=alias)
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


def _account_and_alias(call: Call, raw: bytes, *, alias: bool) -> bytes:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    if isinstance(usage, dict):
        call.record_tokens(
            prompt_tokens=int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
            completion_tokens=int(
                usage.get("completion_tokens") or usage.get("output_tokens") or 0
            ),
        )
    if not alias:
        return raw
    return json.dumps(sse.alias_reasoning_in_json(parsed), ensure_ascii=False).encode()


class PassThroughRelay:
    """vLLM's SSE as our client gets it, read by read (see `stream.SSERelay`): the reasoning
    alias, the usage chunk we asked for stripped; tokens accounted once, at the end."""

    def __init__(self, call: Call, upstream: httpx.Response, *, alias: bool,
                 strip_usage: bool) -> None:
        self.upstream = upstream
        self._call = call
        self._sse = sse.SSERelay(alias=alias, strip_usage=strip_usage)
        self.feed = self._sse.feed  # the per-read work: one rfind and two `in` scans

    def end(self) -> bytes:
        return self._sse.flush()

    def failed(self, error: ServingError) -> bytes:
        return sse.error_event(error.message, code=error.code, error_type=error.error_type)

    async def close(self) -> None:
        await close_quietly(self.upstream)
        if (usage := self._sse.usage) is not None:
            self._call.record_tokens(prompt_tokens=usage.prompt_tokens,
                                     completion_tokens=usage.completion_tokens)
