"""Reply policy: which way a reply may leave, and whether it may leave at all. Pure functions.

Meta (Instagram, Messenger): the standard window is 24 h from the customer's last message
(`RESPONSE`); from 24 h to 7 d only a human may answer, with `MESSAGE_TAG` + `HUMAN_AGENT`, and only
when the app has that feature (settings.replies.human_agent_tag); after 7 d nothing may be sent.
The window counts from the last message the *customer* wrote (never our echoes), on the platform's
clock. X has no window. Text limits: Messenger 2,000 characters, Instagram 1,000 UTF-8 bytes,
X 10,000 characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.enums import Channel, ReplyPolicy

RESPONSE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
META_CHANNELS = frozenset({Channel.INSTAGRAM.value, Channel.FACEBOOK.value})


@dataclass(frozen=True, slots=True)
class TextLimit:
    limit: int
    unit: str  # "characters" or "bytes"

    def measure(self, text: str) -> int:
        return len(text.encode("utf-8")) if self.unit == "bytes" else len(text)


TEXT_LIMITS: dict[str, TextLimit] = {
    Channel.FACEBOOK.value: TextLimit(2000, "characters"),
    Channel.INSTAGRAM.value: TextLimit(1000, "bytes"),
    Channel.X.value: TextLimit(10000, "characters"),
}


@dataclass(frozen=True, slots=True)
class WindowDecision:
    """May a reply go out now, and how. `closes_at` is when the usable window ends (None: no window)."""

    allowed: bool
    policy: ReplyPolicy | None
    reason: str
    closes_at: datetime | None = None
    remaining: timedelta | None = None


def _channel(channel: str | Channel) -> str:
    return channel.value if isinstance(channel, Channel) else str(channel)


def is_meta(channel: str | Channel) -> bool:
    return _channel(channel) in META_CHANNELS


def reply_window(
    channel: str | Channel,
    last_customer_at: datetime | None,
    now: datetime,
    *,
    human_agent_tag: bool = True,
) -> WindowDecision:
    """The reply policy for a conversation whose customer last wrote at `last_customer_at`."""
    ch = _channel(channel)
    if not is_meta(ch):
        return WindowDecision(True, ReplyPolicy.DIRECT, "X direct messages have no reply window")
    if last_customer_at is None:
        return WindowDecision(
            False, None, "the customer has not written in this conversation, so Meta's reply window never opened"
        )
    if last_customer_at > now:
        # A time after now is a misdated message (stores synced before times were bounded): the
        # customer wrote at the latest now, so the window is counted from now, never from 2100.
        last_customer_at = now
    age = now - last_customer_at
    if age < RESPONSE_WINDOW:
        closes = last_customer_at + RESPONSE_WINDOW
        return WindowDecision(True, ReplyPolicy.RESPONSE, "inside the 24-hour window", closes, closes - now)
    if age < HUMAN_AGENT_WINDOW:
        closes = last_customer_at + HUMAN_AGENT_WINDOW
        if not human_agent_tag:
            return WindowDecision(
                False,
                None,
                f"the 24-hour window closed {format_duration(age - RESPONSE_WINDOW)} ago and the Human Agent "
                "tag is turned off (settings: replies.human_agent_tag)",
                closes,
                closes - now,
            )
        return WindowDecision(
            True, ReplyPolicy.HUMAN_AGENT, "24 h to 7 d after the customer's last message: human agent tag", closes, closes - now
        )
    return WindowDecision(
        False,
        None,
        f"the customer's last message is {format_duration(age)} old; Meta allows no reply after 7 days",
        last_customer_at + HUMAN_AGENT_WINDOW,
        timedelta(0),
    )


def window_left(
    channel: str | Channel, last_customer_at: datetime | None, now: datetime, *, human_agent_tag: bool = True
) -> timedelta | None:
    """Time left in the usable window for Meta threads (zero when closed); None for X."""
    if not is_meta(channel):
        return None
    decision = reply_window(channel, last_customer_at, now, human_agent_tag=human_agent_tag)
    if not decision.allowed or decision.remaining is None:
        return timedelta(0)
    return decision.remaining


def length_problem(channel: str | Channel, text: str) -> str | None:
    """Why `text` cannot be sent on `channel` (None when it can)."""
    if not text.strip():
        return "the reply is empty"
    limit = TEXT_LIMITS.get(_channel(channel))
    if limit is None:
        return None
    size = limit.measure(text)
    if size > limit.limit:
        label = Channel(_channel(channel)).label
        return f"{label} allows {limit.limit:,} {limit.unit}; this reply has {size:,}"
    return None


def format_duration(delta: timedelta) -> str:
    """Compact, human: `45 s`, `12 min`, `5 h`, `3 d 4 h`."""
    seconds = int(max(0, delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours} h" + (f" {rest // 60} min" if hours < 3 and rest >= 60 else "")
    days, rest = divmod(seconds, 86400)
    return f"{days} d" + (f" {rest // 3600} h" if rest >= 3600 else "")


def describe_route(
    channel: str | Channel, customer: str, policy: ReplyPolicy, remaining: timedelta | None
) -> str:
    """`→ Instagram DM @customer · HUMAN_AGENT · 5 d left` (customer already made safe by the caller)."""
    ch = Channel(_channel(channel))
    parts = [f"→ {ch.label} DM {customer}", policy.value]
    if remaining is not None:
        parts.append(f"{format_duration(remaining)} left")
    return " · ".join(parts)
