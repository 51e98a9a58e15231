"""Bulk statements on the page-ingest path: SQLAlchemy Core compiled once, run on the driver.

A page runs a fixed handful of statements, a thousand pages a sync. Through `Connection.execute`
each statement costs a fraction of a millisecond of Python (cache key, parameter processing,
result rows), and an `IN (...)` list renders new SQL for every length, which SQLite then parses
again. On SQLite these helpers compile each statement once, pass lists as one JSON parameter
(`IN (SELECT value FROM json_each(?))`, so the SQL text never changes and the driver's statement
cache hits), convert values with the columns' own bind processors, and run on the DBAPI cursor.
On PostgreSQL they are plain SQLAlchemy calls.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import Null

from inbox.store.types import UTCDateTime, dumps

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

def upsert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`."""
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)


def insert_values(conn: Connection, table: sa.Table, names: tuple[str, ...], *, ignore: list[str] | None = None) -> Any:
    """INSERT of `names` (bound by column name), `ON CONFLICT (ignore) DO NOTHING` when given."""
    stmt = upsert(conn, table)
    if ignore:
        stmt = stmt.on_conflict_do_nothing(index_elements=ignore)
    return stmt.values({n: sa.bindparam(n, type_=table.c[n].type) for n in names})


def in_values(conn: Connection, col: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """`col IN (the list passed as parameter `name`)`, as SQL text that does not depend on its length."""
    if conn.dialect.name == "sqlite":
        each = sa.func.json_each(sa.bindparam(name, type_=_JSONList())).table_valued("value")
        return col.in_(sa.select(each.c.value))
    return col.in_(sa.bindparam(name, expanding=True))


def one_of(col: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """`col IN (values)` for constants, written as `col = a OR col = b`: usable in a statement run
    once per row (`many`), where an IN list (an expanding parameter) is refused."""
    return sa.or_(*(col == v for v in values))


def expanding_params(stmt: Any) -> list[str]:
    """The statement's expanding (IN-list) or literal-execute parameters.

    SQLAlchemy renders those anew for each execution, so a statement holding one cannot be run
    with a list of parameter sets (executemany): it fails as soon as two rows are given, and
    SQLite's prepared fast path cannot render it at all.
    """
    from sqlalchemy.sql import visitors

    return [
        str(getattr(b, "_orig_key", None) or b.key)  # a column name for anonymous parameters
        for b in visitors.iterate(stmt)
        if isinstance(b, sa.BindParameter) and (b.expanding or b.literal_execute)
    ]


def _refuse_expanding(key: str, stmt: Any) -> None:
    found = expanding_params(stmt)
    if found:
        raise ValueError(
            f"statement {key!r} is prepared once and run with bound rows, but has IN-list parameters "
            f"({', '.join(found)}): use fastpath.one_of for constants, fastpath.in_values in a single statement"
        )


class _JSONList(sa.types.TypeDecorator[list[Any]]):
    """A Python list bound as one JSON array (SQLite's json_each reads it)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str:
        # orjson (`inbox.store.types.dumps`): the same array for json_each, a few times faster
        # than json.dumps; a page binds a list to most of its reads.
        return dumps(list(value))


@lru_cache(maxsize=8192)  # a page's timestamps recur across its statements (message, ticket, thread)
def sqlite_utc(value: datetime | None) -> str | None:
    """UTCDateTime's bind value on SQLite: naive UTC in SQLAlchemy's storage format
    ("2026-11-20 09:00:00.000000"; stored values are compared as text), in one C call."""
    if value is None:
        return None
    tz = value.tzinfo
    if tz is not timezone.utc:
        if tz is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


@lru_cache(maxsize=1 << 14)  # the same tickets and messages are read again page after page
def _sqlite_utc_result(value: str | None) -> datetime | None:
    """A stored UTCDateTime back as an aware datetime (one C call, not the generic processors).

    Memoized (datetimes are immutable): parsing costs ~1 µs, and a page re-reads the timestamps
    of its threads' tickets and recent messages that the pages before it read already."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


def _json_bind(type_: sa.JSON, dialect: sa.Dialect, proc: Any) -> Any:
    """A JSON column's bind processor: None is JSON null ('null').

    With no string processing on top (SQLite's), SQLAlchemy's processor is the dialect's JSON
    serializer called through two layers: that serializer is called directly (a page binds
    one raw payload per message)."""
    serializer = getattr(dialect, "_json_serializer", None)
    str_impl = getattr(type_, "_str_impl", None)  # SQLAlchemy's own attributes: without them, its processor
    if serializer is not None and str_impl is not None and str_impl.bind_processor(dialect) is None:

        json_null = type_.NULL

        def direct(value: Any) -> Any:
            if value is None or value is json_null:
                return "null"
            if type(value) is not dict and isinstance(value, Null):  # sa.null(): SQL NULL, as SQLAlchemy's
                return None
            return serializer(value)

        return direct

    def process(value: Any) -> Any:
        return "null" if value is None else proc(value)

    return process


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    index: tuple[int, ...]  # per positional parameter: its position in the caller's values, -1: a constant
    consts: tuple[Any, ...]  # per positional parameter: the statement's own value, converted (literals)
    procs: tuple[tuple[int, Any], ...]  # (value position, bind processor): each value converted once
    identity: bool  # parameters are exactly the caller's values, in order
    names: tuple[str, ...] = ()  # the caller's value names, in order
    row: Any = None  # SELECT: a namedtuple of the result columns
    results: tuple[tuple[int, Any], ...] = ()  # SELECT: (column position, result processor)


_cache: dict[tuple[int, str], _Compiled] = {}
_checked: set[tuple[int, str]] = set()  # statements of `many` checked for IN lists (not compiled here)


def _compile(conn: Connection, key: str, build: Callable[[], Any], names: Sequence[str]) -> _Compiled:
    """`build()` compiled once for SQLite's positional paramstyle, with each parameter's own bind
    processor (UTC datetimes, JSON, booleans), so values reach the driver converted exactly as
    SQLAlchemy would convert them."""
    cache_key = (id(conn.dialect), key)
    done = _cache.get(cache_key)
    if done is not None:
        if done.names != tuple(names):  # one key, one statement, one parameter order
            raise ValueError(f"statement {key!r} compiled for parameters {done.names}, given {tuple(names)}")
        return done
    dialect = conn.dialect
    stmt = build()
    _refuse_expanding(key, stmt)
    compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ())
    index = tuple(names.index(n) if n in names else -1 for n in order)
    processors: dict[str, Any] = {}
    for name in dict.fromkeys(order):
        type_ = compiled.binds[name].type
        if isinstance(type_, UTCDateTime):
            processors[name] = sqlite_utc
        elif (proc := type_._cached_bind_processor(dialect)) is not None:
            processors[name] = _json_bind(type_, dialect, proc) if isinstance(type_, sa.JSON) else proc
    consts = []
    for name, i in zip(order, index):
        value = None if i >= 0 else compiled.binds[name].effective_value
        consts.append(processors[name](value) if i < 0 and name in processors else value)
    procs = tuple((names.index(n), p) for n, p in processors.items() if n in names)
    row, results = None, ()
    if compiled._result_columns:
        columns = compiled._result_columns
        row = namedtuple("row", [c[0] for c in columns], rename=True)  # type: ignore[misc]
        found = []
        for pos, col in enumerate(columns):
            type_ = col[3]
            if isinstance(type_, UTCDateTime):
                found.append((pos, _sqlite_utc_result))
            elif (proc := type_._cached_result_processor(dialect, None)) is not None:
                found.append((pos, proc))
        results = tuple(found)
    done = _cache[cache_key] = _Compiled(
        str(compiled), index, tuple(consts), procs, index == tuple(range(len(names))), tuple(names), row, results
    )
    return done


def _params(c: _Compiled, rows: list[tuple[Any, ...]]) -> Any:
    """The driver's parameter tuples for `rows` (values in the caller's order)."""
    if c.identity and not c.procs:
        return rows
    # Column by column: zip/map iterate in C, and a page's repeated values (its timestamp,
    # JSON null) are converted once per distinct value.
    cols: list[Any] = list(zip(*rows))
    for pos, proc in c.procs:
        col = cols[pos]
        if proc is sqlite_utc:  # memoized itself: one call per value costs less than the set and dict
            cols[pos] = list(map(proc, col))
            continue
        try:
            converted = {v: proc(v) for v in set(col)}
            cols[pos] = list(map(converted.__getitem__, col))
        except TypeError:  # unhashable values (lists, JSON documents): one call each
            cols[pos] = list(map(proc, col))
    if not c.identity:
        cols = [cols[i] if i >= 0 else (k,) * len(rows) for i, k in zip(c.index, c.consts)]
    return list(zip(*cols))


def _one(conn: Connection, key: str, build: Callable[[], Any], params: dict[str, Any]) -> tuple[_Compiled, Any]:
    """The compiled statement and the driver's parameter tuple for one call (SQLite)."""
    c = _compile(conn, key, build, tuple(params))
    (args,) = _params(c, [tuple(params.values())])  # no values and no constants: ()
    return c, args


def many(conn: Connection, key: str, build: Callable[[], Any], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Run the statement once per row (`rows` hold the values of `names`, in that order).

    SQLite: one `executemany` of prepared tuples on the DBAPI cursor (SQLite's fast path, no
    per-row statement handling in Python). Other backends: SQLAlchemy's executemany of dicts.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        stmt = build()
        checked = (id(conn.dialect), key)
        if checked not in _checked:  # refused on every backend, whatever the number of rows
            _refuse_expanding(key, stmt)
            _checked.add(checked)
        conn.execute(stmt, [dict(zip(names, r)) for r in rows])
        return
    c = _compile(conn, key, build, names)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(c.sql, _params(c, rows))
    finally:
        cur.close()


def select(conn: Connection, key: str, build: Callable[[], Any], **params: Any) -> list[Any]:
    """The rows of a SELECT (attribute access by column name). Lists go in through `in_values`."""
    if conn.dialect.name != "sqlite":
        return conn.execute(build(), params).all()  # type: ignore[no-any-return]
    c, args = _one(conn, key, build, params)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows = cur.execute(c.sql, args).fetchall()
    finally:
        cur.close()
    if c.results and rows:
        cols = list(zip(*rows))
        for pos, proc in c.results:
            cols[pos] = map(proc, cols[pos])
        rows = zip(*cols)
    return list(map(c.row._make, rows))


def execute(conn: Connection, key: str, build: Callable[[], Any], **params: Any) -> int:
    """Run one INSERT / UPDATE / DELETE; its row count."""
    if conn.dialect.name != "sqlite":
        return int(conn.execute(build(), params).rowcount)
    c, args = _one(conn, key, build, params)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return int(cur.execute(c.sql, args).rowcount)
    finally:
        cur.close()
