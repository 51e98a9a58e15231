"""The cyclic garbage collector paused over one bounded burst of allocation (a page's write).

A page allocates tens of thousands of short-lived objects (rows, decisions, parameter tuples) that
reference counting frees; the cycle collector, triggered by the allocation count alone, would run
hundreds of young-generation passes per sync and, now and then, a full pass over every live object
of the process, all finding next to nothing. Paused for the page and resumed after it, the
collector catches up on whatever cycles a page left (there are few) at its next pass.

Nested and concurrent pauses (threads ingesting at once) count: the collector resumes when the last
one ends, and only if it was running when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from inbox.runtime.forksafe import after_fork

_lock = threading.Lock()
_depth = 0
_resume = False  # whether the collector was enabled when the outermost pause began


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth = max(0, _depth - 1)  # a pause begun before a fork ends in the child too
            if _depth == 0 and _resume:
                gc.enable()


@after_fork
def _reset() -> None:
    # A child forked inside another thread's pause has only the forking thread: nobody will end
    # that pause, so the child starts with the collector as it was before it.
    global _lock, _depth, _resume
    _lock = threading.Lock()
    if _depth and _resume:
        gc.enable()
    _depth, _resume = 0, False
