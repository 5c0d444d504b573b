"""Initial tables: policy_versions, customers, reservations, decision_log, api_keys.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.core.types import Money

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("policy_id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("credit_limit", Money(), nullable=False),
        sa.Column("open_receivables", Money(), nullable=False),
        sa.Column("open_orders", Money(), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        _ts("updated_at"),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("updated_at"),
    )
    op.create_index("ix_reservations_customer_id", "reservations", ["customer_id"])
    op.create_table(
        "decision_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("decision_id", sa.String(64), nullable=False, unique=True),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("policy_id", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.String(200), nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("rules_matched", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_decision_log_order_id", "decision_log", ["order_id"])
    op.create_index("ix_decision_log_customer_id", "decision_log", ["customer_id"])
    op.create_index("ix_decision_log_created_at", "decision_log", ["created_at"])
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("decision_log")
    op.drop_table("reservations")
    op.drop_table("customers")
    op.drop_table("policy_versions")
