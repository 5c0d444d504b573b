"""Canonical JSON and the hash chains of the decision log and the ledger events (pure
functions, no database).

``record_hash = sha256(prev_hash + canonical_json(record without record_hash))``; canonical
JSON is ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` with
Decimals and datetimes as strings. The first record's ``prev_hash`` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "GENESIS",
    "ChainWalker",
    "as_utc",
    "canonical_json",
    "content_hash",
    "decimal_str",
    "head_mismatch",
    "jsonable",
    "record_hash",
    "timestamp",
    "verify_records",
]

GENESIS = "0" * 64


def decimal_str(d: Decimal) -> str:
    """A Decimal as plain text without exponent (``Decimal("1E+2")`` → ``"100"``)."""
    return format(d, "f")


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive value (SQLite returns those) is taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def timestamp(dt: datetime) -> str:
    """A datetime as UTC ISO 8601 with microseconds; naive values are taken as UTC (SQLite
    returns naive datetimes)."""
    return as_utc(dt).isoformat(timespec="microseconds")


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return decimal_str(o)
    if isinstance(o, datetime):
        return timestamp(o)
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text; Decimals/datetimes as strings. Floats are
    refused (money is never a binary float)."""
    _no_floats(obj)
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def _no_floats(obj: Any) -> None:
    if isinstance(obj, float):
        raise ValueError(f"binary float {obj!r} is not allowed; send numbers as strings")
    if isinstance(obj, Mapping):
        for v in obj.values():
            _no_floats(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _no_floats(v)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data (what a JSON column gives back): Decimals and datetimes
    become strings, tuples lists."""
    return json.loads(canonical_json(obj))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(obj: Any) -> str:
    """sha256 of ``obj``'s canonical JSON (idempotency key of an order request)."""
    return sha256_hex(canonical_json(obj))


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The chain hash of ``record`` (``record_hash`` itself is left out)."""
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return sha256_hex(prev_hash + canonical_json(body))


class ChainWalker:
    """Checks records fed in ``seq`` order: contiguous ``seq`` from 1, every ``prev_hash``
    link and every ``record_hash``. ``checked`` = records found intact so far; ``last_seq``
    / ``last_hash`` = the last intact record (0 / ``GENESIS`` before the first).
    ``matches(record)`` says whether a record's ``record_hash`` is the hash of its contents
    (default: ``record_hash`` of the record, the hashing of the first records)."""

    def __init__(self, matches: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
        self.matches = matches or (
            lambda rec: record_hash(rec["prev_hash"], rec) == rec["record_hash"]
        )
        self.checked = 0
        self.last_seq = 0
        self.last_hash = GENESIS

    def feed(self, rec: Mapping[str, Any]) -> str | None:
        """Check the next record; returns None if intact, else the reason it is not."""
        seq = rec["seq"]
        if seq != self.last_seq + 1:
            return f"sequence gap: expected seq {self.last_seq + 1}, found {seq}"
        if rec["prev_hash"] != self.last_hash:
            return "prev_hash does not match the previous record's record_hash"
        if not self.matches(rec):
            return "record_hash does not match the record's contents"
        self.checked += 1
        self.last_seq, self.last_hash = seq, rec["record_hash"]
        return None


def head_mismatch(
    last_seq: int, last_hash: str, head: tuple[int, str] | None
) -> tuple[int, str] | None:
    """Compare the last intact record (``last_seq`` 0 = no records) with the stored chain
    head ``(seq, record_hash)`` (None = no head row). Returns None if they agree, else
    ``(first_broken_seq, reason)``: records deleted at the end (tail truncation) or all of
    them, records beyond the head, a head that names another hash, or a missing head."""
    if head is None:
        if last_seq == 0:
            return None
        return 1, f"the chain head is missing but the log has {last_seq} records"
    head_seq, head_hash = head
    if head_seq != last_seq:
        first = min(last_seq, head_seq) + 1
        return first, f"log ends at seq {last_seq} but the head says {head_seq}"
    if head_hash != last_hash:
        return last_seq, f"the record_hash of seq {last_seq} differs from the head's"
    return None


def verify_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Walk ``records`` (in ``seq`` order) and check sequence, links and hashes (not the
    head: see ``head_mismatch``).

    Returns ``{"ok", "checked", "first_broken_seq", "reason"}``."""
    walker = ChainWalker()
    for rec in records:
        reason = walker.feed(rec)
        if reason is not None:
            return {
                "ok": False,
                "checked": walker.checked,
                "first_broken_seq": rec["seq"],
                "reason": reason,
            }
    return {"ok": True, "checked": walker.checked, "first_broken_seq": None, "reason": None}
