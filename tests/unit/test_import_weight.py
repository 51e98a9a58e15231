"""Start-up stays light: `inbox --help` / `--version` never import the store or the HTTP stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INBOX = Path(sys.executable).parent / "inbox"
HEAVY = ("sqlalchemy", "sqlmodel", "tweepy", "requests", "alembic", "psycopg", "apscheduler", "rapidfuzz")


def imported_modules(*args: str, cwd: Path) -> set[str]:
    """Top-level packages imported by one run of the installed `inbox` command (from -X importtime)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # same as python -X importtime, through the console script
    res = subprocess.run([str(INBOX), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    modules = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules.add(name.split(".")[0])
    return modules


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("config", "--help"), ("db", "--help")])
def test_help_and_version_do_not_import_heavy_modules(args: tuple[str, ...], tmp_path: Path) -> None:
    modules = imported_modules(*args, cwd=tmp_path)
    assert "typer" in modules and "cli" in modules  # the measurement itself works
    loaded = sorted(m for m in HEAVY if m in modules)
    assert loaded == [], f"`inbox {' '.join(args)}` imports {loaded}: move those imports into the commands"


def test_the_check_would_catch_a_heavy_import(tmp_path: Path) -> None:
    """`inbox db status` legitimately needs SQLAlchemy: the same measurement sees it."""
    (tmp_path / "inbox.toml").write_text('database = "x.db"\n')
    assert "sqlalchemy" in imported_modules("db", "status", cwd=tmp_path)


def test_triage_commands_do_not_import_sqlmodel(tmp_path: Path) -> None:
    """Store commands use SQLAlchemy Core tables (inbox.store.tables); the ORM models are for migrations only."""
    (tmp_path / "inbox.toml").write_text('database = "sqlite:///x.db"\n')
    assert "sqlmodel" in imported_modules("db", "upgrade", cwd=tmp_path)  # the measurement sees it when it happens
    for args in (("list",), ("search", "paket"), ("outbox",), ("stats",)):
        modules = imported_modules(*args, cwd=tmp_path)
        assert "sqlalchemy" in modules and "sqlmodel" not in modules, args
