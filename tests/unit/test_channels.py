"""connectors.channels: the per-channel table agrees with itself and with what the settings still spell out."""

from __future__ import annotations

import pytest

from connectors.channels import CHANNELS, channel_info, find, short_name
from connectors.enums import Channel
from inbox.replies.windows import META_CHANNELS, length_problem, reply_window


def test_every_channel_has_an_entry() -> None:
    assert set(CHANNELS) == {c.value for c in Channel}
    assert all(channel_info(c).channel is c for c in Channel)


def test_default_base_urls_match_the_settings() -> None:
    from inbox.settings import DEFAULT_BASE_URLS

    for (channel, flavour), url in DEFAULT_BASE_URLS.items():
        assert channel_info(channel).base_url(flavour) == url


def test_flavours_and_secret_keys() -> None:
    assert channel_info("x").secret_keys("oauth1") == ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
    assert channel_info("x").secret_keys() == ("access_token",)
    assert channel_info("instagram").default_flavour == "facebook_login"
    assert channel_info("facebook").default_flavour is None
    with pytest.raises(KeyError):
        channel_info("facebook").flavour("oauth1")


def test_short_names_and_unknown_channels() -> None:
    assert [short_name(c) for c in ("instagram", "facebook", "x", "sms")] == ["IG", "FB", "X", "sms"]
    assert find("sms") is None


def test_reply_windows_follow_the_table() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert META_CHANNELS == {"instagram", "facebook"}
    assert reply_window("x", None, now).reason == "X direct messages have no reply window"
    assert length_problem("instagram", "é" * 501) is not None and length_problem("facebook", "é" * 501) is None
