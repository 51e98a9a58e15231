"""Ingest benchmark: `ingest_page` vs a raw `sqlite3.executemany` of the same rows.

Generates N normalized messages (default 200k) over three accounts (Messenger, Instagram, X) with
realistic structure: customers with threads of 1-20 messages, brand replies (echoes) in between,
invoice numbers, a few customers on two channels; pages of `--page-size` messages per account in
time order, 10% of every page re-delivered from the page before (overlap, as polling does).

Both sides store the same delivered rows (duplicates included) into SQLite files with the same
pragmas (WAL, synchronous=NORMAL) and the same unique key, one transaction per page, in the same
process. The baseline does nothing but `INSERT OR IGNORE` of flat tuples; `ingest_page` also
upserts contacts and conversations, runs dedup, creates tickets with triage and SLA clocks,
counters, events and the cursor.

    .venv/bin/python bench/ingest.py [--messages 200000] [--page-size 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.base import InboundMessage, Page, Participant  # noqa: E402
from connectors.enums import Channel, Direction, MessageKind  # noqa: E402
from sandbox.large import BRAND, CUSTOMER, LAST  # noqa: E402  (the one text corpus)
from sandbox.large import FIRST as NAMES  # noqa: E402

T0 = datetime(2026, 10, 27, tzinfo=timezone.utc)
ACCOUNTS = (("bench-fb", Channel.FACEBOOK, "104920378912345"), ("bench-ig", Channel.INSTAGRAM, "17841400000000001"), ("bench-x", Channel.X, "1500000000000000001"))


CPU: dict[str, float] = {}  # the last run's CPU seconds per side (time.process_time)


def generate(n: int, seed: int = 7) -> dict[str, list[InboundMessage]]:
    """n messages over the three accounts, per account in time order."""
    rng = random.Random(seed)
    out: dict[str, list[InboundMessage]] = {name: [] for name, _c, _p in ACCOUNTS}
    span = 29 * 86400
    made = 0
    serial = 0
    while made < n:
        name, channel, acc_id = ACCOUNTS[rng.randrange(3)]
        serial += 1
        first = f"{NAMES[rng.randrange(len(NAMES))]} {LAST[rng.randrange(len(LAST))]}"
        cust = Participant(f"u{serial}", handle=f"{first.split()[0].lower()}{serial}", name=first)
        brand = Participant(acc_id, name="TokoShop")
        thread = f"{channel.value[:2]}-t{serial}"
        inv = f"INV/202611{rng.randrange(1, 26):02d}/MPL/{rng.randrange(10**9, 10**10)}"
        t = rng.uniform(0, span)
        for _ in range(min(n - made, rng.randint(1, 20))):
            t += rng.uniform(30, 3600)
            out_dir = rng.random() < 0.3
            tpl = (BRAND if out_dir else CUSTOMER)[rng.randrange(3 if out_dir else len(CUSTOMER))]
            text = tpl.format(inv=inv, d=rng.randrange(2, 15), amt=f"{rng.randrange(20, 3000)}.000")
            made += 1
            eid = f"{'m_' if channel is not Channel.X else ''}{made:09d}{rng.randrange(10**6):06d}"
            out[name].append(
                InboundMessage(
                    channel=channel,
                    account_id=acc_id,
                    external_id=eid,
                    thread_id=thread,
                    direction=Direction.OUT if out_dir else Direction.IN,
                    author=brand if out_dir else cust,
                    customer=cust,
                    text=text,
                    kind=MessageKind.TEXT,
                    sent_at=T0 + timedelta(seconds=t),
                    raw={"id": eid, "created_time": (T0 + timedelta(seconds=t)).isoformat(), "message": text, "from": {"id": (brand if out_dir else cust).id}},
                )
            )
    for msgs in out.values():
        msgs.sort(key=lambda m: m.sent_at)
    return out


def pages(msgs: list[InboundMessage], size: int, redeliver: float = 0.10) -> list[list[InboundMessage]]:
    """Pages of `size` new messages plus `redeliver` x size re-delivered from the page before."""
    out = []
    prev: list[InboundMessage] = []
    for i in range(0, len(msgs), size):
        chunk = msgs[i : i + size]
        again = prev[-int(len(chunk) * redeliver) :] if prev and redeliver else []
        out.append(again + chunk)
        prev = chunk
    return out


def flat(m: InboundMessage, account_db_id: int) -> tuple:
    return (
        m.channel.value, account_db_id, m.external_id, m.thread_id, m.direction.value, m.author.id, m.author.handle,
        m.author.name, m.text, m.kind.value, m.sent_at.isoformat(), json.dumps(dict(m.raw)),
    )


def bench_raw(path: str, all_pages: dict[str, list[list[InboundMessage]]]) -> tuple[float, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE message (id INTEGER PRIMARY KEY, channel TEXT, account_id INTEGER, external_id TEXT, thread TEXT,"
        " direction TEXT, author_id TEXT, author_handle TEXT, author_name TEXT, text TEXT, kind TEXT, sent_at TEXT, raw TEXT,"
        " UNIQUE (channel, account_id, external_id))"
    )
    sql = "INSERT OR IGNORE INTO message (channel, account_id, external_id, thread, direction, author_id, author_handle, author_name, text, kind, sent_at, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    cpu = time.process_time()
    start = time.perf_counter()
    delivered = 0
    for acc_no, (_name, pgs) in enumerate(all_pages.items(), 1):
        for page in pgs:
            db.execute("BEGIN")
            db.executemany(sql, [flat(m, acc_no) for m in page])
            db.execute("COMMIT")
            delivered += len(page)
    elapsed = time.perf_counter() - start
    CPU["raw"] = time.process_time() - cpu
    stored = db.execute("SELECT count(*) FROM message").fetchone()[0]
    db.close()
    return elapsed, stored


def bench_ingest(
    url: str, all_pages: dict[str, list[list[InboundMessage]]], *, without_fts: bool = False, around: Any = None
) -> tuple[float, dict[str, int]]:
    from sqlmodel import Session

    from inbox.settings import Settings
    from inbox.store import open_store
    from inbox.ingest.page import IngestResult, account_ref, ingest_page
    from inbox.store.models import Account

    engine = open_store(url)
    if without_fts:
        # Attribution only: how much of the cost is the search index's triggers (inbox/search.py).
        with engine.begin() as conn:
            for name in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'message_fts%'").scalars().all():
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    settings = Settings()
    refs = {}
    with Session(engine) as s:
        for name, channel, pid in ACCOUNTS:
            acc = Account(name=name, channel=channel.value, platform_id=pid)
            s.add(acc)
            s.commit()
            s.refresh(acc)
            refs[name] = account_ref(engine, acc)
    total = IngestResult()
    with around(engine) if around is not None else contextlib.nullcontext():
        cpu = time.process_time()
        start = time.perf_counter()
        for name, pgs in all_pages.items():
            for i, page in enumerate(pgs):
                total = total + ingest_page(engine, refs[name], Page(tuple(page), cursor={"page": i}), settings)
        elapsed = time.perf_counter() - start
    CPU["ingest"] = time.process_time() - cpu  # the process's: the WAL checkpoint thread counts too
    engine.dispose()
    return elapsed, total.counts()


def sql_floor(tmp: str, all_pages: dict[str, list[list[InboundMessage]]], runs: int) -> tuple[float, int]:
    """Seconds SQLite alone takes for the ingest's statements (bench/sql_floor.py), the minimum of
    `runs` replays, each on a fresh copy of the store as the ingest found it; and their count."""
    import sql_floor

    from inbox.store.engine import WRITER_PRAGMAS

    sql_floor.install()
    start = os.path.join(tmp, "floor-start.db")
    recorded: list[Any] = []

    def copy(src_path: str, dst_path: str) -> None:
        src, dst = sqlite3.connect(src_path), sqlite3.connect(dst_path)
        src.backup(dst)
        src.close()
        dst.close()

    @contextlib.contextmanager
    def around(engine: Any) -> Any:
        copy(engine.url.database, start)  # schema and accounts, before the first page
        with sql_floor.record() as ops:
            yield
        recorded.extend(ops)

    bench_ingest(f"sqlite:///{os.path.join(tmp, 'floor.db')}", all_pages, around=around)
    pragmas = ("busy_timeout=30000", "journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", *WRITER_PRAGMAS)
    times = []
    for run in range(runs):
        path = os.path.join(tmp, f"floor-replay-{run}.db")
        copy(start, path)
        times.append(sql_floor.replay(recorded, path, pragmas))
    return min(times), sum(1 for kind, _sql, _p in recorded if kind in "xm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--page-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=1, help="runs of both sides; the minimum of each is reported")
    ap.add_argument("--attribute", action="store_true", help="also run without the search index's triggers, to show their share")
    ap.add_argument("--floor", action="store_true", help="also replay the ingest's own SQL alone, to split its time into SQLite's and Python's")
    args = ap.parse_args()

    t = time.perf_counter()
    data = generate(args.messages, args.seed)
    all_pages = {name: pages(msgs, args.page_size) for name, msgs in data.items()}
    delivered = sum(len(p) for pgs in all_pages.values() for p in pgs)
    print(f"generated {args.messages:,} messages, {delivered:,} delivered in {sum(len(p) for p in all_pages.values()):,} pages "
          f"of {args.page_size} (+10% re-delivered) in {time.perf_counter() - t:.1f}s")

    walls: dict[str, list[float]] = {"raw": [], "ingest": []}
    cpus: dict[str, list[float]] = {"raw": [], "ingest": []}
    bare_s = floor_s = None
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            raw_s, raw_stored = bench_raw(os.path.join(tmp, "raw.db"), all_pages)
            ing_s, counts = bench_ingest(f"sqlite:///{os.path.join(tmp, 'inbox.db')}", all_pages)
            if args.attribute and run == 0:
                bare_s = bench_ingest(f"sqlite:///{os.path.join(tmp, 'nofts.db')}", all_pages, without_fts=True)[0]
            if args.floor and run == args.runs - 1:  # last: the recording connections stay for the process
                floor_s, statements = sql_floor(tmp, all_pages, args.runs)
        assert raw_stored == counts["new_messages"] == args.messages, "both sides must store every message exactly once"
        for side, wall in (("raw", raw_s), ("ingest", ing_s)):
            walls[side].append(wall)
            cpus[side].append(CPU[side])
        if args.runs > 1:
            print(f"run {run + 1}: raw {raw_s:.2f}s (CPU {CPU['raw']:.2f}s), ingest_page {ing_s:.2f}s (CPU {CPU['ingest']:.2f}s) "
                  f"-> {raw_s / ing_s:.3f}x")
    # The minimum of each side over the runs: on a shared machine, load only ever adds time.
    raw_s, ing_s = min(walls["raw"]), min(walls["ingest"])
    raw_rate, ing_rate = delivered / raw_s, delivered / ing_s
    print(f"raw sqlite3.executemany : {raw_rate:10,.0f} rows/s  ({raw_s:.2f}s, CPU {min(cpus['raw']):.2f}s, {raw_stored:,} stored)")
    print(f"inbox ingest_page       : {ing_rate:10,.0f} rows/s  ({ing_s:.2f}s, CPU {min(cpus['ingest']):.2f}s, {counts['new_messages']:,} stored, "
          f"{counts['duplicates']:,} duplicates skipped, {counts['new_tickets']:,} tickets, {counts['echoes']:,} echoes, "
          f"{counts['attached']:,} attached, {counts['flagged']:,} flagged)")
    ratio = ing_rate / raw_rate
    best = "" if args.runs == 1 else f" (minimum of {args.runs} runs each side)"
    print(f"ratio ingest/raw        : {ratio:.3f}x{best}  (goal >= 0.25x) {'OK' if ratio >= 0.25 else 'BELOW GOAL'}; "
          f"CPU {min(cpus['raw']) / min(cpus['ingest']):.3f}x")
    if bare_s is not None:
        print(f"without FTS triggers    : {delivered / bare_s:10,.0f} rows/s  ({bare_s:.2f}s) -> ratio {delivered / bare_s / raw_rate:.3f}x; "
              f"the message_fts index costs {ing_s - bare_s:.2f}s of {ing_s:.2f}s")
    if floor_s is not None:
        print(f"its SQL alone, replayed : {floor_s:.2f}s (minimum of {args.runs}) for {statements:,} statements = {floor_s / raw_s:.2f}x the raw side's time; "
              f"the rest of ingest_page (Python: decisions, rows, SQLAlchemy) {ing_s - floor_s:.2f}s = {(ing_s - floor_s) / raw_s:.2f}x; "
              f"the goal allows {1 / 0.25:.0f}x in all")


if __name__ == "__main__":
    main()
