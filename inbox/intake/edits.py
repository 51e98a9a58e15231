"""Changes to stored messages a webhook reports: a Messenger edit's new text, an Instagram unsend."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors import safejson
from connectors.base import Edit
from connectors.enums import MessageKind
from inbox.intake import early_edits
from inbox.store import sqlite_lock
from inbox.store.engine import write_tx
from inbox.store.tables import message as _m
from inbox.store.tables import ticket as _t
from inbox.tickets.workflow import text_snippet
from inbox.vocab import AccountRef

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


def apply_edits(engine: Engine, ref: AccountRef, edits: Sequence[Edit], lock_timeout: float) -> int:
    """New texts of stored messages (Messenger edits), in place; each earlier text is kept in the
    message's raw payload (`edits`). An edit is applied once, and never over a later one
    (`num_edit`); an edit of a message not stored yet is kept (`early_edits`) and applied by a later
    call, once the message is stored (pass no edits to apply only those). An edit without text is
    an unsend: the message becomes deleted (its text kept in `edits` the same way), and nothing
    after it brings the text back. The ticket's subject and snippet, where they show the earlier
    text, show the new one. Returns how many messages changed."""
    if not edits and not early_edits.any_kept(engine):
        return 0  # the usual case after a poll page: no write transaction, no lock
    deleted = MessageKind.DELETED.value
    changed = 0
    applied: list[int] = []
    with sqlite_lock.hold(engine, lock_timeout), write_tx(engine) as conn:
        kept = early_edits.waiting(conn, ref)
        # (edit, its kept row): the row is None for an edit just delivered
        todo: list[tuple[Edit, int | None]] = [*((e, None) for e in edits), *((w.edit, w.row_id) for w in kept)]
        if not todo:
            return 0
        rows = {r.external_id: r for r in conn.execute(
            sa.select(_m.c.id, _m.c.external_id, _m.c.text, _m.c.raw, _m.c.kind, _m.c.ticket_id).where(
                _m.c.channel == ref.channel, _m.c.account_id == ref.id, _m.c.external_id.in_(sorted({e.external_id for e, _row in todo}))))}
        current: dict[str, tuple[str | None, dict[str, Any], str | None]] = {
            mid: (r.text, dict(r.raw) if isinstance(r.raw, Mapping) else {}, r.kind) for mid, r in rows.items()}
        for edit, row_id in sorted(todo, key=lambda t: (t[0].num_edit, t[0].edited_at)):
            if edit.external_id not in current:
                if row_id is None:
                    log.info("webhook: an edit of a message not stored yet; kept until the message is")
                    early_edits.keep(conn, ref, edit, kept)
                continue
            if row_id is not None:
                applied.append(row_id)
            text, raw, kind = current[edit.external_id]
            if kind == deleted:
                continue  # unsent (or stored as unsent): a redelivery or a late edit changes nothing
            history = [h for h in raw.get("edits", []) if isinstance(h, Mapping)]
            last = max((h.get("num_edit") or 0 for h in history), default=0)
            unsend = edit.text is None
            if not unsend and (text == edit.text or (edit.num_edit and edit.num_edit <= last)):
                continue  # a redelivery, or older than what is stored
            entry: dict[str, Any] = {"num_edit": edit.num_edit, "edited_at": edit.edited_at.isoformat(), "previous_text": text}
            if unsend:
                entry["unsent"] = True
            raw = {**raw, "edits": [*history, entry]}
            values: dict[str, Any] = {"text": None if edit.text is None else safejson.clean_text(edit.text), "raw": raw}
            if unsend:
                values["kind"] = kind = deleted
            current[edit.external_id] = (edit.text, raw, kind)
            conn.execute(sa.update(_m).where(_m.c.id == rows[edit.external_id].id).values(**values))
            _follow_on_ticket(conn, rows[edit.external_id].ticket_id, text, values["text"], deleted if unsend else None)
            changed += 1
        early_edits.forget(conn, applied)
    return changed


def _follow_on_ticket(conn: Connection, ticket_id: int | None, old: str | None, new: str | None, kind: str | None) -> None:
    """The ticket's subject and snippet follow an edit or an unsend where they show the earlier text
    (an unsent text must not stay on the queue's screen); where they show a later message, they stay."""
    if ticket_id is None or old is None:
        return
    before, after = text_snippet(old, ""), text_snippet(new, kind or "")
    if not before or before == after:
        return
    for column in (_t.c.subject, _t.c.snippet):
        conn.execute(sa.update(_t).where(_t.c.id == ticket_id, column == before).values({column.name: after}))
