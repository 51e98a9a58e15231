"""Per-account leases: never two workers on one account; takeover when the holder dies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.base import Page
from connectors.enums import Channel
from tests import factories as sf
from inbox.settings import parse_settings
from inbox.errors import ConflictError
from inbox.errors import LeaseLostError
from inbox.leases import Holder, acquire, holder_of, new_owner, release, renew
from tests.waiting import wait_until

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def settings_for(url: str, lease_seconds: int = 30):
    return parse_settings(
        {
            "database": url,
            "sync": {"lease_seconds": lease_seconds, "concurrency": 1},
            "accounts": [{"name": "toko-x", "channel": "x", "user_id": "1500", "access_token_env": "UNUSED_TOKEN"}],
        },
        "leases.toml",
    )


class SlowConnector:
    """A connector whose pass takes a while, logging when it is busy (for overlap checks)."""

    def __init__(self, worker: str, log: list[tuple[str, float, float]], pages: int = 3, delay: float = 0.05) -> None:
        self.worker, self.log, self.pages, self.delay = worker, log, pages, delay
        self.spec = None

    def fetch(self, cursor, known) -> Iterator[Page]:
        n = int((cursor or {}).get("n", 0))
        start = time.monotonic()
        for i in range(self.pages):
            time.sleep(self.delay)
            n += 1
            msg = sf.inbound(f"{self.worker}-{n}-{time.monotonic_ns()}", f"c{n}", f"u{n}", f"pesan {n}",
                             T0 + timedelta(seconds=n), channel=Channel.X, account="1500", handle=f"user{n}")
            yield Page((msg,), cursor={"n": n} if i == self.pages - 1 else cursor, final=i == self.pages - 1)
        # resumed after the last page was stored: the whole pass is [start, now]
        self.log.append((self.worker, start, time.monotonic()))

    def close(self) -> None:
        pass


def test_two_workers_never_poll_the_same_account_at_once(db_url):
    """Two workers (own engines, own connections, own owners) loop over one account."""
    from inbox.store import open_store
    from inbox.sync.account import sync_account

    settings = settings_for(db_url)
    acc = settings.accounts[0]
    busy: list[tuple[str, float, float]] = []
    statuses: dict[str, list[str]] = {"a": [], "b": []}
    enough = threading.Event()  # set once they have collided and each had a few passes

    errors: list[BaseException] = []

    def worker(name: str) -> None:
        engine = open_store(db_url)
        try:
            while not enough.is_set():
                res = sync_account(engine, settings, acc, connector=SlowConnector(name, busy))
                statuses[name].append(res.status)
                # Real workers wait an interval (with jitter) after a pass: a short pause here lets
                # the other worker take the released lease instead of racing for it under load.
                time.sleep(0.03 if res.status == "ok" else 0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    wait_until(lambda: errors or (
        "conflict" in statuses["a"] + statuses["b"] and min(statuses["a"].count("ok"), statuses["b"].count("ok")) >= 3
    ))
    enough.set()
    for t in threads:
        t.join()

    assert not errors, errors
    assert {s for v in statuses.values() for s in v} <= {"ok", "conflict"}
    assert "conflict" in statuses["a"] + statuses["b"]  # they did collide ...
    assert statuses["a"].count("ok") > 0 and statuses["b"].count("ok") > 0  # ... and both got turns
    # ... but a whole pass of one worker never overlaps a pass of the other.
    intervals = sorted((s, e, w) for w, s, e in busy)
    assert len(intervals) == statuses["a"].count("ok") + statuses["b"].count("ok")
    for (s1, e1, w1), (s2, e2, w2) in zip(intervals, intervals[1:]):
        assert s2 >= e1, f"workers {w1} and {w2} polled the account at the same time"


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(engine):
    from inbox.accounts import ensure_accounts

    settings = settings_for(str(engine.url.render_as_string(hide_password=False)))
    ref = ensure_accounts(engine, settings.accounts)["toko-x"]
    dead = acquire(engine, ref.id, "toko-x", seconds=1, owner="otherhost:4242:abcd1234:1700000000")
    with pytest.raises(ConflictError) as err:
        acquire(engine, ref.id, "toko-x", seconds=30)
    assert "another sync is running for account toko-x (pid 4242 on host otherhost since 2023-11-14" in err.value.message
    holder, _ = holder_of(engine, ref.id)
    assert holder.pid == 4242
    time.sleep(1.2)
    mine = acquire(engine, ref.id, "toko-x", seconds=30)
    assert mine.owner != dead.owner
    with pytest.raises(LeaseLostError):
        renew(engine, dead, seconds=30)
    # the old holder cannot store a page either (fencing in the page transaction)
    from inbox.ingest.page import ingest_page

    page = Page((sf.inbound("e1", "c1", "u1", "x", T0, channel=Channel.X, account="1500"),), cursor={"n": 1})
    with pytest.raises(LeaseLostError):
        ingest_page(engine, ref, page, settings, lease_owner=dead.owner)
    ingest_page(engine, ref, page, settings, lease_owner=mine.owner)
    release(engine, mine)
    assert holder_of(engine, ref.id) is None


def test_lease_of_a_dead_local_process_is_taken_at_once(engine):
    from inbox.accounts import ensure_accounts

    settings = settings_for("sqlite:///leases.db")
    ref = ensure_accounts(engine, settings.accounts)["toko-x"]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    acquire(engine, ref.id, "toko-x", seconds=300, owner=f"{socket.gethostname()}:{pid}:deadbeef:{int(time.time())}")
    assert Holder.parse(f"{socket.gethostname()}:{pid}:x:1").is_dead_local_process()
    lease = acquire(engine, ref.id, "toko-x", seconds=300)
    assert lease.owner.split(":")[1] == str(os.getpid())
    # a live holder on this host (this very process, another worker) is respected
    with pytest.raises(ConflictError):
        acquire(engine, ref.id, "toko-x", seconds=300, owner=new_owner())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are read from /proc")
def test_lease_of_an_exited_but_unreaped_process_is_taken_at_once(engine):
    """A worker killed with its `inbox sync` may stay a zombie (a container's PID 1 that never reaps)."""
    from inbox.accounts import ensure_accounts

    settings = settings_for("sqlite:///leases.db")
    ref = ensure_accounts(engine, settings.accounts)["toko-x"]
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, and left unreaped: a zombie
    try:
        owner = f"{socket.gethostname()}:{zombie.pid}:deadbeef:{int(time.time())}"
        acquire(engine, ref.id, "toko-x", seconds=300, owner=owner)
        assert Holder.parse(owner).is_dead_local_process()
        assert acquire(engine, ref.id, "toko-x", seconds=300).owner != owner
    finally:
        zombie.wait()


def test_second_sync_process_on_sqlite_is_told_clearly(tmp_path, sqlite_engine):
    from inbox.accounts import ensure_accounts

    db = tmp_path / "inbox.db"
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(
        f'database = "sqlite:///{db}"\n\n[[accounts]]\nname = "toko-x"\nchannel = "x"\nuser_id = "1500"\n'
        'base_url = "http://127.0.0.1:9"\naccess_token_env = "LEASE_TEST_TOKEN"\n'
    )
    from inbox.store import open_store

    engine = open_store(f"sqlite:///{db}")
    ref = ensure_accounts(engine, settings_for(f"sqlite:///{db}").accounts)["toko-x"]
    acquire(engine, ref.id, "toko-x", seconds=300)  # this process is "the running sync"
    env = {**os.environ, "LEASE_TEST_TOKEN": "token-for-lease-test-123"}
    proc = subprocess.run([sys.executable, "-m", "cli", "-c", str(cfg), "sync"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 6, proc.stderr
    assert f"another sync is running for account toko-x (pid {os.getpid()} on host {socket.gethostname()} since" in proc.stdout + proc.stderr
    engine.dispose()


def test_accounts_health_shows_who_is_syncing(engine, tmp_path):
    from inbox.accounts import ensure_accounts, health

    url = str(engine.url.render_as_string(hide_password=False))
    settings = settings_for(url)
    ref = ensure_accounts(engine, settings.accounts)["toko-x"]
    assert health(engine, settings)[0].syncing is None
    lease = acquire(engine, ref.id, "toko-x", seconds=30, owner="worker-b:4242:abcd1234:1700000000")
    h = health(engine, settings)[0]
    assert h.syncing == "pid 4242 on host worker-b since 2023-11-14 22:13:20 UTC"
    assert h.lease_expires_at is not None and h.as_dict()["syncing"] == h.syncing
    # and on the command line, as a note under the table
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(
        f'database = "{url}"\n[[accounts]]\nname = "toko-x"\nchannel = "x"\nuser_id = "1500"\naccess_token_env = "UNUSED_TOKEN"\n',
        encoding="utf-8",
    )
    out = subprocess.run(
        [str(Path(sys.executable).parent / "inbox"), "-c", str(cfg), "accounts"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "UNUSED_TOKEN": "t0ken-value"},
    )
    assert "toko-x: syncing now: pid 4242 on host worker-b" in out.stdout, out.stdout + out.stderr
    release(engine, lease)
    assert health(engine, settings)[0].syncing is None
