"""A lean ASGI response for relayed streams (the OpenAI SSE pass-through, Ollama NDJSON).

Starlette's `StreamingResponse` does the same job with more machinery: on ASGI servers
that speak spec 2.3 (uvicorn) it runs every response inside an anyio task group of two
tasks, one streaming and one waiting for the client's disconnect, and checks every chunk's
type. `RelayResponse` streams in the request's own task: `http.response.start`, then each
chunk of the body iterator straight to `send`, then the empty final message. One small
waiter task per response watches `receive()` for `http.disconnect`; when the client leaves
it cancels the streaming task, which closes the body iterator (the routes' `finally` closes
the upstream response, and closing the connection is what makes vLLM abort the request).
A `send` that fails with `OSError` (ASGI spec 2.4 servers) is a client that left too.

Headers, media type and charset are those `StreamingResponse` would send, so a route swaps
one for the other without any visible change. `benchmarks/relay.py` measures the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class RelayResponse(Response):
    """Stream `content` (bytes chunks) to the client; stop and close it if the client leaves."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.body_iterator = content
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = _DisconnectWatch(receive, task)
        chunks = self.body_iterator
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
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
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


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
