"""dedup: repeats in a thread; contacts no longer linked into persons by a shared invoice

`message.repeat_of_id` marks a customer's message that repeats an earlier one of its thread, and
`ticket.repeat_count` counts them for `inbox list` / `inbox show`.

Person links the sync made from a shared order reference are undone: an order number is not an
identity (anyone can quote someone else's invoice), so a contact whose latest link was made by the
sync for "shared invoice …" is unlinked, audited as such, and its tickets no longer carry that
person. Links an agent made (`inbox link`) stay.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNLINK_REASON = "an order reference is not an identity: link made by the sync from a shared invoice undone"


def upgrade() -> None:
    op.add_column("message", sa.Column("repeat_of_id", sa.Integer(), nullable=True))
    # ADD COLUMN in place on both backends (no table rebuild); the default fills existing rows.
    op.add_column("ticket", sa.Column("repeat_count", sa.Integer(), nullable=False, server_default="0"))
    _unlink_invoice_persons()


def _unlink_invoice_persons() -> None:
    conn = op.get_bind()
    pe = sa.table(
        "person_event",
        sa.column("id", sa.Integer()), sa.column("person_id", sa.Integer()), sa.column("contact_id", sa.Integer()),
        sa.column("action", sa.String()), sa.column("reason", sa.String()), sa.column("actor", sa.String()),
        sa.column("at", sa.DateTime()),
    )
    contact = sa.table("contact", sa.column("id", sa.Integer()), sa.column("person_id", sa.Integer()))
    ticket = sa.table("ticket", sa.column("contact_id", sa.Integer()), sa.column("person_id", sa.Integer()))
    latest: dict[int, tuple[int, str, str, str]] = {}  # contact -> its newest event (person, action, actor, reason)
    for row in conn.execute(sa.select(pe.c.contact_id, pe.c.person_id, pe.c.action, pe.c.actor, pe.c.reason).order_by(pe.c.at, pe.c.id)):
        latest[row.contact_id] = (row.person_id, row.action, row.actor, row.reason or "")
    undo = [
        (cid, pid) for cid, (pid, action, actor, reason) in latest.items()
        if action == "link" and actor == "sync" and reason.startswith("shared invoice")
    ]
    now = datetime.now(timezone.utc)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # stored as the models' UTC columns store it
    for cid, pid in undo:
        done = conn.execute(contact.update().where(contact.c.id == cid, contact.c.person_id == pid).values(person_id=None)).rowcount
        if not done:
            continue  # linked elsewhere since
        conn.execute(ticket.update().where(ticket.c.contact_id == cid, ticket.c.person_id == pid).values(person_id=None))
        conn.execute(pe.insert().values(person_id=pid, contact_id=cid, action="unlink", reason=UNLINK_REASON, actor="migration", at=now))


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("repeat_count")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("repeat_of_id")
