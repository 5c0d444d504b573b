"""Response models of the order view (``GET /v1/orders/{order_id}``), for the OpenAPI
document; what the fields mean: ``api.orders.lifecycle``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.core.schemas import DateTimeText, DecimalText, Masked
from api.decisions.models import Kind, Outcome, PolicyRef
from api.ledger.models import EventEffect

__all__ = ["DecisionEntry", "LedgerEntry", "OrderStatus", "OrderView"]

OrderStatus = Literal[
    "approved", "referred", "declined", "cancelled", "partly_invoiced", "invoiced", "closed"
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Who(_Answer):
    caller: str = Field(description="Who did it, as recorded: `role:key_id` of the API key")
    role: str | None = Field(description="The role part of `caller` (null if not `role:key_id`)")
    key_id: str | None = Field(
        description="The key id part of `caller` (`creditgate keys list` names the key)"
    )


class DecisionEntry(_Who):
    """A decision-log record of the order."""

    entry: Literal["decision"]
    created_at: DateTimeText
    seq: int = Field(description="The record's place in the decision log's hash chain")
    record_id: str = Field(description="The log record's own id (`GET /v1/decisions/{id}`)")
    decision_id: str = Field(
        description="The decision answered: a `repeat` answers the decision in force, so "
        "its `decision_id` is that decision's, not its own `record_id`"
    )
    kind: Kind
    replaces: str | None = Field(
        description="An `amended` record: the decision id it replaced; null otherwise"
    )
    outcome: Outcome
    policy: PolicyRef


class LedgerEntry(_Who):
    """A ledger event of the order's customer that names the order."""

    entry: Literal["ledger_event"]
    created_at: DateTimeText
    seq: int = Field(description="The event's place in the ledger's hash chain")
    event_id: str
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    amount: DecimalText | None
    currency: str | None
    effect: EventEffect


TimelineEntry = Annotated[DecisionEntry | LedgerEntry, Field(discriminator="entry")]


class OrderView(_Answer):
    """An order's status, its figures in the customer's (= the policy's) currency and its
    timeline (README, "Order lifecycle")."""

    order_id: str
    customer_id: str
    status: OrderStatus = Field(
        description="`cancelled`; else, with an approve in force, `invoiced` / "
        "`partly_invoiced` / `approved` by the approved amount's invoices; else `invoiced` if "
        "invoiced (released outside Creditgate); else `referred` / `declined`. `closed` is "
        "reserved (settled invoices) and not emitted yet"
    )
    currency: str | None = Field(description="The customer's ledger currency")
    decision_id: str | None = Field(
        description="The decision in force (the latest new or amended); null if never decided"
    )
    outcome: Outcome | None
    approved_amount: DecimalText | Masked | None = Field(
        description="The approved (reserved) amount; null without an approve in force"
    )
    open_reservation: DecimalText | Masked | None = Field(
        description="The part of the approved amount still reserved (not invoiced, not "
        "cancelled); null without an approve in force"
    )
    invoiced_amount: DecimalText = Field(description="The sum of the order's invoices")
    unreserved_amount: DecimalText = Field(
        description="The part of the invoices no reservation covers (new exposure: beyond "
        "the approved amount, after a cancel, or without an approve); an invoice posted "
        "before the approval is covered by it (the order is counted once)"
    )
    timeline: list[TimelineEntry] = Field(
        description="Decisions and ledger events, oldest first: each chain in its `seq` "
        "order, the two interleaved by `created_at` (a decision first at the same instant). "
        "`entry` says what each is; later entries (human actions) add kinds of their own"
    )
