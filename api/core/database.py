"""The database: one SQLAlchemy engine per URL, transactions, locks and the errors every
domain's persistence shares.

``Database(database_url)`` works on SQLite (``sqlite:///file.db``) and PostgreSQL
(``postgresql+psycopg://...``). ``Database.session(write=...)`` is the only way a domain
opens a transaction: it commits at the end, rolls back on any exception and turns a
connection failure into ``StoreUnavailable``.

Lock order (every write that takes more than one lock takes them in this order, so no two
transactions wait on each other in a cycle, across threads, workers and replicas): the
customer row (``SELECT ... FOR UPDATE``), then the order id (``lock_order_id``), then a
reservation row, then a chain (the decision log's or the ledger's, last). On SQLite one
writer at a time holds the whole database (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlmodel import Session, col

from api.core.clock import Clock
from api.core.settings import normalise_database_url
from api.core.types import DEFAULT_UNIT

__all__ = [
    "MIGRATE_LOCK_KEY",
    "ORDER_LOCK_NS",
    "READ_ERRORS",
    "WRITER_LOCK_TIMEOUT",
    "Database",
    "StoreNotMigrated",
    "StoreUnavailable",
    "UnreadableRecord",
    "WriterBusy",
    "read_cause",
    "read_records",
]

MIGRATE_LOCK_KEY = 0x43474D4947  # "CGMIG"
# the tables the decision path reads by key (ANALYZE after every upgrade on PostgreSQL)
ANALYZED = ("customers", "reservations", "decision_log", "ledger_events", "chain_head")
ORDER_LOCK_NS = 0x43474F52  # "CGOR": namespace (int4) of the per-order-id advisory locks
UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


class StoreUnavailable(Exception):
    """The database cannot be reached (or did not answer in time). ``cause``: the name of
    the underlying error (e.g. ``OperationalError``)."""

    def __init__(self, message: str, *, cause: str = ""):
        super().__init__(message)
        self.cause = cause


class WriterBusy(Exception):
    """``connection(write=True, wait=False)`` on SQLite: another writer holds the database
    now (this process's writer lock, or another process's write transaction); nothing was
    done. The caller retries where waiting is harmless: on a thread, not the event loop."""


class StoreNotMigrated(StoreUnavailable):
    """The database answers but lacks the service's tables (run ``creditgate db upgrade``)."""


def unavailable(e: Exception) -> StoreUnavailable:
    """``e`` (a driver or pool error) as ``StoreUnavailable`` / ``StoreNotMigrated``."""
    orig = getattr(e, "orig", None) or e
    cause = type(orig).__name__
    if _missing_table(e):
        return StoreNotMigrated(f"database not migrated: {cause}", cause=cause)
    return StoreUnavailable(f"database unavailable: {cause}", cause=cause)


def _missing_table(e: Exception) -> bool:
    """SQLite ``no such table`` or PostgreSQL undefined_table (SQLSTATE 42P01)."""
    orig = getattr(e, "orig", None)
    return "no such table" in str(orig or e) or getattr(orig, "sqlstate", None) == "42P01"


# One writer lock per SQLite database file and process (see ``Database.session``).
_SQLITE_WRITER_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_WRITER_LOCKS_GUARD = threading.Lock()
WRITER_LOCK_TIMEOUT = 30.0  # seconds; as SQLite's busy_timeout
# PostgreSQL: the longest a statement waits for a row or advisory lock another transaction
# holds (lock_timeout) before it fails with 55P03 (503 database_unavailable, "busy"); a
# transaction left open on a customer row (an operator's session) would else hold up every
# decision of the worker's writer without end.
PG_LOCK_TIMEOUT_MS = 10_000


def _sqlite_writer_lock(url: sa.URL) -> threading.Lock:
    """The process-wide writer lock of the SQLite database of ``url`` (keyed by the
    resolved file path; each in-memory database gets its own)."""
    db = url.database or ""
    key = str(Path(db).resolve()) if db not in ("", ":memory:") else f"memory:{id(url)}"
    with _SQLITE_WRITER_LOCKS_GUARD:
        return _SQLITE_WRITER_LOCKS.setdefault(key, threading.Lock())


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
READ_ERRORS = (ValueError, TypeError, ArithmeticError, KeyError, AttributeError)


def read_cause(e: BaseException) -> str:
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
    except READ_ERRORS as e:
        first_cause = read_cause(e)
    table = model.__tablename__
    try:
        seqs = list(s.exec(q.with_only_columns(col(model.seq))).all())
    except READ_ERRORS:  # pragma: no cover - seq is an integer primary key
        raise UnreadableRecord(table, None, first_cause) from None
    readable: list[dict[str, Any]] = []
    s.expunge_all()
    for seq in seqs:
        try:
            row = s.exec(q.where(col(model.seq) == seq)).one()
            readable.append(as_record(row))
        except READ_ERRORS as e:
            raise UnreadableRecord(table, seq, read_cause(e), readable) from None
    raise UnreadableRecord(table, None, first_cause, readable)  # pragma: no cover


def read_page(
    db: Database,
    q: Any,
    model: Any,
    as_record: Callable[[Any], dict[str, Any]],
    *,
    cursor: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of ``q`` (a filtered ``select(model)``), newest first (``seq`` descending),
    in one read transaction: ``cursor`` is the ``next_cursor`` of the previous page (only
    rows with a lower ``seq``, so rows appended meanwhile never shift a page), ``limit``
    1 to 500 rows. Returns ``(records, next_cursor or None)``; raises
    ``UnreadableRecord`` (``read_records``)."""
    limit = max(1, min(int(limit), 500))
    if cursor is not None:
        q = q.where(col(model.seq) < int(cursor))
    q = q.order_by(col(model.seq).desc()).limit(limit + 1)
    with db.session(write=False) as s:
        rows = read_records(s, q, model, as_record)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more else None)


def read_batches(
    db: Database,
    q: Any,
    model: Any,
    as_record: Callable[[Any], dict[str, Any]],
    *,
    batch: int,
) -> Iterator[dict[str, Any]]:
    """Every row of ``q`` (a filtered ``select(model)``) in ``seq`` order, ``batch`` at a
    time (one short read transaction each, keyset pagination on ``seq``). A row that
    cannot be read raises ``UnreadableRecord`` before any row of its batch is yielded:
    never a silent end."""
    after = 0
    while True:
        page_q = q.where(col(model.seq) > after).order_by(col(model.seq)).limit(batch)
        with db.session(write=False) as s:
            page = read_records(s, page_q, model, as_record)
        yield from page
        if not page:
            return
        after = page[-1]["seq"]


class Database:
    """One database: its engine, transactions and locks, the clock every write reads its
    time from (``clock``, ``api.core.clock``) and the business unit this service works in
    (``unit``; every table carries it)."""

    def __init__(
        self,
        database_url: str,
        *,
        clock: Clock | Callable[[], Any] | None = None,
        unit: str = DEFAULT_UNIT,
    ):
        self.clock = Clock.of(clock)
        self.unit = unit
        self.url = normalise_database_url(database_url)
        self.engine = self._make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._writer_lock = (
            _sqlite_writer_lock(self.engine.url) if self.dialect == "sqlite" else None
        )
        self._write_engine: tuple[sa.Engine, sa.Engine, sa.Engine] | None = None

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
                # Every commit is durable (an fsync of the WAL) whatever SQLite's build
                # default: a decision answered is never lost by a power cut.
                cur.execute("PRAGMA synchronous = FULL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: sa.Connection) -> None:
                # Writers take the database write lock at BEGIN (one writer at a time);
                # readers use a deferred transaction (WAL snapshot). A writer that may not
                # wait (on the event loop) tries once, without the busy handler's wait.
                options = conn.get_execution_options()
                if not options.get("creditgate_write"):
                    conn.exec_driver_sql("BEGIN")
                elif not options.get("creditgate_nowait"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                    try:
                        raw.execute("PRAGMA busy_timeout = 0")
                        try:
                            raw.execute("BEGIN IMMEDIATE")
                        finally:
                            raw.execute("PRAGMA busy_timeout = 30000")
                    except sqlite3.Error as e:
                        if "locked" in str(e) or "busy" in str(e):
                            raise WriterBusy(f"another process holds the database ({e})") from e
                        # as SQLAlchemy would have raised it (StoreUnavailable in _turn)
                        raise exc.DBAPIError.instance(
                            "BEGIN IMMEDIATE", None, e, sqlite3.Error
                        ) from e

            return engine
        # the URL's own server options (``?options=-csearch_path%3Dx``) are kept, before ours
        options = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}"
        if "options" in u.query:
            given = u.query["options"]
            options = f"{' '.join(given) if isinstance(given, tuple) else given} {options}"
            u = u.difference_update_query(["options"])
        return sa.create_engine(
            u,
            pool_size=10,
            max_overflow=20,
            pool_timeout=60,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 5,
                "options": options,
                # a server or network that stops answering mid-transaction: the connection
                # is found dead after about 10 + 3 x 5 s, not after the kernel's 2 hours
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            },
        )

    @contextmanager
    def session(self, *, write: bool) -> Iterator[Session]:
        """One transaction: commit at the end, rollback on any exception. Database
        connection failures become ``StoreUnavailable``.

        On SQLite a writer first takes the process-wide writer lock of its database file
        (``_sqlite_writer_lock``), then ``BEGIN IMMEDIATE``; it releases the lock after the
        commit or rollback. Writers of one process thus queue on a lock instead of
        spinning in SQLite's busy handler (which sleeps and retries, and lets a newcomer
        overtake a writer that has waited long: p99 1.5 s with 8 clients); BEGIN IMMEDIATE
        still serialises writers of other processes. Not granted within
        ``WRITER_LOCK_TIMEOUT`` seconds → ``StoreUnavailable``."""
        with self._turn(write) as bind, Session(bind, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def connection(self, *, write: bool, wait: bool = True) -> Iterator[sa.Connection]:
        """``session`` without the ORM: one Core connection in one transaction (the hot
        path, which works on the driver and opens an ORM ``Session`` on this connection
        only when it needs one). Same locks, commit, rollback and errors as ``session``.
        ``wait=False`` (SQLite): if another writer holds the database (this process's
        writer lock, or another process's lock: ``BEGIN IMMEDIATE`` tried without the busy
        wait), raise ``WriterBusy`` at once instead of waiting (a caller on the event loop)."""
        with self._turn(write, wait) as bind, bind.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _turn(self, write: bool, wait: bool = True) -> Iterator[sa.Engine]:
        """The engine to open a transaction on (a writer's: ``BEGIN IMMEDIATE`` on SQLite)
        while holding this process's writer lock (SQLite writers), with connection failures
        raised as ``StoreUnavailable``; ``wait=False``: ``WriterBusy`` if the lock is held."""
        engine = self.engine
        if write:
            if self._write_engine is None or self._write_engine[0] is not engine:
                self._write_engine = (
                    engine,
                    engine.execution_options(creditgate_write=True),
                    engine.execution_options(creditgate_write=True, creditgate_nowait=True),
                )
            bind = self._write_engine[1] if wait else self._write_engine[2]
        else:
            bind = engine
        lock = self._writer_lock if write else None
        if lock is not None and not wait and not lock.acquire(blocking=False):
            raise WriterBusy("another writer of this process holds the database")
        if lock is not None and wait and not lock.acquire(timeout=WRITER_LOCK_TIMEOUT):
            raise StoreUnavailable(
                f"database unavailable: no write turn within {WRITER_LOCK_TIMEOUT:g} s",
                cause="WriterLockTimeout",
            )
        try:
            yield bind
        except UNAVAILABLE as e:
            raise unavailable(e) from e
        except exc.ProgrammingError as e:
            if _missing_table(e):
                raise unavailable(e) from e
            raise
        finally:
            if lock is not None:
                lock.release()

    def dispose(self) -> None:
        self.engine.dispose()

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
                if self.dialect == "postgresql":
                    # Planner statistics for the decision path's lookups even where
                    # autovacuum is off (PostgreSQL's default is on: it keeps them fresh).
                    conn.execute(sa.text(f"ANALYZE {', '.join(ANALYZED)}"))
        except UNAVAILABLE as e:
            raise unavailable(e) from e
        return before, after

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers ``SELECT 1``."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except UNAVAILABLE as e:
            raise unavailable(e) from e

    def advisory_lock(self, s: Session, key: int) -> None:
        """PostgreSQL: a transaction advisory lock on ``key`` (released at commit or
        rollback). SQLite: nothing (writers are serialised already)."""
        if self.dialect == "postgresql":
            s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def lock_order_ids(self, conn: Any, order_ids: list[str]) -> None:
        """``lock_order_id`` for several order ids in one statement, in the order of their
        lock keys (every transaction takes them in that one order: no cycle)."""
        if self.dialect == "postgresql" and order_ids:
            conn.execute(
                sa.text(
                    "SELECT count(pg_advisory_xact_lock(:ns, k)) FROM "
                    "(SELECT DISTINCT hashtext(o) AS k FROM unnest(CAST(:oids AS text[])) AS o "
                    "ORDER BY 1) AS keys"
                ),
                {"ns": ORDER_LOCK_NS, "oids": list(order_ids)},
            )

    def lock_order_id(self, s: Session, order_id: str) -> None:
        """Serialise writes on one order id across customers (PostgreSQL: a transaction
        advisory lock on the id's hash, taken after the customer's row lock, so no cycle;
        SQLite: writers are serialised already). A hash collision only makes two unrelated
        orders wait for each other."""
        if self.dialect == "postgresql":
            s.execute(
                sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:oid))"),
                {"ns": ORDER_LOCK_NS, "oid": order_id},
            )
