"""What the pod's probes ask the sidecar, against a fake vLLM (issue 17: probe semantics).

Liveness (`/live`) must fail when a running engine is wedged, so the kubelet restarts the
container, and must not fail while the launcher is restarting a crashed engine (it would
turn a one-process restart into a container restart). The manifests' thresholds are in
test_k8s_deploy.py.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from serving.sidecar.engine_state import EngineState, Phase
from tests.fake_vllm import unreachable
from tests.sidecar_fixture import Start

Handler = Callable[[httpx.Request], httpx.Response]


def _healthy(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/health":
        return httpx.Response(200)
    return httpx.Response(200, json={"object": "list", "data": []})


def _dead_engine_core(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503)  # vLLM's /health once its engine core has died


async def _live(sidecar: Start, handler: Handler, phase: Phase | None) -> tuple[int, list[str]]:
    engine = None if phase is None else EngineState(phase=phase)
    async with sidecar(handler, engine=engine) as sc:
        response = await sc.client.get("/live")  # no key: probes carry none
    return response.status_code, [r.url.path for r in sc.seen if r.url.path == "/health"]


@pytest.mark.parametrize(("phase", "handler", "status"), [
    ("running", _healthy, 200),
    ("running", unreachable(httpx.ReadTimeout, "no answer"), 503),
    ("running", _dead_engine_core, 503),
    ("running", unreachable(httpx.ConnectError), 503),
])
async def test_live_asks_a_running_engine(
    sidecar: Start, phase: Phase, handler: Handler, status: int
) -> None:
    code, asked = await _live(sidecar, handler, phase)
    assert (code, asked) == (status, ["/health"])


@pytest.mark.parametrize("phase", ["starting", "restarting", "stopping", None])
async def test_live_leaves_engine_restarts_to_the_launcher(
    sidecar: Start, phase: Phase | None
) -> None:
    code, asked = await _live(sidecar, unreachable(httpx.ConnectError), phase)
    assert (code, asked) == (200, [])
