"""Sync against the sandbox over real HTTP, on both backends: complete, idempotent, echoes, dry run, CLI."""

from __future__ import annotations

import json
import os
import threading
import tomllib
from dataclasses import replace

import pytest
import sqlalchemy as sa

from inbox.settings import Settings, parse_settings
from inbox.store.models import Account, Message, Reply, SyncState, Ticket

ACCOUNTS = ("tokoshop-fb", "tokoshop-ig", "tokoshop-x")


def sandbox_settings(sb, db_url: str, **sync: object) -> Settings:
    data = tomllib.loads(sb.config_toml(database=db_url))
    if sync:
        data["sync"] = dict(sync)
    return parse_settings(data, "sandbox.toml")


def sandbox_store(sb, tmp_path, monkeypatch, name: str = "inbox.db"):
    """The sandbox's environment set for this process, a new SQLite store, and settings naming both."""
    from inbox.store import open_store

    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    url = f"sqlite:///{tmp_path / name}"
    return url, open_store(url), sandbox_settings(sb, url)


def fast_factory(settings: Settings, *, retries: int | None = None, timeout: float | None = None):
    """Connectors without client-side pacing (the loopback sandbox has no 2 calls/s limit)."""
    from connectors import connect
    from connectors.http import RetryPolicy

    def make(acc):
        spec = replace(acc.to_spec(), min_interval=0.0, overlap_seconds=float(settings.sync.overlap_seconds))
        if timeout is not None:
            spec = replace(spec, timeout=timeout)
        options = {} if retries is None else {"policy": RetryPolicy(max_retries=retries, backoff_base=0.01, backoff_cap=0.05)}
        return connect(spec, **options)

    return make


def readable_ids(sb, name: str) -> set[str]:
    """What the platform still lets anyone read: Meta's 20 newest per thread; X message events of 30 days."""
    is_x = sb.accounts[name].channel == "x"
    x_since_ms = (sb.now() - 30 * 86400) * 1000
    out: set[str] = set()
    for thread in sb.threads(name):
        for m in sb.thread_messages(name, thread):
            if is_x:
                if m.get("event_type", "MessageCreate") == "MessageCreate" and m["created_ms"] >= x_since_ms:
                    out.add(m["id"])
            elif m["readable"]:
                out.add(m["id"])
    return out


def stored_ids(engine, name: str) -> list[str]:
    a, m = Account.__table__, Message.__table__
    with engine.connect() as conn:
        return list(conn.execute(sa.select(m.c.external_id).join(a, a.c.id == m.c.account_id).where(a.c.name == name)).scalars())


def assert_complete(engine, sb, names=ACCOUNTS, *, exact: bool = True) -> None:
    """Every readable message stored exactly once. With `exact=False`, messages that were readable
    when stored and have since scrolled past Meta's horizon may be there too (never unknown ones)."""
    for name in names:
        stored = stored_ids(engine, name)
        assert len(stored) == len(set(stored)), f"{name}: a message stored twice"
        if exact:
            assert set(stored) == readable_ids(sb, name), name
        else:
            assert readable_ids(sb, name) <= set(stored) <= sb.all_message_ids(name), name


def test_first_sync_is_complete_and_the_second_finds_nothing_new(engine, db_url, sandbox):
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    results = sync_all(engine, settings, connector_factory=factory)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert all(r.complete and r.counts.new_messages > 0 for r in results)
    assert_complete(engine, sandbox)
    fb = results[0]
    assert fb.counts.gaps == 1  # the seeded thread past the 20-message horizon
    assert sum(r.counts.echoes for r in results) > 0  # the brand's earlier replies
    with engine.connect() as conn:
        cursors = conn.execute(sa.select(SyncState.__table__.c.cursor)).scalars().all()
        accounts = conn.execute(sa.select(Account.__table__)).all()
    assert len(cursors) == 3 and all(cursors)
    assert all(a.last_success_at is not None and a.last_error is None and not a.needs_reauth for a in accounts)

    again = sync_all(engine, settings, connector_factory=factory)
    assert [r.status for r in again] == ["ok", "ok", "ok"]
    assert sum(r.counts.new_messages for r in again) == 0
    assert sum(r.counts.new_tickets for r in again) == 0
    assert_complete(engine, sandbox)


def test_customer_on_two_channels_ends_in_one_ticket(engine, db_url, sandbox):
    """The seeded customer who DMs on Instagram and X about the same invoice, and the long complaint
    pasted on Messenger and Instagram: attached across channels, whichever account syncs first."""
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    sync_all(engine, settings, connector_factory=fast_factory(settings))
    m = Message.__table__
    with engine.connect() as conn:
        def tickets_quoting(needle: str) -> set[int]:
            return set(conn.execute(sa.select(m.c.ticket_id).where(m.c.direction == "in", m.c.text.contains(needle))).scalars())

        assert len(tickets_quoting("INV/20261119/MPL/5520931847")) == 1  # melati.sari (IG) / Melati Sari (X)
        assert len(tickets_quoting("INV/20261117/MPL/4409182735")) == 1  # Yohanes Kurniawan (FB) / yohanes.kurniawan (IG)
        rules = set(conn.execute(sa.select(m.c.dedup_rule)).scalars())
    assert "4:order" in rules


def test_new_message_and_the_echo_of_our_reply(engine, db_url, sandbox):
    from connectors.base import OutboundReply
    from connectors.enums import ReplyPolicy
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    sync_all(engine, settings, connector_factory=factory)
    thread = sandbox.threads("tokoshop-x")[0]
    sandbox.inject("tokoshop-x", text="Halo min, ada kabar?", thread=thread)
    res = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)[0]
    assert (res.counts.new_messages, res.counts.new_tickets, res.counts.appended) == (1, 0, 1)

    m, t = Message.__table__, Ticket.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(m.c.ticket_id, m.c.conversation_id, m.c.account_id, m.c.contact_id).where(m.c.text == "Halo min, ada kabar?")).one()
        customer = conn.execute(sa.text("SELECT platform_user_id FROM contact WHERE id = :c"), {"c": row.contact_id}).scalar_one()
        tickets_before = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
    # An agent's reply: recorded, sent, and (say) the process died before marking it sent.
    conn_x = factory(settings.account("tokoshop-x"))
    sent = conn_x.send(OutboundReply(thread, customer, "Sudah kami cek ya Kak", ReplyPolicy.DIRECT, "idem-1"))
    conn_x.close()
    with engine.begin() as conn:
        conn.execute(sa.insert(Reply.__table__).values(
            idempotency_key="idem-1", ticket_id=row.ticket_id, conversation_id=row.conversation_id, channel="x",
            account_id=row.account_id, recipient_id=customer, text="Sudah kami cek ya Kak", policy="DIRECT",
            state="sending", attempts=1, external_id=sent.external_id, author="agent1",
            created_at=sent.sent_at, updated_at=sent.sent_at))
    res = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)[0]
    assert (res.counts.new_messages, res.counts.echoes, res.counts.echoes_matched, res.counts.new_tickets) == (1, 1, 1, 0)
    with engine.connect() as conn:
        reply = conn.execute(sa.select(Reply.__table__)).one()
        echo = conn.execute(sa.select(m).where(m.c.external_id == sent.external_id)).one()
        tickets_after = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
    assert reply.state == "sent"
    assert (echo.direction, echo.reply_id, echo.ticket_id) == ("out", reply.id, row.ticket_id)
    assert tickets_after == tickets_before
    assert_complete(engine, sandbox, ["tokoshop-x"])


def test_dry_run_fetches_and_decides_but_writes_nothing(engine, db_url, sandbox):
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    results = sync_all(engine, settings, dry_run=True, connector_factory=fast_factory(settings))
    assert {r.status for r in results} == {"dry-run"}
    assert sum(r.counts.new_messages for r in results) == sum(len(readable_ids(sandbox, n)) for n in ACCOUNTS)
    assert sum(r.counts.new_tickets for r in results) > 0
    assert all(r.decisions for r in results)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM message")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM ticket")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM sync_state WHERE cursor IS NOT NULL")).scalar_one() == 0


def test_stop_event_finishes_the_page_and_the_next_pass_completes(tmp_path, monkeypatch):
    from sandbox import Sandbox

    from inbox.sync.pool import sync_all

    with Sandbox(seed=3, large=1500, x_rate_limit=1000).start() as sb:
        _url, engine, settings = sandbox_store(sb, tmp_path, monkeypatch)
        stop = threading.Event()

        def progress(ev):
            if not ev.done and ev.pages >= 1:
                stop.set()  # as SIGTERM would, right after the first stored page

        first = sync_all(engine, settings, accounts=["tokoshop-fb"], stop_event=stop, progress=progress, connector_factory=fast_factory(settings))[0]
        assert (first.status, first.pages, first.complete) == ("stopped", 1, False)
        stored_after_stop = len(stored_ids(engine, "tokoshop-fb"))
        assert stored_after_stop > 0
        second = sync_all(engine, settings, accounts=["tokoshop-fb"], connector_factory=fast_factory(settings))[0]
        assert second.status == "ok" and second.complete
        assert_complete(engine, sb, ["tokoshop-fb"])
        engine.dispose()


def test_accounts_in_worker_processes_stop_on_the_event_and_the_next_pass_completes(tmp_path, monkeypatch):
    from sandbox import Sandbox

    from inbox.runtime import procs
    from inbox.sync.pool import sync_all

    if not procs.available():
        pytest.skip("worker processes need fork (Linux)")
    with Sandbox(seed=5, large=3000, x_rate_limit=1000).start() as sb:
        _url, engine, settings = sandbox_store(sb, tmp_path, monkeypatch)
        assert settings.sync.processes
        stop = threading.Event()
        seen: list[tuple[str, int]] = []

        def progress(ev):
            seen.append((ev.account, os.getpid()))
            if not ev.done and ev.pages >= 1:
                stop.set()

        first = sync_all(engine, settings, stop_event=stop, progress=progress, connector_factory=fast_factory(settings))
        assert {pid for _, pid in seen} == {os.getpid()} and {a for a, _ in seen} == set(ACCOUNTS)
        assert "stopped" in {r.status for r in first} and {r.status for r in first} <= {"stopped", "ok"}
        assert all(r.pages >= 1 for r in first)
        second = sync_all(engine, settings, connector_factory=fast_factory(settings))
        assert [r.status for r in second] == ["ok", "ok", "ok"]
        assert_complete(engine, sb)
        engine.dispose()


def test_cli_sync_json_and_accounts(tmp_path, sandbox, monkeypatch, capsys):
    import cli
    import inbox.sync.account

    settings_path = tmp_path / "inbox.toml"
    settings_path.write_text(sandbox.config_toml(database=f"sqlite:///{tmp_path / 'cli.db'}"))
    real = inbox.sync.account.make_connector
    monkeypatch.setattr(inbox.sync.account, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))

    assert cli.main(["-c", str(settings_path), "--json", "sync"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 0 and out["totals"]["new_messages"] == sum(len(readable_ids(sandbox, n)) for n in ACCOUNTS)
    assert [a["status"] for a in out["accounts"]] == ["ok", "ok", "ok"]

    assert cli.main(["-c", str(settings_path), "accounts", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)
    assert health["healthy"] and [a["open_gaps"] for a in health["accounts"]] == [1, 0, 0]

    # A customer's text with Rich markup and a terminal escape is shown inert in the dry-run listing.
    sandbox.inject("tokoshop-x", text="[bold red]PENIPUAN[/] \x1b]52;c;aGk=\x07 tolong")
    assert cli.main(["-c", str(settings_path), "sync", "--dry-run", "--account", "tokoshop-x"]) == 0
    text = capsys.readouterr().out
    assert "new ticket" in text and "\x1b" not in text

    sandbox.fault("expired_token", account="tokoshop-x", count=5)
    assert cli.main(["-c", str(settings_path), "sync"]) == 4
    capsys.readouterr()
    assert cli.main(["-c", str(settings_path), "accounts", "--json"]) == 1
    health = json.loads(capsys.readouterr().out)
    x = next(a for a in health["accounts"] if a["name"] == "tokoshop-x")
    assert x["needs_reauth"] and not x["healthy"]
    assert cli.main(["-c", str(settings_path), "accounts", "reset", "tokoshop-x"]) == 0
    sandbox.clear_faults()
    assert cli.main(["-c", str(settings_path), "sync", "--account", "tokoshop-x"]) == 0
    capsys.readouterr()
    assert cli.main(["-c", str(settings_path), "accounts"]) == 0


def test_platform_error_text_is_redacted_in_the_result_and_one_line_in_the_log(engine, db_url, sandbox, caplog):
    import logging

    from connectors.errors import ServerError
    from inbox.sync.account import sync_account

    settings = sandbox_settings(sandbox, db_url)

    class Broken:
        def fetch(self, cursor, known):
            raise ServerError("bad gateway access_token=EAAsecret123\x1b[2J\nFAKE: sync ok")
            yield  # pragma: no cover

        def close(self):
            pass

    with caplog.at_level(logging.INFO, logger="inbox.sync.account"):
        res = sync_account(engine, settings, settings.accounts[0], connector=Broken())
    assert res.status == "retry-later"
    assert "EAAsecret123" not in res.error and "EAAsecret123" not in str(res.as_dict())
    line = next(r.getMessage() for r in caplog.records if r.name == "inbox.sync.account" and "bad gateway" in r.getMessage())
    assert "EAAsecret123" not in line and "\x1b" not in line and "\n" not in line


def test_health_calls_an_account_stale_after_six_of_its_own_intervals(engine, db_url, sandbox):
    from datetime import timedelta

    from inbox.accounts import ensure_accounts, health
    from inbox.store.types import utcnow

    settings = sandbox_settings(sandbox, db_url)
    now = utcnow()
    refs = ensure_accounts(engine, settings.accounts)
    a = Account.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(a).where(a.c.id.in_([r.id for r in refs.values()])).values(last_success_at=now - timedelta(hours=1)))
    slow = settings.accounts[0].name
    accounts = [acc.model_copy(update={"interval_seconds": 3600}) if acc.name == slow else acc for acc in settings.accounts]
    settings = settings.model_copy(update={"accounts": accounts})
    problems = {h.name: h.problems for h in health(engine, settings, now=now)}
    assert problems[slow] == ()  # polled hourly: an hour without a sync is normal
    for name in ACCOUNTS:
        if name != slow:
            assert problems[name] == ("stale: no successful sync for 1 h",), name


def test_a_complete_pass_settles_replies_in_doubt_against_its_echoes(engine, db_url, sandbox, monkeypatch):
    import inbox.replies.reconcile
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url, processes=False)  # the fake below counts calls in this process
    calls = []

    def reconcile(engine_, account_id, *, synced_after=None, now=None, timing=None):
        calls.append((account_id, synced_after))
        return 2

    monkeypatch.setattr(inbox.replies.reconcile, "reconcile_unknown", reconcile)
    results = sync_all(engine, settings, connector_factory=fast_factory(settings))
    assert sorted(r.reconciled for r in results) == [2, 2, 2]
    from inbox.accounts import ensure_accounts

    ids = {name: ref.id for name, ref in ensure_accounts(engine, settings.accounts).items()}
    assert sorted(calls) == sorted((ids[r.account], r.started_at) for r in results)  # each account, since its own pass began


def test_pages_waiting_behind_one_are_stored_with_it_and_an_error_still_comes_where_it_happened():
    from connectors.base import Page
    from connectors.errors import ServerError
    from inbox.sync.pipeline import Prefetch, merge_pages

    gate = threading.Event()

    def pages():
        yield Page((), cursor={"n": 0})
        gate.wait(5)  # the first page is taken alone; the next three wait in the queue together
        yield Page((), cursor=None)
        yield Page((), cursor={"n": 2})
        yield Page((), cursor=None)
        raise ServerError("boom")

    prefetch = Prefetch(pages(), None, depth=4)
    batches = prefetch.batches(1000)
    assert [p.cursor for p in next(batches)] == [{"n": 0}]
    gate.set()
    import time

    time.sleep(0.3)
    second = next(batches)
    assert [p.cursor for p in second] == [None, {"n": 2}, None]
    merged = merge_pages(second)
    assert merged.cursor == {"n": 2} and not merged.final  # the last cursor any of them carries
    with pytest.raises(ServerError):
        next(batches)  # after the pages before it, as page by page
    prefetch.close()


def test_a_worker_process_that_dies_fails_its_account_only_and_says_so_in_health(engine, db_url, sandbox):
    import os

    from inbox.runtime import procs
    from inbox.accounts import health
    from inbox.sync.pool import sync_all

    if not procs.available():
        pytest.skip("worker processes need fork (Linux)")
    settings = sandbox_settings(sandbox, db_url)
    make = fast_factory(settings)

    def factory(acc):  # runs in the account's worker process
        if acc.name == "tokoshop-ig":
            os._exit(9)  # as the out-of-memory killer would
        return make(acc)

    results = {r.account: r for r in sync_all(engine, settings, connector_factory=factory)}
    assert results["tokoshop-ig"].status == "failed"
    assert "ended without a result (exit code 9)" in results["tokoshop-ig"].error
    assert results["tokoshop-fb"].status == results["tokoshop-x"].status == "ok"
    by_name = {h.name: h for h in health(engine, settings)}
    assert "exit code 9" in by_name["tokoshop-ig"].last_error and not by_name["tokoshop-ig"].healthy
    assert_complete(engine, sandbox, ["tokoshop-fb", "tokoshop-x"])


def test_the_fetching_thread_runs_at_a_lower_priority_than_the_writer():
    import os

    from connectors.base import Page
    from inbox.sync.pipeline import FETCH_NICENESS, Prefetch

    if not hasattr(os, "setpriority"):
        pytest.skip("no per-thread priorities here")
    if os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) >= 19:
        pytest.skip("the suite runs at the lowest priority already (nice 19): no lower one to give the fetching thread")
    seen = []

    def pages():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield Page((), cursor=None, final=True)

    prefetch = Prefetch(pages(), None)
    assert [[p.final for p in batch] for batch in prefetch.batches(1000)] == [[True]]
    prefetch.close()
    writer = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, writer + FETCH_NICENESS)] and seen[0] > writer
