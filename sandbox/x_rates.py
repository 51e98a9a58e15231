"""X's per-endpoint rate limits: 15-minute windows and the `x-rate-limit-*` headers."""

from __future__ import annotations



# ── rate limits ─────────────────────────────────────────────────────────────────────────────
class RateLimits:
    """A fixed window per (user, endpoint), as the x-rate-limit-* headers describe."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self.windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, used]

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
