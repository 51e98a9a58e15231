"""Webhooks and polling of the same accounts, interleaved, as a Hypothesis state machine.

Customers write (new threads, known threads, bursts); the sandbox sends each message's signed
webhook to `inbox serve`'s app (tests.store.test_webhooks.running), or drops it, duplicates it, or
delivers it late (redelivered steps later); polls (`sync_all`) run between them and while they
arrive; agents reply, and their echoes come back by webhook and by poll; X webhooks come in both
shapes. After every step the sender is idle and the receiver's queue drained, and the store must
agree with what was delivered and what was polled:

- no platform id stored twice, nothing stored the platform never had;
- every message whose webhook was delivered, or that a complete poll could read, is stored;
- once a poll has run after a message appeared, it is in the thread the platform names (no
  provisional `user:<id>` thread left), and no customer has two conversations on one account;
- every customer message is on a ticket; every delivery is done (none pending or quarantined);
- every sent reply's echo is stored once and matched to it;
- at the end, after a clean poll, everything the platform shows is stored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.loop_machine import PICK, note, store_url
from tests.store.test_sync import ACCOUNTS, fast_factory, readable_ids
from tests.store.test_webhooks import META_SECRET, X_SECRET, running, sandbox_webhook_settings
from tests.waiting import wait_until

X_SHAPES = ("account_activity", "activity")

# Switches for defects this machine found and that are not fixed yet (True: the machine steps around
# the defect, so it can look for others; a regression test in test_webhook_stateful replays each).
KNOWN_DEFECTS = {
    # Fixed: the Graph poll stopped at the first message the store knew, whoever stored it, so a
    # message whose webhook was lost, below one whose webhook came, was never stored. Kept as a
    # switch (False) for the replays in tests/store/test_webhook_stateful.py.
    "meta_poll_stops_at_a_webhook_message": False,
    # Fixed: a webhook's message on a provisional thread (`user:<id>`, the lookup failed) moved to the
    # real one only when a poll stored a message of that thread; a poll that found nothing new in it
    # left it provisional. True excuses a message left on a provisional thread after a poll.
    "provisional_thread_kept_when_the_poll_finds_nothing_new": False,
}
WEBHOOK_FATE = ("delivered", "delivered", "delivered", "dropped", "duplicated", "late")


class WebhookPollMachine(RuleBasedStateMachine):
    backend = "sqlite"
    pg_base: str | None = None  # set by the PostgreSQL test

    def __init__(self) -> None:
        super().__init__()
        from inbox.store import open_store
        from sandbox import Sandbox

        self.tmp = Path(tempfile.mkdtemp(prefix="inbox-webhook-loop-"))
        self.stack = ExitStack()
        self.sb = Sandbox(seed=7, x_rate_limit=1_000_000).start()
        self.stack.callback(self.sb.stop)
        self.saved_env = {k: os.environ.get(k) for k in self.sb.env()}
        os.environ.update(self.sb.env())  # the receiver's Graph lookups and the poll read the tokens here
        self.url, self.schema = store_url(self.backend, self.pg_base, self.tmp, "wh_")
        self.engine = open_store(self.url)
        # Accounts polled in threads: worker processes forked from a process running the receiver's
        # threads could inherit a held lock.
        self.settings = sandbox_webhook_settings(self.sb, self.url, processes=False)
        self.factory = fast_factory(self.settings)
        self.base = self.stack.enter_context(running(self.engine, self.settings, graph=True))
        self.sender = self.sb.webhooks(self.base, meta_secret=META_SECRET, x_secret=X_SECRET)
        self.stack.callback(self.sb.stop_webhooks)
        self.late: list[tuple[str, str]] = []  # (account, message id) whose webhook was held back
        self.created: list[tuple[str, str]] = []  # what customers wrote here, for redeliveries
        self.polled: dict[str, set[str]] = {a: set() for a in ACCOUNTS}  # readable when a complete poll ran
        self.named: dict[str, set[str]] = {a: set() for a in ACCOUNTS}  # existed when a complete poll started
        self.serial = 0
        self.known = dict(KNOWN_DEFECTS)  # a regression test switches one off for its replay

    # ── helpers ────────────────────────────────────────────────────────────────────────────
    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def webhooks(self, *, fate: str = "delivered", x_shape: str = "account_activity", delay: float = 0.0) -> None:
        """How the next messages' webhooks go. The sender reads its config per delivery: change it
        only once the deliveries queued under the previous one are out."""
        assert self.sender.wait_idle(), "the sandbox's webhook sender did not go idle"
        cfg = self.sender.config
        cfg.drop = 1.0 if fate in ("dropped", "late") else 0.0
        cfg.duplicate = 1.0 if fate == "duplicated" else 0.0
        cfg.x_shape, cfg.delay = x_shape, delay

    def text(self, body: str) -> str:
        self.serial += 1
        return f"[{self.serial}] {body}"

    def write(self, account: str, new_thread: bool, pick: int, attachment: bool) -> str:
        threads = self.sb.threads(account)
        thread = None if new_thread or not threads else threads[pick % len(threads)]
        mid = self.sb.inject(account, text=self.text("Halo kak, pesanan saya belum sampai 🙏"), thread=thread,
                             attachments=[{"type": "image"}] if attachment else None)
        self.created.append((account, mid))
        return mid

    def held_back(self, fate: str, ids: list[tuple[str, str]]) -> None:
        if fate == "late":
            self.late.extend(ids)

    def excused(self, name: str, missing: set[str]) -> set[str]:
        """`missing` less what KNOWN_DEFECTS["meta_poll_stops_at_a_webhook_message"] explains."""
        if not missing or name == "tokoshop-x" or not self.known["meta_poll_stops_at_a_webhook_message"]:
            return missing
        by_webhook = {r[0] for r in self.rows(
            "SELECT m.external_id FROM message m JOIN account a ON a.id = m.account_id WHERE a.name = :n AND m.via = 'webhook'", n=name)}
        left = set()
        for mid in missing:
            msgs = self.sb.thread_messages(name, self.sb.thread_of(name, mid))
            at = next(m["created_ms"] for m in msgs if m["id"] == mid)
            if any(m["id"] in by_webhook and m["created_ms"] >= at for m in msgs):
                note("excused: the poll stopped at a webhook's message")
            else:
                left.add(mid)
        return left

    def delivered(self) -> set[str]:
        return set(self.sender.stats.delivered_ids)

    def settle(self) -> None:
        """The sender idle, then every delivery it made processed (or stuck: a store attempt failed)."""
        from inbox.store.tables import webhook_delivery as d

        assert self.sender.wait_idle(), "the sandbox's webhook sender did not go idle"
        assert self.sender.stats.failed == 0, "a webhook was not answered 200"

        def drained() -> bool:
            with self.engine.connect() as conn:
                return not conn.execute(sa.select(d.c.id).where(d.c.state == "pending", d.c.attempts == 0).limit(1)).first()

        wait_until(drained)

    def poll(self, names: set[str]) -> None:
        from inbox.sync.pool import sync_all

        existing = {a: self.sb.all_message_ids(a) for a in names}
        readable = {a: readable_ids(self.sb, a) for a in names}
        results = sync_all(self.engine, self.settings, accounts=sorted(names), connector_factory=self.factory)
        for r in results:
            note(f"poll {r.account}: {r.status}")
            assert r.status == "ok" and r.complete, f"{r.account}: {r.status} with a healthy platform: {r.error}"
            self.named[r.account] |= existing[r.account]
            self.polled[r.account] |= readable[r.account] & readable_ids(self.sb, r.account)

    # ── rules ──────────────────────────────────────────────────────────────────────────────
    @initialize(names=st.sets(st.sampled_from(ACCOUNTS)))
    def first_poll(self, names: set[str]) -> None:
        """Some accounts polled before the webhooks start (the seeded history), some never."""
        if names:
            self.poll(names)

    @rule(account=st.sampled_from(ACCOUNTS), new_thread=st.booleans(), pick=PICK, fate=st.sampled_from(WEBHOOK_FATE),
          x_shape=st.sampled_from(X_SHAPES), attachment=st.booleans())
    def customer_message(self, account: str, new_thread: bool, pick: int, fate: str, x_shape: str, attachment: bool) -> None:
        self.webhooks(fate=fate, x_shape=x_shape)
        self.held_back(fate, [(account, self.write(account, new_thread, pick, attachment))])
        note(f"message: {fate}")

    @rule(account=st.sampled_from(ACCOUNTS), pick=PICK, n=st.integers(min_value=2, max_value=24), fate=st.sampled_from(WEBHOOK_FATE),
          x_shape=st.sampled_from(X_SHAPES), reorder=st.booleans())
    def customer_burst(self, account: str, pick: int, n: int, fate: str, x_shape: str, reorder: bool) -> None:
        """Many messages in one thread at once (past 20, Meta's poll sees only the newest 20)."""
        self.webhooks(fate=fate, x_shape=x_shape)
        self.sender.config.reorder = reorder
        try:
            threads = self.sb.threads(account)
            ids = self.sb.burst(account, threads[pick % len(threads)], n)
            assert self.sender.wait_idle()
        finally:
            self.sender.config.reorder = False
        self.created.extend((account, i) for i in ids)
        self.held_back(fate, [(account, i) for i in ids])
        note(f"burst: {fate}")

    @rule(account=st.sampled_from(ACCOUNTS))
    def lookup_fails(self, account: str) -> None:
        """A new Meta customer's webhook while the platform is away: the receiver's lookup of their
        thread fails, the message goes on a provisional thread (and the next ones, for a while)."""
        self.webhooks()
        self.sb.fault("500", path="/conversations", account=account, count=1)
        try:
            self.write(account, True, 0, False)
            self.settle()
        finally:
            self.sb.clear_faults()
        note("lookup fails")

    # No precondition on `self.late`: what it holds depends on timing (an agent's reply holds its
    # echo back only if it was sent, and which ticket `pick` names depends on the order concurrent
    # webhooks and polls made tickets), and a precondition that flips between runs of one example
    # makes Hypothesis stop with FlakyStrategyDefinition (seed 858618792). Nothing late: a no-op.
    @rule(x_shape=st.sampled_from(X_SHAPES), duplicate=st.booleans())
    def late_deliveries(self, x_shape: str, duplicate: bool) -> None:
        """The held-back webhooks arrive now, whatever happened since (a poll, more messages)."""
        if not self.late:
            return
        self.webhooks(fate="duplicated" if duplicate else "delivered", x_shape=x_shape)
        for account, mid in self.late:
            self.sb.redeliver(account, mid)
        self.late.clear()
        note("late deliveries")

    @precondition(lambda self: bool(self.created))
    @rule(pick=PICK, x_shape=st.sampled_from(X_SHAPES))
    def redelivery(self, pick: int, x_shape: str) -> None:
        """The platform retries a webhook it already sent (or had dropped)."""
        self.webhooks(x_shape=x_shape)
        self.sb.redeliver(*self.created[pick % len(self.created)])
        note("redelivery")

    @rule(names=st.sets(st.sampled_from(ACCOUNTS), min_size=1))
    def sync(self, names: set[str]) -> None:
        self.poll(names)

    @rule(names=st.sets(st.sampled_from(ACCOUNTS), min_size=1), writes=st.lists(
        st.tuples(st.sampled_from(ACCOUNTS), st.booleans(), PICK), min_size=1, max_size=8),
          x_shape=st.sampled_from(X_SHAPES))
    def poll_while_webhooks_arrive(self, names: set[str], writes: list[tuple[str, bool, int]], x_shape: str) -> None:
        """A poll runs while customers write and their webhooks are being stored."""
        self.webhooks(x_shape=x_shape, delay=0.02)
        errors: list[BaseException] = []
        go = threading.Barrier(2, timeout=30)

        def polling() -> None:
            try:
                go.wait()
                self.poll(names)
            except BaseException as exc:  # noqa: BLE001 - raised below, in the machine's thread
                errors.append(exc)

        t = threading.Thread(target=polling)
        t.start()
        go.wait()
        for account, new_thread, pick in writes:
            self.write(account, new_thread, pick, False)
        t.join(timeout=120)
        assert not t.is_alive(), "the poll did not finish in 120 s"
        if errors:
            raise errors[0]
        note("poll while webhooks arrive")

    @rule(pick=PICK, x_shape=st.sampled_from(X_SHAPES), fate=st.sampled_from(WEBHOOK_FATE), during_poll=st.booleans())
    def agent_reply(self, pick: int, x_shape: str, fate: str, during_poll: bool) -> None:
        """An agent replies through the library the CLI calls; its echo comes back by webhook
        (delivered, dropped, duplicated or late) and by the next poll."""
        from inbox.errors import InboxError
        from inbox.replies import outbox, route

        tickets = [r[0] for r in self.rows("SELECT id FROM ticket WHERE merged_into_id IS NULL ORDER BY id")]
        if not tickets:
            return
        self.webhooks(fate=fate, x_shape=x_shape)
        before = {a: len(self.sb.sent(a)) for a in ACCOUNTS}
        try:
            plan = route.plan_reply(self.engine, tickets[pick % len(tickets)], self.text("Baik kak, kami cek ya"),
                                    human_agent_tag=self.settings.replies.human_agent_tag)
            state = outbox.send_reply(self.engine, plan, lambda name: self.factory(self.settings.account(name)), "ana").state
            note(f"reply: {state}")
        except InboxError as exc:
            note(f"reply: {exc.__class__.__name__}")
        for a in ACCOUNTS:
            for s in self.sb.sent(a)[before[a]:]:
                self.held_back(fate, [(a, str(s.get("message_id") or s.get("dm_event_id")))])
        if during_poll:
            self.poll(set(ACCOUNTS))

    # ── invariants ─────────────────────────────────────────────────────────────────────────
    @invariant()
    def after_each_step(self) -> None:
        """Once the sender is idle and the receiver's queue drained, in this order."""
        self.settle()
        self.the_store_agrees_with_the_deliveries_and_the_polls()
        self.polled_messages_are_in_the_platform_s_thread()
        self.one_conversation_per_customer()
        self.customer_messages_are_on_tickets()
        self.every_delivery_is_done()
        self.sent_replies_have_their_echo()

    def the_store_agrees_with_the_deliveries_and_the_polls(self) -> None:
        rows = self.rows("SELECT a.name, m.external_id FROM message m JOIN account a ON a.id = m.account_id")
        assert len(rows) == len(set(rows)), f"a message stored twice: {sorted({r for r in rows if rows.count(r) > 1})[:3]}"
        delivered = self.delivered()
        for name in ACCOUNTS:
            stored = {e for n, e in rows if n == name}
            everything = self.sb.all_message_ids(name)
            extra = stored - everything
            assert not extra, f"{name}: stored messages the platform never had: {sorted(extra)[:3]}"
            lost = self.excused(name, ((delivered & everything) | self.polled[name]) - stored)
            assert not lost, f"{name}: delivered by webhook or polled, and not stored: {sorted(lost)[:3]}"

    def polled_messages_are_in_the_platform_s_thread(self) -> None:
        for name in ACCOUNTS:
            if not self.named[name]:
                continue
            for mid, thread in self.rows(
                    "SELECT m.external_id, c.external_id FROM message m JOIN conversation c ON c.id = m.conversation_id "
                    "JOIN account a ON a.id = m.account_id WHERE a.name = :n", n=name):
                if mid in self.named[name]:
                    if thread.startswith("user:") and self.known["provisional_thread_kept_when_the_poll_finds_nothing_new"]:
                        note("excused: provisional thread after a poll")
                        continue
                    assert thread == self.sb.thread_of(name, mid), \
                        f"{name}: message {mid} is in thread {thread}, the platform's is {self.sb.thread_of(name, mid)}"

    def one_conversation_per_customer(self) -> None:
        twice = self.rows(
            "SELECT c.account_id, ct.platform_user_id, count(*) FROM conversation c JOIN contact ct ON ct.id = c.contact_id "
            "GROUP BY c.account_id, ct.platform_user_id HAVING count(*) > 1")
        assert not twice, f"a customer with more than one conversation on an account: {twice[:3]}"
        threads = self.rows("SELECT account_id, external_id, count(*) FROM conversation GROUP BY account_id, external_id HAVING count(*) > 1")
        assert not threads, f"a platform thread stored as more than one conversation: {threads[:3]}"

    def customer_messages_are_on_tickets(self) -> None:
        loose = self.rows("SELECT id, external_id, via FROM message WHERE direction = 'in' AND ticket_id IS NULL")
        assert not loose, f"customer messages on no ticket: {loose[:3]}"
        # A merge leaves the loser's messages on it and adds their count to the survivor's.
        tickets = {r[0]: (r[1], r[2]) for r in self.rows("SELECT id, merged_into_id, message_count FROM ticket")}
        own = dict(self.rows("SELECT ticket_id, count(*) FROM message WHERE ticket_id IS NOT NULL GROUP BY ticket_id"))

        def group(tid: int) -> int:
            return own.get(tid, 0) + sum(group(c) for c, (into, _n) in tickets.items() if into == tid)

        bad = [(tid, n, group(tid) if into is None else own.get(tid, 0)) for tid, (into, n) in tickets.items()
               if n != (group(tid) if into is None else own.get(tid, 0))]
        assert not bad, f"ticket message counts disagree with the stored messages (id, count, stored in it and what merged into it): {bad[:3]}"

    def every_delivery_is_done(self) -> None:
        stuck = self.rows("SELECT id, source, state, attempts, error FROM webhook_delivery WHERE state <> 'done'")
        assert not stuck, f"deliveries not done after processing: {stuck[:3]}"

    def sent_replies_have_their_echo(self) -> None:
        bad = self.rows(
            "SELECT m.id, m.reply_id FROM message m JOIN reply r ON r.id = m.reply_id "
            "WHERE m.direction <> 'out' OR m.conversation_id <> r.conversation_id OR r.external_id <> m.external_id")
        assert not bad, f"echoes matched to the wrong reply: {bad[:3]}"
        unmatched = self.rows(
            "SELECT r.id, m.id, m.via FROM reply r JOIN message m ON m.account_id = r.account_id AND m.external_id = r.external_id "
            "WHERE r.state = 'sent' AND (m.reply_id IS NULL OR m.reply_id <> r.id)")
        assert not unmatched, f"stored echoes of sent replies not matched to them: {unmatched[:3]}"

    # ── the end: every webhook held back arrives, a clean poll, then everything is there ───
    def teardown(self) -> None:
        try:
            self.finish()
        finally:
            self.close()

    def finish(self) -> None:
        if self.late:
            self.late_deliveries("account_activity", False)
        self.settle()
        self.poll(set(ACCOUNTS))
        self.after_each_step()
        for name in ACCOUNTS:
            missing = self.excused(name, readable_ids(self.sb, name) - {r[0] for r in self.rows(
                "SELECT m.external_id FROM message m JOIN account a ON a.id = m.account_id WHERE a.name = :n", n=name)})
            assert not missing, f"{name}: the platform shows messages not stored after a final poll: {sorted(missing)[:3]}"

    def close(self) -> None:
        try:
            self.stack.close()
            self.engine.dispose()
            if self.schema:
                admin = sa.create_engine(self.pg_base)  # type: ignore[arg-type]
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                admin.dispose()
        finally:
            for k, v in self.saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(self.tmp, ignore_errors=True)
