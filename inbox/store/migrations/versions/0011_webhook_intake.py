"""webhook intake: each delivery committed before it is acknowledged, and how a message arrived

`webhook_delivery` keeps the raw body of every verified webhook POST until its messages are ingested
(or it is quarantined); `message.via` says whether a poll or a webhook stored the message first.
The message column is a plain ADD COLUMN (never a table rebuild: the message table carries the
search index's triggers on SQLite).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_delivery_state", "webhook_delivery", ["state", "id"], unique=False)
    op.add_column("message", sa.Column("via", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("via")
    op.drop_index("ix_webhook_delivery_state", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
