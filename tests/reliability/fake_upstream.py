"""A fake vLLM server process for the fault tests; it counts the streams it has open.

benchmarks/fake_upstream.py is built to be cheap and keeps writing after its client has
gone (uvicorn drops writes to a closed connection silently), so it cannot say whether the
sidecar really let go of a stream. This one watches for ``http.disconnect`` and reports
``open_streams`` on ``/fake/state`` and as ``vllm:num_requests_running`` on ``/metrics``.
``POST /fake/hold?after=N`` makes every stream stop after its first N chunks until
``POST /fake/release``: a relay that buffers cannot show those N chunks before the release::

    python -m tests.reliability.fake_upstream --port 8199 --chunks 200 --chunk-delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

MODEL_NAMES = ("gpt-oss-20b", "gpt-oss:20b", "openai/gpt-oss-20b")


@dataclass
class Config:
    chunks: int = 16
    chunk_delay_s: float = 0.0
    first_byte_delay_s: float = 0.0  # before the response headers (non-streamed) or first chunk


@dataclass
class State:
    open_streams: int = 0
    started: int = 0
    completed: int = 0
    aborted: int = 0
    held: int = 0  # streams waiting for /fake/release right now


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(path: str, i: int, model: str) -> bytes:
    base = {"id": "fake", "created": int(time.time()), "model": model}
    if path.endswith("/chat/completions"):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"t{i} "}
        return _sse({**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta}]})
    return _sse({**base, "object": "text_completion", "choices": [{"index": 0, "text": f"t{i} "}]})


def _tail(path: str, n: int, model: str, usage: bool) -> bytes:
    base = {"id": "fake", "created": int(time.time()), "model": model}
    out = _sse({**base, "choices": [{"index": 0, "delta": {}, "text": "", "finish_reason": "stop"}]})
    if usage:
        out += _sse({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n,
                                                        "total_tokens": 5 + n}})
    return out + b"data: [DONE]\n\n"


async def _respond(send: Any, status: int, payload: dict[str, Any] | bytes) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    kind = b"text/plain" if isinstance(payload, bytes) else b"application/json"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(cfg: Config) -> Any:
    state = State()
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
                "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}})
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
                await send({"type": "http.response.body", "body": _chunk(path, i, model),
                            "more_body": True})
                if delay:
                    await asyncio.sleep(delay)
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await send({"type": "http.response.body", "body": _tail(path, n, model, usage)})
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
        path, raw, more = scope["path"], b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            await generate(receive, send, path, json.loads(raw))
        elif path == "/v1/models":
            await _respond(send, 200, {"object": "list", "data": [
                {"id": name, "object": "model", "root": name, "max_model_len": 8192}
                for name in MODEL_NAMES]})
        elif path == "/metrics":
            await _respond(send, 200, (
                f'vllm:num_requests_running{{model_name="gpt-oss-20b"}} {state.open_streams}.0\n'
                'vllm:num_requests_waiting{model_name="gpt-oss-20b"} 0.0\n').encode())
        elif scope["method"] == "POST" and path == "/fake/hold":
            gate["after"] = int(scope["query_string"].decode().removeprefix("after="))
            gate["release"] = asyncio.Event()
            await _respond(send, 200, {"after": gate["after"]})
        elif scope["method"] == "POST" and path == "/fake/release":
            gate["after"] = None
            gate["release"].set()
            await _respond(send, 200, {"released": state.held})
        elif path == "/fake/state":
            await _respond(send, 200, state.__dict__)
        else:
            await _respond(send, 404, {"error": {"message": "not found", "code": 404}})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--first-byte-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    cfg = Config(args.chunks, args.chunk_delay_ms / 1000, args.first_byte_delay_ms / 1000)
    uvicorn.run(create_app(cfg), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
