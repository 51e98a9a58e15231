"""Ingest: idempotent bulk storage of pages, echoes, cursor in the same transaction (both backends)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from connectors.base import (
    Attachment,
    Gap,
    InboundMessage,
    Page,
    QuarantinedItem,
)
from connectors.enums import Channel, MessageKind
from inbox.settings import Settings
from inbox.errors import LeaseLostError
from inbox.ingest.page import ingest_page
from inbox.store.models import Account, Message, Reply, SyncState, Ticket, TicketEvent
from tests import factories as sf
from tests.waiting import wait_until

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
PAGE_ID = "104920378912345"


def make_account(engine, name: str = "toko-fb", channel: str = "facebook", platform_id: str = PAGE_ID) -> Account:
    with Session(engine) as s:
        acc = Account(name=name, channel=channel, platform_id=platform_id)
        s.add(acc)
        s.commit()
        s.refresh(acc)
        return acc


def msg(
    eid: str,
    thread: str,
    customer: str,
    text: str | None,
    minutes: float,
    *,
    out: bool = False,
    channel: Channel = Channel.FACEBOOK,
    account: str = PAGE_ID,
    handle: str | None = None,
    name: str | None = None,
) -> InboundMessage:
    return sf.inbound(eid, thread, customer, text, T0 + timedelta(minutes=minutes), channel=channel, account=account,
                      handle=handle, name=name or customer.title(), out=out, brand_name="Toko",
                      raw={"id": eid, "message": text})


def count(engine, table: str, where: str = "1=1", **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()


def cursor_of(engine, account_id: int):
    with Session(engine) as s:
        st = s.get(SyncState, account_id)
        return None if st is None else st.cursor


@pytest.fixture
def settings() -> Settings:
    return Settings()


def test_same_page_twice_is_stored_once(engine, settings):
    acc = make_account(engine)
    page = Page(
        (
            msg("m1", "t1", "u1", "Halo kak, pesanan saya belum sampai", 0),
            msg("m2", "t1", "u1", "tolong dicek ya", 1),
            msg("m3", "t2", "u2", "refund belum masuk", 2),
        ),
        cursor={"high_water": "2026-11-20T09:02:00Z"},
    )
    first = ingest_page(engine, acc, page, settings)
    assert (first.new_messages, first.duplicates, first.new_tickets, first.appended) == (3, 0, 2, 1)
    second = ingest_page(engine, acc.id, page, settings)
    assert (second.new_messages, second.duplicates, second.new_tickets) == (0, 3, 0)
    assert count(engine, "message") == 3
    assert count(engine, "ticket") == 2
    assert count(engine, "contact") == 2
    assert count(engine, "conversation") == 2
    with Session(engine) as s:
        counts = sorted(t.message_count for t in s.exec(select(Ticket)))
    assert counts == [1, 2]  # counters are not bumped by the re-delivery


def test_overlapping_pages_and_repeats_within_a_page(engine, settings):
    acc = make_account(engine)
    a = [msg(f"m{i}", "t1", "u1", f"pesan nomor {i}", i) for i in range(1, 6)]
    r1 = ingest_page(engine, acc, Page(tuple(a[:3]), cursor=None), settings)
    # the next page overlaps two messages, and carries one twice
    r2 = ingest_page(engine, acc, Page((a[1], a[2], a[3], a[3], a[4]), cursor=None), settings)
    assert (r1.new_messages, r2.new_messages, r2.duplicates) == (3, 2, 3)
    assert count(engine, "message") == 5
    with Session(engine) as s:
        (ticket,) = s.exec(select(Ticket)).all()
    assert ticket.message_count == 5
    assert ticket.snippet == "pesan nomor 5"
    assert ticket.last_customer_message_at == T0 + timedelta(minutes=5)


def test_echo_of_our_reply_is_matched_and_never_a_ticket(engine, settings):
    acc = make_account(engine)
    ingest_page(engine, acc, Page((msg("m1", "t1", "u1", "Pembayaran saya gagal", 0),), cursor=None), settings)
    with Session(engine) as s:
        ticket = s.exec(select(Ticket)).one()
        conv_id = s.execute(sa.text("SELECT id FROM conversation")).scalar_one()
        reply = Reply(
            idempotency_key="k1", ticket_id=ticket.id, conversation_id=conv_id, channel="facebook",
            account_id=acc.id, recipient_id="u1", text="Baik kak", policy="RESPONSE", state="unknown",
            external_id="m_reply_1", author="agent1",
        )
        s.add(reply)
        s.commit()
        reply_id = reply.id
    page = Page(
        (
            msg("m_reply_1", "t1", "u1", "Baik kak", 5, out=True),
            msg("m_app", "t1", "u1", "Dari aplikasi", 6, out=True),  # typed in the native app
            msg("m_brand_first", "t9", "u9", "Promo hari ini", 7, out=True),  # brand starts a thread
        ),
        cursor=None,
    )
    res = ingest_page(engine, acc, page, settings)
    assert (res.new_messages, res.echoes, res.echoes_matched, res.new_tickets) == (3, 3, 1, 0)
    again = ingest_page(engine, acc, page, settings)
    assert again.new_messages == 0 and again.echoes_matched == 0
    with Session(engine) as s:
        reply = s.get(Reply, reply_id)
        ticket = s.exec(select(Ticket)).one()
        rows = dict(s.execute(sa.text("SELECT external_id, reply_id FROM message")).all())
    assert reply.state == "sent" and reply.sent_at == T0 + timedelta(minutes=5)
    assert rows["m_reply_1"] == reply_id and rows["m_app"] is None
    # echoes are not the customer writing, but they are the first response
    assert ticket.last_customer_message_at == T0
    assert ticket.first_response_at == T0 + timedelta(minutes=5)
    assert ticket.message_count == 3
    assert count(engine, "ticket") == 1
    assert count(engine, "message", "ticket_id IS NULL") == 1  # the brand-started thread has no ticket


def test_cursor_is_written_with_the_page_and_not_on_failure(engine, settings, monkeypatch):
    acc = make_account(engine)
    ingest_page(engine, acc, Page((msg("m1", "t1", "u1", "halo", 0),), cursor={"n": 1}), settings)
    assert cursor_of(engine, acc.id) == {"n": 1}
    # an intermediate page (cursor None) keeps the old cursor
    ingest_page(engine, acc, Page((msg("m2", "t1", "u1", "halo lagi", 1),), cursor=None), settings)
    assert cursor_of(engine, acc.id) == {"n": 1}

    from inbox.ingest import page as mod

    def boom(*a, **k):  # a failure after the messages were inserted
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(mod, "store_quarantined", boom)
    with pytest.raises(RuntimeError):
        ingest_page(engine, acc, Page((msg("m3", "t1", "u1", "x", 2),), cursor={"n": 3}), settings)
    assert count(engine, "message") == 2
    assert cursor_of(engine, acc.id) == {"n": 1}


def test_dry_run_writes_nothing(engine, settings):
    acc = make_account(engine)
    page = Page((msg("m1", "t1", "u1", "saya kena penipuan", 0), msg("m2", "t2", "u2", "halo", 1)), cursor={"n": 1})
    res = ingest_page(engine, acc, page, settings, dry_run=True)
    assert res.new_messages == 2 and res.new_tickets == 2
    assert [d.rule for d in res.decisions] == ["new", "new"]
    assert all(d.new_ticket for d in res.decisions)
    assert count(engine, "message") == 0 and count(engine, "ticket") == 0
    assert cursor_of(engine, acc.id) is None


def test_gaps_quarantine_and_attachments(engine, settings):
    acc = make_account(engine)
    m = msg("m1", "t1", "u1", None, 0)
    photo = InboundMessage(
        **{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "kind": MessageKind.ATTACHMENT,
           "attachments": (Attachment("image", url="https://cdn.example/x.jpg?oe=1", mime="image/jpeg", size=1234),)}
    )
    bad = QuarantinedItem(Channel.FACEBOOK, PAGE_ID, "missing created_time", {"id": "m_bad"}, external_id="m_bad", thread_id="t1")
    page = Page((photo,), cursor=None, quarantined=(bad,), gaps=(Gap("t1", "all 20 readable messages were new"),))
    res = ingest_page(engine, acc, page, settings)
    assert (res.gaps, res.quarantined, res.new_tickets) == (1, 1, 1)
    again = ingest_page(engine, acc, Page((), cursor=None, quarantined=(bad,)), settings)
    assert again.quarantined == 0  # the same broken item re-delivered is kept once
    assert count(engine, "quarantine") == 1
    with Session(engine) as s:
        ticket = s.exec(select(Ticket)).one()
        gap_ticket = s.execute(sa.text("SELECT ticket_id FROM sync_gap")).scalar_one()
        att = s.execute(sa.text("SELECT attachments FROM message")).scalar_one()
    assert ticket.has_gap and gap_ticket == ticket.id
    assert ticket.subject == "[image]"
    assert "image/jpeg" in str(att)


def test_new_ticket_triage_and_sla(engine, settings):
    acc = make_account(engine)
    ingest_page(
        engine, acc,
        Page((msg("m1", "t1", "u1", "Tolong, saya kena PENIPUAN oleh penjual", 0), msg("m2", "t2", "u2", "Mau batalkan pesanan", 0)), cursor=None),
        settings,
    )
    with Session(engine) as s:
        by_cat = {t.category: t for t in s.exec(select(Ticket))}
    fraud, cancel = by_cat["fraud"], by_cat["cancellation"]
    assert (fraud.priority, fraud.priority_rank, fraud.status) == ("urgent", 0, "new")
    assert fraud.first_response_due_at == T0 + timedelta(minutes=settings.sla.first_response_minutes["urgent"])
    assert fraud.escalation_due_at == T0 + timedelta(days=3)
    assert cancel.priority == "normal"
    assert count(engine, "ticket_event", "action = 'created'") == 2


def test_lease_fencing_refuses_a_page_from_a_worker_without_the_lease(engine, settings):
    acc = make_account(engine)
    with Session(engine) as s:
        s.add(SyncState(account_id=acc.id, cursor={"n": 0}, lease_owner="host-a:1:abc"))
        s.commit()
    with pytest.raises(LeaseLostError):
        ingest_page(engine, acc, Page((msg("m1", "t1", "u1", "halo", 0),), cursor={"n": 1}), settings, lease_owner="host-b:2:def")
    assert count(engine, "message") == 0 and cursor_of(engine, acc.id) == {"n": 0}
    ingest_page(engine, acc, Page((msg("m1", "t1", "u1", "halo", 0),), cursor={"n": 1}), settings, lease_owner="host-a:1:abc")
    assert count(engine, "message") == 1 and cursor_of(engine, acc.id) == {"n": 1}


def test_brand_answering_after_the_customer_makes_the_ticket_pending(engine, settings):
    acc = make_account(engine)
    # backfill: customer, then the brand from the native app -> waiting on the customer
    ingest_page(engine, acc, Page((msg("m1", "t1", "u1", "Paket saya belum sampai", 0),
                                   msg("m2", "t1", "u1", "Sudah kami cek kak", 3, out=True)), cursor=None), settings)
    # a customer whose last word came after the brand's stays new
    ingest_page(engine, acc, Page((msg("n1", "t2", "u2", "Refund kapan?", 0),
                                   msg("n2", "t2", "u2", "Sedang diproses", 1, out=True),
                                   msg("n3", "t2", "u2", "Sudah 3 hari lho", 2)), cursor=None), settings)
    with Session(engine) as s:
        t1, t2 = s.exec(select(Ticket).order_by(Ticket.id)).all()
    assert (t1.status, t2.status) == ("pending", "new")
    # the customer answers: open again; the brand answers on a later page: pending again
    ingest_page(engine, acc, Page((msg("m3", "t1", "u1", "Belum ada update?", 10),), cursor=None), settings)
    with Session(engine) as s:
        assert s.get(Ticket, t1.id).status == "open"
    ingest_page(engine, acc, Page((msg("m4", "t1", "u1", "Besok sampai kak", 12, out=True),), cursor=None), settings)
    # a late re-delivered brand message older than the customer's last does not flip it
    ingest_page(engine, acc, Page((msg("n0", "t2", "u2", "Halo", 1.5, out=True),), cursor=None), settings)
    with Session(engine) as s:
        assert s.get(Ticket, t1.id).status == "pending"
        assert s.get(Ticket, t2.id).status == "new"
        reasons = [e.detail.get("reason") for e in s.exec(select(TicketEvent).where(TicketEvent.ticket_id == t1.id, TicketEvent.action == "status"))]
    assert reasons.count("the brand answered after the customer") == 2
    assert "customer answered" in reasons


def test_statements_per_page_do_not_grow_with_the_page(engine, settings):
    """The module's contract: a fixed handful of statements per page, whatever its size (here:
    follow-ups on existing tickets, and new customers). Linking two customers into one Person
    (rule 4, rare) still costs a few statements per link."""
    acc = make_account(engine)

    def inv(i: int) -> str:
        return f"INV/20261120/MPL/{3817265500 + i}"

    def statements(n: int, base: int) -> int:
        seed = [msg(f"s{base + i}", f"t{base + i}", f"u{base + i}", f"pesanan {inv(base + i)} belum sampai", i) for i in range(n)]
        ingest_page(engine, acc, Page(tuple(seed), cursor=None), settings)
        page = [msg(f"f{base + i}", f"t{base + i}", f"u{base + i}", "tolong dicek ya kak", 100 + i) for i in range(n)]
        page += [msg(f"o{base + i}", f"x{base + i}", f"v{base + i}", f"mau tanya ongkir ke kota {i}", 200 + i) for i in range(n)]
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            got = ingest_page(engine, acc, Page(tuple(page), cursor=None), settings)
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        assert (got.new_messages, got.appended, got.new_tickets) == (2 * n, n, n)
        return len(seen)

    assert statements(2, 0) == statements(20, 100)


def test_sqlite_wal_is_checkpointed_off_the_ingest_path(sqlite_engine, settings):
    from inbox.store import sqlite_wal

    acc = make_account(sqlite_engine)
    for i in range(sqlite_wal.EVERY_COMMITS):
        ingest_page(sqlite_engine, acc, Page((msg(f"w{i}", f"t{i}", f"u{i}", "pesanan belum sampai", i),), cursor={"n": i}), settings)
    cp = sqlite_wal._by_path[sqlite_engine.url.database]
    wait_until(lambda: cp.done >= 1)
    # the checkpointer's own connection sees every page, and nothing was written twice
    import sqlite3

    with sqlite3.connect(sqlite_engine.url.database) as db:
        assert db.execute("SELECT count(*) FROM message").fetchone()[0] == sqlite_wal.EVERY_COMMITS
        busy, log_frames, done_frames = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and done_frames == log_frames
    assert cursor_of(sqlite_engine, acc.id) == {"n": sqlite_wal.EVERY_COMMITS - 1}


def test_a_fork_waits_while_the_checkpointer_is_inside_sqlite():
    """SQLite's mutexes survive a fork held: a worker forked mid-checkpoint would hang at its first
    open. The fork waits for the checkpoint to leave SQLite."""
    import os
    import threading

    from inbox.store import sqlite_wal

    inside, leave = threading.Event(), threading.Event()
    order: list[str] = []

    def checkpointing() -> None:
        with sqlite_wal._in_sqlite:
            inside.set()
            leave.wait()
            order.append("checkpoint done")

    t = threading.Thread(target=checkpointing)
    t.start()
    inside.wait()
    threading.Timer(0.2, leave.set).start()  # the checkpoint ends a little later, whenever
    pid = os.fork()
    if pid == 0:
        os._exit(0 if sqlite_wal._in_sqlite.acquire(blocking=False) else 1)  # the child's lock is free
    order.append("forked")
    _, status = os.waitpid(pid, 0)
    t.join()
    assert order == ["checkpoint done", "forked"]
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_page_indexes_its_messages_for_search_and_other_writers_still_index_theirs(engine, settings):
    # SQLite: the page ingest fills the FTS index itself (inbox/store/fts.py `deferred_index`, with the
    # per-row trigger held off for its transaction); anything else writing messages relies on the trigger.
    from tests import factories as sf
    from inbox import search as srch

    def found(query: str) -> list[int]:
        return [h.ticket.id for h in srch.search(engine, query)]

    acc = make_account(engine)
    ingest_page(engine, acc, Page((msg("s1", "t1", "u1", "paket saya belum sampai", 0),
                                   msg("s2", "t2", "u2", "minta refund INV/20261120/MPL/3817265540", 1)), cursor=None), settings)
    ingest_page(engine, acc, Page((msg("s3", "t1", "u1", "tolong dicek kurirnya", 2),), cursor=None), settings)
    with Session(engine) as s:
        t1, t2 = s.exec(select(Ticket.id).order_by(Ticket.id)).all()
    assert found("kurirnya") == [t1] and found("belum sampai") == [t1] and found("3817265540") == [t2]
    # A page refused after its messages were written (lease lost) leaves nothing in the index.
    with Session(engine) as s:
        s.add(SyncState(account_id=acc.id, cursor={"n": 0}, lease_owner="host-a:1:abc"))
        s.commit()
    with pytest.raises(LeaseLostError):
        ingest_page(engine, acc, Page((msg("s4", "t3", "u3", "pesanan hilang entah kemana", 3),), cursor={"n": 1}), settings,
                    lease_owner="host-b:2:def")
    assert found("entah") == []
    # Messages written by anything else are still indexed, message by message.
    made = sf.ticket(engine, texts=["barang pecah saat diterima"])
    assert found("pecah") == [made.ticket_id]
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM message_fts_deferred").scalar() == 0
            conn.exec_driver_sql("INSERT INTO message_fts(message_fts, rank) VALUES ('integrity-check', 1)")  # raises if the index disagrees


def test_page_writers_of_other_processes_queue_on_the_lock_file(sqlite_engine, settings):
    """A page waits while another process holds `<db>-writer.lock`, then is stored (SQLite)."""
    import subprocess
    import sys
    import threading

    acc = make_account(sqlite_engine)
    lock_path = sqlite_engine.url.database + "-writer.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\nsys.stdin.readline()", lock_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    writer = threading.Thread(target=ingest_page, args=(sqlite_engine, acc, Page((msg("q1", "tq", "uq", "pesanan belum sampai", 0),), cursor={"n": 1}), settings))
    try:
        assert holder.stdout.readline().strip() == "held"
        writer.start()
        writer.join(0.5)
        # While the other process holds the lock the page is not written beside it.
        assert writer.is_alive() and count(sqlite_engine, "message") == 0
    finally:
        holder.communicate("release\n", timeout=120)
    writer.join(30)
    assert not writer.is_alive()
    assert count(sqlite_engine, "message") == 1 and cursor_of(sqlite_engine, acc.id) == {"n": 1}


def test_json_columns_keep_what_the_platform_sent(engine, settings):
    """orjson writes the JSON columns; what it refuses (integers beyond 64 bits) still goes in whole."""
    acc = make_account(engine)
    raw = {"id": "m_j1", "message": "Halo kak 🙏 ‮terbalik", "nested": {"list": [1, 2.5, None, True]}, "big": 2**70, "n": -(2**63)}
    m = msg("j1", "tj", "uj", "pesanan belum sampai", 0)
    m = InboundMessage(**{**{f.name: getattr(m, f.name) for f in fields(m)}, "raw": raw})
    ingest_page(engine, acc, Page((m,), cursor={"v": 1, "high_water": "2026-11-20T09:00:00Z", "ids": {"t1": 2**65}}), settings)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(Message.__table__.c.raw).where(Message.__table__.c.external_id == "j1")).scalar_one()
    assert stored == raw
    assert cursor_of(engine, acc.id) == {"v": 1, "high_water": "2026-11-20T09:00:00Z", "ids": {"t1": 2**65}}


def test_attachment_metadata_of_any_length_is_stored_and_shown_bounded(engine, settings, tmp_path, monkeypatch, capsys):
    """The platform names an attachment's type, mime, name and url: a hostile one may be a megabyte
    long. It is stored as given, but the ticket's snippet and `inbox show` stay a few lines."""
    import dataclasses

    import cli
    from connectors.base import Attachment

    huge = "x" * 200_000 + "\x1b[2J"
    acc = make_account(engine)
    att = Attachment(type="image" + huge, url="https://cdn.example/" + huge, mime="image/" + huge, size=10, name="foto" + huge)
    m = dataclasses.replace(msg("m1", "t1", "u1", None, 0), kind=MessageKind.ATTACHMENT, attachments=(att,))
    assert ingest_page(engine, acc, Page((m,), cursor=None), settings).new_messages == 1
    with engine.connect() as conn:
        snippet, tid = conn.execute(sa.text("SELECT snippet, id FROM ticket")).one()
        stored = conn.execute(sa.text("SELECT attachments FROM message")).scalar_one()
    assert len(snippet) <= 200
    assert len(str(stored)) > 800_000  # nothing of what the customer sent is cut in the store
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(f'database = "{engine.url.render_as_string(hide_password=False)}"\n', encoding="utf-8")
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)
    for argv in (["show", str(tid), "--no-pager"], ["show", str(tid), "--full", "--no-pager"], ["list"]):
        assert cli.main(["-c", str(cfg), *argv]) == 0
        out = capsys.readouterr().out
        assert len(out) < 5_000, (argv, len(out))
        assert "\x1b" not in out and "image" in out


def test_new_contacts_and_threads_get_their_own_rows_beside_known_ones(engine, settings):
    """A page mixing stored and new customers and threads (one customer new with two threads, one
    stored customer in a new thread): every message, thread and ticket points at the row of its
    own platform id, and a dry run in between (rolled back) takes no id the next page needs."""
    acc = make_account(engine)
    ingest_page(engine, acc, Page((msg("m1", "t1", "ana", "pesanan INV/20261120/MPL/1 belum sampai", 0),), None), settings)
    ingest_page(engine, acc, Page((msg("d1", "t9", "zed", "dry run only", 1),), None), settings, dry_run=True)
    page = Page((
        msg("m2", "t2", "budi", "refund belum masuk", 2),
        msg("m3", "t1", "ana", "halo kak", 3),
        msg("m4", "t3", "ana", "pesanan lain kak", 4),
        msg("m5", "t4", "citra", "akun saya diblokir", 5),
        msg("m6", "t5", "budi", "paket rusak", 6),
    ), None)
    ingest_page(engine, acc, page, settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.external_id, c.platform_user_id, v.external_id AS thread, v.contact_id AS thread_contact,"
            " t.contact_id AS ticket_contact, v.ticket_id AS thread_ticket, m.ticket_id"
            " FROM message m JOIN contact c ON c.id = m.contact_id JOIN conversation v ON v.id = m.conversation_id"
            " JOIN ticket t ON t.id = m.ticket_id ORDER BY m.external_id"
        )).all()
        contacts = dict(conn.execute(sa.text("SELECT platform_user_id, id FROM contact")).all())
    expected = {"m1": ("ana", "t1"), "m2": ("budi", "t2"), "m3": ("ana", "t1"), "m4": ("ana", "t3"), "m5": ("citra", "t4"), "m6": ("budi", "t5")}
    assert {r.external_id: (r.platform_user_id, r.thread) for r in rows} == expected
    assert sorted(contacts) == ["ana", "budi", "citra"]  # the dry run's customer was rolled back
    for r in rows:
        assert r.thread_contact == r.ticket_contact == contacts[r.platform_user_id]
        assert r.thread_ticket == r.ticket_id
    assert len({r.ticket_id for r in rows}) == 5  # one per thread: t1 has two messages
