"""Decision-log records: the hashed envelope of a record, and a stored row read back.

A record is hashed as one JSON document, its **envelope** (hash version 2, revision 0005)::

    {"v":2,"business_unit":"default","seq":7,"prev_hash":"<64 hex>","decision_id":"...",
     "order_id":"...","customer_id":"...","outcome":"approve","kind":"new",
     "policy_id":"...","policy_version":"...","policy_sha256":"...","content_hash":"...",
     "caller":"order_entry:3f2a...","created_at":"2026-11-29T10:00:00.000000+00:00",
     "clock":null,"rules_matched":" KO_X SC_Y ","fx":<fx JSON or null>,
     "request":<request JSON>,"decision":<decision JSON>}

``record_hash = sha256(envelope)``. The scalar part is written by orjson (keys in this
order, no whitespace, UTF-8); ``fx``, ``request`` and ``decision`` are embedded as the exact
bytes stored in their TEXT columns, and the decision bytes are the very body the service
answered: nothing is serialised twice, and anyone can recompute the hash from the columns
(``envelope_of_row``). Records written before revision 0005 were hashed as
``sha256(prev_hash + canonical JSON of the record)`` (``api.core.chain.record_hash``, hash
version 1); ``hash_matches`` accepts either, since both cover every column.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from api.core import chain

__all__ = [
    "ENVELOPE_VERSION",
    "envelope",
    "hash_matches",
    "log_dict",
    "record_values",
]

ENVELOPE_VERSION = 2


def envelope(
    *,
    business_unit: str,
    seq: int,
    prev_hash: str,
    decision_id: str,
    order_id: str,
    customer_id: str,
    outcome: str,
    kind: str,
    policy_id: str,
    policy_version: str,
    policy_sha256: str,
    content_hash: str,
    caller: str,
    created_at: datetime,
    clock: str | None,
    rules_matched: str,
    fx: bytes | None,
    request: bytes,
    decision: bytes,
) -> bytes:
    """The bytes a record's ``record_hash`` is the sha256 of (see the module docstring)."""
    head = orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "business_unit": business_unit,
            "seq": seq,
            "prev_hash": prev_hash,
            "decision_id": decision_id,
            "order_id": order_id,
            "customer_id": customer_id,
            "outcome": outcome,
            "kind": kind,
            "policy_id": policy_id,
            "policy_version": policy_version,
            "policy_sha256": policy_sha256,
            "content_hash": content_hash,
            "caller": caller,
            "created_at": chain.timestamp(created_at),
            "clock": clock,
            "rules_matched": rules_matched,
        }
    )
    return b"".join(
        (
            head[:-1],
            b',"fx":',
            fx if fx is not None else b"null",
            b',"request":',
            request,
            b',"decision":',
            decision,
            b"}",
        )
    )


def record_values(**fields: Any) -> dict[str, Any]:
    """The column values of a new record: ``fields`` as ``envelope`` takes them, with
    ``fx``, ``request`` and ``decision`` stored as text, plus ``record_hash``."""
    digest = hashlib.sha256(envelope(**fields)).hexdigest()
    row = dict(fields)
    for name in ("fx", "request", "decision"):
        value = row[name]
        row[name] = value.decode("utf-8") if value is not None else None
    row["record_hash"] = digest
    return row


def envelope_of_row(row: Mapping[str, Any]) -> bytes:
    """The envelope of a stored record (its columns as read: ``created_at`` a datetime,
    ``fx``/``request``/``decision`` the stored text)."""
    fx = row.get("fx")
    return envelope(
        business_unit=row["business_unit"],
        seq=row["seq"],
        prev_hash=row["prev_hash"],
        decision_id=row["decision_id"],
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        outcome=row["outcome"],
        kind=row["kind"],
        policy_id=row["policy_id"],
        policy_version=row["policy_version"],
        policy_sha256=row["policy_sha256"],
        content_hash=row["content_hash"],
        caller=row["caller"],
        created_at=row["created_at"],
        clock=row.get("clock"),
        rules_matched=row["rules_matched"],
        fx=fx.encode("utf-8") if fx is not None else None,
        request=row["request"].encode("utf-8"),
        decision=row["decision"].encode("utf-8"),
    )


# The columns of a version-1 record's hash (everything but the columns revision 0005 added).
_V1_EXCLUDED = ("business_unit", "clock", "record_hash")


def hash_matches(row: Mapping[str, Any]) -> bool:
    """Whether a stored record's ``record_hash`` is the hash of its columns: the envelope's
    (version 2), or for a record written before revision 0005 the canonical JSON of the
    record with the JSON columns parsed (version 1; a null ``fx`` is left out)."""
    try:
        if hashlib.sha256(envelope_of_row(row)).hexdigest() == row["record_hash"]:
            return True
    except (UnicodeEncodeError, AttributeError, TypeError):
        return False
    if row.get("business_unit") != "default" or row.get("clock") is not None:
        return False  # version 1 records predate both columns
    v1 = {k: v for k, v in row.items() if k not in _V1_EXCLUDED}
    try:
        for name in ("request", "decision", "fx"):
            if v1.get(name) is not None:
                v1[name] = orjson.loads(v1[name])
    except orjson.JSONDecodeError:
        return False
    if v1.get("fx") is None:
        v1.pop("fx", None)
    v1["created_at"] = chain.as_utc(v1["created_at"])
    return chain.record_hash(row["prev_hash"], v1) == row["record_hash"]


def log_dict(row: Any) -> dict[str, Any]:
    """A stored record as the reads of the log answer it (``GET /v1/decisions/{id}``, the
    list, the export): every column, ``request``/``decision``/``fx`` parsed, ``created_at``
    in UTC; no ``fx`` key when there was no conversion, no ``clock`` key for the system
    clock. Raises ``ValueError`` (``orjson.JSONDecodeError``) for a text that is not JSON."""
    out = {c: getattr(row, c) for c in _COLUMNS}
    out["created_at"] = chain.as_utc(out["created_at"])
    out["request"] = orjson.loads(out["request"])
    out["decision"] = orjson.loads(out["decision"])
    if out.get("fx") is None:
        out.pop("fx", None)
    else:
        out["fx"] = orjson.loads(out["fx"])
    if out.get("clock") is None:
        out.pop("clock", None)
    return out


def raw_dict(row: Any) -> dict[str, Any]:
    """A stored record's columns as stored (texts unparsed): what ``hash_matches`` and the
    audit's walk read."""
    return {c: getattr(row, c) for c in _COLUMNS}


def _columns() -> tuple[str, ...]:
    from api.decisions.tables import DecisionLog

    return tuple(DecisionLog.__table__.columns.keys())  # noqa: SIM118


_COLUMNS = _columns()
