"""Spending a platform's call budget without being throttled.

Every response reports how much of the budget is used (`connectors.responses.rate_info`): Meta as
percentages (`X-Business-Use-Case-Usage`, `X-App-Usage`, `X-Page-Usage`; the highest counts), X as
calls left in the window (`x-rate-limit-remaining` / `-reset`). Before each call `CallBudget.before_call`:

- stops the pass with `BudgetSpentError` (a `RateLimitedError`, so the account is rescheduled for
  the reset) when the next call would reach the limit: Meta usage plus the step one call has been
  seen to add reaches 100 %, or X has no call left before its reset;
- slows down as Meta usage climbs past `SLOW_ABOVE` %: the spacing between calls grows to
  `SLOW_FACTOR` times the account's pacing at 100 % (never more than `MAX_PAUSE` seconds a call).

The connectors hand back what the pass fetched before it stopped, with a cursor to resume from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from connectors.base import RateInfo
from connectors.errors import BudgetSpentError

log = logging.getLogger(__name__)

SLOW_ABOVE = 80.0  # Meta usage (%) above which calls are spaced out
SLOW_FACTOR = 6.0  # spacing at 100 %, as a multiple of the account's pacing interval
MAX_PAUSE = 5.0  # seconds: a longer wait is a reschedule, not a sleep
FIRST_STEP = 1.0  # percentage points one call is assumed to add until two answers show more
META_PAUSE = timedelta(minutes=10)  # Meta reports no reset before it throttles; its windows roll over an hour


def _now() -> datetime:
    return datetime.now(timezone.utc)


class CallBudget:
    """The budget of one account's connector, as its latest answers report it."""

    def __init__(self, account: str, *, interval: float, sleep: Callable[[float], None], now: Callable[[], datetime] = _now) -> None:
        self.account = account
        self.interval = interval
        self.sleep = sleep
        self.now = now
        self.rate: RateInfo | None = None
        self.step = FIRST_STEP

    def observe(self, rate: RateInfo | None) -> None:
        """Take in what an answer reported (None: it reported nothing, the last report stands)."""
        if rate is None:
            return
        before = self.rate.usage_pct if self.rate is not None else None
        if before is not None and rate.usage_pct is not None and rate.usage_pct > before:
            self.step = max(self.step, rate.usage_pct - before)
        self.rate = rate

    def before_call(self) -> None:
        """Raise `BudgetSpentError` when the next call would hit the limit; else pace it."""
        rate = self.rate
        if rate is None:
            return
        now = self.now()
        if rate.limit and rate.remaining is not None and rate.remaining <= 0:
            if rate.reset_at is not None and rate.reset_at > now:
                raise BudgetSpentError(
                    f"no call left of {rate.limit} until {rate.reset_at:%H:%M:%S} UTC: stopped before the platform refuses; "
                    "what was read is stored and the next pass resumes",
                    retry_at=rate.reset_at, rate=rate, account=self.account,
                )
            return  # the window has reset since that answer
        usage = rate.usage_pct
        if usage is None:
            return
        if usage + self.step >= 100.0:
            retry_at = rate.reset_at if rate.reset_at is not None and rate.reset_at > now else now + META_PAUSE
            raise BudgetSpentError(
                f"{usage:.0f}% of the usage budget spent (about {self.step:.0f}% a call): stopped before the platform "
                f"throttles; what was read is stored and the next pass resumes at {retry_at:%H:%M:%S} UTC",
                retry_at=retry_at, rate=rate, account=self.account,
            )
        if usage > SLOW_ABOVE and self.interval > 0:
            extra = self.interval * (SLOW_FACTOR - 1) * (usage - SLOW_ABOVE) / (100.0 - SLOW_ABOVE)
            self.sleep(min(MAX_PAUSE, extra))
