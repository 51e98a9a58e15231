"""The SQLite page writers' lock (`<database>-writer.lock`) is waited on for a bounded time, then named.

A sync that finds the lock held by another process waits `sync.writer_lock_timeout_seconds`, then
gives up with one line naming the holder (pid, host, command, written into the lock file by the
holder) and exit 6; once the holder is gone the next sync stores everything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store.test_sync import ACCOUNTS, assert_complete

INBOX = str(Path(sys.executable).parent / "inbox")
ROOT = Path(__file__).resolve().parents[2]

INBOX_HOLDER = """\
import sys, time
from inbox.store import sqlite_lock
from inbox.store import open_store
with sqlite_lock.hold(open_store(sys.argv[1]), 5):
    print("held", flush=True)
    time.sleep(120)
"""

FOREIGN_HOLDER = """\
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def _hold(script: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _sync(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # A subprocess with a timeout: a sync that waited forever on the lock fails here instead of hanging the suite.
    return subprocess.run([INBOX, "-c", str(config), "sync", *args], env=env, capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def store(tmp_path: Path, sandbox):  # type: ignore[no-untyped-def]
    from inbox.store import open_store

    db = tmp_path / "inbox.db"
    config = tmp_path / "inbox.toml"
    config.write_text(sandbox.config_toml(database=f"sqlite:///{db}") + "\n[sync]\nwriter_lock_timeout_seconds = 0.5\n")
    env = {**os.environ, **sandbox.env()}
    engine = open_store(f"sqlite:///{db}")  # created (and migrated) before anyone holds its lock
    yield db, config, env, engine
    engine.dispose()


def test_a_sync_behind_a_held_writer_lock_names_the_holder_and_exits_6(tmp_path, sandbox, store):
    db, config, env, engine = store
    script = tmp_path / "hold_writer_lock.py"
    script.write_text(INBOX_HOLDER)
    holder = _hold(script, f"sqlite:///{db}")
    try:
        proc = _sync(config, env, "--json")
    finally:
        holder.kill()
        holder.wait(timeout=120)
    assert proc.returncode == 6, proc.stderr
    out = json.loads(proc.stdout)
    errors = [a["error"] for a in out["accounts"]]
    assert all(a["status"] == "conflict" for a in out["accounts"]), out["accounts"]
    for error in errors:
        assert f"pid {holder.pid} on host {socket.gethostname()}" in error
        assert "hold_writer_lock.py" in error and "writer_lock_timeout_seconds" in error
    assert "Traceback" not in proc.stderr

    # The holder gone (killed: the kernel frees its lock), the next sync stores everything.
    again = _sync(config, env, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_complete(engine, sandbox, ACCOUNTS)


def test_a_holder_that_wrote_nothing_is_still_reported(tmp_path, sandbox, store):
    """A process of an older version (or any other tool) holding the lock without naming itself."""
    db, config, env, _engine = store
    script = tmp_path / "flock.py"
    script.write_text(FOREIGN_HOLDER)
    holder = _hold(script, f"{db}-writer.lock")
    try:
        proc = _sync(config, env, "--account", "tokoshop-x")
    finally:
        holder.kill()
        holder.wait(timeout=120)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "is locked for writing by another process" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_holder_clears_its_name_when_it_lets_go(sqlite_engine):
    from inbox.store import sqlite_lock

    lock_file = Path(str(sqlite_engine.url.database) + sqlite_lock.SUFFIX)
    with sqlite_lock.hold(sqlite_engine, 1):
        info = json.loads(lock_file.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert sqlite_lock.describe_holder(lock_file.read_bytes()).startswith(f"pid {os.getpid()} on host ")
    assert lock_file.read_text() == ""


def test_postgresql_page_writers_wait_a_bounded_time_and_name_the_holder(pg_url, tmp_path, sandbox):
    """The same bound on PostgreSQL, where page writers queue on a transaction advisory lock."""
    import sqlalchemy as sa

    from inbox.store import open_store
    from inbox.store.sqlite_lock import INGEST_LOCK_KEY

    config = tmp_path / "inbox.toml"
    config.write_text(sandbox.config_toml(database=pg_url) + "\n[sync]\nwriter_lock_timeout_seconds = 0.5\n")
    env = {**os.environ, **sandbox.env()}
    engine = open_store(pg_url)
    try:
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK_KEY})
            backend = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            proc = _sync(config, env, "--json")
            holder.rollback()
        assert proc.returncode == 6, proc.stdout + proc.stderr
        out = json.loads(proc.stdout)
        for account in out["accounts"]:
            assert account["status"] == "conflict"
            assert f"PostgreSQL backend {backend} (inbox pid {os.getpid()} on {socket.gethostname()}" in account["error"]
            assert "writer_lock_timeout_seconds" in account["error"]
        # The default bound: the server may be shared, and other stores' page writers queue on the same lock.
        config.write_text(sandbox.config_toml(database=pg_url))
        again = _sync(config, env, "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert_complete(engine, sandbox, ACCOUNTS)
    finally:
        engine.dispose()
