"""The one fake vLLM of the tests: it answers like vLLM 0.32 does, in two forms.

- `FakeVLLM` is an `httpx.MockTransport` handler for in-process tests (the sidecar built
  with `create_app(settings, transport=httpx.MockTransport(fake))`, see tests/sidecar_fixture.py).
  It validates just enough to give the sidecar's routes their real code paths: 200 with a
  chat/completion/response/message JSON, SSE (role chunk, reasoning and content deltas, finish
  chunk, usage chunk when asked, ``[DONE]``) for ``stream: true``, 400 for bodies vLLM rejects
  and 404 for unknown models or paths, in vLLM's ``{"error": {...}}`` shape (Anthropic's on
  ``/v1/messages``). A test narrows it to what it needs: a canned SSE body (`stream=`), a canned
  error (`status=`, `error=`), its own answer for one path (`routes=`) or for all (`answer=`).
  `seen` records every request that reached "vLLM" except the backpressure poller's /metrics.
- `serve_app(PacedConfig)` is an ASGI app run as a process (``python -m tests.fake_vllm``) for
  the fault, shutdown and worker tests. It streams ``--chunks`` one-token events
  ``--chunk-delay-ms`` apart, watches for ``http.disconnect`` and reports ``open_streams`` on
  ``/fake/state`` and as ``vllm:num_requests_running`` on ``/metrics`` (benchmarks/fake_upstream.py
  is built to be cheap and keeps writing after its client has gone, so it cannot say whether
  the sidecar really let go of a stream). ``POST /fake/hold?after=N`` makes every stream stop
  after its first N chunks until ``POST /fake/release``: a relay that buffers cannot show those
  N chunks before the release. Every other path is answered by `FakeVLLM`::

    python -m tests.fake_vllm --port 8199 --chunks 200 --chunk-delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving.config import SERVED_MODEL_NAMES

MODEL_NAMES: tuple[str, ...] = SERVED_MODEL_NAMES
DATA = Path(__file__).parent / "protocols" / "data"
Handler = Callable[[httpx.Request], httpx.Response]
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


# ---- bodies ---------------------------------------------------------------------------------

def saved_stream(name: str) -> bytes:
    """A vLLM SSE body captured from the real engine (see tests/protocols/data/README.md)."""
    return (DATA / f"{name}.sse").read_bytes()


def saved_request(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.request.json").read_text())


def sse_events(blob: bytes) -> list[bytes]:
    """An SSE body split into its events, each with its blank-line terminator."""
    return [event + b"\n\n" for event in blob.split(b"\n\n") if event]


def sse(*events: dict[str, Any], done: bool = True) -> bytes:
    """SSE ``data:`` events, then ``data: [DONE]`` unless `done` is false."""
    blob = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return blob + b"data: [DONE]\n\n" if done else blob


def usage(prompt: int = 7, completion: int = 3) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def models_list(max_model_len: int = 8192, root: str = "/models/smoke",
                names: tuple[str, ...] = MODEL_NAMES) -> dict[str, Any]:
    """vLLM's /v1/models: one card per served name."""
    cards = [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "vllm",
              "root": root, "parent": None, "max_model_len": max_model_len} for name in names]
    return {"object": "list", "data": cards}


def metrics_text(running: int = 0, model: str = MODEL_NAMES[0]) -> bytes:
    """The two gauges of vLLM's /metrics the sidecar's backpressure poller reads."""
    return (f'vllm:num_requests_running{{model_name="{model}"}} {running}.0\n'
            f'vllm:num_requests_waiting{{model_name="{model}"}} 0.0\n').encode()


def vllm_error(status: int, message: str) -> httpx.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return httpx.Response(status, json=body)


def anthropic_error(status: int, message: str) -> httpx.Response:
    """vLLM's errors on /v1/messages, in Anthropic's shape."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return httpx.Response(status, json={"type": "error",
                                        "error": {"type": kind, "message": message}})


class Chunks(httpx.AsyncByteStream):
    """A body that arrives over the "network" in pieces (bytes content would be pre-read):
    `parts` as given, or one blob cut every `size` bytes (through events and characters)."""

    def __init__(self, blob: bytes | list[bytes], size: int = 97) -> None:
        self.parts = blob if isinstance(blob, list) else [
            blob[i:i + size] for i in range(0, len(blob), size)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


def unreachable(error: type[httpx.TransportError] = httpx.ConnectError,
                message: str = "connection refused") -> Handler:
    """A vLLM that is not there (`ConnectError`) or too slow (`ReadTimeout`): every request
    raises `error`."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    handler.__name__ = f"unreachable_{error.__name__}"  # pytest's id where it is a parameter
    return handler


def streamed(blob: bytes | list[bytes], size: int = 97) -> httpx.Response:
    """A 200 text/event-stream response whose body arrives in pieces."""
    return httpx.Response(200, stream=Chunks(blob, size),
                          headers={"content-type": "text/event-stream"})


# ---- the default answers ----------------------------------------------------------------------

def _chat(body: dict[str, Any], stream: bool, usage_chunk: bool) -> httpx.Response:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body["model"]}
    if not stream:
        message = {"role": "assistant", "content": "Hello.", "reasoning": "Say hello.",
                   "tool_calls": []}
        return httpx.Response(200, json={
            **base, "object": "chat.completion", "usage": usage(),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"reasoning": "Say hello."}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello."}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if usage_chunk:
        events.append({**base, "choices": [], "usage": usage()})
    return streamed(sse(*events))


def _completion(body: dict[str, Any], stream: bool, usage_chunk: bool) -> httpx.Response:
    base = {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()),
            "model": body["model"]}
    if not stream:
        return httpx.Response(200, json={**base, "usage": usage(), "choices": [
            {"index": 0, "text": "Hello.", "finish_reason": "stop", "logprobs": None}]})
    events = [{**base, "choices": [{"index": 0, "text": "Hello.", "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}]
    if usage_chunk:
        events.append({**base, "choices": [], "usage": usage()})
    return streamed(sse(*events))


def _responses(body: dict[str, Any], stream: bool) -> httpx.Response:
    response = {"id": "resp_1", "object": "response", "created_at": int(time.time()),
                "model": body["model"], "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "Hello."}]}],
                "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}}
    if not stream:
        return httpx.Response(200, json=response)
    blob = (b"event: response.created\n"
            + sse({"type": "response.created", "response": response}, done=False)
            + b"event: response.completed\n"
            + sse({"type": "response.completed", "response": response}, done=False))
    return streamed(blob)


def _invalid(path: str, body: Any) -> str | None:
    """What vLLM's request validation would say, or None if it would accept the body."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    fields: dict[str, tuple[str, type | tuple[type, ...]]] = {
        "/v1/chat/completions": ("messages", list), "/v1/completions": ("prompt", (str, list)),
        "/v1/responses": ("input", (str, list))}
    required = fields[path]
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


def _messages(path: str, content: bytes, names: tuple[str, ...]) -> httpx.Response:
    """vLLM's Anthropic Messages API: a message with thinking + text, or its SSE events."""
    try:
        body = json.loads(content)
    except ValueError:
        return anthropic_error(400, "JSON decode error")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return anthropic_error(400, "Field required or invalid: messages")
    if body.get("model") not in names:
        return anthropic_error(404, f"The model `{body.get('model')}` does not exist.")
    if path.endswith("/count_tokens"):
        return httpx.Response(200, json={"input_tokens": 7})
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return anthropic_error(400, "max_tokens must be a positive integer")
    tokens = {"input_tokens": 7, "output_tokens": 3}
    content_blocks = [{"type": "thinking", "thinking": "Say hello.", "signature": ""},
                      {"type": "text", "text": "Hello."}]
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
               "content": content_blocks, "stop_reason": "end_turn", "usage": tokens}
    if not body.get("stream"):
        return httpx.Response(200, json=message)
    events = [("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": {**tokens, "output_tokens": 0}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hello."}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": tokens}),
        ("message_stop", {"type": "message_stop"})]
    return streamed(b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                             for name, data in events))


@dataclass
class FakeVLLM:
    """The MockTransport handler. Checked in this order: `answer` (every path), `routes`
    (one path each), /metrics and /v1/models, `status`/`error` and `stream` (the generation
    paths), then the validating default answers."""

    stream: bytes | None = None  # a canned SSE body for every generation request
    status: int = 200  # with `error`: a canned error for every generation request
    error: dict[str, Any] | None = None
    max_model_len: int = 8192
    root: str = "/models/smoke"
    names: tuple[str, ...] = MODEL_NAMES
    routes: dict[str, Handler] = field(default_factory=dict)
    answer: Handler | None = None
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path != "/metrics":  # the sidecar's backpressure poller reads it every second
            self.seen.append(request)
        if self.answer is not None:
            return self.answer(request)
        if path in self.routes:
            return self.routes[path](request)
        if request.method == "GET":
            return self._get(path)
        if self.status != 200:
            return httpx.Response(self.status, json=self.error or {"error": {"message": "boom"}})
        if self.stream is not None:
            return streamed(self.stream)
        if path in ("/v1/messages", "/v1/messages/count_tokens"):
            return _messages(path, request.content, self.names)
        if path not in GENERATION_PATHS:
            return vllm_error(404, "Not Found")
        return self._generate(path, request.content)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies that reached `path`, in order."""
        return [json.loads(r.content) for r in self.seen if r.url.path == path]

    def _get(self, path: str) -> httpx.Response:
        if path == "/metrics":
            return httpx.Response(200, content=metrics_text())
        if path == "/health":  # vLLM: 200, empty, while the engine core is alive
            return httpx.Response(200)
        listing = models_list(self.max_model_len, self.root, self.names)
        if path == "/v1/models":
            return httpx.Response(200, json=listing)
        if path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            cards = [c for c in listing["data"] if c["id"] == name]
            return httpx.Response(200, json=cards[0]) if cards else vllm_error(
                404, f"The model `{name}` does not exist.")
        return vllm_error(404, "Not Found")

    def _generate(self, path: str, content: bytes) -> httpx.Response:
        try:
            body = json.loads(content)
        except ValueError:
            return vllm_error(400, "JSON decode error")
        if (problem := _invalid(path, body)) is not None:
            return vllm_error(400, problem)
        if body.get("model") not in self.names:
            return vllm_error(404, f"The model `{body.get('model')}` does not exist.")
        stream = bool(body.get("stream"))
        usage_chunk = bool((body.get("stream_options") or {}).get("include_usage"))
        if path == "/v1/chat/completions":
            return _chat(body, stream, usage_chunk)
        if path == "/v1/completions":
            return _completion(body, stream, usage_chunk)
        return _responses(body, stream)


# ---- the paced server (a process) ------------------------------------------------------------

@dataclass
class PacedConfig:
    chunks: int = 16
    chunk_delay_s: float = 0.0
    first_byte_delay_s: float = 0.0  # before the response headers (non-streamed) or first chunk


@dataclass
class PacedState:
    open_streams: int = 0
    started: int = 0
    completed: int = 0
    aborted: int = 0
    held: int = 0  # streams waiting for /fake/release right now


def _paced_chunk(path: str, i: int, model: str) -> bytes:
    base = {"id": "fake", "created": int(time.time()), "model": model}
    if path.endswith("/chat/completions"):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"t{i} "}
        event = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta}]}
    else:
        event = {**base, "object": "text_completion", "choices": [{"index": 0, "text": f"t{i} "}]}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _paced_tail(n: int, model: str, with_usage: bool) -> bytes:
    base = {"id": "fake", "created": int(time.time()), "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": {}, "text": "", "finish_reason": "stop"}]}]
    if with_usage:
        events.append({**base, "choices": [], "usage": usage(5, n)})
    return sse(*events)


async def _respond(send: Any, status: int, payload: dict[str, Any] | bytes,
                   kind: bytes = b"application/json") -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _relay(send: Any, response: httpx.Response) -> None:
    """A `FakeVLLM` answer, sent over ASGI."""
    body = await response.aread()
    kind = response.headers.get("content-type", "application/json").encode()
    await _respond(send, response.status_code, body, kind)


def serve_app(cfg: PacedConfig, fake: FakeVLLM | None = None) -> Any:
    """The ASGI app: paced chat/completions streams, /metrics counting them, the /fake/*
    controls, and `fake`'s answers for every other path."""
    state = PacedState()
    fallback = fake or FakeVLLM()
    gate: dict[str, Any] = {"after": None, "release": asyncio.Event()}

    async def generate(receive: Any, send: Any, path: str, body: dict[str, Any]) -> None:
        model = str(body.get("model") or MODEL_NAMES[0])
        n = min(cfg.chunks, int(body.get("max_tokens") or cfg.chunks))
        # Per-request overrides (the OpenAI routes pass unknown fields through untouched).
        delay = float(body.get("fake_chunk_delay_ms", cfg.chunk_delay_s * 1000)) / 1000
        first = float(body.get("fake_first_byte_delay_ms", cfg.first_byte_delay_s * 1000)) / 1000
        if first:
            await asyncio.sleep(first)
        if not body.get("stream"):
            text = "".join(f"t{i} " for i in range(1, n))
            await _respond(send, 200, {
                "id": "fake", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "text": text,
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage(5, n)})
            return
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        state.open_streams += 1
        state.started += 1
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for i in range(n):
                if i == gate["after"]:
                    state.held += 1
                    await asyncio.wait([asyncio.create_task(gate["release"].wait()), watcher],
                                       return_when=asyncio.FIRST_COMPLETED)
                    state.held -= 1
                if gone.is_set():
                    state.aborted += 1
                    return
                await send({"type": "http.response.body", "body": _paced_chunk(path, i, model),
                            "more_body": True})
                if delay:
                    await asyncio.sleep(delay)
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await send({"type": "http.response.body", "body": _paced_tail(n, model, with_usage)})
            state.completed += 1
        finally:
            state.open_streams -= 1
            watcher.cancel()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        method, path, raw, more = scope["method"], scope["path"], b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            await generate(receive, send, path, json.loads(raw))
        elif path == "/metrics":
            await _respond(send, 200, metrics_text(state.open_streams), b"text/plain")
        elif method == "POST" and path == "/fake/hold":
            gate["after"] = int(scope["query_string"].decode().removeprefix("after="))
            gate["release"] = asyncio.Event()
            await _respond(send, 200, {"after": gate["after"]})
        elif method == "POST" and path == "/fake/release":
            gate["after"] = None
            gate["release"].set()
            await _respond(send, 200, {"released": state.held})
        elif path == "/fake/state":
            await _respond(send, 200, state.__dict__)
        else:
            url = httpx.URL(f"http://fake-vllm{path}", query=scope["query_string"])
            await _relay(send, fallback(httpx.Request(method, url, content=raw)))

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--first-byte-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    cfg = PacedConfig(args.chunks, args.chunk_delay_ms / 1000, args.first_byte_delay_ms / 1000)
    uvicorn.run(serve_app(cfg), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
