"""The customer history: every change of a customer's master data (credit limit, currency,
receivables set by a PUT/PATCH/import, days past due, facts) as a hash-chained record,
written in the transaction of the change (``append``) and read newest first
(``History.page``). Chain ``customer_history`` in ``chain_head``; ``creditgate audit
verify`` walks it like the decision log and the ledger events (``history_record``)."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from api.core import chain, chainhead
from api.core.database import Database, read_page
from api.customers.tables import CustomerHistory

__all__ = [
    "CHAIN_HISTORY",
    "HISTORY_HASHED",
    "HISTORY_LOCK_KEY",
    "History",
    "Who",
    "append",
    "history_record",
]

CHAIN_HISTORY = "customer_history"  # chain_head.name of the customer history's chain
HISTORY_LOCK_KEY = 0x4347435553  # "CGCUS": pg_advisory_xact_lock key of the chain
#: the hashed fields of a history record (record_hash itself excluded)
HISTORY_HASHED = (
    "business_unit",
    "seq",
    "customer_id",
    "version",
    "source",
    "changes",
    "reason",
    "key_id",
    "role",
    "key_name",
    "created_at",
    "clock",
    "prev_hash",
)
#: who changed a customer: ``{"key_id", "role"}`` of the API key (the name is looked up)
Who = dict[str, Any]
LOCAL: Who = {"key_id": None, "role": "local"}  # the Python API (no key)


def _key_name(s: Session, key_id: str | None) -> str:
    from api.keys.tables import ApiKey

    if not key_id:
        return ""
    name = s.exec(
        select(ApiKey.name).where(col(ApiKey.key_hash).startswith(key_id)).limit(1)
    ).first()
    return name or ""


def append(
    db: Database,
    s: Session,
    entries: list[tuple[str, int, dict[str, Any]]],
    *,
    source: str,
    who: Who | None,
    reason: str | None,
) -> None:
    """Chain one record per ``(customer_id, version, changes)`` in session ``s`` (the
    change's transaction). Takes the chain lock: call it after every customer row lock of
    the transaction (lock order: customers, then the chain; never the other way round)."""
    if not entries:
        return
    who = who or LOCAL
    name = _key_name(s, who.get("key_id"))
    seq, prev = chainhead.position(db, s, CHAIN_HISTORY, CustomerHistory, HISTORY_LOCK_KEY)
    now = db.clock.now()
    for customer_id, version, changes in entries:
        seq += 1
        row = CustomerHistory(
            business_unit=db.unit,
            seq=seq,
            customer_id=customer_id,
            version=version,
            source=source,
            changes=chain.canonical_json(changes),
            reason=reason,
            key_id=who.get("key_id"),
            role=who["role"],
            key_name=name,
            created_at=now,
            clock=db.clock.note,
            prev_hash=prev,
            record_hash="",
        )
        row.record_hash = chain.record_hash(prev, history_record(row))
        s.add(row)
        prev = row.record_hash
    chainhead.set_head(db, s, CHAIN_HISTORY, seq, prev)


def history_record(row: CustomerHistory) -> dict[str, Any]:
    """The hashed record of a history row (``HISTORY_HASHED`` plus ``record_hash``);
    ``changes`` as the JSON it holds (raises ``ValueError`` for an edited, unreadable text)."""
    out = {f: getattr(row, f) for f in (*HISTORY_HASHED, "record_hash")}
    out["changes"] = json.loads(row.changes)
    if not isinstance(out["changes"], dict):
        raise ValueError("changes is not a JSON object")
    out["created_at"] = chain.as_utc(out["created_at"])
    return out


def entry_dict(rec: dict[str, Any]) -> dict[str, Any]:
    """A history record as ``GET /v1/customers/{id}/history`` answers it."""
    return {
        "seq": rec["seq"],
        "customer_id": rec["customer_id"],
        "version": rec["version"],
        "source": rec["source"],
        "at": rec["created_at"],
        "who": {"key_id": rec["key_id"], "role": rec["role"], "name": rec["key_name"]},
        "reason": rec["reason"],
        "changes": rec["changes"],
        "record_hash": rec["record_hash"],
    }


class History:
    """The customer history of one database."""

    def __init__(self, db: Database):
        self.db = db

    def page(
        self, customer_id: str, *, cursor: int | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The customer's history records, newest first (``entry_dict``); ``cursor`` is
        the ``next_cursor`` of the previous page. Returns ``(items, next_cursor or
        None)``; raises ``UnreadableRecord`` for a record that cannot be read."""
        q = select(CustomerHistory).where(
            CustomerHistory.business_unit == self.db.unit,
            CustomerHistory.customer_id == customer_id,
        )
        rows, next_cursor = read_page(
            self.db, q, CustomerHistory, history_record, cursor=cursor, limit=limit
        )
        return [entry_dict(r) for r in rows], next_cursor
