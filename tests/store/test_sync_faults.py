"""Faults from the sandbox on one account: the others sync normally, its health says what happened,
and after recovery nothing is lost (both backends)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from inbox import accounts as accounts_mod
from inbox.store.models import Account, Message
from tests.store.test_sync import ACCOUNTS, assert_complete, fast_factory, readable_ids, sandbox_settings, stored_ids

CASES = [
    # kind, account, path, expected status, words expected in the recorded error
    ("429", "tokoshop-x", None, "retry-later", ("429", "rate")),
    ("500", "tokoshop-fb", "/conversations", "retry-later", ("500", "unknown error", "(code 1)", "(code 2)")),
    # Meta reads threads nested in the list: a pass makes no /messages GET unless a nested read is
    # cut short (faults there: tests/contract/test_graph_nested.py).
    ("503", "tokoshop-ig", "/conversations", "retry-later", ("503", "unavailable", "(code 1)", "(code 2)")),
    ("timeout", "tokoshop-fb", "/conversations", "retry-later", ("time",)),
    ("drop", "tokoshop-x", None, "retry-later", ("connection",)),
    ("expired_token", "tokoshop-fb", None, "needs-reauth", ("190",)),
    ("expired_token", "tokoshop-x", None, "needs-reauth", ("401",)),
    ("malformed", "tokoshop-ig", "/conversations", "retry-later", ("json",)),
    ("truncated", "tokoshop-x", None, "retry-later", ("json",)),
    # every byte within the read timeout, the answer never: cut at the attempt's deadline
    ("slow", "tokoshop-ig", "/conversations", "retry-later", ("too slowly",)),
    ("slow", "tokoshop-x", None, "retry-later", ("too slowly",)),
]


def health_row(engine, name: str):
    a = Account.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(a).where(a.c.name == name)).one()


@pytest.mark.parametrize(("kind", "victim", "path", "status", "words"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_fault_on_one_account(engine, db_url, sandbox, kind, victim, path, status, words):
    from inbox.sync.account import exit_code
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings, retries=0, timeout=1.0)
    sandbox.fault(kind, account=victim, path=path, count=1)
    results = {r.account: r for r in sync_all(engine, settings, connector_factory=factory)}

    assert results[victim].status == status
    assert exit_code(list(results.values())) == (4 if status == "needs-reauth" else 7)
    for name in ACCOUNTS:
        if name != victim:
            assert results[name].status == "ok" and results[name].complete, name
            assert_complete(engine, sandbox, [name])
    row = health_row(engine, victim)
    assert row.last_error and row.last_error_at is not None
    assert any(w.lower() in row.last_error.lower() for w in words), row.last_error
    assert row.last_success_at is None
    assert bool(row.needs_reauth) == (status == "needs-reauth")
    if kind == "429":
        assert row.paused_until is not None  # until the platform's reset
        assert results[victim].retry_at is not None

    # While stopped or paused, the account is skipped without a call to the platform.
    if status == "needs-reauth" or kind == "429":
        sandbox.clear_calls()
        again = {r.account: r for r in sync_all(engine, settings, accounts=[victim], connector_factory=factory)}
        assert again[victim].status == ("needs-reauth" if status == "needs-reauth" else "skipped")
        assert not [c for c in sandbox.calls if c.account == victim]

    # Recovery: reconnect / wait out the pause, then nothing is lost.
    sandbox.clear_faults()
    accounts_mod.reset(engine, settings, victim)
    results = sync_all(engine, settings, connector_factory=factory)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert_complete(engine, sandbox)
    row = health_row(engine, victim)
    assert row.last_success_at is not None and not row.needs_reauth


def test_broken_item_is_stored_marked_and_an_unparseable_one_quarantined(engine, db_url, sandbox):
    """Without time and sender, a message of a one-to-one thread is still the customer's: stored on its
    ticket and marked. Only an item without a usable id is quarantined. The account stays healthy."""
    from inbox.accounts import health
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings, retries=0)
    sandbox.fault("bad_item", account="tokoshop-x", count=1)
    thread = sandbox.threads("tokoshop-fb")[1]
    unparseable = sandbox.inject("tokoshop-fb", text="id-nya rusak", thread=thread)
    sandbox.fault("poison", account="tokoshop-fb", target=unparseable, field="id", value='{"oops": true}')
    results = {r.account: r for r in sync_all(engine, settings, connector_factory=factory)}
    assert results["tokoshop-x"].status == "ok" and results["tokoshop-x"].counts.quarantined == 0
    assert results["tokoshop-fb"].status == "ok" and results["tokoshop-fb"].counts.quarantined == 1
    m = Message.__table__
    with engine.connect() as conn:
        marked = conn.execute(sa.select(m.c.ticket_id, m.c.flags, m.c.direction).where(m.c.flags.is_not(None))).all()
    assert len(marked) == 1 and marked[0].ticket_id is not None and marked[0].direction == "in"
    assert "sender_inferred" in marked[0].flags
    by_name = {h.name: h for h in health(engine, settings)}
    assert by_name["tokoshop-x"].quarantined == 0 and by_name["tokoshop-x"].healthy
    assert by_name["tokoshop-fb"].quarantined == 1 and by_name["tokoshop-fb"].healthy
    assert_complete(engine, sandbox, ["tokoshop-x", "tokoshop-ig"])
    assert set(stored_ids(engine, "tokoshop-fb")) == readable_ids(sandbox, "tokoshop-fb") - {unparseable}


def test_an_error_answer_that_breaks_off_is_tried_again_not_failed(engine, db_url, sandbox, monkeypatch):
    """The platform revoked the Page token and its 400 (Graph 190) arrives cut in half: what it said
    is unknown, so the account is retried later rather than failed, and once the team renews the
    token nothing is lost (found by the loop machine, with two syncs of one account at once)."""
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings, retries=0, timeout=1.0)
    sandbox.rotate_token("INBOX_SANDBOX_FB_TOKEN")  # the variable still holds the revoked value
    sandbox.fault("truncated", account="tokoshop-ig", path="/conversations", count=1)
    result = {r.account: r for r in sync_all(engine, settings, accounts=["tokoshop-ig"], connector_factory=factory)}["tokoshop-ig"]
    assert result.status == "retry-later", result.error
    assert "breaks off" in (result.error or "")

    monkeypatch.setenv("INBOX_SANDBOX_FB_TOKEN", sandbox.env()["INBOX_SANDBOX_FB_TOKEN"])
    sandbox.clear_faults()
    accounts_mod.reset(engine, settings, "tokoshop-ig")
    again = {r.account: r for r in sync_all(engine, settings, accounts=["tokoshop-ig"], connector_factory=factory)}
    assert again["tokoshop-ig"].status == "ok"
    assert_complete(engine, sandbox, ["tokoshop-ig"])


def test_a_quarantined_item_never_keeps_the_token_in_its_ids_or_reason(engine, db_url, sandbox):
    """The raw payload of a quarantined item is scrubbed; its platform id, thread id and reason are
    stored beside it and shown by `inbox quarantine`: scrubbed the same way."""
    from inbox.quarantine import list_items
    from inbox.sync.pool import sync_all

    token = sandbox.env()["INBOX_SANDBOX_X_TOKEN"]
    settings = sandbox_settings(sandbox, db_url)
    sandbox.inject("tokoshop-x", text="halo kak")
    sandbox.fault("poison", account="tokoshop-x", field="id", value=f'"{token}"')  # not numeric: quarantined
    results = {r.account: r for r in sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=fast_factory(settings))}
    assert results["tokoshop-x"].counts.quarantined >= 1
    items = list_items(engine, include_resolved=True)
    assert items and any(i.external_id == "****" for i in items)
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT external_id, thread_id, reason, raw FROM quarantine"))]
    assert stored and token not in repr(stored)


def test_an_echo_without_its_sender_is_still_our_reply(engine, db_url, sandbox):
    """An X event has no recipient: one without a usable sender is taken as the customer's. But when
    its id is one our reply was given, it is that reply's echo, not a customer message (found by
    the loop machine: a bad_item fault on the page holding the echo of a sent reply)."""
    from inbox.replies import outbox, route
    from inbox.store.models import Reply
    from inbox.sync.pool import sync_all

    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings, retries=0)
    sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)
    m, r = Message.__table__, Reply.__table__
    with engine.connect() as conn:
        ticket = conn.execute(
            sa.select(m.c.ticket_id).where(m.c.channel == "x", m.c.direction == "in", m.c.ticket_id.is_not(None)).order_by(m.c.sent_at.desc())
        ).scalars().first()
    plan = route.plan_reply(engine, ticket, "Halo kak, kami cek dulu ya", human_agent_tag=settings.replies.human_agent_tag)
    sent = outbox.send_reply(engine, plan, lambda name: factory(settings.account(name)), "ana")
    assert sent.state == "sent" and sent.external_id
    sandbox.fault("poison", account="tokoshop-x", target=sent.external_id, field="sender_id", value="null")

    result = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=factory)[0]
    assert result.status == "ok", result.error
    with engine.connect() as conn:
        echo = conn.execute(sa.select(m).where(m.c.external_id == sent.external_id)).one()
        reply = conn.execute(sa.select(r).where(r.c.id == sent.reply_id)).one()
    assert echo.direction == "out" and echo.reply_id == reply.id and echo.ticket_id == reply.ticket_id
    assert "sender_inferred" in echo.flags
