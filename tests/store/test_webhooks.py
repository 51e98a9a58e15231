"""Webhook intake over real HTTP (uvicorn on 127.0.0.1, a free port), on both backends.

Signatures and handshakes (tables of good and hostile values), durable-before-acknowledged intake,
redelivery stored once, refusals that store nothing, webhook and poll of the same messages in both
orders, and a dropped webhook found by the next poll and counted as missed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import tomllib
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from inbox.settings import Settings, parse_settings
from tests.waiting import wait_until

META_SECRET, VERIFY_TOKEN, X_SECRET = "meta-app-secret-for-tests", "verify-me-0123", "x-consumer-secret-for-tests"
WEBHOOK_ENV = {"INBOX_META_APP_SECRET": META_SECRET, "INBOX_META_VERIFY_TOKEN": VERIFY_TOKEN, "INBOX_X_CONSUMER_SECRET": X_SECRET}
WEBHOOKS = {
    "meta_app_secret_env": "INBOX_META_APP_SECRET",
    "meta_verify_token_env": "INBOX_META_VERIFY_TOKEN",
    "x_consumer_secret_env": "INBOX_X_CONSUMER_SECRET",
    "max_body_bytes": 4096,
}
PAGE_ID, IG_ID, X_ID = "1234567890", "17841400000000001", "2975699229"


def meta_sig(body: bytes, key: str = META_SECRET) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def x_sig(body: bytes, key: str = X_SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def plain_settings(db_url: str) -> Settings:
    return parse_settings(
        {
            "database": db_url,
            "webhooks": WEBHOOKS,
            "accounts": [
                {"name": "shop-fb", "channel": "facebook", "page_id": PAGE_ID, "access_token_env": "INBOX_TEST_FB_TOKEN"},
                {"name": "shop-ig", "channel": "instagram", "ig_user_id": IG_ID, "page_id": PAGE_ID, "access_token_env": "INBOX_TEST_FB_TOKEN"},
                {"name": "shop-x", "channel": "x", "user_id": X_ID, "access_token_env": "INBOX_TEST_X_TOKEN"},
            ],
        },
        "test.toml",
    )


@contextmanager
def running(engine: Any, settings: Settings, *, worker: bool = True, graph: bool = False) -> Iterator[str]:
    """`inbox serve`'s app on 127.0.0.1 and a free port, in a thread; yields its base URL."""
    from inbox.intake import receiver
    from inbox.intake import server

    secrets = receiver.resolve_secrets(settings, WEBHOOK_ENV)
    w = receiver.IntakeWorker(receiver.Processor.build(engine, settings, graph=graph), idle=0.2) if worker else None
    app = server.make_app(engine, settings, secrets, worker=w)
    sock = server.bind("127.0.0.1", 0)
    srv = server.server(app)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: srv.started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join()
        sock.close()


def hello(mid: str = "m_hello_1", text: str = "Halo kak, pesanan INV/20261202/MPL/123456 belum sampai", sender: str = "5678",
          ts: int = 1764640000000, obj: str = "page", entry: str = PAGE_ID) -> bytes:
    return json.dumps({"object": obj, "entry": [{"id": entry, "time": ts, "messaging": [
        {"sender": {"id": sender}, "recipient": {"id": entry}, "timestamp": ts, "message": {"mid": mid, "text": text}}]}]}).encode()


def messages(engine: Any, external_id: str | None = None) -> list[Any]:
    from inbox.store.tables import message as m

    q = sa.select(m.c.external_id, m.c.text, m.c.direction, m.c.author_id, m.c.via, m.c.ticket_id)
    if external_id is not None:
        q = q.where(m.c.external_id == external_id)
    with engine.connect() as conn:
        return list(conn.execute(q.order_by(m.c.id)))


def deliveries(engine: Any) -> list[Any]:
    from inbox.store.tables import webhook_delivery as d

    with engine.connect() as conn:
        return list(conn.execute(sa.select(d.c.id, d.c.source, d.c.state, d.c.error, d.c.body).order_by(d.c.id)))


# ── signatures and handshakes (no store) ─────────────────────────────────────────────────────

BODY = b'{"object":"page","entry":[]}'
_hex = hmac.new(META_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
_b64 = base64.b64encode(hmac.new(X_SECRET.encode(), BODY, hashlib.sha256).digest()).decode()

META_SIGNATURES = [
    ("valid", f"sha256={_hex}", True),
    ("valid, upper-case hex", f"sha256={_hex.upper()}", True),
    ("valid, algorithm in capitals", f"SHA256={_hex}", True),
    ("wrong key", meta_sig(BODY, "another-secret"), False),
    ("missing header", None, False),
    ("empty header", "", False),
    ("no digest", "sha256=", False),
    ("truncated", f"sha256={_hex[:40]}", False),
    ("one digit changed", f"sha256={_hex[:-1]}{'0' if _hex[-1] != '0' else '1'}", False),
    ("other algorithm (legacy sha1 header form)", "sha1=" + hmac.new(META_SECRET.encode(), BODY, hashlib.sha1).hexdigest(), False),
    ("sha256 of the body without a key", "sha256=" + hashlib.sha256(BODY).hexdigest(), False),
    ("base64 instead of hex", f"sha256={_b64}", False),
    ("non-ASCII digest", "sha256=" + "é" * 64, False),
    ("no algorithm", _hex, False),
]

X_SIGNATURES = [
    ("valid", f"sha256={_b64}", True),
    ("wrong key", x_sig(BODY, "another-secret"), False),
    ("missing header", None, False),
    ("truncated", f"sha256={_b64[:20]}", False),
    ("other algorithm", "sha1=" + base64.b64encode(hmac.new(X_SECRET.encode(), BODY, hashlib.sha1).digest()).decode(), False),
    ("hex instead of base64", "sha256=" + hmac.new(X_SECRET.encode(), BODY, hashlib.sha256).hexdigest(), False),
    ("non-ASCII digest", "sha256=ü" + _b64[1:], False),
]


@pytest.mark.parametrize(("case", "header", "ok"), META_SIGNATURES, ids=[c[0] for c in META_SIGNATURES])
def test_meta_signature(case: str, header: str | None, ok: bool) -> None:
    from connectors import meta_webhook

    assert meta_webhook.verify(META_SECRET, BODY, header) is ok


@pytest.mark.parametrize(("case", "header", "ok"), X_SIGNATURES, ids=[c[0] for c in X_SIGNATURES])
def test_x_signature(case: str, header: str | None, ok: bool) -> None:
    from connectors import x_webhook

    assert x_webhook.verify(X_SECRET, BODY, header) is ok


def test_a_signature_over_other_bytes_than_the_raw_body_fails() -> None:
    """Meta signs the raw bytes (non-ASCII as \\u escapes): re-serialized JSON does not verify."""
    from connectors import meta_webhook

    raw = b'{"text":"\\u00e9"}'
    assert meta_webhook.verify(META_SECRET, raw, meta_sig(raw))
    assert not meta_webhook.verify(META_SECRET, json.dumps(json.loads(raw), ensure_ascii=False).encode(), meta_sig(raw))


HANDSHAKES = [
    ("matching token", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}, 200, "1158201444"),
    ("wrong token", {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}, 403, None),
    ("token with a suffix", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN + "x", "hub.challenge": "1"}, 403, None),
    ("no token", {"hub.mode": "subscribe", "hub.challenge": "1"}, 403, None),
    ("other mode", {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, 403, None),
    ("no challenge", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}, 403, None),
    ("non-ASCII token", {"hub.mode": "subscribe", "hub.verify_token": "tökén", "hub.challenge": "1"}, 403, None),
]


# ── over HTTP, both backends ─────────────────────────────────────────────────────────────────


def test_handshakes_crc_and_health(engine, db_url) -> None:
    settings = plain_settings(db_url)
    with running(engine, settings, worker=False) as base:
        for _case, params, status, body in HANDSHAKES:
            r = requests.get(f"{base}/webhooks/meta", params=params, timeout=10)
            assert r.status_code == status, _case
            if body is not None:
                assert r.text == body
        r = requests.get(f"{base}/webhooks/x", params={"crc_token": "challenge-token-ü"}, timeout=10)
        want = base64.b64encode(hmac.new(X_SECRET.encode(), "challenge-token-ü".encode(), hashlib.sha256).digest()).decode()
        assert r.status_code == 200 and r.json() == {"response_token": f"sha256={want}"}
        assert requests.get(f"{base}/webhooks/x", timeout=10).status_code == 400
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"ok": True}
    assert deliveries(engine) == []


def test_a_delivery_is_stored_once_through_the_ingest_and_redelivery_changes_nothing(engine, db_url) -> None:
    settings = plain_settings(db_url)
    body = hello()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(body)}
    with running(engine, settings) as base:
        for _ in range(3):  # Meta retries what it thinks failed
            assert requests.post(f"{base}/webhooks/meta", data=body, headers=headers, timeout=10).status_code == 200
        wait_until(lambda: [d for d in deliveries(engine) if d.state == "pending"] == [] and len(deliveries(engine)) == 3)
    rows = messages(engine)
    assert [(r.external_id, r.direction, r.author_id, r.via) for r in rows] == [("m_hello_1", "in", "5678", "webhook")]
    assert rows[0].ticket_id is not None
    assert {d.state for d in deliveries(engine)} == {"done"}


REFUSED = [
    ("no signature", {"Content-Type": "application/json"}, None, 403),
    ("signed with another key", {"Content-Type": "application/json"}, "wrong", 403),
    ("other algorithm", {"Content-Type": "application/json"}, "sha1", 403),
]


@pytest.mark.parametrize(("case", "headers", "how", "status"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_delivery_that_does_not_verify_is_refused_and_nothing_is_stored(engine, db_url, case, headers, how, status) -> None:
    settings = plain_settings(db_url)
    body = hello()
    h = dict(headers)
    if how == "wrong":
        h["X-Hub-Signature-256"] = meta_sig(body, "wrong-secret")
    elif how == "sha1":
        h["X-Hub-Signature-256"] = "sha1=" + hmac.new(META_SECRET.encode(), body, hashlib.sha1).hexdigest()
    with running(engine, settings) as base:
        assert requests.post(f"{base}/webhooks/meta", data=body, headers=h, timeout=10).status_code == status
        # X's endpoint does not accept Meta's signature, nor a valid X signature on the Meta endpoint.
        assert requests.post(f"{base}/webhooks/x", data=body, headers={"Content-Type": "application/json",
                             "X-Hub-Signature-256": meta_sig(body)}, timeout=10).status_code == 403
        assert requests.post(f"{base}/webhooks/meta", data=body, headers={"Content-Type": "application/json",
                             "x-twitter-webhooks-signature": x_sig(body)}, timeout=10).status_code == 403
    assert deliveries(engine) == [] and messages(engine) == []


def test_oversized_bad_json_and_wrong_content_type(engine, db_url) -> None:
    settings = plain_settings(db_url)  # max_body_bytes = 4096
    big = hello(text="x" * 5000)
    not_json = b"not JSON \xff"
    with running(engine, settings) as base:
        r = requests.post(f"{base}/webhooks/meta", data=big, headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(big)}, timeout=10)
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 1000

        r = requests.post(f"{base}/webhooks/meta", data=chunks(), headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"}, timeout=10)
        assert r.status_code == 413
        assert deliveries(engine) == []
        r = requests.post(f"{base}/webhooks/meta", data=not_json, headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(not_json)}, timeout=10)
        assert r.status_code == 400
        ok_body = hello(mid="m_after_bad")
        r = requests.post(f"{base}/webhooks/meta", data=ok_body, headers={"Content-Type": "text/plain", "X-Hub-Signature-256": meta_sig(ok_body)}, timeout=10)
        assert r.status_code == 400
        # A broken delivery never holds up the next one.
        r = requests.post(f"{base}/webhooks/meta", data=ok_body, headers={"Content-Type": "application/json; charset=utf-8", "X-Hub-Signature-256": meta_sig(ok_body)}, timeout=10)
        assert r.status_code == 200
        wait_until(lambda: messages(engine, "m_after_bad"))
    got = deliveries(engine)
    assert [(d.state, bytes(d.body)) for d in got] == [("quarantined", not_json), ("quarantined", ok_body), ("done", ok_body)]
    assert "JSON" in got[0].error and "content type" in got[1].error


def test_x_account_activity_and_activity_api_shapes_and_our_echo(engine, db_url) -> None:
    settings = plain_settings(db_url)
    customer = "1205290247124217856"

    def aaa(event_id: str, sender: str, recipient: str, text: str) -> bytes:
        return json.dumps({"for_user_id": X_ID, "direct_message_events": [{"type": "message_create", "id": event_id,
                           "created_timestamp": "1764640000000", "message_create": {"target": {"recipient_id": recipient},
                           "sender_id": sender, "message_data": {"text": text}}}],
                           "users": {customer: {"id": customer, "name": "Penn", "screen_name": "penn"}}}).encode()

    bodies = [
        aaa("1995000000000000001", customer, X_ID, "paket saya &amp; resi?"),
        aaa("1995000000000000002", X_ID, customer, "Sudah kami cek"),
        json.dumps({"data": {"event_type": "dm.received", "filter": {"user_id": X_ID}, "payload": json.loads(aaa("1995000000000000003", customer, X_ID, "terima kasih"))}}).encode(),
        json.dumps({"for_user_id": X_ID, "direct_message_indicate_typing_events": [{"sender_id": customer, "target": {"recipient_id": X_ID}}]}).encode(),
    ]
    with running(engine, settings) as base:
        for body in bodies:
            r = requests.post(f"{base}/webhooks/x", data=body, headers={"Content-Type": "application/json", "x-twitter-webhooks-signature": x_sig(body)}, timeout=10)
            assert r.status_code == 200
        wait_until(lambda: {d.state for d in deliveries(engine)} == {"done"})
    rows = messages(engine)
    assert [(r.external_id, r.direction, r.text) for r in rows] == [
        ("1995000000000000001", "in", "paket saya & resi?"),
        ("1995000000000000002", "out", "Sudah kami cek"),
        ("1995000000000000003", "in", "terima kasih"),
    ]
    assert len({r.ticket_id for r in rows if r.direction == "in"}) == 1


def test_serve_refuses_to_start_without_a_webhook_secret(tmp_path, monkeypatch, capsys) -> None:
    import cli

    config = tmp_path / "inbox.toml"
    config.write_text(
        f'database = "sqlite:///{tmp_path / "inbox.db"}"\n[webhooks]\nmeta_app_secret_env = "INBOX_META_APP_SECRET"\n'
        'meta_verify_token_env = "INBOX_META_VERIFY_TOKEN"\nx_consumer_secret_env = "INBOX_X_CONSUMER_SECRET"\n'
        f'[[accounts]]\nname = "shop-x"\nchannel = "x"\nuser_id = "{X_ID}"\naccess_token_env = "INBOX_TEST_X_TOKEN"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("INBOX_TEST_X_TOKEN", "token")
    for var in WEBHOOK_ENV:
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["--config", str(config), "serve", "--port", "0"]) == 3
    assert "INBOX_X_CONSUMER_SECRET" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "config", "check"]) == 3
    assert "INBOX_X_CONSUMER_SECRET" in capsys.readouterr().err


# ── the real loop: the sandbox sends signed webhooks, the poll reconciles ────────────────────

SB_ACCOUNTS = ("tokoshop-fb", "tokoshop-ig", "tokoshop-x")


def sandbox_webhook_settings(sb: Any, db_url: str, **sync: object) -> Settings:
    data = tomllib.loads(sb.config_toml(database=db_url))
    data["webhooks"] = dict(WEBHOOKS, max_body_bytes=1024 * 1024)
    if sync:
        data["sync"] = dict(sync)
    return parse_settings(data, "sandbox.toml")


def conversation_of(engine: Any, external_id: str) -> str:
    from inbox.store.tables import conversation as v
    from inbox.store.tables import message as m

    with engine.connect() as conn:
        return conn.execute(sa.select(v.c.external_id).join(m, m.c.conversation_id == v.c.id).where(m.c.external_id == external_id)).scalar_one()


def stored_once(engine: Any, ids: list[str]) -> None:
    from inbox.store.tables import message as m

    with engine.connect() as conn:
        got = list(conn.execute(sa.select(m.c.external_id).where(m.c.external_id.in_(ids))).scalars())
    assert sorted(got) == sorted(ids), "each message stored exactly once"


def poll(engine: Any, settings: Settings) -> Any:
    from inbox.sync.pool import sync_all
    from tests.store.test_sync import fast_factory

    results = {r.account: r for r in sync_all(engine, settings, connector_factory=fast_factory(settings))}
    assert not any(r.failed for r in results.values()), results
    return results


def new_messages(sb: Any) -> dict[str, str]:
    """One new customer message per account, in a new thread (Meta: a customer the store has not seen)."""
    return {name: sb.inject(name, text=f"Halo kak, dari {name} 🙏", attachments=[{"type": "image"}] if name == "tokoshop-ig" else None)
            for name in SB_ACCOUNTS}


def processed(engine: Any) -> bool:
    rows = deliveries(engine)
    return bool(rows) and all(d.state == "done" for d in rows)


@pytest.mark.parametrize("x_shape", ["account_activity", "activity"])
def test_webhook_then_poll_stores_each_message_once_in_the_poll_s_thread(engine, db_url, sandbox, monkeypatch, x_shape) -> None:
    settings = sandbox_webhook_settings(sandbox, db_url)
    poll(engine, settings)  # the seeded history
    with running(engine, settings, graph=True) as base:
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, x_shape=x_shape)
        ids = new_messages(sandbox)
        # and customers the store knows: their threads come from the store, not the platform
        for name in ("tokoshop-fb", "tokoshop-ig"):
            ids[name + " known"] = sandbox.inject(name, text="masih menunggu balasan", thread=sandbox.threads(name)[3])
        assert sender.wait_idle()
        wait_until(lambda: processed(engine) and len(messages(engine, ids["tokoshop-x"])) == 1)
        stored_once(engine, list(ids.values()))
        assert {r.external_id: r.via for r in messages(engine) if r.external_id in ids.values()} == {i: "webhook" for i in ids.values()}
        results = poll(engine, settings)
        assert all(r.counts.new_messages == 0 for r in results.values())
    stored_once(engine, list(ids.values()))
    for name, mid in ids.items():  # the webhook's message is in the thread the poll reads
        account = name.removesuffix(" known")
        assert conversation_of(engine, mid) == sandbox.thread_of(account, mid)


def test_poll_then_webhook_and_a_redelivery_store_each_message_once(engine, db_url, sandbox) -> None:
    settings = sandbox_webhook_settings(sandbox, db_url)
    with running(engine, settings, graph=True) as base:
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, drop=1.0)  # every webhook lost
        ids = new_messages(sandbox)
        assert sender.wait_idle() and sender.stats.dropped == len(ids)
        poll(engine, settings)
        stored_once(engine, list(ids.values()))
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, duplicate=1.0)  # late, and twice
        for name, mid in ids.items():
            sandbox.redeliver(name, mid)
        assert sender.wait_idle() and sender.stats.duplicated == len(ids)
        wait_until(lambda: processed(engine) and len(deliveries(engine)) == 2 * len(ids))
    stored_once(engine, list(ids.values()))
    assert {r.via for r in messages(engine) if r.external_id in ids.values()} == {"poll"}


def test_a_dropped_webhook_is_found_by_the_next_poll_and_counted_as_missed(engine, db_url, sandbox) -> None:
    from inbox.accounts import health

    settings = sandbox_webhook_settings(sandbox, db_url)
    poll(engine, settings)
    before = {h.name: h.missed_by_webhooks for h in health(engine, settings)}
    with running(engine, settings, graph=True) as base:
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET)
        delivered = new_messages(sandbox)
        assert sender.wait_idle()
        wait_until(lambda: processed(engine) and all(messages(engine, i) for i in delivered.values()))
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, drop=1.0)
        lost = sandbox.inject("tokoshop-x", text="yang ini tidak sampai lewat webhook")
        assert sender.wait_idle() and sender.stats.dropped_ids == [lost]
        assert messages(engine, lost) == []
        poll(engine, settings)
    assert [r.via for r in messages(engine, lost)] == ["poll"]
    after = {h.name: h.missed_by_webhooks for h in health(engine, settings)}
    assert {n: after[n] - before[n] for n in after} == {"tokoshop-fb": 0, "tokoshop-ig": 0, "tokoshop-x": 1}


def test_meta_threads_come_from_the_store_then_the_platform_then_are_provisional(engine, db_url) -> None:
    from inbox.intake import receiver

    settings = plain_settings(db_url)
    asked: list[str] = []

    def lookup(ctx: Any, customer: str) -> str | None:
        asked.append(customer)
        if customer == "6001":
            return "t_from_graph"
        raise ConnectionError("platform away")

    processor = receiver.Processor.build(engine, settings, lookup=lookup)
    receiver.store(engine, "meta", hello(mid="m_a", sender="5678"), "application/json")
    processor.process_pending()
    assert (conversation_of(engine, "m_a"), asked) == ("user:5678", ["5678"])  # unknown, and the platform failed
    # A customer the store knows (its thread seen by a poll): no call to the platform.
    from connectors.base import InboundMessage, Page, Participant
    from connectors.enums import Channel, Direction, MessageKind
    from datetime import datetime, timezone

    from inbox.ingest.page import ingest_page

    known = Participant("5000")
    ingest_page(engine, processor.refs[("facebook", PAGE_ID)], Page((InboundMessage(
        Channel.FACEBOOK, PAGE_ID, "m_polled", "t_polled", Direction.IN, known, known, "dari poll", MessageKind.TEXT,
        datetime(2026, 12, 1, tzinfo=timezone.utc)),), None), settings)
    asked.clear()
    for mid, sender in (("m_b", "5000"), ("m_c", "6001"), ("m_d", "6002")):
        receiver.store(engine, "meta", hello(mid=mid, sender=sender), "application/json")
    processor = receiver.Processor.build(engine, settings, lookup=lookup)  # a fresh process: nothing cached
    processor.process_pending()
    assert conversation_of(engine, "m_b") == "t_polled"
    assert conversation_of(engine, "m_c") == "t_from_graph"
    assert conversation_of(engine, "m_d") == "user:6002"
    assert sorted(asked) == ["6001", "6002"]
    asked.clear()  # the platform failed: no more lookups for a while, the message is stored at once
    receiver.store(engine, "meta", hello(mid="m_e", sender="6003"), "application/json")
    processor.process_pending()
    assert conversation_of(engine, "m_e") == "user:6003" and asked == []


def test_a_provisional_thread_becomes_the_real_one_when_a_poll_names_it(engine, db_url) -> None:
    """The webhook's message waited on `user:<customer>`; the poll's page of the real thread renames
    it: one conversation, one ticket, the webhook's message stored once."""
    from datetime import datetime, timezone

    from connectors.base import InboundMessage, Page, Participant
    from connectors.enums import Channel, Direction, MessageKind
    from inbox.intake import receiver
    from inbox.ingest.page import ingest_page
    from inbox.store.tables import conversation as v
    from inbox.store.tables import message as m

    settings = plain_settings(db_url)

    def away(ctx: Any, customer: str) -> str | None:
        raise ConnectionError("platform away")

    processor = receiver.Processor.build(engine, settings, lookup=away)
    receiver.store(engine, "meta", hello(mid="m_first", sender="7001"), "application/json")
    processor.process_pending()
    assert conversation_of(engine, "m_first") == "user:7001"

    customer, ref = Participant("7001"), processor.refs[("facebook", PAGE_ID)]
    at = datetime(2025, 12, 2, 2, tzinfo=timezone.utc)
    polled = [InboundMessage(Channel.FACEBOOK, PAGE_ID, mid, "t_real_7001", Direction.IN, customer, customer, text, MessageKind.TEXT, at)
              for mid, text in (("m_first", "Halo kak, pesanan INV/20261202/MPL/123456 belum sampai"), ("m_next", "kak tolong dicek ya"))]
    got = ingest_page(engine, ref, Page(tuple(polled), None), settings)
    assert (got.new_messages, got.new_tickets) == (1, 0)
    assert conversation_of(engine, "m_first") == conversation_of(engine, "m_next") == "t_real_7001"
    with engine.connect() as conn:
        threads = list(conn.execute(sa.select(v.c.external_id).where(v.c.account_id == ref.id)).scalars())
        tickets = set(conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id.in_(["m_first", "m_next"]))).scalars())
    assert threads == ["t_real_7001"] and len(tickets) == 1 and None not in tickets
    stored_once(engine, ["m_first", "m_next"])


def test_a_provisional_thread_becomes_the_real_one_when_a_poll_names_it_by_our_echo_alone(engine, db_url) -> None:
    """Found by the webhook machine: the agent answered the provisional thread's ticket, and the
    poll's only new message in the real thread was the echo of that reply (the customer's message
    was known, so the read stopped there). The echo named the thread and was stored in a second
    conversation of the customer, on no ticket; now it renames the provisional one."""
    from datetime import datetime, timezone

    from connectors.base import InboundMessage, Page, Participant
    from connectors.enums import Channel, Direction, MessageKind
    from inbox.intake import receiver
    from inbox.ingest.page import ingest_page
    from inbox.store.tables import conversation as v

    settings = plain_settings(db_url)

    def away(ctx: Any, customer: str) -> str | None:
        raise ConnectionError("platform away")

    processor = receiver.Processor.build(engine, settings, lookup=away)
    receiver.store(engine, "meta", hello(mid="m_first", sender="7002"), "application/json")
    processor.process_pending()
    assert conversation_of(engine, "m_first") == "user:7002"

    customer, page, ref = Participant("7002"), Participant(PAGE_ID), processor.refs[("facebook", PAGE_ID)]
    echo = InboundMessage(Channel.FACEBOOK, PAGE_ID, "m_echo", "t_real_7002", Direction.OUT, page, customer, "Baik kak, kami cek",
                          MessageKind.TEXT, datetime(2025, 12, 2, 2, tzinfo=timezone.utc))
    ingest_page(engine, ref, Page((echo,), None), settings)
    assert conversation_of(engine, "m_first") == conversation_of(engine, "m_echo") == "t_real_7002"
    with engine.connect() as conn:
        threads = list(conn.execute(sa.select(v.c.external_id).where(v.c.account_id == ref.id)).scalars())
    assert threads == ["t_real_7002"]
    assert len({r.ticket_id for r in messages(engine)}) == 1


def test_inbox_accounts_shows_missed_and_undelivered_counts(tmp_path, monkeypatch, capsys) -> None:
    import cli
    from inbox.intake import receiver
    from inbox.store import open_store

    db = tmp_path / "inbox.db"
    config = tmp_path / "inbox.toml"
    config.write_text(
        f'database = "sqlite:///{db}"\n[webhooks]\nx_consumer_secret_env = "INBOX_X_CONSUMER_SECRET"\n'
        f'[[accounts]]\nname = "shop-x"\nchannel = "x"\nuser_id = "{X_ID}"\naccess_token_env = "INBOX_TEST_X_TOKEN"\n'
        f'[[accounts]]\nname = "shop-fb"\nchannel = "facebook"\npage_id = "{PAGE_ID}"\naccess_token_env = "INBOX_TEST_FB_TOKEN"\n',
        encoding="utf-8",
    )
    engine = open_store(f"sqlite:///{db}")
    receiver.store(engine, "x", b"not json", "application/json", "invalid JSON")
    receiver.store(engine, "x", b"{}", "application/json")
    engine.dispose()
    cli.main(["--config", str(config), "accounts", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["webhook_deliveries"] == {"pending": 1, "quarantined": 1}
    assert {a["name"]: a["missed_by_webhooks"] for a in report["accounts"]} == {"shop-x": 0, "shop-fb": None}  # no Meta key configured
    monkeypatch.setenv("COLUMNS", "200")
    cli.main(["--config", str(config), "accounts"])
    out = capsys.readouterr().out
    assert "shop-x: missed by webhooks: 0 in the last 24 h" in out and "shop-fb: missed" not in out
    assert "webhook deliveries: 1 waiting to be stored, 1 quarantined" in out


def test_reordered_duplicated_and_delayed_deliveries_store_a_burst_once_in_order(engine, db_url, sandbox) -> None:
    from inbox.store.tables import message as m

    settings = sandbox_webhook_settings(sandbox, db_url)
    poll(engine, settings)
    thread = sandbox.threads("tokoshop-ig")[0]
    with running(engine, settings, graph=True) as base:
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, reorder=True, duplicate=0.5, delay=0.01)
        ids = sandbox.burst("tokoshop-ig", thread, 12)
        assert sender.wait_idle() and sender.stats.duplicated > 0
        wait_until(lambda: processed(engine) and len(messages(engine)) >= len(ids))
        wait_until(lambda: all(messages(engine, i) for i in ids))
    stored_once(engine, ids)
    with engine.connect() as conn:
        in_order = list(conn.execute(sa.select(m.c.external_id).where(m.c.external_id.in_(ids)).order_by(m.c.sent_at, m.c.id)).scalars())
    assert in_order == ids  # the platform's order, whatever order the deliveries came in
    results = poll(engine, settings)
    assert results["tokoshop-ig"].counts.new_messages == 0


HOSTILE_META = [
    [], "text", 5, None, {"object": "page"}, {"object": "page", "entry": "x"}, {"object": "page", "entry": [None, 5, "x", []]},
    {"object": "page", "entry": [{"id": PAGE_ID, "messaging": [None, 5, "x", {"message": None}, {"message": "x"}, {"message": {}},
                                                              {"message": {"mid": None}, "sender": {"id": "5"}},
                                                              {"message": {"mid": ["a"]}, "sender": {"id": "5"}},
                                                              {"message": {"mid": "m" * 300}, "sender": {"id": "5"}},
                                                              {"message": {"mid": "m1", "text": ["x"], "attachments": "x"}, "sender": {"id": "5"}},
                                                              {"message": {"mid": "m2", "attachments": [None, 5, {"type": None, "payload": "x"}]}, "sender": {"id": "5"}},
                                                              {"message": {"mid": "m3", "text": "\x1b]52;c;aGk=\x07\u202e"}, "sender": {"id": "5" * 200}},
                                                              {"message": {"mid": "m4"}, "sender": "5", "timestamp": 10**30},
                                                              {"message": {"mid": "m5", "is_echo": True}, "sender": {"id": PAGE_ID}},
                                                              {"message": {"mid": "m6", "reply_to": {"story": "x"}}, "sender": {"id": "5"}}]}]},
    {"object": "instagram", "entry": [{"id": True, "messaging": []}, {"id": {"id": PAGE_ID}, "standby": "x"}]},
    {"object": ["page"], "entry": []},
]
HOSTILE_X = [
    [], "x", {"for_user_id": X_ID}, {"for_user_id": X_ID, "direct_message_events": "x"},
    {"for_user_id": X_ID, "direct_message_events": [None, 5, {"type": "message_create"}, {"type": "message_create", "message_create": "x"},
                                                    {"type": "message_create", "id": "1" * 30, "message_create": {"sender_id": "5"}},
                                                    {"type": "message_create", "id": "19950000000000000", "message_create": {"sender_id": ["5"], "message_data": {"text": 5}}},
                                                    {"type": "message_create", "id": "19950000000000001", "created_timestamp": "soon",
                                                     "message_create": {"sender_id": "5", "target": {"recipient_id": X_ID}, "message_data": {"attachment": {"media": "x"}}}}],
     "users": "x"},
    {"event_type": "dm.received", "filter": {"user_id": X_ID}, "payload": None},
    {"event_type": "dm.received", "filter": "x", "payload": {}},
    {"data": {"event_type": ["dm.received"]}},
]


@pytest.mark.parametrize("body", HOSTILE_META, ids=[f"meta{i}" for i in range(len(HOSTILE_META))])
def test_hostile_meta_deliveries_are_quarantined_or_ignored_never_an_error(body: Any) -> None:
    from connectors import meta_webhook
    from connectors.enums import Channel
    from connectors.graph_parse import MetaContext
    from connectors.webhook import DeliveryError

    accounts = {(ch, PAGE_ID): MetaContext(ch, PAGE_ID, frozenset({PAGE_ID})) for ch in (Channel.FACEBOOK, Channel.INSTAGRAM)}
    try:
        parsed = meta_webhook.parse(body, accounts, lambda c, u: f"t_{u}")
    except DeliveryError:
        return
    for batch in parsed.batches:
        for msg in batch.messages:
            assert msg.external_id and len(msg.external_id) <= 255 and msg.sent_at.tzinfo is not None


@pytest.mark.parametrize("body", HOSTILE_X, ids=[f"x{i}" for i in range(len(HOSTILE_X))])
def test_hostile_x_deliveries_are_quarantined_or_ignored_never_an_error(body: Any) -> None:
    from connectors import x_webhook
    from connectors.webhook import DeliveryError

    try:
        parsed = x_webhook.parse(body, frozenset({X_ID}))
    except DeliveryError:
        return
    for batch in parsed.batches:
        for msg in batch.messages:
            assert msg.external_id.isdigit() and msg.sent_at.tzinfo is not None


def _meta_event(event: dict[str, Any], obj: str = "page", entry: str = PAGE_ID, ts: int = 1764640000000, key: str = "messaging") -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": entry, "time": ts, key: [{"sender": {"id": "5678"}, "recipient": {"id": entry}, "timestamp": ts, **event}]}]}


def _x_event(event_id: str, message_create: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"for_user_id": X_ID, "direct_message_events": [{"type": "message_create", "id": event_id, "created_timestamp": "1764640000000",
                                                            "message_create": message_create}], **more}


_CUSTOMER = "1205290247124217856"
T = "2025-12-02T01:46:40+00:00"
# Shapes the sandbox does not send, each with what the parser makes of it: a message (id, direction,
# kind, text, attachments), an edit, an item quarantined, or an event ignored.
SHAPES: list[tuple[str, str, Any, list[tuple[Any, ...]]]] = [
    ("fallback attachment (a link)", "meta", _meta_event({"message": {"mid": "m_fb", "attachments": [{"type": "fallback", "payload": {"url": "https://l.example/x", "title": "Promo"}}]}}),
     [("message", "m_fb", "in", "attachment", None, (("fallback", "https://l.example/x"),), T)]),
    ("template echo (our buttons)", "meta", _meta_event({"sender": {"id": PAGE_ID}, "recipient": {"id": "5678"}, "message": {
        "mid": "m_tpl", "is_echo": True, "app_id": 1, "attachments": [{"type": "template", "payload": {"template_type": "button", "buttons": []}}]}}),
     [("message", "m_tpl", "out", "attachment", None, (("template", None),), T)]),
    ("sticker (not a like)", "meta", _meta_event({"message": {"mid": "m_st", "sticker_id": 123, "attachments": [{"type": "image", "payload": {"url": "https://s.example/1.png", "sticker_id": 123}}]}}),
     [("message", "m_st", "in", "attachment", None, (("image", "https://s.example/1.png"),), T)]),
    ("like sticker", "meta", _meta_event({"message": {"mid": "m_like", "sticker_id": 369239263222822, "attachments": [{"type": "image", "payload": {"url": "https://s.example/l.png", "sticker_id": 369239263222822}}]}}),
     [("message", "m_like", "in", "text", "\N{THUMBS UP SIGN}", (), T)]),
    ("ig_reel", "meta", _meta_event({"message": {"mid": "m_reel", "attachments": [{"type": "ig_reel", "payload": {"reel_video_id": "1", "title": "reel", "url": "https://r.example/1"}}]}}, "instagram", IG_ID),
     [("message", "m_reel", "in", "attachment", None, (("ig_reel", "https://r.example/1"),), T)]),
    ("story mention", "meta", _meta_event({"message": {"mid": "m_sm", "attachments": [{"type": "story_mention", "payload": {"url": "https://st.example/1"}}]}}, "instagram", IG_ID),
     [("message", "m_sm", "in", "story_mention", None, (("story_mention", "https://st.example/1"),), T)]),
    ("story reply", "meta", _meta_event({"message": {"mid": "m_sr", "text": "wah", "reply_to": {"story": {"url": "https://st.example/2", "id": "99"}}}}, "instagram", IG_ID),
     [("message", "m_sr", "in", "story_reply", "wah", (("story_reply", "https://st.example/2"),), T)]),
    ("quoted reply (reply_to a mid)", "meta", _meta_event({"message": {"mid": "m_q", "text": "yang ini kak", "reply_to": {"mid": "m_fb"}}}),
     [("message", "m_q", "in", "text", "yang ini kak", (), T)]),
    ("is_unsupported", "meta", _meta_event({"message": {"mid": "m_un", "is_unsupported": True}}, "instagram", IG_ID),
     [("message", "m_un", "in", "unsupported", None, (), T)]),
    ("unsend: a deleted message and its edit to nothing", "meta", _meta_event({"message": {"mid": "m_del", "is_deleted": True}}, "instagram", IG_ID),
     [("message", "m_del", "in", "deleted", None, (), T), ("edit", "m_del", None)]),
    ("message_edit", "meta", _meta_event({"message_edit": {"mid": "m_fb", "text": "baru", "num_edit": 2}}), [("edit", "m_fb", "baru")]),
    ("reaction", "meta", _meta_event({"reaction": {"mid": "m_fb", "action": "react", "reaction": "love", "emoji": "\u2764"}}), [("ignored", "reaction")]),
    ("postback", "meta", _meta_event({"postback": {"title": "Mulai", "payload": "GET_STARTED", "mid": "m_pb"}}), [("ignored", "postback")]),
    ("referral", "meta", _meta_event({"referral": {"ref": "promo", "source": "ADS", "type": "OPEN_THREAD"}}), [("ignored", "referral")]),
    ("read", "meta", _meta_event({"read": {"watermark": 1764640000000}}), [("ignored", "read")]),
    ("delivery without mids", "meta", _meta_event({"delivery": {"watermark": 1764640000000}}), [("ignored", "delivery")]),
    ("standby (handover protocol)", "meta", _meta_event({"message": {"mid": "m_sb", "text": "halo"}}, key="standby"), [("message", "m_sb", "in", "text", "halo", (), T)]),
    ("time in seconds", "meta", _meta_event({"message": {"mid": "m_s", "text": "detik"}}, ts=1764640000), [("message", "m_s", "in", "text", "detik", (), T)]),
    ("a mid in two entries of one delivery (the ingest stores it once)", "meta",
     {"object": "page", "entry": [_meta_event({"message": {"mid": "m_2x", "text": "a"}})["entry"][0]] * 2},
     [("message", "m_2x", "in", "text", "a", (), T)] * 2),
    ("an entry for an account not configured", "meta", _meta_event({"message": {"mid": "m_other", "text": "a"}}, entry="999"), [("ignored", "entry")]),
    ("X: no target (the customer's)", "x", _x_event("1995000000000000201", {"sender_id": _CUSTOMER, "message_data": {"text": "halo"}}),
     [("message", "1995000000000000201", "in", "text", "halo", (), T)]),
    ("X: no target (ours): no thread to put it in", "x", _x_event("1995000000000000202", {"sender_id": X_ID, "message_data": {"text": "x"}}), [("quarantined",)]),
    ("X: no sender", "x", _x_event("1995000000000000203", {"target": {"recipient_id": X_ID}, "message_data": {"text": "x"}}), [("quarantined",)]),
    ("X: no message_data", "x", _x_event("1995000000000000204", {"sender_id": _CUSTOMER, "target": {"recipient_id": X_ID}}),
     [("message", "1995000000000000204", "in", "text", None, (), T)]),
    ("X: users and apps absent, ids as numbers", "x", {"for_user_id": int(X_ID), "direct_message_events": [{"type": "message_create", "id": 1995000000000000205,
     "created_timestamp": "1764640000000", "message_create": {"sender_id": int(_CUSTOMER), "target": {"recipient_id": int(X_ID)}, "message_data": {"text": "angka"}}}]},
     [("message", "1995000000000000205", "in", "text", "angka", (), T)]),
    ("X: typing and read", "x", {"for_user_id": X_ID, "direct_message_indicate_typing_events": [{"sender_id": _CUSTOMER}],
                                 "direct_message_mark_read_events": [{"sender_id": _CUSTOMER, "last_read_event_id": "1"}]}, [("ignored", "typing"), ("ignored", "read")]),
    ("X: another kind of event", "x", {"for_user_id": X_ID, "tweet_create_events": [{}]}, [("ignored", "delivery")]),
    ("X Activity: dm.read", "x", {"event_type": "dm.read", "filter": {"user_id": X_ID}, "payload": {}}, [("ignored", "dm.read")]),
]


def _shape_outcome(parsed: Any) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for b in parsed.batches:
        out += [("message", m.external_id, m.direction.value, m.kind.value, m.text, tuple((a.type, a.url) for a in m.attachments),
                 m.sent_at.isoformat()) for m in b.messages]
        out += [("edit", e.external_id, e.text) for e in b.edits]
        out += [("quarantined",) for _q in b.quarantined]
    return out + [("ignored", i.what) for i in parsed.ignored]


@pytest.mark.parametrize(("case", "source", "body", "expected"), SHAPES, ids=[c[0] for c in SHAPES])
def test_payload_shapes_the_sandbox_does_not_send(case: str, source: str, body: Any, expected: list[tuple[Any, ...]]) -> None:
    from datetime import datetime, timezone

    from connectors import meta_webhook, x_webhook
    from connectors.enums import Channel
    from connectors.graph_parse import MetaContext

    received = datetime(2026, 12, 2, tzinfo=timezone.utc)
    if source == "meta":
        accounts = {(Channel.FACEBOOK, PAGE_ID): MetaContext(Channel.FACEBOOK, PAGE_ID, frozenset({PAGE_ID})),
                    (Channel.INSTAGRAM, IG_ID): MetaContext(Channel.INSTAGRAM, IG_ID, frozenset({IG_ID, PAGE_ID}))}
        parsed = meta_webhook.parse(body, accounts, lambda c, u: f"t_{u}", received=received)
    else:
        parsed = x_webhook.parse(body, frozenset({X_ID}), received=received)
    assert _shape_outcome(parsed) == expected


REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "payloads"


@pytest.mark.skipif(not (REFERENCE / "meta_webhook_messenger_echo_edit_read.json").is_file(), reason="reference payloads not present")
def test_an_edit_updates_the_stored_text_once_and_keeps_the_earlier_one(engine, db_url) -> None:
    from inbox.intake import receiver
    from inbox.search import search
    from inbox.store.tables import message as m

    page = "104920378912345"
    settings = parse_settings({"database": db_url, "webhooks": WEBHOOKS, "accounts": [
        {"name": "shop-fb", "channel": "facebook", "page_id": page, "access_token_env": "INBOX_TEST_FB_TOKEN"}]}, "test.toml")
    raw = (REFERENCE / "meta_webhook_messenger_echo_edit_read.json").read_bytes()  # message, our echo, its edit, a read
    body = json.loads(raw)
    mid = body["entry"][0]["messaging"][0]["message"]["mid"]
    edited = body["entry"][2]["messaging"][0]["message_edit"]["text"]
    processor = receiver.Processor.build(engine, settings, graph=False)
    for _ in range(2):  # and redelivered
        receiver.store(engine, "meta", raw, "application/json")
        processor.process_pending()
    older = {"object": "page", "entry": [{"id": page, "messaging": [{"sender": {"id": "27452381234567890"}, "recipient": {"id": page},
             "timestamp": 1735872200000, "message_edit": {"mid": mid, "text": "versi lama yang datang terlambat", "num_edit": 1}}]}]}
    receiver.store(engine, "meta", json.dumps(older).encode(), "application/json")
    processor.process_pending()
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(m.c.external_id, m.c.text, m.c.raw, m.c.direction).order_by(m.c.id)))
    assert [(r.external_id == mid, r.direction) for r in rows] == [(True, "in"), (False, "out")]
    assert rows[0].text == edited
    assert [(h["num_edit"], h["previous_text"]) for h in rows[0].raw["edits"]] == [(1, body["entry"][0]["messaging"][0]["message"]["text"])]
    hits = search(engine, "3456789013")  # the search index follows the new text
    assert len(hits) == 1 and hits[0].text == edited
    assert {d.state for d in deliveries(engine)} == {"done"}
    with engine.connect() as conn:  # the ticket's subject and snippet, which showed the earlier text, follow
        (ticket,) = conn.execute(sa.text("SELECT subject, snippet FROM ticket")).all()
    assert tuple(ticket) == (" ".join(edited.split()),) * 2


def test_text_the_store_cannot_keep_is_repaired_as_the_poll_repairs_it(engine, db_url) -> None:
    """A lone surrogate (a cut emoji) or a NUL in a customer's text: stored with U+FFFD, not refused."""
    settings = plain_settings(db_url)
    body = hello(mid="m_cut_emoji").replace(b"belum sampai", b"belum sampai \\ud83d dan \\u0000 ini")
    with running(engine, settings) as base:
        r = requests.post(f"{base}/webhooks/meta", data=body, headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(body)}, timeout=10)
        assert r.status_code == 200
        wait_until(lambda: messages(engine, "m_cut_emoji"))
    assert messages(engine, "m_cut_emoji")[0].text.endswith("belum sampai \ufffd dan \ufffd ini")


def test_the_sandbox_config_with_webhooks_names_the_keys_it_signs_with(sandbox) -> None:
    from inbox.intake import receiver
    from sandbox.accounts import WEBHOOK_ENV
    from sandbox.state import X_CONSUMER_SECRET

    settings = parse_settings(tomllib.loads(sandbox.config_toml(webhooks=True)), "sandbox.toml")
    secrets = receiver.resolve_secrets(settings, sandbox.env())
    assert (secrets.meta_app_secret, secrets.x_consumer_secret) == (WEBHOOK_ENV["INBOX_SANDBOX_META_APP_SECRET"], X_CONSUMER_SECRET)
    assert secrets.meta_verify_token == WEBHOOK_ENV["INBOX_SANDBOX_META_VERIFY_TOKEN"]


def test_a_body_sent_a_byte_at_a_time_is_refused_and_holds_up_nothing(engine, db_url, monkeypatch) -> None:
    """A client that opens a delivery and trickles its body gets 408 after `BODY_SECONDS`; deliveries
    on other connections meanwhile are stored as usual."""
    import socket
    from urllib.parse import urlsplit

    from inbox.intake import server

    monkeypatch.setattr(server, "BODY_SECONDS", 1.0)
    settings = plain_settings(db_url)
    body = hello(mid="m_slow_client")
    with running(engine, settings) as base:
        parts = urlsplit(base)
        slow = socket.create_connection((parts.hostname, parts.port), timeout=30)
        slow.sendall(b"POST /webhooks/meta HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\nX-Hub-Signature-256: {meta_sig(body)}\r\n\r\n".encode() + body[:5])
        ok = hello(mid="m_meanwhile")
        r = requests.post(f"{base}/webhooks/meta", data=ok, headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(ok)}, timeout=10)
        assert r.status_code == 200
        answer = b""
        while b"\r\n\r\n" not in answer:  # the server answers without waiting for the rest
            chunk = slow.recv(4096)
            if not chunk:
                break
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        wait_until(lambda: messages(engine, "m_meanwhile"))
    assert [bytes(d.body) for d in deliveries(engine)] == [ok]


def test_an_instagram_unsend_of_a_stored_message_marks_it_deleted_once(engine, db_url) -> None:
    """Instagram's unsend is the message's own `mid` again with `is_deleted: true`. It was taken for
    a redelivery of a stored message and dropped: the store kept showing the text the customer took
    back. Now the stored message becomes deleted (its text kept in the raw payload, as an edit's
    earlier text is), its words leave the search index, and a redelivery or a late edit changes
    nothing; an unsend of a message never stored is stored as the deleted message it is."""
    from inbox.intake import receiver
    from inbox.search import search
    from inbox.store.tables import message as m

    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, graph=False)

    def ig(mid: str, message: dict[str, Any], ts: int) -> bytes:
        return json.dumps({"object": "instagram", "entry": [{"id": IG_ID, "time": ts, "messaging": [
            {"sender": {"id": "7301"}, "recipient": {"id": IG_ID}, "timestamp": ts, "message": {"mid": mid, **message}}]}]}).encode()

    receiver.store(engine, "meta", ig("ig_unsent", {"text": "alamat saya Jl. Kenanga 12 no hp 0812"}, 1764640000000), "application/json")
    processor.process_pending()
    assert len(search(engine, "Kenanga")) == 1
    for _ in range(2):  # and redelivered
        receiver.store(engine, "meta", ig("ig_unsent", {"is_deleted": True}, 1764640060000), "application/json")
        processor.process_pending()
    late_edit = {"object": "instagram", "entry": [{"id": IG_ID, "time": 1764640090000, "messaging": [
        {"sender": {"id": "7301"}, "recipient": {"id": IG_ID}, "timestamp": 1764640090000,
         "message_edit": {"mid": "ig_unsent", "text": "versi lain", "num_edit": 1}}]}]}
    receiver.store(engine, "meta", json.dumps(late_edit).encode(), "application/json")
    receiver.store(engine, "meta", ig("ig_never_stored", {"is_deleted": True}, 1764640070000), "application/json")
    processor.process_pending()
    with engine.connect() as conn:
        rows = {r.external_id: r for r in conn.execute(sa.select(m.c.external_id, m.c.text, m.c.kind, m.c.raw))}
    assert (rows["ig_unsent"].kind, rows["ig_unsent"].text) == ("deleted", None)
    assert [(h.get("unsent"), h["previous_text"]) for h in rows["ig_unsent"].raw["edits"]] == [(True, "alamat saya Jl. Kenanga 12 no hp 0812")]
    assert (rows["ig_never_stored"].kind, rows["ig_never_stored"].text) == ("deleted", None)
    assert search(engine, "Kenanga") == []
    with engine.connect() as conn:  # nor does the queue show it: the ticket's subject and snippet leave it
        tickets = conn.execute(sa.text("SELECT subject, snippet FROM ticket")).all()
    assert tickets and all("Kenanga" not in (t.subject or "") + (t.snippet or "") for t in tickets)
    assert ("[deleted]", "[deleted]") in [tuple(t) for t in tickets]
    assert {d.state for d in deliveries(engine)} == {"done"}


def test_a_batch_of_deliveries_is_bounded_by_their_bytes_as_well_as_their_number(engine, db_url, monkeypatch) -> None:
    """A batch was up to 500 deliveries whatever their size: after an outage, a backlog of Meta's
    full deliveries (up to 1,000 events, `max_body_bytes` each) was read and decoded whole into one
    batch, gigabytes, and a process killed for its memory met the same batch on every restart.
    A batch now stops at `BATCH_BYTES` of bodies, and always takes at least one delivery."""
    from inbox.intake import receiver

    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, graph=False)
    bodies = [hello(mid=f"m_sized_{i}", sender=str(7400 + i), text="pesanan belum sampai " * (40 if i != 2 else 400)) for i in range(4)]
    monkeypatch.setattr(receiver, "BATCH_BYTES", len(bodies[0]) * 2)
    for body in bodies:
        receiver.store(engine, "meta", body, "application/json")
    assert processor.process_pending().new_messages == 2  # the first two fill the batch
    assert processor.process_pending().new_messages == 1  # the third is over the bound alone: taken all the same
    assert processor.process_pending().new_messages == 1
    assert processor.process_pending().new_messages == 0
    assert [r.external_id for r in messages(engine)] == [f"m_sized_{i}" for i in range(4)]
    assert {d.state for d in deliveries(engine)} == {"done"}


def test_a_text_longer_than_the_store_keeps_is_cut_and_never_stops_the_intake(engine, db_url) -> None:
    """A signed delivery within `max_body_bytes` whose text is 700 kB of distinct words: PostgreSQL's
    search index refuses it ("string is too long for tsvector"), an OperationalError the intake took
    for a store that is away, so it tried the same batch every second for ever and no later delivery
    was stored. The text is now cut at `MAX_TEXT_LENGTH` (the whole of it stays in the raw payload,
    the message flagged), as the poll cuts it; the next delivery is stored as usual."""
    from connectors.base import MAX_TEXT_LENGTH
    from inbox.intake import receiver
    from inbox.store.tables import message as m

    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, graph=False)
    text = " ".join(f"w{i:x}" for i in range(110_000))
    receiver.store(engine, "meta", hello(mid="m_long", text=text), "application/json")
    receiver.store(engine, "meta", hello(mid="m_after_long", sender="7501"), "application/json")
    processor.process_pending()
    with engine.connect() as conn:
        rows = {r.external_id: r for r in conn.execute(sa.select(m.c.external_id, m.c.text, m.c.flags, m.c.raw))}
    assert set(rows) == {"m_long", "m_after_long"}
    assert rows["m_long"].text == text[:MAX_TEXT_LENGTH] and rows["m_long"].flags == "text_cut"
    assert rows["m_long"].raw["message"] == text
    assert {d.state for d in deliveries(engine)} == {"done"}


def test_a_store_limit_is_the_delivery_s_failure_not_a_store_that_is_away(engine, db_url, monkeypatch) -> None:
    """Any other limit of the store (PostgreSQL's class 54, "program limit exceeded": an
    OperationalError, as a lost connection is) was taken for a store that is away: the batch again
    every second, no attempt counted, for ever. It is now the delivery's own failure: the batch is
    stored one by one, the others go in, and the refused one is quarantined after its attempts."""
    import psycopg

    from inbox.intake import receiver

    real = receiver.ingest_page

    def refusing(engine_: Any, ref: Any, page: Any, *args: Any, **kw: Any) -> Any:
        if any(m.external_id == "m_refused" for m in page.messages):
            raise sa.exc.OperationalError("INSERT INTO message ...", {}, psycopg.errors.ProgramLimitExceeded("string is too long for tsvector"))
        return real(engine_, ref, page, *args, **kw)

    monkeypatch.setattr(receiver, "ingest_page", refusing)
    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, graph=False)
    receiver.store(engine, "meta", hello(mid="m_refused", sender="7601"), "application/json")
    receiver.store(engine, "meta", hello(mid="m_fine", sender="7602"), "application/json")
    for _ in range(receiver.MAX_ATTEMPTS):
        processor.process_pending()
    assert [r.external_id for r in messages(engine)] == ["m_fine"]
    assert [(d.state, (d.error or "")[:12]) for d in deliveries(engine)] == [("quarantined", "store failed"), ("done", "")]


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-ig"])
def test_a_looked_up_thread_is_the_customer_s_own_or_none(sandbox, db_url, name: str) -> None:
    """The conversation lookup takes the thread only when the customer takes part in it: an answer
    that ignored `user_id` (another customer's thread first) would put the message, and the replies
    to it, on someone else's conversation. Then the thread is provisional, for the poll to name."""
    from connectors.graph_parse import MetaContext
    from inbox.intake.meta_threads import graph_lookup
    from tests.store.test_sync import sandbox_settings

    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    ctx = MetaContext(channel=acc.channel, account_id=acc.platform_id, own_ids=frozenset())
    mine, other = sandbox.threads(name)[:2]
    customer = sandbox.state.meta[name].threads[mine].customer.id
    assert graph_lookup(settings)(ctx, customer) == mine
    someone_else = sandbox.state.meta[name].threads[other].customer.id
    wrong = {"data": [{"id": other, "participants": {"data": [{"id": someone_else}, {"id": acc.platform_id}]}}]}
    for body in (wrong, {"data": [{"id": other}]}, {"data": [{"id": mine, "participants": None}]}):
        sandbox.fault("answer", path="/conversations", account=name, status=200, body=json.dumps(body))
        assert graph_lookup(settings)(ctx, customer) is None, body
    sandbox.clear_faults()
    both = {"data": [wrong["data"][0], {"id": mine, "participants": {"data": [{"id": customer}]}}]}
    sandbox.fault("answer", path="/conversations", account=name, status=200, body=json.dumps(both))
    assert graph_lookup(settings)(ctx, customer) == mine


def test_a_slow_platform_holds_a_batch_back_by_at_most_the_lookup_budget(engine, db_url) -> None:
    """Each new customer's thread is asked of Graph; a platform that answers, but slowly, held a burst
    back by a slow call each. One batch spends at most LOOKUP_BUDGET seconds on lookups (here each
    takes 4 s of a fake clock, the budget 10 s: 3 calls); the rest are stored on provisional threads
    at once, and the next batch has its own budget."""
    from inbox.intake import meta_threads, receiver

    clock = [1000.0]
    asked: list[str] = []

    def slow(ctx: Any, customer: str) -> str | None:
        asked.append(customer)
        clock[0] += 4.0
        return f"t_{customer}"

    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, lookup=slow)
    assert isinstance(processor.threads, meta_threads.MetaThreads)
    processor.threads.clock = lambda: clock[0]
    for i in range(6):
        receiver.store(engine, "meta", hello(mid=f"m_burst_{i}", sender=str(8100 + i)), "application/json")
    assert processor.process_pending().new_messages == 6
    threads = [conversation_of(engine, f"m_burst_{i}") for i in range(6)]
    assert len(asked) == 3 and sorted(t for t in threads if not t.startswith("user:")) == sorted(f"t_{c}" for c in asked)
    receiver.store(engine, "meta", hello(mid="m_next_batch", sender="8200"), "application/json")
    processor.process_pending()
    assert conversation_of(engine, "m_next_batch") == "t_8200"
