"""Request models of the ledger events (``POST /v1/customers/{id}/events``): ``EventBody``
validates the body (the rules that depend on the type, and on the recorded ledger, are
checked by ``api.ledger.persistence.Ledger.apply_event``); ``LedgerEventDoc`` describes the
same body for the OpenAPI document, one variant per ``type`` with the fields it requires
and forbids. ``EventResult`` is the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

from api.core.bodies import Body, Currency, Identifier, Money
from api.core.schemas import POSITIVE_MONEY_SCHEMA, DateTimeText, DecimalText, Sha256Hex
from api.customers.models import CustomerPosition

#: Separation of duties: the role that posts each event type (``admin`` posts any). The
#: order documents come from order entry; whatever reduces receivables, and so frees
#: credit, comes from finance, so the caller the credit check is meant to check cannot
#: make room for its own orders.
POSTED_BY: dict[str, str] = {
    "order_cancelled": "order_entry",
    "invoice_issued": "order_entry",
    "payment_received": "finance",
    "credit_note": "finance",
}


class EventBody(Body):
    """A ledger event. Money as a string (``"1200.00"``), in the customer's currency."""

    event_id: Identifier = Field(description="Caller's unique id of the event (idempotency)")
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    # Optional: left out when the type does not need them; an explicit null is refused
    # (null_value), as everywhere in the API.
    order_id: Identifier = None  # type: ignore[assignment]
    amount: Money = None  # type: ignore[assignment]
    currency: Currency = None  # type: ignore[assignment]


# -- the body by type, for the OpenAPI document -------------------------------------------

PositiveMoney = Annotated[Money, WithJsonSchema(POSITIVE_MONEY_SCHEMA)]
_EVENT_ID = "The caller's unique id of the event: the same id and content again is answered " \
    "with the recorded result (replayed), other content is a conflict (409). The only " \
    "idempotency key: for an invoice, send the ERP's invoice number"
_AMOUNT = "Above 0 (the type gives the direction), at most the decimals of the currency"
_CURRENCY = "The customer's ledger currency (the policy currency); no conversion"


class OrderCancelled(Body):
    """Releases the open part of the order's reservation. No amount, no currency."""

    event_id: Identifier = Field(description=_EVENT_ID)
    type: Literal["order_cancelled"]
    order_id: Identifier = Field(description="An order approved for this customer")


class InvoiceIssued(Body):
    """Adds the amount to the open receivables and takes the part the order's open
    reservation covers off the open orders (the rest is new exposure: ``unreserved``; an
    approval decided later covers it: the order is counted once)."""

    event_id: Identifier = Field(description=_EVENT_ID)
    type: Literal["invoice_issued"]
    order_id: Identifier
    amount: PositiveMoney = Field(description=_AMOUNT)
    currency: Currency = Field(description=_CURRENCY)


class PaymentReceived(Body):
    """Reduces the open receivables (an excess becomes a credit balance); never refused."""

    event_id: Identifier = Field(description=_EVENT_ID)
    type: Literal["payment_received"]
    amount: PositiveMoney = Field(description=_AMOUNT)
    currency: Currency = Field(description=_CURRENCY)
    order_id: Identifier = Field(  # type: ignore[assignment]
        default=None, description="Optional: recorded only"
    )


class CreditNote(Body):
    """Reduces the open receivables like a payment (an excess becomes a credit balance)."""

    event_id: Identifier = Field(description=_EVENT_ID)
    type: Literal["credit_note"]
    amount: PositiveMoney = Field(description=_AMOUNT)
    currency: Currency = Field(description=_CURRENCY)
    order_id: Identifier = Field(  # type: ignore[assignment]
        default=None, description="Optional: recorded only"
    )


LedgerEventDoc: TypeAdapter = TypeAdapter(
    Annotated[
        OrderCancelled | InvoiceIssued | PaymentReceived | CreditNote,
        Field(discriminator="type"),
    ]
)


# -- the answer ------------------------------------------------------------------------------


class EventEffect(BaseModel):
    """How the event moved the customer's position (signed amounts)."""

    model_config = ConfigDict(extra="allow")

    open_orders: DecimalText
    open_receivables: DecimalText
    credit_balance: DecimalText
    unreserved: DecimalText = Field(
        default=None,  # type: ignore[assignment]
        description="invoice_issued only, when some of the amount was not covered by an open "
        "reservation (new exposure)",
    )


class EventResult(BaseModel):
    """A recorded ledger event, its effect, and the customer's position after it."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    customer_id: str
    order_id: str | None
    amount: DecimalText | None
    currency: str | None
    effect: EventEffect
    caller: str = Field(description="role:key id of the API key that recorded it")
    recorded_at: DateTimeText
    replayed: bool = Field(
        description="true: this event id was recorded before with the same content; this is "
        "that result and nothing changed now"
    )
    customer: CustomerPosition


# -- the reads of the ledger's chain (GET /v1/ledger-events, its export) ----------------------


class LedgerEventRecord(BaseModel):
    """A recorded ledger event as the reads show it (``GET /v1/ledger-events``, the export):
    the hash-chained record (chain `ledger`), nothing masked (the ledger's own movements)."""

    model_config = ConfigDict(extra="allow")

    seq: int = Field(description="Position in the ledger's hash chain (1, 2, ... without gaps)")
    event_id: str = Field(description="The caller's id of the event (unique in the business unit)")
    customer_id: str
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    order_id: str | None
    amount: DecimalText | None = Field(description="null for order_cancelled")
    currency: str | None
    content_hash: Sha256Hex = Field(description="sha256 of the event as sent (idempotency)")
    effect: EventEffect
    caller: str = Field(description="role:key id of the API key that recorded it")
    created_at: DateTimeText = Field(description="When it was recorded (the service clock)")
    prev_hash: Sha256Hex
    record_hash: Sha256Hex
    business_unit: str
    clock: str = Field(
        default=None,  # type: ignore[assignment]
        description="Only for an event recorded under a moved clock (tests): how it was moved",
    )


class LedgerEventPage(BaseModel):
    """One page of the ledger events, newest first."""

    model_config = ConfigDict(extra="allow")

    items: list[LedgerEventRecord]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
