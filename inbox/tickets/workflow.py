"""The ticket lifecycle: every status transition, written once.

While dedup places a page's messages, the page's tickets change in memory (`TicketState`: append,
reopen, unpend, the brand's answer, the first response, the priority raised on a repeat, a new
ticket) and the page's writer stores them in bulk (`store_page_transitions`, `transition_events`).
Agents' commands, replies and merges change one ticket in SQL through the functions below, in the
caller's transaction. Every change is audited (`record_event`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage
from inbox.errors import ConflictError, NotFoundError
from inbox.store import tables as tb
from inbox.store.fastpath import many
from inbox.store.types import ACTIVE_STATUSES, PRIORITY_RANK, utcnow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.engine import Connection

T = tb.ticket
M = tb.message
CV = tb.conversation
TE = tb.ticket_event

NEW, OPEN, PENDING, RESOLVED, CLOSED = "new", "open", "pending", "resolved", "closed"
_RANKED = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)  # urgent, high, normal, low


def record_event(conn: Connection, ticket_id: int, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    conn.execute(TE.insert().values(ticket_id=ticket_id, actor=actor[:100], action=action, detail=detail, at=utcnow()))


# ─── a page's tickets, in memory ────────────────────────────────────────────────────────────


@dataclass(slots=True)
class TicketState:
    """A ticket as the page sees it: loaded values plus what this page changes."""

    key: int  # the ticket id, or a negative placeholder for a ticket this page creates
    status: str
    contact_id: int | None
    person_id: int | None
    created_at: datetime
    resolved_at: datetime | None = None
    first_response_at: datetime | None = None
    merged_into_id: int | None = None
    loaded_last_customer_at: datetime | None = None
    priority: str | None = None
    first_response_due_at: datetime | None = None
    possible_duplicate_of_id: int | None = None
    account_id: int | None = None
    is_new: bool = False
    # what this page does to it
    added: int = 0
    last_at: datetime | None = None
    last_customer_at: datetime | None = None
    snippet_from: InboundMessage | None = None  # the customer's newest message on this page
    set_first_response: datetime | None = None
    last_out_at: datetime | None = None  # the brand's newest message on this page
    reopened: bool = False
    reopened_from: str | None = None
    unpended: bool = False
    has_gap: bool = False
    new_refs: set[str] = field(default_factory=set)
    set_duplicate_of: int | None = None  # an existing ticket now pointing at a possible duplicate
    repeats: int = 0
    priority_changes: list[dict[str, Any]] = field(default_factory=list)
    # only for new tickets
    subject: str | None = None
    channel: str | None = None
    text_for_triage: list[str] = field(default_factory=list)
    linked_ticket_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def snippet(self) -> str | None:
        return None if self.snippet_from is None else snippet_of(self.snippet_from)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES and self.merged_into_id is None

    @property
    def brand_answered(self) -> bool:
        """The brand wrote after the customer (e.g. from the native app): the ticket now waits on
        the customer, so a new or open ticket becomes pending."""
        out = self.last_out_at
        if out is None or self.status not in ("new", "open"):
            return False
        loaded, now = self.loaded_last_customer_at, self.last_customer_at
        last_in = now if loaded is None else (loaded if now is None or loaded > now else now)
        return last_in is not None and out >= last_in


def snippet_of(msg: InboundMessage, limit: int = 200) -> str:
    kinds = ", ".join(a.type for a in msg.attachments) if msg.attachments else msg.kind.value
    return text_snippet(msg.text, kinds, limit)


def text_snippet(text: str | None, kinds: str, limit: int = 200) -> str:
    """A ticket's subject or snippet from a message's text; without text, `[kinds]` (its attachments'
    types, or its kind)."""
    line = " ".join((text or "").split())
    if not line:
        line = f"[{kinds}]" if kinds else ""  # the platform names the types: a hostile one may be any length
    return line if len(line) <= limit else line[: limit - 1] + "…"


def new_ticket(key: int, msg: InboundMessage, contact_id: int, person_id: int | None) -> TicketState:
    """A ticket the customer's message opens (stored by the page's writer, `key` < 0 until then)."""
    return TicketState(
        key=key,
        status=NEW,
        contact_id=contact_id,
        person_id=person_id,
        created_at=msg.sent_at,
        is_new=True,
        subject=snippet_of(msg),
        channel=msg.channel.value,
    )


def customer_wrote(ticket: TicketState, msg: InboundMessage) -> None:
    """A customer message joins `ticket`: counters, snippet, and a pending ticket is open again."""
    sent_at = msg.sent_at
    ticket.added += 1
    if ticket.last_at is None or sent_at > ticket.last_at:
        ticket.last_at = sent_at
    if ticket.last_customer_at is None or sent_at >= ticket.last_customer_at:
        ticket.last_customer_at = sent_at
        ticket.snippet_from = msg
    if ticket.status == PENDING:
        # waiting on the customer, and the customer answered
        ticket.status = OPEN
        ticket.unpended = True
    if ticket.is_new:
        ticket.text_for_triage.append(msg.text or "")


def brand_wrote(ticket: TicketState, sent_at: datetime, *, adopted: bool = False) -> None:
    """One of the brand's messages joins `ticket`: counters, and the first response when it
    answers the ticket (sent at or after the customer message that opened it). An `adopted`
    message was seen before the thread had its ticket, so it came before the opening message
    in the platform's order: within the same second (Meta's times have no finer grain) it is
    not an answer."""
    ticket.added += 1
    ticket.last_at = max(ticket.last_at or sent_at, sent_at)
    ticket.last_out_at = max(ticket.last_out_at or sent_at, sent_at)
    answers = sent_at > ticket.created_at if adopted else sent_at >= ticket.created_at
    if ticket.first_response_at is None and answers:
        if ticket.set_first_response is None or sent_at < ticket.set_first_response:
            ticket.set_first_response = sent_at


def reopen(ticket: TicketState) -> None:
    """The customer wrote again within the reopen window of a resolved ticket."""
    ticket.reopened = True
    ticket.reopened_from = ticket.status
    ticket.status = OPEN


def escalate_on_repeat(ticket: TicketState, msg: InboundMessage, *, enabled: bool) -> str | None:
    """The customer repeated the message past the first-response due of an unanswered ticket:
    the priority goes up one step. Returns the new priority, or None when it stays."""
    due = ticket.first_response_due_at
    if not (
        enabled
        and due is not None
        and msg.sent_at > due
        and ticket.first_response_at is None
        and ticket.set_first_response is None
        and ticket.priority in PRIORITY_RANK
        and PRIORITY_RANK[ticket.priority] > 0
    ):
        return None
    assert ticket.priority is not None
    raised = _RANKED[PRIORITY_RANK[ticket.priority] - 1]
    ticket.priority_changes.append({
        "from": ticket.priority, "to": raised, "message": msg.external_id,
        "reason": "the customer repeated the message after the first-response due time",
    })
    ticket.priority = raised
    return raised


def new_status(ticket: TicketState) -> str:
    """The status a ticket this page creates is stored with (the brand may have answered already)."""
    return PENDING if ticket.brand_answered else ticket.status


def transition_events(ticket: TicketState, tid: Callable[[int | None], int | None], now: datetime, actor: str) -> list[tuple[Any, ...]]:
    """The `status` event rows (ticket id, at, actor, action, detail) of what the page did to `ticket`."""
    rows: list[tuple[Any, ...]] = []
    if ticket.reopened and not ticket.is_new:
        rows.append((ticket.key, now, actor, "status", {"from": ticket.reopened_from, "to": OPEN, "reason": "customer wrote again"}))
    if ticket.unpended and not ticket.is_new:
        rows.append((ticket.key, now, actor, "status", {"from": PENDING, "to": OPEN, "reason": "customer answered"}))
    if ticket.brand_answered:
        rows.append((tid(ticket.key), now, actor, "status", {"from": ticket.status, "to": PENDING, "reason": "the brand answered after the customer"}))
    return rows


def store_page_transitions(conn: Connection, tickets: Iterable[TicketState]) -> None:
    """The page's status and priority changes of stored tickets, one executemany each."""
    states = [t for t in tickets if not t.is_new]
    raised = [(t.key, t.priority, PRIORITY_RANK[t.priority]) for t in states if t.priority_changes and t.priority in PRIORITY_RANK]
    many(
        conn,
        "ticket~priority",
        lambda: sa.update(T).where(T.c.id == sa.bindparam("b_id")).values(
            priority=sa.bindparam("b_priority", type_=sa.String()), priority_rank=sa.bindparam("b_rank", type_=sa.Integer())
        ),
        ("b_id", "b_priority", "b_rank"),
        raised,
    )
    many(
        conn,
        "ticket~reopen",
        lambda: sa.update(T)
        .where(T.c.id == sa.bindparam("b_id"), T.c.status == "resolved")
        .values(status="open", reopened_count=T.c.reopened_count + 1, resolved_at=None),
        ("b_id",),
        [(t.key,) for t in states if t.reopened],
    )
    many(
        conn,
        "ticket~unpend",
        lambda: sa.update(T).where(T.c.id == sa.bindparam("b_id"), T.c.status == "pending").values(status="open"),
        ("b_id",),
        [(t.key,) for t in states if t.unpended],
    )
    many(
        conn,
        "ticket~answered",
        lambda: sa.update(T)
        .where(T.c.id == sa.bindparam("b_id"), sa.or_(T.c.status == "new", T.c.status == "open"))
        .values(status="pending"),
        ("b_id",),
        [(t.key,) for t in states if t.brand_answered],
    )


# ─── one ticket, in SQL (the caller's transaction) ──────────────────────────────────────────


def brand_replied(conn: Connection, ticket_id: int, *, at: datetime, now: datetime) -> dict[str, str] | None:
    """Our reply reached the platform: the first response (if none yet), and a new or open ticket
    now waits on the customer. Returns the status change ({"from", "to"}), or None."""
    ticket = conn.execute(sa.select(T.c.status, T.c.first_response_at).where(T.c.id == ticket_id)).first()
    values: dict[str, Any] = {"updated_at": now}
    if ticket is not None and ticket.first_response_at is None:
        values["first_response_at"] = at
    if ticket is not None and ticket.status in (NEW, OPEN):
        values["status"] = PENDING
    conn.execute(T.update().where(T.c.id == ticket_id).values(**values))
    return {"from": ticket.status, "to": values["status"]} if "status" in values and ticket is not None else None


def take(
    conn: Connection, ticket_id: int, agent: str, *, previous: str | None, now: datetime, forced: bool = False, status: str | None = None
) -> None:
    """`agent` takes the ticket; a new ticket is opened by it (audited as one `claim` event)."""
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


def change_status(conn: Connection, row: Any, status: str, actor: str, *, now: datetime) -> None:
    """An agent sets the status of the (locked) ticket `row`: resolving stamps it, reopening counts."""
    if row.status == status:
        return
    if row.merged_into_id:  # its status is the merge's: unmerge gives the earlier one back, over any set here
        raise ConflictError(f"ticket #{row.id} is merged into #{row.merged_into_id}",
                            hint=f"set #{row.merged_into_id}'s status, or unmerge it first: inbox unmerge {row.id}")
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status in (RESOLVED, CLOSED):
        values["resolved_at"] = row.resolved_at or now
    else:
        values["resolved_at"] = None
        if row.status in (RESOLVED, CLOSED):
            values["reopened_count"] = (row.reopened_count or 0) + 1
    conn.execute(T.update().where(T.c.id == row.id).values(**values))
    record_event(conn, row.id, actor, "status", {"from": row.status, "to": status})


def lock_ticket(conn: Connection, ticket_id: int) -> Any:
    q = sa.select(T).where(T.c.id == ticket_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise NotFoundError(f"no ticket #{ticket_id}")
    return row


def merged_group(conn: Connection, ticket_id: int) -> list[int]:
    """The ticket and every ticket merged into it (transitively)."""
    group = [ticket_id]
    frontier = [ticket_id]
    while frontier:
        children = [r[0] for r in conn.execute(sa.select(T.c.id).where(T.c.merged_into_id.in_(frontier)))]
        children = [c for c in children if c not in group]
        group.extend(children)
        frontier = children
    return group


def merge_in_tx(conn: Connection, ticket_id: int, into_id: int, actor: str, *, reason: str | None = None) -> None:
    """`merge` inside the caller's transaction (the sync merges tickets dedup found to be one)."""
    src = lock_ticket(conn, ticket_id)
    dst = lock_ticket(conn, into_id)
    if src.merged_into_id:
        raise ConflictError(f"ticket #{ticket_id} is already merged into #{src.merged_into_id}")
    if dst.merged_into_id:
        raise ConflictError(f"ticket #{into_id} is itself merged into #{dst.merged_into_id}", hint=f"merge into #{dst.merged_into_id}")
    if into_id in merged_group(conn, ticket_id):
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


def unmerge_in_tx(conn: Connection, ticket_id: int, actor: str) -> None:
    """Undo a merge inside the caller's transaction: the ticket gets its status and threads back."""
    src = lock_ticket(conn, ticket_id)
    if not src.merged_into_id:
        raise ConflictError(f"ticket #{ticket_id} is not merged")
    into_id = src.merged_into_id
    dst = lock_ticket(conn, into_id)
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
