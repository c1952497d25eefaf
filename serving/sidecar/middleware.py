"""Pure ASGI middleware: request id, body-size limit, metrics and one access-log line.

It creates the request's `RequestState` (serving.sidecar.state); the auth dependencies fill
in the caller and the admission lease, whose rate-limit headers it adds to the response.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through without buffering and
the latency histogram covers the whole stream, last byte included.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import DialectsByPath, PayloadTooLarge, ServingError
from serving.sidecar.load import LoadState
from serving.sidecar.metrics import SidecarMetrics
from serving.sidecar.state import RequestState, start_request

access_log = logging.getLogger("serving.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Probes and scrapes are not work: counting them would make an idle sidecar report one
# request in flight (the scrape reading the gauge) and let probes push backpressure.
_NOT_WORK = frozenset({"/health", "/live", "/ready", "/metrics"})


async def send_error(
    send: Send, dialects: DialectsByPath, path: str, err: ServingError, request_id: str
) -> None:
    """An error answered before any route ran, in the dialect of the router at `path`."""
    body = json.dumps(dialects.for_path(path).body(err)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *((k.lower().encode(), v.encode()) for k, v in err.headers.items()),
    ]
    await send({"type": "http.response.start", "status": err.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: SidecarMetrics,
        max_body_bytes: int,
        load: LoadState,
        dialects: DialectsByPath,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.load = load
        self.dialects = dialects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        supplied = headers.get("x-request-id", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        state = start_request(scope, request_id)
        path: str = scope["path"]
        started = time.perf_counter()
        status = {"code": 500}

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, self.dialects, path, self._too_large(), request_id)
            self._finish(scope, state, 413, started)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                extra = state.lease.headers.items() if state.lease is not None else ()
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *((k.encode(), v.encode()) for k, v in extra),
                ]
            await send(message)

        work = 0 if path in _NOT_WORK else 1
        self.metrics.in_flight.inc(work)
        self.load.in_flight += work
        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self.metrics.in_flight.dec(work)
            self.load.in_flight -= work
            self._finish(scope, state, status["code"], started)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Request body exceeds the limit of {self.max_body_bytes} bytes "
            "(SERVING_MAX_BODY_BYTES)."
        )

    def _finish(self, scope: Scope, state: RequestState, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        user = state.principal.user if state.principal is not None else "anonymous"
        path, request_id = scope["path"], state.request_id
        method = scope["method"]
        self.metrics.requests.labels(route, method, str(status), user).inc()
        self.metrics.latency.labels(route, method).observe(elapsed)
        # Never the query string, headers or body: keys and prompts stay out of the log.
        access_log.info(
            "request_id=%s method=%s path=%s status=%d duration_ms=%.1f user=%s",
            request_id, method, path, status, elapsed * 1000, user,
        )
