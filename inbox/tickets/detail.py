"""A ticket in full (`inbox show`): its threads, the tickets merged into it, notes, events and gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.store import tables as tb
from inbox.tickets.queue import TicketRow, get_row
from inbox.tickets.workflow import merged_group
from inbox.timefmt import json_time as _iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = tb.ticket
A = tb.account
M = tb.message
CV = tb.conversation
TE = tb.ticket_event
G = tb.sync_gap


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    id: int
    ticket_id: int | None
    conversation_id: int
    channel: str
    account: str
    direction: str
    author_id: str
    author_handle: str | None
    author_name: str | None
    text: str | None
    kind: str
    sent_at: datetime
    external_id: str
    attachments: tuple[dict[str, Any], ...]
    reply_id: int | None
    dedup_rule: str | None
    dedup_reason: str | None
    dedup_score: float | None
    repeat_of_id: int | None = None
    flags: tuple[str, ...] = ()  # what was repaired (connectors.enums.MessageFlag values)

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` shape of one message in a thread."""
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "direction": self.direction,
            "channel": self.channel,
            "account": self.account,
            "author": {"id": self.author_id, "handle": self.author_handle, "name": self.author_name},
            "text": self.text,
            "time": _iso(self.sent_at),
            "platform_id": self.external_id,
            "kind": self.kind,
            "attachments": [dict(a) for a in self.attachments],
            "reply_id": self.reply_id,
            "dedup": {"rule": self.dedup_rule, "reason": self.dedup_reason, "score": self.dedup_score, "repeat_of": self.repeat_of_id}
            if self.dedup_rule
            else None,
            "flags": list(self.flags),
        }


@dataclass(frozen=True, slots=True)
class EventRow:
    ticket_id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "at": _iso(self.at), "actor": self.actor, "action": self.action, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class GapRow:
    """Messages of one of the ticket's threads that the platform no longer shows (Meta keeps 20)."""

    ticket_id: int
    conversation_id: int | None
    thread_id: str
    missing: int | None  # None: the platform did not say how many
    after: datetime | None  # written after this (the newest message stored before); None: since the thread began
    before: datetime | None  # and before this (the oldest message still readable)
    detected_at: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id, "conversation_id": self.conversation_id, "thread_id": self.thread_id, "missing": self.missing, "after": _iso(self.after),
            "before": _iso(self.before), "detected": _iso(self.detected_at), "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class TicketDetail:
    ticket: TicketRow
    messages: tuple[ThreadMessage, ...]
    events: tuple[EventRow, ...]
    merged_ids: tuple[int, ...]
    related: dict[str, list[int]] = field(default_factory=dict)
    gaps: tuple[GapRow, ...] = ()

    @property
    def notes(self) -> tuple[EventRow, ...]:
        return tuple(e for e in self.events if e.action == "note")

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket.to_json(),
            "messages": [m.to_json() for m in self.messages],
            "notes": [{"at": _iso(n.at), "author": n.actor, "text": (n.detail or {}).get("text")} for n in self.notes],
            "events": [e.to_json() for e in self.events],
            "merged_tickets": list(self.merged_ids),
            "related": self.related,
            "gaps": [g.to_json() for g in self.gaps],
        }


def show_ticket(engine: Engine, ticket_id: int, *, message_limit: int | None = None) -> TicketDetail:
    """The whole conversation of a ticket: its threads, tickets merged into it, notes and events."""
    with engine.connect() as conn:
        ticket = get_row(conn, ticket_id)
        group = merged_group(conn, ticket_id)
        conv_ids = [r[0] for r in conn.execute(sa.select(CV.c.id).where(CV.c.ticket_id.in_(group)))]
        where = M.c.ticket_id.in_(group)
        if conv_ids:
            where = sa.or_(where, M.c.conversation_id.in_(conv_ids))
        q = (
            sa.select(
                M.c.id, M.c.ticket_id, M.c.conversation_id, M.c.channel, A.c.name.label("account"), M.c.direction,
                M.c.author_id, M.c.author_handle, M.c.author_name, M.c.text, M.c.kind, M.c.sent_at, M.c.external_id,
                M.c.attachments, M.c.reply_id, M.c.dedup_rule, M.c.dedup_reason, M.c.dedup_score, M.c.repeat_of_id, M.c.flags,
            )
            .select_from(M.join(A, A.c.id == M.c.account_id))
            .where(where)
            .order_by(M.c.sent_at, M.c.id)
        )
        if message_limit:
            # The newest N, still shown oldest first.
            q = q.order_by(None).order_by(M.c.sent_at.desc(), M.c.id.desc()).limit(message_limit)
        rows = conn.execute(q).all()
        if message_limit:
            rows = list(reversed(rows))
        messages = tuple(
            ThreadMessage(
                id=r.id, ticket_id=r.ticket_id, conversation_id=r.conversation_id, channel=r.channel,
                account=r.account, direction=r.direction, author_id=r.author_id, author_handle=r.author_handle,
                author_name=r.author_name, text=r.text, kind=r.kind, sent_at=r.sent_at, external_id=r.external_id,
                attachments=tuple(a for a in (r.attachments or []) if isinstance(a, dict)), reply_id=r.reply_id,
                dedup_rule=r.dedup_rule, dedup_reason=r.dedup_reason, dedup_score=r.dedup_score, repeat_of_id=r.repeat_of_id,
                flags=tuple(f for f in (r.flags or "").split(",") if f),
            )
            for r in rows
        )
        events = tuple(
            EventRow(r.ticket_id, r.at, r.actor, r.action, r.detail)
            for r in conn.execute(
                sa.select(TE.c.ticket_id, TE.c.at, TE.c.actor, TE.c.action, TE.c.detail)
                .where(TE.c.ticket_id.in_(group))
                .order_by(TE.c.at, TE.c.id)
            )
        )
        gaps = tuple(
            GapRow(r.ticket_id, r.id, r.conversation_external_id, r.missing, r.missing_after, r.missing_before, r.detected_at, r.detail)
            for r in conn.execute(
                sa.select(G.c.ticket_id, CV.c.id, G.c.conversation_external_id, G.c.missing, G.c.missing_after, G.c.missing_before,
                          G.c.detected_at, G.c.detail)
                .select_from(G.outerjoin(CV, sa.and_(CV.c.account_id == G.c.account_id, CV.c.external_id == G.c.conversation_external_id)))
                .where(G.c.ticket_id.in_(group))
                .order_by(G.c.detected_at, G.c.id)
            )
        )
        related: dict[str, list[int]] = {}
        if ticket.linked_ticket_id:
            related["follow_up_of"] = [ticket.linked_ticket_id]
        # Possible duplicates point both ways (rule 4's shared invoice, rule 5's copy-paste).
        dups = [ticket.possible_duplicate_of_id] if ticket.possible_duplicate_of_id else []
        dups += [r[0] for r in conn.execute(
            sa.select(T.c.id).where(T.c.possible_duplicate_of_id.in_(group), T.c.id.not_in(group)).order_by(T.c.id).limit(20)
        ) if r[0] not in dups]
        if dups:
            related["possible_duplicate_of"] = dups
        if ticket.merged_into_id:
            related["merged_into"] = [ticket.merged_into_id]
        if ticket.person_id:
            others = conn.execute(
                sa.select(T.c.id)
                .where(T.c.person_id == ticket.person_id, T.c.id.not_in(group), T.c.merged_into_id.is_(None))
                .order_by(T.c.id.desc())
                .limit(20)
            )
            same_person = [r[0] for r in others]
            if same_person:
                related["same_person"] = same_person
    return TicketDetail(ticket, messages, events, tuple(g for g in group if g != ticket_id), related, gaps)
