"""The store: migrations from empty, models and migrations in agreement, unique keys, concurrent first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from inbox.store import migrate, open_store
from inbox.store.engine import make_engine

EXPECTED_TABLES = {
    "account", "person", "contact", "person_event", "ticket", "ticket_tag", "ticket_event",
    "conversation", "message", "reply", "sync_state", "sync_gap", "quarantine",
}


def _model_tables() -> set[str]:
    from sqlmodel import SQLModel

    import inbox.store.models  # noqa: F401

    return set(SQLModel.metadata.tables)


def test_migrations_from_empty_reach_head(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        before = migrate.status(engine)
        assert before.current is None
        assert before.head is not None and before.pending[-1] == before.head

        applied = migrate.upgrade(engine)
        assert applied == before.pending

        current, head, pending = migrate.status(engine)
        assert (current, head, pending) == (before.head, before.head, [])
        tables = set(sa.inspect(engine).get_table_names())
        assert EXPECTED_TABLES <= tables
        assert _model_tables() <= tables
        assert migrate.upgrade(engine) == []  # second run: nothing to do
    finally:
        engine.dispose()


def test_no_drift_between_models_and_migrations(engine: sa.Engine) -> None:
    """Drift check: autogenerate against a migrated database finds nothing to add or change.

    If this fails after a model change, write a revision: `python -m inbox.store.migrate revision -m "..."`.
    """
    with engine.connect() as conn:
        diff = migrate.drift(conn)
    assert diff == [], f"models and migrations differ on {engine.dialect.name}: {diff}"


def test_drift_check_sees_a_model_change(sqlite_engine: sa.Engine) -> None:
    """The drift check is not vacuous: a column the migrations lack shows up."""
    from sqlmodel import SQLModel

    copy = sa.MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(copy)
    copy.tables["ticket"].append_column(sa.Column("drift_probe", sa.Integer, nullable=True))
    with sqlite_engine.connect() as conn:
        assert migrate.drift(conn) == []
        diff = migrate.drift(conn, copy)
    assert [d[0] for d in diff] == ["add_column"] and diff[0][3].name == "drift_probe"


def test_head_read_without_alembic_matches_alembic() -> None:
    assert migrate.head_revision() == migrate._script().get_current_head()


def test_sqlite_pragmas_survive_upgrade(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def _seed_account(conn: sa.Connection) -> int:
    from inbox.store.models import Account

    return conn.execute(
        sa.insert(Account.__table__).values(name="fb-main", channel="facebook", platform_id="1001", created_at=datetime.now(timezone.utc), needs_reauth=False).returning(Account.__table__.c.id)  # type: ignore[attr-defined]
    ).scalar_one()


def test_unique_keys_reject_a_duplicate_message(engine: sa.Engine) -> None:
    from inbox.store.models import Contact, Conversation, Message

    now = datetime.now(timezone.utc)
    msg_t = Message.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        acc = _seed_account(conn)
        conv = conn.execute(
            sa.insert(Conversation.__table__).values(channel="facebook", account_id=acc, external_id="t_1", created_at=now).returning(Conversation.__table__.c.id)  # type: ignore[attr-defined]
        ).scalar_one()
        row = dict(channel="facebook", account_id=acc, external_id="m_1", conversation_id=conv, direction="in",
                   author_id="u1", kind="text", sent_at=now, received_at=now, text="halo")
        conn.execute(sa.insert(msg_t).values(**row))
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.insert(msg_t).values(**{**row, "text": "again"}))
    # The same external id on another account is a different message.
    with engine.begin() as conn:
        from inbox.store.models import Account

        acc2 = conn.execute(sa.insert(Account.__table__).values(name="fb-2", channel="facebook", platform_id="1002", created_at=now, needs_reauth=False).returning(Account.__table__.c.id)).scalar_one()  # type: ignore[attr-defined]
        conv2 = conn.execute(sa.insert(Conversation.__table__).values(channel="facebook", account_id=acc2, external_id="t_1", created_at=now).returning(Conversation.__table__.c.id)).scalar_one()  # type: ignore[attr-defined]
        conn.execute(sa.insert(msg_t).values(**{**row, "account_id": acc2, "conversation_id": conv2}))
        assert conn.execute(sa.select(sa.func.count()).select_from(msg_t)).scalar_one() == 2
    for table, values in (
        (Conversation.__table__, dict(channel="facebook", account_id=acc, external_id="t_1", created_at=now)),  # type: ignore[attr-defined]
        (Contact.__table__, dict(channel="facebook", account_id=acc, platform_user_id="u1", created_at=now)),  # type: ignore[attr-defined]
    ):
        if table.name == "contact":
            with engine.begin() as conn:
                conn.execute(sa.insert(table).values(**values))
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.insert(table).values(**values))


def test_foreign_keys_enforced(engine: sa.Engine) -> None:
    from inbox.store.models import Conversation

    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.insert(Conversation.__table__).values(channel="x", account_id=999, external_id="c", created_at=datetime.now(timezone.utc)))  # type: ignore[attr-defined]


def test_tables_without_history_are_refused(tmp_path: Path) -> None:
    from sqlmodel import SQLModel

    import inbox.store.models  # noqa: F401
    from inbox.errors import ConfigError

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        SQLModel.metadata.create_all(engine)
        with pytest.raises(ConfigError, match="no migration history"):
            migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_database_newer_than_code_is_reported(tmp_path: Path) -> None:
    from inbox.errors import ConfigError

    engine = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(ConfigError, match="does not know"):
            migrate.status(engine)
    finally:
        engine.dispose()


_RACER = textwrap.dedent(
    """
    import sys, time
    from inbox.store import open_store
    from inbox.store import migrate
    url, start = sys.argv[1], float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    engine = open_store(url)
    print(migrate.status(engine).current)
    """
)


def test_concurrent_first_use_by_two_processes(db_url: str) -> None:
    """Two processes opening the same new database at once: both succeed, the schema is built once."""
    start = time.time() + 1.5  # both interpreters are up and waiting by then
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, db_url, str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    head = migrate.head_revision()
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert out.strip() == head
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()


def test_opening_a_current_database_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fast.db'}"
    open_store(url).dispose()
    code = f"import sys; from inbox.store import open_store; open_store({url!r}); print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_sqlite_file_names_only_a_file_the_helpers_can_open_themselves():
    from sqlalchemy.engine import make_url

    from inbox.store.engine import sqlite_file

    assert sqlite_file(make_url("sqlite:///data/inbox.db")) == "data/inbox.db"
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x.db?mode=ro&uri=true", "postgresql+psycopg://u@h/inbox"):
        assert sqlite_file(make_url(url)) is None, url
