"""Migrations (idempotent, alembic.ini, the models match them, 0002 down and up) and
settings from the environment (SQLite and PostgreSQL; tests/helpers/stores.py)."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from tests.helpers import stores
from tests.helpers.stores import TABLES

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


def test_alembic_ini_upgrade(tmp_path):
    from alembic import command
    from alembic.config import Config

    cfg = Config("alembic.ini")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    assert set(TABLES) <= set(sa.inspect(sa.create_engine(url)).get_table_names())


def test_models_match_the_migrations(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


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


def test_migration_0002_downgrades_and_upgrades(tmp_path):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = Config("alembic.ini")
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001_initial")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers VALUES ('C1', 'EUR', '10.00', '0.00', '0.00', 0, '{}', "
                "'2026-01-01 00:00:00')"
            )
        )
    command.upgrade(cfg, "head")
    tables = set(sa.inspect(engine).get_table_names())
    assert {"ledger_events", "fx_rates"} <= tables
    with engine.connect() as conn:  # existing rows get a zero credit balance
        bal = conn.execute(sa.text("SELECT credit_balance FROM customers")).scalar_one()
    assert Decimal(bal) == 0
    command.downgrade(cfg, "0001_initial")
    assert "ledger_events" not in set(sa.inspect(engine).get_table_names())
    command.upgrade(cfg, "head")
    engine.dispose()
