"""Liveness, readiness and the metrics endpoint."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.sidecar.deps import get_settings, get_upstream
from serving.sidecar.engine_state import EngineState

log = logging.getLogger(__name__)
READY_PROBE_TIMEOUT_S = 2.0


def build_router() -> APIRouter:
    router = APIRouter(tags=["Operations"])

    @router.get("/health", summary="Liveness: the sidecar process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="Readiness: vLLM answers and serves the model",
                responses={503: {"description": "Not ready: the body says why (Retry-After)"}})
    async def ready(request: Request) -> JSONResponse:
        reason, detail = await readiness(request)
        # Redis down is not "not ready": the limits fail open (docs/reliability.md).
        detail["limits"] = await request.app.state.limiter.probe()
        if reason is None:
            return JSONResponse({"status": "ready", **detail})
        return JSONResponse(
            {"status": "not_ready", "reason": reason, **detail},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @router.get("/metrics", summary="Prometheus metrics: the sidecar's, then vLLM's",
                responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
    async def metrics(request: Request) -> Response:
        own = generate_latest(request.app.state.metrics.registry)
        return Response(own + await engine_metrics(request), media_type=CONTENT_TYPE_LATEST)

    return router


async def readiness(request: Request) -> tuple[str | None, dict[str, Any]]:
    """(None, details) when ready, else (reason, details)."""
    if getattr(request.app.state, "draining", False):
        return "shutting down", {}
    engine: EngineState | None = request.app.state.engine
    if engine is not None and engine.phase != "running":
        return f"engine {engine.phase}", {"engine": engine.describe()}
    embedding: EngineState | None = request.app.state.embedding_engine
    if embedding is not None and embedding.phase != "running":
        return f"embedding engine {embedding.phase}", {"embedding_engine": embedding.describe()}
    try:
        response = await get_upstream(request).get("/v1/models", timeout=READY_PROBE_TIMEOUT_S)
    except httpx.TimeoutException:
        return "engine not answering (busy or loading)", {}
    except httpx.HTTPError as exc:
        return f"engine unreachable ({type(exc).__name__})", {}
    if response.status_code != 200:
        return f"engine answered {response.status_code}", {}
    served = {m.get("id"): m for m in response.json().get("data", [])}
    wanted = get_settings(request).served_model_names
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


async def engine_metrics(request: Request) -> bytes:
    """vLLM's own metrics, so one scrape of the public port sees both (vLLM is loopback-only)."""
    try:
        response = await get_upstream(request).get("/metrics", timeout=READY_PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return b""
    return response.content if response.status_code == 200 else b""
