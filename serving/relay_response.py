"""A lean ASGI response for relayed streams (the OpenAI SSE pass-through, Ollama NDJSON).

A route hands `RelayResponse` a `StreamRelay`: the open upstream response plus what to do
with each of its reads (`feed`), at its end (`end`), on a failure mid-stream (`failed`) and
afterwards (`close`: close the upstream, account tokens). `RelayResponse` moves the bytes
in one of two ways:

- **direct**, when the server is uvicorn (httptools) and the upstream came over the wire
  (`serving.upstream.wire`): `http.response.start` goes through the middleware stack as
  usual, then each upstream read is fed and written to the client's transport from the
  engine connection's `data_received`, framed exactly as uvicorn frames a body chunk, with
  no task wake-up and no ASGI `send` per token. The last message goes through the stack
  again, so uvicorn ends the response and every middleware sees it end. Flow control holds:
  when the client's buffer fills, reading from vLLM pauses until it drains.
- **through `send`**, anywhere else (another ASGI server, tests' in-memory transports): the
  same relay, one ASGI message per read. An async iterator of bytes is accepted too.

The middlewares only look at `http.response.start` (request id, status for metrics and
logs); a middleware that must see body chunks would not see the direct ones. None does;
`docs/architecture.md` says so where middlewares are listed.

Either way the response streams in the request's own task (Starlette's `StreamingResponse`
runs a task group of two per response) and one waiter task per response watches for the
client's `http.disconnect`: it cancels the streaming task, whose `finally` closes the
upstream (closing the connection is what makes vLLM abort the request). Headers, media
type and charset are those `StreamingResponse` would send. `benchmarks/relay.py` measures
the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from serving.errors import ServingError, from_upstream_exception
from serving.upstream import raw_reads, wire_exchange

# Where the sidecar app keeps the server's own `send` (before any middleware wraps it).
SERVER_SEND = "serving.server_send"


class StreamRelay(Protocol):
    """What a route relays: the upstream response, and its bytes as the client gets them."""

    upstream: httpx.Response

    def feed(self, read: bytes) -> bytes:
        """The bytes for the client for one upstream read (may be empty)."""

    def end(self) -> bytes:
        """The bytes for the client after the upstream's last read."""

    def failed(self, error: ServingError) -> bytes:
        """The bytes for the client when the upstream fails mid-stream (an engine failure
        arrives mapped, as `serving.errors.from_upstream_exception` maps it)."""

    async def close(self) -> None:
        """Always called last: close the upstream, account what was relayed."""


class RelayResponse(Response):
    """Stream `content` (a StreamRelay, or bytes chunks); stop if the client leaves."""

    def __init__(
        self,
        content: StreamRelay | AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.content = content
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = _DisconnectWatch(receive, task)
        content = self.content
        relay = content if hasattr(content, "feed") else None
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if relay is None:
                async for chunk in content:  # type: ignore[union-attr]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await _relay(relay, scope, send)  # type: ignore[arg-type]
            watch.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Our own cancellation (the client left) ends the response quietly; any other
            # (server shutdown, an outer timeout) goes on.
            if not watch.fired or task.uncancel() > 0:
                raise
        except OSError:  # a spec 2.4 server reports the client's disconnect on send
            pass
        finally:
            watch.stop()
            if relay is not None:
                await relay.close()  # type: ignore[union-attr]
            else:
                aclose = getattr(content, "aclose", None)
                if aclose is not None:
                    await aclose()


async def _relay(relay: StreamRelay, scope: Scope, send: Send) -> None:
    writer = _ClientWriter.of(scope)
    exchange = wire_exchange(relay.upstream) if writer is not None else None
    try:
        if exchange is not None and writer is not None:
            feed, write = relay.feed, writer.write

            def sink(read: bytes) -> bool:
                out = feed(read)
                return write(out) if out else False

            await exchange.push(sink, writer.drain)
        else:
            async for read in raw_reads(relay.upstream):
                if out := relay.feed(read):
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = relay.end()
    except httpx.HTTPError as exc:
        tail = relay.failed(from_upstream_exception(exc))
    except ServingError as err:
        tail = relay.failed(err)
    if tail:
        await send({"type": "http.response.body", "body": tail, "more_body": True})


class _ClientWriter:
    """Body chunks straight to uvicorn's transport, framed as uvicorn's own `send` frames
    them (`uvicorn/protocols/http/httptools_impl.py`; uvicorn is pinned)."""

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._transport = cycle.transport

    @classmethod
    def of(cls, scope: Scope) -> _ClientWriter | None:
        cycle = getattr(scope.get(SERVER_SEND), "__self__", None)
        if (type(cycle) is not RequestResponseCycle or not cycle.response_started
                or cycle.chunked_encoding is not True):
            return None
        return cls(cycle)

    def write(self, data: bytes) -> bool:
        """Write one chunk; True when the client's buffer is full (wait for `drain`)."""
        cycle = self._cycle
        if cycle.disconnected:  # the disconnect watch is about to stop us
            return False
        self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return bool(cycle.flow.write_paused)

    async def drain(self) -> None:
        cycle = self._cycle
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()


class _DisconnectWatch:
    """One task per response, waiting for `http.disconnect` to cancel the streaming task."""

    def __init__(self, receive: Receive, streaming: asyncio.Task[object]) -> None:
        self.fired = False
        self.finished = False  # the last chunk went out: a disconnect now changes nothing
        self._receive = receive
        self._streaming = streaming
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        with contextlib.suppress(Exception):  # a receive that fails: nothing left to watch
            while (await self._receive())["type"] != "http.disconnect":
                pass
            if not self.finished:
                self.fired = True
                self._streaming.cancel()

    def stop(self) -> None:
        self._task.cancel()
