"""FastAPI dependencies: settings, the shared upstream client, and per-key authorization."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.config import SidecarSettings
from serving.errors import Forbidden, Unauthorized
from serving.sidecar.keys import KeyStore

# auto_error=False: we raise our own errors so the body follows the route's protocol.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_x_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="Alternative header")
# Declared as dependencies only so the OpenAPI schema documents both auth schemes.
_bearer_dep = Depends(_bearer)
_x_api_key_dep = Depends(_x_api_key)


@dataclass(frozen=True)
class Principal:
    key_id: str
    user: str
    permissions: frozenset[str]


def get_settings(request: Request) -> SidecarSettings:
    settings: SidecarSettings = request.app.state.settings
    return settings


def get_upstream(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.upstream
    return client


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request) -> Principal:
    """Resolve the caller's key, or raise 401. Stores the principal for logs and metrics."""
    presented = _presented_key(request)
    if presented is None:
        raise Unauthorized(
            "Missing API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
            code="missing_api_key",
        )
    store: KeyStore = request.app.state.keys
    record = store.lookup(presented)
    if record is None:
        raise Unauthorized("Invalid or revoked API key.")
    principal = Principal(record.key_id, record.user, record.permissions)
    request.state.principal = principal
    request.state.key_record = record
    return principal


def _check_permission(principal: Principal, permission: str) -> None:
    if "all" not in principal.permissions and permission not in principal.permissions:
        raise Forbidden(
            f"This API key (user '{principal.user}') lacks the '{permission}' permission."
        )


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: key and permission only (operations such as /metrics, which
    must answer under overload and never count against a key's limits)."""

    async def dependency(
        request: Request,
        _bearer_doc: HTTPAuthorizationCredentials | None = _bearer_dep,
        _header_doc: str | None = _x_api_key_dep,
    ) -> Principal:
        principal = authenticate(request)
        _check_permission(principal, permission)
        return principal

    return dependency


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory for work: key and permission (as above), then the sidecar must not
    be overloaded and the key's limits must admit the request."""
    authorized = Depends(require_permission(permission))

    async def dependency(request: Request, principal: Principal = authorized) -> Principal:
        app_state = request.app.state
        app_state.load.check(app_state.settings)
        # Released (and its tokens charged) by the middleware when the response ends.
        request.state.lease = await app_state.limiter.admit(request.state.key_record)
        return principal

    return dependency
