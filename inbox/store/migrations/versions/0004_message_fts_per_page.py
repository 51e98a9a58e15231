"""message full-text index maintained per page by the ingest

SQLite: the per-row AFTER INSERT trigger on message (FTS5 insert per row) is the most expensive
part of storing a message. The trigger stays for every writer, but skips its row while the
one-row table `message_fts_deferred` is non-empty: the page ingest fills it inside its write
transaction, inserts the page's messages, indexes them with one `INSERT INTO message_fts ...
SELECT` and empties it again before the commit (inbox/store/fts.py `deferred_index`). Nobody else
ever sees it non-empty: it is only written inside that one transaction (and rolled back with it).
PostgreSQL: nothing to do (the GIN expression index is maintained by the server).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    "CREATE TABLE IF NOT EXISTS message_fts_deferred (id INTEGER PRIMARY KEY)",
    "DROP TRIGGER IF EXISTS message_fts_ai",
    "CREATE TRIGGER message_fts_ai AFTER INSERT ON message "
    "WHEN NOT EXISTS (SELECT 1 FROM message_fts_deferred) BEGIN "
    "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS message_fts_ai",
    "CREATE TRIGGER message_fts_ai AFTER INSERT ON message BEGIN "
    "INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
    "DROP TABLE IF EXISTS message_fts_deferred",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for stmt in SQLITE_UP:
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for stmt in SQLITE_DOWN:
            op.execute(stmt)
