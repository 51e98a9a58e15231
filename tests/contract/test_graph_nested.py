"""Meta passes read changed threads through the conversation list's nested `messages` edge: calls
counted on the sandbox over real HTTP. A thread costs calls of its own only where its nested read is
cut short (or the row has no usable nested edge); gaps, the known-id stop and the budget stop hold."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from inbox.store.models import Account, SyncGap, SyncState
from sandbox import Sandbox
from tests.contract.test_connectors_contract import Store, drain, open_connector, wire  # noqa: F401 (a fixture)
from tests.store.test_sync import assert_complete, fast_factory, sandbox_settings, stored_ids

META = ("tokoshop-fb", "tokoshop-ig")


def _gets(sb: Any, name: str) -> tuple[int, int]:
    """(list calls, per-thread message calls) the account made since the calls were cleared."""
    calls = [c for c in sb.calls if c.account == name and c.method == "GET"]
    listing = sum(1 for c in calls if c.path.endswith("/conversations"))
    threads = sum(1 for c in calls if c.path.endswith("/messages"))
    assert listing + threads == len(calls), [c.path for c in calls]
    return listing, threads


def _new_messages(sb: Any, name: str, counts: list[int]) -> list[str]:
    """One existing thread per count gets that many new customer messages (threads newest first)."""
    threads = sb.threads(name)[: len(counts)]
    for tid, n in zip(threads, counts, strict=True):
        for i in range(n):
            sb.inject(name, text=f"Kak, ada kabar? ({i + 1}/{n})", thread=tid)
    return threads


# --- the connector alone ------------------------------------------------------------------------
@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize("page_size", [7, 25])
def test_a_pass_over_k_changed_threads_costs_one_call_per_list_page(name: str, page_size: int) -> None:
    """K changed threads of 30 messages each (a care desk's shape): ceil(K / page_size) calls, not
    K + that; every thread's 20 readable messages stored, and a gap for each (30 > 20 readable)."""
    with Sandbox(seed=7, shape=(40, 30, 1)).start() as sb:
        k = len(sb.threads(name))
        sb.clear_calls()
        store = Store()
        messages, pages, cursor = drain(open_connector(sb, name, page_size=page_size), None, store)
        assert _gets(sb, name) == (-(-k // page_size), 0)
        assert len(pages) == -(-k // page_size) and store.asked == len(pages)  # one `known` batch per list page
        ids = [m.external_id for m in messages]
        readable = {m["id"] for t in sb.threads(name) for m in sb.thread_messages(name, t) if m["readable"]}
        assert len(ids) == len(set(ids)) and set(ids) == readable
        gaps = {g.thread_id for p in pages for g in p.gaps}
        shaped = {t for t in sb.threads(name) if len(sb.thread_messages(name, t)) == 30}
        assert len(shaped) == 40 and shaped <= gaps
        sb.clear_calls()
        again, _, _ = drain(open_connector(sb, name, page_size=page_size), cursor, store)
        assert again == [] and _gets(sb, name) == (1, 0)  # nothing new: one call


@pytest.mark.parametrize("name", META)
def test_the_nested_read_stops_at_a_known_message(sb_fresh: Sandbox, name: str) -> None:
    sb = sb_fresh
    store = Store()
    conn = open_connector(sb, name)
    _, _, cursor = drain(conn, None, store)
    (tid,) = _new_messages(sb, name, [3])
    sb.clear_calls()
    later, pages, _ = drain(conn, cursor, store)
    assert [m.thread_id for m in later] == [tid] * 3 and [m.text for m in later] == [f"Kak, ada kabar? ({i}/3)" for i in (1, 2, 3)]
    assert _gets(sb, name) == (1, 0) and not [g for p in pages for g in p.gaps]


@pytest.mark.parametrize("name", META)
def test_a_full_nested_edge_with_a_next_link_costs_no_call_of_its_own(sb_fresh: Sandbox, name: str) -> None:
    """20 of 20 readable came nested: past the horizon nothing can be read, whatever `next` says
    (here a hostile link to another host); a gap is reported."""
    sb = sb_fresh
    store = Store()
    conn = open_connector(sb, name)
    _, _, cursor = drain(conn, None, store)
    tid = sb.threads(name)[0]
    sb.burst(name, tid, 25)
    sb.fault("poison", path="/conversations", target=tid, field="messages.paging.next",
             value='"https://evil.example/v23.0/x/messages?after=Zm9v&access_token=stolen"')
    sb.clear_calls()
    burst, pages, _ = drain(conn, cursor, store)
    assert len(burst) == 20 and _gets(sb, name) == (1, 0)
    assert [g.thread_id for p in pages for g in p.gaps] == [tid]


@pytest.mark.parametrize("name", META)
def test_a_cut_short_nested_read_reads_on_with_our_fields_from_its_cursor(sb_fresh: Sandbox, name: str) -> None:
    """The read on after a nested edge cut short asks `/{thread}/messages` with the fields a thread's
    own read asks, from the edge's `after` cursor: not the edge's `next` (built by Graph, here a
    broken link to another port that names no fields)."""
    sb = sb_fresh
    store = Store()
    conn = open_connector(sb, name)
    _, _, cursor = drain(conn, None, store)
    (tid,) = _new_messages(sb, name, [6])
    sb.cut_nested(2)
    sb.fault("poison", path="/conversations", target=tid, field="messages.paging.next",
             value='"http://127.0.0.1:9/v23.0/elsewhere/messages?after=Zm9v&access_token=stolen"')
    sb.clear_calls()
    later, _, _ = drain(conn, cursor, store)
    assert [m.text for m in later] == [f"Kak, ada kabar? ({i}/6)" for i in range(1, 7)]
    assert _gets(sb, name) == (1, 1)
    (read_on,) = [c for c in sb.calls if c.path.endswith("/messages")]
    assert read_on.path.endswith(f"/{tid}/messages") and "message" in read_on.query["fields"].split(",")
    assert "access_token" not in read_on.query


@pytest.fixture
def sb_fresh() -> Any:
    with Sandbox(seed=7).start() as box:
        yield box


# --- through the store ------------------------------------------------------------------------
@pytest.mark.parametrize("name", META)
def test_changed_threads_cost_only_the_listing(engine, db_url, sandbox, name):
    from inbox.sync.account import sync_account

    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)
    sandbox.clear_calls()
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    listing, threads = _gets(sandbox, name)
    assert threads == 0 and listing >= 1  # the first pass too: every thread's messages came nested
    assert_complete(engine, sandbox, (name,))

    _new_messages(sandbox, name, [1, 3, 7, 19])
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 30
    assert _gets(sandbox, name) == (1, 0)  # four changed threads, one call
    assert_complete(engine, sandbox, (name,), exact=False)  # 19 new push stored ones past the horizon

    sandbox.clear_calls()
    assert sync_account(engine, settings, acc, connector_factory=factory).counts.new_messages == 0
    assert _gets(sandbox, name) == (1, 0)  # nothing new: one call, as before


@pytest.mark.parametrize("name", META)
def test_a_nested_read_cut_short_reads_on_through_the_thread_alone(engine, db_url, sandbox, name):
    """The list serves 3 of each thread's messages: a thread whose 3 are all new (no known one
    reached) reads on through its own edge; one whose 3 reach a stored message reads on only when
    the cursor remembers no count for it (below the stored one may sit a message whose webhook was
    lost); with its count remembered, the count says every new one was found."""
    from inbox.sync.account import sync_account

    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    with engine.connect() as conn:
        remembered = set(conn.execute(sa.select(SyncState.__table__.c.cursor).join(
            Account.__table__, Account.__table__.c.id == SyncState.__table__.c.account_id).where(
            Account.__table__.c.name == name)).scalar_one()["recent"])
    threads = _new_messages(sandbox, name, [2, 8, 1, 12])  # two threads with more new messages than the nested 3
    sandbox.cut_nested(3)
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 23
    short_uncounted = [t for t in (threads[0], threads[2])  # cut: more than the 3 served
                       if t not in remembered and len(sandbox.thread_messages(name, t)) > 3]
    assert _gets(sandbox, name) == (1, 2 + len(short_uncounted))
    assert_complete(engine, sandbox, (name,), exact=False)
    assert len(stored_ids(engine, name)) == len(set(stored_ids(engine, name)))


@pytest.mark.parametrize("name", META)
def test_a_burst_past_the_horizon_is_a_gap_without_a_call_of_its_own(engine, db_url, sandbox, name):
    from inbox.sync.account import sync_account

    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(SyncGap.__table__)).scalar_one()
    (tid,) = _new_messages(sandbox, name, [25])
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 20
    assert _gets(sandbox, name) == (1, 0)
    with engine.connect() as conn:
        gaps = conn.execute(sa.select(SyncGap.__table__.c.conversation_external_id)).scalars().all()
    assert len(gaps) == before + 1 and tid in gaps
    assert_complete(engine, sandbox, (name,), exact=False)


def test_a_failing_read_on_after_a_cut_short_nested_read_keeps_nothing_half_and_recovers(engine, db_url, sandbox):
    """The per-thread read after a cut-short nested read fails: the pass stops for a retry, and the
    next one stores every message exactly once."""
    from inbox.sync.account import sync_account

    name = "tokoshop-fb"
    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings, retries=0, timeout=1.0)
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    _new_messages(sandbox, name, [9, 9])
    sandbox.cut_nested(2)
    sandbox.fault("503", account=name, path="/messages", method="GET", skip=1)  # the second thread's read on
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "retry-later"
    sandbox.clear_faults()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok"
    assert_complete(engine, sandbox, (name,))
    assert len(stored_ids(engine, name)) == len(set(stored_ids(engine, name)))


@pytest.mark.parametrize(
    "value",
    [None, "[]", '"x"', '{"paging": {}}', '{"data": {}}', '{"data": [], "error": {"message": "(#1) An unknown error occurred", "code": 1}}'],
    ids=["missing", "list", "string", "no-data", "data-object", "error"],
)
def test_a_listing_row_without_a_usable_nested_edge_reads_its_thread_alone(engine, db_url, sandbox, value):
    """Graph may leave an expansion out, answer it with an error (or a proxy mangle it): that thread is
    read through its own edge, and nothing is lost."""
    from inbox.sync.account import sync_account

    name = "tokoshop-fb"
    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    (tid, other) = _new_messages(sandbox, name, [4, 2])
    sandbox.fault("poison", account=name, path="/conversations", target=tid, field="messages", value=value)
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 6
    assert _gets(sandbox, name) == (1, 1)
    assert [c.path for c in sandbox.calls if c.path.endswith("/messages")] == [f"/facebook/v23.0/{tid}/messages"]
    assert_complete(engine, sandbox, (name,), exact=False)
    assert other


def test_a_budget_stop_between_list_pages_keeps_the_pages_read(engine, db_url, sandbox):
    """Nested reads under a budget of 4 calls a window and list pages of 5 threads: the pass stores
    whole list pages (3 calls, 15 threads), stops before the platform throttles, and the next pass
    stores the rest, each message once."""
    from inbox.sync.account import sync_account

    name = "tokoshop-fb"
    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)

    def small_pages(a):  # type: ignore[no-untyped-def]
        conn = factory(a)
        conn.spec = replace(conn.spec, page_size=5)
        return conn

    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    for t in range(24):
        sandbox.inject(name, text=f"Kak, pesanan nomor {t} belum sampai", customer=f"Pelanggan baru {t}")
    sandbox.meta_budget(4, window_seconds=3600.0)
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=small_pages)
    assert res.status == "retry-later" and "stopped before the platform throttles" in (res.error or "")
    assert res.counts.new_messages == 15 and _gets(sandbox, name) == (3, 0)
    assert [c.path for c in sandbox.calls if c.status == 400] == []
    sandbox.meta_budget(None)
    sandbox.advance(3601)
    with engine.begin() as conn:
        conn.execute(sa.update(Account.__table__).values(paused_until=None))
    res = sync_account(engine, settings, acc, connector_factory=small_pages)
    assert res.status == "ok" and res.counts.new_messages == 9
    assert_complete(engine, sandbox, (name,))


# --- recorded payloads in the nested shape --------------------------------------------------------
RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"


@pytest.mark.skipif(not RECORDED.is_dir(), reason=f"recorded fixtures not present at {RECORDED}")
def test_recorded_graph_payloads_parse_nested_in_a_list_page(request: pytest.FixtureRequest) -> None:
    """pyfacebook's recorded conversation and messages, served as Graph nests them in a list page
    (a short nested edge whose `next` is an absolute graph.facebook.com URL with the token): every
    message parses, and the read on goes to our base, the token in the header, not the URL."""
    import json

    from connectors import connect
    from connectors.base import AccountSpec
    from connectors.enums import Channel

    base, script = request.getfixturevalue("wire")  # the scripted loopback server of the contract suite
    load = lambda rel: json.loads((RECORDED / rel).read_text(encoding="utf-8-sig"))  # noqa: E731
    conv = dict(load("pyfacebook/apidata__conversations__cvs_info.json"))
    batch = load("pyfacebook/apidata__messages__messages_info.json")
    nested = sorted(batch.values(), key=lambda m: m["created_time"], reverse=True)
    conv["messages"] = {"data": nested, "paging": {"cursors": {"before": "QVFIa", "after": "QVFIb"},
                        "next": f"https://graph.facebook.com/v23.0/{conv['id']}/messages?access_token=access_token&limit=20&after=QVFIb"}}
    script.replies.append((200, {}, json.dumps({"data": [conv]}).encode(), None))
    script.replies.append((200, {}, json.dumps({"data": []}).encode(), None))
    spec = AccountSpec(name="recorded", channel=Channel.FACEBOOK, account_id="2121008874780932", page_id="2121008874780932",
                       base_url=f"{base}/v23.0", secrets={"access_token": "EAArecordedtoken"}, timeout=2.0, min_interval=0.0, max_retries=0)
    conn = connect(spec)
    pages = list(conn.fetch(None, lambda ids: set()))
    conn.close()
    got = [m for p in pages for m in p.messages]
    assert sorted(m.external_id for m in got) == sorted(batch) and not [q for p in pages for q in p.quarantined]
    assert len(script.seen) == 2 and script.seen[1].startswith(f"GET /v23.0/{conv['id']}/messages?")
    assert "access_token" not in script.seen[1] and script.auth[1] == "Bearer EAArecordedtoken"
    assert "messages.limit(20)" in script.seen[0].replace("%28", "(").replace("%29", ")")


@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("cut", [False, True])
def test_a_message_below_one_stored_by_webhook_is_read(name: str, nested: bool, cut: bool) -> None:
    """A customer writes twice; the first message's webhook is lost, the second's is stored. The
    poll reads the thread's readable page to its end, past the stored one, and finds the first,
    without a call more (the nested edge, or the thread's own first page, holds both). `cut`: Graph
    cuts that page to its newest message, the stored one; a page cut short is read on to the
    horizon when no remembered count says every new message was found."""
    with Sandbox(seed=7).start() as sb:
        store = Store()
        _, _, cursor = drain(open_connector(sb, name), None, store)
        thread = sb.threads(name)[2]
        lost = sb.inject(name, text="Kak, pesanan INV/20261203/MPL/4455667788 belum sampai", thread=thread)
        came = sb.inject(name, text="Tolong dibantu ya kak", thread=thread)
        if not nested:  # the row comes without its nested edge: the thread is read through its own
            sb.fault("poison", account=name, path="/conversations", target=thread, field="messages", value=None)
        if cut:
            (sb.cut_nested if nested else sb.cut_pages)(1)
        store.ids.add(came)  # stored by its webhook
        sb.clear_calls()
        messages, _, _ = drain(open_connector(sb, name), cursor, store)
        assert [m.external_id for m in messages] == [lost]
        # Cut: nested, one read on (a whole page); own edge, a page a message, to the horizon or the end.
        own = (1 if nested else min(20, len(sb.thread_messages(name, thread)))) if cut else (0 if nested else 1)
        assert _gets(sb, name) == (1, own)


@pytest.mark.parametrize("name", META)
def test_a_page_names_whose_threads_it_read_only_where_the_row_says_so_plainly(sb_fresh: Sandbox, name: str) -> None:
    """`Page.threads` (which renames a webhook's provisional thread) pairs each thread read with its
    one customer, new messages or not; a row listing two customers names none, so one customer's
    provisional thread never moves into another's conversation."""
    sb = sb_fresh
    store = Store()
    conn = open_connector(sb, name)
    _, _, cursor = drain(conn, None, store)
    quiet, crowded = sb.threads(name)[:2]
    for tid in (quiet, crowded):
        store.ids.add(sb.inject(name, text="Kak?", thread=tid))  # stored already (by webhook): nothing new
    own = sb.state.meta[name].threads[quiet].customer.id
    sb.fault("poison", account=name, path="/conversations", target=crowded, field="participants",
             value=json.dumps({"data": [{"id": "9001"}, {"id": "9002"}]}))
    messages, pages, _ = drain(conn, cursor, store)
    named = dict(t for p in pages for t in p.threads)
    assert messages == [] and named.get(quiet) == own and crowded not in named
