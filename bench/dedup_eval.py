"""Dedup evaluation: a labelled set of customers, synced from the sandbox in random orders and batchings.

Builds the customers (default 320) on the sandbox's three accounts (Messenger, Instagram, X) over
real HTTP, each case labelled with the ticket its messages belong in:

- cross-invoice: one person on 2–3 channels quoting one invoice (sometimes only in a later message),
  the name written differently on each (case, accents, spacing, emoji) -> one ticket;
- cross-no-invoice: one person on 2 channels without an invoice -> two tickets by design (a display
  name is not an identity); counted as misses, so its recall shows what that rule costs;
- single, resend: one thread, sometimes the same complaint sent again in chat style -> one ticket;
- generic-name: different people with a common Indonesian name and the same generic complaint on
  different channels -> never grouped;
- quoted-invoice: someone quoting another customer's invoice -> never grouped with that customer;
- resolved-long-ago: a thread whose ticket was resolved weeks ago writes again -> a new ticket.

Then, `--runs` times, a fresh store syncs it: in 1–3 syncs (cut by time), accounts in a random
order, random page sizes, the fetched pages of all accounts interleaved at random and runs of
consecutive pages of one account stored in one transaction (`merge_pages`), as `inbox sync` does
while the write lock is busy. Per case type it reports precision and recall of grouping (pairs of
messages that should share a ticket) and their spread across the runs.

    .venv/bin/python bench/dedup_eval.py [--customers 320] [--runs 10] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from inbox import accounts as accounts_mod  # noqa: E402
from inbox.settings import parse_settings  # noqa: E402
from inbox.store import open_store  # noqa: E402
from inbox.ingest.page import ingest_page  # noqa: E402
from inbox.store.models import Message, Ticket  # noqa: E402
from inbox.sync.account import make_connector, read_cursor  # noqa: E402
from inbox.sync.pipeline import make_known, merge_pages  # noqa: E402
from sandbox import Sandbox  # noqa: E402

ACCOUNTS = ("tokoshop-fb", "tokoshop-ig", "tokoshop-x")
FIRST = ("Budi", "Siti", "Agus", "Dewi", "Rina", "Eko", "Putri", "Fajar", "Nur", "Yusuf", "Maya", "Hendra", "Lina", "Ayu", "Sri", "Andi")
LAST = ("Santoso", "Wulandari", "Pratama", "Lestari", "Saputra", "Hidayat", "Kusuma", "Wijaya", "Nugroho", "Halim", "Rahayu", "Setiawan")
GENERIC = ("akun saya diblokir tolong dibantu", "saldo saya terpotong tapi pesanan gagal", "kenapa pesanan saya dibatalkan otomatis?",
           "kode OTP tidak masuk masuk dari tadi", "refund saya belum masuk sampai sekarang")
ISSUE = ("pesanan {inv} belum sampai sudah {d} hari", "refund untuk {inv} kapan masuk ya?", "barang {inv} datang rusak, mohon dibantu",
         "pembayaran {inv} gagal tapi saldo terpotong", "tolong batalkan pesanan {inv}")
CHATTY = (("belum", "blm"), ("sudah", "udh"), ("tidak", "gk"), ("saya", "sy"), ("ya", "yaaa"), ("?", "???"), ("", " kak"), ("", " 😭🙏"))
EXPECT_GROUPED = ("cross-invoice", "single", "resend")


@dataclass(frozen=True)
class Planned:
    label: str  # the ticket it belongs in
    kind: str
    account: str
    who: str  # the customer on that account (one thread per customer and account)
    person: dict[str, str]
    text: str
    minutes: float  # since the start of the set
    old: bool = False  # written before the long-ago resolution


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _spelled(first: str, last: str, account: str, rng: random.Random) -> dict[str, str]:
    """The same person as each platform shows them: Messenger a name, Instagram and X a handle."""
    style = rng.randrange(4)
    name = [f"{first} {last}", f"{first.upper()} {last}", f"{first}  {last} 🌸", f"{first[:2]}\u0301{first[2:]} {last}"][style]
    handle = [f"{first}.{last}", f"{first}_{last}", f"{first}{last}", f"{first.lower()}.{last.lower()}"][rng.randrange(4)].lower()
    if account == "tokoshop-fb":
        return {"name": name}
    if account == "tokoshop-ig":
        return {"username": handle}
    return {"name": name, "username": handle.replace(".", "_")}


def _chatty(text: str, rng: random.Random) -> str:
    for a, b in rng.sample(CHATTY, 3):
        text = text.replace(a, b, 1) if a else text + b
    return text


def plan(customers: int, seed: int) -> list[Planned]:
    rng = random.Random(seed)
    out: list[Planned] = []
    inv = itertools.count(3817260000 + seed * 100000)
    kinds = ["cross-invoice"] * 40 + ["cross-no-invoice"] * 10 + ["single"] * 20 + ["resend"] * 10 + ["generic-name"] * 8 + ["quoted-invoice"] * 6 + ["resolved-long-ago"] * 6
    t = 29.0 * 24 * 60  # minutes since the start of the set (30 days ago): the old threads sit weeks before the rest
    n = 0
    while n < customers:
        kind = rng.choice(kinds)
        n += 2 if kind in ("generic-name", "quoted-invoice") else 1
        label = f"c{n}"
        t += rng.uniform(0.5, 6)
        first, last = _name(rng)
        uniq = f"{first.lower()}{last.lower()}{n}"
        if kind == "cross-invoice":
            number = f"INV/20261120/MPL/{next(inv)}"
            accs = rng.sample(ACCOUNTS, rng.choice((2, 3)))
            issue = rng.choice(ISSUE)
            for j, acc in enumerate(accs):
                person = _spelled(first + str(n), last, acc, rng)
                at = t + j * rng.uniform(1, 90)
                if rng.random() < 0.25:  # the invoice only in a later message of that thread
                    out.append(Planned(label, kind, acc, uniq, person, "halo kak mau tanya", at))
                    at += rng.uniform(0.5, 5)
                out.append(Planned(label, kind, acc, uniq, person, _chatty(issue.format(inv=number, d=rng.randint(2, 9)), rng), at))
        elif kind == "cross-no-invoice":
            text = rng.choice(GENERIC) + f" (toko {n})"
            for j, acc in enumerate(rng.sample(ACCOUNTS, 2)):
                out.append(Planned(label, kind, acc, uniq, _spelled(first + str(n), last, acc, rng), _chatty(text, rng), t + j * 10))
        elif kind in ("single", "resend"):
            acc = rng.choice(ACCOUNTS)
            person = _spelled(first + str(n), last, acc, rng)
            text = rng.choice(ISSUE).format(inv=f"INV/20261120/MPL/{next(inv)}", d=rng.randint(2, 9)) if rng.random() < 0.5 else rng.choice(GENERIC)
            count = rng.randint(2, 4) if kind == "resend" else rng.randint(1, 3)
            for j in range(count):
                again = _chatty(text, rng) if kind == "resend" or j == 0 else rng.choice(("kak??", "tolong dibalas ya min", "sudah saya kirim fotonya"))
                out.append(Planned(label, kind, acc, uniq, person, again, t + j * rng.uniform(2, 30)))
        elif kind == "generic-name":
            text = rng.choice(GENERIC)
            a, b = rng.sample(ACCOUNTS, 2)
            for j, acc in enumerate((a, b)):
                # Two different people sharing a common name: the handles differ, the display names do not.
                person = _spelled(first, last, acc, rng)
                if "username" in person:
                    person["username"] += str(rng.randrange(10, 99)) + str(n) + str(j)
                out.append(Planned(f"{label}-{j}", kind, acc, f"{uniq}-{j}", person, text, t + j * 3))
        elif kind == "quoted-invoice":
            number = f"INV/20261120/MPL/{next(inv)}"
            a, b = rng.sample(ACCOUNTS, 2)
            other_first, other_last = _name(rng)
            out.append(Planned(f"{label}-a", kind, a, f"{uniq}-a", _spelled(first + str(n), last, a, rng), f"refund {number} belum masuk", t))
            out.append(Planned(f"{label}-b", kind, b, f"{uniq}-b", _spelled(other_first + "x" + str(n), other_last, b, rng),
                               f"saya mau komplain {number}, refund ke rekening saya ya", t + rng.uniform(1, 30)))
        else:  # resolved-long-ago: the same thread weeks apart
            acc = rng.choice(ACCOUNTS)
            person = _spelled(first + str(n), last, acc, rng)
            old_at = rng.uniform(0, 60 * 24 * 3)
            out.append(Planned(f"{label}-old", kind, acc, uniq, person, rng.choice(GENERIC), old_at, old=True))
            out.append(Planned(f"{label}-new", kind, acc, uniq, person, rng.choice(ISSUE).format(inv=f"INV/20261120/MPL/{next(inv)}", d=3), t))
    return out


def _grouping(engine: Any, ids: dict[str, str]) -> dict[str, int]:
    """Platform message id -> the ticket it ended in (following merges)."""
    t, m = Ticket.__table__, Message.__table__
    with engine.connect() as conn:
        into = dict(conn.execute(sa.select(t.c.id, t.c.merged_into_id)).all())
        rows = dict(conn.execute(sa.select(m.c.external_id, m.c.ticket_id).where(m.c.external_id.in_(list(ids)))).all())
    out = {}
    for eid, tid in rows.items():
        hops = 0
        while tid is not None and into.get(tid) and hops < 32:
            tid, hops = into[tid], hops + 1
        out[eid] = tid
    return out


def run_once(planned: list[Planned], run: int, *, quiet: bool = True) -> dict[str, dict[str, int]]:
    rng = random.Random(run)
    with tempfile.TemporaryDirectory() as tmp, Sandbox(seed=7, x_rate_limit=1_000_000).start() as sb:  # no X budget: the evaluation is not about pacing
        import os

        os.environ.update(sb.env())
        settings = parse_settings(_toml(sb.config_toml(database=f"sqlite:///{tmp}/eval.db")), "sandbox")
        engine = open_store(settings.database)
        refs = {a.name: accounts_mod.ensure_account(engine, a) for a in settings.accounts}
        by_name = {a.name: a for a in settings.accounts}
        start = datetime.fromtimestamp(sb.state.now(), timezone.utc)  # the sandbox's clock, moved forward below
        ids: dict[str, Planned] = {}
        threads: dict[tuple[str, str], str] = {}

        def inject(items: list[Planned]) -> None:
            if not items:
                return
            # Time only moves forward, as on a platform: the sandbox's clock is advanced past the
            # messages before they are written (a poll never sees a message older than its last one).
            last = start + timedelta(minutes=max(p.minutes for p in items) + 1)
            ahead = (last - datetime.fromtimestamp(sb.state.now(), timezone.utc)).total_seconds()
            if ahead > 0:
                sb.advance(ahead)
            for p in sorted(items, key=lambda p: p.minutes):
                key = (p.account, p.who)
                thread = threads.get(key)
                at = start + timedelta(minutes=p.minutes)
                if thread is None:
                    uid = str(9_000_000_000_000_000 + len(threads))  # X user ids are numbers
                    eid = sb.inject(p.account, text=p.text, customer=dict(p.person, id=uid), at=at)
                    threads[key] = _thread_of(sb, p.account, eid)
                else:
                    eid = sb.inject(p.account, text=p.text, thread=thread, at=at)
                ids[eid] = p

        def sync(order: list[str]) -> None:
            pending: dict[str, list[Any]] = {}
            for name in order:
                conn = make_connector(settings, by_name[name], page_size=rng.choice((5, 10, 25)))
                try:
                    pending[name] = list(conn.fetch(read_cursor(engine, refs[name].id), make_known(engine, refs[name])))
                finally:
                    conn.close()
            while pending:
                name = rng.choice([n for n in order if n in pending])
                take = rng.randint(1, 4)
                batch, pending[name] = pending[name][:take], pending[name][take:]
                if not pending[name]:
                    del pending[name]
                ingest_page(engine, refs[name], merge_pages(batch), settings)

        old = [p for p in planned if p.old]
        inject(old)
        sync(list(ACCOUNTS))
        _resolve_long_ago(engine, start, {eid for eid, p in ids.items() if p.old})
        rest = sorted((p for p in planned if not p.old), key=lambda p: p.minutes)
        syncs = rng.randint(1, 3)
        cuts = sorted(rng.sample(range(1, len(rest)), syncs - 1)) if syncs > 1 else []
        for lo, hi in zip([0, *cuts], [*cuts, len(rest)]):
            inject(rest[lo:hi])
            order = list(ACCOUNTS)
            rng.shuffle(order)
            sync(order)
        tickets = _grouping(engine, {e: "" for e in ids})
        engine.dispose()
    if not quiet:
        print(f"run {run}: {syncs} sync(s), {len(ids)} messages", file=sys.stderr)
    return _score(ids, tickets)


def _thread_of(sb: Sandbox, account: str, eid: str) -> str:
    st = sb.state
    if account in st.x:
        for ev in st.x[account].events.values():
            if ev.id == eid:
                return ev.conv
    else:
        for tid, th in st.meta[account].threads.items():
            if any(getattr(m, "id", None) == eid for m in th.messages):
                return tid
    raise KeyError(eid)


def _resolve_long_ago(engine: Any, start: datetime, old_ids: set[str]) -> None:
    """An agent resolved the old threads' tickets long ago (the day after they wrote)."""
    t, m = Ticket.__table__, Message.__table__
    with engine.begin() as conn:
        tickets = {r[0] for r in conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id.in_(sorted(old_ids))))}
        conn.execute(t.update().where(t.c.id.in_(sorted(tickets))).values(status="resolved", resolved_at=start + timedelta(days=4)))


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def _score(ids: dict[str, Planned], tickets: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per case type: true/false positive and false negative pairs of messages sharing a ticket."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "missing": 0})
    eids = sorted(ids)
    for e in eids:
        if tickets.get(e) is None:
            out[ids[e].kind]["missing"] += 1
    for a, b in itertools.combinations(eids, 2):
        pa, pb = ids[a], ids[b]
        same = tickets.get(a) is not None and tickets.get(a) == tickets.get(b)
        truth = pa.label == pb.label
        if not same and not truth:
            continue
        for kind in {pa.kind, pb.kind}:
            if same and truth:
                out[kind]["tp"] += 1
            elif same:
                out[kind]["fp"] += 1
            else:
                out[kind]["fn"] += 1
    return dict(out)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def evaluate(customers: int, runs: int, seed: int, *, quiet: bool = True) -> dict[str, Any]:
    planned = plan(customers, seed)
    per_run = [run_once(planned, seed * 1000 + r, quiet=quiet) for r in range(runs)]
    kinds = sorted({p.kind for p in planned})
    report: dict[str, Any] = {"customers": len({p.who for p in planned}), "messages": len(planned), "runs": runs, "kinds": {}}
    for kind in kinds:
        prec = [_ratio(r.get(kind, {}).get("tp", 0), r.get(kind, {}).get("tp", 0) + r.get(kind, {}).get("fp", 0)) for r in per_run]
        rec = [_ratio(r.get(kind, {}).get("tp", 0), r.get(kind, {}).get("tp", 0) + r.get(kind, {}).get("fn", 0)) for r in per_run]
        report["kinds"][kind] = {
            "cases": len({p.label for p in planned if p.kind == kind}),
            "precision": [p for p in prec if p is not None],
            "recall": [r for r in rec if r is not None],
            "false_pairs": [r.get(kind, {}).get("fp", 0) for r in per_run],
            "identical_across_runs": len({json.dumps(r.get(kind, {}), sort_keys=True) for r in per_run}) == 1,
        }
    report["wrong_groupings"] = sum(r[k]["fp"] for r in per_run for k in r)
    return report


def _fmt(values: list[float]) -> str:
    if not values:
        return "   n/a   "
    lo, hi = min(values), max(values)
    return f"{lo:.3f}" if lo == hi else f"{lo:.3f}–{hi:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=320, help="people (a pair of different people counts two)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = evaluate(args.customers, args.runs, args.seed, quiet=False)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['customers']} customers, {report['messages']} messages, {report['runs']} random orders and batchings")
    print("precision / recall of pairs of messages sharing a ticket, min–max over the runs (n/a: no such pair)")
    print(f"{'case type':<20} {'tickets':>7}  {'precision':<13} {'recall':<13} {'wrong pairs':>11}  identical")
    for kind, r in report["kinds"].items():
        print(f"{kind:<20} {r['cases']:>7}  {_fmt(r['precision']):<13} {_fmt(r['recall']):<13} {sum(r['false_pairs']):>11}  "
              f"{'yes' if r['identical_across_runs'] else 'NO'}")
    print(f"pairs grouped that belong to different tickets, all runs: {report['wrong_groupings']}")


if __name__ == "__main__":
    main()
