"""The stateful randomized test of webhooks and polling together (`webhook_machine.WebhookPollMachine`),
on both backends.

Every run has the short profile: a few examples of about ten steps per backend. The long one is
marked slow (CI runs it, with the ci Hypothesis profile for its full size; so does
`INBOX_TEST_SLOW=1` locally). A failure is kept in Hypothesis's example database and replayed first
next time; the steps it prints are what a regression test below replays.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from tests.conftest import PG_URL
from tests.webhook_machine import WebhookPollMachine

PROFILE = settings()  # the loaded profile (tests/conftest.py): dev locally, ci in CI


class SQLiteWebhooks(WebhookPollMachine):
    backend = "sqlite"


class PostgresWebhooks(WebhookPollMachine):
    backend = "postgres"
    pg_base = PG_URL


def _run(machine: type[WebhookPollMachine], *, examples: int, steps: int) -> None:
    run_state_machine_as_test(machine, settings=settings(PROFILE, max_examples=examples, stateful_step_count=steps))


def test_webhooks_and_polls_short_sqlite() -> None:
    _run(SQLiteWebhooks, examples=3, steps=10)


def test_webhooks_and_polls_short_postgres(pg_url: str) -> None:
    _run(PostgresWebhooks, examples=3, steps=10)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_webhooks_and_polls_long_sqlite() -> None:
    _run(SQLiteWebhooks, examples=PROFILE.max_examples // 2, steps=25)  # ci: 100 examples


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_webhooks_and_polls_long_postgres(pg_url: str) -> None:
    _run(PostgresWebhooks, examples=PROFILE.max_examples // 4, steps=25)  # ci: 50 examples


# ── failures the machine found, replayed step by step (minimal examples) ─────────────────────

def _without(defect: str) -> SQLiteWebhooks:
    """The machine with one known defect no longer stepped around; a replay checks after each
    step as the machine does (the sender idle, the receiver's queue drained)."""
    state = SQLiteWebhooks()
    state.known[defect] = False
    return state


@pytest.mark.parametrize("account", ["tokoshop-fb", "tokoshop-ig"])
def test_a_message_whose_webhook_was_lost_is_polled_when_a_later_one_s_webhook_came(account: str) -> None:
    """The poll stopped at the later message (stored by webhook) and never read the lost one."""
    state = _without("meta_poll_stops_at_a_webhook_message")
    try:
        state.first_poll(names={account})
        state.after_each_step()
        state.customer_message(account=account, attachment=False, fate="dropped", new_thread=False, pick=5, x_shape="activity")
        state.after_each_step()
        state.customer_message(account=account, attachment=False, fate="delivered", new_thread=False, pick=0, x_shape="activity")
        state.after_each_step()
        state.sync(names={account})
        state.after_each_step()
    finally:
        state.close()


def test_the_history_of_a_thread_first_seen_by_webhook_is_polled() -> None:
    """Webhooks on before the first poll: the first poll stopped at the burst the webhooks stored."""
    state = _without("meta_poll_stops_at_a_webhook_message")
    try:
        state.first_poll(names=set())
        state.after_each_step()
        state.customer_burst(account="tokoshop-ig", fate="delivered", n=2, pick=0, reorder=False, x_shape="activity")
        state.after_each_step()
        state.sync(names={"tokoshop-ig"})
        state.after_each_step()
    finally:
        state.close()


@pytest.mark.parametrize("account", ["tokoshop-fb", "tokoshop-ig"])
def test_a_provisional_thread_is_resolved_by_a_poll_that_finds_nothing_new(account: str) -> None:
    """The webhook's message (on `user:<id>`, the lookup failed) is its thread's newest: the poll
    finds nothing new there, yet the thread it read names the provisional one's real thread."""
    state = _without("provisional_thread_kept_when_the_poll_finds_nothing_new")
    try:
        state.first_poll(names={account})
        state.after_each_step()
        state.lookup_fails(account=account)
        state.after_each_step()
        state.sync(names={account})
        state.after_each_step()
    finally:
        state.close()
