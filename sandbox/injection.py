"""Test switches that write into the platform: a customer's message, our own reply typed in the app, bursts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox import media
from sandbox.state import MetaAccount, Person, State, Thread, XAccount


def _to_ms(at: Any) -> int:
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(float(at) * 1000)


class InjectionMixin:
    """`Sandbox`'s injection: messages appear as if a customer (or the brand, in the native app) wrote them."""

    state: State

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
