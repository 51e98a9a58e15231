"""The `inbox` command line: parses arguments, calls `inbox.*`, renders with rich. No logic here.

Start-up stays light: only typer is imported at module level; everything heavy (SQLAlchemy,
requests, tweepy, rich tables) is imported inside the command that needs it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from inbox.config import Settings

__version__ = "0.1.0"

def _exit_code_epilog() -> str:
    from inbox.errors import EXIT_CODES  # tiny module, no dependencies

    # "\b" keeps the help formatter from re-flowing the table into one paragraph.
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


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
    _settings: Any = None
    _engine: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        if self._settings is None:
            from inbox.config import load_settings

            self._settings = load_settings(self.config_path)
            if not self.debug:
                from inbox.logging_setup import configure

                configure(self._settings.log_level, json=self.json)
        return self._settings

    def engine(self) -> Engine:
        if self._engine is None:
            from inbox.db import open_store

            self._engine = open_store(self.settings().database_url())
        return self._engine


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Rich honours NO_COLOR itself; highlight=False so customer text is never auto-styled.
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config file (else $INBOX_CONFIG, ./inbox.toml, ~/.config/inbox/config.toml)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
    debug: bool = typer.Option(False, "--debug", help="Verbose logs and tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    ctx.obj = State(config_path=config, json=json_, debug=debug)
    from inbox.logging_setup import configure

    # WARNING until the config is read (State.settings applies its log_level); --debug wins.
    configure("DEBUG" if debug else "WARNING", json=json_, debug=debug)


# ─── config & db ─────────────────────────────────────────────────────────────────────────────

config_app = typer.Typer(help="Check, show and locate the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The database: schema migrations and where it stands.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

_JSON_OPT = typer.Option(False, "--json", help="Machine-readable JSON output (same as the global --json).")


def _mask_url(url: str) -> str:
    """A database URL as it may be shown: the password masked."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1****@", url)


def _secret_view(acc: Any) -> dict[str, dict[str, Any]]:
    """Each secret of an account: its variable name, whether it is set, and the masked value."""
    from connectors.redact import mask

    view: dict[str, dict[str, Any]] = {}
    for key in acc.secret_env_keys():
        var = getattr(acc, key)
        value = os.environ.get(var) if var else None
        view[key] = {"env": var, "set": bool(value), "masked": mask(value)}
    return view


def _effective_config(settings: Any) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude_none=False)
    data["database"] = _mask_url(settings.database_url())
    accounts = []
    for acc, raw in zip(settings.accounts, data.get("accounts", [])):
        raw["base_url"] = acc.resolved_base_url()
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
    # JSON string escapes are valid TOML basic-string escapes; control characters come out escaped.
    return json.dumps(str(value), ensure_ascii=False)


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
    from inbox.config import find_config
    from inbox.errors import ConfigError

    st = state(ctx)
    as_json = json_ or st.json
    path = find_config(st.config_path)
    report: dict[str, Any] = {"ok": True, "file": str(path) if path else None, "errors": [], "accounts": []}
    try:
        settings = st.settings()
    except ConfigError as exc:
        if not as_json:
            raise
        report.update(ok=False, errors=[exc.message])
        print_json(report)
        raise typer.Exit(3) from None
    for acc in settings.accounts:
        missing = [v["env"] for v in _secret_view(acc).values() if not v["set"]]
        entry: dict[str, Any] = {"name": acc.name, "channel": acc.channel.value, "enabled": acc.enabled,
                                 "base_url": acc.resolved_base_url(), "ok": not missing, "missing_env": missing}
        if not missing:
            try:
                acc.to_spec()
            except ConfigError as exc:
                entry.update(ok=False, error=exc.message)
        report["accounts"].append(entry)
        if not entry["ok"] and not acc.enabled:
            # A disabled account is not synced: its unset variables are worth a note, not a failure.
            report.setdefault("warnings", []).extend(f"account '{acc.name}' (disabled): environment variable {v} is not set" for v in missing)
        elif not entry["ok"]:
            report["ok"] = False
            for var in missing:
                report["errors"].append(f"account '{acc.name}': environment variable {var} is not set")
            if entry.get("error"):
                report["errors"].append(entry["error"])
    if as_json:
        print_json(report)
    else:
        out = console()
        where = report["file"] or "no config file (defaults)"
        for line in report.get("warnings", []):
            sys.stderr.write(f"warning: {where}: {line}\n")
        for line in report["errors"]:
            sys.stderr.write(f"error: {where}: {line}\n")
        if report["ok"]:
            n = len(report["accounts"])
            out.print(f"ok: {where}: {n} account{'s' if n != 1 else ''}, every secret variable set", markup=False)
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
    sys.stdout.write("\n".join([header, *_render_toml(data)]) + "\n")


@config_app.command("path")
def config_path(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Print the config file in use (and, with --json, every place looked at)."""
    from inbox.config import candidate_paths, find_config
    from inbox.errors import ConfigError

    st = state(ctx)
    path = find_config(st.config_path)
    looked = [str(p) for p in candidate_paths(st.config_path)]
    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config PATH or set INBOX_CONFIG)")
    if json_ or st.json:
        print_json({"path": str(path.resolve()) if path else None, "candidates": looked})
    elif path is not None:
        sys.stdout.write(f"{path.resolve()}\n")
    else:
        sys.stderr.write(f"no config file (defaults in use); looked at: {', '.join(looked)}\n")


def _plain_engine(ctx: typer.Context) -> Engine:
    """An engine without the automatic upgrade, so `db` commands can report before acting."""
    from inbox.db import make_engine

    return make_engine(state(ctx).settings().database_url())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Apply pending schema migrations (never drops data); safe to run from several machines at once."""
    from inbox import migrate

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
        console().print(f"{url}: upgraded {before.current or 'empty'} → {after.current} ({len(applied)} migration{'s' if len(applied) != 1 else ''})", markup=False)
    else:
        console().print(f"{url}: already at {after.current} (head)", markup=False)


@db_app.command("status")
def db_status(ctx: typer.Context, json_: bool = _JSON_OPT) -> None:
    """Where the database stands: current revision, head, pending migrations."""
    from inbox import migrate

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
    sys.stdout.write("\n".join(lines) + "\n")



# ─── sandbox ─────────────────────────────────────────────────────────────────────────────────


# ─── sync, run, accounts ─────────────────────────────────────────────────────────────────────


# ─── triage: list, show, claim, assign, status, priority, tag, note, merge, link, search ─────


# ─── replies & outbox ────────────────────────────────────────────────────────────────────────


# ─── stats & export ──────────────────────────────────────────────────────────────────────────


# ─── demo ────────────────────────────────────────────────────────────────────────────────────


# ─── entry point ─────────────────────────────────────────────────────────────────────────────


def _fail(message: str, code: int, hint: str | None = None) -> int:
    from connectors.redact import redact

    line = redact(message)
    if hint:
        line += f" — {redact(hint)}"
    sys.stderr.write(f"error: {line}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one clear line and a documented exit code for every failure."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Standalone mode turns usage errors into exit 2 with a message; anything else reaches us.
        app(args=argv, prog_name="inbox")
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        if debug:
            raise
        return _fail(*_classify(exc))


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
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"database unavailable: {detail}", 1, "check `database` in the config (or $INBOX_DATABASE_URL) and that the server is up"
    return f"unexpected {exc.__class__.__name__}: {exc}", 1, "run with --debug for details"


if __name__ == "__main__":
    sys.exit(main())
