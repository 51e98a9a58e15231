"""Platform timestamps to aware UTC datetimes.

Graph returns ISO-8601 with a `+0000` offset (its docs say "UNIX-TIMESTAMP"), webhooks use epoch
milliseconds, X uses ISO `...Z` with milliseconds. Every form ends up as an aware UTC datetime.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from connectors.enums import MessageFlag

# X snowflake ids carry their creation time: (id >> 22) + this epoch, in milliseconds.
TWITTER_EPOCH_MS = 1288834974657

# Below this an epoch number is seconds, above it milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000

# No message on these platforms is older than this; an earlier time is a broken one.
EARLIEST = datetime(2004, 1, 1, tzinfo=timezone.utc)
DEFAULT_SKEW = timedelta(minutes=5)  # how far ahead of the platform's clock a time may be (`sync.clock_skew_seconds`)


def parse_time(value: object) -> datetime:
    """Parse an ISO string (`+0000`, `+00:00`, `Z`), an RFC 2822 date or an epoch number (s or ms) to aware UTC.

    Raises ValueError for anything else, including booleans and empty strings.
    """
    try:
        return _parse(value)
    except (OverflowError, OSError) as exc:  # epochs beyond what datetime (or the C library) can hold
        raise ValueError(f"timestamp out of range: {str(value)[:40]!r}") from exc


def _parse(value: object) -> datetime:
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
        if text[:1].isalpha():
            # RFC 2822 / HTTP-date ("Thu, 03 Dec 2026 08:58:04 GMT"): a form some proxies and
            # exporters write, never an ISO string (those start with a digit).
            at = http_date(text)
            if at is None:
                raise ValueError(f"not a timestamp: {text[:40]!r}")
            return at
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


def platform_time(
    value: object, received: datetime | None = None, skew: timedelta = DEFAULT_SKEW
) -> tuple[datetime, MessageFlag | None]:
    """A platform's time for an item, checked against the platform's clock (`received`; default: ours).

    Missing, unreadable, implausibly old, or later than `received + skew`: `received` is used
    instead, with the flag saying why (the caller keeps the original in the raw payload). So one
    item dated 2100 never moves a cursor or a reply window past the present.
    """
    if received is None:
        received = datetime.now(timezone.utc)
    if value is None or value == "":
        return received, MessageFlag.TIME_MISSING
    try:
        at = value if isinstance(value, datetime) else parse_time(value)
    except ValueError:
        return received, MessageFlag.TIME_INVALID
    if at > received + skew:
        return received, MessageFlag.TIME_FUTURE
    if at < EARLIEST:
        return received, MessageFlag.TIME_INVALID
    return at, None


def http_date(value: str | None) -> datetime | None:
    """An RFC 2822 / HTTP-date (a `Date` or `Retry-After` header) as aware UTC; None when it is not one.
    A date without a zone ("-0000") is UTC, never this machine's local time."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """The ISO form stored in cursors (always UTC, `+00:00`)."""
    return value.astimezone(timezone.utc).isoformat()


def snowflake_time(snowflake: str | int) -> datetime:
    """Creation time encoded in an X snowflake id."""
    ms = (int(snowflake) >> 22) + TWITTER_EPOCH_MS
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"snowflake id out of range: {str(snowflake)[:40]!r}") from exc
