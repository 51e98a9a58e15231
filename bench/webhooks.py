"""Webhook intake under a steady load: signed deliveries from a separate process into `inbox serve`.

    .venv/bin/python bench/webhooks.py --sqlite                       # 200/s for 30 s
    .venv/bin/python bench/webhooks.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/bench
    options: --rate 200 --seconds 30 --redeliver 0.05 --find-max

`inbox serve` runs as the real command in its own process (a Messenger Page and an X account
configured). A load process posts at a steady rate, each delivery one new customer's message (half
Messenger, half X Account Activity), plus a share of exact redeliveries (Meta and X retry). An
observer process reads the store every 10 ms and notes when each message becomes visible: stored
with its ticket, which is what `inbox list --json` shows (checked once at the end). Reported:
acknowledged, lost (acknowledged and never stored), duplicated (stored twice), p50 / p99 / max
latency from the POST to visible. `--find-max` then raises the rate by half the first one, in 10 s steps,
until p99 passes 1 s, and reports the highest rate that held it. The database must be empty (SQLite: a new file).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

META_SECRET, X_SECRET = "bench-meta-secret", "bench-x-secret"
PAGE_ID, X_ID = "1000000000000001", "2975699229"
ENV = {"BENCH_META_SECRET": META_SECRET, "BENCH_META_TOKEN": "bench-verify", "BENCH_X_SECRET": X_SECRET, "BENCH_TOKEN": "unused"}


def write_config(path: Path, url: str) -> None:
    path.write_text("\n".join([
        f"database = {json.dumps(url)}",
        'log_level = "WARNING"',
        "[webhooks]",
        'meta_app_secret_env = "BENCH_META_SECRET"', 'meta_verify_token_env = "BENCH_META_TOKEN"', 'x_consumer_secret_env = "BENCH_X_SECRET"',
        "[[accounts]]", 'name = "bench-fb"', 'channel = "facebook"', f'page_id = "{PAGE_ID}"', 'access_token_env = "BENCH_TOKEN"',
        # No Graph here: the conversation lookup fails at once and the threads are provisional.
        'base_url = "http://127.0.0.1:9"',
        "[[accounts]]", 'name = "bench-x"', 'channel = "x"', f'user_id = "{X_ID}"', 'access_token_env = "BENCH_TOKEN"',
    ]) + "\n", encoding="utf-8")


def delivery(i: int, now_ms: int) -> tuple[str, str, bytes, dict[str, str]]:
    """(path, message id, body, headers) of the i-th new message: even i Messenger, odd i X."""
    customer = str(3_000_000_000 + i)
    if i % 2 == 0:
        mid = f"m_bench_{i}"
        body = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": now_ms, "messaging": [{
            "sender": {"id": customer}, "recipient": {"id": PAGE_ID}, "timestamp": now_ms,
            "message": {"mid": mid, "text": f"Halo kak, pesanan INV/20261202/MPL/{i:06d} belum sampai"}}]}]}).encode()
        sig = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return "/webhooks/meta", mid, body, {"Content-Type": "application/json", "X-Hub-Signature-256": sig}
    snowflake = ((now_ms - 1288834974657) << 22) | (i & 0x3FFFFF)
    mid = str(snowflake)
    body = json.dumps({"for_user_id": X_ID, "direct_message_events": [{
        "type": "message_create", "id": mid, "created_timestamp": str(now_ms),
        "message_create": {"target": {"recipient_id": X_ID}, "sender_id": customer, "message_data": {"text": f"paket {i} belum sampai"}}}],
        "users": {customer: {"id": customer, "name": f"Pelanggan {i}", "screen_name": f"p{i}"}}}).encode()
    sig = "sha256=" + base64.b64encode(hmac.new(X_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return "/webhooks/x", mid, body, {"Content-Type": "application/json", "x-twitter-webhooks-signature": sig}


def load(base: str, rate: float, seconds: float, start_index: int, redeliver: float, out: Any) -> None:
    """The load process: posts at `rate`/s for `seconds`; sends back {mid: posted_at} and the counts."""
    import random

    import requests

    total = int(rate * seconds)
    rng = random.Random(start_index)
    posted: dict[str, float] = {}
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    nxt = [0]
    t0 = time.time() + 0.2
    replays: list[tuple[str, bytes, dict[str, str]]] = []

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                k = nxt[0]
                nxt[0] += 1
            if k >= total:
                return
            due = t0 + k / rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            i = start_index + k
            path, mid, body, headers = delivery(i, int(time.time() * 1000))
            sent = time.time()
            try:
                status = session.post(base + path, data=body, headers=headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    posted[mid] = sent
                    if rng.random() < redeliver:
                        replays.append((path, body, headers))
            if replays and rng.random() < 0.5:
                with lock:
                    replay = replays.pop() if replays else None
                if replay is not None:
                    session.post(base + replay[0], data=replay[1], headers=replay[2], timeout=30)
                    with lock:
                        statuses[-200] = statuses.get(-200, 0) + 1  # redeliveries, counted apart

    threads = [threading.Thread(target=worker) for _ in range(max(8, min(128, int(rate / 10))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"posted": posted, "statuses": statuses, "lag": time.time() - (t0 + total / rate)})


def observe(url: str, stop: Any, out: Any) -> None:
    """The observer process: when each message became visible (stored with its ticket)."""
    import sqlalchemy as sa

    from inbox.store.engine import make_engine
    from inbox.store.tables import message as m

    engine = make_engine(url)
    seen: dict[str, float] = {}
    last = 0
    while True:
        done = stop.is_set()
        with engine.connect() as conn:
            rows = conn.execute(sa.select(m.c.id, m.c.external_id).where(m.c.id > last, m.c.ticket_id.is_not(None)).order_by(m.c.id)).all()
        now = time.time()
        for r in rows:
            seen.setdefault(r.external_id, now)
            last = max(last, r.id)
        if done:
            break
        time.sleep(0.01)
    engine.dispose()
    out.put(seen)


def serve(cfg: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, **ENV}
    proc = subprocess.Popen([sys.executable, "-c", "import sys, cli; sys.exit(cli.main(['-c', sys.argv[1], 'serve', '--port', '0']))", str(cfg)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = ""
    while not line.startswith("listening on "):
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("inbox serve did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, line.split()[2]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def run(url: str, base: str, rate: float, seconds: float, start_index: int, redeliver: float) -> dict[str, Any]:
    import sqlalchemy as sa

    from inbox.store.engine import make_engine
    from inbox.store.tables import message as m

    ctx = mp.get_context("spawn")
    load_out, obs_out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    observer = ctx.Process(target=observe, args=(url, stop, obs_out))
    observer.start()
    loader = ctx.Process(target=load, args=(base, rate, seconds, start_index, redeliver, load_out))
    loader.start()
    result = load_out.get()
    loader.join()
    posted: dict[str, float] = result["posted"]
    engine = make_engine(url)
    deadline = time.time() + 60
    while time.time() < deadline:  # let the intake catch up, then stop watching
        with engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(m).where(m.c.external_id.in_(list(posted)), m.c.ticket_id.is_not(None))).scalar()
        if n >= len(posted):
            break
        time.sleep(0.1)
    time.sleep(0.05)
    stop.set()
    seen: dict[str, float] = obs_out.get()
    observer.join()
    with engine.connect() as conn:
        stored = list(conn.execute(sa.select(m.c.external_id).where(m.c.external_id.in_(list(posted)))).scalars())
    engine.dispose()
    latencies = [seen[mid] - at for mid, at in posted.items() if mid in seen]
    return {
        "rate": rate, "seconds": seconds, "acknowledged": len(posted), "statuses": result["statuses"],
        "load_lag_s": round(result["lag"], 3), "lost": len(set(posted) - set(stored)), "duplicated": len(stored) - len(set(stored)),
        "p50_ms": round(pct(latencies, 50) * 1000, 1), "p99_ms": round(pct(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
    }


def check_list(cfg: Path, expected_at_least: int) -> int:
    """`inbox list --json` shows the new tickets (one per new customer)."""
    env = {**os.environ, **ENV}
    out = subprocess.run([sys.executable, "-c", "import sys, cli; sys.exit(cli.main(['-c', sys.argv[1], 'list', '--json', '--limit', '100000']))", str(cfg)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    n = len(json.loads(out.stdout)["tickets"])
    assert n >= expected_at_least, (n, expected_at_least)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--sqlite", action="store_true")
    group.add_argument("--pg", metavar="URL")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--redeliver", type=float, default=0.05, help="share of deliveries sent again (default 0.05)")
    ap.add_argument("--find-max", action="store_true", help="then raise the rate by half of --rate (10 s steps) until p99 > 1 s")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="inbox-bench-webhooks-"))
    url = args.pg or f"sqlite:///{tmp / 'inbox.db'}"
    cfg = tmp / "inbox.toml"
    write_config(cfg, url)
    proc, base = serve(cfg)
    try:
        results = [run(url, base, args.rate, args.seconds, 0, args.redeliver)]
        print(json.dumps(results[-1]))
        index = int(args.rate * args.seconds)
        if args.find_max:
            rate, best = args.rate, args.rate if results[-1]["p99_ms"] <= 1000 and not results[-1]["lost"] else None
            while best == rate:
                rate += args.rate / 2
                r = run(url, base, rate, 10, index, args.redeliver)
                index += int(rate * 10)
                results.append(r)
                print(json.dumps(r))
                if r["p99_ms"] <= 1000 and not r["lost"] and not r["duplicated"] and r["load_lag_s"] < 1:
                    best = rate
            print(json.dumps({"highest_rate_with_p99_under_1s": best}))
        print(json.dumps({"inbox_list_tickets": check_list(cfg, results[0]["acknowledged"])}))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        print(json.dumps({"serve_exit_code": code}))


if __name__ == "__main__":
    main()
