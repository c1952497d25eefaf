"""`create_app(settings)`: the FastAPI sidecar in front of vLLM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import serving
from serving.config import SidecarSettings
from serving.errors import BadRequest, NotFound, ServingError
from serving.protocols import embeddings as embedding_routes
from serving.protocols.anthropic import routes as anthropic_routes
from serving.protocols.ollama import routes as ollama_routes
from serving.protocols.openai import routes as openai_routes
from serving.sidecar import health
from serving.sidecar.body_guard import BodyGuardMiddleware, BodyLimits
from serving.sidecar.engine_state import EngineStatus
from serving.sidecar.host_limits import HostBackend
from serving.sidecar.keys import KeyStore, read_key_file
from serving.sidecar.limits import LimitBackend, Limiter, MemoryBackend, RedisBackend
from serving.sidecar.load import LoadState, poll_engine_queue
from serving.sidecar.metrics import SidecarMetrics
from serving.sidecar.middleware import RequestContextMiddleware, error_body_for_path
from serving.upstream import EngineMetricsCache, engine_client

log = logging.getLogger(__name__)


def create_app(
    settings: SidecarSettings,
    *,
    engine: EngineStatus | None = None,
    embedding_engine: EngineStatus | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the sidecar. `engine` comes from the launcher (None when run standalone);
    `transport` lets unit tests stand in for vLLM with httpx.MockTransport."""
    read_key_file(settings.keys_file)  # fail fast: unreadable or world-readable key file

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _engine_clients(settings, transport) as (client, embedding_client):
            app.state.upstream = client
            app.state.embedding_upstream = embedding_client
            app.state.engine_metrics = EngineMetricsCache(client)
            poller = asyncio.create_task(poll_engine_queue(
                app.state.engine_metrics, app.state.load, settings.engine_poll_interval_s))
            try:
                yield
            finally:
                poller.cancel()
                if isinstance(backend, RedisBackend | HostBackend):
                    await backend.aclose()

    app = FastAPI(
        title="gpt-oss serving sidecar",
        version=serving.__version__,
        description="Per-key auth, health and metrics in front of vLLM serving gpt-oss; "
        "the OpenAI API passed through and the Ollama API translated.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.embedding_engine = embedding_engine
    app.state.draining = False
    app.state.keys = KeyStore(settings.keys_file)
    app.state.metrics = SidecarMetrics()
    app.state.load = LoadState()
    backend = _limit_backend(settings, app.state.metrics)
    app.state.limiter = Limiter(backend)

    app.include_router(health.build_router())
    app.include_router(openai_routes.build_router())
    app.include_router(anthropic_routes.build_router())
    app.include_router(embedding_routes.build_router())
    app.include_router(ollama_routes.build_router())

    _install_error_handlers(app)
    app.add_middleware(BodyGuardMiddleware, limits=BodyLimits.from_settings(settings))  # inner
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        load=app.state.load,
        limiter=app.state.limiter,
    )
    return app


def _limit_backend(settings: SidecarSettings, metrics: SidecarMetrics) -> LimitBackend:
    """Redis when configured (shared by replicas); else one SQLite file shared by this host's
    workers; else (one worker) counters in this process. Never limits multiplied by N."""
    if settings.redis_url:
        return RedisBackend(settings.redis_url, registry=metrics.registry)
    if settings.shared_state_dir is not None:
        return HostBackend(settings.shared_state_dir / "limits.sqlite")
    return MemoryBackend()


@asynccontextmanager
async def _engine_clients(
    settings: SidecarSettings, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient | None]]:
    """The chat engine's client and the embedding engine's (None when embeddings are off)."""
    def client(url: str) -> httpx.AsyncClient:
        return engine_client(url, connect_timeout_s=settings.upstream_connect_timeout_s,
                             read_timeout_s=settings.upstream_read_timeout_s, transport=transport)

    async with client(settings.upstream_url) as chat:
        if settings.embedding_upstream_url is None:
            yield chat, None
            return
        async with client(settings.embedding_upstream_url) as embedding:
            yield chat, embedding


def _render(request: Request, err: ServingError) -> JSONResponse:
    return JSONResponse(
        error_body_for_path(request.url.path, err), status_code=err.status_code, headers=err.headers
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def on_serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _render(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err: ServingError = NotFound(f"No route {request.method} {request.url.path}.")
        else:
            err = ServingError(str(exc.detail))
            err.status_code = exc.status_code
            err.code = "http_error"
        return _render(request, err)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        request_id = getattr(request.state, "request_id", "?")
        message = f"Internal error in the sidecar (request {request_id})."
        return _render(request, ServingError(message))


def validation_error(exc: RequestValidationError) -> BadRequest:
    """One clear sentence naming the first offending field."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "parse error")
        return BadRequest(f"Malformed JSON body: {detail}.")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    return BadRequest(f"Invalid field '{field}': {first.get('msg', 'invalid value')}.", param=field)
