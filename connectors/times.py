"""Platform timestamps to aware UTC datetimes.

Graph returns ISO-8601 with a `+0000` offset (its docs say "UNIX-TIMESTAMP"), webhooks use epoch
milliseconds, X uses ISO `...Z` with milliseconds. Every form ends up as an aware UTC datetime.
"""

from __future__ import annotations

from datetime import datetime, timezone

# X snowflake ids carry their creation time: (id >> 22) + this epoch, in milliseconds.
TWITTER_EPOCH_MS = 1288834974657

# Below this an epoch number is seconds, above it milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000


def parse_time(value: object) -> datetime:
    """Parse an ISO string (`+0000`, `+00:00`, `Z`) or an epoch number (s or ms) to aware UTC.

    Raises ValueError for anything else, including booleans and empty strings.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return _from_epoch(float(text))
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:  # a naive platform time is UTC by convention
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    raise ValueError(f"not a timestamp: {value!r}")


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= _MS_THRESHOLD else number
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def format_time(value: datetime) -> str:
    """The ISO form stored in cursors (always UTC, `+00:00`)."""
    return value.astimezone(timezone.utc).isoformat()


def snowflake_time(snowflake: str | int) -> datetime:
    """Creation time encoded in an X snowflake id."""
    ms = (int(snowflake) >> 22) + TWITTER_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
