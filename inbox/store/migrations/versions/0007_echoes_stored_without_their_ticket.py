"""echoes stored without their ticket join it

Before this release, one of our messages stored before its thread had a ticket (the oldest readable
message of a Meta thread, an X page ending right after it, the brand writing first) stayed without
a ticket: left out of export and search, and of the ticket's message count and first response. The
ingest now attaches them; this repairs the messages stored before it did. Data only: no schema
change, and nothing to undo (a downgrade leaves them attached).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:41:09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns this revision reads and writes, as they are at revision 0006.
_m = sa.table("message", sa.column("id"), sa.column("conversation_id"), sa.column("ticket_id"), sa.column("direction"),
              sa.column("sent_at"))
_v = sa.table("conversation", sa.column("id"), sa.column("ticket_id"))
_t = sa.table("ticket", sa.column("id"), sa.column("message_count"), sa.column("first_response_at"), sa.column("created_at"))


def upgrade() -> None:
    strays_of_ticket = sa.and_(_m.c.ticket_id.is_(None), _m.c.conversation_id == _v.c.id, _v.c.ticket_id == _t.c.id)
    count = sa.select(sa.func.count()).select_from(_m, _v).where(strays_of_ticket).scalar_subquery()
    # Our first message at or after the customer's that opened the ticket answers it.
    answer = (
        sa.select(sa.func.min(_m.c.sent_at))
        .select_from(_m, _v)
        .where(strays_of_ticket, _m.c.direction == "out", _m.c.sent_at >= _t.c.created_at)
        .scalar_subquery()
    )
    ticketed = sa.select(_v.c.ticket_id).select_from(_m.join(_v, _v.c.id == _m.c.conversation_id)).where(
        _m.c.ticket_id.is_(None), _v.c.ticket_id.is_not(None)
    )
    op.execute(
        _t.update()
        .where(_t.c.id.in_(ticketed))
        .values(
            message_count=_t.c.message_count + count,
            first_response_at=sa.case(
                (sa.or_(_t.c.first_response_at.is_(None), _t.c.first_response_at > answer), answer), else_=_t.c.first_response_at
            ),
        )
    )
    op.execute(
        _m.update()
        .where(_m.c.ticket_id.is_(None), _m.c.conversation_id.in_(sa.select(_v.c.id).where(_v.c.ticket_id.is_not(None))))
        .values(ticket_id=sa.select(_v.c.ticket_id).where(_v.c.id == _m.c.conversation_id).scalar_subquery())
    )


def downgrade() -> None:
    pass
