"""X bills every DM event a lookup returns: the connector asks for what is likely new, over real
HTTP against the sandbox, whose meter counts what X would bill."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine

from connectors.base import Cursor
from connectors.x import LAG
from sandbox import Sandbox
from tests.contract.test_connectors_contract import Store, calls_for, drain, open_connector

X = "tokoshop-x"


@pytest.fixture
def sb() -> Iterator[Any]:
    box = Sandbox(seed=7, x_rate_limit=10_000)
    box.start(host="127.0.0.1", port=0)
    traveller = time_machine.travel(time.time(), tick=True)
    box.clock = traveller.start()  # this process's clock, moved with the sandbox's (`later`)
    try:
        yield box
    finally:
        traveller.stop()
        box.stop()


def later(sb: Any, seconds: float) -> None:
    """Both clocks, the platform's and ours, move on by `seconds`."""
    sb.advance(seconds)
    sb.clock.shift(timedelta(seconds=seconds))


class Pass:
    """One drained pass and what it cost: the sizes asked for and the events X returned."""

    def __init__(self, sb: Any, store: Store, cursor: Cursor | None) -> None:
        user = sb.accounts[X].platform_id
        before, first_call = sb.rates.reads.snapshot(user), len(calls_for(sb, X))
        conn = open_connector(sb, X, page_size=100)
        try:
            self.messages, self.pages, self.cursor = drain(conn, cursor, store)
        finally:
            conn.close()
        after = sb.rates.reads.snapshot(user)
        self.sizes = [int(c.query["max_results"]) for c in calls_for(sb, X)[first_call:]]
        self.events = after["events"] - before["events"]
        self.ids = {m.external_id for m in self.messages}
        assert sum(p.events_read for p in self.pages) == self.events  # the pages count what X bills


def settled(sb: Any) -> tuple[Store, Cursor | None]:
    """A store after the backfill and one quiet pass."""
    store = Store()
    backfill = Pass(sb, store, None)
    assert backfill.sizes[0] == 100  # a backfill: everything is new
    quiet = Pass(sb, store, backfill.cursor)
    assert not quiet.messages
    return store, quiet.cursor


def test_an_idle_poll_reads_one_event(sb: Any) -> None:
    store, cursor = settled(sb)
    for _ in range(3):
        idle = Pass(sb, store, cursor)
        assert (idle.sizes, idle.events, idle.messages) == ([1], 1, [])
        assert idle.pages[-1].final
        cursor = idle.cursor
    assert cursor is not None and cursor["recent"] == 0


def test_a_burst_larger_than_the_first_page_grows_the_size_and_loses_nothing(sb: Any) -> None:
    store, cursor = settled(sb)
    sent = [sb.inject(X, text=f"paket {i} belum sampai") for i in range(150)]
    burst = Pass(sb, store, cursor)
    assert burst.ids == set(sent)
    assert burst.sizes == [1, 2, 4, 8, 16, 32, 64, 100]  # doubling while all new, up to 100
    assert burst.events <= sum(burst.sizes) and burst.events - len(sent) < 100  # the last page holds the stored ones
    assert burst.cursor is not None and burst.cursor["recent"] == 150
    after = Pass(sb, store, burst.cursor)
    assert not after.messages and after.sizes == [100]  # a busy account starts big...
    later(sb, LAG.total_seconds() + 1)
    assert Pass(sb, store, after.cursor).sizes == [1]  # ...and a quiet one reads one event


def test_an_event_that_shows_up_late_behind_the_cursor_is_still_found(sb: Any) -> None:
    store, cursor = settled(sb)
    later(sb, LAG.total_seconds() + 1)
    sent = [sb.inject(X, text=f"pesanan {i}") for i in range(3)]
    stored = Pass(sb, store, cursor)
    assert stored.ids == set(sent)
    idle = Pass(sb, store, stored.cursor)
    assert not idle.messages and idle.cursor["recent"] == 0 and idle.cursor["tail"] == 2
    # Our reply, sent a minute before the customers' messages, appears in the feed only now.
    late = sb.inject_own(X, sb.threads(X)[-1], "Baik kak, kami cek dulu", at=sb.state.now() - 60)
    assert int(late) < int(stored.cursor["newest_id"])
    got = Pass(sb, store, idle.cursor)
    assert got.ids == {late} and got.sizes == [4]  # the stopping page reaches back over what was stored
    later(sb, LAG.total_seconds() + 1)
    quiet = Pass(sb, store, got.cursor)
    assert quiet.sizes == [1] and not quiet.messages  # once nothing is that recent: one event again


def test_steady_arrivals_are_read_once_plus_the_stored_newest(sb: Any) -> None:
    store, cursor = settled(sb)
    newest = None
    for round_ in range(5):
        later(sb, LAG.total_seconds() + 1)  # three DMs every ten minutes or so
        sent = [sb.inject(X, text=f"round {round_} message {i}") for i in range(3)]
        got = Pass(sb, store, cursor)
        assert got.ids == set(sent)
        if round_ > 0:  # the pass knows 3 arrived last time: 3 new and the stored newest, in one lookup
            assert got.sizes == [4] and got.events == 4
        assert got.cursor is not None and int(got.cursor["newest_id"]) > int(newest or 0)
        newest, cursor = got.cursor["newest_id"], got.cursor


@pytest.mark.parametrize("key", ["recent", "tail"])
@pytest.mark.parametrize("value", [-5, True, "lots", 10**30, None, [3], {"n": 1}, 2.5])
def test_hostile_or_old_cursor_counts_still_read_everything(sb: Any, key: str, value: Any) -> None:
    store, cursor = settled(sb)
    assert cursor is not None
    sent = [sb.inject(X, text=f"halo {i}") for i in range(5)]
    hostile = {"newest_id": cursor["newest_id"]} if value is None else {**cursor, key: value}
    got = Pass(sb, store, hostile)
    assert got.ids == set(sent) and all(1 <= s <= 100 for s in got.sizes)
    assert got.cursor is not None and got.cursor["recent"] == 5


@pytest.mark.parametrize("size", [0, -1, "x", 10**9, True, None])
def test_a_resumed_pass_with_a_hostile_size_goes_on_and_loses_nothing(sb: Any, size: Any) -> None:
    store = Store()
    conn = open_connector(sb, X, page_size=10)  # the seeded month is a few pages of 10
    try:
        first = next(iter(conn.fetch(None, store)))  # an unfinished backfill: one page stored
    finally:
        conn.close()
    store.ids.update(m.external_id for m in first.messages)
    assert first.cursor is not None and first.cursor["resume"]["size"] == 10
    resume = dict(first.cursor["resume"])
    if size is None:
        resume.pop("size")  # a cursor written before the size was kept
    else:
        resume["size"] = size
    got = Pass(sb, store, {**first.cursor, "resume": resume})
    assert all(1 <= s <= 100 for s in got.sizes)
    assert got.ids.isdisjoint(m.external_id for m in first.messages)  # nothing read twice
    assert Pass(sb, Store(), None).ids == store.ids  # what a fresh backfill reads, all stored
