"""A deadline for a whole HTTP attempt, from the first byte sent to the last byte of the answer.

A read timeout bounds each wait for the next bytes, not the answer: a platform (or a proxy in front
of it) that sends one byte every few seconds never trips it, and the sync waits for hours. One
daemon thread per process watches the attempts in flight; when one passes its deadline it shuts
the attempt's socket down, so the blocked read returns and the attempt fails as timed out.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any


class Watch:
    """One attempt's deadline. `conn` is the connection it uses, once known (set by the transport)."""

    __slots__ = ("deadline", "conn", "fired", "_done")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.fired = False
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
    """Watch an attempt that must be over within `seconds` from now (disarm it when it is)."""
    global _thread
    watch = Watch(time.monotonic() + seconds)
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
