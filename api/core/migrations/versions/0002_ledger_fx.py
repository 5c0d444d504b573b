"""Ledger events, FX rates, invoiced part of reservations, customer credit balance, FX
info on decision log records.

Revision ID: 0002_ledger_fx
Revises: 0001_initial
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.core.types import Money, Rate

revision = "0002_ledger_fx"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(
            sa.Column("credit_balance", Money(), nullable=False, server_default="0.00")
        )
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("invoiced", Money(), nullable=False, server_default="0.00"))
    with op.batch_alter_table("decision_log") as batch:
        batch.add_column(sa.Column("fx", sa.JSON(), nullable=True))
    op.create_table(
        "fx_rates",
        sa.Column("base", sa.String(3), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("rate", Rate(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(200), nullable=True),
        sa.Column("amount", Money(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("effect", sa.JSON(), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_events_customer_id", "ledger_events", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_events_customer_id", "ledger_events")
    op.drop_table("ledger_events")
    op.drop_table("fx_rates")
    with op.batch_alter_table("decision_log") as batch:
        batch.drop_column("fx")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("invoiced")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("credit_balance")
