"""`inbox sync`, `run`, `serve`, `accounts [reset|repoint]` and `quarantine [show]`.

The sync itself and its exit code live in inbox.sync; this module parses the arguments, shows
the live progress and renders the summary.
"""

import sys
from typing import Any, Optional

import typer

from commands import COUNT, ID, JsonOpt, console, emit, state, wants_json


def require_config_file(settings: Any) -> None:
    """Commands that need accounts say so plainly when no config file was found at all."""
    from inbox.settings import candidate_paths
    from inbox.errors import ConfigError

    if settings.source is None:
        looked = ", ".join(str(p) for p in candidate_paths(None))
        raise ConfigError(f"no config file found; looked in {looked}",
                          hint="pass --config PATH, set INBOX_CONFIG, or copy config.example.toml to ./inbox.toml")


def _sync_progress_display(names: list[str]) -> tuple[Any, Any]:
    """A transient rich progress on stderr, one line per account, and the callback that feeds it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.fields[account]}", markup=False), TextColumn("{task.fields[detail]}", markup=False),
                        TimeElapsedColumn(), transient=True, console=console(stderr=True))
    tasks = {n: progress.add_task("", total=None, account=n, detail="waiting") for n in names}

    def update(event: Any) -> None:
        c = event.counts
        detail = f"page {event.pages}: {c.new_messages} new, {c.new_tickets} tickets"
        if event.done:
            detail = f"{event.status}: " + detail
        progress.update(tasks[event.account], detail=detail)

    return progress, update


def sync_cmd(
    ctx: typer.Context,
    account: Optional[list[str]] = typer.Option(None, "--account", metavar="NAME", help="Only this account (repeatable); default: every enabled account."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fetch and show what would happen, without writing anything or moving cursors."),
    json_: bool = JsonOpt,
) -> None:
    """One sync pass over the accounts (concurrently), then a summary. Exit 3 config, 4 re-auth, 6 busy, 7 failed, 130 interrupted."""
    import signal
    import threading

    from rich.text import Text

    from commands.render.queue import sync_table
    from inbox.errors import ConfigError
    from inbox.safe_text import one_line
    from inbox.sync.account import exit_code, selected_accounts, totals
    from inbox.sync.pool import sync_all

    st = state(ctx)
    settings = st.settings()
    as_json = wants_json(ctx)
    require_config_file(settings)
    chosen = selected_accounts(settings, account)
    if not chosen:
        raise ConfigError(f"{settings.source}: no enabled accounts to sync", hint="add [[accounts]] to the config")
    engine = st.engine()
    show = not as_json and sys.stderr.isatty()
    progress, update = _sync_progress_display([a.name for a in chosen]) if show else (None, None)
    if show:
        import logging

        # The live display and the summary say what the per-account log lines would.
        logging.getLogger("inbox.sync.account").setLevel(logging.WARNING)
    stop = threading.Event()

    def interrupted(_signum: int, _frame: Any) -> None:
        # The first Ctrl-C: every account finishes and commits the page in flight, then stops
        # (a KeyboardInterrupt raised in the middle of a page write would be caught as a failure
        # of that account). The second: stop at once.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        sys.stderr.write("interrupted: finishing the current page...\n")

    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGINT, interrupted) if main_thread else None

    def report(event: Any) -> None:
        # The display starts with the first event, i.e. after the worker processes are forked:
        # its refresh thread is not running yet when they are.
        if not progress.live.is_started:
            progress.start()
        update(event)

    try:
        results = sync_all(engine, settings, accounts=[a.name for a in chosen], dry_run=dry_run,
                           progress=report if progress is not None else None, stop_event=stop)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        if progress is not None and progress.live.is_started:
            progress.stop()
    # An interrupted run says so in its exit code (the pages in flight are stored, the summary shown).
    code = 130 if stop.is_set() else exit_code(results)
    def data() -> dict[str, Any]:
        summary: dict[str, Any] = {"dry_run": dry_run, "exit_code": code, "accounts": [r.as_dict() for r in results], "totals": totals(results)}
        if dry_run:
            summary["decisions"] = {r.account: [_decision_json(d) for d in r.decisions] for r in results}
        return summary

    def render() -> None:
        out = console()
        if not out.is_terminal:
            out.width = max(out.width, 140)  # piped to a file or a mail: no need to squeeze the table
        out.print(sync_table(results, dry_run=dry_run))
        for r in results:
            if r.error:
                out.print(Text(f"{r.account}: {one_line(r.error, 200)}", style="red" if r.failed else "dim"))
        if dry_run:
            notable = [(r.account, d) for r in results for d in r.decisions if d.rule not in ("3:thread", "2:echo")]
            for acc, d in notable[:40]:
                target = "new ticket" if d.new_ticket else f"ticket #{d.ticket_id}"
                out.print(Text(f"{acc}: {one_line(d.external_id, 80)} -> {target} [{d.rule}] {one_line(d.reason, 120)}"))
            if len(notable) > 40:
                out.print(f"... and {len(notable) - 40} more decisions (--json for all)", style="dim")
        if code == 130:
            sys.stderr.write("error: interrupted — the pages fetched so far are stored; the next sync continues from there\n")

    emit(ctx, data, render)
    raise typer.Exit(code)


def _decision_json(d: Any) -> dict[str, Any]:
    return {"external_id": d.external_id, "thread_id": d.thread_id, "direction": d.direction, "rule": d.rule,
            "reason": d.reason, "score": d.score, "ticket_id": d.ticket_id, "new_ticket": d.new_ticket,
            "repeat_of": d.repeat_of, "considered": [{"ticket": t, "why_not": why} for t, why in d.considered]}


def run_cmd(ctx: typer.Context) -> None:
    """The scheduled sync: one job per account until SIGTERM/SIGINT (finishes the current page, exit 0)."""
    from inbox.errors import ConfigError
    from inbox.sync.scheduler import run

    st = state(ctx)
    st.daemon = True
    settings = st.settings()
    require_config_file(settings)
    if not any(a.enabled for a in settings.accounts):
        raise ConfigError(f"{settings.source}: no enabled accounts to sync", hint="add [[accounts]] to the config")
    raise typer.Exit(run(settings, st.engine()))


def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind (put a TLS proxy in front: Meta requires HTTPS)."),
    port: int = typer.Option(8080, "--port", metavar="PORT", min=0, max=65535, help="Port (0 picks a free one)."),
) -> None:
    """Receive Meta and X webhooks until SIGTERM/SIGINT (finishes requests in flight, exit 0).

    Each verified delivery is committed before it is acknowledged, then stored as messages and
    tickets by the same rules as a sync; `inbox run` keeps polling as the reconcile.
    """
    from inbox.intake import receiver, server
    from inbox.errors import UsageError

    st = state(ctx)
    st.daemon = True
    settings = st.settings()
    require_config_file(settings)
    secrets = receiver.resolve_secrets(settings)  # exit 3 naming the variable that is missing
    engine = st.engine()
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    sys.stderr.write(f"listening on http://{bound_host}:{bound_port} (webhooks at /webhooks/meta and /webhooks/x)\n")
    sys.stderr.flush()
    server.serve(engine, settings, secrets, sock, log_level=settings.log_level)


accounts_app = typer.Typer(help="Accounts and their sync health (exit 1 when any is unhealthy).", invoke_without_command=True)


@accounts_app.callback()
def accounts_list(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Each account's health: last successful sync, last error, re-auth, rate headroom, gaps, quarantine."""
    if ctx.invoked_subcommand is not None:
        return
    from inbox.accounts import health

    st = state(ctx)
    settings = st.settings()
    rows = health(st.engine(), settings)
    unhealthy = any(not h.healthy for h in rows)
    deliveries = None
    if any(h.missed_by_webhooks is not None for h in rows):
        from inbox.accounts import webhook_deliveries

        deliveries = webhook_deliveries(st.engine())
    report: dict[str, Any] = {"healthy": not unhealthy, "accounts": [h.as_dict() for h in rows]}
    if deliveries is not None:
        report["webhook_deliveries"] = deliveries

    def render() -> None:
        out = console()
        if not rows:
            require_config_file(settings)
            out.print("no accounts configured", style="dim")
            return
        from commands.render.queue import accounts_table
        from inbox.store.types import utcnow

        table, notes = accounts_table(rows, deliveries, utcnow(), st.zone())
        out.print(table)
        for note in notes:
            out.print(note)

    emit(ctx, report, render)
    raise typer.Exit(1 if unhealthy else 0)


@accounts_app.command("reset")
def accounts_reset(ctx: typer.Context, name: str = typer.Argument(..., help="Account name from the config."), json_: bool = JsonOpt) -> None:
    """After reconnecting an account (new token): clear its re-auth stop and rate-limit pause."""
    from inbox.accounts import reset

    st = state(ctx)
    ref = reset(st.engine(), st.settings(), name)
    emit(ctx, {"account": ref.name, "needs_reauth": False, "paused_until": None},
         lambda: console().print(f"{ref.name}: re-auth stop and pause cleared; the next sync will try again", markup=False))


@accounts_app.command("repoint")
def accounts_repoint(ctx: typer.Context, name: str = typer.Argument(..., help="Account name from the config."), json_: bool = JsonOpt) -> None:
    """Start an account afresh on the platform id now in the config; the old one's history stays under NAME~OLDID."""
    from inbox.accounts import repoint

    st = state(ctx)
    done = repoint(st.engine(), st.settings(), name)
    ref = done.ref

    def render() -> None:
        if done.retired is None:
            console().print(f"{ref.name}: already stored as {ref.channel} {ref.platform_id}; nothing to do", markup=False)
        else:
            console().print(f"{ref.name}: now {ref.channel} {ref.platform_id}, synced afresh by the next sync; the previous "
                            f"account's tickets, messages and cursor stay under '{done.retired}' (not synced)", markup=False)

    emit(ctx, {"account": ref.name, "channel": ref.channel, "platform_id": ref.platform_id, "retired_as": done.retired}, render)


quarantine_app = typer.Typer(help="Items a sync could not store as messages, with the reason and the raw payload.",
                             invoke_without_command=True)


@quarantine_app.callback()
def quarantine_list(
    ctx: typer.Context,
    account: Optional[str] = typer.Option(None, "--account", metavar="NAME", help="Only this account."),
    all_: bool = typer.Option(False, "--all", help="Include resolved items."),
    limit: int = typer.Option(100, "--limit", "-n", metavar="N", parser=COUNT, help="At most this many, newest first."),
    json_: bool = JsonOpt,
) -> None:
    """List quarantined items, newest first (`inbox quarantine show ID` for one item's raw payload)."""
    if ctx.invoked_subcommand is not None:
        return
    from inbox.quarantine import list_items

    st = state(ctx)
    rows = list_items(st.engine(), account=account, include_resolved=all_, limit=limit)

    def render() -> None:
        from commands.render.queue import quarantine_table

        out = console()
        if not rows:
            out.print("nothing is quarantined", style="dim")
            return
        out.print(quarantine_table(rows, st.zone()))
        out.print("`inbox quarantine show ID` prints an item's raw payload", style="dim")

    emit(ctx, lambda: {"quarantined": [r.to_json() for r in rows]}, render)


@quarantine_app.command("show")
def quarantine_show(
    ctx: typer.Context,
    item_id: int = typer.Argument(..., parser=ID, metavar="ID", help="Item id (see `inbox quarantine`)."),
    json_: bool = JsonOpt,
) -> None:
    """One quarantined item: why, where from, and its raw payload exactly as received (shown safely)."""
    from commands.render.detail import print_quarantined
    from inbox.quarantine import get_item

    st = state(ctx)
    item = get_item(st.engine(), item_id)
    emit(ctx, lambda: {"item": item.to_json()}, lambda: print_quarantined(console(), item, st.zone()))
