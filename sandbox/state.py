"""The sandbox's data: accounts, people, threads, messages, X events and the sandbox clock.

Everything lives in memory behind one lock. Indexes are kept sorted on every change so that a page
request is a bisect plus a slice, never a scan of the whole dataset (the large dataset holds 100k+
messages). Values here are mutable records with __slots__ because the generator builds them by the
hundred thousand; they never leave the sandbox (HTTP handlers render them to JSON).
"""

from __future__ import annotations

import base64
import random
import threading
import time
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Any

# X snowflake epoch (ms); id >> 22 is milliseconds since it.
TWEPOCH_MS = 1288834974657
X_HORIZON_MS = 30 * 86400 * 1000  # X serves only the last 30 days of DM events
META_HORIZON = 20  # Meta: only the 20 newest messages of a thread are readable

PAGE_ID = "104920378912345"
PAGE_NAME = "TokoShop Indonesia"
IG_FB_ID = "17841400000000001"
IG_FB_USERNAME = "tokoshop.official"
IG_DIRECT_ID = "17841400000000002"
IG_DIRECT_USERNAME = "tokoshop.id"
X_USER_ID = "1500000000000000001"
X_USERNAME = "TokoShopCare"
X_NAME = "TokoShop Care"

# Fixed token values of realistic shape so that generated configs stay stable between runs.
FB_TOKEN = "EAASandboxTokoShop0Page0Token0104920378912345ZBZD"
IG_TOKEN = "IGAASandboxTokoShop0Direct0Token017841400000000002ZD"
X_TOKEN = "c2FuZGJveC10b2tvc2hvcC14LXVzZXItdG9rZW46MTc2NDA2NjAwMDoxOjA6YXQ6MQ"
X_CONSUMER_KEY = "SandboxConsumerKeyTokoShop01"
X_CONSUMER_SECRET = "SandboxConsumerSecretTokoShop0000000000000000000001"
X_ACCESS_TOKEN = "1500000000000000001-SandboxAccessTokenTokoShop00000001"
X_ACCESS_TOKEN_SECRET = "SandboxAccessTokenSecretTokoShop00000000000001"


@dataclass(frozen=True)
class SandboxAccount:
    """One brand account the sandbox serves, with what a config needs to reach it."""

    name: str
    channel: str  # "facebook" | "instagram" | "x"
    platform_id: str
    page_id: str | None
    flavour: str | None
    token_env: str
    token: str = field(repr=False)
    base_url: str  # absolute once the server has a port; relative path before


@dataclass(frozen=True)
class Call:
    """One request the sandbox answered (control endpoints excluded)."""

    method: str
    path: str
    query: dict[str, str]
    account: str | None
    status: int  # 0 when the connection was dropped without an answer
    at: float  # sandbox clock, epoch seconds
    fault: str | None = None  # the fault that took this request, if one did ("late", "timeout", "500", ...)


@dataclass
class LateRequest:
    """One request a `late` fault held back: when it arrived, how long it was meant to wait, and when
    it was carried out — so a test sees how late the platform really was (a loaded machine wakes the
    waiting thread after its delay, not at it)."""

    method: str
    path: str
    account: str | None
    arrived: float  # sandbox clock, epoch seconds
    delay: float  # seconds it was meant to wait
    carried_out: float | None = None  # sandbox clock once carried out (a send: delivered); None while it waits
    released: bool = False  # carried out early, by release_late()
    status: int | None = None  # what it was answered
    message_id: str | None = None  # the platform id of the message a send created


class Person:
    __slots__ = ("id", "name", "username", "email")

    def __init__(self, id: str, name: str | None = None, username: str | None = None, email: str | None = None) -> None:
        self.id = id
        self.name = name
        self.username = username
        self.email = email


class Msg:
    """A Meta message (Messenger or Instagram)."""

    __slots__ = (
        "id", "thread", "created_ms", "sender", "text", "attachments", "story", "shares", "sticker",
        "unsupported", "metadata", "outbound", "reactions", "reply_to",
    )

    def __init__(self, id: str, thread: Thread, created_ms: int, sender: Person, text: str | None, outbound: bool) -> None:
        self.id = id
        self.thread = thread
        self.created_ms = created_ms
        self.sender = sender
        self.text = text
        self.outbound = outbound
        self.attachments: list[dict[str, Any]] | None = None
        self.story: dict[str, Any] | None = None
        self.shares: list[dict[str, Any]] | None = None
        self.sticker: str | None = None
        self.unsupported = False
        self.metadata: str | None = None
        self.reactions: list[dict[str, Any]] | None = None
        self.reply_to: dict[str, Any] | None = None


class Thread:
    """A Meta conversation; `messages` is kept oldest-first."""

    __slots__ = ("id", "account", "customer", "messages", "key")

    def __init__(self, id: str, account: str, customer: Person) -> None:
        self.id = id
        self.account = account
        self.customer = customer
        self.messages: list[Msg] = []
        self.key: tuple[int, str] | None = None  # (-updated_ms, id) while indexed

    @property
    def updated_ms(self) -> int:
        return self.messages[-1].created_ms if self.messages else 0

    def readable(self) -> list[Msg]:
        """The messages the Graph API still shows: the 20 newest, newest first."""
        return self.messages[: -META_HORIZON - 1 : -1]

    def last_customer_ms(self) -> int | None:
        for m in reversed(self.messages):
            if not m.outbound:
                return m.created_ms
        return None


class XEvent:
    __slots__ = ("id", "num", "conv", "created_ms", "sender", "text", "media", "event_type", "participants")

    def __init__(self, num: int, conv: str, sender: str, text: str | None, event_type: str = "MessageCreate") -> None:
        self.num = num
        self.id = str(num)
        self.conv = conv
        self.created_ms = (num >> 22) + TWEPOCH_MS
        self.sender = sender
        self.text = text
        self.media: dict[str, Any] | None = None
        self.event_type = event_type
        self.participants: list[str] | None = None


class MetaAccount:
    """Threads of one Meta account, indexed newest-updated first."""

    def __init__(self, spec: SandboxAccount, brand: Person, platform: str, host: str) -> None:
        self.spec = spec
        self.brand = brand
        self.platform = platform  # "messenger" | "instagram"
        self.host = host  # "facebook" | "instagram": the Graph host that serves it
        self.threads: dict[str, Thread] = {}
        self.by_customer: dict[str, Thread] = {}
        self.index: list[tuple[int, str]] = []  # ascending (-updated_ms, id) == newest first
        self.sent: list[dict[str, Any]] = []


class XAccount:
    def __init__(self, spec: SandboxAccount, me: Person) -> None:
        self.spec = spec
        self.me = me
        self.events: dict[int, XEvent] = {}
        self.order: list[int] = []  # ascending event ids (snowflakes sort by time)
        self.by_conv: dict[str, list[int]] = {}
        self.users: dict[str, Person] = {me.id: me}
        self.sent: list[dict[str, Any]] = []


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class State:
    """All sandbox data plus the clock. Callers hold `lock` around reads and writes."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.seed = seed
        self.t0 = time.time()  # real now at construction: seed timestamps are relative to it
        self._mono0 = time.monotonic()
        self.offset = 0.0  # advance() moves the clock forward
        # At most this many messages in a conversation listing's nested `messages` edge (None: as
        # asked), `paging.next` still set: Graph may cut a page short of its limit.
        self.nested_cap: int | None = None
        self.page_cap: int | None = None  # the same for a thread's own `/{thread}/messages` pages
        # Graph paging links on the platform's public origin (https://graph.facebook.com/vNN.0/...),
        # as real Graph writes them, instead of the sandbox's own host and path prefix.
        self.public_links = False
        self.meta: dict[str, MetaAccount] = {}
        self.x: dict[str, XAccount] = {}
        self.msg_index: dict[str, Msg] = {}
        # Called (under `lock`) with (account, Msg or XEvent) for every message created: webhooks.
        self.listeners: list[Any] = []
        self.thread_index: dict[str, Thread] = {}
        self._x_seq = 0
        # The token each API host accepts now; `Sandbox.rotate_token` replaces one (the old one then
        # fails as an expired token would, until the client is given the new one).
        self.tokens = {"facebook": FB_TOKEN, "instagram": IG_TOKEN, "x": X_TOKEN}

    # ── clock ──────────────────────────────────────────────────────────────────────────────
    def now(self) -> float:
        return self.t0 + (time.monotonic() - self._mono0) + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    # ── ids ─────────────────────────────────────────────────────────────────────────────────
    def messenger_mid(self) -> str:
        return "m_" + b64(self.rng.getrandbits(480).to_bytes(60, "big"))

    def ig_mid(self, ig_id: str) -> str:
        raw = f"ig_item:1:IGMessage:{ig_id}:{self.rng.getrandbits(120)}".encode()
        return b64(raw) + "ZDZD"

    def messenger_tid(self) -> str:
        return f"t_{self.rng.randrange(10**14, 10**16)}"

    def ig_tid(self, ig_id: str) -> str:
        raw = f"ig_message_thread:1:IGMessageThread:{ig_id}:{self.rng.getrandbits(110)}".encode()
        return b64(raw)

    def psid(self) -> str:
        return str(self.rng.randrange(2 * 10**16, 3 * 10**16))

    def igsid(self) -> str:
        return str(self.rng.randrange(10**15, 9 * 10**15))

    def x_user_id(self) -> str:
        return str(self.rng.randrange(10**9, 1_400_000_000_000_000_000))

    def snowflake(self, ms: int) -> int:
        self._x_seq = (self._x_seq + 1) & 0xFFF
        return ((ms - TWEPOCH_MS) << 22) | (self.rng.getrandbits(10) << 12) | self._x_seq

    # ── Meta mutations ──────────────────────────────────────────────────────────────────────
    def new_thread(self, acc: MetaAccount, customer: Person, tid: str | None = None) -> Thread:
        if tid is None:
            tid = self.messenger_tid() if acc.platform == "messenger" else self.ig_tid(acc.spec.platform_id)
        th = Thread(tid, acc.spec.name, customer)
        acc.threads[tid] = th
        acc.by_customer[customer.id] = th
        self.thread_index[tid] = th
        return th

    def add_msg(self, thread: Thread, created_ms: int, outbound: bool, text: str | None, mid: str | None = None) -> Msg:
        acc = self.meta[thread.account]
        if mid is None:
            mid = self.messenger_mid() if acc.platform == "messenger" else self.ig_mid(acc.spec.platform_id)
        msg = Msg(mid, thread, created_ms, acc.brand if outbound else thread.customer, text, outbound)
        if thread.messages and thread.messages[-1].created_ms > created_ms:
            # An injected message dated in the past: keep the thread ordered by time.
            pos = bisect_left([m.created_ms for m in thread.messages], created_ms + 1)
            thread.messages.insert(pos, msg)
        else:
            thread.messages.append(msg)
        self.msg_index[mid] = msg
        self.reindex(acc, thread)
        for listener in self.listeners:
            listener(acc, msg)
        return msg

    def reindex(self, acc: MetaAccount, thread: Thread) -> None:
        new_key = (-thread.updated_ms, thread.id)
        if thread.key == new_key:
            return
        if thread.key is not None:
            pos = bisect_left(acc.index, thread.key)
            if pos < len(acc.index) and acc.index[pos] == thread.key:
                del acc.index[pos]
        insort(acc.index, new_key)
        thread.key = new_key

    # ── X mutations ─────────────────────────────────────────────────────────────────────────
    @staticmethod
    def conv_id(a: str, b: str) -> str:
        lo, hi = sorted((a, b), key=int)
        return f"{lo}-{hi}"

    def add_event(self, acc: XAccount, conv: str, sender: str, created_ms: int, text: str | None) -> XEvent:
        ev = XEvent(self.snowflake(created_ms), conv, sender, text)
        acc.events[ev.num] = ev
        insort(acc.order, ev.num)
        insort(acc.by_conv.setdefault(conv, []), ev.num)
        for listener in self.listeners:
            listener(acc, ev)
        return ev
