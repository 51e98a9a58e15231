"""Dedup rules 1-5: for each, a case that must match and one that must not (both backends)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from connectors.base import InboundMessage, Page
from connectors.enums import Channel
from inbox.settings import Settings
from inbox.dedup.identity import order_refs
from inbox.ingest.page import ingest_page
from inbox.store.models import Account, Contact, Message, Person, PersonEvent, Ticket, TicketEvent
from tests import factories as sf

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
FB, IG, X = "104920378912345", "17841400000000001", "1500000000000000001"
INV = "INV/20261120/MPL/3817265540"
INV2 = "INV/20261118/MPL/1111222233"


@pytest.fixture
def accounts(engine):
    with Session(engine) as s:
        fb = Account(name="toko-fb", channel="facebook", platform_id=FB)
        ig = Account(name="toko-ig", channel="instagram", platform_id=IG)
        x = Account(name="toko-x", channel="x", platform_id=X)
        s.add_all([fb, ig, x])
        s.commit()
        return {"fb": fb.id, "ig": ig.id, "x": x.id}


def m(eid, thread, customer, text, minutes, *, ch="fb", handle=None, name=None, out=False) -> InboundMessage:
    channel, acc = {"fb": (Channel.FACEBOOK, FB), "ig": (Channel.INSTAGRAM, IG), "x": (Channel.X, X)}[ch]
    return sf.inbound(eid, thread, customer, text, T0 + timedelta(minutes=minutes), channel=channel, account=acc,
                      handle=handle, name=name, out=out)


def put(engine, accounts, ch, *msgs, settings=None):
    return ingest_page(engine, accounts[ch], Page(tuple(msgs), cursor=None), settings or Settings(), explain=True)


def ticket_of(engine, eid) -> Ticket:
    with Session(engine) as s:
        tid = s.exec(select(Message.ticket_id).where(Message.external_id == eid)).one()
        return s.get(Ticket, tid)


def message(engine, eid) -> Message:
    with Session(engine) as s:
        return s.exec(select(Message).where(Message.external_id == eid)).one()


def set_status(engine, ticket_id, status, resolved_at=None):
    with engine.begin() as conn:
        conn.execute(sa.update(Ticket.__table__).where(Ticket.__table__.c.id == ticket_id).values(status=status, resolved_at=resolved_at))


def link_every_contact(engine, name: str) -> None:
    with Session(engine) as s:
        p = Person(display_name=name)
        s.add(p)
        s.commit()
        for c in s.exec(select(Contact)):
            c.person_id = p.id
            s.add(c)
        s.commit()


def n_tickets(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(Ticket.id)).all())


def test_order_reference_patterns():
    s = Settings()
    text = f"pesanan {INV.lower()} dan {INV2}, lagi {INV}"
    assert order_refs(text, s.dedup.order_patterns) == [INV, INV2]
    assert order_refs("INV/2026/MPL/1", s.dedup.order_patterns) == []
    assert order_refs("ORD-12345", [r"\bORD-\d{5}\b"]) == ["ORD-12345"]


# Rule 2 ----------------------------------------------------------------------------------------


def test_rule2_echo_goes_to_its_thread_ticket_not_a_new_one(engine, accounts):
    put(engine, accounts, "fb", m("a1", "t1", "u1", "barang rusak", 0))
    res = put(engine, accounts, "fb", m("a2", "t1", "u1", "Mohon maaf kak", 1, out=True))
    assert (res.echoes, res.new_tickets) == (1, 0)
    assert message(engine, "a2").dedup_rule == "2:echo"
    assert ticket_of(engine, "a2").id == ticket_of(engine, "a1").id
    # must not: the customer writing is never taken for an echo
    res = put(engine, accounts, "fb", m("a3", "t1", "u1", "kapan diganti?", 2))
    assert res.echoes == 0 and message(engine, "a3").direction == "in"
    assert ticket_of(engine, "a1").last_customer_message_at == T0 + timedelta(minutes=2)


# Rule 3 ----------------------------------------------------------------------------------------


def test_rule3_append_to_open_ticket_and_pending_becomes_open(engine, accounts):
    put(engine, accounts, "fb", m("b1", "t1", "u1", "refund saya mana", 0))
    t = ticket_of(engine, "b1")
    set_status(engine, t.id, "pending")
    res = put(engine, accounts, "fb", m("b2", "t1", "u1", "halo?", 10))
    assert (res.appended, res.new_tickets) == (1, 0)
    t2 = ticket_of(engine, "b2")
    assert t2.id == t.id and t2.status == "open" and t2.message_count == 2
    # must not: another thread of another customer is not appended
    put(engine, accounts, "fb", m("b3", "t2", "u2", "halo?", 11))
    assert ticket_of(engine, "b3").id != t.id


def test_rule3_recently_resolved_is_reopened(engine, accounts):
    put(engine, accounts, "fb", m("c1", "t1", "u1", "paket belum sampai", 0))
    t = ticket_of(engine, "c1")
    set_status(engine, t.id, "resolved", resolved_at=T0 + timedelta(hours=1))
    res = put(engine, accounts, "fb", m("c2", "t1", "u1", "masih belum sampai", 60 * 24 * 2))
    assert (res.reopened, res.new_tickets) == (1, 0)
    t2 = ticket_of(engine, "c2")
    assert (t2.id, t2.status, t2.reopened_count, t2.resolved_at) == (t.id, "open", 1, None)
    assert message(engine, "c2").dedup_rule == "3:reopen"
    with Session(engine) as s:
        events = s.exec(select(TicketEvent).where(TicketEvent.ticket_id == t.id, TicketEvent.action == "status")).all()
    assert [e.detail["to"] for e in events] == ["open"]


def test_rule3_resolved_long_ago_makes_a_linked_ticket(engine, accounts):
    put(engine, accounts, "fb", m("d1", "t1", "u1", "paket belum sampai", 0))
    old = ticket_of(engine, "d1")
    set_status(engine, old.id, "resolved", resolved_at=T0 + timedelta(hours=1))
    res = put(engine, accounts, "fb", m("d2", "t1", "u1", "pesanan baru bermasalah", 60 * 24 * 10))
    assert (res.reopened, res.new_tickets) == (0, 1)
    new = ticket_of(engine, "d2")
    assert new.id != old.id and new.linked_ticket_id == old.id and new.status == "new"
    assert message(engine, "d2").dedup_rule == "3:follow-up"
    with Session(engine) as s:
        assert s.get(Ticket, old.id).status == "resolved"
    # and a closed ticket is never reopened either
    set_status(engine, new.id, "closed", resolved_at=T0 + timedelta(days=10, hours=1))
    put(engine, accounts, "fb", m("d3", "t1", "u1", "halo lagi", 60 * 24 * 10 + 120))
    assert ticket_of(engine, "d3").linked_ticket_id == new.id


# Rule 4 ----------------------------------------------------------------------------------------


def test_rule4_same_invoice_same_person_other_channel_attaches(engine, accounts):
    put(engine, accounts, "ig", m("e1", "ig-t1", "igsid-1", f"Refund {INV} belum masuk", 0, ch="ig", handle="budi.s", name="Budi S"))
    res = put(engine, accounts, "fb", m("e2", "fb-t1", "psid-1", f"halo, soal {INV} gimana?", 30, handle="budi.s", name="Budi Santoso"))
    assert (res.attached, res.new_tickets) == (1, 0)
    msg = message(engine, "e2")
    assert (msg.dedup_rule, msg.dedup_score) == ("4:order", 1.0)
    assert INV in msg.dedup_reason and "'budi.s' on facebook" in msg.dedup_reason
    assert msg.ticket_id == ticket_of(engine, "e1").id
    # the thread now follows that ticket
    put(engine, accounts, "fb", m("e3", "fb-t1", "psid-1", "ditunggu", 31, handle="budi.s"))
    assert ticket_of(engine, "e3").id == msg.ticket_id
    # the decision is in the ticket's audit log with its rule, reason and score
    with Session(engine) as s:
        events = s.exec(select(TicketEvent).where(TicketEvent.ticket_id == msg.ticket_id, TicketEvent.action == "dedup")).all()
    attach = [e.detail for e in events if e.detail["rule"] == "4:order"]
    assert attach and attach[0]["score"] == 1.0 and INV in attach[0]["reason"] and attach[0]["messages"] == ["e2"]
    # an order number is not an identity: the contacts are not linked into a person (an agent may)
    with Session(engine) as s:
        persons = {c.person_id for c in s.exec(select(Contact))}
        events = s.exec(select(PersonEvent)).all()
    assert persons == {None} and events == []


def test_rule4_different_invoice_is_not_attached(engine, accounts):
    put(engine, accounts, "ig", m("f1", "ig-t1", "igsid-1", f"Refund {INV} belum masuk", 0, ch="ig", handle="budi.s"))
    res = put(engine, accounts, "fb", m("f2", "fb-t1", "psid-1", f"Refund {INV2} belum masuk juga", 30, handle="andi"))
    assert (res.attached, res.flagged, res.new_tickets) == (0, 0, 1)
    assert ticket_of(engine, "f2").possible_duplicate_of_id is None


def test_rule4_same_invoice_other_customer_is_only_flagged(engine, accounts):
    put(engine, accounts, "ig", m("g1", "ig-t1", "igsid-1", f"Refund {INV} belum masuk", 0, ch="ig", handle="budi.s", name="Budi"))
    res = put(engine, accounts, "fb", m("g2", "fb-t1", "psid-9", f"Saya penjual, pesanan {INV} dikomplain", 30, name="Toko Andi"))
    assert (res.attached, res.flagged, res.new_tickets) == (0, 1, 1)
    first, second = ticket_of(engine, "g1"), ticket_of(engine, "g2")
    assert second.id != first.id and second.possible_duplicate_of_id == first.id
    msg = message(engine, "g2")
    assert msg.dedup_rule == "4:order-weak" and msg.dedup_score < 1


def test_rule4_linked_person_attaches_to_active_ticket_but_not_to_a_resolved_one(engine, accounts):
    put(engine, accounts, "ig", m("h1", "ig-t1", "igsid-1", "akun saya diblokir", 0, ch="ig"))
    put(engine, accounts, "fb", m("h0", "fb-t0", "psid-1", "halo", -5))
    link_every_contact(engine, "Budi")  # an agent linked the two contacts earlier
    ticket_fb = ticket_of(engine, "h0")
    set_status(engine, ticket_fb.id, "closed", resolved_at=T0)
    res = put(engine, accounts, "fb", m("h2", "fb-t0", "psid-1", "tolong dibuka akunnya", 10))
    assert res.attached == 1
    assert message(engine, "h2").dedup_rule == "4:person"
    assert ticket_of(engine, "h2").id == ticket_of(engine, "h1").id
    # must not: once that ticket is resolved long ago, a new message opens a new ticket
    set_status(engine, ticket_of(engine, "h1").id, "resolved", resolved_at=T0 - timedelta(days=30))
    before = n_tickets(engine)
    put(engine, accounts, "ig", m("h3", "ig-t1", "igsid-1", "masih diblokir", 60 * 24 * 40, ch="ig"))
    assert n_tickets(engine) == before + 1


def test_rule4_within_one_page(engine, accounts):
    res = put(
        engine, accounts, "fb",
        m("i1", "t1", "u1", f"Pembayaran {INV} gagal", 0, name="Rina"),
        m("i2", "t2", "u2", f"{INV} punya teman saya gagal bayar", 1, name="Dewi"),
    )
    assert (res.new_tickets, res.flagged) == (2, 1)
    assert ticket_of(engine, "i2").possible_duplicate_of_id == ticket_of(engine, "i1").id


# Rule 5 ----------------------------------------------------------------------------------------

COMPLAINT = "Saya sudah transfer Rp 250.000 tapi pesanan saya dibatalkan otomatis, tolong dibantu!!"


def test_rule5_copy_pasted_complaint_across_channels_is_flagged(engine, accounts):
    put(engine, accounts, "ig", m("j1", "ig-t1", "igsid-1", COMPLAINT, 0, ch="ig", handle="rina.w", name="Rina W"))
    res = put(engine, accounts, "x", m("j2", "x-t1", "9001", COMPLAINT.replace("!!", "!") + " ", 45, ch="x", handle="rina.w", name="rina"))
    assert (res.flagged, res.new_tickets) == (1, 1)
    msg = message(engine, "j2")
    assert msg.dedup_rule == "5:similar" and 0.9 <= msg.dedup_score <= 1.0
    assert "same customer by handle: 'rina.w' on x, 'rina.w' on instagram" in msg.dedup_reason
    assert ticket_of(engine, "j2").possible_duplicate_of_id == ticket_of(engine, "j1").id


def test_rule5_linked_contacts_without_a_handle_are_the_same_person(engine, accounts):
    put(engine, accounts, "ig", m("q1", "ig-t1", "igsid-1", COMPLAINT, 0, ch="ig", handle="rina.w", name="Rina W"))
    put(engine, accounts, "fb", m("q0", "fb-t0", "psid-1", "halo", -60 * 48, name="Rina W"))
    link_every_contact(engine, "Rina")  # an agent linked the Messenger contact to the Instagram one
    set_status(engine, ticket_of(engine, "q1").id, "resolved", resolved_at=T0 + timedelta(minutes=1))
    set_status(engine, ticket_of(engine, "q0").id, "resolved", resolved_at=T0 - timedelta(days=30))
    res = put(engine, accounts, "fb", m("q2", "fb-t0", "psid-1", COMPLAINT, 45, name="Rina W"))
    assert res.flagged == 1
    assert "linked contacts (same person)" in message(engine, "q2").dedup_reason
    assert ticket_of(engine, "q2").possible_duplicate_of_id == ticket_of(engine, "q1").id


def test_rule5_a_shared_display_name_alone_is_not_the_same_person(engine, accounts):
    # Complaints are alike and so are names: two "Rina W"s with the same text are not flagged.
    put(engine, accounts, "ig", m("p1", "ig-t1", "igsid-1", COMPLAINT, 0, ch="ig", handle="rina.w", name="Rina W"))
    res = put(engine, accounts, "fb", m("p2", "fb-t1", "psid-1", COMPLAINT, 45, name="Rina W"))
    assert (res.flagged, res.new_tickets) == (0, 1)
    assert message(engine, "p2").dedup_rule == "new"


def test_rule5_other_customer_outside_window_or_different_text_is_not_flagged(engine, accounts):
    put(engine, accounts, "ig", m("k1", "ig-t1", "igsid-1", COMPLAINT, 0, ch="ig", handle="rina.w", name="Rina W"))
    # another customer, same text
    put(engine, accounts, "fb", m("k2", "fb-t1", "psid-2", COMPLAINT, 10, name="Joko"))
    # the same person, outside the 24 h window
    put(engine, accounts, "x", m("k3", "x-t3", "9003", COMPLAINT, 60 * 30, ch="x", handle="rina.w"))
    # the same person, inside the window, a different message
    put(engine, accounts, "x", m("k4", "x-t4", "9004", "Kapan barang saya dikirim ya kak? sudah tiga hari", 20, ch="x", handle="rina.w"))
    for eid in ("k2", "k3", "k4"):
        assert ticket_of(engine, eid).possible_duplicate_of_id is None, eid
        assert message(engine, eid).dedup_rule == "new", eid


def test_rule4_handle_on_one_channel_matches_name_on_another(engine, accounts):
    put(engine, accounts, "ig", m("l1", "ig-t1", "igsid-1", f"Blender {INV} pecah, mohon refund", 0, ch="ig", handle="melati.sari"))
    res = put(engine, accounts, "fb", m("l2", "fb-t1", "psid-1", f"Sudah DM di IG juga, {INV} datang pecah", 20, name="Melati Sari"))
    assert res.attached == 1
    assert ticket_of(engine, "l2").id == ticket_of(engine, "l1").id
    # must not: on one channel, two contacts with the same name are two customers
    put(engine, accounts, "fb", m("l3", "fb-t3", "psid-3", f"Pesanan {INV2} belum sampai", 40, name="Rudi Hartono"))
    res = put(engine, accounts, "fb", m("l4", "fb-t4", "psid-4", f"Pesanan {INV2} saya juga", 50, name="Rudi Hartono"))
    assert (res.attached, res.flagged) == (0, 1)
    assert ticket_of(engine, "l4").possible_duplicate_of_id == ticket_of(engine, "l3").id


# Rule 4 as a table (README "Dedup rules") -----------------------------------------------------

RULE4_TABLE = [
    # (first customer: channel, handle, name), (second: channel, handle, name), second text, minutes apart, expected
    (("ig", "melati.sari", None), ("fb", None, "Melati Sari"), f"{INV} pecah", 20, "attach"),
    (("ig", "melati.sari", None), ("x", "MELATI_SARI", None), f"{INV} pecah", 20, "attach"),
    (("ig", None, "Mélati Sarì 🌸"), ("fb", None, "melati  sari"), f"{INV} pecah", 20, "attach"),
    (("ig", "melati.sari", None), ("fb", None, "Melati Sari"), f"{INV} pecah", 60 * 24 * 8, "new"),  # outside the window
    (("ig", "melati.sari", None), ("fb", None, "Toko Andi"), f"{INV} pecah", 20, "flag"),  # someone else's invoice
    (("fb", None, "Melati Sari"), ("fb", None, "Melati Sari"), f"{INV} pecah", 20, "flag"),  # one channel: two accounts
    (("ig", "melati.sari", None), ("fb", None, "Melati Sari"), f"{INV2} pecah", 20, "new"),  # another invoice
    (("ig", "budi.s", "Budi"), ("fb", None, "Budi"), "akun saya diblokir tolong dibantu", 20, "new"),  # generic text, no invoice
]


@pytest.mark.parametrize("first,second,text,apart,expected", RULE4_TABLE)
def test_rule4_table(engine, accounts, first, second, text, apart, expected):
    (ch1, h1, n1), (ch2, h2, n2) = first, second
    first_text = f"Blender {INV} datang pecah" if INV in text or INV2 in text else text
    put(engine, accounts, ch1, m("a1", "t-a", "cust-a", first_text, 0, ch=ch1, handle=h1, name=n1))
    res = put(engine, accounts, ch2, m("b1", "t-b", "cust-b", text, apart, ch=ch2, handle=h2, name=n2))
    a, b = ticket_of(engine, "a1"), ticket_of(engine, "b1")
    rule = message(engine, "b1").dedup_rule
    if expected == "attach":
        assert (b.id, rule, res.attached) == (a.id, "4:order", 1)
    elif expected == "flag":
        assert b.id != a.id and rule == "4:order-weak"
        assert (b.possible_duplicate_of_id, a.possible_duplicate_of_id) == (a.id, b.id)  # both point at each other
    else:
        assert b.id != a.id and rule == "new" and b.possible_duplicate_of_id is None
    with Session(engine) as s:  # never a person link, whatever the evidence
        assert {c.person_id for c in s.exec(select(Contact))} == {None}


def test_someone_quoting_an_invoice_never_takes_over_its_ticket(engine, accounts):
    """Issue: B quotes A's invoice; after the flag, B's next messages stay in B's own ticket and
    A's ticket keeps A's thread alone."""
    put(engine, accounts, "ig", m("v1", "ig-v", "victim", f"Refund {INV} ke rekening saya ya", 0, ch="ig", handle="budi.s", name="Budi"))
    put(engine, accounts, "x", m("x1", "x-att", "attacker", f"Refund {INV} belum masuk", 5, ch="x", handle="cs_helper", name="CS"))
    victim, attacker = ticket_of(engine, "v1"), ticket_of(engine, "x1")
    assert attacker.id != victim.id and attacker.possible_duplicate_of_id == victim.id
    with Session(engine) as s:
        back = s.exec(select(TicketEvent).where(TicketEvent.ticket_id == victim.id, TicketEvent.action == "dedup")).all()
    assert any(e.detail.get("possible_duplicate_of") == attacker.id for e in back)
    set_status(engine, attacker.id, "resolved", resolved_at=T0 + timedelta(minutes=6))
    put(engine, accounts, "x", m("x2", "x-att", "attacker", f"tolong transfer refund {INV} ke rekening baru", 10, ch="x", handle="cs_helper"))
    assert ticket_of(engine, "x2").id == attacker.id  # reopened, its own ticket
    with Session(engine) as s:
        convs = s.exec(select(Message.conversation_id).where(Message.ticket_id == victim.id)).all()
        assert len(set(convs)) == 1
        assert {c.person_id for c in s.exec(select(Contact))} == {None}


def test_a_person_link_the_sync_made_from_an_invoice_is_undone_by_the_migration(tmp_path):
    from inbox.store import open_store
    from inbox.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = sa.create_engine(url)
    upgrade(eng, "0007")
    with eng.begin() as conn:
        conn.exec_driver_sql("INSERT INTO account (id, name, channel, platform_id, created_at, needs_reauth) VALUES (1, 'a', 'x', '1', '2026-11-20', 0)")
        conn.exec_driver_sql("INSERT INTO person (id, display_name, created_at) VALUES (1, 'Budi', '2026-11-20'), (2, 'Sari', '2026-11-20')")
        for cid, pid in ((1, 1), (2, 1), (3, 2), (4, 2)):
            conn.exec_driver_sql(f"INSERT INTO contact (id, channel, account_id, platform_user_id, person_id, created_at) VALUES ({cid}, 'x', 1, 'u{cid}', {pid}, '2026-11-20')")
        conn.exec_driver_sql(
            "INSERT INTO person_event (person_id, contact_id, action, reason, actor, at) VALUES "
            f"(1, 1, 'link', 'shared invoice {INV}', 'sync', '2026-11-20'), (1, 2, 'link', 'shared invoice {INV}', 'sync', '2026-11-20'),"
            "(2, 3, 'link', 'same customer', 'ana', '2026-11-20'), (2, 4, 'link', 'same customer', 'ana', '2026-11-20')"
        )
    eng.dispose()
    store = open_store(url)
    with Session(store) as s:
        persons = {c.id: c.person_id for c in s.exec(select(Contact))}
        undone = s.exec(select(PersonEvent).where(PersonEvent.action == "unlink")).all()
    store.dispose()
    assert persons == {1: None, 2: None, 3: 2, 4: 2}  # the agent's link stays
    assert sorted(e.contact_id for e in undone) == [1, 2]


# Rule 5 in the thread: repeats ------------------------------------------------------------------


def test_a_repeat_in_the_thread_is_stored_marked_counted_and_raises_an_overdue_priority(engine, accounts):
    put(engine, accounts, "ig", m("r1", "ig-r", "igsid-r", "Kak paket saya belum sampai sudah seminggu", 0, ch="ig", handle="dewi"))
    res = put(engine, accounts, "ig", m("r2", "ig-r", "igsid-r", "kakkk paket sayaa belum sampaiii udh seminggu!!! 😭", 5, ch="ig", handle="dewi"))
    assert (res.new_messages, res.repeats, res.new_tickets) == (1, 1, 0)
    first, again = message(engine, "r1"), message(engine, "r2")
    assert (again.ticket_id, again.dedup_rule, again.repeat_of_id) == (first.ticket_id, "5:repeat", first.id)
    assert "repeated" in again.dedup_reason and f"message {first.id}" in again.dedup_reason
    t = ticket_of(engine, "r1")
    assert (t.repeat_count, t.priority) == (1, "normal")
    # a different message is not a repeat
    put(engine, accounts, "ig", m("r3", "ig-r", "igsid-r", "Nomor resinya JNT0012345678 ya kak", 6, ch="ig", handle="dewi"))
    assert message(engine, "r3").dedup_rule == "3:thread" and ticket_of(engine, "r1").repeat_count == 1
    # past the first-response due, a repeat raises the priority one step, audited
    late = (t.first_response_due_at - T0).total_seconds() / 60 + 10
    put(engine, accounts, "ig", m("r4", "ig-r", "igsid-r", "kak paket saya blm sampai sdh seminggu", late, ch="ig", handle="dewi"))
    t = ticket_of(engine, "r1")
    assert (t.repeat_count, t.priority) == (2, "high")
    with Session(engine) as s:
        ev = s.exec(select(TicketEvent).where(TicketEvent.ticket_id == t.id, TicketEvent.action == "priority")).all()
    assert [(e.actor, e.detail["from"], e.detail["to"]) for e in ev] == [("sync", "normal", "high")]
    # ... unless the team turned it off
    off = Settings.model_validate({"dedup": {"repeat_raises_priority": False}})
    put(engine, accounts, "ig", m("r5", "ig-r", "igsid-r", "kak paket saya belum sampai sudah seminggu", late + 1, ch="ig", handle="dewi"), settings=off)
    assert ticket_of(engine, "r1").priority == "high" and message(engine, "r5").dedup_rule == "5:repeat"


def test_repeats_within_one_page_point_at_the_stored_message(engine, accounts):
    put(engine, accounts, "fb",
        m("s1", "fb-s", "psid-s", "Saldo saya terpotong tapi pesanan gagal", 0),
        m("s2", "fb-s", "psid-s", "saldo sy terpotong tp pesanan gagal!!", 1))
    first, again = message(engine, "s1"), message(engine, "s2")
    assert again.repeat_of_id == first.id and f"message {first.id}" in again.dedup_reason



def test_repeats_on_a_page_after_deleted_messages_point_at_their_own_ids(engine, accounts):
    """A page's ids follow the highest stored one (SQLite gives them before the insert, so the
    repeats point at them in the insert itself): with rows deleted below the top and two
    repeats of one message and one of the other thread's, every pointer, reason and search
    entry names the right message."""
    put(engine, accounts, "fb", m("d1", "fb-d", "psid-d", "pesanan saya belum dikirim sampai sekarang", 0),
        m("d2", "fb-e", "psid-e", "voucher cashback saya belum masuk juga", 1))
    with engine.begin() as conn:
        conn.execute(sa.delete(Message.__table__).where(Message.__table__.c.external_id == "d1"))
    res = put(engine, accounts, "fb",
              m("d3", "fb-f", "psid-f", "Saldo saya terpotong tapi pesanan gagal", 10),
              m("d4", "fb-e", "psid-e", "voucher cashback sy blm masuk jg", 11),
              m("d5", "fb-f", "psid-f", "saldo sy terpotong tp pesanan gagal!!", 12),
              m("d6", "fb-f", "psid-f", "saldo saya terpotong tapi pesanan gagal kak", 13))
    assert res.new_messages == 4
    d2, d3, d4, d5, d6 = (message(engine, f"d{i}") for i in range(2, 7))
    assert d2.id < d3.id < d4.id < d5.id < d6.id  # the page's ids follow the highest stored one, in order
    assert (d4.repeat_of_id, d5.repeat_of_id) == (d2.id, d3.id)
    assert d6.repeat_of_id in (d3.id, d5.id)  # either earlier message of its thread, never itself
    for again in (d4, d5, d6):
        assert f"message {again.repeat_of_id}" in again.dedup_reason
    assert d5.ticket_id == d6.ticket_id == d3.ticket_id
    assert {d.external_id: d.repeat_of for d in res.decisions if d.repeat_of is not None} == {
        "d4": d2.id, "d5": d3.id, "d6": d6.repeat_of_id}
    if engine.dialect.name == "sqlite":  # the page's search entries are its messages' ids
        with engine.connect() as conn:
            found = set(conn.exec_driver_sql("SELECT rowid FROM message_fts WHERE message_fts MATCH 'terpotong'").scalars())
        assert found == {d3.id, d5.id, d6.id}

_SAID = [
    "Kak paket saya belum sampai sudah seminggu",
    "Nomor resinya JNT0012345678 ya kak",
    "Alamat saya Jl. Melati 5 Bandung",
    "Tolong dicek ke kurir ya kak",
    "Saya sudah bayar lewat transfer bank",
    "Kenapa statusnya masih diproses terus",
    "Apakah bisa dikirim ulang barangnya",
    "Saya mau komplain soal ongkirnya juga",
]


@pytest.mark.parametrize("late", [False, True], ids=["in-order", "late-delivery"])
def test_a_repeat_is_found_among_the_last_messages_of_a_long_thread(engine, accounts, late):
    """The lookback is the thread's last few customer messages before the repeat: in a long thread,
    and for a message delivered late, older than messages already stored."""
    for n, text in enumerate(_SAID):
        put(engine, accounts, "fb", m(f"l{n}", "fb-l", "psid-l", text, n * 10))
    if late:  # written between l2 and l3, delivered after l7, with a new message on the same page
        res = put(engine, accounts, "fb",
                  m("late", "fb-l", "psid-l", "kak paket saya blm sampai sdh seminggu!!", 25),
                  m("new", "fb-l", "psid-l", "Ada kabar terbaru kak?", 200))
        assert message(engine, "late").repeat_of_id == message(engine, "l0").id
    else:
        res = put(engine, accounts, "fb", m("again", "fb-l", "psid-l", "kenapa statusnya masih diproses terussss", 200))
        assert message(engine, "again").repeat_of_id == message(engine, "l5").id
    assert res.repeats == 1


@pytest.mark.parametrize("one_page", [False, True], ids=["stored", "same-page"])
def test_a_repeat_of_a_message_older_than_the_lookback_is_not_one(engine, accounts, one_page):
    """Only the thread's last REPEAT_LOOKBACK customer messages before it are compared, whether
    stored (the load reads that many) or on the same page (the rule counts them): the first of
    eight, sent again, is a new message of the thread, not a repeat."""
    from inbox.dedup.state import REPEAT_LOOKBACK

    assert len(_SAID) > REPEAT_LOOKBACK + 1
    said = [m(f"k{n}", "fb-k", "psid-k", text, n * 10) for n, text in enumerate(_SAID)]
    again = m("again", "fb-k", "psid-k", _SAID[0], 200)
    if one_page:
        res = put(engine, accounts, "fb", *said, again)
    else:
        for msg in said:
            put(engine, accounts, "fb", msg)
        res = put(engine, accounts, "fb", again)
    assert message(engine, "again").repeat_of_id is None
    assert res.repeats == 0


@pytest.mark.parametrize("one_page", [False, True], ids=["stored", "same-page"])
def test_a_repeat_equal_to_two_earlier_messages_points_at_the_older(engine, accounts, one_page):
    """Sent three times: the third points at the first, as the second does (a tie goes to the older)."""
    text = _SAID[0]
    msgs = [m("t0", "fb-t", "psid-t", text, 0), m("t1", "fb-t", "psid-t", text, 10)]
    if one_page:
        put(engine, accounts, "fb", *msgs, m("t2", "fb-t", "psid-t", text, 20))
    else:
        for msg in msgs:
            put(engine, accounts, "fb", msg)
        put(engine, accounts, "fb", m("t2", "fb-t", "psid-t", text, 20))
    first = message(engine, "t0").id
    assert message(engine, "t1").repeat_of_id == first
    assert message(engine, "t2").repeat_of_id == first
