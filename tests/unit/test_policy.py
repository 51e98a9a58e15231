"""Reply policy tables: Meta windows on the platform clock, and per-channel text limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.enums import ReplyPolicy
from inbox.replies import windows

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("channel", "age", "human_tag", "allowed", "expected"),
    [
        ("instagram", 1 * H, True, True, ReplyPolicy.RESPONSE),
        ("facebook", 23.9 * H, True, True, ReplyPolicy.RESPONSE),
        ("facebook", 24 * H, True, True, ReplyPolicy.HUMAN_AGENT),  # the boundary belongs to the tag
        ("instagram", 5 * 24 * H, True, True, ReplyPolicy.HUMAN_AGENT),
        ("instagram", 5 * 24 * H, False, False, None),  # no Human Agent feature: refuse
        ("facebook", 7 * 24 * H - timedelta(seconds=1), True, True, ReplyPolicy.HUMAN_AGENT),
        ("facebook", 7 * 24 * H, True, False, None),
        ("instagram", 30 * 24 * H, True, False, None),
        ("x", 30 * 24 * H, True, True, ReplyPolicy.DIRECT),  # X: no window
        ("x", 1 * H, False, True, ReplyPolicy.DIRECT),
    ],
)
def test_window_table(channel: str, age: timedelta, human_tag: bool, allowed: bool, expected: ReplyPolicy | None) -> None:
    d = windows.reply_window(channel, NOW - age, NOW, human_agent_tag=human_tag)
    assert d.allowed is allowed
    assert d.policy is expected
    if not allowed:
        assert d.reason


def test_window_reasons_and_remaining() -> None:
    d = windows.reply_window("instagram", NOW - 2 * 24 * H, NOW)
    assert d.remaining == timedelta(days=5)
    assert windows.describe_route("instagram", "@budi", d.policy, d.remaining) == "→ Instagram DM @budi · HUMAN_AGENT · 5 d left"
    closed = windows.reply_window("facebook", NOW - 8 * 24 * H, NOW)
    assert "7 days" in closed.reason and "8 d" in closed.reason
    never = windows.reply_window("facebook", None, NOW)
    assert not never.allowed and "never opened" in never.reason
    assert windows.window_left("facebook", NOW - 8 * 24 * H, NOW) == timedelta(0)
    assert windows.window_left("x", NOW - H, NOW) is None


@pytest.mark.parametrize(
    ("channel", "text", "ok"),
    [
        ("facebook", "a" * 2000, True),
        ("facebook", "a" * 2001, False),
        ("facebook", "é" * 2000, True),  # characters, not bytes
        ("instagram", "a" * 1000, True),
        ("instagram", "a" * 1001, False),
        ("instagram", "é" * 500, True),  # 1,000 bytes
        ("instagram", "é" * 501, False),  # 501 characters but 1,002 bytes
        ("instagram", "🙏" * 250, True),  # 4 bytes each
        ("instagram", "🙏" * 251, False),
        ("x", "a" * 10000, True),
        ("x", "a" * 10001, False),
        ("x", "   ", False),
    ],
)
def test_length_table(channel: str, text: str, ok: bool) -> None:
    problem = windows.length_problem(channel, text)
    assert (problem is None) is ok
    if problem and text.strip():
        assert ("bytes" in problem) == (channel == "instagram")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (600, "10 min"), (3600 * 2 + 60 * 30, "2 h 30 min"), (3600 * 5, "5 h"), (86400 * 3 + 3600 * 4, "3 d 4 h")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert windows.format_duration(timedelta(seconds=seconds)) == text
