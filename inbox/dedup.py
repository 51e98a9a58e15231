"""Dedup against existing tickets: which ticket does each new message of a page belong to?

The rules of DESIGN.md, in order, each decision carrying its rule, reason and score:

1. same platform message id  -> already stored, nothing to do (done by the ingest's key lookup);
2. our own message (echo)    -> outbound message on its ticket (the Reply's, else the thread's);
3. thread with an active ticket -> append; resolved within `reopen_days` -> reopen;
   resolved longer ago, or closed -> a new ticket linked to the old one;
4. for a message that would open a new ticket: an active ticket with the same order reference
   and the same person (linked contact, or the same handle / name on another channel) -> attach
   (score 1.0); an active ticket of the same linked person -> attach (0.9); the same order
   reference from someone else -> new ticket flagged "possible duplicate" (weak evidence). A
   shared order reference links the two contacts into one Person (audited, reversible);
5. near-identical text (RapidFuzz) from the same person (the same contact, linked contacts, or
   the same handle on another channel) within `similarity_window_hours` -> new ticket flagged as
   possible duplicate. Never dropped. A display name alone is not enough here: care complaints
   are alike by nature ("akun saya diblokir") and so are names, so two different "Budi Santoso"s
   with the same complaint would be flagged. With an order reference (rule 4) a name does count.

Work is batched per page: `PageDeduper.load` reads every candidate ticket for the page's threads,
order references, persons and handles in a few queries; `decide` then runs in memory, message by
message in time order, so matches *within* the same page work too.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from rapidfuzz import fuzz

from connectors.base import Direction, InboundMessage
from inbox.bulk import in_values, select
from inbox.schema_types import UTCDateTime
from inbox.models import (
    ACTIVE_STATUSES,
    Contact,
    Conversation,
    Message,
    Person,
    PersonEvent,
    Reply,
    Ticket,
    TicketRef,
    TicketStatus,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from inbox.config import Settings

# Rule labels stored on Message.dedup_rule and in TicketEvent details.
R_ECHO = "2:echo"
R_THREAD = "3:thread"
R_REOPEN = "3:reopen"
R_FOLLOWUP = "3:follow-up"
R_ORDER = "4:order"
R_PERSON = "4:person"
R_ORDER_WEAK = "4:order-weak"
R_SIMILAR = "5:similar"
R_NEW = "new"

_PENDING, _OPEN = TicketStatus.PENDING.value, TicketStatus.OPEN.value

MIN_SIMILAR_CHARS = 15  # greetings ("halo kak") are alike by nature; not evidence of a duplicate
MIN_IDENT_CHARS = 5
_NON_ALNUM = re.compile(r"[\W_]+")

_t = Ticket.__table__
_c = Contact.__table__
_v = Conversation.__table__
_m = Message.__table__
_r = TicketRef.__table__
_reply = Reply.__table__


@lru_cache(maxsize=16)
def _order_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def order_refs(text: str | None, patterns: list[str] | tuple[str, ...]) -> list[str]:
    """Order references quoted in `text`, upper-cased, in order of appearance, without repeats."""
    return _refs_in(text, _order_regex(tuple(patterns)))


def _refs_in(text: str | None, rx: re.Pattern[str] | None) -> list[str]:
    if not text or rx is None:
        return []
    seen: dict[str, None] = {}
    for m in rx.finditer(text):
        seen.setdefault(m.group(0).upper(), None)
    return list(seen)


def normalize_text(text: str | None) -> str:
    return " ".join((text or "").lower().split())


@lru_cache(maxsize=1 << 16)  # names and handles repeat across every page; bounded
def _ident(text: str | None) -> str | None:
    """A handle or name reduced to lower-case letters and digits: "@Melati.Sari_" and "Melati Sari"
    both become "melatisari". Short results are ignored: too many people are "budi"."""
    key = _NON_ALNUM.sub("", (text or "").lower())
    return key if len(key) >= MIN_IDENT_CHARS else None


@dataclass(slots=True)
class ContactInfo:
    id: int
    channel: str
    person_id: int | None
    handle: str | None
    name: str | None
    _idents: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def idents(self) -> frozenset[str]:
        """Handle and name reduced to letters and digits (computed when first asked: rule 4 only)."""
        if self._idents is None:
            self._idents = frozenset(k for k in (_ident(self.handle), _ident(self.name)) if k)
        return self._idents

    def keys(self) -> list[tuple[str, Any]]:
        """Index keys under which the same human may be found by rule 5 (no names: see above)."""
        out: list[tuple[str, Any]] = [("c", self.id)]
        if self.person_id is not None:
            out.append(("p", self.person_id))
        handle = _ident(self.handle)
        if handle is not None:
            out.append(("h", handle))
        return out

    def same_person(self, other: ContactInfo, *, names: bool = True) -> str | None:
        """Why two contacts are the same human, or None.

        Handles and names only count across channels: on one channel two contacts are two
        platform accounts, and two customers may well share a name. `names=False` (rule 5):
        only the same contact, linked contacts, or the same handle on another channel.
        """
        if self.id == other.id:
            return "same contact"
        if self.person_id is not None and self.person_id == other.person_id:
            return "linked contacts (same person)"
        if self.channel != other.channel:
            if names:
                shared = self.idents & other.idents
                what = "handle/name"
            else:
                mine, theirs = _ident(self.handle), _ident(other.handle)
                shared = frozenset((mine,)) if mine is not None and mine == theirs else frozenset()
                what = "handle"
            if shared:
                key = min(shared)
                return f"same customer by {what}: '{self._source(key)}' on {self.channel}, '{other._source(key)}' on {other.channel}"
        return None

    def _source(self, ident: str) -> str:
        return (self.handle if _ident(self.handle) == ident else self.name) or ident


@dataclass(slots=True)
class TicketState:
    """A ticket as the page sees it: loaded values plus what this page changes."""

    key: int  # the ticket id, or a negative placeholder for a ticket this page creates
    status: str
    contact_id: int | None
    person_id: int | None
    created_at: datetime
    resolved_at: datetime | None = None
    first_response_at: datetime | None = None
    merged_into_id: int | None = None
    loaded_last_customer_at: datetime | None = None
    is_new: bool = False
    # what this page does to it
    added: int = 0
    last_at: datetime | None = None
    last_customer_at: datetime | None = None
    snippet_from: InboundMessage | None = None  # the customer's newest message on this page
    set_first_response: datetime | None = None
    last_out_at: datetime | None = None  # the brand's newest message on this page
    reopened: bool = False
    reopened_from: str | None = None
    unpended: bool = False
    has_gap: bool = False
    new_refs: set[str] = field(default_factory=set)
    set_person_id: int | None = None
    # only for new tickets
    subject: str | None = None
    channel: str | None = None
    text_for_triage: list[str] = field(default_factory=list)
    linked_ticket_id: int | None = None
    possible_duplicate_of_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def snippet(self) -> str | None:
        return None if self.snippet_from is None else snippet_of(self.snippet_from)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def brand_answered(self) -> bool:
        """The brand wrote after the customer (e.g. from the native app): the ticket now waits on
        the customer, so a new or open ticket becomes pending."""
        out = self.last_out_at
        if out is None or self.status not in ("new", "open"):
            return False
        loaded, now = self.loaded_last_customer_at, self.last_customer_at
        last_in = now if loaded is None else (loaded if now is None or loaded > now else now)
        return last_in is not None and out >= last_in


class Decision(NamedTuple):
    """What rule placed a message where (an immutable value; one per new message, so a tuple)."""

    rule: str
    reason: str
    score: float
    ticket_key: int | None  # None: an echo in a thread without a ticket yet
    reply_id: int | None = None


@dataclass(slots=True)
class _Recent:
    ticket_key: int
    contact: ContactInfo
    raw_text: str
    sent_at: datetime
    _text: str | None = None

    @property
    def text(self) -> str:
        """The normalized text, computed when first compared (most candidates never are)."""
        if self._text is None:
            self._text = normalize_text(self.raw_text)
        return self._text


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
)


class PageDeduper:
    """Decides, in memory, the ticket of every new message of one page."""

    def __init__(self, conn: Connection, settings: Settings, account_db_id: int, channel: str) -> None:
        self.conn = conn
        self.settings = settings
        self.account_id = account_db_id
        self.channel = channel
        self.tickets: dict[int, TicketState] = {}
        self.contacts: dict[int, ContactInfo] = {}
        self.conv_ticket: dict[int, int | None] = {}  # conversation id -> current ticket key
        self.by_ref: dict[str, list[int]] = defaultdict(list)  # order ref -> active ticket keys
        self.by_person: dict[int, list[int]] = defaultdict(list)  # person id -> active ticket keys
        self.recent: dict[tuple[str, Any], list[_Recent]] = defaultdict(list)  # ContactInfo.keys() -> texts
        self.replies: dict[str, tuple[int, int, str]] = {}  # external id -> (reply id, ticket id, state)
        self._next_new = -1
        self.reopen_window = timedelta(days=settings.dedup.reopen_days)
        self.sim_window = timedelta(hours=settings.dedup.similarity_window_hours)
        self.person_links: list[tuple[int, int, str]] = []  # (contact id, person id, reason) done this page
        self._order_rx = _order_regex(tuple(settings.dedup.order_patterns))
        self._refs_of: dict[str, list[str]] = {}  # external id -> order references in its text
        self._keys_of: dict[int, tuple[int | None, list[tuple[str, Any]]]] = {}  # contact id -> (person, keys)

    def refs(self, msg: InboundMessage) -> list[str]:
        """`order_refs` of a message, found once per page (rules 4 and the ticket's refs ask again)."""
        found = self._refs_of.get(msg.external_id)
        if found is None:
            found = self._refs_of[msg.external_id] = _refs_in(msg.text, self._order_rx)
        return found

    # ── loading ────────────────────────────────────────────────────────────────────────────

    def load(
        self,
        messages: list[InboundMessage],
        conversations: dict[int, tuple[int | None, int | None]],
        contacts: dict[int, ContactInfo],
        msg_conv: list[int],
        msg_contact: list[int],
    ) -> None:
        """Read every candidate for the page in a few queries.

        `conversations`: conversation id -> (contact id, current ticket id);
        `msg_conv` / `msg_contact`: per message, its conversation and customer contact ids.
        """
        conn = self.conn
        self.contacts.update(contacts)
        for conv_id, (_contact_id, ticket_id) in conversations.items():
            self.conv_ticket[conv_id] = ticket_id

        # Rule 2: replies we sent, by platform id.
        echo_ids = [m.external_id for m in messages if m.direction is Direction.OUT]
        if echo_ids:
            rows = select(
                conn,
                "reply?echoes",
                lambda: sa.select(_reply.c.id, _reply.c.external_id, _reply.c.ticket_id, _reply.c.state).where(
                    _reply.c.account_id == sa.bindparam("account"), in_values(conn, _reply.c.external_id, "ids")
                ),
                account=self.account_id,
                ids=echo_ids,
            )
            for row in rows:
                self.replies[row.external_id] = (row.id, row.ticket_id, row.state)

        # Rule 3: the threads' current tickets (following merges).
        want = {t for t in self.conv_ticket.values() if t is not None}
        want |= {t for (_r, t, _s) in self.replies.values() if t is not None}
        self._load_tickets(want)
        # The tickets' contacts are read once, after rule 4 has added its candidates.

        # Rules 4 and 5 only matter where a message could open a new ticket: threads without an
        # active ticket. A thread with no ticket at all opens (or attaches) with its first
        # customer message; after that the thread has a ticket for the rest of the page.
        inbound = []
        first_seen: set[int] = set()
        for i, m in enumerate(messages):
            if m.direction is not Direction.IN:
                continue
            conv_id = msg_conv[i]
            key = self._resolve(self.conv_ticket.get(conv_id))
            if key is None:
                if conv_id not in first_seen:
                    first_seen.add(conv_id)
                    inbound.append(i)
            elif not self.tickets[key].active:
                inbound.append(i)
        if not inbound:
            self._load_ticket_contacts()
            return
        # Rule 4: active tickets quoting the page's order references, and of the page's persons.
        refs = sorted({r for i in inbound for r in self.refs(messages[i])})
        if refs:
            # Two indexed lookups (ref -> ticket ids, then those tickets): a join lets the planner
            # walk every active ticket by status instead, which grows with the store.
            quoted = select(conn, "ref?page", lambda: sa.select(_r.c.ref, _r.c.ticket_id).where(in_values(conn, _r.c.ref, "refs")), refs=refs)
            if quoted:
                rows = self._ticket_rows(sorted({q.ticket_id for q in quoted}))
                live = {r.id for r in rows if r.status in ACTIVE_STATUSES and r.merged_into_id is None}
                self._remember_tickets([r for r in rows if r.id in live])
                for q in sorted(quoted, key=lambda q: q.ticket_id):
                    if q.ticket_id in live:
                        self.by_ref[q.ref].append(q.ticket_id)
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
            self._remember_tickets(rows)
            for row in rows:
                self.by_person[linked[row.contact_id]].append(row.id)
        self._load_ticket_contacts()

        # Rule 5: recent customer messages of the same contact / person / handle, any channel.
        texts = [i for i in inbound if len(normalize_text(messages[i].text)) >= MIN_SIMILAR_CHARS]
        if texts:
            page_contacts = [contacts[msg_contact[i]] for i in texts]
            handles = sorted({c.handle for c in page_contacts if c.handle})
            pids = sorted({c.person_id for c in page_contacts if c.person_id is not None})
            lo = min(messages[i].sent_at for i in texts) - self.sim_window
            hi = max(messages[i].sent_at for i in texts) + self.sim_window
            channel = self.channel

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
                if raw_text is None or len(raw_text) < MIN_SIMILAR_CHARS:  # normalizing only shortens
                    continue
                info = self.contacts.get(cid)
                if info is None:
                    info = self.contacts[cid] = ContactInfo(cid, cand_channel, person_id, handle, name)
                self._add_recent(_Recent(ticket_id, info, raw_text, sent_at))  # keys cached per contact there

    def _remember_tickets(self, rows: list[Any]) -> None:
        for row in rows:
            if row.id not in self.tickets:
                self.tickets[row.id] = _ticket_state(row)

    def _load_ticket_contacts(self) -> None:
        """The contacts of the loaded tickets not known yet, in one query (rules 4 and 5 compare them)."""
        missing = {t.contact_id for t in self.tickets.values() if t.contact_id and t.contact_id not in self.contacts}
        if missing:
            conn = self.conn
            for row in select(
                conn,
                "contact?tickets",
                lambda: sa.select(_c.c.id, _c.c.channel, _c.c.person_id, _c.c.handle, _c.c.name).where(in_values(conn, _c.c.id, "ids")),
                ids=sorted(missing),
            ):
                self.contacts[row.id] = ContactInfo(row.id, row.channel, row.person_id, row.handle, row.name)

    def _load_tickets(self, ids: set[int]) -> None:
        todo = {i for i in ids if i not in self.tickets}
        for _ in range(8):  # merge chains are short; bounded anyway
            if not todo:
                break
            rows = self._ticket_rows(sorted(todo))
            self._remember_tickets(rows)
            todo = {r.merged_into_id for r in rows if r.merged_into_id and r.merged_into_id not in self.tickets}

    def _ticket_rows(self, ids: list[int]) -> list[Any]:
        conn = self.conn
        return select(conn, "ticket?ids", lambda: sa.select(*_TICKET_COLS).where(in_values(conn, _t.c.id, "ids")).order_by(_t.c.id), ids=ids)

    def _resolve(self, key: int | None) -> int | None:
        """Follow `merged_into_id` to the surviving ticket."""
        seen = 0
        while key is not None and key in self.tickets and self.tickets[key].merged_into_id and seen < 8:
            key = self.tickets[key].merged_into_id
            seen += 1
        return key

    # ── deciding ───────────────────────────────────────────────────────────────────────────

    def decide(self, msg: InboundMessage, conv_id: int, contact: ContactInfo) -> Decision:
        if msg.direction is Direction.OUT:
            return self._echo(msg, conv_id)
        self._current_contact = contact
        current = self._resolve(self.conv_ticket.get(conv_id))
        if current is not None:
            self.conv_ticket[conv_id] = current
        ticket = self.tickets.get(current) if current is not None else None
        if ticket is not None:
            if ticket.active:
                self._append(ticket, msg)
                return Decision(R_THREAD, f"thread has {ticket.status} ticket {self._label(ticket)}", 1.0, ticket.key)
            if ticket.resolved_at is not None and msg.sent_at <= ticket.resolved_at:
                # Written before the ticket was resolved (late delivery): history, not a reopen.
                self._append(ticket, msg)
                return Decision(R_THREAD, f"written before ticket #{ticket.key} was resolved", 1.0, ticket.key)
            if (
                ticket.status == TicketStatus.RESOLVED.value
                and ticket.resolved_at is not None
                and msg.sent_at - ticket.resolved_at <= self.reopen_window
            ):
                ticket.reopened = True
                ticket.reopened_from = ticket.status
                ticket.status = TicketStatus.OPEN.value
                self._append(ticket, msg)
                days = (msg.sent_at - ticket.resolved_at).total_seconds() / 86400
                return Decision(
                    R_REOPEN,
                    f"ticket #{ticket.key} was resolved {days:.1f} days ago (reopen window {self.settings.dedup.reopen_days:g} days)",
                    1.0,
                    ticket.key,
                )
        previous = ticket.key if ticket is not None else None
        decision = self._cross_channel(msg, contact, previous)
        self.conv_ticket[conv_id] = decision.ticket_key
        return decision

    def _label(self, t: TicketState) -> str:
        return f"#{t.key}" if t.key > 0 else "(new in this sync)"

    def _echo(self, msg: InboundMessage, conv_id: int) -> Decision:
        reply = self.replies.get(msg.external_id)
        key: int | None
        if reply is not None:
            key = self._resolve(reply[1])
            reason = f"echo of our reply #{reply[0]}"
        else:
            key = self._resolve(self.conv_ticket.get(conv_id))
            reason = "sent by the brand account (native app or another tool)"
        ticket = self.tickets.get(key) if key is not None else None
        if ticket is not None:
            self.add_outbound(ticket, msg.sent_at)
        return Decision(R_ECHO, reason, 1.0, key, reply[0] if reply else None)

    def add_outbound(self, ticket: TicketState, sent_at: datetime) -> None:
        """One of the brand's messages joins `ticket`: counters, and the first response when it
        answers the ticket (sent at or after the customer message that opened it)."""
        ticket.added += 1
        ticket.last_at = max(ticket.last_at or sent_at, sent_at)
        ticket.last_out_at = max(ticket.last_out_at or sent_at, sent_at)
        if ticket.first_response_at is None and sent_at >= ticket.created_at:
            if ticket.set_first_response is None or sent_at < ticket.set_first_response:
                ticket.set_first_response = sent_at

    def adopt_echoes(self, messages: list[InboundMessage], made: list[Decision], msg_conv: list[int]) -> None:
        """Our messages decided before their thread had a ticket (the oldest readable message of a
        thread, or older than the customer's first message on this page) join the ticket the page
        gave the thread: every message of a ticketed thread belongs to its ticket."""
        for i, d in enumerate(made):
            if d.rule == R_ECHO and d.ticket_key is None and self._resolve(self.conv_ticket.get(msg_conv[i])) is not None:
                made[i] = self._echo(messages[i], msg_conv[i])

    def _append(self, ticket: TicketState, msg: InboundMessage) -> None:
        sent_at = msg.sent_at
        ticket.added += 1
        if ticket.last_at is None or sent_at > ticket.last_at:
            ticket.last_at = sent_at
        if ticket.last_customer_at is None or sent_at >= ticket.last_customer_at:
            ticket.last_customer_at = sent_at
            ticket.snippet_from = msg
        if ticket.status == _PENDING:
            # waiting on the customer, and the customer answered
            ticket.status = _OPEN
            ticket.unpended = True
        for ref in self.refs(msg):
            keys = self.by_ref[ref]
            if ticket.key not in keys:
                keys.append(ticket.key)
                ticket.new_refs.add(ref)
        if ticket.is_new:
            ticket.text_for_triage.append(msg.text or "")
        self._remember_recent(ticket.key, msg)

    def _remember_recent(self, key: int, msg: InboundMessage) -> None:
        text = msg.text
        if text is not None and len(text) >= MIN_SIMILAR_CHARS:  # normalizing only shortens
            contact = self._current_contact
            if contact is not None:
                self._add_recent(_Recent(key, contact, text, msg.sent_at))

    def _add_recent(self, item: _Recent) -> None:
        contact = item.contact
        cached = self._keys_of.get(contact.id)
        if cached is None or cached[0] != contact.person_id:  # linking a person adds a key
            cached = self._keys_of[contact.id] = (contact.person_id, contact.keys())
        recent = self.recent
        for k in cached[1]:
            recent[k].append(item)

    _current_contact: ContactInfo | None = None

    def _cross_channel(self, msg: InboundMessage, contact: ContactInfo, previous: int | None) -> Decision:
        refs = self.refs(msg)
        weak: tuple[int, str] | None = None
        # Rule 4a: same order reference in an active ticket.
        for ref in refs:
            for key in self.by_ref.get(ref, ()):
                cand = self.tickets.get(key)
                if cand is None or not cand.active or key == previous:
                    continue
                other = self.contacts.get(cand.contact_id) if cand.contact_id else None
                why = contact.same_person(other) if other is not None else None
                if why:
                    self._link_persons(contact, other, f"shared invoice {ref}")  # type: ignore[arg-type]
                    self._append(cand, msg)
                    return Decision(R_ORDER, f"same invoice {ref} and {why}: attached to ticket {self._label(cand)}", 1.0, key)
                if weak is None:
                    weak = (key, ref)
        # Rule 4b: the same (linked) person has an active ticket on another thread.
        if contact.person_id is not None:
            for key in self.by_person.get(contact.person_id, ()):
                cand = self.tickets.get(key)
                if cand is None or not cand.active or key == previous:
                    continue
                self._append(cand, msg)
                return Decision(R_PERSON, f"same person has active ticket {self._label(cand)} on another thread", 0.9, key)
        # A new ticket, maybe flagged.
        ticket = self._new_ticket(msg, contact)
        if previous is not None:
            ticket.linked_ticket_id = previous
        if weak is not None:
            key, ref = weak
            other = self.contacts.get(self.tickets[key].contact_id or -1)
            if other is not None:
                self._link_persons(contact, other, f"shared invoice {ref}")
            ticket.possible_duplicate_of_id = key
            self._append(ticket, msg)
            return Decision(
                R_ORDER_WEAK, f"invoice {ref} is also in active ticket {self._label(self.tickets[key])} from another customer", 0.5, ticket.key
            )
        similar = self._similar(msg, contact, ticket.key)
        self._append(ticket, msg)
        if similar is not None:
            key, score, why = similar
            ticket.possible_duplicate_of_id = key
            return Decision(R_SIMILAR, f"near-identical text ({score:.0f}%) to ticket {self._label(self.tickets[key]) if key in self.tickets else '#' + str(key)}, {why}", round(score / 100, 3), ticket.key)
        if previous is not None:
            old = self.tickets[previous]
            why = "closed" if old.status == TicketStatus.CLOSED.value else "resolved more than the reopen window ago"
            return Decision(R_FOLLOWUP, f"thread's ticket #{previous} was {why}: follow-up ticket", 1.0, ticket.key)
        return Decision(R_NEW, "no open ticket for this thread, order reference or person", 1.0, ticket.key)

    def _similar(self, msg: InboundMessage, contact: ContactInfo, own_key: int) -> tuple[int, float, str] | None:
        text = normalize_text(msg.text)
        if len(text) < MIN_SIMILAR_CHARS:
            return None
        threshold = self.settings.dedup.similarity_threshold
        best: tuple[int, float, str] | None = None
        seen: set[int] = set()
        for k in contact.keys():
            for cand in self.recent.get(k, ()):
                if id(cand) in seen:
                    continue
                seen.add(id(cand))
                if cand.ticket_key == own_key or abs(cand.sent_at - msg.sent_at) > self.sim_window:
                    continue
                why = contact.same_person(cand.contact, names=False)
                if not why:
                    continue
                cand_text = cand.text
                if len(cand_text) < MIN_SIMILAR_CHARS:
                    continue
                score = fuzz.ratio(text, cand_text, score_cutoff=threshold)
                if score and (best is None or score > best[1]):
                    best = (self._resolve(cand.ticket_key) or cand.ticket_key, score, why)
        return best

    def _new_ticket(self, msg: InboundMessage, contact: ContactInfo) -> TicketState:
        key = self._next_new
        self._next_new -= 1
        ticket = TicketState(
            key=key,
            status=TicketStatus.NEW.value,
            contact_id=contact.id,
            person_id=contact.person_id,
            created_at=msg.sent_at,
            is_new=True,
            subject=snippet_of(msg),
            channel=msg.channel.value,
        )
        self.tickets[key] = ticket
        if contact.person_id is not None:
            self.by_person[contact.person_id].append(key)
        return ticket

    def _link_persons(self, a: ContactInfo, b: ContactInfo, reason: str) -> None:
        """Link two contacts into one Person (audited). Two different existing persons are left alone."""
        if a.id == b.id or (a.person_id is not None and a.person_id == b.person_id):
            return
        if a.person_id is not None and b.person_id is not None:
            return  # merging persons is an agent's decision
        conn = self.conn
        person_id = a.person_id or b.person_id
        if person_id is None:
            person_id = conn.execute(
                sa.insert(Person.__table__).values(display_name=a.name or b.name or a.handle or b.handle, created_at=utcnow()).returning(Person.__table__.c.id)
            ).scalar_one()
        for contact in (a, b):
            if contact.person_id is None:
                conn.execute(sa.update(_c).where(_c.c.id == contact.id).values(person_id=person_id))
                conn.execute(
                    sa.insert(PersonEvent.__table__).values(
                        person_id=person_id, contact_id=contact.id, action="link", reason=reason, actor="sync", at=utcnow()
                    )
                )
                contact.person_id = person_id
                self.person_links.append((contact.id, person_id, reason))
                for t in self.tickets.values():
                    if t.contact_id == contact.id and t.person_id is None:
                        t.person_id = person_id
                        t.set_person_id = person_id
                self.by_person[person_id].extend(
                    k for k, t in self.tickets.items() if t.contact_id == contact.id and t.active and k not in self.by_person[person_id]
                )


def snippet_of(msg: InboundMessage, limit: int = 200) -> str:
    text = " ".join((msg.text or "").split())
    if not text:
        kinds = ", ".join(a.type for a in msg.attachments) if msg.attachments else msg.kind.value
        return f"[{kinds}]"
    return text if len(text) <= limit else text[: limit - 1] + "…"
