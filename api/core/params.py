"""Query-parameter checks shared by the routes.

``KNOWN_QUERY`` is a dependency every keyed read declares after its key check: a query
parameter the route does not declare is refused (422 ``invalid_request``, each at
``query.<name>`` with code ``unknown_parameter``, naming what the route accepts), and so is
a declared one sent more than once (``duplicate_parameter``: ``format=csv&format=jsonl``
never silently takes the last). A misspelt filter (``?custmer_id=C1``) would otherwise
answer every record, which a compliance export must never do. The names a route accepts
are read from its FastAPI dependant (the query parameters of the route and of its
dependencies, by alias), once per route.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from api.core.problems import Problem

__all__ = ["KNOWN_QUERY", "check_query", "query_names"]

_NAMES_ATTR = "_creditgate_query_names"


def query_names(route: Any) -> frozenset[str]:
    """The query parameter names (aliases) ``route`` declares, its dependencies' included."""
    names = getattr(route, _NAMES_ATTR, None)
    if names is None:
        found: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            found.update(field.alias for field in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = frozenset(found)
        setattr(route, _NAMES_ATTR, names)
    return names


def check_query(request: Request) -> None:
    """Refuse unknown and repeated query parameters (module docstring)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):  # pragma: no cover - APIRoute only
        return
    accepted = query_names(route)
    expected = ", ".join(sorted(accepted)) if accepted else "none"
    params = request.query_params
    errors = []
    for name in dict.fromkeys(params.keys()):  # each name once, in the order sent
        if name not in accepted:
            errors.append({
                "path": f"query.{name[:200]}",
                "code": "unknown_parameter",
                "message": f"{name[:60]!r} is not a query parameter of this route "
                f"(it accepts: {expected})",
            })
        elif (n := len(values := params.getlist(name))) > 1:
            errors.append({
                "path": f"query.{name}",
                "code": "duplicate_parameter",
                "message": f"{name!r} is given {n} times "
                f"({', '.join(repr(v[:60]) for v in values[:5])}{', ...' if n > 5 else ''}); "
                "give it once",
            })
    if errors:
        n = len(errors)
        raise Problem(
            "invalid_request",
            f"{n} query parameter{'s' if n != 1 else ''} unknown or given more than once",
            errors=errors,
        )


KNOWN_QUERY = Depends(check_query)
