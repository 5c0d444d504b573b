"""The decide-and-record transaction: ``decide_batch(db, jobs)`` decides one or more orders
against the ledger and records each in the hash-chained decision log, in ONE transaction,
on SQLAlchemy Core with only the columns it needs.

Per batch, whatever its size (statements on PostgreSQL; SQLite has no lock statement):

1. lock and read the customers' positions (``SELECT ... FOR UPDATE``, customer-id order);
2. lock the order ids (one advisory-lock statement, lock-key order; PostgreSQL only);
3. read the orders' state: last decision, reservation, the order's invoices and cancels
   (their customers and amounts; one ``UNION ALL``);
4. per job, in arrival order, in memory: checks, conversion (an order in another currency
   reads its rates), evaluation, the new record (hashed envelope, ``records``); a job that
   fails leaves nothing behind and the others go on;
5. the writes, each one ``executemany``: reservations deleted / updated / inserted,
   customers' open orders; then the chain head (one ``SELECT ... FOR UPDATE``, the only
   read of the head, taken last so it is held the shortest time), the records' ``seq`` and
   hashes, the log records and the head.

Lock order (``api.core.database``): customers, order ids, then the chain, last. A record
whose ``seq`` already exists (records beyond an edited-back head) fails the insert on the
primary key: ``ChainBroken``, nothing written.

Every job is answered only after the batch's commit (``api.decisions.writer``); a failure of
the transaction itself (database unavailable, chain broken) fails every job of the batch:
nothing of it was recorded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import exc
from sqlmodel import Session

from api.core import chain
from api.core.chainhead import ChainBroken
from api.core.database import ORDER_LOCK_NS, Database, StoreUnavailable
from api.core.values import currency_places, customer_identifier, identifier, money, plain
from api.customers.exceptions import UnknownCustomer
from api.customers.persistence import LEDGER_OWNED, RESERVED_FACTS
from api.decisions import records
from api.decisions.exceptions import OrderConflict
from api.decisions.statements import Sql, driver_errors
from api.fx.persistence import convert
from engine.decision import Decision

__all__ = [
    "CHAIN_LOG",
    "REPEATABLE_STATUSES",
    "DecideJob",
    "Decided",
    "content_hash",
    "decide_batch",
    "normalise_order",
]

# Reservation statuses under which the same order again is a ``repeat``: open (also partly
# invoiced) and fully invoiced (the approved amount is still counted, now as receivables).
# A cancelled order's reservation was released: its approve no longer holds → 409.
REPEATABLE_STATUSES = ("open", "invoiced")
CHAIN_LOG = "decision_log"  # chain_head.name of the decision log
ZERO = Decimal("0.00")


@dataclass
class DecideJob:
    """One order to decide: the order (``normalise_order`` fields), the evaluation under
    the policy in force, the caller (recorded), and the conversion settings: the policy
    currency (``decision_currency``, None: no conversion), its ``minor_units``, ``today``
    (None: the database clock's) and ``max_rate_age_days`` (None: no limit)."""

    order: dict[str, Any]
    evaluate: Callable[[dict[str, Any]], Decision]
    caller: str
    decision_currency: str | None = None
    minor_units: int = 2
    today: date | None = None
    max_rate_age_days: int | None = None


@dataclass
class Decided:
    """A recorded decision: ``kind`` (``new``, ``repeat``, ``amended``), ``body`` (the
    decision's JSON, as stored and answered; a repeat's is the original's), ``fx`` (the
    conversion's JSON, or None), the ``decision_id`` answered (a repeat answers the
    original's), ``outcome`` and ``policy_version``."""

    kind: str
    body: bytes
    fx: bytes | None
    decision_id: str
    outcome: str
    policy_version: str
    evaluated: Decision | None = None

    @property
    def decision(self) -> Decision:
        """The decision as a model (the evaluated one; a repeat's parsed from its body)."""
        if self.evaluated is None:
            self.evaluated = Decision.model_validate_json(self.body)
        return self.evaluated

    def response(self) -> bytes:
        """The answer of ``POST /v1/decisions``: the stored body with ``kind`` (and ``fx``
        for a converted order) put in front, without serialising the decision again."""
        lead = b'{"kind":"' + self.kind.encode() + b'",'
        if self.fx is not None:
            lead += b'"fx":' + self.fx + b","
        return lead + self.body[1:]


@dataclass
class _Position:
    """A customer's position as the batch holds it (``open_orders`` moves in memory)."""

    currency: str
    credit_limit: Decimal
    open_receivables: Decimal
    open_orders: Decimal
    days_past_due: int
    facts: dict[str, Any]
    changed: bool = False


@dataclass
class _Last:
    """The last decision-log record of an order: its ``seq`` when read from the log, its
    ``texts`` (request, decision, fx, outcome, policy columns) once read or written by this
    batch: enough to answer and record a repeat."""

    customer_id: str
    content_hash: str
    seq: int | None = None
    texts: dict[str, Any] | None = None


@dataclass
class _Reservation:
    customer_id: str
    amount: Decimal
    invoiced: Decimal
    status: str
    decision_id: str = ""
    content_hash: str = ""


@dataclass
class _Order:
    last: _Last | None = None
    reservation: _Reservation | None = None
    had_reservation: bool = False
    changed: bool = False  # the reservation was replaced or released by this batch
    event_customers: set[str] = field(default_factory=set)
    # The amounts of the order's invoices, by the customer they were posted to.
    invoiced_by: dict[str, Decimal] = field(default_factory=dict)


def normalise_order(order: dict[str, Any]) -> dict[str, Any]:
    """The order's fields checked and normalised (the last check behind the request model);
    raises ``ValueError`` (``field: why``). Binary floats are refused here, at the input
    boundary: every number is an exact ``Decimal``, ``int`` or text from then on."""
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
    for key, value in facts.items():
        if not isinstance(key, str) or key.count(".") != 1:
            raise ValueError(f"facts: {key!r} is not a policy input name (group.name)")
        if key in RESERVED_FACTS:
            raise ValueError(f"facts: {key!r} is given at the top level of the order")
        _no_float(value, f"facts.{key}")
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


def _no_float(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise ValueError(f"{path}: binary float {value!r} is not allowed; send numbers as text")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_float(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _no_float(v, f"{path}[{i}]")


def content_hash(norm: dict[str, Any]) -> str:
    """The idempotency key of a normalised order: sha256 of its canonical JSON, numbers
    compared by value (``"100"`` and ``"100.00"`` are the same order)."""

    def canon(v: Any) -> Any:
        if isinstance(v, Decimal):
            return plain(v.normalize())
        if isinstance(v, dict):
            return {k: canon(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        return v

    return chain.content_hash(canon(norm))


def _json_value(v: Any) -> Any:
    """``v`` as JSON data with sorted keys: Decimals as plain text (``chain.decimal_str``)."""
    if isinstance(v, Decimal):
        return plain(v)
    if isinstance(v, dict):
        return {k: _json_value(v[k]) for k in sorted(v)}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


def engine_request(
    norm: dict[str, Any],
    pos: _Position,
    open_orders: Decimal,
    request_customer: dict[str, Any],
    own_receivables: Decimal = ZERO,
) -> dict[str, Any]:
    """The engine request (JSON data, keys sorted), nested by group: ledger facts, then the
    order's facts (request values win), then the order itself; exposure = open receivables
    + ``open_orders`` (this order's previous reservation already released) - ``own_receivables``
    (the part of this order already invoiced, which the order's amount counts again)."""
    customer: dict[str, Any] = dict(pos.facts)
    customer["days_past_due"] = pos.days_past_due
    customer.update(request_customer)
    customer["credit_limit"] = plain(pos.credit_limit)
    customer["exposure"] = plain(pos.open_receivables + open_orders - own_receivables)
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
    return _json_value(groups)


def _fx_json(fx: dict[str, Any]) -> bytes:
    return orjson.dumps(_json_value(fx))


class _Batch:
    """One decide-and-record transaction over ``jobs`` (see the module docstring), on the
    transaction's DBAPI connection (``api.decisions.statements``)."""

    def __init__(self, db: Database, conn: Any, jobs: list[tuple[int, DecideJob, dict, str]]):
        self.db, self.conn = db, conn
        self.raw = conn.connection.driver_connection
        self.dbapi = conn.dialect.dbapi
        self._session: Session | None = None
        self.sql = Sql(db.dialect)
        self.unit = db.unit
        self.jobs = jobs
        self.now = db.clock.now()
        self.positions: dict[str, _Position] = {}
        self.orders: dict[str, _Order] = {}
        self.pending: list[dict[str, Any]] = []  # records to write, without seq and hashes

    @property
    def s(self) -> Session:
        """An ORM session on the batch's connection and transaction (the exchange-rate
        lookups of an order in another currency), opened when first needed."""
        if self._session is None:
            self._session = Session(bind=self.conn)
        return self._session

    def _pipeline(self) -> Any:
        """PostgreSQL: the statements run inside are sent together and answered together
        (psycopg's pipeline mode: one round trip instead of one each; results are read
        after the block). SQLite runs in process: nothing to save."""
        if self.sql.pg:
            return _driver_block(self.dbapi, self.raw.pipeline())
        return contextlib.nullcontext()

    def _run(self, sql: str, params: Any = None) -> Any:
        cur = self.raw.cursor()
        with driver_errors(self.dbapi):
            cur.execute(sql, params)
        return cur

    def _run_many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            cur = self.raw.cursor()
            with driver_errors(self.dbapi):
                cur.executemany(sql, rows)

    # -- reads ------------------------------------------------------------------------------

    def read(self) -> None:
        sql, money = self.sql, self.sql.read_money
        customer_ids = sorted({norm["customer_id"] for _, _, norm, _ in self.jobs})
        order_ids = sorted({norm["order_id"] for _, _, norm, _ in self.jobs})
        with self._pipeline():  # in this order: customers, then order ids (lock order)
            customers = self._run(*sql.customers(self.unit, customer_ids))
            # The order ids, across customers: two customers sending one order id at once
            # must not both pass the ownership checks (their customer locks differ).
            if sql.pg:
                self._run(*sql.order_locks(ORDER_LOCK_NS, order_ids))
            state = self._run(*sql.order_state(self.unit, order_ids))
        for cid, currency, limit, receivables, open_orders, dpd, facts in customers.fetchall():
            self.positions[cid] = _Position(
                currency,
                money(limit),
                money(receivables),
                money(open_orders),
                dpd,
                dict(sql.read_json(facts) or {}),
            )
        rows = state.fetchall()
        for kind, oid, cid, chash, seq, status, amount, invoiced, decision_id in rows:
            o = self.orders.setdefault(oid, _Order())
            if kind == 1:
                o.last = _Last(cid, chash, seq)
            elif kind == 2:
                o.reservation = _Reservation(
                    cid, money(amount), money(invoiced), status, decision_id, chash
                )
                o.had_reservation = True
            else:
                o.event_customers.add(cid)
                if status == "invoice_issued":
                    o.invoiced_by[cid] = o.invoiced_by.get(cid, ZERO) + money(amount)

    def last_texts(self, last: _Last) -> dict[str, Any]:
        """The stored columns of ``last`` a repeat copies (read once, when needed)."""
        if last.texts is None:
            row = self._run(self.sql.repeat_texts(), {"u": self.unit, "seq": last.seq}).fetchone()
            names = (
                "request", "decision", "fx", "outcome", "policy_id", "policy_version",
                "policy_sha256", "rules_matched",
            )  # fmt: skip
            last.texts = dict(zip(names, row, strict=True))
        return last.texts

    def chain_head(self, cursor: Any = None) -> tuple[int, str, bool]:
        """The decision log's head ``(seq, record_hash, exists)``, locked (PostgreSQL
        ``FOR UPDATE``; SQLite holds the write lock), from ``cursor`` if the statement was
        sent already. No head but records → ``ChainBroken`` (it was deleted, perhaps with
        the newest records: never papered over)."""
        if cursor is None:
            cursor = self._run(self.sql.chain_head(), {"u": self.unit, "name": CHAIN_LOG})
        row = cursor.fetchone()
        if row is not None:
            return row[0], row[1], True
        last = self._run(self.sql.last_seq(), {"u": self.unit}).fetchone()[0]
        if last is not None:
            raise ChainBroken(
                f"{CHAIN_LOG} has records (up to seq {last}) but no chain head; "
                "nothing was written: run 'creditgate audit verify'"
            )
        return 0, chain.GENESIS, False

    # -- one job ----------------------------------------------------------------------------

    def decide(self, job: DecideJob, norm: dict[str, Any], chash: str) -> Decided:
        order_id, customer_id = norm["order_id"], norm["customer_id"]
        pos = self.positions.get(customer_id)
        if pos is None:
            # Never decide a customer the ledger does not hold: the caller's own credit
            # limit and exposure would be believed and nothing could be reserved.
            raise UnknownCustomer(customer_id)
        request_customer = {
            k.split(".", 1)[1]: v for k, v in norm["facts"].items() if k.startswith("customer.")
        }
        fx = None
        if job.decision_currency is not None and norm["currency"] != job.decision_currency:
            current = job.today or self.db.clock.today()
            on = date.fromisoformat(norm["order_date"]) if "order_date" in norm else current
            conversion = convert(
                self.s,
                norm,
                job.decision_currency,
                job.minor_units,
                on,
                job.max_rate_age_days,
                latest=current,
                unit=self.unit,
            )
            norm = {
                **norm,
                "amount": conversion["converted_amount"],
                "currency": job.decision_currency,
            }
            fx = _fx_json(conversion)
        if norm["currency"] != pos.currency:
            raise ValueError(
                f"order currency {norm['currency']!r} differs from customer "
                f"{customer_id!r}'s currency {pos.currency!r}; orders in other "
                "currencies are not supported yet (convert first)"
            )
        owned = [f"customer.{k}" for k in request_customer]
        held = set(LEDGER_OWNED) | {"customer.days_past_due"}
        held |= {f"customer.{k}" for k in pos.facts}
        clash = sorted(set(owned) & held)
        if clash:
            # The order may add facts the ledger lacks, never contradict it: an
            # order-entry caller must not clear a blacklist or overdue days.
            raise ValueError(
                f"facts: {', '.join(clash)} {'comes' if len(clash) == 1 else 'come'} "
                f"from the ledger for customer "
                f"{customer_id!r}; change them with PATCH /v1/customers/{customer_id}"
            )
        o = self.orders.setdefault(order_id, _Order())
        last, previous = o.last, o.reservation
        if last is not None and last.customer_id != customer_id:
            raise OrderConflict(
                f"order {order_id!r} was decided for customer {last.customer_id!r}; "
                "an order cannot move to another customer"
            )
        elsewhere = sorted(o.event_customers - {customer_id})
        if elsewhere:
            raise OrderConflict(
                f"order {order_id!r} has ledger events of customer {elsewhere[0]!r}; "
                "an order cannot move to another customer"
            )
        if previous is not None and previous.customer_id != customer_id:
            raise OrderConflict(
                f"order {order_id!r} was decided for customer {previous.customer_id!r}; "
                "an order cannot move to another customer"
            )
        if previous is not None and previous.status not in REPEATABLE_STATUSES:
            # Neither a repeat nor an amendment: the reservation of a cancelled order
            # was released, so its stored approve no longer holds.
            raise OrderConflict(f"order {order_id!r} was {previous.status}; decide a new order id")
        if last is not None and last.content_hash == chash:
            return self._repeat(job, o, last, norm, chash)
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
        open_orders = pos.open_orders - (previous.amount if previous is not None else ZERO)
        # Counted once (README "Exposure: each order counted once"). Here the order has no
        # reservation, or an open one none of whose amount is invoiced (an amendment), so
        # every invoice already posted for it is in the receivables and covered by no
        # reservation (the invoice came before the credit check, or after a referral that
        # a person released outside Creditgate). The order's amount covers them: an
        # approve reserves only the part not yet invoiced (``taken`` is born invoiced),
        # and the engine sees the exposure without them, so exposure_after counts the
        # order once. Payments are not allocated to invoices: the engine never takes more
        # off than the receivables still open (it sees at least the other open orders).
        taken = min(norm["amount"], o.invoiced_by.get(customer_id, ZERO))
        own = min(taken, pos.open_receivables)
        request = engine_request(norm, pos, open_orders, request_customer, own)
        decision = job.evaluate(request)
        if not isinstance(decision, Decision):
            raise TypeError("evaluate_fn must return a Decision")
        body = type(decision).__pydantic_serializer__.to_json(decision)
        request_json = orjson.dumps(request)
        # From here on nothing can fail: the batch's state moves.
        approved = decision.outcome == "approve"
        if approved:
            open_orders += norm["amount"] - taken
            status = "invoiced" if taken == norm["amount"] else "open"
            o.reservation = _Reservation(
                customer_id, norm["amount"], taken, status, decision.decision_id, chash
            )
            o.changed = True
        elif previous is not None:
            o.reservation, o.changed = None, True
        if open_orders != pos.open_orders:
            pos.open_orders, pos.changed = open_orders, True
        matched = [r.rule_id for r in decision.trail.rules if r.matched]
        texts = {
            "request": request_json,
            "decision": body,
            "fx": fx,
            "outcome": decision.outcome,
            "policy_id": decision.policy.id,
            "policy_version": decision.policy.version,
            "policy_sha256": decision.policy.sha256,
            "rules_matched": " " + " ".join(matched) + " " if matched else "",
        }
        self._append(job, norm, chash, kind, decision.decision_id, texts)
        o.last = _Last(customer_id, chash, None, texts)
        return Decided(
            kind,
            body,
            fx,
            decision.decision_id,
            decision.outcome,
            decision.policy.version,
            decision,
        )

    def _repeat(
        self, job: DecideJob, o: _Order, last: _Last, norm: dict[str, Any], chash: str
    ) -> Decided:
        """The same order again: the stored decision, recorded once more as ``repeat`` (its
        own record id, this caller); nothing reserved."""
        texts = self.last_texts(last)
        as_bytes = {
            k: (v.encode("utf-8") if isinstance(v, str) else v)
            for k, v in texts.items()
            if k in ("request", "decision", "fx")
        }
        texts = {**texts, **as_bytes}
        self._append(job, norm, chash, "repeat", str(uuid.uuid4()), texts)
        o.last = _Last(last.customer_id, chash, None, texts)
        body = texts["decision"]
        original = orjson.loads(body)
        return Decided(
            "repeat",
            body,
            texts["fx"],
            original.get("decision_id", ""),
            texts["outcome"],
            texts["policy_version"],
        )

    def _append(
        self,
        job: DecideJob,
        norm: dict[str, Any],
        chash: str,
        kind: str,
        decision_id: str,
        texts: dict[str, Any],
    ) -> None:
        """A record to write at the end of the batch (``seq`` and hashes assigned then,
        under the chain head's lock)."""
        self.pending.append(
            {
                "business_unit": self.unit,
                "decision_id": decision_id,
                "order_id": norm["order_id"],
                "customer_id": norm["customer_id"],
                "outcome": texts["outcome"],
                "kind": kind,
                "policy_id": texts["policy_id"],
                "policy_version": texts["policy_version"],
                "policy_sha256": texts["policy_sha256"],
                "content_hash": chash,
                "caller": job.caller,
                "created_at": self.now,
                "clock": self.db.clock.note,
                "rules_matched": texts["rules_matched"],
                "fx": texts["fx"],
                "request": texts["request"],
                "decision": texts["decision"],
            }
        )

    # -- writes -----------------------------------------------------------------------------

    def write(self) -> None:
        if not self.pending:
            return
        sql, unit = self.sql, self.unit
        now = sql.when(self.now)
        deletes, updates, inserts = [], [], []
        for oid, o in self.orders.items():
            if not o.changed:
                continue
            r = o.reservation
            if r is None:
                if o.had_reservation:
                    deletes.append({"u": unit, "oid": oid})
                continue
            values = {
                "business_unit": unit,
                "order_id": oid,
                "customer_id": r.customer_id,
                "amount": sql.money(r.amount),
                "decision_id": r.decision_id,
                "content_hash": r.content_hash,
                "status": r.status,
                "invoiced": sql.money(r.invoiced),
                "updated_at": now,
            }
            (updates if o.had_reservation else inserts).append(values)
        with self._pipeline():
            self._run_many(sql.delete_reservation(), deletes)
            self._run_many(sql.update_reservation(), updates)
            self._run_many(sql.insert_reservation(), inserts)
            self._run_many(
                sql.update_customer(),
                [
                    {
                        "u": unit,
                        "cid": cid,
                        "open_orders": sql.money(p.open_orders),
                        "updated_at": now,
                    }
                    for cid, p in self.positions.items()
                    if p.changed
                ],
            )
            # The chain last (lock order): its head, then the records chained onto it.
            head = self._run(sql.chain_head(), {"u": unit, "name": CHAIN_LOG})
        seq, record_hash, head_exists = self.chain_head(head)
        rows = []
        for fields in self.pending:
            seq += 1
            row = records.record_values(seq=seq, prev_hash=record_hash, **fields)
            record_hash = row["record_hash"]
            row["created_at"] = now
            rows.append(row)
        values = {"u": unit, "name": CHAIN_LOG, "seq": seq, "record_hash": record_hash}
        try:
            with self._pipeline():
                self._run_many(sql.insert_record(), rows)
                self._run(
                    sql.update_head() if head_exists else sql.insert_head(),
                    {**values, "updated_at": now},
                )
        except self.dbapi.IntegrityError:
            first = rows[0]["seq"]
            raise ChainBroken(
                f"{CHAIN_LOG} has records beyond its chain head (seq {first} exists, the head "
                f"says {first - 1}); nothing was written: run 'creditgate audit verify'"
            ) from None


@contextlib.contextmanager
def _driver_block(dbapi: Any, block: Any) -> Iterator[None]:
    """``block`` (a pipeline) with its driver errors raised as the service's."""
    with driver_errors(dbapi), block:
        yield


def decide_batch(
    db: Database, jobs: list[DecideJob], *, wait: bool = True
) -> list[Decided | BaseException]:
    """Decide and record ``jobs`` in one transaction (see the module docstring); returns,
    in job order, each job's ``Decided`` or the exception that refused it (``ValueError``,
    ``OrderConflict``, ``UnknownCustomer``, ``FxRateMissing``, ``InputErrors``,
    ``EvaluationError``, ...; nothing of a refused job is written). A failure of the
    transaction itself raises (``StoreUnavailable``, ``ChainBroken``): no job was recorded.
    ``wait=False`` (SQLite, for a caller on the event loop): ``WriterBusy``, nothing done,
    if another writer holds the database now."""
    results: list[Decided | BaseException | None] = [None] * len(jobs)
    ready: list[tuple[int, DecideJob, dict, str]] = []
    for i, job in enumerate(jobs):
        try:
            norm = normalise_order(job.order)
            ready.append((i, job, norm, content_hash(norm)))
        except ValueError as e:
            results[i] = e
    if ready:
        with db.connection(write=True, wait=wait) as conn:
            batch = _Batch(db, conn, ready)
            batch.read()
            failed_database = (exc.SQLAlchemyError, batch.dbapi.Error, StoreUnavailable)
            for i, job, norm, chash in ready:
                try:
                    results[i] = batch.decide(job, norm, chash)
                except failed_database:
                    raise  # the transaction itself failed: every job fails
                except Exception as e:  # noqa: BLE001 - this job is refused, the others go on
                    results[i] = e
            batch.write()
    return results  # type: ignore[return-value]
