"""What people type at the CLI that it cannot use: every such input is a usage error (exit 2) on
one line saying what is wrong and where to look, never an overflow from the store or the date
arithmetic, never click's four-line usage block."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli_contract import Store, _one_error, store  # noqa: F401 - the module's synced store

pytestmark = pytest.mark.slow

HUGE = "99999999999999999999999"  # past 64 bits: no store holds such an id


@pytest.mark.parametrize("args", [
    ("show", HUGE), ("claim", HUGE), ("note", HUGE, "x"), ("status", HUGE, "open"), ("merge", "1", HUGE),
    ("link", "1", HUGE, "-r", "x"), ("unlink", HUGE), ("reply", "1", "hi", "--to", HUGE, "--yes"),
    ("outbox", "retry", HUGE), ("quarantine", "show", HUGE), ("show", "0"), ("show", "--", "-1"),
    ("list", "--limit", HUGE), ("outbox", "--limit", HUGE), ("quarantine", "--limit", "0"),
    ("list", "--window-closing", "nan"), ("list", "--window-closing", "inf"), ("list", "--window-closing", "1e308"),
    ("list", "--window-closing", "-1"), ("search", "refund", "--window-closing", "1e308"),
    ("stats", "--days", "1e20"), ("stats", "--days", "inf"),
])
def test_numbers_out_of_range_are_usage_errors(store: Store, args: tuple[str, ...]) -> None:  # noqa: F811
    res = store.inbox(*args)
    line = _one_error(res)
    assert res.returncode == 2 and "unexpected" not in line and "Overflow" not in line, line
    assert "out of range" in line and f"see `inbox {args[0]}" in line, line


@pytest.mark.parametrize(("args", "words"), [
    (("show", "-1"), "No such option: -1"),
    (("show",), "Missing argument 'ID'"),
    (("no-such-command",), "No such command 'no-such-command'"),
    (("list", "--jsn"), "No such option: --jsn"),
    (("link", "1", "2"), "Missing option '--reason'"),
    (("show", "abc"), "'abc' is not a whole number"),
    (("config", "bogus"), "No such command 'bogus'"),
])
def test_usage_errors_are_one_line_with_where_to_look(store: Store, args: tuple[str, ...], words: str) -> None:  # noqa: F811
    res = store.inbox(*args)
    line = _one_error(res)
    assert res.returncode == 2 and words in line and "--help`" in line and res.stdout == "", line


def test_ids_and_periods_in_range_still_work(store: Store) -> None:  # noqa: F811
    assert store.inbox("show", "1", "--no-pager").returncode == 0
    assert store.inbox("list", "--window-closing", "4", "--limit", "3").returncode == 0
    assert store.inbox("stats", "--days", "0.5").returncode == 0
    missing = store.inbox("show", "9223372036854775807")  # the largest id: a real lookup, not found
    assert missing.returncode == 5 and "no ticket #9223372036854775807" in _one_error(missing)
    bare = store.inbox()  # options but no command: say so on one line
    assert bare.returncode == 2 and "Missing command" in _one_error(bare)


def test_an_export_to_a_path_that_cannot_be_written_is_a_usage_error(store: Store) -> None:  # noqa: F811
    for target in (store.dir / "no-such-dir" / "out.csv", store.dir):
        res = store.inbox("export", "--format", "csv", "--output", str(target))
        line = _one_error(res)
        assert res.returncode == 2 and f"cannot write {target}" in line and "unexpected" not in line, line
    assert not (store.dir / "no-such-dir").exists()


def test_a_reply_with_control_characters_or_nothing_visible_is_not_sent(store: Store) -> None:  # noqa: F811
    before = len(store.sb.sent("tokoshop-x"))
    for text in ("Halo kak\x00 kami cek", "cek \x1b[31mINV\x1b[0m ya", "\u200b\u2060"):
        res = store.inbox("reply", "1", "-", "--yes", stdin=text)
        line = _one_error(res)
        assert res.returncode == 2 and ("control character" in line or "empty reply" in line), line
    assert len(store.sb.sent("tokoshop-x")) == before


@pytest.mark.parametrize(("args", "words"), [
    (("assign", "1", ""), "the assignee is empty"),
    (("assign", "1", "   "), "the assignee is empty"),
    (("assign", "1", "b" * 101), "the assignee has 101 characters; the limit is 100"),
    (("note", "1", "ok", "--agent", "a" * 101), "the --agent name has 101 characters"),
    (("note", "1", "ok", "--agent", " "), "the --agent name is empty"),
    (("note", "1", "x" * 10_001), "the note has 10,001 characters; the limit is 10,000"),
    (("assign", "1", "budi\nsari"), "the assignee has a control character (U+000A)"),
    (("note", "1", "ok", "--agent", "ana\x1b[2J"), "the --agent name has a control character (U+001B)"),
])
def test_names_and_notes_that_cannot_be_stored_whole_are_refused(store: Store, args: tuple[str, ...], words: str) -> None:  # noqa: F811
    """Cut at the column's width, two long names became one assignee; an empty one unassigned."""
    before = store.inbox("show", "1", "--json")
    res = store.inbox(*args)
    line = _one_error(res)
    assert res.returncode == 2 and words in line, line
    assert store.inbox("show", "1", "--json").stdout == before.stdout  # nothing changed


def test_a_configured_agent_name_holding_a_nul_is_refused_before_anything_is_stored(store: Store) -> None:  # noqa: F811
    """TOML can write a NUL (`\\u0000`): PostgreSQL cannot store one, SQLite would keep it in the audit log."""
    from tests.e2e.test_cli_contract import run

    config = store.dir / "inbox-nul-agent.toml"
    config.write_text('agent = "ana\\u0000"\n' + store.config.read_text(encoding="utf-8"), encoding="utf-8")
    before = store.inbox("show", "1", "--json")
    res = run("-c", str(config), "note", "1", "cek dulu", cwd=store.dir, env=store.env())
    line = _one_error(res)
    assert res.returncode == 2 and "the configured agent name has a control character (U+0000)" in line, line
    assert store.inbox("show", "1", "--json").stdout == before.stdout


def test_names_at_the_limit_and_none_in_any_case_still_work(store: Store) -> None:  # noqa: F811
    import json

    name = "budi." + "s" * 95
    assert store.inbox("assign", "1", name).returncode == 0
    assert json.loads(store.inbox("show", "1", "--json").stdout)["ticket"]["assignee"] == name
    assert store.inbox("assign", "1", "None").returncode == 0
    assert json.loads(store.inbox("show", "1", "--json").stdout)["ticket"]["assignee"] is None
    res = store.inbox("note", "1", "x" * 10_000, "--agent", name)
    assert res.returncode == 0, res.stderr


# Bytes that are not UTF-8 (a Latin-1 terminal, a mangled paste) reach Python as lone surrogates
# ("\udcff" for the byte 0xFF): stored, they broke every later --json output of the ticket.
NOT_UTF8 = "ok\udcff"


@pytest.mark.parametrize("args", [
    ("note", "1", NOT_UTF8), ("tag", "1", NOT_UTF8), ("assign", "1", NOT_UTF8), ("list", "--tag", NOT_UTF8),
    ("search", NOT_UTF8), ("reply", "1", NOT_UTF8, "--yes"), ("note", "1", "ok", "--agent", NOT_UTF8),
])
def test_arguments_that_are_not_utf8_are_usage_errors(store: Store, args: tuple[str, ...]) -> None:  # noqa: F811
    before = store.inbox("show", "1", "--json")
    res = store.inbox(*args)
    line = _one_error(res)
    assert res.returncode == 2 and "is not valid UTF-8" in line and "0xFF" in line and "unexpected" not in line, line
    assert store.inbox("show", "1", "--json").stdout == before.stdout  # nothing stored


def test_an_agent_name_or_reply_on_stdin_that_is_not_utf8_is_a_usage_error(store: Store) -> None:  # noqa: F811
    import subprocess

    from tests.e2e.test_cli_contract import INBOX

    res = store.inbox("note", "1", "ok", env=store.env(INBOX_AGENT=NOT_UTF8))
    assert res.returncode == 2 and "INBOX_AGENT name is not valid UTF-8" in _one_error(res)
    before = len(store.sb.sent("tokoshop-x"))
    piped = subprocess.run([INBOX, "-c", str(store.config), "reply", "1", "-", "--yes"], input=b"Halo kak \xff", cwd=store.dir,
                           env=store.env(), capture_output=True, timeout=60)
    err = piped.stderr.decode("utf-8")
    assert piped.returncode == 2 and "standard input is not valid UTF-8" in err and "Traceback" not in err, err
    assert len(store.sb.sent("tokoshop-x")) == before


def test_a_reply_written_in_the_editor_that_is_not_utf8_is_refused_and_kept(store: Store, tmp_path) -> None:  # noqa: F811
    """An editor saving in Latin-1: the text was read strictly, lost with its temporary file, and the
    error was 'unexpected UnicodeDecodeError'."""
    state = tmp_path / "state"
    env = store.env(XDG_STATE_HOME=str(state), EDITOR="sh -c 'printf \"Halo kak, sudah kami cek \\377\\n\" > \"$1\"' editor")
    before = len(store.sb.sent("tokoshop-x"))
    res = store.inbox("reply", "1", "--editor", "--yes", env=env)
    line = _one_error(res)
    assert res.returncode == 2 and "the edited reply is not valid UTF-8 (byte 0xFF" in line and "unexpected" not in line, line
    [draft] = (state / "inbox" / "drafts").glob("ticket-1-*.txt")
    assert str(draft) in line and draft.read_text(encoding="utf-8").strip() == "Halo kak, sudah kami cek \ufffd"
    assert len(store.sb.sent("tokoshop-x")) == before


def test_output_to_a_full_disk_says_so(store: Store) -> None:  # noqa: F811
    import subprocess

    from tests.e2e.test_cli_contract import INBOX

    for args in (("list",), ("show", "1", "--json"), ("export",), ("export", "--format", "csv", "--output", "/dev/full")):
        with open("/dev/full", "w") as full:
            res = subprocess.run([INBOX, "-c", str(store.config), *args], cwd=store.dir, env=store.env(), stdout=full,
                                 stderr=subprocess.PIPE, text=True, timeout=60)
        line = _one_error(res)
        assert res.returncode == 1 and "No space left on device" in line and "unexpected" not in line, (args, line)
