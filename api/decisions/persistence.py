"""Deciding an order and the decision log: ``Decisions.decide`` is the atomic
decide-and-record step (customer row locked, order id locked, evaluated against the ledger,
reservation and hash-chained log record written, committed — or nothing written at all);
``get``, ``search`` and ``iterate`` read the log."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from api.core import chain, chainhead
from api.core.database import Database, read_records
from api.core.types import utcnow
from api.core.values import currency_places, customer_identifier, identifier, money, plain
from api.customers.exceptions import UnknownCustomer
from api.customers.persistence import LEDGER_OWNED, RESERVED_FACTS
from api.customers.tables import Customer
from api.decisions.exceptions import OrderConflict
from api.decisions.tables import DecisionLog
from api.fx.persistence import convert
from api.ledger.persistence import other_owner
from api.ledger.tables import LedgerEvent, Reservation
from engine.decision import Decision

__all__ = [
    "CHAIN_LOCK_KEY",
    "CHAIN_LOG",
    "KINDS",
    "REPEATABLE_STATUSES",
    "Decisions",
    "log_dict",
    "query_bound",
]

KINDS = ("new", "repeat", "amended")
# Reservation statuses under which the same order again is a ``repeat``: open (also partly
# invoiced) and fully invoiced (the approved amount is still counted, now as receivables).
# A cancelled order's reservation was released: its approve no longer holds → 409.
REPEATABLE_STATUSES = ("open", "invoiced")
CHAIN_LOCK_KEY = 0x43474C4F47  # "CGLOG": pg_advisory_xact_lock key of the decision log chain
CHAIN_LOG = "decision_log"  # chain_head.name of the decision log


class Decisions:
    """The decisions and the decision log of one database."""

    def __init__(self, db: Database):
        self.db = db

    def decide(
        self,
        order: dict[str, Any],
        evaluate_fn: Callable[[dict[str, Any]], Decision],
        caller: str,
        *,
        decision_currency: str | None = None,
        minor_units: int = 2,
        today: date | None = None,
        max_rate_age_days: int | None = None,
    ) -> tuple[Decision, str]:
        """Decide ``order`` and record it, atomically; returns ``(decision, kind)`` with
        kind ``new``, ``repeat`` (same order again: the stored decision, nothing reserved)
        or ``amended`` (changed order: the previous reservation is released first).

        Raises ``UnknownCustomer``, ``ValueError`` (order does not fit: bad fields, currency
        other than the customer's), ``OrderConflict`` (a ``ValueError``: order id used by
        another customer; the order was cancelled — even the same content again is refused,
        never answered as a ``repeat``; an amendment of a (partly) invoiced order), whatever
        ``evaluate_fn`` raises (nothing is written then) and ``StoreUnavailable``.

        With ``decision_currency`` (the policy's), an order in another currency is
        converted with the latest rate on or before its ``order_date`` (default ``today``,
        else the UTC date), or the latest rate on or before today if that is higher (see
        ``_convert``): ``amount × rate`` rounded half-even to ``minor_units``; the
        engine sees the converted amount, the log row's ``fx`` keeps the original amount,
        the rate and its date. No rate → ``FxRateMissing`` (never 1:1); so is a rate more
        than ``max_rate_age_days`` days older than the order date (None: no age limit)."""
        norm = normalise_order(order)
        chash = content_hash(norm)
        order_id, customer_id = norm["order_id"], norm["customer_id"]
        request_customer = {
            k.split(".", 1)[1]: v for k, v in norm["facts"].items() if k.startswith("customer.")
        }
        with self.db.session(write=True) as s:
            cust = s.get(Customer, customer_id, with_for_update=True)
            if cust is None:
                # Never decide a customer the ledger does not hold: the caller's own credit
                # limit and exposure would be believed and nothing could be reserved.
                raise UnknownCustomer(customer_id)
            # The order id, across customers: two customers sending one order id at once
            # must not both pass the ownership check below (their customer locks differ).
            self.db.lock_order_id(s, order_id)
            fx = None
            if decision_currency is not None and norm["currency"] != decision_currency:
                current = today or datetime.now(UTC).date()
                on = date.fromisoformat(norm["order_date"]) if "order_date" in norm else current
                fx = convert(
                    s, norm, decision_currency, minor_units, on, max_rate_age_days, latest=current
                )
                norm = {**norm, "amount": fx["converted_amount"], "currency": decision_currency}
                fx = chain.jsonable(fx)
            if cust is not None:
                if norm["currency"] != cust.currency:
                    raise ValueError(
                        f"order currency {norm['currency']!r} differs from customer "
                        f"{customer_id!r}'s currency {cust.currency!r}; orders in other "
                        "currencies are not supported yet (convert first)"
                    )
                owned = [f"customer.{k}" for k in request_customer]
                held = set(LEDGER_OWNED) | {"customer.days_past_due"}
                held |= {f"customer.{k}" for k in (cust.facts or {})}
                clash = sorted(set(owned) & held)
                if clash:
                    # The order may add facts the ledger lacks, never contradict it: an
                    # order-entry caller must not clear a blacklist or overdue days.
                    raise ValueError(
                        f"facts: {', '.join(clash)} {'comes' if len(clash) == 1 else 'come'} "
                        f"from the ledger for customer "
                        f"{customer_id!r}; change them with PUT /v1/customers/{customer_id}"
                    )
            last = s.exec(
                select(DecisionLog)
                .where(DecisionLog.order_id == order_id)
                .order_by(col(DecisionLog.seq).desc())
                .limit(1)
            ).first()
            if last is not None and last.customer_id != customer_id:
                raise OrderConflict(
                    f"order {order_id!r} was decided for customer {last.customer_id!r}; "
                    "an order cannot move to another customer"
                )
            invoiced_elsewhere = other_owner(s, LedgerEvent, order_id, customer_id)
            if invoiced_elsewhere is not None:
                raise OrderConflict(
                    f"order {order_id!r} has ledger events of customer {invoiced_elsewhere!r}; "
                    "an order cannot move to another customer"
                )
            previous = s.get(Reservation, order_id, with_for_update=True)
            if previous is not None and previous.customer_id != customer_id:
                raise OrderConflict(
                    f"order {order_id!r} was decided for customer {previous.customer_id!r}; "
                    "an order cannot move to another customer"
                )
            if previous is not None and previous.status not in REPEATABLE_STATUSES:
                # Neither a repeat nor an amendment: the reservation of a cancelled order
                # was released, so its stored approve no longer holds.
                raise OrderConflict(
                    f"order {order_id!r} was {previous.status}; decide a new order id"
                )
            if last is not None and last.content_hash == chash:
                decision = Decision.model_validate(last.decision)
                append(
                    self.db,
                    s,
                    last.request,
                    decision,
                    last.decision,
                    chash,
                    caller,
                    "repeat",
                    last.fx,
                )
                return decision, "repeat"
            kind = "new" if last is None else "amended"
            if previous is not None and (previous.status != "open" or previous.invoiced != 0):
                done = (
                    "fully invoiced"
                    if previous.status == "invoiced"
                    else f"partly invoiced ({plain(previous.invoiced)} of {plain(previous.amount)})"
                )
                raise OrderConflict(
                    f"order {order_id!r} is {done}; it cannot be amended: decide a new order id"
                )
            if previous is not None:
                if cust is not None:
                    cust.open_orders = cust.open_orders - previous.amount
                s.delete(previous)
                s.flush()
            request = engine_request(norm, cust, request_customer)
            decision = evaluate_fn(request)
            if not isinstance(decision, Decision):
                raise TypeError("evaluate_fn must return a Decision")
            if decision.outcome == "approve" and cust is not None:
                s.add(
                    Reservation(
                        order_id=order_id,
                        customer_id=customer_id,
                        amount=norm["amount"],
                        decision_id=decision.decision_id,
                        content_hash=chash,
                        status="open",
                    )
                )
                cust.open_orders = cust.open_orders + norm["amount"]
                cust.updated_at = utcnow()
            decision_json = decision.model_dump(mode="json")
            append(self.db, s, request, decision, decision_json, chash, caller, kind, fx)
            return decision, kind

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """One log record by decision id; raises ``UnreadableRecord`` if it cannot be read."""
        with self.db.session(write=False) as s:
            q = select(DecisionLog).where(DecisionLog.decision_id == decision_id).limit(1)
            rows = read_records(s, q, DecisionLog, log_dict)
            return rows[0] if rows else None

    def search(
        self,
        *,
        customer_id: str | None = None,
        outcome: str | None = None,
        date_from: date | datetime | None = None,
        date_to: date | datetime | None = None,
        rule_id: str | None = None,
        policy_version: str | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Log records, newest first. ``date_from`` inclusive, ``date_to`` exclusive (a
        plain date means its whole day: to the start of the next day); ``rule_id``: the
        rule matched; ``policy_version``: the version, or the sha256. ``cursor`` is the
        ``next_cursor`` of the previous page; returns ``(rows, next_cursor or None)``."""
        limit = max(1, min(int(limit), 500))
        q = select(DecisionLog)
        if customer_id is not None:
            q = q.where(DecisionLog.customer_id == customer_id)
        if outcome is not None:
            q = q.where(DecisionLog.outcome == outcome)
        if date_from is not None:
            q = q.where(col(DecisionLog.created_at) >= query_bound(date_from, end=False))
        if date_to is not None:
            q = q.where(col(DecisionLog.created_at) < query_bound(date_to, end=True))
        if rule_id is not None:
            q = q.where(col(DecisionLog.rules_matched).contains(f" {rule_id} ", autoescape=True))
        if policy_version is not None:
            q = q.where(
                sa.or_(
                    DecisionLog.policy_version == policy_version,
                    DecisionLog.policy_sha256 == policy_version,
                )
            )
        if cursor is not None:
            q = q.where(col(DecisionLog.seq) < int(cursor))
        q = q.order_by(col(DecisionLog.seq).desc()).limit(limit + 1)
        with self.db.session(write=False) as s:
            rows = read_records(s, q, DecisionLog, log_dict)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["seq"] if more else None)

    def iterate(
        self,
        *,
        customer_id: str | None = None,
        date_from: date | datetime | None = None,
        date_to: date | datetime | None = None,
        batch: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every log record in ``seq`` order, read in batches of ``batch`` (one short read
        transaction each, keyset pagination on ``seq``). A record that cannot be read raises
        ``UnreadableRecord`` before any record of its batch is yielded (so an unreadable
        record in the first batch fails before anything is sent): never a silent end."""
        after = 0
        while True:
            q = select(DecisionLog).where(col(DecisionLog.seq) > after)
            if customer_id is not None:
                q = q.where(DecisionLog.customer_id == customer_id)
            if date_from is not None:
                q = q.where(col(DecisionLog.created_at) >= query_bound(date_from, end=False))
            if date_to is not None:
                q = q.where(col(DecisionLog.created_at) < query_bound(date_to, end=True))
            with self.db.session(write=False) as s:
                q = q.order_by(col(DecisionLog.seq)).limit(batch)
                page = read_records(s, q, DecisionLog, log_dict)
            yield from page
            if not page:
                return
            after = page[-1]["seq"]

    # -- API keys -------------------------------------------------------------------------


def normalise_order(order: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(order, dict):
        raise ValueError("an order is an object")
    unknown = set(order) - {
        "order_id",
        "customer_id",
        "amount",
        "currency",
        "payment_term_days",
        "facts",
        "order_date",
    }
    if unknown:
        raise ValueError(f"unknown order fields: {sorted(unknown)}")
    for key in ("order_id", "customer_id", "amount", "currency", "payment_term_days"):
        if order.get(key) is None:
            raise ValueError(f"order: {key} is required")
    term = order["payment_term_days"]
    if isinstance(term, bool) or not isinstance(term, int | str | Decimal):
        raise ValueError("payment_term_days: a whole number of days")
    facts = order.get("facts") or {}
    if not isinstance(facts, dict):
        raise ValueError("facts: an object of policy inputs such as 'customer.risk_class'")
    for key in facts:
        if not isinstance(key, str) or key.count(".") != 1:
            raise ValueError(f"facts: {key!r} is not a policy input name (group.name)")
        if key in RESERVED_FACTS:
            raise ValueError(f"facts: {key!r} is given at the top level of the order")
    currency = order["currency"]
    if not isinstance(currency, str):
        raise ValueError("currency: an ISO 4217 code such as 'EUR'")
    # The order currency's own minor unit (KWD 1.234, JPY 150000): the original amount
    # of a converted order keeps it (fx.original_amount).
    amount = money(order["amount"], "amount", currency_places(currency), currency)
    out = {
        "order_id": identifier(order["order_id"], "order_id"),
        "customer_id": customer_identifier(order["customer_id"]),
        "amount": amount,
        "currency": currency,
        "payment_term_days": term,
        "facts": dict(facts),
    }
    if order.get("order_date") is not None:
        od = order["order_date"]
        if isinstance(od, str):
            try:
                od = date.fromisoformat(od)
            except ValueError:
                raise ValueError("order_date: a date such as 2026-11-29") from None
        if not isinstance(od, date) or isinstance(od, datetime):
            raise ValueError("order_date: a date such as 2026-11-29")
        out["order_date"] = od.isoformat()  # part of the content hash only when given
    return out


def content_hash(norm: dict[str, Any]) -> str:
    """The idempotency key of a normalised order: sha256 of its canonical JSON."""

    # Numbers compare by value ("100" and "100.00" are the same order).
    def canon(v: Any) -> Any:
        if isinstance(v, Decimal):
            return plain(v.normalize())
        if isinstance(v, dict):
            return {k: canon(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        return v

    return chain.content_hash(canon(norm))


def engine_request(
    norm: dict[str, Any], cust: Customer | None, request_customer: dict[str, Any]
) -> dict[str, Any]:
    """The engine request, nested by group: ledger facts, then the order's facts
    (request values win), then the order itself; exposure = open receivables + open
    orders (this order's previous reservation already released)."""
    customer: dict[str, Any] = {}
    if cust is not None:
        customer.update(cust.facts or {})
        customer["days_past_due"] = cust.days_past_due
    customer.update(request_customer)
    if cust is not None:
        customer["credit_limit"] = plain(cust.credit_limit)
        customer["exposure"] = plain(cust.open_receivables + cust.open_orders)
    customer["id"] = norm["customer_id"]
    groups: dict[str, dict[str, Any]] = {"order": {}, "customer": customer}
    for key, value in norm["facts"].items():
        group, name = key.split(".", 1)
        if group != "customer":
            groups.setdefault(group, {})[name] = value
    groups["order"].update(
        {
            "id": norm["order_id"],
            "amount": plain(norm["amount"]),
            "currency": norm["currency"],
            "payment_term_days": norm["payment_term_days"],
        }
    )
    return chain.jsonable(groups)


def append(
    db: Database,
    s: Session,
    request: dict[str, Any],
    decision: Decision,
    decision_json: dict[str, Any],
    chash: str,
    caller: str,
    kind: str,
    fx: dict[str, Any] | None = None,
) -> DecisionLog:
    """Append one hash-chained record. The chain lock (PostgreSQL advisory transaction
    lock; SQLite: the write lock of BEGIN IMMEDIATE) makes the read of the last record
    and the insert one step, so no two records chain to the same predecessor."""
    last_seq, prev = chainhead.position(db, s, CHAIN_LOG, DecisionLog, CHAIN_LOCK_KEY)
    seq = last_seq + 1
    matched = [r.rule_id for r in decision.trail.rules if r.matched]
    record: dict[str, Any] = {
        "seq": seq,
        "decision_id": decision.decision_id if kind != "repeat" else str(uuid.uuid4()),
        "order_id": decision.order_id or request["order"]["id"],
        "customer_id": decision.customer_id or request["customer"]["id"],
        "outcome": decision.outcome,
        "policy_id": decision.policy.id,
        "policy_version": decision.policy.version,
        "policy_sha256": decision.policy.sha256,
        "request": chain.jsonable(request),
        "decision": chain.jsonable(decision_json),
        "rules_matched": " " + " ".join(matched) + " " if matched else "",
        "content_hash": chash,
        "caller": caller,
        "kind": kind,
        "created_at": datetime.now(UTC),
        "prev_hash": prev,
    }
    if fx is not None:  # a null fx is left out of the hashed record (older records)
        record["fx"] = chain.jsonable(fx)
    record["record_hash"] = chain.record_hash(prev, record)
    row = DecisionLog(**record)
    s.add(row)
    chainhead.set_head(s, CHAIN_LOG, seq, record["record_hash"])
    s.flush()
    return row


def log_dict(row: DecisionLog) -> dict[str, Any]:
    out = {c: getattr(row, c) for c in DecisionLog.__table__.columns.keys()}  # noqa: SIM118
    out["created_at"] = chain.as_utc(out["created_at"])
    if out.get("fx") is None:
        out.pop("fx", None)
    return out


def query_bound(value: date | datetime, *, end: bool) -> datetime:
    """A ``from`` (``end=False``, inclusive) or ``to`` (``end=True``, exclusive) bound on
    ``created_at`` as an aware UTC datetime. A plain date means its whole day: as ``to``, up
    to the start of the next day; ``to=9999-12-31`` is clamped to the last representable
    instant. Raises ``OverflowError`` for a date-time whose UTC time is outside years
    1..9999 (``0001-01-01T00:00:00+05:00``, ``9999-12-31T23:00:00-05:00``)."""
    if isinstance(value, datetime):
        return chain.as_utc(value)
    if end and value == date.max:
        return datetime.max.replace(tzinfo=UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time.min, tzinfo=UTC)


_as_datetime = query_bound
