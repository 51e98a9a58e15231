"""The page writers' queue for one SQLite file: `<database>-writer.lock`, waited on for a bounded time.

SQLite allows one writer, and a writer that finds the file locked waits in SQLite's busy handler,
which sleeps in coarse steps (up to 100 ms) and wakes without any order: with several accounts
syncing at once, most of a pass went to those sleeps. Page writers queue here instead: threads of
this process on a lock, processes (`inbox.runtime.procs`, a second `inbox sync` or `inbox run`) on an
advisory lock (flock) of a file beside the database. Other writers (agents' commands) still meet
the page writers at SQLite's own lock, with its busy timeout.

A writer never waits forever: after `timeout` seconds it gives up with a `ConflictError` naming the
holder, which writes who it is (pid, host, command, since when) into the lock file while it holds
it. The kernel frees the lock when its holder exits or is killed; a holder that is stopped
(SIGSTOP) or stuck is what the bounded wait is for.

On PostgreSQL the page writers queue on a transaction advisory lock instead (`pg_acquire`), with the
same bound (`lock_timeout`); the holder is named from `pg_stat_activity`, where every connection of
inbox says who opened it (`inbox.store.engine.application_name`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

try:
    import fcntl
except ImportError:  # Windows: SQLite's own lock serializes processes
    fcntl = None  # type: ignore[assignment]

from connectors.redact import redact
from inbox.store.engine import sqlite_file
from inbox.errors import ConflictError
from inbox.runtime import forksafe
from inbox.safe_text import one_line

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SUFFIX = "-writer.lock"
WARN_AFTER = 5.0  # seconds of waiting before the wait is logged (once)
# Seconds between tries of a busy lock file. Short: a page write takes tens of milliseconds, and the
# next writer should start within a few percent of that (a try is one cheap system call).
_POLL_FIRST, _POLL_MAX = 0.0005, 0.002

_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()
_lock_files: dict[str, int] = {}  # database path -> open descriptor of its writers' lock file


@forksafe.after_fork
def _forget() -> None:
    # In a forked child: locks another thread held at the fork would never be released, and a
    # lock file descriptor shared with the parent would be the parent's own lock (flock belongs
    # to the open file, not the process). Start afresh.
    global _write_locks_guard
    _write_locks.clear()
    _write_locks_guard = threading.Lock()
    for fd in _lock_files.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _lock_files.clear()


def _lock_file(path: str) -> int | None:
    """The descriptor of `<database>-writer.lock`, or None (no fcntl, a read-only directory)."""
    if fcntl is None:
        return None
    fd = _lock_files.get(path)
    if fd is None:
        try:
            fd = os.open(path + SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None  # a read-only directory: SQLite's own lock still serializes the writers
        _lock_files[path] = fd
    return fd


_who: tuple[int, str] | None = None  # (pid, the record without "since"): written for every page


def _me() -> bytes:
    global _who
    pid = os.getpid()
    if _who is None or _who[0] != pid:  # a forked worker is someone else
        command = " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]]) if sys.argv else "python"
        record = {"pid": pid, "host": socket.gethostname(), "command": one_line(redact(command), 200)}
        _who = (pid, json.dumps(record)[:-1])
    return f'{_who[1]}, "since": {int(time.time())}}}'.encode()


def describe_holder(raw: bytes) -> str:
    """Who holds the lock, from what the holder wrote into the file (it may have written nothing)."""
    try:
        info = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return "another process (it did not say which; `fuser` on the lock file names it)"
    who = f"pid {info['pid']} on host {one_line(str(info.get('host', '?')), 100)}"
    if info.get("command"):
        who += f" ({one_line(str(info['command']), 200)})"
    if isinstance(info.get("since"), int):
        who += f" since {datetime.fromtimestamp(info['since'], timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    return who


def _held_by(fd: int) -> str:
    try:
        return describe_holder(os.pread(fd, 4096, 0))
    except OSError:
        return describe_holder(b"")


def _timed_out(what: str, waited: float, holder: str) -> ConflictError:
    return ConflictError(
        f"{what} is locked for writing by {holder}; gave up after {waited:.0f} s "
        f"(sync.writer_lock_timeout_seconds); let it finish or stop it, then sync again"
    )


# pg_advisory_xact_lock key of the page writers: a page's ingest, and whatever must not interleave
# with one (a delivered reply's echo matched while a page may be storing it).
INGEST_LOCK_KEY = 0x1B0C5_0001
PAGE_WAIT_SECONDS = 60.0


def with_page_writers(conn: Connection, timeout: float = PAGE_WAIT_SECONDS) -> None:
    """On PostgreSQL, queue this transaction behind any page ingest (SQLite's write lock already
    does: every writer begins IMMEDIATE). A reply marked sent while a page stores its echo would
    otherwise see neither the other's row: the echo stored unmatched, the reply sent without it."""
    if conn.dialect.name == "postgresql":
        pg_acquire(conn, INGEST_LOCK_KEY, timeout)


def pg_acquire(conn: Connection, key: int, timeout: float) -> None:
    """`pg_advisory_xact_lock(key)` in the open transaction, waiting at most `timeout` s.

    `lock_timeout` is set for the rest of the transaction (SET LOCAL), so none of the page's
    statements waits unbounded on a lock either.
    """
    started = time.monotonic()
    conn.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"), {"v": f"{max(1, int(timeout * 1000))}ms"})
    try:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        holder = _pg_holder(conn.engine, key)
        raise _timed_out("the database (PostgreSQL)", time.monotonic() - started, holder) from None


def _pg_holder(engine: Engine, key: int) -> str:
    """Who holds advisory lock `key`, from another connection (the waiting transaction is aborted)."""
    query = sa.text(
        "SELECT a.pid, a.application_name, host(a.client_addr) AS client, a.xact_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
    )
    try:
        with engine.connect() as other:
            row = other.execute(query, {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).first()
    except sa.exc.SQLAlchemyError:
        row = None
    if row is None:
        return "another session (gone by now, or not visible to this database user)"
    who = f"PostgreSQL backend {row.pid}"
    details = [one_line(str(row.application_name), 100)] if row.application_name else []
    if row.client:
        details.append(f"client {row.client}")
    if details:
        who += f" ({', '.join(details)})"
    if row.xact_start is not None:
        who += f", in a transaction since {row.xact_start.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    return who


@contextmanager
def hold(engine: Engine, timeout: float) -> Iterator[None]:
    """Be the only page writer of this SQLite file (a no-op on other backends), waiting at most `timeout` s."""
    path = sqlite_file(engine.url)
    if path is None:
        yield
        return
    started = time.monotonic()
    deadline = started + timeout
    with _write_locks_guard:
        lock = _write_locks.setdefault(path, threading.Lock())
        fd = _lock_file(path)
    if not lock.acquire(timeout=max(0.0, timeout)):
        raise _timed_out(path, time.monotonic() - started, f"another thread of this process (pid {os.getpid()})")
    try:
        if fd is None:
            yield
            return
        _acquire(fd, path, started, deadline)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _me(), 0)
        except OSError:  # the holder's name is a courtesy; the lock is what matters
            pass
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        lock.release()


def _acquire(fd: int, path: str, started: float, deadline: float) -> None:
    """flock(LOCK_EX) with a deadline: try, then retry in short steps.

    A blocking flock hands the lock over the moment it is released, but cannot be given a timeout
    (nor be interrupted from another thread); retrying every 2 ms costs a writer at most that.
    """
    pause = _POLL_FIRST
    warned = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= deadline:
            raise _timed_out(path, now - started, _held_by(fd))
        if not warned and now - started >= WARN_AFTER:
            warned = True
            log.warning("waiting for the database's writer lock (%s%s), held by %s", path, SUFFIX, _held_by(fd))
        time.sleep(min(pause, max(0.0, deadline - now)))
        pause = min(_POLL_MAX, pause * 2)
