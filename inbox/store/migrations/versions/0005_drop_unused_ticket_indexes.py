"""drop two ticket indexes nothing reads

`ix_ticket_status` is a prefix of `ix_ticket_triage` (status, priority_rank, first_response_due_at),
which serves every status filter as well; `ix_ticket_updated_at` serves no query at all. Both were
maintained on every ticket the sync creates or touches (updated_at changes with every message).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_ticket_status", table_name="ticket")
    op.drop_index("ix_ticket_updated_at", table_name="ticket")


def downgrade() -> None:
    op.create_index("ix_ticket_updated_at", "ticket", ["updated_at"], unique=False)
    op.create_index("ix_ticket_status", "ticket", ["status"], unique=False)
