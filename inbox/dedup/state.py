"""The page's candidates as the dedup rules see them, and what the page's decisions change.

`Candidates` is filled by `inbox.dedup.candidates.load_candidates` and then read and updated, in
memory, by `inbox.dedup.rules.decide`; the page's writer stores what it ends with (new tickets,
merges, flags, refs).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from connectors.base import InboundMessage
from inbox.dedup.identity import ContactInfo, normalize_text, order_regex, refs_in
from inbox.tickets.workflow import TicketState

if TYPE_CHECKING:
    from inbox.settings import Settings

REPEAT_LOOKBACK = 5  # a repeat is of one of the thread's last few customer messages (bounded work per message)


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


class _NormalizedText:
    """A customer text as rule 5 compares it, normalized when first compared (most candidates never are)."""

    __slots__ = ()
    raw_text: str
    _text: str | None  # each subclass's field, None until first compared

    @property
    def text(self) -> str:
        text = self._text
        if text is None:  # a None check, not an AttributeError: most texts are compared once
            text = self._text = normalize_text(self.raw_text)
        return text


@dataclass(slots=True)
class Recent(_NormalizedText):
    """A recent customer message of a candidate ticket (rule 5 across threads)."""

    ticket_key: int
    contact: ContactInfo
    raw_text: str
    sent_at: datetime
    _text: str | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(slots=True)
class Said(_NormalizedText):
    """An earlier customer message of a thread (rule 5's repeats): its id, or its platform id on this page."""

    ref: int | str
    raw_text: str
    sent_at: datetime
    _text: str | None = field(default=None, init=False, repr=False, compare=False)


class RefHit(NamedTuple):
    """A customer message quoting an order reference: which ticket, who, when (rule 4)."""

    ticket_key: int
    contact_id: int
    sent_at: datetime


class Candidates:
    """What the rules look at for one page: the candidate tickets, contacts, order references,
    recent texts and replies, loaded by `load_candidates`, and what the page's decisions change
    (`inbox.dedup.rules.decide` updates them, so a later message of the page sees an earlier one)."""

    def __init__(self, settings: Settings, account_id: int, channel: str) -> None:
        self.settings = settings
        self.account_id = account_id
        self.channel = channel
        self.tickets: dict[int, TicketState] = {}
        self.contacts: dict[int, ContactInfo] = {}
        self.conv_ticket: dict[int, int | None] = {}  # conversation id -> current ticket key
        self.ref_hits: dict[str, list[RefHit]] = defaultdict(list)  # order ref -> customer messages quoting it
        self.hit_keys: dict[str, set[int]] = defaultdict(set)  # order ref -> the tickets of those messages
        self.ref_tickets: dict[str, set[int]] = defaultdict(set)  # order ref -> every stored ticket quoting it
        self.known_refs: set[tuple[int, str]] = set()  # (ticket id, ref) already in ticket_ref
        self.by_person: dict[int, list[int]] = defaultdict(list)  # person id -> active ticket keys
        self.recent: dict[tuple[str, Any], list[Recent]] = defaultdict(list)  # ContactInfo.keys() -> texts
        self.said: dict[int, list[Said]] = defaultdict(list)  # conversation id -> recent customer messages
        self.replies: dict[str, tuple[int, int, str]] = {}  # external id -> (reply id, ticket id, state)
        self.merges: list[Merge] = []
        self.flags: list[Flag] = []
        self.next_new = -1
        self.reopen_window = timedelta(days=settings.dedup.reopen_days)
        self.sim_window = timedelta(hours=settings.dedup.similarity_window_hours)
        self.order_window = timedelta(days=settings.dedup.order_window_days)
        self.order_rx = order_regex(tuple(settings.dedup.order_patterns))
        self.synced_accounts: set[int] | None = None  # ids of the configured accounts (None: every account counts)
        self._refs_of: dict[str, list[str]] = {}  # external id -> order references in its text
        self._keys_of: dict[int, tuple[int | None, list[tuple[str, Any]]]] = {}  # contact id -> (person, keys)

    def synced(self, ticket: TicketState) -> bool:
        """Whether the ticket's account is one the config still syncs. A message never joins a ticket
        of an account no longer synced (retired by `inbox accounts repoint`): its history stays apart."""
        if ticket.is_new or ticket.account_id is None or ticket.account_id == self.account_id or self.synced_accounts is None:
            return True
        return ticket.account_id in self.synced_accounts

    def refs(self, msg: InboundMessage) -> list[str]:
        """`order_refs` of a message, found once per page (rules 4 and the ticket's refs ask again)."""
        found = self._refs_of.get(msg.external_id)
        if found is None:
            found = self._refs_of[msg.external_id] = refs_in(msg.text, self.order_rx)
        return found

    def resolve(self, key: int | None) -> int | None:
        """Follow `merged_into_id` to the surviving ticket."""
        seen = 0
        while key is not None and key in self.tickets and self.tickets[key].merged_into_id and seen < 16:
            key = self.tickets[key].merged_into_id
            seen += 1
        return key

    def add_hit(self, ref: str, hit: RefHit) -> None:
        self.ref_hits[ref].append(hit)
        self.hit_keys[ref].add(hit.ticket_key)

    def add_recent(self, item: Recent) -> None:
        contact = item.contact
        cached = self._keys_of.get(contact.id)
        if cached is None or cached[0] != contact.person_id:
            cached = self._keys_of[contact.id] = (contact.person_id, contact.keys())
        recent = self.recent
        for k in cached[1]:
            recent[k].append(item)
