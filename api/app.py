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
    GET  /v1/audit/verify              [compliance]    check the decision log's hash chain
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
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from api.bodies import engine_path
from api.logs import JsonFormatter, configure_logging
from api.metrics import Metrics
from api.problems import install_handlers, internal_error_response
from api.routes import ROUTES
from api.service import Replayer, Service

__all__ = ["ROUTES", "JsonFormatter", "configure_logging", "create_app"]

log = logging.getLogger("creditgate.api")


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
        "application/problem+json (RFC 9457).",
    )
    app.state.service = svc
    app.state.settings = settings
    app.state.store = store
    app.state.compiled = compiled
    app.state.metrics = metrics
    install_handlers(app, path_map=engine_path)
    for module in (decisions, customers, admin, ops):
        app.include_router(module.router)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 100 or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # no stack trace to the client; all of it to the log
            log.exception(
                "unhandled error",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                },
            )
            response = internal_error_response()
        elapsed = time.perf_counter() - start
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        metrics.request_seconds.labels(request.method, route).observe(elapsed)
        if response.status_code >= 400:
            metrics.errors.labels(request.method, route, str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request_id
        if route not in ("/healthz", "/metrics", "/readyz"):
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 3),
                    "decision_id": getattr(request.state, "decision_id", None),
                },
            )
        return response

    return app
