"""Team numbers: backlog by channel and status, SLA breaches, first-response times, escalations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.store import tables as tb
from inbox.store.types import ACTIVE_STATUSES
from inbox.timefmt import json_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = tb.ticket


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Stats:
    backlog: dict[str, dict[str, int]]  # channel -> status -> tickets
    first_response_overdue: int  # active, unanswered, past due
    answered_late: int  # answered within the period, after the due time
    escalated: int  # active and past the escalation time (default 3 days)
    first_response_count: int
    first_response_median_minutes: float | None
    first_response_p90_minutes: float | None
    period_days: float
    now: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "backlog": self.backlog,
            "sla": {
                "first_response_overdue": self.first_response_overdue,
                "answered_late": self.answered_late,
                "escalated": self.escalated,
            },
            "first_response": {
                "count": self.first_response_count,
                "median_minutes": _round(self.first_response_median_minutes),
                "p90_minutes": _round(self.first_response_p90_minutes),
            },
            "period_days": self.period_days,
            "at": json_time(self.now),
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def compute(engine: Engine, *, period_days: float = 7, now: datetime | None = None, channels: tuple[str, ...] = ()) -> Stats:
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=period_days)
    base = [T.c.merged_into_id.is_(None)]
    if channels:
        base.append(T.c.channel.in_(list(channels)))
    active = [*base, T.c.status.in_(list(ACTIVE_STATUSES))]
    with engine.connect() as conn:
        backlog: dict[str, dict[str, int]] = {}
        for channel, status, n in conn.execute(
            sa.select(T.c.channel, T.c.status, sa.func.count()).where(*base).group_by(T.c.channel, T.c.status)
        ):
            backlog.setdefault(channel, {})[status] = int(n)
        overdue = conn.execute(
            sa.select(sa.func.count()).where(*active, T.c.first_response_at.is_(None), T.c.first_response_due_at < now)
        ).scalar_one()
        escalated = conn.execute(sa.select(sa.func.count()).where(*active, T.c.escalation_due_at < now)).scalar_one()
        answered = conn.execute(
            sa.select(T.c.created_at, T.c.first_response_at, T.c.first_response_due_at).where(
                *base, T.c.first_response_at.is_not(None), T.c.first_response_at >= since
            )
        ).all()
    minutes = [max(0.0, (r.first_response_at - r.created_at).total_seconds() / 60) for r in answered]
    late = sum(1 for r in answered if r.first_response_due_at and r.first_response_at > r.first_response_due_at)
    return Stats(
        backlog=backlog,
        first_response_overdue=int(overdue),
        answered_late=late,
        escalated=int(escalated),
        first_response_count=len(minutes),
        first_response_median_minutes=percentile(minutes, 0.5),
        first_response_p90_minutes=percentile(minutes, 0.9),
        period_days=period_days,
        now=now,
    )
