"""ticket queue index

The triage queue order — priority, SLA due time, id — as one index, so `inbox list` and
`inbox claim` read the next tickets in order instead of sorting every active ticket.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ticket_queue", "ticket", ["priority_rank", "first_response_due_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ticket_queue", table_name="ticket")
