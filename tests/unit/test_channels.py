"""connectors.channels: the per-channel table agrees with itself and with what the settings still spell out."""

from __future__ import annotations

import pytest

from connectors.channels import CHANNELS, channel_info, find, short_name
from connectors.enums import Channel
from inbox.replies.windows import META_CHANNELS, length_problem, reply_window


def test_every_channel_has_an_entry() -> None:
    assert set(CHANNELS) == {c.value for c in Channel}
    assert all(channel_info(c).channel is c for c in Channel)


@pytest.mark.parametrize(
    ("account", "url", "secrets"),
    [
        ({"channel": "facebook", "page_id": "1"}, "https://graph.facebook.com/v23.0", ["access_token_env"]),
        ({"channel": "instagram", "ig_user_id": "2", "page_id": "1"}, "https://graph.facebook.com/v23.0", ["access_token_env"]),
        ({"channel": "instagram", "ig_user_id": "2", "flavour": "instagram_login"}, "https://graph.instagram.com/v23.0",
         ["access_token_env"]),
        ({"channel": "x", "user_id": "3"}, "https://api.x.com", ["access_token_env"]),
        ({"channel": "x", "user_id": "3", "flavour": "oauth1", "consumer_key_env": "K", "consumer_secret_env": "S",
          "access_token_secret_env": "TS"}, "https://api.x.com",
         ["consumer_key_env", "consumer_secret_env", "access_token_env", "access_token_secret_env"]),
    ],
)
def test_the_settings_read_the_table(account: dict[str, str], url: str, secrets: list[str]) -> None:
    from inbox.settings import AccountSettings

    acc = AccountSettings(name="a", access_token_env="T", **account)
    assert acc.resolved_base_url() == url
    assert acc.secret_env_keys() == secrets
    assert acc.resolved_calls_per_second() == channel_info(account["channel"]).calls_per_second


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ({"channel": "facebook", "page_id": "1", "flavour": "oauth2"}, "facebook accounts take no 'flavour'"),
        ({"channel": "instagram", "ig_user_id": "2", "flavour": "oauth2"},
         "instagram 'flavour' must be 'facebook_login' or 'instagram_login'"),
        ({"channel": "x", "user_id": "3", "flavour": "facebook_login"}, "x 'flavour' must be 'oauth2' or 'oauth1'"),
        ({"channel": "instagram", "ig_user_id": "2"}, "a instagram account needs 'page_id'"),
        ({"channel": "x"}, "a x account needs 'user_id'"),
    ],
)
def test_the_settings_refuse_what_the_table_does_not_allow(account: dict[str, str], problem: str) -> None:
    from pydantic import ValidationError

    from inbox.settings import AccountSettings

    with pytest.raises(ValidationError, match=problem):
        AccountSettings(name="a", access_token_env="T", **account)


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
