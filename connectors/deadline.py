"""A deadline for a whole HTTP attempt, from the first byte sent to the last byte of the answer.

A read timeout bounds each wait for the next bytes, not the answer: a platform (or a proxy in front
of it) that sends one byte every few seconds never trips it, and the sync waits for hours. One
daemon thread per process watches the attempts in flight. An attempt gets a window of time; if its
answer is still arriving when the window ends, at `MIN_BYTES_PER_SECOND` or more over the window
(a large page on a slow link), it gets another. Otherwise the watcher shuts its socket down, so the
blocked read returns and the attempt fails as timed out.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any


MIN_BYTES_PER_SECOND = 1024  # an answer arriving slower than this over a whole window is cut


class Watch:
    """One attempt's deadline. `conn` is the connection it uses, once known (set by the transport);
    `received` the answer's bytes read so far (counted by the transport as they arrive)."""

    __slots__ = ("deadline", "window", "conn", "fired", "received", "_seen", "_done")

    def __init__(self, window: float) -> None:
        self.window = window
        self.deadline = time.monotonic() + window
        self.conn: Any = None
        self.fired = False
        self.received = 0  # written by the attempt's thread only; the watcher reads it
        self._seen = 0  # `received` when the window before ended
        self._done = False

    def attach(self, conn: Any) -> None:
        """The connection the attempt sends on (cut at once if the deadline passed before it was known)."""
        with _lock:
            self.conn = conn
            if self.fired and not self._done:
                _cut(conn)

    def disarm(self) -> bool:
        """Stop watching; True when the deadline had passed and the connection was cut."""
        with _lock:
            self._done = True
            return self.fired


_lock = threading.Condition()
_heap: list[tuple[float, int, Watch]] = []
_seq = itertools.count()
_thread: threading.Thread | None = None


def _forget() -> None:
    """In a forked child: the watcher thread is gone, and the lock may have been held by it at the fork."""
    global _lock, _thread
    _lock = threading.Condition()
    _heap.clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def arm(seconds: float) -> Watch:
    """Watch an attempt that must be over within `seconds` from now, or still be receiving its answer
    fast enough (disarm it when it is over)."""
    global _thread
    watch = Watch(seconds)
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="http-deadline", daemon=True)
            _thread.start()
        heapq.heappush(_heap, (watch.deadline, next(_seq), watch))
        if _heap[0][2] is watch:
            _lock.notify()
    return watch


def _run() -> None:
    with _lock:
        while True:
            while _heap and _heap[0][2]._done:
                heapq.heappop(_heap)
            if not _heap:
                _lock.wait()
                continue
            deadline, _, watch = _heap[0]
            wait = deadline - time.monotonic()
            if wait > 0:
                _lock.wait(wait)
                continue
            heapq.heappop(_heap)
            if watch.window > 0 and watch.received - watch._seen >= max(1.0, MIN_BYTES_PER_SECOND * watch.window):
                watch._seen = watch.received  # still arriving at a useful rate: another window
                watch.deadline = deadline + watch.window
                heapq.heappush(_heap, (watch.deadline, next(_seq), watch))
                continue
            watch.fired = True
            _cut(watch.conn)


def _cut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once; the connection is not reused
    except OSError:
        pass
