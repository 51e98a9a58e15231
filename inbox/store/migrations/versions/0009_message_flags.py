"""message flags: what was repaired in a stored message (missing or future time, inferred sender)

A plain ADD COLUMN on both backends (never a table rebuild: the message table carries the search
index's triggers on SQLite).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:16:09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message", sa.Column("flags", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("flags")
