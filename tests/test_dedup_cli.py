"""`inbox show` / `--why` / `inbox list` explain dedup: rule, reason, score, repeats, the tickets considered."""

from __future__ import annotations

import json

import cli
from connectors.base import Page
from inbox.config import Settings
from inbox.ingest import ingest_page

from tests.test_dedup import INV, m, message, ticket_of


def run(capsys, monkeypatch, url, *args) -> tuple[int, str]:
    monkeypatch.setenv("INBOX_DATABASE_URL", url)
    monkeypatch.delenv("INBOX_CONFIG", raising=False)
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_show_why_and_list_explain_dedup(sqlite_engine, tmp_path, capsys, monkeypatch):
    engine = sqlite_engine
    from sqlmodel import Session

    from inbox.models import Account

    with Session(engine) as s:
        fb = Account(name="toko-fb", channel="facebook", platform_id="104920378912345")
        x = Account(name="toko-x", channel="x", platform_id="1500000000000000001")
        s.add_all([fb, x])
        s.commit()
        ids = {"fb": fb.id, "x": x.id}
    st = Settings()
    ingest_page(engine, ids["fb"], Page((m("v1", "fb-v", "victim", f"Refund {INV} ke rekening saya", 0, name="Budi Santoso"),), cursor=None), st)
    ingest_page(engine, ids["x"], Page((m("a1", "x-a", "attacker", f"refund {INV} belum masuk", 5, ch="x", handle="cs_official"),
                                         m("a2", "x-a", "attacker", "refund saya belum masuk kak!!", 6, ch="x", handle="cs_official"),
                                         m("a3", "x-a", "attacker", "refund sy blm masuk kakkk", 7, ch="x", handle="cs_official")), cursor=None), st)
    victim, attacker = ticket_of(engine, "v1"), ticket_of(engine, "a1")
    url = str(engine.url)
    code, out = run(capsys, monkeypatch, url, "show", str(attacker.id), "--why", "--no-pager")
    assert code in (0, None)
    assert f"message {message(engine, 'a1').id} · dedup: 4:order-weak" in out
    assert f"repeat of message {message(engine, 'a2').id}" in out and "customer repeated 1×" in out
    assert f"#{victim.id}: " in out.split("why: other tickets considered")[1]
    code, out = run(capsys, monkeypatch, url, "show", str(victim.id), "--json")
    assert attacker.id in json.loads(out)["related"]["possible_duplicate_of"]  # both point at each other
    code, out = run(capsys, monkeypatch, url, "list", "--json")
    rows = {t["id"]: t for t in json.loads(out)["tickets"]}
    assert rows[attacker.id]["repeat_count"] == 1
    monkeypatch.setenv("COLUMNS", "200")
    code, out = run(capsys, monkeypatch, url, "list")
    assert "customer repeated 1×" in out
