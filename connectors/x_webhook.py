"""X webhook deliveries to messages: Account Activity API and X Activity API (`dm.received`, `dm.sent`).

Account Activity: `{"for_user_id", "direct_message_events": [{"type": "message_create", "id",
"created_timestamp", "message_create": {"sender_id", "target": {"recipient_id"}, "message_data":
{"text", "attachment"}}}], "users": {...}}`. X Activity API: the envelope `{"event_type", "filter":
{"user_id"}, "payload", ...}` (optionally under `data`), whose payload is the same v1.1 form or a v2
DM event. Each message event is rewritten into the v2 DM event the poll reads (`{id, event_type:
MessageCreate, text, sender_id, dm_conversation_id, created_at}`) and parsed by `x_parse`, so both
paths store the same values under the same key (the event id), in the same thread (the 1:1
conversation id `"{smaller}-{larger}"`).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.base import AccountBatch, Attachment, Ignored, InboundMessage, ParsedDelivery, Participant, QuarantinedItem
from connectors.enums import Channel
from connectors.errors import ParseError
from connectors.redact import scrub
from connectors.times import DEFAULT_SKEW
from connectors.webhook import DeliveryError, check_signature, hmac_sha256
from connectors.x_parse import MESSAGE_CREATE, Includes, numeric_id, pair_id, parse_event, to_message

_IGNORED_LISTS = {
    "direct_message_indicate_typing_events": "typing",
    "direct_message_mark_read_events": "read",
}
_MEDIA_TYPES = {"photo": "image", "video": "video", "animated_gif": "gif"}


def verify(consumer_secret: str, body: bytes, header: str | None) -> bool:
    """`x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer secret, raw body)>`."""
    return check_signature(header, hmac_sha256(consumer_secret, body), encoding="base64")


def crc_response(consumer_secret: str, crc_token: str) -> dict[str, str]:
    """The answer to X's challenge-response check `GET ?crc_token=T`."""
    digest = hmac_sha256(consumer_secret, crc_token.encode("utf-8"))
    return {"response_token": "sha256=" + base64.b64encode(digest).decode("ascii")}


def parse(body: Any, accounts: frozenset[str], *, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW) -> ParsedDelivery:
    """One delivery; `accounts`: the X user ids of the configured accounts."""
    if not isinstance(body, Mapping):
        raise DeliveryError("delivery is not a JSON object")
    if isinstance(body.get("data"), Mapping) and "event_type" in body["data"]:
        body = body["data"]
    if isinstance(body.get("event_type"), str):
        return _activity(body, accounts, received, skew)
    owner = _user(body.get("for_user_id"))
    if owner is None:
        raise DeliveryError("delivery has neither for_user_id nor event_type")
    if owner not in accounts:
        return ParsedDelivery(ignored=(Ignored("delivery", f"for an account not configured here ({owner[:40]})", owner),))
    ignored = [Ignored(what, f"{what} event: not a message", owner) for key, what in _IGNORED_LISTS.items() if body.get(key)]
    events = body.get("direct_message_events")
    if events is None:
        if not ignored:
            other = next((k for k in body if k.endswith("_events")), "nothing")
            ignored.append(Ignored("delivery", f"{str(other)[:60]}: not a direct message", owner))
        return ParsedDelivery(ignored=tuple(ignored))
    if not isinstance(events, list):
        raise DeliveryError("direct_message_events is not a list")
    batch, more = _events(events, owner, body.get("users"), received, skew)
    return ParsedDelivery((batch,) if batch.messages or batch.quarantined else (), tuple(ignored + more))


def _activity(env: Mapping[str, Any], accounts: frozenset[str], received: datetime | None, skew: timedelta) -> ParsedDelivery:
    kind = str(env.get("event_type"))[:40]
    filt = env.get("filter")
    owner = _user(filt.get("user_id")) if isinstance(filt, Mapping) else None
    if kind not in ("dm.received", "dm.sent"):
        return ParsedDelivery(ignored=(Ignored(kind, f"{kind} event: not a message", owner),))
    if owner is None or owner not in accounts:
        return ParsedDelivery(ignored=(Ignored("delivery", f"for an account not configured here ({str(owner)[:40]})", owner),))
    payload = env.get("payload")
    users = env.get("includes", {}).get("users") if isinstance(env.get("includes"), Mapping) else None
    if isinstance(payload, Mapping) and isinstance(payload.get("direct_message_events"), list):
        events = payload["direct_message_events"]
        users = payload.get("users", users)
    else:
        events = [payload]
    batch, ignored = _events(events, owner, users, received, skew)
    return ParsedDelivery((batch,) if batch.messages or batch.quarantined else (), tuple(ignored))


def _str(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        return None
    return str(value)


def _user(value: Any) -> str | None:
    """An X user id as the number it is ("00150…" is account 150…), or None."""
    text = _str(value)
    return numeric_id(text) if text is not None else None


def _bitrate(variant: Mapping[str, Any]) -> float:
    """A video variant's bitrate for choosing the best one; anything but a finite number counts as 0
    (a string or an object there must not make the variants incomparable and lose the delivery)."""
    value = variant.get("bitrate")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return 0.0
    return number if math.isfinite(number) else 0.0


def _users(users: Any) -> dict[str, Participant]:
    """`users` as a map keyed by id (Account Activity), or a list of v2 user objects."""
    items = users.values() if isinstance(users, Mapping) else users if isinstance(users, list) else []
    out: dict[str, Participant] = {}
    for u in items:
        if isinstance(u, Mapping) and (uid := _str(u.get("id_str") or u.get("id"))):
            uid = numeric_id(uid)  # the key the event's canonical sender_id looks it up by
            out[uid] = Participant(id=uid, handle=_str(u.get("screen_name") or u.get("username")), name=_str(u.get("name")))
    return out


def _events(events: list[Any], owner: str, users: Any, received: datetime | None, skew: timedelta) -> tuple[AccountBatch, list[Ignored]]:
    people = _users(users)
    messages: list[InboundMessage] = []
    quarantined: list[QuarantinedItem] = []
    ignored: list[Ignored] = []
    for event in events:
        try:
            v2, media = v2_event(event, owner)
            if v2 is None:
                ignored.append(Ignored("event", f"{str(event.get('type') or event.get('event_type'))[:40]} event: not a message", owner))
                continue
            parsed = parse_event(v2, received=received, skew=skew)
            messages.append(to_message(parsed, Includes(users=people, media=media), account_id=owner))
        except ParseError as exc:
            ext = _str(event.get("id")) if isinstance(event, Mapping) else None
            quarantined.append(QuarantinedItem(Channel.X, owner, f"webhook event: {exc}", scrub(event) if isinstance(event, Mapping) else event,
                                               external_id=ext))
    return AccountBatch(Channel.X, owner, tuple(messages), tuple(quarantined)), ignored


def v2_event(event: Any, owner: str) -> tuple[dict[str, Any] | None, dict[str, Attachment]]:
    """A v1.1 `message_create` event (or a v2 one, as is) as the v2 DM event the poll parses;
    (None, {}) for an event that is not a message."""
    if not isinstance(event, Mapping):
        raise ParseError("event is not an object")
    if "message_create" not in event:
        if event.get("event_type") == MESSAGE_CREATE or (event.get("event_type") is None and "text" in event):
            return dict(event), {}  # already the v2 form
        if event.get("type") not in (None, "message_create"):
            return None, {}
        if event.get("event_type") is not None:
            return None, {}
        raise ParseError("message event without message_create")
    mc = event["message_create"]
    if not isinstance(mc, Mapping):
        raise ParseError("message_create is not an object")
    sender = _str(mc.get("sender_id"))
    target = mc.get("target")
    recipient = _str(target.get("recipient_id")) if isinstance(target, Mapping) else None
    data = mc.get("message_data") if isinstance(mc.get("message_data"), Mapping) else {}
    text = data.get("text") if isinstance(data.get("text"), str) else None
    media: dict[str, Attachment] = {}
    keys: list[str] = []
    att = data.get("attachment")
    if isinstance(att, Mapping) and isinstance(att.get("media"), Mapping):
        m = att["media"]
        key = _str(m.get("id_str") or m.get("id")) or "media"
        kind = _MEDIA_TYPES.get(str(m.get("type")), str(m.get("type") or "media"))
        url = m.get("media_url_https") or m.get("media_url")
        variants = m.get("video_info", {}).get("variants") if isinstance(m.get("video_info"), Mapping) else None
        if isinstance(variants, list):
            mp4 = [v for v in variants if isinstance(v, Mapping) and isinstance(v.get("url"), str)]
            if mp4:
                url = max(mp4, key=_bitrate)["url"]
        media[key] = Attachment(type=kind, url=url if isinstance(url, str) else None)
        keys.append(key)
        # The text ends with the t.co link of the media itself: not something the customer wrote.
        link = m.get("url")
        if text and isinstance(link, str) and link:
            text = text.replace(link, "")
    if text is not None:
        text = html.unescape(text).strip() or None  # v1.1 text escapes &, < and >
    v2: dict[str, Any] = {"id": event.get("id"), "event_type": MESSAGE_CREATE, "created_at": event.get("created_timestamp")}
    if text is not None:
        v2["text"] = text
    if sender is not None:
        v2["sender_id"] = sender
    other = recipient if sender == owner else sender
    if other is not None and other.isascii() and other.isdigit() and owner.isdigit():
        v2["dm_conversation_id"] = pair_id(owner, other)
    if keys:
        v2["attachments"] = {"media_keys": keys}
    for extra in ("source_app_id",):
        if extra in mc:
            v2[extra] = mc[extra]
    return v2, media
