"""The store's tables (SQLModel). Schema changes go through Alembic (`inbox/store/migrations`).

Times are stored as timezone-aware UTC (`UTCDateTime` gives them back aware on SQLite too).
JSON columns hold raw payloads, attachments and cursors.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from inbox.store.types import ACTIVE_STATUSES, PRIORITY_RANK, UTCDateTime, utcnow  # noqa: F401  (re-exported)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json(default: Any = None) -> Any:
    if callable(default):
        return Field(default_factory=default, sa_type=sa.JSON)
    return Field(default=default, sa_type=sa.JSON)


class TicketStatus(str, Enum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(str, Enum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class ReplyState(str, Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the call may have reached the platform: reconcile against echoes first


class Account(SQLModel, table=True):
    """A brand account on a channel, and its health."""

    __tablename__ = "account"
    __table_args__ = (sa.UniqueConstraint("channel", "platform_id", name="uq_account_channel_platform"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    channel: str = Field(max_length=20)
    platform_id: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_sync_at: datetime | None = _ts()
    last_success_at: datetime | None = _ts()
    last_error: str | None = None
    last_error_at: datetime | None = _ts()
    needs_reauth: bool = False
    rate_limit: int | None = None
    rate_remaining: int | None = None
    rate_reset_at: datetime | None = _ts()
    rate_usage_pct: float | None = None
    paused_until: datetime | None = _ts()


class Person(SQLModel, table=True):
    """One human behind contacts on several channels."""

    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Contact(SQLModel, table=True):
    """A customer on one channel of one account."""

    __tablename__ = "contact"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account_id", "platform_user_id", name="uq_contact_platform"),
        # dedup rule 5 looks up the same handle across channels (never a display name: not an identity)
        sa.Index("ix_contact_handle", "handle"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    account_id: int = Field(foreign_key="account.id")
    platform_user_id: str = Field(max_length=100)
    handle: str | None = None
    name: str | None = None
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PersonEvent(SQLModel, table=True):
    """Audit of contacts linked into (or unlinked from) a person."""

    __tablename__ = "person_event"

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    contact_id: int = Field(foreign_key="contact.id")
    action: str = Field(max_length=20)  # link / unlink
    reason: str
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Ticket(SQLModel, table=True):
    """The unit of work."""

    __tablename__ = "ticket"
    __table_args__ = (
        sa.Index("ix_ticket_triage", "status", "priority_rank", "first_response_due_at"),
        sa.Index("ix_ticket_assignee_status", "assignee", "status"),
        # The triage queue order (priority, SLA due, id): `inbox list` and `claim` read it in order.
        sa.Index("ix_ticket_queue", "priority_rank", "first_response_due_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=TicketStatus.NEW.value, max_length=20)  # indexed by ix_ticket_triage
    priority: str = Field(default=Priority.NORMAL.value, max_length=20)
    priority_rank: int = Field(default=PRIORITY_RANK["normal"])  # for sorting: 0 urgent .. 3 low
    category: str | None = Field(default=None, max_length=50, index=True)
    assignee: str | None = Field(default=None, max_length=100)
    channel: str = Field(max_length=20, index=True)  # the channel it started on
    account_id: int = Field(foreign_key="account.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    subject: str | None = None  # snippet of the first customer message (sanitized on display)
    snippet: str | None = None  # latest customer message
    message_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_customer_message_at: datetime | None = _ts()
    first_response_due_at: datetime | None = _ts()
    first_response_at: datetime | None = _ts()
    escalation_due_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    reopened_count: int = 0
    has_gap: bool = False
    linked_ticket_id: int | None = Field(default=None, foreign_key="ticket.id")  # follow-up of an old one
    possible_duplicate_of_id: int | None = Field(default=None, foreign_key="ticket.id")
    merged_into_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    # The customer's messages that repeat an earlier one of the thread (rule 5). A server default and
    # no client one: statements written for older schemas (the upgrade tests) leave it out.
    repeat_count: int = Field(default=0, sa_column=sa.Column("repeat_count", sa.Integer(), nullable=False, server_default="0"))


class TicketTag(SQLModel, table=True):
    __tablename__ = "ticket_tag"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    tag: str = Field(primary_key=True, max_length=50, index=True)


class TicketRef(SQLModel, table=True):
    """Order references (invoice numbers) quoted in a ticket, so dedup finds tickets by invoice."""

    __tablename__ = "ticket_ref"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    ref: str = Field(primary_key=True, max_length=100, index=True)


class TicketEvent(SQLModel, table=True):
    """Audit log: every change to a ticket (status, assignee, merge, dedup decision, note...)."""

    __tablename__ = "ticket_event"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=100)  # an agent, or "sync"
    action: str = Field(max_length=40)  # created, status, assign, priority, tag, note, merge, dedup, reply...
    detail: dict[str, Any] | None = _json()


class Conversation(SQLModel, table=True):
    """A platform thread."""

    __tablename__ = "conversation"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account_id", "external_id", name="uq_conversation_platform"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    account_id: int = Field(foreign_key="account.id")
    external_id: str = Field(max_length=255)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)  # current ticket
    last_message_at: datetime | None = _ts()
    last_customer_message_at: datetime | None = _ts()  # reply windows count from here
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account_id", "external_id", name="uq_message_platform"),
        sa.Index("ix_message_ticket_sent", "ticket_id", "sent_at"),
        sa.Index("ix_message_conversation_sent", "conversation_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    account_id: int = Field(foreign_key="account.id")
    external_id: str = Field(max_length=255)
    conversation_id: int = Field(foreign_key="conversation.id")
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    direction: str = Field(max_length=3)  # in / out
    author_id: str = Field(max_length=100)
    author_handle: str | None = None
    author_name: str | None = None
    text: str | None = None
    kind: str = Field(default="text", max_length=20)
    sent_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attachments: list[dict[str, Any]] | None = _json()
    raw: dict[str, Any] | None = _json()
    reply_id: int | None = Field(default=None, foreign_key="reply.id")  # our Reply, for echoes
    dedup_rule: str | None = Field(default=None, max_length=40)
    dedup_reason: str | None = None
    dedup_score: float | None = None
    repeat_of_id: int | None = None  # rule 5 in its thread: the earlier message this one repeats (message id)
    # What was repaired, comma-separated connectors.enums.MessageFlag values (the platform's own are in raw).
    flags: str | None = Field(default=None, max_length=200)
    # How it first reached the store: "poll" or "webhook" (NULL: stored before webhooks existed).
    # A poll that stores a message no webhook delivered is what `inbox accounts` counts as missed.
    via: str | None = Field(default=None, max_length=10)


class Reply(SQLModel, table=True):
    """The outbox: recorded before the API call, completed with the platform id after."""

    __tablename__ = "reply"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=64)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    channel: str = Field(max_length=20)
    account_id: int = Field(foreign_key="account.id")
    recipient_id: str = Field(max_length=100)
    text: str
    policy: str = Field(max_length=20)  # RESPONSE / HUMAN_AGENT / DIRECT
    state: str = Field(default=ReplyState.QUEUED.value, max_length=20, index=True)
    attempts: int = 0
    error: str | None = None
    # Who holds the current attempt (process and attempt token); every step of a send is
    # conditional on it, so a process that lost the attempt can never call the platform.
    owner: str | None = Field(default=None, max_length=200)
    # The newest message stored in the thread when the reply was recorded: its echo can only be a
    # later row. Platform and local clocks may disagree by minutes; row order cannot.
    echo_after_message_id: int | None = None
    external_id: str | None = Field(default=None, max_length=255, index=True)
    author: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = _ts()


class SyncState(SQLModel, table=True):
    """Per account: the cursor (committed with the data it covers) and the worker lease."""

    __tablename__ = "sync_state"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    cursor: dict[str, Any] | None = _json()
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _ts()


class AccountUsage(SQLModel, table=True):
    """Per account and UTC day: the items the platform returned to its syncs (X bills each DM event read)."""

    __tablename__ = "account_usage"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    day: str = Field(primary_key=True, max_length=10)  # the UTC day, YYYY-MM-DD
    events_read: int = 0


class SyncGap(SQLModel, table=True):
    """Messages known to be unreadable (Meta's 20-message horizon)."""

    __tablename__ = "sync_gap"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    conversation_external_id: str = Field(max_length=255)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    detail: str
    detected_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    acknowledged_at: datetime | None = _ts()
    # What `inbox show` tells the agent: how many messages are known to be missing (None: the
    # platform did not say), written after `missing_after` (the thread's newest message stored
    # before the gap; None: since the thread began) and before `missing_before` (its oldest
    # readable message).
    missing: int | None = None
    missing_after: datetime | None = _ts()
    missing_before: datetime | None = _ts()


class Quarantine(SQLModel, table=True):
    """Payloads that could not be parsed, kept whole for replay."""

    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    channel: str = Field(max_length=20)
    external_id: str | None = Field(default=None, max_length=255)
    thread_id: str | None = Field(default=None, max_length=255)
    reason: str
    raw: Any = _json()
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = _ts()


class WebhookDelivery(SQLModel, table=True):
    """One webhook POST as received, committed before it is acknowledged (inbox.intake.receiver).

    `state` is pending until the delivery's messages are ingested (then done), or quarantined when
    it cannot be read (the raw body stays here for replay, with the reason in `error`).
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_delivery_state", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=10)  # meta / x
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    content_type: str | None = Field(default=None, max_length=200)
    body: bytes = Field(sa_type=sa.LargeBinary)
    state: str = Field(default="pending", max_length=20)
    attempts: int = 0
    error: str | None = None
    processed_at: datetime | None = _ts()
