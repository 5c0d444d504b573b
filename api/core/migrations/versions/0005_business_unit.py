"""Every table carries its business unit; the decision log keeps exact JSON text; records
note a moved clock.

- ``business_unit`` (``VARCHAR(64) NOT NULL DEFAULT 'default'``) on every table, part of the
  primary key of customers, reservations, decision_log, ledger_events, chain_head, fx_rates
  and policy_versions (a unit has its own customers, orders, chains, rates and policies);
  ``api_keys`` carries the unit of the key (keys stay unique by their hash). Indexes lead
  with the unit.
- ``decision_log.request``, ``decision`` and ``fx`` become TEXT: the exact JSON bytes the
  service hashed into the record's envelope and answered (PostgreSQL's ``json`` type kept the
  text as sent, so ``json::text`` is the same text).
- ``decision_log.clock`` and ``ledger_events.clock``: the clock the record was written under
  when it was not the system clock (``api.core.clock``); NULL otherwise.

Downgrade refuses a database holding records written under a moved clock (the old schema
cannot keep that note, and dropping it would make those records unverifiable), or records of
a business unit other than ``default``.

Revision ID: 0005_business_unit
Revises: 0004_ledger_order_index
Create Date: 2026-12-06
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0005_business_unit"
down_revision = "0004_ledger_order_index"
branch_labels = None
depends_on = None


# table -> its primary key after this revision (business_unit first)
KEYS = {
    "customers": ["customer_id"],
    "reservations": ["order_id"],
    "decision_log": ["seq"],
    "ledger_events": ["event_id"],
    "chain_head": ["name"],
    "fx_rates": ["base", "currency", "as_of"],
    "policy_versions": ["sha256"],
}
# (name, table, columns before, columns after)
INDEXES = [
    (
        "ix_reservations_customer_id",
        "reservations",
        ["customer_id"],
        ["business_unit", "customer_id"],
    ),
    (
        "ix_decision_log_order_id",
        "decision_log",
        ["order_id"],
        ["business_unit", "order_id", "seq"],
    ),
    (
        "ix_decision_log_customer_id",
        "decision_log",
        ["customer_id"],
        ["business_unit", "customer_id"],
    ),
    (
        "ix_ledger_events_customer_id",
        "ledger_events",
        ["customer_id"],
        ["business_unit", "customer_id"],
    ),
    ("ix_ledger_events_order_id", "ledger_events", ["order_id"], ["business_unit", "order_id"]),
]
JSON_TEXT = ("request", "decision", "fx")


def _unit_column() -> sa.Column:
    return sa.Column("business_unit", sa.String(64), nullable=False, server_default="default")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, key in KEYS.items():
        with warnings.catch_warnings():
            # SQLite rebuilds the table; SQLAlchemy warns that the reflected key differs
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as b:
                b.add_column(_unit_column())
                if table in ("decision_log", "ledger_events"):
                    b.add_column(sa.Column("clock", sa.Text(), nullable=True))
                if table == "decision_log":
                    for column in JSON_TEXT:
                        b.alter_column(
                            column,
                            existing_type=sa.JSON(),
                            type_=sa.Text(),
                            existing_nullable=column == "fx",
                            postgresql_using=f"{column}::text",
                        )
                if table == "ledger_events":
                    b.drop_constraint("uq_ledger_events_seq", type_="unique")
                    b.create_unique_constraint(
                        "uq_ledger_events_unit_seq", ["business_unit", "seq"]
                    )
                for name, t, _before, after in INDEXES:
                    if t == table:
                        b.drop_index(name)
                        b.create_index(name, after)
                if not sqlite:
                    b.drop_constraint(f"{table}_pkey", type_="primary")
                b.create_primary_key(f"pk_{table}", ["business_unit", *key])
    with op.batch_alter_table("api_keys") as b:
        b.add_column(_unit_column())


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for table in ("decision_log", "ledger_events"):
        n = bind.execute(sa.text(f"SELECT count(*) FROM {table} WHERE clock IS NOT NULL")).scalar()
        if n:
            raise RuntimeError(
                f"{table} holds {n} records written under a moved clock: the schema before "
                "0005 cannot keep that note; not downgraded"
            )
    for table in KEYS:
        n = bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE business_unit <> 'default'")
        ).scalar()
        if n:
            raise RuntimeError(
                f"{table} holds {n} rows of business units other than 'default'; not downgraded"
            )
    with op.batch_alter_table("api_keys") as b:
        b.drop_column("business_unit")
    for table, key in KEYS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as b:
                if not sqlite:
                    b.drop_constraint(f"pk_{table}", type_="primary")
                for name, t, before, _after in INDEXES:
                    if t == table:
                        b.drop_index(name)
                        b.create_index(name, before)
                if table == "ledger_events":
                    b.drop_constraint("uq_ledger_events_unit_seq", type_="unique")
                    b.create_unique_constraint("uq_ledger_events_seq", ["seq"])
                if table == "decision_log":
                    for column in JSON_TEXT:
                        b.alter_column(
                            column,
                            existing_type=sa.Text(),
                            type_=sa.JSON(),
                            existing_nullable=column == "fx",
                            postgresql_using=f"{column}::json",
                        )
                if table in ("decision_log", "ledger_events"):
                    b.drop_column("clock")
                b.drop_column("business_unit")
                b.create_primary_key(f"{table}_pkey", key)
