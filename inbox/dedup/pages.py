"""Dedup against existing tickets: which ticket does each new message of a page belong to?

The rules of the README ("Dedup rules"), in order, each decision carrying its rule, reason, score
and the other tickets it considered:

1. same platform message id  -> already stored, nothing to do (done by the ingest's key lookup);
2. our own message (echo)    -> outbound message on its ticket (the Reply's, else the thread's);
3. thread with an active ticket -> append; resolved within `reopen_days` -> reopen;
   resolved longer ago, or closed -> a new ticket linked to the old one;
4. the same order reference quoted within `order_window_days` in another active ticket by a
   matching customer (the same contact, contacts an agent linked into one person, or the same
   handle / name on another channel, compared without case, accents, spacing or emoji) -> one
   ticket: a message that would open a ticket is attached (score 1.0); a thread that already has
   its ticket has the other ticket merged into the older one (audited, `inbox unmerge` undoes it).
   An active ticket of the same linked person -> attach (0.9). The same order reference from
   someone else -> flagged "possible duplicate", both tickets pointing at each other; never
   attached, never a person link (an order number is not an identity);
5. near-identical text after Indonesian chat normalization (`inbox.dedup.chatnorm`) from the same
   person (the same contact, linked contacts, or the same handle on another channel) within
   `similarity_window_hours`: in another thread -> new ticket flagged as possible duplicate; in
   the same thread -> stored as a repeat of the earlier message (ticket's repeat count; past its
   first-response due it raises the priority one step). Never dropped. A display name alone is
   not enough here: complaints are alike ("akun saya diblokir") and so are names.

Rule 4 is what makes the grouping independent of the order in which accounts are polled and pages
stored: whichever of two matching messages is stored second finds the first (in the store, or
earlier in the same transaction) and joins it, and a reference that shows up later in a thread
joins the tickets then.

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

from connectors.base import InboundMessage
from connectors.enums import Direction
from inbox.store.fastpath import in_values, select
from inbox.dedup.chatnorm import chat_text, ident
from inbox.store.types import PRIORITY_RANK, UTCDateTime
from inbox.store.models import (
    ACTIVE_STATUSES,
    Account,
    Contact,
    Conversation,
    Message,
    Reply,
    Ticket,
    TicketRef,
    TicketStatus,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from inbox.settings import Settings

# Rule labels stored on Message.dedup_rule and in TicketEvent details.
R_ECHO = "2:echo"
R_THREAD = "3:thread"
R_REOPEN = "3:reopen"
R_FOLLOWUP = "3:follow-up"
R_ORDER = "4:order"
R_PERSON = "4:person"
R_ORDER_WEAK = "4:order-weak"
R_SIMILAR = "5:similar"
R_REPEAT = "5:repeat"
R_NEW = "new"

_PENDING, _OPEN = TicketStatus.PENDING.value, TicketStatus.OPEN.value

MIN_SIMILAR_CHARS = 15  # greetings ("halo kak") are alike by nature; not evidence of a duplicate
MIN_RAW_CHARS = 5  # below this no text normalizes to MIN_SIMILAR_CHARS: "g g" (3) -> "tidak tidak" (11), "g g g" (5) -> 17
REPEAT_LOOKBACK = 5  # a repeat is of one of the thread's last few customer messages (bounded work per message)
MAX_CONSIDERED = 10  # other tickets listed per decision (`inbox show --why`)
_RANKED = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)  # urgent, high, normal, low

_t = Ticket.__table__
_c = Contact.__table__
_v = Conversation.__table__
_m = Message.__table__
_r = TicketRef.__table__
_reply = Reply.__table__


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
    """Text as rule 5 compares it (Indonesian chat style undone: `inbox.dedup.chatnorm.chat_text`)."""
    return chat_text(text)


def _ident(text: str | None) -> str | None:
    return ident(text)


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

    def describe(self) -> str:
        who = self.handle and "@" + self.handle.lstrip("@") or self.name or f"contact {self.id}"
        return f"{who} on {self.channel}"

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
    priority: str | None = None
    first_response_due_at: datetime | None = None
    possible_duplicate_of_id: int | None = None
    account_id: int | None = None
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
    set_duplicate_of: int | None = None  # an existing ticket now pointing at a possible duplicate
    repeats: int = 0
    priority_changes: list[dict[str, Any]] = field(default_factory=list)
    # only for new tickets
    subject: str | None = None
    channel: str | None = None
    text_for_triage: list[str] = field(default_factory=list)
    linked_ticket_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def snippet(self) -> str | None:
        return None if self.snippet_from is None else snippet_of(self.snippet_from)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES and self.merged_into_id is None

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
    considered: tuple[tuple[int, str], ...] = ()  # (other ticket key, why it was not chosen)
    repeat_of: int | str | None = None  # rule 5 in its thread: the earlier message's id (or platform id, same page)


@dataclass(frozen=True, slots=True)
class Merge:
    """Two tickets found to be one (rule 4): `loser` is folded into `survivor` after the page is stored."""

    loser: int
    survivor: int
    reason: str


@dataclass(frozen=True, slots=True)
class Flag:
    """`ticket` points at `other` as a possible duplicate (the other ticket points back)."""

    ticket: int
    other: int
    rule: str
    reason: str


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


@dataclass(slots=True)
class _Said:
    """An earlier customer message of a thread (rule 5's repeats): its id, or its platform id on this page."""

    ref: int | str
    raw_text: str
    sent_at: datetime
    _text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = normalize_text(self.raw_text)
        return self._text


class _RefHit(NamedTuple):
    """A customer message quoting an order reference: which ticket, who, when (rule 4)."""

    ticket_key: int
    contact_id: int
    sent_at: datetime


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


def _canonical(key: int) -> tuple[bool, int]:
    """Which of several tickets found to be one survives: the oldest stored one, else the first
    created on this page (keys count down from -1)."""
    return (key < 0, abs(key))


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
        self.ref_hits: dict[str, list[_RefHit]] = defaultdict(list)  # order ref -> customer messages quoting it
        self._hit_keys: dict[str, set[int]] = defaultdict(set)  # order ref -> the tickets of those messages
        self.ref_tickets: dict[str, set[int]] = defaultdict(set)  # order ref -> every stored ticket quoting it
        self.known_refs: set[tuple[int, str]] = set()  # (ticket id, ref) already in ticket_ref
        self.by_person: dict[int, list[int]] = defaultdict(list)  # person id -> active ticket keys
        self.recent: dict[tuple[str, Any], list[_Recent]] = defaultdict(list)  # ContactInfo.keys() -> texts
        self.said: dict[int, list[_Said]] = defaultdict(list)  # conversation id -> recent customer messages
        self.replies: dict[str, tuple[int, int, str]] = {}  # external id -> (reply id, ticket id, state)
        self.merges: list[Merge] = []
        self.flags: list[Flag] = []
        self._next_new = -1
        self.reopen_window = timedelta(days=settings.dedup.reopen_days)
        self.sim_window = timedelta(hours=settings.dedup.similarity_window_hours)
        self.order_window = timedelta(days=settings.dedup.order_window_days)
        self._order_rx = _order_regex(tuple(settings.dedup.order_patterns))
        self._refs_of: dict[str, list[str]] = {}  # external id -> order references in its text
        self._keys_of: dict[int, tuple[int | None, list[tuple[str, Any]]]] = {}  # contact id -> (person, keys)
        self._synced: set[int] | None = None  # ids of the configured accounts (read when rule 4 first asks)

    def synced(self, ticket: TicketState) -> bool:
        """Whether the ticket's account is one the config still syncs. A message never joins a ticket
        of an account no longer synced (retired by `inbox accounts repoint`): its history stays apart."""
        names = [a.name for a in self.settings.accounts]
        if ticket.is_new or ticket.account_id is None or ticket.account_id == self.account_id or not names:
            return True
        if self._synced is None:
            acc = Account.__table__
            self._synced = set(self.conn.execute(sa.select(acc.c.id).where(acc.c.name.in_(names))).scalars())
        return ticket.account_id in self._synced

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

        inbound = [i for i, m in enumerate(messages) if m.direction is Direction.IN]
        # Rule 4 (order references) matters for every customer message: one that opens a ticket
        # may attach, and one added to its thread's ticket may show that two tickets are one.
        self._load_refs(messages, inbound, msg_conv)
        # Rule 4 (linked person) and rule 5 across threads only matter where a message could open a
        # new ticket: threads without an active ticket. A thread with no ticket at all opens (or
        # attaches) with its first customer message; after that it has a ticket for the page.
        opening = []
        first_seen: set[int] = set()
        for i in inbound:
            conv_id = msg_conv[i]
            key = self._resolve(self.conv_ticket.get(conv_id))
            if key is None:
                if conv_id not in first_seen:
                    first_seen.add(conv_id)
                    opening.append(i)
            elif not self.tickets[key].active:
                opening.append(i)
        # Rule 5 in the thread (repeats): the threads' recent customer messages.
        self._load_said(messages, inbound, msg_conv)
        if not opening:
            self._load_ticket_contacts()
            return
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
        texts = [i for i in opening if len(normalize_text(messages[i].text)) >= MIN_SIMILAR_CHARS]
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
                if raw_text is None or len(raw_text) < MIN_RAW_CHARS:
                    continue
                info = self.contacts.get(cid)
                if info is None:
                    info = self.contacts[cid] = ContactInfo(cid, cand_channel, person_id, handle, name)
                self._add_recent(_Recent(ticket_id, info, raw_text, sent_at))  # keys cached per contact there

    def _load_refs(self, messages: list[InboundMessage], inbound: list[int], msg_conv: list[int]) -> None:
        """Rule 4's candidates: the stored tickets quoting the page's order references, and the
        customer messages in them that quote them (who, when), for the tickets that are not the
        quoting thread's own."""
        conn = self.conn
        quoting: dict[str, set[int | None]] = defaultdict(set)  # ref -> the quoting threads' tickets
        for i in inbound:
            for ref in self.refs(messages[i]):
                quoting[ref].add(self._resolve(self.conv_ticket.get(msg_conv[i])))
        if not quoting:
            return
        # Two indexed lookups (ref -> ticket ids, then those tickets): a join lets the planner
        # walk every active ticket by status instead, which grows with the store.
        quoted = select(conn, "ref?page", lambda: sa.select(_r.c.ref, _r.c.ticket_id).where(in_values(conn, _r.c.ref, "refs")), refs=sorted(quoting))
        if not quoted:
            return
        self._load_tickets({q.ticket_id for q in quoted})
        wanted: set[int] = set()
        for q in quoted:
            self.known_refs.add((q.ticket_id, q.ref))
            key = self._resolve(q.ticket_id)
            if key is None or key not in self.tickets:
                continue
            self.ref_tickets[q.ref].add(key)
            # A ticket quoting a reference only its own thread quotes on this page needs nothing more.
            if self.tickets[key].active and quoting[q.ref] != {key}:
                wanted.add(q.ticket_id)
        if not wanted:
            return
        refs = set(quoting)
        sent = [messages[i].sent_at for i in inbound if self.refs(messages[i])]
        rows = select(
            conn,
            "message?refs",
            lambda: _customer_messages_between(conn, _m.c.ticket_id, "tickets", _m.c.ticket_id, _m.c.contact_id, _m.c.sent_at, _m.c.text),
            tickets=sorted(wanted),
            lo=min(sent) - self.order_window,
            hi=max(sent) + self.order_window,
        )
        missing: set[int] = set()
        for row in rows:
            if row.contact_id is None:
                continue
            for ref in _refs_in(row.text, self._order_rx):
                if ref in refs:
                    self._add_hit(ref, _RefHit(row.ticket_id, row.contact_id, row.sent_at))
                    if row.contact_id not in self.contacts:
                        missing.add(row.contact_id)
        self._load_contacts(missing)

    def _load_said(self, messages: list[InboundMessage], inbound: list[int], msg_conv: list[int]) -> None:
        """The recent customer messages of the page's threads that already have a ticket (repeats)."""
        convs = sorted({
            msg_conv[i] for i in inbound
            if len(messages[i].text or "") >= MIN_RAW_CHARS and self.conv_ticket.get(msg_conv[i]) is not None
        })
        if not convs:
            return
        sent = [messages[i].sent_at for i in inbound]
        conn = self.conn

        def build() -> Any:
            # A page message looks back at most REPEAT_LOOKBACK customer messages: those stored
            # since the page's oldest message (usually none), and each thread's last few before
            # it. A long thread costs no more than a short one.
            since = _m.c.sent_at >= sa.bindparam("mid", type_=UTCDateTime())
            recent = _customer_messages_between(
                conn, _m.c.conversation_id, "convs", _m.c.id, _m.c.conversation_id, _m.c.text, _m.c.sent_at,
                since.label("since"),
                sa.func.row_number().over(partition_by=(_m.c.conversation_id, since), order_by=(_m.c.sent_at.desc(), _m.c.id.desc())).label("nth"),
            ).where(sa.func.length(_m.c.text) >= MIN_RAW_CHARS).order_by(None).limit(None).subquery()
            return (
                sa.select(recent.c.id, recent.c.conversation_id, recent.c.text, recent.c.sent_at)
                .where(sa.or_(recent.c.since, recent.c.nth <= REPEAT_LOOKBACK))
                .order_by(recent.c.sent_at, recent.c.id)
                .limit(5000)  # bounded, as every candidate query
            )

        first = min(sent)
        rows = select(conn, "message?said", build, convs=convs, lo=first - self.sim_window, hi=max(sent), mid=first)
        for row in rows:
            if row.text is not None and len(row.text) >= MIN_RAW_CHARS:
                self.said[row.conversation_id].append(_Said(row.id, row.text, row.sent_at))

    def _remember_tickets(self, rows: list[Any]) -> None:
        for row in rows:
            if row.id not in self.tickets:
                self.tickets[row.id] = _ticket_state(row)

    def _load_ticket_contacts(self) -> None:
        """The contacts of the loaded tickets not known yet, in one query (rules 4 and 5 compare them)."""
        self._load_contacts({t.contact_id for t in self.tickets.values() if t.contact_id and t.contact_id not in self.contacts})

    def _load_contacts(self, missing: set[int]) -> None:
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
        while key is not None and key in self.tickets and self.tickets[key].merged_into_id and seen < 16:
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
        decision: Decision | None = None
        if ticket is not None:
            if ticket.active:
                decision = Decision(R_THREAD, f"thread has {ticket.status} ticket {self._label(ticket)}", 1.0, ticket.key)
            elif ticket.resolved_at is not None and msg.sent_at <= ticket.resolved_at:
                # Written before the ticket was resolved (late delivery): history, not a reopen.
                decision = Decision(R_THREAD, f"written before ticket #{ticket.key} was resolved", 1.0, ticket.key)
            elif (
                ticket.status == TicketStatus.RESOLVED.value
                and ticket.merged_into_id is None
                and ticket.resolved_at is not None
                and msg.sent_at - ticket.resolved_at <= self.reopen_window
            ):
                ticket.reopened = True
                ticket.reopened_from = ticket.status
                ticket.status = TicketStatus.OPEN.value
                days = (msg.sent_at - ticket.resolved_at).total_seconds() / 86400
                decision = Decision(
                    R_REOPEN,
                    f"ticket #{ticket.key} was resolved {days:.1f} days ago (reopen window {self.settings.dedup.reopen_days:g} days)",
                    1.0,
                    ticket.key,
                )
        if decision is not None:
            assert ticket is not None
            decision = self._same_order_elsewhere(msg, contact, ticket, decision)
            home = self.tickets[decision.ticket_key]  # type: ignore[index]
            self._append(home, msg)
            decision = self._repeat(msg, conv_id, home, decision)
        else:
            previous = ticket.key if ticket is not None else None
            decision = self._cross_channel(msg, contact, previous)
            self.conv_ticket[conv_id] = decision.ticket_key
        self._remember_said(conv_id, msg)
        return decision

    def _label(self, t: TicketState | int) -> str:
        key = t if isinstance(t, int) else t.key
        return f"#{key}" if key > 0 else "(new in this sync)"

    def _echo(self, msg: InboundMessage, conv_id: int, *, adopted: bool = False) -> Decision:
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
            self.add_outbound(ticket, msg.sent_at, adopted=adopted)
        return Decision(R_ECHO, reason, 1.0, key, reply[0] if reply else None)

    def add_outbound(self, ticket: TicketState, sent_at: datetime, *, adopted: bool = False) -> None:
        """One of the brand's messages joins `ticket`: counters, and the first response when it
        answers the ticket (sent at or after the customer message that opened it). An `adopted`
        message was seen before the thread had its ticket, so it came before the opening message
        in the platform's order: within the same second (Meta's times have no finer grain) it is
        not an answer."""
        ticket.added += 1
        ticket.last_at = max(ticket.last_at or sent_at, sent_at)
        ticket.last_out_at = max(ticket.last_out_at or sent_at, sent_at)
        answers = sent_at > ticket.created_at if adopted else sent_at >= ticket.created_at
        if ticket.first_response_at is None and answers:
            if ticket.set_first_response is None or sent_at < ticket.set_first_response:
                ticket.set_first_response = sent_at

    def adopt_echoes(self, messages: list[InboundMessage], made: list[Decision], msg_conv: list[int]) -> None:
        """Our messages decided before their thread had a ticket (the oldest readable message of a
        thread, or older than the customer's first message on this page) join the ticket the page
        gave the thread: every message of a ticketed thread belongs to its ticket."""
        for i, d in enumerate(made):
            if d.rule == R_ECHO and d.ticket_key is None and self._resolve(self.conv_ticket.get(msg_conv[i])) is not None:
                made[i] = self._echo(messages[i], msg_conv[i], adopted=True)

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
        contact = self._current_contact
        for ref in self.refs(msg):
            if contact is not None:
                self._add_hit(ref, _RefHit(ticket.key, contact.id, sent_at))
            if (ticket.key, ref) not in self.known_refs:
                self.known_refs.add((ticket.key, ref))
                ticket.new_refs.add(ref)
        if ticket.is_new:
            ticket.text_for_triage.append(msg.text or "")
        self._remember_recent(ticket.key, msg)

    def _add_hit(self, ref: str, hit: _RefHit) -> None:
        self.ref_hits[ref].append(hit)
        self._hit_keys[ref].add(hit.ticket_key)

    def _remember_recent(self, key: int, msg: InboundMessage) -> None:
        text = msg.text
        if text is not None and len(text) >= MIN_RAW_CHARS:
            contact = self._current_contact
            if contact is not None:
                self._add_recent(_Recent(key, contact, text, msg.sent_at))

    def _remember_said(self, conv_id: int, msg: InboundMessage) -> None:
        if msg.text is not None and len(msg.text) >= MIN_RAW_CHARS:
            self.said[conv_id].append(_Said(msg.external_id, msg.text, msg.sent_at))

    def _add_recent(self, item: _Recent) -> None:
        contact = item.contact
        cached = self._keys_of.get(contact.id)
        if cached is None or cached[0] != contact.person_id:
            cached = self._keys_of[contact.id] = (contact.person_id, contact.keys())
        recent = self.recent
        for k in cached[1]:
            recent[k].append(item)

    _current_contact: ContactInfo | None = None

    # ── rule 4: order references ───────────────────────────────────────────────────────────

    def _order_matches(
        self, msg: InboundMessage, contact: ContactInfo, own: int | None
    ) -> tuple[dict[int, str], dict[int, str], list[tuple[int, str]]]:
        """Other tickets quoting the message's order references: (same customer: key -> why,
        another customer: key -> why, considered and not chosen: (key, why not))."""
        strong: dict[int, str] = {}
        weak: dict[int, str] = {}
        considered: dict[int, str] = {}
        for ref in self.refs(msg):
            for hit in self.ref_hits.get(ref, ()):
                key = self._resolve(hit.ticket_key)
                if key is None or key == own or key in strong:
                    continue
                cand = self.tickets.get(key)
                if cand is None:
                    continue
                if not cand.active:
                    considered.setdefault(key, f"quotes {ref} but is {cand.status}")
                    continue
                if not self.synced(cand):
                    considered.setdefault(key, f"quotes {ref} but belongs to an account no longer synced")
                    continue
                apart = abs(hit.sent_at - msg.sent_at)
                if apart > self.order_window:
                    considered.setdefault(key, f"quotes {ref} {apart.total_seconds() / 86400:.0f} days apart (window {self.settings.dedup.order_window_days:g} days)")
                    continue
                other = self.contacts.get(hit.contact_id)
                why = contact.same_person(other) if other is not None else None
                if why:
                    strong[key] = f"same invoice {ref} and {why}"
                    weak.pop(key, None)
                    considered.pop(key, None)
                elif key not in weak:
                    who = other.describe() if other is not None else "another customer"
                    weak[key] = f"invoice {ref} is also in active ticket {self._label(key)} from another customer ({who})"
            for key in sorted(self.ref_tickets.get(ref, ())):
                cand = self.tickets.get(key)
                if cand is not None and not cand.active and key != own:
                    considered.setdefault(key, f"quotes {ref} but is {cand.status}")
        for key in list(considered):
            if key in strong or key in weak:
                del considered[key]
        return strong, weak, sorted(considered.items(), key=lambda kv: _canonical(kv[0]))

    def _merge(self, keys: list[int], reason: str) -> int:
        """Fold tickets found to be one into the canonical survivor (written after the page)."""
        roots = sorted({k for k in (self._resolve(k) for k in keys) if k is not None}, key=_canonical)
        survivor = roots[0]
        for loser in roots[1:]:
            t = self.tickets[loser]
            t.merged_into_id = survivor
            self.merges.append(Merge(loser, survivor, reason))
            for conv_id, key in list(self.conv_ticket.items()):
                if key == loser:
                    self.conv_ticket[conv_id] = survivor
        return survivor

    def _flag(self, key: int, other: int, rule: str, reason: str) -> None:
        """`key` is a possible duplicate of `other`; the other ticket points back unless it already points somewhere."""
        mine, theirs = self.tickets[key], self.tickets[other]
        if mine.possible_duplicate_of_id is None:
            mine.possible_duplicate_of_id = other
            if not mine.is_new:
                mine.set_duplicate_of = other
        if theirs.possible_duplicate_of_id is None:
            theirs.possible_duplicate_of_id = key
            if not theirs.is_new:
                theirs.set_duplicate_of = key
        self.flags.append(Flag(key, other, rule, reason))

    def _same_order_elsewhere(self, msg: InboundMessage, contact: ContactInfo, home: TicketState, decision: Decision) -> Decision:
        """A message added to its thread's ticket quoting a reference another active ticket quotes:
        the same customer -> the two tickets are one (merged); someone else -> both flagged."""
        refs = self.refs(msg)
        if not refs or not home.active:  # a late message of a resolved ticket is its history
            return decision
        own = {home.key}
        hit_keys, ref_tickets = self._hit_keys, self.ref_tickets
        if all(hit_keys.get(ref, own) <= own and ref_tickets.get(ref, own) <= own for ref in refs):
            return decision  # only its own ticket quotes these (the usual case)
        strong, weak, considered = self._order_matches(msg, contact, home.key)
        if strong:
            first = min(strong, key=_canonical)
            why = strong[first]
            survivor = self._merge([home.key, *strong], f"{why}: tickets {', '.join(self._label(k) for k in sorted({home.key, *strong}, key=_canonical))} are one")
            for key, reason in sorted(strong.items(), key=lambda kv: _canonical(kv[0])):
                considered.append((key, f"merged: {reason}"))
            # The thread now feeds the surviving ticket, and so does this message.
            return decision._replace(
                reason=f"{decision.reason}; {why}: merged with ticket {self._label(first)}",
                ticket_key=survivor,
                considered=tuple(considered[:MAX_CONSIDERED]),
            )
        if weak:
            other = min(weak, key=_canonical)
            self._flag(home.key, other, R_ORDER_WEAK, weak[other])
            extra = [(k, f"{why}: only flagged") for k, why in sorted(weak.items(), key=lambda kv: _canonical(kv[0]))]
            return decision._replace(reason=f"{decision.reason}; {weak[other]}: flagged possible duplicate", considered=tuple((extra + considered)[:MAX_CONSIDERED]))
        return decision._replace(considered=tuple(considered[:MAX_CONSIDERED])) if considered else decision

    def _cross_channel(self, msg: InboundMessage, contact: ContactInfo, previous: int | None) -> Decision:
        strong, weak, considered = self._order_matches(msg, contact, previous)
        # Rule 4a: the same order reference from the same customer in an active ticket.
        if strong:
            ordered = sorted(strong, key=_canonical)
            key = self._merge(ordered, f"{strong[ordered[0]]}: tickets {', '.join(self._label(k) for k in ordered)} are one") if len(ordered) > 1 else ordered[0]
            cand = self.tickets[key]
            self._append(cand, msg)
            for k, why in weak.items():
                considered.append((k, f"{why}: a different customer"))
            return Decision(R_ORDER, f"{strong[ordered[0]]}: attached to ticket {self._label(cand)}", 1.0, key,
                            considered=tuple(considered[:MAX_CONSIDERED]))
        # Rule 4b: the same (linked) person has an active ticket on another thread.
        if contact.person_id is not None:
            for k in self.by_person.get(contact.person_id, ()):
                key = self._resolve(k)
                cand = self.tickets.get(key) if key is not None else None
                if cand is None or not cand.active or key == previous or not self.synced(cand):
                    continue
                self._append(cand, msg)
                return Decision(R_PERSON, f"same person has active ticket {self._label(cand)} on another thread", 0.9, cand.key,
                                considered=tuple(considered[:MAX_CONSIDERED]))
        # A new ticket, maybe flagged.
        ticket = self._new_ticket(msg, contact)
        if previous is not None:
            ticket.linked_ticket_id = previous
        if weak:
            key = min(weak, key=_canonical)
            self._flag(ticket.key, key, R_ORDER_WEAK, weak[key])
            self._append(ticket, msg)
            others = [(k, f"{why}: only flagged") for k, why in sorted(weak.items(), key=lambda kv: _canonical(kv[0]))]
            return Decision(R_ORDER_WEAK, weak[key], 0.5, ticket.key, considered=tuple((others + considered)[:MAX_CONSIDERED]))
        similar = self._similar(msg, contact, ticket.key)
        self._append(ticket, msg)
        if similar is not None:
            key, score, why = similar
            reason = f"near-identical text ({score:.0f}%) to ticket {self._label(key)}, {why}"
            if key in self.tickets:
                self._flag(ticket.key, key, R_SIMILAR, reason)
            else:
                ticket.possible_duplicate_of_id = key
            return Decision(R_SIMILAR, reason, round(score / 100, 3), ticket.key, considered=tuple(considered[:MAX_CONSIDERED]))
        if previous is not None:
            old = self.tickets[previous]
            why = "closed" if old.status == TicketStatus.CLOSED.value else "resolved more than the reopen window ago"
            return Decision(R_FOLLOWUP, f"thread's ticket #{previous} was {why}: follow-up ticket", 1.0, ticket.key,
                            considered=tuple(considered[:MAX_CONSIDERED]))
        return Decision(R_NEW, "no open ticket for this thread, order reference or person", 1.0, ticket.key,
                        considered=tuple(considered[:MAX_CONSIDERED]))

    # ── rule 5 ─────────────────────────────────────────────────────────────────────────────

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

    def _repeat(self, msg: InboundMessage, conv_id: int, ticket: TicketState, decision: Decision) -> Decision:
        """The customer sent the same thing again in this thread: stored, marked, counted, and past the
        first-response due the ticket's priority goes up one step."""
        earlier = self.said.get(conv_id)
        raw = msg.text
        # Below MIN_RAW_CHARS no text is MIN_SIMILAR_CHARS long, even normalized (the usual "kak??").
        if not earlier or raw is None or len(raw) < MIN_RAW_CHARS:
            return decision
        sent, lo = msg.sent_at, msg.sent_at - self.sim_window
        candidates: list[_Said] = []
        for said in reversed(earlier):  # newest first: a customer repeats what they just said
            if said.sent_at > sent:
                continue
            if said.sent_at < lo or len(candidates) == REPEAT_LOOKBACK:
                break
            candidates.append(said)
        if not candidates:
            return decision
        text: str | None = None
        threshold = self.settings.dedup.similarity_threshold
        best: tuple[_Said, float] | None = None
        for said in candidates:
            if said.raw_text == raw and len(raw) >= MIN_SIMILAR_CHARS:
                score = 100.0  # sent again as it was: no need to normalize
            else:
                if text is None:
                    text = normalize_text(raw)
                if len(text) < MIN_SIMILAR_CHARS:
                    continue
                cand = said.text
                if len(cand) < MIN_SIMILAR_CHARS:
                    continue
                score = 100.0 if cand == text else fuzz.ratio(text, cand, score_cutoff=threshold)
            if score and (best is None or score >= best[1]):
                best = (said, score)
        if best is None:
            return decision
        said, score = best
        ticket.repeats += 1
        reason = f"{decision.reason}; {repeat_reason(said.ref, score)}"
        due = ticket.first_response_due_at
        if (
            self.settings.dedup.repeat_raises_priority
            and due is not None
            and msg.sent_at > due
            and ticket.first_response_at is None
            and ticket.set_first_response is None
            and ticket.priority in PRIORITY_RANK
            and PRIORITY_RANK[ticket.priority] > 0
        ):
            raised = _RANKED[PRIORITY_RANK[ticket.priority] - 1]
            ticket.priority_changes.append({
                "from": ticket.priority, "to": raised, "message": msg.external_id,
                "reason": "the customer repeated the message after the first-response due time",
            })
            ticket.priority = raised
            reason += f"; past the first-response due: priority raised to {raised}"
        return decision._replace(rule=R_REPEAT, reason=reason, score=round(score / 100, 3), repeat_of=said.ref)

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


def repeat_reason(earlier: int | str, score: float) -> str:
    """How a repeat is described; `earlier` is the earlier message's id once it is known."""
    of = f"message {earlier}" if isinstance(earlier, int) else "an earlier message of this thread"
    return f"customer repeated ({score:.0f}%) {of}"


def snippet_of(msg: InboundMessage, limit: int = 200) -> str:
    text = " ".join((msg.text or "").split())
    if not text:
        kinds = ", ".join(a.type for a in msg.attachments) if msg.attachments else msg.kind.value
        return f"[{kinds}]"
    return text if len(text) <= limit else text[: limit - 1] + "…"
