"""Triage benchmark: `inbox list / list --status open --channel instagram / show / search` on a large
store, against the floor any store command pays (`python -c "import sqlmodel"`), same run.

    .venv/bin/python bench/triage.py                       # SQLite, 1M messages / 200k tickets
    .venv/bin/python bench/triage.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/triage.py --tickets 20000 --messages 100000 --runs 3   # quick

The store is generated with bulk inserts (SQLite executemany in one transaction; PostgreSQL COPY),
the schema and indexes come from the real migrations. Each command is a fresh subprocess (wall
time, median of --runs after one warm-up). Goal: every ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS_ID = (
    "halo kak pesanan saya belum sampai sudah lima hari tolong dicek refund dana kembali pembayaran gagal saldo terpotong "
    "akun diblokir kenapa ya mohon bantuannya penjual tidak merespon barang rusak tidak sesuai pembatalan batal kurir resi"
).split()
WORDS_EN = (
    "hi my order has not arrived yet please check refund money back payment failed charged twice account blocked why "
    "seller not responding item damaged wrong size cancel cancellation courier tracking number thanks"
).split()
RARE_WORD = "kadaluarsa"  # in about 0.2% of messages: the search benchmark's WORD
CHANNELS = (("instagram", "tokoshop-ig", "17841400000000001"), ("facebook", "tokoshop-fb", "104920378912345"), ("x", "tokoshop-x", "1500000000000000001"))
STATUSES = ("new",) * 3 + ("open",) * 2 + ("pending",) + ("resolved",) * 3 + ("closed",)
PRIORITIES = (("urgent", 0),) + (("high", 1),) * 3 + (("normal", 2),) * 5 + (("low", 3),)


def text_for(rng: random.Random) -> str:
    words = WORDS_ID if rng.random() < 0.6 else WORDS_EN
    parts = rng.choices(words, k=rng.randint(5, 18))
    if rng.random() < 0.15:
        parts.insert(rng.randint(0, len(parts)), f"INV/2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}/MPL/{rng.randint(10**9, 10**10 - 1)}")
    if rng.random() < 0.002:
        parts.insert(rng.randint(0, len(parts)), RARE_WORD)
    return " ".join(parts)


def generate(url: str, n_tickets: int, n_messages: int, seed: int = 1) -> int:
    """Fill an empty store; returns the id of a ticket to `show`."""
    from inbox.store import open_store
    from inbox.store.engine import is_sqlite

    engine = open_store(url)
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    per = max(1, n_messages // n_tickets)
    accounts, contacts, convs, tickets, messages = [], [], [], [], []
    for i, (ch, name, pid) in enumerate(CHANNELS, start=1):
        accounts.append((i, name, ch, pid, now))
    mid = 0
    for tid in range(1, n_tickets + 1):
        acc = rng.randint(1, 3)
        ch = CHANNELS[acc - 1][0]
        created = now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))
        status = rng.choice(STATUSES)
        prio, rank = rng.choice(PRIORITIES)
        assignee = None if status == "new" else f"agent{rng.randint(1, 40)}"
        handle = f"cust{tid}"
        contacts.append((tid, ch, acc, f"u{tid}", handle, f"Customer {tid}", now))
        n = per + (1 if tid <= n_messages - per * n_tickets else 0)
        first_text = last_text = ""
        last_in = created
        for k in range(n):
            mid += 1
            sent = created + timedelta(minutes=3 * k)
            direction = "out" if k % 3 == 2 else "in"
            text = text_for(rng)
            if k == 0:
                first_text = text
            if direction == "in":
                last_text, last_in = text, sent
            messages.append((mid, ch, acc, f"m{mid}", tid, tid, tid, direction, f"u{tid}" if direction == "in" else "brand", handle,
                             text, "text", sent, now))
        due = created + timedelta(minutes={"urgent": 30, "high": 60, "normal": 240, "low": 1440}[prio])
        responded = created + timedelta(minutes=rng.randint(5, 600)) if status != "new" else None
        tickets.append((tid, status, prio, rank, assignee, ch, acc, tid, first_text[:200], last_text[:200], n, created, last_in,
                        last_in, due, responded, created + timedelta(days=3)))
        convs.append((tid, ch, acc, f"t{tid}", tid, tid, last_in, last_in, created))
    if is_sqlite(engine):
        _load_sqlite(engine, accounts, contacts, tickets, convs, messages)
    else:
        _load_pg(engine, accounts, contacts, tickets, convs, messages)
    engine.dispose()
    return max(1, n_tickets // 2)


def _sqlite_ts(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") if dt else None


def _load_sqlite(engine, accounts, contacts, tickets, convs, messages) -> None:  # type: ignore[no-untyped-def]
    ts = _sqlite_ts
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("BEGIN")
        cur.executemany("INSERT INTO account (id, name, channel, platform_id, created_at, needs_reauth) VALUES (?,?,?,?,?,0)",
                        [(a[0], a[1], a[2], a[3], ts(a[4])) for a in accounts])
        cur.executemany("INSERT INTO contact (id, channel, account_id, platform_user_id, handle, name, created_at) VALUES (?,?,?,?,?,?,?)",
                        [(*c[:6], ts(c[6])) for c in contacts])
        cur.executemany(
            "INSERT INTO ticket (id, status, priority, priority_rank, assignee, channel, account_id, contact_id, subject, snippet, "
            "message_count, created_at, updated_at, last_customer_message_at, first_response_due_at, first_response_at, "
            "escalation_due_at, reopened_count, has_gap) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0)",
            [(*t[:11], ts(t[11]), ts(t[12]), ts(t[13]), ts(t[14]), ts(t[15]), ts(t[16])) for t in tickets])
        cur.executemany("INSERT INTO conversation (id, channel, account_id, external_id, contact_id, ticket_id, last_message_at, "
                        "last_customer_message_at, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        [(*c[:6], ts(c[6]), ts(c[7]), ts(c[8])) for c in convs])
        cur.executemany(
            "INSERT INTO message (id, channel, account_id, external_id, conversation_id, ticket_id, contact_id, direction, author_id, "
            "author_handle, text, kind, sent_at, received_at, attachments, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'[]','{}')",
            [(*m[:12], ts(m[12]), ts(m[13])) for m in messages])
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def _load_pg(engine, accounts, contacts, tickets, convs, messages) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            # The full-text index is built once after the load (much faster than per row).
            cur.execute("DROP INDEX IF EXISTS ix_message_text_fts")
            specs = [
                ("account (id, name, channel, platform_id, created_at, needs_reauth)", [(*a, False) for a in accounts]),
                ("contact (id, channel, account_id, platform_user_id, handle, name, created_at)", contacts),
                ("ticket (id, status, priority, priority_rank, assignee, channel, account_id, contact_id, subject, snippet, message_count, "
                 "created_at, updated_at, last_customer_message_at, first_response_due_at, first_response_at, escalation_due_at, "
                 "reopened_count, has_gap)", [(*t, 0, False) for t in tickets]),
                ("conversation (id, channel, account_id, external_id, contact_id, ticket_id, last_message_at, last_customer_message_at, "
                 "created_at)", convs),
                ("message (id, channel, account_id, external_id, conversation_id, ticket_id, contact_id, direction, author_id, "
                 "author_handle, text, kind, sent_at, received_at, attachments, raw)", [(*m, "[]", "{}") for m in messages]),
            ]
            for target, rows in specs:
                with cur.copy(f"COPY {target} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            from importlib import import_module

            ddl = import_module("inbox.store.migrations.versions.0002_message_search")
            cur.execute(f"CREATE INDEX ix_message_text_fts ON message USING gin ({ddl.PG_TSVECTOR})")
            for table in ("account", "contact", "ticket", "conversation", "message"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        raw.autocommit = True
        with raw.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        raw.autocommit = False


def timed(cmd: list[str], env: dict[str, str], runs: int, warm: bool = True) -> float:
    if warm:
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return statistics.median(times)


def measure(url: str, show_id: int, runs: int, workdir: Path) -> dict[str, float]:
    cfg = workdir / "bench.toml"
    cfg.write_text(f'database = "{url}"\n', encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    inbox = [str(Path(sys.executable).parent / "inbox"), "-c", str(cfg)]
    cases = {
        "import sqlmodel (floor)": [sys.executable, "-c", "import sqlmodel"],
        "inbox list": [*inbox, "list"],
        "inbox list --status open --channel instagram": [*inbox, "list", "--status", "open", "--channel", "instagram"],
        f"inbox show {show_id}": [*inbox, "show", str(show_id), "--no-pager"],
        f"inbox search {RARE_WORD}": [*inbox, "search", RARE_WORD],
    }
    if not url.startswith("sqlite"):
        # For reference: the floor plus the PostgreSQL driver every PostgreSQL command also imports.
        cases["import sqlmodel + psycopg (reference)"] = [sys.executable, "-c", "import sqlmodel, psycopg, sqlalchemy.dialects.postgresql.psycopg"]
    # Measure in rounds, each command once per round, so machine noise hits every command alike.
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for name, cmd in cases.items():
        timed(cmd, env, 1)  # warm-up (and the first-use schema check)
    for _ in range(runs):
        for name, cmd in cases.items():
            samples[name].append(timed(cmd, env, 1, warm=False))
    return {name: statistics.median(v) for name, v in samples.items()}


def report(label: str, results: dict[str, float]) -> dict[str, float]:
    floor = results["import sqlmodel (floor)"]
    print(f"\n{label}")
    ratios = {}
    ref = results.get("import sqlmodel + psycopg (reference)")
    for name, seconds in results.items():
        ratio = seconds / floor
        ratios[name] = ratio
        flag = "" if name.startswith("import") else ("  ok" if ratio <= 1.5 else "  OVER 1.5x")
        if ref and not name.startswith("import"):
            flag += f"   ({seconds / ref:4.2f}x the floor with the driver)"
        print(f"  {name:<50} {seconds * 1000:7.0f} ms  {ratio:4.2f}x{flag}")
    return ratios


def _count_tickets(url: str) -> int:
    import sqlalchemy as sa

    from inbox.store import open_store

    engine = open_store(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM ticket")).scalar() or 0)
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickets", type=int, default=200_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", help="PostgreSQL URL of a database to fill when empty, reused otherwise (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/bench)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--keep", help="Directory to keep the SQLite store in (reused when it exists)")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON at the end")
    args = ap.parse_args()
    # Like-for-like with the floor, whose site-packages were byte-compiled at install: give the
    # project's own modules their bytecode too (an editable install under PYTHONDONTWRITEBYTECODE
    # would otherwise recompile them from source on every command).
    import compileall

    for target in ("cli.py", "commands", "connectors", "inbox", "sandbox"):
        path = ROOT / target
        (compileall.compile_file if path.is_file() else compileall.compile_dir)(str(path), quiet=2)
    summary: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.no_sqlite:
            db = work / "bench.db"
            url = f"sqlite:///{db}"
            show_id = max(1, args.tickets // 2)
            if not db.exists():
                t0 = time.perf_counter()
                show_id = generate(url, args.tickets, args.messages)
                print(f"SQLite store: {args.tickets:,} tickets, {args.messages:,} messages generated in {time.perf_counter() - t0:.1f} s")
            summary["sqlite"] = report("SQLite", measure(url, show_id, args.runs, work))
        if args.pg:
            show_id = max(1, args.tickets // 2)
            if _count_tickets(args.pg):
                print("PostgreSQL store: reusing the tickets already there")
            else:
                t0 = time.perf_counter()
                show_id = generate(args.pg, args.tickets, args.messages)
                print(f"PostgreSQL store: {args.tickets:,} tickets, {args.messages:,} messages generated in {time.perf_counter() - t0:.1f} s")
            summary["postgresql"] = report("PostgreSQL", measure(args.pg, show_id, args.runs, work))
    if args.json:
        print(json.dumps(summary, indent=2))
    worst = max((r for s in summary.values() for n, r in s.items() if not n.startswith("import")), default=0)
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
