"""Liveness, readiness and the metrics endpoint."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.errors import OLLAMA, dialect_route
from serving.sidecar.auth import Principal, require_permission
from serving.sidecar.metrics import prometheus_dir, sidecar_metrics_text
from serving.sidecar.state import Services, services

log = logging.getLogger(__name__)
READY_PROBE_TIMEOUT_S = 2.0
# Liveness asks vLLM's /health: a wedged engine misses it, a busy one still answers in time.
LIVE_PROBE_TIMEOUT_S = 10.0


Found = Annotated[Services, Depends(services)]


def build_router() -> APIRouter:
    router = APIRouter(tags=["Operations"], route_class=dialect_route(OLLAMA))

    @router.get("/health", summary="Liveness: the sidecar process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/live", summary="Liveness: the sidecar answers and a running engine is not wedged",
                responses={503: {"description": "Wedged: restart the container"}})
    async def live(sidecar: Found) -> JSONResponse:
        reason = await liveness(sidecar)
        if reason is None:
            return JSONResponse({"status": "alive"})
        return JSONResponse({"status": "wedged", "reason": reason}, status_code=503)

    @router.get("/ready", summary="Readiness: vLLM answers and serves the model",
                responses={503: {"description": "Not ready: the body says why (Retry-After)"}})
    async def ready(sidecar: Found) -> JSONResponse:
        reason, detail = await readiness(sidecar)
        # Redis down is not "not ready": the limits fail open (docs/reliability.md).
        detail["limits"] = await sidecar.limiter.probe()
        if reason is None:
            return JSONResponse({"status": "ready", **detail})
        return JSONResponse(
            {"status": "not_ready", "reason": reason, **detail},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @router.get("/metrics", summary="Prometheus metrics: the sidecar's, then vLLM's (needs a "
                "key with the `metrics` permission; the metrics port needs none)",
                responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
    async def metrics(
        sidecar: Found, _: Annotated[Principal, Depends(require_permission("metrics"))]
    ) -> Response:
        return Response(await all_metrics_text(sidecar), media_type=CONTENT_TYPE_LATEST)

    return router


async def readiness(sidecar: Services) -> tuple[str | None, dict[str, Any]]:
    """(None, details) when ready, else (reason, details)."""
    control = sidecar.control
    if control.draining:
        return "shutting down", {}
    engine = control.engine
    if engine is not None and engine.phase != "running":
        return f"engine {engine.phase}", {"engine": engine.describe()}
    embedding = control.embedding_engine
    if embedding is not None and embedding.phase != "running":
        return f"embedding engine {embedding.phase}", {"embedding_engine": embedding.describe()}
    try:
        response = await sidecar.engines.chat.get("/v1/models", timeout=READY_PROBE_TIMEOUT_S)
    except httpx.TimeoutException:
        return "engine not answering (busy or loading)", {}
    except httpx.HTTPError as exc:
        return f"engine unreachable ({type(exc).__name__})", {}
    if response.status_code != 200:
        return f"engine answered {response.status_code}", {}
    served = {m.get("id"): m for m in response.json().get("data", [])}
    wanted = sidecar.settings.served_model_names
    if not any(name in served for name in wanted):
        return "model not listed by the engine", {"served": sorted(served)}
    first = served[next(n for n in wanted if n in served)]
    detail: dict[str, Any] = {"model": first.get("root") or first.get("id"),
                              "max_model_len": first.get("max_model_len")}
    if engine is not None:
        detail["engine"] = engine.describe()
    if embedding is not None:
        detail["embedding_engine"] = embedding.describe()
    return None, detail


async def liveness(sidecar: Services) -> str | None:
    """None while alive. Only an engine the launcher reports running is asked: starting,
    restarting and stopping are the launcher's to handle (and a crash ends in its exit)."""
    engine = sidecar.control.engine
    if engine is None or engine.phase != "running":
        return None
    try:
        response = await sidecar.engines.chat.get("/health", timeout=LIVE_PROBE_TIMEOUT_S)
    except httpx.TimeoutException:
        return f"engine did not answer /health within {LIVE_PROBE_TIMEOUT_S:.0f}s"
    except httpx.HTTPError as exc:
        return f"engine unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"engine /health answered {response.status_code}"
    return None


async def all_metrics_text(sidecar: Services) -> bytes:
    """The sidecar's metrics (all workers), then vLLM's own (cached: at most one fetch per
    250 ms whatever the scrape rate; vLLM is loopback-only, so this is how they are seen)."""
    own = sidecar_metrics_text(sidecar.metrics.registry,
                               prometheus_dir(sidecar.settings.shared_state_dir))
    return own + await sidecar.engines.metrics.text()
