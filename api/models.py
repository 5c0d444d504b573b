"""Database tables (SQLModel). See docs/service-spec.md, "Tables".

Money columns are ``Money``: ``Numeric(20, 2)`` on PostgreSQL; on SQLite (which has no
exact decimal type and would go through binary floats) the exact decimal text. Python
always sees ``Decimal``. JSON columns hold money as strings.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "ApiKey",
    "ChainHead",
    "Customer",
    "DecisionLog",
    "FxRate",
    "LedgerEvent",
    "Money",
    "PolicyVersion",
    "Rate",
    "Reservation",
]

CENTS = Decimal("0.01")


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


def _money(**kw: Any) -> Any:
    return Field(sa_column=sa.Column(Money(), nullable=False, **kw))


def _json() -> Any:
    return Field(sa_column=sa.Column(sa.JSON(), nullable=False))


def _ts() -> Any:
    return Field(
        default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )


class PolicyVersion(SQLModel, table=True):
    __tablename__ = "policy_versions"

    sha256: str = Field(primary_key=True, max_length=64)
    policy_id: str = Field(max_length=200)
    version: str = Field(max_length=200)
    source: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = _ts()


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, max_length=200)
    currency: str = Field(max_length=3)
    credit_limit: Decimal = _money()
    open_receivables: Decimal = _money()
    open_orders: Decimal = _money()
    days_past_due: int = Field(default=0)
    facts: dict[str, Any] = _json()
    updated_at: datetime = _ts()
    # Payments and credit notes beyond the open receivables (revision 0002): owed to the
    # customer, offset against the next invoice; never counted as extra credit.
    credit_balance: Decimal = Field(
        default=Decimal("0.00"), sa_column=sa.Column(Money(), nullable=False)
    )


class Reservation(SQLModel, table=True):
    __tablename__ = "reservations"

    order_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(index=True, max_length=200)
    amount: Decimal = _money()
    decision_id: str = Field(max_length=64)
    content_hash: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16)
    updated_at: datetime = _ts()
    # Part of ``amount`` already invoiced (revision 0002); open part = amount - invoiced.
    invoiced: Decimal = Field(default=Decimal("0.00"), sa_column=sa.Column(Money(), nullable=False))


class DecisionLog(SQLModel, table=True):
    """Append-only. ``seq`` is assigned by the store (last seq + 1) while it holds the chain
    lock, so the sequence has no gaps and a deleted row is detected by ``verify_chain``.
    ``rules_matched`` (space-delimited ids of the matched rules, for the ``rule_id``
    filter) is part of the hashed record like every other column."""

    __tablename__ = "decision_log"

    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    decision_id: str = Field(max_length=64, unique=True)
    order_id: str = Field(index=True, max_length=200)
    customer_id: str = Field(index=True, max_length=200)
    outcome: str = Field(max_length=16)
    policy_id: str = Field(max_length=200)
    policy_version: str = Field(max_length=200)
    policy_sha256: str = Field(max_length=64)
    request: dict[str, Any] = _json()
    decision: dict[str, Any] = _json()
    rules_matched: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    content_hash: str = Field(max_length=64)
    caller: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True),
    )
    record_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    # Currency conversion of the order (revision 0002), null when none. Hashed with the
    # record when present (a null is left out, so older records still verify).
    fx: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(), nullable=True))


class FxRate(SQLModel, table=True):
    """``rate`` = units of ``base`` for one unit of ``currency`` on ``as_of`` (e.g. base
    EUR, currency USD, rate 0.92: 1 USD = 0.92 EUR)."""

    __tablename__ = "fx_rates"

    base: str = Field(primary_key=True, max_length=3)
    currency: str = Field(primary_key=True, max_length=3)
    as_of: date = Field(sa_column=sa.Column(sa.Date(), primary_key=True))
    rate: Decimal = Field(sa_column=sa.Column(Rate(), nullable=False))
    updated_at: datetime = _ts()


class LedgerEvent(SQLModel, table=True):
    """Append-only ledger events, idempotent by the caller's ``event_id``. Hash-chained
    like the decision log (revision 0003): ``seq`` (1, 2, ... no gaps, assigned under the
    ledger chain lock), ``prev_hash``, ``record_hash``; existing events were chained in
    ``created_at``, ``event_id`` order by the migration."""

    __tablename__ = "ledger_events"

    event_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(index=True, max_length=200)
    type: str = Field(max_length=32)
    # Indexed (revision 0004): the order-ownership checks look events up by order id.
    order_id: str | None = Field(default=None, index=True, max_length=200)
    amount: Decimal | None = Field(default=None, sa_column=sa.Column(Money(), nullable=True))
    currency: str | None = Field(default=None, max_length=3)
    content_hash: str = Field(max_length=64)
    effect: dict[str, Any] = _json()
    caller: str = Field(max_length=200)
    created_at: datetime = _ts()
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False, unique=True))
    prev_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)


class ChainHead(SQLModel, table=True):
    """The newest record of each hash chain (revision 0003): ``name`` is the chained table
    (``decision_log`` or ``ledger_events``), ``seq`` and ``record_hash`` those of its last
    record. Written in the same transaction as the record, under the chain lock, so
    ``verify_chain`` detects deleted newest records (tail truncation) and an emptied log."""

    __tablename__ = "chain_head"

    name: str = Field(primary_key=True, max_length=32)
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    record_hash: str = Field(max_length=64)
    updated_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    key_hash: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=32)
    name: str = Field(default="", max_length=200)
    created_at: datetime = _ts()
    revoked: bool = Field(default=False)
