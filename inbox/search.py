"""Full-text search over messages, returning tickets (the index and its SQL: `inbox.store.fts`).

The user's query is never spliced into SQL or into FTS syntax: it is split into words, each word
into its alphanumeric parts, and every part is bound as a parameter (a word with several parts,
like `INV/20261120/MPL/3817265540`, becomes a phrase of its first MAX_PARTS parts). All words must match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from inbox.errors import UsageError
from inbox.store import tables as tb
from inbox.store.fts import matching_message_ids
from inbox.store.types import utcnow
from inbox.tickets.queue import TicketFilter, TicketRow, list_tickets

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

M = tb.message

MAX_WORDS = 12
# Parts of one word kept (an invoice number has 4): a phrase of thousands of parts exhausts
# PostgreSQL's stack and takes seconds in FTS5; its first parts still find every match of it.
MAX_PARTS = 24
# The newest matching messages considered: keeps a very common word bounded on a large store
# (results list the best tickets among the tickets of these messages).
MAX_MATCHES = 1000

_PART = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchHit:
    ticket: TicketRow
    message_id: int
    text: str | None  # the newest matching message of the ticket (display through inbox.safe_text)


def parse_query(query: str) -> list[list[str]]:
    """Words of the query, each as its list of alphanumeric parts (a phrase when several)."""
    words = [[p.lower() for p in _PART.findall(w)][:MAX_PARTS] for w in query.split()]
    words = [w for w in words if w]
    if not words:
        raise UsageError("the search query has no words to look for")
    return words[:MAX_WORDS]


def search(
    engine: Engine,
    query: str,
    flt: TicketFilter | None = None,
    *,
    now: datetime | None = None,
    max_matches: int = MAX_MATCHES,
) -> list[SearchHit]:
    """Tickets whose messages match every word, filtered and sorted as `inbox list`."""
    words = parse_query(query)
    flt = flt or TicketFilter()
    with engine.connect() as conn:
        matches = matching_message_ids(conn, words, max_matches)
    newest: dict[int, int] = {}
    for mid, tid, _into in matches:  # newest first: the first match per ticket is its newest
        newest.setdefault(tid, mid)
    # A match in a merged ticket counts for the ticket it was merged into.
    for _mid, tid, into in matches:
        if into is not None:
            newest.setdefault(into, newest[tid])
    if not newest:
        return []
    rows = list_tickets(engine, replace(flt, ids=tuple(newest)), now=now or utcnow())
    texts: dict[int, str | None] = {}
    with engine.connect() as conn:
        wanted = [newest[r.id] for r in rows]
        if wanted:
            texts = dict(conn.execute(sa.select(M.c.id, M.c.text).where(M.c.id.in_(wanted))).all())
    return [SearchHit(r, newest[r.id], texts.get(newest[r.id])) for r in rows]

