"""The candidates of one page for the dedup rules, and the handful of queries that load them.

Work is batched per page: `load_candidates` reads every candidate ticket for the page's threads,
order references, persons and handles in a few queries; `inbox.dedup.rules.decide` then runs in
memory, message by message in time order, so matches *within* the same page work too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage
from connectors.enums import Direction
from inbox.dedup.identity import MIN_RAW_CHARS, MIN_SIMILAR_CHARS, ContactInfo, normalize_text, refs_in
from inbox.dedup.state import REPEAT_LOOKBACK, Candidates, RefHit, Recent, Said
from inbox.store.fastpath import in_values, select
from inbox.store.models import ACTIVE_STATUSES, Account, Contact, Conversation, Message, Reply, Ticket, TicketRef
from inbox.store.types import UTCDateTime
from inbox.tickets.workflow import TicketState

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_t = Ticket.__table__
_c = Contact.__table__
_v = Conversation.__table__
_m = Message.__table__
_r = TicketRef.__table__
_reply = Reply.__table__


def load_candidates(
    conn: Connection,
    cands: Candidates,
    messages: list[InboundMessage],
    conversations: dict[int, tuple[int | None, int | None]],
    contacts: dict[int, ContactInfo],
    msg_conv: list[int],
    msg_contact: list[int],
) -> None:
    """Read every candidate for the page's new messages in a few queries.

    `conversations`: conversation id -> (contact id, current ticket id);
    `msg_conv` / `msg_contact`: per message, its conversation and customer contact ids.
    """
    cands.contacts.update(contacts)
    for conv_id, (_contact_id, ticket_id) in conversations.items():
        cands.conv_ticket[conv_id] = ticket_id

    # Rule 2: replies we sent, by platform id.
    echo_ids = [m.external_id for m in messages if m.direction is Direction.OUT]
    if echo_ids:
        rows = select(
            conn,
            "reply?echoes",
            lambda: sa.select(_reply.c.id, _reply.c.external_id, _reply.c.ticket_id, _reply.c.state).where(
                _reply.c.account_id == sa.bindparam("account"), in_values(conn, _reply.c.external_id, "ids")
            ),
            account=cands.account_id,
            ids=echo_ids,
        )
        for row in rows:
            cands.replies[row.external_id] = (row.id, row.ticket_id, row.state)

    # Rule 3: the threads' current tickets (following merges).
    want = {t for t in cands.conv_ticket.values() if t is not None}
    want |= {t for (_r, t, _s) in cands.replies.values() if t is not None}
    _load_tickets(conn, cands, want)

    inbound = [i for i, m in enumerate(messages) if m.direction is Direction.IN]
    # Rule 4 (order references) matters for every customer message: one that opens a ticket
    # may attach, and one added to its thread's ticket may show that two tickets are one.
    _load_refs(conn, cands, messages, inbound, msg_conv)
    # Rule 4 (linked person) and rule 5 across threads only matter where a message could open a
    # new ticket: threads without an active ticket. A thread with no ticket at all opens (or
    # attaches) with its first customer message; after that it has a ticket for the page.
    opening = []
    first_seen: set[int] = set()
    for i in inbound:
        conv_id = msg_conv[i]
        key = cands.resolve(cands.conv_ticket.get(conv_id))
        if key is None:
            if conv_id not in first_seen:
                first_seen.add(conv_id)
                opening.append(i)
        elif not cands.tickets[key].active:
            opening.append(i)
    # Rule 5 in the thread (repeats): the threads' recent customer messages.
    _load_said(conn, cands, messages, inbound, msg_conv)
    if opening:
        _load_opening(conn, cands, messages, contacts, msg_contact, opening)
    else:
        _load_ticket_contacts(conn, cands)
    # Which accounts the config still syncs, when a candidate ticket is another account's.
    names = [a.name for a in cands.settings.accounts]
    if names and any(t.account_id is not None and t.account_id != cands.account_id for t in cands.tickets.values()):
        acc = Account.__table__
        cands.synced_accounts = set(conn.execute(sa.select(acc.c.id).where(acc.c.name.in_(names))).scalars())


def load_threads(conn: Connection, cands: Candidates, conversations: dict[int, int | None]) -> None:
    """A page without new messages (gaps only): the threads' current tickets (conversation id -> ticket id)."""
    _load_tickets(conn, cands, {t for t in conversations.values() if t is not None})
    cands.conv_ticket.update(conversations)


def _load_opening(
    conn: Connection, cands: Candidates, messages: list[InboundMessage], contacts: dict[int, ContactInfo], msg_contact: list[int], opening: list[int]
) -> None:
    """The candidates of messages that may open a ticket (`opening`: their indexes): the active
    tickets of linked persons (rule 4) and recent texts of the same customer anywhere (rule 5)."""
    persons = sorted({c.person_id for c in contacts.values() if c.person_id is not None})
    if persons:
        linked = dict(
            select(conn, "contact?persons", lambda: sa.select(_c.c.id, _c.c.person_id).where(in_values(conn, _c.c.person_id, "ids")), ids=persons)
        )
        rows = select(
            conn,
            "ticket?contacts",
            lambda: sa.select(*_TICKET_COLS).where(in_values(conn, _t.c.contact_id, "ids")).order_by(_t.c.id),
            ids=sorted(linked),
        ) if linked else []
        rows = [r for r in rows if r.status in ACTIVE_STATUSES and r.merged_into_id is None]
        _remember_tickets(cands, rows)
        for row in rows:
            cands.by_person[linked[row.contact_id]].append(row.id)
    _load_ticket_contacts(conn, cands)  # before the texts' own contacts: the tickets' come first

    # Rule 5: recent customer messages of the same contact / person / handle, any channel.
    texts = [i for i in opening if len(normalize_text(messages[i].text)) >= MIN_SIMILAR_CHARS]
    if texts:
        page_contacts = [contacts[msg_contact[i]] for i in texts]
        handles = sorted({c.handle for c in page_contacts if c.handle})
        pids = sorted({c.person_id for c in page_contacts if c.person_id is not None})
        lo = min(messages[i].sent_at for i in texts) - cands.sim_window
        hi = max(messages[i].sent_at for i in texts) + cands.sim_window
        channel = cands.channel

        def build() -> Any:
            return (
                sa.select(_m.c.ticket_id, _m.c.text, _m.c.sent_at, _c.c.id.label("cid"), _c.c.channel, _c.c.person_id, _c.c.handle, _c.c.name)
                .select_from(_c)
                # A thread quiet since before the window cannot hold a candidate: skip its messages.
                .join(_v, sa.and_(_v.c.contact_id == _c.c.id, _v.c.last_customer_message_at >= sa.bindparam("lo", type_=UTCDateTime())))
                .join(_m, _m.c.conversation_id == _v.c.id)
                .where(
                    sa.or_(
                        # A handle only identifies a customer across channels (ContactInfo.same_person).
                        sa.and_(in_values(conn, _c.c.handle, "handles"), _c.c.channel != sa.bindparam("channel")),
                        in_values(conn, _c.c.person_id, "persons"),
                        in_values(conn, _c.c.id, "contacts"),
                    ),
                    _m.c.direction == Direction.IN.value,
                    _m.c.sent_at >= sa.bindparam("lo", type_=UTCDateTime()),
                    _m.c.sent_at <= sa.bindparam("hi", type_=UTCDateTime()),
                    _m.c.ticket_id.is_not(None),
                )
                .order_by(_m.c.sent_at)
                .limit(2000)  # bounded: a pathological handle must not load the world
            )

        rows = select(
            conn, "message?similar", build,
            handles=handles, channel=channel, persons=pids, contacts=sorted({c.id for c in page_contacts}), lo=lo, hi=hi,
        )
        for ticket_id, raw_text, sent_at, cid, cand_channel, person_id, handle, name in rows:
            if raw_text is None or len(raw_text) < MIN_RAW_CHARS:
                continue
            info = cands.contacts.get(cid)
            if info is None:
                info = cands.contacts[cid] = ContactInfo(cid, cand_channel, person_id, handle, name)
            cands.add_recent(Recent(ticket_id, info, raw_text, sent_at))  # keys cached per contact there

def _load_refs(conn: Connection, cands: Candidates, messages: list[InboundMessage], inbound: list[int], msg_conv: list[int]) -> None:
    """Rule 4's candidates: the stored tickets quoting the page's order references, and the
    customer messages in them that quote them (who, when), for the tickets that are not the
    quoting thread's own."""
    quoting: dict[str, set[int | None]] = defaultdict(set)  # ref -> the quoting threads' tickets
    for i in inbound:
        for ref in cands.refs(messages[i]):
            quoting[ref].add(cands.resolve(cands.conv_ticket.get(msg_conv[i])))
    if not quoting:
        return
    # Two indexed lookups (ref -> ticket ids, then those tickets): a join lets the planner
    # walk every active ticket by status instead, which grows with the store.
    quoted = select(conn, "ref?page", lambda: sa.select(_r.c.ref, _r.c.ticket_id).where(in_values(conn, _r.c.ref, "refs")), refs=sorted(quoting))
    if not quoted:
        return
    _load_tickets(conn, cands, {q.ticket_id for q in quoted})
    wanted: set[int] = set()
    for q in quoted:
        cands.known_refs.add((q.ticket_id, q.ref))
        key = cands.resolve(q.ticket_id)
        if key is None or key not in cands.tickets:
            continue
        cands.ref_tickets[q.ref].add(key)
        # A ticket quoting a reference only its own thread quotes on this page needs nothing more.
        if cands.tickets[key].active and quoting[q.ref] != {key}:
            wanted.add(q.ticket_id)
    if not wanted:
        return
    refs = set(quoting)
    sent = [messages[i].sent_at for i in inbound if cands.refs(messages[i])]
    rows = select(
        conn,
        "message?refs",
        lambda: _customer_messages_between(conn, _m.c.ticket_id, "tickets", _m.c.ticket_id, _m.c.contact_id, _m.c.sent_at, _m.c.text),
        tickets=sorted(wanted),
        lo=min(sent) - cands.order_window,
        hi=max(sent) + cands.order_window,
    )
    missing: set[int] = set()
    for row in rows:
        if row.contact_id is None:
            continue
        for ref in refs_in(row.text, cands.order_rx):
            if ref in refs:
                cands.add_hit(ref, RefHit(row.ticket_id, row.contact_id, row.sent_at))
                if row.contact_id not in cands.contacts:
                    missing.add(row.contact_id)
    _load_contacts(conn, cands, missing)

def _load_said(conn: Connection, cands: Candidates, messages: list[InboundMessage], inbound: list[int], msg_conv: list[int]) -> None:
    """The recent customer messages of the page's threads that already have a ticket (repeats)."""
    convs = sorted({
        msg_conv[i] for i in inbound
        if len(messages[i].text or "") >= MIN_RAW_CHARS and cands.conv_ticket.get(msg_conv[i]) is not None
    })
    if not convs:
        return
    sent = [messages[i].sent_at for i in inbound]

    def build() -> Any:
        # A page message looks back at most REPEAT_LOOKBACK customer messages: those stored
        # since the page's oldest message (usually none), and each thread's last few before
        # it. A long thread costs no more than a short one: its last few are read newest first
        # from the (conversation, sent_at) index, each thread on its own, stopping at the
        # REPEAT_LOOKBACK-th (a window over every message of the threads' day read them all).
        x = _m.alias("said")
        lo, hi, mid = (sa.bindparam(n, type_=UTCDateTime()) for n in ("lo", "hi", "mid"))
        long_enough = sa.func.length(x.c.text) >= MIN_RAW_CHARS
        last_few = (
            sa.select(x.c.id)
            .where(x.c.conversation_id == _v.c.id, x.c.direction == Direction.IN.value, x.c.sent_at >= lo, x.c.sent_at < mid, x.c.sent_at <= hi, long_enough)
            .order_by(x.c.sent_at.desc(), x.c.id.desc())
            .limit(REPEAT_LOOKBACK)
            .correlate(_v)
        )
        before = sa.select(_m.c.id, _m.c.conversation_id, _m.c.text, _m.c.sent_at).select_from(_v).join(_m, _m.c.id.in_(last_few)).where(in_values(conn, _v.c.id, "convs"))
        since = sa.select(x.c.id, x.c.conversation_id, x.c.text, x.c.sent_at).where(
            in_values(conn, x.c.conversation_id, "convs"), x.c.direction == Direction.IN.value, x.c.sent_at >= mid, x.c.sent_at >= lo, x.c.sent_at <= hi, long_enough
        )
        both = sa.union_all(before, since).subquery()
        return sa.select(both.c.id, both.c.conversation_id, both.c.text, both.c.sent_at).order_by(both.c.sent_at, both.c.id).limit(5000)  # bounded, as every candidate query

    first = min(sent)
    rows = select(conn, "message?said", build, convs=convs, lo=first - cands.sim_window, hi=max(sent), mid=first)
    for row in rows:
        if row.text is not None and len(row.text) >= MIN_RAW_CHARS:
            cands.said[row.conversation_id].append(Said(row.id, row.text, row.sent_at))

def _remember_tickets(cands: Candidates, rows: list[Any]) -> None:
    for row in rows:
        if row.id not in cands.tickets:
            cands.tickets[row.id] = _ticket_state(row)

def _load_ticket_contacts(conn: Connection, cands: Candidates) -> None:
    """The contacts of the loaded tickets not known yet, in one query (rules 4 and 5 compare them)."""
    _load_contacts(conn, cands, {t.contact_id for t in cands.tickets.values() if t.contact_id and t.contact_id not in cands.contacts})

def _load_contacts(conn: Connection, cands: Candidates, missing: set[int]) -> None:
    if missing:
        for row in select(
            conn,
            "contact?tickets",
            lambda: sa.select(_c.c.id, _c.c.channel, _c.c.person_id, _c.c.handle, _c.c.name).where(in_values(conn, _c.c.id, "ids")),
            ids=sorted(missing),
        ):
            cands.contacts[row.id] = ContactInfo(row.id, row.channel, row.person_id, row.handle, row.name)

def _load_tickets(conn: Connection, cands: Candidates, ids: set[int]) -> None:
    todo = {i for i in ids if i not in cands.tickets}
    for _ in range(8):  # merge chains are short; bounded anyway
        if not todo:
            break
        rows = _ticket_rows(conn, sorted(todo))
        _remember_tickets(cands, rows)
        todo = {r.merged_into_id for r in rows if r.merged_into_id and r.merged_into_id not in cands.tickets}

def _ticket_rows(conn: Connection, ids: list[int]) -> list[Any]:
    return select(conn, "ticket?ids", lambda: sa.select(*_TICKET_COLS).where(in_values(conn, _t.c.id, "ids")).order_by(_t.c.id), ids=ids)


def _ticket_state(row: Any) -> TicketState:
    return TicketState(
        key=row.id,
        status=row.status,
        contact_id=row.contact_id,
        person_id=row.person_id,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        first_response_at=row.first_response_at,
        merged_into_id=row.merged_into_id,
        loaded_last_customer_at=row.last_customer_message_at,
        priority=row.priority,
        first_response_due_at=row.first_response_due_at,
        possible_duplicate_of_id=row.possible_duplicate_of_id,
        account_id=row.account_id,
    )


_TICKET_COLS = (
    _t.c.id,
    _t.c.status,
    _t.c.contact_id,
    _t.c.person_id,
    _t.c.created_at,
    _t.c.resolved_at,
    _t.c.first_response_at,
    _t.c.merged_into_id,
    _t.c.last_customer_message_at,
    _t.c.priority,
    _t.c.first_response_due_at,
    _t.c.possible_duplicate_of_id,
    _t.c.account_id,
)


def _customer_messages_between(conn: Any, key: Any, name: str, *columns: Any) -> Any:
    """Customer messages whose `key` is in the list `name`, sent between :lo and :hi, oldest first.
    Bounded: a reference quoted, or a thread written, thousands of times is not one customer's case."""
    return (
        sa.select(*columns)
        .where(
            in_values(conn, key, name),
            _m.c.direction == Direction.IN.value,
            _m.c.sent_at >= sa.bindparam("lo", type_=UTCDateTime()),
            _m.c.sent_at <= sa.bindparam("hi", type_=UTCDateTime()),
        )
        .order_by(_m.c.sent_at, _m.c.id)
        .limit(5000)
    )
