"""Concurrent claims: many agents, each with its own connection, never get the same ticket."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from tests import factories as sf
from inbox.errors import ConflictError
from inbox.store.types import PRIORITY_RANK
from inbox.tickets import queue
from inbox.store.engine import make_engine
from inbox.store.models import TicketEvent


def bulk_tickets(engine, n: int) -> list[int]:
    made = sf.ticket(engine)  # one real ticket gives account, contact and conversation ids to copy
    t = queue.T
    with engine.begin() as conn:
        base = conn.execute(sa.select(t).where(t.c.id == made.ticket_id)).mappings().one()
        rows = [{k: v for k, v in base.items() if k != "id"} | {"priority_rank": i % 4} for i in range(n - 1)]
        conn.execute(t.insert(), rows)
        return [r[0] for r in conn.execute(sa.select(t.c.id))]


@pytest.mark.parametrize("agents", [8])
def test_concurrent_agents_claim_each_ticket_once(db_url: str, engine, agents: int) -> None:
    ids = bulk_tickets(engine, 120)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(agents)

    def agent(name: str) -> None:
        own = make_engine(db_url, pool_size=1, max_overflow=0) if not db_url.startswith("sqlite") else make_engine(db_url)
        mine: list[int] = []
        try:
            start.wait()
            while True:
                row = queue.claim_next(own, name)
                if row is None:
                    break
                assert row.assignee == name
                mine.append(row.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            claimed[name] = mine
            own.dispose()

    threads = [threading.Thread(target=agent, args=(f"agent{i}",)) for i in range(agents)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    counts = Counter(i for mine in claimed.values() for i in mine)
    assert sorted(counts) == sorted(ids)  # every ticket claimed
    assert set(counts.values()) == {1}  # exactly once
    assert sum(1 for mine in claimed.values() if mine) > 1  # the work was actually shared
    te = TicketEvent.__table__
    with engine.connect() as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(te).where(te.c.action == "claim")).scalar()
        unassigned = conn.execute(sa.select(sa.func.count()).select_from(queue.T).where(queue.T.c.assignee.is_(None))).scalar()
    assert n_events == len(ids) and unassigned == 0


def test_claim_order_is_priority_then_due(engine) -> None:
    ids = bulk_tickets(engine, 12)
    got = []
    while (row := queue.claim_next(engine, "ana")) is not None:
        got.append((row.priority, row.id))
    ranks = [PRIORITY_RANK[p] for p, _ in got]
    assert ranks == sorted(ranks) and len(got) == len(ids)


def test_claim_specific_race_has_one_winner(db_url: str, engine) -> None:
    made = sf.ticket(engine)
    winners: list[str] = []
    conflicts: list[str] = []
    start = threading.Barrier(6)

    def agent(name: str) -> None:
        own = make_engine(db_url)
        try:
            start.wait()
            queue.claim(own, made.ticket_id, name)
            winners.append(name)
        except ConflictError:
            conflicts.append(name)
        finally:
            own.dispose()

    threads = [threading.Thread(target=agent, args=(f"a{i}",)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert len(winners) == 1 and len(conflicts) == 5
    assert queue.get_ticket(engine, made.ticket_id).assignee == winners[0]
