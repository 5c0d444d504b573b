"""The customers table: each customer's credit position as the ledger holds it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import Money, json_field, money_field, timestamp_field, unit_field

__all__ = ["Customer", "CustomerHistory"]


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    business_unit: str = unit_field()
    customer_id: str = Field(primary_key=True, max_length=200)
    currency: str = Field(max_length=3)
    credit_limit: Decimal = money_field()
    open_receivables: Decimal = money_field()
    open_orders: Decimal = money_field()
    days_past_due: int = Field(default=0)
    facts: dict[str, Any] = json_field()
    updated_at: datetime = timestamp_field()
    # Payments and credit notes beyond the open receivables (revision 0002): owed to the
    # customer, offset against the next invoice; never counted as extra credit.
    credit_balance: Decimal = Field(
        default=Decimal("0.00"), sa_column=sa.Column(Money(), nullable=False)
    )
    # Bumped by every change of the master data (PUT, PATCH, import; revision 0006): part of
    # the record's ETag (``api.customers.persistence.etag``).
    version: int = Field(
        default=1, sa_column=sa.Column(sa.BigInteger(), nullable=False, server_default="1")
    )


class CustomerHistory(SQLModel, table=True):
    """Every change of a customer's master data (PUT, PATCH, import; revision 0006),
    hash-chained like the decision log: ``seq`` (1, 2, ... no gaps, assigned under the
    chain lock), ``prev_hash``, ``record_hash``; written in the transaction of the change.
    ``changes``: the canonical JSON text of ``{field or "facts.<name>": {"old", "new"}}``."""

    __tablename__ = "customer_history"
    __table_args__ = (
        sa.Index("ix_customer_history_customer_id", "business_unit", "customer_id", "seq"),
    )

    business_unit: str = unit_field()
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    customer_id: str = Field(max_length=200)
    version: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    source: str = Field(max_length=16)
    changes: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    key_id: str | None = Field(default=None, max_length=64)
    role: str = Field(max_length=32)
    key_name: str = Field(default="", max_length=200)
    created_at: datetime = timestamp_field()
    clock: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    prev_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)
