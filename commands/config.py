"""`inbox config check|show|path` and `inbox db upgrade|status`.

The check report and the effective view come from inbox.settings_report; this module parses the
arguments and renders them.
"""

from typing import TYPE_CHECKING, Any

import typer

from commands import JsonOpt, emit, note_sqlite_file, print_json, say, state, wants_json

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

config_app = typer.Typer(help="Check, show and locate the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The database: schema migrations and where it stands.", no_args_is_help=True)


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
def config_check(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Validate the config and resolve every account's environment variables (exit 0, or 3)."""
    from inbox import settings_report
    from inbox.errors import ConfigError
    from inbox.settings import find_config

    st = state(ctx)
    path = find_config(st.config_path)
    try:
        settings = st.settings()
    except ConfigError as exc:
        if not wants_json(ctx):
            raise  # every problem, one line each (see cli._run)
        print_json(settings_report.failed_check(path, exc))
        raise typer.Exit(3) from None
    report = settings_report.check(path, settings)

    def render() -> None:
        where = report["file"] or "no config file (defaults)"
        for line in report.get("warnings", []):
            say(f"warning: {where}: {line}\n", err=True)
        for line in report["errors"]:
            say(f"error: {where}: {line}\n", err=True)
        if report["ok"]:
            n = len(report["accounts"])
            say(f"ok: {where}: {n} account{'s' if n != 1 else ''}, every secret variable set\n")

    emit(ctx, report, render)
    if not report["ok"]:
        raise typer.Exit(3)


@config_app.command("show")
def config_show(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Print the effective config (defaults filled in); secrets appear as variable names, never values."""
    from inbox.settings_report import effective

    settings = state(ctx).settings()
    data = effective(settings)

    def render() -> None:
        header = f"# effective config from {settings.source}" if settings.source else "# no config file: defaults"
        say("\n".join([header, *_render_toml(data)]) + "\n")

    emit(ctx, {"file": settings.source, **data}, render)


@config_app.command("path")
def config_path(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Print the config file in use (and, with --json, every place looked at)."""
    from inbox.settings import candidate_paths, find_config
    from inbox.errors import ConfigError

    st = state(ctx)
    path = find_config(st.config_path)
    looked = [str(p) for p in candidate_paths(st.config_path)]
    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config PATH or set INBOX_CONFIG)")

    def render() -> None:
        if path is not None:
            say(f"{path.resolve()}\n")
        else:
            say(f"no config file (defaults in use); looked at: {', '.join(looked)}\n", err=True)

    emit(ctx, {"path": str(path.resolve()) if path else None, "candidates": looked}, render)


def _plain_engine(ctx: typer.Context) -> "Engine":
    """An engine without the automatic upgrade, so `db` commands can report before acting."""
    from inbox.store.engine import make_engine

    url = state(ctx).settings().database_url()
    note_sqlite_file(url)
    return make_engine(url)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Apply pending schema migrations (never drops data); safe to run from several machines at once."""
    from inbox.settings_report import mask_url
    from inbox.store import migrate

    engine = _plain_engine(ctx)
    try:
        before = migrate.status(engine)
        applied = migrate.upgrade(engine)
        after = migrate.status(engine)
    finally:
        engine.dispose()
    url = mask_url(state(ctx).settings().database_url())

    def render() -> None:
        if applied:
            say(f"{url}: upgraded {before.current or 'empty'} → {after.current} ({len(applied)} migration{'s' if len(applied) != 1 else ''})\n")
        else:
            say(f"{url}: already at {after.current} (head)\n")

    emit(ctx, {"database": url, "from": before.current, "applied": applied, "current": after.current, "head": after.head}, render)


@db_app.command("status")
def db_status(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Where the database stands: current revision, head, pending migrations."""
    from inbox.settings_report import mask_url
    from inbox.store import migrate

    engine = _plain_engine(ctx)
    try:
        st = migrate.status(engine)
    finally:
        engine.dispose()
    url = mask_url(state(ctx).settings().database_url())

    def render() -> None:
        lines = [f"database: {url}", f"current:  {st.current or '(empty)'}", f"head:     {st.head}",
                 f"pending:  {', '.join(st.pending) if st.pending else 'none'}"]
        if st.pending:
            lines.append("run `inbox db upgrade` (or any command: a new database is upgraded on first use)")
        say("\n".join(lines) + "\n")

    emit(ctx, {"database": url, "current": st.current, "head": st.head, "pending": st.pending, "up_to_date": st.up_to_date}, render)


