"""Customer master data: a version per customer (the ETag of ``PUT``/``PATCH``).

- ``customers.version`` (``BIGINT NOT NULL DEFAULT 1``): bumped by every change of the
  customer's master data (``PUT``, ``PATCH``, the CSV import); part of the record's ETag,
  compared and set under the customer's row lock.

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


def downgrade() -> None:
    with op.batch_alter_table("customers") as b:
        b.drop_column("version")
