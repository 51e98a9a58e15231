"""Waiting in a test for what another process or thread does.

No wall-clock bound here, on purpose: a loaded machine may only make a test slower, never red. A
real hang is caught by pytest-timeout (`timeout` in pyproject.toml, or a test's own mark), which
names the test that hung.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, poll: float = 0.01) -> T:
    """The predicate's first true value, polled every `poll` seconds."""
    while True:
        value = predicate()
        if value:
            return value
        time.sleep(poll)


def exited(pid: int) -> bool:
    """The process is gone, or a zombie nobody reaps yet (as a container's PID 1 leaves them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def interrupt(proc: subprocess.Popen[str], *, hang: float = 120) -> tuple[str, str]:
    """Ctrl-C a foreground command and collect its output. `hang` only tells a hang (killed, its
    output in the failure) from a slow stop: it is no speed check."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=hang)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {hang:g} s after SIGINT; stdout: {out[-2000:]!r} stderr: {err[-4000:]!r}") from None
