"""Meta passes read changed threads through the conversation listing's nested `messages` edge: calls
counted on the sandbox. A thread costs a call of its own only where its nested read is cut short."""

from __future__ import annotations

import pytest

from test_sync import assert_complete, fast_factory, sandbox_settings, stored_ids

META = ("tokoshop-fb", "tokoshop-ig")


def _gets(sb, name: str) -> tuple[int, int]:
    """(listing calls, per-thread message calls) the account made since the calls were cleared."""
    calls = [c for c in sb.calls if c.account == name and c.method == "GET"]
    listing = sum(1 for c in calls if c.path.endswith("/conversations"))
    threads = sum(1 for c in calls if c.path.endswith("/messages"))
    assert listing + threads == len(calls), [c.path for c in calls]
    return listing, threads


def _new_messages(sb, name: str, counts: list[int]) -> list[str]:
    """One existing thread per count gets that many new customer messages (threads newest first)."""
    threads = sb.threads(name)[: len(counts)]
    for tid, n in zip(threads, counts, strict=True):
        for i in range(n):
            sb.inject(name, text=f"Kak, ada kabar? ({i + 1}/{n})", thread=tid)
    return threads


@pytest.mark.parametrize("name", META)
def test_changed_threads_cost_only_the_listing(engine, db_url, sandbox, name):
    from inbox.sync import sync_account

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
    """The listing serves 3 of each thread's messages: a thread whose 3 are all new (no known one
    reached) reads on through its own edge; one whose 3 reach a stored message does not."""
    from inbox.sync import sync_account

    settings = sandbox_settings(sandbox, db_url)
    acc = settings.account(name)
    factory = fast_factory(settings)
    assert sync_account(engine, settings, acc, connector_factory=factory).status == "ok"
    _new_messages(sandbox, name, [2, 8, 1, 12])  # two threads with more new messages than the nested 3
    sandbox.cut_nested(3)
    sandbox.clear_calls()
    res = sync_account(engine, settings, acc, connector_factory=factory)
    assert res.status == "ok" and res.counts.new_messages == 23
    assert _gets(sandbox, name) == (1, 2)
    assert_complete(engine, sandbox, (name,), exact=False)
    assert len(stored_ids(engine, name)) == len(set(stored_ids(engine, name)))


@pytest.mark.parametrize("name", META)
def test_a_burst_past_the_horizon_is_a_gap_without_a_call_of_its_own(engine, db_url, sandbox, name):
    import sqlalchemy as sa

    from inbox.models import SyncGap
    from inbox.sync import sync_account

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
    from inbox.sync import sync_account

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


@pytest.mark.parametrize("value", [None, "[]", '"x"', '{"paging": {}}', '{"data": {}}'], ids=["missing", "list", "string", "no-data", "data-object"])
def test_a_listing_row_without_a_usable_nested_edge_reads_its_thread_alone(engine, db_url, sandbox, value):
    """Graph may leave an expansion out (or a proxy mangle it): that thread is read through its own
    edge, and nothing is lost."""
    from inbox.sync import sync_account

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
