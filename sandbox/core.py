"""`Sandbox`: the emulator's public face — data, server lifecycle, faults, the call log and what tests read.

Its accounts and config live in `sandbox.accounts`, the injection switches in `sandbox.injection` and
request dispatch in `sandbox.dispatch` (mixins of `Sandbox`). The control API (`sandbox.control`) is
handed to dispatch as a callback, so neither imports the other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from sandbox import large as large_data
from sandbox import seed as seed_data
from sandbox.accounts import TOKEN_HOSTS, WEBHOOK_ENV, AccountsMixin
from sandbox.control import handle_control
from sandbox.dispatch import DispatchMixin
from sandbox.faults import FaultBook
from sandbox.graph_render import iso as graph_iso
from sandbox.graph_request import business_object
from sandbox.graph_usage import Usage
from sandbox.injection import InjectionMixin
from sandbox.server import SandboxServer, make_server
from sandbox.state import X_CONSUMER_SECRET, Call, LateRequest, State
from sandbox.x_rates import RateLimits
from sandbox.x_render import iso as x_iso

log = logging.getLogger(__name__)

CALL_LOG_LIMIT = 200_000


class Sandbox(AccountsMixin, InjectionMixin, DispatchMixin):
    """A loopback emulator of the Graph API (Messenger + Instagram) and the X API v2 DM endpoints.

    >>> with Sandbox(seed=7).start() as sb:
    ...     sb.base_url  # doctest: +SKIP
    """

    def __init__(self, seed: int = 7, large: int = 0, x_rate_limit: int = 15, x_window_seconds: float = 900,
                 meta_calls_per_second: float | None = None, timeout_sleep: float = 20.0, late_sleep: float | None = None,
                 shape: tuple[int, int, int] | None = None) -> None:
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
        self._late_log: deque[LateRequest] = deque(maxlen=CALL_LOG_LIMIT)  # see `late_requests`
        self._calls_lock = threading.Lock()
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""
        self.control_handler = handle_control  # answers /_sandbox/... (see sandbox.dispatch)
        self._make_accounts()
        seed_data.build(self.state)
        if large > 0:
            started = time.perf_counter()
            _large_build(self.state, large, seed)
            log.info("generated %d messages in %.2f s", large, time.perf_counter() - started)
        if shape is not None:  # (conversations per account, messages per Meta thread, events per X conversation)
            with self.state.lock:
                large_data.build_shape(self.state, *shape, seed)

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





    # ── webhooks ────────────────────────────────────────────────────────────────────────────
    def webhooks(self, base_url: str, *, meta_secret: str = WEBHOOK_ENV["INBOX_SANDBOX_META_APP_SECRET"],
                 x_secret: str = X_CONSUMER_SECRET, x_shape: str = "account_activity",
                 drop: float = 0.0, duplicate: float = 0.0, delay: float = 0.0, reorder: bool = False,
                 encoding: str | None = None, bom: bool = False, sign: str = "sent") -> Any:
        """Send a signed webhook to `base_url` (`/webhooks/meta`, `/webhooks/x`) for every message created
        from now on; returns the sender (`stats`, `wait_idle()`, `close()`). One sender at a time."""
        from sandbox.webhooks import WebhookConfig, WebhookSender

        self.stop_webhooks()
        root = base_url.rstrip("/")
        config = WebhookConfig(f"{root}/webhooks/meta", f"{root}/webhooks/x", meta_secret, x_secret, x_shape,
                               drop, duplicate, delay, reorder, encoding, bom, sign)
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

    def cut_nested(self, cap: int | None) -> None:
        """Serve at most `cap` messages in each nested `messages` edge of a conversation listing, as
        Graph may cut a page short of its limit (the edge's `paging.next` reads on); None: as asked."""
        with self.state.lock:
            self.state.nested_cap = cap

    def cut_pages(self, cap: int | None) -> None:
        """Serve at most `cap` messages in each page of a thread's own `/{thread}/messages` edge (its
        `paging.next` reads on), as `cut_nested` does for the listing's nested edge; None: as asked."""
        with self.state.lock:
            self.state.page_cap = cap

    def public_links(self, on: bool = True) -> None:
        """Write Graph `paging.next` / `previous` links on the platform's public origin
        (`https://graph.facebook.com/v23.0/...`, `https://graph.instagram.com/...`), as real Graph
        does whatever proxy the client called through: a client must bring them back to its base URL."""
        with self.state.lock:
            self.state.public_links = bool(on)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def calls(self) -> list[Call]:
        with self._calls_lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        """Forget the call log and the record of late requests (one still waiting is no longer listed)."""
        with self._calls_lock:
            self._calls.clear()
            self._late_log.clear()

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











def _large_build(state: State, n: int, seed_value: int) -> None:
    with state.lock:
        large_data.build(state, n, seed_value)
