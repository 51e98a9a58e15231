"""Plain SQLAlchemy Core tables for the CLI's hot paths (list, show, search, claim, triage writes).

GENERATED from `inbox/store/models.py` by `python -m inbox.store.gen`: do not edit; change the
models and run it again (tests/store/test_schema_gen.py fails while this file is out of date).
The same tables as the models, without SQLModel: building the SQLModel classes (pydantic + ORM
mapping) costs ~0.2 s at every start, which is most of the budget of `inbox list`.
"""

from __future__ import annotations

import sqlalchemy as sa

from inbox.store.types import UTCDateTime

metadata = sa.MetaData()

account = sa.Table(
    "account",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(100)),
    sa.Column("channel", sa.String(20)),
    sa.Column("platform_id", sa.String(100)),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("last_sync_at", UTCDateTime()),
    sa.Column("last_success_at", UTCDateTime()),
    sa.Column("last_error", sa.String()),
    sa.Column("last_error_at", UTCDateTime()),
    sa.Column("needs_reauth", sa.Boolean()),
    sa.Column("rate_limit", sa.Integer()),
    sa.Column("rate_remaining", sa.Integer()),
    sa.Column("rate_reset_at", UTCDateTime()),
    sa.Column("rate_usage_pct", sa.Float()),
    sa.Column("paused_until", UTCDateTime()),
)

person = sa.Table(
    "person",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("display_name", sa.String()),
    sa.Column("created_at", UTCDateTime()),
)

contact = sa.Table(
    "contact",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("channel", sa.String(20)),
    sa.Column("account_id", sa.Integer()),
    sa.Column("platform_user_id", sa.String(100)),
    sa.Column("handle", sa.String()),
    sa.Column("name", sa.String()),
    sa.Column("person_id", sa.Integer()),
    sa.Column("created_at", UTCDateTime()),
)

person_event = sa.Table(
    "person_event",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("person_id", sa.Integer()),
    sa.Column("contact_id", sa.Integer()),
    sa.Column("action", sa.String(20)),
    sa.Column("reason", sa.String()),
    sa.Column("actor", sa.String(100)),
    sa.Column("at", UTCDateTime()),
)

ticket = sa.Table(
    "ticket",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("status", sa.String(20)),
    sa.Column("priority", sa.String(20)),
    sa.Column("priority_rank", sa.Integer()),
    sa.Column("category", sa.String(50)),
    sa.Column("assignee", sa.String(100)),
    sa.Column("channel", sa.String(20)),
    sa.Column("account_id", sa.Integer()),
    sa.Column("contact_id", sa.Integer()),
    sa.Column("person_id", sa.Integer()),
    sa.Column("subject", sa.String()),
    sa.Column("snippet", sa.String()),
    sa.Column("message_count", sa.Integer()),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
    sa.Column("last_customer_message_at", UTCDateTime()),
    sa.Column("first_response_due_at", UTCDateTime()),
    sa.Column("first_response_at", UTCDateTime()),
    sa.Column("escalation_due_at", UTCDateTime()),
    sa.Column("resolved_at", UTCDateTime()),
    sa.Column("reopened_count", sa.Integer()),
    sa.Column("has_gap", sa.Boolean()),
    sa.Column("linked_ticket_id", sa.Integer()),
    sa.Column("possible_duplicate_of_id", sa.Integer()),
    sa.Column("merged_into_id", sa.Integer()),
    sa.Column("repeat_count", sa.Integer()),
)

ticket_tag = sa.Table(
    "ticket_tag",
    metadata,
    sa.Column("ticket_id", sa.Integer(), primary_key=True),
    sa.Column("tag", sa.String(50), primary_key=True),
)

ticket_ref = sa.Table(
    "ticket_ref",
    metadata,
    sa.Column("ticket_id", sa.Integer(), primary_key=True),
    sa.Column("ref", sa.String(100), primary_key=True),
)

ticket_event = sa.Table(
    "ticket_event",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("ticket_id", sa.Integer()),
    sa.Column("at", UTCDateTime()),
    sa.Column("actor", sa.String(100)),
    sa.Column("action", sa.String(40)),
    sa.Column("detail", sa.JSON()),
)

conversation = sa.Table(
    "conversation",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("channel", sa.String(20)),
    sa.Column("account_id", sa.Integer()),
    sa.Column("external_id", sa.String(255)),
    sa.Column("contact_id", sa.Integer()),
    sa.Column("ticket_id", sa.Integer()),
    sa.Column("last_message_at", UTCDateTime()),
    sa.Column("last_customer_message_at", UTCDateTime()),
    sa.Column("created_at", UTCDateTime()),
)

message = sa.Table(
    "message",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("channel", sa.String(20)),
    sa.Column("account_id", sa.Integer()),
    sa.Column("external_id", sa.String(255)),
    sa.Column("conversation_id", sa.Integer()),
    sa.Column("ticket_id", sa.Integer()),
    sa.Column("contact_id", sa.Integer()),
    sa.Column("direction", sa.String(3)),
    sa.Column("author_id", sa.String(100)),
    sa.Column("author_handle", sa.String()),
    sa.Column("author_name", sa.String()),
    sa.Column("text", sa.String()),
    sa.Column("kind", sa.String(20)),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("received_at", UTCDateTime()),
    sa.Column("attachments", sa.JSON()),
    sa.Column("raw", sa.JSON()),
    sa.Column("reply_id", sa.Integer()),
    sa.Column("dedup_rule", sa.String(40)),
    sa.Column("dedup_reason", sa.String()),
    sa.Column("dedup_score", sa.Float()),
    sa.Column("repeat_of_id", sa.Integer()),
    sa.Column("flags", sa.String(200)),
    sa.Column("via", sa.String(10)),
)

reply = sa.Table(
    "reply",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("idempotency_key", sa.String(64)),
    sa.Column("ticket_id", sa.Integer()),
    sa.Column("conversation_id", sa.Integer()),
    sa.Column("channel", sa.String(20)),
    sa.Column("account_id", sa.Integer()),
    sa.Column("recipient_id", sa.String(100)),
    sa.Column("text", sa.String()),
    sa.Column("policy", sa.String(20)),
    sa.Column("state", sa.String(20)),
    sa.Column("attempts", sa.Integer()),
    sa.Column("error", sa.String()),
    sa.Column("owner", sa.String(200)),
    sa.Column("echo_after_message_id", sa.Integer()),
    sa.Column("external_id", sa.String(255)),
    sa.Column("author", sa.String(100)),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
    sa.Column("sent_at", UTCDateTime()),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("account_id", sa.Integer(), primary_key=True),
    sa.Column("cursor", sa.JSON()),
    sa.Column("updated_at", UTCDateTime()),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", UTCDateTime()),
)

account_usage = sa.Table(
    "account_usage",
    metadata,
    sa.Column("account_id", sa.Integer(), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("events_read", sa.Integer()),
)

sync_gap = sa.Table(
    "sync_gap",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("account_id", sa.Integer()),
    sa.Column("conversation_external_id", sa.String(255)),
    sa.Column("ticket_id", sa.Integer()),
    sa.Column("detail", sa.String()),
    sa.Column("detected_at", UTCDateTime()),
    sa.Column("acknowledged_at", UTCDateTime()),
    sa.Column("missing", sa.Integer()),
    sa.Column("missing_after", UTCDateTime()),
    sa.Column("missing_before", UTCDateTime()),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("account_id", sa.Integer()),
    sa.Column("channel", sa.String(20)),
    sa.Column("external_id", sa.String(255)),
    sa.Column("thread_id", sa.String(255)),
    sa.Column("reason", sa.String()),
    sa.Column("raw", sa.JSON()),
    sa.Column("received_at", UTCDateTime()),
    sa.Column("resolved_at", UTCDateTime()),
)

webhook_delivery = sa.Table(
    "webhook_delivery",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("source", sa.String(10)),
    sa.Column("received_at", UTCDateTime()),
    sa.Column("content_type", sa.String(200)),
    sa.Column("body", sa.LargeBinary()),
    sa.Column("state", sa.String(20)),
    sa.Column("attempts", sa.Integer()),
    sa.Column("error", sa.String()),
    sa.Column("processed_at", UTCDateTime()),
)
