"""The full-text index of messages, and the SQL that reads it.

SQLite: the FTS5 table `message_fts` (external content over message.text, kept by triggers;
migration 0002; the page ingest indexes its messages in one statement instead, `deferred_index`,
migration 0004). PostgreSQL: a GIN index on a `simple`-config tsvector of the text with
punctuation turned into spaces, so an invoice number matches whole or by its parts. The `simple`
configuration does no stemming: right for mixed Indonesian and English, where an English stemmer
would mangle Indonesian words.

Queries arrive here as words already split into their alphanumeric parts (`inbox.search.parse_query`);
every part is bound as a parameter, never spliced into SQL or FTS syntax.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from inbox.store import tables as tb

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

M = tb.message

# Must be the exact expression of ix_message_text_fts (migration 0002) for the index to be used.
PG_TSVECTOR = "to_tsvector('simple'::regconfig, regexp_replace(coalesce(message.text, ''), '[^[:alnum:]]+', ' ', 'g'))"


@contextmanager
def deferred_index(conn: Connection) -> Iterator[int | None]:
    """Index the messages inserted inside the block with one statement instead of one per row.

    For a writer holding SQLite's write lock (BEGIN IMMEDIATE): the per-row trigger skips rows
    while `message_fts_deferred` is non-empty, and the block's new messages (ids above the
    highest before it; the lock means they are all ours) go into `message_fts` in one
    `INSERT ... SELECT`. The flag row is written and removed inside the caller's transaction, so
    no other connection ever sees it. Other backends: nothing to do.

    Yields the highest message id before the block on SQLite (the block's inserts take the ids
    after it, in order), None elsewhere.
    """
    if conn.dialect.name != "sqlite":
        yield None
        return
    # On the DBAPI cursor: four small statements per page, not worth SQLAlchemy's per-call work.
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        top = cur.execute("SELECT coalesce(max(id), 0) FROM message").fetchone()[0]
        cur.execute("INSERT INTO message_fts_deferred (id) VALUES (1)")
        yield int(top)
        cur.execute("INSERT INTO message_fts (rowid, text) SELECT id, text FROM message WHERE id > ?", (top,))
        cur.execute("DELETE FROM message_fts_deferred")
    finally:
        cur.close()


def _fts5_query(words: list[list[str]]) -> str:
    # Parts contain only \w characters, so quoting them makes plain FTS5 strings/phrases;
    # the whole string is still passed as a bound parameter.
    return " ".join('"' + " ".join(parts) + '"' for parts in words)


def matching_message_ids(conn: Connection, words: list[list[str]], limit: int) -> list[tuple[int, int, int | None]]:
    """(message id, ticket id, the ticket's merged_into_id) of the newest matching messages, newest first."""
    tt = tb.ticket
    if conn.dialect.name == "sqlite":
        fts = sa.text(
            "SELECT m.id, m.ticket_id, t.merged_into_id FROM message AS m JOIN ticket AS t ON t.id = m.ticket_id"
            " WHERE m.id IN ("
            " SELECT rowid FROM message_fts WHERE message_fts MATCH :q ORDER BY rowid DESC LIMIT :n"
            ") ORDER BY m.id DESC"
        )
        rows = conn.execute(fts, {"q": _fts5_query(words), "n": limit}).all()
    else:
        if conn.dialect.name == "postgresql":
            query = None
            for parts in words:
                part = sa.func.phraseto_tsquery(sa.literal_column("'simple'::regconfig"), sa.bindparam(None, " ".join(parts)))
                query = part if query is None else query.op("&&")(part)
            conds = [sa.literal_column(PG_TSVECTOR).op("@@")(query)]
        else:  # pragma: no cover - other backends: a plain scan, still parameterized
            conds = [M.c.text.ilike(f"%{' '.join(parts)}%") for parts in words]
        rows = conn.execute(
            sa.select(M.c.id, M.c.ticket_id, tt.c.merged_into_id)
            .select_from(M.join(tt, tt.c.id == M.c.ticket_id))
            .where(*conds)
            .order_by(M.c.id.desc())
            .limit(limit)
        ).all()
    return [(int(r[0]), int(r[1]), r[2]) for r in rows]
