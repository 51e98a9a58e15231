"""An account near its rate limit still syncs: each pass spends the budget it has, stops before the
platform refuses, keeps what it read, and the next pass goes on from there (sandbox, real HTTP).

The sandbox models the budgets: Meta's usage header grows by 100/N % per call and reaches 100 % on
the N-th call of a window, after which reads get 80006 / 80002 until the window passes; X allows
`x_rate_limit` lookups per window and answers 429 after them.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from inbox.store.models import Account
from sandbox import Sandbox
from tests.store.test_sync import assert_complete, fast_factory, readable_ids, sandbox_settings, stored_ids

WINDOW = 3600.0
THREADS, PER_THREAD = 16, 5  # 80 new customer messages


def _inject_backlog(sb: Sandbox, name: str, threads: int = THREADS, per_thread: int = PER_THREAD) -> None:
    for t in range(threads):
        before = set(sb.threads(name))
        sb.inject(name, text=f"Kak, pesanan nomor {t} belum sampai (1/{per_thread})", customer=f"Pelanggan {t}")
        (thread,) = set(sb.threads(name)) - before
        for i in range(2, per_thread + 1):
            sb.inject(name, text=f"Kak, pesanan nomor {t} belum sampai ({i}/{per_thread})", thread=thread)


def _window_passes(sb: Sandbox, engine, seconds: float = WINDOW) -> None:
    """The platform's window resets (sandbox clock), and so does the pause the account took for it."""
    sb.advance(seconds + 1)
    with engine.begin() as conn:
        conn.execute(sa.update(Account.__table__).values(paused_until=None))


def _refused(sb: Sandbox, status: int) -> list[str]:
    return [c.path for c in sb.calls if c.status == status]


def test_a_meta_page_with_a_small_budget_stores_every_message_over_a_few_passes(engine, db_url, monkeypatch):
    """16 threads x 5 messages behind a budget of 4 calls per window: every pass stores some, none is
    throttled, and all 80 are stored (the old sync was throttled on its 5th call each window and kept nothing)."""
    from inbox.sync.account import sync_account

    with Sandbox(seed=7).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        settings = sandbox_settings(sb, db_url)
        acc = settings.account("tokoshop-fb")
        factory = fast_factory(settings)
        assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
        _inject_backlog(sb, "tokoshop-fb")
        baseline = len(stored_ids(engine, "tokoshop-fb"))
        sb.cut_nested(1)  # each thread's nested read is cut short: it costs calls of its own
        sb.meta_budget(4, window_seconds=WINDOW)
        sb.clear_calls()

        per_pass: list[int] = []
        for _ in range(20):
            res = sync_account(engine, settings, acc, connector_factory=factory)
            per_pass.append(res.counts.new_messages)
            if res.status == "ok":
                break
            assert res.status == "retry-later" and "stopped before the platform throttles" in (res.error or "")
            assert res.retry_at is not None and res.rate is not None and res.rate.usage_pct >= 75
            _window_passes(sb, engine)
        assert res.status == "ok", per_pass
        assert sum(per_pass) == THREADS * PER_THREAD == len(stored_ids(engine, "tokoshop-fb")) - baseline
        assert all(n > 0 for n in per_pass[:-1]), per_pass  # progress on every pass
        assert _refused(sb, 400) == []  # never throttled: it stopped before
        assert_complete(engine, sb, ("tokoshop-fb",))
        print(f"\nMeta, 4 calls per window: messages stored per pass {per_pass}")


def test_a_page_already_at_97_percent_stores_what_its_last_calls_read(engine, db_url, monkeypatch):
    """The header says 96 % before the first call and each call adds 2 %: the pass reads what fits
    (one list call, one thread), keeps it, and never meets 80006."""
    from inbox.sync.account import sync_account

    with Sandbox(seed=7).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        settings = sandbox_settings(sb, db_url)
        acc = settings.account("tokoshop-fb")
        factory = fast_factory(settings)
        assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
        _inject_backlog(sb, "tokoshop-fb", threads=4)
        sb.cut_nested(1)  # each thread's nested read is cut short: it costs a call of its own
        sb.meta_budget(50, window_seconds=WINDOW, used={"tokoshop-fb": 48})
        sb.clear_calls()
        res = sync_account(engine, settings, acc, connector_factory=factory)
        assert res.status == "retry-later" and res.counts.new_messages == PER_THREAD
        assert _refused(sb, 400) == []
        # Even when the platform throttles first (another app spent the rest), the threads read are kept.
        sb.meta_budget(3, window_seconds=WINDOW)
        sb.clear_calls()
        _window_passes(sb, engine)
        res = sync_account(engine, settings, acc, connector_factory=lambda a: _blind(factory(a)))
        assert res.status == "retry-later" and "80006" in (res.error or "")
        assert res.counts.new_messages == 2 * PER_THREAD  # list + 2 threads, then throttled on the 4th call
        assert res.retry_at is not None
        _window_passes(sb, engine)
        sb.meta_budget(None)
        assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
        assert_complete(engine, sb, ("tokoshop-fb",))


def _blind(connector):
    """A connector that does not read the usage header (as if another consumer spent the budget unseen)."""
    connector.client.budget.observe = lambda rate: None
    return connector


def test_x_stops_before_its_budget_is_spent_and_resumes_where_it_stopped(engine, db_url, monkeypatch):
    """3 lookups per window, 25 events a page, 150 new events: each pass reads 3 pages deeper (the old
    sync re-read the same newest 3 pages every window, hit 429 and never reached the end)."""
    from inbox.sync.account import sync_account

    with Sandbox(seed=7, x_rate_limit=3, x_window_seconds=900).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        settings = sandbox_settings(sb, db_url)
        acc = settings.account("tokoshop-x")
        factory = fast_factory(settings)
        for i in range(150):
            sb.inject("tokoshop-x", text=f"Min, refund saya nomor {i} belum masuk", customer=f"Pembeli {i % 30}")
        sb.clear_calls()
        per_pass: list[int] = []
        for _ in range(20):
            res = sync_account(engine, settings, acc, connector_factory=factory)
            per_pass.append(res.counts.new_messages)
            if res.status == "ok":
                break
            assert res.status == "retry-later" and "no call left" in (res.error or ""), res.error
            assert res.rate is not None and res.rate.remaining == 0 and res.retry_at == res.rate.reset_at
            _window_passes(sb, engine, 900)
        assert res.status == "ok", per_pass
        assert _refused(sb, 429) == []
        assert all(n > 0 for n in per_pass), per_pass
        assert sum(per_pass) == len(readable_ids(sb, "tokoshop-x"))
        assert_complete(engine, sb, ("tokoshop-x",))
        # Steady state: one lookup finds nothing new.
        _window_passes(sb, engine, 900)
        sb.clear_calls()
        again = sync_account(engine, settings, acc, connector_factory=factory)
        assert again.status == "ok" and again.counts.new_messages == 0 and len(sb.calls) == 1
        print(f"\nX, 3 lookups per window: messages stored per pass {per_pass}")


def test_x_resume_token_that_the_platform_refuses_falls_back_to_a_full_pass(engine, db_url, monkeypatch):
    from inbox.sync.account import read_cursor, sync_account

    with Sandbox(seed=7, x_rate_limit=2, x_window_seconds=900).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        settings = sandbox_settings(sb, db_url)
        acc = settings.account("tokoshop-x")
        factory = fast_factory(settings)
        for i in range(60):
            sb.inject("tokoshop-x", text=f"Min, refund saya nomor {i} belum masuk", customer=f"Pembeli {i % 7}")
        assert sync_account(engine, settings, acc, connector_factory=factory).status == "retry-later"
        ref = engine.connect().execute(sa.select(Account.__table__.c.id).where(Account.__table__.c.name == "tokoshop-x")).scalar_one()
        cursor = read_cursor(engine, ref)
        assert cursor["resume"]["token"]
        from inbox.ingest.page import ingest_page
        from connectors.base import Page

        broken = {**cursor, "resume": {**cursor["resume"], "token": "not-a-token"}}
        ingest_page(engine, ref, Page((), broken), settings)
        sb.rates.limit = 100
        _window_passes(sb, engine, 900)
        assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
        assert_complete(engine, sb, ("tokoshop-x",))


def test_cli_sync_and_accounts_show_the_stop_and_the_headroom(tmp_path, monkeypatch, capsys):
    import cli
    import inbox.sync.account

    with Sandbox(seed=7).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        config = tmp_path / "inbox.toml"
        config.write_text(sb.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}"))
        real = inbox.sync.account.make_connector
        monkeypatch.setattr(inbox.sync.account, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))
        sb.cut_nested(1)  # a first pass of more calls than the budget: every thread read on by itself
        sb.meta_budget(4, window_seconds=WINDOW)
        assert cli.main(["-c", str(config), "--json", "sync"]) == 7
        out = json.loads(capsys.readouterr().out)
        fb, ig, x = out["accounts"]
        assert x["status"] == "ok"
        assert fb["status"] == "retry-later" and fb["new_messages"] > 0 and fb["rate"]["usage_pct"] >= 75
        assert cli.main(["-c", str(config), "accounts", "--json"]) == 0  # paused for the window, not failing
        health = {a["name"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
        assert health["tokoshop-fb"]["paused_until"] and health["tokoshop-fb"]["headroom"] <= 0.25
        assert cli.main(["-c", str(config), "accounts"]) == 0
        text = capsys.readouterr().out
        assert "25% left" in text and "paused to" in text


def test_inbox_run_reschedules_an_account_that_stopped_for_its_budget(tmp_path, monkeypatch):
    """The scheduler's job moves to the reset the pass reported; it does not sleep in its worker."""
    from datetime import timedelta

    from inbox.store import open_store
    from inbox.sync.scheduler import SyncScheduler

    with Sandbox(seed=7).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        url = f"sqlite:///{tmp_path / 'inbox.db'}"
        engine = open_store(url)
        settings = sandbox_settings(sb, url, interval_seconds=30, jitter_seconds=0)
        sb.cut_nested(1)  # a first pass of more calls than the budget: every thread read on by itself
        sb.meta_budget(4, window_seconds=WINDOW)
        sched = SyncScheduler(settings, engine, connector_factory=fast_factory(settings), first_run_delay=3600)
        sched.start()
        try:
            sched._run_account("tokoshop-fb")  # what the job runs, here in the test's thread
            (res,) = sched.results["tokoshop-fb"]
            assert res.status == "retry-later" and res.counts.new_messages > 0 and res.retry_at is not None
            job = sched.scheduler.get_job("sync:tokoshop-fb")
            assert abs(job.next_run_time - res.retry_at) < timedelta(seconds=2)
            assert job.next_run_time - res.started_at > timedelta(minutes=5)  # not the 30 s interval
        finally:
            sched.shutdown()
            engine.dispose()


def test_calls_are_spaced_out_as_meta_usage_nears_the_limit_and_stop_before_it():
    from connectors.base import RateInfo
    from connectors.budget import MAX_PAUSE, CallBudget
    from connectors.errors import BudgetSpentError

    slept: list[float] = []
    budget = CallBudget("fb-main", interval=0.5, sleep=slept.append)
    budget.before_call()  # nothing reported yet: no wait, no stop
    for pct in (72, 76, 80, 84, 88, 92):  # + 4 % a call
        budget.observe(RateInfo(usage_pct=pct))
        budget.before_call()
    assert len(slept) == 3 and slept == sorted(slept) and 0 < slept[0] and slept[-1] <= MAX_PAUSE  # 84, 88, 92 %
    budget.observe(None)  # an answer without the header changes nothing
    budget.observe(RateInfo(usage_pct=96))  # + 4 % a call: the next one would reach 100 %
    with pytest.raises(BudgetSpentError) as stop:
        budget.before_call()
    assert stop.value.retry_at is not None and stop.value.rate.usage_pct == 96


def test_x_budget_stops_only_before_the_reset():
    from datetime import datetime, timedelta, timezone

    from connectors.base import RateInfo
    from connectors.budget import CallBudget
    from connectors.errors import BudgetSpentError

    now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    budget = CallBudget("x-main", interval=0.0, sleep=lambda s: None, now=lambda: now)
    budget.observe(RateInfo(limit=15, remaining=1, reset_at=now + timedelta(minutes=9)))
    budget.before_call()  # the last call of the window is still made
    budget.observe(RateInfo(limit=15, remaining=0, reset_at=now + timedelta(minutes=9)))
    with pytest.raises(BudgetSpentError) as stop:
        budget.before_call()
    assert stop.value.retry_at == now + timedelta(minutes=9)
    budget.observe(RateInfo(limit=15, remaining=0, reset_at=now - timedelta(seconds=1)))
    budget.before_call()  # the window has reset since that answer
