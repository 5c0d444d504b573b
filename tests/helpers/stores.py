"""The store on SQLite (a temporary file) and PostgreSQL (a database and one ``Store`` on
127.0.0.1:5432 per test module that uses it, emptied before each test and dropped at the
end of the session; skipped, with the reason, when PostgreSQL cannot be reached; override
the server with CREDITGATE_TEST_PG, a psycopg conninfo URL of an existing database to
connect to for CREATE DATABASE).

Fixtures: ``compiled``, ``pg_url``, ``pg_store``, ``store``. A test module takes the ones
it needs with ``store = stores.store`` etc."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from api.ledger.tables import Reservation
from api.store import Store
from engine.evaluate import evaluate, load
from tests.conftest import fresh_pg_database

TABLES = (
    "decision_log",
    "ledger_events",
    "chain_head",
    "customer_history",
    "reservations",
    "customers",
    "api_keys",
    "policy_versions",
)
PRIME = {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}


@pytest.fixture(scope="session")
def compiled():
    return load("policies.yaml")


@pytest.fixture(scope="session")
def pg_url():
    with fresh_pg_database("cg_test") as url:
        yield url


@pytest.fixture(scope="session")
def pg_store(pg_url):
    store = Store(pg_url)
    store.upgrade()
    yield store
    store.dispose()


def _sqlite(tmp_path, compiled) -> Iterator[Store]:
    # The policy text is stored, as the service does at start: the audit requires a stored
    # text for every policy the decision log names.
    s = Store(f"sqlite:///{tmp_path / 'creditgate.db'}")
    s.upgrade()
    s.policies.save(compiled.policy)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path, compiled):
    """A store on a new SQLite file (for what only SQLite has: the event-loop writer)."""
    yield from _sqlite(tmp_path, compiled)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, compiled):
    if request.param == "sqlite":
        yield from _sqlite(tmp_path, compiled)
    else:
        s = request.getfixturevalue("pg_store")
        with s.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
        s.policies.save(compiled.policy)
        yield s


def evaluator(compiled):
    return lambda req: evaluate(compiled, req)


def order(order_id, amount, customer_id="C1", **kw):
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "amount": amount,
        "currency": "EUR",
        "payment_term_days": 30,
        "facts": kw.pop("facts", {}),
        **kw,
    }


def prime_customer(store, customer_id="C1", limit="100000.00", receivables="20000.00"):
    return store.customers.put(
        customer_id,
        currency="EUR",
        credit_limit=Decimal(limit),
        open_receivables=Decimal(receivables),
        facts=PRIME,
    )


def reservations(store):
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(Reservation.__table__)).mappings().all()
    return {r["order_id"]: Decimal(str(r["amount"])) for r in rows}


def log_count(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM decision_log")).scalar_one()


def last_record(store, table="decision_log"):
    with store.engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(f"SELECT seq, record_hash FROM {table} ORDER BY seq DESC LIMIT 1")
            ).one()
        )


def history_head(store):
    """``(seq, record_hash)`` of the customer history's chain head (None: no head)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT seq, record_hash FROM chain_head WHERE name = 'customer_history'")
        ).first()
    return tuple(row) if row else None


def intact(
    checked,
    head=None,
    ledger_checked=0,
    ledger_head=None,
    customers=1,
    policies=1,
    moved=0,
    history=None,
):
    """The verify_chain answer for intact chains of ``checked`` log records and
    ``ledger_checked`` ledger events, with these heads ``(seq, hash)``, and a consistent
    ledger of ``customers`` customers and ``policies`` stored policy texts; ``moved``:
    the log records written under a moved clock; ``history``: the customer history's head
    ``(seq, hash)`` (``history_head``), every record intact."""
    return {
        "ok": True,
        "checked": checked,
        "first_broken_seq": None,
        "reason": None,
        "head_seq": head[0] if head else None,
        "head_hash": head[1] if head else None,
        "moved_clock": moved,
        "ledger": {
            "ok": True,
            "checked": ledger_checked,
            "first_broken_seq": None,
            "reason": None,
            "head_seq": ledger_head[0] if ledger_head else None,
            "head_hash": ledger_head[1] if ledger_head else None,
            "moved_clock": 0,
        },
        "customer_history": {
            "ok": True,
            "checked": history[0] if history else 0,
            "first_broken_seq": None,
            "reason": None,
            "head_seq": history[0] if history else None,
            "head_hash": history[1] if history else None,
            "moved_clock": 0,
        },
        "consistency": {
            "ok": True,
            "customers": customers,
            "policy_versions": policies,
            "problems": [],
            "problems_total": 0,
        },
    }
