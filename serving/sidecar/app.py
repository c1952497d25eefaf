"""`create_app(settings)`: the FastAPI sidecar in front of vLLM.

The only place where the sidecar meets the protocols: it builds the services
(serving.sidecar.state), mounts each protocol's router and the operations router, and wraps
them in the request middleware. Each router answers errors in its own dialect; errors written
before any router ran take the dialect of the router mounted at that path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

import serving
from serving.config import SidecarSettings
from serving.errors import (
    ANTHROPIC,
    OLLAMA,
    OPENAI,
    DialectsByPath,
    NotFound,
    ServingError,
    unexpected_error,
    validation_error,
)
from serving.protocols.anthropic import routes as anthropic_routes
from serving.protocols.ollama import routes as ollama_routes
from serving.protocols.openai import routes as openai_routes
from serving.relay_response import SERVER_SEND
from serving.sidecar import health
from serving.sidecar.body_guard import BodyGuardMiddleware, BodyLimits
from serving.sidecar.engine_state import EngineStatus
from serving.sidecar.host_limits import HostBackend
from serving.sidecar.keys import KeyStore, read_key_file
from serving.sidecar.limits import LimitBackend, Limiter, MemoryBackend, RedisBackend
from serving.sidecar.load import LoadState, poll_engine_queue
from serving.sidecar.metrics import SidecarMetrics
from serving.sidecar.middleware import RequestContextMiddleware
from serving.sidecar.state import (
    EngineClients,
    Services,
    SidecarControl,
    attach,
    request_state_if_any,
)
from serving.upstream import EngineMetricsCache, engine_client

log = logging.getLogger(__name__)

# Where each dialect's routers are mounted, for errors written before routing (413, 404).
DIALECTS = DialectsByPath(
    mounts=(("/v1", OPENAI), ("/v1/messages", ANTHROPIC), ("/api", OLLAMA)), default=OLLAMA)


def create_app(
    settings: SidecarSettings,
    *,
    engine: EngineStatus | None = None,
    embedding_engine: EngineStatus | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    control: SidecarControl | None = None,
) -> SidecarApp:
    """Build the sidecar. The launcher passes `control` (drain, the engines' status; or just
    `engine`); `transport` lets unit tests stand in for vLLM with httpx.MockTransport."""
    read_key_file(settings.keys_file)  # fail fast: unreadable or world-readable key file
    control = control or SidecarControl(engine=engine, embedding_engine=embedding_engine)
    metrics = SidecarMetrics()
    services = Services(
        settings=settings,
        control=control,
        keys=KeyStore(settings.keys_file),
        metrics=metrics,
        load=LoadState(),
        limiter=Limiter(_limit_backend(settings, metrics)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _engine_clients(settings, transport) as engines:
            services.open_engines(engines)
            poller = asyncio.create_task(poll_engine_queue(
                engines.metrics, services.load, settings.engine_poll_interval_s))
            try:
                yield
            finally:
                poller.cancel()
                services.open_engines(None)
                await services.limiter.aclose()

    app = SidecarApp(
        title="gpt-oss serving sidecar",
        version=serving.__version__,
        description="Per-key auth, health and metrics in front of vLLM serving gpt-oss; "
        "the OpenAI API passed through and the Ollama API translated.",
        lifespan=lifespan,
    )
    attach(app, services)
    app.include_router(health.build_router())
    app.include_router(openai_routes.build_router())
    app.include_router(anthropic_routes.build_router())
    app.include_router(ollama_routes.build_router())

    app.openapi = lambda: _openapi_with_route_components(app)  # type: ignore[method-assign]
    _install_error_handlers(app)
    app.add_middleware(BodyGuardMiddleware, limits=BodyLimits.from_settings(settings),
                       dialects=DIALECTS)  # inner
    app.add_middleware(RequestContextMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes, load=services.load,
                       dialects=DIALECTS)
    return app


class SidecarApp(FastAPI):
    """FastAPI, keeping the server's own `send` in the scope: the relay writes stream bodies
    through it directly (`serving.relay_response`), past the middlewares' send wrappers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def _openapi_with_route_components(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the component schemas that routes parsing their own bodies
    declared (`x-components` in their `openapi_extra`, see ollama.types.openapi_body)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                components.update(operation.pop("x-components", {}))
        app.openapi_schema = schema
    return app.openapi_schema


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
) -> AsyncIterator[EngineClients]:
    """The chat engine's client, the embedding engine's (None when embeddings are off), and
    the cache of the chat engine's metrics."""
    def client(url: str) -> httpx.AsyncClient:
        return engine_client(url, connect_timeout_s=settings.upstream_connect_timeout_s,
                             read_timeout_s=settings.upstream_read_timeout_s, transport=transport)

    async with client(settings.upstream_url) as chat:
        if settings.embedding_upstream_url is None:
            yield EngineClients(chat, None, EngineMetricsCache(chat))
            return
        async with client(settings.embedding_upstream_url) as embedding:
            yield EngineClients(chat, embedding, EngineMetricsCache(chat))


def _render(request: Request, err: ServingError) -> JSONResponse:
    return DIALECTS.for_path(request.url.path).render(err)


def _install_error_handlers(app: FastAPI) -> None:
    """For what no router answered itself: unknown paths and methods, unexpected errors."""

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
        state = request_state_if_any(request.scope)
        return _render(request, unexpected_error(state.request_id if state else "?"))
