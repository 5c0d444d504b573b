"""The decision log: append-only, hash-chained records of every decision answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import json_field, utcnow

__all__ = ["DecisionLog"]


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
    request: dict[str, Any] = json_field()
    decision: dict[str, Any] = json_field()
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
