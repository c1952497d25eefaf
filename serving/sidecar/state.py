"""The sidecar's typed state: the only module that touches ``app.state`` or a request's
``scope["state"]``.

Three objects, each with one owner:

- `SidecarControl`: what the launcher drives (drain, the engines' status). The launcher
  keeps the object it passed to `create_app` and calls `drain()`; it never sets attributes
  on the app.
- `Services`: what every request may use (settings, keys, limiter, metrics, the engine
  clients), built once by `create_app`; the engine clients arrive when the app starts.
- `RequestState`: one request's facts (id, the caller, the admission lease), created by the
  request middleware and filled in by the auth dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI, Request
from starlette.types import Scope

from serving.config import SidecarSettings
from serving.sidecar.engine_state import EngineStatus
from serving.sidecar.keys import KeyRecord, KeyStore
from serving.sidecar.limits import Lease, Limiter
from serving.sidecar.load import LoadState
from serving.sidecar.metrics import SidecarMetrics
from serving.upstream import EngineMetricsCache

if TYPE_CHECKING:
    from serving.sidecar.auth import Principal

_SCOPE_KEY = "serving"


@dataclass
class SidecarControl:
    """The launcher's handle on a running sidecar."""

    engine: EngineStatus | None = None
    embedding_engine: EngineStatus | None = None
    draining: bool = False

    def drain(self) -> None:
        """Readiness turns 503 for as long as in-flight requests finish."""
        self.draining = True


@dataclass
class EngineClients:
    """The connections to vLLM, opened when the app starts and closed when it stops."""

    chat: httpx.AsyncClient
    embedding: httpx.AsyncClient | None
    metrics: EngineMetricsCache


@dataclass
class Services:
    settings: SidecarSettings
    control: SidecarControl
    keys: KeyStore
    metrics: SidecarMetrics
    load: LoadState
    limiter: Limiter
    _engines: EngineClients | None = field(default=None, repr=False)

    @property
    def engines(self) -> EngineClients:
        if self._engines is None:
            raise RuntimeError("the sidecar's engine clients open with the app's lifespan")
        return self._engines

    def open_engines(self, engines: EngineClients | None) -> None:
        self._engines = engines


def attach(app: FastAPI, services: Services) -> None:
    app.state.services = services


def services_of(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def services(request: Request) -> Services:
    """FastAPI dependency: the app's services."""
    return services_of(request.app)


@dataclass
class RequestState:
    request_id: str
    principal: Principal | None = None
    key_record: KeyRecord | None = None
    lease: Lease | None = None


def start_request(scope: Scope, request_id: str) -> RequestState:
    state = RequestState(request_id)
    scope.setdefault("state", {})[_SCOPE_KEY] = state
    return state


def request_state(scope: Scope) -> RequestState:
    """This request's state (the middleware created it before any route ran)."""
    found: RequestState = scope["state"][_SCOPE_KEY]
    return found


def request_state_if_any(scope: Scope) -> RequestState | None:
    found: RequestState | None = scope.get("state", {}).get(_SCOPE_KEY)
    return found
