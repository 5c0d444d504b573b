"""Query parameters shared by the routes: the check of unknown and repeated ones, and the
declarations and parsers of the filters the log reads share (the decision log, the ledger
events): a text filter (``text_filter``), a one-token filter (``TOKEN_PATTERN``) and
``from`` / ``to`` (``when_param``, parsed by ``when_from`` / ``when_to`` into the bounds
``query_bound`` puts on ``created_at``).

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

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic_core import PydanticCustomError

from api.core import chain
from api.core.problems import Problem
from api.core.schemas import DATE_OR_DATETIME_PATTERN, NO_NUL_PATTERN

__all__ = [
    "KNOWN_QUERY",
    "TOKEN_PATTERN",
    "check_query",
    "parse_when",
    "query_bound",
    "query_names",
    "text_filter",
    "when_from",
    "when_param",
    "when_to",
]

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


# -- the filters of the log reads -----------------------------------------------------------


def query_bound(value: date | datetime, *, end: bool) -> datetime:
    """A ``from`` (``end=False``, inclusive) or ``to`` (``end=True``, exclusive) bound on
    ``created_at`` as an aware UTC datetime. A plain date means its whole day: as ``to``, up
    to the start of the next day; ``to=9999-12-31`` is clamped to the last representable
    instant. Raises ``OverflowError`` for a date-time whose UTC time is outside years
    1..9999 (``0001-01-01T00:00:00+05:00``, ``9999-12-31T23:00:00-05:00``)."""
    if isinstance(value, datetime):
        return chain.as_utc(value)
    if end and value == date.max:
        return datetime.max.replace(tzinfo=UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time.min, tzinfo=UTC)


def parse_when(value: str | None, name: str) -> date | datetime | None:
    """``from`` / ``to`` query values: a date (``2026-11-29``, the whole day) or an ISO 8601
    date-time (``2026-11-29T10:00:00Z``; without an offset it is UTC). Raises
    ``PydanticCustomError`` (``invalid_value``; ``out_of_range`` for a date-time whose UTC
    time lies outside years 1..9999, e.g. ``0001-01-01T00:00:00+05:00``), so FastAPI reports
    it together with every other bad query parameter in one 422 (path ``query.<name>``)."""
    if value is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            when: date | datetime = date.fromisoformat(value)
        else:
            when = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "invalid_value",
            "expected a date (2026-11-29) or an ISO 8601 date-time (2026-11-29T10:00:00Z)",
        ) from None
    try:
        query_bound(when, end=name == "to")
    except OverflowError:
        raise PydanticCustomError(
            "out_of_range",
            f"{value} is outside the supported range (UTC 0001-01-01 to 9999-12-31)",
        ) from None
    return when


def when_from(value: str | None) -> date | datetime | None:
    return parse_when(value, "from")


def when_to(value: str | None) -> date | datetime | None:
    return parse_when(value, "to")


#: the from / to query parameters: the shapes documented (the server also takes the other
#: ISO 8601 spellings Python's datetime.fromisoformat reads, e.g. 20261129)
_WHEN = {"pattern": DATE_OR_DATETIME_PATTERN}


#: a rule id or reason code: one token (the log keeps them space-separated): no control
#: character and no Unicode white space, spelt out so that the OpenAPI document's regex,
#: pydantic's (Rust) and a client's agree (their \s differ, e.g. on U+0085)
TOKEN_PATTERN = (
    r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
)


def text_filter(
    description: str, example: str | None = None, *, pattern: str = NO_NUL_PATTERN
) -> Any:
    """A text filter: 1 to 200 characters (an empty value is refused, never "match none")."""
    examples = {"example": {"value": example}} if example is not None else None
    return Query(
        min_length=1, max_length=200, pattern=pattern, description=description,
        openapi_examples=examples,
    )


def when_param(alias: str, description: str, example: str) -> Any:
    """The ``from`` / ``to`` query parameter (parsed by ``when_from`` / ``when_to``)."""
    return Query(
        alias=alias, description=description, openapi_examples={"date": {"value": example}},
        json_schema_extra=_WHEN,
    )


#: a list page's ``cursor`` query parameter (the ``next_cursor`` of the previous page) and
#: its ``limit`` (1 to 500 records, default 50 where it is declared), shared by every list
Cursor = Annotated[
    int | None, Query(ge=0, le=2**62, description="next_cursor of the previous page")
]
PageLimit = Annotated[int, Query(ge=1, le=500)]
