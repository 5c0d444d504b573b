"""Chain heads (tail-truncation detection) and a hash chain over the ledger events.

Adds ``chain_head`` (one row per chain: ``decision_log``, ``ledger_events``) and
``ledger_events.seq`` / ``prev_hash`` / ``record_hash``. An existing database gets its
ledger events chained in ``created_at``, ``event_id`` order and both heads set from the
current last records, so a database migrated with records verifies as intact (and any
tampering before this migration that the decision log's chain shows is still shown).

Revision ID: 0003_chain_heads
Revises: 0002_ledger_fx
Create Date: 2026-11-29
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from api.core import chain
from api.core.types import Money

revision = "0003_chain_heads"
down_revision = "0002_ledger_fx"
branch_labels = None
depends_on = None

# The hashed fields of a ledger event, as in api.store.LEDGER_HASHED (frozen here).
_LEDGER_HASHED = (
    "seq",
    "event_id",
    "customer_id",
    "type",
    "order_id",
    "amount",
    "currency",
    "content_hash",
    "effect",
    "caller",
    "created_at",
    "prev_hash",
)


def upgrade() -> None:
    op.create_table(
        "chain_head",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("ledger_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("record_hash", sa.String(64), nullable=True))

    bind = op.get_bind()
    now = datetime.now(UTC)
    heads = sa.table(
        "chain_head",
        sa.column("name", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("record_hash", sa.String()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )

    # Ledger events: chain the existing ones (typed reads, so values hash as the store
    # reads them: money as Decimal, timestamps as datetimes, effect as JSON).
    events = sa.table(
        "ledger_events",
        sa.column("event_id", sa.String()),
        sa.column("customer_id", sa.String()),
        sa.column("type", sa.String()),
        sa.column("order_id", sa.String()),
        sa.column("amount", Money()),
        sa.column("currency", sa.String()),
        sa.column("content_hash", sa.String()),
        sa.column("effect", sa.JSON()),
        sa.column("caller", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("record_hash", sa.String()),
    )
    rows = bind.execute(
        sa.select(events).order_by(events.c.created_at, events.c.event_id)
    ).mappings()
    prev, seq = chain.GENESIS, 0
    for row in list(rows):
        seq += 1
        record = {f: row[f] for f in _LEDGER_HASHED if f not in ("seq", "prev_hash")}
        record["created_at"] = chain.as_utc(record["created_at"])
        record.update(seq=seq, prev_hash=prev)
        digest = chain.record_hash(prev, record)
        bind.execute(
            events.update()
            .where(events.c.event_id == row["event_id"])
            .values(seq=seq, prev_hash=prev, record_hash=digest)
        )
        prev = digest
    if seq:
        bind.execute(
            heads.insert().values(name="ledger_events", seq=seq, record_hash=prev, updated_at=now)
        )

    with op.batch_alter_table("ledger_events") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("record_hash", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_ledger_events_seq", ["seq"])

    # Decision log: the head is its current last record (whatever the chain says of it).
    last = bind.execute(
        sa.text("SELECT seq, record_hash FROM decision_log ORDER BY seq DESC LIMIT 1")
    ).first()
    if last is not None:
        bind.execute(
            heads.insert().values(
                name="decision_log", seq=last[0], record_hash=last[1], updated_at=now
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_events") as batch:
        batch.drop_constraint("uq_ledger_events_seq", type_="unique")
        batch.drop_column("record_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    op.drop_table("chain_head")
