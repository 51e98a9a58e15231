"""Files inbox creates hold customer conversations: they are created readable by their owner only.

A file that already exists keeps its mode (a team sharing one SQLite file can `chmod g+rw` it; SQLite
gives the WAL and shared-memory files the database file's mode), so the owner's decision stands.
"""

from __future__ import annotations

import os
from typing import IO

PRIVATE = 0o600


def open_private(path: str | os.PathLike[str], mode: str = "w", *, encoding: str = "utf-8", newline: str | None = None) -> IO[str]:
    """Open a text file for writing ("w" truncates, "a" appends), creating it 0600 if it is new."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    return os.fdopen(fd, mode, encoding=encoding, newline=newline)


def create_private(path: str | os.PathLike[str]) -> None:
    """Create an empty file 0600 unless it exists (then nothing changes). Errors are left to whoever
    opens it next (a missing directory, a read-only one), which reports them in its own words."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE))
    except OSError:
        pass
