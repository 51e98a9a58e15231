"""What every webhook parser returns, and the signature check both platforms use.

A delivery (one POST) becomes, per brand account it names, the messages and quarantined items to
store (one `Page` each, without a cursor: a webhook never moves the poll's cursor), plus the events
that are acknowledged and not stored (reads, typing, reactions, postbacks, unknown accounts), each
with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from connectors.base import InboundMessage, QuarantinedItem
from connectors.enums import Channel


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event acknowledged and not stored."""

    what: str  # e.g. "read", "typing", "postback", "entry"
    reason: str
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """A message's new text (Messenger `message_edit`): the stored message is updated in place."""

    external_id: str
    text: str
    num_edit: int  # the platform's count of edits: an older edit arriving late never wins
    edited_at: datetime


@dataclass(frozen=True, slots=True)
class AccountBatch:
    """What one delivery holds for one brand account."""

    channel: Channel
    account_id: str
    messages: tuple[InboundMessage, ...] = ()
    quarantined: tuple[QuarantinedItem, ...] = ()
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedDelivery:
    batches: tuple[AccountBatch, ...] = ()
    ignored: tuple[Ignored, ...] = ()


class DeliveryError(ValueError):
    """The whole delivery is unreadable (not an object, wrong shape): it is quarantined whole."""


def hmac_sha256(key: str, data: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).digest()


def check_signature(header: str | None, expected: bytes, *, encoding: str) -> bool:
    """`sha256=<digest>` in `encoding` ("hex" for Meta, "base64" for X), compared in constant time.

    A missing header, another algorithm, a truncated or undecodable digest: False.
    """
    if not header:
        return False
    algorithm, sep, value = header.strip().partition("=")
    if not sep or algorithm.strip().lower() != "sha256":
        return False
    value = value.strip()
    if encoding == "hex":
        want = expected.hex()
        got = value.lower()
    else:
        want = base64.b64encode(expected).decode("ascii")
        got = value
    return hmac.compare_digest(want.encode("ascii"), got.encode("ascii", "replace"))
