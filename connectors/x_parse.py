"""X API v2 DM events (`/2/dm_events` and the per-conversation lookups) to connector values.

Event shape (reference B.3): `{id, event_type, text?, sender_id?, dm_conversation_id?, created_at?,
attachments?{media_keys}, participant_ids?}` plus `includes.users` / `includes.media` for expansions.
Fields not asked for are omitted, so `parse_event` accepts the bare `{id, event_type, text}` form
(the creation time then comes from the snowflake id). A time later than the platform's clock (plus
the skew) or before X existed is replaced by the time the event was received, and an event without a
sender in a one-to-one conversation is the customer's; both are marked with a `MessageFlag`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import (
    MAX_ID_LENGTH,
    MAX_USER_ID_LENGTH,
    Attachment,
    InboundMessage,
    Participant,
    bounded_text,
)
from connectors.enums import Channel, Direction, MessageFlag, MessageKind
from connectors.errors import ParseError
from connectors.redact import scrub
from connectors.times import DEFAULT_SKEW, platform_time, snowflake_time

MESSAGE_CREATE = "MessageCreate"
MAX_SNOWFLAKE = 2**63 - 1  # X ids are 64-bit
_MEDIA_TYPES = {"photo": "image", "video": "video", "animated_gif": "gif"}


@dataclass(frozen=True, slots=True)
class DmEvent:
    id: str
    event_type: str
    created_at: datetime
    text: str | None = None
    sender_id: str | None = None
    conversation_id: str | None = None
    media_keys: tuple[str, ...] = ()
    participant_ids: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    flags: tuple[MessageFlag, ...] = ()
    plausible: bool = True  # the id's own time is within the platform's clock: it may move the cursor

    @property
    def snowflake(self) -> int:
        return int(self.id)


@dataclass(frozen=True, slots=True)
class Includes:
    users: Mapping[str, Participant] = field(default_factory=dict)
    media: Mapping[str, Attachment] = field(default_factory=dict)


def _opt_str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) if str(value) else None
    return None


def numeric_id(text: str) -> str:
    """An X id as X means it: a number, so `"0900"` is user 900 (tweepy reads ids as ints). Digits
    lose their leading zeros (`"0"` stays); anything else is left as it is."""
    return (text.lstrip("0") or "0") if text.isascii() and text.isdigit() else text


def conversation_id(text: str) -> str:
    """A DM conversation id with each numeric part canonical: `"0900-15…"` is the pair `"900-15…"`."""
    return "-".join(numeric_id(part) for part in text.split("-"))


def _opt_id(value: Any, what: str, limit: int = MAX_USER_ID_LENGTH) -> str | None:
    text = _opt_str(value)
    if text is not None:
        text = conversation_id(text) if what == "dm_conversation_id" else numeric_id(text)
    if text is not None and len(text) > limit:
        raise ParseError(f"{what} is {len(text):,} characters long (at most {limit})")
    return text


def _snowflake(value: Any) -> str:
    event_id = _opt_str(value)
    if event_id is None or not (event_id.isascii() and event_id.isdigit()):
        raise ParseError("missing or non-numeric event id")
    event_id = numeric_id(event_id)
    if len(event_id) > 19 or int(event_id) > MAX_SNOWFLAKE:
        raise ParseError(f"event id {event_id[:40]}… is beyond X's 64-bit ids")
    return event_id


def parse_event(obj: Any, *, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW) -> DmEvent:
    if not isinstance(obj, Mapping):
        raise ParseError("event is not an object")
    event_id = _snowflake(obj.get("id"))
    event_type = obj.get("event_type")
    if event_type is not None and not isinstance(event_type, str):
        raise ParseError("event_type is not a string")
    id_time, id_flag = platform_time(snowflake_time(event_id), received, skew)
    created = obj.get("created_at")
    flags: list[MessageFlag] = []
    if created is None:  # not asked for, or left out: the id carries the time
        created_at, flag = id_time, id_flag
    else:
        created_at, flag = platform_time(created, received, skew)
        if flag is not None and id_flag is None:
            created_at = id_time  # the id's own time is the better repair
    if flag is not None:
        flags.append(flag)
    attachments = obj.get("attachments")
    keys: tuple[str, ...] = ()
    if isinstance(attachments, Mapping) and isinstance(attachments.get("media_keys"), list):
        keys = tuple(str(k) for k in attachments["media_keys"] if isinstance(k, (str, int)))
    participants = obj.get("participant_ids")
    text = obj.get("text")
    try:
        sender_id = _opt_id(obj.get("sender_id"), "sender_id")
    except ParseError:
        sender_id = None  # unusable: taken from the conversation as a missing one is (to_message)
    return DmEvent(
        id=event_id,
        event_type=event_type or MESSAGE_CREATE,
        created_at=created_at,
        text=text if isinstance(text, str) else None,
        sender_id=sender_id,
        conversation_id=_opt_id(obj.get("dm_conversation_id"), "dm_conversation_id", MAX_ID_LENGTH),
        media_keys=keys,
        participant_ids=tuple(p for p in (numeric_id(str(p)) for p in participants if isinstance(p, (str, int))) if len(p) <= MAX_USER_ID_LENGTH)
        if isinstance(participants, list)
        else (),
        raw=scrub(dict(obj)),  # kept as the message's raw payload: no secret may ride along
        flags=tuple(flags),
        plausible=id_flag is None,
    )


def parse_includes(body: Any) -> Includes:
    inc = body.get("includes") if isinstance(body, Mapping) else None
    if not isinstance(inc, Mapping):
        return Includes()
    users: dict[str, Participant] = {}
    for u in _list(inc.get("users")):
        uid = _opt_str(u.get("id")) if isinstance(u, Mapping) else None
        uid = numeric_id(uid) if uid else uid
        if uid and len(uid) <= MAX_USER_ID_LENGTH:
            users[uid] = Participant(id=uid, handle=_opt_str(u.get("username")), name=_opt_str(u.get("name")))
    media: dict[str, Attachment] = {}
    for m in _list(inc.get("media")):
        if isinstance(m, Mapping) and _opt_str(m.get("media_key")):
            kind = str(m.get("type") or "file")
            url = m.get("url") or m.get("preview_image_url")
            media[str(m["media_key"])] = Attachment(type=_MEDIA_TYPES.get(kind, kind), url=url if isinstance(url, str) else None)
    return Includes(users=users, media=media)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def other_in_pair(conversation_id: str | None, own_id: str) -> str | None:
    """The other user of a 1:1 conversation id `"{smaller}-{larger}"`; None for a group."""
    if not conversation_id or "-" not in conversation_id:
        return None
    a, _, b = conversation_id.partition("-")
    if own_id == a:
        return b
    if own_id == b:
        return a
    return None


def pair_id(a: str, b: str) -> str:
    """The 1:1 conversation id of two users (smaller id first, compared as numbers)."""
    lo, hi = sorted((a, b), key=int)
    return f"{lo}-{hi}"


def to_message(event: DmEvent, includes: Includes, *, account_id: str) -> InboundMessage:
    """A MessageCreate event as a message. Raises ParseError when it cannot be placed in a thread."""
    if event.event_type != MESSAGE_CREATE:
        raise ParseError(f"{event.event_type[:40]} is not a message")
    flags = list(event.flags)
    sender_id = event.sender_id
    if sender_id is None:
        # In a one-to-one conversation the customer is the other user; the event is taken as theirs.
        sender_id = other_in_pair(event.conversation_id, account_id)
        if sender_id is None:
            raise ParseError("missing sender_id, and the conversation is not a one-to-one conversation of this account")
        flags.append(MessageFlag.SENDER_INFERRED)
    outbound = sender_id == account_id
    thread_id = event.conversation_id
    if thread_id is None:
        if outbound:
            raise ParseError("outbound event without dm_conversation_id")
        if not (sender_id.isascii() and sender_id.isdigit()):
            raise ParseError("sender_id is not a numeric X user id")
        thread_id = pair_id(sender_id, account_id)
    if outbound:
        customer_id = other_in_pair(thread_id, account_id) or next(
            (p for p in event.participant_ids if p != account_id), None
        )
        if customer_id is None:
            raise ParseError("cannot tell the customer of an outbound group message")
    else:
        customer_id = sender_id

    def person(user_id: str) -> Participant:
        return includes.users.get(user_id) or Participant(id=user_id)

    attachments = tuple(includes.media.get(k) or Attachment(type="media", name=k) for k in event.media_keys)
    text, cut = bounded_text(event.text or None)
    if cut:
        flags.append(MessageFlag.TEXT_CUT)
    return InboundMessage(
        channel=Channel.X,
        account_id=account_id,
        external_id=event.id,
        thread_id=thread_id,
        direction=Direction.OUT if outbound else Direction.IN,
        author=person(sender_id),
        customer=person(customer_id),
        text=text,
        kind=MessageKind.ATTACHMENT if attachments else MessageKind.TEXT,
        sent_at=event.created_at,
        attachments=attachments,
        raw=dict(event.raw),
        flags=tuple(flags),
    )


def event_items(body: Any) -> list[Any]:
    """`data` of a lookup page; the empty page `{"meta":{"result_count":0}}` has none."""
    if not isinstance(body, Mapping):
        raise ParseError("lookup response is not an object")
    data = body.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ParseError("lookup `data` is not a list")
    return data


def next_token(body: Any) -> str | None:
    meta = body.get("meta") if isinstance(body, Mapping) else None
    token = meta.get("next_token") if isinstance(meta, Mapping) else None
    return token if isinstance(token, str) and token else None


def created_event(body: Any) -> tuple[str, str | None]:
    """`(dm_event_id, dm_conversation_id)` of a create-DM answer `{"data": {...}}` (HTTP 201)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    event_id = _opt_str(data.get("dm_event_id")) if isinstance(data, Mapping) else None
    if event_id is None or len(event_id) > MAX_ID_LENGTH:  # nothing the store could keep: unknown
        raise ParseError("create-DM answer without a usable dm_event_id")
    conversation = _opt_str(data.get("dm_conversation_id"))  # type: ignore[union-attr]
    # The ids the poll will read its echo under (canonical numbers), so the two meet.
    return numeric_id(event_id), conversation_id(conversation) if conversation else None
