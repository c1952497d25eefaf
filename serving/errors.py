"""The sidecar's error hierarchy, the single place where upstream failures are classified,
and the error dialects.

Routes raise these; each router renders them in its own protocol's shape (its `Dialect`:
OpenAI's ``{"error": {...}}``, Anthropic's ``{"type": "error", ...}``, Ollama's
``{"error": "..."}``), through its route class (`dialect_route`). Errors are classified by
exception type, never by matching their text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class ServingError(Exception):
    """An error with its HTTP status, OpenAI error type and code. A subclass states them as
    class keywords: ``class Gone(ServingError, status=410, kind="...", code="...")``."""

    status_code = 500
    error_type = "server_error"
    code = "internal_error"

    def __init_subclass__(
        cls, *, status: int | None = None, kind: str | None = None, code: str | None = None
    ) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
        if kind is not None:
            cls.error_type = kind
        if code is not None:
            cls.code = code

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code


class BadRequest(ServingError, status=400, kind="invalid_request_error", code="bad_request"):
    """The request is invalid; the message names the field."""


class Unauthorized(ServingError, status=401, kind="authentication_error", code="invalid_api_key"):
    """Missing, wrong or revoked API key."""


class Forbidden(ServingError, status=403, kind="permission_error", code="insufficient_permissions"):
    """The key lacks the permission the route needs."""


class NotFound(ServingError, status=404, kind="invalid_request_error", code="not_found"):
    """Unknown model or path."""


class PayloadTooLarge(
    ServingError, status=413, kind="invalid_request_error", code="payload_too_large"
):
    """The body is over SERVING_MAX_BODY_BYTES or a body bound."""


class UpstreamUnavailable(
    ServingError, status=503, kind="service_unavailable", code="engine_unavailable"
):
    """vLLM cannot be reached (starting, restarting) or went away."""

    def __init__(self, message: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))


class UpstreamTimeout(ServingError, status=504, kind="timeout", code="engine_timeout"):
    """vLLM did not answer in time."""


def from_upstream_exception(exc: httpx.HTTPError) -> ServingError:
    """Map an httpx failure talking to vLLM onto the error the client should see."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout("The engine did not answer in time.")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)):
        return UpstreamUnavailable("The engine is not reachable (starting or restarting).")
    if isinstance(exc, httpx.ReadError):
        return UpstreamUnavailable("The engine closed the connection (it may have restarted).")
    return UpstreamUnavailable(f"Upstream error: {type(exc).__name__}")


# The client-error type of each 4xx status, for errors that carry no type of their own (an
# HTTP error raised by the framework, an engine status passed on): a 4xx is never a
# "server_error". OpenAI's names first, then Anthropic's (/v1/messages).
OPENAI_CLIENT_ERROR_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def client_error_type(err: ServingError) -> str:
    """The error's OpenAI type; a 4xx without a type of its own gets its status's client type."""
    if err.status_code >= 500 or err.error_type != ServingError.error_type:
        return err.error_type
    return OPENAI_CLIENT_ERROR_TYPES.get(err.status_code, "invalid_request_error")


def openai_error_body(err: ServingError) -> dict[str, object]:
    return {
        "error": {
            "message": err.message,
            "type": client_error_type(err),
            "param": err.param,
            "code": err.code,
        }
    }


def anthropic_error_body(err: ServingError) -> dict[str, object]:
    """Anthropic's shape (`{"type": "error", "error": {type, message}}`), for /v1/messages."""
    status = err.status_code
    fallback = "invalid_request_error" if status < 500 else "api_error"
    return {"type": "error",
            "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, fallback), "message": err.message}}


def ollama_error_body(err: ServingError) -> dict[str, object]:
    return {"error": err.message}


# --- OpenAPI documentation of the error answers (so the schema tells clients the truth) ---
_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request (the message names the field)",
    401: "Missing, wrong or revoked API key",
    403: "The key lacks the permission this route needs",
    404: "Unknown model or path",
    413: "Request body too large",
    429: "A per-key limit was reached (Retry-After, x-ratelimit-* headers)",
    503: "Engine unavailable or server busy (Retry-After)",
    504: "The engine did not answer in time",
}
# `code` is a string in the sidecar's own errors and an integer in vLLM's, passed through.
_OPENAI_ERROR_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "code"],
                             "properties": {"message": {"type": "string"},
                                            "type": {"type": "string"},
                                            "param": {"type": ["string", "null"]},
                                            "code": {"type": ["string", "integer", "null"]}}}},
}
_ANTHROPIC_ERROR_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {"type": {"type": "string"},
                   "error": {"type": "object", "required": ["type", "message"],
                             "properties": {"type": {"type": "string"},
                                            "message": {"type": "string"}}}},
}
_OLLAMA_ERROR_SCHEMA: dict[str, object] = {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
}


@dataclass(frozen=True)
class Dialect:
    """How one protocol writes its errors: the body, and its schema for OpenAPI."""

    name: str
    body: Callable[[ServingError], dict[str, object]]
    schema: dict[str, object]

    def render(self, err: ServingError, request_id: str | None = None) -> JSONResponse:
        headers = dict(err.headers)
        if request_id is not None:
            headers["x-request-id"] = request_id
        return JSONResponse(self.body(err), status_code=err.status_code, headers=headers)

    def responses(self) -> dict[int | str, dict[str, Any]]:
        """`responses=` for a router: every error status with this dialect's body."""
        content = {"application/json": {"schema": self.schema}}
        return {status: {"description": text, "content": content}
                for status, text in _ERROR_DESCRIPTIONS.items()}


OPENAI = Dialect("openai", openai_error_body, _OPENAI_ERROR_SCHEMA)
ANTHROPIC = Dialect("anthropic", anthropic_error_body, _ANTHROPIC_ERROR_SCHEMA)
OLLAMA = Dialect("ollama", ollama_error_body, _OLLAMA_ERROR_SCHEMA)


def validation_error(exc: RequestValidationError) -> BadRequest:
    """One clear sentence naming the first offending field."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "parse error")
        return BadRequest(f"Malformed JSON body: {detail}.")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    return BadRequest(f"Invalid field '{field}': {first.get('msg', 'invalid value')}.", param=field)


def unexpected_error(request_id: str) -> ServingError:
    return ServingError(f"Internal error in the sidecar (request {request_id}).")


def dialect_route(dialect: Dialect) -> type[APIRoute]:
    """A route class that answers every error of its routes (dependencies included) in
    `dialect`: give it to a router as `APIRouter(route_class=dialect_route(OPENAI))`."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def handle_in_dialect(request: Request) -> Response:
                try:
                    return await handle(request)
                except ServingError as err:
                    return dialect.render(err)
                except RequestValidationError as exc:
                    return dialect.render(validation_error(exc))

            return handle_in_dialect

    DialectRoute.__name__ = f"{dialect.name.title()}Route"
    return DialectRoute


@dataclass(frozen=True)
class DialectsByPath:
    """For errors written before any router ran (body too large, unknown path): the dialect
    of the router mounted at the longest matching prefix, else `default`."""

    mounts: tuple[tuple[str, Dialect], ...]
    default: Dialect

    def for_path(self, path: str) -> Dialect:
        matching = [(prefix, d) for prefix, d in self.mounts if path.startswith(prefix)]
        return max(matching, key=lambda m: len(m[0]))[1] if matching else self.default
