"""Reply policy: which way a reply may leave, and whether it may leave at all. Pure functions.

Meta (Instagram, Messenger): the standard window is 24 h from the customer's last message
(`RESPONSE`); from 24 h to 7 d only a human may answer, with `MESSAGE_TAG` + `HUMAN_AGENT`, and only
when the app has that feature (settings.replies.human_agent_tag); after 7 d nothing may be sent.
The window counts from the last message the *customer* wrote (never our echoes), on the platform's
clock. X has no window. Text limits: Messenger 2,000 characters, Instagram 1,000 UTF-8 bytes,
X 10,000 characters. The windows and limits themselves are data in `connectors.channels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.channels import CHANNELS, META_WINDOW, TextLimit, find
from connectors.enums import Channel, ReplyPolicy

# Meta's window (connectors.channels); the module-level names are what the messages below quote.
RESPONSE_WINDOW = META_WINDOW.standard
HUMAN_AGENT_WINDOW = META_WINDOW.extended
# The channels that have a reply window (Instagram and Messenger today).
META_CHANNELS = frozenset(value for value, info in CHANNELS.items() if info.window is not None)

TEXT_LIMITS: dict[str, TextLimit] = {value: info.text_limit for value, info in CHANNELS.items()}


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
    """True for the channels with Meta's reply window (their `connectors.channels` entry has one)."""
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
    info = find(ch)
    rule = info.window if info is not None else None
    if rule is None:
        label = info.label if info is not None else ch
        return WindowDecision(True, ReplyPolicy.DIRECT, f"{label} direct messages have no reply window")
    if last_customer_at is None:
        return WindowDecision(
            False, None, "the customer has not written in this conversation, so Meta's reply window never opened"
        )
    if last_customer_at > now:
        # A time after now is a misdated message (stores synced before times were bounded): the
        # customer wrote at the latest now, so the window is counted from now, never from 2100.
        last_customer_at = now
    age = now - last_customer_at
    if age < rule.standard:
        closes = last_customer_at + rule.standard
        return WindowDecision(True, ReplyPolicy.RESPONSE, "inside the 24-hour window", closes, closes - now)
    if age < rule.extended:
        closes = last_customer_at + rule.extended
        if not human_agent_tag:
            return WindowDecision(
                False,
                None,
                f"the 24-hour window closed {format_duration(age - rule.standard)} ago and the Human Agent "
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
        last_customer_at + rule.extended,
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
