"""The one package that speaks to vLLM: its HTTP client, error mapping and stream helpers.

Every request to an engine (chat or embedding) goes through the client made by
`engine_client()`. Its API is httpx's (unit tests stand in for vLLM with
`httpx.MockTransport`), but on the wire it is our own HTTP/1.1 client, `wire.py` (asyncio
protocols and httptools' C parser), and `open_upstream`, the relay's way in, skips httpx's
request machinery. A GPU emits tens of thousands of one-token events per second, and the
client's read path is paid on every one: `python -m benchmarks.client_choice` measures the
candidates side by side (httpx's own h11 transport, aiohttp, the wire pulled and pushed).

Failures are mapped here, once: refused or timed-out connects become `httpx.ConnectError` /
`ConnectTimeout` (503 + Retry-After), a silent engine `ReadTimeout` (504), an engine that
drops the connection mid-answer `RemoteProtocolError` (503); see
`serving.errors.from_upstream_exception`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from json import dumps as json_dumps
from typing import Any, TypeVar

import anyio
import httpx
from fastapi import Request

from serving.errors import ServingError, from_upstream_exception
from serving.upstream.wire import EnginePool, Exchange

T = TypeVar("T")

# Hop-by-hop and length headers are recomputed by our server; never copy them across.
_SKIP_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding",
     "date", "server"}
)


WIRE_EXCHANGE = "serving.wire_exchange"  # httpx.Response.extensions key: the wire's Exchange


def wire_exchange(response: httpx.Response) -> Exchange | None:
    """The wire exchange behind a response; None when a test transport made it."""
    return response.extensions.get(WIRE_EXCHANGE)


async def raw_reads(response: httpx.Response) -> AsyncIterator[bytes]:
    """An upstream body's network reads, as `response.aiter_bytes()` gives them, without
    httpx's layers of generators when the body comes from the wire (pull mode). Failures are
    raised as httpx errors either way."""
    exchange = wire_exchange(response)
    if exchange is None:  # a test transport (its body may be preloaded: aiter_bytes reads both)
        async for read in response.aiter_bytes():
            yield read
        return
    async for read in exchange.reads():
        yield read


class _WireBody(httpx.AsyncByteStream):
    """A response body read as the bytes arrive."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._exchange.reads()

    async def aclose(self) -> None:
        # A body not read to its end means our client left: closing (not releasing) the
        # connection is what makes vLLM abort the request.
        self._exchange.close()


class WireTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over `wire` (C parser, keep-alive pool per engine)."""

    def __init__(self) -> None:
        self._pools: dict[str, EnginePool] = {}

    def _pool(self, origin: str) -> EnginePool:
        pool = self._pools.get(origin)
        if pool is None:  # made inside the running event loop, on first use
            pool = self._pools[origin] = EnginePool(origin)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        url = request.url
        target = url.raw_path.decode("ascii")
        response = await self.open(
            f"{url.scheme}://{url.netloc.decode('ascii')}", request.method, target,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            await request.aread() or None,
            connect_s=timeout.get("connect"), read_s=timeout.get("read"))
        response.request = request
        return response

    async def open(self, origin: str, method: str, target: str,
                   headers: Iterable[tuple[str, str]], body: bytes | None, *,
                   connect_s: float | None, read_s: float | None) -> httpx.Response:
        """Send one request; the response's body is read as it arrives. Also the hot path of
        `open_upstream`, without httpx's request machinery."""
        exchange = await self._pool(origin).request(
            method, target, headers, body, connect_s=connect_s, read_s=read_s)
        return httpx.Response(
            status_code=exchange.status,
            headers=exchange.headers,
            stream=_WireBody(exchange),
            extensions={"http_version": b"HTTP/1.1", WIRE_EXCHANGE: exchange},
        )

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()


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
    """httpx's client, over the wire unless a test gives another transport. `open_upstream`
    sends through `wire_transport` directly when there is one: httpx's URL, header and
    cookie handling cost about 0.5 ms of CPU per request, some µs per relayed token."""

    def __init__(self, *, base_url: str, timeout: httpx.Timeout,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.wire_transport = WireTransport() if transport is None else None
        super().__init__(base_url=base_url, timeout=timeout,
                         transport=transport or self.wire_transport)
        base = self.base_url
        self._origin = f"{base.scheme}://{base.netloc.decode('ascii')}"
        self._prefix = base.raw_path.decode("ascii").rstrip("/")


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
    if isinstance(client, EngineClient) and client.wire_transport is not None:
        sent: dict[str, str] = {}
        if json is not None:  # as httpx encodes it
            content = json_dumps(json, ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode()
            sent["content-type"] = "application/json"
        sent.update(headers or {})
        try:
            return await client.wire_transport.open(
                client._origin, method, client._prefix + path, sent.items(), content or None,
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
    exchange = wire_exchange(response)
    if exchange is not None:  # closing the wire never waits: nothing to shield
        exchange.close()
        return
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
