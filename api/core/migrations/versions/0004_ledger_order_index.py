"""An index on ledger_events.order_id: the order-ownership checks (an invoice for an order
of another customer; a decision on an order id invoiced for another customer) look ledger
events up by order id.

Revision ID: 0004_ledger_order_index
Revises: 0003_chain_heads
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004_ledger_order_index"
down_revision = "0003_chain_heads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_events_order_id", "ledger_events", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_events_order_id", table_name="ledger_events")
