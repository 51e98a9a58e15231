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

app = typer.Typer(
    name="inbox",
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
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ─── config & db ─────────────────────────────────────────────────────────────────────────────


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
    return f"unexpected {exc.__class__.__name__}: {exc}", 1, "run with --debug for details"


if __name__ == "__main__":
    sys.exit(main())
