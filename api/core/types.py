"""Column types and column helpers shared by every domain's tables (SQLModel).

Money columns are ``Money``: ``Numeric(20, 2)`` on PostgreSQL; on SQLite (which has no
exact decimal type and would go through binary floats) the exact decimal text. Python
always sees ``Decimal``. JSON columns hold money as strings. Exchange rates are ``Rate``
(``Numeric(20, 10)``, exact text on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field

__all__ = [
    "CENTS",
    "DEFAULT_UNIT",
    "Money",
    "Rate",
    "json_field",
    "money_field",
    "timestamp_field",
    "unit_field",
    "utcnow",
]

CENTS = Decimal("0.01")
#: the business unit of every row until units are configured (a unit is a tenant: its own
#: customers, orders, chains, rates and policies; every table carries it)
DEFAULT_UNIT = "default"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Money(TypeDecorator):
    """Exact money: ``Numeric(20, 2)``; exact text on SQLite. Values must have at most two
    decimals (never rounded silently)."""

    impl = sa.Numeric(20, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.Numeric(20, 2))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        d = Decimal(value) if not isinstance(value, Decimal) else value
        q = d.quantize(CENTS)
        if q != d:
            raise ValueError(f"money value {value} has more than 2 decimals")
        return format(q, "f") if dialect.name == "sqlite" else q

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(CENTS)


class Rate(TypeDecorator):
    """Exact exchange rate: ``Numeric(20, 10)``; exact text on SQLite. At most 10 decimals
    (never rounded silently)."""

    impl = sa.Numeric(20, 10)
    cache_ok = True
    SCALE = Decimal("1E-10")

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(20, 10))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        d = Decimal(value) if not isinstance(value, Decimal) else value
        q = d.quantize(self.SCALE)
        if q != d:
            raise ValueError(f"rate {value} has more than 10 decimals")
        return format(q, "f") if dialect.name == "sqlite" else q

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(self.SCALE).normalize() + 0


def money_field(**kw: Any) -> Any:
    """A NOT NULL ``Money`` column."""
    return Field(sa_column=sa.Column(Money(), nullable=False, **kw))


def json_field() -> Any:
    """A NOT NULL JSON column."""
    return Field(sa_column=sa.Column(sa.JSON(), nullable=False))


def unit_field(*, primary_key: bool = True) -> Any:
    """The ``business_unit`` column (first in the primary key of a unit's tables)."""
    return Field(default=DEFAULT_UNIT, primary_key=primary_key, max_length=64)


def timestamp_field() -> Any:
    """A NOT NULL timezone-aware timestamp, now by default."""
    return Field(
        default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )
