"""Export tickets with their messages as JSON Lines (one ticket per line) or CSV (one message per row).

Streams in batches (keyset on ticket id), so a large store exports in constant memory. CSV cells
that a spreadsheet would run as a formula (=, +, -, @ at the start, also after leading whitespace or
control characters, and their full-width and other compatibility forms) are prefixed with a quote and
terminal control sequences are removed: customer text is hostile, and exports get opened in
spreadsheets. JSON Lines keep the text exactly (control, C1 and bidi characters as JSON escapes).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.store import tables as tb
from inbox.safe_text import clean, json_safe
from inbox.timefmt import json_time
from inbox.tickets.queue import T, TicketFilter, TicketRow, _base_select, _row, _tags_for, filter_conditions

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

M = tb.message
A = tb.account
BATCH = 500
CSV_COLUMNS = (
    "ticket_id", "status", "priority", "channel", "account", "customer_handle", "customer_name", "assignee", "tags",
    "ticket_created", "message_id", "direction", "message_channel", "time", "author", "kind", "text", "platform_id", "attachments",
)


def iter_tickets(engine: Engine, flt: TicketFilter, *, now: datetime | None = None) -> Iterator[tuple[TicketRow, list[dict[str, Any]]]]:
    """(ticket, its messages as JSON dicts) in id order."""
    now = now or datetime.now(timezone.utc)
    flt = replace(flt, limit=BATCH).validate()
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                _base_select().where(*filter_conditions(flt, now), T.c.id > after).order_by(T.c.id).limit(BATCH)
            ).all()
            if not rows:
                return
            ids = [r.id for r in rows]
            tags = _tags_for(conn, ids)
            messages: dict[int, list[dict[str, Any]]] = {}
            for m in conn.execute(
                sa.select(M.c.id, M.c.ticket_id, M.c.direction, M.c.channel, A.c.name.label("account"), M.c.author_id,
                          M.c.author_handle, M.c.text, M.c.kind, M.c.sent_at, M.c.external_id, M.c.attachments)
                .select_from(M.join(A, A.c.id == M.c.account_id))
                .where(M.c.ticket_id.in_(ids))
                .order_by(M.c.sent_at, M.c.id)
            ):
                messages.setdefault(m.ticket_id, []).append(
                    {
                        "id": m.id,
                        "direction": m.direction,
                        "channel": m.channel,
                        "account": m.account,
                        "author": {"id": m.author_id, "handle": m.author_handle},
                        "text": m.text,
                        "time": json_time(m.sent_at),
                        "platform_id": m.external_id,
                        "kind": m.kind,
                        "attachments": m.attachments or [],
                    }
                )
        for r in rows:
            yield _row(r, tags.get(r.id, ())), messages.get(r.id, [])
        after = ids[-1]


# Spreadsheets skip leading whitespace and control characters before deciding that a cell is a
# formula ("\t=cmd|...", "\r=HYPERLINK(...)"): the guard looks past them too.
_FORMULA = re.compile(r"^[\s\x00-\x1f\x7f-\x9f\u200b\ufeff]*[=+\-@\uff1d\uff0b\uff0d\uff20]")
_LEADING_BLANK = re.compile(r"^[\s\x00-\x1f\x7f-\x9f\u200b\ufeff]*")


def _starts_formula(text: str) -> bool:
    if _FORMULA.match(text):
        return True
    # A compatibility form of = + - @ (small "﹦", superscript "⁺", full-width "＝"): a spreadsheet
    # that folds it to ASCII, as NFKC does, reads a formula.
    first = text[_LEADING_BLANK.match(text).end():][:1]  # type: ignore[union-attr]
    return bool(first) and unicodedata.normalize("NFKC", first)[:1] in ("=", "+", "-", "@")


def _cell(value: Any) -> str:
    # Terminal escapes and control characters go (CSV lands in terminals and spreadsheets alike).
    raw = "" if value is None else str(value)
    text = clean(raw)
    if _starts_formula(raw) or _starts_formula(text):
        return "'" + text
    return text


def write_jsonl(engine: Engine, flt: TicketFilter, out: IO[str]) -> int:
    n = 0
    for ticket, messages in iter_tickets(engine, flt):
        out.write(json_safe(json.dumps({**ticket.to_json(), "messages": messages}, ensure_ascii=False)) + "\n")
        n += 1
    return n


def write_csv(engine: Engine, flt: TicketFilter, out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for ticket, messages in iter_tickets(engine, flt):
        n += 1
        head = [ticket.id, ticket.status, ticket.priority, ticket.channel, ticket.account, ticket.customer_handle,
                ticket.customer_name, ticket.assignee, ";".join(ticket.tags), ticket.to_json()["created"]]
        for m in messages or [None]:  # a ticket without messages still gets a row
            tail = (
                [m["id"], m["direction"], m["channel"], m["time"], m["author"]["handle"] or m["author"]["id"], m["kind"],
                 m["text"], m["platform_id"], json.dumps(m["attachments"], ensure_ascii=False) if m["attachments"] else ""]
                if m else [""] * 9
            )
            writer.writerow([_cell(v) for v in head + tail])
    return n
