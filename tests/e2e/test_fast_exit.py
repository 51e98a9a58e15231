"""The `inbox` command ends with os._exit once its work and exit handlers are done: the interpreter's
teardown (70-90 ms of module cleanup on a store command) is skipped, the exit code is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

# An object whose finalizer runs only when the interpreter tears its modules down (atexit handlers
# run either way, so they cannot tell the two exits apart).
WITNESS = """
import sys

class Witness:
    def __del__(self):
        sys.__stderr__.write("teardown ran\\n")

witness = Witness()
import cli
"""


def _run(tail: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env["INBOX_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fast-exit.db'}"
    script = textwrap.dedent(WITNESS) + textwrap.dedent(tail)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_the_command_skips_the_interpreter_teardown(tmp_path: Path) -> None:
    # As the console script calls it: main() with no argv reads sys.argv and ends the process.
    res = _run('sys.argv = ["inbox", "show", "4242"]\ncli.main()\n', tmp_path)
    assert res.returncode == 5, res.stderr
    assert "no ticket #4242" in res.stderr
    assert "teardown ran" not in res.stderr


def test_the_witness_sees_a_normal_exit(tmp_path: Path) -> None:
    # A caller in the same process (argv given) gets the code back and the interpreter exits
    # normally: the witness must say so, or the test above would pass without os._exit.
    res = _run('sys.exit(cli.main(["show", "4242"]))\n', tmp_path)
    assert res.returncode == 5, res.stderr
    assert "teardown ran" in res.stderr
