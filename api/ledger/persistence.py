"""The exposure ledger: ledger events (order cancelled, invoice issued, payment received,
credit note) applied to a customer's position under the customer lock and recorded in their
own hash chain; the reservations they move (``Ledger.apply_event``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exc
from sqlmodel import Session, col, select

from api.core import chain, chainhead
from api.core.database import Database, read_batches, read_page
from api.core.params import query_bound
from api.core.types import DEFAULT_UNIT
from api.core.values import currency_code, identifier, money, plain
from api.customers.exceptions import UnknownCustomer
from api.customers.persistence import customer_dict
from api.customers.tables import Customer
from api.decisions.tables import DecisionLog
from api.ledger.exceptions import EventConflict
from api.ledger.tables import LedgerEvent, Reservation

__all__ = [
    "CHAIN_LEDGER",
    "EVENT_TYPES",
    "LEDGER_HASHED",
    "LEDGER_LOCK_KEY",
    "Ledger",
    "event_record",
    "read_event",
    "BINDING_EVENTS",
    "order_owner",
    "other_owner",
]

EVENT_TYPES = ("order_cancelled", "invoice_issued", "payment_received", "credit_note")
# The events that make an order id their customer's: an invoice or a cancel of the order.
# A payment or credit note may name an order id (cash allocated to it) without owning it,
# but never an order of another customer.
BINDING_EVENTS = ("invoice_issued", "order_cancelled")
# A customer's exposure and credit balance stay below what a decision reads (money below
# 10**15 in the policy currency): an event that would reach it is refused (422).
LEDGER_LIMIT = Decimal(10) ** 15
LEDGER_LOCK_KEY = 0x43474C4544  # "CGLED": pg_advisory_xact_lock key of the ledger's chain
CHAIN_LEDGER = "ledger_events"  # chain_head.name of the ledger events' chain
# The hashed fields of a ledger event (record_hash itself excluded); fixed, so a column
# added later does not change the hash of older events.
LEDGER_HASHED = (
    "seq",
    "event_id",
    "customer_id",
    "type",
    "order_id",
    "amount",
    "currency",
    "content_hash",
    "effect",
    "caller",
    "created_at",
    "prev_hash",
)
# Hashed too when they are not the default (revision 0005): the business unit, if not
# ``default``, and the clock note, if the event was recorded under a moved clock; so the
# events of the default unit under the system clock hash as before.
LEDGER_HASHED_IF_SET = ("business_unit", "clock")


class Ledger:
    """The ledger events of one database."""

    def __init__(self, db: Database):
        self.db = db

    def apply_event(self, customer_id: str, event: dict[str, Any], caller: str) -> dict[str, Any]:
        """Apply one ledger event to ``customer_id`` and record it (append-only
        ``ledger_events``), atomically under the customer lock. Idempotent by
        ``event_id``: the same event again returns the recorded result (``replayed``
        true); the same id with other content → ``EventConflict``.

        Types: ``order_cancelled`` {order_id} releases the open part of the order's
        reservation; ``invoice_issued`` {order_id, amount, currency} adds ``amount`` to open
        receivables (first offset against a credit balance) and takes the part the order's
        open reservation covers off open orders (partial invoices add up); it is never
        refused for the order's state: an amount without an open reservation (a referred
        order approved by a person, a cancelled or fully invoiced order, more than
        approved) is new exposure, reported as ``effect.unreserved``; but an order of another
        customer (its reservation, its decisions or its earlier ledger events) →
        ``EventConflict``; ``payment_received`` /
        ``credit_note`` {amount, currency, order_id optional} reduce open receivables, no
        credit check, never refused for the customer's state; an excess becomes the
        customer's ``credit_balance``."""
        identifier(customer_id, "customer_id")
        if not isinstance(event, dict):
            raise ValueError("an event is an object")
        unknown = set(event) - {"event_id", "type", "order_id", "amount", "currency"}
        if unknown:
            raise ValueError(f"unknown event fields: {sorted(unknown)}")
        event_id = identifier(event.get("event_id"), "event_id")
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(f"type: one of {', '.join(EVENT_TYPES)}")
        order_id = event.get("order_id")
        if order_id is not None:
            identifier(order_id, "order_id")
        amount = currency = None
        if kind == "order_cancelled":
            if order_id is None:
                raise ValueError("order_id: required for order_cancelled")
            if event.get("amount") is not None or event.get("currency") is not None:
                raise ValueError("amount: order_cancelled releases the whole open reservation")
        else:
            if kind == "invoice_issued" and order_id is None:
                raise ValueError("order_id: required for invoice_issued")
            if event.get("amount") is None:
                raise ValueError("amount: required")
            amount = money(event["amount"], "amount")
            if amount <= 0:
                raise ValueError("amount: must be positive")
            currency = currency_code(event.get("currency"), "currency")
        norm = {
            "customer_id": customer_id,
            "type": kind,
            "order_id": order_id,
            "amount": plain(amount) if amount is not None else None,
            "currency": currency,
        }
        chash = chain.content_hash(norm)
        try:
            with self.db.session(write=True) as s:
                unit, now = self.db.unit, self.db.clock.now()
                cust = s.get(Customer, (unit, customer_id), with_for_update=True)
                if cust is None:
                    raise UnknownCustomer(customer_id)
                seen = s.get(LedgerEvent, (unit, event_id))
                if seen is not None:
                    if seen.content_hash != chash:
                        raise EventConflict(
                            f"event_id: {event_id!r} was already recorded with other content"
                        )
                    return event_dict(seen, cust, replayed=True)
                if currency is not None and currency != cust.currency:
                    raise ValueError(
                        f"currency: the ledger of {customer_id!r} is kept in {cust.currency}, "
                        f"not {currency}"
                    )
                if order_id is not None:
                    # As in decide: an order id's owner is checked and fixed under one lock.
                    self.db.lock_order_id(s, order_id)
                effect = _effect(s, unit, now, cust, kind, order_id, amount)
                cust.updated_at = now
                last_seq, prev = chainhead.position(
                    self.db, s, CHAIN_LEDGER, LedgerEvent, LEDGER_LOCK_KEY
                )
                row = LedgerEvent(
                    business_unit=unit,
                    clock=self.db.clock.note,
                    event_id=event_id,
                    customer_id=customer_id,
                    type=kind,
                    order_id=order_id,
                    amount=amount,
                    currency=currency,
                    content_hash=chash,
                    effect=chain.jsonable(effect),
                    caller=caller,
                    created_at=now,
                    seq=last_seq + 1,
                    prev_hash=prev,
                    record_hash="",
                )
                row.record_hash = chain.record_hash(prev, event_record(row))
                s.add(row)
                chainhead.set_head(self.db, s, CHAIN_LEDGER, row.seq, row.record_hash)
                s.flush()
                return event_dict(row, cust, replayed=False)
        except exc.IntegrityError:  # the same event id, concurrently, for another customer
            # (seq cannot clash: it is assigned under the ledger chain lock)
            raise EventConflict(f"event_id: {event_id!r} is already used") from None

    def list_events(self, customer_id: str) -> list[dict[str, Any]]:
        """The ledger events of ``customer_id``, in the order they were recorded."""
        with self.db.session(write=False) as s:
            rows = s.exec(
                select(LedgerEvent)
                .where(
                    LedgerEvent.business_unit == self.db.unit,
                    LedgerEvent.customer_id == customer_id,
                )
                .order_by(col(LedgerEvent.created_at), col(LedgerEvent.event_id))
            ).all()
            return [
                {
                    "event_id": r.event_id,
                    "type": r.type,
                    "order_id": r.order_id,
                    "amount": r.amount,
                    "currency": r.currency,
                    "effect": dict(r.effect),
                    "caller": r.caller,
                    "recorded_at": chain.as_utc(r.created_at),
                }
                for r in rows
            ]

    # -- reading the ledger's chain (GET /v1/ledger-events and its export) ------------------

    def search(
        self, *, cursor: int | None = None, limit: int = 50, **filters: Any
    ) -> tuple[list[dict[str, Any]], int | None]:
        """This unit's ledger events (``read_event``), newest first (``seq`` descending),
        that pass ``filters`` (``_filtered``). ``cursor`` is the ``next_cursor`` of the
        previous page (only events with a lower ``seq``: events appended meanwhile never
        shift a page); returns ``(rows, next_cursor or None)``. Raises ``UnreadableRecord``
        for an event that cannot be read."""
        q = self._filtered(select(LedgerEvent), **filters)
        return read_page(self.db, q, LedgerEvent, read_event, cursor=cursor, limit=limit)

    def iterate(self, *, batch: int = 500, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every ledger event of this unit that passes ``filters``, oldest first (``seq``
        order), read in batches of ``batch`` (one short read transaction each, keyset
        pagination on ``seq``). An event that cannot be read raises ``UnreadableRecord``
        before any event of its batch is yielded: never a silent end."""
        q = self._filtered(select(LedgerEvent), **filters)
        return read_batches(self.db, q, LedgerEvent, read_event, batch=batch)

    def _filtered(
        self,
        q: Any,
        *,
        customer_id: str | None = None,
        order_id: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        date_from: date | datetime | None = None,
        date_to: date | datetime | None = None,
    ) -> Any:
        """``q`` limited to this unit's events that pass every filter given, each exact
        (``=``: case-sensitive on both databases): the customer, the order id the event
        names, the type, the event id, ``date_from`` inclusive and ``date_to`` exclusive on
        ``created_at`` (a plain date means its whole day), as the decision log's filters.
        An unknown filter name is a ``TypeError``."""
        q = q.where(LedgerEvent.business_unit == self.db.unit)
        if customer_id is not None:
            q = q.where(LedgerEvent.customer_id == customer_id)
        if order_id is not None:
            q = q.where(LedgerEvent.order_id == order_id)
        if event_type is not None:
            q = q.where(LedgerEvent.type == event_type)
        if event_id is not None:
            q = q.where(LedgerEvent.event_id == event_id)
        if date_from is not None:
            q = q.where(col(LedgerEvent.created_at) >= query_bound(date_from, end=False))
        if date_to is not None:
            q = q.where(col(LedgerEvent.created_at) < query_bound(date_to, end=True))
        return q


def other_owner(
    s: Session,
    model: type[DecisionLog] | type[LedgerEvent],
    order_id: str,
    customer_id: str,
    unit: str = DEFAULT_UNIT,
) -> str | None:
    """A customer other than ``customer_id`` that ``model``'s rows (decisions, or ledger
    events of the ``BINDING_EVENTS`` types) name for ``order_id`` in business unit
    ``unit``, or None."""
    query = select(model.customer_id).where(
        model.business_unit == unit,
        model.order_id == order_id,
        model.customer_id != customer_id,
    )
    if model is LedgerEvent:
        query = query.where(col(LedgerEvent.type).in_(BINDING_EVENTS))
    return s.exec(query.limit(1)).first()


def order_owner(s: Session, unit: str, order_id: str, customer_id: str) -> str | None:
    """The customer other than ``customer_id`` that order ``order_id`` belongs to (by its
    reservation, decisions, invoices or cancel), or None."""
    res = s.get(Reservation, (unit, order_id))
    if res is not None and res.customer_id != customer_id:
        return res.customer_id
    return other_owner(s, DecisionLog, order_id, customer_id, unit) or other_owner(
        s, LedgerEvent, order_id, customer_id, unit
    )


def _effect(
    s: Session,
    unit: str,
    now: Any,
    cust: Customer,
    kind: str,
    order_id: str | None,
    amount: Decimal | None,
) -> dict[str, Any]:
    zero = Decimal("0.00")
    d_orders = d_recv = d_bal = unreserved = zero
    if kind == "order_cancelled":
        res = s.get(Reservation, (unit, order_id), with_for_update=True)
        if res is None or res.customer_id != cust.customer_id:
            raise EventConflict(
                f"order_id: no approved reservation of order {order_id!r} for customer "
                f"{cust.customer_id!r}"
            )
        open_part = res.amount - res.invoiced
        if res.status != "open" or open_part <= 0:
            raise EventConflict(f"order_id: order {order_id!r} is {res.status}")
        d_orders = -open_part
        res.status = "cancelled"
        res.updated_at = now
    elif kind == "invoice_issued":
        # An invoice is a receivable whatever Creditgate decided: never refused for the
        # order's state, never counted twice. The part covered by the order's open
        # reservation moves from open orders to receivables; the rest (no reservation:
        # a referred order approved by a person, an order decided elsewhere; or more
        # than was approved) is new exposure (``unreserved``), so it is never lost.
        assert amount is not None
        res = s.get(Reservation, (unit, order_id), with_for_update=True)
        if res is not None and res.customer_id != cust.customer_id:
            raise EventConflict(
                f"order_id: order {order_id!r} belongs to customer {res.customer_id!r}"
            )
        if res is None:
            # No reservation (a referred or declined order, or one never decided here):
            # the order id must still not belong to another customer, by its decisions
            # or by its earlier ledger events.
            assert order_id is not None
            owner = order_owner(s, unit, order_id, cust.customer_id)
            if owner is not None:
                raise EventConflict(f"order_id: order {order_id!r} belongs to customer {owner!r}")
        moved = zero
        if res is not None and res.status == "open":
            moved = min(amount, res.amount - res.invoiced)
            res.invoiced = res.invoiced + moved
            if res.invoiced == res.amount:
                res.status = "invoiced"
            res.updated_at = now
        d_orders = -moved
        offset = min(amount, cust.credit_balance)
        d_bal, d_recv = -offset, amount - offset
        if amount > moved:
            unreserved = amount - moved
    else:  # payment_received, credit_note: never blocked by the customer's state
        assert amount is not None
        if order_id is not None:
            owner = order_owner(s, unit, order_id, cust.customer_id)
            if owner is not None:  # cash of one customer never settles another's order
                raise EventConflict(f"order_id: order {order_id!r} belongs to customer {owner!r}")
        d_recv = -min(amount, cust.open_receivables)
        d_bal = amount + d_recv
    open_orders = cust.open_orders + d_orders
    open_receivables = cust.open_receivables + d_recv
    credit_balance = cust.credit_balance + d_bal
    grows = d_orders + d_recv > 0
    if (grows and open_orders + open_receivables >= LEDGER_LIMIT) or (
        d_bal > 0 and credit_balance >= LEDGER_LIMIT
    ):
        # beyond what a decision can read (money below 10**15): refused, nothing moved;
        # an event that lowers what is over the range (a payment) always goes through
        raise ValueError(
            f"amount: the customer's exposure (receivables {open_receivables} + open orders "
            f"{open_orders}) or credit balance ({credit_balance}) would reach 10^15; "
            "not recorded"
        )
    cust.open_orders = open_orders
    cust.open_receivables = open_receivables
    cust.credit_balance = credit_balance
    effect = {"open_orders": d_orders, "open_receivables": d_recv, "credit_balance": d_bal}
    if unreserved:
        effect["unreserved"] = unreserved
    return effect


def event_dict(row: LedgerEvent, cust: Customer, *, replayed: bool) -> dict[str, Any]:
    """The answer to a ledger event: the event, its effect and the customer's position."""
    return {
        "event_id": row.event_id,
        "type": row.type,
        "customer_id": row.customer_id,
        "order_id": row.order_id,
        "amount": row.amount,
        "currency": row.currency,
        "effect": dict(row.effect),
        "caller": row.caller,
        "recorded_at": chain.as_utc(row.created_at),
        "replayed": replayed,
        "customer": customer_dict(cust),
    }


def event_record(row: LedgerEvent) -> dict[str, Any]:
    """The hashed record of a ledger event: ``LEDGER_HASHED``, then ``business_unit`` and
    ``clock`` when they are not the default ones, plus ``record_hash``."""
    out = {f: getattr(row, f) for f in (*LEDGER_HASHED, "record_hash")}
    out["created_at"] = chain.as_utc(out["created_at"])
    if row.business_unit != DEFAULT_UNIT:
        out["business_unit"] = row.business_unit
    if row.clock is not None:
        out["clock"] = row.clock
    return out


def read_event(row: LedgerEvent) -> dict[str, Any]:
    """A ledger event as the reads show it (``GET /v1/ledger-events``, the export): the
    hashed record (``event_record``), with ``business_unit`` always and ``clock`` only when
    set. Raises ``ValueError`` when ``effect`` is not a JSON object (a value edited outside
    the service): ``read_records`` reports the event as unreadable."""
    if not isinstance(row.effect, dict):
        raise ValueError(f"effect is not a JSON object: {type(row.effect).__name__}")
    out = event_record(row)
    out["effect"] = dict(row.effect)
    out["business_unit"] = row.business_unit
    return out
