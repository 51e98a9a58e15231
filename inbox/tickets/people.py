"""People: contacts on any channel linked into one person by an agent (audited per contact).

The one implementation of linking: `inbox link` / `inbox unlink`. Dedup never links persons (an
order number or a shared name is not an identity); it only reads the links agents made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.errors import ConflictError, NotFoundError, UsageError
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

T = tb.ticket
C = tb.contact
P = tb.person
PE = tb.person_event


def _contact(conn: Connection, contact_id: int) -> Any:
    row = conn.execute(sa.select(C).where(C.c.id == contact_id)).first()
    if row is None:
        raise NotFoundError(f"no contact #{contact_id}")
    return row


def link_contacts(engine: Engine, contact_ids: Sequence[int], reason: str, actor: str) -> int:
    """Link contacts (on any channels) into one person; returns the person id. Audited per contact."""
    ids = list(dict.fromkeys(contact_ids))
    if len(ids) < 2:
        raise UsageError("link needs at least two different contacts")
    if not reason.strip():
        raise UsageError("say why these contacts are one person (--reason)")
    with write_tx(engine) as conn:
        contacts = [_contact(conn, cid) for cid in ids]
        persons = [c.person_id for c in contacts if c.person_id]
        now = utcnow()
        if persons:
            person_id = min(persons)
        else:
            first = contacts[0]
            person_id = conn.execute(
                P.insert().values(display_name=first.name or first.handle, created_at=now).returning(P.c.id)
            ).scalar_one()
        # Contacts already in another person bring that person's other contacts along.
        moving = set(ids)
        for other in {p for p in persons if p != person_id}:
            moving.update(r[0] for r in conn.execute(sa.select(C.c.id).where(C.c.person_id == other)))
        for cid in sorted(moving):
            current = conn.execute(sa.select(C.c.person_id).where(C.c.id == cid)).scalar()
            if current == person_id:
                continue
            conn.execute(C.update().where(C.c.id == cid).values(person_id=person_id))
            conn.execute(T.update().where(T.c.contact_id == cid).values(person_id=person_id))
            conn.execute(
                PE.insert().values(
                    person_id=person_id,
                    contact_id=cid,
                    action="link",
                    reason=reason + (f" (was person #{current})" if current else ""),
                    actor=actor[:100],
                    at=now,
                )
            )
        return int(person_id)


def unlink_contact(engine: Engine, contact_id: int, reason: str, actor: str) -> int:
    """Take a contact out of its person; returns the person id it left."""
    with write_tx(engine) as conn:
        contact = _contact(conn, contact_id)
        if not contact.person_id:
            raise ConflictError(f"contact #{contact_id} is not linked to a person")
        person_id = contact.person_id
        conn.execute(C.update().where(C.c.id == contact_id).values(person_id=None))
        conn.execute(T.update().where(T.c.contact_id == contact_id).values(person_id=None))
        conn.execute(
            PE.insert().values(
                person_id=person_id, contact_id=contact_id, action="unlink", reason=reason or "unlinked", actor=actor[:100], at=utcnow()
            )
        )
        return int(person_id)
