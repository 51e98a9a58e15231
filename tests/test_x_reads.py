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
        assert sandbox.x_events_served(X) - served <= 5  # a handful: the newest stored ones
        assert len(_max_results(sandbox)) == 1  # and one lookup


def test_pages_grow_while_all_new_and_the_next_poll_asks_for_about_as_many(engine, db_url, sandbox):
    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    _sync(engine, settings, factory)
    sandbox.advance(180)  # polls a few minutes apart, as scheduled
    for i in range(30):
        sandbox.inject(X, text=f"Kak, DM ke-{i} belum dibalas", customer=f"Pelanggan {i % 4}")
    served = sandbox.x_events_served(X)
    sandbox.clear_calls()
    res = _sync(engine, settings, factory)
    assert res.counts.new_messages == 30
    assert _max_results(sandbox) == [5, 20, 25]  # 5 + 20 all new, then a full page (25 here) reaches the stored ones
    assert sandbox.x_events_served(X) - served == 48  # the whole feed: 18 seeded events and the 30
    assert_complete(engine, sandbox, (X,))

    polls = []
    for new in (5, 0, 0):
        sandbox.advance(180)
        for i in range(new):
            sandbox.inject(X, text=f"satu lagi {i}", customer="Pelanggan 1")
        sandbox.clear_calls()
        assert _sync(engine, settings, factory).counts.new_messages == new
        polls.append(_max_results(sandbox))
    # As many as the last pass found new, plus the stored events dated within a minute before it (read
    # again, for late ones below them), plus one: 30 + 30 + 1 (up to a page: 25, and the look past the
    # cursor takes a second lookup), then 5 + 5 + 1 in one lookup. Then quiet: a handful.
    assert polls == [[25, 25], [11], [5]]
    assert_complete(engine, sandbox, (X,))


def test_an_event_the_feed_shows_late_is_stored_by_the_next_poll(engine, db_url, sandbox):
    """All-events lags: a customer's DM dated 30 s before our stored newest event shows up after the
    poll that stored it. The next poll reads past its cursor down to a minute before the last poll
    (3 new + 3 recent + 1 in one lookup) and stores it; the one after is a single quiet lookup of a handful again."""
    settings = sandbox_settings(sandbox, db_url)
    factory = fast_factory(settings)
    _sync(engine, settings, factory)
    sandbox.advance(180)
    for i in range(3):
        sandbox.inject(X, text=f"Kak, pesanan {i}?", customer="Pelanggan 2")
    _sync(engine, settings, factory)
    late = sandbox.inject(X, text="ini pesan yang telat", customer="Pelanggan 3", at=sandbox.now() - 30)
    sandbox.advance(180)
    sandbox.clear_calls()
    assert _sync(engine, settings, factory).counts.new_messages == 1
    assert _max_results(sandbox) == [7]
    assert_complete(engine, sandbox, (X,))
    sandbox.advance(180)
    sandbox.clear_calls()
    _sync(engine, settings, factory)
    assert _max_results(sandbox) == [5]
    assert late


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
    assert again["events_read"] == sandbox.x_events_served(X) <= served + 5
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


def test_events_read_again_the_same_day_are_not_billed_twice() -> None:
    from connectors.x_usage import DayUsage

    yesterday = DayUsage("2026-12-01").after_lookup([12, 11, 10])
    assert DayUsage.load(yesterday.as_json(), "2026-12-02") == DayUsage("2026-12-02")
    # A walk reads 30..20 in two pages: the second page is below the first, yet never read before.
    walk = DayUsage.load(yesterday.as_json(), "2026-12-01").new_walk().after_lookup([30, 29]).after_lookup([25, 20, 12])
    assert (walk.calls, walk.read, walk.billed) == (3, 8, 7)  # 12 was read earlier that day
    later = DayUsage.load(walk.as_json(), "2026-12-01").new_walk().after_lookup([31, 30, None])
    assert (later.read, later.billed) == (11, 9)  # 31 is new, 30 was read, an unreadable id is billed
    assert later.as_json()["spans"] == [["10", "31"]]  # each walk reached what the one before read: one span


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
