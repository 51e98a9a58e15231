"""`inbox demo`: the whole loop in one command, in a few seconds, leaving a store that works."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

INBOX = str(Path(sys.executable).parent / "inbox")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "120"})
    return subprocess.run([INBOX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    proc = _run("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for step in ("1. sync", "2. the inbox", "3. claim", "4. reply", "5. sync again", "6. real time", "next"):
        assert step in out
    assert "signed webhook → stored " in out
    assert "→ " in out and " DM " in out and "sent: reply #1" in out
    assert "is matched to reply #1" in out and "is now pending" in out
    assert "inbox sandbox serve" in out
    assert not list(tmp_path.iterdir())  # nothing written to the working directory


def test_demo_keeps_a_store_that_the_printed_commands_use(tmp_path: Path) -> None:
    db = tmp_path / "demo" / "inbox.db"
    proc = _run("demo", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = db.with_suffix(".toml")
    assert f"inbox -c {cfg} list" in proc.stdout
    listed = json.loads(_run("-c", str(cfg), "list", "--json", "--assignee", "demo-agent", cwd=tmp_path).stdout)["tickets"]
    assert len(listed) == 1 and listed[0]["status"] == "pending"
    shown = json.loads(_run("-c", str(cfg), "show", str(listed[0]["id"]), "--json", cwd=tmp_path).stdout)
    echoes = [m for m in shown["messages"] if m["direction"] == "out" and m["reply_id"] == 1]
    assert len(echoes) == 1 and echoes[0]["text"].startswith("Halo ")
    outbox = json.loads(_run("-c", str(cfg), "outbox", "--all", "--json", cwd=tmp_path).stdout)["replies"]
    assert [(r["state"], r["platform_id"]) for r in outbox] == [("sent", echoes[0]["platform_id"])]
    again = _run("demo", "--db", str(db), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
