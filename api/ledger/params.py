"""Query parameters of the ledger events' reads: ``EventFilters``, the filters
``GET /v1/ledger-events`` and its export share (one declaration, with the decision log's
text and ``from`` / ``to`` declarations from ``api.core.params``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator

from api.core import examples as ex
from api.core.params import text_filter, when_from, when_param, when_to

EventType = Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]


@dataclass
class EventFilters:
    """The filters of ``GET /v1/ledger-events`` and ``GET /v1/ledger-events/export`` (a
    FastAPI dependency: each field is a query parameter). Every filter given must hold
    (AND), each exact and case-sensitive; ``as_kwargs`` gives them to ``Ledger.search`` /
    ``iterate``."""

    customer_id: Annotated[
        str | None, text_filter("Only this customer's events", ex.CUSTOMER_ID)
    ] = None
    order_id: Annotated[
        str | None,
        text_filter("Only the events naming this order id (an invoice or cancel of it, a "
                    "payment or credit note allocated to it)", ex.ORDER_ID),
    ] = None
    event_type: Annotated[
        EventType | None,
        Query(alias="type", description="Only events of this type"),
    ] = None
    event_id: Annotated[
        str | None,
        text_filter("The event with this id (event ids are unique in the business unit: "
                    "at most one)", "PAY-2026-0001"),
    ] = None
    date_from: Annotated[
        str | None,
        when_param("from", "Recorded from this date (YYYY-MM-DD) or ISO 8601 date-time "
                   "(inclusive; no offset: UTC)", "2026-11-01"),
        AfterValidator(when_from),
    ] = None
    date_to: Annotated[
        str | None,
        when_param("to", "Recorded up to this date (YYYY-MM-DD, the whole day) or ISO 8601 "
                   "date-time (exclusive; no offset: UTC)", "2026-11-30"),
        AfterValidator(when_to),
    ] = None

    def as_kwargs(self) -> dict[str, Any]:
        """The filters given, as keyword arguments of ``Ledger.search`` / ``iterate``
        (``date_from`` / ``date_to`` already parsed and range-checked)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
