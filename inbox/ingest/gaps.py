"""Gaps: threads whose older messages the platform no longer shows, with what is known of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import Gap
from inbox.store.fastpath import in_values, insert_values, many, select
from inbox.store.tables import message as _m, sync_gap as _gap

if TYPE_CHECKING:
    from inbox.ingest.writer import PageWriter


@dataclass(frozen=True, slots=True)
class GapSize:
    missing: int | None  # None: the platform did not say how many the thread holds
    after: datetime | None  # the thread's newest stored message before the gap; None: since it began
    before: datetime | None  # its oldest readable message


def gap_sizes(w: PageWriter, gaps: tuple[Gap, ...], convs: dict[str, tuple[int, int | None, int | None]]) -> list[tuple[Gap, GapSize]]:
    """Each gap with what is known of the messages it lost.

    None of the thread's readable messages is stored (that is what makes it a gap), so what the
    store holds of the thread is older: its newest message is where the missing ones begin, and
    the platform's count of the thread, less the readable and the stored, is how many are
    missing. A thread whose older messages are all stored lost nothing: no gap.
    """
    if not gaps:
        return []
    conn = w.conn
    conv_ids = sorted({convs[g.thread_id][0] for g in gaps if g.thread_id in convs})
    stored: dict[int, tuple[int, Any]] = {}
    if conv_ids:
        rows = select(
            conn,
            "message?gap",
            lambda: sa.select(_m.c.conversation_id, sa.func.count().label("n"), sa.func.max(_m.c.sent_at).label("newest"))
            .where(in_values(conn, _m.c.conversation_id, "convs"))
            .group_by(_m.c.conversation_id),
            convs=conv_ids,
        )
        stored = {r.conversation_id: (int(r.n), r.newest) for r in rows}
    out = []
    for gap in gaps:
        conv = convs.get(gap.thread_id)
        count, newest = stored.get(conv[0], (0, None)) if conv else (0, None)
        missing = None if gap.older is None else gap.older - count
        if missing is not None and missing <= 0:
            continue
        out.append((gap, GapSize(missing, newest, gap.oldest_readable_at)))
    return out


def write_gaps(w: PageWriter, gap_rows: list[tuple[Gap, GapSize, int | None]], tid: Any) -> int:
    names = ("account_id", "conversation_external_id", "ticket_id", "detail", "detected_at", "missing", "missing_after", "missing_before")
    many(
        w.conn,
        "gap+",
        lambda: insert_values(w.conn, _gap, names),
        names,
        [
            (w.ref.id, gap.thread_id, tid(key), gap.detail, w.now, size.missing, size.after, size.before)
            for gap, size, key in gap_rows
        ],
    )
    return len(gap_rows)
