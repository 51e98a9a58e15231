"""Meta's usage accounting: per-account call counts and the `X-Business-Use-Case-Usage` / `X-App-Usage` headers."""

from __future__ import annotations

import json
import math
from collections import deque


# ── usage accounting ────────────────────────────────────────────────────────────────────────
UNLIMITED_CALLS_PER_SECOND = 1000
class Usage:
    """Calls per business object, for X-Business-Use-Case-Usage and throttling.

    Two models. By default, usage is calls in the last minute against `calls_per_second` (which also
    throttles reads beyond it; unset, a notional 1,000 calls/s and no throttling). With a call budget
    (`set_budget`), usage grows by 100/`calls` per call within a fixed window per business object:
    the call that spends the budget reports 100 %, and every read after it gets 80006 / 80002 with
    `estimated_time_to_regain_access` until the window passes (on the sandbox clock).
    """

    def __init__(self, calls_per_second: float | None) -> None:
        self.calls_per_second = calls_per_second
        self.calls: dict[str, deque[float]] = {}
        self.blocked_until: dict[str, float] = {}
        self.budget: int | None = None
        self.window = 3600.0
        self.spent: dict[str, list[float]] = {}  # obj -> [window start, calls spent]

    def set_budget(self, calls: int | None, window_seconds: float = 3600.0, used: dict[str, int] | None = None) -> None:
        """`calls` per `window_seconds` per business object (None: back to the per-minute model);
        `used` presets calls already spent in the current window (e.g. by another app of the Page)."""
        self.budget = calls
        self.window = window_seconds
        self.spent = {}
        for obj, n in (used or {}).items():
            self.spent[obj] = [-math.inf, float(n)]  # started "now" on first use, below

    def _spent(self, obj: str, now: float) -> list[float]:
        win = self.spent.get(obj)
        if win is None:
            win = self.spent[obj] = [now, 0.0]
        elif win[0] == -math.inf:
            win[0] = now
        elif now >= win[0] + self.window:
            win[0], win[1] = now, 0.0
        return win

    def record(self, obj: str, now: float) -> None:
        q = self.calls.setdefault(obj, deque())
        q.append(now)
        while q and q[0] < now - 60:
            q.popleft()
        if self.budget is not None:
            self._spent(obj, now)[1] += 1

    def over_limit(self, obj: str, now: float) -> bool:
        if self.budget is not None:
            return self._spent(obj, now)[1] >= self.budget
        if self.calls_per_second is None:
            return False
        if self.blocked_until.get(obj, 0) > now:
            return True
        recent = 0
        for t in reversed(self.calls.get(obj, ())):  # newest first: stop at the first call over a second old
            if t <= now - 1.0:
                break
            recent += 1
        if recent >= self.calls_per_second:
            self.blocked_until[obj] = now + 1.0
            return True
        return False

    def header(self, obj: str, bucket: str, now: float, throttled: bool = False) -> str:
        regain = 1 if throttled else 0  # minutes
        if self.budget is not None:
            win = self._spent(obj, now)
            pct = math.ceil(win[1] * 100 / max(1, self.budget))
            if throttled:
                regain = max(1, math.ceil((win[0] + self.window - now) / 60))
        else:
            q = self.calls.get(obj, deque())
            while q and q[0] < now - 60:
                q.popleft()
            # Without a limit nothing is throttled, so usage is reported against a notional 1,000
            # calls/s: a client that believes the header is never stopped by it.
            per_minute = (self.calls_per_second or UNLIMITED_CALLS_PER_SECOND) * 60
            pct = math.ceil(len(q) * 100 / per_minute)
        if throttled:
            pct = max(pct, 100)
        entry = {
            "type": bucket,
            "call_count": pct,
            "total_cputime": pct // 3,
            "total_time": pct // 2,
            "estimated_time_to_regain_access": regain,
        }
        return json.dumps({obj: [entry]}, separators=(",", ":"))
