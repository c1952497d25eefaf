"""Who may do what: four steps, each with one job, applied in this order.

1. `authenticate` (a FastAPI dependency): the caller's key (401 when missing, wrong or
   revoked).
2. `check_permission` / the dependency `require_permission(name)`: the key holds the
   permission (403). Operations such as `/metrics` stop here: they must answer under
   overload and never count against limits.
3. `check_backpressure`: the sidecar and vLLM's queue are not overloaded (503, Retry-After).
4. `admission`: the key's limits admit the request (429). The lease is taken and released
   here, once the response (a stream included) has ended; its tokens are charged then.

A route that does work gets all four from one dependency, `interface.work(permission)`,
which calls steps 2-4 as plain functions: each dependency FastAPI solves costs tens of µs
per request, and the sidecar answers thousands of requests per second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.errors import Forbidden, Unauthorized
from serving.sidecar.limits import Lease
from serving.sidecar.state import RequestState, Services, request_state, services

# auto_error=False: we raise our own errors so the body follows the route's protocol.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_x_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="Alternative header")


@dataclass(frozen=True)
class Principal:
    key_id: str
    user: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return "all" in self.permissions or permission in self.permissions


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(
    request: Request,
    found: Annotated[Services, Depends(services)],
    # Declared only so the OpenAPI schema documents both ways to send the key.
    _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    _header_doc: Annotated[str | None, Depends(_x_api_key)] = None,
) -> Principal:
    presented = _presented_key(request)
    if presented is None:
        raise Unauthorized(
            "Missing API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
            code="missing_api_key",
        )
    record = found.keys.lookup(presented)
    if record is None:
        raise Unauthorized("Invalid or revoked API key.")
    principal = Principal(record.key_id, record.user, record.permissions)
    state = request_state(request.scope)
    state.principal, state.key_record = principal, record
    return principal


def check_permission(principal: Principal, permission: str) -> None:
    if not principal.may(permission):
        raise Forbidden(
            f"This API key (user '{principal.user}') lacks the '{permission}' permission."
        )


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: an authenticated key that holds `permission`."""

    async def permitted(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        check_permission(principal, permission)
        return principal

    return permitted


def check_backpressure(found: Services) -> None:
    """Refuse new work before it queues without end."""
    found.load.check(found.settings)


@asynccontextmanager
async def admission(found: Services, state: RequestState) -> AsyncIterator[Lease]:
    """The key's limits admit the request (429 if not); the lease lives until the block ends,
    which for a route's work is after the response's last byte, a stream's included."""
    assert state.key_record is not None  # authenticate ran first
    lease = await found.limiter.admit(state.key_record)
    state.lease = lease  # its x-ratelimit-* headers go on the response
    try:
        yield lease
    finally:
        with anyio.CancelScope(shield=True):  # a client that left must not keep its slot
            await found.limiter.release(lease)
