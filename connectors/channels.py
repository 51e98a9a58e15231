"""What each channel is, as data: one frozen entry per channel, no HTTP.

The connectors, the reply policy (`inbox.replies.windows`), the settings and the CLI read these facts
from here instead of spelling them out, so a fourth channel costs one entry here, one connector module
and one sandbox module. Nothing here imports requests or tweepy: it is read on every CLI start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from connectors.enums import Channel

GRAPH_VERSION = "v23.0"
Intake = Literal["poll", "webhook"]


@dataclass(frozen=True, slots=True)
class TextLimit:
    """How long a reply may be: `limit` characters, or UTF-8 bytes when `unit` is "bytes"."""

    limit: int
    unit: str  # "characters" or "bytes"

    def measure(self, text: str) -> int:
        return len(text.encode("utf-8")) if self.unit == "bytes" else len(text)


@dataclass(frozen=True, slots=True)
class ReplyWindowRule:
    """Meta's rule: a plain reply up to `standard` after the customer's last message, a Human Agent
    tagged one up to `extended`, nothing after. A channel without a rule has no window."""

    standard: timedelta
    extended: timedelta


@dataclass(frozen=True, slots=True)
class Flavour:
    """One way of authenticating an account: the secrets it needs and where its API lives."""

    name: str | None  # None: the channel has one way only
    secret_keys: tuple[str, ...]  # keys of AccountSpec.secrets (the config names each `<key>_env`)
    base_url: str
    id_keys: tuple[str, ...]  # the platform ids an account of this flavour needs in the config
    token_life: str | None = None  # how long its user token lives, for the team reconnecting it


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel: Channel
    short: str  # the CLI's narrow column: IG, FB, X
    account_noun: str  # what an account id names: "Facebook page"
    id_key: str  # the config key holding the account's platform id
    flavours: tuple[Flavour, ...]  # the first is the default
    graph_version: str | None
    calls_per_second: float | None  # default client-side pacing; None: read from the rate headers
    page_size: int  # items asked for per list call
    max_page_size: int | None  # the most the platform returns per call (None: not clamped)
    text_limit: TextLimit
    window: ReplyWindowRule | None
    intake: frozenset[Intake]  # how messages arrive: polled, pushed by webhook, or both
    webhook_object: str | None = None  # Meta's `object` field of a webhook delivery for this channel

    @property
    def value(self) -> str:
        return self.channel.value

    @property
    def label(self) -> str:
        return self.channel.label

    @property
    def default_flavour(self) -> str | None:
        return self.flavours[0].name

    def flavour(self, name: str | None) -> Flavour:
        """The flavour called `name` (None: the default)."""
        wanted = name if name is not None else self.default_flavour
        for flavour in self.flavours:
            if flavour.name == wanted:
                return flavour
        raise KeyError(f"{self.channel.value} has no flavour {name!r}")

    def secret_keys(self, flavour: str | None = None) -> tuple[str, ...]:
        return self.flavour(flavour).secret_keys

    def base_url(self, flavour: str | None = None) -> str:
        return self.flavour(flavour).base_url


META_WINDOW = ReplyWindowRule(standard=timedelta(hours=24), extended=timedelta(days=7))
_GRAPH = f"https://graph.facebook.com/{GRAPH_VERSION}"

FACEBOOK = ChannelInfo(
    channel=Channel.FACEBOOK,
    short="FB",
    account_noun="Facebook page",
    id_key="page_id",
    flavours=(Flavour(None, ("access_token",), _GRAPH, ("page_id",)),),
    graph_version=GRAPH_VERSION,
    calls_per_second=2.0,  # Meta: 2 conversation calls/s per Page
    page_size=25,
    max_page_size=None,
    text_limit=TextLimit(2000, "characters"),
    window=META_WINDOW,
    intake=frozenset({"poll", "webhook"}),
    webhook_object="page",
)
INSTAGRAM = ChannelInfo(
    channel=Channel.INSTAGRAM,
    short="IG",
    account_noun="Instagram account",
    id_key="ig_user_id",
    flavours=(
        Flavour("facebook_login", ("access_token",), _GRAPH, ("ig_user_id", "page_id")),  # through the linked Page
        Flavour("instagram_login", ("access_token",), f"https://graph.instagram.com/{GRAPH_VERSION}", ("ig_user_id",),
                token_life="Instagram Login tokens last 60 days, unless refreshed"),
    ),
    graph_version=GRAPH_VERSION,
    calls_per_second=2.0,  # Meta: 2 conversation calls/s per IG account
    page_size=25,
    max_page_size=None,
    text_limit=TextLimit(1000, "bytes"),
    window=META_WINDOW,
    intake=frozenset({"poll", "webhook"}),
    webhook_object="instagram",
)
X = ChannelInfo(
    channel=Channel.X,
    short="X",
    account_noun="X user",
    id_key="user_id",
    flavours=(
        Flavour("oauth2", ("access_token",), "https://api.x.com", ("user_id",), token_life="X OAuth 2.0 user tokens last 2 hours"),
        Flavour("oauth1", ("consumer_key", "consumer_secret", "access_token", "access_token_secret"), "https://api.x.com",
                ("user_id",)),
    ),
    graph_version=None,
    calls_per_second=None,  # X budgets come from its x-rate-limit headers
    page_size=25,
    max_page_size=100,  # dm_events max_results
    text_limit=TextLimit(10_000, "characters"),
    window=None,  # X direct messages have no reply window
    intake=frozenset({"poll", "webhook"}),
)

CHANNELS: dict[str, ChannelInfo] = {info.value: info for info in (INSTAGRAM, FACEBOOK, X)}

# Messages of a Graph thread that can be read at all, newest first (Meta's 20-message horizon).
GRAPH_THREAD_HORIZON = 20


def channel_info(channel: str | Channel) -> ChannelInfo:
    """The entry for `channel` (a `Channel` or its value); KeyError for an unknown one."""
    return CHANNELS[channel.value if isinstance(channel, Channel) else str(channel)]


def find(channel: str | Channel) -> ChannelInfo | None:
    """The entry for `channel`, or None when it is no channel we know."""
    return CHANNELS.get(channel.value if isinstance(channel, Channel) else str(channel))


def short_name(channel: str | Channel) -> str:
    """IG, FB, X; an unknown value as it is."""
    info = find(channel)
    return info.short if info is not None else str(channel)
