"""Query parameters of the decision log's reads: ``from`` / ``to`` (a date or a date-time)
and the parameter lists of the list and export routes."""

from __future__ import annotations

import re
from datetime import date, datetime

from pydantic_core import PydanticCustomError

from api.decisions.persistence import query_bound


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


LIST_PARAMS = (
    "customer_id",
    "outcome",
    "from",
    "to",
    "rule_id",
    "policy_version",
    "cursor",
    "limit",
)
EXPORT_PARAMS = ("format", "customer_id", "from", "to")
