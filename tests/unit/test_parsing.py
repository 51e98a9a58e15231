"""Parsing and classification on the project's own fixtures (tests/fixtures/), no network.

The fixtures are written in the documented shapes: a Messenger thread with image, video, file, EU
placeholder, sticker and an empty shell; Instagram story reply / mention / share / unsupported and an
echo; a conversations page with every timestamp form; an X lookup page with includes; Graph and X
error bodies.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.enums import Channel, Direction, MessageKind
from connectors.responses import classify, rate_info, retry_hint
from connectors.errors import (
    DeliveryUnknownError,
    MalformedResponseError,
    NeedsReauthError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryLaterError,
    ServerError,
    WindowClosedError,
)
from connectors.errors import ParseError
from connectors.graph_parse import MetaContext, message_items, parse_conversation, parse_message
from connectors.times import parse_time, snowflake_time
from connectors.x_parse import event_items, next_token, parse_event, parse_includes, to_message

FIXTURES = Path(__file__).parent.parent / "fixtures"
PAGE_ID = "104920378912345"
IG_ID = "17841400000000001"
X_ME = "1500000000000000001"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- timestamps -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "2026-11-24T09:15:02+0000",
        "2026-11-24T09:15:02Z",
        "2026-11-24T09:15:02.000Z",
        "2026-11-24T16:15:02+07:00",
        1795511702000,
        1795511702,
        "1795511702000",
        1795511702.0,
    ],
)
def test_every_timestamp_form_is_aware_utc(value: object) -> None:
    parsed = parse_time(value)
    assert parsed == datetime(2026, 11, 24, 9, 15, 2, tzinfo=timezone.utc)
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["", "yesterday", None, True, [1]])
def test_bad_timestamps_raise(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


def test_snowflake_time_agrees_with_created_at() -> None:
    for event in load("x/dm_events_page.json")["data"]:
        if "id" in event and "created_at" in event:
            assert abs(snowflake_time(event["id"]) - parse_time(event["created_at"])) < timedelta(seconds=1)


# --- Messenger --------------------------------------------------------------------------------
FB = MetaContext(Channel.FACEBOOK, PAGE_ID, frozenset({PAGE_ID}))
IG = MetaContext(Channel.INSTAGRAM, IG_ID, frozenset({IG_ID, PAGE_ID}))


def test_messenger_thread_kinds_directions_and_attachments() -> None:
    items = message_items(load("meta/messenger_thread_messages.json"))
    msgs = [parse_message(i, FB, thread_id="t_10229900112233445") for i in items]
    assert [m.kind for m in msgs] == [
        MessageKind.TEXT,
        MessageKind.ATTACHMENT,
        MessageKind.ATTACHMENT,
        MessageKind.ATTACHMENT,
        MessageKind.ATTACHMENT,
        MessageKind.DELETED,
        MessageKind.TEXT,
    ]
    echo, image, video, files, sticker, shell, first = msgs
    assert echo.direction is Direction.OUT
    assert echo.author.id == PAGE_ID and echo.customer.id == "6120437788123456"
    assert echo.customer.name == "Dewi Anggraini" and echo.customer.handle is None
    assert "🙏" in (echo.text or "")
    assert image.direction is Direction.IN and image.customer == image.author
    assert image.text == "Ini bukti transfernya kak"
    (att,) = image.attachments
    assert (att.type, att.mime, att.size) == ("image", "image/jpeg", 91822)
    assert att.url and att.url.startswith("https://scontent.xx.fbcdn.net/")
    assert video.text is None and video.attachments[0].type == "video" and video.attachments[0].size == 2281734
    pdf, placeholder = files.attachments
    assert (pdf.type, pdf.mime, pdf.name) == ("file", "application/pdf", "invoice-INV-20261120-MPL-3817265540.pdf")
    assert placeholder.type == "unavailable" and placeholder.url is None
    assert sticker.attachments[0].type == "sticker"
    assert shell.text is None and shell.attachments == ()
    assert first.sent_at == datetime(2026, 11, 24, 8, 55, tzinfo=timezone.utc)
    assert all(m.raw["id"] == m.external_id for m in msgs)
    assert "EAAFixtureTokenNeverReal000" in json.dumps(items[1])  # the attachments edge's paging.next
    assert all("EAAFixtureTokenNeverReal000" not in json.dumps(m.raw) for m in msgs)


# --- Instagram --------------------------------------------------------------------------------
def test_instagram_story_reply_mention_share_unsupported_and_echo() -> None:
    items = message_items(load("meta/instagram_messages.json"))
    msgs = [parse_message(i, IG, thread_id="aWdfIGthread") for i in items[:6]]
    kinds = [m.kind for m in msgs]
    assert kinds == [
        MessageKind.TEXT,
        MessageKind.STORY_REPLY,
        MessageKind.STORY_MENTION,
        MessageKind.SHARE,
        MessageKind.UNSUPPORTED,
        MessageKind.TEXT,
    ]
    echo, reply, mention, share, _unsupported, hello = msgs
    assert echo.direction is Direction.OUT and echo.customer.handle == "sari.putri_92"
    assert echo.author.handle == "tokoshop.official"
    assert reply.text and "story" in reply.text
    assert reply.attachments[0].type == "story_reply" and reply.attachments[0].name == "18045273900000001"
    assert mention.attachments[0].type == "story_mention" and mention.attachments[0].url
    assert share.attachments[0].type == "share" and "cdninstagram" in (share.attachments[0].url or "")
    assert hello.author.handle == "sari.putri_92" and hello.author.name is None
    with pytest.raises(ParseError, match="message id"):
        parse_message(items[6], IG, thread_id="aWdfIGthread")


def test_conversations_page_every_time_form_and_a_broken_row() -> None:
    body = load("meta/conversations_page.json")
    convs = [parse_conversation(i) for i in body["data"][:4]]
    assert [c.updated_time for c in convs] == [
        datetime(2026, 11, 24, 9, 15, 2, tzinfo=timezone.utc),
        datetime(2026, 11, 24, 8, 40, tzinfo=timezone.utc),
        datetime(2026, 11, 24, 7, 40, tzinfo=timezone.utc),
        datetime(2026, 11, 24, 6, 40, tzinfo=timezone.utc),
    ]
    assert convs[0].message_count == 7 and convs[1].message_count is None
    assert {p.id for p in convs[0].participants} == {"6120437788123456", PAGE_ID}
    # No updated_time: the thread is still read; its time is the platform's clock at listing, marked.
    listed = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
    broken = parse_conversation(body["data"][4], received=listed)
    assert broken.id == "t_10229900112233449" and broken.updated_time == listed and broken.stamp == "None"


def test_outbound_without_recipient_falls_back_to_participants() -> None:
    item = {"id": "m_1", "created_time": "2026-11-24T09:00:00+0000", "from": {"id": PAGE_ID}, "message": "Halo"}
    conv = parse_conversation(load("meta/conversations_page.json")["data"][0])
    msg = parse_message(item, FB, thread_id=conv.id, participants=conv.participants)
    assert msg.direction is Direction.OUT and msg.customer.id == "6120437788123456"
    with pytest.raises(ParseError):
        parse_message(item, FB, thread_id=conv.id)


# --- X ----------------------------------------------------------------------------------------
def test_x_page_with_includes() -> None:
    body = load("x/dm_events_page.json")
    includes = parse_includes(body)
    items = event_items(body)
    assert next_token(body) == "18LAA5FFIXTURE0NEXTZZZZ"
    out = to_message(parse_event(items[0]), includes, account_id=X_ME)
    assert out.direction is Direction.OUT and out.channel is Channel.X
    assert out.customer.handle == "bayupratama_" and out.author.name == "Tokoshop Care"
    assert out.thread_id == "1500000000000000001-1600000000000000042"
    media = to_message(parse_event(items[1]), includes, account_id=X_ME)
    assert media.kind is MessageKind.ATTACHMENT and media.attachments[0].type == "image"
    assert media.attachments[0].url and media.attachments[0].url.startswith("https://ton.twitter.com/")
    join = parse_event(items[2])
    assert join.event_type == "ParticipantsJoin"
    with pytest.raises(ParseError, match="not a message"):
        to_message(join, includes, account_id=X_ME)
    with pytest.raises(ParseError, match="event id"):
        parse_event(items[4])
    bare = to_message(parse_event(items[5]), includes, account_id=X_ME)
    assert bare.thread_id == "1500000000000000001-1600000000000000099"  # derived 1:1 id
    assert bare.sent_at == snowflake_time(items[5]["id"])  # no created_at: time from the snowflake
    assert bare.author.handle is None


def test_x_empty_page() -> None:
    body = load("x/dm_events_empty.json")
    assert event_items(body) == [] and next_token(body) is None


# --- classification ---------------------------------------------------------------------------
TOKEN = "EAAFixtureTokenNeverReal000"


def response(status: int, body: Any, headers: dict[str, str] | None = None, method: str = "GET") -> requests.Response:
    url = f"https://graph.facebook.com/v23.0/{PAGE_ID}/conversations?access_token={TOKEN}"
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers.update(headers or {})
    r.url = url
    r.request = requests.Request(method, url).prepare()
    return r


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("fixture", "status", "sending", "expected"),
    [
        ("meta/error_token_expired.json", 400, False, NeedsReauthError),
        ("meta/error_outside_window_ig.json", 400, True, WindowClosedError),
        ("meta/error_rate_limited.json", 400, False, RateLimitedError),
        ("meta/error_unavailable.json", 400, True, RecipientUnavailableError),
        ("meta/error_invalid_param.json", 400, True, PermanentError),
        ("meta/error_transient.json", 400, False, ServerError),
        ("x/problem_429.json", 429, False, RateLimitedError),
        ("x/problem_usage_capped.json", 429, False, RateLimitedError),
        ("x/problem_forbidden_send.json", 403, True, RecipientUnavailableError),
        ("x/problem_forbidden_send.json", 403, False, PermanentError),
    ],
)
def test_classify_error_bodies(fixture: str, status: int, sending: bool, expected: type) -> None:
    error = classify(response(status, load(fixture), method="POST" if sending else "GET"), sending=sending, now=NOW)
    assert type(error) is expected
    assert TOKEN not in str(error) and "access_token=" not in str(error).replace("access_token=****", "")


@pytest.mark.parametrize(
    ("status", "sending", "expected"),
    [
        (401, False, NeedsReauthError),
        (500, False, ServerError),
        (503, True, ServerError),
        (500, True, DeliveryUnknownError),
        (504, True, DeliveryUnknownError),
        (404, False, PermanentError),
    ],
)
def test_classify_status_only(status: int, sending: bool, expected: type) -> None:
    error = classify(response(status, b"<html>oops</html>"), sending=sending, now=NOW)
    assert type(error) is expected


@pytest.mark.parametrize("status", [400, 403, 404])
def test_an_error_whose_json_breaks_off_is_read_again(status: int) -> None:
    """An expired-token (or any) error answer cut in half says nothing certain: retry the read later,
    never fail the account on it; a send keeps its own rules (the platform did answer it)."""
    cut = json.dumps({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}}).encode()[:40]
    assert type(classify(response(status, cut), now=NOW)) is MalformedResponseError
    assert not isinstance(classify(response(status, cut, method="POST"), sending=True, now=NOW), RetryLaterError)


def test_success_is_not_an_error() -> None:
    assert classify(response(200, {"data": []})) is None


def test_rate_limit_retry_at_from_every_source() -> None:
    reset = int((NOW + timedelta(minutes=7)).timestamp())
    x = classify(response(429, load("x/problem_429.json"), {"x-rate-limit-reset": str(reset)}), now=NOW)
    assert isinstance(x, RateLimitedError) and x.retry_at == datetime.fromtimestamp(reset, tz=timezone.utc)
    buc = json.dumps({PAGE_ID: [{"type": "messenger", "call_count": 104, "total_cputime": 12, "total_time": 30, "estimated_time_to_regain_access": 3}]})
    meta = classify(response(400, load("meta/error_rate_limited.json"), {"X-Business-Use-Case-Usage": buc}), now=NOW)
    assert isinstance(meta, RateLimitedError) and meta.retry_at == NOW + timedelta(minutes=3)
    after = retry_hint({"Retry-After": "30"}, now=NOW)
    assert after == NOW + timedelta(seconds=30)
    bare = classify(response(429, {}), now=NOW)
    assert isinstance(bare, RateLimitedError) and bare.retry_at is not None and bare.retry_at > NOW


def test_rate_info_from_headers() -> None:
    x = rate_info({"x-rate-limit-limit": "15", "x-rate-limit-remaining": "3", "x-rate-limit-reset": "1795600000"}, now=NOW)
    assert x is not None and (x.limit, x.remaining) == (15, 3) and x.headroom == pytest.approx(0.2)
    buc = json.dumps({PAGE_ID: [{"type": "messenger", "call_count": 33, "total_cputime": 12, "total_time": 61, "estimated_time_to_regain_access": 0}]})
    meta = rate_info({"X-Business-Use-Case-Usage": buc, "X-App-Usage": '{"call_count":5,"total_cputime":1,"total_time":2}'}, now=NOW)
    assert meta is not None and meta.usage_pct == 61 and meta.reset_at is None
    assert meta.headroom == pytest.approx(0.39)
    page = rate_info({"X-Page-Usage": '{"call_count":92,"total_cputime":10,"total_time":11}'}, now=NOW)
    assert page is not None and page.usage_pct == 92
    assert rate_info({"Content-Type": "application/json"}) is None
    assert rate_info({"X-Business-Use-Case-Usage": "not json"}) is None


# --- raw payloads -----------------------------------------------------------------------------
def test_scrub_masks_every_secret_parameter_in_nested_payloads() -> None:
    from connectors.redact import scrub

    payload = {
        "id": "m_1",
        "message": "token=abc is plain text",
        "attachments": {
            "data": [{"image_data": {"url": "https://cdn.example/a.jpg?oh=1&oe=2"}}],
            "paging": {"next": "https://graph.facebook.com/v23.0/m_1/attachments?access_token=EAAGsecret123&after=QQ"},
        },
        "links": ["https://example.com/cb?refresh_token=r3fr3shsecret&x=1", "https://example.com/?fb_exchange_token=fbx5ecret"],
        "shouted": "https://example.com/cb?ACCESS_TOKEN=UPPERsecret99",
    }
    clean = scrub(payload)
    text = json.dumps(clean)
    for secret in ("EAAGsecret123", "r3fr3shsecret", "fbx5ecret", "UPPERsecret99"):
        assert secret not in text
    assert clean["attachments"]["paging"]["next"].endswith("access_token=****&after=QQ")
    assert clean["message"] == payload["message"] and clean["attachments"]["data"] == payload["attachments"]["data"]
    assert "EAAGsecret123" in payload["attachments"]["paging"]["next"], "the input is not modified"


@pytest.mark.parametrize(
    ("row", "usable"),
    [
        ({"id": "t_1", "messages": {"data": [{"id": "m_1"}], "paging": {"cursors": {"after": "QVFI"}}}}, True),
        ({"id": "t_1", "messages": {"data": []}}, True),  # an empty edge is an answer: nothing readable
        ({"id": "t_1"}, False),
        ({"id": "t_1", "messages": None}, False),
        ({"id": "t_1", "messages": [{"id": "m_1"}]}, False),
        ({"id": "t_1", "messages": "m_1"}, False),
        ({"id": "t_1", "messages": {"data": {"id": "m_1"}}}, False),
        ({"id": "t_1", "messages": {"data": [], "error": {"code": 1, "message": "An unknown error occurred"}}}, False),
        ("t_1", False),
        (None, False),
    ],
)
def test_a_list_row_nested_messages_edge_is_used_only_when_it_is_one(row: Any, usable: bool) -> None:
    """A row without a usable nested `messages` edge is read through the thread's own edge."""
    from connectors.graph_parse import nested_messages

    edge = nested_messages(row)
    assert (edge is not None) == usable
    if usable:
        assert edge is row["messages"]


@pytest.mark.parametrize(("value", "expected"), [
    ("Thu, 03 Dec 2026 08:58:04 GMT", datetime(2026, 12, 3, 8, 58, 4, tzinfo=timezone.utc)),
    ("Thu, 03 Dec 2026 15:58:04 +0700", datetime(2026, 12, 3, 8, 58, 4, tzinfo=timezone.utc)),
    ("Thu, 03 Dec 2026 08:58:04 -0000", datetime(2026, 12, 3, 8, 58, 4, tzinfo=timezone.utc)),  # no zone: UTC, not local time
    ("", None), (None, None), ("soon", None), ("Thu, 99 Foo 2026", None),
])
def test_http_dates_are_read_as_utc_instants(value, expected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    from connectors.times import http_date

    monkeypatch.setenv("TZ", "Asia/Jakarta")  # a local zone that is not UTC must change nothing
    time.tzset()
    try:
        assert http_date(value) == expected
    finally:
        monkeypatch.undo()
        time.tzset()
