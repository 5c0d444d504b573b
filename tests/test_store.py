"""Store tests, on SQLite (a temporary file) and PostgreSQL (a database created for this
test session on 127.0.0.1:5432 and dropped at the end; skipped, with the reason, when
PostgreSQL cannot be reached). Override the server with CREDITGATE_TEST_PG
(a psycopg conninfo URL of an existing database to connect to for CREATE DATABASE)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from api.core.database import StoreUnavailable
from api.store import Store
from tests.helpers import stores
from tests.helpers.stores import TABLES, evaluator, order, prime_customer

# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_migrations_are_idempotent_and_policy_versions(store, compiled):
    store.upgrade()  # second time: nothing to do
    store.ping()
    store.policies.save(compiled.policy)
    store.policies.save(compiled.policy)
    assert store.policies.source(compiled.policy.sha256) == compiled.policy.source
    assert store.policies.source("0" * 64) is None


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


def test_alembic_ini_upgrade(tmp_path):
    from alembic import command
    from alembic.config import Config

    cfg = Config("alembic.ini")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    assert set(TABLES) <= set(sa.inspect(sa.create_engine(url)).get_table_names())


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


def test_settings_from_environment(monkeypatch):
    from api.core.settings import Settings

    for var in ("DATABASE_URL", "CREDITGATE_DATABASE_URL", "CREDITGATE_POLICY_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert Settings().database_url == "sqlite:///creditgate.db"
    assert Settings().max_request_bytes == 1024 * 1024
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/creditgate")
    assert Settings().database_url == "postgresql+psycopg://u@db/creditgate"
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", "sqlite:///other.db")
    assert Settings().database_url == "sqlite:///other.db"
    assert Settings(database_url="postgresql://x/y").database_url == "postgresql+psycopg://x/y"


def test_models_match_the_migrations(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
