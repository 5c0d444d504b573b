"""Failing closed when the database or the engine fails: 503 and never an approve, nothing
written; busy databases; SQLite's writer lock (SQLite and, where the database matters,
PostgreSQL; tests/helpers/sqlite_api.py and tests/helpers/stores.py)."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from api.app import create_app
from api.core.database import StoreUnavailable
from api.core.settings import Settings
from api.store import Store
from tests.conftest import fresh_pg_database
from tests.helpers import sqlite_api, stores
from tests.helpers.sqlite_api import POLICY, Api, problem
from tests.helpers.stores import evaluator, order, prime_customer

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api
# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled


def _break_database(api: Api, tmp_path: Path) -> None:
    """Point the store at a database file that cannot be opened."""
    import sqlalchemy as sa

    api.store.engine.dispose()
    api.store.engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_database_unavailable_is_503_and_never_approve(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.customer()
    good_engine = api.store.engine
    key = api.keys["order_entry"]
    monkeypatch.setattr(api.store.keys, "role_of", lambda k: "order_entry" if k == key else None)
    _break_database(api, tmp_path)
    r = api.decide()
    body = problem(r, 503, "database_unavailable")
    assert "outcome" not in body and "approve" not in r.text.replace("not approved", "")
    assert r.headers["retry-after"]
    problem(api.client.get("/readyz"), 503, "not_ready")
    assert api.client.get("/healthz").status_code == 200
    # nothing was recorded
    api.store.engine = good_engine
    assert api.store.decisions.search() == ([], None)


def test_database_unavailable_during_auth_is_503(api: Api, tmp_path: Path) -> None:
    _break_database(api, tmp_path)
    problem(api.client.get("/v1/decisions", headers=api.h("reviewer")), 503, "database_unavailable")


def test_database_failure_inside_the_transaction_writes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    api.customer()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    from api.decisions import records

    # the records are hashed after the reservation and the customer were written
    monkeypatch.setattr(records, "record_values", fail)
    r = api.decide()
    problem(r, 503, "database_unavailable")
    monkeypatch.undo()
    assert api.store.customers.get("CUST-1")["open_orders"] == Decimal("0.00")
    assert api.store.decisions.search() == ([], None)
    assert api.decide().json()["kind"] == "new"


def test_engine_failure_is_no_decision(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import evaluate as ev

    api.customer()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ev.EvaluationError("engine", "the rule engine failed")

    monkeypatch.setattr(ev, "_match", broken)
    body = problem(api.decide(), 503, "no_decision")
    assert "not approved" in body["detail"]
    monkeypatch.undo()
    assert api.store.decisions.search() == ([], None)
    assert api.store.customers.get("CUST-1")["open_orders"] == Decimal("0.00")


def test_unexpected_error_is_500_without_details(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api.store.customers, "read", boom)
    r = api.client.get("/v1/customers/CUST-1", headers=api.h())
    body = problem(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert body["errors"] == []


def test_head_on_readyz_with_the_database_down_is_503_without_a_body(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.core.database import StoreUnavailable

    def down() -> None:
        raise StoreUnavailable("down", cause="OperationalError")

    monkeypatch.setattr(api.store, "ping", down)
    r = api.client.head("/readyz")
    assert r.status_code == 503 and r.content == b""
    assert r.headers["retry-after"] == "5"


def test_sqlite_writer_lock_timeout_is_a_busy_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.core.database as database

    api.customer()
    monkeypatch.setattr(database, "WRITER_LOCK_TIMEOUT", 0.2)
    with api.store.db._writer_lock:  # another writer's turn (a long CSV import, say)
        r = api.decide()
    body = problem(r, 503, "database_unavailable")
    assert body["detail"].startswith(
        "the database is busy (another write held it longer than 0.2 s); nothing was recorded"
    ), body
    assert r.headers["retry-after"] == "5"
    listed = api.client.get("/v1/decisions", headers=api.h("reviewer")).json()
    assert listed["items"] == []
    assert api.decide().json()["outcome"] == "approve"  # the lock free: decided


def test_database_down_still_says_not_reached(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.core.database import StoreUnavailable
    from api.core.problems import busy_reason

    assert busy_reason(StoreUnavailable("x", cause="OperationalError")) == ""
    api.customer()

    def down(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("database unavailable: OperationalError", cause="OperationalError")

    api.app.state.key_cache.forget()  # the key must be read from the database: it is down
    monkeypatch.setattr(api.store.keys, "role_of_hash", down)
    body = problem(api.decide(), 503, "database_unavailable")
    assert body["detail"].startswith("the database could not be reached or did not answer")


def test_postgresql_lock_timeout_is_a_busy_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service sets its own lock_timeout (PG_LOCK_TIMEOUT_MS, 10 s; here 300 ms): a
    transaction left open on a customer's row makes the decision a busy 503 after it, never
    a wait without end (which would also hold up every other decision of the worker)."""
    import psycopg

    import api.core.database as database

    with fresh_pg_database("cg_busy") as url:
        with Store(url).engine.connect() as conn:  # the default, on every connection
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "10s"
        monkeypatch.setattr(database, "PG_LOCK_TIMEOUT_MS", 300)
        a = Api(create_app(Settings(database_url=url, policy_path=str(POLICY))), tmp_path)
        try:
            a.customer()
            plain = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
            with psycopg.connect(plain) as other:  # another write holds the customer's row
                other.execute("SELECT 1 FROM customers WHERE customer_id = 'CUST-1' FOR UPDATE")
                r = a.decide()
                other.rollback()
            body = problem(r, 503, "database_unavailable")
            assert body["detail"].startswith("the database is busy (a lock timeout: another"), body
            assert r.headers["retry-after"] == "5"
            assert a.decide().json()["outcome"] == "approve"
        finally:
            a.store.dispose()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://postgres@127.0.0.1:1/nothing", "sqlite:////nonexistent/dir/x.db"],
)
def test_unreachable_database(url, compiled):
    store = Store(url)
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.decisions.decide(order("O1", "100.00"), evaluator(compiled), "erp")
    with pytest.raises(StoreUnavailable):
        store.customers.get("C1")


def test_sqlite_writers_of_one_process_queue_on_the_writer_lock(tmp_path, monkeypatch):
    import api.core.database

    url = f"sqlite:///{tmp_path / 'w.db'}"
    a, b = Store(url), Store(url)
    try:
        a.upgrade()
        assert a.db._writer_lock is b.db._writer_lock  # one lock per database file and process
        assert Store(f"sqlite:///{tmp_path / 'other.db'}").db._writer_lock is not a.db._writer_lock
        done = threading.Event()

        def write():
            prime_customer(b)
            done.set()

        with a.db._writer_lock:  # another writer's turn: b waits for the lock, not in SQLite
            t = threading.Thread(target=write)
            t.start()
            assert not done.wait(0.5)
        t.join(10)
        assert done.is_set() and b.customers.get("C1")["credit_limit"] == Decimal("100000.00")
        # a writer that never gets its turn fails closed, nothing written
        monkeypatch.setattr(api.core.database, "WRITER_LOCK_TIMEOUT", 0.2)
        with a.db._writer_lock:
            with pytest.raises(StoreUnavailable, match="no write turn within 0.2 s"):
                prime_customer(b, customer_id="C2")
        assert b.customers.get("C2") is None
        # readers never wait for it
        with a.db._writer_lock:
            assert b.customers.get("C1") is not None
    finally:
        a.dispose()
        b.dispose()


def test_sqlite_writers_begin_immediate(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.upgrade()
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    prime_customer(store)
    assert "BEGIN IMMEDIATE" in seen
    seen.clear()
    store.customers.get("C1")
    assert "BEGIN" in seen and "BEGIN IMMEDIATE" not in seen
    store.dispose()


def test_postgresql_url_options_are_kept_beside_the_lock_timeout() -> None:
    """A URL's own server options (a search_path, say) still apply with the service's
    lock_timeout."""
    import psycopg

    with fresh_pg_database("cg_opts") as url:
        plain = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute("CREATE SCHEMA unit_a")
        store = Store(url + "?options=-csearch_path%3Dunit_a")
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW search_path").scalar() == "unit_a"
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "10s"
        finally:
            store.dispose()
