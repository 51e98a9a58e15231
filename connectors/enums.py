"""The connector contract's enums (re-exported by `connectors.base`, where the rest of it lives).

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
