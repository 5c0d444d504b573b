"""The HTTP API: ``create_app(settings) -> FastAPI`` (routes under ``/v1``).

At start the app loads and compiles the policy once (``settings.policy_path``), applies the
database migrations (``Store.upgrade``) and records the policy source (``save_policy``) so
every decision can be replayed under the exact policy text that made it.

Routes (role in brackets; ``admin`` may do everything)::

    POST /v1/decisions                 [order_entry]   decide one order, record it
    GET  /v1/decisions/{id}            [reviewer, compliance]
    GET  /v1/decisions                 [reviewer, compliance]  filters + cursor pagination
    GET  /v1/decisions/{id}/replay     [compliance]    re-evaluate under the stored policy
    PUT  /v1/customers/{id}            [admin]         credit limit, ledger, facts
    GET  /v1/customers/{id}            [order_entry]
    POST /v1/customers/{id}/events     [order_entry]   ledger event (cancel, invoice, payment,
                                                       credit note), idempotent by event_id
    POST /v1/customers/import          [admin]         customers from CSV, all or nothing
    PUT  /v1/fx-rates                  [admin]         exchange rates into the policy currency
    GET  /v1/decisions/export          [compliance]    CSV / JSON lines, streamed, masked
    GET  /v1/audit/verify              [compliance]    check the hash chains (decision log, ledger)
    GET  /v1/policy                    [policy_owner, compliance, reviewer]
    GET  /healthz, /readyz, /metrics   (no key)

Modules: ``api.routes.decisions``, ``api.routes.customers``, ``api.routes.admin``,
``api.routes.ops`` (one per resource); request bodies in ``api.bodies``; CSV in/out in
``api.csvio``; masking in ``api.masking``; logs in ``api.logs``; metrics in ``api.metrics``.

Request bodies are read raw (at most ``settings.max_request_bytes``, 413 beyond, checked
before parsing) and parsed with ``engine.inputs.parse_request_json``: numbers stay exact
``Decimal``, duplicate keys and ``NaN`` are refused. Money is a JSON string such as
``"12500.00"`` or a whole JSON number; a JSON number with a fraction is refused
(``inexact_number``): most JSON encoders make it a binary float before it is sent.

Every error is an ``application/problem+json`` body (``api.problems``). A database or engine
failure answers 503/500 and never a decision. Logs are JSON lines (logger ``creditgate``)
carrying the decision id.

The OpenAPI document (``/openapi.json``) declares the two ways of sending a key
(``api.auth``) and every route's problem responses with the ``ProblemDetails`` schema
(``api.routes.problems``). ``/docs`` (Swagger UI) works offline: its JavaScript and CSS are
served by the app from the ``fastapi-offline`` package under ``/docs-assets``, never from a
CDN. ReDoc is served the same way at ``/redoc``, without web fonts.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders

from api.bodies import engine_path
from api.logs import JsonFormatter, configure_logging
from api.metrics import Metrics, method_label
from api.problems import (
    Problem,
    ProblemDetails,
    install_handlers,
    internal_error_response,
    problem_response,
)
from api.routes import ROUTES
from api.service import Replayer, Service

__all__ = ["DOCS_ASSETS", "ROUTES", "JsonFormatter", "configure_logging", "create_app"]

log = logging.getLogger("creditgate.api")

#: where the app serves Swagger UI's and ReDoc's files (from the fastapi-offline package)
DOCS_ASSETS = "/docs-assets"


def docs_assets_dir() -> str:
    """The folder of Swagger UI's and ReDoc's files in the installed ``fastapi-offline``
    (``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``, ``favicon.png``)."""
    from pathlib import Path

    import fastapi_offline

    return str(Path(fastapi_offline.__file__).parent / "static")


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their files served by the app itself, so
    they work on a machine without internet access."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    openapi_url = str(app.openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=None,  # no OAuth2: API keys only
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def install_openapi(app: FastAPI) -> None:
    """Adds ``ProblemDetails`` (and ``ProblemError``) to the document's schemas: the routes'
    problem responses refer to it (``api.routes.problem_responses``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(problem.pop("$defs", {}))
            schemas["ProblemDetails"] = problem
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Any = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: ``Settings()`` from the environment).

    Loads and compiles the policy (raises ``PolicyErrors`` if it is broken), applies the
    migrations and records the policy source. ``clock`` (tests) replaces the time source of
    decisions. Raises ``StoreUnavailable`` if the database does not answer."""
    from api.routes import admin, customers, decisions, ops
    from api.settings import Settings
    from api.store import Store
    from engine.evaluate import load

    settings = settings or Settings()
    configure_logging()
    compiled = load(str(settings.policy_path))
    policy = compiled.policy
    store = Store(settings.database_url)
    store.upgrade()
    store.save_policy(policy)
    metrics = Metrics()
    metrics.policy.labels(policy.id, policy.version, policy.sha256).set(1)
    max_bytes = int(settings.max_request_bytes)
    svc = Service(
        settings=settings,
        store=store,
        compiled=compiled,
        metrics=metrics,
        replayer=Replayer(store, compiled),
        max_bytes=max_bytes,
        import_bytes=int(getattr(settings, "max_import_bytes", 0) or max(max_bytes, 16 * 2**20)),
        clock=clock,
    )

    app = FastAPI(
        title="Creditgate",
        version="0.1.0",
        description="Credit decisions (approve / refer / decline) for sales orders on credit, "
        "under a declarative YAML credit policy, with a hash-chained decision log. Errors are "
        "application/problem+json (RFC 9457). Send an API key as `Authorization: Bearer "
        "<key>` or `X-API-Key: <key>` (the Authorize button).",
        docs_url=None,  # install_docs: Swagger UI and ReDoc from local files, not a CDN
        redoc_url=None,
    )
    app.state.service = svc
    app.state.settings = settings
    app.state.store = store
    app.state.compiled = compiled
    app.state.metrics = metrics
    install_handlers(app, path_map=engine_path)
    for module in (decisions, customers, admin, ops):
        app.include_router(module.router)
    install_openapi(app)
    install_docs(app)

    app.add_middleware(Observe, metrics=metrics)

    return app


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
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
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
                    "path": request.url.path,
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
                    "path": request.url.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "decision_id": getattr(request.state, "decision_id", None),
                },
            )
