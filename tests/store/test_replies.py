"""The outbox state machine on both backends: record before the call, never deliver twice.

These tests drive `inbox.replies.outbox` with a connector double that counts deliveries; the same
rules are exercised over real HTTP against the sandbox in test_cli_e2e.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests import factories as sf
from connectors.base import OutboundReply, SendResult
from connectors.enums import ReplyPolicy
from connectors.errors import DeliveryUnknownError, RateLimitedError, WindowClosedError
from inbox.replies import ledger, outbox, reconcile, route
from inbox.replies import templates as tpl
from inbox.tickets import operations, people, queue
from inbox.errors import ConflictError, PlatformError, PolicyError, UsageError
from inbox.store.engine import write_tx
from inbox.store.models import Account, Reply, TicketEvent


class Platform:
    """Counts what reached the customer; can fail the next call in a chosen way."""

    def __init__(self) -> None:
        self.delivered: list[OutboundReply] = []
        self.next_error: Exception | None = None
        self.deliver_then_fail = False  # the message arrives but the response is lost

    def factory(self, account_name: str) -> "Platform.Conn":
        return Platform.Conn(self)

    class Conn:
        def __init__(self, platform: "Platform") -> None:
            self.platform = platform

        def send(self, reply: OutboundReply) -> SendResult:
            p = self.platform
            if p.next_error is not None and not p.deliver_then_fail:
                err, p.next_error = p.next_error, None
                raise err
            p.delivered.append(reply)
            if p.deliver_then_fail:
                p.deliver_then_fail = False
                raise DeliveryUnknownError("timed out after the request was sent")
            return SendResult(f"mid_{len(p.delivered)}", reply.thread_id, datetime.now(timezone.utc))

        def close(self) -> None:
            pass


def reply_row(engine, reply_id: int):
    with engine.connect() as conn:
        return conn.execute(sa.select(Reply.__table__).where(Reply.__table__.c.id == reply_id)).first()


def mark_synced(engine, account_id: int, started: datetime) -> None:
    a = Account.__table__
    with engine.begin() as conn:
        conn.execute(a.update().where(a.c.id == account_id).values(last_sync_at=started, last_success_at=started + timedelta(seconds=1)))


def rate_limited_reply(engine):
    """A reply the platform refused with a rate limit (state `failed`): the ticket, the platform, the outbox row."""
    made = sf.ticket(engine)
    platform = Platform()
    platform.next_error = RateLimitedError("slow down")
    with pytest.raises(PlatformError):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "satu"), platform.factory, "ana")
    return made, platform, outbox.outbox(engine)[0]


def test_send_records_first_and_moves_ticket_to_pending(engine) -> None:
    made = sf.ticket(engine, handle="budi")
    platform = Platform()
    plan = route.plan_reply(engine, made.ticket_id, "Halo kak, kami cek dulu ya")
    assert plan.policy is ReplyPolicy.RESPONSE
    assert plan.describe().startswith("→ Instagram DM @budi · RESPONSE · 22 h")
    out = outbox.send_reply(engine, plan, platform.factory, "ana")
    assert out.state == "sent" and out.external_id == "mid_1"
    assert len(platform.delivered) == 1
    sent = platform.delivered[0]
    assert sent.recipient_id.startswith("user") and sent.thread_id.startswith("t_")
    row = reply_row(engine, out.reply_id)
    assert row.state == "sent" and row.external_id == "mid_1" and row.error is None and len(row.idempotency_key) == 32
    assert sent.idempotency_key == row.idempotency_key
    t = queue.get_ticket(engine, made.ticket_id)
    assert t.status == "pending" and t.first_response_at is not None
    te = TicketEvent.__table__
    with engine.connect() as conn:
        actions = [r[0] for r in conn.execute(sa.select(te.c.action).where(te.c.ticket_id == made.ticket_id).order_by(te.c.id))]
    assert actions == ["reply_queued", "reply"]


@pytest.mark.parametrize(
    ("ago", "human_tag", "ok"),
    [(timedelta(hours=30), True, True), (timedelta(hours=30), False, False), (timedelta(days=8), True, False)],
)
def test_policy_refusals_send_nothing(engine, ago: timedelta, human_tag: bool, ok: bool) -> None:
    made = sf.ticket(engine, last_customer_ago=ago)
    platform = Platform()
    if ok:
        plan = route.plan_reply(engine, made.ticket_id, "halo", human_agent_tag=human_tag)
        assert plan.policy is ReplyPolicy.HUMAN_AGENT
        return
    with pytest.raises(PolicyError):
        route.plan_reply(engine, made.ticket_id, "halo", human_agent_tag=human_tag)
    assert platform.delivered == []
    assert outbox.outbox(engine) == []


def test_window_counts_from_customer_messages_not_echoes(engine) -> None:
    made = sf.ticket(engine, last_customer_ago=timedelta(days=8))
    sf.outbound(engine, made, "our earlier answer", "m_echo_x")  # an echo an hour ago
    with pytest.raises(PolicyError, match="7 days"):
        route.plan_reply(engine, made.ticket_id, "halo")


def test_length_limits_refused_before_recording(engine) -> None:
    made = sf.ticket(engine)
    with pytest.raises(PolicyError, match="1,000 bytes"):
        route.plan_reply(engine, made.ticket_id, "é" * 501)
    x = sf.ticket(engine, channel="x", account_name="tokoshop-x", last_customer_ago=timedelta(days=20))
    assert route.plan_reply(engine, x.ticket_id, "a" * 10000).policy is ReplyPolicy.DIRECT
    with pytest.raises(PolicyError):
        route.plan_reply(engine, x.ticket_id, "a" * 10001)


def unknown_reply(engine, made, platform: Platform, text: str) -> int:
    """A reply that reached the customer while its response was lost: recorded `unknown`."""
    platform.deliver_then_fail = True
    with pytest.raises(PlatformError, match="outcome unknown"):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text), platform.factory, "ana")
    rid = outbox.outbox(engine)[0].id
    assert reply_row(engine, rid).state == "unknown"
    return rid


def test_timeout_is_unknown_then_reconciled_by_echo_never_resent(engine) -> None:
    made = sf.ticket(engine)
    platform = Platform()
    rid = unknown_reply(engine, made, platform, "Dana sudah kami kembalikan")
    # Not retried, and the same text is not accepted as a new reply either.
    with pytest.raises(ConflictError):
        outbox.retry(engine, rid, platform.factory, "ana")
    with pytest.raises(ConflictError):
        route.plan_reply(engine, made.ticket_id, "Dana sudah kami kembalikan")
    # The next sync stores the echo: reconciliation matches it.
    sf.outbound(engine, made, "Dana sudah kami kembalikan", "m_echo_1")
    assert reconcile.reconcile_unknown(engine, made.account_id) == 1
    row = reply_row(engine, rid)
    assert row.state == "sent" and row.external_id == "m_echo_1"
    assert queue.get_ticket(engine, made.ticket_id).status == "pending"
    with pytest.raises(ConflictError, match="already delivered"):
        outbox.retry(engine, rid, platform.factory, "ana")
    assert len(platform.delivered) == 1


def test_an_unknown_reply_is_settled_by_its_echo_stored_without_a_sender(engine) -> None:
    """The echo came without a usable sender, so it was stored as the customer's (`sender_inferred`:
    an X event names no recipient). With the reply's outcome unknown there is no platform id to tell
    it by, only its text: it settles the reply as sent, and becomes ours, so a full sync never marks
    the reply failed and no retry reaches the customer twice. A customer message that merely
    repeats our text, its sender given, is not taken for the echo."""
    made = sf.ticket(engine)
    platform = Platform()
    rid = unknown_reply(engine, made, platform, "Pesanan sedang kami cek")
    from inbox.store.tables import message as m

    for mid, flags in (("m_copied", None), ("m_no_sender", "sender_inferred")):
        sf.outbound(engine, made, "Pesanan sedang kami cek", mid)
        with write_tx(engine) as conn:
            conn.execute(sa.update(m).where(m.c.external_id == mid).values(direction="in", flags=flags))
        if flags is None:
            assert reconcile.reconcile_unknown(engine, made.account_id) == 0
    assert reconcile.reconcile_unknown(engine, made.account_id) == 1
    row = reply_row(engine, rid)
    assert row.state == "sent" and row.external_id == "m_no_sender"
    with engine.connect() as conn:
        got = dict(conn.execute(sa.select(m.c.external_id, m.c.direction).where(m.c.external_id.in_(["m_copied", "m_no_sender"]))).all())
    assert got == {"m_copied": "in", "m_no_sender": "out"}
    with pytest.raises(ConflictError, match="already delivered"):
        outbox.retry(engine, rid, platform.factory, "ana")
    assert len(platform.delivered) == 1


def test_an_echo_stored_without_a_sender_before_the_send_returned_becomes_ours(engine) -> None:
    """A sync stored the echo while the send call was still waiting, without a usable sender, so as
    the customer's: the id the send returns names it, and it is linked to the reply as ours."""
    from inbox.store.tables import message as m

    made = sf.ticket(engine)
    platform = Platform()
    sf.outbound(engine, made, "Sudah kami teruskan", "mid_1")  # the id the fake platform gives the first send
    with write_tx(engine) as conn:
        conn.execute(sa.update(m).where(m.c.external_id == "mid_1").values(direction="in", flags="sender_inferred"))
    sent = outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "Sudah kami teruskan"), platform.factory, "ana")
    assert sent.state == "sent" and sent.external_id == "mid_1"
    with engine.connect() as conn:
        echo = conn.execute(sa.select(m.c.direction, m.c.reply_id).where(m.c.external_id == "mid_1")).one()
    assert tuple(echo) == ("out", sent.reply_id)


def test_unknown_without_echo_fails_only_after_the_quiet_period_then_is_retried_once(engine) -> None:
    made = sf.ticket(engine)
    platform = Platform()
    platform.next_error = DeliveryUnknownError("connection dropped")
    plan = route.plan_reply(engine, made.ticket_id, "Mohon ditunggu")
    with pytest.raises(PlatformError):
        outbox.send_reply(engine, plan, platform.factory, "ana")
    rid = outbox.outbox(engine)[0].id
    attempt = reply_row(engine, rid).updated_at
    # A sync that started before the attempt proves nothing.
    mark_synced(engine, made.account_id, attempt - timedelta(minutes=5))
    assert reconcile.reconcile_unknown(engine, made.account_id) == 0
    # Nor does one that started right after it: a slow platform may not show the message yet.
    mark_synced(engine, made.account_id, attempt + timedelta(seconds=30))
    assert reconcile.reconcile_unknown(engine, made.account_id) == 0
    with pytest.raises(ConflictError, match="may have been delivered") as refused:
        outbox.retry(engine, rid, platform.factory, "ana")
    assert "--force" in (refused.value.hint or "") and "started after" in (refused.value.hint or "")
    assert reply_row(engine, rid).state == "unknown"
    # An identical answer sent before the customer's latest message, stored only now (a late
    # delivery), is not ours.
    sf.outbound(engine, made, "Mohon ditunggu", "m_old", sent_at=datetime.now(timezone.utc) - timedelta(hours=2))
    mark_synced(engine, made.account_id, attempt + ledger.Timing().quiet + timedelta(seconds=1))
    out = outbox.retry(engine, rid, platform.factory, "ana")
    assert out.state == "sent"
    assert len(platform.delivered) == 1
    assert reply_row(engine, rid).attempts == 2


def test_forced_retry_of_an_unknown_reply_is_audited(engine) -> None:
    made = sf.ticket(engine)
    platform = Platform()
    platform.next_error = DeliveryUnknownError("timed out after the request was sent")
    with pytest.raises(PlatformError):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "Sudah kami proses"), platform.factory, "ana")
    rid = outbox.outbox(engine)[0].id
    with pytest.raises(ConflictError):
        outbox.retry(engine, rid, platform.factory, "budi")
    assert outbox.retry(engine, rid, platform.factory, "budi", force=True).state == "sent"
    assert len(platform.delivered) == 1
    te = TicketEvent.__table__
    with engine.connect() as conn:
        forced = conn.execute(sa.select(te.c.actor, te.c.detail).where(te.c.action == "reply_retry_forced")).all()
    assert len(forced) == 1 and forced[0].actor == "budi"
    assert forced[0].detail["was"] == "unknown" and "checked the customer's thread" in forced[0].detail["why"]


def test_failures_are_recorded(engine) -> None:
    made, platform, failed = rate_limited_reply(engine)
    assert failed.state == "failed" and "slow down" in (failed.error or "")
    assert queue.get_ticket(engine, made.ticket_id).status == "new"  # nothing was sent
    platform.next_error = WindowClosedError("window closed", code=10, subcode=2534022)
    with pytest.raises(PolicyError):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "dua"), platform.factory, "ana")
    # A failed reply is retried on request: it certainly did not arrive.
    assert outbox.retry(engine, failed.id, platform.factory, "ana").state == "sent"
    assert [r.text for r in platform.delivered] == ["satu"]


def test_killed_before_the_call_is_settled_without_sending(engine, tmp_path) -> None:
    made = sf.ticket(engine)
    plan = route.plan_reply(engine, made.ticket_id, "halo")
    rid = ledger.record_reply(engine, plan, "ana").reply_id
    # Pretend the recording process was another one that has since died.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    r = Reply.__table__
    with engine.begin() as conn:
        row = reply_row(engine, rid)
        conn.execute(r.update().where(r.c.id == rid).values(
            error=row.error.replace(f"pid {os.getpid()}", f"pid {dead}"), owner=row.owner.replace(f"pid {os.getpid()}", f"pid {dead}")))
    assert reply_row(engine, rid).state == "sending"
    platform = Platform()
    assert outbox.retry(engine, rid, platform.factory, "ana").state == "sent"
    assert len(platform.delivered) == 1


def test_live_sender_is_left_alone(engine) -> None:
    made = sf.ticket(engine)
    rid = ledger.record_reply(engine, route.plan_reply(engine, made.ticket_id, "halo"), "ana").reply_id  # this process: alive
    assert reconcile.reconcile_unknown(engine, made.account_id) == 0
    with pytest.raises(ConflictError):
        outbox.retry(engine, rid, Platform().factory, "ana")


def test_templates(engine) -> None:
    made = sf.ticket(engine, handle="budi", texts=["refund INV/20261120/MPL/3817265540 please"])
    pattern = [r"\bINV/\d{8}/[A-Z]{2,5}/\d{6,12}\b"]
    vars_ = tpl.ticket_variables(engine, made.ticket_id, "ana", pattern)
    assert vars_["invoice"] == "INV/20261120/MPL/3817265540" and vars_["ticket"] == str(made.ticket_id)
    text = tpl.render("Halo {customer}, refund {invoice} (tiket #{ticket}) — {agent}", vars_)
    assert text.startswith("Halo Customer") and "INV/20261120/MPL/3817265540" in text and text.endswith("— ana")
    with pytest.raises(UsageError, match="allowed variables"):
        tpl.render("{customer.__class__}", vars_)
    with pytest.raises(UsageError, match="allowed variables"):
        tpl.render("{password}", vars_)
    other = sf.ticket(engine, texts=["halo"])
    with pytest.raises(UsageError, match="invoice"):
        tpl.render("refund {invoice}", tpl.ticket_variables(engine, other.ticket_id, "ana", pattern))
    with pytest.raises(UsageError):
        tpl.get_template({"a": "x"}, "b")


def test_echo_matched_despite_platform_rewriting(engine) -> None:
    made = sf.ticket(engine, channel="x", account_name="tokoshop-x")
    platform = Platform()
    platform.deliver_then_fail = True
    text = "Cek status di https://tokoshop.example/track/123  ya kak\n"
    with pytest.raises(PlatformError):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text), platform.factory, "ana")
    # X shortens links and trims: still our reply.
    sf.outbound(engine, made, "Cek status di https://t.co/AbC123 ya kak", "dm_1", channel="x")
    assert reconcile.reconcile_unknown(engine, made.account_id) == 1
    assert outbox.outbox(engine, states=("sent",))[0].external_id == "dm_1"


def test_route_is_the_tickets_own_channel_unless_asked(engine) -> None:
    ig = sf.ticket(engine, last_customer_ago=timedelta(hours=3))
    x = sf.ticket(engine, channel="x", account_name="tokoshop-x", last_customer_ago=timedelta(minutes=5))
    operations.merge(engine, x.ticket_id, ig.ticket_id, "ana")  # the customer wrote on X more recently
    # Two contacts nobody said are one person: no guessing, the agent picks.
    with pytest.raises(PolicyError, match="2 customers") as asked:
        route.plan_reply(engine, ig.ticket_id, "halo")
    assert "--to CONTACT" in (asked.value.hint or "")
    assert f"contact {ig.contact_id}" in str(asked.value) and f"contact {x.contact_id}" in str(asked.value)
    assert route.plan_reply(engine, ig.ticket_id, "halo", to=x.contact_id).route.recipient_id == route.plan_reply(engine, ig.ticket_id, "halo", via="x").route.recipient_id
    picked = route.plan_reply(engine, ig.ticket_id, "halo", to=ig.contact_id)
    assert picked.route.channel == "instagram" and picked.route.contact_id == ig.contact_id
    # Linked by an agent (audited): one customer; the ticket's own channel by default.
    people.link_contacts(engine, [ig.contact_id, x.contact_id], "customer confirmed both accounts", "ana")
    plan = route.plan_reply(engine, ig.ticket_id, "halo")
    assert plan.route.channel == "instagram" and plan.policy is ReplyPolicy.RESPONSE
    assert route.plan_reply(engine, ig.ticket_id, "halo", via="x").route.channel == "x"
    with pytest.raises(PolicyError, match="no conversation on facebook"):
        route.plan_reply(engine, ig.ticket_id, "halo", via="facebook")
    with pytest.raises(PolicyError, match="has no thread"):
        route.plan_reply(engine, ig.ticket_id, "halo", to=999999)
    with pytest.raises(PolicyError, match="merged into"):
        route.plan_reply(engine, x.ticket_id, "halo")


def test_a_weak_person_link_never_routes_a_reply(engine) -> None:
    """Customer B quoted A's invoice; the sync linked B into A's person and B's thread joined A's
    ticket. A reply to A's ticket must not go to B — and is never guessed."""
    from inbox.store.models import Contact, Conversation, Person, PersonEvent

    a = sf.ticket(engine, handle="victim", last_customer_ago=timedelta(hours=2))
    b = sf.ticket(engine, handle="attacker", last_customer_ago=timedelta(minutes=1))  # same channel, newer
    c, cv, p, pe = Contact.__table__, Conversation.__table__, Person.__table__, PersonEvent.__table__
    with engine.begin() as conn:
        pid = conn.execute(p.insert().values(display_name="victim", created_at=sf.now()).returning(p.c.id)).scalar_one()
        for cid in (a.contact_id, b.contact_id):
            conn.execute(c.update().where(c.c.id == cid).values(person_id=pid))
            conn.execute(pe.insert().values(person_id=pid, contact_id=cid, action="link", reason="shared invoice INV/1", actor="sync", at=sf.now()))
        conn.execute(cv.update().where(cv.c.id == b.conversation_id).values(ticket_id=a.ticket_id))
    with pytest.raises(PolicyError, match="2 customers"):
        route.plan_reply(engine, a.ticket_id, "refund Anda ke rekening ...")
    chosen = route.plan_reply(engine, a.ticket_id, "refund Anda ke rekening ...", to=a.contact_id).route
    assert chosen.contact_id == a.contact_id and chosen.customer == "@victim"
    # Strong evidence (the same platform identity) does count.
    with engine.begin() as conn:
        conn.execute(pe.insert().values(person_id=pid, contact_id=b.contact_id, action="link", reason="same platform identity (IG user 1)", actor="sync", at=sf.now()))
        conn.execute(pe.insert().values(person_id=pid, contact_id=a.contact_id, action="link", reason="same platform identity (IG user 1)", actor="sync", at=sf.now()))
    assert route.plan_reply(engine, a.ticket_id, "halo").route.contact_id in (a.contact_id, b.contact_id)


def test_connector_that_cannot_be_made_leaves_a_failed_reply(engine) -> None:
    from inbox.errors import ConfigError

    made = sf.ticket(engine)

    def broken(name: str):
        raise ConfigError("account 'tokoshop-ig': environment variable X is not set")

    with pytest.raises(ConfigError):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "halo"), broken, "ana")
    row = outbox.outbox(engine)[0]
    assert row.state == "failed" and "not sent" in (row.error or "")
    platform = Platform()
    assert outbox.retry(engine, row.id, platform.factory, "ana").state == "sent"  # no sync needed: it never left
    assert len(platform.delivered) == 1


def test_concurrent_retry_sends_once(engine) -> None:
    """Another process takes the failed reply between our read and our update: we must not send it too."""
    import threading
    import time

    _made, platform, failed = rate_limited_reply(engine)
    rid = failed.id
    r = Reply.__table__
    outcome: list[BaseException | outbox.SendOutcome] = []

    def racer() -> None:
        try:
            outcome.append(outbox.retry(engine, rid, platform.factory, "budi"))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    with write_tx(engine) as conn:  # the other process: holds the row while it marks it `sending`
        owner = ledger.new_owner()
        conn.execute(r.update().where(r.c.id == rid).values(state="sending", owner=owner, error=ledger.marker(ledger.CALLING, owner)))
        thread = threading.Thread(target=racer)
        thread.start()
        time.sleep(0.5)  # the racer reads `failed` (PostgreSQL) or waits for the lock (SQLite)
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ConflictError), outcome
    assert platform.delivered == []
    assert reply_row(engine, rid).attempts == 1


def test_the_same_text_again_after_a_failure_is_the_retry_not_a_copy(engine) -> None:
    made, platform, failed = rate_limited_reply(engine)
    with pytest.raises(ConflictError, match="not delivered") as copy:
        route.plan_reply(engine, made.ticket_id, "satu")
    assert copy.value.hint == f"inbox outbox retry {failed.id}"
    assert outbox.retry(engine, failed.id, platform.factory, "ana").state == "sent"
    assert [r.text for r in platform.delivered] == ["satu"]


@pytest.mark.parametrize("platform_behind", [timedelta(minutes=3), timedelta(minutes=25), timedelta(hours=2)])
def test_echo_found_when_our_clock_runs_ahead_of_the_platforms(engine, platform_behind: timedelta) -> None:
    """The echo's timestamp is the platform's; ours may be minutes ahead. A delivered reply in
    doubt is still recognised by its echo (stored after the reply), so a retry never sends it twice."""
    # The platform stamps the customer's latest message with its own (slow) clock too.
    made = sf.ticket(engine, last_customer_ago=platform_behind + timedelta(minutes=1))
    platform = Platform()
    platform.deliver_then_fail = True
    text = "Pesanan INV/20261201/MPL/0001 sudah dikirim ya kak"
    with pytest.raises(PlatformError, match="outcome unknown"):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text), platform.factory, "ana")
    rid = outbox.outbox(engine)[0].id
    sf.outbound(engine, made, text, "m_echo_skew", sent_at=datetime.now(timezone.utc) - platform_behind)
    # A complete sync that started long after the attempt: without the echo it would settle as failed.
    mark_synced(engine, made.account_id, datetime.now(timezone.utc) + timedelta(hours=1))
    assert reconcile.reconcile_unknown(engine, made.account_id) == 1
    row = reply_row(engine, rid)
    assert row.state == "sent" and row.external_id == "m_echo_skew"
    with pytest.raises(ConflictError, match="already delivered"):
        outbox.retry(engine, rid, platform.factory, "ana")
    assert len(platform.delivered) == 1


def test_the_same_text_sent_before_the_reply_is_not_its_echo(engine) -> None:
    """A brand message with the same text stored before the reply was recorded (a canned answer
    sent from the platform's own inbox minutes earlier) is not the reply's echo."""
    made = sf.ticket(engine)
    text = "Mohon ditunggu ya kak, sedang kami cek"
    sf.outbound(engine, made, text, "m_earlier", sent_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    platform = Platform()
    platform.deliver_then_fail = True
    with pytest.raises(PlatformError, match="outcome unknown"):
        outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text), platform.factory, "ana")
    rid = outbox.outbox(engine)[0].id
    assert reconcile.reconcile_unknown(engine, made.account_id) == 0
    assert reply_row(engine, rid).state == "unknown"
    sf.outbound(engine, made, text, "m_real_echo")
    assert reconcile.reconcile_unknown(engine, made.account_id) == 1
    assert reply_row(engine, rid).external_id == "m_real_echo"


def test_the_same_text_again_after_it_was_delivered_needs_again_until_the_customer_writes(engine) -> None:
    """An agent whose terminal died after the send runs the same command again: the customer has
    that answer already. With --again, or once the customer has written since, it is a new answer."""
    made = sf.ticket(engine)
    platform = Platform()
    text = "Baik kak, pesanan sudah kami cek"
    first = outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text), platform.factory, "ana")
    assert first.state == "sent"
    with pytest.raises(ConflictError, match=r"already sent .* has not written since") as refused:
        route.plan_reply(engine, made.ticket_id, text)
    assert refused.value.exit_code == 6 and "--again" in (refused.value.hint or "")
    # Another text is another answer; the same one with again=True is what the agent asked for.
    assert route.plan_reply(engine, made.ticket_id, "Mohon ditunggu ya kak").text
    second = outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, text, again=True), platform.factory, "ana")
    assert second.state == "sent" and len(platform.delivered) == 2
    # The customer writes again (a later message id, whatever its clock says): the text is allowed.
    with pytest.raises(ConflictError):
        route.plan_reply(engine, made.ticket_id, text)
    with engine.begin() as conn:
        m = sa.table("message", *(sa.column(c) for c in (
            "channel", "account_id", "external_id", "conversation_id", "ticket_id", "contact_id", "direction",
            "author_id", "text", "kind", "sent_at", "received_at")))
        early = sf.now() - timedelta(days=1)  # the platform's clock far behind ours
        conn.execute(m.insert().values(channel="instagram", account_id=made.account_id, external_id="m_late_1", conversation_id=made.conversation_id,
                                       ticket_id=made.ticket_id, contact_id=made.contact_id, direction="in", author_id="u",
                                       text="kak belum sampai", kind="text", sent_at=early, received_at=sf.now()))
    assert route.plan_reply(engine, made.ticket_id, text).text == text


def test_a_sent_reply_that_is_not_the_last_does_not_block_its_text(engine) -> None:
    made = sf.ticket(engine)
    platform = Platform()
    outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "satu"), platform.factory, "ana")
    outbox.send_reply(engine, route.plan_reply(engine, made.ticket_id, "dua"), platform.factory, "ana")
    assert route.plan_reply(engine, made.ticket_id, "satu").text == "satu"


@pytest.mark.parametrize("text", ["halo\x00kak", "\x1b[31mhalo", "halo\x07", "\u200b \u200b", "\x1b]0;title\x07"])
def test_a_reply_with_a_control_character_or_nothing_visible_is_refused_by_the_library_too(engine, text: str) -> None:
    """Every caller (CLI, demo, scripts on the library) goes through plan_reply: nothing recorded, nothing sent."""
    made = sf.ticket(engine)
    with pytest.raises(UsageError):
        route.plan_reply(engine, made.ticket_id, text)
    assert route.plan_reply(engine, made.ticket_id, "halo kak\nbaris dua\r\nbaris tiga\tok").text
    assert outbox.outbox(engine, states=("sending", "sent", "unknown", "failed")) == []
