"""`inbox reply` (text, -, --editor, --template), `inbox outbox` and `outbox retry`.

Planning, recording and delivering a reply are inbox.replies'; this module gets the text, shows
the route, asks, and renders the outcome.
"""

import os
import sys
from dataclasses import replace
from typing import Optional

import typer

from commands import COUNT, ID, AgentOpt, JsonOpt, agent_for, console, emit, prog, state


def _reply_text(ctx: typer.Context, ticket_id: int, text: Optional[str], editor: bool, template: Optional[str], agent: str) -> str:
    """The reply's text from exactly one of TEXT (`-`: standard input), --template or --editor."""
    from inbox.errors import UsageError

    settings = state(ctx).settings()
    chosen = sum(bool(x) for x in (text is not None, editor, template))
    if chosen != 1:
        raise UsageError("give the reply as TEXT, or --editor, or --template NAME (exactly one)")
    if text is not None and not text.strip():
        raise UsageError("empty reply: nothing sent")
    if text == "-":  # `echo … | inbox reply 42 - --yes`
        text = sys.stdin.read().strip()
        if not text:
            raise UsageError("empty reply on standard input: nothing sent")
        from inbox.safe_text import utf8_problem

        if problem := utf8_problem(text, "standard input"):
            raise UsageError(f"{problem}: nothing sent")
        return text
    if template:
        from inbox.replies.templates import get_template, render, ticket_variables

        variables = ticket_variables(state(ctx).engine(), ticket_id, agent, list(settings.dedup.order_patterns))
        return render(get_template(dict(settings.templates), template), variables)
    if editor:
        import shlex
        import subprocess
        import tempfile

        from inbox.replies import drafts

        command = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
        draft = drafts.load(settings.database_url(), ticket_id)  # what was written last time and not sent
        with tempfile.NamedTemporaryFile("w+", suffix=".txt", prefix=f"inbox-reply-{ticket_id}-", encoding="utf-8", delete=False) as fh:
            fh.write((draft.rstrip("\n") + "\n" if draft else "\n")
                     + f"# Reply to ticket #{ticket_id}{' (your unsent draft)' if draft else ''}. "
                     "Lines starting with # are dropped; an empty reply cancels.\n")
            path = fh.name
        try:
            if subprocess.call([*command, path]) != 0:
                raise UsageError(f"the editor ({command[0]}) failed: nothing sent")
            # Bytes that are not UTF-8 (an editor saving in Latin-1) are read, not fatal: refused below, the text kept.
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                edited = fh.read()
        finally:
            os.unlink(path)
        body = "\n".join(line for line in edited.splitlines() if not line.startswith("#")).strip()
        if not body:
            raise UsageError("empty reply: nothing sent")
        from inbox.safe_text import utf8_problem

        if problem := utf8_problem(body, "the edited reply"):
            kept = drafts.save(settings.database_url(), ticket_id, body.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            raise UsageError(f"{problem}: nothing sent; your text is kept in {kept}, each such byte as \ufffd "
                             f"(`{prog()} reply {ticket_id} --editor` opens it again)")
        return body
    return text or ""


def reply_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Ticket id (see `inbox list`)."),
    text: Optional[str] = typer.Argument(None, metavar="[TEXT]", help="The reply; - reads it from standard input (or use --editor / --template)."),
    editor: bool = typer.Option(False, "--editor", "-e", help="Write the reply in $EDITOR."),
    template: Optional[str] = typer.Option(None, "--template", "-t", metavar="NAME", help="A canned reply from settings.templates ({customer}, {handle}, {invoice}, {ticket}, {agent})."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Send without asking (required when there is no terminal to ask on)."),
    via: Optional[str] = typer.Option(None, "--via", metavar="CHANNEL", help="Reply in the ticket's thread on this channel (instagram, facebook, x) instead of its own channel."),
    to: Optional[int] = typer.Option(None, "--to", parser=ID, metavar="CONTACT", help="Reply to this contact's thread (see `inbox show`); needed when the ticket holds threads of several customers."),
    again: bool = typer.Option(False, "--again", help="Send even though another reply was recorded on the ticket since the route was shown, or the ticket's last reply already delivered this text."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Reply to the customer of the ticket's thread (its own channel, or --via / --to); shows the route and asks first. Refusals send nothing (exit 8)."""
    from rich.text import Text

    from inbox.replies import drafts
    from inbox.replies import ledger, outbox
    from connectors.channels import CHANNELS
    from inbox.replies.route import plan_reply
    from inbox.errors import InboxError, UsageError
    from inbox.safe_text import clean, one_line

    st = state(ctx)
    settings = st.settings()
    who = agent_for(ctx, agent)
    body = _reply_text(ctx, ticket_id, text, editor, template, who)
    engine = st.engine()
    err = console(stderr=True)
    ask = not yes and settings.replies.confirm

    def confirm(question: str) -> bool:
        try:
            return typer.confirm(question, default=False, err=True)
        except typer.Abort:  # Ctrl-C or end of input at the question
            return False

    try:
        if via and via not in CHANNELS:
            raise UsageError(f"unknown channel '{via}' for --via ({', '.join(list(CHANNELS)[:-1])} or {list(CHANNELS)[-1]})")
        plan = plan_reply(engine, ticket_id, body, human_agent_tag=settings.replies.human_agent_tag, via=via, to=to, again=again)
        route = plan.route
        err.print(Text(plan.describe(), style="bold"), Text(f"  (contact {route.contact_id}, {one_line(route.account_name, 100)})", style="dim"))
        claimed_by = plan.assignee if plan.assignee and plan.assignee != who else None
        if claimed_by:
            err.print(Text(f"warning: ticket #{ticket_id} is claimed by {one_line(claimed_by, 100)}", style="bold yellow"))
        if ask:
            if not sys.stdin.isatty():
                raise UsageError("not sent: confirmation needed but there is no terminal to ask on", hint="pass --yes to send without asking")
            err.print(Text(clean(body)), overflow="fold")
            if not confirm("Send this reply?"):
                raise UsageError("cancelled: nothing sent")
        while True:
            try:
                claim = ledger.record_reply(engine, plan, who, again=again)
                break
            except ledger.ReplyRaceError as race:
                if not ask:
                    raise
                # Another agent answered while we were deciding: show it and ask again.
                for other in race.others:
                    err.print(Text(f"reply #{other.id} by {one_line(other.author, 100)} ({other.state}, {other.created:%H:%M:%S} UTC): ", style="bold yellow"),
                              Text(one_line(other.text, 300)))
                if not confirm("Another reply was recorded on this ticket since you started. Send yours too?"):
                    raise UsageError("cancelled: nothing sent") from None
                plan = replace(plan, seen_reply_id=max(o.id for o in race.others))
    except InboxError as exc:
        if not editor:
            raise
        # Typed in the editor and not sent (declined, refused): kept, and offered by the next --editor.
        path = drafts.save(settings.database_url(), ticket_id, body)
        raise type(exc)(f"{exc.message}; your text is kept in {path} (`{prog()} reply {ticket_id} --editor` opens it again)",
                        hint=exc.hint) from None
    if editor:
        drafts.discard(settings.database_url(), ticket_id)  # from here on the outbox holds the text
    outcome = outbox.deliver(engine, claim, outbox.connector_factory(settings, engine), who)
    emit(ctx, {"reply": {"id": outcome.reply_id, "state": outcome.state, "platform_id": outcome.external_id,
                         "ticket_id": ticket_id, "policy": plan.policy.value, "channel": route.channel,
                         "contact_id": route.contact_id, "recipient_id": route.recipient_id, "claimed_by": claimed_by}},
         lambda: console().print(Text(f"sent: reply #{outcome.reply_id} on ticket #{ticket_id} (platform id {one_line(outcome.external_id, 80)}); ticket is pending")))


outbox_app = typer.Typer(help="Replies not (yet) known to be delivered: queued, sending, failed, unknown.", invoke_without_command=True)


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include sent replies."),
    limit: int = typer.Option(100, "--limit", "-n", metavar="N", parser=COUNT, help="At most this many replies."),
    json_: bool = JsonOpt,
) -> None:
    """List the outbox (after matching in-doubt replies against the echoes synced so far)."""
    if ctx.invoked_subcommand is not None:
        return
    from inbox.replies import ledger, outbox, reconcile
    from inbox.store.types import REPLY_OPEN, REPLY_STATES

    st = state(ctx)
    engine = st.engine()
    reconcile.reconcile_all(engine, ledger.Timing.of(st.settings()))
    states = REPLY_STATES if all_ else REPLY_OPEN
    rows = outbox.outbox(engine, states=states, limit=limit)

    def render() -> None:
        from commands.render.queue import outbox_table

        out = console()
        if not rows:
            out.print("outbox is empty: every reply was delivered", style="dim")
            return
        out.print(outbox_table(rows))
        if any(r.state in ("unknown", "sending") for r in rows):
            out.print("unknown/sending: may have been delivered; `inbox sync` settles them (never resent blindly)", style="dim")

    emit(ctx, lambda: {"replies": [r.to_json() for r in rows]}, render)


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    reply_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Reply id (see `inbox outbox`)."),
    force: bool = typer.Option(False, "--force", help="Send an `unknown` reply again: you checked the customer's thread and it is not there (audited)."),
    agent: Optional[str] = AgentOpt,
    json_: bool = JsonOpt,
) -> None:
    """Send a failed reply again; refuses one that may have been delivered (exit 6) until a sync settles it, or --force."""
    from rich.text import Text

    from inbox.replies import ledger, outbox
    from inbox.safe_text import one_line

    st = state(ctx)
    settings = st.settings()
    outcome = outbox.retry(st.engine(), reply_id, outbox.connector_factory(settings, st.engine()), agent_for(ctx, agent),
                            human_agent_tag=settings.replies.human_agent_tag, force=force, timing=ledger.Timing.of(settings))
    emit(ctx, {"reply": {"id": outcome.reply_id, "state": outcome.state, "platform_id": outcome.external_id}},
         lambda: console().print(Text(f"sent: reply #{outcome.reply_id} (platform id {one_line(outcome.external_id, 80)})")))

