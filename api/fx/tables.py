"""Exchange rates into the policy currency, by date."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import Rate, timestamp_field, unit_field

__all__ = ["FxRate"]


class FxRate(SQLModel, table=True):
    """``rate`` = units of ``base`` for one unit of ``currency`` on ``as_of`` (e.g. base
    EUR, currency USD, rate 0.92: 1 USD = 0.92 EUR)."""

    __tablename__ = "fx_rates"

    business_unit: str = unit_field()
    base: str = Field(primary_key=True, max_length=3)
    currency: str = Field(primary_key=True, max_length=3)
    as_of: date = Field(sa_column=sa.Column(sa.Date(), primary_key=True))
    rate: Decimal = Field(sa_column=sa.Column(Rate(), nullable=False))
    updated_at: datetime = timestamp_field()
