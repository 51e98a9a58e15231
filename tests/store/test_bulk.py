"""inbox/store/fastpath.py: the page path's statements give the same answers on both backends."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from inbox.store.fastpath import execute, in_values, insert_values, many, one_of, select
from inbox.store.models import Person

_p = Person.__table__
T0 = datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=timezone.utc)


def test_many_select_execute_and_lists_as_one_parameter(engine):
    names = ("display_name", "created_at")
    with engine.begin() as conn:
        many(conn, "t:person+", lambda: insert_values(conn, _p, names), names, [("Rina", T0), ("Budi", T0), ("Dewi", T0)])

        def by_name():
            return sa.select(_p.c.id, _p.c.display_name, _p.c.created_at).where(in_values(conn, _p.c.display_name, "names")).order_by(_p.c.id)

        rows = select(conn, "t:person?names", by_name, names=["Dewi", "Rina", "nobody"])
        assert [r.display_name for r in rows] == ["Rina", "Dewi"]
        assert rows[0].created_at == T0 and rows[0].created_at.tzinfo is not None  # aware UTC back
        assert select(conn, "t:person?names", by_name, names=[]) == []  # an empty list matches nothing
        done = execute(
            conn, "t:person~rename",
            lambda: sa.update(_p).where(_p.c.id == sa.bindparam("pid")).values(display_name=sa.bindparam("new")),
            pid=rows[0].id, new="Rina W",
        )
        assert done == 1
        assert [r.display_name for r in select(conn, "t:person?names", by_name, names=["Rina W"])] == ["Rina W"]


def test_one_key_is_one_statement_with_one_parameter_order(sqlite_engine):
    with sqlite_engine.connect() as conn:
        build = lambda: sa.select(_p.c.id).where(_p.c.id == sa.bindparam("a"), _p.c.display_name == sa.bindparam("b"))  # noqa: E731
        assert select(conn, "t:order", build, a=1, b="x") == []
        with pytest.raises(ValueError, match="compiled for parameters"):
            select(conn, "t:order", build, b="x", a=1)


def test_a_statement_run_once_per_row_never_holds_an_in_list(engine):
    """An IN list (expanding parameter) cannot run with a list of parameter sets: SQLAlchemy refuses it
    from the second row on, so it passed every test with one pending row. `many` refuses it on every
    backend from the first row; `one_of` is the per-row spelling of an IN over constants."""
    names = ("display_name", "created_at")
    with engine.begin() as conn:
        many(conn, "t:person+", lambda: insert_values(conn, _p, names), names, [("Rina", T0), ("Budi", T0), ("Dewi", T0)])
        ids = [r.id for r in select(conn, "t:person?all", lambda: sa.select(_p.c.id).order_by(_p.c.id))]

        def with_in_list():
            return sa.update(_p).where(_p.c.id == sa.bindparam("b_id"), _p.c.display_name.in_(["Rina", "Budi"])).values(display_name="x")

        def with_in_values():
            return sa.update(_p).where(in_values(conn, _p.c.id, "b_ids")).values(display_name="x")

        with pytest.raises(ValueError, match="IN-list"):
            many(conn, "t:person~in-list", with_in_list, ("b_id",), [(ids[0],)])  # one row is enough to be refused
        if conn.dialect.name != "sqlite":  # on SQLite in_values is one JSON parameter, not a list
            with pytest.raises(ValueError, match="IN-list"):
                many(conn, "t:person~in-values", with_in_values, ("b_ids",), [(ids,)])
        many(
            conn, "t:person~one-of",
            lambda: sa.update(_p).where(_p.c.id == sa.bindparam("b_id"), one_of(_p.c.display_name, ("Rina", "Budi"))).values(display_name="x"),
            ("b_id",), [(i,) for i in ids],
        )
        got = [r.display_name for r in select(conn, "t:person?all2", lambda: sa.select(_p.c.display_name).order_by(_p.c.id))]
        assert got == ["x", "x", "Dewi"]


JSON_VALUES = [
    None,
    {},
    [],
    {"id": "m_1", "message": "Halo kak 🙏 pesanan INV/20261101/MPL/1234567890", "nested": {"a": [1, 2.5, True, None]}},
    {"big": 2**70},  # beyond 64 bits: orjson refuses it, json.dumps writes it
    {"nan": float("nan"), "inf": float("inf")},
    {1: "non-string key"},
    "a bare string",
    {"nul": "a\x00b", "bidi": "\u202eabc", "surrogate-free": "\U0001f600"},
]


def test_a_json_column_is_stored_as_sqlalchemy_would_store_it(engine):
    """The page path binds JSON values itself (the serializer called directly on SQLite): each value
    is stored byte for byte as an ordinary SQLAlchemy insert of the same column type stores it."""
    docs = sa.Table("t_json_docs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("doc", sa.JSON))
    docs.create(engine)
    try:
        n = len(JSON_VALUES)
        with engine.begin() as conn:
            for i, value in enumerate(JSON_VALUES):
                conn.execute(sa.insert(docs).values(id=i, doc=value))
            many(conn, "t:json+", lambda: insert_values(conn, docs, ("id", "doc")), ("id", "doc"), [(n + i, v) for i, v in enumerate(JSON_VALUES)])
            stored = dict(conn.execute(sa.select(docs.c.id, sa.cast(docs.c.doc, sa.Text))).all())
        for i, value in enumerate(JSON_VALUES):
            assert stored[n + i] == stored[i], value
        assert stored[0] == "null" and stored[n] == "null"  # None is JSON null, not SQL NULL, both ways
        with engine.begin() as conn:  # SQLAlchemy's own markers mean what they mean there
            for offset, marker in ((100, sa.JSON.NULL), (200, sa.null())):
                conn.execute(sa.insert(docs).values(id=offset, doc=marker))
                many(conn, "t:json+", lambda: insert_values(conn, docs, ("id", "doc")), ("id", "doc"), [(offset + 1, marker)])
            marked = dict(conn.execute(sa.select(docs.c.id, sa.cast(docs.c.doc, sa.Text)).where(docs.c.id >= 100)).all())
        assert marked[101] == marked[100] == "null" and marked[201] is marked[200] is None
    finally:
        docs.drop(engine)
