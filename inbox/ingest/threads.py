"""A page's customers and threads: contacts and conversations upserted on their platform ids, and
a Meta webhook's provisional thread renamed once a poll names the real one."""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage
from connectors.meta_webhook import PROVISIONAL, provisional_thread
from inbox.dedup.identity import ContactInfo
from inbox.store.fastpath import insert_values, many
from inbox.store.models import Contact, Conversation
from connectors.channels import CHANNELS

if TYPE_CHECKING:
    from inbox.ingest.writer import PageWriter

_c = Contact.__table__
_v = Conversation.__table__

_META_CHANNELS = {value for value, info in CHANNELS.items() if info.webhook_object}  # whose webhooks may leave a provisional thread


def upsert_contacts(w: PageWriter, msgs: list[InboundMessage]) -> dict[str, ContactInfo]:
    if not msgs:
        return {}
    conn, ref = w.conn, w.ref
    wanted: dict[str, list[str | None]] = {}  # platform user id -> [handle, name]
    for m in msgs:
        cust = m.customer
        known = wanted.get(cust.id)
        if known is None:
            known = wanted[cust.id] = [None, None]
        # best effort: the latest non-empty handle / name wins
        if cust.handle:
            known[0] = cust.handle[:255]
        if cust.name:
            known[1] = cust.name[:255]
    columns = (_c.c.id, _c.c.platform_user_id, _c.c.person_id, _c.c.handle, _c.c.name)
    found = _known(w, "contact", _c, columns, "platform_user_id", list(wanted), lambda uids: [
        (ref.channel, ref.id, uid, wanted[uid][0], wanted[uid][1], None, w.now) for uid in uids
    ])
    out: dict[str, ContactInfo] = {}
    fix = []
    for row in found:
        w = wanted[row.platform_user_id]
        handle = w[0] or row.handle
        name = w[1] or row.name
        if (handle, name) != (row.handle, row.name):
            fix.append((row.id, handle, name))
        out[row.platform_user_id] = ContactInfo(row.id, ref.channel, row.person_id, handle, name)
    many(
        conn,
        "contact~",
        lambda: sa.update(_c).where(_c.c.id == sa.bindparam("b_id")).values(handle=sa.bindparam("b_handle"), name=sa.bindparam("b_name")),
        ("b_id", "b_handle", "b_name"),
        fix,
    )
    return out

def upsert_conversations(w: PageWriter, msgs: list[InboundMessage], contacts: dict[str, ContactInfo], extra_threads: list[str],
                         read: tuple[tuple[str, str], ...] = ()) -> dict[str, tuple[int, int | None, int | None]]:
    """thread id -> (conversation id, contact id, current ticket id). `read`: (thread, customer) of
    the threads the page read, new messages or not (`Page.threads`)."""
    ref = w.ref
    rows: dict[str, tuple[Any, ...]] = {}
    for m in msgs:
        if m.thread_id not in rows:
            rows[m.thread_id] = (ref.channel, ref.id, m.thread_id, contacts[m.customer.id].id, w.now)
    _adopt_provisional_threads(w, msgs, read)
    threads = list(rows) + [t for t in extra_threads if t not in rows]
    if not threads:
        return {}
    columns = (_v.c.id, _v.c.external_id, _v.c.contact_id, _v.c.ticket_id)
    found = _known(w, "conversation", _v, columns, "external_id", threads, lambda new: [rows[t] for t in new if t in rows])
    return {r.external_id: (r.id, r.contact_id, r.ticket_id) for r in found}


_INSERTED = {
    "contact": ("channel", "account_id", "platform_user_id", "handle", "name", "person_id", "created_at"),
    "conversation": ("channel", "account_id", "external_id", "contact_id", "created_at"),
}


def _known(w: PageWriter, name: str, table: sa.Table, columns: tuple[Any, ...], id_column: str, ids: list[str], new_rows: Any) -> list[Any]:
    """The rows of `ids` (in that order), the missing ones inserted first (`new_rows(missing ids)`).

    Read, then insert only what is missing: most of a page's customers and threads are stored
    already, and an insert that conflicts costs about twice the read of its row. On SQLite the
    write lock is held since the page's first read, so the missing rows take the next ids, given
    in the insert (`PageWriter.take_ids`), and are not read again. Elsewhere the insert keeps
    `ON CONFLICT DO NOTHING` and what is missing is read after it, so a row someone else stored
    in between is read, not doubled.
    """
    conn = w.conn
    key = f"{name}?page"
    found = {getattr(r, id_column): r for r in w.of_account(key, table, columns, id_column, ids)}
    missing = [i for i in ids if i not in found]
    insert = new_rows(missing) if missing else []
    if insert:
        names = _INSERTED[name]
        if conn.dialect.name == "sqlite":
            first = w.take_ids(table, len(insert))
            with_ids = [(first + n, *row) for n, row in enumerate(insert)]
            named = ("id", *names)
            many(conn, f"{name}+id", lambda: insert_values(conn, table, named), named, with_ids)
            make = _row_type(tuple(c.name for c in columns))
            for row in with_ids:
                values = dict(zip(named, row))  # a column not inserted is NULL (a new thread's ticket)
                found[values[id_column]] = make(*(values.get(c.name) for c in columns))
        else:
            many(conn, f"{name}+", lambda: insert_values(conn, table, names, ignore=["channel", "account_id", id_column]), names, insert)
            found.update((getattr(r, id_column), r) for r in w.of_account(key, table, columns, id_column, missing))
    return [found[i] for i in ids if i in found]


@lru_cache(maxsize=None)  # one per column set (a handful)
def _row_type(names: tuple[str, ...]) -> Any:
    """Rows of inserted contacts and threads, read as the stored ones are (by column name)."""
    return namedtuple("row", names)  # type: ignore[misc]


def _adopt_provisional_threads(w: PageWriter, msgs: list[InboundMessage], read: tuple[tuple[str, str], ...]) -> None:
    """A Meta webhook whose thread could not be looked up stored its message on a provisional
    thread (`user:<customer id>`). The first page that names the customer's real thread renames
    it, so the customer's messages, and their ticket, stay one conversation. A thread the poll
    read names it even when nothing in it is new (the webhook's message was its newest); so does
    our own message (`customer` is its recipient)."""
    if w.ref.channel not in _META_CHANNELS:
        return
    real = {customer: thread for thread, customer in read if not thread.startswith(PROVISIONAL)}
    real.update((m.customer.id, m.thread_id) for m in msgs if not m.thread_id.startswith(PROVISIONAL))
    if not real:
        return
    columns = (_v.c.id, _v.c.external_id)
    provisional = {r.external_id: r.id for r in w.of_account("conversation?provisional", _v, columns, "external_id",
                                                                   sorted(provisional_thread(c) for c in real))}
    if not provisional:
        return
    known = {r.external_id for r in w.of_account("conversation?known", _v, columns, "external_id", sorted(set(real.values())))}
    renames = []
    for customer, thread in real.items():
        conv_id = provisional.get(provisional_thread(customer))
        if conv_id is not None and thread not in known:
            renames.append((thread, conv_id))
            known.add(thread)
    many(
        w.conn,
        "conversation~adopt",
        lambda: sa.update(_v).where(_v.c.id == sa.bindparam("b_id")).values(external_id=sa.bindparam("b_thread", type_=sa.String())),
        ("b_thread", "b_id"),
        renames,
    )
