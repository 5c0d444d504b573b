"""Request models of the ledger events (``POST /v1/customers/{id}/events``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.core.bodies import Body, Currency, Identifier, Money


class EventBody(Body):
    """A ledger event. Money as a string (``"1200.00"``), in the customer's currency."""

    event_id: Identifier = Field(description="Caller's unique id of the event (idempotency)")
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    # Optional: left out when the type does not need them; an explicit null is refused
    # (null_value), as everywhere in the API.
    order_id: Identifier = None  # type: ignore[assignment]
    amount: Money = None  # type: ignore[assignment]
    currency: Currency = None  # type: ignore[assignment]
