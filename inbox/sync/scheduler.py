"""`inbox run`: the scheduled sync. APScheduler 3.x, one interval job per account.

Each job calls the same `sync_account` as `inbox sync` (`max_instances=1`, `coalesce=True`, jitter),
then picks its own next run from what the platform said:

- X: the next run never spends more than the remaining budget. With R calls left until the
  window resets in D seconds and c calls per sync, the interval is at least D / (R // c): a
  15-calls-per-15-minutes account paces itself inside its budget instead of hitting 429;
- Meta: usage above 80 % stretches the interval, above 95 % pauses until the reset;
- a `RetryLaterError` with a `retry_at` moves the next run there -- including a pass that stopped
  itself before the budget ran out (`connectors.budget`): the job is rescheduled for the reset, never
  left sleeping in a worker thread.

SIGTERM / SIGINT set the stop event: running syncs finish their current page and commit, the
scheduler shuts down, and `run` returns 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connectors.base import RateInfo
from connectors.budget import META_PAUSE, SLOW_ABOVE
from inbox.settings import interval_for
from inbox.store.types import utcnow

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import Settings
    from inbox.sync.account import AccountSyncResult

log = logging.getLogger(__name__)

META_STRETCH_ABOVE = SLOW_ABOVE  # where a pass starts spacing its calls out, the interval stretches too
META_PAUSE_ABOVE = 95.0
META_PAUSE_DEFAULT = META_PAUSE  # when over 95 % and the platform gave no reset time
RESET_MARGIN = timedelta(seconds=2)  # clocks differ a little; start just after the window resets


@dataclass(frozen=True, slots=True)
class NextRun:
    delay: float  # seconds from now
    reason: str


def next_run(
    base_seconds: float,
    *,
    rate: RateInfo | None,
    calls_per_sync: int = 1,
    retry_at: datetime | None = None,
    now: datetime | None = None,
) -> NextRun:
    """When to poll an account next, given its interval and the platform's last rate report."""
    now = now or utcnow()
    base = float(base_seconds)
    if retry_at is not None and retry_at > now:
        return NextRun((retry_at - now).total_seconds(), "retry-later from the platform")
    if rate is None:
        return NextRun(base, "interval")
    until_reset = (rate.reset_at - now + RESET_MARGIN).total_seconds() if rate.reset_at else None
    if rate.remaining is not None and rate.limit:
        # A counted budget (X): spread what is left over the rest of the window.
        if until_reset is None or until_reset <= 0:
            return NextRun(base, "interval")
        runs_left = rate.remaining // max(1, calls_per_sync)
        if runs_left <= 0:
            return NextRun(max(base, until_reset), f"budget spent: waiting for the reset ({rate.remaining}/{rate.limit} left)")
        paced = until_reset / runs_left
        if paced > base:
            return NextRun(paced, f"paced to the budget ({rate.remaining}/{rate.limit} calls left, {calls_per_sync} per sync)")
        return NextRun(base, "interval")
    if rate.usage_pct is not None:
        # A usage percentage (Meta Business Use Case headers).
        if rate.usage_pct > META_PAUSE_ABOVE:
            wait = until_reset if until_reset and until_reset > 0 else META_PAUSE_DEFAULT.total_seconds()
            return NextRun(max(base, wait), f"usage {rate.usage_pct:.0f}% > {META_PAUSE_ABOVE:.0f}%: paused until the reset")
        if rate.usage_pct > META_STRETCH_ABOVE:
            factor = 1 + (rate.usage_pct - META_STRETCH_ABOVE) / 5  # 85 % -> 2x, 95 % -> 4x
            return NextRun(base * factor, f"usage {rate.usage_pct:.0f}% > {META_STRETCH_ABOVE:.0f}%: interval x{factor:.1f}")
    return NextRun(base, "interval")


class SyncScheduler:
    """One APScheduler job per enabled account, each rescheduling itself after its sync."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        stop_event: threading.Event | None = None,
        connectors: dict[str, Connector] | None = None,
        connector_factory: Any = None,
        first_run_delay: float = 0.0,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.settings = settings
        self.engine = engine
        self.stop_event = stop_event or threading.Event()
        self.connectors = connectors or {}
        self.connector_factory = connector_factory
        self.first_run_delay = first_run_delay
        self.results: dict[str, list[AccountSyncResult]] = {}
        self._lock = threading.Lock()
        self.scheduler: BackgroundScheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=settings.sync.concurrency)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone="UTC",
        )
        self.accounts = [a for a in settings.accounts if a.enabled]

    def add_jobs(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        from inbox.accounts import ensure_accounts

        self.refs = ensure_accounts(self.engine, self.accounts)
        start = utcnow() + timedelta(seconds=self.first_run_delay)
        for i, acc in enumerate(self.accounts):
            self.scheduler.add_job(
                self._run_account,
                trigger=IntervalTrigger(seconds=interval_for(self.settings, acc), jitter=self.settings.sync.jitter_seconds or None, timezone="UTC"),
                args=[acc.name],
                id=f"sync:{acc.name}",
                name=f"sync {acc.name}",
                max_instances=1,
                coalesce=True,
                next_run_time=start + timedelta(seconds=0.2 * i),  # stagger the first pass a little
                replace_existing=True,
            )

    def _run_account(self, name: str) -> None:
        from inbox.sync.account import sync_account

        if self.stop_event.is_set():
            return
        acc = next(a for a in self.accounts if a.name == name)
        result = sync_account(
            self.engine,
            self.settings,
            acc,
            connector=self.connectors.get(name),
            connector_factory=self.connector_factory,
            stop_event=self.stop_event,
            ref=self.refs.get(name),
        )
        with self._lock:
            self.results.setdefault(name, []).append(result)
            del self.results[name][:-20]  # a bounded history for tests and status
        if self.stop_event.is_set():
            return
        plan = next_run(
            interval_for(self.settings, acc),
            rate=result.rate,
            calls_per_sync=max(1, result.pages),
            retry_at=result.retry_at,
        )
        if plan.reason != "interval":
            when = utcnow() + timedelta(seconds=plan.delay)
            log.info("sync %s: next run at %s UTC (%s)", name, when.strftime("%H:%M:%S"), plan.reason)
            try:
                self.scheduler.modify_job(f"sync:{name}", next_run_time=when)
            except Exception:  # noqa: BLE001 - shutting down
                log.debug("could not reschedule %s", name, exc_info=True)

    def start(self) -> None:
        self.add_jobs()
        self.scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def jobs(self) -> list[Any]:
        return self.scheduler.get_jobs()


def run(
    settings: Settings,
    engine: Engine,
    *,
    stop_event: threading.Event | None = None,
    install_signals: bool = True,
    connectors: dict[str, Connector] | None = None,
    connector_factory: Any = None,
) -> int:
    """Run the scheduler until SIGTERM / SIGINT (or `stop_event`); returns the exit code (0)."""
    stop = stop_event or threading.Event()
    sched = SyncScheduler(settings, engine, stop_event=stop, connectors=connectors, connector_factory=connector_factory)
    previous: dict[int, Any] = {}
    if install_signals and threading.current_thread() is threading.main_thread():

        def _stop(signum: int, _frame: Any) -> None:
            log.info("received %s: finishing the current pages, then stopping", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        sched.start()
        names = ", ".join(f"{a.name} every {interval_for(settings, a)}s" for a in sched.accounts) or "no enabled accounts"
        log.info("scheduler started: %s (jitter %ss, concurrency %s)", names, settings.sync.jitter_seconds, settings.sync.concurrency)
        while not stop.wait(0.5):
            pass
    finally:
        sched.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("scheduler stopped")
    return 0
