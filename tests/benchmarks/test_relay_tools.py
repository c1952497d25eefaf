"""bench-relay's helpers: variant arguments and the in-process per-chunk harness."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks import relay_micro
from benchmarks.relay import _labelled_dir


def test_compare_takes_a_label_and_a_checkout() -> None:
    assert _labelled_dir("before=/tmp/old") == ("before", Path("/tmp/old"))
    with pytest.raises(argparse.ArgumentTypeError):
        _labelled_dir("/tmp/old")


async def test_relay_micro_relays_every_chunk_of_every_variant() -> None:
    results = await relay_micro.main_async(argparse.Namespace(chunks=3, streams=2, rounds=1))
    assert set(results) == {"openai route, RelayResponse", "openai route, StreamingResponse",
                            "bare response", "response through the stack"}
    assert all(value > 0 for value in results.values())


async def test_relay_micro_counts_only_relayed_chunks() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    assert await relay_micro._one(app, relay_micro._scope("/", "k", b""), b"") == 5
