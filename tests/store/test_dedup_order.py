"""Dedup's grouping does not depend on the order accounts are polled, on how pages are batched into
one transaction, or on one sync versus three (both backends)."""

from __future__ import annotations

import random

import sqlalchemy as sa
from hypothesis import given, settings as hsettings, strategies as st
from sqlmodel import Session

from connectors.base import Page
from inbox.settings import Settings
from inbox.ingest.page import ingest_page
from inbox.store.models import Account, SQLModel
from inbox.sync.pipeline import merge_pages

from tests.dedup_cases import ACCOUNTS, PLATFORM, Msg, cases, expected_grouping, grouping

CASES = cases()
EXPECTED = expected_grouping(CASES)
SETTINGS = Settings()


def _accounts(engine) -> dict[str, int]:
    """The three accounts (made once per store: the examples of one test share it)."""
    t = Account.__table__
    with engine.connect() as conn:
        have = dict(conn.execute(sa.select(t.c.channel, t.c.id)).all())
    if have:
        return have
    with Session(engine) as s:
        made = {ch: Account(name=name, channel=ch, platform_id=PLATFORM[ch]) for ch, name in ACCOUNTS.items()}
        s.add_all(made.values())
        s.commit()
        return {ch: a.id for ch, a in made.items()}


def _wipe(engine) -> None:
    """Everything but the accounts, so each example starts from an empty store."""
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name != "account":
                conn.execute(sa.delete(table))


def _ingest(engine, accounts: dict[str, int], order: list[str], page_size: int, syncs: int, rnd: random.Random) -> None:
    """The messages in `syncs` passes (cut by time); in each pass the accounts' pages interleaved in
    a random order that keeps each account's own page order, pages newest- or oldest-first, and
    runs of consecutive pages of one account stored together in one transaction (`merge_pages`)."""
    span = max(m.minutes for m in CASES) + 1
    cuts = sorted(rnd.uniform(0, span) for _ in range(syncs - 1)) + [span]
    lo = -1.0
    for hi in cuts:
        queues: dict[str, list[list[Msg]]] = {}
        for ch in order:
            mine = sorted((m for m in CASES if m.channel == ch and lo < m.minutes <= hi), key=lambda m: m.minutes)
            if rnd.random() < 0.5:
                mine.reverse()  # Meta and X list newest first
            pages = [mine[i : i + page_size] for i in range(0, len(mine), page_size)]
            if pages:
                queues[ch] = pages
        while queues:
            ch = rnd.choice([c for c in order if c in queues])
            take = rnd.randint(1, 3)
            batch, queues[ch] = queues[ch][:take], queues[ch][take:]
            if not queues[ch]:
                del queues[ch]
            page = merge_pages([Page(tuple(m.inbound() for m in p), cursor=None) for p in batch])
            ingest_page(engine, accounts[ch], page, SETTINGS)
        lo = hi


def test_the_labelled_cases_group_as_labelled_in_one_pass(engine):
    accounts = _accounts(engine)
    _ingest(engine, accounts, list(ACCOUNTS), page_size=100, syncs=1, rnd=random.Random(0))
    assert grouping(engine) == EXPECTED


@hsettings(max_examples=min(hsettings.default.max_examples, 40))
@given(
    order=st.permutations(list(ACCOUNTS)),
    page_size=st.integers(1, 5),
    syncs=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_grouping_is_independent_of_account_order_batching_and_syncs(engine, order, page_size, syncs, seed):
    accounts = _accounts(engine)
    _wipe(engine)
    _ingest(engine, accounts, list(order), page_size, syncs, random.Random(seed))
    assert grouping(engine) == EXPECTED
