"""Every database operation of the service; the only module that opens transactions.

``Store(database_url)`` works on SQLite (``sqlite:///file.db``) and PostgreSQL
(``postgresql+psycopg://...``). ``decide`` is the atomic decide-and-record step of
docs/service-spec.md: the customer row is locked (PostgreSQL ``SELECT ... FOR UPDATE``;
SQLite ``BEGIN IMMEDIATE``, i.e. one writer at a time), the decision is evaluated against
the ledger, the reservation and the hash-chained log record are written, and the
transaction commits — or nothing is written at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlmodel import Session, col, select

from api import chain
from api.models import (
    ApiKey,
    ChainHead,
    Customer,
    DecisionLog,
    FxRate,
    LedgerEvent,
    PolicyVersion,
    Reservation,
    utcnow,
)
from api.settings import normalise_database_url
from engine.decision import Decision

__all__ = [
    "EVENT_TYPES",
    "KEY_ID_LENGTH",
    "ROLES",
    "AmbiguousKey",
    "ChainBroken",
    "EventConflict",
    "FxRateMissing",
    "ImportErrors",
    "OrderConflict",
    "PolicyVersionConflict",
    "Store",
    "StoreNotMigrated",
    "StoreUnavailable",
    "UnknownCustomer",
    "UnknownKey",
    "UnreadableRecord",
    "hash_key",
    "policy_text_matches",
    "query_bound",
]

ROLES = ("order_entry", "reviewer", "compliance", "policy_owner", "admin")
KINDS = ("new", "repeat", "amended")
CENTS = Decimal("0.01")
KEY_ID_LENGTH = 12  # an API key's id: this many leading hex characters of its sha256
MIN_KEY_ID_LENGTH = 6  # the shortest id prefix accepted by revoke_api_key
# Reservation statuses under which the same order again is a ``repeat``: open (also partly
# invoiced) and fully invoiced (the approved amount is still counted, now as receivables).
# A cancelled order's reservation was released: its approve no longer holds → 409.
REPEATABLE_STATUSES = ("open", "invoiced")
CHAIN_LOCK_KEY = 0x43474C4F47  # "CGLOG": pg_advisory_xact_lock key of the hash chain
LEDGER_LOCK_KEY = 0x43474C4544  # "CGLED": the same for the ledger events' chain
# chain_head.name of each chain
CHAIN_LOG = "decision_log"
CHAIN_LEDGER = "ledger_events"
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
MIGRATE_LOCK_KEY = 0x43474D4947  # "CGMIG"
POLICY_LOCK_KEY = 0x4347504F4C  # "CGPOL": serialises save_policy (one text per version label)
ORDER_LOCK_NS = 0x43474F52  # "CGOR": namespace (int4) of the per-order-id advisory locks
MAX_PROBLEMS = 100  # consistency problems listed by verify_consistency (all are counted)
# Customer inputs owned by the ledger: a request may not override them for a known customer.
LEDGER_OWNED = ("customer.credit_limit", "customer.exposure")
# Order fields given at the top level of an order, never in its facts.
RESERVED_FACTS = (
    "order.id",
    "order.amount",
    "order.currency",
    "order.payment_term_days",
    "customer.id",
)
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


class StoreUnavailable(Exception):
    """The database cannot be reached (or did not answer in time). ``cause``: the name of
    the underlying error (e.g. ``OperationalError``)."""

    def __init__(self, message: str, *, cause: str = ""):
        super().__init__(message)
        self.cause = cause


class StoreNotMigrated(StoreUnavailable):
    """The database answers but lacks the service's tables (run ``creditgate db upgrade``)."""


def _unavailable(e: Exception) -> StoreUnavailable:
    orig = getattr(e, "orig", None) or e
    cause = type(orig).__name__
    if _missing_table(e):
        return StoreNotMigrated(f"database not migrated: {cause}", cause=cause)
    return StoreUnavailable(f"database unavailable: {cause}", cause=cause)


def _missing_table(e: Exception) -> bool:
    """SQLite ``no such table`` or PostgreSQL undefined_table (SQLSTATE 42P01)."""
    orig = getattr(e, "orig", None)
    return "no such table" in str(orig or e) or getattr(orig, "sqlstate", None) == "42P01"


# One writer lock per SQLite database file and process (see ``Store._session``).
_SQLITE_WRITER_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_WRITER_LOCKS_GUARD = threading.Lock()
WRITER_LOCK_TIMEOUT = 30.0  # seconds; as SQLite's busy_timeout


def _sqlite_writer_lock(url: sa.URL) -> threading.Lock:
    """The process-wide writer lock of the SQLite database of ``url`` (keyed by the
    resolved file path; each in-memory database gets its own)."""
    db = url.database or ""
    key = str(Path(db).resolve()) if db not in ("", ":memory:") else f"memory:{id(url)}"
    with _SQLITE_WRITER_LOCKS_GUARD:
        return _SQLITE_WRITER_LOCKS.setdefault(key, threading.Lock())


class ChainBroken(RuntimeError):
    """A hash chain cannot be extended safely: it has records beyond its stored head
    (tampering). Nothing is written; ``creditgate audit verify`` shows where it breaks."""


class UnreadableRecord(RuntimeError):
    """A stored record of ``table`` (``decision_log``, ``ledger_events``) cannot be turned
    into a record: a value edited outside the service (``created_at = '... hacked'`` on
    SQLite, a malformed JSON or money text). ``seq`` names it, ``cause`` says why;
    ``readable`` holds the readable records of the same page before it (in order)."""

    def __init__(
        self, table: str, seq: int | None, cause: str, readable: list[dict[str, Any]] | None = None
    ):
        where = f"seq {seq}" if seq is not None else "a record"
        super().__init__(f"{table} {where} cannot be read ({cause})")
        self.table, self.seq, self.cause = table, seq, cause
        self.readable = readable or []


# What reading an edited value can raise: a date or number text that does not parse
# (ValueError, decimal.InvalidOperation), a JSON column that is not JSON, a wrong type.
_READ_ERRORS = (ValueError, TypeError, ArithmeticError, KeyError, AttributeError)


def _read_cause(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def read_records(
    s: Session, q: Any, model: Any, as_record: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records of ``q`` (a ``select(model)`` in ``seq`` order), each through
    ``as_record``. If one cannot be read, raises ``UnreadableRecord`` naming the first such
    ``seq`` (found by reading the page's rows one at a time), with the readable records
    before it."""
    try:
        return [as_record(r) for r in s.exec(q).all()]
    except _READ_ERRORS as e:
        first_cause = _read_cause(e)
    table = model.__tablename__
    try:
        seqs = list(s.exec(q.with_only_columns(col(model.seq))).all())
    except _READ_ERRORS:  # pragma: no cover - seq is an integer primary key
        raise UnreadableRecord(table, None, first_cause) from None
    readable: list[dict[str, Any]] = []
    s.expunge_all()
    for seq in seqs:
        try:
            row = s.exec(select(model).where(col(model.seq) == seq)).one()
            readable.append(as_record(row))
        except _READ_ERRORS as e:
            raise UnreadableRecord(table, seq, _read_cause(e), readable) from None
    raise UnreadableRecord(table, None, first_cause, readable)  # pragma: no cover


class PolicyVersionConflict(ValueError):
    """Another policy text is already recorded under this policy id and version: decisions
    of two different policies would share one version label (raise ``version``)."""


class UnknownKey(LookupError):
    """No API key has this id (or the id is not a hex prefix)."""


class AmbiguousKey(LookupError):
    """Several API keys start with this id prefix; nothing was changed."""


class UnknownCustomer(Exception):
    """No such customer in the ledger."""

    def __init__(self, customer_id: str):
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


class OrderConflict(ValueError):
    """The order id is already used for another customer (or the order can no longer be
    amended: it was cancelled or invoiced)."""


class EventConflict(ValueError):
    """A ledger event that contradicts the ledger: event id reused with other content,
    no open reservation to cancel or invoice."""


class FxRateMissing(ValueError):
    """No exchange rate on or before the order date: never converted 1:1."""

    def __init__(
        self, base: str, currency: str, on: date, stale: date | None = None, max_age: int = 0
    ):
        if stale is None:
            message = (
                f"currency: no {currency}->{base} exchange rate on or before {on.isoformat()}; "
                "load it with PUT /v1/fx-rates"
            )
        else:
            message = (
                f"currency: the latest {currency}->{base} exchange rate on or before "
                f"{on.isoformat()} is of {stale.isoformat()}, more than {max_age} days "
                "older than the order date; load a current rate with PUT /v1/fx-rates"
            )
        super().__init__(message)
        self.base, self.currency, self.on, self.stale = base, currency, on, stale


class ImportErrors(ValueError):
    """A customer import refused as a whole: ``errors`` = [{line, column, problem}]."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} bad row(s); nothing was imported")
        self.errors = errors


EVENT_TYPES = ("order_cancelled", "invoice_issued", "payment_received", "credit_note")


def hash_key(key: str) -> str:
    """sha256 (hex) of an API key: what is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _money(value: Any, what: str, places: int = 2, currency: str = "") -> Decimal:
    """``value`` as an exact Decimal with ``places`` decimals (the minor unit of its
    currency: EUR 2, JPY 0, KWD 3); messages show the number as sent, never a repr."""
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError(f"{what}: send money as a string or Decimal, not {type(value).__name__}")
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what}: {str(value)[:40]!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{what}: {value} is not a finite number")
    unit = Decimal(1).scaleb(-places)
    if abs(d) >= Decimal(10) ** 15:
        raise ValueError(f"{what}: {_plain(d)} is too large (at most 15 digits before the point)")
    if d.quantize(unit) != d:
        where = f" ({currency})" if currency else ""
        raise ValueError(
            f"{what}: {_plain(d)} has more than {places} decimal{'s' if places != 1 else ''}{where}"
        )
    return d.quantize(unit)


def _currency_places(currency: str) -> int:
    """Decimals of ``currency`` (ISO 4217 minor unit from Babel/CLDR), at most 4."""
    from babel.numbers import get_currency_precision

    return min(get_currency_precision(currency), 4)


def _ident(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        raise ValueError(f"{what}: an identifier is text of 1 to 200 printable characters")
    if value != value.strip():
        raise ValueError(f"{what}: an identifier may not begin or end with spaces")
    return value


def _customer_ident(value: Any, what: str = "customer_id") -> str:
    """A customer id is also one URL path segment (``/v1/customers/<id>``)."""
    cid = _ident(value, what)
    if any(c in cid for c in "/?#%\\") or cid in (".", ".."):
        raise ValueError(
            f"{what}: a customer id is one URL path segment: it may not contain / ? # % or \\ "
            "nor be . or .."
        )
    return cid


def _customer_facts(facts: dict[str, Any] | None) -> dict[str, Any]:
    """Ledger facts keyed by input name without the group (``risk_class``); a
    ``customer.`` prefix is accepted and dropped."""
    out: dict[str, Any] = {}
    for key, value in (facts or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"facts: invalid key {key!r}")
        name = key.removeprefix("customer.")
        if "." in name:
            raise ValueError(f"facts: {key!r} is not a customer fact (customer.<name>)")
        if f"customer.{name}" in RESERVED_FACTS + LEDGER_OWNED + ("customer.days_past_due",):
            raise ValueError(f"facts: {key!r} is a ledger column; pass it as an argument")
        out[name] = value
    return chain.jsonable(out)


def _currency_code(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ValueError(f"{what}: an ISO 4217 code such as 'EUR'")
    return value


def _plain(d: Decimal) -> str:
    return chain.decimal_str(d)


class Store:
    def __init__(self, database_url: str):
        self.url = normalise_database_url(database_url)
        self.engine = self._make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._writer_lock = (
            _sqlite_writer_lock(self.engine.url) if self.dialect == "sqlite" else None
        )

    # -- engine ---------------------------------------------------------------------------

    @staticmethod
    def _make_engine(url: str) -> sa.Engine:
        u = sa.make_url(url)
        if u.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                u,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=5,
                max_overflow=10,
                pool_timeout=60,
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite would begin lazily
                # and deferred, so two writers could read the same ledger state).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout = 30000")
                if u.database not in (None, "", ":memory:"):
                    cur.execute("PRAGMA journal_mode = WAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: sa.Connection) -> None:
                # Writers take the database write lock at BEGIN (one writer at a time);
                # readers use a deferred transaction (WAL snapshot).
                if conn.get_execution_options().get("creditgate_write"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql("BEGIN")

            return engine
        return sa.create_engine(
            u,
            pool_size=10,
            max_overflow=20,
            pool_timeout=60,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
        )

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        """One transaction: commit at the end, rollback on any exception. Database
        connection failures become ``StoreUnavailable``.

        On SQLite a writer first takes the process-wide writer lock of its database file
        (``_sqlite_writer_lock``), then ``BEGIN IMMEDIATE``; it releases the lock after the
        commit or rollback. Writers of one process thus queue on a lock instead of
        spinning in SQLite's busy handler (which sleeps and retries, and lets a newcomer
        overtake a writer that has waited long: p99 1.5 s with 8 clients); BEGIN IMMEDIATE
        still serialises writers of other processes. Not granted within
        ``WRITER_LOCK_TIMEOUT`` seconds → ``StoreUnavailable``."""
        bind = self.engine.execution_options(creditgate_write=True) if write else self.engine
        lock = self._writer_lock if write else None
        if lock is not None and not lock.acquire(timeout=WRITER_LOCK_TIMEOUT):
            raise StoreUnavailable(
                f"database unavailable: no write turn within {WRITER_LOCK_TIMEOUT:g} s",
                cause="WriterLockTimeout",
            )
        try:
            with Session(bind, expire_on_commit=False) as session:
                with session.begin():
                    yield session
        except _UNAVAILABLE as e:
            raise _unavailable(e) from e
        except exc.ProgrammingError as e:
            if _missing_table(e):
                raise _unavailable(e) from e
            raise
        finally:
            if lock is not None:
                lock.release()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema and health ----------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply the Alembic migrations (``alembic upgrade head``) to this database; returns
        the schema revision ``(before, after)`` (``before`` None: a new database)."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        root = Path(__file__).resolve().parent
        cfg = Config()
        cfg.set_main_option("script_location", str(root / "migrations"))
        lock = self._writer_lock or contextlib.nullcontext()
        try:
            with lock, self.engine.execution_options(creditgate_write=True).begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY}
                    )
                before = MigrationContext.configure(conn).get_current_revision()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                after = MigrationContext.configure(conn).get_current_revision()
        except _UNAVAILABLE as e:
            raise _unavailable(e) from e
        return before, after

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers ``SELECT 1``."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except _UNAVAILABLE as e:
            raise _unavailable(e) from e

    # -- policies -------------------------------------------------------------------------

    def save_policy(self, policy: Any) -> None:
        """Record a policy version (``rules.policy.Policy``); idempotent by sha256. Raises
        ``PolicyVersionConflict`` if another text is recorded under the same policy id and
        version: the version label must identify one policy text for audit and
        ``?policy_version=`` filters."""
        with self._session(write=True) as s:
            if self.dialect == "postgresql":
                # Check-then-insert under one lock: two texts saved under the same id and
                # version at once must not both pass the check (SQLite: writers are
                # serialised by BEGIN IMMEDIATE and the writer lock already).
                s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": POLICY_LOCK_KEY})
            if s.get(PolicyVersion, policy.sha256) is None:
                other = s.exec(
                    select(PolicyVersion.sha256).where(
                        PolicyVersion.policy_id == policy.id,
                        PolicyVersion.version == policy.version,
                    )
                ).first()
                if other is not None:
                    raise PolicyVersionConflict(
                        f"policy {policy.id} version {policy.version} is already recorded with "
                        f"another text (sha256 {other[:12]}; this file: {policy.sha256[:12]}); "
                        "raise 'version' in the policy file before putting a changed policy live"
                    )
                s.add(
                    PolicyVersion(
                        sha256=policy.sha256,
                        policy_id=policy.id,
                        version=policy.version,
                        source=policy.source,
                    )
                )

    def policy_source(self, sha256: str) -> str | None:
        with self._session(write=False) as s:
            row = s.get(PolicyVersion, sha256)
            return row.source if row else None

    # -- customers ------------------------------------------------------------------------

    def put_customer(
        self,
        customer_id: str,
        *,
        currency: str,
        credit_limit: Decimal,
        open_receivables: Decimal | None = None,
        days_past_due: int | None = None,
        facts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update a customer's ledger data. ``currency`` and ``credit_limit`` are
        set; ``open_receivables``, ``days_past_due`` and ``facts`` (as a whole) are set when
        given and otherwise KEPT for an existing customer (ledger events move receivables:
        a limit update must never erase them) or 0 / none for a new one. ``open_orders``
        and ``credit_balance`` belong to the store and are never set here. Two concurrent
        creations of one new customer: the second updates the first's row."""
        _customer_ident(customer_id)
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise ValueError("currency: an ISO 4217 code such as 'EUR'")
        currency = currency.upper()
        limit = _money(credit_limit, "credit_limit")
        receivables = (
            None if open_receivables is None else _money(open_receivables, "open_receivables")
        )
        if limit < 0 or (receivables is not None and receivables < 0):
            raise ValueError("credit_limit and open_receivables must not be negative")
        if days_past_due is not None:
            if isinstance(days_past_due, bool) or not isinstance(days_past_due, int):
                raise ValueError("days_past_due: a whole number of days")
            if days_past_due < 0:
                raise ValueError("days_past_due must not be negative")
        clean = None if facts is None else _customer_facts(facts)
        row = {
            "customer_id": customer_id,
            "currency": currency,
            "credit_limit": limit,
            "open_receivables": receivables,
            "days_past_due": days_past_due,
            "facts": clean,
        }
        for attempt in (1, 2):
            try:
                with self._session(write=True) as s:
                    cust = self._upsert_customer(s, row, merge_facts=False)
                    if isinstance(cust, str):
                        raise ValueError(f"customer {customer_id!r} {cust}")
                    s.flush()
                    return self._customer_dict(cust)
            except exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _upsert_customer(s: Session, r: dict[str, Any], *, merge_facts: bool) -> Customer | str:
        """Create or update one customer in session ``s`` (row lock first). ``None`` values
        of ``open_receivables``, ``days_past_due``, ``facts`` keep the stored ones; with
        ``merge_facts`` the given facts are added to the stored ones (the CSV import: an
        empty cell never clears a fact), else they replace them. Returns the customer, or
        the reason it cannot be changed (text)."""
        cust = s.get(Customer, r["customer_id"], with_for_update=True)
        facts = None if r["facts"] is None else chain.jsonable(r["facts"])
        if cust is None:
            cust = Customer(
                customer_id=r["customer_id"],
                currency=r["currency"],
                credit_limit=r["credit_limit"],
                open_receivables=r["open_receivables"]
                if r["open_receivables"] is not None
                else Decimal("0.00"),
                open_orders=Decimal("0.00"),
                days_past_due=r["days_past_due"] or 0,
                facts=facts or {},
            )
            s.add(cust)
            s.flush()  # a concurrent creation of the same id fails here (IntegrityError)
            return cust
        if cust.currency != r["currency"] and cust.open_orders != 0:
            return f"has open orders in {cust.currency}; its currency cannot change"
        cust.currency = r["currency"]
        cust.credit_limit = r["credit_limit"]
        if r["open_receivables"] is not None:
            cust.open_receivables = r["open_receivables"]
        if r["days_past_due"] is not None:
            cust.days_past_due = r["days_past_due"]
        if facts is not None:
            cust.facts = {**(cust.facts or {}), **facts} if merge_facts else facts
        cust.updated_at = utcnow()
        return cust

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        with self._session(write=False) as s:
            cust = s.get(Customer, customer_id)
            return self._customer_dict(cust) if cust else None

    @staticmethod
    def _customer_dict(c: Customer) -> dict[str, Any]:
        exposure = c.open_receivables + c.open_orders
        return {
            "customer_id": c.customer_id,
            "currency": c.currency,
            "credit_limit": c.credit_limit,
            "open_receivables": c.open_receivables,
            "open_orders": c.open_orders,
            "exposure": exposure,
            "available_credit": c.credit_limit - exposure,
            "days_past_due": c.days_past_due,
            "credit_balance": c.credit_balance,
            "facts": dict(c.facts or {}),
            "updated_at": chain.as_utc(c.updated_at),
        }

    # -- deciding -------------------------------------------------------------------------

    @staticmethod
    def _normalise_order(order: dict[str, Any]) -> dict[str, Any]:
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
        amount = _money(order["amount"], "amount", _currency_places(currency), currency)
        out = {
            "order_id": _ident(order["order_id"], "order_id"),
            "customer_id": _customer_ident(order["customer_id"]),
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

    @staticmethod
    def _content_hash(norm: dict[str, Any]) -> str:
        # Numbers compare by value ("100" and "100.00" are the same order).
        def canon(v: Any) -> Any:
            if isinstance(v, Decimal):
                return _plain(v.normalize())
            if isinstance(v, dict):
                return {k: canon(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [canon(x) for x in v]
            return v

        return chain.content_hash(canon(norm))

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
        norm = self._normalise_order(order)
        chash = self._content_hash(norm)
        order_id, customer_id = norm["order_id"], norm["customer_id"]
        request_customer = {
            k.split(".", 1)[1]: v for k, v in norm["facts"].items() if k.startswith("customer.")
        }
        with self._session(write=True) as s:
            cust = s.get(Customer, customer_id, with_for_update=True)
            if cust is None:
                # Never decide a customer the ledger does not hold: the caller's own credit
                # limit and exposure would be believed and nothing could be reserved.
                raise UnknownCustomer(customer_id)
            # The order id, across customers: two customers sending one order id at once
            # must not both pass the ownership check below (their customer locks differ).
            self._lock_order_id(s, order_id)
            fx = None
            if decision_currency is not None and norm["currency"] != decision_currency:
                current = today or datetime.now(UTC).date()
                on = (
                    date.fromisoformat(norm["order_date"]) if "order_date" in norm else current
                )
                fx = self._convert(
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
            invoiced_elsewhere = self._other_owner(s, LedgerEvent, order_id, customer_id)
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
                self._append(
                    s, last.request, decision, last.decision, chash, caller, "repeat", last.fx
                )
                return decision, "repeat"
            kind = "new" if last is None else "amended"
            if previous is not None and (previous.status != "open" or previous.invoiced != 0):
                done = (
                    "fully invoiced"
                    if previous.status == "invoiced"
                    else f"partly invoiced ({_plain(previous.invoiced)} of "
                    f"{_plain(previous.amount)})"
                )
                raise OrderConflict(
                    f"order {order_id!r} is {done}; it cannot be amended: decide a new order id"
                )
            if previous is not None:
                if cust is not None:
                    cust.open_orders = cust.open_orders - previous.amount
                s.delete(previous)
                s.flush()
            request = self._engine_request(norm, cust, request_customer)
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
            self._append(s, request, decision, decision_json, chash, caller, kind, fx)
            return decision, kind

    @staticmethod
    def _rate(s: Session, base: str, currency: str, on: date) -> FxRate | None:
        return s.exec(
            select(FxRate)
            .where(FxRate.base == base, FxRate.currency == currency, col(FxRate.as_of) <= on)
            .order_by(col(FxRate.as_of).desc())
            .limit(1)
        ).first()

    @staticmethod
    def _other_owner(
        s: Session,
        model: type[DecisionLog] | type[LedgerEvent],
        order_id: str,
        customer_id: str,
    ) -> str | None:
        """A customer other than ``customer_id`` that ``model``'s rows (decisions or ledger
        events) name for ``order_id``, or None."""
        return s.exec(
            select(model.customer_id)
            .where(model.order_id == order_id, model.customer_id != customer_id)
            .limit(1)
        ).first()

    def _lock_order_id(self, s: Session, order_id: str) -> None:
        """Serialise decisions on one order id across customers (PostgreSQL: a transaction
        advisory lock on the id's hash, taken after the customer's row lock, so no cycle;
        SQLite: writers are serialised already). A hash collision only makes two unrelated
        orders wait for each other."""
        if self.dialect == "postgresql":
            s.execute(
                sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:oid))"),
                {"ns": ORDER_LOCK_NS, "oid": order_id},
            )

    def _convert(
        self,
        s: Session,
        norm: dict[str, Any],
        base: str,
        minor_units: int,
        on: date,
        max_age_days: int | None = None,
        *,
        latest: date | None = None,
    ) -> dict[str, Any]:
        """Convert the order's amount into ``base``. The rate is the latest on or before
        the order date ``on`` (missing, or more than ``max_age_days`` older than ``on`` →
        ``FxRateMissing``); with ``latest`` (today), the latest rate on or before that day
        must not be more than ``max_age_days`` old either (``FxRateMissing``: a stopped
        feed is not hidden by backdating), and the HIGHER of the two is used: the larger
        exposure, so a caller cannot lower an order's value by choosing its date
        (conservative; both rates are recorded in ``candidates``)."""
        row = self._rate(s, base, norm["currency"], on)
        if row is None:
            raise FxRateMissing(base, norm["currency"], on)
        if max_age_days is not None and (on - row.as_of).days > max_age_days:
            raise FxRateMissing(base, norm["currency"], on, stale=row.as_of, max_age=max_age_days)
        rows = [row]
        if latest is not None:
            now_row = self._rate(s, base, norm["currency"], latest) if latest > on else row
            assert now_row is not None  # row is on or before on <= latest
            if max_age_days is not None and (latest - now_row.as_of).days > max_age_days:
                # The feed stopped: even the newest rate is stale TODAY, so a backdated
                # order may not use it either (the currency may have risen since).
                raise FxRateMissing(
                    base, norm["currency"], latest, stale=now_row.as_of, max_age=max_age_days
                )
            if now_row.as_of != row.as_of:
                rows.append(now_row)
        used = max(rows, key=lambda r: (r.rate, r.as_of))
        candidates = [{"rate": _plain(r.rate), "as_of": r.as_of.isoformat()} for r in rows]
        row = used
        unit = Decimal(1).scaleb(-minor_units)
        converted = (norm["amount"] * row.rate).quantize(unit, rounding=ROUND_HALF_EVEN)
        if converted <= 0:
            raise ValueError(f"amount: {norm['amount']} {norm['currency']} converts to 0 {base}")
        return {
            "original_amount": _plain(norm["amount"]),
            "original_currency": norm["currency"],
            "currency": base,
            "rate": _plain(row.rate),
            "rate_as_of": row.as_of.isoformat(),
            "order_date": on.isoformat(),
            "rounding": f"half-even to {_plain(unit)}",
            **({"candidates": candidates} if len(candidates) > 1 else {}),
            "converted_amount": converted,
        }

    @staticmethod
    def _engine_request(
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
            customer["credit_limit"] = _plain(cust.credit_limit)
            customer["exposure"] = _plain(cust.open_receivables + cust.open_orders)
        customer["id"] = norm["customer_id"]
        groups: dict[str, dict[str, Any]] = {"order": {}, "customer": customer}
        for key, value in norm["facts"].items():
            group, name = key.split(".", 1)
            if group != "customer":
                groups.setdefault(group, {})[name] = value
        groups["order"].update(
            {
                "id": norm["order_id"],
                "amount": _plain(norm["amount"]),
                "currency": norm["currency"],
                "payment_term_days": norm["payment_term_days"],
            }
        )
        return chain.jsonable(groups)

    def _append(
        self,
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
        last_seq, prev = self._chain_position(s, CHAIN_LOG, DecisionLog, CHAIN_LOCK_KEY)
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
        self._set_head(s, CHAIN_LOG, seq, record["record_hash"])
        s.flush()
        return row

    def _chain_position(
        self, s: Session, name: str, model: type[DecisionLog] | type[LedgerEvent], lock: int
    ) -> tuple[int, str]:
        """Take the chain lock (PostgreSQL advisory transaction lock ``lock``; SQLite: the
        write lock of BEGIN IMMEDIATE) and return ``(seq, record_hash)`` of the record to
        chain onto: the stored head (so records deleted at the end leave a gap that
        ``verify_chain`` reports, even after new appends); ``(0, GENESIS)`` for an empty
        chain without a head (a new database). Records beyond the head, or records without
        a head row (migration 0003 writes the heads of existing chains, so a missing head
        means it was deleted, perhaps with the newest records) → ``ChainBroken``; nothing
        is appended, so the gap cannot be papered over by a new head."""
        if self.dialect == "postgresql":
            s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
        last = s.exec(
            select(model.seq, model.record_hash).order_by(col(model.seq).desc()).limit(1)
        ).first()
        head = s.get(ChainHead, name)
        if head is None:
            if last is not None:
                raise ChainBroken(
                    f"{name} has records (up to seq {last[0]}) but no chain head; nothing was "
                    "written: run 'creditgate audit verify'"
                )
            return 0, chain.GENESIS
        if last is not None and last[0] > head.seq:
            raise ChainBroken(
                f"{name} has records beyond its chain head (seq {last[0]} > {head.seq}); "
                "nothing was written: run 'creditgate audit verify'"
            )
        return head.seq, head.record_hash

    @staticmethod
    def _set_head(s: Session, name: str, seq: int, record_hash: str) -> None:
        head = s.get(ChainHead, name)
        if head is None:
            s.add(ChainHead(name=name, seq=seq, record_hash=record_hash))
        else:
            head.seq, head.record_hash, head.updated_at = seq, record_hash, utcnow()

    # -- reading the log ------------------------------------------------------------------

    @staticmethod
    def _log_dict(row: DecisionLog) -> dict[str, Any]:
        out = {c: getattr(row, c) for c in DecisionLog.__table__.columns.keys()}  # noqa: SIM118
        out["created_at"] = chain.as_utc(out["created_at"])
        if out.get("fx") is None:
            out.pop("fx", None)
        return out

    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        """One log record by decision id; raises ``UnreadableRecord`` if it cannot be read."""
        with self._session(write=False) as s:
            q = select(DecisionLog).where(DecisionLog.decision_id == decision_id).limit(1)
            rows = read_records(s, q, DecisionLog, self._log_dict)
            return rows[0] if rows else None

    def list_decisions(
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
            q = q.where(col(DecisionLog.created_at) >= _as_datetime(date_from, end=False))
        if date_to is not None:
            q = q.where(col(DecisionLog.created_at) < _as_datetime(date_to, end=True))
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
        with self._session(write=False) as s:
            rows = read_records(s, q, DecisionLog, self._log_dict)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["seq"] if more else None)

    def verify_chain(self, batch: int = 1000) -> dict[str, Any]:
        """Check both hash chains, the decision log and the ledger events: contiguous
        ``seq`` from 1, every ``prev_hash`` link, every ``record_hash``, and that the last
        record is the stored chain head (deleted newest records or an emptied table are
        reported; so is a missing head while records exist).

        Returns ``{ok, checked, first_broken_seq, reason, head_seq, head_hash, ledger}``:
        ``checked`` (records found intact), ``first_broken_seq``, ``reason`` (None when
        intact), ``head_seq`` / ``head_hash`` (the stored head, None without one; write
        them to an external log to anchor the chain) are the decision log's; ``ledger`` has
        the same keys (and ``ok``) for the ledger events. ``ok`` is true only if both
        chains are intact. Raises ``StoreUnavailable``."""
        log = self._verify_one(CHAIN_LOG, DecisionLog, self._log_dict, batch)
        ledger = self._verify_one(CHAIN_LEDGER, LedgerEvent, _event_record, batch)
        consistency = self.verify_consistency()
        ok = log["ok"] and ledger["ok"] and consistency["ok"]
        return {**log, "ok": ok, "ledger": ledger, "consistency": consistency}

    def verify_consistency(self) -> dict[str, Any]:
        """State the hash chains do not cover, checked against itself:

        - ``open_orders``: every customer's ``open_orders`` equals the sum of the open parts
          (``amount - invoiced``) of its reservations in status ``open``, and no open
          reservation belongs to a customer that does not exist;
        - ``policy_source``: every stored policy text hashes (sha256 of its UTF-8 bytes, as
          ``rules.loader`` computes ``Policy.sha256``) to its key;
        - ``policy_missing``: every policy the decision log names has a stored text;
        - ``reservations``: every reservation agrees with its order's chained ledger events
          and every approved order has one (``_check_reservations``).

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
        return {
            "ok": not problems,
            "customers": customers,
            "policy_versions": policies,
            "problems": problems[:MAX_PROBLEMS],
            "problems_total": len(problems),
        }

    def _check_open_orders(self, problems: list[dict[str, Any]]) -> int:
        c, r = Customer.__table__.c, Reservation.__table__.c
        # Amounts as text, parsed below: an unreadable value is reported, not raised.
        text, none = (lambda x: sa.cast(x, sa.String)), sa.null()
        q = sa.union_all(
            sa.select(c.customer_id, sa.literal(1), text(c.open_orders), none, none),
            sa.select(r.customer_id, sa.literal(2), none, text(r.amount), text(r.invoiced)).where(
                r.status == "open"
            ),
        )
        booked: dict[str, Decimal] = {}  # customer id → its open_orders
        reserved: dict[str, Decimal] = {}
        unreadable: dict[str, str] = {}
        with self._session(write=False) as s:
            for cid, kind, open_orders, amount, invoiced in s.execute(q):
                try:
                    if kind == 1:
                        booked[cid] = Decimal(open_orders)
                    else:
                        reserved[cid] = reserved.get(cid, CENTS * 0) + (
                            Decimal(amount) - Decimal(invoiced or 0)
                        )
                except _READ_ERRORS as e:
                    unreadable.setdefault(cid, _read_cause(e))
        for cid in sorted(set(booked) | set(reserved) | set(unreadable)):
            if cid in unreadable:
                message = f"a stored amount cannot be read ({unreadable[cid]})"
            elif cid not in booked:
                message = f"open reservations of {_plain(reserved[cid])} but no such customer"
            elif booked[cid] != reserved.get(cid, CENTS * 0):
                message = (
                    f"open_orders is {_plain(booked[cid])} but its open reservations add up "
                    f"to {_plain(reserved.get(cid, CENTS * 0))}"
                )
            else:
                continue
            problems.append({"check": "open_orders", "customer_id": cid, "message": message})
        return len(booked)

    def _check_policies(self, problems: list[dict[str, Any]]) -> int:
        t = PolicyVersion.__table__.c
        n = 0
        with self._session(write=False) as s:
            for sha, source in s.execute(sa.select(t.sha256, t.source).order_by(t.sha256)):
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
                        PolicyVersion.__table__, t.sha256 == d.policy_sha256
                    )
                )
                .where(t.sha256.is_(None))
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
        effect.open_orders``); status ``invoiced`` exactly when that is the whole amount
        (and not cancelled); events and reservation of one customer. And every order whose
        latest new or amended decision is an approve has a reservation."""
        r, e, d = Reservation.__table__.c, LedgerEvent.__table__.c, DecisionLog.__table__.c
        text, none = (lambda x: sa.cast(x, sa.String)), sa.null()
        latest = (
            sa.select(d.order_id, sa.func.max(d.seq).label("seq"))
            .where(d.kind.in_(("new", "amended")))
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
            ),
            sa.select(
                sa.literal(2), e.order_id, e.customer_id, e.type, none, none, text(e.effect)
            ).where(e.order_id.is_not(None), e.type.in_(("order_cancelled", "invoice_issued"))),
            sa.select(sa.literal(3), d.order_id, d.customer_id, text(d.seq), none, none, none)
            .select_from(DecisionLog.__table__.join(latest, latest.c.seq == d.seq))
            .where(
                d.outcome == "approve",
                ~sa.exists().where(r.order_id == d.order_id),
            ),
        )
        zero = Decimal("0.00")
        res: dict[str, tuple[str, str, str, str]] = {}  # order → customer, status, amounts
        cancelled: dict[str, int] = {}
        moved: dict[str, Decimal] = {}
        owners: dict[str, set[str]] = {}
        unreserved_approve: dict[str, tuple[str, str]] = {}
        found: dict[str, list[str]] = {}
        customer_of: dict[str, str] = {}
        with self._session(write=False) as s:
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
                        continue
                    try:
                        m = -Decimal(str(json.loads(effect)["open_orders"]))
                    except (*_READ_ERRORS, json.JSONDecodeError) as ex:
                        found.setdefault(oid, []).append(
                            f"an invoice_issued event's effect cannot be read ({_read_cause(ex)})"
                        )
                        continue
                    moved[oid] = moved.get(oid, zero) + m
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
                    msgs.append(f"invoice_issued events moved {_plain(inv)} but no reservation")
                continue
            cid, status, amount_text, invoiced_text = res[oid]
            customer_of[oid] = cid
            other = sorted(owners.get(oid, set()) - {cid})
            if other:
                msgs.append(f"ledger events of another customer ({', '.join(other)})")
            try:
                amount, invoiced = Decimal(amount_text), Decimal(invoiced_text)
            except _READ_ERRORS as ex:
                msgs.append(f"a stored amount cannot be read ({_read_cause(ex)})")
                continue
            if invoiced != inv:
                msgs.append(
                    f"invoiced is {_plain(invoiced)} but its invoice_issued events moved "
                    f"{_plain(inv)}"
                )
            if oid in cancelled:
                expected = "cancelled"
            else:
                expected = "invoiced" if inv == amount else "open"
            if status != expected:
                why = (
                    "it has an order_cancelled event"
                    if oid in cancelled
                    else f"no order_cancelled event, {_plain(inv)} of {_plain(amount)} invoiced"
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

    def _verify_one(
        self,
        name: str,
        model: type[DecisionLog] | type[LedgerEvent],
        as_record: Callable[[Any], dict[str, Any]],
        batch: int,
    ) -> dict[str, Any]:
        """One chain, read in pages of ``batch`` (short read transactions, keyset on
        ``seq``). The head is read after the last page; records appended meanwhile are
        walked too, so a live service is never reported broken."""
        walker = chain.ChainWalker()
        unreadable: list[UnreadableRecord] = []

        def page(after: int) -> list[dict[str, Any]]:
            with self._session(write=False) as s:
                q = select(model).where(col(model.seq) > after).order_by(col(model.seq))
                try:
                    return read_records(s, q.limit(batch), model, as_record)
                except UnreadableRecord as e:
                    unreadable.append(e)  # checked after the readable records before it
                    return e.readable

        def read_head() -> tuple[int, str] | None:
            with self._session(write=False) as s:
                h = s.get(ChainHead, name)
                return (h.seq, h.record_hash) if h is not None else None

        def result(head: tuple[int, str] | None, broken: int | None, reason: str | None):
            return {
                "ok": reason is None,
                "checked": walker.checked,
                "first_broken_seq": broken,
                "reason": reason,
                "head_seq": head[0] if head else None,
                "head_hash": head[1] if head else None,
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

    def put_fx_rates(self, base: str, rates: list[dict[str, Any]]) -> int:
        """Insert or replace rates ``[{currency, rate, as_of}]`` against ``base`` (one
        transaction). ``rate`` = units of ``base`` for one unit of ``currency``, > 0, at
        most 10 decimals. Returns how many were written."""
        base = _currency_code(base, "base")
        clean = []
        for i, r in enumerate(rates):
            cur = _currency_code(r.get("currency"), f"rates[{i}].currency")
            if cur == base:
                raise ValueError(f"rates[{i}].currency: same as the base {base}")
            rate = r.get("rate")
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
                raise ValueError(f"rates[{i}].rate: a positive exact decimal")
            if rate != rate.quantize(Decimal("1E-10")) or rate >= Decimal(10) ** 9:
                raise ValueError(f"rates[{i}].rate: at most 10 decimals, below 10^9")
            as_of = r.get("as_of")
            if not isinstance(as_of, date) or isinstance(as_of, datetime):
                raise ValueError(f"rates[{i}].as_of: a date")
            clean.append((cur, rate, as_of))
        with self._session(write=True) as s:
            for cur, rate, as_of in clean:
                row = s.get(FxRate, (base, cur, as_of), with_for_update=True)
                if row is None:
                    s.add(FxRate(base=base, currency=cur, as_of=as_of, rate=rate))
                else:
                    row.rate, row.updated_at = rate, utcnow()
        return len(clean)

    def has_fx_rates(self, base: str, currency: str) -> bool:
        """Whether any rate of ``currency`` against ``base`` is loaded (whatever its date)."""
        with self._session(write=False) as s:
            return (
                s.exec(
                    select(FxRate.as_of)
                    .where(FxRate.base == base, FxRate.currency == currency)
                    .limit(1)
                ).first()
                is not None
            )

    def fx_rate(self, base: str, currency: str, on: date) -> tuple[Decimal, date] | None:
        """The latest rate on or before ``on``: ``(rate, as_of)`` or None."""
        with self._session(write=False) as s:
            row = self._rate(s, base, currency, on)
            return (row.rate, row.as_of) if row else None

    # -- ledger events --------------------------------------------------------------------

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
        _ident(customer_id, "customer_id")
        if not isinstance(event, dict):
            raise ValueError("an event is an object")
        unknown = set(event) - {"event_id", "type", "order_id", "amount", "currency"}
        if unknown:
            raise ValueError(f"unknown event fields: {sorted(unknown)}")
        event_id = _ident(event.get("event_id"), "event_id")
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(f"type: one of {', '.join(EVENT_TYPES)}")
        order_id = event.get("order_id")
        if order_id is not None:
            _ident(order_id, "order_id")
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
            amount = _money(event["amount"], "amount")
            if amount <= 0:
                raise ValueError("amount: must be positive")
            currency = _currency_code(event.get("currency"), "currency")
        norm = {
            "customer_id": customer_id,
            "type": kind,
            "order_id": order_id,
            "amount": _plain(amount) if amount is not None else None,
            "currency": currency,
        }
        chash = chain.content_hash(norm)
        try:
            with self._session(write=True) as s:
                cust = s.get(Customer, customer_id, with_for_update=True)
                if cust is None:
                    raise UnknownCustomer(customer_id)
                seen = s.get(LedgerEvent, event_id)
                if seen is not None:
                    if seen.content_hash != chash:
                        raise EventConflict(
                            f"event_id: {event_id!r} was already recorded with other content"
                        )
                    return self._event_dict(seen, cust, replayed=True)
                if currency is not None and currency != cust.currency:
                    raise ValueError(
                        f"currency: the ledger of {customer_id!r} is kept in {cust.currency}, "
                        f"not {currency}"
                    )
                if order_id is not None:
                    # As in decide: an order id's owner is checked and fixed under one lock.
                    self._lock_order_id(s, order_id)
                effect = self._effect(s, cust, kind, order_id, amount)
                cust.updated_at = utcnow()
                last_seq, prev = self._chain_position(s, CHAIN_LEDGER, LedgerEvent, LEDGER_LOCK_KEY)
                row = LedgerEvent(
                    event_id=event_id,
                    customer_id=customer_id,
                    type=kind,
                    order_id=order_id,
                    amount=amount,
                    currency=currency,
                    content_hash=chash,
                    effect=chain.jsonable(effect),
                    caller=caller,
                    created_at=datetime.now(UTC),
                    seq=last_seq + 1,
                    prev_hash=prev,
                    record_hash="",
                )
                row.record_hash = chain.record_hash(prev, _event_record(row))
                s.add(row)
                self._set_head(s, CHAIN_LEDGER, row.seq, row.record_hash)
                s.flush()
                return self._event_dict(row, cust, replayed=False)
        except exc.IntegrityError:  # the same event id, concurrently, for another customer
            # (seq cannot clash: it is assigned under the ledger chain lock)
            raise EventConflict(f"event_id: {event_id!r} is already used") from None

    @staticmethod
    def _effect(
        s: Session, cust: Customer, kind: str, order_id: str | None, amount: Decimal | None
    ) -> dict[str, Any]:
        zero = Decimal("0.00")
        d_orders = d_recv = d_bal = unreserved = zero
        if kind == "order_cancelled":
            res = s.get(Reservation, order_id, with_for_update=True)
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
            res.updated_at = utcnow()
        elif kind == "invoice_issued":
            # An invoice is a receivable whatever Creditgate decided: never refused for the
            # order's state, never counted twice. The part covered by the order's open
            # reservation moves from open orders to receivables; the rest (no reservation:
            # a referred order approved by a person, an order decided elsewhere; or more
            # than was approved) is new exposure (``unreserved``), so it is never lost.
            assert amount is not None
            res = s.get(Reservation, order_id, with_for_update=True)
            if res is not None and res.customer_id != cust.customer_id:
                raise EventConflict(
                    f"order_id: order {order_id!r} belongs to customer {res.customer_id!r}"
                )
            if res is None:
                # No reservation (a referred or declined order, or one never decided here):
                # the order id must still not belong to another customer, by its decisions
                # or by its earlier ledger events.
                owner = Store._other_owner(
                    s, DecisionLog, order_id, cust.customer_id
                ) or Store._other_owner(s, LedgerEvent, order_id, cust.customer_id)
                if owner is not None:
                    raise EventConflict(
                        f"order_id: order {order_id!r} belongs to customer {owner!r}"
                    )
            moved = zero
            if res is not None and res.status == "open":
                moved = min(amount, res.amount - res.invoiced)
                res.invoiced = res.invoiced + moved
                if res.invoiced == res.amount:
                    res.status = "invoiced"
                res.updated_at = utcnow()
            d_orders = -moved
            offset = min(amount, cust.credit_balance)
            d_bal, d_recv = -offset, amount - offset
            if amount > moved:
                unreserved = amount - moved
        else:  # payment_received, credit_note: never blocked
            assert amount is not None
            d_recv = -min(amount, cust.open_receivables)
            d_bal = amount + d_recv
        cust.open_orders = cust.open_orders + d_orders
        cust.open_receivables = cust.open_receivables + d_recv
        cust.credit_balance = cust.credit_balance + d_bal
        effect = {"open_orders": d_orders, "open_receivables": d_recv, "credit_balance": d_bal}
        if unreserved:
            effect["unreserved"] = unreserved
        return effect

    def _event_dict(self, row: LedgerEvent, cust: Customer, *, replayed: bool) -> dict[str, Any]:
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
            "customer": self._customer_dict(cust),
        }

    def list_events(self, customer_id: str) -> list[dict[str, Any]]:
        with self._session(write=False) as s:
            rows = s.exec(
                select(LedgerEvent)
                .where(LedgerEvent.customer_id == customer_id)
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

    # -- bulk import ----------------------------------------------------------------------

    def import_customers(self, rows: list[dict[str, Any]]) -> int:
        """Create or update every customer of ``rows`` (``put_customer`` fields plus
        ``line``) in ONE transaction: any bad row → ``ImportErrors`` listing every bad row
        (``{line, column, problem}``), nothing written. ``None`` (an empty cell, or no
        column) keeps the stored value; facts are merged into the stored ones (an empty
        cell never clears a fact, such as a blacklist flag)."""
        # Rows in customer-id order: two imports lock the same customers in the same
        # order, so they queue instead of deadlocking.
        ordered = sorted(rows, key=lambda r: r["customer_id"])
        for attempt in (1, 2):
            errors: list[dict[str, Any]] = []
            try:
                with self._session(write=True) as s:
                    for r in ordered:
                        row = {**r, "facts": r.get("facts") or None}
                        cust = self._upsert_customer(s, row, merge_facts=True)
                        if isinstance(cust, str):
                            errors.append(
                                {
                                    "line": r["line"],
                                    "column": "currency",
                                    "problem": f"the customer {cust}",
                                }
                            )
                    if errors:
                        raise ImportErrors(sorted(errors, key=lambda e: e["line"]))  # rollback
                return len(rows)
            except exc.IntegrityError:  # a customer created concurrently: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # -- export ---------------------------------------------------------------------------

    def iter_decisions(
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
                q = q.where(col(DecisionLog.created_at) >= _as_datetime(date_from, end=False))
            if date_to is not None:
                q = q.where(col(DecisionLog.created_at) < _as_datetime(date_to, end=True))
            with self._session(write=False) as s:
                q = q.order_by(col(DecisionLog.seq)).limit(batch)
                page = read_records(s, q, DecisionLog, self._log_dict)
            yield from page
            if not page:
                return
            after = page[-1]["seq"]

    # -- API keys -------------------------------------------------------------------------

    def create_api_key(self, role: str, name: str = "") -> str:
        """A new key for ``role``: returned once in plain text (``cg_`` + 32 random bytes,
        urlsafe base64); only its sha256 is stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key = "cg_" + secrets.token_urlsafe(32)
        with self._session(write=True) as s:
            s.add(ApiKey(key_hash=hash_key(key), role=role, name=name or ""))
        return key

    def list_api_keys(self) -> list[dict[str, Any]]:
        """Every API key, oldest first: ``{key_id, role, name, created_at, revoked}``;
        ``key_id`` = the first ``KEY_ID_LENGTH`` hex characters of the key's sha256 (what the
        decision log's ``caller`` shows). Never the key (it is not stored)."""
        with self._session(write=False) as s:
            rows = s.exec(
                select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.key_hash))
            ).all()
            return [
                {
                    "key_id": r.key_hash[:KEY_ID_LENGTH],
                    "role": r.role,
                    "name": r.name,
                    "created_at": chain.as_utc(r.created_at),
                    "revoked": bool(r.revoked),
                }
                for r in rows
            ]

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        """Revoke the key whose sha256 starts with ``key_id`` (hex, at least
        ``MIN_KEY_ID_LENGTH`` characters: the ``key_id`` of ``list_api_keys`` or a longer
        prefix). Returns the key's ``list_api_keys`` entry plus ``already_revoked``.
        Raises ``UnknownKey`` (no match, or not a hex prefix) or ``AmbiguousKey`` (several
        keys match; nothing revoked). ``role_of`` refuses a revoked key from then on."""
        prefix = key_id.strip().lower() if isinstance(key_id, str) else ""
        if not MIN_KEY_ID_LENGTH <= len(prefix) <= 64 or any(
            c not in "0123456789abcdef" for c in prefix
        ):
            raise UnknownKey(
                f"{key_id!r} is not a key id: {MIN_KEY_ID_LENGTH} to 64 hex characters "
                "as shown by 'creditgate keys list'"
            )
        with self._session(write=True) as s:
            rows = s.exec(
                select(ApiKey).where(col(ApiKey.key_hash).startswith(prefix)).limit(10)
            ).all()
            if not rows:
                raise UnknownKey(f"no API key with id {prefix!r}")
            if len(rows) > 1:
                ids = ", ".join(sorted(r.key_hash[:KEY_ID_LENGTH] for r in rows))
                raise AmbiguousKey(f"{prefix!r} matches several keys ({ids}); give more of the id")
            row = rows[0]
            already = bool(row.revoked)
            row.revoked = True
            return {
                "key_id": row.key_hash[:KEY_ID_LENGTH],
                "role": row.role,
                "name": row.name,
                "created_at": chain.as_utc(row.created_at),
                "revoked": True,
                "already_revoked": already,
            }

    def role_of(self, key: str) -> str | None:
        """The role of an active key, or None for an unknown or revoked key."""
        if not isinstance(key, str) or not key:
            return None
        with self._session(write=False) as s:
            row = s.get(ApiKey, hash_key(key))
            return row.role if row is not None and not row.revoked else None


def policy_text_matches(sha256: str, source: Any) -> bool:
    """Whether a stored policy text is the one recorded under ``sha256``: the sha256 of its
    UTF-8 bytes (``rules.loader`` hashes a file's raw bytes, which decode and re-encode to
    the same bytes, and a text's UTF-8 encoding)."""
    if not isinstance(source, str):
        return False
    try:
        return hashlib.sha256(source.encode("utf-8")).hexdigest() == sha256
    except UnicodeEncodeError:  # a lone surrogate: not a text rules could have hashed
        return False


def _event_record(row: LedgerEvent) -> dict[str, Any]:
    """The hashed record of a ledger event (``LEDGER_HASHED`` plus ``record_hash``)."""
    out = {f: getattr(row, f) for f in (*LEDGER_HASHED, "record_hash")}
    out["created_at"] = chain.as_utc(out["created_at"])
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
