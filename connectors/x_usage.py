"""What an X account's lookups read in one UTC day, and what pay-per-use bills for it.

X bills every DM event a lookup returns ("DM Event: Read", about $0.01), but an event already
returned earlier the same UTC day is not billed again. A pass reads a contiguous run of the
newest-first feed (from the top down to the newest stored event), so the events read today are,
closely enough, the snowflakes between the lowest and the highest read today: an event in that range
is counted as read but not billed. (An event that arrived late inside the range, never read before,
is billed by X but not counted here: the estimate errs low by those few.)

Kept in the account's cursor (`"usage"`), so it is committed with the events it counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

DEFAULT_COST_PER_READ = 0.01  # US dollars per DM event read (pay-per-use price, 2026)


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: str  # UTC date, YYYY-MM-DD
    calls: int = 0  # lookups answered
    read: int = 0  # events they returned
    billed: int = 0  # of those, not returned before this day (see the module's note)
    low: int | None = None  # lowest and highest snowflake read this day
    high: int | None = None

    @classmethod
    def load(cls, value: Any, day: str) -> DayUsage:
        """The usage a cursor holds for `day`; a fresh one when it holds another day's or none."""
        if not isinstance(value, Mapping) or value.get("day") != day:
            return cls(day)
        try:
            return cls(day, calls=_count(value.get("calls")), read=_count(value.get("read")), billed=_count(value.get("billed")),
                       low=_snowflake(value.get("low")), high=_snowflake(value.get("high")))
        except ValueError:
            return cls(day)

    def after_lookup(self, ids: Sequence[int | None]) -> DayUsage:
        """This usage plus one lookup that returned events with these snowflakes (None: unreadable id)."""
        low, high = self.low, self.high
        billed = sum(1 for n in ids if n is None or low is None or high is None or not low <= n <= high)
        nums = [n for n in ids if n is not None]
        if nums:
            low = min(nums) if low is None else min(low, *nums)
            high = max(nums) if high is None else max(high, *nums)
        return replace(self, calls=self.calls + 1, read=self.read + len(ids), billed=self.billed + billed, low=low, high=high)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"day": self.day, "calls": self.calls, "read": self.read, "billed": self.billed}
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = str(self.low), str(self.high)
        return out

    def cost(self, per_read: float) -> float:
        """Estimated spend of the day in dollars (what X bills: events not read before that day)."""
        return round(self.billed * per_read, 4)


def utc_day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a count")
    return value


def _snowflake(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isdigit() or len(value) > 20:
        raise ValueError("not a snowflake")
    return int(value)
