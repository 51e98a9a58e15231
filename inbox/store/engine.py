"""Engines and schema: SQLite by default (WAL, busy timeout, foreign keys), PostgreSQL by URL."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from inbox.runtime.files import create_private
from inbox.store.types import dumps

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(url: URL) -> str | None:
    """The path of the SQLite file a URL names; None in memory, for a URI filename (opened with its
    own options) or another backend: what helpers that open the file themselves can work with."""
    if not url.drivername.startswith("sqlite"):
        return None
    path = url.database
    if not path or path == ":memory:" or url.query.get("uri"):
        return None
    return path


def _use_wal(cur: Any, wait_seconds: float = 30.0) -> None:
    """Switch a SQLite file to WAL (persistent, so usually already done).

    Changing the journal mode needs the database to itself and SQLite answers "database is locked"
    at once instead of waiting (no busy handler), e.g. while another process builds a new
    database. So: skip when already WAL, else retry for a while.
    """
    import sqlite3  # here, not at the top: PostgreSQL commands never need the module

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            mode = str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode not in ("wal", "memory"):
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine with the connection settings the store relies on."""
    kw.setdefault("json_serializer", dumps)
    # Statement parameters are customer text: never in an error's message (logs, last_error, the CLI).
    kw.setdefault("hide_parameters", True)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = sqlite_file(sa.engine.make_url(url))
        if path:
            create_private(path)  # before SQLite creates it 0644; its WAL and SHM files follow its mode
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy issue BEGIN itself so BEGIN IMMEDIATE is possible (claims, leases).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _use_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "BEGIN")
            conn.exec_driver_sql(mode)

        return engine
    if url.startswith(("postgresql+psycopg:", "postgresql+psycopg2:")):
        # No hstore columns here: skip the dialect's type lookup on every new connection (a query
        # and a round trip that every PostgreSQL command would pay at start).
        kw.setdefault("use_native_hstore", False)
    engine = sa.create_engine(url, pool_pre_ping=True, **kw)

    @event.listens_for(engine, "do_connect")
    def _name_the_connection(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        # pg_stat_activity then says which process holds a lock another one waits for (inbox.store.sqlite_lock);
        # computed per connection, as forked workers open their own. A name given in the URL wins.
        cparams.setdefault("application_name", application_name())

    return engine


def application_name() -> str:
    """What a PostgreSQL connection of this process says it is (pg_stat_activity; 63 bytes at most)."""
    return f"inbox pid {os.getpid()} on {socket.gethostname()}".encode()[:63].decode("utf-8", "ignore")


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it takes the write lock up front (no lock-upgrade deadlocks)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with conn.begin():
            yield conn


# The page writer's own connection settings (SQLite). A page dirties index pages all over the
# store (messages of many threads, tickets, conversations): checkpointing the WAL every 1,000
# pages (SQLite's default) copies and syncs the same hot pages again and again, and the default
# 2 MB page cache re-reads them. Durability is unchanged (WAL, synchronous=NORMAL, above).
WRITER_PRAGMAS = ("wal_autocheckpoint=10000", "cache_size=-16000")


def tune_sqlite_writer(conn: Connection) -> None:
    """Apply WRITER_PRAGMAS to a page writer's SQLite connection (once per pooled connection)."""
    info = conn.connection.info
    if info.get("ingest_tuned"):
        return
    driver = conn.connection.driver_connection
    for pragma in WRITER_PRAGMAS:
        driver.execute("PRAGMA " + pragma)  # type: ignore[union-attr]
    info["ingest_tuned"] = True
