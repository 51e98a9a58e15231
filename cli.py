"""The `inbox` command line: parses arguments, calls `inbox.*`, renders with rich. No logic here.

Start-up stays light: only typer is imported at module level; everything heavy (SQLAlchemy,
requests, tweepy, rich tables) is imported inside the command that needs it. No
`from __future__ import annotations` here: typer reads every command's signature at each start,
and real annotation objects spare it evaluating hundreds of strings.
"""

import os
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

import typer

# pydantic (the config's validation) scans every installed distribution for plugins on first use;
# inbox uses none, and the scan is a measurable share of every command's start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from inbox.settings import Settings

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


@dataclass
class State:
    config_path: str | None = None
    json: bool = False
    debug: bool = False
    daemon: bool = False  # `inbox run`: logs at the config's log_level; other commands show warnings only
    _settings: Any = None
    _engine: Any = None

    def settings(self) -> "Settings":
        if self._settings is None:
            from inbox.settings import load_settings

            self._settings = load_settings(self.config_path)
            if not self.debug:
                from inbox.runtime.logging import configure

                level = self._settings.log_level
                if not self.daemon and level in ("DEBUG", "INFO"):
                    level = "WARNING"  # interactive output is the tables; logs would repeat them
                configure(level, json=self.json)
        return self._settings

    def zone(self) -> Any:
        """The zone of human output: the config's `timezone`, else $TZ, else the machine's."""
        from inbox.timefmt import resolve_zone

        return resolve_zone(self.settings().timezone)

    def engine(self) -> "Engine":
        if self._engine is None:
            from inbox.store import open_store

            url = self.settings().database_url()
            _note_sqlite_file(url)
            self._engine = open_store(url)
            import atexit

            atexit.register(self._engine.dispose)  # connections closed politely, also on a fast exit
            _OPENED_ENGINES.append(self._engine)
        return self._engine


# Engines opened by commands, so an in-process caller (tests, scripts) gets its connections back
# when main() returns instead of at its own exit: a long-lived caller would exhaust the server.
_OPENED_ENGINES: list["Engine"] = []


def _note_sqlite_file(url: str) -> None:
    if url.startswith("sqlite:///"):
        _SQLITE_FILE.append(url.removeprefix("sqlite:///"))


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def console(stderr: bool = False) -> "Console":
    from inbox.safe_text import safe_console_class

    class _Console(safe_console_class()):  # type: ignore[misc]
        def on_broken_pipe(self) -> None:
            # Rich exits 1 here; a reader that has gone (`| head`) is not a failure: see _run.
            self.quiet = True
            raise BrokenPipeError

    # Rich honours NO_COLOR itself; highlight=False so customer text is never auto-styled; every
    # segment printed is cleaned (agents' and customers' text alike).
    return _Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    import json

    from inbox.safe_text import json_safe

    sys.stdout.write(json_safe(json.dumps(data, ensure_ascii=False, indent=2, default=str)) + "\n")


def _prog() -> str:
    """How to call inbox in the commands we print: as ./run was invoked (it sets $INBOX_PROG), else
    `inbox` when that is on PATH, else the full path of this program."""
    import shlex
    import shutil

    if os.environ.get("INBOX_PROG"):
        return shlex.quote(os.environ["INBOX_PROG"])
    me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    found = shutil.which("inbox")
    if found and (not me or os.path.realpath(found) == me or os.path.basename(me) != "inbox"):
        return "inbox"
    return shlex.quote(me) if me else "inbox"


def say(text: str, *, err: bool = False) -> None:
    """Write plain lines (no rich) cleaned like everything else shown: they quote paths, URLs and names people typed."""
    from inbox.safe_text import clean

    (sys.stderr if err else sys.stdout).write(clean(text))


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


# ─── config & db ─────────────────────────────────────────────────────────────────────────────

config_app = typer.Typer(help="Check, show and locate the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The database: schema migrations and where it stands.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

_JSON_OPT = typer.Option(False, "--json", help="Machine-readable JSON output (same as the global --json).")


def _mask_url(url: str) -> str:
    """A database or base URL as it may be shown: every password form masked."""
    from connectors.redact import mask_url

    return mask_url(url)


def _secret_view(acc: Any) -> dict[str, dict[str, Any]]:
    """Each secret of an account: its variable name, whether it is set, and the masked value."""
    from connectors.redact import mask

    view: dict[str, dict[str, Any]] = {}
    for key in acc.secret_env_keys():
        var = getattr(acc, key)
        value = (os.environ.get(var) or "").strip() if var else None
        view[key] = {"env": var, "set": bool(value), "masked": mask(value)}
    return view


def _effective_config(settings: Any) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude_none=False)
    data["database"] = _mask_url(settings.database_url())
    accounts = []
    for acc, raw in zip(settings.accounts, data.get("accounts", [])):
        raw["base_url"] = _mask_url(acc.resolved_base_url())
        for key, view in _secret_view(acc).items():
            raw[key] = view
        accounts.append(raw)
    data["accounts"] = accounts
    return data


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    from inbox.safe_text import json_safe

    # JSON string escapes are valid TOML basic-string escapes: control characters, C1, bidi controls
    # and line separators come out escaped.
    return json_safe(json.dumps(str(value), ensure_ascii=False))


def _render_toml(data: dict[str, Any], path: str = "") -> list[str]:
    """The effective config in TOML form; secrets as their variable name with a status comment."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and {"env", "set", "masked"} <= value.keys():
            state_ = f"set ({value['masked']})" if value["set"] else "NOT SET"
            lines.append(f"{key} = {_toml_value(value['env'])}  # {state_}")
        elif isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tables:
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            lines += ["", f"[{name}]", *_render_toml(value, name)]
        else:
            for item in value:
                lines += ["", f"[[{name}]]", *_render_toml(item, name)]
    return lines


@config_app.command("check")
def config_check(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Validate the config and resolve every account's environment variables (exit 0, or 3)."""
    from inbox.settings import find_config
    from inbox.errors import ConfigError

    st = state(ctx)
    as_json = json_ or st.json
    path = find_config(st.config_path)
    report: dict[str, Any] = {"ok": True, "file": str(path) if path else None, "errors": [], "accounts": []}
    try:
        settings = st.settings()
    except ConfigError as exc:
        if not as_json:
            raise  # every problem, one line each (see _run)
        report.update(ok=False, errors=list(exc.problems))
        print_json(report)
        raise typer.Exit(3) from None
    for acc in settings.accounts:
        missing = [v["env"] for v in _secret_view(acc).values() if not v["set"]]
        entry: dict[str, Any] = {"name": acc.name, "channel": acc.channel.value, "enabled": acc.enabled,
                                 "base_url": _mask_url(acc.resolved_base_url()), "ok": not missing, "missing_env": missing}
        if not missing:
            try:
                acc.to_spec()
            except ConfigError as exc:
                entry.update(ok=False, error=exc.message)
        report["accounts"].append(entry)
        for var in acc.padded_secrets():
            report.setdefault("warnings", []).append(
                f"account '{acc.name}': environment variable {var} has whitespace around its value (a trailing newline?); it is stripped")
        if not entry["ok"] and not acc.enabled:
            # A disabled account is not synced: its unset variables are worth a note, not a failure.
            report.setdefault("warnings", []).extend(f"account '{acc.name}' (disabled): environment variable {v} is not set" for v in missing)
        elif not entry["ok"]:
            report["ok"] = False
            for var in missing:
                report["errors"].append(f"account '{acc.name}': environment variable {var} is not set")
            if entry.get("error"):
                report["errors"].append(entry["error"])
    wh = settings.webhooks
    if wh.meta_app_secret_env or wh.meta_verify_token_env or wh.x_consumer_secret_env:
        # Webhooks are configured: every key an enabled account's channel needs must be set.
        problems = wh.missing({a.channel for a in settings.accounts if a.enabled})
        report["webhooks"] = {"ok": not problems, "errors": problems}
        if problems:
            report["ok"] = False
            report["errors"].extend(problems)
    if as_json:
        print_json(report)
    else:
        where = report["file"] or "no config file (defaults)"
        for line in report.get("warnings", []):
            say(f"warning: {where}: {line}\n", err=True)
        for line in report["errors"]:
            say(f"error: {where}: {line}\n", err=True)
        if report["ok"]:
            n = len(report["accounts"])
            say(f"ok: {where}: {n} account{'s' if n != 1 else ''}, every secret variable set\n")
    if not report["ok"]:
        raise typer.Exit(3)


@config_app.command("show")
def config_show(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Print the effective config (defaults filled in); secrets appear as variable names, never values."""
    st = state(ctx)
    settings = st.settings()
    data = _effective_config(settings)
    if json_ or st.json:
        print_json({"file": settings.source, **data})
        return
    header = f"# effective config from {settings.source}" if settings.source else "# no config file: defaults"
    say("\n".join([header, *_render_toml(data)]) + "\n")


@config_app.command("path")
def config_path(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Print the config file in use (and, with --json, every place looked at)."""
    from inbox.settings import candidate_paths, find_config
    from inbox.errors import ConfigError

    st = state(ctx)
    path = find_config(st.config_path)
    looked = [str(p) for p in candidate_paths(st.config_path)]
    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config PATH or set INBOX_CONFIG)")
    if json_ or st.json:
        print_json({"path": str(path.resolve()) if path else None, "candidates": looked})
    elif path is not None:
        say(f"{path.resolve()}\n")
    else:
        say(f"no config file (defaults in use); looked at: {', '.join(looked)}\n", err=True)


def _plain_engine(ctx: typer.Context) -> "Engine":
    """An engine without the automatic upgrade, so `db` commands can report before acting."""
    from inbox.store.engine import make_engine

    url = state(ctx).settings().database_url()
    _note_sqlite_file(url)
    return make_engine(url)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Apply pending schema migrations (never drops data); safe to run from several machines at once."""
    from inbox.store import migrate

    engine = _plain_engine(ctx)
    try:
        before = migrate.status(engine)
        applied = migrate.upgrade(engine)
        after = migrate.status(engine)
    finally:
        engine.dispose()
    url = _mask_url(state(ctx).settings().database_url())
    if json_ or state(ctx).json:
        print_json({"database": url, "from": before.current, "applied": applied, "current": after.current, "head": after.head})
    elif applied:
        say(f"{url}: upgraded {before.current or 'empty'} → {after.current} ({len(applied)} migration{'s' if len(applied) != 1 else ''})\n")
    else:
        say(f"{url}: already at {after.current} (head)\n")


@db_app.command("status")
def db_status(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Where the database stands: current revision, head, pending migrations."""
    from inbox.store import migrate

    engine = _plain_engine(ctx)
    try:
        st = migrate.status(engine)
    finally:
        engine.dispose()
    url = _mask_url(state(ctx).settings().database_url())
    if json_ or state(ctx).json:
        print_json({"database": url, "current": st.current, "head": st.head, "pending": st.pending, "up_to_date": st.up_to_date})
        return
    lines = [f"database: {url}", f"current:  {st.current or '(empty)'}", f"head:     {st.head}",
             f"pending:  {', '.join(st.pending) if st.pending else 'none'}"]
    if st.pending:
        lines.append("run `inbox db upgrade` (or any command: a new database is upgraded on first use)")
    say("\n".join(lines) + "\n")



# ─── sandbox ─────────────────────────────────────────────────────────────────────────────────

sandbox_app = typer.Typer(help="A loopback emulator of the Graph (Messenger, Instagram) and X DM APIs.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("serve")
def sandbox_serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind: loopback only (127.0.0.1 or localhost)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", min=0, max=65535, help="Port (0 picks a free one)."),
    large: int = typer.Option(0, "--large", metavar="N", min=0, help="Add a generated dataset of about N messages."),
    seed: int = typer.Option(7, "--seed", metavar="N", help="Seed for ids, timings and the generated dataset."),
    write_config: str = typer.Option("./inbox-sandbox.toml", "--write-config", metavar="PATH", help="Where to write an inbox config pointing at the sandbox."),
    database: str = typer.Option("sqlite:///inbox-sandbox.db", "--database", metavar="URL", help="Database URL written into that config."),
    ig_login: bool = typer.Option(False, "--ig-login", help="Also configure the Instagram-Login account."),
    webhooks: Optional[str] = typer.Option(None, "--webhooks", metavar="URL",
                                           help="Send a signed webhook of every new message to URL (an `inbox serve`, e.g. http://127.0.0.1:8080)."),
) -> None:
    """Serve the sandbox in the foreground until Ctrl-C; write a config that points at it."""
    import shlex
    import threading
    from pathlib import Path

    from sandbox import Sandbox

    if host not in ("127.0.0.1", "localhost"):
        raise typer.BadParameter("the sandbox binds to 127.0.0.1 only", param_hint="--host")
    sb = Sandbox(seed=seed, large=large)
    try:
        sb.start(host, port)
    except OSError as exc:
        from inbox.errors import UsageError

        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        config_path = Path(write_config).expanduser()
        config_path.write_text(sb.config_toml(database=database, include_ig_login=ig_login, webhooks=webhooks is not None), encoding="utf-8")
        if webhooks is not None:
            sb.webhooks(webhooks)  # signed with the keys the written config names
        env = sb.env()
        if state(ctx).json:
            print_json({"base_url": sb.base_url, "config": str(config_path.resolve()), "env": {"INBOX_CONFIG": str(config_path.resolve()), **env},
                        "accounts": {name: acc.base_url for name, acc in sb.accounts.items()}})
        else:
            # These are the sandbox's fixed, public test tokens, not real secrets.
            out = sys.stdout
            out.write(f"sandbox serving on {sb.base_url}\n")
            for name, acc in sb.accounts.items():
                out.write(f"  {name:<20} {acc.base_url}\n")
            say(f"config written to {config_path}\n\npaste these lines into your shell (the config and the sandbox's test tokens), then run e.g. `{_prog()} sync`:\n")
            for key, value in {"INBOX_CONFIG": str(config_path.resolve()), **env}.items():
                out.write(f"export {key}={shlex.quote(value)}\n")
            out.write("\nCtrl-C stops the sandbox.\n")
            out.flush()
        # Woken twice a second: Ctrl-C is handled in this thread, and a signal the kernel gave
        # to a server thread is only seen when this one runs again.
        stop = threading.Event()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        sys.stderr.write("sandbox stopped\n")
    finally:
        sb.stop()


# ─── sync, run, accounts ─────────────────────────────────────────────────────────────────────

_SYNC_JSON = typer.Option(False, "--json", help="Machine-readable JSON output (same as the global --json).")
_SYNC_COLUMNS = (
    ("new\nmsgs", "new_messages"), ("new\ntickets", "new_tickets"), ("attached", "attached"), ("reopened", "reopened"),
    ("flagged", "flagged"), ("gaps", "gaps"), ("quaran-\ntined", "quarantined"),
)


def _require_config_file(settings: Any) -> None:
    """Commands that need accounts say so plainly when no config file was found at all."""
    from inbox.settings import candidate_paths
    from inbox.errors import ConfigError

    if settings.source is None:
        looked = ", ".join(str(p) for p in candidate_paths(None))
        raise ConfigError(f"no config file found; looked in {looked}",
                          hint="pass --config PATH, set INBOX_CONFIG, or copy config.example.toml to ./inbox.toml")


def _sync_progress_display(names: list[str]) -> tuple[Any, Any]:
    """A transient rich progress on stderr, one line per account, and the callback that feeds it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.fields[account]}", markup=False), TextColumn("{task.fields[detail]}", markup=False),
                        TimeElapsedColumn(), transient=True, console=console(stderr=True))
    tasks = {n: progress.add_task("", total=None, account=n, detail="waiting") for n in names}

    def update(event: Any) -> None:
        c = event.counts
        detail = f"page {event.pages}: {c.new_messages} new, {c.new_tickets} tickets"
        if event.done:
            detail = f"{event.status}: " + detail
        progress.update(tasks[event.account], detail=detail)

    return progress, update


def _sync_table(results: list[Any], *, dry_run: bool) -> Any:
    from rich.table import Table
    from rich.text import Text

    title = "sync (dry run: nothing written)" if dry_run else None
    # Fits 80 columns: two-line headers, and names and statuses never shrink.
    table = Table(title=title, box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("account", no_wrap=True, min_width=max([len("account"), *(len(r.account) for r in results)]))
    table.add_column("status", no_wrap=True, min_width=max([len("status"), *(len(r.status) for r in results)]))
    for head, _key in _SYNC_COLUMNS:
        table.add_column(head, justify="right", no_wrap=True, min_width=max(len(w) for w in head.split("\n")))
    table.add_column("errors", justify="right", no_wrap=True)
    styles = {"ok": "green", "dry-run": "cyan", "stopped": "yellow", "skipped": "dim", "retry-later": "yellow",
              "needs-reauth": "bold red", "conflict": "yellow", "failed": "bold red", "config-error": "bold red"}
    for r in results:
        counts = r.counts.counts()
        table.add_row(Text(r.account), Text(r.status, style=styles.get(r.status, "")), *(Text(str(counts[k])) for _h, k in _SYNC_COLUMNS),
                      Text("1" if r.failed else "0", style="red" if r.failed else ""))
    return table


@app.command("sync")
def sync_cmd(
    ctx: typer.Context,
    account: Optional[list[str]] = typer.Option(None, "--account", metavar="NAME", help="Only this account (repeatable); default: every enabled account."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fetch and show what would happen, without writing anything or moving cursors."),
    json_: bool = _SYNC_JSON,
) -> None:
    """One sync pass over the accounts (concurrently), then a summary. Exit 3 config, 4 re-auth, 6 busy, 7 failed, 130 interrupted."""
    import signal
    import threading

    from rich.text import Text

    from inbox.errors import ConfigError
    from inbox.sync.account import exit_code, selected_accounts
    from inbox.sync.pool import sync_all
    from inbox.safe_text import one_line

    st = state(ctx)
    settings = st.settings()
    as_json = json_ or st.json
    _require_config_file(settings)
    chosen = selected_accounts(settings, account)
    if not chosen:
        raise ConfigError(f"{settings.source}: no enabled accounts to sync", hint="add [[accounts]] to the config")
    engine = st.engine()
    show = not as_json and sys.stderr.isatty()
    progress, update = _sync_progress_display([a.name for a in chosen]) if show else (None, None)
    if show:
        import logging

        # The live display and the summary say what the per-account log lines would.
        logging.getLogger("inbox.sync.account").setLevel(logging.WARNING)
    stop = threading.Event()

    def interrupted(_signum: int, _frame: Any) -> None:
        # The first Ctrl-C: every account finishes and commits the page in flight, then stops
        # (a KeyboardInterrupt raised in the middle of a page write would be caught as a failure
        # of that account). The second: stop at once.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        sys.stderr.write("interrupted: finishing the current page...\n")

    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGINT, interrupted) if main_thread else None

    def report(event: Any) -> None:
        # The display starts with the first event, i.e. after the worker processes are forked:
        # its refresh thread is not running yet when they are.
        if not progress.live.is_started:
            progress.start()
        update(event)

    try:
        results = sync_all(engine, settings, accounts=[a.name for a in chosen], dry_run=dry_run,
                           progress=report if progress is not None else None, stop_event=stop)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        if progress is not None and progress.live.is_started:
            progress.stop()
    # An interrupted run says so in its exit code (the pages in flight are stored, the summary shown).
    code = 130 if stop.is_set() else exit_code(results)
    if as_json:
        totals: dict[str, int] = {}
        for r in results:
            for k, v in r.as_dict().items():
                if isinstance(v, int) and not isinstance(v, bool) and k != "pages":
                    totals[k] = totals.get(k, 0) + v
        data: dict[str, Any] = {"dry_run": dry_run, "exit_code": code, "accounts": [r.as_dict() for r in results], "totals": totals}
        if dry_run:
            data["decisions"] = {r.account: [_decision_json(d) for d in r.decisions] for r in results}
        print_json(data)
        raise typer.Exit(code)
    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 140)  # piped to a file or a mail: no need to squeeze the table
    out.print(_sync_table(results, dry_run=dry_run))
    for r in results:
        if r.error:
            out.print(Text(f"{r.account}: {one_line(r.error, 200)}", style="red" if r.failed else "dim"))
    if dry_run:
        notable = [(r.account, d) for r in results for d in r.decisions if d.rule not in ("3:thread", "2:echo")]
        for acc, d in notable[:40]:
            target = "new ticket" if d.new_ticket else f"ticket #{d.ticket_id}"
            out.print(Text(f"{acc}: {one_line(d.external_id, 80)} -> {target} [{d.rule}] {one_line(d.reason, 120)}"))
        if len(notable) > 40:
            out.print(f"... and {len(notable) - 40} more decisions (--json for all)", style="dim")
    if code == 130:
        sys.stderr.write("error: interrupted — the pages fetched so far are stored; the next sync continues from there\n")
    raise typer.Exit(code)


def _decision_json(d: Any) -> dict[str, Any]:
    return {"external_id": d.external_id, "thread_id": d.thread_id, "direction": d.direction, "rule": d.rule,
            "reason": d.reason, "score": d.score, "ticket_id": d.ticket_id, "new_ticket": d.new_ticket,
            "repeat_of": d.repeat_of, "considered": [{"ticket": t, "why_not": why} for t, why in d.considered]}


@app.command("run")
def run_cmd(ctx: typer.Context) -> None:
    """The scheduled sync: one job per account until SIGTERM/SIGINT (finishes the current page, exit 0)."""
    from inbox.errors import ConfigError
    from inbox.sync.scheduler import run

    st = state(ctx)
    st.daemon = True
    settings = st.settings()
    _require_config_file(settings)
    if not any(a.enabled for a in settings.accounts):
        raise ConfigError(f"{settings.source}: no enabled accounts to sync", hint="add [[accounts]] to the config")
    raise typer.Exit(run(settings, st.engine()))


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind (put a TLS proxy in front: Meta requires HTTPS)."),
    port: int = typer.Option(8080, "--port", metavar="PORT", min=0, max=65535, help="Port (0 picks a free one)."),
) -> None:
    """Receive Meta and X webhooks until SIGTERM/SIGINT (finishes requests in flight, exit 0).

    Each verified delivery is committed before it is acknowledged, then stored as messages and
    tickets by the same rules as a sync; `inbox run` keeps polling as the reconcile.
    """
    from inbox.intake import receiver
    from inbox.intake import server
    from inbox.errors import UsageError

    st = state(ctx)
    st.daemon = True
    settings = st.settings()
    _require_config_file(settings)
    secrets = receiver.resolve_secrets(settings)  # exit 3 naming the variable that is missing
    engine = st.engine()
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    sys.stderr.write(f"listening on http://{bound_host}:{bound_port} (webhooks at /webhooks/meta and /webhooks/x)\n")
    sys.stderr.flush()
    server.serve(engine, settings, secrets, sock, log_level=settings.log_level)


accounts_app = typer.Typer(help="Accounts and their sync health (exit 1 when any is unhealthy).", invoke_without_command=True)
app.add_typer(accounts_app, name="accounts")


def _acc_age(now: Any, when: Any) -> str:
    if when is None:
        return "never"
    s = int((now - when).total_seconds())
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _acc_rate(h: Any, now: Any, zone: Any) -> str:
    from inbox.timefmt import local_time

    if h.rate_limit and h.rate_remaining is not None:
        text = f"{h.rate_remaining}/{h.rate_limit}"
        if h.rate_reset_at is not None and h.rate_reset_at > now:
            text += f" (reset {local_time(h.rate_reset_at, zone, '%H:%M')})"
        return text
    if h.rate_usage_pct is not None:
        return f"{100 - h.rate_usage_pct:.0f}% left"
    return "-"


@accounts_app.callback()
def accounts_list(ctx: typer.Context, json_: bool = _SYNC_JSON) -> None:
    """Each account's health: last successful sync, last error, re-auth, rate headroom, gaps, quarantine."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from rich.text import Text

    from inbox.accounts import health
    from inbox.store.types import utcnow
    from inbox.safe_text import one_line

    st = state(ctx)
    settings = st.settings()
    rows = health(st.engine(), settings)
    unhealthy = any(not h.healthy for h in rows)
    deliveries = None
    if any(h.missed_by_webhooks is not None for h in rows):
        from inbox.accounts import webhook_deliveries

        deliveries = webhook_deliveries(st.engine())
    if json_ or st.json:
        report: dict[str, Any] = {"healthy": not unhealthy, "accounts": [h.as_dict() for h in rows]}
        if deliveries is not None:
            report["webhook_deliveries"] = deliveries
        print_json(report)
        raise typer.Exit(1 if unhealthy else 0)
    out = console()
    if not rows:
        _require_config_file(settings)
        out.print("no accounts configured", style="dim")
        return
    from inbox.timefmt import local_time

    now = utcnow()
    zone = st.zone()
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("account", no_wrap=True, min_width=max(len(h.name) for h in rows))
    for head in ("ch", "health", "last ok", "re-auth", "rate left", "gaps", "quarantined"):
        table.add_column(head, no_wrap=True, justify="right" if head in ("gaps", "quarantined") else "left")
    notes = []
    for h in rows:
        if not h.enabled:
            status = Text("disabled", style="dim")
        elif not h.healthy:
            status = Text("UNHEALTHY", style="bold red")
            notes.append(Text(f"{h.name}: {one_line('; '.join(h.problems), 300)}", style="red"))
        elif h.paused_until is not None:
            status = Text(f"paused to {local_time(h.paused_until, zone, '%H:%M')}", style="yellow")
        else:
            status = Text("ok", style="green")
        if h.syncing:
            until = f", lease until {local_time(h.lease_expires_at, zone, '%H:%M:%S')}" if h.lease_expires_at else ""
            notes.append(Text(f"{h.name}: syncing now: {one_line(h.syncing, 200)}{until}", style="cyan"))
        if h.missed_by_webhooks is not None:
            notes.append(Text(f"{h.name}: missed by webhooks: {h.missed_by_webhooks} in the last 24 h",
                              style="yellow" if h.missed_by_webhooks else "dim"))
        if h.last_error and (not h.healthy or (h.last_error_at and h.last_success_at and h.last_error_at > h.last_success_at)):
            notes.append(Text(f"{h.name}: last error {_acc_age(now, h.last_error_at)}: {one_line(h.last_error, 300)}", style="dim"))
        table.add_row(
            Text(h.name), Text({"instagram": "IG", "facebook": "FB", "x": "X"}.get(h.channel, h.channel)), status,
            Text(_acc_age(now, h.last_success_at)), Text("YES", style="bold red") if h.needs_reauth else Text("no"),
            Text(_acc_rate(h, now, zone)), Text(str(h.open_gaps), style="yellow" if h.open_gaps else ""),
            Text(str(h.quarantined), style="yellow" if h.quarantined else ""),
        )
    if deliveries is not None and any(deliveries.values()):
        notes.append(Text(f"webhook deliveries: {deliveries['pending']} waiting to be stored, {deliveries['quarantined']} quarantined "
                          "(unreadable; kept whole in the webhook_delivery table)", style="yellow" if deliveries["quarantined"] else "dim"))
    out.print(table)
    for note in notes:
        out.print(note)
    raise typer.Exit(1 if unhealthy else 0)


@accounts_app.command("reset")
def accounts_reset(ctx: typer.Context, name: str = typer.Argument(..., help="Account name from the config."), json_: bool = _SYNC_JSON) -> None:
    """After reconnecting an account (new token): clear its re-auth stop and rate-limit pause."""
    from inbox.accounts import reset

    st = state(ctx)
    ref = reset(st.engine(), st.settings(), name)
    if json_ or st.json:
        print_json({"account": ref.name, "needs_reauth": False, "paused_until": None})
    else:
        console().print(f"{ref.name}: re-auth stop and pause cleared; the next sync will try again", markup=False)


@accounts_app.command("repoint")
def accounts_repoint(ctx: typer.Context, name: str = typer.Argument(..., help="Account name from the config."), json_: bool = _SYNC_JSON) -> None:
    """Start an account afresh on the platform id now in the config; the old one's history stays under NAME~OLDID."""
    from inbox.accounts import repoint

    st = state(ctx)
    done = repoint(st.engine(), st.settings(), name)
    ref = done.ref
    if json_ or st.json:
        print_json({"account": ref.name, "channel": ref.channel, "platform_id": ref.platform_id, "retired_as": done.retired})
    elif done.retired is None:
        console().print(f"{ref.name}: already stored as {ref.channel} {ref.platform_id}; nothing to do", markup=False)
    else:
        console().print(f"{ref.name}: now {ref.channel} {ref.platform_id}, synced afresh by the next sync; the previous "
                        f"account's tickets, messages and cursor stay under '{done.retired}' (not synced)", markup=False)


quarantine_app = typer.Typer(help="Items a sync could not store as messages, with the reason and the raw payload.",
                             invoke_without_command=True)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.callback()
def quarantine_list(
    ctx: typer.Context,
    account: Optional[str] = typer.Option(None, "--account", metavar="NAME", help="Only this account."),
    all_: bool = typer.Option(False, "--all", help="Include resolved items."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, metavar="N", help="At most this many, newest first."),
    json_: bool = _SYNC_JSON,
) -> None:
    """List quarantined items, newest first (`inbox quarantine show ID` for one item's raw payload)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from rich.text import Text

    from inbox.quarantine import list_items
    from inbox.safe_text import one_line

    from inbox.timefmt import local_time

    st = state(ctx)
    rows = list_items(st.engine(), account=account, include_resolved=all_, limit=limit)
    if json_ or st.json:
        print_json({"quarantined": [r.to_json() for r in rows]})
        return
    out = console()
    if not rows:
        out.print("nothing is quarantined", style="dim")
        return
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    for head in ("#", "received", "account", "ch", "platform id", "reason"):
        table.add_column(head, no_wrap=True)
    for r in rows:
        table.add_row(Text(str(r.id)), Text(local_time(r.received_at, st.zone())), Text(one_line(r.account, 40)),
                      Text(_CHANNEL_SHORT.get(r.channel, r.channel)), Text(one_line(r.external_id or r.thread_id or "–", 30)),
                      Text(one_line(r.reason, 100), style="dim" if r.resolved_at else ""))
    out.print(table)
    out.print("`inbox quarantine show ID` prints an item's raw payload", style="dim")


@quarantine_app.command("show")
def quarantine_show(
    ctx: typer.Context,
    item_id: int = typer.Argument(..., metavar="ID", help="Item id (see `inbox quarantine`)."),
    json_: bool = _SYNC_JSON,
) -> None:
    """One quarantined item: why, where from, and its raw payload exactly as received (shown safely)."""
    import json

    from rich.text import Text

    from inbox.quarantine import get_item
    from inbox.safe_text import clean, one_line

    from inbox.timefmt import local_time

    st = state(ctx)
    item = get_item(st.engine(), item_id)
    if json_ or st.json:
        print_json({"item": item.to_json()})
        return
    out = console()
    out.print(Text.assemble((f"#{item.id} ", "bold"), f"{one_line(item.account, 40)} · {item.channel} · received ",
                            local_time(item.received_at, st.zone()), (" · resolved" if item.resolved_at else "", "dim")))
    if item.external_id or item.thread_id:
        out.print(Text(f"platform id {one_line(item.external_id or '–', 120)} · thread {one_line(item.thread_id or '–', 120)}"))
    out.print(Text(f"reason: {one_line(item.reason, 500)}", style="yellow"))
    # The payload is the platform's (or a customer's) text: through the safe-text cleaner, never markup.
    out.print(Text(clean(json.dumps(item.raw, ensure_ascii=False, indent=2, default=str))), overflow="fold")


# ─── triage: list, show, claim, assign, status, priority, tag, note, merge, link, search ─────

_TRI_JSON = typer.Option(False, "--json", help="Machine-readable JSON output (same as the global --json).")
_TRI_AGENT = typer.Option(None, "--agent", metavar="NAME", help="Act as this agent (else $INBOX_AGENT, settings.agent, the OS user).")

# The ticket filters of list, search, stats and export: one declaration, one meaning per flag.
_OPT_CHANNEL = typer.Option(None, "--channel", metavar="CHANNEL", help="Only these channels: instagram, facebook, x (repeat or comma-separate).")
_OPT_ACCOUNT = typer.Option(None, "--account", metavar="NAME", help="Only these accounts (names from the config; repeat or comma-separate).")
_OPT_ASSIGNEE = typer.Option(None, "--assignee", "-a", metavar="AGENT", help="'me', 'none' (unassigned) or an agent name.")
_OPT_TAG = typer.Option(None, "--tag", metavar="TAG", help="Only tickets with this tag (repeat: all of them).")
_OPT_PRIORITY = typer.Option(None, "--priority", "-p", metavar="PRIORITY", help="urgent, high, normal, low (repeat or comma-separate).")
_OPT_OVERDUE = typer.Option(False, "--overdue", help="Only tickets past their SLA (first response or escalation).")
_OPT_WINDOW = typer.Option(None, "--window-closing", metavar="HOURS", help="Meta threads whose reply window closes within HOURS.")
_OPT_LIMIT = typer.Option(50, "--limit", "-n", metavar="N", help="At most this many tickets.")

_PRIORITY_STYLE = {"urgent": "bold red", "high": "dark_orange", "normal": "", "low": "dim"}
_CHANNEL_SHORT = {"instagram": "IG", "facebook": "FB", "x": "X"}
_STATUS_STYLE = {"new": "bold cyan", "open": "green", "pending": "yellow", "resolved": "dim", "closed": "dim"}


def _tri_agent(ctx: typer.Context, explicit: Optional[str]) -> str:
    from inbox.tickets.operations import resolve_agent

    return resolve_agent(explicit, state(ctx).settings().agent)


def _tri_split(values: Optional[list[str]]) -> tuple[str, ...]:
    """Repeatable options also accept comma-separated values: --status new,open."""
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip().lower() for p in v.split(",") if p.strip())
    return tuple(dict.fromkeys(out))


def _tri_filter(
    ctx: typer.Context,
    *,
    status: Optional[list[str]],
    channel: Optional[list[str]],
    account: Optional[list[str]],
    assignee: Optional[str],
    tag: Optional[list[str]],
    priority: Optional[list[str]],
    overdue: bool,
    window_closing: Optional[float],
    limit: int,
    agent: Optional[str] = None,
) -> Any:
    from inbox.store.types import ACTIVE_STATUSES
    from inbox.tickets.operations import TicketFilter

    statuses = _tri_split(status)
    who = None
    if assignee:
        who = _tri_agent(ctx, agent) if assignee == "me" else ("none" if assignee.lower() == "none" else assignee)
    return TicketFilter(
        statuses=None if "all" in statuses else (statuses or ACTIVE_STATUSES),
        channels=_tri_split(channel),
        accounts=tuple(a for v in account or [] for a in v.split(",") if a),
        assignee=who,
        tags=_tri_split(tag),
        priorities=_tri_split(priority),
        overdue=overdue,
        window_closing_hours=window_closing,
        human_agent_tag=state(ctx).settings().replies.human_agent_tag,
        limit=limit,
    ).validate()


def _tri_age(delta: Any) -> str:
    """Compact duration for table cells: 45s, 12m, 5h, 3d."""
    seconds = int(max(0, delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _tri_sla(row: Any, now: Any) -> tuple[str, str]:
    """The SLA cell as (text, style): time to the first-response (or escalation) deadline, coloured by urgency."""
    from datetime import timedelta

    if row.status not in ("new", "open", "pending"):
        return "", ""
    due = row.first_response_due if row.first_response_at is None else row.escalation_due
    if due is None:
        return "", ""
    left = due - now
    if left <= timedelta(0):
        return f"-{_tri_age(-left)}", "bold red"  # overdue by
    return _tri_age(left), "yellow" if left < timedelta(hours=1) else ""


def _tri_window(row: Any, now: Any, human_agent_tag: bool) -> tuple[str, str]:
    """The reply-window cell as (text, style)."""
    from datetime import timedelta

    left = row.window_left(now, human_agent_tag)
    if left is None:
        return "–", "dim"
    if left <= timedelta(0):
        return "closed", "red"
    return _tri_age(left), "red" if left < timedelta(hours=2) else ("yellow" if left < timedelta(hours=6) else "")


def _tri_repeated(row: Any, snippet: Optional[str]) -> Optional[str]:
    """The snippet, led by "customer repeated 3×" when the customer sent the same thing again."""
    return f"({row.repeated}) {snippet or ''}" if row.repeated else snippet


def _tri_table(rows: list[Any], *, width: int, snippets: Optional[dict[int, Optional[str]]] = None, human_agent_tag: bool = True) -> Any:
    from datetime import datetime, timezone

    from rich.cells import cell_len, set_cell_size
    from rich.control import strip_control_codes
    from rich.text import Span, Text

    from inbox.safe_text import display_name, one_line

    now = datetime.now(timezone.utc)
    headers = ("#", "prio", "status", "ch", "customer", "snippet", "age", "SLA", "assignee", "window")
    # Cells as (text, style) pairs, control codes stripped as rich.Text would; the snippet (index 5)
    # stays raw until the other columns have their widths. Customer text goes in as plain text,
    # never parsed as markup.
    cells: list[list[Any]] = []
    for r in rows:
        cells.append([
            (str(r.id), ""),
            (strip_control_codes(r.priority), _PRIORITY_STYLE.get(r.priority, "")),
            (strip_control_codes(r.status), _STATUS_STYLE.get(r.status, "")),
            (strip_control_codes(_CHANNEL_SHORT.get(r.channel, r.channel)), ""),
            (strip_control_codes(one_line(display_name(r.customer_handle, r.customer_name), 18)), ""),
            _tri_repeated(r, snippets.get(r.id) if snippets is not None else (r.snippet or r.subject)),
            (_tri_age(now - r.created), ""),
            _tri_sla(r, now),
            (strip_control_codes(one_line(r.assignee, 16)), "") if r.assignee else ("–", "dim"),
            _tri_window(r, now, human_agent_tag),
        ])
    # One line per ticket: the snippet gets the width the other columns leave. Laid out by hand
    # (a rich Table measures every cell twice, which costs more than the query on a long list),
    # as one Text with a span per styled cell (a Text per cell costs more than the query too).
    right = {0, 6, 7, 9}
    last = len(headers) - 1
    widths = [max([len(h)] + [cell_len(c[i][0]) for c in cells]) if i != 5 else 0 for i, h in enumerate(headers)]
    # On a narrow terminal the snippet keeps room to be read: the customer and assignee columns
    # give up width first (down to a few characters, cut with "…").
    want = min(40, max(12, width // 3))
    for i, floor in ((4, 10), (8, 6)):
        short = want - (width - sum(widths) - last)
        if short > 0:
            widths[i] = max(min(floor, widths[i]), widths[i] - short)
    widths[5] = max(12, width - sum(widths) - last)
    for c in cells:
        c[5] = (strip_control_codes(one_line(c[5], widths[5])), "")

    chunks: list[str] = []
    spans: list[Any] = []
    offset = 0

    def line(parts: list[Any]) -> None:
        nonlocal offset
        for i, (text, style) in enumerate(parts):
            size = cell_len(text)
            if size > widths[i]:
                text = set_cell_size(text, widths[i] - 1) + "…"
                size = cell_len(text)
            pad = " " * (widths[i] - size)
            if i:
                chunks.append(" ")
                offset += 1
            if i in right:
                chunks.append(pad)
                offset += len(pad)
            if style:
                spans.append(Span(offset, offset + len(text), style))
            chunks.append(text)
            offset += len(text)
            if i not in right and i != last:
                chunks.append(pad)
                offset += len(pad)

    line([(h, "") for h in headers])
    spans.insert(0, Span(0, offset, "bold"))  # the header line
    for c in cells:
        chunks.append("\n")
        offset += 1
        line(c)
    return Text("".join(chunks), spans=spans)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="new/open/pending/resolved/closed or all (repeat or comma-separate). Default: new, open, pending."),
    channel: Optional[list[str]] = _OPT_CHANNEL,
    account: Optional[list[str]] = _OPT_ACCOUNT,
    assignee: Optional[str] = _OPT_ASSIGNEE,
    tag: Optional[list[str]] = _OPT_TAG,
    priority: Optional[list[str]] = _OPT_PRIORITY,
    overdue: bool = _OPT_OVERDUE,
    window_closing: Optional[float] = _OPT_WINDOW,
    limit: int = _OPT_LIMIT,
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """The inbox: active tickets by priority, then SLA due time."""
    from inbox.tickets.operations import list_tickets

    st = state(ctx)
    flt = _tri_filter(ctx, status=status, channel=channel, account=account, assignee=assignee, tag=tag, priority=priority,
                      overdue=overdue, window_closing=window_closing, limit=limit, agent=agent)
    rows = list_tickets(st.engine(), flt)
    if json_ or st.json:
        print_json({"tickets": [r.to_json() for r in rows]})
        return
    from rich.text import Text

    out = console()
    # Fixed messages as Text, not str: a str goes through markup and emoji parsing, and the emoji
    # table alone is a noticeable import for a command that never shows one.
    if not rows:
        out.print(Text("no tickets match"), style="dim")
        return
    out.print(_tri_table(rows, width=out.width, human_agent_tag=flt.human_agent_tag), no_wrap=True, overflow="ellipsis")
    if len(rows) == flt.limit:
        out.print(Text(f"(first {flt.limit}; --limit N for more)"), style="dim")


def _tri_print_detail(out: Any, detail: Any, *, full: bool, human_agent_tag: bool = True, zone: Any = None) -> None:
    from datetime import datetime, timezone

    from rich.rule import Rule
    from rich.text import Text

    from connectors.enums import Channel
    from inbox.replies.windows import format_duration, reply_window
    from inbox.safe_text import clean, display_name, fold, one_line

    from inbox.timefmt import local_time, resolve_zone

    zone = zone or resolve_zone()
    t = detail.ticket
    now = datetime.now(timezone.utc)
    label = Channel(t.channel).label if t.channel in ("instagram", "facebook", "x") else t.channel
    head = Text.assemble(
        (f"#{t.id} ", "bold"), (label, "bold"), f" · {one_line(t.account, 100)} · ", (display_name(t.customer_handle, t.customer_name), "bold"),
        f" (contact {t.contact_id}" + (f", person {t.person_id})" if t.person_id else ")"),
    )
    out.print(head)
    out.print(Text.assemble(
        "status ", (t.status, _STATUS_STYLE.get(t.status, "")), " · priority ", (t.priority, _PRIORITY_STYLE.get(t.priority, "")),
        " · assignee ", (one_line(t.assignee, 40) if t.assignee else "none"),
        " · tags ", (one_line(", ".join(t.tags), 200) or "none"), (f" · category {one_line(t.category, 60)}" if t.category else ""),
    ))
    line = Text.assemble("created ", local_time(t.created, zone), " · updated ", local_time(t.updated, zone))
    due = t.first_response_due if t.first_response_at is None else t.escalation_due
    if due and t.status in ("new", "open", "pending"):
        what = "first response" if t.first_response_at is None else "escalation"
        left = due - now
        line.append(f" · {what} " + (f"overdue by {format_duration(-left)}" if left.total_seconds() < 0 else f"due in {format_duration(left)}"),
                    style="bold red" if left.total_seconds() < 0 else "")
    if t.channel in ("instagram", "facebook"):
        d = reply_window(t.channel, t.last_customer_message_at, now, human_agent_tag=human_agent_tag)
        line.append(" · reply window ")
        line.append(f"{d.policy.value}, " if d.policy else "", style="")
        line.append(*_tri_window(t, now, human_agent_tag))
    out.print(line)
    related = []
    for key, ids in detail.related.items():
        related.append(f"{key.replace('_', ' ')} " + ", ".join(f"#{i}" for i in ids))
    if detail.merged_ids:
        related.append("merged here: " + ", ".join(f"#{i}" for i in detail.merged_ids))
    if t.repeated:
        related.append(t.repeated)
    if related:
        out.print(Text(" · ".join(related), style="magenta"))
    for g in detail.gaps:
        out.print(Text("⚠ " + _gap_text(g, zone) + f" (detected {local_time(g.detected_at, zone)})", style="bold yellow"))
    if t.has_gap and not detail.gaps:
        out.print(Text("⚠ some older messages of this thread could not be read (platform history limit)", style="bold yellow"))
    # Where the agent reads: in the conversation, just before the oldest message still readable.
    gap_before: dict[int, Any] = {}  # id() of the message the gap comes just before -> the gap
    for g in detail.gaps:
        first = next((m for m in detail.messages if m.conversation_id == g.conversation_id and (g.before is None or m.sent_at >= g.before)), None)
        if first is not None:
            gap_before.setdefault(id(first), g)
    # Titles as Text (what a str title becomes, without the markup and emoji parsing).
    out.print(Rule(Text("conversation", style="rule.text"), style="dim"))
    for m in detail.messages:
        if id(m) in gap_before:
            out.print(Text("┄┄ " + _gap_text(gap_before[id(m)], zone) + " ┄┄", style="yellow"))
        who = display_name(m.author_handle, m.author_name, m.author_id) if m.direction == "in" else f"{m.account}"
        arrow = "←" if m.direction == "in" else "→"
        head = Text.assemble(
            (local_time(m.sent_at, zone), "dim"), "  ", (arrow + " ", "cyan" if m.direction == "in" else "green"), (who, "bold"),
            (f"  {m.channel}", "dim"), (f"  [{m.kind}]" if m.kind != "text" else "", "magenta"),
            (f"  reply #{m.reply_id}" if m.reply_id else "", "green"), (f"  #{m.ticket_id}" if m.ticket_id != t.id else "", "dim"),
        )
        out.print(head)
        body = clean(m.text) if full else fold(m.text)
        if body:
            out.print(Text(body), overflow="fold")
        for a in m.attachments:
            desc = " ".join(p for p in (clean(str(a.get("type") or "file")), clean(str(a.get("mime") or "")),
                                        f"{a['size']:,} bytes" if isinstance(a.get("size"), int) else "", one_line(str(a.get("name") or ""), 60),
                                        one_line(str(a.get("url") or ""), 100)) if p)
            out.print(Text("   📎 " + desc, style="blue"), overflow="fold")
        for flag in m.flags:
            out.print(Text(f"   ⚠ {_flag_text(flag)}", style="yellow"), overflow="fold")
        if m.dedup_rule:
            score = f" (score {m.dedup_score:.2f})" if isinstance(m.dedup_score, (int, float)) else ""
            repeat = f" · repeat of message {m.repeat_of_id}" if m.repeat_of_id else ""
            out.print(Text(f"   message {m.id} · dedup: {clean(m.dedup_rule)}{score}{repeat} — {one_line(m.dedup_reason, 200)}", style="dim"))
    if not detail.messages:
        out.print(Text("(no messages)", style="dim"))
    if detail.notes:
        out.print(Rule(Text("notes (private)", style="rule.text"), style="dim"))
        for n in detail.notes:
            out.print(Text.assemble((local_time(n.at, zone), "dim"), "  ", (one_line(n.actor, 40), "bold"), ": "), end="")
            out.print(Text(fold((n.detail or {}).get("text"))), overflow="fold")
    events = [e for e in detail.events if e.action != "note"]
    if events:
        out.print(Rule(Text("events", style="rule.text"), style="dim"))
        for e in events:
            d = e.detail or {}
            if e.action == "dedup" and "rule" in d:
                # The message ids are in --json; here the decision and its reason are what matter.
                detail_text = f"{d.get('rule')}: {d.get('reason')}" + (f" ({d['count']} messages)" if d.get("count", 1) != 1 else "")
            else:
                detail_text = ", ".join(f"{k}={v}" for k, v in d.items())
            out.print(Text.assemble((local_time(e.at, zone), "dim"), "  ", (one_line(e.actor, 40), "bold"), f" {e.action} ",
                                    (one_line(detail_text, 160), "dim")))


def _gap_text(g: Any, zone: Any) -> str:
    """`6 messages missing, written after 2026-11-20 15:00 WIB and before 2026-11-21 16:13 WIB …`"""
    from inbox.timefmt import local_time

    count = "an unknown number of messages" if g.missing is None else f"{g.missing:,} message{'' if g.missing == 1 else 's'}"
    when = []
    if g.after is not None:
        when.append(f"after {local_time(g.after, zone)}")
    elif g.before is not None:
        when.append("since the thread began")
    if g.before is not None:
        when.append(f"before {local_time(g.before, zone)}")
    return f"{count} missing" + (", written " + " and ".join(when) if when else "") + ": past the platform's readable history"


def _tri_print_why(out: Any, detail: Any) -> None:
    """`inbox show --why`: the other tickets dedup considered for this one, and why they were not chosen."""
    from rich.rule import Rule
    from rich.text import Text

    from inbox.safe_text import one_line

    out.print(Rule(Text("why: other tickets considered", style="rule.text"), style="dim"))
    lines = []
    for e in detail.events:
        d = e.detail or {}
        if e.action == "dedup":
            for c in d.get("considered") or []:
                lines.append(f"#{c.get('ticket')}: not chosen — {c.get('why_not')}")
            if d.get("possible_duplicate_of"):
                lines.append(f"#{d['possible_duplicate_of']}: flagged possible duplicate, not grouped — {d.get('reason')}")
        elif e.action in ("merge", "merge_in") and d.get("reason"):
            other = d.get("into") or d.get("from")
            lines.append(f"#{other}: merged — {d.get('reason')}")
    seen: set[str] = set()
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.print(Text(one_line(line, 240)))
    if not lines:
        out.print(Text("no other ticket was considered: no shared order reference, linked person or near-identical text", style="dim"))


def _flag_text(flag: str) -> str:
    from connectors.enums import MessageFlag
    from inbox.safe_text import clean

    try:
        return MessageFlag(flag).description
    except ValueError:  # a flag this version does not know
        return clean(flag)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id."),
    full: bool = typer.Option(False, "--full", help="Do not fold long messages."),
    why: bool = typer.Option(False, "--why", help="Also list the other tickets dedup considered and why they were not chosen."),
    pager: Optional[bool] = typer.Option(None, "--pager/--no-pager", help="Page long output (default: when stdout is a terminal)."),
    json_: bool = _TRI_JSON,
) -> None:
    """The whole conversation of a ticket across its threads and merged tickets, with notes and events."""
    from inbox.tickets.operations import show_ticket

    st = state(ctx)
    detail = show_ticket(st.engine(), ticket_id)
    if json_ or st.json:
        print_json(detail.to_json())
        return
    out = console()
    tag = st.settings().replies.human_agent_tag
    use_pager = pager
    if use_pager is None and sys.stdout.isatty():
        # Page when the rendered conversation is taller than the terminal (long messages fold
        # onto several lines), so its header does not scroll away.
        with out.capture() as captured:
            _tri_print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
        use_pager = captured.get().count("\n") > out.height - 1
    if use_pager:
        os.environ.setdefault("LESS", "-R")  # let less show the colours
        with out.pager(styles=True):
            _tri_print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
            if why:
                _tri_print_why(out, detail)
    else:
        _tri_print_detail(out, detail, full=full, human_agent_tag=tag, zone=st.zone())
        if why:
            _tri_print_why(out, detail)


def _tri_done(ctx: typer.Context, row: Any, message: str, json_: bool) -> None:
    from rich.text import Text

    if json_ or state(ctx).json:
        print_json({"ticket": row.to_json()})
    else:
        console().print(Text(message))


@app.command("claim")
def claim_cmd(
    ctx: typer.Context,
    ticket_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="A specific ticket; without it, the next best unassigned one."),
    force: bool = typer.Option(False, "--force", help="Take the ticket even if another agent holds it."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", metavar="CHANNEL", help="Only claim from these channels."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Take a ticket: atomically, so two agents never get the same one (exit 5 when none is left)."""
    from inbox.tickets import operations as tk
    from inbox.errors import NotFoundError
    from inbox.safe_text import display_name, one_line

    who = _tri_agent(ctx, agent)
    engine = state(ctx).engine()
    if ticket_id is None:
        flt = tk.TicketFilter(statuses=tk.CLAIMABLE_STATUSES, channels=_tri_split(channel)).validate()
        row = tk.claim_next(engine, who, flt=flt)
        if row is None:
            raise NotFoundError("no unassigned new or open ticket to claim")
    else:
        row = tk.claim(engine, ticket_id, who, force=force)
    customer = display_name(row.customer_handle, row.customer_name)
    _tri_done(ctx, row, f"#{row.id} claimed by {one_line(who, 40)} · {row.priority} · {row.channel} · {customer} · {one_line(row.snippet, 60)}", json_)


@app.command("assign")
def assign_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    assignee: str = typer.Argument(..., metavar="AGENT|none", help="An agent name, 'me', or 'none' to unassign."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Give a ticket to an agent (or 'none')."""
    from inbox.safe_text import one_line
    from inbox.tickets.operations import assign

    who = _tri_agent(ctx, agent)
    target = who if assignee == "me" else assignee
    row = assign(state(ctx).engine(), ticket_id, target, who)
    _tri_done(ctx, row, f"#{row.id} assigned to {one_line(row.assignee, 100) or 'nobody'}", json_)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    new_status: str = typer.Argument(..., metavar="STATUS", help="new, open, pending, resolved or closed."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Set a ticket's status."""
    from inbox.tickets.operations import set_status

    row = set_status(state(ctx).engine(), ticket_id, new_status.lower(), _tri_agent(ctx, agent))
    _tri_done(ctx, row, f"#{row.id} is {row.status}", json_)


@app.command("priority")
def priority_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    new_priority: str = typer.Argument(..., metavar="PRIORITY", help="urgent, high, normal or low."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Set a ticket's priority (an unanswered ticket's first-response SLA follows it)."""
    from inbox.tickets.operations import set_priority

    settings = state(ctx).settings()
    row = set_priority(state(ctx).engine(), ticket_id, new_priority.lower(), _tri_agent(ctx, agent),
                       first_response_minutes=dict(settings.sla.first_response_minutes))
    _tri_done(ctx, row, f"#{row.id} priority {row.priority}", json_)


@app.command("tag")
def tag_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    tag_name: str = typer.Argument(..., metavar="TAG", help="The tag, e.g. refund."),
    remove: bool = typer.Option(False, "--remove", help="Remove the tag instead."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Add (or --remove) a tag."""
    from inbox.safe_text import one_line
    from inbox.tickets.operations import tag

    row = tag(state(ctx).engine(), ticket_id, tag_name, _tri_agent(ctx, agent), remove=remove)
    _tri_done(ctx, row, f"#{row.id} tags: {one_line(', '.join(row.tags), 200) or 'none'}", json_)


@app.command("note")
def note_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    text: str = typer.Argument(..., metavar="TEXT", help="The note (private: never sent to the customer)."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Add a private note (never sent to the customer)."""
    from inbox.tickets.operations import add_note

    row = add_note(state(ctx).engine(), ticket_id, text, _tri_agent(ctx, agent))
    _tri_done(ctx, row, f"#{row.id}: note added (private)", json_)


@app.command("merge")
def merge_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="The ticket to fold in."),
    into_id: int = typer.Argument(..., metavar="INTO_ID", help="The ticket that stays."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Merge ticket ID into INTO_ID (reversible with `inbox unmerge ID`)."""
    from inbox.tickets.operations import merge

    row = merge(state(ctx).engine(), ticket_id, into_id, _tri_agent(ctx, agent))
    _tri_done(ctx, row, f"#{ticket_id} merged into #{row.id}; undo with: inbox unmerge {ticket_id}", json_)


@app.command("unmerge")
def unmerge_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Undo a merge: the ticket gets its status and threads back."""
    from inbox.tickets.operations import unmerge

    row = unmerge(state(ctx).engine(), ticket_id, _tri_agent(ctx, agent))
    _tri_done(ctx, row, f"#{row.id} unmerged (status {row.status})", json_)


@app.command("link")
def link_cmd(
    ctx: typer.Context,
    contact_ids: list[int] = typer.Argument(..., metavar="CONTACT_ID CONTACT_ID...", help="Contacts (see `inbox show`) that are one person."),
    reason: str = typer.Option(..., "--reason", "-r", metavar="TEXT", help="Why: shared invoice number, customer said so..."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Link contacts on any channels into one person (reversible with `inbox unlink`)."""
    from inbox.tickets.operations import link_contacts

    person = link_contacts(state(ctx).engine(), contact_ids, reason, _tri_agent(ctx, agent))
    if json_ or state(ctx).json:
        print_json({"person_id": person, "contact_ids": contact_ids})
    else:
        console().print(f"contacts {', '.join(map(str, contact_ids))} are person #{person}", markup=False)


@app.command("unlink")
def unlink_cmd(
    ctx: typer.Context,
    contact_id: int = typer.Argument(..., metavar="CONTACT_ID", help="The contact (see `inbox show`)."),
    reason: str = typer.Option("unlinked by an agent", "--reason", "-r", metavar="TEXT", help="Why (kept in the audit log)."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Take a contact out of its person."""
    from inbox.tickets.operations import unlink_contact

    person = unlink_contact(state(ctx).engine(), contact_id, reason, _tri_agent(ctx, agent))
    if json_ or state(ctx).json:
        print_json({"person_id": person, "contact_id": contact_id})
    else:
        console().print(f"contact {contact_id} unlinked from person #{person}", markup=False)


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: str = typer.Argument(..., metavar="QUERY", help="Words to find in messages (all must match); an invoice number works too."),
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="As in `inbox list`; default: all statuses."),
    channel: Optional[list[str]] = _OPT_CHANNEL,
    account: Optional[list[str]] = _OPT_ACCOUNT,
    assignee: Optional[str] = _OPT_ASSIGNEE,
    tag: Optional[list[str]] = _OPT_TAG,
    priority: Optional[list[str]] = _OPT_PRIORITY,
    overdue: bool = _OPT_OVERDUE,
    window_closing: Optional[float] = _OPT_WINDOW,
    limit: int = _OPT_LIMIT,
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Full-text search over messages; lists the matching tickets."""
    from inbox.search import search

    st = state(ctx)
    flt = _tri_filter(ctx, status=status or ["all"], channel=channel, account=account, assignee=assignee, tag=tag,
                      priority=priority, overdue=overdue, window_closing=window_closing, limit=limit, agent=agent)
    hits = search(st.engine(), query, flt)
    if json_ or st.json:
        print_json({"query": query, "tickets": [{**h.ticket.to_json(), "match": {"message_id": h.message_id, "text": h.text}} for h in hits]})
        return
    from rich.text import Text

    out = console()
    if not hits:
        out.print(Text("no matches"), style="dim")  # Text: see list_cmd
        return
    out.print(_tri_table([h.ticket for h in hits], width=out.width, snippets={h.ticket.id: h.text for h in hits}, human_agent_tag=flt.human_agent_tag), no_wrap=True, overflow="ellipsis")


# ─── replies & outbox ────────────────────────────────────────────────────────────────────────

def _rep_text(ctx: typer.Context, ticket_id: int, text: Optional[str], editor: bool, template: Optional[str], agent: str) -> str:
    from inbox.errors import UsageError

    settings = state(ctx).settings()
    chosen = sum(bool(x) for x in (text is not None, editor, template))
    if chosen != 1:
        raise UsageError("give the reply as TEXT, or --editor, or --template NAME (exactly one)")
    if text is not None and not text.strip():
        raise UsageError("empty reply: nothing sent")
    if text == "-":  # `echo … | inbox reply 42 - --yes`
        text = sys.stdin.read().strip()
        if not text:
            raise UsageError("empty reply on standard input: nothing sent")
        return text
    if template:
        from inbox.replies.templates import get_template, render, ticket_variables

        variables = ticket_variables(state(ctx).engine(), ticket_id, agent, list(settings.dedup.order_patterns))
        return render(get_template(dict(settings.templates), template), variables)
    if editor:
        import shlex
        import subprocess
        import tempfile

        from inbox.replies import drafts

        command = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
        draft = drafts.load(settings.database_url(), ticket_id)  # what was written last time and not sent
        with tempfile.NamedTemporaryFile("w+", suffix=".txt", prefix=f"inbox-reply-{ticket_id}-", encoding="utf-8", delete=False) as fh:
            fh.write((draft.rstrip("\n") + "\n" if draft else "\n")
                     + f"# Reply to ticket #{ticket_id}{' (your unsent draft)' if draft else ''}. "
                     "Lines starting with # are dropped; an empty reply cancels.\n")
            path = fh.name
        try:
            if subprocess.call([*command, path]) != 0:
                raise UsageError(f"the editor ({command[0]}) failed: nothing sent")
            with open(path, encoding="utf-8") as fh:
                edited = fh.read()
        finally:
            os.unlink(path)
        body = "\n".join(line for line in edited.splitlines() if not line.startswith("#")).strip()
        if not body:
            raise UsageError("empty reply: nothing sent")
        return body
    return text or ""


@app.command("reply")
def reply_cmd(
    ctx: typer.Context,
    ticket_id: int = typer.Argument(..., metavar="ID", help="Ticket id (see `inbox list`)."),
    text: Optional[str] = typer.Argument(None, metavar="[TEXT]", help="The reply; - reads it from standard input (or use --editor / --template)."),
    editor: bool = typer.Option(False, "--editor", "-e", help="Write the reply in $EDITOR."),
    template: Optional[str] = typer.Option(None, "--template", "-t", metavar="NAME", help="A canned reply from settings.templates ({customer}, {handle}, {invoice}, {ticket}, {agent})."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Send without asking (required when there is no terminal to ask on)."),
    via: Optional[str] = typer.Option(None, "--via", metavar="CHANNEL", help="Reply in the ticket's thread on this channel (instagram, facebook, x) instead of its own channel."),
    to: Optional[int] = typer.Option(None, "--to", metavar="CONTACT", help="Reply to this contact's thread (see `inbox show`); needed when the ticket holds threads of several customers."),
    again: bool = typer.Option(False, "--again", help="Send even though another reply was recorded on the ticket since the route was shown."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Reply to the customer of the ticket's thread (its own channel, or --via / --to); shows the route and asks first. Refusals send nothing (exit 8)."""
    from rich.text import Text

    from inbox.replies import drafts
    from inbox.replies import ledger, outbox
    from inbox.replies.route import plan_reply
    from inbox.errors import InboxError, UsageError
    from inbox.safe_text import clean, one_line

    st = state(ctx)
    settings = st.settings()
    who = _tri_agent(ctx, agent)
    body = _rep_text(ctx, ticket_id, text, editor, template, who)
    engine = st.engine()
    as_json = json_ or st.json
    err = console(stderr=True)
    ask = not yes and settings.replies.confirm

    def confirm(question: str) -> bool:
        try:
            return typer.confirm(question, default=False, err=True)
        except typer.Abort:  # Ctrl-C or end of input at the question
            return False

    try:
        if via and via not in ("instagram", "facebook", "x"):
            raise UsageError(f"unknown channel '{via}' for --via (instagram, facebook or x)")
        plan = plan_reply(engine, ticket_id, body, human_agent_tag=settings.replies.human_agent_tag, via=via, to=to)
        route = plan.route
        err.print(Text(plan.describe(), style="bold"), Text(f"  (contact {route.contact_id}, {one_line(route.account_name, 100)})", style="dim"))
        claimed_by = plan.assignee if plan.assignee and plan.assignee != who else None
        if claimed_by:
            err.print(Text(f"warning: ticket #{ticket_id} is claimed by {one_line(claimed_by, 100)}", style="bold yellow"))
        if ask:
            if not sys.stdin.isatty():
                raise UsageError("not sent: confirmation needed but there is no terminal to ask on", hint="pass --yes to send without asking")
            err.print(Text(clean(body)), overflow="fold")
            if not confirm("Send this reply?"):
                raise UsageError("cancelled: nothing sent")
        while True:
            try:
                claim = ledger.record_reply(engine, plan, who, again=again)
                break
            except ledger.ReplyRaceError as race:
                if not ask:
                    raise
                # Another agent answered while we were deciding: show it and ask again.
                for other in race.others:
                    err.print(Text(f"reply #{other.id} by {one_line(other.author, 100)} ({other.state}, {other.created:%H:%M:%S} UTC): ", style="bold yellow"),
                              Text(one_line(other.text, 300)))
                if not confirm("Another reply was recorded on this ticket since you started. Send yours too?"):
                    raise UsageError("cancelled: nothing sent") from None
                plan = replace(plan, seen_reply_id=max(o.id for o in race.others))
    except InboxError as exc:
        if not editor:
            raise
        # Typed in the editor and not sent (declined, refused): kept, and offered by the next --editor.
        path = drafts.save(settings.database_url(), ticket_id, body)
        raise type(exc)(f"{exc.message}; your text is kept in {path} (`{_prog()} reply {ticket_id} --editor` opens it again)",
                        hint=exc.hint) from None
    if editor:
        drafts.discard(settings.database_url(), ticket_id)  # from here on the outbox holds the text
    outcome = outbox.deliver(engine, claim, outbox.connector_factory(settings, engine), who)
    if as_json:
        print_json({"reply": {"id": outcome.reply_id, "state": outcome.state, "platform_id": outcome.external_id,
                              "ticket_id": ticket_id, "policy": plan.policy.value, "channel": route.channel,
                              "contact_id": route.contact_id, "recipient_id": route.recipient_id, "claimed_by": claimed_by}})
    else:
        console().print(Text(f"sent: reply #{outcome.reply_id} on ticket #{ticket_id} (platform id {one_line(outcome.external_id, 80)}); ticket is pending"))


outbox_app = typer.Typer(help="Replies not (yet) known to be delivered: queued, sending, failed, unknown.", invoke_without_command=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include sent replies."),
    limit: int = typer.Option(100, "--limit", "-n", metavar="N", help="At most this many replies."),
    json_: bool = _TRI_JSON,
) -> None:
    """List the outbox (after matching in-doubt replies against the echoes synced so far)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from rich.text import Text

    from inbox.replies import ledger, outbox, reconcile
    from inbox.store.types import REPLY_OPEN
    from inbox.store.types import REPLY_STATES
    from inbox.safe_text import one_line

    st = state(ctx)
    engine = st.engine()
    reconcile.reconcile_all(engine, ledger.Timing.of(st.settings()))
    states = REPLY_STATES if all_ else REPLY_OPEN
    rows = outbox.outbox(engine, states=states, limit=limit)
    if json_ or st.json:
        print_json({"replies": [r.to_json() for r in rows]})
        return
    out = console()
    if not rows:
        out.print("outbox is empty: every reply was delivered", style="dim")
        return
    style = {"sent": "green", "failed": "red", "unknown": "bold yellow", "sending": "yellow", "queued": ""}
    cells = [(str(r.id), f"#{r.ticket_id}", r.state, _CHANNEL_SHORT.get(r.channel, r.channel), r.policy, str(r.attempts)) for r in rows]
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0))
    # What `outbox retry` needs (id, ticket, state) and the short route columns keep their width;
    # the text and the error share what is left, folded onto more lines.
    for i, h in enumerate(("#", "ticket", "state", "ch", "policy", "tries")):
        table.add_column(h, no_wrap=True, min_width=max([len(h), *(len(c[i]) for c in cells)]), justify="right" if h in ("#", "tries") else "left")
    table.add_column("text", overflow="fold", ratio=3, min_width=12)
    table.add_column("error", overflow="fold", ratio=2, min_width=8)
    for r, c in zip(rows, cells):
        table.add_row(Text(c[0]), Text(c[1]), Text(c[2], style=style.get(r.state, "")), Text(c[3]), Text(c[4]), Text(c[5]),
                      Text(one_line(r.text, 200)), Text(one_line(r.error, 200), style="dim"))
    out.print(table)
    if any(r.state in ("unknown", "sending") for r in rows):
        out.print("unknown/sending: may have been delivered; `inbox sync` settles them (never resent blindly)", style="dim")


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    reply_id: int = typer.Argument(..., metavar="ID", help="Reply id (see `inbox outbox`)."),
    force: bool = typer.Option(False, "--force", help="Send an `unknown` reply again: you checked the customer's thread and it is not there (audited)."),
    agent: Optional[str] = _TRI_AGENT,
    json_: bool = _TRI_JSON,
) -> None:
    """Send a failed reply again; refuses one that may have been delivered (exit 6) until a sync settles it, or --force."""
    from rich.text import Text

    from inbox.replies import ledger, outbox
    from inbox.safe_text import one_line

    st = state(ctx)
    settings = st.settings()
    outcome = outbox.retry(st.engine(), reply_id, outbox.connector_factory(settings, st.engine()), _tri_agent(ctx, agent),
                            human_agent_tag=settings.replies.human_agent_tag, force=force, timing=ledger.Timing.of(settings))
    if json_ or st.json:
        print_json({"reply": {"id": outcome.reply_id, "state": outcome.state, "platform_id": outcome.external_id}})
    else:
        console().print(Text(f"sent: reply #{outcome.reply_id} (platform id {one_line(outcome.external_id, 80)})"))


# ─── stats & export ──────────────────────────────────────────────────────────────────────────

@app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    days: float = typer.Option(7, "--days", metavar="DAYS", help="Period for first-response times and late answers."),
    channel: Optional[list[str]] = _OPT_CHANNEL,
    json_: bool = _TRI_JSON,
) -> None:
    """Backlog by channel and status, SLA breaches, first-response times (median, p90), escalations."""
    from rich.table import Table
    from rich.text import Text

    from inbox.replies.windows import format_duration
    from inbox.stats import compute
    from inbox.store.types import STATUSES

    from inbox.errors import UsageError

    if not days > 0:  # also refuses nan
        raise UsageError(f"--days must be a positive number of days (got {days:g})")
    st = state(ctx)
    s = compute(st.engine(), period_days=days, channels=_tri_split(channel))
    if json_ or st.json:
        print_json(s.to_json())
        return
    from datetime import timedelta

    out = console()
    statuses = list(STATUSES)
    table = Table(title="backlog", box=None, header_style="bold", pad_edge=False, title_justify="left")
    table.add_column("channel")
    for x in statuses:
        table.add_column(x, justify="right")
    for ch in sorted(s.backlog):
        table.add_row(ch, *[str(s.backlog[ch].get(x, 0)) for x in statuses])
    out.print(table)

    def mins(v: Optional[float]) -> str:
        return "–" if v is None else format_duration(timedelta(minutes=v))

    out.print(Text.assemble(
        "SLA: ", (f"{s.first_response_overdue} unanswered past due", "bold red" if s.first_response_overdue else ""),
        f" · {s.answered_late} answered late (last {days:g} d) · ",
        (f"{s.escalated} escalated (open past the escalation time)", "red" if s.escalated else ""),
    ))
    out.print(f"first response (last {days:g} d, {s.first_response_count} tickets): median {mins(s.first_response_median_minutes)}, "
              f"p90 {mins(s.first_response_p90_minutes)}", markup=False)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    fmt: str = typer.Option("jsonl", "--format", "-f", metavar="FORMAT", help="jsonl (one ticket with its messages per line) or csv (one message per row)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="PATH", help="File to write (default: stdout)."),
    status: Optional[list[str]] = typer.Option(None, "--status", "-s", metavar="STATUS", help="As in `inbox list`; default: all statuses."),
    channel: Optional[list[str]] = _OPT_CHANNEL,
    account: Optional[list[str]] = _OPT_ACCOUNT,
    tag: Optional[list[str]] = _OPT_TAG,
) -> None:
    """Export tickets with their messages as JSON Lines or CSV."""
    from inbox import export
    from inbox.errors import UsageError

    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown format '{fmt}' (jsonl or csv)")
    flt = _tri_filter(ctx, status=status or ["all"], channel=channel, account=account, assignee=None, tag=tag,
                      priority=None, overdue=False, window_closing=None, limit=1)
    writer = export.write_jsonl if fmt == "jsonl" else export.write_csv
    if output:
        from inbox.runtime.files import open_private

        with open_private(output, newline="") as fh:
            n = writer(state(ctx).engine(), flt, fh)
        say(f"exported {n} tickets to {output}\n", err=True)
    else:
        writer(state(ctx).engine(), flt, sys.stdout)


# ─── demo ────────────────────────────────────────────────────────────────────────────────────

@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, "--db", metavar="PATH", help="Use this new SQLite file (kept) instead of a temporary one."),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary store and config to explore afterwards."),
) -> None:
    """The whole loop in a few seconds against a local sandbox of the three APIs: sync, triage, claim, reply, echo."""
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn
    from rich.rule import Rule
    from rich.text import Text

    from commands.demo import Demo
    from inbox.safe_text import one_line

    import logging

    out = console()
    started = time.perf_counter()
    if not state(ctx).debug:
        # The seeded sandbox includes a thread past Meta's 20-message horizon on purpose; its
        # warning belongs in `inbox sync` output, not in the middle of the demo's progress bars.
        logging.getLogger("connectors").setLevel(logging.ERROR)
    demo = Demo.create(db, keep)
    with demo:
        out.print(Text("inbox demo — the whole loop against a local sandbox of the Instagram, Messenger and X APIs", style="bold"))
        out.print(Text(f"sandbox {demo.sandbox.base_url} · config {demo.config_path} · store {demo.db_path}", style="dim"))

        out.print(Rule("1. sync the three accounts", style="cyan", align="left"))
        with Progress(SpinnerColumn(), TextColumn("{task.description:<12}"), TextColumn("{task.fields[info]}"), console=out, transient=False) as bar:
            tasks = {a.name: bar.add_task(a.name, total=None, info="…") for a in demo.settings.accounts}

            def on_progress(p: Any) -> None:
                c = p.counts
                info = f"{p.pages} page(s), {c.new_messages} messages, {c.new_tickets} tickets" + (f" · {p.status}" if p.done else "")
                bar.update(tasks[p.account], info=info, total=1 if p.done else None, completed=1 if p.done else 0)

            results = demo.sync(on_progress)
        failed = [r for r in results if r.status != "ok"]
        if failed:
            raise RuntimeError("demo sync failed: " + "; ".join(f"{r.account}: {r.error}" for r in failed))

        out.print(Rule("2. the inbox  (inbox list)", style="cyan", align="left"))
        from inbox.tickets.operations import TicketFilter, list_tickets

        rows = list_tickets(demo.engine, TicketFilter(limit=10))
        out.print(_tri_table(rows, width=out.width), no_wrap=True, overflow="ellipsis")

        out.print(Rule("3. claim a ticket  (inbox claim)", style="cyan", align="left"))
        ticket, plan = demo.pick_and_claim()
        out.print(Text(f"#{ticket.id} claimed by {ticket.assignee} · {ticket.priority} · {ticket.channel} · {one_line(ticket.snippet, 70)}"))

        out.print(Rule(f"4. reply through {plan.route.channel}  (inbox reply {ticket.id} ...)", style="cyan", align="left"))
        out.print(Text(plan.describe(), style="bold"))
        out.print(Text(one_line(plan.text, 200)))
        outcome = demo.send(plan)
        out.print(Text(f"sent: reply #{outcome.reply_id}, platform id {one_line(outcome.external_id, 28)}", style="green"))

        out.print(Rule("5. sync again: the reply comes back as an echo", style="cyan", align="left"))
        demo.sync()
        echo = demo.echo_of(ticket.id, outcome.reply_id)
        if echo is None:
            raise RuntimeError(f"the echo of reply #{outcome.reply_id} did not arrive")
        from inbox.timefmt import local_time, resolve_zone

        out.print(Text(f"echo {one_line(echo.external_id, 28)} at {local_time(echo.sent_at, resolve_zone(demo.settings.timezone), '%H:%M:%S')} is matched to reply #{outcome.reply_id}; "
                       f"ticket #{ticket.id} is now pending", style="green"))

        out.print(Rule("6. real time: a message arrives by webhook  (inbox serve)", style="cyan", align="left"))
        mid, arrived_ticket, seconds = demo.webhook_arrival()
        out.print(Text(f"signed webhook → stored {one_line(mid, 28)} on ticket #{arrived_ticket} {seconds * 1000:.0f} ms after "
                       "the customer sent it; polling stays on to find what a webhook misses", style="green"))

        out.print(Rule("next", style="cyan", align="left"))
        elapsed = time.perf_counter() - started
        import shlex

        prog = _prog()
        cfg = shlex.quote(str(demo.config_path))
        if demo.keep:
            out.print(Text("The store and config are kept. These work now (the sandbox has stopped, so sync and reply need it running):"))
            for cmd in (f"{prog} -c {cfg} list", f"{prog} -c {cfg} show {ticket.id}", f"{prog} -c {cfg} search refund",
                        f"{prog} -c {cfg} list --channel instagram --window-closing 24", f"{prog} -c {cfg} stats",
                        f"{prog} -c {cfg} export --format csv --output tickets.csv"):
                out.print(Text("  " + cmd), soft_wrap=True)
        else:
            out.print(Text(f"The demo store was temporary; `{prog} demo --keep` keeps it to explore with list/show/search/stats."))
        out.print(Text("To keep syncing and replying against the sandbox, serve it in another terminal:"))
        out.print(Text(f"  {prog} sandbox serve"), soft_wrap=True)
        out.print(Text("  then paste the export lines it prints (its config and tokens), and:"))
        for cmd in (f"{prog} sync", f"{prog} list", f"{prog} claim", f"{prog} reply ID \"Halo kak ...\""):
            out.print(Text("  " + cmd), soft_wrap=True)
        out.print(Text(f"done in {elapsed:.1f} s", style="dim"))


# ─── help: examples and placeholders ─────────────────────────────────────────────────────────

_EXAMPLES: dict[str, tuple[str, ...]] = {
    "config check": ("inbox config check", "inbox -c team.toml config check --json"),
    "config show": ("inbox config show",),
    "config path": ("inbox config path",),
    "db upgrade": ("INBOX_DATABASE_URL=postgresql+psycopg://inbox@db/inbox inbox db upgrade",),
    "db status": ("inbox db status --json",),
    "sandbox serve": ("inbox sandbox serve", "inbox sandbox serve --port 0 --large 100000 --write-config big.toml",
                      "inbox sandbox serve --webhooks http://127.0.0.1:8080"),
    "sync": ("inbox sync", "inbox sync --account tokoshop-ig --dry-run", "inbox sync --json"),
    "run": ("inbox run", "inbox -c /etc/inbox/config.toml run"),
    "serve": ("inbox serve", "inbox serve --host 0.0.0.0 --port 9000"),
    "accounts": ("inbox accounts", "inbox accounts --json"),
    "accounts reset": ("inbox accounts reset tokoshop-fb",),
    "accounts repoint": ("inbox accounts repoint tokoshop-fb",),
    "quarantine": ("inbox quarantine", "inbox quarantine --account tokoshop-x --all --json"),
    "quarantine show": ("inbox quarantine show 3",),
    "list": ("inbox list", "inbox list -a me", "inbox list --status open --channel instagram --assignee none --tag refund",
             "inbox list --overdue", "inbox list --window-closing 4"),
    "show": ("inbox show 42", "inbox show 42 --full --no-pager", "inbox show 42 --json"),
    "claim": ("inbox claim", "inbox claim 42", "inbox claim --channel x"),
    "assign": ("inbox assign 42 budi", "inbox assign 42 none"),
    "status": ("inbox status 42 resolved",),
    "priority": ("inbox priority 42 urgent",),
    "tag": ("inbox tag 42 refund", "inbox tag 42 refund --remove"),
    "note": ('inbox note 42 "called the customer, refund approved"',),
    "merge": ("inbox merge 43 42",),
    "unmerge": ("inbox unmerge 43",),
    "link": ('inbox link 7 19 --reason "same invoice INV/20261120/MPL/3817265540"',),
    "unlink": ("inbox unlink 19",),
    "search": ('inbox search "INV/20261120/MPL/3817265540"', "inbox search refund --status open --channel facebook"),
    "reply": ('inbox reply 42 "Halo kak, kami cek dulu ya"', "inbox reply 42 --editor", "inbox reply 42 --template refund --yes",
              "echo 'Halo kak' | inbox reply 42 - --yes"),
    "outbox": ("inbox outbox", "inbox outbox --all --json"),
    "outbox retry": ("inbox outbox retry 7",),
    "stats": ("inbox stats", "inbox stats --days 30 --channel instagram --json"),
    "export": ("inbox export --format csv --output tickets.csv", "inbox export --status open --channel x | head"),
    "demo": ("inbox demo", "inbox demo --keep"),
}


def _examples_epilog(lines: tuple[str, ...]) -> str:
    # "\b" keeps the help formatter from re-flowing the lines into one paragraph.
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _attach_examples(typer_app: Any, prefix: str = "") -> None:
    """Every command's help ends with its examples (from _EXAMPLES)."""
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__
        key = f"{prefix}{name}"
        if key in _EXAMPLES:
            command.epilog = _examples_epilog(_EXAMPLES[key])
    for group in typer_app.registered_groups:
        key = f"{prefix}{group.name}"
        sub = group.typer_instance
        if key in _EXAMPLES and sub.registered_callback is not None:  # a group that is also a command
            sub.registered_callback.epilog = _examples_epilog(_EXAMPLES[key])
        _attach_examples(sub, f"{key} ")


def _plain_placeholders() -> None:
    """Help shows NAME placeholders, never Python types (`<list[str]>`, `<int range>`) nor `{ID}`."""
    from typer import core

    param = getattr(core, "_TyperParameter", None)
    argument = getattr(core, "TyperArgument", None)
    if param is not None and hasattr(param, "display_type"):
        param.display_type = lambda self, ctx: self.metavar or (self.name or "value").upper()
    if argument is not None and hasattr(argument, "_usage_display_name"):
        argument.display_type_rich = lambda self, ctx: None  # the name says it: `ID  Ticket id.`

        def usage_name(self: Any) -> str:
            name = self.metavar or (self.name or "value").upper()
            if not self.required and not name.startswith("["):
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

        argument._usage_display_name = usage_name


_attach_examples(app)
_plain_placeholders()


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
    while _OPENED_ENGINES:
        _OPENED_ENGINES.pop().dispose()
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
    try:
        # Standalone mode turns usage errors into exit 2 with a message; anything else reaches us.
        app(args=args, prog_name="inbox")
        return 0
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


# The SQLite file in use (set when the store is opened), so its errors can name it.
_SQLITE_FILE: list[str] = []

_SQLITE_HINTS = (
    ("readonly", "the file (or its directory, for the -wal and -shm files beside it) is not writable by this user; fix its permissions or owner"),
    ("unable to open", "the file cannot be opened: check that its directory exists and is writable, or point `database` elsewhere"),
    ("not a database", "this file is not an inbox database (not SQLite at all); point `database` at another file"),
    ("malformed", "the file is damaged; restore it from a backup"),
    ("disk i/o", "the disk failed to read or write the file; check the disk and free space"),
    ("full", "the disk is full; free some space"),
    ("locked", "another process holds the database; try again when it is done"),
)


def _sqlite_problem(detail: str) -> tuple[str, int, str | None]:
    where = f"SQLite file {_SQLITE_FILE[-1]}" if _SQLITE_FILE else "SQLite database"
    low = detail.lower()
    hint = next((h for key, h in _SQLITE_HINTS if key in low), "check `database` in the config (or $INBOX_DATABASE_URL)")
    return f"{where}: {detail}", 1, hint


def _drop_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's captured stdout)
        pass


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
