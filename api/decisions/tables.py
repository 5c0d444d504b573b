"""The decision log: append-only, hash-chained records of every decision answered."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import unit_field, utcnow

__all__ = ["DecisionLog"]


class DecisionLog(SQLModel, table=True):
    """Append-only. ``seq`` is assigned under the chain's lock (head seq + 1), so the
    sequence has no gaps and a deleted row is detected by the audit. ``request``,
    ``decision`` and ``fx`` hold the exact JSON text the record's hash covers (revision
    0005; the decision text is also the body the service answered). ``rules_matched``
    (space-delimited ids of the matched rules, for the ``rule_id`` filter) is part of the
    hashed record like every other column. Hashing: ``api.decisions.records``."""

    __tablename__ = "decision_log"
    __table_args__ = (
        sa.Index("ix_decision_log_order_id", "business_unit", "order_id", "seq"),
        sa.Index("ix_decision_log_customer_id", "business_unit", "customer_id"),
    )

    business_unit: str = unit_field()
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    decision_id: str = Field(max_length=64, unique=True)
    order_id: str = Field(max_length=200)
    customer_id: str = Field(max_length=200)
    outcome: str = Field(max_length=16)
    policy_id: str = Field(max_length=200)
    policy_version: str = Field(max_length=200)
    policy_sha256: str = Field(max_length=64)
    request: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    decision: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
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
    # Currency conversion of the order (revision 0002), null when none.
    fx: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    # The clock the record was written under when it was not the system clock (0005).
    clock: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
