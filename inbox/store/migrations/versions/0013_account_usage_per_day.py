"""account usage per day: the DM events each account's syncs read, by UTC day

X bills every DM event a lookup returns (pay-per-use); `inbox accounts` and `inbox sync --json`
show today's count and its estimated cost. A new table: nothing existing changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 14:00:35.528192
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('account_usage',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('events_read', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.PrimaryKeyConstraint('account_id', 'day')
    )


def downgrade() -> None:
    op.drop_table('account_usage')
