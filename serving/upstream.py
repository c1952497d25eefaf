"""The one module that speaks to vLLM: its HTTP client, error mapping and stream helpers.

Every request to an engine (chat or embedding) goes through the client made by
`engine_client()`. Its API is httpx's (unit tests stand in for vLLM with
`httpx.MockTransport`), but on the wire it is aiohttp (and `open_upstream`, the relay's
way in, skips httpx's request machinery): httpx's own transport parses HTTP/1.1
in pure Python (h11), which cost about 130 µs of CPU per relayed SSE event against about 50
through aiohttp's C parser (`python -m benchmarks.client_choice`, same run). A GPU emits
tens of thousands of one-token events per second, so this is the sidecar's largest cost.

Failures are mapped here, once: refused or timed-out connects become `httpx.ConnectError` /
`ConnectTimeout` (503 + Retry-After), a silent engine `ReadTimeout` (504), an engine that
drops the connection mid-answer `RemoteProtocolError` (503); see
`serving.errors.from_upstream_exception`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from json import dumps as json_dumps
from typing import Any, TypeVar

import aiohttp
import anyio
import httpx
from fastapi import Request

from serving.errors import ServingError, from_upstream_exception

T = TypeVar("T")

# Hop-by-hop and length headers are recomputed by our server; never copy them across.
_SKIP_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding",
     "date", "server"}
)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """aiohttp's exceptions as the httpx ones the rest of the sidecar understands."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except (aiohttp.SocketTimeoutError, TimeoutError) as exc:  # waiting for headers or body
        raise httpx.ReadTimeout(str(exc) or "timed out") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or "engine closed the connection") from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


_AIOHTTP_RESPONSE = "serving.aiohttp_response"


async def raw_reads(response: httpx.Response) -> AsyncIterator[bytes]:
    """An upstream body's network reads, as `response.aiter_bytes()` gives them, minus three
    layers of generators when the body comes from aiohttp (the relay's hot path: one pass
    per SSE event). Failures are raised as httpx errors either way.

    The engine's silence limit (`sock_read`) is kept by one lazy timer per stream instead of
    aiohttp's, which cancels and re-creates a timer on every network read."""
    native: aiohttp.ClientResponse | None = response.extensions.get(_AIOHTTP_RESPONSE)
    if native is None:  # a test transport (its body may be preloaded: aiter_bytes reads both)
        async for read in response.aiter_bytes():
            yield read
        return
    content = native.content
    watch = _SilenceWatch.take_over(native)
    try:
        with _mapped_errors():
            if watch is None:
                while read := await content.readany():  # b"" only at the end of the body
                    yield read
                return
            loop_time = watch.loop.time
            while True:
                watch.waiting_since = loop_time()
                read = await content.readany()
                watch.waiting_since = None
                if not read:
                    return
                yield read
    finally:
        if watch is not None:
            watch.stop()


class _SilenceWatch:
    """`sock_read` for a streamed body: fails the body with aiohttp's SocketTimeoutError when
    the engine sends nothing for `timeout` seconds while the relay waits for it. The timer
    is re-armed only when it fires (about once per `timeout`), not on every read. Time the
    relay spends sending to a slow client is not the engine's silence (as in aiohttp, which
    stops its timer while its buffer is full)."""

    def __init__(self, content: aiohttp.StreamReader, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None
        self._content = content
        self._timeout = timeout
        self._timer = self.loop.call_later(timeout, self._check)

    @classmethod
    def take_over(cls, native: aiohttp.ClientResponse) -> _SilenceWatch | None:
        connection = native.connection
        protocol = connection.protocol if connection is not None else None
        timeout = protocol.read_timeout if protocol is not None else None
        if protocol is None or not timeout:
            return None
        # Set again by aiohttp for the next request on this connection (set_response_params).
        protocol.read_timeout = None
        return cls(native.content, timeout)

    def _check(self) -> None:
        since = self.waiting_since
        now = self.loop.time()
        if since is not None and now - since >= self._timeout:
            self._content.set_exception(
                aiohttp.SocketTimeoutError("Timeout on reading data from socket"))
            return
        self._timer = self.loop.call_at((since or now) + self._timeout, self._check)

    def stop(self) -> None:
        self._timer.cancel()


class _AiohttpBody(httpx.AsyncByteStream):
    """A response body read as the bytes arrive (`iter_any`: no waiting for a size)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body not read to its end means our client left: closing (not releasing) the
        # connection is what makes vLLM abort the request.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an aiohttp session (C HTTP parser, keep-alive pool)."""

    def __init__(self, *, keepalive_connections: int = 256) -> None:
        self._keepalive_connections = keepalive_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the running event loop, on first use
            # limit=0: no cap; vLLM's scheduler is the queue, not our pool.
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=30, force_close=False)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        response = await self.open(
            request.method, str(request.url),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            request.content if request.content else None,
            connect_s=timeout.get("connect"), read_s=timeout.get("read"))
        response.request = request
        return response

    async def open(self, method: str, url: str, headers: list[tuple[str, str]] | dict[str, str],
                   body: bytes | None, *, connect_s: float | None,
                   read_s: float | None) -> httpx.Response:
        """Send one request; the response's body is read as it arrives (aiohttp errors as
        httpx's). Also the hot path of `open_upstream`, without httpx's request machinery."""
        with _mapped_errors():
            response = await self._get_session().request(
                method, url, headers=headers, data=body, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_s,
                                              sock_read=read_s),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpBody(response),
            extensions={"http_version": b"HTTP/1.1", _AIOHTTP_RESPONSE: response},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def engine_client(
    base_url: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The client for one engine. `transport` is for unit tests (httpx.MockTransport)."""
    timeout = httpx.Timeout(
        connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s,
        pool=connect_timeout_s)
    return EngineClient(base_url=base_url, timeout=timeout, transport=transport)


class EngineClient(httpx.AsyncClient):
    """httpx's client, over aiohttp unless a test gives another transport. `open_upstream`
    sends through `aiohttp_transport` directly when there is one: httpx's URL, header and
    cookie handling cost about 0.5 ms of CPU per request, some µs per relayed token."""

    def __init__(self, *, base_url: str, timeout: httpx.Timeout,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.aiohttp_transport = AiohttpTransport() if transport is None else None
        super().__init__(base_url=base_url, timeout=timeout,
                         transport=transport or self.aiohttp_transport)
        self._base = str(self.base_url).rstrip("/")


async def open_upstream(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send a request to vLLM with `stream=True`; the caller closes the response in `finally`."""
    if isinstance(client, EngineClient) and client.aiohttp_transport is not None:
        sent: dict[str, str] = {}
        if json is not None:  # as httpx encodes it
            content = json_dumps(json, ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode()
            sent["content-type"] = "application/json"
        sent.update(headers or {})
        try:
            return await client.aiohttp_transport.open(
                method, client._base + path, sent, content or None,
                connect_s=client.timeout.connect, read_s=client.timeout.read)
        except httpx.HTTPError as exc:
            raise from_upstream_exception(exc) from exc
    request = client.build_request(method, path, json=json, content=content, headers=headers)
    try:
        return await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise from_upstream_exception(exc) from exc


def passthrough_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in _SKIP_RESPONSE_HEADERS}


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run `work` (reading from vLLM) unless our own client disconnects first; then give up
    and return None (the caller closes the upstream response, which aborts vLLM's request).
    httpx errors and ServingErrors from `work` are raised outside the task group."""
    result: T | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as group:

        async def run_work() -> None:
            nonlocal result, failure
            try:
                result = await work()
            except (httpx.HTTPError, ServingError) as exc:
                failure = exc
            group.cancel_scope.cancel()

        async def watch_client() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(run_work)
        group.start_soon(watch_client)
    if isinstance(failure, httpx.HTTPError):
        raise from_upstream_exception(failure) from failure
    if failure is not None:
        raise failure
    return result


async def read_unless_disconnected(request: Request, response: httpx.Response) -> bytes | None:
    """A whole upstream body, or None when our client left first."""
    return await unless_disconnected(request, response.aread)


async def read_and_close(response: httpx.Response) -> bytes:
    """A whole upstream body (upstream failures mapped), the response closed either way."""
    try:
        return await response.aread()
    except httpx.HTTPError as exc:
        raise from_upstream_exception(exc) from exc
    finally:
        await close_quietly(response)


async def close_quietly(response: httpx.Response) -> None:
    """Close an upstream response even while our task is being cancelled (client gone):
    closing the connection is what tells vLLM to abort the request."""
    with anyio.CancelScope(shield=True):
        await response.aclose()


class EngineMetricsCache:
    """vLLM's `/metrics` text, fetched at most once per `max_age_s` however often it is asked
    for (a gateway's endpoint picker may scrape every 50 ms; each fetch costs vLLM a render).
    Concurrent askers share one fetch. Empty bytes when the engine does not answer."""

    def __init__(self, client: httpx.AsyncClient, *, max_age_s: float = 0.25,
                 timeout_s: float = 2.0, clock: Callable[[], float] | None = None) -> None:
        self._client = client
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._text = b""
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def text(self) -> bytes:
        if self._clock() - self._fetched_at < self._max_age_s:
            return self._text
        async with self._lock:
            if self._clock() - self._fetched_at < self._max_age_s:  # another asker fetched
                return self._text
            self.fetches += 1
            try:
                response = await self._client.get("/metrics", timeout=self._timeout_s)
                self._text = response.content if response.status_code == 200 else b""
            except httpx.HTTPError:
                self._text = b""
            self._fetched_at = self._clock()
            return self._text
