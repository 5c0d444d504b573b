"""Ledger events, FX conversion, CSV import and the decision export: the store on SQLite and
PostgreSQL (fixtures as in tests/test_store.py), and the HTTP API (TestClient) on both."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa


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
