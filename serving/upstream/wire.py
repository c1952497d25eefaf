"""HTTP/1.1 to vLLM: keep-alive connections as asyncio protocols, responses parsed by
httptools (llhttp, the C parser uvicorn itself uses).

Why our own client: the relay's cost is paid once per token, and a client library's
read path (aiohttp: a Python `data_received`, a `StreamReader`, a future and a task
wake-up per network read; httpx: a pure-Python parser) cost more than the relay's own work.
Here a network read is one `data_received` → `feed_data` (C) → `on_body`, and the body
reaches its consumer in one of two ways:

- **pull** (`Exchange.reads()`): reads are buffered and an awaiting consumer is woken;
  what httpx's `aiter_bytes`/`aread` and every non-streamed answer use;
- **push** (`Exchange.push(sink, drain)`): each read is handed to `sink` inside
  `data_received`, with no task wake-up at all; the relay uses it to write a token to the
  client the moment it arrives (see `serving.relay_response`).

What a client library would otherwise do for us is here too: a pool of kept-alive
connections (closed before vLLM's server drops them idle: uvicorn's default is 5 s, and a
request that meets a connection the server just closed is sent again once on a new one),
connect and read timeouts, flow control in both directions (a slow consumer stops our reads
from vLLM), and failures raised as the httpx exceptions the sidecar maps to statuses.
A response whose body is not read to its end closes its connection: that is what makes vLLM
abort the request when our own client leaves.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httptools
import httpx

# Body bytes held for a consumer before we stop reading from vLLM (TCP then slows vLLM).
HIGH_WATER = 256 * 1024
# Below uvicorn's keep-alive timeout (5 s, vLLM's server): we close idle connections first.
IDLE_TIMEOUT_S = 4.0
# Request headers that belong to one hop, or that we set ourselves.
_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                          "keep-alive", "accept-encoding", "upgrade", "te", "trailer"})

# `sink(read)` returns True when its own client's buffer is full; `drain()` waits until the
# client has taken it. `push` pauses reading from vLLM in between.
Sink = Callable[[bytes], bool]
Drain = Callable[[], Awaitable[None]]


class Exchange:
    """One request and its response on one connection. httptools calls `on_header`,
    `on_headers_complete`, `on_body` and `on_message_complete` from `feed_data`."""

    def __init__(self, connection: Connection, read_timeout_s: float | None) -> None:
        loop = connection.loop
        self.loop = loop
        self.connection = connection
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = loop.create_future()
        self.complete = False
        self.failure: httpx.HTTPError | None = None
        self.received_any = False
        self._parser = httptools.HttpResponseParser(self)
        self._keep_alive = False
        self._until_eof = False  # a body without length or chunking ends with the connection
        self._reads: list[bytes] = []  # body bytes not yet taken (pull mode)
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Sink | None = None
        self._sink_failure: BaseException | None = None
        self._wants_drain = False
        self._finished = False
        # The engine's silence limit: one lazy timer, re-armed only when it fires.
        self._timeout = read_timeout_s
        self._last_read = loop.time()
        self._timer = (loop.call_at(self._last_read + read_timeout_s, self._check_silence)
                       if read_timeout_s else None)

    # --- what the connection and the parser call -------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self._last_read = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the engine sent a malformed response: {exc}"))
            self.connection.close()
            return
        if self._reads:
            self._wake()
            if self._buffered > HIGH_WATER:
                self._pause()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        names = {name.lower() for name, _ in self.headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is None:
            self._reads.append(body)
            self._buffered += len(body)
            return
        try:
            if sink(body):  # our client's buffer is full: stop reading vLLM until it drains
                self._pause()
                self._wants_drain = True
                self._wake()
        except Exception as exc:  # raised again from push(), in the relay's task
            self._sink = None
            self._sink_failure = exc
            self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._stop_timer()
        self._wake()

    def connection_lost(self) -> None:
        if self.complete:
            return
        if self.head.done() and self._until_eof:
            self.on_message_complete()
            return
        self._fail(httpx.RemoteProtocolError("the engine closed the connection"))

    # --- what the consumer calls -----------------------------------------------------------

    async def reads(self) -> AsyncIterator[bytes]:
        """The body's network reads (pull mode), as they arrive; httpx errors on failure."""
        while True:
            if self._reads:
                reads = self._reads
                self._reads = []
                self._buffered = 0
                if self._paused:
                    self._resume()
                yield reads[0] if len(reads) == 1 else b"".join(reads)
            elif self.failure is not None:
                raise self.failure
            elif self.complete:
                return
            else:
                await self._wait()

    async def push(self, sink: Sink, drain: Drain) -> None:
        """Hand every body read to `sink` from `data_received` until the body ends (push
        mode: no task wake-up per read). Raises httpx errors, or what `sink` raised."""
        self._sink = sink
        try:
            if self._reads:  # arrived with the head, before we were ready
                reads, self._reads, self._buffered = self._reads, [], 0
                if sink(b"".join(reads)):
                    self._wants_drain = True
            while True:
                if self._sink_failure is not None:
                    raise self._sink_failure
                if self._wants_drain:
                    self._wants_drain = False
                    self._pause()
                    await drain()
                    self._resume()
                    continue
                if self.failure is not None:
                    raise self.failure
                if self.complete:
                    return
                await self._wait()
        finally:
            self._sink = None

    def close(self) -> None:
        """Done with the response: its connection goes back to the pool if the body was read
        to its end, else it is closed (vLLM aborts a request whose connection closes)."""
        if self._finished:
            return
        self._finished = True
        self._stop_timer()
        connection = self.connection
        if self.complete and self.failure is None and self._keep_alive and not connection.closed:
            connection.pool.release(connection)
        else:
            connection.close()

    # --- inside ----------------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause(self) -> None:
        if not self._paused and not self.connection.closed:
            self._paused = True
            self.connection.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self.connection.closed:
                self.connection.transport.resume_reading()

    def _fail(self, failure: httpx.HTTPError) -> None:
        if self.failure is None and not self.complete:
            self.failure = failure
        self._stop_timer()
        if not self.head.done():
            self.head.set_exception(failure)
            self.head.exception()  # retrieved: a request cancelled meanwhile logs nothing
        self._wake()

    def _check_silence(self) -> None:
        """Fail with ReadTimeout once vLLM sent nothing for the read timeout. Waiting on our
        own slow client (bytes held for it, or reading paused for it) is not its silence."""
        assert self._timeout is not None
        now = self.loop.time()
        if self._reads or self._paused or self._wants_drain:
            self._timer = self.loop.call_at(now + self._timeout, self._check_silence)
        elif now - self._last_read >= self._timeout:
            self._timer = None
            self._fail(httpx.ReadTimeout("the engine sent nothing within the read timeout"))
            self.connection.close()
        else:
            self._timer = self.loop.call_at(self._last_read + self._timeout, self._check_silence)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Connection(asyncio.Protocol):
    """One kept-alive TCP connection to vLLM, carrying one exchange at a time."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        exchange.data_received(data)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.connection_lost()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
            if self.exchange is not None:  # a body cut short by us is not the engine's fault
                self.exchange.connection_lost()


class EnginePool:
    """Kept-alive connections to one engine (scheme, host, port). No cap on open ones:
    vLLM's scheduler is the queue, not our pool."""

    def __init__(self, url: str, *, max_idle: int = 256,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rpartition("@")[2].encode("ascii")  # [v6]:port kept
        self.max_idle = max_idle
        self.idle_timeout_s = idle_timeout_s
        self._idle: deque[Connection] = deque()

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]],
                      body: bytes | None, *, connect_s: float | None,
                      read_s: float | None) -> Exchange:
        """Send one request and wait for the response's head; the body follows through the
        returned exchange, which the caller must `close()`."""
        message = _request_bytes(method, target, self.host_header, headers, body)
        for attempt in (1, 2):
            connection, reused = await self._acquire(connect_s)
            exchange = Exchange(connection, read_s)
            connection.exchange = exchange
            connection.transport.write(message)
            try:
                await exchange.head
            except httpx.RemoteProtocolError:
                # A kept-alive connection the engine closed as we sent: it never saw the
                # request, so sending it again on a new connection is safe.
                exchange.close()
                if reused and not exchange.received_any and attempt == 1:
                    continue
                raise
            except BaseException:  # timed out, or our task cancelled (our client left)
                exchange.close()
                raise
            return exchange
        raise AssertionError("unreachable")

    def release(self, connection: Connection) -> None:
        connection.exchange = None
        connection.idle_since = self.loop.time()
        if len(self._idle) >= self.max_idle:
            self._idle.popleft().close()
        self._idle.append(connection)

    async def _acquire(self, connect_s: float | None) -> tuple[Connection, bool]:
        now = self.loop.time()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely stale
            if (not connection.closed and not connection.transport.is_closing()
                    and now - connection.idle_since < self.idle_timeout_s):
                return connection, True
            connection.close()
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port,
                    ssl=ssl.create_default_context() if self.tls else None),
                connect_s)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"connecting to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        return connection, False

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _request_bytes(method: str, target: str, host: bytes, headers: Iterable[tuple[str, str]],
                   body: bytes | None) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target.encode("ascii")),
             b"host: " + host]
    for name, value in headers:
        if name.lower() not in _HOP_HEADERS:
            lines.append(b"%s: %s" % (name.encode("latin-1"), value.encode("latin-1")))
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: %d" % len(body or b""))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
