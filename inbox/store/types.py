"""Column types, value vocabularies and the JSON codec shared by the ORM models and the plain CLI tables."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

ACTIVE_STATUSES = ("new", "open", "pending")
STATUSES = ("new", "open", "pending", "resolved", "closed")
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
REPLY_STATES = ("queued", "sending", "sent", "failed", "unknown")
REPLY_IN_DOUBT = ("unknown", "sending")  # it may have reached the customer: never sent again blindly
REPLY_OPEN = ("queued", "sending", "failed", "unknown")  # not delivered (yet): what `inbox outbox` lists


def utcnow() -> datetime:
    """Now, as an aware UTC datetime: what every stored time is."""
    return datetime.now(timezone.utc)


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (what every timestamp column holds)."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the offset; this puts it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSON text for the store's JSON columns: orjson, with the standard library for what it refuses.
#
# Every message's raw payload is encoded here on its way into the store, hundreds of thousands in a
# large sync, and orjson does it several times faster than `json.dumps` (about 8% of a page ingest).
# What differs: orjson refuses integers beyond 64 bits, which go to `json.dumps` instead; it writes
# NaN and infinities as null, where `json.dumps` writes tokens that are not JSON (PostgreSQL's json
# type refuses them). Reading stays with SQLAlchemy's default, the standard library.
_OPTIONS = orjson.OPT_NON_STR_KEYS  # as json.dumps: {1: "a"} -> {"1": "a"}


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits; json.dumps still raises for a type neither knows
        return json.dumps(value)
