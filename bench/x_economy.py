"""X economy: 24 simulated hours of polling one X account, DMs arriving in bursts; what was read.

On pay-per-use X bills every DM event a lookup returns (about $0.01), once per UTC day. The run
polls the sandbox at the account's interval on the sandbox clock (its 15-lookups-per-15-minutes
budget included) while new DMs arrive, about `--per-day` a day in bursts from one customer, and
counts: lookups, events served, events served per new event (raw, and distinct: what X bills),
and the estimated cost. The same arrivals are then polled with every lookup asking for a full page
(`max_results` = page size: the sync before sizing), as the baseline of the same run.

    .venv/bin/python bench/x_economy.py [--per-day 200] [--interval 180] [--hours 24] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.x_usage import DEFAULT_COST_PER_READ as COST  # noqa: E402

X = "tokoshop-x"


@dataclass(frozen=True, slots=True)
class Outcome:
    polls: int
    lookups: int
    new: int
    served: int
    billed: int  # distinct events served: what X bills within one UTC day
    estimate: int  # the connector's own estimate of billed events (`reads_today`)
    deferred: int  # polls stopped for the rate budget (resumed at the next poll)


def arrivals(per_day: int, hours: float, seed: int) -> list[float]:
    """Seconds from the start at which `per_day` x `hours` / 24 new DMs arrive: bursts of 1-10
    messages (about 4 on average), one customer typing them about a minute apart, each burst at a
    random time."""
    rng = random.Random(seed)
    span = hours * 3600
    total = round(per_day * hours / 24)
    out: list[float] = []
    while len(out) < total:
        at = rng.uniform(0, span)
        for _ in range(min(total - len(out), rng.choice((1, 1, 2, 3, 4, 5, 6, 8, 10)))):
            out.append(at)
            at += rng.expovariate(1 / 60)
    return sorted(min(a, span) for a in out)


def simulate(times: list[float], interval: int, hours: float, *, sized: bool) -> Outcome:
    import sqlalchemy as sa

    import connectors.x as xmod
    from inbox.config import parse_settings
    from inbox.db import open_store
    from inbox.models import Account
    from inbox.sync import make_connector, sync_account
    from sandbox import Sandbox

    real_first = xmod.first_page_size
    if not sized:
        xmod.first_page_size = lambda hint, cap: cap  # type: ignore[assignment]
        real_growth, xmod.GROWTH = xmod.GROWTH, 1
    try:
        with Sandbox(seed=7, x_rate_limit=15, x_window_seconds=900).start() as sb, tempfile.TemporaryDirectory() as tmp:
            os.environ.update(sb.env())
            data = tomllib.loads(sb.config_toml(database=f"sqlite:///{tmp}/inbox.db"))
            data["accounts"] = [a for a in data["accounts"] if a["name"] == X]
            settings = parse_settings(data, "bench.toml")
            engine = open_store(settings.database_url())
            acc = settings.account(X)

            def factory(a: Any) -> Any:
                return make_connector(settings, a, min_interval=0.0)

            def poll() -> Any:
                res = sync_account(engine, settings, acc, connector_factory=factory)
                with engine.begin() as conn:  # the sandbox's clock, not ours, says when the window resets
                    conn.execute(sa.update(Account.__table__).values(paused_until=None))
                return res

            assert poll().status == "ok"  # the backlog of the seeded account, read the day before
            with sb.state.lock:  # a new UTC day: X bills an event read yesterday again
                sb.state.x[X].served_ids.clear()
            served0, lookups0 = sb.x_events_served(X), len(sb.calls)
            start_usage = poll_usage(engine)
            pending = list(times)
            new = deferred = polls = 0
            t = 0.0
            while t + interval <= hours * 3600:
                t += interval
                sb.advance(interval)
                while pending and pending[0] <= t:
                    pending.pop(0)
                    sb.inject(X, text="Kak, pesanan saya belum sampai", customer=f"Pelanggan {new % 37}")
                    new += 1
                res = poll()
                polls += 1
                deferred += res.status != "ok"
            res = poll()  # whatever the last window deferred
            end_usage = poll_usage(engine)
            engine.dispose()
            lookups = sum(1 for c in sb.calls[lookups0:] if c.path.endswith("/dm_events"))
            return Outcome(polls=polls, lookups=lookups, new=new, served=sb.x_events_served(X) - served0,
                           billed=sb.x_events_served(X, distinct=True), estimate=end_usage - start_usage,
                           deferred=deferred)
    finally:
        xmod.first_page_size = real_first  # type: ignore[assignment]
        if not sized:
            xmod.GROWTH = real_growth


def poll_usage(engine: Any) -> int:
    """The connector's own count of billed events today, from the X account's cursor."""
    import sqlalchemy as sa

    from inbox.models import SyncState

    with engine.connect() as conn:
        cursor = conn.execute(sa.select(SyncState.__table__.c.cursor)).scalar()
    return int(((cursor or {}).get("usage") or {}).get("billed", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-day", type=int, default=200, help="new DMs a day (bursty)")
    ap.add_argument("--interval", type=int, default=180, help="seconds between polls (the config's default for X)")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    times = arrivals(args.per_day, args.hours, args.seed)
    print(f"{args.hours:g} h, a poll every {args.interval} s, {len(times)} new DMs in bursts")
    for label, sized in (("sized max_results", True), ("full pages (baseline)", False)):
        o = simulate(times, args.interval, args.hours, sized=sized)
        print(f"  {label}: {o.polls} polls, {o.lookups} lookups, {o.deferred} deferred for the rate budget; "
              f"{o.new} new events, {o.served} served = {o.served / max(1, o.new):.2f} per new event "
              f"(goal <= 1.2); distinct {o.billed} = {o.billed / max(1, o.new):.2f} per new event (what X bills within "
              f"a UTC day); estimated cost ${o.billed * COST:.2f} a day (the connector's own estimate: {o.estimate} "
              f"billed, ${o.estimate * COST:.2f})")


if __name__ == "__main__":
    main()
