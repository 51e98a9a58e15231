"""The whole loop as a Hypothesis state machine: customers write, the platform fails, syncs run (and
die), clocks jump, tokens expire and are renewed, agents reply (and retry, and race each other) — and
after every step the store must still tell the truth about the platform.

The machine drives the real code over real HTTP: a `Sandbox` on 127.0.0.1, customer messages
injected through its control API, `sync_all` in this process, `inbox sync` in a subprocess for the
kill -9 rule, replies through the library the CLI calls (`inbox.replies.outbox`). One store per example,
on SQLite or on PostgreSQL (a schema of its own).

Time: one clock for both sides. `time_machine` moves this process's wall clock (the store's "now":
leases, pauses, reply windows, reconcile) and `Sandbox.advance` moves the platform's by the same
amount; an `inbox sync` subprocess is started with the same shift.

Defects other work is fixing are left out here, each where it would be tested, with the defect
named (see KNOWN_DEFECTS); re-enable a switch once its fix is on main.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import time_machine
from collections import Counter

from hypothesis import event
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.store.test_sync import ACCOUNTS, fast_factory, readable_ids, sandbox_settings
from tests.waiting import exited, wait_until

ROOT = Path(__file__).resolve().parent.parent
# The connectors' read timeout, and how late the sandbox's "timeout" fault answers. Generous: on a
# loaded machine (CI, shared cores, three accounts' workers answered by the one sandbox thread) an
# ordinary loopback answer has taken over 2 s, and an unfaulted sync must never time out.
CLIENT_TIMEOUT = 5.0
SANDBOX_SLEEP = 6.0
PRESENT_SKEW = timedelta(seconds=5)  # how far a cursor may run ahead of the platform's clock
TOKEN_OF = {"tokoshop-fb": "INBOX_SANDBOX_FB_TOKEN", "tokoshop-ig": "INBOX_SANDBOX_FB_TOKEN", "tokoshop-x": "INBOX_SANDBOX_X_TOKEN"}
PATHS = {"tokoshop-fb": (None, "/conversations", "/messages"), "tokoshop-ig": (None, "/conversations", "/messages"),
         "tokoshop-x": (None, "/dm_events", "/messages")}
FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "malformed", "truncated", "cut", "bad_item")
JUMPS = (30, 600, 3600, 6 * 3600, 25 * 3600, 8 * 86400)

# Switches for defects owned elsewhere (see the report of each in KNOWN_DEFECTS below).
KNOWN_DEFECTS = {
    # Fixed: X has no since_id, and its walk stopped on the page where it met the cursor; an event
    # that appeared late, dated a minute before events already listed and behind more than a page of
    # newer ones, was never stored while every pass said ok. The walk now goes on below the cursor
    # for `connectors.x.LAG` of snowflake time while the newest stored event is that recent
    # (test_loop_stateful's replay). True would leave X's lateness at 2 s.
    "x_late_beyond_the_stopping_page": False,
    # Issue 10 items 3/7 (fixed): a Graph conversation listed without `updated_time` moved the Meta
    # high-water mark to the present, past the newest stored message. Now such a thread is read but
    # its stand-in time never moves the mark. True would skip the check for accounts with that fault.
    "meta_hwm_from_a_conversation_without_time": False,
}

# Choices among things the store or the sandbox holds are drawn as a number taken modulo their
# count: what Hypothesis draws must not depend on state outside its control (timing, the clock).
PICK = st.integers(min_value=0, max_value=2**16)

# ── hostile input ──────────────────────────────────────────────────────────────────────────
NASTY = (
    "\x1b[31mmerah\x1b[0m", "\x1b]8;;http://evil.example\x07klik\x1b]8;;\x07", "[bold red]markup[/]", "[link=x]a[/link]",
    "\u202etxt.exe", "a\u200bb", "\u2028baris\u2029", "baris\nbaru\r\n", "\t", "\x07\x08\x7f", "'; DROP TABLE message; --",
    "%s %d {0} {ticket}", "😀🙏🏽", "INV/20261120/MPL/3817265540", "ＩＮＶ", "Budi Santoso", "\\u0000", " ", "",
)


def hostile_text(allow_nul: bool) -> st.SearchStrategy[str]:
    # Lone surrogates are left out: the sandbox cannot put them on the wire yet (issue 10 item 2,
    # its sandbox switches for NUL and surrogates).
    chars = st.characters(exclude_categories=("Cs",), exclude_characters="" if allow_nul else "\x00")
    piece = st.one_of(st.sampled_from(NASTY), st.text(alphabet=chars, max_size=12))
    return st.lists(piece, max_size=5).map("".join)


@dataclass(frozen=True)
class Delivery:
    account: str
    message_id: str
    text: str | None
    metadata: str | None
    thread: str | None  # the platform thread it landed in


# ── the machine ────────────────────────────────────────────────────────────────────────────
class LoopMachine(RuleBasedStateMachine):
    backend = "sqlite"
    pg_base: str | None = None  # set by the PostgreSQL test
    max_kills = 1

    def __init__(self) -> None:
        super().__init__()
        from inbox.store import open_store
        from sandbox import Sandbox

        self.tmp = Path(tempfile.mkdtemp(prefix="inbox-loop-"))
        self.traveller = time_machine.travel(time.time(), tick=True)
        self.clock = self.traveller.start()
        self.shift = 0.0  # how far both clocks were moved
        self.local_skew = 0.0  # how far this machine's clock alone was moved
        self.sb = Sandbox(seed=7, x_rate_limit=1_000_000, timeout_sleep=SANDBOX_SLEEP).start()
        self.saved_env = {k: os.environ.get(k) for k in self.sb.env()}
        os.environ.update(self.sb.env())
        self.url, self.schema = store_url(self.backend, self.pg_base, self.tmp, "loop_")
        self.engine = open_store(self.url)
        self.settings = sandbox_settings(self.sb, self.url, processes=False)
        self.factory = fast_factory(self.settings, retries=0, timeout=CLIENT_TIMEOUT)
        self.config = self.tmp / "inbox.toml"
        self.config.write_text(self.sb.config_toml(database=self.url))
        self.timeless_listing: set[str] = set()  # Meta accounts that were sent a conversation without its time
        self.stale: set[str] = set()  # token variables the platform revoked and we have not renewed
        self.serial = 0
        self.kills = 0
        self.pairs: list[tuple[str, str]] = []  # texts two agents sent on one ticket at once
        self.known = dict(KNOWN_DEFECTS)  # a regression test may switch one back on for its replay

    # ── helpers ────────────────────────────────────────────────────────────────────────────
    def control(self, name: str, body: dict[str, Any]) -> Any:
        """The sandbox's control API over HTTP, as a test in another process would drive it."""
        req = urllib.request.Request(f"{self.sb.base_url}/_sandbox/{name}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def platform_now(self) -> datetime:
        return datetime.fromtimestamp(self.sb.now(), timezone.utc)

    def reply_connectors(self):  # type: ignore[no-untyped-def]
        return lambda name: self.factory(self.settings.account(name))

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def deliveries(self) -> list[Delivery]:
        out = []
        for name in ACCOUNTS:
            for s in self.sb.sent(name):
                out.append(Delivery(name, str(s.get("message_id") or s.get("dm_event_id")), s.get("text"), s.get("metadata"),
                                    s.get("thread_id") or s.get("dm_conversation_id")))
        return out

    def health(self) -> dict[str, Any]:
        from inbox.store import tables as tb

        with self.engine.connect() as conn:  # typed columns: SQLite hands raw SQL datetimes back as text
            a = tb.account
            return {r.name: r for r in conn.execute(sa.select(a.c.name, a.c.needs_reauth, a.c.paused_until, a.c.last_error))}

    def stored_ids(self, name: str) -> list[str]:
        return [r[0] for r in self.rows(
            "SELECT m.external_id FROM message m JOIN account a ON a.id = m.account_id WHERE a.name = :n", n=name)]

    def newest_sent(self, name: str) -> datetime | None:
        from inbox.store import tables as tb

        m, a = tb.message, tb.account
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(m.c.sent_at)).join(a, a.c.id == m.c.account_id).where(a.c.name == name)).scalar()

    def faulted(self) -> set[str]:
        return {f.account for f in self.sb.faults.pending() if f.account}

    def next_text(self, tag: str, body: str) -> str:
        self.serial += 1
        return f"[{tag} {self.serial}] {body}".strip()

    def tickets(self) -> list[int]:
        return [r[0] for r in self.rows("SELECT id FROM ticket WHERE merged_into_id IS NULL ORDER BY id")]

    # ── rules: the platform side ───────────────────────────────────────────────────────────
    @initialize()
    def first_sync(self) -> None:
        self.sync(set(ACCOUNTS))

    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS), new_thread=st.booleans(), pick=PICK,
          late=st.integers(min_value=0, max_value=300), kind=st.sampled_from((None, None, None, "image", "share", "story_mention", "unsupported")),
          ahead=st.sampled_from((0, 0, 0, 0, 20, 3 * 86400, 74 * 365 * 86400)))
    def customer_message(self, data: st.DataObject, account: str, new_thread: bool, pick: int, late: int, kind: str | None,
                         ahead: int = 0) -> None:
        """A customer writes: hostile text, names and handles; sometimes no text at all; dated up
        to 5 minutes back (within the sync overlap), as a late platform write would be."""
        text = data.draw(st.one_of(st.none(), hostile_text(allow_nul=True)), label="text")
        if account == "tokoshop-x" and self.known["x_late_beyond_the_stopping_page"]:
            # X's walk keeps late events only on the page where it meets its cursor (the feed's lag
            # after a send is seconds): a minute-late one behind a full page of newer events is never
            # stored (see KNOWN_DEFECTS). Late by a second or two here, as the connector is built for.
            late = min(late, 2)
        # `ahead`: a platform timestamp in the future (a few seconds of skew, days, the year 2100).
        body: dict[str, Any] = {"account": account, "text": text, "at": self.sb.now() - late + ahead}
        if kind:
            body["attachments"] = [{"type": kind}]
        name = data.draw(hostile_text(allow_nul=False), label="name")
        threads = self.sb.threads(account)
        if new_thread or not threads:
            body["customer"] = {"name": name or None, "username": (name or "").replace(" ", "_")[:30] or None}
        else:
            body["thread"] = threads[pick % len(threads)]
            if account != "tokoshop-x":
                # Meta reads a thread again only when its updated_time moves: a message that shows
                # up late *behind* a newer one in its thread is not something Graph does (its
                # updated_time would move), so a late one is still the newest of its thread.
                newest = self.sb.thread_messages(account, body["thread"])[-1]["created_ms"] / 1000
                body["at"] = max(body["at"], newest + 0.001)
        self.control("inject", body)
        note("rule: customer message")

    @rule(account=st.sampled_from(ACCOUNTS), pick=PICK, n=st.integers(min_value=3, max_value=25))
    def customer_burst(self, account: str, pick: int, n: int) -> None:
        """A customer sends many messages at once; past 20, Meta shows only the newest 20 (a gap)."""
        threads = self.sb.threads(account)
        self.control("burst", {"account": account, "thread": threads[pick % len(threads)], "n": n})
        note("rule: customer burst")

    @rule(account=st.sampled_from(ACCOUNTS), kind=st.sampled_from(FAULT_KINDS), data=st.data(),
          count=st.integers(min_value=1, max_value=3))
    def platform_fault(self, account: str, kind: str, data: st.DataObject, count: int) -> None:
        path = data.draw(st.sampled_from(PATHS[account]), label="path")
        self.control("fault", {"kind": kind, "account": account, "path": path, "count": count})
        if kind == "bad_item" and path in (None, "/conversations") and account != "tokoshop-x":
            self.timeless_listing.add(account)
        note("rule: platform fault")

    @rule()
    def faults_clear(self) -> None:
        self.control("clear_faults", {})

    @rule(seconds=st.sampled_from(JUMPS))
    def clock_jump(self, seconds: int) -> None:
        """Time passes for everyone: the platform and this process (leases, pauses, windows)."""
        self.clock.shift(timedelta(seconds=seconds))
        self.control("advance", {"seconds": seconds})
        self.shift += seconds
        note("rule: clock jump")

    @rule(seconds=st.sampled_from((-600, -90, 90, 600)))
    def local_clock_step(self, seconds: int) -> None:
        """This machine's clock alone steps (NTP corrects a drifted clock, either way); the platform's does not."""
        self.clock.shift(timedelta(seconds=seconds))
        self.local_skew += seconds
        note("rule: local clock step")

    @rule(env=st.sampled_from(sorted(set(TOKEN_OF.values()))))
    def token_expires(self, env: str) -> None:
        self.control("rotate_token", {"env": env})
        self.stale.add(env)
        note("rule: token expires")

    @precondition(lambda self: bool(self.stale))
    @rule(pick=PICK)
    def token_renewed(self, pick: int) -> None:
        """The team reconnects the account: the new token in its variable, then `accounts reset`."""
        from inbox import accounts as accounts_mod

        env = sorted(self.stale)[pick % len(self.stale)]
        os.environ[env] = self.sb.env()[env]
        self.stale.discard(env)
        for name, var in TOKEN_OF.items():
            if var == env:
                accounts_mod.reset(self.engine, self.settings, name)

    # ── rules: the sync ────────────────────────────────────────────────────────────────────
    @rule(names=st.sets(st.sampled_from(ACCOUNTS), min_size=1))
    def sync(self, names: set[str]) -> None:
        from inbox.sync.pool import sync_all

        now = datetime.now(timezone.utc)
        faulted = self.faulted()
        before = self.health()
        results = sync_all(self.engine, self.settings, accounts=sorted(names), connector_factory=self.factory)
        for r in results:
            note(f"sync {r.account}: {r.status}")
            row = before.get(r.account)
            paused = row is not None and row.paused_until is not None and _aware(row.paused_until) > now
            reauth = row is not None and bool(row.needs_reauth)
            clean = r.account not in faulted and TOKEN_OF[r.account] not in self.stale and not paused and not reauth
            if clean:
                # No account stays failed after its cause is gone.
                assert r.status == "ok" and r.complete, f"{r.account}: {r.status} with no cause left: {r.error}"
            if r.status == "ok" and r.complete and r.account not in faulted:
                self.assert_all_stored(r.account)

    @precondition(lambda self: self.kills < self.max_kills)
    @rule(delay=st.floats(min_value=0.0, max_value=0.3))
    def sync_killed(self, delay: float) -> None:
        """`inbox sync` (worker processes and all) killed with SIGKILL somewhere in its pass."""
        self.kills += 1
        note("rule: sync killed")
        env = {**os.environ, "LOOP_CLOCK_SHIFT": str(self.shift + self.local_skew)}
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(self.config)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                if self.rows("SELECT 1 FROM sync_state WHERE lease_owner IS NOT NULL"):
                    break
                time.sleep(0.01)
            time.sleep(delay)
            workers = _children(proc.pid)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        # Its worker processes die with it (they may take a moment: they notice the parent is gone).
        alive = [pid for pid in workers if not wait_until(lambda pid=pid: exited(pid))]
        assert not alive, f"worker processes {alive} outlived the killed `inbox sync`"

    # ── rules: the agents ──────────────────────────────────────────────────────────────────
    @rule(pick=PICK, body=hostile_text(allow_nul=False))
    def agent_reply(self, pick: int, body: str) -> None:
        from inbox.replies import outbox, route

        tickets = self.tickets()
        if not tickets:
            return
        ticket = tickets[pick % len(tickets)]
        text = self.next_text("balasan", body)
        try:
            plan = route.plan_reply(self.engine, ticket, text, human_agent_tag=self.settings.replies.human_agent_tag)
            note(f"reply: {outbox.send_reply(self.engine, plan, self.reply_connectors(), 'ana').state}")
        except EXPECTED_REPLY_ERRORS as exc:
            note(f"reply: {exc.__class__.__name__}")

    @rule(pick=PICK)
    def reply_retry(self, pick: int) -> None:
        """`inbox outbox retry` on any reply not known to be delivered (in doubt ones must refuse)."""
        from inbox.replies import outbox

        open_ids = [r[0] for r in self.rows("SELECT id FROM reply WHERE state <> 'sent' ORDER BY id")]
        if not open_ids:
            return
        rid = open_ids[pick % len(open_ids)]
        try:
            outbox.retry(self.engine, rid, self.reply_connectors(), "budi", human_agent_tag=self.settings.replies.human_agent_tag)
            note("retry: sent")
        except EXPECTED_REPLY_ERRORS as exc:
            note(f"retry: {exc.__class__.__name__}")

    @rule(pick=PICK, same_text=st.booleans())
    def two_agents_reply(self, pick: int, same_text: bool) -> None:
        """Two terminals reply to one ticket at once: both saw the route and said yes."""
        from inbox.replies import outbox, route

        tickets = self.tickets()
        if not tickets:
            return
        ticket = tickets[pick % len(tickets)]
        base = self.next_text("berdua", "Halo kak, kami bantu cek ya")
        texts = (base, base) if same_text else (base + " (ana)", base + " (budi)")
        self.pairs.append((texts[0], texts[1]))
        seen = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def agent(who: str, text: str) -> None:
            try:
                try:
                    plan = route.plan_reply(self.engine, ticket, text, human_agent_tag=self.settings.replies.human_agent_tag)
                finally:
                    seen.wait()  # both routes shown before either confirms
                outbox.send_reply(self.engine, plan, self.reply_connectors(), who)
            except EXPECTED_REPLY_ERRORS:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below, in the machine's thread
                errors.append(exc)

        threads = [threading.Thread(target=agent, args=(who, t)) for who, t in zip(("ana", "budi"), texts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors:
            raise errors[0]
        note("rule: two agents")

    @rule(pick=PICK, names=st.sets(st.sampled_from(ACCOUNTS), min_size=1))
    def reply_during_sync(self, pick: int, names: set[str]) -> None:
        """An agent replies while a sync runs (the echo may be stored before the send returns)."""
        from inbox.replies import outbox, route
        from inbox.sync.pool import sync_all

        tickets = self.tickets()
        if not tickets:
            return
        ticket = tickets[pick % len(tickets)]
        text = self.next_text("sambil", "Baik kak, sedang kami proses")
        go = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def agent() -> None:
            try:
                go.wait()
                plan = route.plan_reply(self.engine, ticket, text, human_agent_tag=self.settings.replies.human_agent_tag)
                outbox.send_reply(self.engine, plan, self.reply_connectors(), "ana")
            except EXPECTED_REPLY_ERRORS:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def syncing() -> None:
            try:
                go.wait()
                sync_all(self.engine, self.settings, accounts=sorted(names), connector_factory=self.factory)
            except BaseException as exc:  # noqa: BLE001 - sync_all never raises for an account's problem
                errors.append(exc)

        self._together(agent, syncing)
        if errors:
            raise errors[0]
        note("rule: reply during sync")

    @rule(names=st.tuples(st.sets(st.sampled_from(ACCOUNTS), min_size=1), st.sets(st.sampled_from(ACCOUNTS), min_size=1)))
    def two_syncs(self, names: tuple[set[str], set[str]]) -> None:
        """Two syncs at once (cron and an agent's `inbox sync`): one of them holds each account."""
        from inbox.sync.account import SyncStatus
        from inbox.sync.pool import sync_all

        go = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []
        results: list[Any] = []

        def one(chosen: set[str]) -> None:
            try:
                go.wait()
                results.extend(sync_all(self.engine, self.settings, accounts=sorted(chosen), connector_factory=self.factory))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        self._together(lambda: one(names[0]), lambda: one(names[1]))
        if errors:
            raise errors[0]
        for r in results:
            note(f"two syncs {r.account}: {r.status}")
            assert r.status != "failed", f"{r.account}: failed in a concurrent sync: {r.error}"
        assert not any(r.status == SyncStatus.CONFLICT for r in results if r.account not in names[0] & names[1]), "a conflict on an account only one sync wanted"

    def _together(self, *fns: Any) -> None:
        threads = [threading.Thread(target=f) for f in fns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a concurrent step did not finish in 120 s"

    # ── invariants ─────────────────────────────────────────────────────────────────────────
    def assert_all_stored(self, account: str) -> None:
        """Every message the platform can show is stored, exactly once."""
        stored = [r[0] for r in self.rows(
            "SELECT m.external_id FROM message m JOIN account a ON a.id = m.account_id WHERE a.name = :n", n=account)]
        # An item that cannot be stored (an X id past 64 bits: the sandbox's id for a message dated
        # decades ahead) is quarantined with its reason, which accounts for it as well.
        quarantined = {r[0] for r in self.rows(
            "SELECT q.external_id FROM quarantine q JOIN account a ON a.id = q.account_id "
            "WHERE a.name = :n AND q.reason <> ''", n=account)}
        missing = readable_ids(self.sb, account) - set(stored) - quarantined
        assert not missing, f"{account}: {len(missing)} message(s) the platform shows are not stored after a clean pass: {sorted(missing)[:3]}"
        if account == "tokoshop-x":
            return
        # A message lost past Meta's 20-message horizon is a gap recorded on the thread's ticket.
        gaps = {r.conversation_external_id: r.ticket_id for r in self.rows(
            "SELECT g.conversation_external_id, g.ticket_id FROM sync_gap g JOIN account a ON a.id = g.account_id WHERE a.name = :n",
            n=account)}
        have = set(stored)
        for thread in self.sb.threads(account):
            lost = [m["id"] for m in self.sb.thread_messages(account, thread) if not m["readable"] and m["id"] not in have]
            if lost:
                assert thread in gaps, f"{account}: thread {thread} lost {len(lost)} message(s) past the horizon and no gap says so"
                ticketed = self.rows("SELECT ticket_id FROM conversation c JOIN account a ON a.id = c.account_id "
                                     "WHERE a.name = :n AND c.external_id = :t", n=account, t=thread)
                if ticketed and ticketed[0][0] is not None:
                    assert gaps[thread] is not None, f"{account}: the gap of thread {thread} is not on its ticket"

    @invariant()
    def stored_once_and_only_what_the_platform_has(self) -> None:
        rows = self.rows("SELECT a.name, m.external_id FROM message m JOIN account a ON a.id = m.account_id")
        assert len(rows) == len(set(rows)), "a message stored twice"
        for name in ACCOUNTS:
            extra = {e for n, e in rows if n == name} - self.sb.all_message_ids(name)
            assert not extra, f"{name}: stored messages the platform never had: {sorted(extra)[:3]}"

    @invariant()
    def ticketed_threads_keep_every_message_on_a_ticket(self) -> None:
        loose = self.rows(
            "SELECT m.id, m.direction, m.external_id FROM message m JOIN conversation c ON c.id = m.conversation_id "
            "WHERE c.ticket_id IS NOT NULL AND m.ticket_id IS NULL")
        assert not loose, f"messages of a ticketed thread without a ticket: {loose[:3]}"

    @invariant()
    def echoes_match_their_replies(self) -> None:
        bad = self.rows(
            "SELECT m.id, m.reply_id FROM message m JOIN reply r ON r.id = m.reply_id "
            "WHERE m.direction <> 'out' OR m.conversation_id <> r.conversation_id OR r.state <> 'sent' "
            "OR r.external_id IS NULL OR r.external_id <> m.external_id")
        assert not bad, f"echoes matched to the wrong reply: {bad[:3]}"
        unmatched = self.rows(
            "SELECT r.id, m.id FROM reply r JOIN message m ON m.account_id = r.account_id AND m.external_id = r.external_id "
            "WHERE r.state = 'sent' AND (m.reply_id IS NULL OR m.reply_id <> r.id)")
        assert not unmatched, f"stored echoes of sent replies not matched to them: {unmatched[:3]}"

    @invariant()
    def no_reply_delivered_twice(self) -> None:
        deliveries = self.deliveries()
        by_text: dict[str, list[Delivery]] = {}
        for d in deliveries:
            if d.text and d.text.startswith("["):
                by_text.setdefault(d.text, []).append(d)
        twice = {t: len(ds) for t, ds in by_text.items() if len(ds) > 1}
        assert not twice, f"delivered more than once (sandbox count): {twice}"
        both = [(a, b) for a, b in self.pairs if a != b and a in by_text and b in by_text]
        assert not both, f"two agents both delivered on one ticket: {both}"
        rows_by_text: dict[str, list[Any]] = {}
        for r in self.rows("SELECT r.id, r.state, r.text, r.external_id, c.external_id AS thread FROM reply r "
                           "JOIN conversation c ON c.id = r.conversation_id"):
            for d in by_text.get(r.text, []):
                assert d.thread == r.thread, f"reply #{r.id} reached thread {d.thread}, not its own ({r.thread})"
            rows_by_text.setdefault(r.text, []).append(r)
        for text, rows in rows_by_text.items():
            got = by_text.get(text, [])
            for r in rows:
                if r.state == "sent":
                    assert any(d.message_id == r.external_id for d in got), f"reply #{r.id} is sent but the platform has no such delivery"
            if all(r.state == "failed" for r in rows):
                assert not got, f"reply #{rows[0].id} is failed (known not delivered) but the customer got it"

    @invariant()
    def cursors_behind_the_data_and_the_present(self) -> None:
        from connectors.times import parse_time

        now = self.platform_now()
        present = now + PRESENT_SKEW
        believed = (now + timedelta(seconds=self.settings.sync.clock_skew_seconds)).timestamp()
        for name, cursor in self.rows("SELECT a.name, s.cursor FROM sync_state s JOIN account a ON a.id = s.account_id"):
            if isinstance(cursor, str):
                cursor = json.loads(cursor)
            if not cursor:
                continue
            if "hwm" in cursor and cursor["hwm"]:
                hwm = parse_time(cursor["hwm"])
                have = set(self.stored_ids(name))
                # The platform's own times of the messages stored (a misdated one is stored at the
                # time it was received, and its thread's time becomes believable once the clock passes it).
                given = [m["created_ms"] / 1000 for thread in self.sb.threads(name) for m in self.sb.thread_messages(name, thread)
                         if m["id"] in have]
                # A time up to the connector's skew ahead of the platform's clock is believed as given.
                ahead_ok = max((t for t in given if t <= believed), default=0.0)
                assert hwm <= present or hwm.timestamp() <= ahead_ok + 1, f"{name}: cursor {hwm} is past the present ({present})"
                # Every message the platform shows in a thread last updated at or before the mark
                # (less the overlap the next pass re-reads) is stored.
                floor = (hwm - timedelta(seconds=self.settings.sync.overlap_seconds)).timestamp()
                for thread in self.sb.threads(name):
                    msgs = self.sb.thread_messages(name, thread)
                    if msgs and msgs[-1]["created_ms"] / 1000 <= floor:
                        behind = {m["id"] for m in msgs if m["readable"]} - have
                        assert not behind, f"{name}: cursor {hwm} is ahead of the stored data: {len(behind)} message(s) of thread {thread} behind it missing"
                if name in self.timeless_listing and self.known["meta_hwm_from_a_conversation_without_time"]:
                    continue
                newest = self.newest_sent(name)
                assert newest is not None, f"{name}: a cursor and no message stored"
                newest_given = max(given, default=0.0)
                assert hwm <= _aware(newest) + timedelta(seconds=1) or hwm.timestamp() <= newest_given + 1, \
                    f"{name}: cursor {hwm} is past the newest stored message ({newest})"
            if cursor.get("newest_id"):
                newest_id = int(cursor["newest_id"])
                ids = [int(r[0]) for r in self.rows(
                    "SELECT m.external_id FROM message m JOIN account a ON a.id = m.account_id WHERE a.name = :n", n=name)]
                assert ids and newest_id <= max(ids), f"{name}: cursor {newest_id} is past the newest stored event"

    # ── the end of an example: faults clear, causes gone; then everything must be there ─────
    def teardown(self) -> None:
        try:
            self.settle()
        finally:
            self.close()

    def settle(self) -> None:
        from inbox import accounts as accounts_mod
        from inbox.sync.pool import sync_all

        self.control("clear_faults", {})
        for env in sorted(self.stale):
            os.environ[env] = self.sb.env()[env]
        if self.stale:
            for name in ACCOUNTS:
                accounts_mod.reset(self.engine, self.settings, name)
            self.stale.clear()
        self.clock_jump(3600)  # past any platform pause
        results = sync_all(self.engine, self.settings, connector_factory=self.factory)
        assert [r.status for r in results] == ["ok"] * len(ACCOUNTS), [(r.account, r.status, r.error) for r in results]
        for name in ACCOUNTS:
            self.assert_all_stored(name)
        sick = [(h.name, h.problems) for h in accounts_mod.health(self.engine, self.settings) if not h.healthy]
        assert not sick, f"accounts still unhealthy after their causes are gone: {sick}"
        self.stored_once_and_only_what_the_platform_has()
        self.ticketed_threads_keep_every_message_on_a_ticket()
        self.echoes_match_their_replies()
        self.no_reply_delivered_twice()
        self.cursors_behind_the_data_and_the_present()
        self.what_agents_see()

    def cli(self, *args: str) -> tuple[int, str]:
        """`inbox -c CONFIG ARGS` in this process; its exit code and everything it printed."""
        import contextlib
        import io

        import cli

        import inbox.store

        # The command's engine would live until this process exits (atexit): close it here, or a
        # long run on PostgreSQL ends with "too many clients".
        made: list[Any] = []
        real = inbox.store.open_store

        def tracked(*a: Any, **kw: Any) -> Any:
            made.append(real(*a, **kw))
            return made[-1]

        out = io.StringIO()
        inbox.store.open_store = tracked
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = cli.main(["-c", str(self.config), *args])
        finally:
            inbox.store.open_store = real
            for engine in made:
                engine.dispose()
        return code, out.getvalue()

    def what_agents_see(self) -> None:
        """Through the CLI: every stored message is exported, hostile text reaches no terminal raw,
        and `inbox accounts` calls every account healthy."""
        code, out = self.cli("export", "--format", "jsonl")
        assert code == 0, out
        exported = [m["platform_id"] for line in out.splitlines() if line.strip() for m in json.loads(line)["messages"]]
        stored = self.rows("SELECT count(*) FROM message")[0][0]
        assert len(exported) == stored, f"export has {len(exported)} of {stored} stored messages"
        code, out = self.cli("accounts")
        assert code == 0, f"`inbox accounts` exit {code}: {out}"
        screens = [self.cli("list", "--status", "all")]
        screens += [self.cli("show", str(t)) for t in self.tickets()[-8:]]
        screens += [self.cli("outbox")]
        for code, out in screens:
            assert code == 0, out
            raw = sorted({f"U+{ord(c):04X}" for c in out if _unsafe(c)})
            assert not raw, f"terminal control or bidi characters reached the screen: {raw}"

    @invariant()
    def ticket_counters_agree_with_their_messages(self) -> None:
        bad = self.rows(
            "SELECT t.id, t.message_count, (SELECT count(*) FROM message m WHERE m.ticket_id = t.id) AS n FROM ticket t "
            "WHERE t.message_count <> (SELECT count(*) FROM message m WHERE m.ticket_id = t.id)")
        assert not bad, f"ticket message counts disagree with the stored messages (id, count, stored): {bad[:3]}"

    def close(self) -> None:
        try:
            self.engine.dispose()
            if self.schema:
                admin = sa.create_engine(self.pg_base)  # type: ignore[arg-type]
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                admin.dispose()
        finally:
            self.sb.stop()
            self.traveller.stop()
            for k, v in self.saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(self.tmp, ignore_errors=True)


STATS: Counter[str] = Counter()  # what the runs did, for a report (tests/loop_machine.py's callers print it)


def store_url(backend: str, pg_base: str | None, tmp: Path, prefix: str) -> tuple[str, str | None]:
    """A machine's own store: a SQLite file in `tmp`, or a fresh PostgreSQL schema (url, schema)."""
    if backend != "postgres":
        return f"sqlite:///{tmp / 'inbox.db'}", None
    assert pg_base, "the PostgreSQL machine needs INBOX_TEST_PG_URL"
    schema = prefix + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    sep = "&" if "?" in pg_base else "?"
    return f"{pg_base}{sep}options=-csearch_path%3D{schema}", schema


def note(what: str) -> None:
    STATS[what] += 1
    if currently_in_test_context():
        event(what)


def _unsafe(c: str) -> bool:
    """What must never reach a terminal from customer or agent text: C0/C1 controls (but newline),
    DEL, bidi overrides and isolates, line/paragraph separators."""
    o = ord(c)
    return (o < 0x20 and c != "\n") or 0x7F <= o < 0xA0 or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069 or o in (0x2028, 0x2029)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _expected_reply_errors() -> tuple[type[BaseException], ...]:
    from inbox.errors import InboxError

    return (InboxError,)


EXPECTED_REPLY_ERRORS = _expected_reply_errors()

# `inbox sync` as a subprocess, on the machine's clock, without client-side pacing (the loopback
# sandbox has no 2 calls/s limit).
DRIVER = """
import os, sys, time
shift = float(os.environ.get("LOOP_CLOCK_SHIFT") or 0)
if shift:
    import time_machine
    time_machine.travel(time.time() + shift, tick=True).start()
import cli
import inbox.sync.account
real = inbox.sync.account.make_connector
inbox.sync.account.make_connector = lambda settings, account, **kw: real(settings, account, min_interval=0.0, **kw)
sys.exit(cli.main(["-c", sys.argv[1], "sync"]))
"""
