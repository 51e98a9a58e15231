"""Replies under concurrency, on SQLite and PostgreSQL: N agent processes x M replies on overlapping
tickets, with random kills, retries racing the senders, a sender pausing past its lease, and slow,
late, lost and failed sends from the sandbox.

Afterwards, counted on the sandbox (what customers received, never rows in the store): every reply
reached its customer at most once, every `sent` reply exactly once, every `failed` one never, and
nothing reached anyone who was not the reply's recipient. A late send is carried out after its
delay, or before the next sync if that comes first (see SETTLE).

The small profile runs by default; the bigger one is marked `slow`.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox import Sandbox

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

INBOX = str(Path(sys.executable).parent / "inbox")
CLIENT_TIMEOUT = 1.0  # seconds; the sandbox's slow and late answers take longer
LATE = 2.5
LEASE = 2.0
# The product settles a reply in doubt only on a sync that started `settle_after_seconds` after the
# attempt, and states the condition: the platform is never later than that. The test holds the
# sandbox to it exactly rather than by timing: before every sync, each late request accepted so far
# is carried out (`release_late`, `wait_late`), so whatever the machine's load, everything an
# attempt delivered is on the platform before a sync that could settle it starts. The quiet period
# then only has to outlast the time from that release to the sync process's own start (a request
# arriving in between belongs to an attempt too recent for that sync to settle). The sandbox's
# record (`late_requests`) shows how late it really was: within 0.2 s of LATE in every run measured,
# under CPU burners and busy threads in the test process alike. The margin stays generous.
SETTLE = LATE + 25.0

# One agent: its replies one after the other through the CLI, and now and then `outbox retry` on
# whatever the outbox lists. Progress goes to a file, so a killed agent is restarted where it was.
# A reply the killed agent had already recorded is not asked for again: the store has it, and the
# outbox settles it. (Asked again, it is refused while `sending`, `unknown` or `failed`; but once a
# sync found its echo it is `sent`, and the same text then is a new reply by the product's rules —
# a second delivery the agent asked for, which this test once counted against the product.)
AGENT = r"""
import json, os, random, sys, time
import cli
def run(argv):  # each command's output on stderr follows a line with the time it started
    sys.stderr.write("@%.3f %s\n" % (time.time(), " ".join(argv[2:])))
    sys.stderr.flush()
    cli.main(argv)
    sys.stderr.flush()
config, name, plan_path, progress_path, seed = sys.argv[1:6]
plan = json.load(open(plan_path))
done = int(open(progress_path).read() or 0) if os.path.exists(progress_path) else 0
restarted = os.path.exists(progress_path + ".started")
def advance(n):  # atomically: a kill while writing must not leave an empty file (a rewind to 0)
    with open(progress_path + ".tmp", "w") as fh:
        fh.write(str(n))
    os.replace(progress_path + ".tmp", progress_path)
rng = random.Random(int(seed) + done)
def recorded(text):
    import sqlalchemy as sa
    from inbox.settings import load_settings
    from inbox.store import open_store
    engine = open_store(load_settings(config).database_url())
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT id, state FROM reply WHERE text = :t"), {"t": text}).first()
    finally:
        engine.dispose()
for i in range(done, len(plan)):
    ticket, contact, text, again = plan[i]
    # A restarted agent looks up every reply it has left, not only the next: the progress file
    # may be a step behind the store (killed between the reply and the write).
    row = recorded(text) if restarted else None
    open(progress_path + ".started", "w").close()
    if row is not None:
        sys.stderr.write("@%.3f restarted: reply #%s (%s) is %s; not asked for again\n" % (time.time(), row[0], text, row[1]))
        advance(i + 1)
        continue
    argv = ["-c", config, "reply", str(ticket), text, "--to", str(contact), "--yes", "--agent", name]
    run(argv + (["--again"] if again else []))
    advance(i + 1)
    if rng.random() < 0.5:
        import io, contextlib
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run(["-c", config, "--json", "outbox"])
        try:
            ids = [r["id"] for r in json.loads(out.getvalue())["replies"]]
        except ValueError:
            ids = []
        for rid in rng.sample(ids, min(2, len(ids))):
            run(["-c", config, "outbox", "retry", str(rid), "--agent", name])
"""


@dataclass(frozen=True)
class Profile:
    agents: int
    replies: int  # per agent
    tickets: int
    kills: int


SMALL = Profile(agents=3, replies=4, tickets=3, kills=2)
BIG = Profile(agents=6, replies=10, tickets=5, kills=6)


def _config(sb: Sandbox, database: str) -> str:
    text = sb.config_toml(database=database)
    # Every account gets a short client timeout: the sandbox's slow and late answers outlast it.
    text = re.sub(r'(access_token_env = "[A-Z_]+")', rf"\1\ntimeout_seconds = {CLIENT_TIMEOUT}", text)
    return text + (
        f"\n[sync]\nprocesses = false\n\n[replies]\nconfirm = false\nlease_seconds = {LEASE}\nsettle_after_seconds = {SETTLE}\n"
    )


def _single_customer_tickets(engine: Any, n: int) -> list[tuple[int, int]]:
    """(ticket, contact) pairs of tickets a reply can go to now (window open, one customer)."""
    from inbox.replies import route
    from inbox.errors import InboxError

    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM ticket WHERE merged_into_id IS NULL ORDER BY id"))]
    found = []
    for tid in ids:
        try:
            plan = route.plan_reply(engine, tid, "probe")
        except InboxError:
            continue
        if plan.route.contact_id is not None:
            found.append((tid, plan.route.contact_id))
        if len(found) == n:
            break
    assert len(found) == n, f"only {len(found)} tickets can be replied to"
    return found


def _chaos(sb: Sandbox, stop: threading.Event, rng: random.Random, armed: list[str]) -> None:
    """Keeps a few faults armed on the send endpoints: slow (delivered, answered late), late
    (delivered and shown only after the client gave up), lost response, lost request, 500, 503."""
    kinds = [("timeout", None), ("late", None), ("drop", True), ("drop", False), ("500", None), ("503", None)]
    while not stop.is_set():
        if len(sb.faults.pending()) < 3:
            kind, effect = rng.choice(kinds)
            options = {"delay": LATE} if kind == "late" else {}
            sb.fault(kind, path="/messages", method="POST", after_effect=effect, **options)
            armed.append(kind if effect is None else f"{kind}{'+delivered' if effect else '+lost'}")
        stop.wait(0.2)


def _replies(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id, state, text, recipient_id, attempts FROM reply ORDER BY id")).all())


def _check(rows: list[Any], delivered: dict[tuple[str, str, str], int], texts: set[str]) -> None:
    """At most once, to the reply's recipient only; `sent` exactly once; `failed` never."""
    by_text: dict[str, list[tuple[str, int]]] = {}
    for (_acc, recipient, text), n in delivered.items():
        by_text.setdefault(text, []).append((recipient, n))
    assert all(n == 1 for (_a, _r, t), n in delivered.items() if t in texts), {k: n for k, n in delivered.items() if n > 1}
    assert len({r.text for r in rows}) == len(rows), "one row per reply"
    for r in rows:
        got = by_text.get(r.text, [])
        assert all(rec == r.recipient_id for rec, _ in got), f"reply #{r.id} reached {got}, not {r.recipient_id}"
        if r.state == "sent":
            assert sum(n for _, n in got) == 1, f"reply #{r.id} is sent, delivered {got}"
        elif r.state == "failed":
            assert not got, f"reply #{r.id} is failed but was delivered {got}"
        else:
            assert sum(n for _, n in got) <= 1
    stray = {t for t in by_text if t in texts and t not in {r.text for r in rows}}
    assert not stray, f"delivered without a reply row: {stray}"


def _epoch(at: Any) -> float:
    """Epoch seconds of a sandbox time (a float) or a store time (raw SQL on SQLite gives text, in UTC)."""
    if isinstance(at, (int, float)):
        return float(at)
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def _late_summary(sb: Sandbox) -> dict[str, Any]:
    """How late the sandbox carried out its late requests: how much later than their delay (not asserted)."""
    done = [r for r in sb.late_requests if r.carried_out is not None and not r.released]
    over = sorted(r.carried_out - r.arrived - r.delay for r in done)
    return {"late_sends": len(sb.late_requests), "late_released": sum(r.released for r in sb.late_requests),
            "late_overdue_max_s": round(over[-1], 2) if over else None,
            "late_overdue_median_s": round(over[len(over) // 2], 2) if over else None}


def _timeline(engine: Any, sb: Sandbox, delivered: dict[tuple[str, str, str], int], t0: float,
              syncs: list[tuple[float, float, str]], logs: list[Path]) -> str:
    """For each reply delivered more than once: what the store, the sandbox and the agents saw, in
    time order (seconds since the test started): its record, each attempt and outcome, each
    delivery (and, for a late one, when it arrived, its delay and when it was carried out), its
    stored echoes, and the syncs that ran meanwhile."""
    lines: list[str] = []
    sent = [dict(s, account=a) for a in sb.accounts for s in sb.sent(a)]
    late = {r.message_id: r for r in sb.late_requests if r.message_id}
    agent_lines: list[tuple[float, str, str, str]] = []  # (when its command started, agent, command, line)
    for path in logs:
        at, command = t0, ""
        for ln in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if ln.startswith("@") and " " in ln:
                stamp, command = ln[1:].split(" ", 1)
                at = float(stamp)
            agent_lines.append((at, path.stem, command, ln))
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT at, actor, action, detail FROM ticket_event WHERE action LIKE 'reply%' ORDER BY id")).all()
        counts: dict[str, int] = {}
        for (_acc, _rec, text), n in delivered.items():
            counts[text] = counts.get(text, 0) + n
        copied = {t for (t,) in conn.execute(sa.text("SELECT text FROM reply GROUP BY text HAVING COUNT(*) > 1"))}
        for text in sorted({t for t, n in counts.items() if n > 1} | copied):
            n = counts.get(text, 0)
            found = conn.execute(sa.text("SELECT * FROM reply WHERE text = :t ORDER BY id"), {"t": text}).mappings().all()
            if not found:
                lines.append(f"{text!r}: delivered {n} times, no reply row")
            for r in found:
                rows: list[tuple[float, str]] = [(_epoch(r["created_at"]), f"store  reply #{r['id']} recorded (ticket {r['ticket_id']})")]
                for ev in events:
                    detail = ev.detail if isinstance(ev.detail, dict) else json.loads(ev.detail or "{}")
                    if detail.get("reply_id") == r["id"]:
                        rows.append((_epoch(ev.at), f"store  event {ev.action} by {ev.actor} {json.dumps(detail, default=str)}"))
                for s in sent:
                    if s.get("text") == text:
                        mid = s.get("message_id") or s.get("dm_event_id")
                        lr = late.get(mid)
                        if lr is not None:
                            rows.append((lr.arrived, f"sandbox late send {mid} arrived (delay {lr.delay} s)"))
                            how = "released" if lr.released else f"{lr.carried_out - lr.arrived - lr.delay:+.2f} s after its delay"
                            rows.append((float(lr.carried_out or s["at"]), f"sandbox late send {mid} carried out ({how})"))
                        else:
                            rows.append((float(s["at"]), f"sandbox delivered {mid}"))
                echoes = conn.execute(sa.text("SELECT id, external_id, sent_at, received_at, reply_id FROM message WHERE text = :t"), {"t": text}).all()
                for m in echoes:
                    rows.append((_epoch(m.received_at), f"store  echo {m.external_id} stored as message {m.id} (sent {_epoch(m.sent_at) - t0:.2f}), matched to reply {m.reply_id}"))
                gaps = conn.execute(sa.text(
                    "SELECT g.detected_at, g.missing, g.missing_after, g.missing_before, g.detail FROM sync_gap g "
                    "JOIN conversation c ON c.external_id = g.conversation_external_id AND c.account_id = g.account_id "
                    "WHERE c.id = :c"), {"c": r["conversation_id"]}).all()
                for g in gaps:
                    rows.append((_epoch(g.detected_at), f"store  gap on its thread: {g.missing} missing between {g.missing_after} and {g.missing_before} ({g.detail})"))
                first, last = min(t for t, _ in rows), max(t for t, _ in rows)
                rows += [(a, f"test   {what} sync ran until {b - t0:.2f}") for a, b, what in syncs if b >= first - 1 and a <= last + SETTLE + 5]
                rows += [(at, f"agent  {name}: {ln[:300]}") for at, name, command, ln in agent_lines
                         if f"#{r['id']}" in ln or (ln.startswith("@") and (text in command or f"retry {r['id']} " in command))]
                lines.append(f"reply #{r['id']} (its text delivered {n} times) now {r['state']} after {r['attempts']} attempts ({r['error']}): {text!r}")
                lines += [f"  {t - t0:8.2f}  {what}" for t, what in sorted(rows, key=lambda x: x[0])]
    return "\n".join(lines)


def _run(profile: Profile, db_url: str, tmp_path: Path, seed: int) -> dict[str, int]:
    from inbox.settings import load_settings
    from inbox.store import open_store
    from inbox.sync.account import make_connector
    from inbox.sync.pool import sync_all

    rng = random.Random(seed)
    t0 = time.time()
    syncs: list[tuple[float, float, str]] = []  # (started, ended, what) of each sync the test ran
    logs = [tmp_path / f"agent{i}.log" for i in range(profile.agents)]
    sb = Sandbox(seed=7, x_rate_limit=100_000, timeout_sleep=LATE, late_sleep=LATE).start()
    saved = dict(os.environ)
    os.environ.update(sb.env())
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        cfg = tmp_path / "inbox.toml"
        cfg.write_text(_config(sb, db_url), encoding="utf-8")
        settings = load_settings(cfg)
        engine = open_store(settings.database_url())
        results = sync_all(engine, settings, connector_factory=lambda a: make_connector(settings, a, min_interval=0.0))
        assert all(r.status == "ok" for r in results), results
        tickets = _single_customer_tickets(engine, profile.tickets)
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("INBOX_CONFIG", None)
        env.pop("INBOX_TEST_PAUSE_BEFORE_SEND", None)

        def start(i: int) -> subprocess.Popen[bytes]:
            agent_env = dict(env)
            if i == 0:  # this one oversleeps its lease before every send: the others' retries may take its replies
                agent_env["INBOX_TEST_PAUSE_BEFORE_SEND"] = str(LEASE + 1)
            with logs[i].open("ab") as log:  # what the agent was told (kept for the failure report)
                return subprocess.Popen(
                    [sys.executable, "-c", AGENT, str(cfg), f"agent{i}", str(tmp_path / f"plan{i}.json"), str(tmp_path / f"progress{i}"), str(seed + i)],
                    env=agent_env, stdout=subprocess.DEVNULL, stderr=log, cwd=str(tmp_path),
                )

        def sync(what: str) -> None:
            # The platform catches up first: no sync starts while a late request accepted before it waits.
            sb.release_late()
            assert sb.wait_late(60), "late requests still waiting a minute after their release"
            started = time.time()
            subprocess.run([INBOX, "-c", str(cfg), "sync"], env=env, capture_output=True, timeout=120)
            syncs.append((started, time.time(), what))

        def check(rows: list[Any]) -> None:
            delivered = sb.deliveries()
            try:
                _check(rows, delivered, texts)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_late_summary(sb)}\n{_timeline(engine, sb, delivered, t0, syncs, logs)}") from None

        texts: set[str] = set()
        for i in range(profile.agents):
            plan = []
            for j in range(profile.replies):
                ticket, contact = tickets[(i + j) % len(tickets)]  # agents overlap on every ticket
                text = f"Halo kak, balasan {i}-{j} ({seed})"
                texts.add(text)
                plan.append((ticket, contact, text, (i + j) % 2 == 0))
            (tmp_path / f"plan{i}.json").write_text(json.dumps(plan), encoding="utf-8")
        stop = threading.Event()
        armed: list[str] = []
        chaos = threading.Thread(target=_chaos, args=(sb, stop, random.Random(seed), armed), daemon=True)
        chaos.start()
        for i in range(profile.agents):
            procs[i] = start(i)
        kills = 0
        while any(p.poll() is None for p in procs.values()):  # a hang is pytest-timeout's to report
            time.sleep(rng.uniform(0.3, 1.5))
            alive = [i for i, p in procs.items() if p.poll() is None]
            if kills < profile.kills and alive:
                victim = rng.choice(alive)
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait()
                kills += 1
                procs[victim] = start(victim)  # restarted where its progress file says
            if rng.random() < 0.3:
                sync("agents running:")
        stop.set()
        chaos.join(5)
        faults_hit = len(armed) - len(sb.faults.pending())
        sb.clear_faults()
        sb.release_late()
        assert sb.wait_late(60)
        # Settle: syncs (after the quiet period) and retries of what is known not delivered. The
        # invariant holds at every step, before the retries too (a `failed` reply was never delivered).
        checked_failed = 0
        for _ in range(8):
            time.sleep(SETTLE + 0.2)
            sync("settling:")
            rows = _replies(engine)
            check(rows)
            checked_failed += sum(r.state == "failed" for r in rows)
            if all(r.state == "sent" for r in rows):
                break
            for r in rows:
                if r.state == "failed":
                    subprocess.run([INBOX, "-c", str(cfg), "outbox", "retry", str(r.id)], env=env, capture_output=True, timeout=60)
        rows = _replies(engine)
        check(rows)
        delivered = sb.deliveries()
        with engine.connect() as conn:
            events = dict(conn.execute(sa.text("SELECT action, COUNT(*) FROM ticket_event WHERE action LIKE 'reply%' GROUP BY action")).all())
            gap_count = conn.execute(sa.text("SELECT COUNT(*) FROM sync_gap")).scalar()
        engine.dispose()
        counts = {
            "agents": profile.agents, "replies_planned": profile.agents * profile.replies, "kills": kills,
            "recorded": len(rows), "sent": sum(r.state == "sent" for r in rows), "failed": sum(r.state == "failed" for r in rows),
            "in_doubt": sum(r.state in ("unknown", "sending") for r in rows),
            "deliveries": sum(n for (_a, _r, t), n in delivered.items() if t in texts),
            "send_faults_hit": faults_hit, "retried": sum(r.attempts > 1 for r in rows),
            "failed_checked_undelivered": checked_failed, "declared_not_delivered": events.get("reply_not_delivered", 0),
            "taken_in_doubt_from_stopped_sender": events.get("reply_in_doubt", 0), "sync_gaps": gap_count, "syncs": len(syncs), "sync_longest_s": round(max(b - a for a, b, _ in syncs), 1), **_late_summary(sb),
        }
        print("reply concurrency:", json.dumps(counts))
        return counts
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        sb.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_replies_reach_each_customer_at_most_once_small(db_url: str, tmp_path: Path) -> None:
    counts = _run(SMALL, db_url, tmp_path, seed=11)
    assert counts["sent"] == counts["deliveries"] and counts["in_doubt"] == 0


@pytest.mark.slow
def test_replies_reach_each_customer_at_most_once_big(db_url: str, tmp_path: Path) -> None:
    counts = _run(BIG, db_url, tmp_path, seed=23)
    assert counts["sent"] == counts["deliveries"] and counts["in_doubt"] == 0
