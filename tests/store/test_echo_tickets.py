"""Our own messages (echoes) are on their thread's ticket, whatever the order they are stored in.

Through the CLI against the sandbox over real HTTP, on both backends. The invariant: every stored
message of a thread that has a ticket belongs to a ticket, so `inbox export` and `inbox search`
include it and the first response is counted from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from inbox.store.models import Conversation, Message, Ticket
from tests.store.test_sync_many import _config, run


def orphans(engine: sa.Engine) -> list[Any]:
    """Stored messages without a ticket in threads that have one."""
    m, v = Message.__table__, Conversation.__table__
    with engine.connect() as conn:
        return conn.execute(
            sa.select(m.c.external_id, m.c.direction, m.c.text)
            .select_from(m.join(v, v.c.id == m.c.conversation_id))
            .where(m.c.ticket_id.is_(None), v.c.ticket_id.is_not(None))
        ).all()


def ticketed_message_count(engine: sa.Engine) -> int:
    m, v = Message.__table__, Conversation.__table__
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(m.join(v, v.c.id == m.c.conversation_id)).where(v.c.ticket_id.is_not(None))
            ).scalar_one()
        )


def exported(cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = tmp_path / "export.jsonl"
    run(cfg, "export", "--format", "jsonl", "--output", str(out), capsys=capsys)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def ticket_row(engine: sa.Engine, external_id: str) -> Any:
    m, t = Message.__table__, Ticket.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(t).join(m, m.c.ticket_id == t.c.id).where(m.c.external_id == external_id)).one()


@pytest.fixture
def store(sandbox: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from inbox.store import open_store

    monkeypatch.setenv("INBOX_AGENT", "ana")
    cfg = _config(sandbox, db_url, tmp_path)
    engine = open_store(db_url)
    yield cfg, engine
    engine.dispose()


def test_our_reply_as_the_oldest_readable_message_of_a_meta_thread(sandbox: Any, store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, engine = store
    t0 = sandbox.now() - 3600
    first = sandbox.inject("tokoshop-ig", text="kak pesanan saya INV/20261120/MPL/3817265540 belum sampai", customer="sari.dewi", at=t0)
    thread = sandbox.thread_of("tokoshop-ig", first)
    ours = sandbox.inject_own("tokoshop-ig", thread, "Halo kak Sari, pesanan sedang kami lacak ya", at=t0 + 60)
    for i in range(19):  # the first customer message falls past the 20-message horizon; ours is the oldest readable
        sandbox.inject("tokoshop-ig", text=f"kak sudah ada kabar? ({i + 1})", thread=thread, at=t0 + 120 + 60 * i)

    run(cfg, "sync", capsys=capsys)

    assert orphans(engine) == []
    ticket = ticket_row(engine, ours)
    lines = exported(cfg, tmp_path, capsys)
    assert sum(len(t["messages"]) for t in lines) == ticketed_message_count(engine)
    line = next(t for t in lines if t["id"] == ticket.id)
    assert [m["platform_id"] for m in line["messages"]][0] == ours
    assert ticket.message_count == 20
    hits = json.loads(run(cfg, "search", "sedang kami lacak", "--status", "all", "--json", capsys=capsys))["tickets"]
    assert [h["id"] for h in hits] == [ticket.id]
    assert ticket.first_response_at is None  # ours was written before every readable customer message


def test_an_x_page_boundary_right_after_one_of_ours(sandbox: Any, store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """X events come newest first, 100 a page: ours is the last event of page one and the customer's
    message it answers opens page two. The rate limit strikes between the two pages, so page one
    (ours, in a thread without a ticket yet) is stored a sync before the customer's message."""
    cfg, engine = store
    t0 = sandbox.now() - 900  # newer than every seeded event: ours is exactly the 100th newest
    ask = sandbox.inject("tokoshop-x", text="min, saldo saya terpotong dua kali", customer="rudi_h", at=t0)
    conv = sandbox.thread_of("tokoshop-x", ask)
    ours = sandbox.inject_own("tokoshop-x", conv, "Halo kak Rudi, kami cek transaksinya ya", at=t0 + 60)
    for i in range(99):
        sandbox.inject("tokoshop-x", text=f"halo admin, mau tanya pesanan nomor {i}", at=t0 + 120 + i)

    sandbox.fault("429", path="/2/dm_events", account="tokoshop-x", skip=1)
    run(cfg, "sync", "--account", "tokoshop-x", capsys=capsys, code=7)
    m = Message.__table__
    with engine.connect() as conn:
        assert conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id == ours)).one().ticket_id is None  # page one only
        assert conn.execute(sa.select(m.c.id).where(m.c.external_id == ask)).first() is None
    run(cfg, "accounts", "reset", "tokoshop-x", capsys=capsys)
    run(cfg, "sync", "--account", "tokoshop-x", capsys=capsys)

    assert orphans(engine) == []
    ticket = ticket_row(engine, ours)
    assert ticket.id == ticket_row(engine, ask).id
    assert ticket.message_count == 2
    with engine.connect() as conn:
        ours_at = conn.execute(sa.select(m.c.sent_at).where(m.c.external_id == ours)).scalar_one()
    assert ticket.first_response_at == ours_at  # ours answered the customer
    lines = exported(cfg, tmp_path, capsys)
    assert sum(len(t["messages"]) for t in lines) == ticketed_message_count(engine)
    assert [m["platform_id"] for m in next(t for t in lines if t["id"] == ticket.id)["messages"]] == [ask, ours]


@pytest.mark.parametrize("account", ["tokoshop-fb", "tokoshop-x"])
def test_the_brand_writes_first_and_the_ticket_comes_with_the_answer(
    sandbox: Any, store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], account: str
) -> None:
    cfg, engine = store
    ours = sandbox.inject_own(account, None, "Halo kak, paket Anda tertahan di gudang, mohon konfirmasi alamat", customer="Wulan Sari")
    run(cfg, "sync", capsys=capsys)
    m = Message.__table__
    with engine.connect() as conn:
        assert conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id == ours)).scalar_one() is None  # no customer, no ticket

    answer = sandbox.inject(account, text="alamat saya Jl. Melati 5, Bandung", thread=sandbox.thread_of(account, ours))
    run(cfg, "sync", capsys=capsys)

    assert orphans(engine) == []
    ticket = ticket_row(engine, ours)
    assert ticket.id == ticket_row(engine, answer).id
    assert ticket.message_count == 2
    assert ticket.first_response_at is None  # written before the customer's message: not an answer to it
    lines = exported(cfg, tmp_path, capsys)
    assert sum(len(t["messages"]) for t in lines) == ticketed_message_count(engine)
    assert [x["platform_id"] for x in next(t for t in lines if t["id"] == ticket.id)["messages"]] == [ours, answer]


@pytest.mark.parametrize("one_sync", [False, True], ids=["two-syncs", "one-sync"])
@pytest.mark.parametrize("account", ["tokoshop-fb", "tokoshop-ig", "tokoshop-x"])
def test_the_brand_writing_first_in_the_same_second_is_not_an_answer(
    sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str], account: str, one_sync: bool
) -> None:
    """Meta's times have whole seconds: our message and the customer's answer in one second are
    ordered by the platform alone, and ours came first (stored first, or older on the page)."""
    cfg, engine = store
    second = sandbox.state.now_ms() // 1000 * 1000 - 60_000
    ours = sandbox.inject_own(account, None, "Halo kak, mohon konfirmasi alamat pengiriman", at=second / 1000, customer="Wulan Sari")
    if not one_sync:
        run(cfg, "sync", capsys=capsys)
    answer = sandbox.inject(account, text="alamat saya Jl. Melati 5, Bandung", thread=sandbox.thread_of(account, ours), at=(second + 400) / 1000)
    run(cfg, "sync", capsys=capsys)

    assert orphans(engine) == []
    ticket = ticket_row(engine, answer)
    assert ticket.id == ticket_row(engine, ours).id
    assert ticket.message_count == 2
    assert ticket.first_response_at is None


def test_the_upgrade_attaches_echoes_stored_without_their_ticket(db_url: str) -> None:
    """Stores written before the fix hold such echoes: migration 0007 attaches them, counted on their ticket."""
    from datetime import timedelta

    from tests import factories as sf
    from inbox.store import migrate
    from inbox.store.engine import make_engine

    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine, "0006")
        made = sf.ticket(engine, texts=["halo kak, paket saya belum sampai"])
        other = sf.ticket(engine, texts=["refund belum masuk"])
        m, t = Message.__table__, Ticket.__table__
        with engine.connect() as conn:
            created = conn.execute(sa.select(t.c.created_at).where(t.c.id == made.ticket_id)).scalar_one()
        before_ask = sf.outbound(engine, made, "Halo kak, ada yang bisa dibantu?", "out-1", sent_at=created - timedelta(minutes=5))
        answer = sf.outbound(engine, made, "kami cek dulu ya kak", "out-2", sent_at=created + timedelta(minutes=7))
        kept = sf.outbound(engine, other, "sudah kami proses", "out-3", sent_at=sf.now())
        with engine.begin() as conn:
            conn.execute(m.update().where(m.c.id.in_([before_ask, answer])).values(ticket_id=None))  # as the old ingest left them

        assert migrate.upgrade(engine)[0] == "0007"

        with engine.connect() as conn:
            got = dict(conn.execute(sa.select(m.c.id, m.c.ticket_id).where(m.c.id.in_([before_ask, answer, kept]))).all())
            assert got == {before_ask: made.ticket_id, answer: made.ticket_id, kept: other.ticket_id}
            row = conn.execute(sa.select(t.c.message_count, t.c.first_response_at).where(t.c.id == made.ticket_id)).one()
            answered_at = conn.execute(sa.select(m.c.sent_at).where(m.c.id == answer)).scalar_one()
            assert (row.message_count, row.first_response_at) == (3, answered_at)  # 1 + the two attached; ours answered
            assert conn.execute(sa.select(t.c.message_count).where(t.c.id == other.ticket_id)).scalar_one() == 1  # untouched
    finally:
        engine.dispose()
