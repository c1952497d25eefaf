"""The relay's Python cost per chunk, in process and without sockets: a steadier view than
`benchmarks/relay.py` on a shared machine, for choosing between code variants.

The real app (`create_app`, all middleware, auth, the OpenAI route) in front of an
`httpx.MockTransport` that streams N one-token SSE events per answer with no delay; the
client side is a `send` that drops the bytes. CPU time (`time.process_time`) per relayed
chunk, median of rounds, for:

- `openai route, RelayResponse` / `openai route, StreamingResponse`: the whole relay path
  (upstream body iteration, `SSERelay.feed`, the response, the middleware's `send` chain);
- `bare response` / `response through the stack`: a RelayResponse over in-memory chunks,
  called directly vs mounted as a route behind the app's middleware: the difference is what
  the `send` wrappers (Starlette's error and exception middleware, the route's exception
  wrapper, RequestContextMiddleware) cost per chunk.

Socket writes, the event loop's wake-ups and the upstream parser are not in these numbers
(`benchmarks/relay.py` has them)::

    python -m benchmarks.relay_micro --chunks 2000 --streams 64 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import StreamingResponse

from serving.config import SidecarSettings
from serving.protocols.openai import routes as openai_routes
from serving.relay_response import RelayResponse, StreamRelay
from serving.sidecar.app import create_app
from serving.sidecar.keys import create_key
from serving.upstream import raw_reads

Event = dict[str, Any]


def _event(i: int) -> bytes:
    delta = {"reasoning": f"t{i} "} if i < 4 else {"content": f"t{i} "}
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _upstream(chunks: int) -> httpx.MockTransport:
    events = [_event(i) for i in range(chunks)] + [b"data: [DONE]\n\n"]

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for event in events:
                yield event

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())

    return httpx.MockTransport(handler)


def _scope(path: str, key: str, body: bytes) -> Event:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"authorization", f"Bearer {key}".encode())]}


async def _one(app: Callable[..., Awaitable[None]], scope: Event, body: bytes) -> int:
    sent = 0
    delivered = False
    done = asyncio.Event()

    async def receive() -> Event:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Event) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += 1
            if not message.get("more_body", False):
                done.set()

    await app(dict(scope), receive, send)
    return sent


async def _relay_chunks(relay: StreamRelay) -> AsyncIterator[bytes]:
    try:
        async for read in raw_reads(relay.upstream):
            if out := relay.feed(read):
                yield out
        yield relay.end()
    finally:
        await relay.close()


def _streaming_response(relay: StreamRelay, **kwargs: Any) -> StreamingResponse:
    """Starlette's StreamingResponse over the route's relay: what RelayResponse replaced."""
    return StreamingResponse(_relay_chunks(relay), **kwargs)


async def _cpu_per_chunk(app: Callable[..., Awaitable[None]], scope: Event, body: bytes,
                         streams: int) -> float:
    started = time.process_time()
    counts = await asyncio.gather(*(_one(app, scope, body) for _ in range(streams)))
    return (time.process_time() - started) / sum(counts) * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.json"
        key, _ = create_key(keys, user="bench", permissions=["all"])
        settings = SidecarSettings(keys_file=keys, aliases_file=Path(tmp) / "aliases.json")
        app = create_app(settings, transport=_upstream(args.chunks))
        chunks = [_event(i) for i in range(args.chunks)]

        async def in_memory() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        async def bench_route() -> RelayResponse:
            return RelayResponse(in_memory(), media_type="text/event-stream")

        app.add_api_route("/bench-relay", bench_route, methods=["POST"])

        async def bare(scope: Event, receive: Any, send: Any) -> None:
            await RelayResponse(in_memory(), media_type="text/event-stream")(scope, receive, send)

        chat = json.dumps({"model": "gpt-oss-20b", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        variants: dict[str, tuple[Callable[..., Awaitable[None]], Event, bytes]] = {
            "openai route, RelayResponse": (app, _scope("/v1/chat/completions", key, chat), chat),
            "openai route, StreamingResponse": (
                app, _scope("/v1/chat/completions", key, chat), chat),
            "bare response": (bare, _scope("/bench-relay", key, b"{}"), b"{}"),
            "response through the stack": (app, _scope("/bench-relay", key, b"{}"), b"{}"),
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        async with app.router.lifespan_context(app):
            for _ in range(args.rounds):
                for name, (target, scope, body) in variants.items():
                    response: Any = (
                        _streaming_response if "StreamingResponse" in name else RelayResponse)
                    openai_routes.RelayResponse = response  # type: ignore[misc]
                    results[name].append(await _cpu_per_chunk(target, scope, body, args.streams))
            openai_routes.RelayResponse = RelayResponse  # type: ignore[misc]
        return {name: round(statistics.median(values), 2) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:7.2f} µs CPU per chunk")


if __name__ == "__main__":
    main()
