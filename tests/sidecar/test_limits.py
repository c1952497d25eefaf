"""Per-key limits and backpressure: in process, through the app, and shared via real Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.sidecar.keys import KeyLimits, KeyRecord, create_key
from serving.sidecar.limits import Limiter, MemoryBackend, RateLimited, RedisBackend
from tests.conftest import free_port

CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}]}
REPLY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
         "usage": {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}}


def record(**limits: int) -> KeyRecord:
    return KeyRecord("key_1", "alice", frozenset({"chat"}), "", limits=KeyLimits(**limits))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_requests_per_minute_refuses_the_extra_request_until_the_next_window():
    clock = Clock(120.0)
    limiter = Limiter(MemoryBackend(clock=clock), clock=clock)
    for _ in range(3):
        await limiter.release(await limiter.admit(record(requests_per_minute=3)))
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(record(requests_per_minute=3))
    assert refused.value.headers["Retry-After"] == "60"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now = 180.5
    lease = await limiter.admit(record(requests_per_minute=3))
    assert lease.headers["x-ratelimit-remaining-requests"] == "2"


async def test_tokens_are_charged_on_release_and_then_refuse():
    limiter = Limiter(MemoryBackend(), clock=lambda: 60.0)
    lease = await limiter.admit(record(tokens_per_minute=100))
    lease.tokens = 100
    await limiter.release(lease)
    with pytest.raises(RateLimited, match="100 tokens per minute"):
        await limiter.admit(record(tokens_per_minute=100))


async def test_concurrency_slot_is_returned_on_release():
    limiter = Limiter(MemoryBackend())
    first = await limiter.admit(record(concurrent_requests=1))
    with pytest.raises(RateLimited, match="Concurrent"):
        await limiter.admit(record(concurrent_requests=1))
    await limiter.release(first)
    await limiter.release(first)  # idempotent: a double release must not free a second slot
    await limiter.admit(record(concurrent_requests=1))
    with pytest.raises(RateLimited):
        await limiter.admit(record(concurrent_requests=1))


async def test_429_in_both_protocol_shapes_with_headers(make_sidecar):
    async with make_sidecar(lambda r: httpx.Response(200, json=REPLY)) as sc:
        key, _ = create_key(sc.keys_file, user="limited", permissions=["chat"],
                            limits=KeyLimits(requests_per_minute=2, tokens_per_minute=1000))
        ok = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth(key))
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert ok.headers["x-ratelimit-limit-tokens"] == "1000"
        await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth(key))
        openai_429 = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth(key))
        ollama_429 = await sc.client.post("/api/chat", json={**CHAT, "model": "gpt-oss:20b"},
                                          headers=sc.auth(key))
        metrics = (await sc.client.get("/metrics", headers=sc.auth())).text
    assert openai_429.status_code == 429 and int(openai_429.headers["retry-after"]) >= 1
    assert openai_429.json()["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in openai_429.json()["error"]["message"]
    assert ollama_429.status_code == 429
    assert "2 requests per minute" in ollama_429.json()["error"]
    assert 'status="429"' in metrics


async def test_overloaded_engine_queue_gives_503(make_sidecar):
    async with make_sidecar(lambda r: httpx.Response(200, json=REPLY),
                            max_engine_waiting=4) as sc:
        sc.client._transport.app.state.load.engine_waiting = 10  # as read from vLLM's /metrics
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "overloaded"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (make test installs it with apt-get)")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         check=False).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait()


async def test_limits_hold_across_replicas_sharing_redis(make_sidecar, tmp_path, redis_url):
    """Two sidecars, one Redis: a 3-per-minute key gets 3 requests in total, not 3 each."""
    async with make_sidecar(lambda r: httpx.Response(200, json=REPLY), redis_url=redis_url) as a:
        key, _ = create_key(a.keys_file, user="shared", permissions=["chat"],
                            limits=KeyLimits(requests_per_minute=3))
        async with make_sidecar(lambda r: httpx.Response(200, json=REPLY),
                                redis_url=redis_url, keys_file=a.keys_file) as b:
            statuses = []
            for replica in (a, b, a, b, a):
                response = await replica.client.post("/v1/chat/completions", json=CHAT,
                                                      headers=replica.auth(key))
                statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429, 429]


async def test_redis_backend_counts_atomically(redis_url):
    backend = RedisBackend(redis_url)
    try:
        assert await backend.incr("gos:test:x", 2, 60) == 2
        assert await backend.incr("gos:test:x", 3, 60) == 5
        assert await backend.get("gos:test:x") == 5
    finally:
        await backend.aclose()
