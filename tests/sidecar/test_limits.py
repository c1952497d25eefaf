"""Per-key limits and backpressure: in process, through the app, and shared via real Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serving.sidecar.keys import KeyLimits, KeyRecord, create_key
from serving.sidecar.limits import Limiter, MemoryBackend, RateLimited, RedisBackend
from serving.sidecar.state import services_of
from tests.conftest import free_port
from tests.prometheus_text import metric_sum

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


async def test_429_in_both_protocol_shapes_with_headers(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json=REPLY)) as sc:
        key, _ = create_key(sc.keys.file, user="limited", permissions=["chat"],
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


async def test_overloaded_engine_queue_gives_503(sidecar):
    async with sidecar(lambda r: httpx.Response(200, json=REPLY),
                            max_engine_waiting=4) as sc:
        services_of(sc.client._transport.app).load.engine_waiting = 10  # as read from vLLM's /metrics
        response = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "overloaded"


class RedisServer:
    """A real redis-server on loopback that a test can stop and start again (same port)."""

    def __init__(self, workdir: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server not installed (make test installs it with apt-get)")
        self.binary, self.workdir, self.port = server, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("ping") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()

    def cli(self, *args: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              check=False, text=True)
        return done.stdout.strip()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


async def test_limits_hold_across_replicas_sharing_redis(sidecar, tmp_path, redis_url):
    """Two sidecars, one Redis: a 3-per-minute key gets 3 requests in total, not 3 each."""
    async with sidecar(lambda r: httpx.Response(200, json=REPLY), redis_url=redis_url) as a:
        key, _ = create_key(a.keys.file, user="shared", permissions=["chat"],
                            limits=KeyLimits(requests_per_minute=3))
        async with sidecar(lambda r: httpx.Response(200, json=REPLY),
                                redis_url=redis_url, keys_file=a.keys.file) as b:
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


async def _wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    """Poll until `check` holds; the bound is far above the 2 s retry interval."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_redis_stopped_and_restarted_mid_run_never_gives_a_500(sidecar, redis_server):
    """Fail-open: with Redis gone, limited keys are served and counted in the process (429
    once the local count is spent), /ready stays 200 and says why, the gauge reads 0; when
    Redis is back, counting is shared again."""
    def vllm(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "gpt-oss-20b"}]})
        return httpx.Response(200, json=REPLY)

    async with sidecar(vllm, redis_url=redis_server.url) as sc:
        key, record = create_key(sc.keys.file, user="limited", permissions=["chat"],
                                 limits=KeyLimits(requests_per_minute=3, concurrent_requests=2,
                                                  tokens_per_minute=10_000))

        async def chat() -> httpx.Response:
            return await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth(key))

        async def ready() -> dict[str, object]:
            response = await sc.client.get("/ready")
            assert response.status_code == 200, response.text
            limits: dict[str, object] = response.json()["limits"]
            return limits

        async def gauge() -> float:
            return metric_sum((await sc.client.get("/metrics", headers=sc.auth())).text,
                              "sidecar_limits_shared")

        assert (await chat()).status_code == 200
        assert await ready() == {"backend": "redis", "state": "shared"}
        assert await gauge() == 1

        redis_server.stop()
        away = [(await chat()).status_code for _ in range(4)]
        state = await ready()
        assert away == [200, 200, 200, 429]  # counted here from zero: 3 a minute
        assert state["state"] == "in_process" and "ConnectionError" in str(state["reason"])
        assert await gauge() == 0
        ollama = await sc.client.post("/api/chat", json={**CHAT, "model": "gpt-oss:20b",
                                                          "stream": False}, headers=sc.auth(key))
        assert ollama.status_code == 429  # the same local count, in Ollama's shape
        assert "3 requests per minute" in ollama.json()["error"]

        redis_server.start()

        async def shared_again() -> bool:
            return (await ready())["state"] == "shared"

        await _wait_for(shared_again, "limits never went back to Redis")
        assert await gauge() == 1
        window = int(time.time() // 60)
        assert (await chat()).status_code == 200  # a fresh Redis: this replica's 1st of 3
        assert redis_server.cli("get", f"gos:limit:req:{record.key_id}:{window}") in ("1", "2")
        # every slot taken was given back, wherever it was counted
        assert redis_server.cli("get", f"gos:limit:running:{record.key_id}") in ("0", "")


async def test_a_slot_released_while_redis_is_away_is_given_back_when_it_returns(
        redis_server):
    """A concurrency slot taken in Redis and released during an outage is paid back later
    (else the key would run one short until the counter expired, an hour on), and never
    below zero."""
    backend = RedisBackend(redis_server.url, retry_s=0.0)
    limiter = Limiter(backend)
    try:
        lease = await limiter.admit(record(concurrent_requests=2))
        assert redis_server.cli("get", "gos:limit:running:key_1") == "1"
        redis_server.cli("client", "pause", "3000", "all")  # Redis stalls: calls time out
        await limiter.release(lease)
        assert backend.shared is False
        await _wait_for(lambda: _shared(backend), "redis did not come back after the pause")
        assert redis_server.cli("get", "gos:limit:running:key_1") == "0"
        # Restarted empty (no persistence) while a release was owed: it stays at 0, not -1.
        lease = await limiter.admit(record(concurrent_requests=2))
        redis_server.stop()
        await limiter.release(lease)
        redis_server.start()
        await _wait_for(lambda: _shared(backend), "redis did not come back after the restart")
        assert redis_server.cli("get", "gos:limit:running:key_1") in ("", "0")
    finally:
        await backend.aclose()


async def _shared(backend: RedisBackend) -> bool:
    return (await backend.probe())["state"] == "shared"


class _HeldStream(httpx.AsyncByteStream):
    """An upstream SSE stream that sends its first event, then waits for `release`."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
        await self.release.wait()
        yield b"data: [DONE]\n\n"


async def test_a_streams_concurrency_slot_is_held_until_its_last_byte(sidecar):
    """The admission lease lives as long as the response: a key limited to one concurrent
    request is refused while its stream runs, and admitted again once it has ended."""
    release = asyncio.Event()

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_HeldStream(release),
                              headers={"content-type": "text/event-stream"})

    async with sidecar(upstream) as sc:
        key, _ = create_key(sc.keys.file, user="one-at-a-time", permissions=["chat"],
                            limits=KeyLimits(concurrent_requests=1))
        streamed = {**CHAT, "stream": True}
        first = asyncio.create_task(
            sc.client.post("/v1/chat/completions", json=streamed, headers=sc.auth(key)))
        await asyncio.sleep(0.2)  # the first stream is open and waiting upstream
        during = await sc.client.post("/v1/chat/completions", json=streamed,
                                      headers=sc.auth(key))
        release.set()
        done = await first
        after = await sc.client.post("/v1/chat/completions", json=CHAT, headers=sc.auth(key))
    assert during.status_code == 429
    assert "Concurrent request limit" in during.json()["error"]["message"]
    assert done.status_code == 200 and done.text.endswith("data: [DONE]\n\n")
    assert after.status_code == 200
