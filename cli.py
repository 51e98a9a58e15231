"""The `inbox` command line: the root app (global options, the State every command reads), the
command groups registered from commands/, and main(): every failure becomes one line and a
documented exit code, then the fast exit.

Start-up stays light: only typer is imported at module level; everything heavy (SQLAlchemy,
requests, tweepy, rich tables) is imported inside the command that needs it (see commands/).
"""

import errno
import os
import sys
from typing import Optional

import typer

import commands.config
import commands.demo
import commands.replies
import commands.reports
import commands.sync
import commands.triage
from commands import OPENED_ENGINES, SQLITE_FILE, State
from commands.help import attach_examples, plain_placeholders

# pydantic (the config's validation) scans every installed distribution for plugins on first use;
# inbox uses none, and the scan is a measurable share of every command's start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

__version__ = "0.1.0"


def _exit_code_epilog() -> str:
    from inbox.errors import EXIT_CODES  # tiny module, no dependencies

    # "\b" keeps the help formatter from re-flowing the table into one paragraph.
    return "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


app = typer.Typer(
    name="inbox",
    epilog=_exit_code_epilog(),
    help="One inbox for a social-care team: Instagram, Messenger and X DMs, deduplicated into tickets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", metavar="PATH", help="Config file (else $INBOX_CONFIG, ./inbox.toml, ~/.config/inbox/config.toml)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
    debug: bool = typer.Option(False, "--debug", help="Verbose logs and tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    ctx.obj = State(config_path=config, json=json_, debug=debug)
    from inbox.runtime.logging import configure

    # WARNING until the config is read (State.settings applies its log_level); --debug wins.
    configure("DEBUG" if debug else "WARNING", json=json_, debug=debug)


# ─── the commands, in the order --help lists them (commands first, then the groups) ──────────

for _name, _command in (
    ("sync", commands.sync.sync_cmd), ("run", commands.sync.run_cmd), ("serve", commands.sync.serve_cmd),
    ("list", commands.triage.list_cmd), ("show", commands.triage.show_cmd), ("claim", commands.triage.claim_cmd), ("assign", commands.triage.assign_cmd),
    ("status", commands.triage.status_cmd), ("priority", commands.triage.priority_cmd), ("tag", commands.triage.tag_cmd), ("note", commands.triage.note_cmd),
    ("merge", commands.triage.merge_cmd), ("unmerge", commands.triage.unmerge_cmd), ("link", commands.triage.link_cmd), ("unlink", commands.triage.unlink_cmd),
    ("search", commands.triage.search_cmd), ("reply", commands.replies.reply_cmd), ("stats", commands.reports.stats_cmd), ("export", commands.reports.export_cmd),
    ("demo", commands.demo.demo_cmd),
):
    app.command(_name)(_command)
for _name, _group in (
    ("config", commands.config.config_app), ("db", commands.config.db_app), ("sandbox", commands.demo.sandbox_app), ("accounts", commands.sync.accounts_app),
    ("quarantine", commands.sync.quarantine_app), ("outbox", commands.replies.outbox_app),
):
    app.add_typer(_group, name=_name)

attach_examples(app)
plain_placeholders()


def _global_flags_first(argv: list[str]) -> list[str]:
    """`inbox show 42 --debug` as `inbox --debug show 42`: --debug is accepted anywhere, as --json
    is (arguments after a `--` are left alone)."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    return ["--debug", *[a for a in argv[:end] if a != "--debug"], *argv[end:]]


# ─── entry point ─────────────────────────────────────────────────────────────────────────────


def _fail(message: str, code: int, hint: str | None = None) -> int:
    from connectors.redact import redact
    from inbox.safe_text import one_line

    # Messages may quote platform or customer text (ids, API error bodies): one clean line, no escapes.
    line = one_line(redact(message), 2000)
    if hint:
        line += f" — {one_line(redact(hint), 2000)}"
    sys.stderr.write(f"error: {line}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one clear line and a documented exit code for every failure."""
    code = _run(argv)
    if argv is None:  # the `inbox` command itself, not a caller in the same process (tests)
        _exit_without_teardown(code)
    while OPENED_ENGINES:
        OPENED_ENGINES.pop().dispose()
    return code


def _exit_without_teardown(code: int) -> None:
    """End the process now that the command is done, skipping the interpreter's teardown.

    Tearing down the modules a store command has loaded (SQLAlchemy, pydantic, rich, the driver)
    costs 70-90 ms, a fifth of the command's time, and does nothing for a process that is about
    to exit. Exit handlers still run (engines disposed, logs flushed, temporary files removed) and
    the output is flushed; with a non-daemon thread still running, the normal exit joins it.
    """
    import atexit
    import threading

    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon and t is not main_thread for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # what Py_Finalize would run first; stable since Python 2
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`inbox list | head`) or stream
            pass
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    args = _global_flags_first(list(argv if argv is not None else sys.argv[1:]))
    debug = args[:1] == ["--debug"]
    from inbox.safe_text import undecodable, utf8_problem

    for arg in args:  # stored, such text breaks every later output of it; see utf8_problem
        if undecodable(arg) is not None:
            shown = "".join("\ufffd" if undecodable(ch) is not None else ch for ch in arg)
            return _fail(utf8_problem(arg, f"the argument {shown!r}") or "", 2, "see `inbox --help`")
    try:
        from typer._click import exceptions as click_errors  # typer's own click (0.29 carries one)
    except ImportError:  # a typer that uses the click package
        from click import exceptions as click_errors  # type: ignore[no-redef]
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())  # click < 8.2 prints that help itself

    try:
        # Not standalone: usage errors reach us (below) to become one line like every other error.
        code = app(args=args, prog_name="inbox", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except no_args_help as exc:  # `inbox`, `inbox config`: the help itself
        exc.show()
        return exc.exit_code
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "inbox"
        return _fail(exc.format_message().rstrip("."), exc.exit_code, f"see `{where} --help`")
    except click_errors.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:  # a prompt answered with Ctrl-D or Ctrl-C
        return _fail("aborted", 1)
    except SystemExit as exc:
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            # click's answer to a closed pipe (EPIPE) is exit 1; ours is the one below.
            _drop_stdout()
            return 0
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`inbox show 1 | head -2`): what it wanted was written. Quietly 0,
        # with stdout pointed at /dev/null so the final flush does not fail again.
        _drop_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        if debug:
            # The traceback, but the same documented exit code as without --debug, and redacted
            # and cleaned like every other line.
            from inbox.runtime.logging import safe_traceback

            sys.stderr.write(safe_traceback(exc))
        from inbox.errors import ConfigError

        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            for problem in exc.problems[:-1]:  # a config file with several mistakes: every one of them
                _fail(problem, exc.exit_code)
            return _fail(exc.problems[-1], exc.exit_code, exc.hint)
        return _fail(*_classify(exc))


_SQLITE_HINTS = (
    ("readonly", "the file (or its directory, for the -wal and -shm files beside it) is not writable by this user; fix its permissions or owner"),
    ("unable to open", "the file cannot be opened: check that its directory is writable by this user, or point `database` elsewhere"),
    ("not a database", "this file is not an inbox database (not SQLite at all); point `database` at another file"),
    ("malformed", "the file is damaged; restore it from a backup"),
    ("disk i/o", "the disk failed to read or write the file; check the disk and free space"),
    ("full", "the disk is full; free some space"),
    ("locked", "another process holds the database; try again when it is done"),
)


def _sqlite_problem(detail: str) -> tuple[str, int, str | None]:
    where = f"SQLite file {SQLITE_FILE[-1]}" if SQLITE_FILE else "SQLite database"
    low = detail.lower()
    if SQLITE_FILE and "unable to open" in low and (cause := _unopenable_path(SQLITE_FILE[-1])):
        return f"{where}: {detail}: {cause[0]}", 1, cause[1]
    hint = next((h for key, h in _SQLITE_HINTS if key in low), "check `database` in the config (or $INBOX_DATABASE_URL)")
    return f"{where}: {detail}", 1, hint


def _unopenable_path(path: str) -> tuple[str, str] | None:
    """Why SQLite cannot open `path`, when the path itself shows it (SQLite says only "unable to
    open"): what is wrong, and how to fix it."""
    import shlex

    elsewhere = "or point `database` (or $INBOX_DATABASE_URL) elsewhere"
    if os.path.isdir(path):
        return "it is a directory, not a file", f"point `database` at a file, e.g. sqlite:///{os.path.join(path, 'inbox.db')}"
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent):
        return None  # the directory is there: permissions, a read-only disk (the generic hint)
    ancestor = parent
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if os.path.exists(ancestor) and not os.path.isdir(ancestor):
        return f"{ancestor} is a file, not a directory", f"put the database in a directory, {elsewhere}"
    return f"the directory {parent} does not exist", f"create it (mkdir -p {shlex.quote(parent)}), {elsewhere}"


def _drop_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's captured stdout)
        pass


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _classify(exc: BaseException) -> tuple[str, int, str | None]:
    from connectors.errors import ConnectorError, NeedsReauthError, PermanentError
    from inbox.errors import InboxError

    if isinstance(exc, InboxError):
        return exc.message, exc.exit_code, exc.hint
    if isinstance(exc, NeedsReauthError):
        return str(exc), 4, "the token is invalid or expired; reconnect the account and update its environment variable"
    if isinstance(exc, PermanentError):
        return str(exc), 7, None
    if isinstance(exc, ConnectorError):
        return str(exc), 7, "try again later"
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:  # the output (or the store's disk) has no room
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot write{where}: {exc.strerror}", 1, "free some space, or write elsewhere"
    sa_exc = sys.modules.get("sqlalchemy.exc")  # only loaded if a command touched the database
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        orig = getattr(exc, "orig", None)
        text = str(orig or exc).strip()
        detail = text.splitlines()[0] if text else type(orig or exc).__name__
        if type(orig).__module__.startswith("sqlite3"):
            return _sqlite_problem(detail)
        if isinstance(exc, sa_exc.OperationalError):
            return f"database unavailable: {detail}", 1, "check `database` in the config (or $INBOX_DATABASE_URL) and that the server is up"
    from inbox.errors import describe

    return f"unexpected {describe(exc)}", 1, "run with --debug for details"


if __name__ == "__main__":
    sys.exit(main())
