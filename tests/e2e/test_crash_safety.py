"""kill -9 an `inbox sync` process at random points, over and over, then sync again: every message is
stored exactly once and no cursor is ever ahead of the stored data (SQLite, the sandbox's large set)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.times import parse_time
from tests.store.test_sync import ACCOUNTS, assert_complete, fast_factory, readable_ids, sandbox_settings, sandbox_store
from tests.waiting import exited, wait_until

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 30
FIRST_PASS_KILLS = 12  # kills during the first (full) pass; then one complete run; then incremental passes

# The `inbox sync` command itself, with client-side pacing off: the loopback sandbox has no
# 2-calls-per-second limit, and the point is to die in the middle of many pages.
DRIVER = """
import sys
import cli
import inbox.sync.account
real = inbox.sync.account.make_connector
inbox.sync.account.make_connector = lambda settings, account, **kw: real(settings, account, min_interval=0.0, **kw)
sys.exit(cli.main(["-c", sys.argv[1], "sync"]))
"""


def check_invariants(engine, sb, overlap: float) -> dict[str, int]:
    """No duplicates, nothing stored that the platform lacks, counters consistent, cursors not ahead."""
    stored: dict[str, set[str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.name, m.external_id FROM message m JOIN account a ON a.id = m.account_id")).all()
        cursors = dict(conn.execute(sa.text(
            "SELECT a.name, s.cursor FROM sync_state s JOIN account a ON a.id = s.account_id")).all())
        bad_counts = conn.execute(sa.text(
            "SELECT t.id FROM ticket t WHERE t.message_count <> (SELECT count(*) FROM message m WHERE m.ticket_id = t.id)")).all()
    for name, eid in rows:
        stored.setdefault(name, set()).add(eid)
    assert len(rows) == sum(len(v) for v in stored.values()), "a message stored twice"
    assert not bad_counts, f"ticket counters disagree with stored messages: {bad_counts[:5]}"
    for name in ACCOUNTS:
        mine = stored.get(name, set())
        assert mine <= sb.all_message_ids(name), f"{name}: stored a message the platform never had"
        cursor = cursors.get(name)
        if isinstance(cursor, str):
            import json

            cursor = json.loads(cursor)
        if not cursor:
            continue
        if sb.accounts[name].channel == "x":
            newest = int(cursor["newest_id"]) if cursor.get("newest_id") else 0
            behind = {i for i in readable_ids(sb, name) if int(i) <= newest}
        else:
            floor = parse_time(cursor["hwm"]) - timedelta(seconds=overlap) if cursor.get("hwm") else None
            behind = set()
            for thread in sb.threads(name):
                msgs = sb.thread_messages(name, thread)
                if floor is not None and msgs and msgs[-1]["created_ms"] / 1000 <= floor.timestamp():
                    behind |= {m["id"] for m in msgs if m["readable"]}
                # A thread the cursor remembers as read (an unfinished pass's progress) is stored up to that time.
                signature = (cursor.get("recent") or {}).get(thread)
                if signature:
                    upto = parse_time(signature[0]).timestamp()
                    behind |= {m["id"] for m in msgs if m["readable"] and m["created_ms"] / 1000 <= upto}
        missing = behind - mine
        assert not missing, f"{name}: cursor {cursor} is ahead of the stored data ({len(missing)} messages behind it missing)"
    return {n: len(v) for n, v in stored.items()}


def cli_store(sb, tmp_path, monkeypatch):
    """The sandbox's environment (for this process and `inbox` processes), a SQLite store, a config naming both."""
    url, engine, _settings = sandbox_store(sb, tmp_path, monkeypatch)
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(sb.config_toml(database=url))
    return {**os.environ, **sb.env()}, url, cfg, engine


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def lease_holders(engine, proc: subprocess.Popen) -> set[int]:
    """Pids of `proc` or its worker processes that hold an account's lease (owner "host:pid:nonce:since")."""
    with engine.connect() as conn:
        owners = conn.execute(sa.text("SELECT lease_owner FROM sync_state WHERE lease_owner IS NOT NULL")).scalars().all()
    pids = set()
    for owner in owners:
        parts = owner.rsplit(":", 3)
        if len(parts) == 4 and parts[1].isdigit():
            pid = int(parts[1])
            if pid == proc.pid or _parent_of(pid) == proc.pid:
                pids.add(pid)
    return pids


def wait_until_syncing(engine, proc: subprocess.Popen) -> set[int]:
    """The lease holders once the process (or a worker of it) holds an account's lease; empty if
    the process ended first."""
    found: set[int] = set()

    def ready() -> bool:
        found.update(lease_holders(engine, proc))
        return bool(found) or proc.poll() is not None

    wait_until(ready)
    return found


def gone(pid: int) -> bool:
    """Waits until the process is dead (or a zombie nobody reaps); true once it is."""
    return wait_until(lambda: exited(pid))


@pytest.mark.slow
def test_kill_9_at_random_points_then_sync_again(tmp_path, monkeypatch):
    from sandbox import Sandbox

    from inbox.sync.pool import sync_all

    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261125")))
    with Sandbox(seed=11, large=6000, x_rate_limit=100000).start() as sb:
        env, url, cfg, engine = cli_store(sb, tmp_path, monkeypatch)
        settings = sandbox_settings(sb, url)
        killed = finished = 0
        progress = []
        started = time.monotonic()
        for trial in range(TRIALS):
            complete_run = trial == FIRST_PASS_KILLS
            if trial > FIRST_PASS_KILLS:
                # New messages between runs (new threads, and bursts into old ones past the
                # 20-message horizon), so each later run has an incremental pass to die in.
                for k in range(rng.randrange(20, 60)):
                    sb.inject(rng.choice(ACCOUNTS), text=f"pesan baru {trial}.{k}: paket belum sampai")
                name = rng.choice(("tokoshop-fb", "tokoshop-ig"))
                sb.burst(name, rng.choice(sb.threads(name)[:50]), rng.randrange(3, 25))
            proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(cfg)], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if complete_run:
                # One run completes, so cursors move and the later kills hit incremental passes.
                assert proc.wait(timeout=60) == 0
                finished += 1
            else:
                # Once the run holds its first lease (start-up done, syncing), anywhere in the pass.
                holders = wait_until_syncing(engine, proc)
                if holders:
                    time.sleep(rng.uniform(0.0, 1.5 if trial < FIRST_PASS_KILLS else 0.25))
                    holders |= lease_holders(engine, proc)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed += 1
                    # The accounts' worker processes die with `inbox sync`, as its threads would.
                    survivors = [pid for pid in holders if pid != proc.pid and not gone(pid)]
                    assert not survivors, f"worker processes {survivors} outlived the killed sync"
                else:
                    finished += 1
                proc.wait()
            progress.append(sum(check_invariants(engine, sb, settings.sync.overlap_seconds).values()))
        # Whatever state the kills left, the next sync completes it.
        results = sync_all(engine, settings, connector_factory=fast_factory(settings))
        assert [r.status for r in results] == ["ok", "ok", "ok"]
        check_invariants(engine, sb, settings.sync.overlap_seconds)
        assert_complete(engine, sb, exact=False)  # bursts pushed some stored messages past the horizon
        engine.dispose()
    assert killed >= 20, f"only {killed} of {TRIALS} runs were killed while running"
    assert progress[-1] > progress[0] or progress[0] > 0
    print(f"{TRIALS} trials: {killed} killed, {finished} finished; stored after each: {progress}; {time.monotonic() - started:.0f}s")


def test_ctrl_c_stops_every_worker_after_its_page_and_the_next_sync_completes(tmp_path, monkeypatch):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: `inbox sync` and its worker
    processes finish the pages in flight, print the summary, exit 130 (interrupted); nothing is left running."""
    import json

    from sandbox import Sandbox

    from inbox.sync.pool import sync_all

    with Sandbox(seed=12, large=6000, x_rate_limit=100000).start() as sb:
        env, url, cfg, engine = cli_store(sb, tmp_path, monkeypatch)
        proc = subprocess.Popen([sys.executable, "-c", DRIVER.replace('"sync"]', '"sync", "--json"]'), str(cfg)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        holders = wait_until_syncing(engine, proc)
        assert holders, "the sync never started"
        time.sleep(0.2)
        holders |= lease_holders(engine, proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        summary = json.loads(out)
        assert summary["exit_code"] == 130
        statuses = {a["account"]: a["status"] for a in summary["accounts"]}
        assert "stopped" in statuses.values() and set(statuses.values()) <= {"stopped", "ok"}, statuses
        assert "interrupted: finishing the current page" in err and "Traceback" not in err
        assert all(gone(pid) for pid in holders if pid != proc.pid)
        settings = sandbox_settings(sb, url)
        check_invariants(engine, sb, settings.sync.overlap_seconds)
        results = sync_all(engine, settings, connector_factory=fast_factory(settings))
        assert [r.status for r in results] == ["ok", "ok", "ok"]
        assert_complete(engine, sb)
        engine.dispose()
