"""The stored account is the platform account: a name re-pointed at another platform id is refused.

Through the CLI against the sandbox over real HTTP, on both backends. A rename (same platform id,
new name) keeps the history; a changed id under the same name never reuses the old cursor and
tickets: refused (exit 3, one line saying how to fix), until `inbox accounts repoint NAME` starts
the name afresh, the old account's history kept apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cli
from inbox.store.models import Account, Message
from tests.store.test_echo_tickets import store  # noqa: F401  (the fixture)
from tests.store.test_sync_many import run

OTHER_X_USER = "1500000000000000999"


def counts(engine: sa.Engine) -> dict[str, int]:
    a, m = Account.__table__, Message.__table__
    with engine.connect() as conn:
        return {r.name: r.n for r in conn.execute(sa.select(a.c.name, sa.func.count(m.c.id).label("n")).join(m, m.c.account_id == a.c.id).group_by(a.c.name))}


def test_a_changed_platform_id_under_the_same_name_is_refused_until_repointed(
    sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, engine = store
    run(cfg, "sync", capsys=capsys)
    before = counts(engine)
    old_tickets = {t["id"] for t in json.loads(run(cfg, "list", "--account", "tokoshop-x", "--status", "all", "--json", capsys=capsys))["tickets"]}
    x_ticket = min(old_tickets)
    old_id = sandbox.accounts["tokoshop-x"].platform_id
    text = Path(cfg).read_text(encoding="utf-8")
    Path(cfg).write_text(text.replace(f'user_id = "{old_id}"', f'user_id = "{OTHER_X_USER}"'), encoding="utf-8")

    for args in (("sync",), ("sync", "--account", "tokoshop-x"), ("accounts",)):
        assert cli.main(["-c", cfg, *args]) == 3
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith("error: account 'tokoshop-x' is stored as X user " + old_id), err
        assert f"X user {OTHER_X_USER}" in err and "a new name" in err and "inbox accounts repoint tokoshop-x" in err
    assert counts(engine) == before  # nothing synced, nothing mixed
    # A reply to the old account's customer would leave from the other account: refused before any call.
    assert cli.main(["-c", cfg, "reply", str(x_ticket), "halo kak, kami bantu ya", "--yes"]) == 3  # INBOX_AGENT: the fixture
    assert "inbox accounts repoint tokoshop-x" in capsys.readouterr().err
    assert sandbox.sent("tokoshop-x") == []

    done = json.loads(run(cfg, "accounts", "repoint", "tokoshop-x", "--json", capsys=capsys))
    assert done == {"account": "tokoshop-x", "channel": "x", "platform_id": OTHER_X_USER, "retired_as": f"tokoshop-x~{old_id}"}
    result = json.loads(run(cfg, "sync", "--account", "tokoshop-x", "--json", capsys=capsys))["accounts"][0]
    # Afresh: everything the platform shows is new to the new account, as to a fresh store.
    assert result["status"] == "ok" and result["new_messages"] == before["tokoshop-x"]
    after = counts(engine)
    assert after[f"tokoshop-x~{old_id}"] == before["tokoshop-x"] == after["tokoshop-x"]
    # Each account has its own tickets: the old ones stay the old account's, the new account opened its own.
    old = json.loads(run(cfg, "list", "--account", f"tokoshop-x~{old_id}", "--status", "all", "--json", capsys=capsys))["tickets"]
    assert {t["id"] for t in old} == old_tickets
    new = json.loads(run(cfg, "list", "--account", "tokoshop-x", "--status", "all", "--json", capsys=capsys))["tickets"]
    assert new and not {t["id"] for t in new} & old_tickets
    assert json.loads(run(cfg, "accounts", "repoint", "tokoshop-x", "--json", capsys=capsys))["retired_as"] is None  # done once


def test_renamed_and_swapped_names_keep_each_platform_account_history(sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, engine = store
    run(cfg, "sync", capsys=capsys)
    before = counts(engine)
    text = Path(cfg).read_text(encoding="utf-8")
    swapped = (text.replace('name = "tokoshop-fb"', 'name = "@@"').replace('name = "tokoshop-ig"', 'name = "tokoshop-fb"')
               .replace('name = "@@"', 'name = "tokoshop-ig"').replace('name = "tokoshop-x"', 'name = "toko-x"'))
    Path(cfg).write_text(swapped, encoding="utf-8")

    result = json.loads(run(cfg, "sync", "--json", capsys=capsys))
    assert {r["account"]: r["new_messages"] for r in result["accounts"]} == {"tokoshop-ig": 0, "tokoshop-fb": 0, "toko-x": 0}
    after = counts(engine)
    assert (after["tokoshop-fb"], after["tokoshop-ig"], after["toko-x"]) == (before["tokoshop-ig"], before["tokoshop-fb"], before["tokoshop-x"])
    listed = json.loads(run(cfg, "list", "--account", "tokoshop-fb", "--status", "all", "--json", capsys=capsys))["tickets"]
    assert listed and {t["channel"] for t in listed} == {"instagram"}



def test_two_names_for_one_platform_account_are_a_config_error(sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The same X user configured twice (a bearer token and OAuth 1.0a): each name syncs alone, but
    both at once cannot both be the stored account's name (it was "unexpected NoResultFound")."""
    cfg, engine = store
    x = sandbox.accounts["tokoshop-x"]
    with open(cfg, "a", encoding="utf-8") as fh:
        fh.write(f'\n[[accounts]]\nname = "tokoshop-x-again"\nchannel = "x"\nuser_id = "{x.platform_id}"\n'
                 f'base_url = "{x.base_url}"\naccess_token_env = "{x.token_env}"\n')
    for args in (("sync",), ("accounts",)):
        assert cli.main(["-c", cfg, *args]) == 3, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "accounts 'tokoshop-x' and 'tokoshop-x-again' are both X user " + x.platform_id in err, err
        assert "unexpected" not in err
    assert json.loads(run(cfg, "sync", "--account", "tokoshop-x-again", "--json", capsys=capsys))["accounts"][0]["status"] == "ok"
