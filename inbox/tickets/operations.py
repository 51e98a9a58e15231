"""Ticket queries and operations: list, show, claim, assign, status, priority, tag, note, merge, link.

Every change writes an audit row (TicketEvent, or PersonEvent for contact links) in the same
transaction as the change itself. Queries use SQLAlchemy Core with bound parameters only.
Claims are atomic: PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite an immediate (write-locked)
transaction, so two agents never get the same ticket.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.errors import ConflictError, NotFoundError, UsageError
from inbox.timefmt import json_time
from inbox.store import tables as tb
from inbox.store.types import ACTIVE_STATUSES, PRIORITY_RANK, STATUSES
from inbox.replies.windows import HUMAN_AGENT_WINDOW, META_CHANNELS, RESPONSE_WINDOW, window_left

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

T = tb.ticket
C = tb.contact
A = tb.account
M = tb.message
CV = tb.conversation
TT = tb.ticket_tag
TE = tb.ticket_event
P = tb.person
PE = tb.person_event
G = tb.sync_gap

PRIORITIES = tuple(PRIORITY_RANK)
CLAIMABLE_STATUSES = ("new", "open")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def resolve_agent(explicit: str | None = None, configured: str | None = None) -> str:
    """The acting agent: --agent, else $INBOX_AGENT, else settings.agent, else the OS user name."""
    for candidate in (explicit, os.environ.get("INBOX_AGENT"), configured):
        if candidate and candidate.strip():
            return candidate.strip()[:100]
    import getpass  # only when no name was given (it loads pwd/termios)

    try:
        return getpass.getuser()[:100] or "agent"
    except Exception:  # noqa: BLE001 - no user database (containers): still need a name
        return "agent"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it takes the write lock up front (no lock-upgrade deadlocks)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with conn.begin():
            yield conn


def record_event(conn: Connection, ticket_id: int, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    conn.execute(TE.insert().values(ticket_id=ticket_id, actor=actor[:100], action=action, detail=detail, at=utcnow()))


# ─── listing ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TicketFilter:
    statuses: tuple[str, ...] | None = ACTIVE_STATUSES  # None: any status
    channels: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # account names
    assignee: str | None = None  # "none" for unassigned, else an agent name (resolve "me" first)
    tags: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    overdue: bool = False
    window_closing_hours: float | None = None
    human_agent_tag: bool = True
    ids: tuple[int, ...] | None = None  # restrict to these tickets (search results)
    limit: int = 50

    def validate(self) -> TicketFilter:
        for s in self.statuses or ():
            if s not in STATUSES:
                raise UsageError(f"unknown status '{s}' (one of: {', '.join(STATUSES)})")
        for p in self.priorities:
            if p not in PRIORITY_RANK:
                raise UsageError(f"unknown priority '{p}' (one of: {', '.join(PRIORITIES)})")
        for ch in self.channels:
            if ch not in ("instagram", "facebook", "x"):
                raise UsageError(f"unknown channel '{ch}' (one of: instagram, facebook, x)")
        if self.limit < 1:
            raise UsageError("--limit must be at least 1")
        return self


@dataclass(frozen=True, slots=True)
class TicketRow:
    id: int
    status: str
    priority: str
    channel: str
    account: str
    contact_id: int | None
    customer_handle: str | None
    customer_name: str | None
    person_id: int | None
    assignee: str | None
    tags: tuple[str, ...]
    category: str | None
    created: datetime
    updated: datetime
    first_response_due: datetime | None
    first_response_at: datetime | None
    escalation_due: datetime | None
    last_customer_message_at: datetime | None
    message_count: int
    snippet: str | None
    subject: str | None
    has_gap: bool
    possible_duplicate_of_id: int | None
    linked_ticket_id: int | None
    merged_into_id: int | None
    repeat_count: int = 0

    @property
    def repeated(self) -> str | None:
        """"customer repeated 3×" when the customer sent the same thing again in the thread (rule 5)."""
        return f"customer repeated {self.repeat_count}×" if self.repeat_count else None

    @property
    def customer(self) -> str:
        if self.customer_handle:
            return "@" + self.customer_handle.lstrip("@")
        return self.customer_name or "?"

    def overdue(self, now: datetime) -> bool:
        if self.status not in ACTIVE_STATUSES:
            return False
        if self.first_response_at is None and self.first_response_due and self.first_response_due < now:
            return True
        return bool(self.escalation_due and self.escalation_due < now)

    def window_left(self, now: datetime, human_agent_tag: bool = True) -> timedelta | None:
        return window_left(self.channel, self.last_customer_message_at, now, human_agent_tag=human_agent_tag)

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` shape of a ticket (documented in README, "JSON output")."""
        return {
            "id": self.id,
            "status": self.status,
            "priority": self.priority,
            "channel": self.channel,
            "account": self.account,
            "customer": {
                "contact_id": self.contact_id,
                "handle": self.customer_handle,
                "name": self.customer_name,
                "person_id": self.person_id,
            },
            "assignee": self.assignee,
            "tags": list(self.tags),
            "category": self.category,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "first_response_due": _iso(self.first_response_due),
            "first_response_at": _iso(self.first_response_at),
            "escalation_due": _iso(self.escalation_due),
            "last_customer_message_at": _iso(self.last_customer_message_at),
            "message_count": self.message_count,
            "repeat_count": self.repeat_count,
            "snippet": self.snippet,
            "has_gap": self.has_gap,
        }


def _iso(value: datetime | None) -> str | None:
    return json_time(value)


_ROW_COLUMNS = (
    T.c.id,
    T.c.status,
    T.c.priority,
    T.c.channel,
    A.c.name.label("account"),
    T.c.contact_id,
    C.c.handle.label("customer_handle"),
    C.c.name.label("customer_name"),
    T.c.person_id,
    T.c.assignee,
    T.c.category,
    T.c.created_at,
    T.c.updated_at,
    T.c.first_response_due_at,
    T.c.first_response_at,
    T.c.escalation_due_at,
    T.c.last_customer_message_at,
    T.c.message_count,
    T.c.snippet,
    T.c.subject,
    T.c.has_gap,
    T.c.possible_duplicate_of_id,
    T.c.linked_ticket_id,
    T.c.merged_into_id,
    T.c.repeat_count,
)


def _row(r: Any, tags: Sequence[str]) -> TicketRow:
    return TicketRow(
        id=r.id,
        status=r.status,
        priority=r.priority,
        channel=r.channel,
        account=r.account,
        contact_id=r.contact_id,
        customer_handle=r.customer_handle,
        customer_name=r.customer_name,
        person_id=r.person_id,
        assignee=r.assignee,
        tags=tuple(sorted(tags)),
        category=r.category,
        created=r.created_at,
        updated=r.updated_at,
        first_response_due=r.first_response_due_at,
        first_response_at=r.first_response_at,
        escalation_due=r.escalation_due_at,
        last_customer_message_at=r.last_customer_message_at,
        message_count=r.message_count,
        snippet=r.snippet,
        subject=r.subject,
        has_gap=bool(r.has_gap),
        possible_duplicate_of_id=r.possible_duplicate_of_id,
        linked_ticket_id=r.linked_ticket_id,
        merged_into_id=r.merged_into_id,
        repeat_count=r.repeat_count or 0,
    )


def _base_select() -> sa.Select[Any]:
    return sa.select(*_ROW_COLUMNS).select_from(
        T.join(A, A.c.id == T.c.account_id).outerjoin(C, C.c.id == T.c.contact_id)
    )


def _tags_for(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {}
    if not ids:
        return tags
    for tid, tag in conn.execute(sa.select(TT.c.ticket_id, TT.c.tag).where(TT.c.ticket_id.in_(list(ids)))):
        tags.setdefault(tid, []).append(tag)
    return tags


def filter_conditions(flt: TicketFilter, now: datetime, dialect: str | None = None) -> list[Any]:
    """WHERE clauses for a filter (shared by list, search, stats and export)."""
    conds: list[Any] = [T.c.merged_into_id.is_(None)]
    if flt.statuses:
        conds.append(T.c.status.in_(list(flt.statuses)) if len(flt.statuses) > 1 else T.c.status == flt.statuses[0])
    if flt.channels:
        conds.append(T.c.channel.in_(list(flt.channels)))
    if flt.accounts:
        conds.append(A.c.name.in_(list(flt.accounts)))
    if flt.assignee is not None:
        conds.append(T.c.assignee.is_(None) if flt.assignee == "none" else T.c.assignee == flt.assignee)
    if flt.priorities:
        conds.append(T.c.priority.in_(list(flt.priorities)))
    for tag in flt.tags:
        conds.append(sa.exists().where(TT.c.ticket_id == T.c.id, TT.c.tag == tag))
    if flt.overdue:
        conds.append(T.c.status.in_(list(ACTIVE_STATUSES)))
        conds.append(
            sa.or_(
                sa.and_(T.c.first_response_at.is_(None), T.c.first_response_due_at < now),
                T.c.escalation_due_at < now,
            )
        )
    if flt.window_closing_hours is not None:
        # The usable window closes at last_customer + 24 h (or + 7 d with the human agent tag);
        # "closing within N hours" means that moment lies in [now, now + N h].
        horizon = timedelta(hours=flt.window_closing_hours)
        lcm = T.c.last_customer_message_at
        windows = [sa.and_(lcm > now - RESPONSE_WINDOW, lcm <= now + horizon - RESPONSE_WINDOW)]
        if flt.human_agent_tag:
            windows.append(sa.and_(lcm > now - HUMAN_AGENT_WINDOW, lcm <= now + horizon - HUMAN_AGENT_WINDOW))
        conds.append(T.c.channel.in_(sorted(META_CHANNELS)))
        conds.append(sa.or_(*windows))
    if flt.ids is not None:
        if dialect == "postgresql":
            # One array parameter instead of up to a thousand (search results): cheaper to bind.
            # Sent as the array's text form and cast by the server: psycopg adapts a list of
            # ints element by element in Python (~1.5 ms for a thousand ids).
            from sqlalchemy.dialects.postgresql import ARRAY

            literal = "{" + ",".join(str(int(i)) for i in flt.ids) + "}"
            conds.append(T.c.id == sa.any_(sa.cast(sa.bindparam("ticket_ids", literal, type_=sa.String()), ARRAY(sa.Integer()))))
        else:
            conds.append(T.c.id.in_(list(flt.ids)))
    return conds


def list_tickets(engine: Engine, flt: TicketFilter | None = None, *, now: datetime | None = None) -> list[TicketRow]:
    """Tickets matching the filter, by priority then SLA due time (then oldest first)."""
    flt = (flt or TicketFilter()).validate()
    now = now or utcnow()
    with engine.connect() as conn:
        conds = filter_conditions(flt, now, conn.dialect.name)
        query = _base_select().where(*conds)
        if flt.ids is not None:
            # A known, bounded set (search results): order their sort keys here, then fetch the
            # page by primary key; walking the queue index looking for them would read most of it.
            keys = conn.execute(
                sa.select(T.c.id, T.c.priority_rank, T.c.first_response_due_at).select_from(T.join(A, A.c.id == T.c.account_id)).where(*conds)
            ).all()
            page = [k.id for k in sorted(keys, key=_queue_key)[: flt.limit]]
            rows = sorted(conn.execute(_base_select().add_columns(T.c.priority_rank).where(T.c.id.in_(page))).all(), key=_queue_key)
        else:
            rows = _queue_rows(conn, query, flt.limit)
        tags = _tags_for(conn, [r.id for r in rows])
    return [_row(r, tags.get(r.id, ())) for r in rows]


def queue_order(query: sa.Select[Any], limit: int) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The queue order — priority, then SLA due time (none last), then oldest — as two queries
    an index can serve in order (ix_ticket_queue), instead of sorting every active ticket:
    "NULLS LAST" cannot use an index on SQLite, so tickets with and without a due time are
    fetched separately and merged."""
    due = query.where(T.c.first_response_due_at.is_not(None)).order_by(T.c.priority_rank, T.c.first_response_due_at, T.c.id)
    undue = query.where(T.c.first_response_due_at.is_(None)).order_by(T.c.priority_rank, T.c.id)
    return due.limit(limit), undue.limit(limit)


def _queue_key(r: Any) -> tuple[Any, ...]:
    due = r.first_response_due_at
    return (r.priority_rank, due is None, due or datetime.min.replace(tzinfo=timezone.utc), r.id)


def _queue_rows(conn: Connection, query: sa.Select[Any], limit: int) -> list[Any]:
    query = query.add_columns(T.c.priority_rank)
    if conn.dialect.name == "postgresql":
        # PostgreSQL indexes sort NULLs last by default: one query walks ix_ticket_queue in order.
        return conn.execute(query.order_by(*_PG_QUEUE_ORDER).limit(limit)).all()
    due, undue = queue_order(query, limit)
    rows = conn.execute(due).all() + conn.execute(undue).all()
    return sorted(rows, key=_queue_key)[:limit]


_PG_QUEUE_ORDER = (T.c.priority_rank, T.c.first_response_due_at.asc().nulls_last(), T.c.id)


def get_row(conn: Connection, ticket_id: int) -> TicketRow:
    r = conn.execute(_base_select().where(T.c.id == ticket_id)).first()
    if r is None:
        raise NotFoundError(f"no ticket #{ticket_id}")
    return _row(r, _tags_for(conn, [ticket_id]).get(ticket_id, ()))


def get_ticket(engine: Engine, ticket_id: int) -> TicketRow:
    with engine.connect() as conn:
        return get_row(conn, ticket_id)


# ─── show ───────────────────────────────────────────────────────────────────────────────────


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


def _merged_group(conn: Connection, ticket_id: int) -> list[int]:
    """The ticket and every ticket merged into it (transitively)."""
    group = [ticket_id]
    frontier = [ticket_id]
    while frontier:
        children = [r[0] for r in conn.execute(sa.select(T.c.id).where(T.c.merged_into_id.in_(frontier)))]
        children = [c for c in children if c not in group]
        group.extend(children)
        frontier = children
    return group


def show_ticket(engine: Engine, ticket_id: int, *, message_limit: int | None = None) -> TicketDetail:
    """The whole conversation of a ticket: its threads, tickets merged into it, notes and events."""
    with engine.connect() as conn:
        ticket = get_row(conn, ticket_id)
        group = _merged_group(conn, ticket_id)
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


# ─── claims ─────────────────────────────────────────────────────────────────────────────────


def claim_next(engine: Engine, agent: str, *, flt: TicketFilter | None = None, now: datetime | None = None) -> TicketRow | None:
    """Atomically take the best unassigned new/open ticket; None when there is none."""
    now = now or utcnow()
    flt = flt or TicketFilter(statuses=CLAIMABLE_STATUSES)
    conds = [*filter_conditions(flt, now), T.c.assignee.is_(None)]
    base = sa.select(T.c.id, T.c.status, T.c.priority_rank, T.c.first_response_due_at).select_from(T.join(A, A.c.id == T.c.account_id)).where(*conds)
    if engine.dialect.name == "postgresql":
        # Rows another agent is claiming right now are skipped, not waited for.
        picks: tuple[sa.Select[Any], ...] = (base.order_by(*_PG_QUEUE_ORDER).limit(1).with_for_update(skip_locked=True, of=T),)
    else:
        picks = queue_order(base, 1)  # inside BEGIN IMMEDIATE: no other writer runs meanwhile
    with write_tx(engine) as conn:
        candidates = sorted((r for p in picks for r in conn.execute(p).all()), key=_queue_key)
        if not candidates:
            return None
        ticket_id = candidates[0].id
        _take(conn, ticket_id, agent, previous=None, now=now, status=candidates[0].status)
        return get_row(conn, ticket_id)


def _take(
    conn: Connection, ticket_id: int, agent: str, *, previous: str | None, now: datetime, forced: bool = False, status: str | None = None
) -> None:
    values: dict[str, Any] = {"assignee": agent, "updated_at": now}
    if status is None:
        status = conn.execute(sa.select(T.c.status).where(T.c.id == ticket_id)).scalar()
    if status == "new":
        values["status"] = "open"
    conn.execute(T.update().where(T.c.id == ticket_id).values(**values))
    detail: dict[str, Any] = {"from": previous, "to": agent}
    if forced:
        detail["forced"] = True
    if "status" in values:
        detail["status"] = {"from": status, "to": values["status"]}
    record_event(conn, ticket_id, agent, "claim", detail)


def claim(engine: Engine, ticket_id: int, agent: str, *, force: bool = False, now: datetime | None = None) -> TicketRow:
    """Take one ticket. Someone else's ticket is a ConflictError unless `force`."""
    now = now or utcnow()
    with write_tx(engine) as conn:
        q = sa.select(T.c.assignee, T.c.merged_into_id).where(T.c.id == ticket_id)
        if engine.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise NotFoundError(f"no ticket #{ticket_id}")
        if row.merged_into_id:
            raise ConflictError(f"ticket #{ticket_id} was merged into #{row.merged_into_id}", hint=f"claim #{row.merged_into_id} instead")
        if row.assignee == agent:
            return get_row(conn, ticket_id)
        if row.assignee and not force:
            raise ConflictError(f"ticket #{ticket_id} is already claimed by {row.assignee}", hint="use --force to take it over")
        _take(conn, ticket_id, agent, previous=row.assignee, now=now, forced=bool(row.assignee))
        return get_row(conn, ticket_id)


# ─── simple operations ──────────────────────────────────────────────────────────────────────


def _lock_ticket(conn: Connection, ticket_id: int) -> Any:
    q = sa.select(T).where(T.c.id == ticket_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise NotFoundError(f"no ticket #{ticket_id}")
    return row


def assign(engine: Engine, ticket_id: int, assignee: str | None, actor: str) -> TicketRow:
    """Give the ticket to `assignee` (None / "none" unassigns)."""
    target = None if assignee in (None, "", "none") else assignee.strip()[:100]  # type: ignore[union-attr]
    with write_tx(engine) as conn:
        row = _lock_ticket(conn, ticket_id)
        if row.assignee != target:
            conn.execute(T.update().where(T.c.id == ticket_id).values(assignee=target, updated_at=utcnow()))
            record_event(conn, ticket_id, actor, "assign", {"from": row.assignee, "to": target})
        return get_row(conn, ticket_id)


def set_status(engine: Engine, ticket_id: int, status: str, actor: str) -> TicketRow:
    if status not in STATUSES:
        raise UsageError(f"unknown status '{status}' (one of: {', '.join(STATUSES)})")
    now = utcnow()
    with write_tx(engine) as conn:
        row = _lock_ticket(conn, ticket_id)
        if row.merged_into_id and status in ACTIVE_STATUSES:
            raise ConflictError(f"ticket #{ticket_id} is merged into #{row.merged_into_id}", hint=f"unmerge it first: inbox unmerge {ticket_id}")
        if row.status != status:
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if status in ("resolved", "closed"):
                values["resolved_at"] = row.resolved_at or now
            else:
                values["resolved_at"] = None
                if row.status in ("resolved", "closed"):
                    values["reopened_count"] = (row.reopened_count or 0) + 1
            conn.execute(T.update().where(T.c.id == ticket_id).values(**values))
            record_event(conn, ticket_id, actor, "status", {"from": row.status, "to": status})
        return get_row(conn, ticket_id)


def set_priority(
    engine: Engine, ticket_id: int, priority: str, actor: str, *, first_response_minutes: dict[str, int] | None = None
) -> TicketRow:
    """Change the priority; an unanswered ticket's first-response due time follows the new SLA."""
    if priority not in PRIORITY_RANK:
        raise UsageError(f"unknown priority '{priority}' (one of: {', '.join(PRIORITIES)})")
    with write_tx(engine) as conn:
        row = _lock_ticket(conn, ticket_id)
        if row.priority != priority:
            values: dict[str, Any] = {"priority": priority, "priority_rank": PRIORITY_RANK[priority], "updated_at": utcnow()}
            detail: dict[str, Any] = {"from": row.priority, "to": priority}
            if first_response_minutes and priority in first_response_minutes and row.first_response_at is None:
                due = row.created_at + timedelta(minutes=first_response_minutes[priority])
                values["first_response_due_at"] = due
                detail["first_response_due"] = _iso(due)
            conn.execute(T.update().where(T.c.id == ticket_id).values(**values))
            record_event(conn, ticket_id, actor, "priority", detail)
        return get_row(conn, ticket_id)


def tag(engine: Engine, ticket_id: int, tag_name: str, actor: str, *, remove: bool = False) -> TicketRow:
    name = tag_name.strip().lower()
    if not name or len(name) > 50:
        raise UsageError("a tag is 1 to 50 characters")
    with write_tx(engine) as conn:
        _lock_ticket(conn, ticket_id)
        exists = conn.execute(sa.select(TT.c.tag).where(TT.c.ticket_id == ticket_id, TT.c.tag == name)).first()
        if remove and exists:
            conn.execute(TT.delete().where(TT.c.ticket_id == ticket_id, TT.c.tag == name))
            record_event(conn, ticket_id, actor, "tag", {"removed": name})
        elif not remove and not exists:
            conn.execute(TT.insert().values(ticket_id=ticket_id, tag=name))
            record_event(conn, ticket_id, actor, "tag", {"added": name})
        conn.execute(T.update().where(T.c.id == ticket_id).values(updated_at=utcnow()))
        return get_row(conn, ticket_id)


def add_note(engine: Engine, ticket_id: int, text: str, actor: str) -> TicketRow:
    """A private note: stored as an event, never sent to the customer."""
    if not text.strip():
        raise UsageError("the note is empty")
    with write_tx(engine) as conn:
        _lock_ticket(conn, ticket_id)
        record_event(conn, ticket_id, actor, "note", {"text": text})
        conn.execute(T.update().where(T.c.id == ticket_id).values(updated_at=utcnow()))
        return get_row(conn, ticket_id)


# ─── merge ──────────────────────────────────────────────────────────────────────────────────


def merge(engine: Engine, ticket_id: int, into_id: int, actor: str) -> TicketRow:
    """Fold `ticket_id` into `into_id`: its threads now feed the target; reversible with unmerge."""
    if ticket_id == into_id:
        raise UsageError("a ticket cannot be merged into itself")
    with write_tx(engine) as conn:
        merge_in_tx(conn, ticket_id, into_id, actor)
        return get_row(conn, into_id)


def merge_in_tx(conn: Connection, ticket_id: int, into_id: int, actor: str, *, reason: str | None = None) -> None:
    """`merge` inside the caller's transaction (the sync merges tickets dedup found to be one)."""
    src = _lock_ticket(conn, ticket_id)
    dst = _lock_ticket(conn, into_id)
    if src.merged_into_id:
        raise ConflictError(f"ticket #{ticket_id} is already merged into #{src.merged_into_id}")
    if dst.merged_into_id:
        raise ConflictError(f"ticket #{into_id} is itself merged into #{dst.merged_into_id}", hint=f"merge into #{dst.merged_into_id}")
    if into_id in _merged_group(conn, ticket_id):
        raise ConflictError(f"ticket #{into_id} is merged into #{ticket_id}; that would be a loop")
    convs = [r[0] for r in conn.execute(sa.select(CV.c.id).where(CV.c.ticket_id == ticket_id))]
    now = utcnow()
    conn.execute(
        T.update()
        .where(T.c.id == ticket_id)
        .values(merged_into_id=into_id, status="closed", updated_at=now)
    )
    if convs:
        conn.execute(CV.update().where(CV.c.id.in_(convs)).values(ticket_id=into_id))
    count = conn.execute(sa.select(sa.func.count()).select_from(M).where(M.c.ticket_id == ticket_id)).scalar() or 0
    dst_values: dict[str, Any] = {"updated_at": now, "message_count": (dst.message_count or 0) + count}
    if src.last_customer_message_at and (dst.last_customer_message_at is None or src.last_customer_message_at > dst.last_customer_message_at):
        dst_values["last_customer_message_at"] = src.last_customer_message_at
    if src.repeat_count:
        dst_values["repeat_count"] = (dst.repeat_count or 0) + src.repeat_count
    conn.execute(T.update().where(T.c.id == into_id).values(**dst_values))
    detail: dict[str, Any] = {"into": into_id, "previous_status": src.status, "conversations": convs, "messages": count,
                              "repeats": src.repeat_count or 0}
    merged_in: dict[str, Any] = {"from": ticket_id, "conversations": convs, "messages": count}
    if reason:
        detail["reason"] = merged_in["reason"] = reason
    record_event(conn, ticket_id, actor, "merge", detail)
    record_event(conn, into_id, actor, "merge_in", merged_in)


def unmerge(engine: Engine, ticket_id: int, actor: str) -> TicketRow:
    """Undo a merge: the ticket gets its status and threads back."""
    with write_tx(engine) as conn:
        src = _lock_ticket(conn, ticket_id)
        if not src.merged_into_id:
            raise ConflictError(f"ticket #{ticket_id} is not merged")
        into_id = src.merged_into_id
        dst = _lock_ticket(conn, into_id)
        last = conn.execute(
            sa.select(TE.c.detail)
            .where(TE.c.ticket_id == ticket_id, TE.c.action == "merge")
            .order_by(TE.c.at.desc(), TE.c.id.desc())
            .limit(1)
        ).scalar() or {}
        previous_status = last.get("previous_status") or "open"
        convs = [int(c) for c in last.get("conversations") or []]
        count = int(last.get("messages") or 0)
        repeats = int(last.get("repeats") or 0)
        now = utcnow()
        conn.execute(
            T.update().where(T.c.id == ticket_id).values(merged_into_id=None, status=previous_status, updated_at=now)
        )
        if convs:
            conn.execute(CV.update().where(CV.c.id.in_(convs), CV.c.ticket_id == into_id).values(ticket_id=ticket_id))
        conn.execute(
            T.update()
            .where(T.c.id == into_id)
            .values(message_count=max(0, (dst.message_count or 0) - count), repeat_count=max(0, (dst.repeat_count or 0) - repeats), updated_at=now)
        )
        record_event(conn, ticket_id, actor, "unmerge", {"from": into_id, "status": previous_status, "conversations": convs})
        record_event(conn, into_id, actor, "unmerge_out", {"ticket": ticket_id, "conversations": convs})
        return get_row(conn, ticket_id)


# ─── people ─────────────────────────────────────────────────────────────────────────────────


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
