"""The X connector's cursor and its read sizing: what a pass remembers, and how many events it asks for.

Kept apart from the connector (`connectors.x`) because the rules are pure: a table test reads them
without a client, a token or a socket.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from connectors.base import Cursor
from connectors.times import TWITTER_EPOCH_MS, snowflake_time

log = logging.getLogger("connectors.x")


def first_page_size(recent: int | None, cap: int, *, backfill: bool = False, tail: int = 0, reach_back: bool | None = None) -> int:
    """`max_results` of a pass's first lookup: the new events the last pass found (`recent`; None when
    the cursor does not say) plus the stored newest event that shows the walk reached the cursor,
    plus the `tail` stored events a late arrival may hide among (and one more). An idle account
    reads 1 event (2 while its newest stored event is recent: `reach_back`, default `tail > 0`);
    a backfill, where everything is new, starts at `cap`."""
    if backfill:
        return cap
    reach_back = tail > 0 if reach_back is None else reach_back
    window = tail + 1 if reach_back else 0  # the stored events near the newest, and one beyond them
    return max(1, min(cap, (recent or 0) + 1 + window))


def next_page_size(size: int, *, all_new: bool, cap: int) -> int:
    """The next lookup's `max_results`: twice this one while a page is all new (more is likely
    waiting), up to `cap`; otherwise the same."""
    return max(1, min(cap, size * 2 if all_new else size))


def x_cursor(newest: int | None, resume: tuple[str | None, int | None, int] | None, *, recent: int | None = None,
              tail: int = 0, read_at: datetime | None = None) -> dict[str, Any] | None:
    """`{"newest_id"}`: every event up to it is stored; `resume`: where an unfinished pass goes on (and
    at what page size); `recent`: how many new events the last complete pass found; `tail`: how many
    of the events it read are within `LAG` of the newest (besides it)."""
    out: dict[str, Any] = {} if newest is None else {"newest_id": str(newest)}
    if resume is not None and resume[0]:
        token, top, size = resume
        out["resume"] = {"token": token, "size": size} if top is None else {"token": token, "top": str(top), "size": size}
    if recent is not None and out:
        out["recent"] = recent
    if tail and out:
        out["tail"] = tail
    if read_at is not None and out:
        out["read_at"] = int(read_at.timestamp())
    return out or None


def read_at_of(value: Any) -> datetime | None:
    """When the last complete pass read the feed (a hostile or missing value: None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def id_time(snowflake: int) -> datetime:
    try:
        return snowflake_time(snowflake)
    except ValueError:  # a hostile cursor id: as old as can be
        return datetime.min.replace(tzinfo=timezone.utc)


def count_of(value: Any) -> int | None:
    """A non-negative count from a cursor (hostile or missing: None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def snowflake_of(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def cursor_id(cursor: Cursor | None) -> int | None:
    if not cursor or cursor.get("newest_id") is None:
        return None
    try:
        return int(cursor["newest_id"])
    except (TypeError, ValueError):
        log.warning("unreadable X cursor ignored; doing a full pass")
        return None


def lowest_snowflake_at(when: datetime) -> int:
    """The smallest id X could give an event created at `when` (ids hold milliseconds << 22)."""
    return max(0, int(when.timestamp() * 1000) - TWITTER_EPOCH_MS) << 22
