"""The decision log's export: its CSV columns and flat cells; the streaming, the completeness
line, the abort and the CSV formula guard are ``api.core.export``'s (shared with the ledger
events' export)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from fastapi.responses import StreamingResponse

from api.core import export
from api.core.bodies import to_json
from api.core.export import csv_cell

__all__ = ["EXPORT_COLUMNS", "FLAT_FIELDS", "csv_cell", "flat_columns", "stream"]

#: CSV columns copied from the (masked) decision: a masked amount stays "***"
FLAT_FIELDS = (
    "score",
    "tier",
    "order_amount",
    "currency",
    "deposit_pct",
    "deposit_amount",
    "approved_payment_term_days",
)
EXPORT_COLUMNS = (
    "seq",
    "decision_id",
    "created_at",
    "order_id",
    "customer_id",
    "outcome",
    "kind",
    # flat copies of the decision's main fields, for a spreadsheet (flat_columns)
    *FLAT_FIELDS,
    "reason_codes",
    "escalation_level",
    "policy_id",
    "policy_version",
    "policy_sha256",
    "caller",
    "content_hash",
    "record_hash",
    "prev_hash",
    "fx",
    "request",
    "decision",
)


def flat_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The flat CSV cells of a (masked, JSON-shaped) log record: ``FLAT_FIELDS`` of its
    decision, ``reason_codes`` (the reasons' codes in the decision's order, joined by a
    space) and ``escalation_level`` (a referral's level, else empty)."""
    decision = record.get("decision")
    if not isinstance(decision, dict):
        return {}
    out = {name: decision.get(name) for name in FLAT_FIELDS}
    reasons = decision.get("reasons") or []
    out["reason_codes"] = " ".join(
        str(r.get("code")) for r in reasons if isinstance(r, dict) and r.get("code")
    )
    escalation = decision.get("escalation")
    out["escalation_level"] = escalation.get("level") if isinstance(escalation, dict) else None
    return out


def stream(
    records: Iterable[dict[str, Any]],
    mask: Callable[[dict[str, Any]], dict[str, Any]],
    format: str,  # noqa: A002 - the query parameter's name
    now: datetime,
) -> StreamingResponse:
    """The streamed export of ``records`` (masked with ``mask``) as ``format`` (``csv`` or
    ``jsonl``; ``api.core.export.stream``); ``now`` (the service clock) names the file."""
    return export.stream(
        (to_json(mask(row)) for row in records),
        format=format,
        now=now,
        name="decisions",
        columns=EXPORT_COLUMNS,
        flat=flat_columns,
    )
