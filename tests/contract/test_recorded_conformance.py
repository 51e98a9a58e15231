"""The parsers against real recorded payloads in ../shared/fixtures/recorded (read in place, never copied).

Parsed here (polling-API bodies):
- pyfacebook: Graph message nodes (single, batch keyed by id, full model), conversation nodes and
  Graph error bodies (recorded on a real Page, Graph v10).
- meta-fbsamples messenger collection: every recorded Send API answer (`message_id`).
- pytwitter and x-docs-samples: X v2 dm_events pages (with `includes`), every event type, the create answer.
- tweepy decoded cassettes (sync and async client): v2 create answers, the empty page, the bare
  default-field events (time from the snowflake), and the rate-limit headers.

Skipped, and why:
- courier, botbuilder-dotnet, chatwoot-derived, zammad `twitter_webhook_events` and `webhook1`:
  webhook bodies (Meta `entry[].messaging[]`, X Account Activity); these connectors poll, they do
  not receive webhooks.
- tweepy `testgetdirectmessages`, `testsendanddeletedirectmessage`, `test_api_indicate_direct_message_typing`,
  bear-python-twitter and the zammad send cassette: X API v1.1 DM endpoints, which the connector does
  not call.
- meta-fbsamples instagram collection: request templates only, no recorded answers; and the
  messenger collection's Attachment Upload answer (no upload is made).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.enums import Channel, Direction, MessageKind
from connectors.responses import classify, rate_info
from connectors.errors import ParseError, PermanentError
from connectors.graph_parse import MetaContext, parse_conversation, parse_message, sent_message_id
from connectors.times import parse_time, snowflake_time
from connectors.x_parse import created_event, event_items, next_token, parse_event, parse_includes, to_message

RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"
pytestmark = pytest.mark.skipif(not RECORDED.is_dir(), reason=f"recorded fixtures not present at {RECORDED}")

MYLIFE_PAGE = "2121008874780932"  # pyfacebook's test Page
KUN_LIU = "2711636948859886"
FB = MetaContext(Channel.FACEBOOK, MYLIFE_PAGE, frozenset({MYLIFE_PAGE}))


def load(rel: str) -> Any:
    return json.loads((RECORDED / rel).read_text(encoding="utf-8-sig"))


# --- Graph (pyfacebook) -----------------------------------------------------------------------
@pytest.mark.parametrize("rel", ["pyfacebook/apidata__messages__message_info.json", "pyfacebook/models__message.json"])
def test_pyfacebook_message_node(rel: str) -> None:
    raw = load(rel)
    msg = parse_message(raw, FB, thread_id="t_587956915396498")
    assert msg.external_id == raw["id"] and msg.external_id.startswith("m_")
    assert msg.sent_at == datetime(2021, 7, 23, 9, 50, 48, tzinfo=timezone.utc)
    assert msg.direction is Direction.IN
    assert msg.author.id == KUN_LIU and msg.author.name == "Kun Liu" and msg.customer == msg.author
    assert msg.text == raw.get("message")  # present in the model file only ("Love is peace!😏")
    (att,) = msg.attachments
    assert (att.type, att.mime, att.size) == ("image", "image/jpeg", 54542)
    assert att.url == raw["attachments"]["data"][0]["image_data"]["url"]
    assert msg.kind is MessageKind.ATTACHMENT
    assert msg.raw["id"] == raw["id"]
    # The attachments edge's paging.next carries access_token: the kept payload must not.
    assert "access_token=access_token" in json.dumps(raw)
    assert "access_token=access_token" not in json.dumps(msg.raw) and "access_token=****" in json.dumps(msg.raw)


def test_pyfacebook_message_batch_image_and_video() -> None:
    batch = load("pyfacebook/apidata__messages__messages_info.json")
    msgs = {mid: parse_message(node, FB, thread_id="t_587956915396498") for mid, node in batch.items()}
    assert set(msgs) == {m.external_id for m in msgs.values()}
    kinds = sorted(a.type for m in msgs.values() for a in m.attachments)
    assert kinds == ["image", "video"]
    video = next(a for m in msgs.values() for a in m.attachments if a.type == "video")
    assert video.mime == "video/mp4" and video.url and video.url.startswith("https://")
    for mid, node in batch.items():
        assert msgs[mid].sent_at == parse_time(node["created_time"])


@pytest.mark.parametrize(
    "rel", ["pyfacebook/apidata__conversations__cvs_info.json", "pyfacebook/models__conversation.json"]
)
def test_pyfacebook_conversation_node(rel: str) -> None:
    raw = load(rel)
    conv = parse_conversation(raw)
    assert conv.id == "t_587956915396498"
    assert conv.updated_time == parse_time(raw["updated_time"]) and conv.updated_time.tzinfo is not None
    assert conv.message_count == raw["message_count"]
    assert {p.id for p in conv.participants} == {p["id"] for p in raw.get("participants", {}).get("data", [])}


def test_pyfacebook_conversation_batch() -> None:
    batch = load("pyfacebook/apidata__conversations__cvses_info.json")
    convs = [parse_conversation(node) for node in batch.values()]
    assert [c.id for c in convs] == list(batch)
    assert [c.message_count for c in convs] == [94, 11]


@pytest.mark.parametrize("rel", ["pyfacebook/base__error_data.json", "pyfacebook/error.json"])
def test_pyfacebook_errors_are_permanent(rel: str) -> None:
    r = requests.Response()
    r.status_code = 400
    r._content = json.dumps(load(rel)).encode()
    r.request = requests.Request("GET", "https://graph.facebook.com/v10.0/t_587956915396498").prepare()
    error = classify(r)
    assert isinstance(error, PermanentError) and error.code == 100
    assert "(#100)" in str(error) and "fbtrace_id" in str(error)


def _postman_items(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(_postman_items(item["item"]) if "item" in item else [item])
    return out


def test_meta_postman_send_answers() -> None:
    collection = load("meta-fbsamples/messenger-platform-api.postman_collection.json")
    answers = [
        json.loads(r["body"])
        for item in _postman_items(collection["item"])
        if item["request"].get("method") == "POST" and item["request"]["url"]["raw"].rstrip("/").endswith("/messages")
        for r in item.get("response", [])
        if r.get("code") == 200 and r.get("body")
    ]
    assert len(answers) >= 6
    for body in answers:
        assert sent_message_id(body) == body["message_id"] and body["message_id"].startswith("m_")


# --- X v2 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rel",
    ["pytwitter/dm_events_events.json", "pytwitter/dm_events_events_by_conversation.json", "pytwitter/dm_events_events_by_participant.json"],
)
def test_pytwitter_lookup_pages(rel: str) -> None:
    body = load(rel)
    items = event_items(body)
    assert items
    for item in items:
        msg = to_message(parse_event(item), parse_includes(body), account_id="1500000000000000001")
        assert msg.external_id == item["id"] and msg.text == item["text"]
        assert msg.sent_at == parse_time(item["created_at"])
        assert abs(msg.sent_at - snowflake_time(item["id"])) < timedelta(seconds=1)
        assert msg.thread_id == item["dm_conversation_id"] and msg.direction is Direction.IN
        assert msg.author.id == item["sender_id"] == msg.customer.id


def test_pytwitter_create_answer() -> None:
    assert created_event(load("pytwitter/dm_events_events_create.json")) == ("128341038123", "1346889436626259968")


def test_x_docs_sample_with_includes_both_directions() -> None:
    body = load("x-docs-samples/dm_conversations_with_participant_dm_events__docs_sample.json")
    includes = parse_includes(body)
    assert next_token(body) == body["meta"]["next_token"]
    for item in event_items(body):
        event = parse_event(item)
        inbound = to_message(event, includes, account_id="906948460078698496")
        assert inbound.direction is Direction.IN and inbound.author.handle == "FloodSocial"
        assert inbound.author.name == "API Demos"
        outbound = to_message(event, includes, account_id="944480690")
        assert outbound.direction is Direction.OUT and outbound.customer.handle == "SnowBotDev"
        assert outbound.thread_id == "944480690-906948460078698496"
        assert outbound.sent_at == parse_time(item["created_at"]) and outbound.text == item["text"]


def test_x_docs_event_types() -> None:
    samples = load("x-docs-samples/dm_event_types__docs_samples.json")
    create = to_message(parse_event(samples["MessageCreate"]), parse_includes({}), account_id="1")
    assert create.text == "Hi everyone." and create.thread_id == "1578398451921985538"
    for kind in ("ParticipantsJoin", "ParticipantsLeave"):
        event = parse_event(samples[kind])
        assert event.event_type == kind and event.participant_ids == ("944480690",)
        assert event.created_at == parse_time(samples[kind]["created_at"])
        with pytest.raises(ParseError, match="not a message"):
            to_message(event, parse_includes({}), account_id="1")


@pytest.mark.parametrize(
    "rel",
    ["tweepy/test_manage_and_lookup_direct_messages.decoded.json", "tweepy/test_asyncclient_manage_and_lookup_direct_messages.decoded.json"],
)
def test_tweepy_cassette_v2(rel: str) -> None:
    interactions = load(rel)
    created: set[str] = set()
    listed: set[str] = set()
    recorded_at = datetime(2022, 10, 28, tzinfo=timezone.utc)
    for it in interactions:
        body = it["response_body"]
        headers = {k: v[0] for k, v in it.get("response_headers_subset", {}).items()}
        rate = rate_info(headers)
        assert rate is not None and rate.limit in (200, 300) and rate.remaining is not None and rate.reset_at is not None
        if it["method"] == "POST":
            event_id, conversation_id = created_event(body)
            assert event_id == body["data"]["dm_event_id"] and conversation_id
            created.add(event_id)
            continue
        items = event_items(body)  # includes the empty `{"meta":{"result_count":0}}` page
        assert len(items) == body["meta"]["result_count"]
        for item in items:
            event = parse_event(item)  # default fields only: id, event_type, text
            assert event.text == item["text"] and event.sender_id is None
            assert abs(event.created_at - recorded_at) < timedelta(days=2)  # from the snowflake
            with pytest.raises(ParseError, match="sender_id"):
                to_message(event, parse_includes(body), account_id="1072250532645998596")
            listed.add(event.id)
    assert listed and listed <= created
