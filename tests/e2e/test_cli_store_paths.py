"""A SQLite `database` that cannot be a store (its directory missing, a directory, a file where a
directory should be, a file of random bytes, a place nobody can write): every command that opens
the store says which, on one line, with exit 1 (the database is unreachable); a traceback only
with --debug; with --json nothing on stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

INBOX = str(Path(sys.executable).parent / "inbox")

STORE_COMMANDS = [("list",), ("show", "1"), ("sync",), ("db", "upgrade"), ("db", "status"), ("stats",), ("export",),
                  ("search", "refund")]


def _inbox(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "inbox.toml"
    # One account, so `sync` reaches the store (its platform is never called: the store fails first).
    cfg.write_text('[[accounts]]\nname = "fb"\nchannel = "facebook"\npage_id = "123"\naccess_token_env = "T_FB"\n'
                   'base_url = "http://127.0.0.1:9"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env.update({"INBOX_DATABASE_URL": url, "T_FB": "tok-store-paths-0123456789", "NO_COLOR": "1", "HOME": str(tmp_path)})
    return subprocess.run([INBOX, "-c", str(cfg), *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)


def _problems(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each broken store path, and the words that must say what is wrong with it."""
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("notes\n", encoding="utf-8")
    (tmp_path / "random.db").write_bytes(os.urandom(8192))
    return {
        "missing directory": (tmp_path / "no-such-dir" / "inbox.db", f"the directory {tmp_path / 'no-such-dir'} does not exist"),
        "a directory": (tmp_path / "a-directory", "is a directory, not a file"),
        "a file as its directory": (tmp_path / "a-file" / "inbox.db", f"{tmp_path / 'a-file'} is a file, not a directory"),
        "random bytes": (tmp_path / "random.db", "not an inbox database"),
        # Read-only even for root (tests may run as root, where chmod 555 stops nothing).
        "not writable": (Path("/proc/inbox-test.db"), "cannot be opened"),
    }


PROBLEMS = ["missing directory", "a directory", "a file as its directory", "random bytes", "not writable"]


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("args", STORE_COMMANDS, ids=" ".join)
def test_a_store_path_that_cannot_hold_a_store_is_one_line_saying_why(tmp_path: Path, problem: str, args: tuple[str, ...]) -> None:
    path, words = _problems(tmp_path)[problem]
    res = _inbox(tmp_path, f"sqlite:///{path}", *args)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: SQLite file {path}: "), res.stderr
    assert res.returncode == 1 and words in lines[0] and "unexpected" not in lines[0], lines[0]
    assert res.stdout == ""
    assert not (tmp_path / "no-such-dir").exists()


@pytest.mark.parametrize("problem", ["a directory", "random bytes"])
def test_json_keeps_stdout_empty_and_debug_adds_the_traceback(tmp_path: Path, problem: str) -> None:
    path, words = _problems(tmp_path)[problem]
    res = _inbox(tmp_path, f"sqlite:///{path}", "list", "--json")
    assert res.returncode == 1 and res.stdout == "" and len(res.stderr.splitlines()) == 1 and words in res.stderr
    res = _inbox(tmp_path, f"sqlite:///{path}", "--debug", "list")
    assert res.returncode == 1 and "Traceback" in res.stderr
    assert res.stderr.splitlines()[-1].startswith(f"error: SQLite file {path}: ") and words in res.stderr.splitlines()[-1]


def test_another_programs_sqlite_database_is_refused_not_built_on(tmp_path: Path) -> None:
    """A SQLite file holding someone else's tables (the wrong file named): inbox's 17 tables were
    added to it without a word. Refused (exit 3) and left as it was."""
    import sqlite3

    theirs = tmp_path / "notes.db"
    with sqlite3.connect(theirs) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    for args in (("list",), ("db", "upgrade")):
        res = _inbox(tmp_path, f"sqlite:///{theirs}", *args)
        lines = res.stderr.splitlines()
        assert res.returncode == 3 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert "holds other tables (notes) and no inbox schema" in lines[0] and "at a new file" in lines[0], lines[0]
    with sqlite3.connect(theirs) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
