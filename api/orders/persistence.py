"""Reading one order as the log and the ledger recorded it (``Orders.read``): its decision
records, its reservation, the ledger events that name it and its customer's currency, in
ONE read transaction (PostgreSQL: ``REPEATABLE READ``, so the four reads see one snapshot;
SQLite: one deferred transaction, a WAL snapshot). SQLAlchemy Core, only the columns the
view needs (never the request, decision or trail texts). What the rows mean, the status and
the timeline, is derived in ``api.orders.lifecycle``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from api.core import chain
from api.core.database import READ_ERRORS, Database, UnreadableRecord, read_cause
from api.customers.tables import Customer
from api.decisions.tables import DecisionLog
from api.ledger.persistence import BINDING_EVENTS
from api.ledger.tables import LedgerEvent, Reservation

__all__ = ["OrderRows", "Orders"]

_LOG = DecisionLog.__table__
_EVENTS = LedgerEvent.__table__
_RESERVATIONS = Reservation.__table__
_CUSTOMERS = Customer.__table__


@dataclass
class OrderRows:
    """What is recorded of one order: ``decisions`` (decision-log records, ``seq`` order),
    ``events`` (ledger events of the order's customer that name the order, ``seq`` order),
    ``reservation`` (or None) and the ``customer_id`` the order belongs to."""

    order_id: str
    customer_id: str
    currency: str | None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    reservation: dict[str, Any] | None = None


class Orders:
    """The orders of one database, read from the decision log and the ledger (no table of
    their own)."""

    def __init__(self, db: Database):
        self.db = db

    def read(self, order_id: str) -> OrderRows | None:
        """Everything recorded of ``order_id`` in this unit, or None when no decision, no
        reservation and no invoice or cancel names it (a payment or credit note that names
        an order id does not make it an order: ``api.ledger.persistence.BINDING_EVENTS``).
        Raises ``UnreadableRecord`` when a stored value cannot be read."""
        unit = self.db.unit
        with self.db.connection(write=False) as conn:
            if self.db.dialect == "postgresql":
                # the first statement of the transaction: one snapshot for every read below
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            log = conn.execute(
                sa.select(
                    _LOG.c.seq,
                    _LOG.c.decision_id,
                    _LOG.c.customer_id,
                    _LOG.c.kind,
                    _LOG.c.outcome,
                    _LOG.c.policy_id,
                    _LOG.c.policy_version,
                    _LOG.c.policy_sha256,
                    _LOG.c.caller,
                    _LOG.c.created_at,
                )
                .where(_LOG.c.business_unit == unit, _LOG.c.order_id == order_id)
                .order_by(_LOG.c.seq)
            )
            decisions = _records("decision_log", log)
            res = conn.execute(
                sa.select(
                    _RESERVATIONS.c.customer_id,
                    _RESERVATIONS.c.amount,
                    _RESERVATIONS.c.invoiced,
                    _RESERVATIONS.c.status,
                    _RESERVATIONS.c.decision_id,
                ).where(
                    _RESERVATIONS.c.business_unit == unit, _RESERVATIONS.c.order_id == order_id
                )
            )
            reservations = _records("reservations", res)
            ev = conn.execute(
                sa.select(
                    _EVENTS.c.seq,
                    _EVENTS.c.event_id,
                    _EVENTS.c.customer_id,
                    _EVENTS.c.type,
                    _EVENTS.c.amount,
                    _EVENTS.c.currency,
                    _EVENTS.c.effect,
                    _EVENTS.c.caller,
                    _EVENTS.c.created_at,
                )
                .where(_EVENTS.c.business_unit == unit, _EVENTS.c.order_id == order_id)
                .order_by(_EVENTS.c.seq)
            )
            events = _records("ledger_events", ev)
            reservation = reservations[0] if reservations else None
            owner = _owner(decisions, reservation, events)
            if owner is None:
                return None
            currency = conn.execute(
                sa.select(_CUSTOMERS.c.currency).where(
                    _CUSTOMERS.c.business_unit == unit, _CUSTOMERS.c.customer_id == owner
                )
            ).scalar()
        return OrderRows(
            order_id=order_id,
            customer_id=owner,
            currency=currency,
            decisions=decisions,
            # Only the owner's events: a payment of another customer may have named the id
            # before the order was decided (it never made the id that customer's order).
            events=[e for e in events if e["customer_id"] == owner],
            reservation=reservation,
        )


def _owner(
    decisions: list[dict[str, Any]],
    reservation: dict[str, Any] | None,
    events: list[dict[str, Any]],
) -> str | None:
    """The customer the order belongs to: its decisions', else its reservation's, else that
    of its first invoice or cancel (the ledger keeps one order id to one customer)."""
    if decisions:
        return str(decisions[0]["customer_id"])
    if reservation is not None:
        return str(reservation["customer_id"])
    for e in events:
        if e["type"] in BINDING_EVENTS:
            return str(e["customer_id"])
    return None


def _records(table: str, result: Any) -> list[dict[str, Any]]:
    """The rows of ``result`` as dicts, ``created_at`` in UTC, money exact; a stored value
    edited outside the service that does not read → ``UnreadableRecord``."""
    try:
        rows = [dict(r._mapping) for r in result]
        for row in rows:
            if "created_at" in row:
                row["created_at"] = chain.as_utc(row["created_at"])
            for name in ("amount", "invoiced"):
                if row.get(name) is not None and not isinstance(row[name], Decimal):
                    row[name] = Decimal(str(row[name]))
            if "effect" in row and not isinstance(row["effect"], dict):
                raise ValueError(f"effect is not an object: {row['effect']!r}")
    except READ_ERRORS as e:
        raise UnreadableRecord(table, None, read_cause(e)) from None
    return rows
