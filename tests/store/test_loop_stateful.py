"""The stateful randomized test of the whole loop (`loop_machine.LoopMachine`), on both backends.

Every run has the short profile: a few examples of a dozen steps per backend. The long one,
thousands of steps per backend, is marked slow: CI runs it (with the ci Hypothesis profile for its
full size), and so does `INBOX_TEST_SLOW=1` locally. A failure is kept in Hypothesis's example
database (`.hypothesis/`) and replayed first on the next run; the steps it prints are what a
regression test below replays.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from tests.conftest import PG_URL
from tests.loop_machine import LoopMachine

PROFILE = settings()  # the loaded profile (tests/conftest.py): dev locally, ci in CI


class SQLiteLoop(LoopMachine):
    backend = "sqlite"


class PostgresLoop(LoopMachine):
    backend = "postgres"
    pg_base = PG_URL


def _run(machine: type[LoopMachine], *, examples: int, steps: int) -> None:
    run_state_machine_as_test(machine, settings=settings(PROFILE, max_examples=examples, stateful_step_count=steps))


def test_loop_short_sqlite() -> None:
    _run(SQLiteLoop, examples=3, steps=12)


def test_loop_short_postgres(pg_url: str) -> None:
    _run(PostgresLoop, examples=3, steps=12)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_loop_long_sqlite() -> None:
    _run(SQLiteLoop, examples=PROFILE.max_examples // 2, steps=25)  # ci: 100 examples, 2,500 steps (about 10 min)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_loop_long_postgres(pg_url: str) -> None:
    _run(PostgresLoop, examples=PROFILE.max_examples // 4, steps=25)  # ci: 50 examples, 1,250 steps (about 10 min)


# ── failures the machine found, replayed step by step (minimal examples) ─────────────────────

# issue 11 item 3: both agents delivered before the reply re-check (ReplyRaceError) landed.
@pytest.mark.parametrize("same_text", [True, False], ids=["same-text", "different-text"])
def test_two_agents_on_one_ticket_reach_the_customer_once(same_text: bool) -> None:
    state = SQLiteLoop()
    try:
        state.first_sync()
        state.two_agents_reply(pick=1, same_text=same_text)
        state.no_reply_delivered_twice()
    finally:
        state.close()


def test_a_late_x_event_behind_a_page_of_newer_ones_is_stored() -> None:
    """Found by the loop machine: a minute-late X event behind more than a page of newer ones."""
    state = SQLiteLoop()
    state.known["x_late_beyond_the_stopping_page"] = False
    try:
        state.first_sync()
        state.customer_burst(account="tokoshop-x", n=19, pick=0)
        state.sync(names={"tokoshop-x"})
        state.customer_burst(account="tokoshop-x", n=7, pick=0)
        state.customer_message(account="tokoshop-x", data=_Draws("pesan telat", ""), kind=None, late=59, new_thread=False, pick=1)
        state.settle()
    finally:
        state.close()


class _Draws:
    """Stands for Hypothesis's `data` in a replay: hands out the recorded draws in order."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, strategy: object, label: str | None = None) -> object:
        return self.values.pop(0)


def test_a_conversation_listed_without_its_time_leaves_the_cursor_behind_the_stored_data() -> None:
    state = SQLiteLoop()
    state.known["meta_hwm_from_a_conversation_without_time"] = False
    try:
        state.first_sync()
        state.platform_fault(account="tokoshop-ig", kind="bad_item", data=_Draws("/conversations"), count=1)
        state.sync(names={"tokoshop-ig"})
        state.cursors_behind_the_data_and_the_present()
    finally:
        state.close()
