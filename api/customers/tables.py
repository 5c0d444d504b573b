"""The customers table: each customer's credit position as the ledger holds it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import Money, json_field, money_field, timestamp_field, unit_field

__all__ = ["Customer"]


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
