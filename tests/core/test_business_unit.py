"""Every table carries the business unit it belongs to (issue 7, part 2), so that a unit can
later have its own policy, currency, customers, ledger and chains: the column exists, is
filled with the default unit, and leads the primary key of every table a unit owns. On
SQLite and PostgreSQL, after the migrations."""

from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import stores
from tests.helpers.stores import evaluator, order, prime_customer

compiled = stores.compiled
pg_url = stores.pg_url
pg_store = stores.pg_store
store = stores.store

OWNED = {
    "customers": ["business_unit", "customer_id"],
    "reservations": ["business_unit", "order_id"],
    "decision_log": ["business_unit", "seq"],
    "ledger_events": ["business_unit", "event_id"],
    "chain_head": ["business_unit", "name"],
    "customer_history": ["business_unit", "seq"],
    "fx_rates": ["business_unit", "base", "currency", "as_of"],
    "policy_versions": ["business_unit", "sha256"],
}


def test_every_table_carries_its_business_unit(store, compiled):
    prime_customer(store)
    store.decisions.decide(order("O1", "100.00"), evaluator(compiled), "erp")
    store.keys.create("admin")
    inspector = sa.inspect(store.engine)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    assert tables == {*OWNED, "api_keys"}
    for table in tables:
        columns = {c["name"]: c for c in inspector.get_columns(table)}
        assert "business_unit" in columns, table
        assert columns["business_unit"]["nullable"] is False, table
    for table, key in OWNED.items():
        assert inspector.get_pk_constraint(table)["constrained_columns"] == key, table
    with store.engine.connect() as conn:
        for table in tables:
            units = conn.execute(sa.text(f"SELECT DISTINCT business_unit FROM {table}")).all()
            assert units in ([], [("default",)]), table
