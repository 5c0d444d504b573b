"""Who may call which route: the table every domain's router uses (``api.<domain>.routes``).

``ROUTES`` lists every route that needs a key with the roles it admits (``admin`` always);
``caller(method, path)`` is the matching FastAPI dependency. ``problems(method, path)`` is
the ``responses=`` of the route's decorator: the problem statuses it can answer (400, 401, 403 and
503 for every route with a key, plus those in ``PROBLEM_STATUSES``), each an
``application/problem+json`` ``ProblemDetails`` in the OpenAPI document.

``allowed_methods(app, path)`` is the ``Allow`` header of a 405: every method of every route
whose path matches (``/v1/decisions``: GET, POST), never just the first route's.
``RESERVED_SEGMENTS`` are path segments that are never a value of a path parameter:
``/v1/customers/import`` is the (deprecated) customer import, never a customer named
"import" (``not_reserved`` refuses GET and PUT on it with 405, ``Allow: POST``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import Depends, Request

from api.core.auth import require
from api.core.problems import PROBLEM_MEDIA_TYPE, Problem

__all__ = [
    "authorize",
    "PROBLEM_STATUSES",
    "RESERVED_SEGMENTS",
    "ROUTES",
    "allowed_methods",
    "caller",
    "install_method_table",
    "not_reserved",
    "problem_responses",
    "problems",
]


def _route_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(method, path, roles)`` of every route that needs a key (for docs and tests)."""
    return [
        ("POST", "/v1/decisions", ("order_entry",)),
        ("GET", "/v1/decisions", ("order_entry", "reviewer", "compliance")),
        ("GET", "/v1/decisions/export", ("compliance",)),
        ("GET", "/v1/decisions/{decision_id}", ("order_entry", "reviewer", "compliance")),
        ("GET", "/v1/decisions/{decision_id}/replay", ("compliance",)),
        ("PUT", "/v1/customers/{customer_id}", ()),
        ("PATCH", "/v1/customers/{customer_id}", ()),
        ("GET", "/v1/customers/{customer_id}/history", ("compliance", "reviewer")),
        ("GET", "/v1/customers/{customer_id}", ("order_entry", "finance")),
        ("POST", "/v1/customers/{customer_id}/events", ("order_entry", "finance")),
        ("POST", "/v1/customer-imports", ()),
        ("POST", "/v1/customers/import", ()),  # deprecated alias of /v1/customer-imports
        ("PUT", "/v1/fx-rates", ()),
        ("GET", "/v1/audit/verify", ("compliance",)),
        ("GET", "/v1/policy", ("policy_owner", "compliance", "reviewer")),
        ("GET", "/v1/orders/{order_id}", ("order_entry", "reviewer", "compliance")),
        # the ledger's events: who lists decisions, and finance (it posts the payments);
        # the export as the decision log's (compliance), and finance
        ("GET", "/v1/ledger-events", ("order_entry", "finance", "reviewer", "compliance")),
        ("GET", "/v1/ledger-events/export", ("finance", "compliance")),
    ]


ROUTES = _route_table()


def roles(method: str, path: str) -> tuple[str, ...]:
    for m, p, roles in ROUTES:
        if (m, p) == (method, path):
            return roles
    raise KeyError((method, path))


def authorize(method: str, path: str) -> Any:
    """The key check of (method, path) as a plain async function of the request (what
    ``caller`` wraps in ``Depends``), for a route that checks the key itself: the decision
    route, where FastAPI's dependency machinery costs more than the check."""
    return require(*roles(method, path))


def caller(method: str, path: str) -> Any:
    """``Depends(require(roles of (method, path)))``; raises ``KeyError`` for a route not in
    ``ROUTES`` (so a new route cannot silently go without a role check)."""
    return Depends(require(*roles(method, path)))


#: what each problem status means, for the OpenAPI document
PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "A malformed request (`bad_request`: a NUL character in the path or query; "
    "`invalid_request`: a Content-Length that is not a number)",
    401: "No API key, or an unknown or revoked one (`unauthorized`)",
    403: "The key's role may not do this (`forbidden`)",
    404: "Unknown customer, decision or order (`unknown_customer`, `unknown_decision`, "
    "`unknown_order`), or no such resource (`not_found`)",
    405: "The customer id `import` is reserved: `/v1/customers/import` is the customer "
    "import's old path (`method_not_allowed`, `Allow: POST`)",
    409: "Conflicts with what is recorded (`conflict`: `order_conflict`, `ledger_conflict`)",
    412: "A precondition does not hold (`precondition_failed`): the record changed since its "
    "ETag was read (`If-Match`), or exists already (`If-None-Match: *`); nothing was changed",
    413: "The request body is too large (`request_too_large`)",
    415: "The request body's media type is not accepted (`unsupported_media_type`)",
    428: "The request must be conditional (`precondition_required`): a PUT needs `If-Match` "
    "with the ETag of the record read, or `If-None-Match: *` to create one",
    422: "The request is not valid (`invalid_request`, `invalid_json`, `fx_rate_missing`); "
    "every problem in `errors`",
    500: "No decision was made (`no_decision`, `internal_error`): treat the order as not "
    "approved; on a read: a stored record cannot be read (`unreadable_record`)",
    503: "The database or engine is unavailable (`database_unavailable`, `no_decision`, "
    "`not_ready`); nothing was recorded; retry later",
}

#: problem statuses of each route besides 400, 401, 403 and 503 (every route with a key)
PROBLEM_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/v1/decisions"): (404, 409, 413, 415, 422, 500),
    ("GET", "/v1/decisions"): (422,),
    ("GET", "/v1/decisions/export"): (422,),
    ("GET", "/v1/decisions/{decision_id}"): (404, 422),
    ("GET", "/v1/decisions/{decision_id}/replay"): (404, 409, 422, 500),
    ("PUT", "/v1/customers/{customer_id}"): (405, 412, 413, 415, 422, 428),
    ("PATCH", "/v1/customers/{customer_id}"): (404, 405, 412, 413, 415, 422),
    ("GET", "/v1/customers/{customer_id}/history"): (404, 405, 422, 500),
    ("GET", "/v1/customers/{customer_id}"): (404, 405, 422),
    ("POST", "/v1/customers/{customer_id}/events"): (404, 409, 413, 415, 422),
    ("POST", "/v1/customer-imports"): (413, 415, 422),
    ("POST", "/v1/customers/import"): (413, 415, 422),
    ("PUT", "/v1/fx-rates"): (413, 415, 422),
    ("GET", "/v1/audit/verify"): (),
    ("GET", "/v1/policy"): (),
    ("GET", "/v1/orders/{order_id}"): (404, 422),
    ("GET", "/v1/ledger-events"): (422, 500),
    ("GET", "/v1/ledger-events/export"): (422, 500),
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
    return problem_responses(400, 401, 403, 503, *PROBLEM_STATUSES[(method, path)])


# -- 405 and the Allow header --------------------------------------------------------------

#: path parameter -> segments that are never its value (a route of their own owns them)
RESERVED_SEGMENTS: dict[str, frozenset[str]] = {"customer_id": frozenset({"import"})}

#: the methods a 405's ``Allow`` header may list, in this order
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install_method_table(app: Any, routers: Iterable[Any]) -> None:
    """Record, for ``allowed_methods``, every route of ``routers`` (the domain routers the
    app includes, without prefixes) and of the app itself: ``(path regex, methods)``; a
    mounted app (the docs' files) answers GET and HEAD."""
    from starlette.routing import Mount

    table: list[tuple[re.Pattern[str], frozenset[str]]] = []
    for route in [*app.router.routes, *(r for router in routers for r in router.routes)]:
        if isinstance(route, Mount):
            table.append((route.path_regex, frozenset({"GET", "HEAD"})))
        elif getattr(route, "path_regex", None) is not None and getattr(route, "methods", None):
            table.append((route.path_regex, frozenset(route.methods)))
    app.state.method_table = table


def app_path(scope: Any) -> str:
    """The request's path below the app's root path (also inside a mounted app, whose
    scope's ``root_path`` includes the mount point)."""
    path = scope.get("path", "")
    root = scope.get("app_root_path", scope.get("root_path", "")) or ""
    return path[len(root) :] if root and path.startswith(root) else path


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route accepts at ``path`` (the union over all routes whose path
    matches; a reserved segment such as ``/v1/customers/import`` matches no parameter)."""
    methods: set[str] = set()
    for regex, route_methods in getattr(app.state, "method_table", ()):
        match = regex.match(path)
        if match is None:
            continue
        params = match.groupdict()
        if any(params.get(name) in values for name, values in RESERVED_SEGMENTS.items()):
            continue
        methods |= route_methods
    return [m for m in _METHODS if m in methods] + sorted(methods - set(_METHODS))


def not_reserved(request: Request) -> None:
    """A dependency of the routes with a ``{customer_id}`` (listed before the key check):
    a reserved segment is not a customer id: 405 with the methods its own route accepts
    (``GET /v1/customers/import`` → ``Allow: POST``), never a customer named "import"."""
    params = request.path_params
    for name, values in RESERVED_SEGMENTS.items():
        if params.get(name) in values:
            allow = ", ".join(allowed_methods(request.app, app_path(request.scope)))
            raise Problem(
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}: "
                f"{params[name]!r} is not a {name.replace('_', ' ')} but a path of its own "
                f"(it accepts {allow})",
                headers={"Allow": allow},
            )
