"""Graph API conversation and message objects (Messenger and Instagram) to connector values.

Shapes from reference A.2: Messenger `from` is `{id, name, email}` (the email is a pseudo-address and
is ignored), Instagram `from` is `{id, username}`. Parsing is strict only about what a message cannot
be stored without (a usable id) and repairs what it can: a missing, unreadable or future
`created_time` becomes the time it was received, a missing sender in a one-to-one thread becomes the
thread's other participant, each marked with a `MessageFlag`. A failure is a `ParseError`, which the
caller turns into a quarantine record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.base import (
    MAX_COUNT,
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
from connectors.times import DEFAULT_SKEW, platform_time

# RestFB: in the EU some attachments come back as a placeholder with this id (content not available).
EU_PLACEHOLDER_ID = "1234"


@dataclass(frozen=True, slots=True)
class MetaContext:
    """Who "we" are on one Graph account: every id that marks a message as ours (an echo)."""

    channel: Channel
    account_id: str
    own_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One row of `/{id}/conversations`."""

    id: str
    updated_time: datetime  # checked against the platform's clock (a future one is the time it was listed)
    participants: tuple[Participant, ...] = ()
    message_count: int | None = None
    stamp: str | None = None  # the platform's updated_time as given, when it was not usable


def _str_id(value: Any, field: str, limit: int = MAX_ID_LENGTH) -> str:
    if isinstance(value, bool) or value is None or value == "":
        raise ParseError(f"missing {field}")
    if not isinstance(value, (int, str)):
        raise ParseError(f"{field} is not a string")
    text = str(value)
    if len(text) > limit:
        raise ParseError(f"{field} is {len(text):,} characters long (at most {limit})")
    return text


def _data(edge: Any) -> list[Any]:
    """The `data` list of a Graph edge (`{data: [...], paging}`), tolerating a bare list."""
    if isinstance(edge, Mapping):
        edge = edge.get("data")
    return list(edge) if isinstance(edge, list) else []


def parse_participant(obj: Any) -> Participant:
    if not isinstance(obj, Mapping):
        raise ParseError("participant is not an object")
    name = obj.get("name")
    handle = obj.get("username")
    return Participant(
        id=_str_id(obj.get("id"), "participant id", MAX_USER_ID_LENGTH),
        handle=handle if isinstance(handle, str) and handle else None,
        name=name if isinstance(name, str) and name else None,
    )


def parse_conversation(item: Any, *, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW) -> Conversation:
    """One conversation row; an unusable `updated_time` reads as `received` (the thread is read, and
    the high-water mark never passes the platform's clock)."""
    if not isinstance(item, Mapping):
        raise ParseError("conversation is not an object")
    participants: list[Participant] = []
    for p in _data(item.get("participants")):
        try:
            participants.append(parse_participant(p))
        except ParseError:
            continue  # a broken participant does not hide the thread
    count = item.get("message_count")
    conv_id = _str_id(item.get("id"), "conversation id")
    updated, flag = platform_time(item.get("updated_time"), received, skew)
    return Conversation(
        id=conv_id,
        updated_time=updated,
        participants=tuple(participants),
        message_count=count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_COUNT else None,
        stamp=None if flag is None else str(item.get("updated_time"))[:64],
    )


def _int_or_none(value: Any) -> int | None:
    """A size or count: a non-negative integer a JSON number can carry exactly, else None."""
    try:
        number = int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and 0 <= number < 2**53 else None


def parse_attachment(att: Any) -> Attachment:
    """One entry of `attachments.data`: image_data, video_data, file_url, or the EU placeholder."""
    if not isinstance(att, Mapping):
        raise ParseError("attachment is not an object")
    mime = att.get("mime_type") if isinstance(att.get("mime_type"), str) else None
    name = att.get("name") if isinstance(att.get("name"), str) else None
    size = _int_or_none(att.get("size"))
    if str(att.get("id", "")) == EU_PLACEHOLDER_ID:
        return Attachment(type="unavailable", url=None, mime=mime, size=size, name=name or "content not available")
    image, video = att.get("image_data"), att.get("video_data")
    if isinstance(image, Mapping):
        kind = "sticker" if image.get("render_as_sticker") else "image"
        url = image.get("url") or image.get("animated_gif_url") or image.get("preview_url")
    elif isinstance(video, Mapping):
        kind, url = "video", video.get("url") or video.get("preview_url")
    else:
        url = att.get("file_url") or att.get("url")
        major = (mime or "").split("/", 1)[0]
        kind = {"image": "image", "video": "video", "audio": "audio"}.get(major, "file")
    if isinstance(att.get("type"), str) and att["type"]:  # webhook-style {type, payload}
        kind = att["type"]
        payload = att.get("payload")
        if isinstance(payload, Mapping) and not url:
            url = payload.get("url")
    return Attachment(type=kind, url=url if isinstance(url, str) else None, mime=mime, size=size, name=name)


def _shares(item: Mapping[str, Any]) -> list[Attachment]:
    out: list[Attachment] = []
    for share in _data(item.get("shares")):
        if isinstance(share, Mapping):
            url = share.get("link") or share.get("picture") or share.get("url")
            name = share.get("name") or share.get("description")
            out.append(Attachment(type="share", url=url if isinstance(url, str) else None, name=name if isinstance(name, str) else None))
    return out


def _story(item: Mapping[str, Any]) -> tuple[MessageKind, Attachment] | None:
    story = item.get("story")
    if not isinstance(story, Mapping):
        return None
    for key, kind in (("reply_to", MessageKind.STORY_REPLY), ("mention", MessageKind.STORY_MENTION)):
        ref = story.get(key)
        if isinstance(ref, Mapping):
            url = ref.get("link") or ref.get("url")
            ref_id = ref.get("id")
            return kind, Attachment(
                type=kind.value, url=url if isinstance(url, str) else None, name=str(ref_id) if ref_id else None
            )
    return None


def _infer_author(
    ctx: MetaContext, recipients: Sequence[Participant], participants: Sequence[Participant], problem: str
) -> Participant:
    """The sender of a message whose `from` is unusable: in a one-to-one thread, the customer,
    unless the message was addressed to the customer alone (then it was ours)."""
    others = {p.id: p for p in participants if p.id not in ctx.own_ids}
    if len(others) != 1:
        raise ParseError(f"{problem}, and the thread has no single other participant to take it from")
    customer = next(iter(others.values()))
    to_ids = {p.id for p in recipients}
    if to_ids and to_ids <= {customer.id}:
        return Participant(id=ctx.account_id)
    return customer


def parse_message(
    item: Any,
    ctx: MetaContext,
    *,
    thread_id: str,
    participants: Sequence[Participant] = (),
    received: datetime | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> InboundMessage:
    """One Graph message node, repaired where it can be (see the module doc). ParseError otherwise."""
    if not isinstance(item, Mapping):
        raise ParseError("message is not an object")
    external_id = _str_id(item.get("id"), "message id")
    flags: list[MessageFlag] = []
    sent_at, time_flag = platform_time(item.get("created_time"), received, skew)
    if time_flag is not None:
        flags.append(time_flag)
    recipients = []
    for r in _data(item.get("to")):
        try:
            recipients.append(parse_participant(r))
        except ParseError:
            continue
    try:
        author = parse_participant(item.get("from"))
    except ParseError as exc:
        author = _infer_author(ctx, recipients, participants, f"sender unusable ({exc})")
        flags.append(MessageFlag.SENDER_INFERRED)
    outbound = author.id in ctx.own_ids
    if outbound:
        others = [p for p in recipients if p.id not in ctx.own_ids] or [
            p for p in participants if p.id not in ctx.own_ids
        ]
        if not others:
            raise ParseError("outbound message without a customer recipient")
        customer = others[0]
    else:
        customer = author

    text = item.get("message")
    text, cut = bounded_text(text if isinstance(text, str) and text != "" else None)
    if cut:
        flags.append(MessageFlag.TEXT_CUT)
    attachments: list[Attachment] = []
    for att in _data(item.get("attachments")):
        attachments.append(parse_attachment(att))
    sticker = item.get("sticker")
    if isinstance(sticker, str) and sticker:
        attachments.append(Attachment(type="sticker", url=sticker))
    shares = _shares(item)
    story = _story(item)

    if item.get("is_deleted") is True:
        kind = MessageKind.DELETED
    elif item.get("is_unsupported") is True:
        kind = MessageKind.UNSUPPORTED
    elif story is not None:
        kind = story[0]
        attachments.insert(0, story[1])
    elif shares:
        kind = MessageKind.SHARE
    elif attachments:
        kind = MessageKind.ATTACHMENT
    elif text is not None:
        kind = MessageKind.TEXT
    else:
        # Graph keeps unsent messages as empty shells (no text, nothing attached).
        kind = MessageKind.DELETED
    attachments.extend(shares)
    return InboundMessage(
        channel=ctx.channel,
        account_id=ctx.account_id,
        external_id=external_id,
        thread_id=thread_id,
        direction=Direction.OUT if outbound else Direction.IN,
        author=author,
        customer=customer,
        text=text,
        kind=kind,
        sent_at=sent_at,
        attachments=tuple(attachments),
        raw=scrub(dict(item)),
        flags=tuple(flags),
    )


def message_items(body: Any) -> list[Any]:
    """Message items of `/{conversation}/messages` or `/{conversation}?fields=messages{...}`."""
    if isinstance(body, Mapping) and isinstance(body.get("messages"), Mapping):
        body = body["messages"]
    if isinstance(body, Mapping) and isinstance(body.get("data"), list):
        return list(body["data"])
    raise ParseError("response has no message list")


def nested_messages(item: Any) -> Mapping[str, Any] | None:
    """A conversation row's nested `messages` edge when it is usable (an object with a `data` list);
    else None, and the thread is read through its own edge (Graph may leave an expansion out or
    answer it with an error)."""
    edge = item.get("messages") if isinstance(item, Mapping) else None
    if isinstance(edge, Mapping) and isinstance(edge.get("data"), list) and "error" not in edge:
        return edge
    return None


def iter_ids(items: Iterable[Any]) -> list[str]:
    """The ids of whichever items have one (used to ask which are already stored)."""
    out: list[str] = []
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("id"), (str, int)) and not isinstance(item.get("id"), bool):
            if len(str(item["id"])) <= MAX_ID_LENGTH:  # a longer one is quarantined, never looked up
                out.append(str(item["id"]))
    return out


def sent_message_id(body: Any) -> str:
    """The `message_id` of a Send API answer `{"recipient_id": ..., "message_id": "m_..."}`."""
    message_id = body.get("message_id") if isinstance(body, Mapping) else None
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)  # an id written as a JSON number is still the id
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID_LENGTH:
        # Nothing the echo could be matched by or the store could keep: the delivery is unknown.
        raise ParseError("Send API answer without a usable message_id")
    return message_id
