"""Every decision of an ingest of bench/ingest.py's data, dumped, to compare two versions of the code.

Ingests the benchmark's generated messages (pages of 200, 10% re-delivered) into a fresh SQLite
store and writes every message's thread, ticket, contact, rule, reason, score and repeat-of, every
ticket, event, thread, contact, order reference and search entry, one row a line, with the times
the ingest takes from the clock (received, created, updated) left out. Two checkouts that decide
alike give equal files:

    .venv/bin/python bench/ingest_dump.py 20000 /tmp/before.txt      # in one checkout
    .venv/bin/python bench/ingest_dump.py 20000 /tmp/after.txt       # in the other
    cmp /tmp/before.txt /tmp/after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ingest as bench  # noqa: E402

QUERIES = (
    "SELECT external_id, conversation_id, ticket_id, contact_id, direction, dedup_rule, dedup_reason, dedup_score,"
    " repeat_of_id, replace(sent_at, ' ', 'T'), text FROM message ORDER BY id",
    "SELECT * FROM ticket ORDER BY id",
    "SELECT ticket_id, actor, action, detail FROM ticket_event ORDER BY id",
    "SELECT * FROM conversation ORDER BY id",
    "SELECT * FROM contact ORDER BY id",
    "SELECT * FROM ticket_ref ORDER BY ticket_id, ref",
    "SELECT rowid, text FROM message_fts ORDER BY rowid",
)
# A stored timestamp, left out: some are the clock's at ingest (a message's own time is kept, written with a T).
_STAMP = re.compile(r"'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}'")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("messages", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = bench.generate(args.messages, args.seed)
    pages = {name: bench.pages(msgs, 200) for name, msgs in data.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inbox.db")
        bench.bench_ingest(f"sqlite:///{path}", pages)
        db = sqlite3.connect(path)
        lines = 0
        with open(args.out, "w", encoding="utf-8") as out:
            for query in QUERIES:
                for row in db.execute(query):
                    out.write(_STAMP.sub("'…'", repr(row)) + "\n")
                    lines += 1
        db.close()
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()[:16]
    print(f"{lines:,} lines, sha256 {digest}")


if __name__ == "__main__":
    main()
