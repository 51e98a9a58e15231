"""The scheduler: one job per account with the right options, budget-aware next runs, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.base import RateInfo
from inbox.sync.scheduler import META_PAUSE_DEFAULT, SyncScheduler, next_run
from tests.store.test_sync import fast_factory, sandbox_settings
from tests.waiting import wait_until

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def simulate_x(base: float, limit: int, window: float, calls_per_sync: int, horizon: float) -> list[float]:
    """Times of every call an account makes when each next run comes from `next_run` and the
    platform's fixed-window counter (what x-rate-limit-* headers report)."""
    t = 0.0
    window_start = 0.0
    used = 0
    calls: list[float] = []
    while t < horizon:
        if t >= window_start + window:
            window_start += window * ((t - window_start) // window)
            used = 0
        for _ in range(calls_per_sync):
            assert used < limit, f"a 429 at t={t:.0f}s: the schedule overspent the budget"
            used += 1
            calls.append(t)
        rate = RateInfo(limit=limit, remaining=limit - used, reset_at=NOW + timedelta(seconds=window_start + window - t))
        t += next_run(base, rate=rate, calls_per_sync=calls_per_sync, now=NOW).delay
    return calls


@pytest.mark.parametrize(("base", "calls_per_sync"), [(10, 1), (30, 1), (10, 2), (60, 3)])
def test_x_account_stays_inside_15_per_15_minutes_on_its_own(base, calls_per_sync):
    calls = simulate_x(base, limit=15, window=900, calls_per_sync=calls_per_sync, horizon=4 * 3600)
    assert len(calls) > 4 * 15 * 0.5  # it does poll, reasonably often
    for t in calls:
        assert sum(1 for c in calls if t <= c < t + 900) <= 15 + calls_per_sync  # sliding: at most a window's budget (+ one sync across the boundary)


def test_next_run_rules():
    base = 120.0
    assert next_run(base, rate=None, now=NOW).delay == base
    # plenty of budget: the configured interval
    roomy = RateInfo(limit=900, remaining=880, reset_at=NOW + timedelta(minutes=10))
    assert next_run(base, rate=roomy, now=NOW).delay == base
    # X budget: spread the rest over the window
    tight = RateInfo(limit=15, remaining=3, reset_at=NOW + timedelta(seconds=600))
    plan = next_run(base, rate=tight, now=NOW)
    assert plan.delay == pytest.approx((600 + 2) / 3) and "budget" in plan.reason
    spent = RateInfo(limit=15, remaining=0, reset_at=NOW + timedelta(seconds=700))
    assert next_run(base, rate=spent, now=NOW).delay == pytest.approx(702)
    # Meta usage: stretch above 80 %, pause above 95 %
    assert next_run(base, rate=RateInfo(usage_pct=50), now=NOW).delay == base
    assert next_run(base, rate=RateInfo(usage_pct=85), now=NOW).delay == pytest.approx(2 * base)
    assert next_run(base, rate=RateInfo(usage_pct=97, reset_at=NOW + timedelta(minutes=30)), now=NOW).delay == pytest.approx(1802)
    assert next_run(base, rate=RateInfo(usage_pct=99), now=NOW).delay == META_PAUSE_DEFAULT.total_seconds()
    # the platform's retry-after wins
    assert next_run(base, rate=roomy, retry_at=NOW + timedelta(seconds=37), now=NOW).delay == pytest.approx(37)


def test_one_job_per_account_with_the_right_options(sandbox, sqlite_engine, tmp_path):
    from apscheduler.triggers.interval import IntervalTrigger

    settings = sandbox_settings(sandbox, f"sqlite:///{tmp_path / 'inbox.db'}", interval_seconds=90, jitter_seconds=7)
    sched = SyncScheduler(settings, sqlite_engine)
    sched.add_jobs()
    jobs = {j.id: j for j in sched.scheduler.get_jobs()}
    assert set(jobs) == {"sync:tokoshop-fb", "sync:tokoshop-ig", "sync:tokoshop-x"}
    for job in jobs.values():
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(seconds=90)
        assert job.trigger.jitter == 7
        assert job.max_instances == 1 and job.coalesce is True


def test_short_real_run_paces_the_x_account(sandbox, tmp_path):
    """Against the sandbox (X budget 15 per 900 s): after its first pass the X job's next run is
    pushed out to what the remaining budget allows, not the 10 s interval."""
    from inbox.store import open_store

    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    engine = open_store(url)
    settings = sandbox_settings(sandbox, url, interval_seconds=10, jitter_seconds=0)
    sched = SyncScheduler(settings, engine, connector_factory=fast_factory(settings))
    sched.start()
    try:
        wait_until(lambda: len(sched.results) >= 3, poll=0.05)
        time.sleep(0.2)  # the job reschedules itself right after its sync
        assert {n: r[0].status for n, r in sched.results.items()} == {"tokoshop-fb": "ok", "tokoshop-ig": "ok", "tokoshop-x": "ok"}
        x = sched.results["tokoshop-x"][0]
        assert x.rate is not None and x.rate.limit == 15
        job = sched.scheduler.get_job("sync:tokoshop-x")
        delay = (job.next_run_time - datetime.now(timezone.utc)).total_seconds()
        expected = (x.rate.reset_at - datetime.now(timezone.utc)).total_seconds() / (x.rate.remaining // max(1, x.pages))
        assert delay > 30 and delay == pytest.approx(expected, abs=5)
    finally:
        sched.shutdown()
        engine.dispose()


def test_inbox_run_stops_cleanly_on_sigterm(sandbox, tmp_path):
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(sandbox.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}"))
    env = {**os.environ, **sandbox.env()}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "-c", str(cfg), "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while True:  # until the line, or the end of its output
            line = proc.stderr.readline()
            lines.append(line)
            if not line or "sync tokoshop-x: ok" in line:
                break
        assert any("sync tokoshop-x: ok" in ln for ln in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "scheduler stopped" in err
    # One line per sync per account (inbox.sync.account's), not APScheduler's three per job run.
    log = "".join(lines) + err
    assert "apscheduler" not in log and "Running job" not in log and "executed successfully" not in log, log
