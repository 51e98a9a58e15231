"""The dedup rules as a table: `decide(message, candidates)` over hand-built candidates, no database.

Each case builds the page's candidates as `inbox.dedup.candidates.load_candidates` would have
loaded them (tickets, contacts, order references quoted by stored messages, recent texts), decides
one customer message and checks the rule, the ticket and what was flagged or counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from connectors.base import InboundMessage, Participant
from connectors.enums import Channel, Direction, MessageKind
from inbox.dedup.state import Candidates, Recent, RefHit, Said
from inbox.dedup.identity import ContactInfo
from inbox.dedup.rules import (
    R_ECHO,
    R_FOLLOWUP,
    R_NEW,
    R_ORDER,
    R_ORDER_WEAK,
    R_REOPEN,
    R_REPEAT,
    R_SIMILAR,
    R_THREAD,
    Decision,
    decide,
)
from inbox.settings import Settings
from inbox.tickets.workflow import TicketState

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
INV = "INV/20261120/MPL/3817265540"
GENERIC = "akun saya diblokir tolong dibantu"
ACCOUNT = 1  # the page's account (Messenger)
CONV = 100  # the message's thread
STORED = 7  # a stored ticket in the candidates

# The customers: the page's customer on Messenger, the same person on Instagram (handle spelled
# like the name), someone else on X, and the same handle as the page's customer on X.
BUDI_FB = ContactInfo(1, "facebook", None, "budi.santoso", "Budi Santoso")
BUDI_IG = ContactInfo(2, "instagram", None, "budi.santoso", None)
RINA_X = ContactInfo(3, "x", None, "rina_w", "Rina W")
OTHER_FB = ContactInfo(4, "facebook", None, None, "Budi Santoso")  # same display name, another account


def message(text: str, minutes: float = 0, *, out: bool = False, eid: str = "m-new") -> InboundMessage:
    customer = Participant("u1", BUDI_FB.handle, BUDI_FB.name)
    brand = Participant("page", None, "Toko")
    return InboundMessage(
        channel=Channel.FACEBOOK, account_id="page", external_id=eid, thread_id="t1",
        direction=Direction.OUT if out else Direction.IN, author=brand if out else customer, customer=customer,
        text=text, kind=MessageKind.TEXT, sent_at=T0 + timedelta(minutes=minutes),
    )


def ticket(key: int, status: str = "open", contact: ContactInfo = BUDI_IG, **kw: object) -> TicketState:
    return TicketState(key=key, status=status, contact_id=contact.id, person_id=contact.person_id,
                       created_at=T0 - timedelta(hours=1), account_id=ACCOUNT, **kw)  # type: ignore[arg-type]


def candidates(*tickets: TicketState, thread_ticket: int | None = None, contacts: tuple[ContactInfo, ...] = ()) -> Candidates:
    cands = Candidates(Settings(), ACCOUNT, "facebook")
    for t in tickets:
        cands.tickets[t.key] = t
    for c in (BUDI_FB, *contacts):
        cands.contacts[c.id] = c
    cands.conv_ticket[CONV] = thread_ticket
    return cands


def quoted(cands: Candidates, key: int, by: ContactInfo, minutes: float = -30) -> Candidates:
    """A stored customer message of ticket `key` quoting INV."""
    cands.add_hit(INV, RefHit(key, by.id, T0 + timedelta(minutes=minutes)))
    cands.ref_tickets[INV].add(key)
    return cands


def said_before(cands: Candidates, text: str, by: ContactInfo, key: int, minutes: float = -20) -> Candidates:
    """A recent customer message of ticket `key` in another thread (rule 5 across threads)."""
    cands.add_recent(Recent(key, by, text, T0 + timedelta(minutes=minutes)))
    return cands


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Candidates]
    msg: InboundMessage
    rule: str
    ticket: int | None  # None: a ticket this page creates (negative key)
    check: Callable[[Candidates, Decision], bool] = lambda cands, d: True


def _new(d: Decision) -> bool:
    return d.ticket_key is not None and d.ticket_key < 0


CASES = [
    # Rule 2: our own message, matched to the reply we sent.
    Case("echo of our reply",
         lambda: _with_reply(candidates(ticket(STORED, contact=BUDI_FB), thread_ticket=STORED)),
         message("Baik kak, kami cek", out=True, eid="echo-1"), R_ECHO, STORED,
         lambda cands, d: d.reply_id == 55 and cands.tickets[STORED].set_first_response == T0),
    # Rule 3: the thread's active ticket.
    Case("same thread, active ticket",
         lambda: candidates(ticket(STORED, contact=BUDI_FB), thread_ticket=STORED),
         message("halo kak, ada update?"), R_THREAD, STORED,
         lambda cands, d: cands.tickets[STORED].added == 1),
    Case("same thread, pending ticket: the customer answered",
         lambda: candidates(ticket(STORED, "pending", contact=BUDI_FB), thread_ticket=STORED),
         message("sudah saya kirim fotonya"), R_THREAD, STORED,
         lambda cands, d: cands.tickets[STORED].status == "open" and cands.tickets[STORED].unpended),
    Case("same thread, resolved within the reopen window",
         lambda: candidates(ticket(STORED, "resolved", contact=BUDI_FB, resolved_at=T0 - timedelta(days=2)), thread_ticket=STORED),
         message("barangnya rusak lagi kak"), R_REOPEN, STORED,
         lambda cands, d: cands.tickets[STORED].reopened and cands.tickets[STORED].status == "open"),
    Case("same thread, resolved long ago: a follow-up ticket",
         lambda: candidates(ticket(STORED, "resolved", contact=BUDI_FB, resolved_at=T0 - timedelta(days=30)), thread_ticket=STORED),
         message("halo kak saya mau tanya lagi"), R_FOLLOWUP, None,
         lambda cands, d: _new(d) and cands.tickets[d.ticket_key].linked_ticket_id == STORED),  # type: ignore[index]
    # Rule 4: the same order reference.
    Case("same order ref, same customer on another channel: attached",
         lambda: quoted(candidates(ticket(STORED), contacts=(BUDI_IG,)), STORED, BUDI_IG),
         message(f"refund {INV} kapan masuk?"), R_ORDER, STORED,
         lambda cands, d: d.score == 1.0 and not cands.flags),
    Case("same order ref, a different-looking customer: new ticket flagged, never attached",
         lambda: quoted(candidates(ticket(STORED, contact=RINA_X), contacts=(RINA_X,)), STORED, RINA_X),
         message(f"saya mau komplain {INV}, refund ke rekening saya ya"), R_ORDER_WEAK, None,
         lambda cands, d: _new(d) and d.score == 0.5 and cands.tickets[STORED].added == 0
         and [(f.ticket, f.other) for f in cands.flags] == [(d.ticket_key, STORED)]
         and cands.tickets[d.ticket_key].possible_duplicate_of_id == STORED),  # type: ignore[index]
    Case("same order ref, resolved ticket: considered, not attached",
         lambda: quoted(candidates(ticket(STORED, "resolved"), contacts=(BUDI_IG,)), STORED, BUDI_IG),
         message(f"refund {INV} kapan masuk?"), R_NEW, None,
         lambda cands, d: _new(d) and (STORED, f"quotes {INV} but is resolved") in d.considered),
    Case("same order ref, outside the order window",
         lambda: quoted(candidates(ticket(STORED), contacts=(BUDI_IG,)), STORED, BUDI_IG, minutes=-60 * 24 * 10),
         message(f"refund {INV} kapan masuk?"), R_NEW, None, lambda cands, d: _new(d)),
    # Rule 5: near-identical text.
    Case("generic text, two customers sharing a name: never grouped",
         lambda: said_before(candidates(ticket(STORED, contact=OTHER_FB), contacts=(OTHER_FB,)), GENERIC, OTHER_FB, STORED),
         message(GENERIC), R_NEW, None, lambda cands, d: _new(d) and not cands.flags),
    Case("generic text, another customer on another channel: never grouped",
         lambda: said_before(candidates(ticket(STORED, contact=RINA_X), contacts=(RINA_X,)), GENERIC, RINA_X, STORED),
         message(GENERIC), R_NEW, None, lambda cands, d: _new(d) and not cands.flags),
    Case("near-identical text, same handle on another channel: new ticket flagged",
         lambda: said_before(candidates(ticket(STORED), contacts=(BUDI_IG,)), GENERIC, BUDI_IG, STORED),
         message(GENERIC + " kak"), R_SIMILAR, None,
         lambda cands, d: _new(d) and [(f.ticket, f.other) for f in cands.flags] == [(d.ticket_key, STORED)]),
    Case("repeat in its thread: counted, never a new ticket",
         lambda: _said_in_thread(candidates(ticket(STORED, contact=BUDI_FB), thread_ticket=STORED), "pesanan saya belum sampai sudah 5 hari", 41),
         message("pesanan sy blm sampai udh 5 hari"), R_REPEAT, STORED,
         lambda cands, d: d.repeat_of == 41 and cands.tickets[STORED].repeats == 1 and not cands.tickets[STORED].priority_changes),
    Case("repeat past the first-response due: priority raised one step",
         lambda: _said_in_thread(candidates(ticket(STORED, contact=BUDI_FB, priority="normal", first_response_due_at=T0 - timedelta(minutes=5)),
                                            thread_ticket=STORED), "pesanan saya belum sampai sudah 5 hari", 41),
         message("pesanan saya belum sampai sudah 5 hari"), R_REPEAT, STORED,
         lambda cands, d: cands.tickets[STORED].priority == "high" and d.score == 1.0),
    Case("short greetings in the thread are not repeats",
         lambda: _said_in_thread(candidates(ticket(STORED, contact=BUDI_FB), thread_ticket=STORED), "halo kak", 41),
         message("halo kak"), R_THREAD, STORED, lambda cands, d: cands.tickets[STORED].repeats == 0),
    # No candidate at all.
    Case("a new thread, nothing alike: a new ticket",
         lambda: candidates(), message("barang saya datang rusak"), R_NEW, None,
         lambda cands, d: _new(d) and cands.conv_ticket[CONV] == d.ticket_key and cands.tickets[d.ticket_key].status == "new"),  # type: ignore[index]
]


def _with_reply(cands: Candidates) -> Candidates:
    cands.replies["echo-1"] = (55, STORED, "sending")
    return cands


def _said_in_thread(cands: Candidates, text: str, message_id: int) -> Candidates:
    cands.said[CONV].append(Said(message_id, text, T0 - timedelta(minutes=10)))
    return cands


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    cands = case.build()
    d = decide(case.msg, cands, CONV, BUDI_FB)  # the page's customer
    assert d.rule == case.rule, d.reason
    if case.ticket is not None:
        assert d.ticket_key == case.ticket, d.reason
    assert case.check(cands, d), d


def test_two_messages_of_one_page_find_each_other() -> None:
    """Matches within the same page: the second customer's message attaches to the ticket the first one opened."""
    cands = candidates(contacts=(BUDI_IG,))
    first = decide(message(f"refund {INV} belum masuk"), cands, CONV, BUDI_FB)
    second = decide(message(f"{INV} refund kapan ya", 5, eid="m-2"), cands, CONV + 1, BUDI_IG)
    assert first.rule == R_NEW and second.rule == R_ORDER
    assert second.ticket_key == first.ticket_key and cands.tickets[first.ticket_key].added == 2  # type: ignore[index]
