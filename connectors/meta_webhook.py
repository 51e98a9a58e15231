"""Meta webhook deliveries (Messenger `object: page`, Instagram `object: instagram`) to messages.

Each `entry[].messaging[]` (or `standby[]`, under the handover protocol) event that carries a
`message` is rewritten into the Graph message node the poll reads (`{id, created_time, from, to,
message, attachments, shares, story, is_deleted, is_unsupported}`) and parsed by
`meta_parse.parse_message`, so both paths store the same values under the same key (the `mid`).
Echoes (`is_echo`) are ours: from the account, to the customer. An Instagram unsend (`is_deleted`,
the message's own mid again) is a message and also an `Edit` without text, for when it is stored
already. Other events (reads, deliveries,
edits, reactions, postbacks, referrals, opt-ins) are acknowledged, not stored, each with a reason.

A webhook names the customer, not the Graph conversation; `thread_of(ctx, customer_id)` (the
caller's) gives the conversation id the poll uses for that customer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.base import AccountBatch, Edit, Ignored, InboundMessage, ParsedDelivery, QuarantinedItem, bounded_text
from connectors.channels import CHANNELS
from connectors.enums import Channel, MessageKind
from connectors.errors import ParseError
from connectors.graph_parse import MetaContext, parse_message
from connectors.redact import scrub
from connectors.times import DEFAULT_SKEW, platform_time
from connectors.webhook import DeliveryError, check_signature, hmac_sha256

OBJECTS = {info.webhook_object: info.channel for info in CHANNELS.values() if info.webhook_object}  # "page", "instagram"
# Messenger's "like" stickers (the thumbs up button, three sizes): shown as the emoji they are.
LIKE_STICKERS = frozenset({"369239263222822", "369239343222814", "369239383222810"})
_NOT_MESSAGES = ("delivery", "read", "reaction", "postback", "referral", "optin",
                 "account_linking", "pass_thread_control", "take_thread_control", "request_thread_control",
                 "app_roles", "policy_enforcement", "game_play")

ThreadOf = Callable[[MetaContext, str], str]
MESSAGE_CHANGES = frozenset({"messages", "message_echoes", "message_edit", "messaging_seen", "message_reactions", "messaging_postbacks"})
PROVISIONAL = "user:"  # a thread id not known yet: "user:<customer id>", renamed when a poll meets the real one


def provisional_thread(customer_id: str) -> str:
    return PROVISIONAL + customer_id


def verify(app_secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`."""
    return check_signature(header, hmac_sha256(app_secret, body), encoding="hex")


def handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The `hub.challenge` to echo when the subscription handshake names our token, else None."""
    import hmac

    if params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token") or ""
    if not hmac.compare_digest(token.encode("utf-8", "replace"), verify_token.encode("utf-8")):
        return None
    challenge = params.get("hub.challenge")
    return challenge if challenge else None


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        return None
    return str(value)


def parse(
    body: Any,
    accounts: Mapping[tuple[Channel, str], MetaContext],
    thread_of: ThreadOf,
    *,
    received: datetime | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> ParsedDelivery:
    """One delivery. `accounts`: (channel, entry id) -> context of each configured account."""
    if not isinstance(body, Mapping):
        raise DeliveryError("delivery is not a JSON object")
    obj = body.get("object")
    channel = OBJECTS.get(obj) if isinstance(obj, str) else None
    if obj is not None and channel is None:
        return ParsedDelivery(ignored=(Ignored("delivery", f"object {str(obj)[:40]!r} is neither 'page' nor 'instagram'"),))
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise DeliveryError("delivery has no entry list")
    messages: dict[MetaContext, list[InboundMessage]] = {}
    quarantined: dict[MetaContext, list[QuarantinedItem]] = {}
    edits: dict[MetaContext, list[Edit]] = {}
    ignored: list[Ignored] = []
    for entry in entries:
        entry_id = _id(entry.get("id")) if isinstance(entry, Mapping) else None
        ctx = _account(accounts, channel, entry_id)
        if ctx is None:
            ignored.append(Ignored("entry", f"entry for an account not configured here ({str(entry_id)[:40]})", entry_id))
            continue
        events = entry_events(entry)
        if not events:
            if isinstance(entry.get("changes"), list):
                ignored.append(Ignored("changes", "entry changes (comments, mentions) are not direct messages", ctx.account_id))
            else:
                ignored.append(Ignored("entry", "entry without messaging events", ctx.account_id))
        for event in events:
            try:
                msg = parse_event(event, ctx, thread_of, received=received, skew=skew)
            except ParseError as exc:
                mid = event.get("message", {}).get("mid") if isinstance(event, Mapping) and isinstance(event.get("message"), Mapping) else None
                quarantined.setdefault(ctx, []).append(
                    QuarantinedItem(ctx.channel, ctx.account_id, f"webhook event: {exc}", scrub(event) if isinstance(event, Mapping) else event,
                                    external_id=str(mid) if isinstance(mid, (str, int)) else None)
                )
                continue
            if isinstance(msg, Ignored):
                ignored.append(msg)
            elif isinstance(msg, Edit):
                edits.setdefault(ctx, []).append(msg)
            else:
                messages.setdefault(ctx, []).append(msg)
                if msg.kind is MessageKind.DELETED and msg.raw.get("is_deleted") is True:
                    # An unsend repeats the message's mid: stored before, it is a change, not a new message.
                    edits.setdefault(ctx, []).append(Edit(msg.external_id, None, 0, msg.sent_at))
    batches = tuple(
        AccountBatch(ctx.channel, ctx.account_id, tuple(messages.get(ctx, ())), tuple(quarantined.get(ctx, ())), tuple(edits.get(ctx, ())))
        for ctx in dict.fromkeys([*messages, *quarantined, *edits])
    )
    return ParsedDelivery(batches, tuple(ignored))


def customers(body: Any, accounts: Mapping[tuple[Channel, str], MetaContext]) -> set[tuple[MetaContext, str]]:
    """The (account, customer id) of each message event in a delivery: whose threads `parse` asks
    `thread_of` for, so a caller can look them all up at once first. Never raises."""
    out: set[tuple[MetaContext, str]] = set()
    if not isinstance(body, Mapping) or not isinstance(body.get("entry"), list):
        return out
    obj = body.get("object")
    channel = OBJECTS.get(obj) if isinstance(obj, str) else None
    for entry in body["entry"]:
        ctx = _account(accounts, channel, _id(entry.get("id"))) if isinstance(entry, Mapping) else None
        if ctx is None:
            continue
        for event in entry_events(entry):
            if isinstance(event, Mapping) and isinstance(event.get("message"), Mapping):
                sender, recipient = _id(event.get("sender")), _id(event.get("recipient"))
                customer = recipient if sender in ctx.own_ids else sender
                if customer and customer not in ctx.own_ids:
                    out.add((ctx, customer))
    return out


def entry_events(entry: Mapping[str, Any]) -> list[Any]:
    """An entry's messaging events: `messaging[]`, `standby[]` (handover protocol), and the
    `changes[]` form Instagram Login (and the App Dashboard's test button) uses for messages,
    `{"field": "messages", "value": <the same event>}`. Other changes (comments, mentions) are not."""
    events = [e for key in ("messaging", "standby") for e in (entry.get(key) if isinstance(entry.get(key), list) else [])]
    for change in entry.get("changes") if isinstance(entry.get("changes"), list) else []:
        if isinstance(change, Mapping) and change.get("field") in MESSAGE_CHANGES and isinstance(change.get("value"), Mapping):
            events.append(change["value"])
    return events


def _account(accounts: Mapping[tuple[Channel, str], MetaContext], channel: Channel | None, entry_id: str | None) -> MetaContext | None:
    if entry_id is None:
        return None
    if channel is not None:
        return accounts.get((channel, entry_id))
    # No `object` (some captured payloads drop it): the one configured account with this id.
    found = [ctx for (_ch, key), ctx in accounts.items() if key == entry_id]
    return found[0] if len(found) == 1 else None


def parse_event(
    event: Any, ctx: MetaContext, thread_of: ThreadOf, *, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW
) -> InboundMessage | Edit | Ignored:
    """One `messaging[]` event: a message (or echo), an edit, or what it is and why it is not stored."""
    if not isinstance(event, Mapping):
        raise ParseError("messaging event is not an object")
    message = event.get("message")
    if isinstance(event.get("message_edit"), Mapping):
        return parse_edit(event, ctx, received=received, skew=skew)
    if not isinstance(message, Mapping):
        kind = next((k for k in _NOT_MESSAGES if k in event), None)
        if kind is not None:
            return Ignored(kind, f"{kind} event: not a message", ctx.account_id)
        return Ignored("event", "event without a message", ctx.account_id)
    sender, recipient = _id(event.get("sender")), _id(event.get("recipient"))
    echo = message.get("is_echo") is True
    # Ours when it is an echo; the customer is whichever side is not this account.
    if echo:
        customer = recipient if sender in ctx.own_ids or sender is None else sender
        if recipient not in ctx.own_ids and sender not in ctx.own_ids:
            return Ignored("message", "echo of another account's message", ctx.account_id)
    else:
        customer = sender
        if recipient is not None and recipient not in ctx.own_ids:
            return Ignored("message", f"addressed to another account ({recipient[:40]})", ctx.account_id)
    if not customer:
        raise ParseError("message without a usable sender")
    if customer in ctx.own_ids:
        raise ParseError("message whose customer side is this account itself")
    node = graph_node(message, event, ctx.account_id if echo else customer, customer)
    return parse_message(node, ctx, thread_id=thread_of(ctx, customer), received=received, skew=skew)


def parse_edit(event: Mapping[str, Any], ctx: MetaContext, *, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW) -> Edit | Ignored:
    """`message_edit: {mid, text, num_edit}`: the message's text as it is now."""
    edit = event["message_edit"]
    mid, text, count = edit.get("mid"), edit.get("text"), edit.get("num_edit")
    if not isinstance(mid, str) or not mid or len(mid) > 255:
        raise ParseError("message_edit without a usable mid")
    if not isinstance(text, str):
        return Ignored("message_edit", "edit without text", ctx.account_id)
    at, _flag = platform_time(event.get("timestamp"), received, skew)
    number = count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 2**31 else 0
    return Edit(mid, bounded_text(text)[0], number, at)  # cut as a message's text is (the delivery keeps it whole)


def graph_node(message: Mapping[str, Any], event: Mapping[str, Any], author: str, customer: str) -> dict[str, Any]:
    """The Graph message node a webhook `message` describes (field names of reference A.2)."""
    node: dict[str, Any] = {"id": message.get("mid"), "created_time": event.get("timestamp"), "from": {"id": author}}
    node["to"] = {"data": [{"id": customer}]} if author != customer else {"data": []}
    text = message.get("text")
    attachments: list[Any] = []
    shares: list[dict[str, Any]] = []
    story: dict[str, Any] | None = None
    for att in message.get("attachments") if isinstance(message.get("attachments"), list) else []:
        if not isinstance(att, Mapping):
            attachments.append(att)  # parse_message says what is wrong with it
            continue
        kind, payload = att.get("type"), att.get("payload") if isinstance(att.get("payload"), Mapping) else {}
        if kind == "story_mention":
            story = {"mention": {"link": payload.get("url"), "id": payload.get("id")}}
        elif kind == "share":
            shares.append({"link": payload.get("url"), "name": payload.get("title")})
        elif kind == "location" and isinstance(payload.get("coordinates"), Mapping):
            c = payload["coordinates"]
            try:
                url = f"geo:{float(c.get('lat')):f},{float(c.get('long')):f}"
            except (TypeError, ValueError):
                url = None
            attachments.append({"type": "location", "payload": {"url": url}, "name": payload.get("title")})
        elif kind == "image" and str(payload.get("sticker_id", "")) in LIKE_STICKERS and not text:
            text = "\N{THUMBS UP SIGN}"
        elif kind == "like_heart" and not text:
            text = "\N{HEAVY BLACK HEART}\N{VARIATION SELECTOR-16}"
        else:
            attachments.append({"type": kind, "payload": dict(payload), "name": payload.get("title")})
    reply_to = message.get("reply_to")
    if isinstance(reply_to, Mapping) and isinstance(reply_to.get("story"), Mapping):
        ref = reply_to["story"]
        story = {"reply_to": {"link": ref.get("url"), "id": ref.get("id")}}
    if isinstance(text, str):
        node["message"] = text
    if attachments:
        node["attachments"] = {"data": attachments}
    if shares:
        node["shares"] = {"data": shares}
    if story:
        node["story"] = story
    for flag in ("is_deleted", "is_unsupported"):
        if message.get(flag) is True:
            node[flag] = True
    for key in ("app_id", "metadata", "quick_reply", "is_echo"):
        if key in message:
            node[key] = message[key]
    return node
