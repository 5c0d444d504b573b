"""The ledger events' export (``GET /v1/ledger-events/export``): its CSV columns and flat
cells; the streaming, the completeness line, the abort and the CSV formula guard are
``api.core.export``'s, as for the decision log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi.responses import StreamingResponse

from api.core import export
from api.core.bodies import to_json

__all__ = ["EFFECT_FIELDS", "EXPORT_COLUMNS", "flat_columns", "stream"]

#: the effect's moves copied into columns of their own (``effect_<name>``; signed amounts)
EFFECT_FIELDS = ("open_orders", "open_receivables", "credit_balance", "unreserved")
EXPORT_COLUMNS = (
    "seq",
    "event_id",
    "created_at",
    "customer_id",
    "order_id",
    "type",
    "amount",
    "currency",
    *(f"effect_{name}" for name in EFFECT_FIELDS),
    "caller",
    "prev_hash",
    "record_hash",
    # the whole record (hashes, business unit, clock note included) as JSON text
    "record",
)
#: a plain signed decimal: written as a number (a spreadsheet reads -4000.00 as a number,
#: never as a formula); any other text starting with - = + @ gets the formula guard
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,10})?")


def _number(value: Any) -> Any:
    if isinstance(value, str) and _PLAIN_DECIMAL.fullmatch(value):
        return Decimal(value)
    return value


def flat_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The flat CSV cells of a (JSON-shaped) ledger event: the amount and the effect's moves
    (``effect_open_orders``, ``effect_open_receivables``, ``effect_credit_balance``,
    ``effect_unreserved``: empty when the effect has none) as numbers, and ``record``, the
    whole record."""
    effect = record.get("effect")
    effect = effect if isinstance(effect, dict) else {}
    out = {f"effect_{name}": _number(effect.get(name)) for name in EFFECT_FIELDS}
    out["amount"] = _number(record.get("amount"))
    out["record"] = record
    return out


def stream(
    records: Iterable[dict[str, Any]],
    format: str,  # noqa: A002 - the query parameter's name
    now: datetime,
) -> StreamingResponse:
    """The streamed export of ``records`` as ``format`` (``csv`` or ``jsonl``); ``now``
    (the service clock) names the file (``ledger-events-<UTC stamp>.<format>``)."""
    return export.stream(
        (to_json(row) for row in records),
        format=format,
        now=now,
        name="ledger-events",
        columns=EXPORT_COLUMNS,
        flat=flat_columns,
    )
