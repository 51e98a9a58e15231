"""Run jobs (one account's sync pass each) in forked worker processes, so a pass uses every core.

Fetching, parsing and storing an account's pages holds Python's GIL most of the time, so the
threads of one process take turns on a single core however many accounts sync at once. Here each
job runs in a child process of its own and the caller gets back what a thread would have given
it: progress events, log records (handled by the caller's own logging configuration) and the
job's result, in the caller's order.

Fork, not spawn: the child starts with every module already imported (spawning would import
SQLAlchemy, requests and tweepy again in each child, about half a second of CPU apiece). Hence
Linux only (`available()`), and the rules a forked child must follow:

- it touches no connection it inherited: the job drops them (`Engine.dispose(close=False)`) and
  opens its own; module-level locks and caches that another thread might hold at the moment of
  the fork are re-created after it (`inbox.runtime.forksafe`, where `inbox.store.sqlite_lock` and
  `inbox.store.sqlite_wal` register their resets; `connectors.http` has its own `os.register_at_fork`);
- it dies with its parent (`PR_SET_PDEATHSIG`), as a thread would: a `kill -9` of `inbox sync`
  ends the whole pass, and every page stored so far is stored whole;
- it ignores SIGINT (Ctrl-C reaches the whole process group); the caller's stop event is relayed
  instead, so each child finishes the page it is storing and stops, as a thread does;
- its garbage collector leaves the inherited objects alone (`gc.freeze`).
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from connectors.redact import redact
from inbox.errors import describe

log = logging.getLogger(__name__)

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.2
GC_THRESHOLDS = (20_000, 50, 100)  # Python's defaults: (700, 10, 10)


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


ProgressSink = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Job(Generic[T]):
    """One unit of work for a child.

    `run(progress, stop)` runs in the child and returns a picklable result; `failed(message)`
    runs in the parent and stands in for the result when the child could not give one.
    """

    name: str
    run: Callable[[ProgressSink, StopFlag], T]
    failed: Callable[[str], T]


def local_process_gone(host: str, pid: int, *, zombie_is_gone: bool = False) -> bool | None:
    """Whether the process `pid` of machine `host` (an owner recorded by a lease or a reply) has exited:
    True when it is gone, False when it still runs (or is another user's), None on another machine.
    With `zombie_is_gone`, an exited process nobody reaped counts as gone (`is_zombie`)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return zombie_is_gone and is_zombie(pid)


def is_zombie(pid: int) -> bool:
    """True for a process that has exited but was not reaped (Linux /proc).

    A worker process killed together with its `inbox sync` is adopted by PID 1, and a container's
    PID 1 often never reaps it: the pid stays taken, but the holder is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def available() -> bool:
    """Whether jobs can run in forked processes here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def run_jobs(
    jobs: Sequence[Job[T]],
    *,
    workers: int,
    progress: ProgressSink | None = None,
    stop_event: StopFlag | None = None,
) -> list[T]:
    """Run `jobs`, at most `workers` at a time, each in a forked child; results in `jobs` order."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()  # shared with the children: their `stop_event`
    results: dict[int, T] = {}
    queued = list(enumerate(jobs))
    running: dict[Any, tuple[int, Any]] = {}  # receiving end -> (job index, process)
    try:
        while queued or running:
            while queued and len(running) < max(1, workers):
                index, job = queued.pop(0)
                receiver, sender = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(job, sender, stop, os.getpid()), name=f"sync-{job.name}", daemon=True)
                proc.start()
                sender.close()  # the child's end: EOF here once the child is gone
                running[receiver] = (index, proc)
            if stop_event is not None and stop_event.is_set():
                stop.set()
            for receiver in wait(list(running), timeout=_POLL_SECONDS):
                index, proc = running[receiver]
                try:
                    kind, payload = receiver.recv()
                except (EOFError, OSError):
                    proc.join()
                    receiver.close()
                    del running[receiver]
                    if index not in results:
                        job = jobs[index]
                        results[index] = job.failed(f"worker process for {job.name} ended without a result (exit code {proc.exitcode})")
                    continue
                if kind == "progress":
                    if progress is not None:
                        progress(payload)
                elif kind == "log":
                    logger = logging.getLogger(payload.name)
                    if logger.isEnabledFor(payload.levelno):
                        logger.handle(payload)
                elif kind == "result":
                    results[index] = payload
    except BaseException:
        # The caller gives up (a second Ctrl-C, a bug here): so do the children, at once. A page
        # cut off mid-write is rolled back by the store; its cursor was not written either.
        for receiver, (_index, proc) in running.items():
            proc.kill()
            proc.join()
            receiver.close()
        raise
    return [results[i] for i in range(len(jobs))]


class _Sender:
    """The child's end of the pipe, shared by its threads (the prefetch thread logs too)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, kind: str, payload: Any) -> None:
        with self.lock:
            self.conn.send((kind, payload))

    def put_nowait(self, record: logging.LogRecord) -> None:  # the queue of a QueueHandler
        self.send("log", record)


def _die_with_parent(parent: int) -> None:
    import ctypes  # here: the liveness checks below are imported by commands that never fork

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux after all: the broken pipe ends the child instead
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _forward_logs(sender: _Sender) -> None:
    """Send every record to the parent instead of the handlers inherited from it."""
    handler = logging.handlers.QueueHandler(sender)  # type: ignore[arg-type]
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    for logger in loggers:
        had = bool(logger.handlers)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        if had and not logger.propagate:
            logger.addHandler(handler)
    logging.getLogger().addHandler(handler)


def _own_stdio() -> None:
    """Streams of the child's own on the same descriptors.

    Another thread of the parent (a live progress display) may have been writing at the moment
    of the fork: its stream's lock came along held, and its unflushed bytes are the parent's to
    write. The old objects are left alone, never flushed here.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        try:
            new = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8", errors="backslashreplace")
        except (OSError, ValueError):
            continue
        setattr(sys, name, new)


def _child(job: Job[Any], conn: Any, stop: Any, parent: int) -> None:
    _own_stdio()
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The inherited heap (every module the parent imported) is never garbage here: keep the
    # cyclic collector off it, and run it less often, since parsing pages allocates millions of
    # short-lived objects without cycles (about a tenth of a pass's CPU went to collections).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sender = _Sender(conn)
    _forward_logs(sender)
    try:
        result = job.run(lambda event: sender.send("progress", event), stop)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the job's failure
        detail = describe(exc)  # a database error without its parameters (customer text)
        log.error("worker for %s failed: %s", job.name, redact(detail), exc_info=log.isEnabledFor(logging.DEBUG))
        result = job.failed(redact(f"worker process failed: {detail}"))
    try:
        sender.send("result", result)
    except (BrokenPipeError, OSError):  # the parent is gone; nobody to tell
        pass
