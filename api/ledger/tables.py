"""The ledger's tables: reservations (approved orders' open amounts) and the hash-chained
ledger events (order cancelled, invoice issued, payment received, credit note)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import Money, json_field, money_field, timestamp_field, unit_field

__all__ = ["LedgerEvent", "Reservation"]


class Reservation(SQLModel, table=True):
    __tablename__ = "reservations"
    __table_args__ = (sa.Index("ix_reservations_customer_id", "business_unit", "customer_id"),)

    business_unit: str = unit_field()
    order_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(max_length=200)
    amount: Decimal = money_field()
    decision_id: str = Field(max_length=64)
    content_hash: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16)
    updated_at: datetime = timestamp_field()
    # Part of ``amount`` already invoiced (revision 0002); open part = amount - invoiced.
    invoiced: Decimal = Field(default=Decimal("0.00"), sa_column=sa.Column(Money(), nullable=False))


class LedgerEvent(SQLModel, table=True):
    """Append-only ledger events, idempotent by the caller's ``event_id``. Hash-chained
    like the decision log (revision 0003): ``seq`` (1, 2, ... no gaps, assigned under the
    ledger chain lock), ``prev_hash``, ``record_hash``; existing events were chained in
    ``created_at``, ``event_id`` order by the migration."""

    __tablename__ = "ledger_events"
    __table_args__ = (
        sa.UniqueConstraint("business_unit", "seq", name="uq_ledger_events_unit_seq"),
        sa.Index("ix_ledger_events_customer_id", "business_unit", "customer_id"),
        # the order-ownership checks look events up by order id (revision 0004)
        sa.Index("ix_ledger_events_order_id", "business_unit", "order_id"),
    )

    business_unit: str = unit_field()
    event_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(max_length=200)
    type: str = Field(max_length=32)
    order_id: str | None = Field(default=None, max_length=200)
    amount: Decimal | None = Field(default=None, sa_column=sa.Column(Money(), nullable=True))
    currency: str | None = Field(default=None, max_length=3)
    content_hash: str = Field(max_length=64)
    effect: dict[str, Any] = json_field()
    caller: str = Field(max_length=200)
    created_at: datetime = timestamp_field()
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    prev_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)
    # The clock the event was recorded under when it was not the system clock (revision
    # 0005; ``api.core.clock``), hashed with the event; NULL otherwise.
    clock: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
