"""Every recorded webhook payload in ../shared/fixtures/recorded, parsed to the outcome its source expects.

Read in place, never copied. Sources: courier's Messenger and Instagram cases, with their expected
outcomes in `courier_meta_cases.derived.json` (text, sender, id, time, attachments, or the reason it
is not a message); chatwoot's Instagram events; botbuilder's Messenger payloads; zammad's X Account
Activity events; X's docs samples of v2 DM events (the X Activity API's payload form).

Outcomes: a stored message (id, text, sender, time, attachments), an echo (ours), ignored with a
reason, or quarantined. Where we differ from the source on purpose, the case says why, and the
agreement figure (`AGREEING`) counts it as a difference.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.enums import Channel
from connectors.graph_parse import MetaContext
from connectors.base import ParsedDelivery

RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"
pytestmark = pytest.mark.skipif(not RECORDED.is_dir(), reason=f"recorded fixtures not present at {RECORDED}")
RECEIVED = datetime(2026, 12, 2, tzinfo=timezone.utc)


def load(rel: str) -> Any:
    return json.loads((RECORDED / rel).read_text(encoding="utf-8-sig"))


def ctx(channel: Channel, account: str, *others: str) -> MetaContext:
    return MetaContext(channel, account, frozenset({account, *others}))


META_ACCOUNTS = {
    (c.channel, c.account_id): c
    for c in (
        ctx(Channel.FACEBOOK, "1234567890"), ctx(Channel.INSTAGRAM, "1234567890"),  # courier
        ctx(Channel.FACEBOOK, "0"), ctx(Channel.FACEBOOK, "page1"), ctx(Channel.FACEBOOK, "fakeId"),  # botbuilder
        ctx(Channel.FACEBOOK, "123123123"),
        ctx(Channel.INSTAGRAM, "instagram-message-id-123", "chatwoot-app-user-id-1"),  # chatwoot
        ctx(Channel.INSTAGRAM, "instagram-message-id-1234", "chatwoot-app-user-id-1"),
    )
}


def thread_of(c: MetaContext, customer: str) -> str:
    return f"t_{customer}"


def outcome(parsed: ParsedDelivery) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for b in parsed.batches:
        for m in b.messages:
            if m.direction.value == "out":
                out.append(("echo", m.external_id, m.customer.id))
            else:
                out.append(("message", m.external_id, m.text, m.author.id, m.sent_at.isoformat(timespec="milliseconds"), m.kind.value,
                            tuple(a.url for a in m.attachments)))
        out.extend(("quarantined",) for _q in b.quarantined)
    out.extend(("ignored", i.what) for i in parsed.ignored)
    return out


def meta(rel: str) -> list[tuple[Any, ...]]:
    from connectors import meta_webhook

    return outcome(meta_webhook.parse(load(rel), META_ACCOUNTS, thread_of, received=RECEIVED))


def x(body: Any, account: str) -> list[tuple[Any, ...]]:
    from connectors import x_webhook

    return outcome(x_webhook.parse(body, frozenset({account}), received=RECEIVED))


# ── courier: its own expected outcomes, case by case ─────────────────────────────────────────

COURIER = load("courier/courier_meta_cases.derived.json") if RECORDED.is_dir() else {"facebook": {"incoming": []}, "instagram": {"incoming": []}}
COURIER_CASES = [(ch, c) for ch in ("facebook", "instagram") for c in COURIER[ch]["incoming"]]

# What courier's expected body says, as our outcome (courier answers 200 with a reason; we log it).
_IGNORED_BY_REASON = {
    '"ignoring optin"': "optin", "`\"data\":[]`": "message", '"no entries found"': None,
}
# Differences on purpose, each with the reason (counted as disagreeing).
COURIER_DIFFERENT = {
    "Invalid URN": "courier refuses a non-numeric sender id; we store what Meta sends, as the poll does (chatwoot's "
                   "payloads use such ids too)",
}


def _courier_expected(channel: str, case: dict[str, Any]) -> list[tuple[Any, ...]] | str:
    label, body = case["label"], case.get("expected_body_contains", "")
    if case.get("input_inline"):
        return "unreadable"
    if case["signature"] == "invalid":
        return "refused"
    if "expected_external_id" in case:
        urn = case["expected_urn"].split(":", 1)[1]
        text = case["expected_text"] or None
        kind = "attachment" if case.get("expected_attachments") else "text"
        return [("message", case["expected_external_id"], text, urn, case["expected_date_utc"].replace("Z", "+00:00"), kind,
                 tuple(case.get("expected_attachments", ())))] * (2 if "Duplicate" in label else 1)
    if body == "`ignoring echo`":
        return [("echo",)]
    if body == "`ignoring story_mention`":
        return [("story_mention",)]
    if body == "`msg deleted`":
        return [("deleted",)]
    if "object expected" in body:
        return [("ignored", "delivery")]
    if body in _IGNORED_BY_REASON:
        what = _IGNORED_BY_REASON[body]
        return [] if what is None else [("ignored", what)]
    if '"invalid ' in body:
        return [("quarantined",)]
    if "DLR" in label:
        return [("ignored", "delivery")]
    if "unsupported" in label:
        return [("attachment",)]
    if body == '"Handled"' or "referrer_id" in body:
        return [("ignored", "*")]  # postbacks, referrals, opt-ins, unknown events: acknowledged, not tickets
    raise AssertionError(f"no expectation for {label}")


def _agrees(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if w[0] == "echo":
            ok = g[0] == "echo"
        elif w[0] in ("story_mention", "deleted", "attachment"):
            ok = g[0] == "message" and g[5] == w[0]
        elif w[0] == "ignored" and w[1] == "*":
            ok = g[0] == "ignored"
        elif w[0] == "message":
            # courier's "kind" is ours to tell: compare what it states (id, text, sender, time, attachments)
            ok = g[0] == "message" and (g[1], g[2], g[3], g[4], g[6]) == (w[1], w[2], w[3], w[4], w[6])
        else:
            ok = g == w
        if not ok:
            return False
    return True


def _courier_agrees(channel: str, case: dict[str, Any]) -> bool:
    from connectors import meta_webhook

    want = _courier_expected(channel, case)
    if want == "unreadable":
        return _refused_as_unreadable()
    if want == "refused":
        raw = (RECORDED / "courier" / case["input_file"]).read_bytes()
        return not meta_webhook.verify("courier-secret", raw, "sha256=" + "0" * 64)
    return _agrees(meta("courier/" + case["input_file"]), want)  # type: ignore[arg-type]


def _refused_as_unreadable() -> bool:
    """courier's "Not JSON": with a valid signature, answered 400 and the raw body quarantined."""
    from inbox.intake import receiver

    stored: list[str | None] = []

    def store(_engine: Any, _source: str, _body: bytes, _ct: str | None, reason: str | None = None) -> int:
        stored.append(reason)
        return 1

    import hashlib
    import hmac

    body = b"not JSON"
    sig = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    original = receiver.store
    receiver.store = store  # type: ignore[assignment]
    try:
        resp, _ = receiver.receive(None, receiver.Secrets(meta_app_secret="k"), "meta", body,  # type: ignore[arg-type]
                                 {"content-type": "application/json", "x-hub-signature-256": sig})
    finally:
        receiver.store = original  # type: ignore[assignment]
    return resp.status == 400 and len(stored) == 1 and stored[0] is not None


@pytest.mark.parametrize(("channel", "case"), COURIER_CASES, ids=[f"{ch}:{c['label']}" for ch, c in COURIER_CASES])
def test_courier_case(channel: str, case: dict[str, Any]) -> None:
    agrees = _courier_agrees(channel, case)
    assert agrees is (case["label"] not in COURIER_DIFFERENT), (case["label"], COURIER_DIFFERENT.get(case["label"]))


def test_courier_different_case_is_stored_as_the_platform_sent_it() -> None:
    assert meta("courier/fba/invalid_urn.json") == [
        ("message", "external_id", "Hello World", "abc5678", "2016-04-07T01:11:27.970+00:00", "text", ())]


# ── the other sources: our expected outcome, with the source's where it differs ──────────────

T0 = "2021-09-08T06:34:04.000+00:00"
OTHER_CASES: list[tuple[str, Any, list[tuple[Any, ...]], str | None]] = [
    # (label, how to parse, expected outcome, why it differs from the source: None when it agrees)
    ("chatwoot: text", ("chatwoot", "instagram_message_create_event"),
     [("message", "message-id-1", "This is the first message from the customer", "Sender-id-1", T0, "text", ())], None),
    ("chatwoot: standby", ("chatwoot", "instagram_message_standby_event"),
     [("message", "message-id-1", "This is the first standby message from the customer, after 24 hours.", "Sender-id-1", T0, "text", ())], None),
    ("chatwoot: story reply", ("chatwoot", "instagram_story_reply_event"),
     [("message", "message-id-1", "This is the story reply", "Sender-id-1", T0, "story_reply", ("https://chatwoot-assets.local/sample.png",))], None),
    ("chatwoot: Meta's dashboard test event (entry id 0: no such account)", ("chatwoot", "instagram_test_text_event"),
     [("ignored", "entry")], None),
    ("chatwoot: unsend", ("chatwoot", "instagram_message_unsend_event"),
     [("message", "message-id-to-delete", None, "Sender-id-1", T0, "deleted", ())], None),
    ("chatwoot: shared post", ("chatwoot", "instagram_message_attachment_event"),
     [("message", "message-id-1", None, "Sender-id-1", T0, "share", ("https://www.example.com/test.jpeg",))], None),
    ("chatwoot: story mention", ("chatwoot", "instagram_story_mention_event"),
     [("message", "message-id-1", None, "Sender-id-1", T0, "story_mention", ("https://www.example.com/test.jpeg",))], None),
    ("chatwoot: story mention echo", ("chatwoot", "instagram_story_mention_event_with_echo"),
     [("echo", "message-id-1", "Sender-id-1")], None),
    ("chatwoot: seen", ("chatwoot", "messaging_seen_event"), [("ignored", "read")], None),
    ("botbuilder: text", ("meta", "botbuilder-dotnet/Payload.json"), [("quarantined",)],
     "placeholder ids: the sender is the Page itself (id 0 for entry, sender and recipient); the Graph parser refuses the same"),
    ("botbuilder: standby", ("meta", "botbuilder-dotnet/PayloadWithStandby.json"),
     [("ignored", "message"), ("ignored", "event"), ("ignored", "event")],
     "placeholder ids: the message is addressed to recipient 0, not to the entry's Page (page1); the standby events carry no message"),
    ("botbuilder: pass thread control", ("meta", "botbuilder-dotnet/PayloadWithPassThreadControl.json"), [("ignored", "pass_thread_control")], None),
    ("botbuilder: take thread control", ("meta", "botbuilder-dotnet/PayloadWithTakeThreadControl.json"), [("ignored", "take_thread_control")], None),
    ("botbuilder: request thread control", ("meta", "botbuilder-dotnet/PayloadWithRequestThreadControl.json"), [("ignored", "request_thread_control")], None),
    ("botbuilder: referral", ("meta", "botbuilder-dotnet/PayloadWithReferral.json"), [("ignored", "referral")], None),
    ("botbuilder: real-length mid", ("meta", "botbuilder-dotnet/RequestResponse.json"), [("quarantined",)],
     "anonymized ids: sender and recipient are both the Page (123123123)"),
    ("zammad: incoming", ("x", "zammad/twitter_webhook_events/direct_message-incoming.json", "2975699229"),
     [("message", "1206724334791753732", "Yes, you are!", "1205290247124217856", "2019-12-16T23:54:35.925+00:00", "text", ())], None),
    ("zammad: incoming, same thread", ("x", "zammad/twitter_webhook_events/direct_message-incoming_2.json", "2975699229"),
     [("message", "1207556329834835973", "and I'm a hungry, hungry hippo!", "1205290247124217856", "2019-12-19T07:00:39.001+00:00", "text", ())], None),
    ("zammad: with url", ("x", "zammad/twitter_webhook_events/direct_message-incoming_with_url.json", "2975699229"),
     [("message", "1209004344399429636", "Did you know about this? https://t.co/SJ8nWqjwhz", "1205290247124217856",
       "2019-12-23T06:54:32.576+00:00", "text", ())], None),
    ("zammad: with media (the media's own t.co link stripped)", ("x", "zammad/twitter_webhook_events/direct_message-incoming_with_media.json", "2975699229"),
     [("message", "1209117907864571908", None, "1205290247124217856", "2019-12-23T14:25:48.216+00:00", "attachment",
       ("https://video.twimg.com/dm_gif/1209117874389843969/Lgs2ZRqicjZjx6kFdwQcu2T5rmEq7br_m8QKHj-RybsPv0yeq5.mp4",))], None),
    ("zammad: outgoing (sent from another client)", ("x", "zammad/twitter_webhook_events/direct_message-outgoing.json", "2975699229"),
     [("echo", "1206724203514228741", "1205290247124217856")], None),
    ("zammad: typing", ("x", "zammad/twitter_webhook_events/direct_message_indicate_typing.json", "2975699229"), [("ignored", "typing")], None),
    ("zammad: read", ("x", "zammad/twitter_webhook_events/direct_message_mark_read.json", "2975699229"), [("ignored", "read")], None),
    ("zammad: full webhook (anonymized ids), ours", ("x-params", "zammad/webhook1_direct_message.json", "123"),
     [("echo", "1062015437679050760", "456")], None),
    ("zammad: full webhook, for another account", ("x-params", "zammad/webhook1_direct_message.json", "999"), [("ignored", "delivery")], None),
    ("x docs: MessageCreate as dm.received", ("x-activity", "x-docs-samples/dm_event_types__docs_samples.json", "MessageCreate", "17200003"),
     [("message", "1582838499983564806", "Hi everyone.", "944480690", "2022-10-19T20:58:00.000+00:00", "text", ())], None),
    ("x docs: ParticipantsJoin", ("x-activity", "x-docs-samples/dm_event_types__docs_samples.json", "ParticipantsJoin", "17200003"),
     [("ignored", "event")], None),
    ("x docs: ParticipantsLeave", ("x-activity", "x-docs-samples/dm_event_types__docs_samples.json", "ParticipantsLeave", "17200003"),
     [("ignored", "event")], None),
] + [
    (f"x docs: 1:1 event {i} as dm.received", ("x-activity-list", "x-docs-samples/dm_conversations_with_participant_dm_events__docs_sample.json", i, "906948460078698496"),
     [("message", ev_id, text, "944480690", at, "text", ())], None)
    for i, (ev_id, text, at) in enumerate([
        ("1585047616894574596", "Hello, just you!", "2022-10-25T23:16:15.000+00:00"),
        ("1581048670673260549", "Simple Tweet link: https://t.co/IYFbRIdXHg", "2022-10-14T22:25:52.000+00:00"),
        ("1580705121553420292", "Adding a new 1-to-1 Direct Message.", "2022-10-13T23:40:43.000+00:00"),
    ])
]


def _run(how: Any) -> list[tuple[Any, ...]]:
    kind = how[0]
    if kind == "chatwoot":
        return outcome(__import__("connectors.meta_webhook", fromlist=["parse"]).parse(
            load("chatwoot-derived/instagram_message_create_event.factories.json")[how[1]],
            {k: c for k, c in META_ACCOUNTS.items() if k[0] is Channel.INSTAGRAM and k[1] != "1234567890"}, thread_of, received=RECEIVED))
    if kind == "meta":
        return meta(how[1])
    if kind == "x":
        return x(load(how[1]), how[2])
    if kind == "x-params":
        return x(load(how[1])["params"], how[2])
    if kind == "x-activity":
        event = load(how[1])[how[2]]
        return x({"data": {"event_type": "dm.received", "filter": {"user_id": how[3]}, "payload": event}}, how[3])
    body = load(how[1])
    event = body["data"][how[2]]
    return x({"event_type": "dm.received", "filter": {"user_id": how[3]}, "payload": event, "includes": body["includes"]}, how[3])


@pytest.mark.parametrize(("label", "how", "expected", "differs"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_recorded_payload(label: str, how: Any, expected: list[tuple[Any, ...]], differs: str | None) -> None:
    assert _run(how) == expected


def test_agreement_with_the_sources() -> None:
    """The figure the README quotes: cases whose outcome is the one their source expects."""
    courier = sum(_courier_agrees(ch, c) for ch, c in COURIER_CASES)
    others = sum(differs is None and _run(how) == expected for _l, how, expected, differs in OTHER_CASES)
    total = len(COURIER_CASES) + len(OTHER_CASES)
    agreeing = courier + others
    print(f"\nrecorded webhook payloads: {agreeing}/{total} agree with their source ({100 * agreeing / total:.1f} %)")
    assert (agreeing, total) == (AGREEING, TOTAL)


AGREEING, TOTAL = 66, 71  # the 5 others: courier's two "Invalid URN", botbuilder's three placeholder-id payloads
