"""Claims benchmark: N concurrent agents (processes, each with its own connection) claim until the
queue is empty. Checks every ticket was claimed exactly once and prints the throughput.

    .venv/bin/python bench/claims.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/claims
    .venv/bin/python bench/claims.py --sqlite            # the same on a SQLite file
    options: --agents 20 --tickets 5000

The database must be empty (it is filled here through the real migrations).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(url: str, n: int) -> None:
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa

    from inbox.store import tables as tb
    from inbox.store import open_store

    engine = open_store(url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        acc = conn.execute(
            tb.account.insert().values(name="tokoshop-ig", channel="instagram", platform_id="1", created_at=now, needs_reauth=False).returning(tb.account.c.id)
        ).scalar_one()
        rows = [
            {
                "status": "new", "priority": p, "priority_rank": r, "channel": "instagram", "account_id": acc, "message_count": 1,
                "created_at": now, "updated_at": now, "first_response_due_at": now + timedelta(minutes=i % 997),
                "reopened_count": 0, "has_gap": False,
            }
            for i, (p, r) in enumerate([("urgent", 0), ("high", 1), ("normal", 2), ("low", 3)] * (n // 4) + [("normal", 2)] * (n % 4))
        ]
        conn.execute(tb.ticket.insert(), rows)
        assert conn.execute(sa.select(sa.func.count()).select_from(tb.ticket)).scalar() == n
    engine.dispose()


def agent(url: str, name: str, start: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from inbox.store.engine import make_engine
    from inbox.tickets.queue import claim_next

    engine = make_engine(url, pool_size=1, max_overflow=0) if not url.startswith("sqlite") else make_engine(url)
    mine: list[int] = []
    while time.time() < start:  # all agents begin together
        time.sleep(0.001)
    while (row := claim_next(engine, name)) is not None:
        mine.append(row.id)
    engine.dispose()
    out.put((name, mine, time.time()))


def run(url: str, agents: int, tickets: int) -> int:
    fill(url, tickets)
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    start = time.time() + 1.5
    procs = [mp.Process(target=agent, args=(url, f"agent{i:02d}", start, queue)) for i in range(agents)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    finished = max(r[2] for r in results)
    counts = Counter(i for _, mine, _ in results for i in mine)
    claimed = sum(counts.values())
    duplicates = sum(1 for c in counts.values() if c > 1)
    seconds = finished - start
    per_agent = sorted(len(mine) for _, mine, _ in results)
    print(f"{url.split('://')[0]}: {agents} agents, {tickets:,} tickets")
    print(f"  claimed {claimed:,} (distinct {len(counts):,}), duplicates {duplicates}, missing {tickets - len(counts)}")
    print(f"  {seconds:.2f} s -> {claimed / seconds:,.0f} claims/s; per agent min {per_agent[0]}, max {per_agent[-1]}")
    ok = duplicates == 0 and len(counts) == tickets and claimed == tickets
    print("  every ticket claimed exactly once" if ok else "  FAILED: not every ticket claimed exactly once")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", help="URL of an EMPTY PostgreSQL database")
    ap.add_argument("--sqlite", action="store_true", help="run on a temporary SQLite file")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--tickets", type=int, default=5000)
    args = ap.parse_args()
    if not args.pg and not args.sqlite:
        ap.error("give --pg URL and/or --sqlite")
    code = 0
    if args.pg:
        code |= run(args.pg, args.agents, args.tickets)
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            code |= run(f"sqlite:///{tmp}/claims.db", args.agents, args.tickets)
    return code


if __name__ == "__main__":
    sys.exit(main())
