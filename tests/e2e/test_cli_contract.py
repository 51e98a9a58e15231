"""The CLI's contract with the people and scripts calling it: the README's exit codes, one-line
errors that say what is wrong, closed pipes, the first run from a checkout (`./run`, the demo, the
sandbox's config). Through the installed command (subprocesses) against a synced sandbox store."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from tests.store.test_sync import fast_factory, sandbox_settings

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INBOX = str(Path(sys.executable).parent / "inbox")


def _env(extra: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "120"})
    if home is not None:
        env["HOME"] = str(home)
    return {**env, **(extra or {})}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INBOX, *args], cwd=cwd, env=env or _env(home=cwd), capture_output=True, text=True, timeout=120,
                          input=stdin)


@dataclass
class Store:
    sb: Sandbox
    config: Path
    dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return _env({**self.sb.env(), **extra}, home=self.dir)

    def inbox(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run("-c", str(self.config), *args, cwd=self.dir, env=env or self.env(), stdin=stdin)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The seeded sandbox, served for the module, synced once into a SQLite store with a config file."""
    from inbox.store import open_store
    from inbox.sync.pool import sync_all

    directory = tmp_path_factory.mktemp("contract")
    with Sandbox(seed=7).start() as sb, pytest.MonkeyPatch.context() as mp:
        for key, value in sb.env().items():
            mp.setenv(key, value)
        url = f"sqlite:///{directory / 'inbox.db'}"
        config = directory / "inbox-test.toml"
        config.write_text(sb.config_toml(database=url), encoding="utf-8")
        settings = sandbox_settings(sb, url)
        engine = open_store(url)
        assert {r.status for r in sync_all(engine, settings, connector_factory=fast_factory(settings))} == {"ok"}
        engine.dispose()
        yield Store(sb, config, directory)


def _one_error(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# ── exit codes (README table) ───────────────────────────────────────────────────────────────

def test_an_unset_token_variable_is_a_config_error_not_try_again_later(store: Store) -> None:
    env = store.env()
    del env["INBOX_SANDBOX_X_TOKEN"]
    res = store.inbox("sync", "--account", "tokoshop-x", "--json", env=env)
    assert res.returncode == 3, res.stderr
    [account] = json.loads(res.stdout)["accounts"]
    assert account["status"] == "config-error" and "INBOX_SANDBOX_X_TOKEN is not set" in account["error"]
    table = store.inbox("sync", "--account", "tokoshop-x", env=env)
    assert table.returncode == 3 and "config-error" in table.stdout


def test_an_unknown_account_is_not_found(store: Store) -> None:
    for args in (("accounts", "reset", "nosuch"), ("sync", "--account", "nosuch")):
        res = store.inbox(*args)
        assert res.returncode == 5, (args, res.stderr)
        line = _one_error(res)
        assert "no account named 'nosuch'" in line and "tokoshop-fb" in line  # and which ones there are


def test_a_closed_pipe_ends_quietly_with_0(store: Store) -> None:
    """`inbox show 1 | head -2`, `inbox export | head -c 100`: the reader has gone before the output ends."""
    for args in (("show", "1", "--no-pager"), ("export",), ("export", "--format", "csv"), ("list",)):
        read, write = os.pipe()
        os.close(read)  # the reader is already gone: the first write meets a closed pipe
        try:
            proc = subprocess.run([INBOX, "-c", str(store.config), *args], cwd=store.dir, env=store.env(), stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write)
        assert (proc.returncode, proc.stderr) == (0, ""), args


def test_config_check_shows_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('log_level = "LOUD"\n[sync]\nconcurrency = "many"\ninterval_seconds = 1\n[replies]\nconfirm = "maybe"\n')
    res = run("-c", str(bad), "config", "check", cwd=tmp_path)
    assert res.returncode == 3 and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"error: {bad}: ") for line in lines), res.stderr
    for key in ("log_level", "sync.concurrency", "sync.interval_seconds", "replies.confirm"):
        assert sum(key + ":" in line for line in lines) == 1, key
    assert "more problem" not in res.stderr
    data = json.loads(run("-c", str(bad), "config", "check", "--json", cwd=tmp_path).stdout)
    assert data["ok"] is False and len(data["errors"]) == 4


def test_sqlite_problems_name_the_file_not_a_server(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no-such-dir" / "inbox.db"
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(f'database = "{missing_dir}"\n')
    line = _one_error(res := run("list", cwd=tmp_path))
    assert res.returncode == 1 and str(missing_dir) in line and f"the directory {missing_dir.parent} does not exist" in line and "server" not in line
    not_db = tmp_path / "notes.db"
    not_db.write_text("these are my notes, not a database\n" * 100)
    cfg.write_text(f'database = "{not_db}"\n')
    line = _one_error(res := run("list", cwd=tmp_path))
    assert res.returncode == 1 and str(not_db) in line and "not an inbox database" in line and "unexpected" not in line


def test_an_unsupported_database_url_scheme_is_a_config_error(tmp_path: Path) -> None:
    env = _env({"INBOX_DATABASE_URL": "mysql://care:hunter22@db.internal/inbox"}, home=tmp_path)
    res = run("list", cwd=tmp_path, env=env)
    line = _one_error(res)
    assert res.returncode == 3 and "unsupported database URL scheme 'mysql'" in line and "INBOX_DATABASE_URL" in line
    assert "hunter22" not in res.stderr and "ModuleNotFoundError" not in res.stderr
    (tmp_path / "inbox.toml").write_text('database = "mysql+pymysql://care@db.internal/inbox"\n')
    line = _one_error(res := run("list", cwd=tmp_path))
    assert res.returncode == 3 and "unsupported database URL scheme 'mysql+pymysql'" in line


def test_bad_numbers_and_blank_replies_are_usage_errors(store: Store) -> None:
    for days in ("-3", "0", "nan"):
        res = store.inbox("stats", "--days", days)
        assert res.returncode == 2 and "--days" in _one_error(res), days
    before = len(store.sb.sent("tokoshop-x"))
    for text in ("", "   ", " \n\t "):
        res = store.inbox("reply", "1", text, "--yes")
        assert res.returncode == 2 and "empty reply" in _one_error(res), repr(text)
    assert len(store.sb.sent("tokoshop-x")) == before


# ── the first run ───────────────────────────────────────────────────────────────────────────

def test_sync_without_any_config_file_says_so(tmp_path: Path) -> None:
    for args in (("sync",), ("run",), ("accounts",)):
        res = run(*args, cwd=tmp_path)
        line = _one_error(res)
        assert res.returncode == 3 and "no config file found; looked in inbox.toml" in line, args
        assert str(tmp_path / ".config" / "inbox" / "config.toml") in line and "no enabled accounts" not in line


def test_run_script_keeps_the_callers_directory(store: Store, tmp_path: Path) -> None:
    """`./run -c inbox-sandbox.toml list` and `./run export -o out.csv` mean files where the user is."""
    (tmp_path / "mine.toml").write_text(store.config.read_text(encoding="utf-8"), encoding="utf-8")
    env = store.env()
    res = subprocess.run([str(ROOT / "run"), "-c", "mine.toml", "export", "--format", "csv", "-o", "out.csv"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.csv").stat().st_size > 100
    assert not (ROOT / "out.csv").exists()


def test_demo_never_overwrites_a_users_config_and_its_next_steps_work_as_printed(tmp_path: Path) -> None:
    mine = tmp_path / "inbox.toml"
    mine.write_text("# my team's config\n", encoding="utf-8")
    env = _env(home=tmp_path)
    env["PATH"] = "/usr/bin:/bin"  # `inbox` itself is not on PATH, as after `./run demo` from a checkout
    res = subprocess.run([INBOX, "demo", "--db", "inbox.db"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert mine.read_text(encoding="utf-8") == "# my team's config\n"
    written = tmp_path / "inbox-demo.toml"
    assert 'database = "sqlite:///' in written.read_text(encoding="utf-8")
    printed = [line.strip() for line in res.stdout.splitlines() if " -c " in line and line.strip().endswith(" list")]
    assert printed, res.stdout
    listed = subprocess.run(printed[0], shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "#" in listed.stdout, listed.stderr
    serve = next(line.strip() for line in res.stdout.splitlines() if "sandbox serve" in line)
    assert shlex.split(serve)[0] in (INBOX, "inbox") and os.path.isabs(shlex.split(serve)[0])


def test_sandbox_serve_prints_the_one_config_line_discovery_needs(tmp_path: Path) -> None:
    """Paste the printed export lines, then plain `inbox sync` / `inbox list` (no -c) use the sandbox."""
    from tests.waiting import interrupt

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.Popen([INBOX, "sandbox", "serve", "--port", "0"], cwd=tmp_path, env=_env(home=tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        while not lines or "Ctrl-C" not in lines[-1]:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "serve exited early"
            lines.append(line)
        exports = [line.strip() for line in lines if line.startswith("export ")]
        assert any(line.startswith("export INBOX_CONFIG=") for line in exports)
        script = "\n".join([*exports, f"{shlex.quote(INBOX)} sync --json >/dev/null", f"{shlex.quote(INBOX)} list --json"])
        res = subprocess.run(["sh", "-c", script], cwd=workdir, env=_env(home=workdir), capture_output=True, text=True, timeout=120)
    finally:
        interrupt(proc)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tickets"]
    assert (tmp_path / "inbox-sandbox.db").exists() and not list(workdir.iterdir())  # the database beside its config


def _json_times(data: Any) -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for v in data.values():
            found += _json_times(v)
    elif isinstance(data, list):
        for v in data:
            found += _json_times(v)
    elif isinstance(data, str) and re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", data):
        found.append(data)
    return found


# ── times ───────────────────────────────────────────────────────────────────────────────────
JSON_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def test_every_json_time_is_utc_in_one_format(store: Store) -> None:
    x_ticket = json.loads(store.inbox("list", "--json", "--channel", "x", "--status", "all").stdout)["tickets"][0]["id"]
    assert store.inbox("reply", str(x_ticket), "Halo kak, kami cek dulu ya", "--yes").returncode == 0
    outputs = {
        "list": store.inbox("list", "--json", "--status", "all"),
        "show": store.inbox("show", str(x_ticket), "--json"),
        "search": store.inbox("search", "refund", "--json"),
        "stats": store.inbox("stats", "--json"),
        "accounts": store.inbox("accounts", "--json"),
        "sync": store.inbox("sync", "--account", "tokoshop-x", "--json"),
        "outbox": store.inbox("outbox", "--all", "--json"),
    }
    for name, res in outputs.items():
        assert res.returncode in (0, 1), (name, res.stderr)  # accounts: 1 when one is unhealthy
        times = _json_times(json.loads(res.stdout))
        assert times, name
        assert [t for t in times if not JSON_TIME.match(t)] == [], name
    export = store.inbox("export").stdout.splitlines()
    times = [t for line in export for t in _json_times(json.loads(line))]
    assert times and all(JSON_TIME.match(t) for t in times)
    csv_rows = store.inbox("export", "--format", "csv").stdout.splitlines()[1:]
    assert all(re.search(r",\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z,", row) for row in csv_rows[:50])


def test_human_output_is_in_the_teams_zone_with_the_zone_shown(store: Store, tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    shown = json.loads(store.inbox("show", "1", "--json").stdout)
    first = datetime.strptime(shown["messages"][0]["time"], "%Y-%m-%dT%H:%M:%SZ")
    jakarta = (first + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M") + " WIB"
    utc = first.strftime("%Y-%m-%d %H:%M")
    by_tz = store.inbox("show", "1", "--no-pager", env=store.env(TZ="Asia/Jakarta")).stdout
    assert jakarta in by_tz and f"{utc} UTC" not in by_tz
    configured = tmp_path / "jakarta.toml"
    configured.write_text('timezone = "Asia/Jakarta"\n' + store.config.read_text(encoding="utf-8"), encoding="utf-8")
    res = run("-c", str(configured), "show", "1", "--no-pager", cwd=store.dir, env=store.env(TZ="UTC"))
    assert jakarta in res.stdout, res.stderr
    assert f"{utc} UTC" in store.inbox("show", "1", "--no-pager", env=store.env(TZ="UTC")).stdout
    offset = store.inbox("show", "1", "--no-pager", env=store.env(TZ="Asia/Ho_Chi_Minh")).stdout
    assert (first + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M") + " +07:00" in offset  # a zone without letters: its offset
    assert json.loads(run("-c", str(configured), "show", "1", "--json", cwd=store.dir, env=store.env()).stdout) == shown  # JSON stays UTC
    bad = tmp_path / "bad-zone.toml"
    bad.write_text('timezone = "Asia/Jakartaa"\n', encoding="utf-8")
    res = run("-c", str(bad), "config", "check", cwd=tmp_path)
    assert res.returncode == 3 and "unknown time zone 'Asia/Jakartaa'" in _one_error(res)


# ── reply: standard input, drafts ───────────────────────────────────────────────────────────

def _x_ticket(store: Store, n: int) -> int:
    """The n-th ticket on X; replies to it name the X thread (`--via x`), since dedup may have joined
    the same customer's thread on another channel to it."""
    return json.loads(store.inbox("list", "--json", "--channel", "x", "--status", "all").stdout)["tickets"][n]["id"]


def test_reply_dash_reads_the_text_from_standard_input(store: Store) -> None:
    ticket = _x_ticket(store, 1)
    res = store.inbox("reply", str(ticket), "-", "--via", "x", "--yes", stdin="Halo kak, paketnya sudah dikirim ulang 🙏\n")
    assert res.returncode == 0, res.stderr
    assert store.sb.sent("tokoshop-x")[-1]["text"] == "Halo kak, paketnya sudah dikirim ulang 🙏"
    blank = store.inbox("reply", str(ticket), "-", "--via", "x", "--yes", stdin="  \n")
    assert blank.returncode == 2 and "empty reply on standard input" in _one_error(blank)
    assert all(s["text"] != "-" for s in store.sb.sent("tokoshop-x"))


def test_declining_after_the_editor_keeps_the_text_as_a_draft_offered_next_time(store: Store, tmp_path: Path) -> None:
    import pty

    ticket = _x_ticket(store, 2)
    state = tmp_path / "state"
    typed = "Halo kak, refund INV/20261120/MPL/3817265540 sedang diproses"
    writer = f"sh -c 'printf \"%s\\n\" \"{typed}\" > \"$1\"' editor"
    env = store.env(XDG_STATE_HOME=str(state), EDITOR=writer)
    before = len(store.sb.sent("tokoshop-x"))
    master, slave = pty.openpty()  # a terminal to be asked on, answered "n"
    try:
        os.write(master, b"n\n")
        res = subprocess.run([INBOX, "-c", str(store.config), "reply", str(ticket), "--via", "x", "--editor"], cwd=store.dir, env=env,
                             stdin=slave, capture_output=True, text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert res.returncode == 2 and "cancelled: nothing sent" in res.stderr, res.stderr
    drafts = list((state / "inbox" / "drafts").glob(f"ticket-{ticket}-*.txt"))
    assert len(drafts) == 1 and str(drafts[0]) in res.stderr and drafts[0].read_text(encoding="utf-8").strip() == typed
    assert drafts[0].stat().st_mode & 0o077 == 0
    assert len(store.sb.sent("tokoshop-x")) == before
    # Next time the editor opens on the draft; leaving it as it is sends it.
    seen = tmp_path / "offered.txt"
    env["EDITOR"] = f"sh -c 'cp \"$1\" {shlex.quote(str(seen))}' editor"
    res = store.inbox("reply", str(ticket), "--via", "x", "--editor", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert typed in seen.read_text(encoding="utf-8")
    assert store.sb.sent("tokoshop-x")[-1]["text"] == typed
    assert not drafts[0].exists()


# ── tables, pager, logs, help ───────────────────────────────────────────────────────────────

def test_outbox_at_80_columns_keeps_id_ticket_and_state_whole(store: Store) -> None:
    ticket = _x_ticket(store, 3)
    long_text = "Halo kak, " + "mohon maaf atas keterlambatan pengiriman pesanan Anda, kami sudah menghubungi kurir " * 2
    assert store.inbox("reply", str(ticket), long_text, "--via", "x", "--yes").returncode == 0
    replies = json.loads(store.inbox("outbox", "--all", "--json").stdout)["replies"]
    for columns in ("80", "120"):
        out = store.inbox("outbox", "--all", env=store.env(COLUMNS=columns)).stdout
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["#", "ticket", "state"], out
        assert all(len(line) <= int(columns) for line in lines)
        for r in replies:
            row = next(line for line in lines if line.split()[:1] == [str(r["id"])])
            assert row.split()[1:3] == [f"#{r['ticket_id']}", r["state"]], row  # whole, never "unkn…"
        assert "kurir" in out  # the text folds onto more lines instead of pushing the id out


def test_list_at_80_columns_gives_the_snippet_room(store: Store) -> None:
    out = store.inbox("list", env=store.env(COLUMNS="80")).stdout
    header, *rows = out.splitlines()
    snippet_start = header.index("snippet")
    snippet_end = header.index("age", snippet_start) - 1
    assert snippet_end - snippet_start >= 22, header
    assert all(len(line) <= 80 for line in rows)


def test_the_pager_is_chosen_on_the_rendered_height(store: Store, tmp_path: Path) -> None:
    """Few messages that fold onto many lines still page on a 40-row terminal; a short one does not."""
    import pty

    tickets = json.loads(store.inbox("list", "--json", "--status", "all", "--limit", "200").stdout)["tickets"]

    def rendered(ticket_id: int) -> tuple[int, int]:
        shown = json.loads(store.inbox("show", str(ticket_id), "--json").stdout)
        lines = store.inbox("show", str(ticket_id), "--no-pager", env=store.env(COLUMNS="80")).stdout.count("\n")
        return len(shown["messages"]) + len([e for e in shown["events"] if e["action"] != "note"]), lines

    # Candidates from one listing (a subprocess per ticket costs too much): the longest thread of at
    # most 20 messages, and a one-message ticket.
    tall = max((t for t in tickets if t["message_count"] <= 20), key=lambda t: t["message_count"])["id"]
    short = min(tickets, key=lambda t: t["message_count"])["id"]
    items, lines = rendered(tall)
    assert items <= 32 and lines > 42, (items, lines)  # the old rule (messages + events > 40 - 8) said: it fits
    assert rendered(short)[1] < 30
    paged = tmp_path / "paged.txt"

    def show_on_a_terminal(ticket_id: int) -> bool:
        paged.unlink(missing_ok=True)
        master, slave = pty.openpty()
        try:
            env = store.env(COLUMNS="80", LINES="40", PAGER=f"cat > {shlex.quote(str(paged))}", MANPAGER="", TERM="xterm")
            env.pop("MANPAGER")
            proc = subprocess.Popen([INBOX, "-c", str(store.config), "show", str(ticket_id)], cwd=store.dir, env=env,
                                    stdin=slave, stdout=slave, stderr=slave)
            os.close(slave)
            slave = -1
            while True:  # drain the terminal until the command is done
                try:
                    if not os.read(master, 65536):
                        break
                except OSError:
                    break
            assert proc.wait(timeout=60) == 0
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)
        return paged.exists()

    assert show_on_a_terminal(tall)
    assert not show_on_a_terminal(short)


def _commands() -> list[tuple[list[str], Any]]:
    import typer.main

    import cli

    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(cli.app), [])
    return found


def test_help_has_plain_placeholders_described_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    import cli

    for path, cmd in _commands():
        assert cli.main([*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert not re.search(r"<[a-z][^>]*>|\{[A-Z_]+\}", text), (path, text)  # <list[str]>, <int range>, {ID}
        if path and (not getattr(cmd, "commands", None) or cmd.invoke_without_command):  # a command, not only a group
            assert "Examples:\n" in text and f"inbox {' '.join(path)}" in text.split("Examples:", 1)[1], path
        for param in cmd.params:
            if param.param_type_name == "option" and "--help" not in param.opts:
                assert (param.help or "").strip(), (path, param.opts)


def test_one_meaning_per_short_flag_and_debug_anywhere(store: Store) -> None:
    meanings: dict[str, set[str]] = {}
    for path, cmd in _commands():
        for param in cmd.params:
            names = [*param.opts, *param.secondary_opts]
            longs = [o for o in names if o.startswith("--")]
            for short in (o for o in names if len(o) == 2 and o.startswith("-")):
                meanings.setdefault(short, set()).update(longs)
    assert {k: v for k, v in meanings.items() if len(v) > 1} == {}
    res = store.inbox("show", "1", "--no-pager", "--debug")
    assert res.returncode == 0 and "No such option" not in res.stderr, res.stderr
    late = store.inbox("accounts", "reset", "nosuch", "--debug")
    assert late.returncode == 5 and "Traceback" in late.stderr  # --debug after the command: tracebacks, same exit code
    assert store.inbox("note", "1", "--", "--debug").returncode == 0  # after `--` it is text
