"""What an X account's lookups read in one UTC day, and what pay-per-use bills for it.

X bills every DM event a lookup returns ("DM Event: Read", about $0.01), but an event already
returned earlier the same UTC day is not billed again. One walk down the newest-first feed (from
the top, or from where an unfinished pass stopped, down to the newest stored event) reads a run of
consecutive events, so what was read today is kept as the spans of snowflakes those walks covered:
an event inside a span of an earlier walk is counted as read but not billed. (An event that
arrived late inside a span, never read before, is billed by X and not counted here: the estimate
errs low by those few; spans past `MAX_SPANS` are forgotten, and it errs high instead.)

Kept in the account's cursor (`"usage"`), so it is committed with the events it counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

DEFAULT_COST_PER_READ = 0.01  # US dollars per DM event read (pay-per-use price, 2026)
MAX_SPANS = 32  # a day of polls at one walk each merges into a few; more is bounded here

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: str  # UTC date, YYYY-MM-DD
    calls: int = 0  # lookups answered
    read: int = 0  # events they returned
    billed: int = 0  # of those, not returned before this day (see the module's note)
    spans: tuple[Span, ...] = ()  # snowflakes covered by earlier walks this day, ascending, disjoint
    walk: Span | None = None  # covered by the current walk so far

    @classmethod
    def load(cls, value: Any, day: str) -> DayUsage:
        """The usage a cursor holds for `day`; a fresh one when it holds another day's or none."""
        if not isinstance(value, Mapping) or value.get("day") != day:
            return cls(day)
        try:
            spans = value.get("spans") or []
            if not isinstance(spans, list):
                raise ValueError("spans")
            parsed = [(_snowflake(lo), _snowflake(hi)) for lo, hi in spans]
            return cls(day, calls=_count(value.get("calls")), read=_count(value.get("read")), billed=_count(value.get("billed")),
                       spans=_merge(parsed))
        except (ValueError, TypeError):
            return cls(day)

    def new_walk(self) -> DayUsage:
        """The current walk's span joins the day's: a walk elsewhere in the feed begins."""
        return replace(self, spans=self._all(), walk=None)

    def after_lookup(self, ids: Sequence[int | None]) -> DayUsage:
        """This usage plus one lookup of the current walk that returned events with these snowflakes
        (None: an unreadable id, counted as billed)."""
        billed = sum(1 for n in ids if n is None or not any(lo <= n <= hi for lo, hi in self.spans))
        nums = [n for n in ids if n is not None]
        walk = self.walk
        if nums:
            lo, hi = min(nums), max(nums)
            walk = (lo, hi) if walk is None else (min(walk[0], lo), max(walk[1], hi))
        return replace(self, calls=self.calls + 1, read=self.read + len(ids), billed=self.billed + billed, walk=walk)

    def _all(self) -> tuple[Span, ...]:
        return _merge([*self.spans, *([self.walk] if self.walk else [])])

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day, "calls": self.calls, "read": self.read, "billed": self.billed,
                "spans": [[str(lo), str(hi)] for lo, hi in self._all()]}

    def cost(self, per_read: float) -> float:
        """Estimated spend of the day in dollars (what X bills: events not read before that day)."""
        return round(self.billed * per_read, 4)


def _merge(spans: Sequence[Span]) -> tuple[Span, ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if lo > hi:
            raise ValueError("span")
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out[-MAX_SPANS:])  # the newest: the next walks meet those


def utc_day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a count")
    return value


def _snowflake(value: Any) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 20:
        raise ValueError("not a snowflake")
    return int(value)
