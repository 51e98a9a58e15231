"""The collector's pause over a page write: nested and threaded pauses, the state it restores."""

from __future__ import annotations

import gc
import threading

import pytest

from inbox.runtime.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_resumed_after() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
    assert gc.isenabled()


def test_resumed_after_an_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("page failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_two_threads_overlapping() -> None:
    """The first to finish must not resume the collector under the other's page."""
    gc.enable()
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def long_page() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)
            seen.append(gc.isenabled())

    t = threading.Thread(target=long_page)
    t.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    seen.append(gc.isenabled())  # the other thread's page still runs
    release.set()
    t.join(10)
    assert seen == [False, False]
    assert gc.isenabled()
