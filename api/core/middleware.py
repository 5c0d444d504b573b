"""The app's ASGI middleware: request id, metrics, the request log line; refusal of NUL
characters before routing; a 500 problem for an unhandled error."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import Request

from api.core.metrics import Metrics, method_label
from api.core.problems import Problem, cut_path, internal_error_response, problem_response

__all__ = ["Observe", "has_nul"]

log = logging.getLogger("creditgate.api")
_REQUEST_ID = b"x-request-id"


def has_nul(scope: Any) -> bool:
    """Whether the request's path or query string, percent-decoded, holds a NUL (``%00``).
    PostgreSQL cannot store or compare a NUL in text (psycopg refuses it: a 500), and no id
    or filter value holds one. Other control characters reach the routes, whose checks
    refuse them where they matter (ids: 422 ``invalid_value``)."""
    from urllib.parse import unquote_to_bytes

    return "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(
        scope.get("query_string", b"")
    )


class Observe:
    """Request id (``X-Request-ID``), metrics and the request log line of every request,
    as plain ASGI middleware. A path or query with a NUL character (``%00``) is refused
    before routing (400 ``bad_request``, ``has_nul``). An exception
    before the answer started becomes a 500 ``internal_error`` (no stack trace to the
    client; all of it to the log). After it started (a streamed export failing mid-way)
    the exception is re-raised so the server aborts the connection before the final
    chunk: the client sees a broken transfer, not a complete one (``BaseHTTPMiddleware``
    would send the final chunk first)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 100 or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        start = time.perf_counter()
        status: list[int] = []

        head = scope.get("method") == "HEAD"

        async def send_with_id(message: Any) -> None:
            if head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}  # HEAD: the GET's headers, never a body
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _REQUEST_ID]
                headers.append((_REQUEST_ID, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
                self._observe(request, message["status"], start)
            await send(message)

        if has_nul(scope):
            refused = Problem(
                "bad_request", "NUL characters (%00) are not allowed in the path or query"
            )
            await problem_response(refused)(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": cut_path(request.url.path),
                },
            )
            if status:  # the answer has started: abort the connection
                raise
            await internal_error_response()(scope, receive, send_with_id)

    def _observe(self, request: Request, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        # bounded labels: the route's template (never the raw path), a known method or "other"
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        method = method_label(request.method)
        self.metrics.request_seconds.labels(method, route).observe(elapsed)
        if status >= 400:
            self.metrics.errors.labels(method, route, str(status)).inc()
        if route not in ("/healthz", "/metrics", "/readyz"):
            log.info(
                "request",
                extra={
                    "request_id": request.state.request_id,
                    "method": request.method,
                    "path": cut_path(request.url.path),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "decision_id": getattr(request.state, "decision_id", None),
                },
            )
