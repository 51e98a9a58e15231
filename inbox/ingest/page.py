"""Store one page of normalized messages: idempotent, bulk, one transaction with its cursor.

Delivery is at-least-once, so everything here is keyed on the platform's ids: contacts,
conversations and messages are inserted with `ON CONFLICT DO NOTHING` on their unique keys, and a
page delivered twice (a crash before the commit, overlapping pages, a re-poll) changes nothing
the second time. The account's cursor is written in the same transaction as the messages it
covers, so it can never be ahead of the stored data.

Statements per page are a fixed handful, whatever the page size: key lookup, contact and
conversation upserts plus one SELECT each to map ids, the dedup candidate queries
(`inbox.dedup.candidates`), then one executemany per table (tickets, refs, messages, events,
counter updates: `inbox.ingest.writer`, `.events`, `.gaps`). Never one ORM object per message.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage, Page, Participant
from connectors.enums import Direction, MessageFlag
from inbox.dedup.candidates import load_candidates, load_threads
from inbox.dedup.state import Candidates
from inbox.dedup.rules import (
    R_ECHO,
    R_FOLLOWUP,
    R_NEW,
    R_ORDER,
    R_ORDER_WEAK,
    R_PERSON,
    R_REOPEN,
    R_REPEAT,
    R_SIMILAR,
    Decision,
    adopt_echoes,
    decide,
)
from inbox.errors import LeaseLostError, NotFoundError
from inbox.ingest.events import mark_repeats, merge_tickets, page_ids, point_repeats, write_events
from inbox.ingest.gaps import gap_sizes, write_gaps
from inbox.ingest.threads import upsert_contacts, upsert_conversations
from inbox.ingest.writer import PageWriter
from inbox.quarantine import store_quarantined
from inbox.runtime.gcpause import gc_paused
from inbox.store.fts import deferred_index
from inbox.store import sqlite_lock
from inbox.store.engine import tune_sqlite_writer, write_tx
from inbox.store.fastpath import execute, insert_values, many
from inbox.store.models import Account, Message, Reply, SyncState
from inbox.store.types import UTCDateTime, utcnow
from inbox.vocab import AccountRef

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from inbox.settings import Settings

_acc = Account.__table__
_m = Message.__table__
_ss = SyncState.__table__
_r = Reply.__table__

@dataclass(frozen=True, slots=True)
class MessageDecision:
    """What happened (or would happen, in a dry run) to one new message."""

    external_id: str
    thread_id: str
    direction: str
    rule: str
    reason: str
    score: float
    ticket_id: int | None
    new_ticket: bool
    considered: tuple[tuple[int | None, str], ...] = ()  # other tickets weighed: (id, why not chosen)
    repeat_of: int | str | None = None  # a repeat in its thread: the earlier message (id, or platform id)


@dataclass(frozen=True, slots=True)
class IngestResult:
    new_messages: int = 0
    duplicates: int = 0  # already stored, or repeated within the page
    new_tickets: int = 0
    appended: int = 0  # added to the thread's active ticket
    attached: int = 0  # attached to another thread's ticket (rule 4)
    reopened: int = 0
    flagged: int = 0  # new ticket flagged as a possible duplicate (rules 4 weak, 5)
    merged: int = 0  # tickets found to be one customer's and merged (rule 4)
    repeats: int = 0  # a customer's message sent again in its thread (rule 5)
    gaps: int = 0
    quarantined: int = 0
    echoes: int = 0  # outbound messages of the brand account
    echoes_matched: int = 0  # ... matched to one of our Replies
    persons_linked: int = 0  # kept for the JSON shape: dedup never links persons (an agent does)
    decisions: tuple[MessageDecision, ...] = ()

    def __add__(self, other: IngestResult) -> IngestResult:
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        return IngestResult(**values)

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "decisions"}


def account_ref(engine_or_conn: Engine | Connection, account: Any) -> AccountRef:
    """An Account row, an AccountRef or an account id (int) -> AccountRef."""
    if isinstance(account, AccountRef):
        return account
    if isinstance(account, Account) and account.id is not None:
        return AccountRef(account.id, account.name, account.channel, account.platform_id)
    query = sa.select(_acc.c.id, _acc.c.name, _acc.c.channel, _acc.c.platform_id).where(_acc.c.id == int(account))
    if isinstance(engine_or_conn, sa.engine.Engine):
        with engine_or_conn.connect() as conn:
            row = conn.execute(query).first()
    else:
        row = engine_or_conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"no account with id {account}")
    return AccountRef(row.id, row.name, row.channel, row.platform_id)


def ingest_page(
    engine: Engine,
    account: Any,
    page: Page,
    settings: Settings,
    *,
    dry_run: bool = False,
    lease_owner: str | None = None,
    lease_seconds: float | None = None,
    explain: bool | None = None,
    via: str = "poll",
) -> IngestResult:
    """Store `page` and its cursor in one transaction; in a dry run, compute and roll back.

    With `lease_owner`, the cursor write also checks (and renews) the account's lease, so a worker
    that lost its lease cannot store a page: `LeaseLostError`, nothing written.
    `explain` (default: on in a dry run) keeps a per-message `MessageDecision` in the result.
    `via` ("poll" or "webhook") is kept on each message this page stores first.
    """
    ref = account_ref(engine, account)
    explain = dry_run if explain is None else explain
    with gc_paused(), sqlite_lock.hold(engine, settings.sync.writer_lock_timeout_seconds), write_tx(engine) as conn:
        if conn.dialect.name == "sqlite":
            tune_sqlite_writer(conn)
        # Page ingests are serialized, as SQLite's write lock does: dedup of one account's page
        # must see the tickets another account's page just created (cross-channel rules).
        sqlite_lock.with_page_writers(conn, settings.sync.writer_lock_timeout_seconds)
        result = _write_page(PageWriter(conn, ref, settings, explain=explain, via=via), page)
        _write_cursor(conn, ref, page, lease_owner, lease_seconds or settings.sync.lease_seconds)
        if dry_run:
            tx = conn.get_transaction()
            assert tx is not None
            tx.rollback()
    if not dry_run and engine.dialect.name == "sqlite":
        from inbox.store import sqlite_wal

        sqlite_wal.committed(engine.url)
    return result


def _write_cursor(conn: Connection, ref: AccountRef, page: Page, lease_owner: str | None, lease_seconds: float) -> None:
    now = utcnow()
    if lease_owner is not None:
        expires = now + timedelta(seconds=lease_seconds)
        with_cursor = page.cursor is not None

        def fenced() -> Any:
            values: dict[str, Any] = {"lease_expires_at": sa.bindparam("expires", type_=UTCDateTime())}
            if with_cursor:
                values.update(cursor=sa.bindparam("cursor", type_=_ss.c.cursor.type), updated_at=sa.bindparam("now", type_=UTCDateTime()))
            return sa.update(_ss).where(_ss.c.account_id == sa.bindparam("account"), _ss.c.lease_owner == sa.bindparam("owner")).values(**values)

        if with_cursor:
            done = execute(conn, "cursor~lease", fenced, expires=expires, cursor=dict(page.cursor or {}), now=now, account=ref.id, owner=lease_owner)
        else:
            done = execute(conn, "lease~renew", fenced, expires=expires, account=ref.id, owner=lease_owner)
        if done != 1:
            raise LeaseLostError(f"lost the sync lease for account {ref.name}: another worker holds it; page not stored")
        return
    if page.cursor is None:
        return

    def build() -> Any:
        stmt = insert_values(conn, _ss, ("account_id", "cursor", "updated_at"))
        return stmt.on_conflict_do_update(
            index_elements=[_ss.c.account_id], set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at}
        )

    many(conn, "cursor", build, ("account_id", "cursor", "updated_at"), [(ref.id, dict(page.cursor), now)])


def _our_inferred(w: PageWriter, new: list[InboundMessage]) -> list[InboundMessage]:
    """A message whose sender the connector had to infer (`sender_inferred`: taken as the customer's,
    the thread's other participant) but whose platform id is one of our replies' is our echo: the
    platform took that id for our send. An X event has nothing else to tell it by (no recipient)."""
    inferred = [m.external_id for m in new if m.direction is Direction.IN and MessageFlag.SENDER_INFERRED in m.flags]
    if not inferred:
        return new
    ours = {r.external_id for r in w.of_account("reply?inferred", _r, (_r.c.external_id,), "external_id", inferred)}
    if not ours:
        return new
    return [
        replace(m, direction=Direction.OUT, author=Participant(id=m.account_id)) if m.external_id in ours and m.direction is Direction.IN else m
        for m in new
    ]


def _write_page(w: PageWriter, page: Page) -> IngestResult:
    """Everything a page stores, in order: contacts, threads, dedup, tickets, messages, events, gaps."""
    conn, ref = w.conn, w.ref
    seen: dict[str, InboundMessage] = {}
    for msg in page.messages:
        seen.setdefault(msg.external_id, msg)
    repeats = len(page.messages) - len(seen)
    stored: set[str] = set()
    if seen:
        stored = {r.external_id for r in w.of_account("message?stored", _m, (_m.c.external_id,), "external_id", list(seen))}
    # Rule 1: same platform id -> already stored, nothing to do.
    # Oldest first. Within one second a thread keeps the page's order (the platform's: Meta's
    # times have no finer grain); threads are ordered by id so a batching never changes it.
    new = sorted((m for k, m in seen.items() if k not in stored), key=lambda m: (m.sent_at, m.thread_id))
    new = _our_inferred(w, new)
    counts: dict[str, int] = defaultdict(int)
    counts["duplicates"] = repeats + len(stored)
    decisions: list[MessageDecision] = []

    contacts = upsert_contacts(w, new)
    gap_threads = [g.thread_id for g in page.gaps]
    convs = upsert_conversations(w, new, contacts, gap_threads, page.threads)
    dd = Candidates(w.settings, ref.id, ref.channel)
    msg_conv = [convs[m.thread_id][0] for m in new]
    msg_contact = [contacts[m.customer.id].id for m in new]
    if new:
        load_candidates(
            conn,
            dd,
            new,
            {cid: (contact_id, ticket_id) for (cid, contact_id, ticket_id) in convs.values()},
            {c.id: c for c in contacts.values()},
            msg_conv,
            msg_contact,
        )
    else:
        load_threads(conn, dd, {cid: t for (cid, _contact, t) in convs.values()})
    made: list[Decision] = [decide(m, dd, msg_conv[i], dd.contacts[msg_contact[i]]) for i, m in enumerate(new)]
    adopt_echoes(dd, new, made, msg_conv)
    strays = w.adopt_stored_echoes(convs, dd)

    # Gaps: mark the thread's ticket (decided above, so a brand-new ticket gets it too).
    gap_rows = []
    for gap, size in gap_sizes(w, page.gaps, convs):
        conv = convs.get(gap.thread_id)
        key = dd.resolve(dd.conv_ticket.get(conv[0])) if conv else None
        if key is not None and key in dd.tickets:
            dd.tickets[key].has_gap = True
        gap_rows.append((gap, size, key))

    ids = w.insert_tickets(dd)
    tid = lambda key: None if key is None else (ids.get(key, key) if key < 0 else key)  # noqa: E731
    w.insert_refs(dd, tid)
    with deferred_index(conn) as top:  # the page's search index in one statement, not a trigger per row
        first_id = None if top is None else top + 1
        if first_id is not None:  # SQLite: the ids are known, a repeat points at its message in the insert itself
            made = point_repeats(new, made, page_ids(new, first_id))[0]
        inserted = w.insert_messages(new, made, msg_conv, msg_contact, tid, first_id=first_id)
    counts["new_messages"] = len(inserted)
    counts["duplicates"] += len(new) - len(inserted)  # lost a race: someone stored them first
    many(
        conn,
        "message~adopted",
        lambda: sa.update(_m).where(_m.c.id == sa.bindparam("b_id"), _m.c.ticket_id.is_(None)).values(ticket_id=sa.bindparam("b_ticket")),
        ("b_id", "b_ticket"),
        [(mid, tid(key)) for mid, key in strays],
    )
    if first_id is None:
        made = mark_repeats(w, new, made)
    w.update_tickets(dd, tid)
    write_events(w, dd, new, made, tid)
    w.update_conversations(new, msg_conv, dd, tid, {cid: t for (cid, _contact, t) in convs.values()})
    counts["echoes_matched"] = w.mark_replies(new, made)
    counts["gaps"] = write_gaps(w, gap_rows, tid)
    counts["quarantined"] = store_quarantined(conn, ref, page.quarantined, w.now)
    counts["merged"] = merge_tickets(w, dd, tid)

    new_ticket_keys = {k for k, t in dd.tickets.items() if t.is_new}
    counts["new_tickets"] = len(new_ticket_keys)
    for i, (msg, d) in enumerate(zip(new, made)):
        if d.rule == R_ECHO:
            counts["echoes"] += 1
        elif d.rule in (R_ORDER, R_PERSON):
            counts["attached"] += 1
        elif d.rule == R_REOPEN:
            counts["reopened"] += 1
        elif d.rule in (R_ORDER_WEAK, R_SIMILAR):
            counts["flagged"] += 1
        elif d.rule not in (R_NEW, R_FOLLOWUP):
            counts["appended"] += 1
            if d.rule == R_REPEAT:
                counts["repeats"] += 1
        if w.explain:
            decisions.append(
                MessageDecision(
                    msg.external_id,
                    msg.thread_id,
                    msg.direction.value,
                    d.rule,
                    d.reason,
                    d.score,
                    tid(d.ticket_key),
                    d.ticket_key in new_ticket_keys,
                    tuple((tid(k), why) for k, why in d.considered),
                    d.repeat_of,
                )
            )
    return IngestResult(**counts, decisions=tuple(decisions))
