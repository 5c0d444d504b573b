"""Query parameters of the decision log's reads: ``from`` / ``to`` (a date or a date-time)
and ``DecisionFilters``, the filters the list and the export share (one declaration)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from api.core import examples as ex
from api.core.schemas import DATE_OR_DATETIME_PATTERN, NO_NUL_PATTERN
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


#: the from / to query parameters: the shapes documented (the server also takes the other
#: ISO 8601 spellings Python's datetime.fromisoformat reads, e.g. 20261129)
_WHEN = {"pattern": DATE_OR_DATETIME_PATTERN}


#: a rule id or reason code: one token (the log keeps them space-separated): no control
#: character and no Unicode white space, spelt out so that the OpenAPI document's regex,
#: pydantic's (Rust) and a client's agree (their \s differ, e.g. on U+0085)
TOKEN_PATTERN = (
    r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
)


def _text(description: str, example: str | None = None, *, pattern: str = NO_NUL_PATTERN) -> Any:
    """A text filter: 1 to 200 characters (an empty value is refused, never "match none")."""
    examples = {"example": {"value": example}} if example is not None else None
    return Query(
        min_length=1, max_length=200, pattern=pattern, description=description,
        openapi_examples=examples,
    )


def _when(alias: str, description: str, example: str) -> Any:
    """The ``from`` / ``to`` query parameter (parsed by ``when_from`` / ``when_to``)."""
    return Query(
        alias=alias, description=description, openapi_examples={"date": {"value": example}},
        json_schema_extra=_WHEN,
    )


@dataclass
class DecisionFilters:
    """The filters of ``GET /v1/decisions`` and ``GET /v1/decisions/export`` (a FastAPI
    dependency: each field is a query parameter). Every filter given must hold (AND);
    ``as_kwargs`` gives them to ``Decisions.search`` / ``iterate``."""

    customer_id: Annotated[str | None, _text("Only this customer's decisions", ex.CUSTOMER_ID)] = (
        None
    )
    order_id: Annotated[str | None, _text("Only this order's decisions (every kind)")] = None
    outcome: Literal["approve", "refer", "decline"] | None = None
    kind: Annotated[
        Literal["new", "repeat", "amended"] | None,
        Query(description="new: first decision of the order; repeat: the same request again "
              "(answered with the original); amended: changed content, decided again"),
    ] = None
    reason_code: Annotated[
        str | None,
        _text("Only decisions giving this reason code (exact, case-sensitive)", "REF_OVER_LIMIT",
              pattern=TOKEN_PATTERN),
    ] = None
    rule_id: Annotated[
        str | None,
        _text("Only decisions in which this rule matched (exact, case-sensitive)",
              pattern=TOKEN_PATTERN),
    ] = None
    policy_version: Annotated[
        str | None,
        _text("Policy version, or its sha256 (the whole, or a prefix of at least 12 hex digits "
              "as `creditgate validate` prints it; `sha256:` in front is allowed)"),
    ] = None
    date_from: Annotated[
        str | None,
        _when("from", "From this date (YYYY-MM-DD) or ISO 8601 date-time (inclusive; "
              "no offset: UTC)", "2026-11-01"),
        AfterValidator(when_from),
    ] = None
    date_to: Annotated[
        str | None,
        _when("to", "Up to this date (YYYY-MM-DD, the whole day) or ISO 8601 date-time "
              "(exclusive; no offset: UTC)", "2026-11-30"),
        AfterValidator(when_to),
    ] = None

    def as_kwargs(self) -> dict[str, Any]:
        """The filters given, as keyword arguments of ``Decisions.search`` / ``iterate``
        (``date_from`` / ``date_to`` already parsed and range-checked)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
