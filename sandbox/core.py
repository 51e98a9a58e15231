"""`Sandbox`: the emulator's public face — data, server lifecycle, control API, faults and the call log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from sandbox import graph, media
from sandbox import x as x_api
from sandbox.graph_render import iso as graph_iso
from sandbox.graph_request import attribute, business_object, split
from sandbox.graph_usage import Usage
from sandbox.x_rates import RateLimits
from sandbox.x_render import iso as x_iso
from sandbox import large as large_data
from sandbox import seed as seed_data
from sandbox.faults import ERROR_KINDS, Fault, FaultBook, break_one_item, error_reply, gzip_bomb, oversize_body, poisoned_body
from sandbox.server import Outcome, SandboxServer, make_server
from sandbox.state import (
    FB_TOKEN,
    IG_DIRECT_ID,
    IG_DIRECT_USERNAME,
    IG_FB_ID,
    IG_FB_USERNAME,
    IG_TOKEN,
    PAGE_ID,
    PAGE_NAME,
    X_ACCESS_TOKEN,
    X_ACCESS_TOKEN_SECRET,
    X_CONSUMER_KEY,
    X_CONSUMER_SECRET,
    X_NAME,
    X_TOKEN,
    X_USER_ID,
    X_USERNAME,
    Call,
    MetaAccount,
    Person,
    SandboxAccount,
    State,
    Thread,
    XAccount,
)
from sandbox.wire import JSON_GRAPH, JSON_X, Reply, Request

log = logging.getLogger(__name__)

GRAPH_VERSION = "v23.0"
CALL_LOG_LIMIT = 200_000
# Which API host each token variable is for (the Page token serves Messenger and Instagram via the Page).
TOKEN_HOSTS = {"INBOX_SANDBOX_FB_TOKEN": "facebook", "INBOX_SANDBOX_IG_TOKEN": "instagram", "INBOX_SANDBOX_X_TOKEN": "x"}
X_OAUTH1_ENV = {
    "INBOX_SANDBOX_X_CONSUMER_KEY": X_CONSUMER_KEY,
    "INBOX_SANDBOX_X_CONSUMER_SECRET": X_CONSUMER_SECRET,
    "INBOX_SANDBOX_X_ACCESS_TOKEN": X_ACCESS_TOKEN,
    "INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET": X_ACCESS_TOKEN_SECRET,
}
# The keys the sandbox signs its webhooks with (public test values, like its tokens). X signs with
# the app's consumer secret, the same one OAuth 1.0a uses.
WEBHOOK_ENV = {
    "INBOX_SANDBOX_META_APP_SECRET": "sandbox-meta-app-secret-0104920378912345",
    "INBOX_SANDBOX_META_VERIFY_TOKEN": "sandbox-verify-token",
}
WEBHOOK_TOML = (
    "[webhooks]\n"
    'meta_app_secret_env = "INBOX_SANDBOX_META_APP_SECRET"\n'
    'meta_verify_token_env = "INBOX_SANDBOX_META_VERIFY_TOKEN"\n'
    'x_consumer_secret_env = "INBOX_SANDBOX_X_CONSUMER_SECRET"\n'
)
ACCOUNT_TABLE = (
    # name, channel, platform id, page id, flavour, base path, token env, token
    ("tokoshop-fb", "facebook", PAGE_ID, PAGE_ID, None, f"/facebook/{GRAPH_VERSION}", "INBOX_SANDBOX_FB_TOKEN", FB_TOKEN),
    ("tokoshop-ig", "instagram", IG_FB_ID, PAGE_ID, "facebook_login", f"/facebook/{GRAPH_VERSION}", "INBOX_SANDBOX_FB_TOKEN", FB_TOKEN),
    ("tokoshop-x", "x", X_USER_ID, None, "oauth2", "/x", "INBOX_SANDBOX_X_TOKEN", X_TOKEN),
    ("tokoshop-ig-direct", "instagram", IG_DIRECT_ID, None, "instagram_login", f"/instagram/{GRAPH_VERSION}", "INBOX_SANDBOX_IG_TOKEN", IG_TOKEN),
)


class Sandbox:
    """A loopback emulator of the Graph API (Messenger + Instagram) and the X API v2 DM endpoints.

    >>> with Sandbox(seed=7).start() as sb:
    ...     sb.base_url  # doctest: +SKIP
    """

    def __init__(self, seed: int = 7, large: int = 0, x_rate_limit: int = 15, x_window_seconds: float = 900,
                 meta_calls_per_second: float | None = None, timeout_sleep: float = 20.0, late_sleep: float | None = None) -> None:
        self.seed = seed
        self.large = large
        self.timeout_sleep = timeout_sleep
        self.late_sleep = timeout_sleep if late_sleep is None else late_sleep
        self._late = 0  # late requests accepted and not yet carried out
        self._late_gen = 0  # bumped by release_late(): the waiting ones are carried out now
        self._late_done = threading.Condition()
        self.state = State(seed)
        self.faults = FaultBook()
        self.usage = Usage(meta_calls_per_second)
        self.rates = RateLimits(x_rate_limit, x_window_seconds)
        self.stopping = threading.Event()
        self._calls: deque[Call] = deque(maxlen=CALL_LOG_LIMIT)  # bounded: `inbox sandbox serve` may run for hours
        self._calls_lock = threading.Lock()
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""
        self._make_accounts()
        seed_data.build(self.state)
        if large > 0:
            started = time.perf_counter()
            _large_build(self.state, large, seed)
            log.info("generated %d messages in %.2f s", large, time.perf_counter() - started)

    # ── lifecycle ───────────────────────────────────────────────────────────────────────────
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Sandbox:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the sandbox binds to 127.0.0.1 only")
        host = "127.0.0.1"
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = make_server(self, host, port)
        bound_host, bound_port = self._server.server_address[:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_webhooks()
        self.stopping.set()  # wakes handlers sleeping in a "timeout" fault
        self.release_late()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._base_url

    # ── accounts & config ───────────────────────────────────────────────────────────────────
    def _make_accounts(self) -> None:
        st = self.state
        for name, channel, pid, page_id, flavour, path, env, token in ACCOUNT_TABLE:
            spec = SandboxAccount(name, channel, pid, page_id, flavour, env, token, path)
            if channel == "x":
                st.x[name] = XAccount(spec, Person(X_USER_ID, X_NAME, X_USERNAME))
            elif channel == "facebook":
                brand = Person(PAGE_ID, PAGE_NAME, None, f"{PAGE_ID}@facebook.com")
                st.meta[name] = MetaAccount(spec, brand, "messenger", "facebook")
            else:
                host = "instagram" if flavour == "instagram_login" else "facebook"
                brand = Person(pid, "TokoShop Indonesia", IG_DIRECT_USERNAME if host == "instagram" else IG_FB_USERNAME)
                st.meta[name] = MetaAccount(spec, brand, "instagram", host)

    @property
    def accounts(self) -> dict[str, SandboxAccount]:
        out = {}
        with self.state.lock:
            tokens = dict(self.state.tokens)
        for name, channel, pid, page_id, flavour, path, env, _token in ACCOUNT_TABLE:
            out[name] = SandboxAccount(name, channel, pid, page_id, flavour, env, tokens[TOKEN_HOSTS[env]], self._base_url + path)
        return out

    def env(self) -> dict[str, str]:
        """The environment variables the generated config names (tokens), plus the X OAuth 1.0a ones."""
        with self.state.lock:
            out = {env: self.state.tokens[host] for env, host in TOKEN_HOSTS.items()}
        out.update(X_OAUTH1_ENV)
        out.update(WEBHOOK_ENV)
        return out

    def config_toml(self, database: str = "sqlite:///inbox.db", include_ig_login: bool = False,
                    include_x_oauth1: bool = False, webhooks: bool = False) -> str:
        """A complete inbox config pointing every account at this sandbox (secrets by env-var name);
        with `webhooks`, the [webhooks] section naming the keys the sandbox signs with."""
        q = json.dumps  # TOML basic strings accept JSON string escapes
        lines = [
            "# inbox configuration for the local sandbox (generated). Tokens come from the environment:",
            "# " + " ".join(f"{k}=..." for k in ("INBOX_SANDBOX_FB_TOKEN", "INBOX_SANDBOX_IG_TOKEN", "INBOX_SANDBOX_X_TOKEN")),
            f"database = {q(database)}",
            "",
        ]
        if webhooks:
            lines += [WEBHOOK_TOML]
        for acc in self.accounts.values():
            if acc.name == "tokoshop-ig-direct" and not include_ig_login:
                continue
            lines += ["[[accounts]]", f"name = {q(acc.name)}", f"channel = {q(acc.channel)}"]
            if acc.channel == "facebook":
                lines.append(f"page_id = {q(acc.platform_id)}")
            elif acc.channel == "instagram":
                lines.append(f"ig_user_id = {q(acc.platform_id)}")
                if acc.page_id:
                    lines.append(f"page_id = {q(acc.page_id)}")
            else:
                lines.append(f"user_id = {q(acc.platform_id)}")
            if acc.flavour:
                lines.append(f"flavour = {q(acc.flavour)}")
            lines += [f"base_url = {q(acc.base_url)}", f"access_token_env = {q(acc.token_env)}"]
            if acc.channel in ("facebook", "instagram"):
                lines.append("calls_per_second = 50  # the sandbox is not held to Meta's 2 calls/s")
            lines.append("")
        if include_x_oauth1:
            x = self.accounts["tokoshop-x"]
            lines += [
                "[[accounts]]", 'name = "tokoshop-x-oauth1"', 'channel = "x"', f"user_id = {q(x.platform_id)}",
                'flavour = "oauth1"', f"base_url = {q(x.base_url)}",
                'consumer_key_env = "INBOX_SANDBOX_X_CONSUMER_KEY"', 'consumer_secret_env = "INBOX_SANDBOX_X_CONSUMER_SECRET"',
                'access_token_env = "INBOX_SANDBOX_X_ACCESS_TOKEN"', 'access_token_secret_env = "INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET"',
                "",
            ]
        return "\n".join(lines)

    # ── webhooks ────────────────────────────────────────────────────────────────────────────
    def webhooks(self, base_url: str, *, meta_secret: str = WEBHOOK_ENV["INBOX_SANDBOX_META_APP_SECRET"],
                 x_secret: str = X_CONSUMER_SECRET, x_shape: str = "account_activity",
                 drop: float = 0.0, duplicate: float = 0.0, delay: float = 0.0, reorder: bool = False) -> Any:
        """Send a signed webhook to `base_url` (`/webhooks/meta`, `/webhooks/x`) for every message created
        from now on; returns the sender (`stats`, `wait_idle()`, `close()`). One sender at a time."""
        from sandbox.webhooks import WebhookConfig, WebhookSender

        self.stop_webhooks()
        root = base_url.rstrip("/")
        config = WebhookConfig(f"{root}/webhooks/meta", f"{root}/webhooks/x", meta_secret, x_secret, x_shape,
                               drop, duplicate, delay, reorder)
        self._webhooks = WebhookSender(self.state, config, seed=self.seed)
        return self._webhooks

    def redeliver(self, account_name: str, message_id: str) -> None:
        """The webhook of an existing message, sent again (a platform's retry, or a late delivery)."""
        sender = getattr(self, "_webhooks", None)
        if sender is None:
            raise RuntimeError("webhooks are off: call webhooks() first")
        st = self.state
        with st.lock:
            if account_name in st.x:
                acc = st.x[account_name]
                sender.redeliver(acc, next(ev for ev in acc.events.values() if ev.id == message_id))
            else:
                sender.redeliver(self._meta(account_name), st.msg_index[message_id])

    def stop_webhooks(self) -> None:
        sender = getattr(self, "_webhooks", None)
        if sender is not None:
            sender.close()
            self._webhooks = None

    # ── test switches ───────────────────────────────────────────────────────────────────────
    def inject(self, account_name: str, text: str | None = None, thread: str | None = None, customer: Any = None,
               attachments: list[dict[str, Any]] | None = None, at: Any = None) -> str:
        """A new inbound customer message; a new thread and customer when `thread` is None.

        `customer`: an existing customer id of that account, a display name / handle for a new customer, or
        a dict with id/name/username. `attachments`: short specs such as {"type": "image"}, {"type": "video"},
        {"type": "story_mention"}, {"type": "story_reply"}, {"type": "share"}. `at`: datetime or epoch seconds.
        """
        st = self.state
        with st.lock:
            at_ms = _to_ms(at) if at is not None else st.now_ms()
            if account_name in st.x:
                return self._inject_x(st.x[account_name], text, thread, customer, attachments, at_ms)
            acc = self._meta(account_name)
            th = self._meta_thread(acc, thread, customer)
            msg = st.add_msg(th, at_ms, False, text)
            now = st.now()
            for spec in attachments or []:
                kind = spec.get("type", "image")
                if kind in ("story_mention", "story_reply", "mention", "reply_to"):
                    msg.story = media.story(st.rng, "mention" if "mention" in kind else "reply_to")
                elif kind == "share":
                    msg.shares = media.ig_share(st.rng) if acc.platform == "instagram" else media.messenger_share(st.rng, "TokoShop", "produk")
                elif kind == "unsupported":
                    msg.unsupported = True
                else:
                    msg.attachments = (msg.attachments or []) + [media.from_spec(st.rng, now, spec)]
            return msg.id

    def inject_own(self, account_name: str, thread: str | None, text: str, at: Any = None, customer: Any = None) -> str:
        """A message of the brand itself (typed in the platform's own app): the inbox sees it only as
        an echo. `thread`: a Meta thread id or an X conversation id; None starts a new thread with a
        new customer (`customer` as in `inject`), the brand writing first."""
        st = self.state
        with st.lock:
            at_ms = _to_ms(at) if at is not None else st.now_ms()
            if account_name in st.x:
                acc = st.x[account_name]
                if thread is None:
                    person = self._new_person("x", customer)
                    acc.users[person.id] = person
                    thread = st.conv_id(person.id, acc.me.id)
                elif thread not in acc.by_conv:
                    raise KeyError(f"no conversation {thread!r} in {acc.spec.name}")
                return st.add_event(acc, thread, acc.me.id, at_ms, text).id
            meta = self._meta(account_name)
            if thread is None:
                th = st.new_thread(meta, self._new_person(meta.platform, customer))
            else:
                th = meta.threads.get(thread)
                if th is None:
                    raise KeyError(f"no thread {thread!r} in {account_name}")
            return st.add_msg(th, at_ms, True, text).id

    def thread_of(self, account_name: str, message_id: str) -> str:
        """The thread (X: conversation) id of a message or event of the account."""
        st = self.state
        with st.lock:
            if account_name in st.x:
                acc = st.x[account_name]
                return next(ev.conv for ev in acc.events.values() if ev.id == message_id)
            return st.msg_index[message_id].thread.id

    def _meta(self, name: str) -> MetaAccount:
        try:
            return self.state.meta[name]
        except KeyError:
            raise KeyError(f"no sandbox account named {name!r} (known: {', '.join(self.accounts)})") from None

    def _meta_thread(self, acc: MetaAccount, thread: str | None, customer: Any) -> Thread:
        st = self.state
        if thread is not None:
            th = acc.threads.get(thread)
            if th is None:
                raise KeyError(f"no thread {thread!r} in {acc.spec.name}")
            return th
        if isinstance(customer, str) and customer in acc.by_customer:
            return acc.by_customer[customer]
        if isinstance(customer, dict) and str(customer.get("id", "")) in acc.by_customer:
            return acc.by_customer[str(customer["id"])]
        person = self._new_person(acc.platform, customer)
        return st.new_thread(acc, person)

    def _new_person(self, platform: str, customer: Any) -> Person:
        st = self.state
        info = customer if isinstance(customer, dict) else {}
        label = customer if isinstance(customer, str) else None
        n = st.rng.randrange(100, 999)
        if platform == "messenger":
            pid = str(info.get("id") or st.psid())
            return Person(pid, info.get("name") or label or f"Pelanggan {n}", None, f"{pid}@facebook.com")
        if platform == "instagram":
            pid = str(info.get("id") or st.igsid())
            return Person(pid, info.get("name"), info.get("username") or label or f"pelanggan.{n}")
        pid = str(info.get("id") or st.x_user_id())
        return Person(pid, info.get("name") or label or f"Pelanggan {n}", info.get("username") or (label or f"pelanggan{n}").replace(" ", "_").lower())

    def _inject_x(self, acc: XAccount, text: str | None, thread: str | None, customer: Any,
                  attachments: list[dict[str, Any]] | None, at_ms: int) -> str:
        st = self.state
        if thread is not None:
            if thread not in acc.by_conv:
                raise KeyError(f"no conversation {thread!r} in {acc.spec.name}")
            sender = next(p for p in thread.split("-") if p != acc.me.id) if "-" in thread else None
            if sender is None:
                raise ValueError("inject into a group conversation needs a 1:1 thread")
            conv = thread
        else:
            if isinstance(customer, str) and customer in acc.users and customer != acc.me.id:
                person = acc.users[customer]
            else:
                person = self._new_person("x", customer)
                acc.users[person.id] = person
            sender = person.id
            conv = st.conv_id(sender, acc.me.id)
        ev = st.add_event(acc, conv, sender, at_ms, text or "")
        if attachments:
            kind = attachments[0].get("type", "image")
            ev.media = media.x_video(st.rng, ev.id) if kind == "video" else media.x_photo(st.rng, ev.id)
        return ev.id

    def burst(self, account_name: str, thread_id: str, n: int) -> list[str]:
        """`n` new inbound messages in one thread, a millisecond apart, ending now."""
        with self.state.lock:
            now_ms = self.state.now_ms()
            return [self.inject(account_name, text=f"pesan ke-{i + 1} dari {n}: tolong dibantu kak 🙏", thread=thread_id,
                                at=(now_ms - (n - 1 - i)) / 1000) for i in range(n)]

    def fault(self, kind: str, *, path: str | None = None, account: str | None = None, count: int = 1,
              after_effect: bool | None = None, method: str | None = None, skip: int = 0, **options: Any) -> None:
        """The next `count` requests matching `path` (substring) and `account` fail as `kind`.

        `after_effect`: carry the request out first (a send is recorded), then fail. Default: True for
        "timeout" (the answer comes too late, the effect happened), False otherwise. `skip`: the first
        `skip` matching requests go through untouched (fail the second page of a pass, not the first).
        Options by kind (see sandbox/README.md): `oversize`/`gzip_bomb` take `size` (decoded bytes);
        `late` takes `delay` (seconds before it is carried out; default `late_sleep`);
        `poison` takes `target` (an item id), `field` (a dotted path in it) and `value` (raw JSON text,
        or None to remove the field); `header` takes `name` and `value`. Poison and header faults stay
        until `clear_faults()`.
        """
        self.faults.add(kind, path=path, account=account, count=count, after_effect=after_effect, method=method, skip=skip,
                        **options)

    def meta_budget(self, calls: int | None, *, window_seconds: float = 3600.0, used: dict[str, int] | None = None) -> None:
        """Each Page / IG account may make `calls` Graph calls per `window_seconds` (sandbox clock); the
        usage header reaches 100 % on the last one, then reads are throttled (80006 / 80002) until the
        window passes. `used`: calls already spent this window, by account name. None: unlimited again."""
        with self.state.lock:
            spent = {business_object(self._meta(name))[0]: n for name, n in (used or {}).items()}
            self.usage.set_budget(calls, window_seconds, spent)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def calls(self) -> list[Call]:
        with self._calls_lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    def sent(self, account_name: str) -> list[dict[str, Any]]:
        with self.state.lock:
            acc = self.state.x.get(account_name) or self._meta(account_name)
            return [dict(s) for s in acc.sent]

    def thread_messages(self, account_name: str, thread_id: str) -> list[dict[str, Any]]:
        """Everything in a thread, oldest first, including messages past the readable horizon."""
        st = self.state
        with st.lock:
            if account_name in st.x:
                acc = st.x[account_name]
                return [
                    {"id": ev.id, "created_at": x_iso(ev.created_ms), "created_ms": ev.created_ms, "sender_id": ev.sender,
                     "outbound": ev.sender == acc.me.id, "text": ev.text, "media": ev.media, "event_type": ev.event_type}
                    for ev in (acc.events[num] for num in acc.by_conv.get(thread_id, []))
                ]
            th = self._meta(account_name).threads.get(thread_id)
            if th is None:
                raise KeyError(f"no thread {thread_id!r} in {account_name}")
            readable = {m.id for m in th.readable()}
            return [
                {"id": m.id, "created_time": graph_iso(m.created_ms), "created_ms": m.created_ms, "from_id": m.sender.id,
                 "outbound": m.outbound, "text": m.text, "attachments": m.attachments, "story": m.story, "shares": m.shares,
                 "sticker": m.sticker, "is_unsupported": m.unsupported, "metadata": m.metadata, "readable": m.id in readable}
                for m in th.messages
            ]

    def threads(self, account_name: str) -> list[str]:
        """Thread (conversation) ids of an account, most recently updated first."""
        st = self.state
        with st.lock:
            if account_name in st.x:
                acc = st.x[account_name]
                return sorted(acc.by_conv, key=lambda c: acc.by_conv[c][-1] if acc.by_conv[c] else 0, reverse=True)
            return [tid for _, tid in self._meta(account_name).index]

    def all_message_ids(self, account_name: str) -> set[str]:
        st = self.state
        with st.lock:
            if account_name in st.x:
                return {ev.id for ev in st.x[account_name].events.values()}
            return {m.id for th in self._meta(account_name).threads.values() for m in th.messages}

    def rotate_token(self, env_name: str) -> str:
        """The platform revokes a token and issues a new one (an expiry and its renewal).

        From now on the old value of `env_name` is refused (Graph 190, X 401) and the returned
        value is accepted; `env()` hands out the new one.
        """
        host = TOKEN_HOSTS.get(env_name)
        if host is None:
            raise KeyError(f"no sandbox token variable {env_name!r} (known: {', '.join(TOKEN_HOSTS)})")
        with self.state.lock:
            token = f"{self.state.tokens[host].split('~', 1)[0]}~{self.state.rng.getrandbits(64):016x}"
            self.state.tokens[host] = token
            return token

    def advance(self, seconds: float) -> float:
        """Move the sandbox clock forward (reply windows, rate windows); returns the new now (epoch s)."""
        with self.state.lock:
            self.state.offset += seconds
            return self.state.now()

    def now(self) -> float:
        return self.state.now()

    # ── request dispatch (called from server threads) ───────────────────────────────────────
    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Outcome:
        if path.startswith("/_sandbox/"):
            return self._control(method, path, query, headers, body)
        arrived = self.state.now()  # the call log records when the call arrived, not when it was answered
        req = Request(method, path, query, headers, body, self._base_url)
        api, account = self._classify(req)
        fault = self.faults.take(method, path, account)
        reply: Reply | None = None
        if fault is not None and fault.kind == "late":
            delay = fault.options.get("delay")
            return self._late_answer(api, req, method, path, query, account, arrived, None if delay is None else float(delay))
        if fault is None or fault.after_effect or fault.kind not in (*ERROR_KINDS, "drop"):
            reply = self._answer(api, req)
        standing = self.faults.standing(method, path, account)
        poisons = [f for f in standing if f.kind == "poison"]
        if poisons and reply is not None and reply.raw is None:
            body = poisoned_body(reply.payload, poisons)
            if body is not None:
                reply.raw = body
        outcome = self._apply(api, req, account, fault, reply)
        for f in standing:
            if f.kind == "header":
                outcome.headers = {k: v for k, v in outcome.headers.items() if k.lower() != str(f.options["name"]).lower()}
                outcome.headers[str(f.options["name"])] = str(f.options.get("value") or "")
        self._log(method, path, query, account, 0 if outcome.drop else outcome.status, arrived)
        return outcome

    def _late_answer(self, api: str, req: Request, method: str, path: str, query: dict[str, str], account: str | None,
                     arrived: float, delay: float | None) -> Outcome:
        """Accepted now; carried out (a send: delivered, its echo in the thread) only after
        `late_sleep` (or the fault's own delay, or `release_late()`), and answered then — to a
        client that has usually given up."""
        with self._late_done:
            self._late += 1
            gen = self._late_gen
            self._late_done.wait_for(lambda: self._late_gen != gen, timeout=delay if delay is not None else self.late_sleep)
        try:
            reply = self._answer(api, req)
        finally:
            with self._late_done:
                self._late -= 1
                self._late_done.notify_all()
        self._log(method, path, query, account, reply.status, arrived)
        return Outcome(reply.status, reply.body(), reply.headers)

    def release_late(self) -> None:
        """Carry out every late request waiting now (a test decides when the platform catches up)."""
        with self._late_done:
            self._late_gen += 1
            self._late_done.notify_all()

    def wait_late(self, timeout: float = 60.0) -> bool:
        """Wait until every late request accepted so far has been carried out; False on timeout."""
        with self._late_done:
            return self._late_done.wait_for(lambda: self._late == 0, timeout)

    def deliveries(self, account_name: str | None = None) -> dict[tuple[str, str, str], int]:
        """How many times each (account, recipient, text) reached a customer: the count a test
        holds "at most once" against (never rows in the store)."""
        counts: dict[tuple[str, str, str], int] = {}
        with self.state.lock:
            accounts: list[Any] = [*self.state.meta.values(), *self.state.x.values()]
            for acc in accounts:
                if account_name is not None and acc.spec.name != account_name:
                    continue
                for s in acc.sent:
                    key = (acc.spec.name, str(s.get("recipient_id")), str(s.get("text")))
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def _classify(self, req: Request) -> tuple[str, str | None]:
        if req.path.startswith("/x/"):
            return "x", "tokoshop-x"
        ctx = split(req)
        if ctx is None:
            return "none", None
        with self.state.lock:
            acc = attribute(self.state, ctx)
        return "graph", acc.spec.name if acc else None

    def _answer(self, api: str, req: Request) -> Reply:
        with self.state.lock:
            if api == "x":
                reply = x_api.handle(self.state, req, [p for p in req.path.split("/") if p][1:], self.rates)
                reply.headers.setdefault("content-type", JSON_X)
                return reply
            ctx = split(req)
            if ctx is None:
                return Reply(404, {"error": {"message": "Unknown path", "type": "GraphMethodException", "code": 100}},
                             {"content-type": JSON_GRAPH})
            reply = graph.handle(self.state, ctx, self.usage)
            reply.headers.setdefault("content-type", JSON_GRAPH)
            reply.headers.setdefault("facebook-api-version", ctx.version)
            return reply

    def _apply(self, api: str, req: Request, account: str | None, fault: Fault | None, reply: Reply | None) -> Outcome:
        if fault is None:
            assert reply is not None
            return Outcome(reply.status, reply.body(), reply.headers)
        kind = fault.kind
        if kind == "drop":
            return Outcome(0, drop=True)
        if kind in ERROR_KINDS:
            with self.state.lock:
                err = error_reply(kind, api, req, self.state.meta.get(account or ""), self.state.now(), self.usage, self.rates)
            return Outcome(err.status, err.body(), err.headers)
        assert reply is not None
        if kind == "timeout":
            return Outcome(reply.status, reply.body(), reply.headers, delay=self.timeout_sleep)
        if kind == "malformed":
            return Outcome(200, b'{"data": [{"id": "1", "created_time": <html>Internal proxy error</html>', _ctype(api, reply.headers))
        if kind == "truncated":
            body = reply.body()
            return Outcome(reply.status, body[: len(body) // 2], reply.headers)
        if kind == "cut":
            return Outcome(reply.status, reply.body(), reply.headers, cut=True)
        if kind == "bad_item":
            break_one_item(api, reply.payload)
            return Outcome(reply.status, reply.body(), reply.headers)
        size = int(fault.options.get("size") or 16 * 1024 * 1024)
        if kind == "oversize":
            return Outcome(reply.status, oversize_body(reply.payload, size), reply.headers)
        if kind == "gzip_bomb":
            return Outcome(reply.status, gzip_bomb(reply.payload, size), {**reply.headers, "content-encoding": "gzip"})
        raise AssertionError(kind)

    def _log(self, method: str, path: str, query: dict[str, str], account: str | None, status: int, at: float) -> None:
        with self._calls_lock:
            self._calls.append(Call(method, path, dict(query), account, status, at))

    # ── control API ─────────────────────────────────────────────────────────────────────────
    def _control(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Outcome:
        from sandbox.control import handle_control

        status, payload = handle_control(self, method, path.removeprefix("/_sandbox/"), query, body, headers)
        if isinstance(payload, str):
            return Outcome(status, payload.encode(), {"content-type": "text/plain; charset=utf-8"})
        return Outcome(status, json.dumps(payload, ensure_ascii=False, default=str).encode(), {"content-type": JSON_X})


def _ctype(api: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": JSON_X if api == "x" else JSON_GRAPH}


def _to_ms(at: Any) -> int:
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(float(at) * 1000)


def _large_build(state: State, n: int, seed_value: int) -> None:
    with state.lock:
        large_data.build(state, n, seed_value)
