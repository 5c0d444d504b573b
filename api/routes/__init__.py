"""The HTTP routes, one module per resource: ``decisions``, ``customers`` (with ledger
events and the CSV import), ``admin`` (exchange rates, audit, policy) and ``ops`` (health,
readiness, metrics; no key).

``ROUTES`` lists every route that needs a key with the roles it admits (``admin`` always);
``caller(method, path)`` is the matching FastAPI dependency."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from api.auth import require

__all__ = ["ROUTES", "caller"]


def _route_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(method, path, roles)`` of every route that needs a key (for docs and tests)."""
    return [
        ("POST", "/v1/decisions", ("order_entry",)),
        ("GET", "/v1/decisions", ("reviewer", "compliance")),
        ("GET", "/v1/decisions/export", ("compliance",)),
        ("GET", "/v1/decisions/{decision_id}", ("reviewer", "compliance")),
        ("GET", "/v1/decisions/{decision_id}/replay", ("compliance",)),
        ("PUT", "/v1/customers/{customer_id}", ()),
        ("GET", "/v1/customers/{customer_id}", ("order_entry",)),
        ("POST", "/v1/customers/{customer_id}/events", ("order_entry",)),
        ("POST", "/v1/customers/import", ()),
        ("PUT", "/v1/fx-rates", ()),
        ("GET", "/v1/audit/verify", ("compliance",)),
        ("GET", "/v1/policy", ("policy_owner", "compliance", "reviewer")),
    ]


ROUTES = _route_table()


def roles(method: str, path: str) -> tuple[str, ...]:
    for m, p, roles in ROUTES:
        if (m, p) == (method, path):
            return roles
    raise KeyError((method, path))


def caller(method: str, path: str) -> Any:
    """``Depends(require(roles of (method, path)))``; raises ``KeyError`` for a route not in
    ``ROUTES`` (so a new route cannot silently go without a role check)."""
    return Depends(require(*roles(method, path)))
