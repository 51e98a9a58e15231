"""The agents' commands on tickets: list, show, claim, assign, status, priority, tag, note,
merge/unmerge, link/unlink and search. The work is inbox.tickets'; the layouts are commands.render's.
"""

import os
import sys
from typing import Any, Optional

import typer

from commands import ID, AgentOpt, FilterOpts, JsonOpt, agent_for, console, emit, filter_options, split_values, state, ticket_filter


@filter_options
def list_cmd(
    ctx: typer.Context,
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="new/open/pending/resolved/closed or all (repeat or comma-separate). Default: new, open, pending."),
    filters: FilterOpts = FilterOpts(),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """The inbox: active tickets by priority, then SLA due time."""
    from inbox.tickets.queue import list_tickets

    st = state(ctx)
    flt = ticket_filter(ctx, status, filters, agent)
    rows = list_tickets(st.engine(), flt)

    def render() -> None:
        from rich.text import Text

        from commands.render.queue import ticket_table

        out = console()
        # Fixed messages as Text, not str: a str goes through markup and emoji parsing, and the emoji
        # table alone is a noticeable import for a command that never shows one.
        if not rows:
            out.print(Text("no tickets match"), style="dim")
            return
        out.print(ticket_table(rows, width=out.width, human_agent_tag=flt.human_agent_tag), no_wrap=True, overflow="ellipsis")
        if len(rows) == flt.limit:
            out.print(Text(f"(first {flt.limit}; --limit N for more)"), style="dim")

    emit(ctx, lambda: {"tickets": [r.to_json() for r in rows]}, render)


def show_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id."),
    full: bool = typer.Option(False, "--full", help="Do not fold long messages."),
    why: bool = typer.Option(False, "--why", help="Also list the other tickets dedup considered and why they were not chosen."),
    pager: Optional[bool] = typer.Option(None, "--pager/--no-pager", help="Page long output (default: when stdout is a terminal)."),
    json_: bool = JsonOpt,
) -> None:
    """The whole conversation of a ticket across its threads and merged tickets, with notes and events."""
    from inbox.tickets.detail import show_ticket

    st = state(ctx)
    detail = show_ticket(st.engine(), ticket_id)

    def render() -> None:
        from commands.render.detail import print_detail, print_why

        out = console()
        tag = st.settings().replies.human_agent_tag
        use_pager = pager
        if use_pager is None and sys.stdout.isatty():
            # Page when the rendered conversation is taller than the terminal (long messages fold
            # onto several lines), so its header does not scroll away.
            with out.capture() as captured:
                print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
            use_pager = captured.get().count("\n") > out.height - 1
        if use_pager:
            os.environ.setdefault("LESS", "-R")  # let less show the colours
            with out.pager(styles=True):
                print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
                if why:
                    print_why(out, detail)
        else:
            print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
            if why:
                print_why(out, detail)

    emit(ctx, detail.to_json, render)


def _done(ctx: typer.Context, row: Any, message: str) -> None:
    """What a change to one ticket shows: the ticket as JSON, or one line."""
    from rich.text import Text

    emit(ctx, lambda: {"ticket": row.to_json()}, lambda: console().print(Text(message)))


def claim_cmd(
    ctx: typer.Context,
    ticket_id: Optional[int] = typer.Argument(None, parser=ID, metavar="[ID]", help="A specific ticket; without it, the next best unassigned one."),
    force: bool = typer.Option(False, "--force", help="Take the ticket even if another agent holds it."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", metavar="CHANNEL", help="Only claim from these channels."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Take a ticket: atomically, so two agents never get the same one (exit 5 when none is left)."""
    from inbox.tickets import queue as tk
    from inbox.errors import NotFoundError
    from inbox.safe_text import display_name, one_line

    who = agent_for(ctx, agent)
    engine = state(ctx).engine()
    if ticket_id is None:
        flt = tk.TicketFilter(statuses=tk.CLAIMABLE_STATUSES, channels=split_values(channel)).validate()
        row = tk.claim_next(engine, who, flt=flt)
        if row is None:
            raise NotFoundError("no unassigned new or open ticket to claim")
    else:
        row = tk.claim(engine, ticket_id, who, force=force)
    customer = display_name(row.customer_handle, row.customer_name)
    _done(ctx, row, f"#{row.id} claimed by {one_line(who, 40)} · {row.priority} · {row.channel} · {customer} · {one_line(row.snippet, 60)}")


def assign_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    assignee: str = typer.Argument(..., metavar="AGENT|none", help="An agent name, 'me', or 'none' to unassign."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Give a ticket to an agent (or 'none')."""
    from inbox.safe_text import one_line
    from inbox.tickets.operations import assign

    who = agent_for(ctx, agent)
    target = who if assignee == "me" else assignee
    row = assign(state(ctx).engine(), ticket_id, target, who)
    _done(ctx, row, f"#{row.id} assigned to {one_line(row.assignee, 100) or 'nobody'}")


def status_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    new_status: str = typer.Argument(..., metavar="STATUS", help="new, open, pending, resolved or closed."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Set a ticket's status."""
    from inbox.tickets.operations import set_status

    row = set_status(state(ctx).engine(), ticket_id, new_status.lower(), agent_for(ctx, agent))
    _done(ctx, row, f"#{row.id} is {row.status}")


def priority_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    new_priority: str = typer.Argument(..., metavar="PRIORITY", help="urgent, high, normal or low."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Set a ticket's priority (an unanswered ticket's first-response SLA follows it)."""
    from inbox.tickets.operations import set_priority

    settings = state(ctx).settings()
    row = set_priority(state(ctx).engine(), ticket_id, new_priority.lower(), agent_for(ctx, agent),
                       first_response_minutes=dict(settings.sla.first_response_minutes))
    _done(ctx, row, f"#{row.id} priority {row.priority}")


def tag_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    tag_name: str = typer.Argument(..., metavar="TAG", help="The tag, e.g. refund."),
    remove: bool = typer.Option(False, "--remove", help="Remove the tag instead."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Add (or --remove) a tag."""
    from inbox.safe_text import one_line
    from inbox.tickets.operations import tag

    row = tag(state(ctx).engine(), ticket_id, tag_name, agent_for(ctx, agent), remove=remove)
    _done(ctx, row, f"#{row.id} tags: {one_line(', '.join(row.tags), 200) or 'none'}")


def note_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    text: str = typer.Argument(..., metavar="TEXT", help="The note (private: never sent to the customer)."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Add a private note (never sent to the customer)."""
    from inbox.tickets.operations import add_note

    row = add_note(state(ctx).engine(), ticket_id, text, agent_for(ctx, agent))
    _done(ctx, row, f"#{row.id}: note added (private)")


def merge_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="The ticket to fold in."),
    into_id: int = typer.Argument(..., parser=ID, metavar="INTO_ID", help="The ticket that stays."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Merge ticket ID into INTO_ID (reversible with `inbox unmerge ID`)."""
    from inbox.tickets.operations import merge

    row = merge(state(ctx).engine(), ticket_id, into_id, agent_for(ctx, agent))
    _done(ctx, row, f"#{ticket_id} merged into #{row.id}; undo with: inbox unmerge {ticket_id}")


def unmerge_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Undo a merge: the ticket gets its status and threads back."""
    from inbox.tickets.operations import unmerge

    row = unmerge(state(ctx).engine(), ticket_id, agent_for(ctx, agent))
    _done(ctx, row, f"#{row.id} unmerged (status {row.status})")


def link_cmd(
    ctx: typer.Context,
    contact_ids: list[int] = typer.Argument(..., parser=ID, metavar="CONTACT_ID CONTACT_ID...", help="Contacts (see `inbox show`) that are one person."),
    reason: str = typer.Option(..., "--reason", "-r", metavar="TEXT", help="Why: shared invoice number, customer said so..."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Link contacts on any channels into one person (reversible with `inbox unlink`)."""
    from inbox.tickets.people import link_contacts

    person = link_contacts(state(ctx).engine(), contact_ids, reason, agent_for(ctx, agent))
    emit(ctx, {"person_id": person, "contact_ids": contact_ids},
         lambda: console().print(f"contacts {', '.join(map(str, contact_ids))} are person #{person}", markup=False))


def unlink_cmd(
    ctx: typer.Context,
    contact_id: int = typer.Argument(..., parser=ID, metavar="CONTACT_ID", help="The contact (see `inbox show`)."),
    reason: str = typer.Option("unlinked by an agent", "--reason", "-r", metavar="TEXT", help="Why (kept in the audit log)."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Take a contact out of its person."""
    from inbox.tickets.people import unlink_contact

    person = unlink_contact(state(ctx).engine(), contact_id, reason, agent_for(ctx, agent))
    emit(ctx, {"person_id": person, "contact_id": contact_id},
         lambda: console().print(f"contact {contact_id} unlinked from person #{person}", markup=False))


@filter_options
def search_cmd(
    ctx: typer.Context,
    query: str = typer.Argument(..., metavar="QUERY", help="Words to find in messages (all must match); an invoice number works too."),
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="As in `inbox list`; default: all statuses."),
    filters: FilterOpts = FilterOpts(),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Full-text search over messages; lists the matching tickets."""
    from inbox.search import search

    st = state(ctx)
    flt = ticket_filter(ctx, status or ["all"], filters, agent)
    hits = search(st.engine(), query, flt)

    def render() -> None:
        from rich.text import Text

        from commands.render.queue import ticket_table

        out = console()
        if not hits:
            out.print(Text("no matches"), style="dim")  # Text: see list_cmd
            return
        out.print(ticket_table([h.ticket for h in hits], width=out.width, snippets={h.ticket.id: h.text for h in hits},
                               human_agent_tag=flt.human_agent_tag), no_wrap=True, overflow="ellipsis")

    emit(ctx, lambda: {"query": query, "tickets": [{**h.ticket.to_json(), "match": {"message_id": h.message_id, "text": h.text}} for h in hits]},
         render)

