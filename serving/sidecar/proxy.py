"""Talking to vLLM: one helper that opens a streamed upstream request and maps failures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import httpx
from fastapi import Request

from serving.errors import from_upstream_exception

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


async def read_unless_disconnected(request: Request, response: httpx.Response) -> bytes | None:
    """Read a whole upstream body, or give up (closing it, which aborts vLLM's request) as
    soon as our own client disconnects. Returns None in that case."""
    body: bytes | None = None
    failure: httpx.HTTPError | None = None
    async with anyio.create_task_group() as group:

        async def read_upstream() -> None:
            nonlocal body, failure
            try:
                body = await response.aread()
            except httpx.HTTPError as exc:  # raised below, outside the task group
                failure = exc
            group.cancel_scope.cancel()

        async def watch_client() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(read_upstream)
        group.start_soon(watch_client)
    if failure is not None:
        raise from_upstream_exception(failure) from failure
    return body


async def close_quietly(response: httpx.Response) -> None:
    """Close an upstream response even while our task is being cancelled (client gone):
    closing the connection is what tells vLLM to abort the request."""
    with anyio.CancelScope(shield=True):
        await response.aclose()
