"""Column types and value vocabularies shared by the ORM models and the plain CLI tables."""

from __future__ import annotations

from datetime import datetime, timezone

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
