"""The SQLite floor of an ingest: its own statements, replayed with nothing else around them.

While `record()` is active, every SQLite connection the process opens (on this thread) records
what it runs: each `execute` and `executemany` with its parameters, each commit and rollback.
`replay(ops, path)` runs the same statements, with the same parameters and transaction
boundaries, on a copy of the database as it was when recording began, and times it. What the
ingest spends beyond that is Python's: decisions, row building, SQLAlchemy.

Reads are replayed and fetched too (they are SQLite work the ingest waits for). The WAL
checkpoint thread's connection is not recorded: it runs beside the writer.
"""

from __future__ import annotations

import sqlite3
import sqlite3.dbapi2
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Op = tuple[str, str, Any]  # (kind, sql, parameters): "x" execute, "m" executemany, "c" commit, "r" rollback

_ops: list[Op] | None = None
_main = threading.main_thread()


def _on() -> list[Op] | None:
    return _ops if threading.current_thread() is _main else None


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        ops = _on()
        if ops is not None:
            ops.append(("x", sql, parameters))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        ops = _on()
        if ops is not None:
            seq_of_parameters = list(seq_of_parameters)
            ops.append(("m", sql, seq_of_parameters))
        return super().executemany(sql, seq_of_parameters)


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        ops = _on()
        if ops is not None:
            ops.append(("c", "", None))
        super().commit()

    def rollback(self) -> None:
        ops = _on()
        if ops is not None:
            ops.append(("r", "", None))
        super().rollback()


_connect = sqlite3.connect


def _recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


def install() -> None:
    """Connections opened from now on can record (SQLAlchemy opens them with `sqlite3.dbapi2.connect`)."""
    sqlite3.connect = sqlite3.dbapi2.connect = _recording_connect  # type: ignore[assignment]


@contextmanager
def record() -> Iterator[list[Op]]:
    global _ops
    _ops = ops = []
    try:
        yield ops
    finally:
        _ops = None


def replay(ops: list[Op], path: str, pragmas: tuple[str, ...]) -> float:
    """Seconds to run `ops` on the database at `path` (isolation handled by the recorded BEGINs)."""
    db = _connect(path, isolation_level=None)
    for pragma in pragmas:
        db.execute("PRAGMA " + pragma)
    cur = db.cursor()
    start = time.perf_counter()
    for kind, sql, params in ops:
        if kind == "x":
            cur.execute(sql, params).fetchall()
        elif kind == "m":
            cur.executemany(sql, params)
        elif kind == "c":
            db.commit()
        else:
            db.rollback()
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed
