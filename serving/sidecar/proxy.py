"""Talking to vLLM: one helper that opens a streamed upstream request and maps failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

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
