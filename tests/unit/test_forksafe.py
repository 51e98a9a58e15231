"""inbox.runtime.forksafe: the one list of what a forked child resets."""

from __future__ import annotations

import os

import pytest

from inbox.runtime import forksafe

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork here")


def test_the_store_modules_register_their_resets() -> None:
    import inbox.store.sqlite_lock  # noqa: F401
    import inbox.store.sqlite_wal  # noqa: F401

    names = forksafe.registered()
    assert "inbox.store.sqlite_lock._forget" in names and "inbox.store.sqlite_wal._forget" in names


def test_hooks_run_around_a_fork_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(forksafe, "_before", [])
    monkeypatch.setattr(forksafe, "_after_in_parent", [])
    monkeypatch.setattr(forksafe, "_after_in_child", [])
    forksafe.around_fork(lambda: events.append("before 1"), lambda: events.append("parent 1"))
    forksafe.around_fork(lambda: events.append("before 2"), lambda: events.append("parent 2"))

    @forksafe.after_fork
    def first() -> None:
        events.append("child 1")

    forksafe.after_fork(lambda: events.append("child 2"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what ran here, and leave without pytest's cleanup
        try:
            os.write(write, ",".join(events).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        seen_in_child = f.read().decode()
    os.waitpid(pid, 0)
    assert seen_in_child == "before 2,before 1,child 1,child 2"
    assert events == ["before 2", "before 1", "parent 1", "parent 2"]
    assert forksafe.registered()[0].endswith("first")
