"""The decision log's export: a streamed CSV or JSON-lines body whose last line says whether
it is complete (``{"complete": true, "records": N}``; CSV ``#complete,N``). A failure
mid-stream ends it with ``complete: false`` and aborts the connection, so a client sees a
broken transfer as well."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import StreamingResponse

from api.core.bodies import to_json
from api.core.database import UnreadableRecord

__all__ = ["EXPORT_COLUMNS", "FLAT_FIELDS", "csv_cell", "flat_columns", "stream"]

log = logging.getLogger("creditgate.api")

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


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP "CSV injection"): text
    starting with = + - @ or a tab/CR gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def stream(
    records: Iterable[dict[str, Any]],
    mask: Callable[[dict[str, Any]], dict[str, Any]],
    format: str,  # noqa: A002 - the query parameter's name
    now: datetime,
) -> StreamingResponse:
    """The streamed export of ``records`` (masked with ``mask``) as ``format`` (``csv`` or
    ``jsonl``); ``now`` (the service clock) names the file."""
    written = 0

    def counted() -> Any:
        nonlocal written
        for row in records:
            yield row
            written += 1

    def failed(exc: Exception) -> str:
        log.error("export aborted after %d records: %s", written, exc, extra={"error": str(exc)})
        if isinstance(exc, UnreadableRecord):
            return str(exc)
        return f"internal error ({type(exc).__name__})"

    def jsonl() -> Any:
        try:
            for row in counted():
                yield json.dumps(to_json(mask(row)), ensure_ascii=False) + "\n"
        except Exception as exc:
            # Mid-stream: the status line is gone. Say so in the body, then abort the
            # connection (re-raise) so a client sees a broken transfer as well.
            end = {"complete": False, "records": written, "error": failed(exc)}
            yield json.dumps(end, ensure_ascii=False) + "\n"
            raise
        yield json.dumps({"complete": True, "records": written}) + "\n"

    def csv_lines() -> Any:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        try:
            for row in counted():
                yield from csv_row(writer, buf, row)
        except Exception as exc:
            writer.writerow(["#incomplete", written, csv_cell(failed(exc))])
            yield buf.getvalue()
            raise
        writer.writerow(["#complete", written])
        yield buf.getvalue()

    def csv_row(writer: Any, buf: io.StringIO, row: dict[str, Any]) -> Any:
        data = to_json(mask(row))
        data.update(flat_columns(data))
        writer.writerow(
            [
                csv_cell(
                    json.dumps(data[c], ensure_ascii=False, sort_keys=True)
                    if isinstance(data.get(c), dict)
                    else ("" if data.get(c) is None else data[c])
                )
                for c in EXPORT_COLUMNS
            ]
        )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()

    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        csv_lines() if format == "csv" else jsonl(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="decisions-{stamp}.{format}"'},
    )
