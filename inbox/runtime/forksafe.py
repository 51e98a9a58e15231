"""What a forked child must reset, in one list.

Sync passes run in forked worker processes (`inbox.runtime.procs`). A child starts with the parent's
memory but only the forking thread: a module-level lock another thread held at the fork stays held
forever, a cache of open file descriptors is the parent's, a background thread is gone. Each module
that keeps such state registers its reset here with `@after_fork`; a module whose lock must not be
held across the fork at all (SQLite's own mutexes are not reset by one) also registers `around_fork`.

One `os.register_at_fork` runs them all: the `before` hooks in reverse order of registration, the
`after` hooks in order, as `os.register_at_fork` itself does. `connectors/` keeps its own hook
(`connectors.http`): it never imports `inbox`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

Hook = Callable[[], object]
F = TypeVar("F", bound=Hook)

_before: list[Hook] = []
_after_in_parent: list[Hook] = []
_after_in_child: list[Hook] = []


def after_fork(reset: F) -> F:
    """Run `reset` in every forked child, right after the fork (a decorator)."""
    _after_in_child.append(reset)
    return reset


def around_fork(before: Hook, after_in_parent: Hook) -> None:
    """Run `before` in the parent just before every fork and `after_in_parent` just after it
    (e.g. take a lock, so no thread holds it at the moment of the fork)."""
    _before.append(before)
    _after_in_parent.append(after_in_parent)


def registered() -> tuple[str, ...]:
    """The child resets, by qualified name, in the order they run."""
    return tuple(f"{f.__module__}.{f.__qualname__}" for f in _after_in_child)


def _run_before() -> None:
    for hook in reversed(_before):
        hook()


def _run_after_in_parent() -> None:
    for hook in _after_in_parent:
        hook()


def _run_after_in_child() -> None:
    for hook in _after_in_child:
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_run_before, after_in_parent=_run_after_in_parent, after_in_child=_run_after_in_child)
