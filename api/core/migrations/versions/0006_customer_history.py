"""Customer master data: a version per customer (the ETag of ``PUT``/``PATCH``) and the
hash-chained history of its changes.

- ``customers.version`` (``BIGINT NOT NULL DEFAULT 1``): bumped by every change of the
  customer's master data (``PUT``, ``PATCH``, the CSV import); part of the record's ETag,
  compared and set under the customer's row lock.
- ``customer_history``: one record per change (who, when, old → new per field, reason),
  chained like the decision log (``seq``, ``prev_hash``, ``record_hash``; head
  ``customer_history`` in ``chain_head``). Existing customers have no history: the chain
  starts empty (their current values are the ``old`` of their first change).

Revision ID: 0006_customer_history
Revises: 0005_business_unit
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_customer_history"
down_revision = "0005_business_unit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as b:
        b.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"))
    op.create_table(
        "customer_history",
        sa.Column("business_unit", sa.String(64), nullable=False, server_default="default"),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clock", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("business_unit", "seq", name="pk_customer_history"),
    )
    op.create_index(
        "ix_customer_history_customer_id",
        "customer_history",
        ["business_unit", "customer_id", "seq"],
    )


def downgrade() -> None:
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM customer_history")).scalar()
    if n:
        raise RuntimeError(
            f"customer_history holds {n} records: the schema before 0006 cannot keep them; "
            "not downgraded"
        )
    op.drop_index("ix_customer_history_customer_id", table_name="customer_history")
    op.drop_table("customer_history")
    op.execute(sa.text("DELETE FROM chain_head WHERE name = 'customer_history'"))
    with op.batch_alter_table("customers") as b:
        b.drop_column("version")
