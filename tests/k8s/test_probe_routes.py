"""What the pod's probes ask the sidecar, against a fake vLLM (issue 17: probe semantics).

Liveness (`/live`) must fail when a running engine is wedged, so the kubelet restarts the
container, and must not fail while the launcher is restarting a crashed engine (it would
turn a one-process restart into a container restart). The manifests' thresholds are in
test_k8s_deploy.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from serving.config import SidecarSettings
from serving.sidecar.app import create_app
from serving.sidecar.engine_state import EngineState, Phase
from serving.sidecar.keys import create_key

Handler = Callable[[httpx.Request], httpx.Response]


def _healthy(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/health":
        return httpx.Response(200)
    return httpx.Response(200, json={"object": "list", "data": []})


def _wedged(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def _dead_engine_core(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503)  # vLLM's /health once its engine core has died


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def _live(tmp_path: Path, handler: Handler, phase: Phase | None) -> tuple[int, list[str]]:
    keys = tmp_path / "keys.json"
    create_key(keys, user="admin", permissions=["all"])
    seen: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return handler(request)

    engine = None if phase is None else EngineState(phase=phase)
    settings = SidecarSettings(keys_file=keys, aliases_file=tmp_path / "aliases.json")
    app = create_app(settings, engine=engine, transport=httpx.MockTransport(recording))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            response = await client.get("/live")  # no key: probes carry none
    return response.status_code, [p for p in seen if p == "/health"]


@pytest.mark.parametrize(("phase", "handler", "status"), [
    ("running", _healthy, 200),
    ("running", _wedged, 503),
    ("running", _dead_engine_core, 503),
    ("running", _refused, 503),
])
async def test_live_asks_a_running_engine(
    tmp_path: Path, phase: Phase, handler: Handler, status: int
) -> None:
    code, asked = await _live(tmp_path, handler, phase)
    assert (code, asked) == (status, ["/health"])


@pytest.mark.parametrize("phase", ["starting", "restarting", "stopping", None])
async def test_live_leaves_engine_restarts_to_the_launcher(
    tmp_path: Path, phase: Phase | None
) -> None:
    code, asked = await _live(tmp_path, _refused, phase)
    assert (code, asked) == (200, [])
