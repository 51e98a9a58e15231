"""The installed `inbox` command: help, version, exit codes, one-line errors, `config` and `db` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from inbox.errors import EXIT_CODES

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INBOX = Path(sys.executable).parent / "inbox"  # the console script installed with the package


def inbox(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    return subprocess.run(
        [str(INBOX), *args], capture_output=True, text=True, timeout=60, env={**base, **(env or {})}, cwd=cwd
    )


def test_console_script_is_installed() -> None:
    assert INBOX.is_file() and os.access(INBOX, os.X_OK)


def test_help_lists_commands_and_exit_codes(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        res = inbox(flag, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        for word in ("--config", "--json", "--debug", "--version", "config", "db"):
            assert word in res.stdout
        for code, text in EXIT_CODES.items():
            assert f"{code:>3}  {text}" in res.stdout
    res = inbox(cwd=tmp_path)  # no arguments: the help, as a usage error
    assert "Usage: inbox" in res.stdout + res.stderr
    for sub in ("config", "db"):
        res = inbox(sub, "--help", cwd=tmp_path)
        assert res.returncode == 0
    assert {"check", "show", "path"} <= set(inbox("config", "--help").stdout.split())
    assert {"upgrade", "status"} <= set(inbox("db", "--help").stdout.split())


def test_version_matches_the_package(tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    res = inbox("--version", cwd=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, f"inbox {version}\n", "")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["no-such-command"], ["--no-such-flag"], ["config", "check", "--bogus"]):
        res = inbox(*args, cwd=tmp_path)
        assert res.returncode == 2, args
        assert "Traceback" not in res.stderr


def test_config_error_is_one_line_exit_3_traceback_only_with_debug(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sync]\nconcurrency = "many"\n')
    res = inbox("--config", str(bad), "config", "check", cwd=tmp_path)
    assert res.returncode == 3
    assert res.stderr == f"error: {bad}: sync.concurrency: expected an integer (got 'many')\n"
    res = inbox("--debug", "--config", str(bad), "config", "check", cwd=tmp_path)
    assert res.returncode == 3  # same code with --debug, plus the traceback
    assert "Traceback" in res.stderr and res.stderr.rstrip().endswith("(got 'many')")
    res = inbox("--config", str(tmp_path / "missing.toml"), "db", "status", cwd=tmp_path)
    assert res.returncode == 3 and res.stderr.count("\n") == 1


def test_exit_codes_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, f"exit code {code} missing from README"


def test_config_path(tmp_path: Path) -> None:
    res = inbox("config", "path", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert res.returncode == 0 and res.stdout == "" and "no config file" in res.stderr
    (tmp_path / "inbox.toml").write_text('agent = "a"\n')
    res = inbox("config", "path", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert (res.returncode, res.stdout) == (0, f"{(tmp_path / 'inbox.toml').resolve()}\n")
    res = inbox("--json", "config", "path", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert json.loads(res.stdout)["path"] == str((tmp_path / "inbox.toml").resolve())


def test_db_status_and_upgrade(db_url: str, tmp_path: Path) -> None:
    """On both backends: a new database is empty with everything pending; upgrade applies it once."""
    cfg = tmp_path / "inbox.toml"
    cfg.write_text('database = "never-used.db"\n')
    env = {"INBOX_DATABASE_URL": db_url}  # also checks the override reaches the commands
    res = inbox("--config", str(cfg), "db", "status", "--json", env=env)
    assert res.returncode == 0, res.stderr
    before = json.loads(res.stdout)
    assert before["current"] is None and before["up_to_date"] is False
    assert before["pending"][-1] == before["head"]

    res = inbox("--config", str(cfg), "db", "upgrade", env=env)
    assert res.returncode == 0, res.stderr
    assert f"upgraded empty → {before['head']}" in res.stdout

    res = inbox("--config", str(cfg), "--json", "db", "upgrade", env=env)
    assert json.loads(res.stdout)["applied"] == []
    res = inbox("--config", str(cfg), "db", "status", env=env)
    assert res.returncode == 0
    assert f"current:  {before['head']}" in res.stdout and "pending:  none" in res.stdout
    assert not (tmp_path / "never-used.db").exists()


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "inbox.toml"
    cfg.write_text('database = "postgresql+psycopg://care:pw-Secret-1@127.0.0.1:9/inbox"\n')
    res = inbox("--config", str(cfg), "db", "status", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("error: database unavailable:") and res.stderr.count("\n") == 1
    assert "pw-Secret-1" not in res.stderr


def test_error_line_is_cleaned_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import cli
    from connectors.errors import PermanentError
    from connectors.redact import register_secret

    register_secret("tok-Err-Secret-9")
    err = PermanentError("platform said: \x1b]52;c;ZXZpbA==\x07\x1b[31mred\x1b[0m\nsecond line tok-Err-Secret-9")

    def boom() -> None:
        raise err

    cli.app.command("boom-test")(boom)
    try:
        assert cli.main(["boom-test"]) == 7
    finally:
        cli.app.registered_commands.pop()
    out = capsys.readouterr().err
    assert out.startswith("error: platform said: red second line ") and out.count("\n") == 1
    assert "\x1b" not in out and "\x07" not in out
    assert "tok-Err-Secret-9" not in out


def test_the_command_exits_without_teardown_but_after_its_exit_handlers(tmp_path: Path) -> None:
    # `inbox` ends with os._exit once done (inbox/cli.py): output flushed, exit code kept, exit
    # handlers run. Observable on SQLite: disposing the engine at exit closes the last connection,
    # which checkpoints and removes the -wal file; a process killed without them leaves it behind.
    db = tmp_path / "fresh.db"
    env = {"INBOX_DATABASE_URL": f"sqlite:///{db}"}
    out = inbox("--json", "list", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tickets"] == []
    assert db.exists() and not Path(f"{db}-wal").exists()
    missing = inbox("show", "4242", env=env, cwd=tmp_path)
    assert missing.returncode == 5 and "no ticket #4242" in missing.stderr
