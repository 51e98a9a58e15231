"""What a platform sends is bounded: its times against its clock, a broken item stored where it can be
and quarantined (visibly) where it cannot, and the size of every answer. Sandbox over real HTTP, both
backends, through the CLI where an agent would look."""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

import cli
from inbox.store.models import Account, Message, Quarantine, SyncState
from tests.store.test_sync import fast_factory, sandbox_settings, stored_ids

SKEW = timedelta(minutes=5)


def spec_factory(settings, *, retries: int = 0):  # type: ignore[no-untyped-def]
    """The sync's own connector specs (size cap, clock skew), without pacing."""
    from dataclasses import replace

    from connectors import connect
    from connectors.http import RetryPolicy

    def make(acc):  # type: ignore[no-untyped-def]
        spec = replace(settings.spec_for(acc), min_interval=0.0, overlap_seconds=float(settings.sync.overlap_seconds))
        return connect(spec, policy=RetryPolicy(max_retries=retries, backoff_base=0.01, backoff_cap=0.05))

    return make


def cursor_of(engine, name: str):  # type: ignore[no-untyped-def]
    a, ss = Account.__table__, SyncState.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(ss.c.cursor).join(a, a.c.id == ss.c.account_id).where(a.c.name == name)).scalar()


def message_row(engine, external_id: str):  # type: ignore[no-untyped-def]
    m = Message.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(m).where(m.c.external_id == external_id)).one()


def write_config(sb, tmp_path, db_url: str) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "inbox.toml"
    path.write_text(sb.config_toml(database=db_url) + '\n[replies]\nhuman_agent_tag = true\n')
    return str(path)


# ── item 3: a platform time far in the future ─────────────────────────────────────────────────────


def test_message_dated_2100_never_moves_the_meta_cursor_or_the_reply_window(engine, db_url, sandbox, tmp_path, capsys):
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    assert {r.status for r in sync_all(engine, settings, connector_factory=factory)} == {"ok"}
    future = sandbox.inject("tokoshop-fb", text="halo dari masa depan", customer="Waktu Rusak",
                            at=datetime(2100, 1, 1, tzinfo=timezone.utc))
    [res] = sync_all(engine, settings, accounts=["tokoshop-fb"], connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 1
    now = datetime.now(timezone.utc)
    row = message_row(engine, future)
    assert now - timedelta(minutes=1) <= row.sent_at <= now + SKEW  # the time it was received
    assert row.flags == "time_future" and row.raw["created_time"].startswith("2100-01-01")  # the claim is kept
    assert datetime.fromisoformat(cursor_of(engine, "tokoshop-fb")["hwm"]) <= now + SKEW

    # Later messages in every other thread are still found (the old mark of 2100 skipped them: "ok 0 new").
    other = sandbox.threads("tokoshop-fb")[3]
    later = sandbox.inject("tokoshop-fb", text="kak pesanan saya mana?", thread=other)
    [res] = sync_all(engine, settings, accounts=["tokoshop-fb"], connector_factory=factory)
    assert res.status == "ok" and later in stored_ids(engine, "tokoshop-fb")

    # The agent sees the repair, and can answer inside the 24-hour window.
    config = write_config(sandbox, tmp_path, db_url)
    ticket = row.ticket_id
    capsys.readouterr()
    assert cli.main(["-c", config, "show", str(ticket), "--no-pager"]) == 0
    shown = capsys.readouterr().out
    assert "dated it in the future" in shown and "2100" not in shown.split("conversation")[0]
    assert cli.main(["-c", config, "show", str(ticket), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert [m["flags"] for m in detail["messages"] if m["platform_id"] == future] == [["time_future"]]
    assert cli.main(["-c", config, "reply", str(ticket), "Halo kak, kami bantu cek ya", "--yes"]) == 0
    out = capsys.readouterr()
    assert "days old" not in out.out + out.err


@pytest.mark.parametrize("account", ["tokoshop-fb", "tokoshop-ig"])
def test_a_message_written_after_one_dated_2100_in_its_thread_is_stored(engine, db_url, sandbox, account):
    """Graph lists a thread's messages by created_time, so the stored one dated 2100 stays on top of
    its thread, above everything the customer (or the brand) writes after it. Reading newest first
    "until a known message" stopped there: every later message of the thread was never stored, while
    each pass said ok (the thread's count changed, so it was read, and remembered as read)."""
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    assert {r.status for r in sync_all(engine, settings, connector_factory=factory)} == {"ok"}
    future = sandbox.inject(account, text="halo dari masa depan", customer="Waktu Rusak",
                            at=datetime(2100, 1, 1, tzinfo=timezone.utc))
    [res] = sync_all(engine, settings, accounts=[account], connector_factory=factory)
    assert res.status == "ok" and future in stored_ids(engine, account)
    [thread] = [t for t in sandbox.threads(account) if future in {m["id"] for m in sandbox.thread_messages(account, t)}]
    later = []
    for text in ("kak pesanan saya belum sampai", "tolong dicek ya kak, INV/20261120/MPL/3817265540"):
        later.append(sandbox.inject(account, text=text, thread=thread))
        [res] = sync_all(engine, settings, accounts=[account], connector_factory=factory)
        assert res.status == "ok"
        assert set(later) <= set(stored_ids(engine, account)), "a message behind the one dated 2100 was not stored"
    assert sandbox.thread_messages(account, thread)[-1]["id"] == future  # the platform keeps it on top
    rows = [message_row(engine, i) for i in later]
    assert all(r.flags is None for r in rows) and len({r.ticket_id for r in rows} | {message_row(engine, future).ticket_id}) == 1
    # Nothing new: the pass reads the thread no more (one list call), and stores nothing twice.
    [res] = sync_all(engine, settings, accounts=[account], connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 0


def test_x_event_dated_ahead_is_stored_at_the_platform_clock_and_never_moves_the_cursor(engine, db_url, sandbox):
    from connectors.times import snowflake_time
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)
    ahead = sandbox.inject("tokoshop-x", text="dm dari tahun depan", customer="Jam Salah",
                           at=datetime.now(timezone.utc) + timedelta(days=200))
    [res] = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)
    assert res.status == "ok"
    row = message_row(engine, ahead)
    assert row.flags == "time_future" and row.sent_at <= datetime.now(timezone.utc) + SKEW
    assert snowflake_time(cursor_of(engine, "tokoshop-x")["newest_id"]) <= datetime.now(timezone.utc) + SKEW
    later = sandbox.inject("tokoshop-x", text="halo min", customer="Pelanggan Biasa")
    [res] = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)
    assert res.status == "ok" and later in stored_ids(engine, "tokoshop-x")


def test_times_follow_the_platform_clock_not_ours(engine, db_url, sandbox):
    """The sandbox clock runs two days ahead (as a platform's may, against a machine's): its `Date`
    header is the clock times are checked against, so its present is not "the future"."""
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    sandbox.advance(2 * 86400)
    mid = sandbox.inject("tokoshop-ig", text="paketnya rusak kak", customer="Dua Hari")
    assert {r.status for r in sync_all(engine, settings, connector_factory=fast_factory(settings))} == {"ok"}
    row = message_row(engine, mid)
    assert row.flags is None
    assert abs(row.sent_at - datetime.fromtimestamp(sandbox.now(), tz=timezone.utc)) < timedelta(minutes=1)


# ── item 7: stored where possible and marked; only the unparseable quarantined, and listed ────────


def test_message_without_time_or_sender_reaches_its_ticket_and_the_unparseable_is_listed(engine, db_url, sandbox, tmp_path, capsys):
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    no_time = sandbox.inject("tokoshop-ig", text="tanpa waktu", customer="Tanpa Waktu")
    no_sender = sandbox.inject("tokoshop-fb", text="tanpa pengirim", customer="Tanpa Nama")
    broken = sandbox.inject("tokoshop-x", text="rusak", customer="Rusak Total")
    sandbox.fault("poison", account="tokoshop-ig", target=no_time, field="created_time", value=None)
    sandbox.fault("poison", account="tokoshop-fb", target=no_sender, field="from", value="null")
    hostile = '"\\u001b[31mRED\\u001b]52;c;ZXZpbA==\\u0007 \\u202eevil"'
    sandbox.fault("poison", account="tokoshop-x", target=broken, field="text", value=hostile)
    sandbox.fault("poison", account="tokoshop-x", target=broken, field="id", value=json.dumps({"oops": "x"}))
    assert {r.status for r in sync_all(engine, settings, connector_factory=factory)} == {"ok"}

    row = message_row(engine, no_time)
    assert row.flags == "time_missing" and row.ticket_id is not None and row.direction == "in"
    row = message_row(engine, no_sender)
    assert row.flags == "sender_inferred" and row.ticket_id is not None and row.direction == "in"
    assert row.author_name == "Tanpa Nama"  # the thread's other participant

    config = write_config(sandbox, tmp_path, db_url)
    capsys.readouterr()
    assert cli.main(["-c", config, "show", str(row.ticket_id), "--no-pager"]) == 0
    assert "the platform gave no sender" in capsys.readouterr().out

    assert cli.main(["-c", config, "quarantine", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["quarantined"]
    assert [(i["account"], i["channel"]) for i in items] == [("tokoshop-x", "x")]
    assert "event id" in items[0]["reason"]
    assert cli.main(["-c", config, "quarantine"]) == 0
    table = capsys.readouterr().out
    assert "tokoshop-x" in table and "event id" in table
    assert cli.main(["-c", config, "quarantine", "show", str(items[0]["id"])]) == 0
    shown = capsys.readouterr().out
    assert "RED" in shown and "oops" in shown and "<U+202E>" in shown
    assert "\x1b" not in shown and "\x07" not in shown  # the raw payload is shown through the safe-text cleaner
    assert cli.main(["-c", config, "quarantine", "show", str(items[0]["id"]), "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)["item"]["raw"]
    assert raw["id"] == {"oops": "x"} and raw["text"].startswith("\x1b[31m")  # kept exactly, for replay
    assert cli.main(["-c", config, "quarantine", "show", "999999"]) == 5


# ── item 9: the size of an answer ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("kind", ["oversize", "gzip_bomb"])
def test_oversized_answer_is_a_platform_error_of_that_account_and_memory_stays_bounded(engine, db_url, sandbox, kind):
    from inbox.accounts import health
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url, max_response_mb=1)
    factory = spec_factory(settings)
    decoded = 48 * 1024 * 1024  # a gzip bomb of about 48 KB on the wire
    sandbox.fault(kind, account="tokoshop-ig", path="/conversations", size=decoded if kind == "gzip_bomb" else 3 * 1024 * 1024)
    tracemalloc.start()
    try:
        results = {r.account: r for r in sync_all(engine, settings, connector_factory=factory)}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results["tokoshop-ig"].status == "retry-later"
    assert "larger than 1,048,576 bytes" in (results["tokoshop-ig"].error or "")
    assert results["tokoshop-fb"].status == "ok" and results["tokoshop-x"].status == "ok"
    assert peak < 16 * 1024 * 1024, f"peak {peak:,} bytes while a {decoded:,}-byte body was refused"
    h = {x.name: x for x in health(engine, settings)}["tokoshop-ig"]
    assert h.last_error and "larger than" in h.last_error and h.paused_until is None  # retried on the next pass

    mid = sandbox.inject("tokoshop-ig", text="sudah normal lagi?", customer="Setelah Bom")
    [res] = sync_all(engine, settings, accounts=["tokoshop-ig"], connector_factory=factory)
    assert res.status == "ok" and mid in stored_ids(engine, "tokoshop-ig")


def test_oversized_answer_to_a_send_is_an_unknown_delivery(sandbox):
    from connectors import connect
    from connectors.base import OutboundReply
    from connectors.enums import ReplyPolicy
    from connectors.errors import DeliveryUnknownError
    from inbox.settings import parse_settings
    import tomllib

    settings = parse_settings({**tomllib.loads(sandbox.config_toml()), "sync": {"max_response_mb": 0.01}}, "sandbox.toml")
    conn = connect(settings.spec_for(settings.account("tokoshop-x")))
    thread = sandbox.threads("tokoshop-x")[0]
    customer = next(p for p in thread.split("-") if p != sandbox.accounts["tokoshop-x"].platform_id)
    sandbox.fault("oversize", account="tokoshop-x", method="POST", size=64 * 1024)
    with pytest.raises(DeliveryUnknownError, match="too large"):
        conn.send(OutboundReply(thread, customer, "Halo kak", ReplyPolicy.DIRECT, "k-oversize-1"))
    conn.close()


def test_decode_repairs_visibly_and_keeps_escaped_text() -> None:
    from connectors import safejson

    value = safejson.loads(b'{"t": "a\\u0000b \\\\u0000 \\ud83d\\ude4f \\udc00", "n": 1e999, "i": 12345678901234567890123}')
    assert value == {"t": "a\ufffdb \\u0000 \U0001f64f \ufffd", "n": None, "i": "12345678901234567890123"}
    deep = safejson.loads("[" * 5000 + "]" * 5000)
    for _ in range(safejson.MAX_DEPTH - 1):
        deep = deep[0]
    assert deep == [safejson.TOO_DEEP]
    assert safejson.loads(b'"caf\xe9"') == "caf\ufffd"


def test_a_text_of_backslashes_is_decoded_in_one_pass() -> None:
    """A customer's text that is one long run of backslashes (X takes 10,000 characters a DM; here a
    delivery of the receiver's default 1 MiB): the escape repair scanned the run again from each of
    its backslashes, so the work grew with the square of the run (2 s for an X DM, hours for this
    body; the test's timeout stops it). Escapes at the end of a run are still repaired or kept."""
    from connectors import safejson
    from inbox.settings import WebhookSettings

    run = (WebhookSettings().max_body_bytes - 20) // 2
    body = json.dumps({"text": "\\" * run}).encode()
    assert safejson.loads(body) == {"text": "\\" * run}
    tail = safejson.loads(json.dumps({"a": "\\" * 999}).encode()[:-2] + b'\\u0000 \\\\\\u0000"}')
    assert tail == {"a": "\\" * 999 + "\ufffd \\\ufffd"}



def test_a_text_longer_than_the_store_keeps_is_cut_and_flagged_by_either_parser() -> None:
    """Graph, X and an edit's new text: cut at `MAX_TEXT_LENGTH`, the message flagged `text_cut`, its
    raw payload whole (every platform's own limit is far below: X takes 10,000 characters)."""
    from connectors.base import MAX_TEXT_LENGTH
    from connectors.enums import Channel, MessageFlag
    from connectors.graph_parse import MetaContext, parse_message
    from connectors.meta_webhook import parse_edit
    from connectors.x_parse import Includes, parse_event, to_message

    long = "kak " * MAX_TEXT_LENGTH
    ctx = MetaContext(Channel.FACEBOOK, "1234567890", frozenset({"1234567890"}))
    graph = parse_message({"id": "m_1", "created_time": "2025-12-01T10:00:00+0000", "from": {"id": "5678"}, "message": long}, ctx, thread_id="t_1")
    x = to_message(parse_event({"id": "1995000000000000001", "event_type": "MessageCreate", "text": long, "sender_id": "5678",
                                "dm_conversation_id": "5678-2975699229"}), Includes(), account_id="2975699229")
    for message in (graph, x):
        assert message.text == long[:MAX_TEXT_LENGTH] and MessageFlag.TEXT_CUT in message.flags
    assert graph.raw["message"] == long and x.raw["text"] == long
    short = parse_message({"id": "m_2", "created_time": "2025-12-01T10:00:00+0000", "from": {"id": "5678"}, "message": "kak"}, ctx, thread_id="t_1")
    assert short.text == "kak" and not short.flags
    edit = parse_edit({"timestamp": 1764640000000, "message_edit": {"mid": "m_1", "text": long, "num_edit": 1}}, ctx)
    assert edit.text == long[:MAX_TEXT_LENGTH]


def test_quarantine_rows_keep_what_the_columns_hold(engine):
    """An item quarantined for an over-long, NUL-bearing id is itself storable (PostgreSQL refuses NUL)."""
    from connectors.base import Page, QuarantinedItem
    from connectors.enums import Channel
    from inbox.settings import parse_settings
    from inbox.ingest.page import ingest_page
    from tests import factories

    acc = factories.account(engine, "tokoshop-x", "x", "1500000000000000001")
    item = QuarantinedItem(Channel.X, "1500000000000000001", "id\x00 too long", {"id": "9" * 300}, external_id="9\x00" * 200,
                           thread_id="t" * 400)
    ingest_page(engine, acc, Page(messages=(), cursor=None, quarantined=(item,)), parse_settings({}, "t.toml"))
    q = Quarantine.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(q)).one()
    assert len(row.external_id) == 255 and "\x00" not in row.external_id and len(row.thread_id) == 255
    assert row.reason == "id\ufffd too long" and row.raw == {"id": "9" * 300}
