"""`inbox show` / `--why` / `inbox list` explain dedup: rule, reason, score, repeats, the tickets considered."""

from __future__ import annotations

import json

import cli
from connectors.base import Page
from inbox.settings import Settings
from inbox.ingest.page import ingest_page

from tests.store.test_dedup import INV, m, message, ticket_of


def run(capsys, monkeypatch, url, *args) -> tuple[int, str]:
    monkeypatch.setenv("INBOX_DATABASE_URL", url)
    monkeypatch.delenv("INBOX_CONFIG", raising=False)
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_show_why_and_list_explain_dedup(sqlite_engine, tmp_path, capsys, monkeypatch):
    engine = sqlite_engine
    from sqlmodel import Session

    from inbox.store.models import Account

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


def test_sync_dry_run_json_explains_what_it_would_do(sandbox, tmp_path, capsys, monkeypatch):
    import inbox.sync.account

    cfg = tmp_path / "inbox.toml"
    cfg.write_text(sandbox.config_toml(database=f"sqlite:///{tmp_path / 'dry.db'}"))
    real = inbox.sync.account.make_connector
    monkeypatch.setattr(inbox.sync.account, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))
    assert cli.main(["-c", str(cfg), "--json", "sync"]) == 0
    capsys.readouterr()
    first = sandbox.inject("tokoshop-ig", text=f"Refund {INV} belum masuk kak", customer={"id": "5551", "username": "budi.hartono"})
    thread = sandbox.thread_of("tokoshop-ig", first)
    sandbox.inject("tokoshop-ig", text=f"refund {INV} blm masuk kakkk!!", thread=thread)
    assert cli.main(["-c", str(cfg), "--json", "sync", "--account", "tokoshop-ig"]) == 0
    capsys.readouterr()
    sandbox.inject("tokoshop-x", text=f"saya komplain {INV}, refund ke saya", customer={"id": "777000111", "username": "cs_helper", "name": "CS"})
    sandbox.inject("tokoshop-fb", text=f"{INV} gimana kak?", customer={"id": "4242", "name": "Budi Hartono"})
    assert cli.main(["-c", str(cfg), "--json", "sync", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    x = [d for d in out["decisions"]["tokoshop-x"] if d["direction"] == "in"][-1]
    assert x["rule"] == "4:order-weak" and x["new_ticket"] and INV in x["reason"]
    assert x["considered"] and "only flagged" in x["considered"][0]["why_not"]
    fb = [d for d in out["decisions"]["tokoshop-fb"] if d["direction"] == "in"][-1]
    assert fb["rule"] == "4:order" and not fb["new_ticket"]
