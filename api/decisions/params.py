"""Query parameters of the decision log's reads: ``DecisionFilters``, the filters the list and
the export share (one declaration; the text, token and ``from`` / ``to`` declarations are
``api.core.params``', shared with the ledger events' reads)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator

from api.core import examples as ex
from api.core.params import TOKEN_PATTERN, when_from, when_to
from api.core.params import text_filter as _text
from api.core.params import when_param as _when


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
