"""The DM events each account's syncs read, per UTC day, and their estimated cost: the store's
counters on both backends, the sync's accounting against the sandbox's meter, and the CLI fields."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from inbox import usage
from inbox.errors import ConfigError
from inbox.settings import parse_settings
from inbox.store.models import Account

X = "tokoshop-x"


def _account(engine, name: str = "x-care") -> int:
    with engine.begin() as conn:
        return conn.execute(sa.insert(Account.__table__).values(name=name, channel="x", platform_id=name)).inserted_primary_key[0]


def test_reads_add_up_per_account_and_utc_day(engine) -> None:
    a, b = _account(engine), _account(engine, "x-other")
    late = datetime(2026, 12, 1, 23, 59, 30, tzinfo=timezone.utc)
    usage.record_reads(engine, a, 5, at=late)
    usage.record_reads(engine, a, 7, at=late - timedelta(hours=5))
    usage.record_reads(engine, a, 3, at=late + timedelta(seconds=31))  # the next UTC day
    # 06:30 on the 2nd in Jakarta is 23:30 on the 1st in UTC: the UTC day counts.
    usage.record_reads(engine, b, 4, at=datetime(2026, 12, 2, 6, 30, tzinfo=timezone(timedelta(hours=7))))
    usage.record_reads(engine, b, 0, at=late)
    usage.record_reads(engine, b, -3, at=late)  # nothing negative is ever added
    assert usage.reads_on(engine, [a, b], at=late) == {a: 12, b: 4}
    assert usage.reads_on(engine, [a, b], at=late + timedelta(minutes=1)) == {a: 3}
    assert usage.reads_on(engine, [], at=late) == {}


def _settings(sb, db_url: str, **x: object):
    data = tomllib.loads(sb.config_toml(database=db_url))
    for acc in data["accounts"]:
        if acc["channel"] == "x":
            acc.update(x)
    return parse_settings(data, "sandbox.toml")


def test_a_sync_records_what_x_returned_and_reports_its_cost(engine, db_url, sandbox, monkeypatch) -> None:
    import inbox.sync.account as sync_account_mod
    from inbox.accounts import health

    real = sync_account_mod.make_connector
    monkeypatch.setattr(sync_account_mod, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))
    settings = _settings(sandbox, db_url, x_cost_per_read=0.02)
    meter, user = sandbox.rates.reads, sandbox.accounts[X].platform_id

    first = sync_account_mod.sync_account(engine, settings, settings.account(X))
    read = meter.snapshot(user)["events"]
    assert first.status == "ok" and first.events_read == read > 0
    assert first.events_read_today == read and first.est_cost == first.est_cost_today == round(read * 0.02, 4)

    idle = sync_account_mod.sync_account(engine, settings, settings.account(X))
    assert idle.events_read == 1 and idle.events_read_today == read + 1  # the stored newest only

    sandbox.inject(X, text="halo kak")
    dry = sync_account_mod.sync_account(engine, settings, settings.account(X), dry_run=True)
    assert dry.events_read == meter.snapshot(user)["events"] - read - 1 > 0  # billed, reported...
    rows = {h.name: h for h in health(engine, settings)}
    assert rows[X].events_read_today == read + 1  # ...and not stored: a dry run writes nothing
    assert rows[X].est_cost_today == round((read + 1) * 0.02, 4)

    fb = sync_account_mod.sync_account(engine, settings, settings.account("tokoshop-fb"))
    assert fb.status == "ok" and fb.events_read is fb.est_cost is fb.events_read_today is None  # Graph does not bill per read
    assert rows["tokoshop-fb"].events_read_today is None and rows["tokoshop-fb"].est_cost_today is None


def test_cli_shows_events_read_and_cost(tmp_path, sandbox, monkeypatch, capsys) -> None:
    import cli
    import inbox.sync.account

    path = tmp_path / "inbox.toml"
    path.write_text(sandbox.config_toml(database=f"sqlite:///{tmp_path / 'cli.db'}"))
    real = inbox.sync.account.make_connector
    monkeypatch.setattr(inbox.sync.account, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))
    user = sandbox.accounts[X].platform_id

    assert cli.main(["-c", str(path), "--json", "sync"]) == 0
    out = {a["account"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    read = sandbox.rates.reads.snapshot(user)["events"]
    assert out[X]["events_read"] == out[X]["events_read_today"] == read
    assert out[X]["est_cost"] == out[X]["est_cost_today"] == round(read * 0.01, 4)  # the default x_cost_per_read
    assert out["tokoshop-fb"]["events_read"] is out["tokoshop-fb"]["est_cost"] is out["tokoshop-fb"]["events_read_today"] is None

    assert cli.main(["-c", str(path), "accounts", "--json"]) == 0
    rows = {a["name"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    assert rows[X]["events_read_today"] == read and rows[X]["est_cost_today"] == round(read * 0.01, 4)
    assert rows["tokoshop-ig"]["events_read_today"] is None

    assert cli.main(["-c", str(path), "accounts"]) == 0
    table = capsys.readouterr().out
    assert f"tokoshop-x: {read} DM events read today (UTC), about ${read * 0.01:.2f}" in table


@pytest.mark.parametrize(
    ("channel", "value", "message"),
    [("facebook", 0.01, "only x accounts take 'x_cost_per_read'"), ("x", -0.01, "x_cost_per_read"),
     ("x", float("nan"), "x_cost_per_read"), ("x", float("inf"), "x_cost_per_read"), ("x", "free", "x_cost_per_read")],
)
def test_x_cost_per_read_is_validated(sandbox, channel: str, value: object, message: str) -> None:
    data = tomllib.loads(sandbox.config_toml(database="sqlite:///unused.db"))
    next(a for a in data["accounts"] if a["channel"] == channel)["x_cost_per_read"] = value
    with pytest.raises(ConfigError, match=message):
        parse_settings(data, "inbox.toml")
