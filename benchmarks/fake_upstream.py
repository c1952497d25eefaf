"""A fast, deterministic fake of vLLM's OpenAI server, for measuring a proxy's own cost.

A benchmark tool only, never used by the product. It answers like vLLM 0.32 does for
gpt-oss (role chunk, ``reasoning`` deltas, ``content`` deltas, a finish chunk, a usage
chunk, ``[DONE]``) with a fixed number of one-token chunks and optional fixed delays, and
keeps vLLM's ``vllm:generation_tokens_total`` / ``vllm:prompt_tokens_total`` counters on
``/metrics`` so the benchmark's token accounting can be checked against it.

Plain ASGI (no framework) so that the fake costs as little as possible::

    python -m benchmarks fake-upstream --port 8199 --chunks 32
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from serving.config import SERVED_MODEL_NAMES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MODEL_NAMES: tuple[str, ...] = SERVED_MODEL_NAMES  # the names the sidecar expects by default


@dataclass(frozen=True)
class FakeConfig:
    chunks: int = 16  # generated tokens per answer (capped by max_tokens)
    reasoning_chunks: int = 4  # of which the first ones are reasoning deltas
    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0


@dataclass
class _Counters:
    generation_tokens: int = 0
    prompt_tokens: int = 0
    requests: int = 0
    streamed_events: int = 0  # SSE events actually written (a slow proxy slows this down)
    ids: itertools.count[int] = field(default_factory=itertools.count)


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A deterministic stand-in for tokenization: whitespace-separated words."""
    if "prompt" in body:
        return len(str(body["prompt"]).split())
    return sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or ())


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chat_chunks(
    rid: str, model: str, n: int, cfg: FakeConfig, usage: dict[str, int] | None
) -> list[bytes]:
    base = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    out = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    for i in range(n):
        key = "reasoning" if i < cfg.reasoning_chunks else "content"
        out.append(_sse({**base, "choices": [{"index": 0, "delta": {key: f"t{i} "}}]}))
    finish = "length" if n < cfg.chunks else "stop"
    out.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    if usage is not None:
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def _completion_chunks(rid: str, model: str, n: int, usage: dict[str, int] | None) -> list[bytes]:
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model}
    out = [_sse({**base, "choices": [{"index": 0, "text": f"t{i} "}]}) for i in range(n)]
    if usage is not None:
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def _chat_body(
    rid: str, model: str, n: int, cfg: FakeConfig, usage: dict[str, int]
) -> dict[str, Any]:
    reasoning = "".join(f"t{i} " for i in range(min(n, cfg.reasoning_chunks)))
    content = "".join(f"t{i} " for i in range(cfg.reasoning_chunks, n))
    message = {"role": "assistant", "content": content, "reasoning": reasoning or None}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _respond(send: Send, status: int, payload: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_fake_upstream(cfg: FakeConfig) -> ASGIApp:
    counters = _Counters()

    def metrics_text() -> bytes:
        label = f'{{model_name="{MODEL_NAMES[0]}"}}'
        lines = [
            f"vllm:generation_tokens_total{label} {counters.generation_tokens}.0",
            f"fake:streamed_events_total {counters.streamed_events}.0",
            f"vllm:prompt_tokens_total{label} {counters.prompt_tokens}.0",
            f"vllm:request_success_total{label} {counters.requests}.0",
        ]
        return ("\n".join(lines) + "\n").encode()

    async def generate(send: Send, path: str, body: dict[str, Any]) -> None:
        model = str(body.get("model") or MODEL_NAMES[0])
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or cfg.chunks
        n = max(0, min(cfg.chunks, int(cap)))
        usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": n}
        usage["total_tokens"] = usage["prompt_tokens"] + n
        counters.generation_tokens += n
        counters.prompt_tokens += usage["prompt_tokens"]
        counters.requests += 1
        rid = f"fake-{next(counters.ids)}"
        chat = path.endswith("/chat/completions")
        if not body.get("stream"):
            reply = _chat_body(rid, model, n, cfg, usage) if chat else {"id": rid, "usage": usage}
            await _respond(send, 200, json.dumps(reply).encode(), b"application/json")
            return
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream_usage = usage if wants_usage else None
        chunks = (
            _chat_chunks(rid, model, n, cfg, stream_usage)
            if chat
            else _completion_chunks(rid, model, n, stream_usage)
        )
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if cfg.first_token_delay_s:
            await asyncio.sleep(cfg.first_token_delay_s)
        for index, chunk in enumerate(chunks):
            if cfg.chunk_delay_s and 1 < index <= n:
                await asyncio.sleep(cfg.chunk_delay_s)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            counters.streamed_events += 1
        await send({"type": "http.response.body", "body": b""})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        raw = await _read_body(receive)
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            try:
                body = json.loads(raw)
            except ValueError:
                await _respond(
                    send, 400, b'{"error": {"message": "bad JSON"}}', b"application/json"
                )
                return
            await generate(send, path, body)
        elif path == "/v1/models":
            data = [{"id": name, "object": "model", "owned_by": "fake"} for name in MODEL_NAMES]
            await _respond(
                send,
                200,
                json.dumps({"object": "list", "data": data}).encode(),
                b"application/json",
            )
        elif path == "/metrics":
            await _respond(send, 200, metrics_text(), b"text/plain; version=0.0.4")
        elif path in ("/health", "/ping"):
            await _respond(send, 200, b"", b"text/plain")
        elif path == "/version":
            await _respond(send, 200, b'{"version": "fake-upstream"}', b"application/json")
        else:
            await _respond(send, 404, b'{"error": {"message": "not found"}}', b"application/json")

    return app


def serve(port: int, cfg: FakeConfig, host: str = "127.0.0.1") -> None:
    import uvicorn

    uvicorn.run(
        create_fake_upstream(cfg), host=host, port=port, log_level="warning", access_log=False
    )
