"""Table cells shared by the renderers: ages, the SLA and reply-window cells, styles, short names.

Each cell is (text, style); no rich import here, so the layouts decide how to draw them.
"""

from __future__ import annotations

from typing import Any, Optional

PRIORITY_STYLE = {"urgent": "bold red", "high": "dark_orange", "normal": "", "low": "dim"}
STATUS_STYLE = {"new": "bold cyan", "open": "green", "pending": "yellow", "resolved": "dim", "closed": "dim"}


def age(delta: Any) -> str:
    """Compact duration for table cells: 45s, 12m, 5h, 3d."""
    seconds = int(max(0, delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def sla(row: Any, now: Any) -> tuple[str, str]:
    """The SLA cell as (text, style): time to the first-response (or escalation) deadline, coloured by urgency."""
    from datetime import timedelta

    if row.status not in ("new", "open", "pending"):
        return "", ""
    due = row.next_deadline()
    if due is None:
        return "", ""
    left = due - now
    if left <= timedelta(0):
        return f"-{age(-left)}", "bold red"  # overdue by
    return age(left), "yellow" if left < timedelta(hours=1) else ""


def window(row: Any, now: Any, human_agent_tag: bool) -> tuple[str, str]:
    """The reply-window cell as (text, style)."""
    from datetime import timedelta

    left = row.window_left(now, human_agent_tag)
    if left is None:
        return "–", "dim"
    if left <= timedelta(0):
        return "closed", "red"
    return age(left), "red" if left < timedelta(hours=2) else ("yellow" if left < timedelta(hours=6) else "")


def repeated(row: Any, snippet: Optional[str]) -> Optional[str]:
    """The snippet, led by "customer repeated 3×" when the customer sent the same thing again."""
    return f"({row.repeated}) {snippet or ''}" if row.repeated else snippet


def ago(now: Any, when: Any) -> str:
    """How long ago, for the accounts table: 45s ago, 12m ago, 5h ago, 3d ago, or never."""
    if when is None:
        return "never"
    s = int((now - when).total_seconds())
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def rate_left(h: Any, now: Any, zone: Any) -> str:
    """An account's rate headroom: remaining/limit (and the reset time), or the percentage left."""
    from inbox.timefmt import local_time

    if h.rate_limit and h.rate_remaining is not None:
        text = f"{h.rate_remaining}/{h.rate_limit}"
        if h.rate_reset_at is not None and h.rate_reset_at > now:
            text += f" (reset {local_time(h.rate_reset_at, zone, '%H:%M')})"
        return text
    if h.rate_usage_pct is not None:
        return f"{100 - h.rate_usage_pct:.0f}% left"
    return "-"
