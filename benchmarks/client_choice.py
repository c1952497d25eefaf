"""Which HTTP client should the sidecar use to read vLLM's streams? CPU per chunk, measured.

Starts the fake upstream (no delays, `chunks` one-token SSE events per answer) in a child
process, then reads `requests` streamed answers through each candidate client in this
process, `concurrency` at a time, and reports this process's CPU time (user + system, from
/proc via `time.process_time`) per received chunk. The candidates are what the sidecar could
speak to vLLM with:

- ``httpx``: httpx 0.28 with its default transport (httpcore + h11, pure Python parsing)
- ``aiohttp``: aiohttp's own client (C HTTP parser), no httpx layer (the sidecar's
  client until the wire replaced it)
- ``httpx+wire``: the httpx API over ``serving.upstream.wire`` (what the sidecar's
  non-streamed calls use)
- ``wire pull``: the wire's own read loop (``Exchange.reads``, what the relay uses under an
  ASGI server other than uvicorn)
- ``wire push``: reads handed to a callback from ``data_received`` (the relay's direct
  path under uvicorn: no task wake-up per read)

Rounds are interleaved so that machine noise hits every candidate alike::

    python -m benchmarks.client_choice --requests 200 --chunks 200 --concurrency 32 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from serving.upstream import WireTransport, engine_client, open_upstream, wire_exchange

BODY = {"model": "gpt-oss-20b", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
Reader = Callable[[], Awaitable[int]]


async def _read_httpx(client: httpx.AsyncClient) -> int:
    chunks = 0
    async with client.stream("POST", "/v1/chat/completions", json=BODY) as response:
        async for _ in response.aiter_raw():
            chunks += 1
    return chunks


async def _read_aiohttp(session: aiohttp.ClientSession, url: str) -> int:
    chunks = 0
    async with session.post(url + "/v1/chat/completions", json=BODY) as response:
        async for _ in response.content.iter_any():
            chunks += 1
    return chunks


async def _read_wire(client: httpx.AsyncClient, push: bool) -> int:
    chunks = 0

    def count(read: bytes) -> bool:
        nonlocal chunks
        chunks += 1
        return False

    async def never() -> None:
        raise AssertionError("count() never asks to wait")

    response = await open_upstream(client, "POST", "/v1/chat/completions", json=BODY)
    exchange = wire_exchange(response)
    assert exchange is not None
    try:
        if push:
            await exchange.push(count, never)
        else:
            async for read in exchange.reads():
                count(read)
    finally:
        await response.aclose()
    return chunks


async def _measure(read: Reader, requests: int, concurrency: int) -> tuple[float, int]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with gate:
            return await read()

    cpu = time.process_time()
    received = sum(await asyncio.gather(*(one() for _ in range(requests))))
    return time.process_time() - cpu, received


EVENTS_EXTRA = 3


async def _round(
    url: str, candidate: str, requests: int, concurrency: int, chunks_per_answer: int
) -> float:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)
    if candidate == "aiohttp":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            cpu, _ = await _measure(lambda: _read_aiohttp(session, url), requests, concurrency)
    elif candidate.startswith("wire"):
        async with engine_client(url, connect_timeout_s=10, read_timeout_s=60) as client:
            push = candidate == "wire push"
            cpu, _ = await _measure(lambda: _read_wire(client, push), requests, concurrency)
    else:
        transport: httpx.AsyncBaseTransport | None = None
        if candidate == "httpx+wire":
            transport = WireTransport()
        async with httpx.AsyncClient(
            base_url=url, limits=limits, transport=transport, timeout=60
        ) as client:
            cpu, _ = await _measure(lambda: _read_httpx(client), requests, concurrency)
    # Per SSE event sent (role + tokens + finish + [DONE]), not per read: a client that
    # reads several events at once must not look cheaper per read.
    return cpu / (requests * (EVENTS_EXTRA + chunks_per_answer)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-delay-s", type=float, default=0.01,
                        help="the fake's pause between tokens (paced like a GPU's decode)")
    parser.add_argument("--port", type=int, default=8198)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "fake-upstream", "--port", str(args.port),
         "--chunks", str(args.chunks), "--chunk-delay-ms", str(args.chunk_delay_s * 1000)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        candidates = ("httpx", "aiohttp", "httpx+wire", "wire pull", "wire push")
        figures: dict[str, list[float]] = {c: [] for c in candidates}
        for _ in range(args.rounds):
            for candidate in candidates:
                figures[candidate].append(asyncio.run(
                    _round(url, candidate, args.requests, args.concurrency, args.chunks)))
    finally:
        fake.terminate()
        fake.wait()
    summary = {c: round(statistics.median(v), 2) for c, v in figures.items()}
    print("client CPU µs per SSE event (median of rounds):")
    for candidate, value in summary.items():
        rounds = [round(v, 1) for v in figures[candidate]]
        print(f"  {candidate:14s} {value:8.2f}   rounds: {rounds}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "us_per_chunk": summary, "rounds": figures}, indent=2))


if __name__ == "__main__":
    main()
