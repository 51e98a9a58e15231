"""reply: the newest message of its thread when it was recorded

A reply's echo is a message stored after the reply was recorded. Matching on the platform's
timestamp alone failed when our clock ran minutes ahead of the platform's: a delivered reply was
declared not delivered, and a retry sent it twice. Replies recorded before this column keep the
timestamp rule (NULL here). A plain ADD COLUMN: nothing is rebuilt.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 13:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reply", sa.Column("echo_after_message_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reply", schema=None) as batch_op:
        batch_op.drop_column("echo_after_message_id")
