"""A crash between the acknowledgement and the processing: the delivery is processed on restart, once.

The states a crash leaves (committed and not processed; ingested and not yet marked done) on both
backends, then a real `inbox serve` killed with SIGKILL right after acknowledging a burst (slow).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from tests.store.test_webhooks import PAGE_ID, WEBHOOK_ENV, WEBHOOKS, deliveries, hello, messages, meta_sig, plain_settings, running
from tests.waiting import exited, wait_until

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_deliveries_a_crash_left_behind_are_processed_on_restart_once(engine, db_url) -> None:
    from inbox.intake import receiver

    settings = plain_settings(db_url)
    # 1. acknowledged (committed), then the process died before processing it
    receiver.store(engine, "meta", hello(mid="m_pending"), "application/json")
    # 2. its messages committed, then the process died before marking it done
    receiver.store(engine, "meta", hello(mid="m_half", sender="5679"), "application/json")
    processor = receiver.Processor.build(engine, settings, graph=False)
    row = processor.pending()[1]
    processor._ingest([processor.parse(row.source, bytes(row.body), row.received_at)])
    assert [(r.external_id, r.via) for r in messages(engine)] == [("m_half", "webhook")]
    assert [d.state for d in deliveries(engine)] == ["pending", "pending"]
    # 3. an unreadable one among them never holds the others up
    receiver.store(engine, "meta", b'{"object": "page", "entry": 5}', "application/json")

    with running(engine, settings):  # the restart
        wait_until(lambda: all(d.state != "pending" for d in deliveries(engine)))
    assert sorted(r.external_id for r in messages(engine)) == ["m_half", "m_pending"]
    assert [d.state for d in deliveries(engine)] == ["done", "done", "quarantined"]
    assert "no entry list" in deliveries(engine)[2].error


def _config(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "inbox.toml"
    lines = [f"database = {json.dumps(db_url)}", "[webhooks]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in WEBHOOKS.items()]
    lines += ["[[accounts]]", 'name = "shop-fb"', 'channel = "facebook"', f'page_id = "{PAGE_ID}"', 'access_token_env = "INBOX_TEST_FB_TOKEN"']
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def _serve(cfg: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, **WEBHOOK_ENV, "INBOX_TEST_FB_TOKEN": "not-used"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys, cli; sys.exit(cli.main(['-c', sys.argv[1], 'serve', '--port', '0']))", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = ""
    while not line.startswith("listening on "):  # the log lines of start-up (migration) come first
        line = proc.stderr.readline()
        assert line, "inbox serve exited before listening"
    # Keep reading what it logs, so a full pipe never stalls it.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, line.split()[2]


@pytest.mark.slow
def test_kill_9_right_after_the_acknowledgements_then_restart(tmp_path, db_url) -> None:
    from inbox.store import sqlite_lock
    from inbox.store import open_store
    from inbox.store.sqlite_lock import INGEST_LOCK_KEY
    from inbox.store.engine import write_tx

    cfg = _config(tmp_path, db_url)
    proc, base = _serve(cfg)
    sent = []
    engine = open_store(db_url)
    # The page writers' lock held here: the server acknowledges (commits) every delivery and cannot
    # process one, so the kill lands between the two for all of them.
    with ExitStack() as held, requests.Session() as s:
        held.enter_context(sqlite_lock.hold(engine, 600))  # SQLite's page writers
        if engine.dialect.name == "postgresql":
            conn = held.enter_context(write_tx(engine))
            sqlite_lock.pg_acquire(conn, INGEST_LOCK_KEY, 600)
        for i in range(200):
            body = hello(mid=f"m_burst_{i}", sender=str(7000 + i % 17), text=f"pesan {i}")
            r = s.post(f"{base}/webhooks/meta", data=body, headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(body)}, timeout=30)
            assert r.status_code == 200
            sent.append(f"m_burst_{i}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    try:
        acknowledged = deliveries(engine)
        assert len(acknowledged) == len(sent), "an acknowledged delivery was lost"
        assert {d.state for d in acknowledged} == {"pending"} and messages(engine) == []
        proc, base = _serve(cfg)
        try:
            wait_until(lambda: all(d.state == "done" for d in deliveries(engine)))
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0  # a clean shutdown
            wait_until(lambda: exited(proc.pid))
        stored = [r.external_id for r in messages(engine)]
        assert sorted(stored) == sorted(sent)
    finally:
        engine.dispose()


def test_a_busy_writer_lock_leaves_the_batch_pending_without_counting_an_attempt(engine, db_url) -> None:
    import sqlalchemy as sa

    from inbox.intake import receiver
    from inbox.store import sqlite_lock
    from inbox.errors import ConflictError
    from inbox.store.sqlite_lock import INGEST_LOCK_KEY
    from inbox.store.engine import write_tx
    from inbox.store.tables import webhook_delivery as d

    settings = plain_settings(db_url)
    settings = settings.model_copy(update={"sync": settings.sync.model_copy(update={"writer_lock_timeout_seconds": 0.2})})
    for i in range(3):
        receiver.store(engine, "meta", hello(mid=f"m_busy_{i}", sender=str(5600 + i)), "application/json")
    processor = receiver.Processor.build(engine, settings, graph=False)
    with ExitStack() as held:  # a long sync holds the page writers' lock
        held.enter_context(sqlite_lock.hold(engine, 10))
        if engine.dialect.name == "postgresql":
            conn = held.enter_context(write_tx(engine))
            sqlite_lock.pg_acquire(conn, INGEST_LOCK_KEY, 10)
        with pytest.raises(ConflictError):
            processor.process_pending()
    with engine.connect() as c:
        assert list(c.execute(sa.select(d.c.state, d.c.attempts))) == [("pending", 0)] * 3
    processor.process_pending()
    assert sorted(r.external_id for r in messages(engine)) == [f"m_busy_{i}" for i in range(3)]
    assert {r.state for r in deliveries(engine)} == {"done"}
