"""X economy benchmark: what a day of polling one X account costs when X bills every DM event read.

24 simulated hours (`--hours`) of `sync_account` (what `inbox sync` and each `inbox run` job do)
against the sandbox, one pass every `--interval` seconds (default: the account's configured
interval), while customers write about `--per-day` DMs (default 200) in bursts: a few dozen bursts a
day of geometric size (mean 4), now and then a larger one (a campaign, 20-60 DMs within minutes),
more by day than at night (UTC+7). The sandbox clock is moved forward (`advance`), so the day takes
about a minute. The sandbox meters what X would bill (`sandbox.x_rates.ReadMeter`): every event a
lookup returns, and each event once per UTC day (X's same-day de-duplication).

Reported: new DMs, lookups, events read per new event (goal <= 1.2), the same as billed with the
de-duplication, estimated cost (`x_cost_per_read`), the most lookups in any 15-minute window (X allows
15), the steady state (passes that found nothing new: lookups and events each), and the check that
every DM sent is stored once and that the store's count of events read (`account_usage`) agrees
with the sandbox's. `--baseline` asks for 100 events on every lookup, as the connector did before it
sized `max_results` (same arrivals, same seed), so one run can show both.

    .venv/bin/python bench/x_economy.py [--hours 24] [--per-day 200] [--interval 120] [--seed 7] [--baseline] [--lag-seconds 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACCOUNT = "tokoshop-x"
DAY = 86_400.0


def arrivals(rng: random.Random, hours: float, per_day: float) -> list[float]:
    """Seconds from the start at which a DM arrives: bursts, heavier by day, about `per_day` a day."""
    span = hours * 3600
    target = per_day * span / DAY
    times: list[float] = []
    while len(times) < target:
        t = rng.uniform(0, span)
        local_hour = (t / 3600 + 7) % 24  # the care desk's customers are in UTC+7
        if rng.random() > (1.0 if 8 <= local_hour < 23 else 0.25):
            continue  # fewer bursts at night
        size = rng.randint(20, 60) if rng.random() < 0.05 else 1 + int(math.log(1 - rng.random()) / math.log(0.75))
        spread = rng.uniform(30, 900)  # a burst lasts from half a minute to a quarter of an hour
        times.extend(t + rng.uniform(0, spread) for _ in range(size))
    return sorted(x for x in times if x < span)[: int(round(target))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import sqlalchemy as sa

    from datetime import timedelta

    import connectors.x as xconn
    from inbox.settings import interval_for, parse_settings
    from inbox.store import open_store
    from inbox.store.models import AccountUsage, Message
    from inbox.sync.account import SyncStatus, sync_account
    import time_machine

    from sandbox import Sandbox

    if args.lag_seconds is not None:  # how long the connector re-reads the stored events near the newest
        xconn.LAG = timedelta(seconds=args.lag_seconds)
    if args.baseline:  # before: max_results=100 on every lookup
        xconn.first_page_size = lambda recent, cap, **_: cap  # type: ignore[assignment]
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="x-economy-")
    # No X budget in the sandbox: its reset times run on the advanced sandbox clock, which the
    # connector's budget (real clock) cannot follow; the 15-minute windows are counted below instead.
    # This process's clock moves with the sandbox's (leases, and the connector's "is the newest stored
    # event recent" test), as in tests/loop_machine.py.
    traveller = time_machine.travel(time.time(), tick=True)
    ours = traveller.start()
    with Sandbox(seed=args.seed, x_rate_limit=10**9) as sb:

        def advance(seconds: float) -> None:
            sb.advance(seconds)
            ours.shift(timedelta(seconds=seconds))

        for k, v in sb.env().items():
            os.environ[k] = v
        db = f"sqlite:///{tmp}/x.db"
        settings = parse_settings(tomllib.loads(sb.config_toml(database=db)), "sandbox")
        account = settings.account(ACCOUNT)
        interval = args.interval or interval_for(settings, account)
        engine = open_store(db)
        meter = sb.rates.reads
        user = sb.accounts[ACCOUNT].platform_id
        first = sync_account(engine, settings, account)  # the backfill of the seeded month: not measured
        assert first.status == SyncStatus.OK, first.error
        base = meter.snapshot(user)
        usage_base = _usage_total(engine, sa, AccountUsage)
        start = sb.state.now()
        customers: list[str] = []
        sent: list[str] = []
        when = arrivals(rng, args.hours, args.per_day)
        polls: list[dict[str, int]] = []
        lookup_times: list[float] = []
        elapsed = 0.0
        clock = time.perf_counter()
        i = 0
        while elapsed + interval <= args.hours * 3600 + 1e-6:
            elapsed += interval
            new_now = 0
            while i < len(when) and when[i] <= elapsed:
                advance(start + when[i] - sb.state.now())
                thread = rng.choice(customers) if customers and rng.random() < 0.6 else None
                mid = sb.inject(ACCOUNT, text=f"Kak, pesanan INV/20261120/MPL/{rng.randrange(10**10):010d} belum sampai", thread=thread)
                sent.append(mid)
                if thread is None:
                    customers.append(sb.threads(ACCOUNT)[0])
                new_now += 1
                i += 1
            advance(start + elapsed - sb.state.now())
            before = meter.snapshot(user)
            res = sync_account(engine, settings, account)
            after = meter.snapshot(user)
            if res.status != SyncStatus.OK:
                raise SystemExit(f"pass at {elapsed / 3600:.2f} h: {res.status}: {res.error}")
            lookups = after["lookups"] - before["lookups"]
            lookup_times.extend([sb.state.now()] * lookups)
            polls.append({"new": new_now, "stored": res.counts.new_messages, "lookups": lookups,
                          "events": after["events"] - before["events"], "billed": after["billed"] - before["billed"]})
        wall = time.perf_counter() - clock
        end = meter.snapshot(user)
        with engine.connect() as conn:
            m = Message.__table__
            stored = {r[0]: r[1] for r in conn.execute(
                sa.select(m.c.external_id, sa.func.count()).where(m.c.external_id.in_(sent)).group_by(m.c.external_id))}
        usage_read = _usage_total(engine, sa, AccountUsage) - usage_base
    traveller.stop()
    new = len(sent)
    events = end["events"] - base["events"]
    billed = end["billed"] - base["billed"]
    lookups = end["lookups"] - base["lookups"]
    idle = [p for p in polls if p["new"] == 0 and p["stored"] == 0]
    cost = account.x_cost_per_read
    return {
        "rule": "baseline: max_results=100 on every lookup" if args.baseline else "sized: max_results from what is likely new",
        "lag_seconds": xconn.LAG.total_seconds(),
        "hours": args.hours, "interval_seconds": interval, "passes": len(polls), "new_dms": new,
        "lookups": lookups, "lookups_per_pass": round(lookups / max(1, len(polls)), 3),
        "events_read": events, "events_read_per_new": round(events / max(1, new), 3),
        "billed_events": billed, "billed_per_new": round(billed / max(1, new), 3),
        "est_cost_usd": round(events * cost, 2), "est_cost_billed_usd": round(billed * cost, 2),
        "max_lookups_in_15_min": _max_in_window(lookup_times, 900.0),
        "idle_passes": len(idle),
        "idle_lookups_each": round(sum(p["lookups"] for p in idle) / max(1, len(idle)), 3),
        "idle_events_each": round(sum(p["events"] for p in idle) / max(1, len(idle)), 3),
        "busiest_pass_new": max((p["new"] for p in polls), default=0),
        "missing": sum(1 for mid in sent if mid not in stored), "stored_twice": sum(1 for n in stored.values() if n > 1),
        "store_count_agrees": usage_read == events, "wall_seconds": round(wall, 1),
    }


def _usage_total(engine: Any, sa: Any, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(model.__table__.c.events_read), 0))).scalar())


def _max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--per-day", type=float, default=200.0)
    ap.add_argument("--interval", type=int, default=None, help="seconds between passes (default: the account's interval)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline", action="store_true", help="max_results=100 on every lookup (the rule before sizing)")
    ap.add_argument("--lag-seconds", type=float, default=None,
                    help="the connector's LAG (default 600): how long after activity a pass re-reads the events near the newest")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the sync's per-pass lines
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
