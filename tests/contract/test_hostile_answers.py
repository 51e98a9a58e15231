"""Answers as hostile platforms and proxies send them, over real HTTP: error objects with a 200, pages
that are no page, compressed bodies, times written another way, Retry-After as seconds or a date,
counts no column holds, odd send answers, and webhook bodies of unusual shapes. Each case asserts
that the account keeps going, with the failure classified and no token in errors or logs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_connectors_contract import META, Store, drain, open_connector, reachable_ids
from tests.contract.test_connectors_contract import sb  # noqa: F401 - the contract tests' sandbox fixture



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
