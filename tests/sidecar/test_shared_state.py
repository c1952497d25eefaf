"""The pieces that let several sidecar workers act as one: limit counters shared through a
file, the engine-state mirror, and the engine-metrics cache that bounds vLLM's scrape load."""

from __future__ import annotations

import asyncio

import httpx

from serving.sidecar.engine_state import EngineState, EngineStateView
from serving.sidecar.host_limits import HostBackend
from serving.upstream import EngineMetricsCache


async def test_two_host_backends_on_one_file_share_counters(tmp_path):
    now = [1000.0]
    first = HostBackend(tmp_path / "limits.sqlite", clock=lambda: now[0])
    second = HostBackend(tmp_path / "limits.sqlite", clock=lambda: now[0])
    assert await first.incr("k", 1, 60) == 1
    assert await second.incr("k", 1, 60) == 2  # the other process sees the first's count
    assert await first.get("k") == 2
    now[0] += 61  # the window expired: the next increment starts over
    assert await second.get("k") == 0
    assert await second.incr("k", 5, 60) == 5
    await first.aclose()
    await second.aclose()


def test_engine_state_view_follows_the_launchers_mirror(tmp_path):
    mirror = tmp_path / "engine.json"
    state = EngineState(mirror=mirror)
    view = EngineStateView(mirror)
    assert view.phase == "starting"  # no file yet: not ready
    state.set("running", pid=42)
    assert view.phase == "running" and view.describe()["pid"] == 42
    state.restarts += 1
    state.set("restarting", exit_code=-9)
    described = view.describe()
    assert (view.phase, described["restarts"], described["last_exit_code"]) == ("restarting", 1, -9)


async def test_engine_metrics_are_fetched_at_most_once_per_max_age():
    fetched = []

    def vllm(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        return httpx.Response(200, content=b"vllm:num_requests_waiting 3\n")

    now = [0.0]
    async with httpx.AsyncClient(base_url="http://vllm", transport=httpx.MockTransport(vllm)) as c:
        cache = EngineMetricsCache(c, max_age_s=0.25, clock=lambda: now[0])
        for _ in range(20):  # a picker scraping every 50 ms for one second
            texts = await asyncio.gather(cache.text(), cache.text())
            assert texts == [b"vllm:num_requests_waiting 3\n"] * 2
            now[0] += 0.05
    assert len(fetched) == 4  # 1 s / 250 ms, concurrent askers sharing a fetch


async def test_engine_metrics_are_empty_while_the_engine_is_down():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(base_url="http://vllm", transport=httpx.MockTransport(down)) as c:
        assert await EngineMetricsCache(c).text() == b""
