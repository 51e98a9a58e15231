"""Sync benchmark: `sync_all` (what `inbox sync` runs) against the sandbox vs a bare `requests` crawl
of the same pages, in the same run; peak memory at two dataset sizes.

For each size, a fresh child process:
1. starts the sandbox in its own process (its dataset must not count towards our memory) with
   the large generated dataset over the three default accounts and no X budget limit;
2. runs `sync_all` into a new SQLite file (accounts polled concurrently, in worker processes as
   `inbox sync` does; client-side pacing off: the loopback sandbox has no 2 calls/s limit), and
   samples peak memory meanwhile (PSS of this process and its workers: see `MemoryWatch`);
3. replays exactly the requests the sync made (the sandbox's call log), with one keep-alive
   `requests.Session` per account, the accounts concurrently, reading each body and nothing more.

    .venv/bin/python bench/sync.py [--sizes 50000,100000]
    .venv/bin/python bench/sync.py --shape care-desk [--conversations 500 --messages-per-thread 100
                                   --x-events-per-conversation 100 --paced]

`--shape care-desk` replaces the random dataset with a care desk's shape (`sandbox.large.build_shape`):
that many conversations on each account, Meta threads of `--messages-per-thread` messages (only the
newest 20 readable), X conversations of `--x-events-per-conversation` events. Each account kind is
synced alone (a first sync: every thread is a changed one), in a child of its own, so its wall and CPU
time are its own; per account it reports calls, calls per changed thread, wall and CPU ratio to the
bare crawl of the same GETs, and for Meta the wall time of that pass at Meta's real 2 calls/s, computed
from the call count (`--paced`: also measured, client pacing at 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SANDBOX = """
import json, sys, threading
from sandbox import Sandbox
shape = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
sb = Sandbox(seed=int(sys.argv[2]), large=int(sys.argv[1]), x_rate_limit=10**9, shape=tuple(shape) if shape else None).start()
print(json.dumps({"base_url": sb.base_url, "env": sb.env(), "config": sb.config_toml(database="sqlite:///unused.db"),
                  "tokens": {n: a.token for n, a in sb.accounts.items()}}), flush=True)
threading.Event().wait()
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def cpu_self() -> float:
    """CPU seconds of this process and of its children that have ended (the sync's worker processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


class MemoryWatch:
    """Peak memory of this process and its worker processes together, sampled every 200 ms.

    Forked workers share most of their pages with this process, so adding up their RSS would count
    those pages several times: the figure is the sum of PSS (each shared page split among the
    processes sharing it; /proc/PID/smaps_rollup, Linux). The sandbox's process is left out.
    Reading smaps_rollup walks the page tables, so sampling more often would slow the sync.
    """

    def __init__(self, exclude: int) -> None:
        import threading

        self.exclude = exclude
        self.peak_mb = 0.0
        self.peak_rss_sum_mb = 0.0
        self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pids(self) -> list[int]:
        me = os.getpid()
        kids = Path(f"/proc/{me}/task/{me}/children").read_text().split()
        return [me, *(int(k) for k in kids if int(k) != self.exclude)]

    @staticmethod
    def _rss_pss_kb(pid: int) -> tuple[int, int]:
        rss = pss = 0
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
        return rss, pss

    def _sample(self) -> None:
        pids = self._pids()
        self.workers = max(self.workers, len(pids) - 1)
        sizes = [self._rss_pss_kb(p) for p in pids]
        self.peak_mb = max(self.peak_mb, sum(pss for _rss, pss in sizes) / 1024)
        # Upper bound: every shared page counted once per process that maps it.
        self.peak_rss_sum_mb = max(self.peak_rss_sum_mb, sum(rss for rss, _pss in sizes) / 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


META_PACE = 0.5  # seconds between calls: Meta's 2 calls/s per Page / IG account


def store_floor(synced: str, fresh: str) -> tuple[float, int]:
    """Seconds to write the rows the sync stored into a new store of the same schema (its indexes,
    constraints and full-text index), one `executemany` per table in one transaction, the full-text
    index filled in one statement as the page ingest does: the store's own floor, with nothing
    parsed or decided. Returns (seconds, rows)."""
    from inbox.store import open_store

    open_store(f"sqlite:///{fresh}").dispose()
    src, dst = sqlite3.connect(synced), sqlite3.connect(fresh)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    names = [n for (n,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
             if not n.startswith(("sqlite_", "message_fts")) and n != "alembic_version"]
    # Table names come from the store's own schema (sqlite_master), never from input.
    data = {n: src.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}
    src.close()
    t0 = time.perf_counter()
    with dst:
        dst.execute("INSERT INTO message_fts_deferred (id) VALUES (1)")
        for name, rows in data.items():
            if rows:
                dst.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(rows[0]))})', rows)
        dst.execute("INSERT INTO message_fts (rowid, text) SELECT id, text FROM message")
        dst.execute("DELETE FROM message_fts_deferred")
    seconds = time.perf_counter() - t0
    dst.close()
    return seconds, sum(len(rows) for rows in data.values())


def child(size: int, seed: int, shape: list[int] | None = None, account: str | None = None,
          paced: bool = False) -> dict[str, object]:
    import requests

    from inbox.settings import parse_settings
    from inbox.store import open_store
    from inbox.sync.account import make_connector
    from inbox.sync.pool import sync_all

    argv = [sys.executable, "-c", SANDBOX, str(size), str(seed)] + ([json.dumps(shape)] if shape else [])
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        os.environ.update(info["env"])
        base = info["base_url"]
        with tempfile.TemporaryDirectory() as tmp:
            data = tomllib.loads(info["config"])
            data["database"] = f"sqlite:///{tmp}/inbox.db"
            settings = parse_settings(data, "bench.toml")
            engine = open_store(settings.database_url())

            def factory(acc):  # type: ignore[no-untyped-def]
                # What `inbox sync` uses, pacing off; `paced`: Meta's 2 calls/s on (X has no per-second pace).
                interval = META_PACE if paced and acc.channel.value != "x" else 0.0
                return make_connector(settings, acc, min_interval=interval)

            chosen = [account] if account else None
            threads = {name: len(requests.get(f"{base}/_sandbox/threads", params={"account": name}, timeout=60).json())
                       for name in (chosen or [])}

            requests.post(f"{base}/_sandbox/clear_calls", json={}, timeout=10)
            rss_before = rss_mb()
            c0, s0 = cpu_self(), cpu_of(proc.pid)
            with MemoryWatch(exclude=proc.pid) as memory:
                t0 = time.perf_counter()
                results = sync_all(engine, settings, accounts=chosen, connector_factory=factory)
                sync_s = time.perf_counter() - t0
            sync_cpu, sync_sandbox_cpu = cpu_self() - c0, cpu_of(proc.pid) - s0
            rss_after_sync = rss_mb()
            worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker (the sandbox still runs)
            engine.dispose()
            stored = sum(r.counts.new_messages for r in results)
            assert all(r.status == "ok" for r in results), [(r.account, r.status, r.error) for r in results]

            calls = requests.get(f"{base}/_sandbox/calls", timeout=60).json()  # a list; control calls are not logged
            per_account: dict[str, list[tuple[str, dict[str, str]]]] = {}
            for c in calls:
                if c["method"] == "GET":
                    per_account.setdefault(c.get("account") or "?", []).append((c["path"], c.get("query") or {}))
            tokens = info["tokens"]

            def crawl(item: tuple[str, list[tuple[str, dict[str, str]]]]) -> int:
                account, reqs = item
                token = tokens.get(account) or next(iter(tokens.values()))
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {token}"
                n = 0
                for path, query in reqs:
                    resp = session.get(base + path, params=query, timeout=30)
                    n += len(resp.content)
                session.close()
                return n

            c0, s0 = cpu_self(), cpu_of(proc.pid)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=max(1, len(per_account))) as pool:
                body_bytes = sum(pool.map(crawl, per_account.items()))
            crawl_s = time.perf_counter() - t0
            crawl_cpu, crawl_sandbox_cpu = cpu_self() - c0, cpu_of(proc.pid) - s0
            floor_s, floor_rows = store_floor(f"{tmp}/inbox.db", f"{tmp}/floor.db")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "size": size,
        "stored": stored,
        "requests": sum(len(v) for v in per_account.values()),
        "body_mb": round(body_bytes / 2**20, 1),
        "sync_s": round(sync_s, 2),
        "crawl_s": round(crawl_s, 2),
        "ratio": round(sync_s / crawl_s, 2),
        "floor_s": round(floor_s, 3),
        "floor_rows": floor_rows,
        # CPU seconds (user + system): ours and the sandbox's, during each phase. On a machine with
        # fewer cores than busy processes, the wall time cannot drop below their sum / cores.
        "sync_cpu_s": round(sync_cpu, 2),
        "sync_sandbox_cpu_s": round(sync_sandbox_cpu, 2),
        "crawl_cpu_s": round(crawl_cpu, 2),
        "crawl_sandbox_cpu_s": round(crawl_sandbox_cpu, 2),
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(rss_after_sync, 1),  # this process alone (ru_maxrss)
        "worker_rss_peak_mb": round(worker_rss, 1),
        "pss_peak_mb": round(memory.peak_mb, 1),  # this process and its worker processes together
        "rss_sum_peak_mb": round(memory.peak_rss_sum_mb, 1),  # the same, shared pages counted in every process
        "worker_processes": memory.workers,
        "per_account": {
            r.account: {"pages": r.pages, "new": r.counts.new_messages, "seconds": round(r.seconds, 2),
                        "calls": len(per_account.get(r.account, [])), "threads": threads.get(r.account)}
            for r in results
        },
    }


def run_child(size: int, seed: int, shape: list[int] | None = None, account: str | None = None,
              paced: bool = False) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", str(size), "--seed", str(seed)]
    if shape:
        argv += ["--child-shape", json.dumps(shape)]
    if account:
        argv += ["--child-account", account]
    if paced:
        argv.append("--child-paced")
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"child for size {size} {shape or ''} {account or ''} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def care_desk(shape: list[int], seed: int, paced: bool) -> None:
    conversations, per_thread, x_events = shape
    print(f"care desk: {conversations} conversations per account; Meta threads of {per_thread} messages (the newest 20 "
          f"readable); X conversations of {x_events} events; each account synced alone, a first sync (every thread changed)")
    for account in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"):
        row = run_child(0, seed, shape, account)
        acc = row["per_account"][account]
        threads = acc["threads"] or 0
        sync_cpu = row["sync_cpu_s"] + row["sync_sandbox_cpu_s"]
        crawl_cpu = row["crawl_cpu_s"] + row["crawl_sandbox_cpu_s"]
        print(f"  {account}: {acc['calls']} calls for {threads} changed threads "
              f"({_ratio(acc['calls'], threads)} per thread); {row['stored']:,} stored ({row['body_mb']} MB read)")
        print(f"      wall: sync {row['sync_s']}s vs bare crawl {row['crawl_s']}s -> {row['ratio']}x; "
              f"CPU s (ours + sandbox's): sync {row['sync_cpu_s']} + {row['sync_sandbox_cpu_s']}, crawl {row['crawl_cpu_s']} + "
              f"{row['crawl_sandbox_cpu_s']} -> {_ratio(sync_cpu, crawl_cpu)}x; peak memory {row['pss_peak_mb']} MB")
        print(f"      the store's floor: the {row['floor_rows']:,} rows it wrote, one executemany per table, take "
              f"{row['floor_s']}s alone -> {_ratio(row['floor_s'], row['crawl_s'])}x the bare crawl")
        if account != "tokoshop-x":
            at_pace = max(0, acc["calls"] - 1) * META_PACE
            per_500 = at_pace * 500 / threads if threads else 0.0
            print(f"      at Meta's 2 calls/s: {at_pace:.1f}s for this pass ({per_500:.1f}s per 500 changed threads), from the call count")
            if paced:
                measured = run_child(0, seed, shape, account, paced=True)["per_account"][account]
                print(f"      measured with pacing on: {measured['calls']} calls in {measured['seconds']}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50000,100000", help="dataset sizes (messages over the three accounts)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shape", choices=("random", "care-desk"), default="random",
                    help="random: the generated dataset of --sizes; care-desk: the shape below")
    ap.add_argument("--conversations", type=int, default=500, help="care-desk: conversations per account")
    ap.add_argument("--messages-per-thread", type=int, default=100, help="care-desk: messages per Meta thread (20 readable)")
    ap.add_argument("--x-events-per-conversation", type=int, default=100, help="care-desk: events per X conversation")
    ap.add_argument("--paced", action="store_true", help="care-desk: also measure the Meta passes at 2 calls/s")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-shape", help=argparse.SUPPRESS)
    ap.add_argument("--child-account", help=argparse.SUPPRESS)
    ap.add_argument("--child-paced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        shape = json.loads(args.child_shape) if args.child_shape else None
        print(json.dumps(child(args.child, args.seed, shape, args.child_account, paced=args.child_paced)))
        return
    if args.shape == "care-desk":
        care_desk([args.conversations, args.messages_per_thread, args.x_events_per_conversation], args.seed, args.paced)
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        row = run_child(size, args.seed)
        rows.append(row)
        print(f"{row['size']:>7,} messages: {row['stored']:,} stored via {row['requests']:,} requests ({row['body_mb']} MB); "
              f"sync {row['sync_s']}s vs bare crawl {row['crawl_s']}s -> ratio {row['ratio']}x (goal <= 1.5x); "
              f"peak memory {row['pss_peak_mb']} MB (goal <= 300 MB)")
        print(f"          memory: PSS of this process and its {row['worker_processes']} worker process(es), sampled every 200 ms; "
              f"their RSS added up (shared pages counted in each) {row['rss_sum_peak_mb']} MB; this process alone {row['rss_peak_mb']} MB RSS, "
              f"the largest worker {row['worker_rss_peak_mb']} MB RSS")
        print(f"          CPU s (ours + sandbox's): sync {row['sync_cpu_s']} + {row['sync_sandbox_cpu_s']}, "
              f"crawl {row['crawl_cpu_s']} + {row['crawl_sandbox_cpu_s']}; {os.cpu_count()} cores")
        for name, acc in row["per_account"].items():
            print(f"          {name}: {acc['pages']} pages, {acc['new']:,} new, {acc['seconds']}s")
    if len(rows) > 1:
        small, big = rows[0], rows[-1]
        growth = big["pss_peak_mb"] - small["pss_peak_mb"]
        print(f"memory: {small['pss_peak_mb']} MB at {small['size']:,} -> {big['pss_peak_mb']} MB at {big['size']:,} "
              f"({growth:+.1f} MB for {big['size'] / small['size']:.1f}x the messages)")


if __name__ == "__main__":
    main()
