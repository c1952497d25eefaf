"""A fake vLLM for in-process tests (httpx.MockTransport) that answers like vLLM 0.32 does.

It validates just enough to give the sidecar's routes their real code paths: 200 with a
chat/completion/response JSON, SSE (role chunk, reasoning and content deltas, finish chunk,
usage chunk when asked, ``[DONE]``) for ``stream: true``, 400 for bodies vLLM rejects and
404 for unknown models or paths, in vLLM's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

MODEL_NAMES = ("gpt-oss-20b", "gpt-oss:20b", "openai/gpt-oss-20b")
METRICS = (
    b'vllm:num_requests_running{model_name="gpt-oss-20b"} 0.0\n'
    b'vllm:num_requests_waiting{model_name="gpt-oss-20b"} 0.0\n'
)


def vllm_error(status: int, message: str) -> httpx.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return httpx.Response(status, json=body)


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def _usage(prompt: int = 7, completion: int = 3) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def models_body() -> dict[str, Any]:
    cards = [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "vllm",
              "root": "/models/smoke", "parent": None, "max_model_len": 8192}
             for name in MODEL_NAMES]
    return {"object": "list", "data": cards}


def _chat(body: dict[str, Any], stream: bool, usage_chunk: bool) -> httpx.Response:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body["model"]}
    if not stream:
        message = {"role": "assistant", "content": "Hello.", "reasoning": "Say hello.",
                   "tool_calls": []}
        return httpx.Response(200, json={
            **base, "object": "chat.completion", "usage": _usage(),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"reasoning": "Say hello."}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello."}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if usage_chunk:
        events.append({**base, "choices": [], "usage": _usage()})
    return _stream(_sse(*events) + b"data: [DONE]\n\n")


def _completion(body: dict[str, Any], stream: bool, usage_chunk: bool) -> httpx.Response:
    base = {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()),
            "model": body["model"]}
    if not stream:
        return httpx.Response(200, json={**base, "usage": _usage(), "choices": [
            {"index": 0, "text": "Hello.", "finish_reason": "stop", "logprobs": None}]})
    events = [{**base, "choices": [{"index": 0, "text": "Hello.", "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}]
    if usage_chunk:
        events.append({**base, "choices": [], "usage": _usage()})
    return _stream(_sse(*events) + b"data: [DONE]\n\n")


def _responses(body: dict[str, Any], stream: bool) -> httpx.Response:
    response = {"id": "resp_1", "object": "response", "created_at": int(time.time()),
                "model": body["model"], "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "Hello."}]}],
                "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}}
    if not stream:
        return httpx.Response(200, json=response)
    blob = (b"event: response.created\n" + _sse({"type": "response.created", "response": response})
            + b"event: response.completed\n"
            + _sse({"type": "response.completed", "response": response}))
    return _stream(blob)


class _Body(httpx.AsyncByteStream):
    """A body that arrives over the "network" in pieces (bytes content would be pre-read)."""

    def __init__(self, blob: bytes, piece: int = 97) -> None:
        self.pieces = [blob[i:i + piece] for i in range(0, len(blob), piece)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def _stream(blob: bytes) -> httpx.Response:
    return httpx.Response(200, stream=_Body(blob), headers={"content-type": "text/event-stream"})


def _invalid(path: str, body: Any) -> str | None:
    """What vLLM's request validation would say, or None if it would accept the body."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    required = {"/v1/chat/completions": ("messages", list), "/v1/completions": ("prompt", (str, list)),
                "/v1/responses": ("input", (str, list))}[path]
    if not isinstance(body.get(required[0]), required[1]):
        return f"Field required or invalid: {required[0]}"
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return f"{name} must be a positive integer"
    if body.get("stream") not in (None, True, False):
        return "stream must be a boolean"
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return "stream_options must be an object"
    return None


def anthropic_error(status: int, message: str) -> httpx.Response:
    """vLLM's errors on /v1/messages, in Anthropic's shape."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return httpx.Response(status, json={"type": "error",
                                        "error": {"type": kind, "message": message}})


def _messages(path: str, content: bytes) -> httpx.Response:
    """vLLM's Anthropic Messages API: a message with thinking + text, or its SSE events."""
    try:
        body = json.loads(content)
    except ValueError:
        return anthropic_error(400, "JSON decode error")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return anthropic_error(400, "Field required or invalid: messages")
    if body.get("model") not in MODEL_NAMES:
        return anthropic_error(404, f"The model `{body.get('model')}` does not exist.")
    if path.endswith("/count_tokens"):
        return httpx.Response(200, json={"input_tokens": 7})
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return anthropic_error(400, "max_tokens must be a positive integer")
    usage = {"input_tokens": 7, "output_tokens": 3}
    content_blocks = [{"type": "thinking", "thinking": "Say hello.", "signature": ""},
                      {"type": "text", "text": "Hello."}]
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
               "content": content_blocks, "stop_reason": "end_turn", "usage": usage}
    if not body.get("stream"):
        return httpx.Response(200, json=message)
    events = [("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 0}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hello."}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": usage}),
        ("message_stop", {"type": "message_stop"})]
    return _stream(b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                            for name, data in events))


@dataclass
class FakeVLLM:
    """The MockTransport handler; `seen` records every request that reached "vLLM"."""

    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path != "/metrics":  # the sidecar's backpressure poller reads it every second
            self.seen.append(request)
        if request.method == "GET":
            if path == "/metrics":
                return httpx.Response(200, content=METRICS)
            if path == "/v1/models":
                return httpx.Response(200, json=models_body())
            if path.startswith("/v1/models/"):
                name = path.removeprefix("/v1/models/")
                cards = [c for c in models_body()["data"] if c["id"] == name]
                return httpx.Response(200, json=cards[0]) if cards else vllm_error(
                    404, f"The model `{name}` does not exist.")
            return vllm_error(404, "Not Found")
        if path in ("/v1/messages", "/v1/messages/count_tokens"):
            return _messages(path, request.content)
        if path not in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
            return vllm_error(404, "Not Found")
        try:
            body = json.loads(request.content)
        except ValueError:
            return vllm_error(400, "JSON decode error")
        if (problem := _invalid(path, body)) is not None:
            return vllm_error(400, problem)
        if body.get("model") not in MODEL_NAMES:
            return vllm_error(404, f"The model `{body.get('model')}` does not exist.")
        stream = bool(body.get("stream"))
        usage_chunk = bool((body.get("stream_options") or {}).get("include_usage"))
        if path == "/v1/chat/completions":
            return _chat(body, stream, usage_chunk)
        if path == "/v1/completions":
            return _completion(body, stream, usage_chunk)
        return _responses(body, stream)
