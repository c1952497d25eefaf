"""What protocol code may use of the sidecar: the one `serving.sidecar` module that
`serving.protocols` imports.

A route declares what its work needs with `work("chat")` (or another permission) and gets a
`Call`: the caller, the engine clients, the settings and the means to report tokens. The
dependency chain behind it (key, permission, backpressure, admission) is in `auth`; routes
never reach into the app or the request for services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from fastapi import Depends, Request

from serving.config import SidecarSettings
from serving.errors import BadRequest
from serving.sidecar.auth import (
    Principal,
    admission,
    authenticate,
    check_backpressure,
    check_permission,
)
from serving.sidecar.limits import Lease
from serving.sidecar.metrics import SidecarMetrics
from serving.sidecar.state import Services, request_state, services

__all__ = ["Call", "Principal", "work"]


@dataclass
class Call:
    """One admitted request, as protocol code sees it."""

    request_id: str
    principal: Principal
    settings: SidecarSettings
    upstream: httpx.AsyncClient
    _embedding_upstream: httpx.AsyncClient | None
    _metrics: SidecarMetrics
    _lease: Lease
    _route: str

    @property
    def embedding_upstream(self) -> httpx.AsyncClient:
        if self._embedding_upstream is None:
            raise BadRequest("embeddings are not available: the embedding engine is off",
                             code="embeddings_unsupported")
        return self._embedding_upstream

    @property
    def trace_headers(self) -> dict[str, str]:
        """Headers for every request to vLLM: its logs then carry our request id."""
        return {"x-request-id": self.request_id}

    def record_tokens(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Count tokens in the metrics and charge them to the key's tokens-per-minute."""
        prompt, completion = max(prompt_tokens, 0), max(completion_tokens, 0)
        user = self.principal.user
        self._metrics.tokens.labels(self._route, user, "prompt").inc(prompt)
        self._metrics.tokens.labels(self._route, user, "completion").inc(completion)
        self._lease.tokens += prompt + completion


def work(permission: str) -> Callable[..., AsyncIterator[Call]]:
    """Dependency factory for a route that does work: key, `permission`, backpressure and
    admission (in that order, see `auth`), then the `Call`. One dependency with `yield`:
    FastAPI ends it after the response, so the admission lease covers a stream's last byte."""

    # Defaults, not Annotated: the annotations are strings (PEP 563).
    async def call(
        request: Request,
        principal: Principal = Depends(authenticate),
        found: Services = Depends(services),
    ) -> AsyncIterator[Call]:
        check_permission(principal, permission)
        check_backpressure(found)
        state = request_state(request.scope)
        async with admission(found, state) as lease:
            yield Call(
                request_id=state.request_id,
                principal=principal,
                settings=found.settings,
                upstream=found.engines.chat,
                _embedding_upstream=found.engines.embedding,
                _metrics=found.metrics,
                _lease=lease,
                _route=getattr(request.scope.get("route"), "path", None) or "unmatched",
            )

    return call
