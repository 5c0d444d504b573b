"""Audit: walk both hash chains (the decision log and the ledger events) up to their stored
heads, and check the ledger state the chains do not cover against itself
(``Audit.verify_chain``; ``creditgate audit verify`` and ``GET /v1/audit/verify``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, select

from api.core import chain
from api.core.chainhead import ChainHead
from api.core.database import READ_ERRORS, Database, UnreadableRecord, read_cause, read_records
from api.core.types import CENTS
from api.core.values import plain
from api.customers.history import CHAIN_HISTORY, history_record
from api.customers.tables import Customer, CustomerHistory
from api.decisions.deciding import CHAIN_LOG
from api.decisions.records import hash_matches, raw_dict
from api.decisions.tables import DecisionLog
from api.ledger.persistence import CHAIN_LEDGER, event_record
from api.ledger.tables import LedgerEvent, Reservation
from api.policies.persistence import policy_text_matches
from api.policies.tables import PolicyVersion

__all__ = ["CHAINS", "MAX_PROBLEMS", "Audit"]

MAX_PROBLEMS = 100  # consistency problems listed by verify_consistency (all are counted)


# The three hash chains: chain_head.name → (label, chained table)
CHAINS: dict[str, tuple[str, Any]] = {
    CHAIN_LOG: ("decision log", DecisionLog),
    CHAIN_LEDGER: ("ledger events", LedgerEvent),
    CHAIN_HISTORY: ("customer history", CustomerHistory),
}


class Audit:
    """The audit checks of one database."""

    def __init__(self, db: Database):
        self.db = db

    def chain_heads(self, batch: int = 1000) -> dict[str, dict[str, Any]]:
        """The three chains walked as ``verify_chain`` does (without the consistency
        checks), keyed by ``chain_head.name``: what ``creditgate audit anchor`` anchors.
        Raises ``StoreUnavailable``."""
        return {
            CHAIN_LOG: self._verify_one(CHAIN_LOG, DecisionLog, raw_dict, hash_matches, batch),
            CHAIN_LEDGER: self._verify_one(CHAIN_LEDGER, LedgerEvent, event_record, None, batch),
            CHAIN_HISTORY: self._verify_one(
                CHAIN_HISTORY, CustomerHistory, history_record, None, batch
            ),
        }

    def records_at(self, name: str, seqs: set[int], batch: int = 500) -> dict[int, str]:
        """``seq → record_hash`` of chain ``name``'s records at ``seqs`` (a seq without a
        record is left out): the anchored heads, checked by ``audit verify --anchors``.
        Raises ``StoreUnavailable``."""
        t = CHAINS[name][1].__table__.c
        wanted, found = sorted(seqs), {}
        with self.db.session(write=False) as s:
            for i in range(0, len(wanted), batch):
                q = sa.select(t.seq, t.record_hash).where(
                    t.business_unit == self.db.unit, t.seq.in_(wanted[i : i + batch])
                )
                found.update({int(seq): h for seq, h in s.execute(q)})
        return found

    def verify_chain(self, batch: int = 1000) -> dict[str, Any]:
        """Check both hash chains, the decision log and the ledger events: contiguous
        ``seq`` from 1, every ``prev_hash`` link, every ``record_hash``, and that the last
        record is the stored chain head (deleted newest records or an emptied table are
        reported; so is a missing head while records exist).

        The customer history (``customer_history``: every change of a customer's master
        data) is walked the same way.

        Returns ``{ok, checked, first_broken_seq, reason, head_seq, head_hash, ledger,
        customer_history, consistency}``:
        ``checked`` (records found intact), ``first_broken_seq``, ``reason`` (None when
        intact), ``head_seq`` / ``head_hash`` (the stored head, None without one; write
        them to an external log to anchor the chain) are the decision log's; ``ledger`` has
        the same keys (and ``ok``) for the ledger events, ``customer_history`` for the
        customer history. ``ok`` is true only if every chain is intact and the ledger is
        consistent. Raises ``StoreUnavailable``."""
        log = self._verify_one(CHAIN_LOG, DecisionLog, raw_dict, hash_matches, batch)
        ledger = self._verify_one(CHAIN_LEDGER, LedgerEvent, event_record, None, batch)
        history = self._verify_one(
            CHAIN_HISTORY, CustomerHistory, history_record, None, batch
        )
        consistency = self.verify_consistency()
        ok = log["ok"] and ledger["ok"] and history["ok"] and consistency["ok"]
        return {
            **log,
            "ok": ok,
            "ledger": ledger,
            "customer_history": history,
            "consistency": consistency,
        }

    def verify_consistency(self) -> dict[str, Any]:
        """State the hash chains do not cover, checked against itself:

        - ``open_orders``: every customer's ``open_orders`` equals the sum of the open parts
          (``amount - invoiced``) of its reservations in status ``open``, and no open
          reservation belongs to a customer that does not exist;
        - ``policy_source``: every stored policy text hashes (sha256 of its UTF-8 bytes, as
          ``rules.loader`` computes ``Policy.sha256``) to its key;
        - ``policy_missing``: every policy the decision log names has a stored text;
        - ``reservations``: every reservation agrees with its order's chained ledger events
          and every approved order has one (``_check_reservations``), and points to a
          decision the log holds, of its order (``_check_decisions``);
        - ``decisions_missing``: per customer, its reservations and the ledger events that
          can only follow a logged approval (an ``order_cancelled``, an ``invoice_issued``
          that moved open orders) naming decisions the log does not hold: the trace of a
          decision log cut back or deleted, with its head rewritten (``_check_decisions``).

        Returns ``{ok, customers, policy_versions, problems, problems_total}``: the counts
        checked and the first ``MAX_PROBLEMS`` problems ``{check, customer_id | sha256 |
        order_id, message}``. Each check is one SQL statement (one snapshot), so a
        concurrent decision is never reported as a mismatch. Not covered (not chained, no
        invariant to check against): ``credit_limit``, ``open_receivables``,
        ``credit_balance``, ``days_past_due`` and the facts of a customer, the FX rates, the
        API keys."""
        problems: list[dict[str, Any]] = []
        customers, policies = self._check_open_orders(problems), self._check_policies(problems)
        self._check_reservations(problems)
        self._check_decisions(problems)
        return {
            "ok": not problems,
            "customers": customers,
            "policy_versions": policies,
            "problems": problems[:MAX_PROBLEMS],
            "problems_total": len(problems),
        }

    def _check_open_orders(self, problems: list[dict[str, Any]]) -> int:
        c, r = Customer.__table__.c, Reservation.__table__.c
        unit = self.db.unit
        # Amounts as text, parsed below: an unreadable value is reported, not raised.
        text, none = (lambda x: sa.cast(x, sa.String)), sa.null()
        q = sa.union_all(
            sa.select(c.customer_id, sa.literal(1), text(c.open_orders), none, none).where(
                c.business_unit == unit
            ),
            sa.select(r.customer_id, sa.literal(2), none, text(r.amount), text(r.invoiced)).where(
                r.business_unit == unit, r.status == "open"
            ),
        )
        booked: dict[str, Decimal] = {}  # customer id → its open_orders
        reserved: dict[str, Decimal] = {}
        unreadable: dict[str, str] = {}
        with self.db.session(write=False) as s:
            for cid, kind, open_orders, amount, invoiced in s.execute(q):
                try:
                    if kind == 1:
                        booked[cid] = Decimal(open_orders)
                    else:
                        reserved[cid] = reserved.get(cid, CENTS * 0) + (
                            Decimal(amount) - Decimal(invoiced or 0)
                        )
                except READ_ERRORS as e:
                    unreadable.setdefault(cid, read_cause(e))
        for cid in sorted(set(booked) | set(reserved) | set(unreadable)):
            if cid in unreadable:
                message = f"a stored amount cannot be read ({unreadable[cid]})"
            elif cid not in booked:
                message = f"open reservations of {plain(reserved[cid])} but no such customer"
            elif booked[cid] != reserved.get(cid, CENTS * 0):
                message = (
                    f"open_orders is {plain(booked[cid])} but its open reservations add up "
                    f"to {plain(reserved.get(cid, CENTS * 0))}"
                )
            else:
                continue
            problems.append({"check": "open_orders", "customer_id": cid, "message": message})
        return len(booked)

    def _check_policies(self, problems: list[dict[str, Any]]) -> int:
        t = PolicyVersion.__table__.c
        unit = self.db.unit
        n = 0
        with self.db.session(write=False) as s:
            texts = sa.select(t.sha256, t.source).where(t.business_unit == unit).order_by(t.sha256)
            for sha, source in s.execute(texts):
                n += 1
                if not policy_text_matches(sha, source):
                    problems.append(
                        {
                            "check": "policy_source",
                            "sha256": sha,
                            "message": "the stored policy text does not hash to its sha256: "
                            "it was changed after it was recorded",
                        }
                    )
            # Every policy the log's records name must be stored: replay needs its text.
            d = DecisionLog.__table__.c
            missing = (
                sa.select(d.policy_sha256, sa.func.count())
                .select_from(
                    DecisionLog.__table__.outerjoin(
                        PolicyVersion.__table__,
                        sa.and_(t.business_unit == d.business_unit, t.sha256 == d.policy_sha256),
                    )
                )
                .where(d.business_unit == unit, t.sha256.is_(None))
                .group_by(d.policy_sha256)
                .order_by(d.policy_sha256)
            )
            for sha, records in s.execute(missing):
                problems.append(
                    {
                        "check": "policy_missing",
                        "sha256": sha,
                        "message": f"no stored policy text, but {records} decision log "
                        f"record{'s' if records != 1 else ''} name it: "
                        f"{'they' if records != 1 else 'it'} cannot be replayed",
                    }
                )
        return n

    def _check_reservations(self, problems: list[dict[str, Any]]) -> None:
        """Every reservation against the chained ledger events of its order (one SQL
        statement): an ``order_cancelled`` event ↔ status ``cancelled``; ``invoiced`` = the
        sum of the amounts its ``invoice_issued`` events moved off open orders (``-
        effect.open_orders``), or the order's amount capped by its invoices before the
        cancel (all, without one) — what an approval that took over invoices posted before
        it leaves, which their effects could not know (README "Exposure: each order
        counted once"; reservations written before that rule have the first); status
        ``invoiced`` exactly when that is the whole amount (and not cancelled); events and
        reservation of one customer. And every order whose latest new or amended decision
        is an approve has a reservation."""
        r, e, d = Reservation.__table__.c, LedgerEvent.__table__.c, DecisionLog.__table__.c
        unit = self.db.unit
        text, none = (lambda x: sa.cast(x, sa.String)), sa.null()
        latest = (
            sa.select(d.order_id, sa.func.max(d.seq).label("seq"))
            .where(d.business_unit == unit, d.kind.in_(("new", "amended")))
            .group_by(d.order_id)
            .subquery()
        )
        q = sa.union_all(
            sa.select(
                sa.literal(1),
                r.order_id,
                r.customer_id,
                r.status,
                text(r.amount),
                text(r.invoiced),
                none,
            ).where(r.business_unit == unit),
            sa.select(  # an event's seq and amount in the reservation's amount columns
                sa.literal(2),
                e.order_id,
                e.customer_id,
                e.type,
                text(e.seq),
                text(e.amount),
                text(e.effect),
            ).where(
                e.business_unit == unit,
                e.order_id.is_not(None),
                e.type.in_(("order_cancelled", "invoice_issued")),
            ),
            sa.select(sa.literal(3), d.order_id, d.customer_id, text(d.seq), none, none, none)
            .select_from(DecisionLog.__table__.join(latest, latest.c.seq == d.seq))
            .where(
                d.business_unit == unit,
                d.outcome == "approve",
                ~sa.exists().where(r.business_unit == unit, r.order_id == d.order_id),
            ),
        )
        zero = Decimal("0.00")
        res: dict[str, tuple[str, str, str, str]] = {}  # order → customer, status, amounts
        cancelled: dict[str, int] = {}
        moved: dict[str, Decimal] = {}
        # per order, its invoices and cancels in chain order: (seq, type, amount)
        chained: dict[str, list[tuple[int, str, Decimal]]] = {}
        owners: dict[str, set[str]] = {}
        unreserved_approve: dict[str, tuple[str, str]] = {}
        found: dict[str, list[str]] = {}
        customer_of: dict[str, str] = {}
        with self.db.session(write=False) as s:
            for kind, oid, cid, what, amount, invoiced, effect in s.execute(q):
                customer_of.setdefault(oid, cid)
                if kind == 1:
                    res[oid] = (cid, what, amount, invoiced)
                elif kind == 3:
                    unreserved_approve[oid] = (cid, what)
                else:
                    owners.setdefault(oid, set()).add(cid)
                    if what == "order_cancelled":
                        cancelled[oid] = cancelled.get(oid, 0) + 1
                        chained.setdefault(oid, []).append((int(amount), what, zero))
                        continue
                    try:
                        m = -Decimal(str(json.loads(effect)["open_orders"]))
                        billed = Decimal(invoiced)
                    except (*READ_ERRORS, json.JSONDecodeError) as ex:
                        found.setdefault(oid, []).append(
                            f"an invoice_issued event's effect cannot be read ({read_cause(ex)})"
                        )
                        continue
                    moved[oid] = moved.get(oid, zero) + m
                    chained.setdefault(oid, []).append((int(amount), what, billed))
        for oid in sorted(set(res) | set(cancelled) | set(moved) | set(unreserved_approve)):
            msgs = found.setdefault(oid, [])
            inv = moved.get(oid, zero)
            if oid in unreserved_approve:
                cid, seq = unreserved_approve[oid]
                msgs.append(f"approved (decision log seq {seq}) but it has no reservation")
            if oid not in res:
                if oid in cancelled:
                    msgs.append("an order_cancelled event but no reservation")
                if inv:
                    msgs.append(f"invoice_issued events moved {plain(inv)} but no reservation")
                continue
            cid, status, amount_text, invoiced_text = res[oid]
            customer_of[oid] = cid
            other = sorted(owners.get(oid, set()) - {cid})
            if other:
                msgs.append(f"ledger events of another customer ({', '.join(other)})")
            try:
                amount, invoiced = Decimal(amount_text), Decimal(invoiced_text)
            except READ_ERRORS as ex:
                msgs.append(f"a stored amount cannot be read ({read_cause(ex)})")
                continue
            # An approval reserves only the part not yet invoiced (counted once): the
            # invoices before the cancel, capped by the amount, are then the invoiced part.
            billed = zero
            for _, what, value in sorted(chained.get(oid, [])):
                if what == "order_cancelled":
                    break
                billed += value
            covered = min(amount, billed)
            if invoiced in (inv, covered):
                inv = invoiced
            else:
                also = "" if covered == inv else f" (or cover {plain(covered)} of the amount)"
                msgs.append(
                    f"invoiced is {plain(invoiced)} but its invoice_issued events moved "
                    f"{plain(inv)}{also}"
                )
            if oid in cancelled:
                expected = "cancelled"
            else:
                expected = "invoiced" if inv == amount else "open"
            if status != expected:
                why = (
                    "it has an order_cancelled event"
                    if oid in cancelled
                    else f"no order_cancelled event, {plain(inv)} of {plain(amount)} invoiced"
                )
                msgs.append(f"status is {status!r} but {why}: expected {expected!r}")
        for oid in sorted(found):
            if found[oid]:
                problems.append(
                    {
                        "check": "reservations",
                        "order_id": oid,
                        "customer_id": customer_of.get(oid),
                        "message": "; ".join(found[oid]),
                    }
                )

    def _check_decisions(self, problems: list[dict[str, Any]]) -> None:
        """Every reservation (any status: each was made by an approval) points to a
        decision-log record with its ``decision_id``, of its order; every ``order_cancelled``
        event and every ``invoice_issued`` event that moved open orders (both need a
        reservation, so an approval) names an order the log holds a decision of. One
        ``reservations`` problem per reservation, one ``decisions_missing`` problem per
        customer with the counts. Each query is one statement: a reservation and its
        decision are committed together, an event after the decision."""
        r, e, d = Reservation.__table__.c, LedgerEvent.__table__.c, DecisionLog.__table__.c
        unit = self.db.unit
        res_q = (
            sa.select(r.order_id, r.customer_id, r.decision_id, d.order_id)
            .select_from(
                Reservation.__table__.outerjoin(
                    DecisionLog.__table__,
                    sa.and_(d.business_unit == r.business_unit, d.decision_id == r.decision_id),
                )
            )
            .where(
                r.business_unit == unit,
                sa.or_(d.decision_id.is_(None), d.order_id != r.order_id),
            )
            .order_by(r.order_id)
        )
        ev_q = (
            sa.select(e.customer_id, e.type, sa.cast(e.effect, sa.String))
            .where(
                e.business_unit == unit,
                e.order_id.is_not(None),
                e.type.in_(("order_cancelled", "invoice_issued")),
                ~sa.exists().where(d.business_unit == unit, d.order_id == e.order_id),
            )
            .order_by(e.seq)
        )
        reservations: dict[str, int] = {}
        events: dict[str, int] = {}
        with self.db.session(write=False) as s:
            for oid, cid, did, logged_order in s.execute(res_q):
                if logged_order is None:
                    reservations[cid] = reservations.get(cid, 0) + 1
                held = (
                    "which the log does not hold"
                    if logged_order is None
                    else f"which the log holds for order {logged_order}"
                )
                problems.append(
                    {
                        "check": "reservations",
                        "order_id": oid,
                        "customer_id": cid,
                        "message": f"reservation of order {oid} points to decision {did}, "
                        f"{held}",
                    }
                )
            for cid, kind, effect in s.execute(ev_q):
                if kind == "invoice_issued":
                    try:
                        if Decimal(str(json.loads(effect)["open_orders"])) >= 0:
                            continue  # moved no reservation: an order decided elsewhere
                    except (*READ_ERRORS, json.JSONDecodeError):
                        continue  # unreadable: reported by _check_reservations
                events[cid] = events.get(cid, 0) + 1
        for cid in sorted(set(reservations) | set(events)):
            counts = (
                (events.get(cid, 0), "ledger event"),
                (reservations.get(cid, 0), "reservation"),
            )
            parts = [f"{n} {noun}{'s' if n != 1 else ''}" for n, noun in counts if n]
            problems.append(
                {
                    "check": "decisions_missing",
                    "customer_id": cid,
                    "message": f"customer {cid} has {' and '.join(parts)} naming decisions "
                    "the log does not hold",
                }
            )

    def _verify_one(
        self,
        name: str,
        model: type[DecisionLog] | type[LedgerEvent] | type[CustomerHistory],
        as_record: Callable[[Any], dict[str, Any]],
        matches: Callable[[Any], bool] | None,
        batch: int,
    ) -> dict[str, Any]:
        """One chain, read in pages of ``batch`` (short read transactions, keyset on
        ``seq``), each record's hash checked by ``matches``. The head is read after the last
        page; records appended meanwhile are walked too, so a live service is never
        reported broken."""
        walker = chain.ChainWalker(matches)
        unit = self.db.unit
        unreadable: list[UnreadableRecord] = []

        def page(after: int) -> list[dict[str, Any]]:
            with self.db.session(write=False) as s:
                q = (
                    select(model)
                    .where(model.business_unit == unit, col(model.seq) > after)
                    .order_by(col(model.seq))
                )
                try:
                    return read_records(s, q.limit(batch), model, as_record)
                except UnreadableRecord as e:
                    unreadable.append(e)  # checked after the readable records before it
                    return e.readable

        def read_head() -> tuple[int, str] | None:
            with self.db.session(write=False) as s:
                h = s.get(ChainHead, (unit, name))
                return (h.seq, h.record_hash) if h is not None else None

        def moved_clock() -> int:
            with self.db.session(write=False) as s:
                return s.exec(
                    select(func.count())
                    .select_from(model)
                    .where(model.business_unit == unit, col(model.clock).is_not(None))
                ).one()

        def result(head: tuple[int, str] | None, broken: int | None, reason: str | None):
            return {
                "ok": reason is None,
                "checked": walker.checked,
                "first_broken_seq": broken,
                "reason": reason,
                "head_seq": head[0] if head else None,
                "head_hash": head[1] if head else None,
                "moved_clock": moved_clock(),
            }

        while True:
            rows = page(walker.last_seq)
            if not rows and not unreadable:
                head = read_head()
                if head is not None and head[0] > walker.last_seq:
                    rows = page(walker.last_seq)  # appended since the last page?
                if not rows and not unreadable:
                    mismatch = chain.head_mismatch(walker.last_seq, walker.last_hash, head)
                    return result(head, *(mismatch or (None, None)))
            for rec in rows:
                reason = walker.feed(rec)
                if reason is not None:
                    return result(read_head(), rec["seq"], reason)
            if unreadable:
                bad = unreadable[0]
                seq = bad.seq if bad.seq is not None else walker.last_seq + 1
                reason = (
                    f"sequence gap: expected seq {walker.last_seq + 1}, found {seq}"
                    if seq > walker.last_seq + 1
                    else f"the record cannot be read ({bad.cause})"
                )
                return result(read_head(), seq, reason)

    # -- FX rates -------------------------------------------------------------------------
