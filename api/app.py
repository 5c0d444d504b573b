"""The HTTP API: ``create_app(settings) -> FastAPI`` (routes under ``/v1``), the composition
root that wires every domain's router to the shared core.

At start the app loads and compiles the policy once (``settings.policy_path``), applies the
database migrations (``Database.upgrade``) and records the policy source
(``PolicyTexts.save``) so every decision can be replayed under the exact policy text that
made it.

Routes (role in brackets; ``admin`` may do everything), by domain package::

    api.decisions   POST /v1/decisions                 [order_entry]   decide one order, record it
                    GET  /v1/decisions/{id}            [order_entry, reviewer, compliance]
                    GET  /v1/decisions                 [order_entry, reviewer, compliance]
                                                                       filters + cursor
                    GET  /v1/decisions/{id}/replay     [compliance]    re-evaluate, same policy
                    GET  /v1/decisions/export          [compliance]    CSV / JSON lines, masked
    api.customers   PUT  /v1/customers/{id}            [admin]         credit limit, facts
                    GET  /v1/customers/{id}            [order_entry]
                    POST /v1/customer-imports          [admin]         CSV, all or nothing
                    POST /v1/customers/import          [admin]         (deprecated alias)
    api.ledger      POST /v1/customers/{id}/events     [order_entry]   cancel, invoice, payment,
                                                                       credit note; idempotent
                    GET  /v1/ledger-events             [order_entry, finance, reviewer,
                                                        compliance]    filters + cursor
                    GET  /v1/ledger-events/export      [finance, compliance] CSV / JSON lines
    api.orders      GET  /v1/orders/{id}               [order_entry, reviewer, compliance]
                                                                       status, timeline
    api.fx          PUT  /v1/fx-rates                  [admin]         rates into policy currency
    api.audit       GET  /v1/audit/verify              [compliance]    hash chains, consistency
    api.policies    GET  /v1/policy                    [policy_owner, compliance, reviewer]
    api.ops         GET  /healthz, /readyz, /metrics   (no key)

The shared core (``api.core``): settings, database, auth (API keys and roles), request
bodies, problem details, routing table, middleware, metrics, logs, docs.

Request bodies are read raw (at most ``settings.max_request_bytes``, 413 beyond, checked
before parsing) and parsed with ``engine.inputs.parse_request_json``: numbers stay exact
``Decimal``, duplicate keys and ``NaN`` are refused. Money is a JSON string such as
``"12500.00"`` or a whole JSON number; a JSON number with a fraction is refused
(``inexact_number``): most JSON encoders make it a binary float before it is sent.

Every error is an ``application/problem+json`` body (``api.core.problems``). A database or
engine failure answers 503/500 and never a decision. Logs are JSON lines (logger
``creditgate``) carrying the decision id.

The OpenAPI document (``/openapi.json``) declares the two ways of sending a key
(``api.core.auth``) and every route's problem responses with the ``ProblemDetails`` schema
(``api.core.routing.problems``). ``/docs`` (Swagger UI) works offline: its JavaScript and
CSS are served by the app from the ``fastapi-offline`` package under ``/docs-assets``, never
from a CDN. ReDoc is served the same way at ``/redoc``, without web fonts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI

from api.core.clock import Clock
from api.core.docs import DOCS_ASSETS, install_docs, install_openapi
from api.core.logs import JsonFormatter, configure_logging
from api.core.metrics import Metrics
from api.core.middleware import Observe
from api.core.problems import install_handlers
from api.core.routing import ROUTES, install_method_table

__all__ = ["DOCS_ASSETS", "ROUTES", "JsonFormatter", "configure_logging", "create_app"]


def create_app(settings: Any = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: ``Settings()`` from the environment).

    Loads and compiles the policy (raises ``PolicyErrors`` if it is broken), applies the
    migrations and records the policy source. The service's clock is ``settings.clock``
    (``CREDITGATE_CLOCK``, refused in production mode) or ``clock`` (tests: any
    ``() -> datetime``, noted ``injected`` on records). Raises ``StoreUnavailable`` if the
    database does not answer."""
    from api.audit import routes as audit
    from api.core.service import Service
    from api.core.settings import Settings
    from api.customers import routes as customers
    from api.customers.exceptions import UnknownCustomer
    from api.decisions import routes as decisions
    from api.decisions.models import engine_path
    from api.decisions.writer import DecisionWriter
    from api.fx import routes as fx
    from api.keys.cache import KeyCache
    from api.ledger import routes as ledger
    from api.ops import routes as ops
    from api.orders import routes as orders
    from api.policies import routes as policies
    from api.policies.replayer import Replayer
    from api.store import Store
    from engine.evaluate import load

    settings = settings or Settings()
    configure_logging()
    compiled = load(str(settings.policy_path))
    policy = compiled.policy
    service_clock = Clock.of(clock) if clock is not None else settings.make_clock()
    store = Store(settings.database_url, clock=service_clock)
    store.upgrade()
    store.policies.save(policy)
    metrics = Metrics()
    metrics.policy.labels(policy.id, policy.version, policy.sha256).set(1)
    max_bytes = int(settings.max_request_bytes)
    key_cache = KeyCache(store.keys)
    store.keys.listeners.append(key_cache.forget)
    svc = Service(
        settings=settings,
        store=store,
        compiled=compiled,
        metrics=metrics,
        replayer=Replayer(store, compiled),
        writer=DecisionWriter(store.db, observe=metrics.observe_batch),
        max_bytes=max_bytes,
        import_bytes=int(getattr(settings, "max_import_bytes", 0) or max(max_bytes, 16 * 2**20)),
        clock=service_clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.writer.close()
        key_cache.close()

    app = FastAPI(
        lifespan=lifespan,
        # "/v1/policy/" is not "/v1/policy": a 404 problem, never a 307 to an http:// URL
        # answered before the key check
        redirect_slashes=False,
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
    app.state.key_cache = key_cache
    install_handlers(app, path_map=engine_path)
    app.add_exception_handler(UnknownCustomer, customers.on_unknown_customer)
    domains = (decisions, customers, ledger, orders, fx, audit, policies, ops)
    for module in domains:
        app.include_router(module.router)
    install_openapi(app)
    install_docs(app)
    install_method_table(app, [module.router for module in domains])  # 405's Allow header

    app.add_middleware(Observe, metrics=metrics)

    return app
