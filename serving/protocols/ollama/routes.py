"""Ollama API routes: validate, translate (`translate`), call vLLM, translate back (`stream`).

Upstream requests are always streamed (``stream_options.include_usage``) so the timings
are measured for real; a non-streaming Ollama request aggregates the stream. Errors before
the first byte are ``{"error": "..."}`` with the right status; after it, a final
``{"error": "..."}`` NDJSON line. A client that disconnects closes the upstream response,
which makes vLLM abort the request.

``/api/version`` and ``GET|HEAD /`` need no key: Ollama clients (the CLI, Open WebUI) probe
them before sending credentials to detect the server, and they reveal nothing but the
emulated Ollama API version.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from serving.errors import (
    OLLAMA,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServingError,
    UpstreamUnavailable,
    dialect_route,
)
from serving.protocols.names import model_names
from serving.protocols.ollama import embeddings
from serving.protocols.ollama import stream as st
from serving.protocols.ollama import translate as tr
from serving.protocols.ollama.context import harmony_encoding
from serving.protocols.ollama.model_routes import OllamaState, add_model_routes, served_model
from serving.protocols.ollama.modelfile import apply_to_chat, apply_to_generate
from serving.protocols.ollama.types import (
    ChatRequest,
    GenerateRequest,
    is_zero_duration,
    openapi_body,
    parse_body,
)
from serving.relay_response import RelayResponse
from serving.sidecar.interface import Call, work
from serving.upstream import (
    close_quietly,
    open_upstream,
    raw_reads,
    read_and_close,
    unless_disconnected,
)

log = logging.getLogger(__name__)
OLLAMA_API_VERSION = "0.12.0"  # the Ollama API this sidecar implements
_UPSTREAM_ERRORS: dict[int, type[ServingError]] = {
    400: BadRequest,
    404: NotFound,
    413: PayloadTooLarge,
    503: UpstreamUnavailable,
}


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def created_at() -> str:
    """RFC 3339 UTC with nanoseconds, as Ollama writes it (one strftime per second)."""
    second, ns = divmod(time.time_ns(), 1_000_000_000)
    return f"{_second_prefix(second)}.{ns:09d}Z"





def upstream_error(status: int, raw: bytes) -> ServingError:
    try:
        body = json.loads(raw)
        detail = body.get("error", body)
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace")[:500]
    err = _UPSTREAM_ERRORS.get(status, ServingError)(message or f"engine error (HTTP {status})")
    err.status_code = status if status >= 400 else 502
    return err


def _note(call: Call, router_state: OllamaState, translation: tr.Translation) -> None:
    seen = router_state.logged_options
    for name in translation.ignored_options:
        if name not in seen:
            seen.add(name)
            reason = tr.IGNORED_OPTIONS.get(name, "unknown option")
            log.info("Ollama option %r accepted and ignored (%s); logged once", name, reason)
    for note in translation.notes:
        log.info("ollama request %s: %s", call.request_id, note)


def _account(call: Call, state: st.StreamState) -> None:
    call.record_tokens(prompt_tokens=state.prompt_tokens, completion_tokens=state.completion_tokens)
    for dropped in state.dropped_tool_calls:
        log.warning(
            "request %s: dropped a malformed tool call from the model: %.200r",
            call.request_id,
            dropped,
        )


async def _chunks(
    upstream: httpx.Response, state: st.StreamState
) -> AsyncIterator[list[dict[str, Any]]]:
    events = st.SSEEvents()
    async for read in raw_reads(upstream):
        try:
            parsed = events.feed(read)
        except ValueError:
            raise ServingError("The engine sent a malformed stream event.") from None
        for event in parsed:
            yield st.openai_chunk_to_ollama(
                event, state, now_ns=time.perf_counter_ns(), created_at=created_at()
            )


class NdjsonRelay:
    """vLLM's SSE reads as Ollama NDJSON: each event parsed once, each read's lines encoded
    once; the final line (timings, `done`) after the engine's last read."""

    def __init__(self, call: Call, upstream: httpx.Response, state: st.StreamState) -> None:
        self.upstream = upstream
        self._call = call
        self._state = state
        self._events = st.SSEEvents()

    def feed(self, read: bytes) -> bytes:
        try:
            events = self._events.feed(read)
        except ValueError:
            raise ServingError("The engine sent a malformed stream event.") from None
        if not events:
            return b""
        state, now_ns, at = self._state, time.perf_counter_ns(), created_at()
        lines = [line for event in events
                 for line in st.openai_chunk_to_ollama(event, state, now_ns=now_ns,
                                                       created_at=at)]
        return st.encode_ndjson(lines) if lines else b""

    def end(self) -> bytes:
        return st.encode_ndjson(
            st.final_lines(self._state, now_ns=time.perf_counter_ns(), created_at=created_at()))

    def failed(self, error: ServingError) -> bytes:
        return st.encode_ndjson([{"error": error.message}])

    async def close(self) -> None:
        await close_quietly(self.upstream)
        _account(self._call, self._state)


async def _collect(
    request: Request, upstream: httpx.Response, state: st.StreamState
) -> dict[str, Any] | None:
    """Aggregate the whole stream; None if our client disconnected first (vLLM aborted)."""

    async def consume() -> dict[str, Any]:
        async for _ in _chunks(upstream, state):
            pass
        return st.aggregate(state, now_ns=time.perf_counter_ns(), created_at=created_at())

    return await unless_disconnected(request, consume)


async def run(
    request: Request,
    call: Call,
    router_state: OllamaState,
    translation: tr.Translation,
    state: st.StreamState,
    *,
    stream: bool,
) -> Response:
    """Send the translated request to vLLM and answer in Ollama's dialect; `request` only to
    notice our client leaving."""
    _note(call, router_state, translation)
    upstream = await open_upstream(
        call.upstream, "POST", translation.path, json=translation.body, headers=call.trace_headers
    )
    state.accepted_ns = time.perf_counter_ns()
    if upstream.status_code != 200:
        raise upstream_error(upstream.status_code, await read_and_close(upstream))
    if stream:
        return RelayResponse(NdjsonRelay(call, upstream, state),
                             media_type="application/x-ndjson")
    try:
        result = await _collect(request, upstream, state)
    finally:
        await close_quietly(upstream)
        _account(call, state)
    return JSONResponse(result) if result is not None else Response(status_code=499)


async def _max_model_len(call: Call, state: OllamaState, options: Any) -> int | None:
    """Only needed to report num_ctx clamping; fetched once per app."""
    if options is None or options.num_ctx is None or state.max_model_len is not None:
        return state.max_model_len
    return (await served_model(call, state)).max_model_len


def _loaded(kind: st.Kind, model: str, keep_alive: float | str | None) -> JSONResponse:
    """Ollama's answer to an empty prompt: the model is loaded (it always is here), or, with
    ``keep_alive: 0``, "unload" as Ollama says (a dedicated server keeps it loaded anyway)."""
    body: dict[str, Any] = {
        "model": model,
        "created_at": created_at(),
        "done": True,
        "done_reason": "unload" if is_zero_duration(keep_alive) else "load",
    }
    body.update(
        {"response": ""}
        if kind == "generate"
        else {"message": {"role": "assistant", "content": ""}}
    )
    return JSONResponse(body)


Chat = Annotated[Call, Depends(work("chat"))]


class OllamaChatRoutes:
    """/api/generate and /api/chat; one instance per router, sharing the router's state."""

    def __init__(self, state: OllamaState) -> None:
        self.state = state

    async def generate(self, request: Request, call: Chat) -> Response:
        started = time.perf_counter_ns()
        req = parse_body(GenerateRequest, await request.body())
        upstream_model, preset = model_names(call.settings).lookup(req.model)
        if req.raw and not call.principal.may("completions"):
            raise Forbidden(
                f"This API key (user '{call.principal.user}') lacks the 'completions' "
                "permission needed for raw: true."
            )
        if not req.prompt and not req.context and not req.raw:
            return _loaded("generate", req.model, req.keep_alive)
        prefix: list[dict[str, Any]] = []
        if preset is not None:
            req, prefix = apply_to_generate(req, preset)
        translation = tr.ollama_generate_to_openai(
            req, upstream_model=upstream_model, prefix=prefix,
            max_model_len=await _max_model_len(call, self.state, req.options),
        )
        state = st.StreamState(
            kind="generate",
            model=req.model,
            show_thinking=req.think is not False,
            started_ns=started,
            want_context=not req.raw,
        )
        return await run(request, call, self.state, translation, state, stream=req.stream)

    async def chat(self, request: Request, call: Chat) -> Response:
        started = time.perf_counter_ns()
        req = parse_body(ChatRequest, await request.body())
        upstream_model, preset = model_names(call.settings).lookup(req.model)
        if not req.messages:
            return _loaded("chat", req.model, req.keep_alive)
        if preset is not None:
            req = apply_to_chat(req, preset)
        max_model_len = await _max_model_len(call, self.state, req.options)
        translation = tr.ollama_chat_to_openai(
            req, upstream_model=upstream_model, max_model_len=max_model_len)
        state = st.StreamState(
            kind="chat", model=req.model, show_thinking=req.think is not False, started_ns=started
        )
        return await run(request, call, self.state, translation, state, stream=req.stream)


async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION}


async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


# 200 is one JSON object, or NDJSON lines with `"stream": true` (Ollama's default).
_NDJSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "application/x-ndjson": {}}}}


def build_router() -> APIRouter:
    # Load the harmony vocabulary now (~0.7 s, once per process) rather than inside the first
    # request that carries a `context`, where it would block the event loop.
    harmony_encoding()
    router = APIRouter(tags=["Ollama"], route_class=dialect_route(OLLAMA),
                       responses=OLLAMA.responses())
    state = OllamaState()
    chat = OllamaChatRoutes(state)
    router.add_api_route("/api/generate", chat.generate, methods=["POST"], responses=_NDJSON,
                         summary="Generate (prompt)", openapi_extra=openapi_body(GenerateRequest))
    router.add_api_route("/api/chat", chat.chat, methods=["POST"], responses=_NDJSON,
                         summary="Chat (messages, tools)", openapi_extra=openapi_body(ChatRequest))
    router.add_api_route("/api/version", version, methods=["GET"], summary="Ollama API version")
    router.add_api_route("/", root, methods=["GET"], response_class=PlainTextResponse,
                         summary="Ollama is running")
    # HEAD is the same handler; a second schema entry would duplicate the operation id.
    router.add_api_route("/", root, methods=["HEAD"], include_in_schema=False)
    add_model_routes(router, state)
    router.include_router(embeddings.build_router())
    return router
