"""The list layouts: the one-line-per-ticket queue (list, search, the demo) and the sync, accounts,
outbox and quarantine tables. Customer text always goes in as plain Text, never markup.
"""

from __future__ import annotations

from typing import Any, Optional

from commands.render.cells import PRIORITY_STYLE, STATUS_STYLE, age, ago, rate_left, repeated, sla, window
from connectors.channels import short_name

SYNC_COLUMNS = (
    ("new\nmsgs", "new_messages"), ("new\ntickets", "new_tickets"), ("attached", "attached"), ("reopened", "reopened"),
    ("flagged", "flagged"), ("gaps", "gaps"), ("quaran-\ntined", "quarantined"),
)


def ticket_table(rows: list[Any], *, width: int, snippets: Optional[dict[int, Optional[str]]] = None, human_agent_tag: bool = True) -> Any:
    """The queue, one line per ticket (list, search, the demo): the snippet takes the width left."""
    from datetime import datetime, timezone

    from rich.cells import cell_len, set_cell_size
    from rich.control import strip_control_codes
    from rich.text import Span, Text

    from inbox.safe_text import display_name, one_line

    now = datetime.now(timezone.utc)
    headers = ("#", "prio", "status", "ch", "customer", "snippet", "age", "SLA", "assignee", "window")
    # Cells as (text, style) pairs, control codes stripped as rich.Text would; the snippet (index 5)
    # stays raw until the other columns have their widths. Customer text goes in as plain text,
    # never parsed as markup.
    cells: list[list[Any]] = []
    for r in rows:
        cells.append([
            (str(r.id), ""),
            (strip_control_codes(r.priority), PRIORITY_STYLE.get(r.priority, "")),
            (strip_control_codes(r.status), STATUS_STYLE.get(r.status, "")),
            (strip_control_codes(short_name(r.channel)), ""),
            (strip_control_codes(one_line(display_name(r.customer_handle, r.customer_name), 18)), ""),
            repeated(r, snippets.get(r.id) if snippets is not None else (r.snippet or r.subject)),
            (age(now - r.created), ""),
            sla(r, now),
            (strip_control_codes(one_line(r.assignee, 16)), "") if r.assignee else ("–", "dim"),
            window(r, now, human_agent_tag),
        ])
    # One line per ticket: the snippet gets the width the other columns leave. Laid out by hand
    # (a rich Table measures every cell twice, which costs more than the query on a long list),
    # as one Text with a span per styled cell (a Text per cell costs more than the query too).
    right = {0, 6, 7, 9}
    last = len(headers) - 1
    widths = [max([len(h)] + [cell_len(c[i][0]) for c in cells]) if i != 5 else 0 for i, h in enumerate(headers)]
    # On a narrow terminal the snippet keeps room to be read: the customer and assignee columns
    # give up width first (down to a few characters, cut with "…").
    want = min(40, max(12, width // 3))
    for i, floor in ((4, 10), (8, 6)):
        short = want - (width - sum(widths) - last)
        if short > 0:
            widths[i] = max(min(floor, widths[i]), widths[i] - short)
    widths[5] = max(12, width - sum(widths) - last)
    for c in cells:
        c[5] = (strip_control_codes(one_line(c[5], widths[5])), "")

    chunks: list[str] = []
    spans: list[Any] = []
    offset = 0

    def line(parts: list[Any]) -> None:
        nonlocal offset
        for i, (text, style) in enumerate(parts):
            size = cell_len(text)
            if size > widths[i]:
                text = set_cell_size(text, widths[i] - 1) + "…"
                size = cell_len(text)
            pad = " " * (widths[i] - size)
            if i:
                chunks.append(" ")
                offset += 1
            if i in right:
                chunks.append(pad)
                offset += len(pad)
            if style:
                spans.append(Span(offset, offset + len(text), style))
            chunks.append(text)
            offset += len(text)
            if i not in right and i != last:
                chunks.append(pad)
                offset += len(pad)

    line([(h, "") for h in headers])
    spans.insert(0, Span(0, offset, "bold"))  # the header line
    for c in cells:
        chunks.append("\n")
        offset += 1
        line(c)
    return Text("".join(chunks), spans=spans)


def sync_table(results: list[Any], *, dry_run: bool) -> Any:
    """`inbox sync`: one row per account, its status and counts."""
    from rich.table import Table
    from rich.text import Text

    title = "sync (dry run: nothing written)" if dry_run else None
    # Fits 80 columns: two-line headers, and names and statuses never shrink.
    table = Table(title=title, box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("account", no_wrap=True, min_width=max([len("account"), *(len(r.account) for r in results)]))
    table.add_column("status", no_wrap=True, min_width=max([len("status"), *(len(r.status) for r in results)]))
    for head, _key in SYNC_COLUMNS:
        table.add_column(head, justify="right", no_wrap=True, min_width=max(len(w) for w in head.split("\n")))
    table.add_column("errors", justify="right", no_wrap=True)
    styles = {"ok": "green", "dry-run": "cyan", "stopped": "yellow", "skipped": "dim", "retry-later": "yellow",
              "needs-reauth": "bold red", "conflict": "yellow", "failed": "bold red", "config-error": "bold red"}
    for r in results:
        counts = r.counts.counts()
        table.add_row(Text(r.account), Text(r.status, style=styles.get(r.status, "")), *(Text(str(counts[k])) for _h, k in SYNC_COLUMNS),
                      Text("1" if r.failed else "0", style="red" if r.failed else ""))
    return table


def accounts_table(rows: list[Any], deliveries: Optional[dict[str, int]], now: Any, zone: Any) -> tuple[Any, list[Any]]:
    """`inbox accounts`: one row per account, and the notes printed under the table."""
    from rich.table import Table
    from rich.text import Text

    from inbox.safe_text import one_line
    from inbox.timefmt import local_time

    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("account", no_wrap=True, min_width=max(len(h.name) for h in rows))
    for head in ("ch", "health", "last ok", "re-auth", "rate left", "gaps", "quarantined"):
        table.add_column(head, no_wrap=True, justify="right" if head in ("gaps", "quarantined") else "left")
    notes = []
    for h in rows:
        if not h.enabled:
            status = Text("disabled", style="dim")
        elif not h.healthy:
            status = Text("UNHEALTHY", style="bold red")
            notes.append(Text(f"{h.name}: {one_line('; '.join(h.problems), 300)}", style="red"))
        elif h.paused_until is not None:
            status = Text(f"paused to {local_time(h.paused_until, zone, '%H:%M')}", style="yellow")
        else:
            status = Text("ok", style="green")
        if h.syncing:
            until = f", lease until {local_time(h.lease_expires_at, zone, '%H:%M:%S')}" if h.lease_expires_at else ""
            notes.append(Text(f"{h.name}: syncing now: {one_line(h.syncing, 200)}{until}", style="cyan"))
        if h.missed_by_webhooks is not None:
            notes.append(Text(f"{h.name}: missed by webhooks: {h.missed_by_webhooks} in the last 24 h",
                              style="yellow" if h.missed_by_webhooks else "dim"))
        if h.events_read_today is not None:  # X bills each DM event read (a note: the table stays in 80 columns)
            notes.append(Text(f"{h.name}: {h.events_read_today} DM events read today (UTC), about ${h.est_cost_today:.2f}", style="dim"))
        if h.last_error and (not h.healthy or (h.last_error_at and h.last_success_at and h.last_error_at > h.last_success_at)):
            notes.append(Text(f"{h.name}: last error {ago(now, h.last_error_at)}: {one_line(h.last_error, 300)}", style="dim"))
        table.add_row(
            Text(h.name), Text(short_name(h.channel)), status,
            Text(ago(now, h.last_success_at)), Text("YES", style="bold red") if h.needs_reauth else Text("no"),
            Text(rate_left(h, now, zone)), Text(str(h.open_gaps), style="yellow" if h.open_gaps else ""),
            Text(str(h.quarantined), style="yellow" if h.quarantined else ""),
        )
    if deliveries is not None and any(deliveries.values()):
        notes.append(Text(f"webhook deliveries: {deliveries['pending']} waiting to be stored, {deliveries['quarantined']} quarantined "
                          "(unreadable; kept whole in the webhook_delivery table)", style="yellow" if deliveries["quarantined"] else "dim"))
    return table, notes


def outbox_table(rows: list[Any]) -> Any:
    """`inbox outbox`: one row per reply; the text and the error fold onto more lines."""
    from rich.table import Table
    from rich.text import Text

    from inbox.safe_text import one_line

    style = {"sent": "green", "failed": "red", "unknown": "bold yellow", "sending": "yellow", "queued": ""}
    cols = [(str(r.id), f"#{r.ticket_id}", r.state, short_name(r.channel), r.policy, str(r.attempts)) for r in rows]
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    # What `outbox retry` needs (id, ticket, state) and the short route columns keep their width;
    # the text and the error share what is left, folded onto more lines.
    for i, h in enumerate(("#", "ticket", "state", "ch", "policy", "tries")):
        table.add_column(h, no_wrap=True, min_width=max([len(h), *(len(c[i]) for c in cols)]), justify="right" if h in ("#", "tries") else "left")
    table.add_column("text", overflow="fold", ratio=3, min_width=12)
    table.add_column("error", overflow="fold", ratio=2, min_width=8)
    for r, c in zip(rows, cols):
        table.add_row(Text(c[0]), Text(c[1]), Text(c[2], style=style.get(r.state, "")), Text(c[3]), Text(c[4]), Text(c[5]),
                      Text(one_line(r.text, 200)), Text(one_line(r.error, 200), style="dim"))
    return table


def quarantine_table(rows: list[Any], zone: Any) -> Any:
    """`inbox quarantine`: one row per item, newest first."""
    from rich.table import Table
    from rich.text import Text

    from inbox.safe_text import one_line
    from inbox.timefmt import local_time

    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    for head in ("#", "received", "account", "ch", "platform id", "reason"):
        table.add_column(head, no_wrap=True)
    for r in rows:
        table.add_row(Text(str(r.id)), Text(local_time(r.received_at, zone)), Text(one_line(r.account, 40)),
                      Text(short_name(r.channel)), Text(one_line(r.external_id or r.thread_id or "–", 30)),
                      Text(one_line(r.reason, 100), style="dim" if r.resolved_at else ""))
    return table
