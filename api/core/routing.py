"""Who may call which route: the table every domain's router uses (``api.<domain>.routes``).

``ROUTES`` lists every route that needs a key with the roles it admits (``admin`` always);
``caller(method, path)`` is the matching FastAPI dependency. ``problems(method, path)`` is
the ``responses=`` of the route's decorator: the problem statuses it can answer (401, 403 and
503 for every route with a key, plus those in ``PROBLEM_STATUSES``), each an
``application/problem+json`` ``ProblemDetails`` in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from api.core.auth import require
from api.core.problems import PROBLEM_MEDIA_TYPE

__all__ = ["PROBLEM_STATUSES", "ROUTES", "caller", "problem_responses", "problems"]


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


#: what each problem status means, for the OpenAPI document
PROBLEM_DESCRIPTIONS: dict[int, str] = {
    401: "No API key, or an unknown or revoked one (`unauthorized`)",
    403: "The key's role may not do this (`forbidden`)",
    404: "Unknown customer or decision (`unknown_customer`, `unknown_decision`)",
    409: "Conflicts with what is recorded (`conflict`: `order_conflict`, `ledger_conflict`)",
    413: "The request body is too large (`request_too_large`)",
    415: "The request body's media type is not accepted (`unsupported_media_type`)",
    422: "The request is not valid (`invalid_request`, `invalid_json`, `fx_rate_missing`); "
    "every problem in `errors`",
    500: "No decision was made (`no_decision`, `internal_error`): treat the order as not approved",
    503: "The database or engine is unavailable (`database_unavailable`, `no_decision`, "
    "`not_ready`); nothing was recorded; retry later",
}

#: problem statuses of each route besides 401, 403 and 503 (every route with a key)
PROBLEM_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/v1/decisions"): (404, 409, 413, 415, 422, 500),
    ("GET", "/v1/decisions"): (422,),
    ("GET", "/v1/decisions/export"): (422,),
    ("GET", "/v1/decisions/{decision_id}"): (404, 422),
    ("GET", "/v1/decisions/{decision_id}/replay"): (404, 409, 422, 500),
    ("PUT", "/v1/customers/{customer_id}"): (413, 415, 422),
    ("GET", "/v1/customers/{customer_id}"): (404, 422),
    ("POST", "/v1/customers/{customer_id}/events"): (404, 409, 413, 415, 422),
    ("POST", "/v1/customers/import"): (413, 415, 422),
    ("PUT", "/v1/fx-rates"): (413, 415, 422),
    ("GET", "/v1/audit/verify"): (),
    ("GET", "/v1/policy"): (),
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries: each status an ``application/problem+json`` problem (the
    ``ProblemDetails`` schema is added to the document's components by ``api.app``)."""
    return {
        status: {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
            },
        }
        for status in sorted(statuses)
    }


def problems(method: str, path: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route with a key (``KeyError`` for one not in ``ROUTES``)."""
    roles(method, path)
    return problem_responses(401, 403, 503, *PROBLEM_STATUSES[(method, path)])
