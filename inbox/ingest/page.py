"""Store one page of normalized messages: idempotent, bulk, one transaction with its cursor.

Delivery is at-least-once, so everything here is keyed on the platform's ids: contacts,
conversations and messages are inserted with `ON CONFLICT DO NOTHING` on their unique keys, and a
page delivered twice (a crash before the commit, overlapping pages, a re-poll) changes nothing
the second time. The account's cursor is written in the same transaction as the messages it
covers, so it can never be ahead of the stored data.

Statements per page are a fixed handful, whatever the page size: key lookup, contact and
conversation upserts plus one SELECT each to map ids, the dedup candidate queries, then one
executemany per table (tickets, refs, messages, events, counter updates). Never one ORM object
per message.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import MAX_ID_LENGTH, Channel, Direction, Gap, InboundMessage, Page
from connectors.meta_webhook import PROVISIONAL, provisional_thread
from connectors.safejson import clean_text
from inbox.dedup.pages import (
    R_ECHO,
    R_NEW,
    R_ORDER,
    R_ORDER_WEAK,
    R_PERSON,
    R_FOLLOWUP,
    R_REOPEN,
    R_REPEAT,
    R_SIMILAR,
    R_THREAD,
    ContactInfo,
    Decision,
    PageDeduper,
    repeat_reason,
)
from inbox.store import sqlite_lock
from inbox.store.engine import tune_sqlite_writer
from inbox.store.fastpath import execute, in_values, insert_values, many, one_of, select
from inbox.errors import ConflictError, NotFoundError
from inbox.store.models import (
    Account,
    Contact,
    Conversation,
    Message,
    Quarantine,
    Reply,
    ReplyState,
    SyncGap,
    SyncState,
    Ticket,
    TicketEvent,
    TicketRef,
    TicketStatus,
    UTCDateTime,
)
from inbox.store.types import PRIORITY_RANK, utcnow
from inbox.store.fts import deferred_index
from inbox.tickets.triage import triage

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from inbox.settings import Settings

log = logging.getLogger(__name__)

_acc = Account.__table__
_c = Contact.__table__
_v = Conversation.__table__
_m = Message.__table__
_t = Ticket.__table__
_tr = TicketRef.__table__
_ev = TicketEvent.__table__
_rep = Reply.__table__
_gap = SyncGap.__table__
_q = Quarantine.__table__
_ss = SyncState.__table__

ACTOR = "sync"
_META_CHANNELS = {Channel.FACEBOOK.value, Channel.INSTAGRAM.value}  # whose webhooks may leave a provisional thread
INGEST_LOCK_KEY = 0x1B0C5_0001  # pg_advisory_xact_lock key of the page ingest


class LeaseLostError(ConflictError):
    """Another worker took this account's lease; the page was not stored."""


@dataclass(frozen=True, slots=True)
class AccountRef:
    id: int
    name: str
    channel: str
    platform_id: str


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


def begin_write(engine: Engine) -> Connection:
    """A connection whose transactions take SQLite's write lock up front (no upgrade deadlocks)."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
    return conn


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
    with sqlite_lock.hold(engine, settings.sync.writer_lock_timeout_seconds), begin_write(engine) as conn:
        if conn.dialect.name == "sqlite":
            tune_sqlite_writer(conn)
        tx = conn.begin()
        try:
            if conn.dialect.name == "postgresql":
                # Page ingests are serialized, as SQLite's write lock does: dedup of one account's
                # page must see the tickets another account's page just created (cross-channel rules).
                sqlite_lock.pg_acquire(conn, INGEST_LOCK_KEY, settings.sync.writer_lock_timeout_seconds)
            result = _PageWriter(conn, ref, settings, explain=explain, via=via).write(page)
            _write_cursor(conn, ref, page, lease_owner, lease_seconds or settings.sync.lease_seconds)
        except BaseException:
            tx.rollback()
            raise
        if dry_run:
            tx.rollback()
        else:
            tx.commit()
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


def _later(col: sa.Column[Any], name: str) -> Any:
    """`col = max(col, :name)` on both backends (NULLs lose)."""
    p = sa.bindparam(name, type_=UTCDateTime())
    return sa.case((sa.or_(col.is_(None), col < p), p), else_=col)


_MESSAGE_COLUMNS = (
    "channel", "account_id", "external_id", "conversation_id", "ticket_id", "contact_id", "direction", "author_id",
    "author_handle", "author_name", "text", "kind", "sent_at", "received_at", "attachments", "raw", "reply_id",
    "dedup_rule", "dedup_reason", "dedup_score", "repeat_of_id", "flags", "via",
)

_TICKET_INSERT = (
    "status", "priority", "priority_rank", "category", "assignee", "channel", "account_id", "contact_id", "person_id",
    "subject", "snippet", "message_count", "created_at", "updated_at", "last_customer_message_at",
    "first_response_due_at", "first_response_at", "escalation_due_at", "resolved_at", "reopened_count", "has_gap",
    "linked_ticket_id", "possible_duplicate_of_id", "merged_into_id", "repeat_count",
)


@dataclass(frozen=True, slots=True)
class _GapSize:
    missing: int | None  # None: the platform did not say how many the thread holds
    after: datetime | None  # the thread's newest stored message before the gap; None: since it began
    before: datetime | None  # its oldest readable message


class _PageWriter:
    def __init__(self, conn: Connection, ref: AccountRef, settings: Settings, *, explain: bool, via: str = "poll") -> None:
        self.conn = conn
        self.via = via
        self.ref = ref
        self.settings = settings
        self.explain = explain
        self.now = utcnow()

    # ── the page ───────────────────────────────────────────────────────────────────────────

    def write(self, page: Page) -> IngestResult:
        conn, ref = self.conn, self.ref
        seen: dict[str, InboundMessage] = {}
        for msg in page.messages:
            seen.setdefault(msg.external_id, msg)
        repeats = len(page.messages) - len(seen)
        stored: set[str] = set()
        if seen:
            stored = {r.external_id for r in self._of_account("message?stored", _m, (_m.c.external_id,), "external_id", list(seen))}
        # Rule 1: same platform id -> already stored, nothing to do.
        # Oldest first. Within one second a thread keeps the page's order (the platform's: Meta's
        # times have no finer grain); threads are ordered by id so a batching never changes it.
        new = sorted((m for k, m in seen.items() if k not in stored), key=lambda m: (m.sent_at, m.thread_id))
        counts: dict[str, int] = defaultdict(int)
        counts["duplicates"] = repeats + len(stored)
        decisions: list[MessageDecision] = []

        contacts = self._upsert_contacts(new)
        gap_threads = [g.thread_id for g in page.gaps]
        convs = self._upsert_conversations(new, contacts, gap_threads)
        dd = PageDeduper(conn, self.settings, ref.id, ref.channel)
        msg_conv = [convs[m.thread_id][0] for m in new]
        msg_contact = [contacts[m.customer.id].id for m in new]
        if new:
            dd.load(
                new,
                {cid: (contact_id, ticket_id) for (cid, contact_id, ticket_id) in convs.values()},
                {c.id: c for c in contacts.values()},
                msg_conv,
                msg_contact,
            )
        else:
            dd._load_tickets({t for (_cid, _contact, t) in convs.values() if t is not None})
            dd.conv_ticket.update({cid: t for (cid, _contact, t) in convs.values()})
        made: list[Decision] = [dd.decide(m, msg_conv[i], dd.contacts[msg_contact[i]]) for i, m in enumerate(new)]
        dd.adopt_echoes(new, made, msg_conv)
        strays = self._adopt_stored_echoes(convs, dd)

        # Gaps: mark the thread's ticket (decided above, so a brand-new ticket gets it too).
        gap_rows = []
        for gap, size in self._gap_sizes(page.gaps, convs):
            conv = convs.get(gap.thread_id)
            key = dd._resolve(dd.conv_ticket.get(conv[0])) if conv else None
            if key is not None and key in dd.tickets:
                dd.tickets[key].has_gap = True
            gap_rows.append((gap, size, key))

        ids = self._insert_tickets(dd)
        tid = lambda key: None if key is None else (ids.get(key, key) if key < 0 else key)  # noqa: E731
        self._insert_refs(dd, tid)
        with deferred_index(conn):  # the page's search index in one statement, not a trigger per row
            inserted = self._insert_messages(new, made, msg_conv, msg_contact, tid)
        counts["new_messages"] = len(inserted)
        counts["duplicates"] += len(new) - len(inserted)  # lost a race: someone stored them first
        many(
            conn,
            "message~adopted",
            lambda: sa.update(_m).where(_m.c.id == sa.bindparam("b_id"), _m.c.ticket_id.is_(None)).values(ticket_id=sa.bindparam("b_ticket")),
            ("b_id", "b_ticket"),
            [(mid, tid(key)) for mid, key in strays],
        )
        made = self._mark_repeats(new, made)
        self._update_tickets(dd, tid)
        self._write_events(dd, new, made, tid)
        self._update_conversations(new, msg_conv, dd, tid)
        counts["echoes_matched"] = self._mark_replies(new, made)
        counts["gaps"] = self._write_gaps(gap_rows, tid)
        counts["quarantined"] = self._write_quarantine(page)
        counts["merged"] = self._merge_tickets(dd, tid)

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
            if self.explain:
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

    def _of_account(self, key: str, table: sa.Table, columns: tuple[Any, ...], id_column: str, ids: list[str]) -> list[Any]:
        """Rows of this account's `table` whose platform id (`id_column`) is in `ids`."""
        conn = self.conn
        return select(
            conn,
            key,
            lambda: sa.select(*columns).where(
                table.c.channel == sa.bindparam("channel"),
                table.c.account_id == sa.bindparam("account"),
                in_values(conn, table.c[id_column], "ids"),
            ),
            channel=self.ref.channel,
            account=self.ref.id,
            ids=ids,
        )

    def _adopt_stored_echoes(self, convs: dict[str, tuple[int, int | None, int | None]], dd: PageDeduper) -> list[tuple[int, int]]:
        """Our messages stored earlier in a thread that had no ticket yet, and gets one on this page
        (the brand wrote first, or an older page of the pass held the customer's first message):
        (message id, ticket key) for each, counted on that ticket."""
        ticketed = {
            conv_id: key
            for conv_id, _contact, loaded in convs.values()
            if loaded is None and (key := dd._resolve(dd.conv_ticket.get(conv_id))) is not None and key in dd.tickets
        }
        if not ticketed:
            return []
        conn = self.conn
        rows = select(
            conn,
            "message?strays",
            # ticket_id is tested here, not in SQL: there SQLite would walk the ticket index over
            # every message without a ticket in the store, instead of these threads' messages.
            lambda: sa.select(_m.c.id, _m.c.conversation_id, _m.c.sent_at, _m.c.ticket_id).where(
                in_values(conn, _m.c.conversation_id, "convs"), _m.c.direction == Direction.OUT.value
            ),
            convs=sorted(ticketed),
        )
        out = []
        for row in rows:
            if row.ticket_id is not None:
                continue
            key = ticketed[row.conversation_id]
            dd.add_outbound(dd.tickets[key], row.sent_at, adopted=True)
            out.append((row.id, key))
        return out

    # ── contacts and conversations ─────────────────────────────────────────────────────────

    def _upsert_contacts(self, msgs: list[InboundMessage]) -> dict[str, ContactInfo]:
        if not msgs:
            return {}
        conn, ref = self.conn, self.ref
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
        names = ("channel", "account_id", "platform_user_id", "handle", "name", "person_id", "created_at")
        many(
            conn,
            "contact+",
            lambda: insert_values(conn, _c, names, ignore=["channel", "account_id", "platform_user_id"]),
            names,
            [(ref.channel, ref.id, uid, handle, name, None, self.now) for uid, (handle, name) in wanted.items()],
        )
        out: dict[str, ContactInfo] = {}
        fix = []
        columns = (_c.c.id, _c.c.platform_user_id, _c.c.person_id, _c.c.handle, _c.c.name)
        for row in self._of_account("contact?page", _c, columns, "platform_user_id", list(wanted)):
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

    def _upsert_conversations(
        self, msgs: list[InboundMessage], contacts: dict[str, ContactInfo], extra_threads: list[str]
    ) -> dict[str, tuple[int, int | None, int | None]]:
        """thread id -> (conversation id, contact id, current ticket id)."""
        conn, ref = self.conn, self.ref
        rows: dict[str, tuple[Any, ...]] = {}
        for m in msgs:
            if m.thread_id not in rows:
                rows[m.thread_id] = (ref.channel, ref.id, m.thread_id, contacts[m.customer.id].id, self.now)
        self._adopt_provisional_threads(msgs)
        names = ("channel", "account_id", "external_id", "contact_id", "created_at")
        many(
            conn,
            "conversation+",
            lambda: insert_values(conn, _v, names, ignore=["channel", "account_id", "external_id"]),
            names,
            list(rows.values()),
        )
        threads = list(rows) + [t for t in extra_threads if t not in rows]
        if not threads:
            return {}
        columns = (_v.c.id, _v.c.external_id, _v.c.contact_id, _v.c.ticket_id)
        return {
            r.external_id: (r.id, r.contact_id, r.ticket_id)
            for r in self._of_account("conversation?page", _v, columns, "external_id", threads)
        }

    def _adopt_provisional_threads(self, msgs: list[InboundMessage]) -> None:
        """A Meta webhook whose thread could not be looked up stored its message on a provisional
        thread (`user:<customer id>`). The first page that names the customer's real thread renames
        it, so the customer's messages, and their ticket, stay one conversation."""
        if self.ref.channel not in _META_CHANNELS:
            return
        real = {m.customer.id: m.thread_id for m in msgs if m.direction is Direction.IN and not m.thread_id.startswith(PROVISIONAL)}
        if not real:
            return
        columns = (_v.c.id, _v.c.external_id)
        provisional = {r.external_id: r.id for r in self._of_account("conversation?provisional", _v, columns, "external_id",
                                                                       sorted(provisional_thread(c) for c in real))}
        if not provisional:
            return
        known = {r.external_id for r in self._of_account("conversation?known", _v, columns, "external_id", sorted(set(real.values())))}
        renames = []
        for customer, thread in real.items():
            conv_id = provisional.get(provisional_thread(customer))
            if conv_id is not None and thread not in known:
                renames.append((thread, conv_id))
                known.add(thread)
        many(
            self.conn,
            "conversation~adopt",
            lambda: sa.update(_v).where(_v.c.id == sa.bindparam("b_id")).values(external_id=sa.bindparam("b_thread", type_=sa.String())),
            ("b_thread", "b_id"),
            renames,
        )

    # ── tickets ────────────────────────────────────────────────────────────────────────────

    def _insert_tickets(self, dd: PageDeduper) -> dict[int, int]:
        new = [t for t in dd.tickets.values() if t.is_new]
        if not new:
            return {}
        rows = []
        for t in new:
            tri = triage("\n".join(t.text_for_triage), t.created_at, self.settings)
            rows.append(
                {
                    "status": TicketStatus.PENDING.value if t.brand_answered else t.status,
                    "priority": tri.priority,
                    "priority_rank": tri.priority_rank,
                    "category": tri.category,
                    "assignee": None,
                    "channel": t.channel,
                    "account_id": self.ref.id,
                    "contact_id": t.contact_id,
                    "person_id": t.person_id,
                    "subject": t.subject,
                    "snippet": t.snippet,
                    "message_count": t.added,
                    "created_at": t.created_at,
                    "updated_at": t.last_at or t.created_at,
                    "last_customer_message_at": t.last_customer_at,
                    "first_response_due_at": tri.first_response_due_at,
                    "first_response_at": t.set_first_response,
                    "escalation_due_at": tri.escalation_due_at,
                    "resolved_at": None,
                    "reopened_count": 0,
                    "has_gap": t.has_gap,
                    "linked_ticket_id": t.linked_ticket_id,
                    "possible_duplicate_of_id": None,  # may point at another new ticket: set below
                    "merged_into_id": None,  # a ticket of this page found to be another's: merged after
                    "repeat_count": t.repeats,
                }
            )
            t.events.append({"action": "created", "detail": {"category": tri.category, "priority": tri.priority}})
        conn = self.conn
        if conn.dialect.name == "sqlite":
            # BEGIN IMMEDIATE holds the write lock since the key lookup: nobody else inserts tickets
            # until the commit, so this page's tickets take the next ids, given explicitly, and
            # one executemany stores them (RETURNING would cost one statement per ticket).
            top = select(conn, "ticket?top", lambda: sa.select(sa.func.max(_t.c.id).label("top")))[0].top or 0
            returned = list(range(top + 1, top + 1 + len(rows)))
            names = ("id", *_TICKET_INSERT)
            many(conn, "ticket+", lambda: insert_values(conn, _t, names), names,
                  [(i, *(r[n] for n in _TICKET_INSERT)) for i, r in zip(returned, rows)])
        else:
            returned = conn.execute(sa.insert(_t).returning(_t.c.id, sort_by_parameter_order=True), rows).scalars().all()
        return {t.key: real for t, real in zip(new, returned)}

    def _point_duplicates(self, dd: PageDeduper, tid: Any) -> None:
        """Possible-duplicate pointers (both ways): new tickets may point at each other, so after the insert."""
        dup = [
            (tid(t.key), tid(t.possible_duplicate_of_id))
            for t in dd.tickets.values()
            if t.is_new and t.possible_duplicate_of_id is not None
        ]
        dup += [(tid(t.key), tid(t.set_duplicate_of)) for t in dd.tickets.values() if not t.is_new and t.set_duplicate_of is not None]
        many(
            self.conn,
            "ticket~dup",
            lambda: sa.update(_t)
            .where(_t.c.id == sa.bindparam("b_id"))
            .values(possible_duplicate_of_id=sa.func.coalesce(_t.c.possible_duplicate_of_id, sa.bindparam("b_dup", type_=sa.Integer()))),
            ("b_id", "b_dup"),
            dup,
        )

    def _insert_refs(self, dd: PageDeduper, tid: Any) -> None:
        rows = [(tid(t.key), ref[:100]) for t in dd.tickets.values() for ref in sorted(t.new_refs)]
        names = ("ticket_id", "ref")
        many(self.conn, "ref+", lambda: insert_values(self.conn, _tr, names, ignore=["ticket_id", "ref"]), names, rows)

    def _update_tickets(self, dd: PageDeduper, tid: Any) -> None:
        conn = self.conn
        self._point_duplicates(dd, tid)
        rows = []
        for t in dd.tickets.values():
            if t.is_new or not (t.added or t.has_gap or t.set_first_response):
                continue
            rows.append((t.key, t.added, t.last_at, t.last_customer_at, t.snippet, t.set_first_response, t.has_gap, t.repeats))
        if rows:

            def build() -> Any:
                lc = sa.bindparam("b_lc", type_=UTCDateTime())
                return (
                    sa.update(_t)
                    .where(_t.c.id == sa.bindparam("b_id"))
                    .values(
                        message_count=_t.c.message_count + sa.bindparam("b_added", type_=sa.Integer()),
                        updated_at=_later(_t.c.updated_at, "b_last"),
                        snippet=sa.case(
                            (sa.and_(lc.is_not(None), sa.or_(_t.c.last_customer_message_at.is_(None), _t.c.last_customer_message_at <= lc)), sa.bindparam("b_snippet", type_=sa.String())),
                            else_=_t.c.snippet,
                        ),
                        last_customer_message_at=_later(_t.c.last_customer_message_at, "b_lc"),
                        first_response_at=sa.func.coalesce(_t.c.first_response_at, sa.bindparam("b_fr", type_=UTCDateTime())),
                        has_gap=sa.or_(_t.c.has_gap, sa.bindparam("b_gap", type_=sa.Boolean())),
                        repeat_count=_t.c.repeat_count + sa.bindparam("b_repeats", type_=sa.Integer()),
                    )
                )

            many(conn, "ticket~counters", build, ("b_id", "b_added", "b_last", "b_lc", "b_snippet", "b_fr", "b_gap", "b_repeats"), rows)
        raised = [(t.key, t.priority, PRIORITY_RANK[t.priority]) for t in dd.tickets.values()
                  if t.priority_changes and not t.is_new and t.priority in PRIORITY_RANK]
        many(
            conn,
            "ticket~priority",
            lambda: sa.update(_t).where(_t.c.id == sa.bindparam("b_id")).values(
                priority=sa.bindparam("b_priority", type_=sa.String()), priority_rank=sa.bindparam("b_rank", type_=sa.Integer())
            ),
            ("b_id", "b_priority", "b_rank"),
            raised,
        )
        reopened = [(t.key,) for t in dd.tickets.values() if t.reopened and not t.is_new]
        many(
            conn,
            "ticket~reopen",
            lambda: sa.update(_t)
            .where(_t.c.id == sa.bindparam("b_id"), _t.c.status == "resolved")
            .values(status="open", reopened_count=_t.c.reopened_count + 1, resolved_at=None),
            ("b_id",),
            reopened,
        )
        unpended = [(t.key,) for t in dd.tickets.values() if t.unpended and not t.is_new]
        many(
            conn,
            "ticket~unpend",
            lambda: sa.update(_t).where(_t.c.id == sa.bindparam("b_id"), _t.c.status == "pending").values(status="open"),
            ("b_id",),
            unpended,
        )
        answered = [(t.key,) for t in dd.tickets.values() if t.brand_answered and not t.is_new]
        many(
            conn,
            "ticket~answered",
            lambda: sa.update(_t)
            .where(_t.c.id == sa.bindparam("b_id"), sa.or_(_t.c.status == "new", _t.c.status == "open"))
            .values(status="pending"),
            ("b_id",),
            answered,
        )

    # ── messages ───────────────────────────────────────────────────────────────────────────

    def _insert_messages(
        self, msgs: list[InboundMessage], made: list[Decision], msg_conv: list[int], msg_contact: list[int], tid: Any
    ) -> set[str]:
        if not msgs:
            return set()
        ref, now = self.ref, self.now
        channel, account_id = ref.channel, ref.id
        rows = []
        for m, d, conv_id, contact_id in zip(msgs, made, msg_conv, msg_contact):
            author = m.author
            key = d.ticket_key
            rows.append(
                (
                    channel,
                    account_id,
                    m.external_id,
                    conv_id,
                    None if key is None else tid(key),
                    contact_id,
                    m.direction.value,
                    author.id[:100],
                    author.handle,
                    author.name,
                    m.text,
                    m.kind.value,
                    m.sent_at,
                    now,
                    [{"type": a.type, "url": a.url, "mime": a.mime, "size": a.size, "name": a.name} for a in m.attachments]
                    if m.attachments
                    else None,
                    (raw if type(raw := m.raw) is dict else dict(raw)) if m.raw else None,
                    d.reply_id,
                    d.rule,
                    d.reason,
                    d.score,
                    d.repeat_of if type(d.repeat_of) is int else None,
                    ",".join(f.value for f in m.flags) if m.flags else None,
                    self.via,
                )
            )
        build = lambda: insert_values(self.conn, _m, _MESSAGE_COLUMNS, ignore=["channel", "account_id", "external_id"])  # noqa: E731
        if self.conn.dialect.name == "sqlite":
            # BEGIN IMMEDIATE holds the write lock since the key lookup, so nobody stored any of
            # these in between: one executemany of prepared tuples (SQLite's fast path) is exact.
            many(self.conn, "message+", build, _MESSAGE_COLUMNS, rows)
            return {r[2] for r in rows}
        stmt = build()
        return set(
            self.conn.execute(stmt.returning(_m.c.external_id), [dict(zip(_MESSAGE_COLUMNS, r)) for r in rows]).scalars()
        )

    def _mark_repeats(self, msgs: list[InboundMessage], made: list[Decision]) -> list[Decision]:
        """Repeats of a message stored on this same page point at it by id once it has one."""
        pending = [(i, d) for i, d in enumerate(made) if isinstance(d.repeat_of, str)]
        if not pending:
            return made
        ids = {
            r.external_id: r.id
            for r in self._of_account("message?ids", _m, (_m.c.id, _m.c.external_id), "external_id", sorted({str(d.repeat_of) for _i, d in pending}))
        }
        out = list(made)
        rows = []
        for i, d in pending:
            earlier = ids.get(str(d.repeat_of))
            if earlier is None:
                continue
            head, _sep, _old = d.reason.rpartition("; customer repeated")
            score = d.score * 100
            out[i] = d._replace(reason=f"{head}; {repeat_reason(earlier, score)}", repeat_of=earlier)
            rows.append((self.ref.channel, self.ref.id, msgs[i].external_id, earlier, out[i].reason))
        many(
            self.conn,
            "message~repeat",
            lambda: sa.update(_m)
            .where(_m.c.channel == sa.bindparam("b_channel"), _m.c.account_id == sa.bindparam("b_account"), _m.c.external_id == sa.bindparam("b_ext"))
            .values(repeat_of_id=sa.bindparam("b_of", type_=sa.Integer()), dedup_reason=sa.bindparam("b_reason", type_=sa.String())),
            ("b_channel", "b_account", "b_ext", "b_of", "b_reason"),
            rows,
        )
        return out

    def _merge_tickets(self, dd: PageDeduper, tid: Any) -> int:
        """Tickets rule 4 found to be one customer's: folded as `inbox merge` does (audited, `inbox unmerge` undoes it)."""
        from inbox.tickets.operations import merge_in_tx

        for m in dd.merges:
            merge_in_tx(self.conn, tid(m.loser), tid(m.survivor), ACTOR, reason=m.reason)
        return len(dd.merges)

    def _write_events(self, dd: PageDeduper, msgs: list[InboundMessage], made: list[Decision], tid: Any) -> None:
        """One `dedup` event per (ticket, rule) of the page, plus created / status events.

        A message simply added to its own thread's ticket (rule 3, or the brand's own message, rule
        2) is routine: its decision is on the message row, and an event per page per thread would
        bury the decisions an agent needs to see (attached, reopened, flagged, follow-up, our reply
        confirmed by its echo) under "appended" lines.
        """
        groups: dict[tuple[int, str], list[tuple[InboundMessage, Decision]]] = defaultdict(list)
        for m, d in zip(msgs, made):
            if d.ticket_key is None or d.rule == R_THREAD or (d.rule == R_ECHO and d.reply_id is None):
                continue
            groups[(d.ticket_key, d.rule)].append((m, d))
        rows = []
        for t in dd.tickets.values():
            for ev in t.events:
                rows.append((tid(t.key), self.now, ACTOR, ev["action"], ev["detail"]))
            if t.reopened and not t.is_new:
                rows.append((t.key, self.now, ACTOR, "status", {"from": t.reopened_from, "to": "open", "reason": "customer wrote again"}))
            if t.unpended and not t.is_new:
                rows.append((t.key, self.now, ACTOR, "status", {"from": "pending", "to": "open", "reason": "customer answered"}))
            if t.brand_answered:
                rows.append((tid(t.key), self.now, ACTOR, "status", {"from": t.status, "to": "pending", "reason": "the brand answered after the customer"}))
        for (key, rule), items in groups.items():
            first = items[0][1]
            detail: dict[str, Any] = {
                "rule": rule,
                "reason": first.reason,
                "score": max(d.score for _m, d in items),
                "count": len(items),
                "messages": [m.external_id for m, _d in items[:20]],
            }
            considered: dict[Any, str] = {}
            for _m2, d in items:
                for k, why in d.considered:
                    considered.setdefault(tid(k), why)
            if considered:
                detail["considered"] = [{"ticket": k, "why_not": why} for k, why in list(considered.items())[:10]]
            t = dd.tickets.get(key)
            if t is not None and t.possible_duplicate_of_id is not None and rule in (R_ORDER_WEAK, R_SIMILAR):
                detail["possible_duplicate_of"] = tid(t.possible_duplicate_of_id)
            if t is not None and t.linked_ticket_id is not None and rule == R_FOLLOWUP:
                detail["linked_ticket"] = t.linked_ticket_id
            rows.append((tid(key), self.now, ACTOR, "dedup", detail))
        for f in dd.flags:
            # The other ticket learns of it too: both point at each other.
            rows.append((tid(f.other), self.now, ACTOR, "dedup", {
                "rule": f.rule, "reason": f"ticket #{tid(f.ticket)} may be a duplicate of this one: {f.reason}",
                "score": 0.5, "count": 1, "possible_duplicate_of": tid(f.ticket),
            }))
            if f.rule == R_ORDER_WEAK and not dd.tickets[f.ticket].is_new:
                rows.append((tid(f.ticket), self.now, ACTOR, "dedup", {
                    "rule": f.rule, "reason": f.reason, "score": 0.5, "count": 1, "possible_duplicate_of": tid(f.other),
                }))
        for t in dd.tickets.values():
            for change in t.priority_changes:
                rows.append((tid(t.key), self.now, ACTOR, "priority", dict(change)))
        names = ("ticket_id", "at", "actor", "action", "detail")
        many(self.conn, "event+", lambda: insert_values(self.conn, _ev, names), names, rows)

    def _update_conversations(
        self, msgs: list[InboundMessage], msg_conv: list[int], dd: PageDeduper, tid: Any
    ) -> None:
        per: dict[int, list[Any]] = {}  # conversation id -> [last, last customer]
        for m, conv_id in zip(msgs, msg_conv):
            row = per.get(conv_id)
            if row is None:
                row = per[conv_id] = [m.sent_at, None]
            elif m.sent_at > row[0]:
                row[0] = m.sent_at
            if m.direction is Direction.IN and (row[1] is None or m.sent_at > row[1]):
                row[1] = m.sent_at
        rows = [(conv_id, last, lc, tid(dd._resolve(dd.conv_ticket.get(conv_id)))) for conv_id, (last, lc) in per.items()]
        many(
            self.conn,
            "conversation~",
            lambda: sa.update(_v)
            .where(_v.c.id == sa.bindparam("b_id"))
            .values(
                last_message_at=_later(_v.c.last_message_at, "b_last"),
                last_customer_message_at=_later(_v.c.last_customer_message_at, "b_lc"),
                ticket_id=sa.func.coalesce(sa.bindparam("b_ticket", type_=sa.Integer()), _v.c.ticket_id),
            ),
            ("b_id", "b_last", "b_lc", "b_ticket"),
            rows,
        )

    def _mark_replies(self, msgs: list[InboundMessage], made: list[Decision]) -> int:
        """Replies whose echo this page stored: a reply still in doubt is now known `sent`."""
        rows = [(d.reply_id, m.sent_at, self.now) for m, d in zip(msgs, made) if d.reply_id is not None]
        many(
            self.conn,
            "reply~echoed",
            # One statement per echo (executemany): the states are constants, never an IN list.
            lambda: sa.update(_rep)
            .where(_rep.c.id == sa.bindparam("b_id"), one_of(_rep.c.state, (ReplyState.UNKNOWN.value, ReplyState.SENDING.value)))
            .values(
                state=ReplyState.SENT.value,
                sent_at=sa.func.coalesce(_rep.c.sent_at, sa.bindparam("b_at", type_=UTCDateTime())),
                updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
            ),
            ("b_id", "b_at", "b_now"),
            rows,
        )
        return len(rows)

    # ── gaps, quarantine ───────────────────────────────────────────────────────────────────

    def _gap_sizes(self, gaps: tuple[Gap, ...], convs: dict[str, tuple[int, int | None, int | None]]) -> list[tuple[Gap, _GapSize]]:
        """Each gap with what is known of the messages it lost.

        None of the thread's readable messages is stored (that is what makes it a gap), so what the
        store holds of the thread is older: its newest message is where the missing ones begin, and
        the platform's count of the thread, less the readable and the stored, is how many are
        missing. A thread whose older messages are all stored lost nothing: no gap.
        """
        if not gaps:
            return []
        conn = self.conn
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
            out.append((gap, _GapSize(missing, newest, gap.oldest_readable_at)))
        return out

    def _write_gaps(self, gap_rows: list[tuple[Gap, _GapSize, int | None]], tid: Any) -> int:
        names = ("account_id", "conversation_external_id", "ticket_id", "detail", "detected_at", "missing", "missing_after", "missing_before")
        many(
            self.conn,
            "gap+",
            lambda: insert_values(self.conn, _gap, names),
            names,
            [
                (self.ref.id, gap.thread_id, tid(key), gap.detail, self.now, size.missing, size.after, size.before)
                for gap, size, key in gap_rows
            ],
        )
        return len(gap_rows)

    def _write_quarantine(self, page: Page) -> int:
        if not page.quarantined:
            return 0
        items = []
        for q in page.quarantined:
            # Ids as far as the columns hold them (the item may be quarantined for an over-long id),
            # and every string storable: the reason and ids may quote what the platform sent.
            items.append((
                None if q.external_id is None else clean_text(q.external_id)[:MAX_ID_LENGTH],
                None if q.thread_id is None else clean_text(q.thread_id)[:MAX_ID_LENGTH],
                clean_text(q.reason)[:2000],
                q.raw if isinstance(q.raw, (dict, list)) else {"text": clean_text(str(q.raw))},
                q.channel.value,
            ))
        existing = {
            (r.external_id, r.thread_id, r.reason, json.dumps(r.raw, sort_keys=True, default=str))
            for r in self.conn.execute(
                sa.select(_q.c.external_id, _q.c.thread_id, _q.c.reason, _q.c.raw).where(
                    _q.c.account_id == self.ref.id,
                    _q.c.resolved_at.is_(None),
                    _q.c.thread_id.in_([i[1] for i in items if i[1]])
                    | _q.c.external_id.in_([i[0] for i in items if i[0]])
                    | _q.c.thread_id.is_(None),
                )
            )
        }
        rows = []
        for external_id, thread_id, reason, raw, channel in items:
            key = (external_id, thread_id, reason, json.dumps(raw, sort_keys=True, default=str))
            if key in existing:
                continue  # the same broken item re-delivered
            existing.add(key)
            rows.append(
                {
                    "account_id": self.ref.id,
                    "channel": channel,
                    "external_id": external_id,
                    "thread_id": thread_id,
                    "reason": reason,
                    "raw": raw,
                    "received_at": self.now,
                    "resolved_at": None,
                }
            )
        if rows:
            self.conn.execute(sa.insert(_q), rows)
        return len(rows)
