"""X reads priced per event: a poll asks for about as many events as are likely new, stops at the
newest stored one, and the events read today (with their estimated cost) are shown per account.
Events counted as the sandbox served them."""

from __future__ import annotations

import json

import pytest

from test_sync import assert_complete, fast_factory, sandbox_settings

X = "tokoshop-x"


def _max_results(sb) -> list[int]:
    return [int(c.query["max_results"]) for c in sb.calls if c.account == X and c.path.endswith("/dm_events")]


def _sync(engine, settings, factory):
    from inbox.sync import sync_account

    res = sync_account(engine, settings, settings.account(X), connector_factory=factory)
    assert res.status == "ok", res.error
    return res


def test_an_idle_poll_reads_a_handful_of_events(engine, db_url, sandbox):
    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    _sync(engine, settings, factory)  # the first sync reads full pages
    for _ in range(3):
        served = sandbox.x_events_served(X)
        sandbox.clear_calls()
        res = _sync(engine, settings, factory)
        assert res.counts.new_messages == 0
        assert sandbox.x_events_served(X) - served <= 2  # the newest stored event and one more
        assert len(_max_results(sandbox)) == 1  # and one lookup


def test_pages_grow_while_all_new_and_the_next_poll_asks_for_about_as_many(engine, db_url, sandbox):
    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    _sync(engine, settings, factory)
    for i in range(30):
        sandbox.inject(X, text=f"Kak, DM ke-{i} belum dibalas", customer=f"Pelanggan {i % 4}")
    served = sandbox.x_events_served(X)
    sandbox.clear_calls()
    res = _sync(engine, settings, factory)
    assert res.counts.new_messages == 30
    assert _max_results(sandbox) == [2, 8, 25]  # 2 + 8 all new, then a full page (25 here) reaches the stored ones
    assert sandbox.x_events_served(X) - served == 35
    assert_complete(engine, sandbox, (X,))

    for i in range(5):
        sandbox.inject(X, text=f"satu lagi {i}", customer="Pelanggan 1")
    sandbox.clear_calls()
    served = sandbox.x_events_served(X)
    assert _sync(engine, settings, factory).counts.new_messages == 5
    assert _max_results(sandbox) == [25]  # as many as the last pass found new (up to a page): one lookup
    sandbox.clear_calls()
    assert _sync(engine, settings, factory).counts.new_messages == 0
    assert _max_results(sandbox) == [5]
    sandbox.clear_calls()
    _sync(engine, settings, factory)
    assert _max_results(sandbox) == [2]  # quiet again
    assert_complete(engine, sandbox, (X,))


def test_reads_today_and_their_cost_in_sync_json_and_accounts(tmp_path, sandbox, monkeypatch, capsys):
    import cli
    from inbox import sync as sync_mod

    config = tmp_path / "inbox.toml"
    text = sandbox.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}")
    # The X account costs 2 cents an event read here (the default is 1).
    config.write_text(text.replace('channel = "x"', 'channel = "x"\nx_cost_per_read = 0.02', 1))
    real = sync_mod.make_connector
    monkeypatch.setattr(sync_mod, "make_connector", lambda s, a, **kw: real(s, a, min_interval=0.0))

    assert cli.main(["-c", str(config), "--json", "sync"]) == 0
    first = {a["account"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    reads = first[X]["reads_today"]
    served = sandbox.x_events_served(X)
    assert reads["events_read"] == served == reads["events_billed"] and reads["lookups"] >= 1
    assert reads["estimated_cost"] == pytest.approx(served * 0.02)
    assert first["tokoshop-fb"]["reads_today"] is None  # Meta does not bill reads

    assert cli.main(["-c", str(config), "--json", "sync", "--account", X]) == 0
    again = json.loads(capsys.readouterr().out)["accounts"][0]["reads_today"]
    assert again["events_read"] == sandbox.x_events_served(X) <= served + 2
    assert again["events_billed"] == reads["events_billed"]  # the stored event re-read today is not billed twice
    assert again["lookups"] == reads["lookups"] + 1

    assert cli.main(["-c", str(config), "accounts", "--json"]) == 0
    health = {a["name"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    assert health[X]["reads_today"]["events_read"] == again["events_read"]
    assert health["tokoshop-ig"]["reads_today"] is None
    monkeypatch.setenv("COLUMNS", "160")  # the whole table on one line per account
    assert cli.main(["-c", str(config), "accounts"]) == 0
    table = capsys.readouterr().out
    assert "read today" in table and f"{again['events_read']} ${again['estimated_cost']:.2f}" in table


def test_a_usage_record_of_another_day_starts_the_day_at_zero() -> None:
    from connectors.x_usage import DayUsage

    yesterday = DayUsage("2026-12-01").after_lookup([10, 11, 12])
    today = DayUsage.load(yesterday.as_json(), "2026-12-02")
    assert today == DayUsage("2026-12-02")
    again = DayUsage.load(yesterday.as_json(), "2026-12-01").after_lookup([12, 13, None])
    assert (again.calls, again.read, again.billed) == (2, 6, 5)  # 12 was read already that day; an unreadable id is billed


@pytest.mark.parametrize("value", ["-0.01", "2", "nan", "inf", '"0.01"', "true"])
def test_x_cost_per_read_is_validated(tmp_path, sandbox, value) -> None:
    from inbox.config import load_settings
    from inbox.errors import ConfigError

    config = tmp_path / "inbox.toml"
    text = sandbox.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}")
    config.write_text(text.replace('channel = "x"', f'channel = "x"\nx_cost_per_read = {value}', 1))
    with pytest.raises(ConfigError) as info:
        load_settings(str(config))
    assert "x_cost_per_read" in str(info.value)


def test_x_cost_per_read_is_refused_on_a_meta_account(tmp_path, sandbox) -> None:
    from inbox.config import load_settings
    from inbox.errors import ConfigError

    config = tmp_path / "inbox.toml"
    text = sandbox.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}")
    config.write_text(text.replace('channel = "facebook"', 'channel = "facebook"\nx_cost_per_read = 0.01', 1))
    with pytest.raises(ConfigError) as info:
        load_settings(str(config))
    assert "x_cost_per_read" in str(info.value)
