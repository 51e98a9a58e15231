"""inbox.runtime.procs: jobs in forked processes report back like threads (progress, logs, results, failures, stop)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from inbox.runtime import procs
from inbox.runtime.procs import Job, run_jobs
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not procs.available(), reason="worker processes need fork (Linux)")

log = logging.getLogger("inbox.test_workers")


def _failed(message: str) -> dict[str, object]:
    return {"failed": message}


def test_jobs_run_in_processes_of_their_own_and_report_back_in_order(caplog: pytest.LogCaptureFixture) -> None:
    parent = os.getpid()

    def job(name: str, delay: float) -> Job[dict[str, object]]:
        def run(report, stop):  # type: ignore[no-untyped-def]
            time.sleep(delay)
            report((name, os.getpid()))
            log.warning("job %s ran in %d", name, os.getpid())
            return {"name": name, "pid": os.getpid(), "ppid": os.getppid()}

        return Job(name, run, _failed)

    events: list[tuple[str, int]] = []
    with caplog.at_level(logging.INFO, logger="inbox.test_workers"):
        results = run_jobs([job("slow", 0.3), job("fast", 0.0), job("mid", 0.1)], workers=3, progress=events.append)
    assert [r["name"] for r in results] == ["slow", "fast", "mid"]  # the jobs' order, not the finishing order
    pids = {r["pid"] for r in results}
    assert len(pids) == 3 and parent not in pids and {r["ppid"] for r in results} == {parent}
    assert sorted(events) == sorted((r["name"], r["pid"]) for r in results)  # progress reached this process
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "inbox.test_workers"]
    assert sorted(lines) == sorted(f"job {r['name']} ran in {r['pid']}" for r in results)


def test_at_most_workers_run_at_once() -> None:
    def run(report, stop):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        time.sleep(0.3)
        return (started, time.monotonic())

    spans = run_jobs([Job(str(i), run, _failed) for i in range(4)], workers=2)
    for moment in (s for s, _ in spans):
        assert sum(1 for s, e in spans if s <= moment < e) <= 2


def test_a_process_that_dies_or_raises_gets_a_failed_result() -> None:
    def dies(report, stop):  # type: ignore[no-untyped-def]
        os._exit(3)

    def raises(report, stop):  # type: ignore[no-untyped-def]
        raise ValueError("bad page; access_token=EAAsecretsecretsecret")

    def fine(report, stop):  # type: ignore[no-untyped-def]
        return "ok"

    results = run_jobs([Job("dies", dies, _failed), Job("raises", raises, _failed), Job("fine", fine, _failed)], workers=3)
    assert results[0] == {"failed": "worker process for dies ended without a result (exit code 3)"}
    message = results[1]["failed"]  # type: ignore[index]
    assert message.startswith("worker process failed: ValueError: bad page") and "EAAsecret" not in message
    assert results[2] == "ok"


def test_stop_is_relayed_and_ctrl_c_is_left_to_the_parent() -> None:
    """Children ignore SIGINT (Ctrl-C reaches the whole process group); the caller's stop event stops them."""
    stop = threading.Event()

    def run(report, stop_flag):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)  # as the terminal's Ctrl-C would
        report("running")
        wait_until(stop_flag.is_set)  # a stop never relayed hangs, and pytest-timeout says so
        return "stopped"

    results = run_jobs([Job("a", run, _failed), Job("b", run, _failed)], workers=2,
                       progress=lambda _event: stop.set(), stop_event=stop)
    assert results == ["stopped", "stopped"]


def test_children_leave_the_inherited_heap_to_the_parent() -> None:
    import gc

    def run(report, stop):  # type: ignore[no-untyped-def]
        return (gc.get_freeze_count(), gc.get_threshold())

    [(frozen, thresholds)] = run_jobs([Job("gc", run, _failed)], workers=1)
    assert frozen > 1000 and thresholds == procs.GC_THRESHOLDS
    assert gc.get_threshold() != procs.GC_THRESHOLDS  # this process keeps its own settings
