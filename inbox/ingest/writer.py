"""The page's bulk SQL: tickets, refs, messages, counters and replies (contacts and threads: `.threads`).

Everything here is keyed on the platform's ids: contacts, conversations and messages are inserted
with `ON CONFLICT DO NOTHING` on their unique keys, so a page delivered twice changes nothing the
second time. Statements per page are a fixed handful, whatever the page size: one executemany per
table, never one ORM object per message. Ticket status changes come from `inbox.tickets.workflow`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage
from connectors.enums import Direction
from inbox.dedup.state import Candidates
from inbox.dedup.rules import Decision
from inbox.store.fastpath import in_values, insert_values, many, one_of, select
from inbox.store.models import Contact, Conversation, Message, Reply, ReplyState, Ticket, TicketRef, UTCDateTime, utcnow
from inbox.tickets.triage import triage
from inbox.tickets.workflow import brand_wrote, new_status, store_page_transitions

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from inbox.settings import Settings
    from inbox.vocab import AccountRef

_c = Contact.__table__
_v = Conversation.__table__
_m = Message.__table__
_t = Ticket.__table__
_tr = TicketRef.__table__
_rep = Reply.__table__

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


_ID_TABLES = ("contact", "conversation", "ticket")  # whose new rows take their ids in the insert (`take_ids`)


class PageWriter:
    """One page's statements, on the page's connection (inside its transaction)."""

    def __init__(self, conn: Connection, ref: AccountRef, settings: Settings, *, explain: bool, via: str = "poll") -> None:
        self.conn = conn
        self.via = via
        self.ref = ref
        self.settings = settings
        self.explain = explain
        self.now = utcnow()
        self._next: dict[str, int] | None = None

    def take_ids(self, table: sa.Table, n: int) -> int:
        """SQLite only: the first of `n` ids for this page's new rows of `table` (contact,
        conversation, ticket), given in their insert.

        BEGIN IMMEDIATE holds the write lock since the page's first read, so nobody else inserts
        into these tables until the commit: the next ids after the highest are ours, and a row
        inserted with its id needs no second read to learn it (RETURNING would cost one statement
        per row). The three highest ids are read once per page, in one statement, when first needed.
        """
        if self._next is None:
            cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                tops = cur.execute("SELECT " + ", ".join(f"(SELECT max(id) FROM {t})" for t in _ID_TABLES)).fetchone()
            finally:
                cur.close()
            self._next = {name: (top or 0) + 1 for name, top in zip(_ID_TABLES, tops)}
        first = self._next[table.name]
        self._next[table.name] = first + n
        return first

    def of_account(self, key: str, table: sa.Table, columns: tuple[Any, ...], id_column: str, ids: list[str]) -> list[Any]:
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

    def adopt_stored_echoes(self, convs: dict[str, tuple[int, int | None, int | None]], dd: Candidates) -> list[tuple[int, int]]:
        """Our messages stored earlier in a thread that had no ticket yet, and gets one on this page
        (the brand wrote first, or an older page of the pass held the customer's first message):
        (message id, ticket key) for each, counted on that ticket."""
        ticketed = {
            conv_id: key
            for conv_id, _contact, loaded in convs.values()
            if loaded is None and (key := dd.resolve(dd.conv_ticket.get(conv_id))) is not None and key in dd.tickets
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
            brand_wrote(dd.tickets[key], row.sent_at, adopted=True)
            out.append((row.id, key))
        return out

    def insert_tickets(self, dd: Candidates) -> dict[int, int]:
        new = [t for t in dd.tickets.values() if t.is_new]
        if not new:
            return {}
        rows = []
        for t in new:
            tri = triage("\n".join(t.text_for_triage), t.created_at, self.settings)
            rows.append(
                {
                    "status": new_status(t),
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
            # With their ids (`take_ids`): one executemany stores them all.
            first = self.take_ids(_t, len(rows))
            returned = list(range(first, first + len(rows)))
            names = ("id", *_TICKET_INSERT)
            many(conn, "ticket+", lambda: insert_values(conn, _t, names), names,
                  [(i, *(r[n] for n in _TICKET_INSERT)) for i, r in zip(returned, rows)])
        else:
            returned = conn.execute(sa.insert(_t).returning(_t.c.id, sort_by_parameter_order=True), rows).scalars().all()
        return {t.key: real for t, real in zip(new, returned)}

    def point_duplicates(self, dd: Candidates, tid: Any) -> None:
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

    def insert_refs(self, dd: Candidates, tid: Any) -> None:
        rows = [(tid(t.key), ref[:100]) for t in dd.tickets.values() for ref in sorted(t.new_refs)]
        names = ("ticket_id", "ref")
        many(self.conn, "ref+", lambda: insert_values(self.conn, _tr, names, ignore=["ticket_id", "ref"]), names, rows)

    def update_tickets(self, dd: Candidates, tid: Any) -> None:
        conn = self.conn
        self.point_duplicates(dd, tid)
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
        store_page_transitions(conn, dd.tickets.values())

    def insert_messages(
        self, msgs: list[InboundMessage], made: list[Decision], msg_conv: list[int], msg_contact: list[int], tid: Any,
        *, first_id: int | None = None,
    ) -> set[str]:
        """The page's messages; with `first_id` (SQLite, under the write lock) they take the ids
        from it on, in order, as `inbox.ingest.events.page_ids` gave them to the decisions."""
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
        if self.conn.dialect.name == "sqlite":
            # BEGIN IMMEDIATE holds the write lock since the key lookup, so nobody stored any of
            # these in between: one executemany of prepared tuples (SQLite's fast path) stores them
            # all, with the ids the decisions were given (no conflict clause: a clash would fail
            # the page, never shift an id).
            if first_id is None:
                raise ValueError("on SQLite a page's messages are inserted with their ids (inbox.store.fts.deferred_index gives the first)")
            names = ("id", *_MESSAGE_COLUMNS)
            with_ids = [(first_id + i, *r) for i, r in enumerate(rows)]
            many(self.conn, "message+id", lambda: insert_values(self.conn, _m, names), names, with_ids)
            return {r[2] for r in rows}
        stmt = insert_values(self.conn, _m, _MESSAGE_COLUMNS, ignore=["channel", "account_id", "external_id"])
        return set(
            self.conn.execute(stmt.returning(_m.c.external_id), [dict(zip(_MESSAGE_COLUMNS, r)) for r in rows]).scalars()
        )

    def update_conversations(
        self, msgs: list[InboundMessage], msg_conv: list[int], dd: Candidates, tid: Any, stored: dict[int, int | None]
    ) -> None:
        """Each thread's last (customer) message time, and its ticket where that changed.

        `stored`: conversation id -> its ticket id as read at the start of the page. A thread whose
        ticket stays is updated without its ticket column: SQLite rewrites an index entry of every
        indexed column an UPDATE sets, even to the same value (ix_conversation_ticket_id: ~26
        pages of WAL for 100 threads), and skips writing a row whose content did not change."""
        per: dict[int, list[Any]] = {}  # conversation id -> [last, last customer]
        for m, conv_id in zip(msgs, msg_conv):
            row = per.get(conv_id)
            if row is None:
                row = per[conv_id] = [m.sent_at, None]
            elif m.sent_at > row[0]:
                row[0] = m.sent_at
            if m.direction is Direction.IN and (row[1] is None or m.sent_at > row[1]):
                row[1] = m.sent_at
        moved, kept = [], []
        for conv_id, (last, lc) in per.items():
            ticket = tid(dd.resolve(dd.conv_ticket.get(conv_id)))
            if ticket is None or (conv_id in stored and stored[conv_id] == ticket):
                kept.append((conv_id, last, lc))  # coalesce(ticket, ticket_id) would leave it as it is
            else:
                moved.append((conv_id, last, lc, ticket))
        def times() -> dict[str, Any]:  # built only when the statement is first compiled, not per page
            return {
                "last_message_at": _later(_v.c.last_message_at, "b_last"),
                "last_customer_message_at": _later(_v.c.last_customer_message_at, "b_lc"),
            }

        many(
            self.conn,
            "conversation~",
            lambda: sa.update(_v).where(_v.c.id == sa.bindparam("b_id")).values(**times()),
            ("b_id", "b_last", "b_lc"),
            kept,
        )
        many(
            self.conn,
            "conversation~ticket",
            lambda: sa.update(_v)
            .where(_v.c.id == sa.bindparam("b_id"))
            .values(**times(), ticket_id=sa.func.coalesce(sa.bindparam("b_ticket", type_=sa.Integer()), _v.c.ticket_id)),
            ("b_id", "b_last", "b_lc", "b_ticket"),
            moved,
        )

    def mark_replies(self, msgs: list[InboundMessage], made: list[Decision]) -> int:
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

