"""SQLite WAL checkpoints from a thread of their own, off the page-ingest path.

In WAL mode every commit appends pages to the -wal file, and a checkpoint copies them back into
the database file and syncs it. SQLite's automatic checkpoint runs inside the commit that crosses
the threshold, so one page in every few dozen paid tens of milliseconds for it (about half of all
commit time in a long sync). Here a daemon thread checkpoints after every few page commits, on
its own connection, while the ingest goes on (SQLite lets a checkpoint run beside a writer; the
sqlite3 module releases the GIL meanwhile). The writer keeps its automatic checkpoint as the
safety net, so the WAL stays bounded even if this thread falls behind. The thread ends when idle
and comes back with the next commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

from inbox.runtime import forksafe

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

EVERY_COMMITS = 8  # ~1-2 MB of WAL per page commit: checkpoint every ~10 MB
IDLE_SECONDS = 5.0

_lock = threading.Lock()
_by_path: dict[str, _Checkpointer] = {}
# Held while this module's thread is inside SQLite. SQLite's own mutexes are not reset by a fork:
# a child forked while a checkpoint holds one waits for it forever at its first open. A fork waits
# for the checkpoint instead (PASSIVE: it never waits on other connections for long).
_in_sqlite = threading.Lock()


@forksafe.after_fork
def _forget() -> None:
    # A forked child (inbox.runtime.procs) has none of the parent's threads: start its own checkpointers.
    global _lock, _in_sqlite
    _lock = threading.Lock()
    _in_sqlite = threading.Lock()
    _by_path.clear()


forksafe.around_fork(lambda: _in_sqlite.acquire(), lambda: _in_sqlite.release())


class _Checkpointer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.done = 0  # checkpoints run (tests, debugging)
        self.pending = 0
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def committed(self) -> None:
        with self.cond:
            self.pending += 1
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="inbox-wal-checkpoint", daemon=True)
                self.thread.start()
            elif self.pending >= EVERY_COMMITS:
                self.cond.notify()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            with _in_sqlite:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            while True:
                with self.cond:
                    if self.pending < EVERY_COMMITS:
                        self.cond.wait(IDLE_SECONDS)
                    if self.pending == 0:
                        self.thread = None  # idle: the next commit starts a new thread
                        return
                    self.pending = 0
                # PASSIVE: copy what no reader still needs, never wait for or block anyone.
                with _in_sqlite:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.done += 1
        except sqlite3.Error as exc:  # the writer's own checkpoint still runs; nothing is lost
            log.debug("background WAL checkpoint of %s failed: %s", self.path, exc)
            with self.cond:
                self.thread = None
        finally:
            if conn is not None:
                with _in_sqlite:
                    conn.close()


def committed(url: URL) -> None:
    """Tell the checkpointer of the SQLite file at `url` that a page was committed."""
    from inbox.store.engine import sqlite_file

    path = sqlite_file(url)
    if path is None:
        return  # in memory, or a URI filename this module would not open the same way
    with _lock:
        cp = _by_path.get(path)
        if cp is None:
            cp = _by_path[path] = _Checkpointer(path)
    cp.committed()
