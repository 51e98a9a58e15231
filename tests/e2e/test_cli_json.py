"""--json is for scripts: every command that takes it prints exactly one JSON document on stdout, on
success, and nothing there on an error (the error is one line on stderr); no colour, markup or
terminal escape in it, nor in any command's output to a pipe, whatever customers wrote."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_contract import Store, _one_error, store  # noqa: F401 - the module's synced store

pytestmark = pytest.mark.slow

HOSTILE = ("[bold red]BAYAR[/] \x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07klik\x1b]8;;\x07 a\u2028b \u202eRTL "
           "\x9b31m c1 \x85nel")
ESCAPES = ("\x1b", "\x9b", "\x9d")


@pytest.fixture(scope="module")
def hostile(store: Store) -> Iterator[tuple[Store, str, str]]:  # noqa: F811
    """Two tickets from customers with hostile names and text, synced by the CLI: their ids."""
    store.sb.inject("tokoshop-ig", text=HOSTILE, customer="hostile[/]\x1b[31muser")
    store.sb.inject("tokoshop-x", text=HOSTILE, customer={"id": "987654321", "name": HOSTILE, "username": "h\x1b[2Jx"})
    assert store.inbox("sync").returncode == 0
    tickets = json.loads(store.inbox("list", "--json", "--status", "all", "--limit", "500").stdout)["tickets"]
    ids = [str(t["id"]) for t in tickets if "BAYAR" in (t["snippet"] or "")]
    assert len(ids) == 2, ids
    yield store, ids[0], ids[1]


def _document(res: subprocess.CompletedProcess[str]) -> object:
    assert not any(e in res.stdout for e in ESCAPES), res.stdout[:300]
    return json.loads(res.stdout)  # exactly one document: json.loads refuses anything after it


def test_every_json_command_prints_one_clean_document(hostile: tuple[Store, str, str]) -> None:
    store, one, other = hostile
    commands = [
        ("sync", "--dry-run"), ("list",), ("show", one), ("show", one, "--why"), ("search", "BAYAR"), ("stats",),
        ("config", "check"), ("config", "show"), ("config", "path"), ("db", "upgrade"), ("db", "status"), ("accounts",),
        ("quarantine",), ("outbox", "--all"), ("claim", one), ("assign", one, "budi[/]"), ("status", one, "open"),
        ("priority", one, "high"), ("tag", one, "x[/]y"), ("note", one, HOSTILE), ("merge", other, one), ("unmerge", other),
        ("link", "1", "2", "-r", HOSTILE), ("unlink", "2"), ("reply", one, "Halo kak, kami cek dulu ya", "--yes"),
        ("accounts", "reset", "tokoshop-fb"),
    ]
    for args in commands:
        for res in (store.inbox(*args, "--json"), store.inbox("--json", *args)) if args[0] in ("list", "show") else (store.inbox(*args, "--json"),):
            assert res.returncode in (0, 1), (args, res.stderr)  # accounts: 1 when one is unhealthy
            assert _document(res) is not None, args
    for line in store.inbox("export").stdout.splitlines():  # JSON Lines, as the README says
        json.loads(line)


@pytest.mark.parametrize(("args", "code"), [
    (("show", "999999"), 5), (("claim", "999999"), 5), (("quarantine", "show", "999"), 5), (("outbox", "retry", "999"), 5),
    (("accounts", "reset", "nosuch"), 5), (("search", "🌸"), 2), (("list", "--status", "bogus"), 2), (("show", "abc"), 2),
])
def test_a_json_command_that_fails_prints_nothing_on_stdout(hostile: tuple[Store, str, str], args: tuple[str, ...], code: int) -> None:
    store = hostile[0]
    res = store.inbox(*args, "--json")
    assert res.returncode == code and res.stdout == "", (args, res.stdout)
    _one_error(res)


def test_bad_config_and_no_database_with_json(tmp_path: Path) -> None:
    from tests.e2e.test_cli_contract import _env, run

    bad = tmp_path / "bad.toml"
    bad.write_text('log_level = "LOUD"\n', encoding="utf-8")
    res = run("-c", str(bad), "list", "--json", cwd=tmp_path)
    assert res.returncode == 3 and res.stdout == ""
    _one_error(res)
    checked = run("-c", str(bad), "config", "check", "--json", cwd=tmp_path)  # the report is the document
    assert checked.returncode == 3 and json.loads(checked.stdout)["ok"] is False
    env = _env({"INBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-dir' / 'inbox.db'}"}, home=tmp_path)
    for args in (("list", "--json"), ("db", "status", "--json"), ("stats", "--json")):
        res = run(*args, cwd=tmp_path, env=env)
        assert res.returncode == 1 and res.stdout == "", args
        _one_error(res)


@pytest.mark.parametrize("no_color", [True, False])
def test_no_colour_escapes_in_output_to_a_pipe(hostile: tuple[Store, str, str], no_color: bool) -> None:
    """NO_COLOR=1, or just a pipe: plain text, whatever the customer's name and message held."""
    store, one, _other = hostile
    env = store.env()
    if not no_color:
        del env["NO_COLOR"]
    for args in (("list",), ("show", one, "--no-pager"), ("show", one, "--why", "--no-pager"), ("search", "BAYAR"), ("stats",),
                 ("accounts",), ("outbox", "--all"), ("quarantine",), ("config", "show"), ("db", "status"), ("sync", "--dry-run"),
                 ("show", "999999"), ("export", "--format", "csv")):
        res = store.inbox(*args, env=env)
        assert not any(e in res.stdout + res.stderr for e in ESCAPES), (args, (res.stdout + res.stderr)[:300])
