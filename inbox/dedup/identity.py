"""Which contacts are one customer for routing a reply.

A contact linked into a person counts as that person only when the link is trusted: made by an
agent (`inbox link`, audited with the reason) or by strong evidence — the same platform identity
(reason starting with `STRONG_EVIDENCE`). A link the sync made from weak evidence (a shared
invoice number, a similar name) never decides where a reply goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from inbox.store import tables as tb

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

PE = tb.person_event
C = tb.contact

# The reason a link made without an agent must start with to be trusted for routing.
STRONG_EVIDENCE = "same platform identity"
SYSTEM_ACTORS = frozenset({"sync", "dedup"})


def trusted_persons(conn: Connection, contact_ids: Iterable[int]) -> dict[int, int]:
    """contact id -> person id, for the contacts whose current person link is trusted."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    linked = dict(conn.execute(sa.select(C.c.id, C.c.person_id).where(C.c.id.in_(ids), C.c.person_id.is_not(None))).all())
    if not linked:
        return {}
    out: dict[int, int] = {}
    events = conn.execute(
        sa.select(PE.c.contact_id, PE.c.person_id, PE.c.actor, PE.c.reason)
        .where(PE.c.contact_id.in_(sorted(linked)), PE.c.action == "link")
        .order_by(PE.c.id.desc())
    ).all()
    seen: set[int] = set()
    for ev in events:
        if ev.contact_id in seen or linked.get(ev.contact_id) != ev.person_id:
            continue
        seen.add(ev.contact_id)  # the latest link into its current person decides
        if ev.actor not in SYSTEM_ACTORS or (ev.reason or "").startswith(STRONG_EVIDENCE):
            out[ev.contact_id] = ev.person_id
    return out
