"""The platform behaving as real platforms do and emulators often do not, over real HTTP.

Each case names a platform behaviour (paging links on the platform's public host, links that point
somewhere else, ...), makes the sandbox behave so, and asserts that the account keeps going: every
reachable message stored once, the cursor not past unsaved data, no token on the wire where it
should not be.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from tests.contract.test_connectors_contract import META, Store, drain, make_spec, open_connector, reachable_ids

TOKEN_PARAM = "access_token"


@pytest.fixture
def sb() -> Iterator[Any]:
    box = Sandbox(seed=7, x_rate_limit=10_000, timeout_sleep=1.5)
    box.start(host="127.0.0.1", port=0)
    try:
        yield box
    finally:
        box.stop()


@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize("cut", [None, 2])
def test_paging_links_on_the_platforms_public_host_are_followed_on_the_base_url(sb: Any, name: str, cut: int | None) -> None:
    """Real Graph writes `paging.next` as https://graph.facebook.com/vNN.0/...: the client follows it
    under its own base URL (a proxy's or an emulator's path prefix included), never on that host."""
    sb.public_links()
    if cut is not None:
        sb.cut_nested(cut)  # the nested edges' `next` links are read on too
    sb.clear_calls()
    messages, pages, _cursor = drain(open_connector(sb, name, page_size=1), None, Store())
    ids = [m.external_id for m in messages]
    assert set(ids) == reachable_ids(sb, name)
    assert len(ids) == len(set(ids))
    assert not any(p.quarantined for p in pages), [q.reason for p in pages for q in p.quarantined]
    calls = [c for c in sb.calls if c.method == "GET"]
    prefix = make_spec(sb, name).base_url.removeprefix(sb.base_url)
    assert len(calls) > 1 and all(c.path.startswith(prefix + "/") and c.status == 200 for c in calls), [
        (c.path, c.status) for c in calls if not c.path.startswith(prefix + "/") or c.status != 200
    ]
    assert not any(TOKEN_PARAM in c.query for c in calls)


@pytest.mark.parametrize(("link", "expected"), [
    ("https://graph.facebook.com/v23.0/t_1/messages?after=QQ&access_token=EAAtestlinktoken9f3c", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://evil.example/v19.0/t_1/messages?after=QQ&ACCESS_TOKEN=EAAtestlinktoken9f3c", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://graph.facebook.com/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/proxy/graph/v23.0/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/v23.0/t_1/messages", "/proxy/graph/v23.0/t_1/messages"),
])
def test_a_paging_link_is_followed_under_the_base_url_without_its_token(link: str, expected: str) -> None:
    from connectors.base import AccountSpec
    from connectors.enums import Channel
    from connectors.graph_client import GraphClient

    spec = AccountSpec(name="a", channel=Channel.FACEBOOK, account_id="1", base_url="http://127.0.0.1:9/proxy/graph/v23.0",
                       secrets={"access_token": "EAAtestlinktoken9f3c"})
    client = GraphClient(spec)
    try:
        assert client.url(link) == "http://127.0.0.1:9" + expected
    finally:
        client.close()


# ── webhook bodies ─────────────────────────────────────────────────────────────────────────────

RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"
X_MEDIA = RECORDED / "zammad" / "twitter_webhook_events" / "direct_message-incoming_with_media.json"


@pytest.mark.skipif(not X_MEDIA.is_file(), reason=f"recorded fixture not present at {X_MEDIA}")
@pytest.mark.parametrize("variants", [
    [{"bitrate": "832000", "url": "https://video.example/a.mp4"}, {"bitrate": 0, "url": "https://video.example/b.mp4"}],
    [{"bitrate": {"kbps": 1}, "url": "https://video.example/a.mp4"}, {"bitrate": 5, "url": "https://video.example/b.mp4"}],
    [{"bitrate": None, "url": "https://video.example/a.mp4"}, {"bitrate": [1], "url": "https://video.example/b.mp4"}],
    [{"bitrate": 1e400, "url": "https://video.example/a.mp4"}, {"bitrate": "NaN", "url": "https://video.example/b.mp4"}],
], ids=["string", "object", "null-and-list", "overflow-and-nan"])
def test_x_webhook_media_variants_of_any_shape_never_lose_the_delivery(variants: list[dict[str, Any]]) -> None:
    """A recorded X delivery of two DMs, the first with video variants whose bitrates are not numbers:
    both messages come out (the hostile one with a video URL of its own), nothing is quarantined."""
    from connectors import safejson, x_webhook

    body = json.loads(X_MEDIA.read_text(encoding="utf-8-sig"))
    first = body["direct_message_events"][0]
    first["message_create"]["message_data"]["attachment"]["media"]["video_info"]["variants"] = variants
    second = copy.deepcopy(first)
    second["id"] = str(int(first["id"]) + 1)
    body["direct_message_events"].append(second)
    wire = json.dumps(body).replace('"1e400"', "1e400").replace("1e+400", "1e400")
    parsed = x_webhook.parse(safejson.loads(wire), frozenset({body["for_user_id"]}))
    [batch] = parsed.batches
    assert [m.external_id for m in batch.messages] == [first["id"], second["id"]] and not batch.quarantined
    for message in batch.messages:
        [attachment] = message.attachments
        assert attachment.url in {v["url"] for v in variants}


# ── paging links that loop ─────────────────────────────────────────────────────────────────────


def passes(conn: Any, cursor: Any, store: Store) -> tuple[list[Any], Any, Exception | None]:
    """One pass, storing each page as the sync does (messages and cursor together), up to its error."""
    pages: list[Any] = []
    try:
        for page in conn.fetch(cursor, store):
            pages.append(page)
            store.ids.update(m.external_id for m in page.messages)
            cursor = page.cursor
    except Exception as exc:  # noqa: BLE001 - the error a pass ends with is what is asserted
        return pages, cursor, exc
    return pages, cursor, None


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-ig", "tokoshop-x"])
def test_a_paging_link_that_loops_keeps_the_page_it_came_with_and_never_starves_the_account(sb: Any, name: str) -> None:
    """The second page's link points back at itself, for as long as the platform is broken: the pass
    stores what the pages it read hold (the looping one included), ends with a clear error, and the
    next pass still takes new messages instead of walking back into the loop."""
    from connectors.errors import MalformedResponseError

    x = name == "tokoshop-x"
    conn = open_connector(sb, name, page_size=3 if x else 1)
    sb.fault("loop", account=name, path="/2/dm_events" if x else "/conversations", count=10_000)
    store = Store()
    pages, cursor, error = passes(conn, None, store)
    assert isinstance(error, MalformedResponseError) and ("loop" in str(error) or "repeat" in str(error)), error
    looped = [c for c in sb.calls if c.account == name and c.fault == "loop" and (c.query.get("after") or c.query.get("pagination_token"))]
    assert looped, "the fault never applied"
    # Everything the looping page showed is stored: read it again by hand.
    first_looping = looped[0]
    sb.clear_faults()
    if x:
        seen = {e["id"] for e in _x_page(sb, first_looping.query)}
    else:
        seen = {m for t in _graph_page_threads(sb, name, first_looping.query) for m in _readable(sb, name, t)}
    assert seen and seen <= store.ids, sorted(seen - store.ids)
    sb.fault("loop", account=name, path="/2/dm_events" if x else "/conversations", count=10_000)

    fresh = sb.inject(name, text="kak, pesanan INV/20261120/MPL/3817265540 belum sampai", customer="pembeli baru")
    for _ in range(2):  # the loop is still there: each pass takes what is new above it
        _pages, cursor, error = passes(conn, cursor, store)
        assert error is not None
    assert fresh in store.ids
    if not x:
        assert cursor is None or "hwm" not in cursor  # the high-water mark never passed threads not read
    conn.close()


def _x_page(sb: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    import requests

    acc = sb.accounts["tokoshop-x"]
    r = requests.get(f"{sb.base_url}/x/2/dm_events", params=query, headers={"Authorization": f"Bearer {acc.token}"}, timeout=5)
    return r.json().get("data") or []


def _graph_page_threads(sb: Any, name: str, query: dict[str, str]) -> list[str]:
    import requests

    spec = make_spec(sb, name)
    node = spec.page_id or spec.account_id
    r = requests.get(f"{spec.base_url}/{node}/conversations", params={**query, "fields": "id"},
                     headers={"Authorization": f"Bearer {spec.secrets['access_token']}"}, timeout=5)
    return [row["id"] for row in r.json()["data"]]


def _readable(sb: Any, name: str, thread: str) -> list[str]:
    return [m["id"] for m in sb.thread_messages(name, thread) if m["readable"]]


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
def test_an_endless_empty_tail_ends_the_pass(sb: Any, name: str) -> None:
    """Past the first page, empty pages whose link leads to another empty page, for ever: the pass
    ends after a few of them, with every message of the first page stored; it does not walk on until
    the rate budget (or, with a large one, never) stops it."""
    x = name == "tokoshop-x"
    conn = open_connector(sb, name, page_size=3 if x else 1)
    sb.fault("empty_tail", account=name, path="/2/dm_events" if x else "/conversations", count=50)
    store = Store()
    pages, _cursor, error = passes(conn, None, store)
    assert error is None, error
    tail = [c for c in sb.calls if c.account == name and c.fault == "empty_tail" and (c.query.get("after") or c.query.get("pagination_token"))]
    assert 1 <= len(tail) <= 3, len(tail)
    assert pages and pages[-1].final and pages[0].messages
    conn.close()


# ── ids with leading zeros ─────────────────────────────────────────────────────────────────────


def test_x_ids_written_with_leading_zeros_are_the_same_users_threads_and_events(sb: Any) -> None:
    """X ids are numbers (tweepy reads them as ints): `"0900"` is user 900. Our own DM whose sender_id
    comes zero-padded is still ours (not a customer's message opening a ticket), a customer's padded
    sender_id lands in the customer's one thread, and a padded event id is the event's own id."""
    name = "tokoshop-x"
    own = make_spec(sb, name).account_id
    customer_event = sb.inject(name, text="kak, refund saya belum masuk", customer="pembeli nol")
    thread = next(t for t in sb.threads(name) if any(m["id"] == customer_event for m in sb.thread_messages(name, t)))
    customer = next(m for m in sb.thread_messages(name, thread) if m["id"] == customer_event)["sender_id"]
    ours = sb.inject_own(name, thread, "baik kak, kami cek dulu ya")
    again = sb.inject(name, text="sudah dicek belum kak?", thread=thread)
    sb.fault("poison", account=name, target=ours, field="sender_id", value=json.dumps("00" + own))
    sb.fault("poison", account=name, target=customer_event, field="sender_id", value=json.dumps("0" + str(customer)))
    sb.fault("poison", account=name, target=again, field="id", value=json.dumps("0" + again))
    messages, _pages, _cursor = drain(open_connector(sb, name), None, Store())
    got = {m.external_id: m for m in messages}
    assert set(got) >= {customer_event, ours, again}, sorted(got)
    assert got[ours].direction.value == "out" and got[ours].author.id == own and got[ours].customer.id == str(customer)
    assert got[customer_event].direction.value == "in" and got[customer_event].author.id == str(customer)
    assert {got[i].thread_id for i in (customer_event, ours, again)} == {thread}


# ── the same item twice on a page ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-ig", "tokoshop-x"])
def test_an_item_twice_on_a_page_is_stored_once(engine: Any, db_url: str, sandbox: Any, name: str) -> None:
    """Every answer repeats its first item (a thread, a message, a DM event): each message is stored
    once, one ticket per thread, nothing quarantined, and the account goes on taking new messages."""
    import sqlalchemy as sa

    from inbox.store.models import Account, Message, Quarantine
    from inbox.sync.pool import sync_all
    from tests.contract.test_platform_bounds import spec_factory
    from tests.store.test_sync import sandbox_settings

    settings = sandbox_settings(sandbox, db_url, overlap_seconds=5)
    factory = spec_factory(settings)
    sandbox.fault("duplicate", account=name, count=10_000)
    fresh = sandbox.inject(name, text="kak, paket saya belum sampai", customer="pembeli ganda")
    for _ in range(2):
        [result] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
        assert result.status == "ok", result.error
    assert any(c.fault == "duplicate" for c in sandbox.calls)
    a, m, q = Account.__table__, Message.__table__, Quarantine.__table__
    with engine.connect() as conn:
        account_id = conn.execute(sa.select(a.c.id).where(a.c.name == name)).scalar_one()
        ids = list(conn.execute(sa.select(m.c.external_id).where(m.c.account_id == account_id)).scalars())
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.account_id == account_id)).scalar_one()
        threads = conn.execute(sa.select(sa.func.count(sa.distinct(m.c.conversation_id))).where(m.c.account_id == account_id)).scalar_one()
        opened = conn.execute(sa.select(sa.func.count(sa.distinct(m.c.ticket_id))).where(m.c.account_id == account_id)).scalar_one()
    assert len(ids) == len(set(ids)) and fresh in ids
    assert quarantined == 0
    assert opened <= threads


# ── a Graph error with HTTP 200 ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize(("error", "expected"), [
    ({"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463},
     "NeedsReauthError"),
    ({"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4, "is_transient": True},
     "RateLimitedError"),
    ({"message": "(#10) Requires pages_messaging permission", "type": "OAuthException", "code": 10}, "PermanentError"),
], ids=["expired-token", "rate-limited", "permission"])
def test_a_graph_error_answered_with_http_200_is_that_error(sb: Any, name: str, error: dict[str, Any], expected: str) -> None:
    """Graph error bodies can come with a 200 (suppress_http_code, proxies): an expired token is still
    a reconnect, a throttle still a wait, a missing permission still permanent; never "malformed"."""
    from connectors import errors

    sb.fault("answer", account=name, path="/conversations", body=json.dumps({"error": error}), content_type="application/json")
    conn = open_connector(sb, name)
    with pytest.raises(errors.ConnectorError) as caught:
        list(conn.fetch(None, Store()))
    assert type(caught.value).__name__ == expected, repr(caught.value)
    assert caught.value.code == error["code"]
    assert sb.env()["INBOX_SANDBOX_FB_TOKEN" if name != "tokoshop-ig-direct" else "INBOX_SANDBOX_IG_TOKEN"] not in str(caught.value)
    conn.close()


# ── whole answers that are not what was asked for ──────────────────────────────────────────────

HTML = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>access_token={token}</body></html>"
ANSWERS = [
    ("html-200", 200, HTML, "text/html"),
    ("html-502", 502, HTML, "text/html"),
    ("empty-200", 200, "", None),
    ("null-200", 200, "null", "application/json"),
    ("list-200", 200, "[]", "application/json"),
    ("string-200", 200, '"ok"', "text/plain"),
    ("number-200", 200, "5", "application/json"),
    ("data-null", 200, '{"data": null}', "application/json"),
    ("data-object", 200, '{"data": {"id": "1"}}', "application/json"),
    ("cut-json", 200, '{"data": [{"id": "1", "created', "application/json"),
    ("429-empty", 429, "", None),
    ("429-html", 429, HTML, "text/html"),
    ("503-json-with-token", 503, '{"error": {"message": "token {token} is fine", "code": 2, "is_transient": true}}', "application/json"),
    ("401-html", 401, HTML, "text/html"),
    ("deep", 200, "[" * 100_000, "application/json"),
]


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
@pytest.mark.parametrize(("status", "body", "ctype"), [pytest.param(*a[1:], id=a[0]) for a in ANSWERS])
def test_a_hostile_whole_answer_fails_the_pass_cleanly_and_the_next_one_goes_on(
    engine: Any, db_url: str, sandbox: Any, name: str, status: int, body: str, ctype: str | None, caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer that is no page (HTML with 200, nothing, the wrong JSON, JSON that breaks off, a
    throttle without a body): the pass ends with a classified status, never a crash, no token in the
    error or the log; the next pass, the platform well again, stores what came meanwhile."""
    import logging

    from inbox import accounts as accounts_mod
    from inbox.sync.pool import sync_all
    from tests.contract.test_platform_bounds import spec_factory
    from tests.store.test_sync import sandbox_settings, stored_ids

    caplog.set_level(logging.DEBUG)
    token = sandbox.accounts[name].token
    settings = sandbox_settings(sandbox, db_url, overlap_seconds=5)
    factory = spec_factory(settings)
    [first] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    assert first.status == "ok", first.error
    path = "/2/dm_events" if name == "tokoshop-x" else "/conversations"
    sandbox.fault("answer", account=name, path=path, count=10, status=status, body=body.replace("{token}", token), content_type=ctype)
    [broken] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    if name == "tokoshop-x" and body == '{"data": null}':
        expected = {"ok"}  # X's empty page has no `data`: a null one is read as empty, the cursor kept
    else:
        expected = {"needs-reauth"} if status == 401 else {"retry-later"}
    assert broken.status in expected, (broken.status, broken.error)
    assert (broken.error or "ok" in expected) and token not in (broken.error or "")
    assert token not in caplog.text
    sandbox.clear_faults()
    accounts_mod.reset(engine, settings, name)
    fresh = sandbox.inject(name, text="halo kak, pesanan saya gimana?", customer="pembeli sabar")
    [after] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    assert after.status == "ok", after.error
    assert fresh in stored_ids(engine, name)


# ── compressed answers ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "deflate, gzip", "identity, gzip", "GZIP"])
def test_a_compressed_answer_is_read(sb: Any, name: str, encoding: str) -> None:
    sb.fault("encoded", account=name, count=10_000, encoding=encoding)
    messages, _pages, _cursor = drain(open_connector(sb, name), None, Store())
    assert {m.external_id for m in messages} == reachable_ids(sb, name)
    assert any(c.fault == "encoded" for c in sb.calls)


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
def test_an_encoding_never_asked_for_is_a_malformed_answer_and_the_read_is_tried_again(sb: Any, name: str) -> None:
    from connectors.errors import MalformedResponseError

    sb.fault("encoded", account=name, count=10_000, encoding="br")
    conn = open_connector(sb, name)
    with pytest.raises(MalformedResponseError):
        list(conn.fetch(None, Store()))
    sb.clear_faults()
    messages, _pages, _cursor = drain(conn, None, Store())
    assert {m.external_id for m in messages} == reachable_ids(sb, name)


# ── times in other forms ───────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
@pytest.mark.parametrize(("form", "offset"), [
    ("%a, %d %b %Y %H:%M:%S +0000", 0),  # RFC 2822 / HTTP-date style
    ("%a, %d %b %Y %H:%M:%S GMT", 0),
    ("%Y-%m-%dT%H:%M:%S+0700", 7),  # an odd offset: the same instant written in Jakarta time
    ("%Y-%m-%dT%H:%M:%S-0330", -3.5),
    ("ms", 0),  # epoch milliseconds, as a string
])
def test_a_time_written_another_way_is_read_as_the_instant_it_names(sb: Any, name: str, form: str, offset: float) -> None:
    from datetime import datetime, timedelta, timezone

    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    mid = sb.inject(name, text="kak, saya transfer jam segini", customer="pembeli waktu", at=at)
    local = at + timedelta(hours=offset)
    value = str(int(at.timestamp() * 1000)) if form == "ms" else local.strftime(form)
    field = "created_at" if name == "tokoshop-x" else "created_time"
    sb.fault("poison", account=name, target=mid, field=field, value=json.dumps(value))
    messages, _pages, _cursor = drain(open_connector(sb, name), None, Store())
    [message] = [m for m in messages if m.external_id == mid]
    assert message.sent_at == at and not message.flags, (value, message.sent_at, message.flags)


# ── late deliveries ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", META)
def test_a_meta_message_that_shows_up_late_below_a_stored_one_is_still_found(sb: Any, name: str) -> None:
    """Graph lists a message that arrived late (dated before the thread's newest, which is stored):
    the thread's updated_time does not move, its message_count does. The read goes on past the
    stored newest message until it has found as many new ones as the count grew by."""
    from datetime import datetime, timedelta, timezone

    conn = open_connector(sb, name)
    store = Store()
    _messages, _pages, cursor = drain(conn, None, store)
    thread = sb.threads(name)[0]  # the most recently updated thread: inside the overlap window
    newest = sb.thread_messages(name, thread)[-1]
    at = datetime.fromtimestamp(newest["created_ms"] / 1000, tz=timezone.utc) - timedelta(seconds=90)
    late = sb.inject(name, text="maaf kak, ini pesan yang tadi", thread=thread, at=at)
    assert sb.thread_messages(name, thread)[-1]["id"] == newest["id"]  # the newest is still the newest
    messages, pages, cursor = drain(conn, cursor, store)
    assert late in {m.external_id for m in messages}
    assert not any(p.gaps for p in pages)
    sb.clear_calls()
    again, _pages, _cursor = drain(conn, cursor, store)
    assert not again and len([c for c in sb.calls if c.account == name]) == 1  # nothing new costs one call
    conn.close()


# ── when to come back ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
@pytest.mark.parametrize(("status", "retry_after", "low", "high"), [
    (429, "120", 100, 200),
    (429, "http-date+7200", 7000, 7300),
    (429, None, 30, 20 * 60),  # no hint at all: a default wait, never none and never for good (X: its window reset)
    (429, "http-date-3600", 0, 20 * 60),  # a date in the past: come back soon
    (503, "30", 20, 60),
    (503, "http-date+600", 550, 650),
    (429, "99999999999", 23 * 3600, 24 * 3600 + 60),  # absurd: bounded to a day
    (503, "skewed-date+600", 550, 650),  # the platform's clock an hour behind ours: the wait is from its Date
], ids=["429-seconds", "429-date", "429-none", "429-past-date", "503-seconds", "503-date", "429-absurd", "503-skewed-date"])
def test_retry_after_in_seconds_or_as_a_date_sets_when_the_account_is_tried_again(
    engine: Any, db_url: str, sandbox: Any, name: str, status: int, retry_after: str | None, low: float, high: float,
) -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from inbox.sync.pool import sync_all
    from tests.contract.test_platform_bounds import spec_factory
    from tests.store.test_sync import sandbox_settings

    settings = sandbox_settings(sandbox, db_url, overlap_seconds=5)
    now = datetime.now(timezone.utc)
    if retry_after is not None and retry_after.startswith("http-date"):
        retry_after = format_datetime(now + timedelta(seconds=int(retry_after.removeprefix("http-date"))), usegmt=True)
    if retry_after is not None and retry_after.startswith("skewed-date"):
        behind = now - timedelta(hours=1)
        retry_after = format_datetime(behind + timedelta(seconds=int(retry_after.removeprefix("skewed-date"))), usegmt=True)
        sandbox.fault("header", account=name, name="Date", value=format_datetime(behind, usegmt=True))
    x = name == "tokoshop-x"
    body = ('{"title": "Too Many Requests", "type": "about:blank", "status": 429}' if x else
            '{"error": {"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}}')
    if status == 503:
        body = '{"title": "Service Unavailable", "status": 503}' if x else '{"error": {"message": "Service temporarily unavailable", "code": 2, "is_transient": true}}'
    sandbox.fault("answer", account=name, path="/2/dm_events" if x else "/conversations", count=10, status=status, body=body,
                  content_type="application/json")
    if retry_after is not None:
        sandbox.fault("header", account=name, name="Retry-After", value=retry_after)
    [result] = sync_all(engine, settings, accounts=[name], connector_factory=spec_factory(settings))
    assert result.status == "retry-later", (result.status, result.error)
    assert result.retry_at is not None
    wait = (result.retry_at - now).total_seconds()
    if x and status == 429:
        high = max(high, 15 * 60 + 60)  # X's x-rate-limit-reset (the window's end) may say later: the later wins
    assert low <= wait <= high, (retry_after, wait)


# ── counts a column cannot hold ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("count", ["5000000000", "9223372036854775807", "2147483648"])
def test_a_thread_count_beyond_a_counter_never_stops_the_account(engine: Any, db_url: str, sandbox: Any, count: str) -> None:
    """A burst past the 20-message horizon in a thread whose message_count is a 64-bit number: the
    readable messages are stored and the account keeps syncing (the gap's size is unknown, not a
    number the store refuses)."""
    from inbox.sync.pool import sync_all
    from tests.contract.test_platform_bounds import spec_factory
    from tests.store.test_sync import sandbox_settings, stored_ids

    name = "tokoshop-fb"
    settings = sandbox_settings(sandbox, db_url, overlap_seconds=5)
    factory = spec_factory(settings)
    [first] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    assert first.status == "ok", first.error
    thread = sandbox.threads(name)[0]
    burst = sandbox.burst(name, thread, 25)
    sandbox.fault("poison", account=name, target=thread, field="message_count", value=count)
    [result] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    assert result.status == "ok", result.error
    assert set(burst[-20:]) <= set(stored_ids(engine, name))
    fresh = sandbox.inject(name, text="halo kak", customer="pembeli lain")
    [after] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
    assert after.status == "ok" and fresh in stored_ids(engine, name), after.error


# ── Instagram's `changes` form of a message webhook ────────────────────────────────────────────


def test_an_instagram_message_in_the_changes_form_is_stored_like_its_messaging_form() -> None:
    """Instagram Login (and the App Dashboard's test button) may deliver a DM as
    `entry[].changes[{field: "messages", value: <messaging event>}]`: the same message as the
    `messaging[]` form, under the same key; a comment in the same entry is still not a DM."""
    from connectors import meta_webhook
    from connectors.enums import Channel
    from connectors.graph_parse import MetaContext

    ig = "17841400000000002"
    ctx = MetaContext(channel=Channel.INSTAGRAM, account_id=ig, own_ids=frozenset({ig}))
    event = {"sender": {"id": "7010000000000001"}, "recipient": {"id": ig}, "timestamp": "1764750000",
             "message": {"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAw", "text": "kak, barang saya rusak"}}
    comment = {"field": "comments", "value": {"id": "179", "from": {"id": "70100", "username": "x"}, "text": "mantap"}}
    as_changes = {"object": "instagram", "entry": [{"id": ig, "time": 1764750001000,
                                                    "changes": [comment, {"field": "messages", "value": event}]}]}
    as_messaging = {"object": "instagram", "entry": [{"id": ig, "time": 1764750001000, "messaging": [event]}]}
    thread_of = lambda _ctx, customer: "user:" + customer  # noqa: E731
    accounts = {(Channel.INSTAGRAM, ig): ctx}
    [got] = meta_webhook.parse(as_changes, accounts, thread_of).batches
    [want] = meta_webhook.parse(as_messaging, accounts, thread_of).batches
    assert got.messages == want.messages and len(got.messages) == 1
    assert meta_webhook.customers(as_changes, accounts) == {(ctx, "7010000000000001")}


# ── send answers ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
@pytest.mark.parametrize(("given", "expected"), [
    ("12345678901234567", "12345678901234567"),  # the id as a JSON number
    ("x" * 300, None),  # longer than any platform id (and the store's column): not an id we can keep
    ("", None),
    ("[1]", None),
], ids=["number", "too-long", "empty", "list"])
def test_a_send_answer_with_an_odd_message_id_is_kept_or_is_an_unknown_delivery(sb: Any, name: str, given: str, expected: str | None) -> None:
    """The platform carried the send out; its answer's id is a number (kept, as the string it is), or
    nothing a message id can be: then the delivery is unknown (settled by the echo), never an id the
    store refuses after the customer got the message."""
    from connectors.base import OutboundReply
    from connectors.enums import ReplyPolicy
    from connectors.errors import DeliveryUnknownError

    x = name == "tokoshop-x"
    value = given if given.startswith("[") or given.isdigit() else json.dumps(given)
    body = f'{{"data": {{"dm_conversation_id": "1-2", "dm_event_id": {value}}}}}' if x else f'{{"recipient_id": "1", "message_id": {value}}}'
    sb.fault("answer", account=name, path="/messages", method="POST", status=201 if x else 200, body=body, content_type="application/json")
    conn = open_connector(sb, name)
    thread = sb.threads(name)[0]
    customer = next(m for m in sb.thread_messages(name, thread) if m.get("direction", "in") == "in")
    recipient = str(customer.get("sender_id") or customer.get("from_id"))
    reply = OutboundReply(thread_id=thread, recipient_id=recipient, text="Halo kak, sudah kami cek ya",
                          policy=ReplyPolicy.DIRECT if x else ReplyPolicy.RESPONSE, idempotency_key="reply-odd-id")
    if expected is None:
        with pytest.raises(DeliveryUnknownError):
            conn.send(reply)
    else:
        assert conn.send(reply).external_id == expected
    conn.close()


@pytest.mark.skipif(not X_MEDIA.is_file(), reason=f"recorded fixture not present at {X_MEDIA}")
def test_an_x_webhook_for_a_zero_padded_account_id_is_that_accounts() -> None:
    from connectors import x_webhook

    body = json.loads(X_MEDIA.read_text(encoding="utf-8-sig"))
    owner = body["for_user_id"]
    body["for_user_id"] = "00" + owner
    [batch] = x_webhook.parse(body, frozenset({owner})).batches
    assert batch.account_id == owner and len(batch.messages) == 1 and not batch.quarantined
