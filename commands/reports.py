"""`inbox stats` and `inbox export`: the numbers are inbox.stats' and inbox.export's."""

import sys
from typing import Optional

import typer

from commands import DAYS, AccountOpt, ChannelOpt, FilterOpts, JsonOpt, TagOpt, console, emit, say, split_values, state, ticket_filter


def stats_cmd(
    ctx: typer.Context,
    days: float = typer.Option(7, "--days", metavar="DAYS", parser=DAYS, help="Period for first-response times and late answers."),
    channel: Optional[list[str]] = ChannelOpt,
    json_: bool = JsonOpt,
) -> None:
    """Backlog by channel and status, SLA breaches, first-response times (median, p90), escalations."""
    from inbox.stats import compute

    st = state(ctx)
    s = compute(st.engine(), period_days=days, channels=split_values(channel))

    def render() -> None:
        from datetime import timedelta

        from rich.table import Table
        from rich.text import Text

        from inbox.replies.windows import format_duration
        from inbox.store.types import STATUSES

        out = console()
        statuses = list(STATUSES)
        table = Table(title="backlog", box=None, header_style="bold", pad_edge=False, title_justify="left")
        table.add_column("channel")
        for x in statuses:
            table.add_column(x, justify="right")
        for ch in sorted(s.backlog):
            table.add_row(ch, *[str(s.backlog[ch].get(x, 0)) for x in statuses])
        out.print(table)

        def mins(v: Optional[float]) -> str:
            return "–" if v is None else format_duration(timedelta(minutes=v))

        out.print(Text.assemble(
            "SLA: ", (f"{s.first_response_overdue} unanswered past due", "bold red" if s.first_response_overdue else ""),
            f" · {s.answered_late} answered late (last {days:g} d) · ",
            (f"{s.escalated} escalated (open past the escalation time)", "red" if s.escalated else ""),
        ))
        out.print(f"first response (last {days:g} d, {s.first_response_count} tickets): median {mins(s.first_response_median_minutes)}, "
                  f"p90 {mins(s.first_response_p90_minutes)}", markup=False)

    emit(ctx, s.to_json, render)


def export_cmd(
    ctx: typer.Context,
    fmt: str = typer.Option("jsonl", "--format", "-f", metavar="FORMAT", help="jsonl (one ticket with its messages per line) or csv (one message per row)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="PATH", help="File to write (default: stdout)."),
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="As in `inbox list`; default: all statuses."),
    channel: Optional[list[str]] = ChannelOpt,
    account: Optional[list[str]] = AccountOpt,
    tag: Optional[list[str]] = TagOpt,
) -> None:
    """Export tickets with their messages as JSON Lines or CSV."""
    from inbox import export
    from inbox.errors import UsageError

    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown format '{fmt}' (jsonl or csv)")
    flt = ticket_filter(ctx, status or ["all"], FilterOpts(channel=channel, account=account, tag=tag, limit=1))
    writer = export.write_jsonl if fmt == "jsonl" else export.write_csv
    if output:
        from inbox.runtime.files import open_private

        try:
            fh = open_private(output, newline="")
        except OSError as exc:  # a missing directory, a directory, no permission: the path is what is wrong
            raise UsageError(f"cannot write {output}: {exc.strerror or type(exc).__name__}", hint="give --output a file in a directory that exists and you can write to") from exc
        with fh:
            n = writer(state(ctx).engine(), flt, fh)
        say(f"exported {n} tickets to {output}\n", err=True)
    else:
        writer(state(ctx).engine(), flt, sys.stdout)
