"""The chain heads (table ``chain_head``, revision 0003) and appending to a hash chain.

A chain (the decision log, the ledger events; one of each per business unit) is extended
under its lock: ``position`` returns the stored head to chain onto, ``set_head`` moves the
head to the new record in the same transaction. The hashing itself is ``api.core.chain``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from api.core import chain
from api.core.types import timestamp_field, unit_field

if TYPE_CHECKING:
    from api.core.database import Database

__all__ = ["ChainBroken", "ChainHead", "position", "set_head"]


class ChainHead(SQLModel, table=True):
    """The newest record of each hash chain (revision 0003): ``name`` is the chained table
    (``decision_log`` or ``ledger_events``), ``seq`` and ``record_hash`` those of its last
    record. Written in the same transaction as the record, under the chain lock, so
    ``verify_chain`` detects deleted newest records (tail truncation) and an emptied log."""

    __tablename__ = "chain_head"

    business_unit: str = unit_field()
    name: str = Field(primary_key=True, max_length=32)
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    record_hash: str = Field(max_length=64)
    updated_at: datetime = timestamp_field()


class ChainBroken(RuntimeError):
    """A hash chain cannot be extended safely: it has records beyond its stored head
    (tampering). Nothing is written; ``creditgate audit verify`` shows where it breaks."""


def position(db: Database, s: Session, name: str, model: Any, lock: int) -> tuple[int, str]:
    """Take the chain lock (PostgreSQL advisory transaction lock ``lock``; SQLite: the
    write lock of BEGIN IMMEDIATE) and return ``(seq, record_hash)`` of the record to
    chain onto: the stored head (so records deleted at the end leave a gap that
    ``verify_chain`` reports, even after new appends); ``(0, GENESIS)`` for an empty
    chain without a head (a new database). Records beyond the head, or records without
    a head row (migration 0003 writes the heads of existing chains, so a missing head
    means it was deleted, perhaps with the newest records) → ``ChainBroken``; nothing
    is appended, so the gap cannot be papered over by a new head."""
    db.advisory_lock(s, lock)
    last = s.exec(
        select(model.seq, model.record_hash)
        .where(model.business_unit == db.unit)
        .order_by(col(model.seq).desc())
        .limit(1)
    ).first()
    head = s.get(ChainHead, (db.unit, name))
    if head is None:
        if last is not None:
            raise ChainBroken(
                f"{name} has records (up to seq {last[0]}) but no chain head; nothing was "
                "written: run 'creditgate audit verify'"
            )
        return 0, chain.GENESIS
    if last is not None and last[0] > head.seq:
        raise ChainBroken(
            f"{name} has records beyond its chain head (seq {last[0]} > {head.seq}); "
            "nothing was written: run 'creditgate audit verify'"
        )
    return head.seq, head.record_hash


def set_head(db: Database, s: Session, name: str, seq: int, record_hash: str) -> None:
    """Move chain ``name``'s head to ``(seq, record_hash)`` (created on the first record)."""
    head = s.get(ChainHead, (db.unit, name))
    now = db.clock.now()
    if head is None:
        s.add(
            ChainHead(
                business_unit=db.unit, name=name, seq=seq, record_hash=record_hash, updated_at=now
            )
        )
    else:
        head.seq, head.record_hash, head.updated_at = seq, record_hash, now
