"""RelayResponse: what Starlette's StreamingResponse sends, minus its per-response task group;
a client that leaves stops the stream and closes the body iterator (which closes upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.responses import StreamingResponse
from starlette.types import Message, Send

from serving.relay_response import RelayResponse

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                         "asgi": {"version": "3.0", "spec_version": "2.3"}}


class Body:
    """A body iterator that records how far it got and whether it was closed."""

    def __init__(self, chunks: int, delay_s: float = 0.0) -> None:
        self.chunks, self.delay_s = chunks, delay_s
        self.produced = 0
        self.closed = False

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for i in range(self.chunks):
                await asyncio.sleep(self.delay_s)
                self.produced += 1
                yield b"data: %d\n\n" % i
        finally:
            self.closed = True


def recorder(into: list[Message]) -> Send:
    async def send(message: Message) -> None:
        into.append(message)

    return send


def never_disconnects() -> Any:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def test_sends_exactly_what_streaming_response_sends() -> None:
    sent: dict[str, list[Message]] = {"relay": [], "starlette": []}
    for name, cls in (("relay", RelayResponse), ("starlette", StreamingResponse)):
        response = cls(Body(5)(), headers={"x-upstream": "1"}, media_type="text/event-stream")
        await response(SCOPE, never_disconnects(), recorder(sent[name]))
    assert sent["relay"] == sent["starlette"]
    assert sent["relay"][0]["headers"] == [(b"x-upstream", b"1"),
                                           (b"content-type", b"text/event-stream; charset=utf-8")]
    assert len(sent["relay"]) == 7 and sent["relay"][-1] == {
        "type": "http.response.body", "body": b"", "more_body": False}


async def test_a_client_that_leaves_stops_the_stream_and_closes_the_body() -> None:
    body = Body(1000, delay_s=0.01)
    left = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 4:
            left.set()

    await asyncio.wait_for(RelayResponse(body())(SCOPE, receive, send), 5)
    assert body.closed
    assert body.produced < 10  # stopped right away, not after 1000 chunks
    assert all(m.get("more_body", True) for m in sent)  # no "complete" message after leaving
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_send_that_fails_closes_the_body() -> None:
    body = Body(1000)

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client gone")

    await RelayResponse(body())(SCOPE, never_disconnects(), send)
    assert body.closed and body.produced == 1


async def test_a_cancellation_from_outside_still_propagates() -> None:
    body = Body(1000, delay_s=0.01)

    async def send(message: Message) -> None:
        pass

    task = asyncio.create_task(RelayResponse(body())(SCOPE, never_disconnects(), send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


async def test_a_disconnect_while_the_last_message_goes_out_changes_nothing() -> None:
    body = Body(3)
    sent: list[Message] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await done.wait()  # servers answer "disconnect" once the response is complete
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("more_body") is False:
            done.set()
            await asyncio.sleep(0.01)  # the watcher runs while this send is in progress

    await RelayResponse(body())(SCOPE, receive, send)
    assert [m.get("body") for m in sent[1:]] == [b"data: 0\n\n", b"data: 1\n\n",
                                                  b"data: 2\n\n", b""]
    assert body.closed
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
