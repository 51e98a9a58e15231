"""X's per-endpoint rate limits (15-minute windows and the `x-rate-limit-*` headers) and its meter of DM events read."""

from __future__ import annotations

import time



# ── rate limits ─────────────────────────────────────────────────────────────────────────────
class RateLimits:
    """A fixed window per (user, endpoint), as the x-rate-limit-* headers describe."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self.windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, used]
        self.reads = ReadMeter()

    def _current(self, key: tuple[str, str], now: float) -> list[float]:
        win = self.windows.get(key)
        if win is None or now >= win[0] + self.window:
            win = [now, 0]
            self.windows[key] = win
        return win

    def take(self, key: tuple[str, str], now: float, limit: int | None = None) -> tuple[bool, dict[str, str]]:
        """Spend one call if the budget allows; return (allowed, headers)."""
        lim = limit or self.limit
        win = self._current(key, now)
        allowed = win[1] < lim
        if allowed:
            win[1] += 1
        return allowed, self._headers(win, lim)

    def peek(self, key: tuple[str, str], now: float, limit: int | None = None, exhausted: bool = False) -> dict[str, str]:
        lim = limit or self.limit
        win = self._current(key, now)
        headers = self._headers(win, lim)
        if exhausted:
            headers["x-rate-limit-remaining"] = "0"
        return headers

    def _headers(self, win: list[float], lim: int) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(lim),
            "x-rate-limit-remaining": str(max(0, lim - int(win[1]))),
            "x-rate-limit-reset": str(int(win[0] + self.window)),
        }


class ReadMeter:
    """What X bills on pay-per-use: every DM event a lookup returns, per user. `events` counts each
    one; `billed` counts an event once per UTC day of the sandbox clock, as X says it de-duplicates."""

    def __init__(self) -> None:
        self.lookups: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.billed: dict[str, int] = {}
        self._day: dict[str, tuple[str, set[str]]] = {}  # user -> (UTC day, event ids read that day)

    def add(self, user: str, event_ids: list[str], now: float) -> None:
        self.lookups[user] = self.lookups.get(user, 0) + 1
        self.events[user] = self.events.get(user, 0) + len(event_ids)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        seen_day, seen = self._day.get(user, ("", set()))
        if seen_day != day:
            seen = set()  # a new day is billed anew; only the current day's ids are kept
            self._day[user] = (day, seen)
        fresh = [i for i in event_ids if i not in seen]
        seen.update(fresh)
        self.billed[user] = self.billed.get(user, 0) + len(fresh)

    def snapshot(self, user: str) -> dict[str, int]:
        return {"lookups": self.lookups.get(user, 0), "events": self.events.get(user, 0), "billed": self.billed.get(user, 0)}
