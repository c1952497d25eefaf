"""The sidecar's one vLLM client over real loopback sockets: our wire client underneath
(serving.upstream.wire), httpx's exceptions on top, mapped to the statuses clients see (503
engine down or broken, 504 silent engine)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from serving.errors import UpstreamTimeout, UpstreamUnavailable, from_upstream_exception
from serving.upstream import engine_client, open_upstream, raw_reads, wire_exchange
from tests.conftest import free_port


@contextlib.asynccontextmanager
async def _server(handler):  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def test_a_stopped_engine_is_503():
    async with engine_client(f"http://127.0.0.1:{free_port()}", connect_timeout_s=5,
                             read_timeout_s=5) as client:
        with pytest.raises(UpstreamUnavailable):
            await open_upstream(client, "GET", "/v1/models")


async def test_a_silent_engine_is_504():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async with _server(silent) as url, engine_client(url, connect_timeout_s=5,
                                                     read_timeout_s=0.3) as client:
        with pytest.raises(UpstreamTimeout):
            await open_upstream(client, "GET", "/v1/models")


async def test_a_stream_cut_by_the_engine_is_a_mapped_error_and_bytes_arrive_as_sent():
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for event in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()  # the engine dies mid-stream: no terminating chunk

    async with _server(cut) as url, engine_client(url, connect_timeout_s=5,
                                                  read_timeout_s=5) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        reads = []
        with pytest.raises(httpx.HTTPError) as failure:
            async for read in response.aiter_raw():
                reads.append(read)
        await response.aclose()
    assert b"".join(reads) == b"data: 1\n\ndata: 2\n\n"
    assert isinstance(from_upstream_exception(failure.value), UpstreamUnavailable)


_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n")


def _chunk(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


async def test_an_engine_silent_mid_stream_is_a_read_timeout() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_STREAM_HEAD + _chunk(b"data: 1\n\n"))
        await asyncio.sleep(5)  # the engine hangs mid-answer
        writer.close()

    async with _server(stalls) as url, engine_client(url, connect_timeout_s=5,
                                                     read_timeout_s=0.3) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        reads: list[bytes] = []
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout) as failure:
            async for read in raw_reads(response):
                reads.append(read)
        waited = asyncio.get_running_loop().time() - started
        await response.aclose()
    assert reads == [b"data: 1\n\n"]
    assert 0.25 < waited < 2.0
    assert isinstance(from_upstream_exception(failure.value), UpstreamTimeout)


async def test_time_spent_on_a_slow_client_is_not_engine_silence() -> None:
    events = [b"data: %d\n\n" % i for i in range(3)]

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for event in events:
            writer.write(_STREAM_HEAD if event == events[0] else b"")
            writer.write(_chunk(event))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await asyncio.sleep(5)  # keep-alive: the connection stays open

    async with _server(answers) as url, engine_client(url, connect_timeout_s=5,
                                                      read_timeout_s=0.3) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        reads = []
        async for read in raw_reads(response):
            reads.append(read)
            await asyncio.sleep(0.5)  # our client is slow: longer than the engine's limit
        await response.aclose()
    assert b"".join(reads) == b"".join(events)


async def test_the_next_request_on_a_kept_alive_connection_keeps_its_read_timeout() -> None:
    requests = connections = 0

    async def streams_then_goes_silent(reader: asyncio.StreamReader,
                                       writer: asyncio.StreamWriter) -> None:
        nonlocal requests, connections
        connections += 1
        while True:
            await reader.readuntil(b"\r\n\r\n")
            requests += 1
            if requests > 1:
                await asyncio.sleep(5)  # silent: no headers for the second request
                return
            writer.write(_STREAM_HEAD + _chunk(b"data: 1\n\n") + b"0\r\n\r\n")
            await writer.drain()

    async with _server(streams_then_goes_silent) as url, engine_client(
            url, connect_timeout_s=5, read_timeout_s=0.3) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        assert [read async for read in raw_reads(response)] == [b"data: 1\n\n"]
        await response.aclose()
        with pytest.raises(UpstreamTimeout):
            await open_upstream(client, "POST", "/v1/chat/completions", json={})
    assert (requests, connections) == (2, 1)  # the same connection carried both


async def test_a_request_reaches_the_engine_as_httpx_would_send_it() -> None:
    seen: list[bytes] = []

    async def records(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        seen.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 2\r\n\r\n{}")
        await writer.drain()

    payload = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "héllo"}]}
    async with _server(records) as url, engine_client(url + "/", connect_timeout_s=5,
                                                      read_timeout_s=5) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json=payload,
                                       headers={"x-request-id": "req-12345678"})
        assert (response.status_code, await response.aread()) == (200, b"{}")
        await response.aclose()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "post /v1/chat/completions http/1.1"
    assert "content-type: application/json" in lines and "x-request-id: req-12345678" in lines
    assert body == httpx.Request("POST", "http://x", json=payload).content


async def test_a_kept_alive_connection_the_engine_closed_is_replaced_once() -> None:
    connections = 0

    async def hangs_up_on_the_second_request(reader: asyncio.StreamReader,
                                             writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # the server's keep-alive timeout, as the next request arrives

    async with _server(hangs_up_on_the_second_request) as url, engine_client(
            url, connect_timeout_s=5, read_timeout_s=5) as client:
        for _ in range(2):
            response = await open_upstream(client, "GET", "/v1/models")
            assert await response.aread() == b"{}"
            await response.aclose()
    assert connections == 2  # the second request went again, on a new connection


async def test_a_malformed_response_is_a_broken_engine() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with _server(garbage) as url, engine_client(url, connect_timeout_s=5,
                                                      read_timeout_s=5) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        with pytest.raises(httpx.RemoteProtocolError) as failure:
            await response.aread()
        await response.aclose()
    assert isinstance(from_upstream_exception(failure.value), UpstreamUnavailable)


async def test_push_hands_every_read_to_the_sink_and_raises_what_it_raises() -> None:
    events = [b"data: %d\n\n" % i for i in range(4)]

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_STREAM_HEAD)
            for event in events:
                writer.write(_chunk(event))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    async def no_drain() -> None:
        raise AssertionError("the sink never asked to wait")

    async with _server(answers) as url, engine_client(url, connect_timeout_s=5,
                                                      read_timeout_s=5) as client:
        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        exchange = wire_exchange(response)
        assert exchange is not None
        got: list[bytes] = []
        await exchange.push(lambda read: bool(got.append(read)), no_drain)
        await response.aclose()
        assert b"".join(got) == b"".join(events)

        def breaks(read: bytes) -> bool:
            raise ValueError("a malformed event")

        response = await open_upstream(client, "POST", "/v1/chat/completions", json={})
        exchange = wire_exchange(response)
        assert exchange is not None
        with pytest.raises(ValueError, match="malformed event"):
            await exchange.push(breaks, no_drain)
        await response.aclose()
