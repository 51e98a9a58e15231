"""The connector contract's enums: Channel, Direction, MessageKind, MessageFlag, ReplyPolicy (imported from here only).

A module of their own: the config and the reply policy need them on every CLI start, the value
classes in `connectors.base` only the commands that talk to a platform or ingest.
"""

from __future__ import annotations

from enum import Enum


class Channel(str, Enum):
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    X = "x"

    @property
    def label(self) -> str:
        return {"instagram": "Instagram", "facebook": "Messenger", "x": "X"}[self.value]


class Direction(str, Enum):
    IN = "in"  # written by the customer
    OUT = "out"  # written by the brand account (our replies, or replies typed in the native app)


class MessageKind(str, Enum):
    TEXT = "text"
    ATTACHMENT = "attachment"
    STORY_REPLY = "story_reply"
    STORY_MENTION = "story_mention"
    SHARE = "share"
    UNSUPPORTED = "unsupported"
    DELETED = "deleted"


class ReplyPolicy(str, Enum):
    """How a reply is sent (Meta `messaging_type` / `tag`)."""

    RESPONSE = "RESPONSE"  # inside the 24 h window
    HUMAN_AGENT = "HUMAN_AGENT"  # MESSAGE_TAG + HUMAN_AGENT, 24 h to 7 d, a human only
    DIRECT = "DIRECT"  # X: no window


class MessageFlag(str, Enum):
    """What was repaired in a stored message because the platform's own value was unusable.

    The platform's value stays in the raw payload; `inbox show` says what was put in its place.
    """

    TIME_MISSING = "time_missing"  # no time: the time it was received is used
    TIME_INVALID = "time_invalid"  # unreadable, or before any of these platforms existed: received time
    TIME_FUTURE = "time_future"  # beyond the platform's clock plus the allowed skew: received time
    SENDER_INFERRED = "sender_inferred"  # no usable sender: the thread's one other participant
    TEXT_CUT = "text_cut"  # longer than the store keeps (connectors.base.MAX_TEXT_LENGTH): its start is stored

    @property
    def description(self) -> str:
        return {
            "time_missing": "the platform gave no time; the time it was received is shown",
            "time_invalid": "the platform's time was unusable; the time it was received is shown",
            "time_future": "the platform dated it in the future; the time it was received is shown",
            "sender_inferred": "the platform gave no sender; the thread's other participant is shown",
            "text_cut": "the text is longer than the store keeps; its start is shown, the whole of it is in the raw payload",
        }[self.value]
