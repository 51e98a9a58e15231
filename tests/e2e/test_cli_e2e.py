"""End to end through the real CLI (subprocesses) against the sandbox served by this test process.

The store of every test starts from one synced copy (synced once per module, unpaced, in
process); everything after that — list, show, claim, reply, sync, outbox — runs as `inbox ...`
subprocesses over real HTTP on 127.0.0.1, and deliveries are counted on the sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox import Sandbox
from tests.waiting import wait_until

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

INBOX = str(Path(sys.executable).parent / "inbox")
HOSTILE = (
    "[bold red]BAYAR SEKARANG[/] [link=http://evil.example]klik[/link] \x1b[31mred\x1b[0m\x1b[2J "
    "\x1b]8;;http://evil.example\x07tautan\x1b]8;;\x07 \x1b]52;c;ZXZpbA==\x07 "
    "INV/20261120/MPL/\u202e0455627183\u202c ad\u200bmin\u2060 \x07\x08 selesai"
)


@dataclass
class Env:
    sb: Sandbox
    dir: Path
    config: Path
    env: dict[str, str]
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.dir / "inbox.db"

    def run(self, *args: str, check: int | None = 0, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([INBOX, "-c", str(self.config), *args], env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check is not None:
            assert proc.returncode == check, f"inbox {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def query(self, sql: str, **params: Any) -> list[Any]:
        eng = sa.create_engine(f"sqlite:///{self.db}")
        try:
            with eng.connect() as conn:
                return list(conn.execute(sa.text(sql), params).all())
        finally:
            eng.dispose()

    def sent_total(self) -> int:
        return sum(len(self.sb.sent(name)) for name in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"))


def _config_text(sb: Sandbox, db: Path, extra: str = "") -> str:
    text = sb.config_toml(database=f"sqlite:///{db}")
    # Short client timeouts so a send that never gets an answer fails fast in tests.
    text = text.replace('access_token_env = "INBOX_SANDBOX_FB_TOKEN"', 'access_token_env = "INBOX_SANDBOX_FB_TOKEN"\ntimeout_seconds = 2')
    return text + "\n" + extra


@pytest.fixture(scope="module")
def sandbox() -> Any:
    # timeout_sleep: longer than the 2 s client timeout, room to kill mid-call. Every test here syncs
    # its own copy of one store against this one sandbox, so X's 15 lookups per 15 minutes would be
    # shared by the whole module; the rate budget has its own tests (tests/contract/test_rate_budget.py).
    sb = Sandbox(seed=7, timeout_sleep=8, x_rate_limit=10**6).start()
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def synced(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store synced once from the seeded sandbox, with hostile messages in it."""
    from inbox.settings import load_settings
    from inbox.store import open_store
    from inbox.sync.account import make_connector
    from inbox.sync.pool import sync_all

    sandbox.inject("tokoshop-ig", text=HOSTILE, customer="hostile[/]\x1b[31muser")
    sandbox.inject("tokoshop-fb", text="A" * 20_000, customer="Panjang Sekali")
    d = tmp_path_factory.mktemp("base")
    cfg = d / "inbox.toml"
    cfg.write_text(_config_text(sandbox, d / "inbox.db"), encoding="utf-8")
    saved = dict(os.environ)
    os.environ.update(sandbox.env())
    try:
        settings = load_settings(cfg)
        engine = open_store(settings.database_url())
        # As `inbox sync` makes connectors, without the client-side pacing the sandbox does not need.
        results = sync_all(engine, settings, connector_factory=lambda a: make_connector(settings, a, min_interval=0.0))
        assert all(r.status == "ok" for r in results), results
        engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return d / "inbox.db"


@pytest.fixture
def e2e(sandbox: Sandbox, synced: Path, tmp_path: Path) -> Env:
    shutil.copy(synced, tmp_path / "inbox.db")
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(_config_text(sandbox, tmp_path / "inbox.db"), encoding="utf-8")
    env = {**os.environ, **sandbox.env(), "INBOX_AGENT": "ana", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("INBOX_CONFIG", None)
    env.pop("INBOX_TEST_PAUSE_BEFORE_SEND", None)
    return Env(sandbox, tmp_path, cfg, env)


def _ticket_where(e: Env, predicate: Any) -> dict[str, Any]:
    """The first ticket matching `predicate` whose threads are all one customer's (a reply to a
    ticket of two customers needs --to)."""
    if "all" not in e.cache:
        e.cache["all"] = e.json("list", "--status", "all", "--limit", "500")["tickets"]
        shared = e.query("SELECT ticket_id FROM conversation GROUP BY ticket_id HAVING COUNT(DISTINCT contact_id) > 1")
        e.cache["shared"] = {r[0] for r in shared}
    for t in e.cache["all"]:
        if t["id"] not in e.cache["shared"] and predicate(t):
            return t
    raise AssertionError("no ticket matches")


def _age_hours(t: dict[str, Any]) -> float:
    from datetime import datetime, timezone

    last = datetime.fromisoformat(t["last_customer_message_at"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - last).total_seconds() / 3600


# ─── triage ─────────────────────────────────────────────────────────────────────────────────


def test_list_show_claim_through_the_cli(e2e: Env) -> None:
    tickets = e2e.json("list")["tickets"]
    assert len(tickets) > 10
    assert {t["channel"] for t in tickets} == {"instagram", "facebook", "x"}
    assert all(t["status"] in ("new", "open", "pending") for t in tickets)
    ranks = [{"urgent": 0, "high": 1, "normal": 2, "low": 3}[t["priority"]] for t in tickets]
    assert ranks == sorted(ranks)
    ig_open = e2e.json("list", "--channel", "instagram", "--status", "new")["tickets"]
    assert ig_open and all(t["channel"] == "instagram" and t["status"] == "new" for t in ig_open)

    claimed = e2e.json("claim")["ticket"]
    assert claimed["id"] == tickets[0]["id"] and claimed["assignee"] == "ana" and claimed["status"] == "open"
    mine = e2e.json("list", "--assignee", "me")["tickets"]
    assert [t["id"] for t in mine] == [claimed["id"]]
    other = e2e.run("claim", str(claimed["id"]), "--agent", "budi", check=6)
    assert "already claimed by ana" in other.stderr

    thread = e2e.json("show", str(claimed["id"]))
    assert thread["ticket"]["id"] == claimed["id"]
    msgs = thread["messages"]
    assert msgs and all({"direction", "channel", "text", "time", "platform_id", "kind", "attachments"} <= set(m) for m in msgs)
    assert [m["time"] for m in msgs] == sorted(m["time"] for m in msgs)
    human = e2e.run("show", str(claimed["id"]))
    assert f"#{claimed['id']}" in human.stdout and "conversation" in human.stdout

    e2e.run("tag", str(claimed["id"]), "vip")
    e2e.run("note", str(claimed["id"]), "called the customer")
    e2e.run("priority", str(claimed["id"]), "low")
    again = e2e.json("show", str(claimed["id"]))
    assert again["ticket"]["tags"] == ["vip"] and again["ticket"]["priority"] == "low"
    assert [n["text"] for n in again["notes"]] == ["called the customer"]
    assert e2e.run("show", "999999", check=5).stderr.startswith("error: no ticket #999999")
    hits = e2e.json("search", "INV/20261118/MPL/5560193827")["tickets"]
    assert hits and all("5560193827" in (h["match"]["text"] or "") for h in hits)


def test_concurrent_claims_through_the_cli(e2e: Env) -> None:
    procs = [
        subprocess.Popen([INBOX, "-c", str(e2e.config), "claim", "--json", "--agent", f"agent{i}"], env=e2e.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(json.loads(out)["ticket"]["id"])
    assert len(set(ids)) == 6


# ─── replies ────────────────────────────────────────────────────────────────────────────────


def test_reply_goes_out_once_and_comes_back_as_echo(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "instagram" and t["status"] == "new" and _age_hours(t) < 20)
    before = len(e2e.sb.sent("tokoshop-ig"))
    text = f"Halo kak, pesanan #{t['id']} sedang kami cek ya 🙏"
    # No terminal and no --yes: refused before anything is recorded or sent.
    refused = e2e.run("reply", str(t["id"]), text, check=2)
    assert "--yes" in refused.stderr and "→ Instagram DM" in refused.stderr
    assert len(e2e.sb.sent("tokoshop-ig")) == before and e2e.query("SELECT id FROM reply") == []

    ok = e2e.run("reply", str(t["id"]), text, "--yes")
    assert re.search(r"→ Instagram DM \S+ · RESPONSE · \d+ h", ok.stderr)
    sent = e2e.sb.sent("tokoshop-ig")
    assert len(sent) == before + 1 and sent[-1]["text"] == text and sent[-1]["messaging_type"] == "RESPONSE"
    shown = e2e.json("show", str(t["id"]))
    assert shown["ticket"]["status"] == "pending" and shown["ticket"]["first_response_at"]
    assert any(ev["action"] == "reply" for ev in shown["events"])

    e2e.run("sync")
    echo = [m for m in e2e.json("show", str(t["id"]))["messages"] if m["direction"] == "out" and m["text"] == text]
    assert len(echo) == 1 and echo[0]["reply_id"] is not None
    assert echo[0]["platform_id"] == sent[-1]["message_id"]
    assert e2e.json("outbox")["replies"] == []
    assert [r["state"] for r in e2e.json("outbox", "--all")["replies"]] == ["sent"]
    assert len(e2e.sb.sent("tokoshop-ig")) == before + 1


def test_window_and_length_policy_through_the_cli(e2e: Env) -> None:
    total = e2e.sent_total()
    closed = _ticket_where(e2e, lambda t: t["channel"] in ("instagram", "facebook") and _age_hours(t) > 7 * 24)
    r = e2e.run("reply", str(closed["id"]), "halo", "--yes", check=8)
    assert "7 days" in r.stderr
    human = _ticket_where(e2e, lambda t: t["channel"] in ("instagram", "facebook") and 25 < _age_hours(t) < 6 * 24)
    too_long = "é" * 600 if human["channel"] == "instagram" else "a" * 2001
    assert e2e.run("reply", str(human["id"]), too_long, "--yes", check=8).stderr.count("allows") == 1
    assert e2e.sent_total() == total and e2e.query("SELECT id FROM reply") == []

    # Without the Human Agent feature the 24 h–7 d window is closed too.
    no_tag = e2e.dir / "no-tag.toml"
    no_tag.write_text(e2e.config.read_text() + "\n[replies]\nhuman_agent_tag = false\n", encoding="utf-8")
    p = subprocess.run([INBOX, "-c", str(no_tag), "reply", str(human["id"]), "halo kak", "--yes"], env=e2e.env, capture_output=True, text=True)
    assert p.returncode == 8 and "human_agent_tag" in p.stderr

    ok = e2e.run("reply", str(human["id"]), "Mohon maaf menunggu kak", "--yes")
    assert "HUMAN_AGENT" in ok.stderr
    account = human["account"]
    last = e2e.sb.sent(account)[-1]
    assert last["messaging_type"] == "MESSAGE_TAG" and last["tag"] == "HUMAN_AGENT"
    assert e2e.sent_total() == total + 1


def _wait_for(e: Env, sql: str) -> list[Any]:
    def rows() -> list[Any]:
        try:
            return e.query(sql)
        except sa.exc.OperationalError:  # the writer holds the database for a moment
            return []

    return wait_until(rows, poll=0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def test_reply_killed_before_the_call_reaches_the_customer_once(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Baik kak, kami proses refund-nya hari ini"
    before = len(e2e.sb.sent("tokoshop-x"))
    proc = subprocess.Popen([INBOX, "-c", str(e2e.config), "reply", str(t["id"]), text, "--yes"],
                            env={**e2e.env, "INBOX_TEST_PAUSE_BEFORE_SEND": "30"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rid = _wait_for(e2e, "SELECT id FROM reply WHERE state = 'sending'")[0][0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=120)
    assert len(e2e.sb.sent("tokoshop-x")) == before
    # The same reply again is refused while the first one is in doubt ...
    assert e2e.run("reply", str(t["id"]), text, "--yes", check=6).returncode == 6
    # ... and retry settles it first: the process died before calling the platform.
    e2e.run("outbox", "retry", str(rid))
    assert len(e2e.sb.sent("tokoshop-x")) == before + 1
    assert "already delivered" in e2e.run("outbox", "retry", str(rid), check=6).stderr
    e2e.run("sync")
    assert [s["text"] for s in e2e.sb.sent("tokoshop-x")].count(text) == 1
    assert e2e.query("SELECT state, attempts FROM reply") == [("sent", 2)]


def test_reply_killed_during_the_call_is_settled_by_the_echo(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Kami sudah teruskan ke tim terkait ya kak"
    before = len(e2e.sb.sent("tokoshop-x"))
    e2e.sb.fault("timeout", path="/messages", account="tokoshop-x")  # delivered, the answer comes late
    proc = subprocess.Popen([INBOX, "-c", str(e2e.config), "reply", str(t["id"]), text, "--yes"], env=e2e.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rid = _wait_for(e2e, "SELECT id FROM reply WHERE error LIKE 'calling:%'")[0][0]
    wait_until(lambda: len(e2e.sb.sent("tokoshop-x")) > before, poll=0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=120)
    e2e.sb.clear_faults()
    assert len(e2e.sb.sent("tokoshop-x")) == before + 1
    refused = e2e.run("outbox", "retry", str(rid), check=6)
    assert "may have been delivered" in refused.stderr
    e2e.run("sync")
    assert e2e.query("SELECT state FROM reply WHERE id = :i", i=rid) == [("sent",)]
    e2e.run("outbox", "retry", str(rid), check=6)
    assert [s["text"] for s in e2e.sb.sent("tokoshop-x")].count(text) == 1


def test_timed_out_send_is_unknown_until_the_echo(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "facebook" and t["status"] == "new" and _age_hours(t) < 20)
    text = "Dana akan kembali dalam 1x24 jam kak"
    before = len(e2e.sb.sent("tokoshop-fb"))
    e2e.sb.fault("timeout", path="/messages", account="tokoshop-fb")
    r = e2e.run("reply", str(t["id"]), text, "--yes", check=7)
    assert "outcome unknown" in r.stderr
    assert len(e2e.sb.sent("tokoshop-fb")) == before + 1  # it did arrive
    rid = e2e.query("SELECT id FROM reply WHERE state = 'unknown'")[0][0]
    listed = e2e.json("outbox")["replies"]
    assert [(x["id"], x["state"]) for x in listed] == [(rid, "unknown")]
    e2e.run("outbox", "retry", str(rid), check=6)
    e2e.run("reply", str(t["id"]), text, "--yes", check=6)
    e2e.run("sync")
    assert e2e.query("SELECT state FROM reply WHERE id = :i", i=rid) == [("sent",)]
    e2e.run("outbox", "retry", str(rid), check=6)
    assert [s["text"] for s in e2e.sb.sent("tokoshop-fb")].count(text) == 1


def _with_replies(e: Env, **values: float) -> None:
    """Rewrite the test's config with these `[replies]` settings."""
    extra = "[replies]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    e.config.write_text(_config_text(e.sb, e.db, extra), encoding="utf-8")


def _delivered(e: Env, text: str) -> int:
    """How many times the customer received this text (counted on the sandbox, after late sends land)."""
    assert e.sb.wait_late(30)
    return sum(n for (_acc, _to, t), n in e.sb.deliveries().items() if t == text)


def test_late_platform_and_retry_deliver_once(e2e: Env) -> None:
    """The platform accepts the send and shows it only after the client's timeout: the first sync
    finds no echo, yet the reply stays unknown (retry refuses, with the reason) until the echo comes."""
    t = _ticket_where(e2e, lambda t: t["channel"] == "facebook" and t["status"] == "new" and _age_hours(t) < 20)
    text = "Refund kakak sedang diproses, mohon ditunggu"
    e2e.sb.fault("late", path="/messages", account="tokoshop-fb", delay=300)  # until released below
    e2e.run("reply", str(t["id"]), text, "--yes", check=7)
    rid = e2e.query("SELECT id FROM reply WHERE state = 'unknown'")[0][0]
    e2e.run("sync")  # starts right after the attempt; the platform has not shown the message yet
    assert e2e.query("SELECT state FROM reply WHERE id = :i", i=rid) == [("unknown",)]
    refused = e2e.run("outbox", "retry", str(rid), check=6)
    assert "may have been delivered" in refused.stderr and "--force" in refused.stderr
    e2e.sb.release_late()  # the platform catches up
    assert _delivered(e2e, text) == 1  # it did arrive, late
    e2e.run("sync")
    assert e2e.query("SELECT state FROM reply WHERE id = :i", i=rid) == [("sent",)]
    e2e.run("outbox", "retry", str(rid), check=6)
    e2e.run("outbox", "retry", str(rid), "--force", check=6)  # delivered is final, forced or not
    assert _delivered(e2e, text) == 1


def test_lost_request_fails_after_the_quiet_period_and_is_retried_once(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Mohon kirim foto paketnya ya kak"
    _with_replies(e2e, settle_after_seconds=1)
    e2e.sb.fault("drop", path="/messages", account="tokoshop-x")  # the request is lost: nothing delivered
    e2e.run("reply", "--via", "x", str(t["id"]), text, "--yes", check=7)
    rid = e2e.query("SELECT id FROM reply WHERE state = 'unknown'")[0][0]
    time.sleep(1.2)  # the quiet period (1 s here) passes before the next sync starts
    e2e.run("sync")
    assert e2e.query("SELECT state FROM reply WHERE id = :i", i=rid) == [("failed",)]
    e2e.run("outbox", "retry", str(rid))
    assert _delivered(e2e, text) == 1


def test_forced_retry_is_the_agents_call_and_audited(e2e: Env) -> None:
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Kami bantu cek ke kurir ya kak"
    e2e.sb.fault("drop", path="/messages", account="tokoshop-x")
    e2e.run("reply", "--via", "x", str(t["id"]), text, "--yes", check=7)
    rid = e2e.query("SELECT id FROM reply WHERE state = 'unknown'")[0][0]
    e2e.run("outbox", "retry", str(rid), check=6)
    e2e.run("outbox", "retry", str(rid), "--force", "--agent", "budi")
    assert _delivered(e2e, text) == 1
    events = [ev for ev in e2e.json("show", str(t["id"]))["events"] if ev["action"] == "reply_retry_forced"]
    assert len(events) == 1 and events[0]["actor"] == "budi" and events[0]["detail"]["was"] == "unknown"


def test_sender_paused_past_its_lease_never_sends(e2e: Env) -> None:
    """A live `reply` paused past the lease is declared stopped and `retry` sends; when it wakes it
    finds it lost the claim and does not call the platform."""
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Paket kakak sudah dikirim ulang"
    _with_replies(e2e, lease_seconds=1)
    proc = subprocess.Popen([INBOX, "-c", str(e2e.config), "reply", "--via", "x", str(t["id"]), text, "--yes"],
                            env={**e2e.env, "INBOX_TEST_PAUSE_BEFORE_SEND": "6"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rid = _wait_for(e2e, "SELECT id FROM reply WHERE state = 'sending'")[0][0]
    time.sleep(1.5)  # past the 1 s lease; the process is alive, asleep
    assert proc.poll() is None
    e2e.run("outbox", "retry", str(rid))
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 6, err
    assert "taken from this process" in err
    assert _delivered(e2e, text) == 1
    assert e2e.query("SELECT state, attempts FROM reply") == [("sent", 2)]


def test_two_agents_replying_on_one_ticket_the_second_is_asked_again(e2e: Env) -> None:
    """Budi's route is shown; Ana replies meanwhile; Budi's confirmed send is refused (exit 6) until --again."""
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    e2e.run("claim", str(t["id"]), "--agent", "ana")
    ana_text, budi_text = "Halo kak, saya Ana, kami cek ya", "Halo kak, saya Budi, kami cek ya"
    # Budi's `reply` pauses after recording nothing yet: plan shown, then Ana sends before Budi's record.
    from inbox.replies import ledger, route
    from inbox.store import open_store

    engine = open_store(f"sqlite:///{e2e.db}")
    try:
        plan = route.plan_reply(engine, t["id"], budi_text, via="x")
        e2e.run("reply", "--via", "x", str(t["id"]), ana_text, "--yes")
        with pytest.raises(ledger.ReplyRaceError) as race:
            ledger.record_reply(engine, plan, "budi")
        assert [o.author for o in race.value.others] == ["ana"] and race.value.others[0].text == ana_text
    finally:
        engine.dispose()
    # Through the CLI: the second agent's route shows the claim, in text and in --json.
    shown = e2e.run("reply", "--via", "x", str(t["id"]), budi_text, "--yes", "--json", "--agent", "budi")
    out = json.loads(shown.stdout)["reply"]
    assert out["claimed_by"] == "ana" and "claimed by ana" in shown.stderr
    assert _delivered(e2e, ana_text) == 1 and _delivered(e2e, budi_text) == 1


@pytest.mark.parametrize("answer", ["n", "y"])
def test_two_terminals_both_answer_yes_the_second_is_shown_the_first_and_asked_again(e2e: Env, answer: str) -> None:
    import pty
    import threading

    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    mine, theirs = f"Halo kak, dari terminal satu ({answer})", f"Halo kak, dari terminal dua ({answer})"  # the sandbox is shared
    master, slave = pty.openpty()
    proc = subprocess.Popen([INBOX, "-c", str(e2e.config), "reply", "--via", "x", str(t["id"]), mine, "--agent", "ana"],
                            env=e2e.env, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    seen: list[str] = []
    asked = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        buf = ""
        while chunk := proc.stderr.read(1):
            buf += chunk
            if buf.count("?") > len(seen):
                seen.append(buf)
                asked.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert asked.wait(30), "no confirmation question"
        asked.clear()
        e2e.run("reply", "--via", "x", str(t["id"]), theirs, "--yes", "--agent", "budi")  # the other terminal answers first
        os.write(master, b"y\n")
        assert asked.wait(30), "not asked again"
        assert theirs in seen[-1] and "budi" in seen[-1]  # shown the other reply
        os.write(master, answer.encode() + b"\n")
        proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert _delivered(e2e, theirs) == 1
    assert _delivered(e2e, mine) == (1 if answer == "y" else 0)
    assert proc.returncode == (0 if answer == "y" else 2)


def test_reply_race_with_yes_is_refused_unless_again(e2e: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --yes there is no one to ask: another reply recorded after the route was shown -> exit 6."""
    import cli
    from inbox.replies import ledger, route

    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    other, mine = "Sudah dibalas oleh Budi", "Balasan Ana"
    real_plan = route.plan_reply
    raced: list[int] = []

    def plan_then_someone_else_replies(engine, ticket_id, text, **kw):  # type: ignore[no-untyped-def]
        plan = real_plan(engine, ticket_id, text, **kw)
        if text == mine:  # between Ana's route and her send, another reply of Budi's is recorded
            raced.append(ledger.record_reply(engine, real_plan(engine, ticket_id, f"{other} #{len(raced)}", **kw), "budi").reply_id)
        return plan

    monkeypatch.setattr(route, "plan_reply", plan_then_someone_else_replies)
    for key, value in e2e.env.items():
        monkeypatch.setenv(key, value)
    argv = ["-c", str(e2e.config), "reply", "--via", "x", str(t["id"]), mine, "--yes", "--agent", "ana"]
    assert cli.main(argv) == 6
    assert _delivered(e2e, mine) == 0
    assert cli.main([*argv, "--again"]) == 0  # raced again, and sent anyway: the agent said so
    assert len(raced) == 2 and _delivered(e2e, mine) == 1


def test_broken_token_leaves_a_failed_reply_that_retry_sends_once(e2e: Env) -> None:
    """A token the HTTP layer cannot put in a header (a pasted '…') fails before the request leaves:
    the reply is `failed` (not `unknown`), retryable at once, and the token is never printed."""
    t = _ticket_where(e2e, lambda t: t["channel"] == "x" and t["status"] == "new")
    text = "Pesanan kakak sedang kami cek"
    token = e2e.env["INBOX_SANDBOX_X_TOKEN"]
    r = e2e.run("reply", "--via", "x", str(t["id"]), text, "--yes", check=7, env={"INBOX_SANDBOX_X_TOKEN": token + "…"})
    assert "nothing was sent" in r.stderr and token not in r.stderr + r.stdout
    rows = e2e.query("SELECT id, state, error FROM reply")
    assert [x[1] for x in rows] == ["failed"] and "nothing was sent" in rows[0][2]
    assert _delivered(e2e, text) == 0
    e2e.run("outbox", "retry", str(rows[0][0]))  # no sync needed: it never left
    e2e.run("sync")
    assert _delivered(e2e, text) == 1
    assert e2e.query("SELECT state FROM reply") == [("sent",)]


# ─── safety and help ────────────────────────────────────────────────────────────────────────


def test_hostile_text_is_rendered_inertly(e2e: Env) -> None:
    hostile = _ticket_where(e2e, lambda t: "BAYAR SEKARANG" in (t["snippet"] or ""))
    long_one = _ticket_where(e2e, lambda t: (t["snippet"] or "").startswith("AAAA"))
    colour = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": ""}
    runs = [(["list", "--limit", "500"], {}), (["show", str(hostile["id"])], {}), (["search", "BAYAR"], {}),
            (["list", "--limit", "500"], colour), (["show", str(hostile["id"])], colour)]
    for args, env in runs:
        out = e2e.run(*args, env=env).stdout
        assert "\x1b]" not in out and "\x07" not in out and "\x9d" not in out  # no OSC 8 links, no OSC 52
        assert "\u202e" not in out and "\u200b" not in out and "\u2060" not in out
        assert "\x1b[2J" not in out and "\x1b[31mred" not in out
        if not env:
            assert "\x1b" not in out  # not a terminal: no escape sequence at all
        assert "[bold red]BAYAR SEKARANG[/]" in out  # shown as text, never as markup
        if args[0] == "list":
            assert all(len(line) <= 200 for line in out.splitlines()) or env
        if args[0] == "show" and not env:
            assert "<U+202E>" in out and "admin" in out
    long_out = e2e.run("show", str(long_one["id"])).stdout
    assert len(long_out) < 6000 and "more characters not shown" in long_out


def test_every_command_has_help(e2e: Env) -> None:
    from typer.main import get_command

    import cli

    root = get_command(cli.app)
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    mine = {"list", "show", "claim", "assign", "status", "priority", "tag", "note", "merge", "unmerge", "link", "unlink",
            "search", "reply", "outbox", "stats", "export", "demo"}
    assert mine <= {p[0] for p in paths}
    from typer.testing import CliRunner

    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli.app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
    assert "Usage:" in e2e.run("reply", "--help").stdout  # and once through a real process


def test_stats_and_export(e2e: Env) -> None:
    stats = e2e.json("stats")
    assert set(stats["backlog"]) == {"instagram", "facebook", "x"}
    assert stats["sla"]["first_response_overdue"] >= 1
    out = e2e.dir / "export.jsonl"
    e2e.run("export", "--format", "jsonl", "--output", str(out))
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines and sum(len(x["messages"]) for x in lines) > 50
    csv_out = e2e.run("export", "--format", "csv").stdout
    assert csv_out.startswith("ticket_id,status") and "\x1b" not in csv_out


def test_reply_from_template_and_editor(e2e: Env) -> None:
    cfg = e2e.dir / "templates.toml"
    cfg.write_text(e2e.config.read_text() + '\n[templates]\nthanks = "Halo {customer}, tiket #{ticket} kami proses. — {agent}"\n', encoding="utf-8")
    x = [t for t in e2e.json("list", "--channel", "x", "--status", "new")["tickets"]][:2]
    base = [INBOX, "-c", str(cfg), "reply", "--via", "x"]  # some X tickets also hold an Instagram thread
    p = subprocess.run([*base, str(x[0]["id"]), "--template", "thanks", "--yes"], env=e2e.env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert e2e.sb.sent("tokoshop-x")[-1]["text"].endswith(f"tiket #{x[0]['id']} kami proses. — ana")
    editor = e2e.dir / "editor.sh"
    editor.write_text('#!/bin/sh\necho "Ditulis di editor" >> "$1"\n', encoding="utf-8")
    editor.chmod(0o755)
    p = subprocess.run([*base, str(x[1]["id"]), "--editor", "--yes"], env={**e2e.env, "EDITOR": str(editor)}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert e2e.sb.sent("tokoshop-x")[-1]["text"] == "Ditulis di editor"
    p = subprocess.run([*base, str(x[1]["id"]), "--template", "missing", "--yes"], env=e2e.env, capture_output=True, text=True)
    assert p.returncode == 2 and "thanks" in p.stderr


def _shell_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced blocks marked sh, bash or console (or unmarked), fence by fence."""
    blocks: list[str] = []
    lang: str | None = None
    body: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip() or "sh", []
            else:
                if lang in ("sh", "bash", "console"):
                    blocks.append("\n".join(body))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def test_readme_commands_exist() -> None:
    """Every `inbox ...` command line in the README names a real command and real options."""
    import shlex

    from typer.main import get_command

    import cli

    root = get_command(cli.app)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = _shell_blocks(readme)
    checked = 0
    for block in blocks:
        for raw in block.splitlines():
            line = raw.split("  #")[0].strip()
            for part in line.split(" · "):
                part = part.strip()
                if not part.startswith("inbox "):
                    continue
                words = shlex.split(part.replace("|", " ").replace("[", "").replace("]", ""))[1:]
                cmd: Any = root
                opts = {o for p in root.params for o in p.opts}
                while words and words[0].startswith("-"):  # global options before the command
                    assert words[0].split("=")[0] in opts | {"--help", "-h"}, part
                    words = words[2:] if words[0] in ("-c", "--config") else words[1:]
                if not words:
                    continue
                while words and not words[0].startswith("-") and hasattr(cmd, "commands") and words[0] in cmd.commands:
                    cmd = cmd.commands[words.pop(0)]
                    opts |= {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]}
                assert cmd is not root, part
                for w in words:
                    if w.startswith("-"):
                        assert w.split("=")[0] in opts | {"--help", "-h"}, (part, w)
                checked += 1
    assert checked >= 20
