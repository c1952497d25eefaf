"""The direct relay over a real uvicorn: vLLM's reads written to the client's transport from
the engine connection's `data_received` (serving.relay_response, serving.upstream.wire).

An engine stand-in replays recorded real vLLM streams as uvicorn sends them (one HTTP chunk
per SSE event). The bytes a client gets through the direct path must equal the in-process
relay's (alias added, the usage chunk we asked for stripped); a slow client must pause our
reads from the engine, not grow a buffer; a client that leaves must close the engine's
connection (vLLM aborts the request); an engine that dies mid-stream ends the stream with
an error event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import httpx
import pytest
import uvicorn

from serving.config import SidecarSettings
from serving.protocols.openai.stream import alias_reasoning, is_usage_only_event
from serving.relay_response import _ClientWriter
from serving.sidecar.app import create_app
from serving.sidecar.keys import create_key
from serving.upstream import wire
from tests.conftest import free_port
from tests.fake_vllm import DATA, sse_events

RECORDED = {path.stem: path.read_bytes() for path in sorted(DATA.glob("*.sse"))}
GOLDEN = {name: (json.loads((DATA / f"{name}.request.json").read_text()),
                 (DATA / f"{name}.expected.ndjson").read_text())
          for name in ("generate_thinking", "chat_tool_call")}


@dataclass
class Engine:
    """What the stand-in saw: requests, and connections closed by the sidecar mid-answer."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    aborted: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def engine(events: list[bytes], *, delay_s: float = 0.0, cut_after: int | None = None,
                 forever: bool = False) -> AsyncIterator[Engine]:
    """Answers every POST with `events` as chunked SSE; `cut_after` drops the connection
    after that many; `forever` repeats the last event until the sidecar hangs up."""
    seen = Engine()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                body = await reader.readexactly(length)
                seen.requests.append(json.loads(body) if body else {})
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                sent = 0
                while sent < len(events) or forever:
                    event = events[min(sent, len(events) - 1)]
                    if cut_after is not None and sent == cut_after:
                        writer.close()
                        return
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    sent += 1
                    if delay_s:
                        await asyncio.sleep(delay_s)
                    if forever and reader.at_eof():
                        raise ConnectionError
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        seen.aborted.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    seen.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield seen
    finally:
        server.close()


@contextlib.asynccontextmanager
async def sidecar(tmp_path: Path, engine_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app under a real uvicorn (httptools), as `serving sidecar` runs it."""
    keys = tmp_path / "keys.json"
    key, _ = create_key(keys, user="admin", permissions=["all"])
    settings = SidecarSettings(keys_file=keys, aliases_file=tmp_path / "aliases.json",
                               upstream_url=engine_url, engine_poll_interval_s=60)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, http="httptools", loop="none",
        log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event to wait on
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def _slow_client(base_url: str, authorization: str, payload: dict[str, Any]) -> bytes:
    """A client with a small receive buffer that reads nothing for half a second."""
    url = httpx.URL(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.host, url.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    body = json.dumps(payload).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                 b"application/json\r\nauthorization: %s\r\ncontent-length: %d\r\n\r\n%s"
                 % (authorization.encode(), len(body), body))
    await asyncio.sleep(0.5)
    chunks: list[bytes] = []
    done = asyncio.Event()

    class Collect:
        def on_body(self, data: bytes) -> None:
            chunks.append(data)

        def on_message_complete(self) -> None:
            done.set()

    parser = httptools.HttpResponseParser(Collect())
    while not done.is_set():
        parser.feed_data(await reader.read(65536))
    writer.close()
    return b"".join(chunks)


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts chunks written by the direct path (a silent fallback to ASGI send would pass
    the byte comparisons and prove nothing)."""
    written: list[int] = []
    original: Callable[[_ClientWriter, bytes], bool] = _ClientWriter.write

    def counting(self: _ClientWriter, data: bytes) -> bool:
        written.append(len(data))
        return original(self, data)

    monkeypatch.setattr(_ClientWriter, "write", counting)
    return written


CHAT = {"model": "gpt-oss-20b", "stream": True,
        "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_streams_arrive_byte_for_byte(tmp_path: Path, name: str,
                                                     direct_writes: list[int]) -> None:
    events = sse_events(RECORDED[name])
    async with engine(events) as vllm, sidecar(tmp_path, vllm.url) as client:
        asked = await client.post("/v1/chat/completions", json={
            **CHAT, "stream_options": {"include_usage": True}})
        not_asked = await client.post("/v1/chat/completions", json=CHAT)
    assert asked.content == b"".join(alias_reasoning(e) for e in events)
    assert not_asked.content == b"".join(
        alias_reasoning(e) for e in events if not is_usage_only_event(e[6:].strip()))
    assert vllm.requests[1]["stream_options"] == {"include_usage": True}  # asked by us
    assert sum(direct_writes) == len(asked.content) + len(not_asked.content)  # all direct


def _without_timings(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k != "created_at" and not k.endswith("_duration")}


@pytest.mark.parametrize("name", GOLDEN)
async def test_ollama_lines_equal_the_golden_ones(tmp_path: Path, name: str,
                                                  direct_writes: list[int]) -> None:
    events = sse_events(RECORDED[name])
    case, expected = GOLDEN[name]
    request = {k: v for k, v in case.items() if k != "kind"}
    route = "/api/generate" if case["kind"] == "generate" else "/api/chat"
    async with engine(events) as vllm, sidecar(tmp_path, vllm.url) as client:
        answer = await client.post(route, json=request)
    got = [_without_timings(json.loads(line)) for line in answer.text.splitlines()]
    golden = [_without_timings(json.loads(line)) for line in expected.splitlines()]
    assert got == golden
    assert direct_writes


async def test_a_slow_client_pauses_reads_from_the_engine(
        tmp_path: Path, direct_writes: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[bool] = []
    original = wire.Exchange._pause

    def counting(self: wire.Exchange) -> None:
        pauses.append(True)
        original(self)

    monkeypatch.setattr(wire.Exchange, "_pause", counting)
    events = [b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % (b"x" * 4000)] * 800
    async with engine(events) as vllm, sidecar(tmp_path, vllm.url) as client:
        body = await _slow_client(str(client.base_url), client.headers["authorization"], {
            **CHAT, "stream_options": {"include_usage": True}})
    assert body == b"".join(events)
    assert pauses  # our reads from the engine stopped while the client lagged


async def test_a_client_that_leaves_closes_the_engine_connection(
        tmp_path: Path, direct_writes: list[int]) -> None:
    events = [b'data: {"choices":[{"delta":{"content":"t"}}]}\n\n']
    async with engine(events, delay_s=0.02, forever=True) as vllm, \
            sidecar(tmp_path, vllm.url) as client:
        async with client.stream("POST", "/v1/chat/completions", json=CHAT) as response:
            async for _ in response.aiter_raw():
                if len(direct_writes) >= 3:
                    break
        await asyncio.wait_for(vllm.aborted.wait(), 5)  # vLLM would abort the request


async def test_an_engine_dying_mid_stream_ends_with_an_error_event(
        tmp_path: Path, direct_writes: list[int]) -> None:
    events = [b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i for i in range(5)]
    async with engine(events, cut_after=3) as vllm, sidecar(tmp_path, vllm.url) as client:
        answer = await client.post("/v1/chat/completions", json=CHAT)
    assert answer.content.startswith(b"".join(events[:3]))
    tail = sse_events(answer.content)[3:]
    assert json.loads(tail[0][6:])["error"]["code"] == "engine_unavailable"
    assert tail[1] == b"data: [DONE]\n\n"
