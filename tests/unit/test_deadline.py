"""The attempt deadline (`connectors.deadline`): a watched connection past its deadline is cut, one
disarmed in time never is, and a forked child (sync workers) gets a watcher of its own."""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace

import pytest

from connectors import deadline


def _blocked_read(seconds: float) -> tuple[deadline.Watch, bytes, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.settimeout(30)  # far beyond the deadline: only the cut can end the read
    watch = deadline.arm(seconds)
    watch.attach(SimpleNamespace(sock=ours))
    return watch, ours.recv(10), theirs


def test_a_read_past_its_deadline_is_cut_and_says_so() -> None:
    watch, got, theirs = _blocked_read(0.05)
    assert got == b"" and watch.disarm() is True
    theirs.close()


def test_an_attempt_disarmed_in_time_is_never_cut() -> None:
    ours, theirs = socket.socketpair()
    watch = deadline.arm(30)
    watch.attach(SimpleNamespace(sock=ours))
    assert watch.disarm() is False
    later = deadline.arm(0.0)  # due at once: the watcher wakes, skips the disarmed one, fires this one
    later.attach(SimpleNamespace(sock=None))
    threading.Event().wait(0.2)
    assert later.disarm() is True
    theirs.sendall(b"ok")
    assert ours.recv(2) == b"ok", "the disarmed attempt's connection still works"
    ours.close()
    theirs.close()


def test_a_connection_known_only_after_the_deadline_is_cut_when_attached() -> None:
    ours, theirs = socket.socketpair()
    watch = deadline.arm(0.0)
    threading.Event().wait(0.1)
    ours.settimeout(30)
    watch.attach(SimpleNamespace(sock=ours))
    assert ours.recv(10) == b"" and watch.disarm() is True
    theirs.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: sync worker processes (Linux)")
def test_a_forked_child_has_a_watcher_of_its_own() -> None:
    deadline.arm(60).disarm()  # the parent's watcher runs (and may hold its lock at the fork)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its own watcher cut the read
        try:
            watch, got, _theirs = _blocked_read(0.05)
            os._exit(0 if got == b"" and watch.disarm() else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
