"""Two of everything, through the CLI against the sandbox over real HTTP, on both backends.

Paths that work with one pending row and break with two: two replies awaiting their echoes on one
account, and on two accounts, in the same sync. Each sync must still store new customer messages
and settle the replies (echo matched, reply `sent` with the echo's platform id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cli
from inbox.store.models import Message, Reply


def _config(sb: Any, db_url: str, tmp_path: Path) -> str:
    path = tmp_path / "inbox.toml"
    path.write_text(sb.config_toml(database=db_url), encoding="utf-8")
    return str(path)


def run(cfg: str, *args: str, capsys: pytest.CaptureFixture[str], code: int = 0) -> str:
    got = cli.main(["-c", cfg, *args])
    out, err = capsys.readouterr()
    assert got == code, f"inbox {' '.join(args)} -> {got}\n{out[-3000:]}\n{err[-3000:]}"
    return out


def ticket_of(engine: sa.Engine, external_id: str) -> int:
    m = Message.__table__
    with engine.connect() as conn:
        tid = conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id == external_id)).scalar_one()
    assert tid is not None
    return int(tid)


@pytest.mark.slow
@pytest.mark.parametrize("accounts", [("tokoshop-ig",), ("tokoshop-ig", "tokoshop-x")], ids=["one-account", "two-accounts"])
def test_two_replies_awaiting_their_echoes_on_each_account(
    sandbox: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], accounts: tuple[str, ...]
) -> None:
    from inbox.store import open_store

    monkeypatch.setenv("INBOX_AGENT", "ana")
    cfg = _config(sandbox, db_url, tmp_path)
    asks = {name: [sandbox.inject(name, text=f"halo kak, pesanan {name} nomor {i} belum sampai") for i in range(2)] for name in accounts}
    run(cfg, "sync", capsys=capsys)
    engine = open_store(db_url)
    try:
        for name, ids in asks.items():
            for i, ext in enumerate(ids):
                run(cfg, "reply", str(ticket_of(engine, ext)), f"kami cek dulu ya kak ({name} {i})", "--yes", capsys=capsys)
        later = {name: sandbox.inject(name, text="sudah dua hari, tolong dibantu") for name in accounts}

        out = run(cfg, "sync", "--json", capsys=capsys)  # the echoes of both replies come back in this pass
        results = {r["account"]: r for r in json.loads(out)["accounts"]}
        for name in accounts:
            assert results[name]["status"] == "ok", results[name]
            assert results[name]["echoes_matched"] == 2, results[name]
        m, r = Message.__table__, Reply.__table__
        with engine.connect() as conn:
            for name, ext in later.items():
                assert conn.execute(sa.select(m.c.ticket_id).where(m.c.external_id == ext)).scalar() is not None, name
            replies = conn.execute(sa.select(r.c.id, r.c.state, r.c.external_id)).all()
            assert len(replies) == 2 * len(accounts)
            for reply in replies:
                assert reply.state == "sent"
                echo = conn.execute(sa.select(m.c.reply_id, m.c.direction).where(m.c.external_id == reply.external_id)).one()
                assert (echo.reply_id, echo.direction) == (reply.id, "out")
        run(cfg, "sync", capsys=capsys)  # and every later pass too
    finally:
        engine.dispose()
