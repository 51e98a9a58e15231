"""The queue: filters, the one row shape of a ticket, listing in queue order, and claims.

Queries use SQLAlchemy Core with bound parameters only. Claims are atomic: PostgreSQL `FOR UPDATE
SKIP LOCKED`, SQLite an immediate (write-locked) transaction, so two agents never get the same ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.errors import ConflictError, NotFoundError, UsageError
from inbox.replies.windows import HUMAN_AGENT_WINDOW, META_CHANNELS, RESPONSE_WINDOW, window_left
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.types import ACTIVE_STATUSES, PRIORITY_RANK, STATUSES
from inbox.store.types import utcnow
from inbox.tickets.workflow import take
from inbox.timefmt import json_time
from connectors.channels import CHANNELS

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

T = tb.ticket
C = tb.contact
A = tb.account
TT = tb.ticket_tag

PRIORITIES = tuple(PRIORITY_RANK)
CLAIMABLE_STATUSES = ("new", "open")


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
            if ch not in CHANNELS:
                raise UsageError(f"unknown channel '{ch}' (one of: {', '.join(CHANNELS)})")
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

    def next_deadline(self) -> datetime | None:
        """The SLA clock the ticket runs against: its first-response due until the first response,
        then its escalation due (the one rule for every view of "due")."""
        return self.first_response_due if self.first_response_at is None else self.escalation_due

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
        take(conn, ticket_id, agent, previous=None, now=now, status=candidates[0].status)
        return get_row(conn, ticket_id)


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
        take(conn, ticket_id, agent, previous=row.assignee, now=now, forced=bool(row.assignee))
        return get_row(conn, ticket_id)
