"""The connector contract: small Protocols (`Poller`, `Sender`, `WebhookSource`) and the frozen values that cross them.

Connectors speak HTTP and return these values; they never touch the store. The sync layer
(`inbox.sync.account`) feeds them a cursor and a way to ask which message ids are already known, and
stores each `Page` it gets back in one transaction together with `Page.cursor`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    # The enums are part of this contract; they live in connectors.enums (their only import path) so
    # that config and the reply policy (every CLI start) can use them without building these values.
    from connectors.enums import Channel, Direction, MessageFlag, MessageKind, ReplyPolicy

# The longest platform ids the store keeps (its column sizes; tests/contract/test_poison.py checks they agree).
# An id beyond these is no real platform id: the item is quarantined, never cut (two cut ids could collide).
MAX_ID_LENGTH = 255  # message and thread ids (Instagram mids run to about 150 characters)
MAX_USER_ID_LENGTH = 100  # PSIDs, IGSIDs, X user ids
# Counts a platform reports (a thread's message_count, rate limits) land in INTEGER columns: a larger
# one is no real count, and is taken as unknown rather than refused by the store with the page.
MAX_COUNT = 2**31 - 1
# The characters of a message's text the store keeps; the whole text stays in the raw payload and
# the message is flagged `text_cut`. Every platform's own limit is far below (X: 10,000). Beyond
# about 300,000 distinct words PostgreSQL's search index refuses the text, and the page (or the
# webhook batch) holding it could never be stored.
MAX_TEXT_LENGTH = 65_536


def bounded_text(text: str | None) -> tuple[str | None, bool]:
    """`text` cut at MAX_TEXT_LENGTH, and whether it was."""
    if text is None or len(text) <= MAX_TEXT_LENGTH:
        return text, False
    return text[:MAX_TEXT_LENGTH], True


@dataclass(frozen=True, slots=True)
class Attachment:
    """Attachment metadata. CDN urls expire, so the metadata is what is kept."""

    type: str  # image, video, audio, file, story_mention, share, sticker, ...
    url: str | None = None
    mime: str | None = None
    size: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    """A person or account on a platform. Handle and name are best-effort."""

    id: str
    handle: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One normalized message, in either direction, as read from a platform."""

    channel: Channel
    account_id: str  # platform id of our brand account (Page id, IG account id, X user id)
    external_id: str  # platform message id (Meta mid / X dm_event id)
    thread_id: str  # platform conversation id
    direction: Direction
    author: Participant  # who wrote it
    customer: Participant  # the customer side of the thread (the recipient when direction is OUT)
    text: str | None
    kind: MessageKind
    sent_at: datetime  # platform clock, timezone-aware UTC
    attachments: tuple[Attachment, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    flags: tuple[MessageFlag, ...] = ()  # what was repaired (the platform's value is in `raw`)


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    """An item that could not be parsed. Kept with its raw payload; it never aborts a page."""

    channel: Channel
    account_id: str
    reason: str
    raw: Any  # the decoded JSON item, or the undecodable text
    external_id: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages that were sent but can no longer be read (Meta's 20-message horizon)."""

    thread_id: str
    detail: str
    oldest_readable_at: datetime | None = None
    older: int | None = None  # messages the thread holds beyond the readable ones, when the platform says


@dataclass(frozen=True, slots=True)
class RateInfo:
    """Rate-limit headroom as last reported by the platform (headers, never hard-coded)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None  # when the window resets (UTC)
    usage_pct: float | None = None  # Meta usage headers: the highest percentage seen

    @property
    def headroom(self) -> float | None:
        """Fraction of the budget left, 0..1, or None when unknown."""
        if self.limit and self.remaining is not None:
            return max(0.0, min(1.0, self.remaining / self.limit))
        if self.usage_pct is not None:
            return max(0.0, min(1.0, 1 - self.usage_pct / 100))
        return None


Cursor = Mapping[str, Any]
"""Opaque, JSON-serializable per-account sync state. Only the connector reads its keys."""


@dataclass(frozen=True, slots=True)
class Page:
    """One unit of sync work: store `messages` and then `cursor`, in one transaction.

    A connector hands back the *old* cursor on intermediate pages and the advanced one only on
    the page that completes a pass, so a crash mid-pass never leaves the cursor ahead of the data.
    """

    messages: tuple[InboundMessage, ...]
    cursor: Cursor | None
    quarantined: tuple[QuarantinedItem, ...] = ()
    gaps: tuple[Gap, ...] = ()
    rate: RateInfo | None = None
    final: bool = False  # True on the last page of a pass
    events_read: int = 0  # items the platform returned for this page, new or not (X bills each one)
    # (thread id, customer id) of each thread this page read, new messages or not: names the real
    # thread of a webhook's provisional one even when the poll finds nothing new in it.
    threads: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundReply:
    thread_id: str  # platform conversation id
    recipient_id: str  # PSID / IGSID / X user id
    text: str
    policy: ReplyPolicy
    idempotency_key: str  # sent as Meta `metadata` so the echo can be matched


@dataclass(frozen=True, slots=True)
class SendResult:
    external_id: str  # the platform's message id (mid / dm_event_id)
    thread_id: str | None
    sent_at: datetime
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str
    token_valid: bool | None = None
    rate: RateInfo | None = None


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """Everything a connector needs about one brand account, secrets already resolved."""

    name: str
    channel: Channel
    account_id: str  # platform id: Page id / IG professional account id / X user id
    base_url: str  # e.g. https://graph.facebook.com/v23.0, https://api.x.com, or a sandbox URL
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    page_id: str | None = None  # Instagram via Facebook Login: the linked Page
    flavour: str | None = None  # Instagram: "facebook_login" or "instagram_login"; X: "oauth2"/"oauth1"
    timeout: float = 15.0
    page_size: int = 25
    min_interval: float = 0.5  # client-side pacing between calls (Meta: 2 calls/s per account)
    max_retries: int = 3
    overlap_seconds: float = 600.0  # Meta: re-check threads updated this close to the high-water mark
    max_response_bytes: int = 8 * 1024 * 1024  # decoded size of one response; larger is a platform error
    clock_skew_seconds: float = 300.0  # how far ahead of the platform's clock an item's time may be


class KnownIds(Protocol):
    """Answers which of these platform message ids are already stored for the account."""

    def __call__(self, external_ids: Sequence[str], /) -> set[str]: ...


# --- what a webhook delivery becomes (`WebhookSource.parse`) -----------------------------------
# A delivery (one POST) becomes, per brand account it names, the messages and quarantined items to
# store (one `Page` each, without a cursor), plus the events acknowledged and not stored.
@dataclass(frozen=True, slots=True)
class Ignored:
    """An event acknowledged and not stored."""

    what: str  # e.g. "read", "typing", "postback", "entry"
    reason: str
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """A message's new text (Messenger `message_edit`): the stored message is updated in place.
    No text: the customer unsent it (Instagram `is_deleted`); the stored message becomes deleted."""

    external_id: str
    text: str | None
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


@runtime_checkable
class Poller(Protocol):
    """A channel whose messages are read by polling: newest-first pages from a cursor."""

    spec: AccountSpec

    def fetch(self, cursor: Cursor | None, known: KnownIds) -> Iterator[Page]:
        """Everything newer than `cursor`, newest-first paging, as a stream of pages."""
        ...

    def health(self) -> Health:
        """Token valid, permissions, rate headroom."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Sender(Protocol):
    """A channel replies can be sent on."""

    spec: AccountSpec

    def send(self, reply: OutboundReply) -> SendResult:
        """Send one reply; raise a `ConnectorError` subclass on failure."""
        ...

    def close(self) -> None: ...


class WebhookSource(Protocol):
    """A channel that pushes deliveries (the webhook modules, `connectors.meta_webhook` and
    `connectors.x_webhook`, satisfy it as modules): check the signature, then parse the body."""

    def verify(self, secret: str, body: bytes, header: str | None, /) -> bool: ...

    def parse(self, body: Any, accounts: Any, /, *, received: datetime | None = None, skew: timedelta = ...) -> ParsedDelivery: ...


@runtime_checkable
class Connector(Poller, Sender, Protocol):
    """What the polled channels implement today: a `Poller` that is also a `Sender`."""

    spec: AccountSpec
