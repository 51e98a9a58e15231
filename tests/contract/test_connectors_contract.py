"""One contract suite for every connector, over real HTTP against the loopback sandbox.

Parametrized over Messenger, Instagram (Facebook Login and Instagram Login) and X. Each test gets a
fresh sandbox (it starts in milliseconds) so faults, injections and the clock never leak between
tests. Pacing is off and backoff is tiny so the suite runs in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from connectors import connect
from connectors.base import (
    AccountSpec,
    Connector,
    Cursor,
    InboundMessage,
    OutboundReply,
    Page,
)
from connectors.enums import Channel, Direction, MessageFlag, ReplyPolicy
from connectors.errors import (
    ConnectorError,
    DeliveryUnknownError,
    NotSentError,
    MalformedResponseError,
    NeedsReauthError,
    RateLimitedError,
    ServerError,
    TextTooLongError,
    WindowClosedError,
)
from connectors.http import RetryPolicy
from sandbox import Sandbox

ACCOUNTS = ["tokoshop-fb", "tokoshop-ig", "tokoshop-ig-direct", "tokoshop-x"]
META = ACCOUNTS[:3]
FAST = RetryPolicy(max_retries=3, backoff_base=0.02, backoff_cap=0.1, max_sleep=2.0)
SEND_PATH = "/messages"  # Graph /{node}/messages and X /2/dm_conversations/.../messages
READ_PATH = {"tokoshop-fb": "/conversations", "tokoshop-ig": "/conversations", "tokoshop-ig-direct": "/conversations", "tokoshop-x": "/2/dm_events"}


@pytest.fixture
def sb() -> Iterator[Any]:
    # A generous X budget: paging tests would otherwise spend the 15-per-window budget on purpose-less 429s.
    box = Sandbox(seed=7, x_rate_limit=10_000, timeout_sleep=1.5)
    box.start(host="127.0.0.1", port=0)
    try:
        yield box
    finally:
        box.stop()


def make_spec(sb: Any, name: str, **overrides: Any) -> AccountSpec:
    acc = sb.accounts[name]
    base = acc.base_url if acc.base_url.startswith("http") else sb.base_url + acc.base_url
    secrets = {"access_token": acc.token}
    values: dict[str, Any] = dict(
        name=name,
        channel=Channel(acc.channel),
        account_id=acc.platform_id,
        base_url=base,
        secrets=secrets,
        page_id=acc.page_id,
        flavour=acc.flavour,
        timeout=5.0,
        page_size=25,
        min_interval=0.0,
        max_retries=3,
    )
    values.update(overrides)
    return AccountSpec(**values)


def open_connector(sb: Any, name: str, **overrides: Any) -> Connector:
    return connect(make_spec(sb, name, **overrides), policy=FAST)


class Store:
    """The smallest stand-in for the message store: ids seen, and the KnownIds callable."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.asked = 0

    def __call__(self, external_ids: Any) -> set[str]:
        self.asked += 1
        return set(external_ids) & self.ids


def drain(conn: Connector, cursor: Cursor | None, store: Store) -> tuple[list[InboundMessage], list[Page], Cursor | None]:
    messages: list[InboundMessage] = []
    pages: list[Page] = []
    final_cursor = cursor
    for page in conn.fetch(cursor, store):
        pages.append(page)
        messages.extend(page.messages)
        store.ids.update(m.external_id for m in page.messages)
        final_cursor = page.cursor
    assert pages and pages[-1].final and all(not p.final for p in pages[:-1])
    return messages, pages, final_cursor


def calls_for(sb: Any, name: str) -> list[Any]:
    return [c for c in sb.calls if c.account == name]


def reachable_ids(sb: Any, name: str) -> set[str]:
    """What a poller can read: Meta the 20 newest per thread, X every message event of the last 30 days."""
    ids: set[str] = set()
    horizon_ms = (sb.now() - 30 * 86400) * 1000
    for thread in sb.threads(name):
        for m in sb.thread_messages(name, thread):
            if name in META and m["readable"]:
                ids.add(m["id"])
            elif name not in META and m["event_type"] == "MessageCreate" and m["created_ms"] >= horizon_ms:
                ids.add(m["id"])
    return ids


# --- fetch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ACCOUNTS)
def test_first_fetch_gets_every_reachable_message(sb: Any, name: str) -> None:
    conn = open_connector(sb, name)
    messages, pages, cursor = drain(conn, None, Store())
    ids = [m.external_id for m in messages]
    assert len(ids) == len(set(ids)), "a message was delivered twice in one pass"
    assert set(ids) == reachable_ids(sb, name)
    assert cursor is not None and all(p.cursor is None for p in pages[:-1])
    account_id = make_spec(sb, name).account_id
    assert {m.direction for m in messages} == {Direction.IN, Direction.OUT}, "seed data holds brand replies"
    for m in messages:
        assert m.sent_at.tzinfo is not None and m.raw
        assert (m.author.id == account_id or m.author.id == make_spec(sb, name).page_id) == (m.direction is Direction.OUT)
        assert m.customer.id != account_id
    for page in pages:
        times = [(m.sent_at, m.external_id) for m in page.messages]
        assert times == sorted(times), "a page's messages are in ascending time order"
    conn.close()


@pytest.mark.parametrize("name", ACCOUNTS)
def test_nothing_new_costs_one_call_and_injected_messages_are_found(sb: Any, name: str) -> None:
    conn = open_connector(sb, name)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    sb.clear_calls()
    again, pages, cursor2 = drain(conn, cursor, store)
    assert again == [] and len(pages) == 1
    assert len(calls_for(sb, name)) == 1, [c.path for c in calls_for(sb, name)]
    new_id = sb.inject(name, text="Halo kak, paket INV/20261124/MPL/4410293381 belum sampai")
    later, _, cursor3 = drain(conn, cursor2, store)
    assert [m.external_id for m in later] == [new_id]
    assert later[0].direction is Direction.IN and "INV/20261124/MPL/4410293381" in (later[0].text or "")
    assert cursor3 != cursor2
    conn.close()


@pytest.mark.parametrize("name", ACCOUNTS)
def test_paging_across_many_pages(sb: Any, name: str) -> None:
    whole, _, _ = drain(open_connector(sb, name), None, Store())
    sb.clear_calls()
    size = 1 if name in META else 3
    small = open_connector(sb, name, page_size=size)
    paged, pages, _ = drain(small, None, Store())
    assert {m.external_id for m in paged} == {m.external_id for m in whole}
    units = len(sb.threads(name)) if name in META else len(whole)
    assert units >= 3 and len(pages) == -(-units // size)  # ceil: one page per `size` threads / events
    list_calls = [c for c in calls_for(sb, name) if c.path.endswith(READ_PATH[name])]
    assert len(list_calls) == len(pages)


# --- faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ACCOUNTS)
def test_rate_limit_is_raised_with_retry_at(sb: Any, name: str) -> None:
    sb.fault("429", account=name, count=10)
    before = datetime.now(timezone.utc)
    with pytest.raises(RateLimitedError) as info:
        drain(open_connector(sb, name), None, Store())
    assert info.value.retry_at is not None and info.value.retry_at > before


@pytest.mark.parametrize("name", ACCOUNTS)
def test_server_errors_are_retried_then_reported(sb: Any, name: str) -> None:
    sb.fault("500", account=name, path=READ_PATH[name], count=2)
    messages, _, _ = drain(open_connector(sb, name), None, Store())
    assert messages  # two failures, then success within max_retries
    failed = [c for c in calls_for(sb, name) if c.status >= 500]
    assert len(failed) == 2
    sb.clear_calls()
    sb.fault("503", account=name, path=READ_PATH[name], count=50)
    with pytest.raises(ServerError):
        drain(open_connector(sb, name), None, Store())
    assert len([c for c in calls_for(sb, name) if c.status >= 500]) == FAST.max_retries + 1


@pytest.mark.parametrize("name", ACCOUNTS)
def test_expired_token_needs_reauth_and_is_not_retried(sb: Any, name: str) -> None:
    sb.fault("expired_token", account=name, count=5)
    with pytest.raises(NeedsReauthError):
        drain(open_connector(sb, name), None, Store())
    assert len(calls_for(sb, name)) == 1
    health = open_connector(sb, name).health()
    assert not health.ok and health.token_valid is False
    sb.clear_faults()
    health = open_connector(sb, name).health()
    assert health.ok and health.token_valid is True


@pytest.mark.parametrize("kind", ["malformed", "truncated", "cut"])
@pytest.mark.parametrize("name", ACCOUNTS)
def test_broken_body_is_a_clear_error(sb: Any, name: str, kind: str) -> None:
    sb.fault(kind, account=name, path=READ_PATH[name])
    with pytest.raises(MalformedResponseError) as info:
        drain(open_connector(sb, name), None, Store())
    text = str(info.value)
    assert "GET" in text and READ_PATH[name] in text
    assert sb.accounts[name].token not in text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ACCOUNTS)
def test_an_answer_trickled_a_byte_at_a_time_is_a_timeout_not_a_hang(sb: Any, name: str) -> None:
    """Every byte arrives well within the read timeout, the answer never does: the attempt's deadline
    (4 timeouts) cuts it, the pass stops as retry-later without trying again at once, and the next
    pass reads everything."""
    sb.fault("slow", account=name, path=READ_PATH[name], interval=0.05)
    conn = open_connector(sb, name, timeout=0.5)
    with pytest.raises(ServerError) as info:
        drain(conn, None, Store())
    assert "the answer stalled (less than 1 KB a second for 2s" in str(info.value) and READ_PATH[name] in str(info.value)
    assert len(calls_for(sb, name)) == 1, "a trickling platform is not asked again in the same pass"
    messages, _, _ = drain(conn, None, Store())  # the same session: its pool dropped the cut connection
    assert {m.external_id for m in messages} == reachable_ids(sb, name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
def test_a_large_answer_on_a_slow_but_steady_link_is_read_whole(sb: Any, name: str) -> None:
    """Past the deadline but still arriving well above 1 KB a second: the attempt gets another window."""
    store = Store()
    expected, _, _ = drain(open_connector(sb, name), None, store)
    sb.fault("slow", account=name, path=READ_PATH[name], interval=0.1, step=2048)  # about 20 KB a second
    conn = open_connector(sb, name, timeout=0.1)  # windows of 0.4 s: a page takes several
    messages, _, _ = drain(conn, None, Store())
    assert {m.external_id for m in messages} == {m.external_id for m in expected}
    assert not sb.faults.pending(), "the slow answer was read"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ACCOUNTS)
def test_a_send_answered_a_byte_at_a_time_is_delivery_unknown(sb: Any, name: str) -> None:
    conn = open_connector(sb, name, timeout=0.5)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, _ = _fresh_thread(sb, conn, name, store, cursor)
    sb.fault("slow", account=name, path=SEND_PATH, method="POST", interval=0.05)
    policy = ReplyPolicy.DIRECT if name == "tokoshop-x" else ReplyPolicy.RESPONSE
    before = len(sb.sent(name))
    with pytest.raises(DeliveryUnknownError):
        conn.send(_reply(msg, "Baik Kak, sedang kami cek", policy))
    assert len(sb.sent(name)) == before + 1  # carried out: the echo settles it, it is never sent again blindly


@pytest.mark.parametrize("name,where", [*((n, "nested") for n in META), *((n, "read on") for n in META), ("tokoshop-x", "page")])
def test_item_without_time_and_sender_is_repaired_and_the_page_continues(sb: Any, name: str, where: str) -> None:
    """A one-to-one thread's message without its time and its author is still the customer's message:
    stored with the time it was received and the thread's other participant, marked as repaired.
    Meta: in a list row's nested edge, and on a thread's own read after a nested read cut short."""
    whole, _, _ = drain(open_connector(sb, name), None, Store())
    if where == "nested":
        target = next(m for m in whole[len(whole) // 2:] if m.direction is Direction.IN).external_id
        sb.fault("poison", account=name, path=READ_PATH[name], target=target, field="created_time", value=None)
        sb.fault("poison", account=name, path=READ_PATH[name], target=target, field="from", value="null")
    elif where == "read on":
        sb.cut_nested(1)  # every thread of more than one message reads on through its own edge, where the fault lands
        sb.fault("bad_item", account=name, path="/messages")
    else:
        sb.fault("bad_item", account=name, path=READ_PATH[name])
    messages, pages, cursor = drain(open_connector(sb, name), None, Store())
    assert not [q for p in pages for q in p.quarantined]
    assert {m.external_id for m in messages} == {m.external_id for m in whole}
    repaired = [m for m in messages if m.flags]
    assert len(repaired) == 1
    assert MessageFlag.SENDER_INFERRED in repaired[0].flags
    assert repaired[0].raw and "created_time" not in repaired[0].raw  # the platform's own payload is kept
    if where == "nested":
        assert repaired[0].external_id == target
    assert cursor is not None


@pytest.mark.parametrize("name", ACCOUNTS)
def test_unparseable_item_is_quarantined_and_the_page_continues(sb: Any, name: str) -> None:
    whole, _, _ = drain(open_connector(sb, name), None, Store())
    target = whole[len(whole) // 2].external_id
    sb.fault("poison", account=name, target=target, field="id", value="[]")
    messages, pages, cursor = drain(open_connector(sb, name), None, Store())
    quarantined = [q for p in pages for q in p.quarantined]
    assert len(quarantined) == 1 and quarantined[0].raw is not None and "id" in quarantined[0].reason
    assert {m.external_id for m in messages} == {m.external_id for m in whole} - {target}
    assert cursor is not None


@pytest.mark.parametrize("name", ACCOUNTS)
def test_burst_past_the_horizon(sb: Any, name: str) -> None:
    conn = open_connector(sb, name)
    store = Store()
    first, _, cursor = drain(conn, None, store)
    thread = first[-1].thread_id
    sb.burst(name, thread, 25)
    burst, pages, _ = drain(conn, cursor, store)
    gaps = [g for p in pages for g in p.gaps]
    if name in META:
        assert len(burst) == 20 and {m.thread_id for m in burst} == {thread}
        assert [g.thread_id for g in gaps] == [thread] and gaps[0].oldest_readable_at is not None
    else:
        assert len(burst) == 25 and gaps == []


# --- send -------------------------------------------------------------------------------------
def _fresh_thread(sb: Any, conn: Connector, name: str, store: Store, cursor: Cursor | None) -> tuple[InboundMessage, Cursor | None]:
    mid = sb.inject(name, text="Kak, refund INV/20261124/MPL/5512093384 kapan masuk?")
    msgs, _, cursor = drain(conn, cursor, store)
    (msg,) = [m for m in msgs if m.external_id == mid]
    return msg, cursor


def _reply(msg: InboundMessage, text: str, policy: ReplyPolicy) -> OutboundReply:
    return OutboundReply(thread_id=msg.thread_id, recipient_id=msg.customer.id, text=text, policy=policy, idempotency_key=f"reply-{msg.external_id[-12:]}")


@pytest.mark.parametrize("name", ACCOUNTS)
def test_send_returns_the_id_and_the_echo_comes_back(sb: Any, name: str) -> None:
    conn = open_connector(sb, name)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, cursor = _fresh_thread(sb, conn, name, store, cursor)
    policy = ReplyPolicy.DIRECT if name == "tokoshop-x" else ReplyPolicy.RESPONSE
    result = conn.send(_reply(msg, "Halo Kak, dananya sudah kami proses ya 🙏", policy))
    assert result.external_id and result.sent_at.tzinfo is not None
    (sent,) = sb.sent(name)
    if name in META:
        assert sent["message_id"] == result.external_id and sent["recipient_id"] == msg.customer.id
        assert sent["messaging_type"] == "RESPONSE" and sent["tag"] is None
        assert sent["metadata"] == f"reply-{msg.external_id[-12:]}"  # the idempotency key
    else:
        assert sent["dm_event_id"] == result.external_id and result.thread_id == msg.thread_id
    echo, _, _ = drain(conn, cursor, store)
    (mine,) = [m for m in echo if m.external_id == result.external_id]
    assert mine.direction is Direction.OUT and mine.thread_id == msg.thread_id
    assert mine.customer.id == msg.customer.id and mine.text == "Halo Kak, dananya sudah kami proses ya 🙏"


@pytest.mark.parametrize("name", META)
def test_window_rules(sb: Any, name: str) -> None:
    conn = open_connector(sb, name)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, _ = _fresh_thread(sb, conn, name, store, cursor)
    sb.advance(25 * 3600)
    with pytest.raises(WindowClosedError) as info:
        conn.send(_reply(msg, "Mohon maaf menunggu", ReplyPolicy.RESPONSE))
    assert info.value.code == 10 and info.value.subcode in (2018278, 2534022)
    assert conn.send(_reply(msg, "Mohon maaf menunggu, Kak", ReplyPolicy.HUMAN_AGENT)).external_id
    tagged = sb.sent(name)[-1]
    assert (tagged["messaging_type"], tagged["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    sb.advance(7 * 86400)
    with pytest.raises(WindowClosedError):
        conn.send(_reply(msg, "Masih ada yang bisa dibantu?", ReplyPolicy.HUMAN_AGENT))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tokoshop-fb", "a" * 2001),
        ("tokoshop-ig", "é" * 501),  # 501 characters, 1,002 UTF-8 bytes
        ("tokoshop-ig-direct", "🙏" * 251),  # 251 characters, 1,004 bytes
        ("tokoshop-x", "a" * 10_001),
    ],
)
def test_too_long_text_is_refused_before_any_call(sb: Any, name: str, text: str) -> None:
    conn = open_connector(sb, name)
    sb.clear_calls()
    with pytest.raises(TextTooLongError):
        conn.send(OutboundReply(thread_id="t_1", recipient_id="1", text=text, policy=ReplyPolicy.RESPONSE, idempotency_key="k1"))
    assert calls_for(sb, name) == [] and sb.calls == []


@pytest.mark.parametrize("kind", ["timeout", "drop", "cut"])
@pytest.mark.parametrize("name", ACCOUNTS)
def test_send_that_may_have_left_is_delivery_unknown(sb: Any, name: str, kind: str) -> None:
    conn = open_connector(sb, name, timeout=0.5)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, _ = _fresh_thread(sb, conn, name, store, cursor)
    sb.clear_calls()
    sb.fault(kind, account=name, path=SEND_PATH)
    policy = ReplyPolicy.DIRECT if name == "tokoshop-x" else ReplyPolicy.RESPONSE
    before = len(sb.sent(name))
    with pytest.raises(DeliveryUnknownError):
        conn.send(_reply(msg, "Baik Kak, kami cek dulu ya", policy))
    posts = [c for c in calls_for(sb, name) if c.method == "POST"]
    assert len(posts) == 1, "a send that may have left is never retried"
    if kind in ("timeout", "cut"):  # the platform carried it out; the next poll shows the echo to reconcile with
        assert len(sb.sent(name)) == before + 1
        echo, _, _ = drain(conn, cursor, store)
        assert any(m.direction is Direction.OUT and m.text == "Baik Kak, kami cek dulu ya" for m in echo)


@pytest.mark.parametrize("name", ACCOUNTS)
def test_send_with_a_broken_token_is_not_sent_and_says_so(sb: Any, name: str) -> None:
    """A token ending in a newline makes the request fail before a byte leaves: certainly not delivered."""
    conn = open_connector(sb, name)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, _ = _fresh_thread(sb, conn, name, store, cursor)
    token = sb.accounts[name].token
    broken = connect(make_spec(sb, name, secrets={"access_token": token + "\n"}), policy=FAST)
    sb.clear_calls()
    policy = ReplyPolicy.DIRECT if name == "tokoshop-x" else ReplyPolicy.RESPONSE
    with pytest.raises(NotSentError, match="nothing was sent") as info:
        broken.send(_reply(msg, "Baik Kak", policy))
    assert token not in str(info.value) and "newline" in str(info.value)
    assert calls_for(sb, name) == [] and sb.sent(name) == []


@pytest.mark.parametrize(("kind", "expected"), [("503", ServerError), ("500", DeliveryUnknownError)])
@pytest.mark.parametrize("name", ACCOUNTS)
def test_send_server_errors_are_never_retried(sb: Any, name: str, kind: str, expected: type) -> None:
    """503 means "not processed, come back later"; a 500 on a send may hide a delivery, so it is unknown."""
    conn = open_connector(sb, name)
    store = Store()
    _, _, cursor = drain(conn, None, store)
    msg, _ = _fresh_thread(sb, conn, name, store, cursor)
    sb.clear_calls()
    sb.fault(kind, account=name, path=SEND_PATH, count=5)
    policy = ReplyPolicy.DIRECT if name == "tokoshop-x" else ReplyPolicy.RESPONSE
    with pytest.raises(expected):
        conn.send(_reply(msg, "Baik Kak", policy))
    assert len([c for c in calls_for(sb, name) if c.method == "POST"]) == 1
    assert sb.sent(name) == []


@pytest.mark.parametrize("kind", ["timeout", "drop"])
@pytest.mark.parametrize("name", ACCOUNTS)
def test_reads_that_time_out_or_drop_are_retried(sb: Any, name: str, kind: str) -> None:
    sb.fault(kind, account=name, path=READ_PATH[name], count=1)
    messages, _, _ = drain(open_connector(sb, name, timeout=0.3), None, Store())
    assert {m.external_id for m in messages} == reachable_ids(sb, name)


# --- secrets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ACCOUNTS)
def test_no_token_in_logs_or_errors(sb: Any, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("tweepy.client", "urllib3.connectionpool", "connectors"):
        caplog.set_level(logging.DEBUG, logger=noisy)
    token = sb.accounts[name].token
    conn = open_connector(sb, name, page_size=2)
    errors: list[str] = []
    drain(conn, None, Store())
    for kind in ("500", "expired_token", "malformed", "429"):
        sb.fault(kind, account=name, count=10)
        try:
            drain(conn, None, Store())
        except ConnectorError as exc:
            errors.append(str(exc))
            errors.append(repr(exc))
        sb.clear_faults()
    assert len(errors) == 8
    assert caplog.records, "debug logging was captured"
    assert token not in caplog.text
    for text in errors:
        assert token not in text


# --- auth flavours and the config path --------------------------------------------------------
def test_x_oauth1_user_context_fetches_and_sends(sb: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("tweepy.client", "urllib3.connectionpool", "requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849"):
        caplog.set_level(logging.DEBUG, logger=noisy)
    env = sb.env()
    secrets = {
        "consumer_key": env["INBOX_SANDBOX_X_CONSUMER_KEY"],
        "consumer_secret": env["INBOX_SANDBOX_X_CONSUMER_SECRET"],
        "access_token": env["INBOX_SANDBOX_X_ACCESS_TOKEN"],
        "access_token_secret": env["INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET"],
    }
    conn = open_connector(sb, "tokoshop-x", flavour="oauth1", secrets=secrets)
    store = Store()
    messages, _, cursor = drain(conn, None, store)
    assert {m.external_id for m in messages} == reachable_ids(sb, "tokoshop-x")
    msg, _ = _fresh_thread(sb, conn, "tokoshop-x", store, cursor)
    assert conn.send(_reply(msg, "Halo, kami bantu cek ya", ReplyPolicy.DIRECT)).external_id
    wrong = open_connector(sb, "tokoshop-x", flavour="oauth1", secrets={**secrets, "access_token_secret": "not-the-secret"})
    assert wrong.health().ok  # the sandbox does not verify signatures, as documented
    bad = open_connector(sb, "tokoshop-x", flavour="oauth1", secrets={**secrets, "consumer_key": "SomeOtherConsumerKey"})
    with pytest.raises(NeedsReauthError) as info:
        drain(bad, None, Store())
    for secret in secrets.values():
        assert secret not in caplog.text and secret not in str(info.value)


def test_specs_from_the_generated_config(sb: Any, tmp_path: Any) -> None:
    """The path the sync job takes: TOML config -> AccountSettings.to_spec() -> connect()."""
    from inbox.settings import load_settings

    path = tmp_path / "inbox.toml"
    path.write_text(sb.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}", include_ig_login=True), encoding="utf-8")
    settings = load_settings(path)
    env = sb.env()
    names = []
    for account in settings.accounts:
        spec = account.to_spec(env)
        spec = AccountSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "min_interval": 0.0})
        conn = connect(spec, policy=FAST)
        messages, _, cursor = drain(conn, None, Store())
        assert messages and cursor is not None
        assert {m.channel for m in messages} == {spec.channel}
        names.append(spec.name)
        conn.close()
    assert sorted(names) == sorted(ACCOUNTS)


def test_pacing_keeps_a_meta_account_under_its_call_rate() -> None:
    """Unpaced, a full pass trips the per-second limit; paced, the same pass goes through. (A list page
    of one thread: a pass of many calls, now that a page of threads costs one call.)"""
    with Sandbox(seed=7, meta_calls_per_second=10).start() as box:
        with pytest.raises(RateLimitedError) as info:
            drain(open_connector(box, "tokoshop-fb", min_interval=0.0, page_size=1), None, Store())
        assert info.value.code == 80006 and info.value.retry_at is not None
    with Sandbox(seed=7, meta_calls_per_second=10).start() as box:
        messages, _, _ = drain(open_connector(box, "tokoshop-fb", min_interval=0.12, page_size=1), None, Store())
        assert messages and len(box.calls) >= 10  # the sandbox enforced its per-second limit on every call


# --- the HTTP layer on a scripted loopback server -----------------------------------------------
# Waits the sandbox never asks for (a short Retry-After) and transport edges (refused, short body).
class _Script:
    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str], bytes, int | None]] = []
        self.seen: list[str] = []
        self.auth: list[str | None] = []  # the Authorization header of each request


@pytest.fixture
def wire() -> Iterator[tuple[str, _Script]]:
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            script.seen.append(f"{self.command} {self.path}")
            script.auth.append(self.headers.get("Authorization"))
            status, headers, body, length = script.replies.pop(0) if script.replies else (200, {}, _json.dumps({"ok": True}).encode(), None)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length if length is not None else len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", script
    finally:
        server.shutdown()
        server.server_close()


def _session(**kw: Any) -> Any:
    from connectors.http import HttpSession

    return HttpSession(account="wire-test", timeout=2.0, policy=kw.pop("policy", FAST), **kw)


def test_short_retry_after_is_slept_then_retried(wire: tuple[str, _Script]) -> None:
    base, script = wire
    script.replies.append((429, {"Retry-After": "0.3"}, b'{"title":"Too Many Requests"}', None))
    slept: list[float] = []
    response = _session(sleep=slept.append).get(base + "/2/dm_events")
    # One wait (until the platform's retry time: 0.3 s from its answer, less what has passed since), then the retry.
    assert response.status_code == 200 and len(slept) == 1 and 0 < slept[0] <= 0.3
    assert len(script.seen) == 2


def test_long_waits_are_raised_not_slept(wire: tuple[str, _Script]) -> None:
    import json as _json

    from connectors.http import raise_for

    base, script = wire
    buc = _json.dumps({"104920378912345": [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 2}]})
    body = _json.dumps({"error": {"message": "(#80006) too many calls", "code": 80006, "type": "OAuthException"}}).encode()
    script.replies.append((400, {"X-Business-Use-Case-Usage": buc}, body, None))
    slept: list[float] = []
    response = _session(sleep=slept.append).get(base + "/v23.0/104920378912345/conversations")
    with pytest.raises(RateLimitedError) as info:
        raise_for(response)
    assert slept == [] and len(script.seen) == 1
    wait = info.value.retry_after
    assert wait is not None and 110 < wait <= 120  # two minutes, from the usage header


def test_a_rejected_send_is_retried_but_a_refused_connection_never_becomes_unknown(wire: tuple[str, _Script]) -> None:
    import socket

    base, script = wire
    script.replies.append((429, {"Retry-After": "0.05"}, b'{"title":"Too Many Requests"}', None))
    assert _session().post(base + "/me/messages", json={"x": 1}).status_code == 200
    assert script.seen == ["POST /me/messages", "POST /me/messages"]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ServerError, match="connection failed"):
        _session().post(f"http://127.0.0.1:{closed_port}/me/messages", json={"x": 1})


def test_environment_settings_are_still_honoured(wire: tuple[str, _Script], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """HttpSession turns requests' trust_env off and merges proxies, CA bundle and .netrc itself."""
    base, script = wire
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", base)  # the wire server plays the proxy: it sees the absolute URL
    assert _session().get("http://inbox-proxy-test.invalid/v23.0/me", params={"fields": "id"}).status_code == 200
    assert script.seen[-1] == "GET http://inbox-proxy-test.invalid/v23.0/me?fields=id"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert _session().request("GET", base + "/direct", {"a": "1"}).status_code == 200  # positional params too
    assert script.seen[-1] == "GET /direct?a=1"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login wire password s3cret\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    _session().get(base + "/with-netrc")
    assert script.auth[-1] is not None and script.auth[-1].startswith("Basic ")
    # a request carrying its own token keeps it: .netrc never replaces it (nor leaks to the API)
    _session().get(base + "/with-token", headers={"Authorization": "Bearer t0ken-of-the-page"})
    assert script.auth[-1] == "Bearer t0ken-of-the-page"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    kwargs: dict[str, Any] = {}
    _session()._apply_environment("https://graph.example/v23.0/me", kwargs)
    assert kwargs["verify"] == str(tmp_path / "ca.pem")
    kwargs = {"verify": False}
    _session()._apply_environment("https://graph.example/v23.0/me", kwargs)
    assert kwargs["verify"] is False


def test_a_closed_connection_pool_is_chosen_again(wire: tuple[str, _Script]) -> None:
    """HttpSession keeps the adapter's pool per origin; one the pool manager closed (evicted) is not reused."""
    base, script = wire
    session = _session()
    assert session.get(base + "/one").status_code == 200
    [(pool, _proxied)] = session.transport._pools.values()
    session.get_adapter(base).poolmanager.clear()  # as an eviction does: dropped from the manager,
    pool.close()  # and closed (urllib3 1.x closes what it evicts)
    assert session.get(base + "/two").status_code == 200
    assert script.seen[-2:] == ["GET /one", "GET /two"]
    [(again, _proxied)] = session.transport._pools.values()
    assert again is not pool


def test_a_body_shorter_than_its_length_is_malformed(wire: tuple[str, _Script]) -> None:
    base, script = wire
    script.replies.append((200, {"Content-Type": "application/json"}, b'{"data": [{"id": "1"', 400))
    with pytest.raises(MalformedResponseError, match="truncated"):
        _session().get(base + "/v23.0/t_1/messages")


def _graph_messages(start: datetime, step_minutes: float, n: int) -> bytes:
    import json as _json
    from datetime import timedelta

    data = [
        {
            "id": f"m_{i:04d}",
            "created_time": (start - timedelta(minutes=step_minutes * i)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "from": {"name": "Rina", "id": "6100000000000001"},
            "to": {"data": [{"name": "TokoShop", "id": "104920378912345"}]},
            "message": f"pesan {i}",
        }
        for i in range(n)
    ]
    return _json.dumps({"data": data}).encode()


@pytest.mark.parametrize(
    ("cursor_hwm", "step_minutes", "expect_gap"),
    [
        ("2026-11-24T08:00:00+00:00", 1, True),  # 20 new since the last pass, all after it: older ones may be lost
        ("2026-11-24T08:00:00+00:00", 10, False),  # the readable window reaches back before the last pass
        (None, 1, False),  # first sync, no message_count: nothing shows older messages exist
    ],
)
def test_gap_rule_without_message_count(wire: tuple[str, _Script], cursor_hwm: str | None, step_minutes: float, expect_gap: bool) -> None:
    import json as _json

    base, script = wire
    newest = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    listing = {"data": [{"id": "t_1", "updated_time": "2026-11-24T09:00:00+0000", "participants": {"data": [{"id": "6100000000000001"}, {"id": "104920378912345"}]}}]}
    script.replies.append((200, {}, _json.dumps(listing).encode(), None))
    script.replies.append((200, {}, _graph_messages(newest, step_minutes, 20), None))
    spec = AccountSpec(
        name="wire-fb", channel=Channel.FACEBOOK, account_id="104920378912345", base_url=base + "/v23.0",
        secrets={"access_token": "EAAWireTestToken000000"}, page_id="104920378912345", min_interval=0.0,
    )
    cursor = {"v": 1, "hwm": cursor_hwm, "recent": {}} if cursor_hwm else None
    messages, pages, new_cursor = drain(connect(spec, policy=FAST), cursor, Store())
    gaps = [g for p in pages for g in p.gaps]
    assert len(messages) == 20 and script.seen[1].startswith("GET /v23.0/t_1/messages?")
    assert [g.thread_id for g in gaps] == (["t_1"] if expect_gap else [])
    assert new_cursor is not None and new_cursor["hwm"].startswith("2026-11-24T09:00:00")
