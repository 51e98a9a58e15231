"""Agents' operations on one ticket: assign, status, priority, tag, note, merge and unmerge.

Every change writes an audit row (TicketEvent) in the same transaction as the change itself;
status changes and merges go through `inbox.tickets.workflow`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.errors import UsageError
from inbox.safe_text import control_problem, utf8_problem
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.types import PRIORITY_RANK, STATUSES, utcnow
from inbox.tickets.queue import PRIORITIES, TicketRow, get_row
from inbox.tickets.workflow import change_status, lock_ticket, merge_in_tx as workflow_merge, record_event, unmerge_in_tx
from inbox.timefmt import json_time as _iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = tb.ticket
TT = tb.ticket_tag


MAX_AGENT_NAME = 100  # the width of every actor and assignee column
MAX_NOTE_CHARS = 10_000  # a note is a few lines for colleagues, not a pasted log


def agent_name(name: str, what: str = "agent name") -> str:
    """A name an agent typed (or configured), stripped; refused when empty or too long to store
    whole: cut short, two long names could become one."""
    name = name.strip()
    if not name:
        raise UsageError(f"the {what} is empty")
    if problem := utf8_problem(name, f"the {what}"):  # $INBOX_AGENT holding bytes that are not UTF-8
        raise UsageError(problem)
    if problem := control_problem(name, f"the {what}"):  # a NUL or a line break in the config's `agent`
        raise UsageError(problem)
    if len(name) > MAX_AGENT_NAME:
        raise UsageError(f"the {what} has {len(name)} characters; the limit is {MAX_AGENT_NAME}")
    return name


def resolve_agent(explicit: str | None = None, configured: str | None = None) -> str:
    """The acting agent: --agent, else $INBOX_AGENT, else settings.agent, else the OS user name."""
    if explicit is not None:  # typed: an empty one is a mistake, not "use the default"
        return agent_name(explicit, "--agent name")
    for candidate, what in ((os.environ.get("INBOX_AGENT"), "INBOX_AGENT name"), (configured, "configured agent name")):
        if candidate and candidate.strip():
            return agent_name(candidate, what)
    import getpass  # only when no name was given (it loads pwd/termios)

    try:
        return getpass.getuser()[:MAX_AGENT_NAME] or "agent"
    except Exception:  # noqa: BLE001 - no user database (containers): still need a name
        return "agent"


def assign(engine: Engine, ticket_id: int, assignee: str | None, actor: str) -> TicketRow:
    """Give the ticket to `assignee` (None / "none" unassigns; an empty name is refused)."""
    target = None if assignee is None or assignee.strip().lower() == "none" else agent_name(assignee, "assignee")
    with write_tx(engine) as conn:
        row = lock_ticket(conn, ticket_id)
        if row.assignee != target:
            conn.execute(T.update().where(T.c.id == ticket_id).values(assignee=target, updated_at=utcnow()))
            record_event(conn, ticket_id, actor, "assign", {"from": row.assignee, "to": target})
        return get_row(conn, ticket_id)


def set_status(engine: Engine, ticket_id: int, status: str, actor: str) -> TicketRow:
    if status not in STATUSES:
        raise UsageError(f"unknown status '{status}' (one of: {', '.join(STATUSES)})")
    now = utcnow()
    with write_tx(engine) as conn:
        change_status(conn, lock_ticket(conn, ticket_id), status, actor, now=now)
        return get_row(conn, ticket_id)


def set_priority(
    engine: Engine, ticket_id: int, priority: str, actor: str, *, first_response_minutes: dict[str, int] | None = None
) -> TicketRow:
    """Change the priority; an unanswered ticket's first-response due time follows the new SLA."""
    if priority not in PRIORITY_RANK:
        raise UsageError(f"unknown priority '{priority}' (one of: {', '.join(PRIORITIES)})")
    with write_tx(engine) as conn:
        row = lock_ticket(conn, ticket_id)
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
        lock_ticket(conn, ticket_id)
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
    if len(text) > MAX_NOTE_CHARS:
        raise UsageError(f"the note has {len(text):,} characters; the limit is {MAX_NOTE_CHARS:,} (attach long logs elsewhere and link them)")
    with write_tx(engine) as conn:
        lock_ticket(conn, ticket_id)
        record_event(conn, ticket_id, actor, "note", {"text": text})
        conn.execute(T.update().where(T.c.id == ticket_id).values(updated_at=utcnow()))
        return get_row(conn, ticket_id)


def merge(engine: Engine, ticket_id: int, into_id: int, actor: str) -> TicketRow:
    """Fold `ticket_id` into `into_id`: its threads now feed the target; reversible with unmerge."""
    if ticket_id == into_id:
        raise UsageError("a ticket cannot be merged into itself")
    with write_tx(engine) as conn:
        workflow_merge(conn, ticket_id, into_id, actor)
        return get_row(conn, into_id)


def unmerge(engine: Engine, ticket_id: int, actor: str) -> TicketRow:
    """Undo a merge: the ticket gets its status and threads back."""
    with write_tx(engine) as conn:
        unmerge_in_tx(conn, ticket_id, actor)
        return get_row(conn, ticket_id)
