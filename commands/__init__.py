"""The CLI's command groups, and what they share: the State behind every command, the output
helpers, the common options and the one JSON-or-human switch, `emit`.

Start-up stays light: only typer is imported at module level; everything heavy (SQLAlchemy,
requests, tweepy, rich tables) is imported inside the command that needs it. No
`from __future__ import annotations` in the command modules: typer reads every command's
signature at each start, and real annotation objects spare it evaluating hundreds of strings.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

    from inbox.settings import Settings
    from inbox.tickets.queue import TicketFilter


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
            note_sqlite_file(url)
            self._engine = open_store(url)
            import atexit

            atexit.register(self._engine.dispose)  # connections closed politely, also on a fast exit
            OPENED_ENGINES.append(self._engine)
        return self._engine


# Engines opened by commands, so an in-process caller (tests, scripts) gets its connections back
# when main() returns instead of at its own exit: a long-lived caller would exhaust the server.
OPENED_ENGINES: list["Engine"] = []

# The SQLite file in use (set when the store is opened), so its errors can name it.
SQLITE_FILE: list[str] = []


def note_sqlite_file(url: str) -> None:
    if url.startswith("sqlite:///"):
        SQLITE_FILE.append(url.removeprefix("sqlite:///"))


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


# ─── output ──────────────────────────────────────────────────────────────────────────────────


def console(stderr: bool = False) -> "Console":
    from inbox.safe_text import safe_console_class

    class _Console(safe_console_class()):  # type: ignore[misc]
        def on_broken_pipe(self) -> None:
            # Rich exits 1 here; a reader that has gone (`| head`) is not a failure: see cli._run.
            self.quiet = True
            raise BrokenPipeError

    # Rich honours NO_COLOR itself; highlight=False so customer text is never auto-styled; every
    # segment printed is cleaned (agents' and customers' text alike).
    return _Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    import json

    from inbox.safe_text import json_safe

    sys.stdout.write(json_safe(json.dumps(data, ensure_ascii=False, indent=2, default=str)) + "\n")


def wants_json(ctx: typer.Context) -> bool:
    """The command's own --json (its `json_` parameter), or the global one."""
    return bool(ctx.params.get("json_")) or state(ctx).json


def emit(ctx: typer.Context, data: Any, render: Callable[[], None]) -> None:
    """The one switch between machine and human output: `data` as JSON (a function giving it when
    building it costs something), else `render()`."""
    if wants_json(ctx):
        print_json(data() if callable(data) else data)
    else:
        render()


def prog() -> str:
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


# ─── the numbers people type ─────────────────────────────────────────────────────────────────

INT64_MAX = 2**63 - 1  # the largest id or count the store (SQLite INTEGER, PostgreSQL BIGINT) holds


def whole_number(value: Any) -> int:
    """An id or a count (the parser of every ID argument and --limit): a whole number from 1 that
    fits the store's 64-bit integers, so `inbox show 99999999999999999999` is a usage error, not
    a database overflow."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise typer.BadParameter(f"{str(value)!r} is not a whole number") from None
    if not 1 <= number <= INT64_MAX:
        raise typer.BadParameter(f"{number} is out of range (a whole number from 1 to {INT64_MAX})")
    return number


def _span(unit: str, most: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        """A period: a finite number above 0, at most a century (so `inf`, `nan` and `1e300` are
        usage errors, not overflows in the date arithmetic)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{str(value)!r} is not a number of {unit}") from None
        if not 0 < number <= most:  # also refuses nan
            raise typer.BadParameter(f"{str(value)!r} is out of range (a number of {unit} above 0, at most {most:g})")
        return number

    return parse


ID = COUNT = whole_number
HOURS = _span("hours", 100 * 365 * 24)
DAYS = _span("days", 100 * 365)

# ─── shared options ──────────────────────────────────────────────────────────────────────────

JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output (same as the global --json).")
AgentOpt = typer.Option(None, "--agent", metavar="NAME", help="Act as this agent (else $INBOX_AGENT, settings.agent, the OS user).")

# The ticket filters of list, search, stats and export: one declaration, one meaning per flag.
ChannelOpt = typer.Option(None, "--channel", metavar="CHANNEL", help="Only these channels: instagram, facebook, x (repeat or comma-separate).")
AccountOpt = typer.Option(None, "--account", metavar="NAME", help="Only these accounts (names from the config; repeat or comma-separate).")
AssigneeOpt = typer.Option(None, "--assignee", "-a", metavar="AGENT", help="'me', 'none' (unassigned) or an agent name.")
TagOpt = typer.Option(None, "--tag", metavar="TAG", help="Only tickets with this tag (repeat: all of them).")
PriorityOpt = typer.Option(None, "--priority", "-p", metavar="PRIORITY", help="urgent, high, normal, low (repeat or comma-separate).")
OverdueOpt = typer.Option(False, "--overdue", help="Only tickets past their SLA (first response or escalation).")
WindowOpt = typer.Option(None, "--window-closing", metavar="HOURS", parser=HOURS, help="Meta threads whose reply window closes within HOURS.")
LimitOpt = typer.Option(50, "--limit", "-n", metavar="N", parser=COUNT, help="At most this many tickets.")


def agent_for(ctx: typer.Context, explicit: Optional[str]) -> str:
    from inbox.tickets.operations import resolve_agent

    return resolve_agent(explicit, state(ctx).settings().agent)


def split_values(values: Optional[list[str]]) -> tuple[str, ...]:
    """Repeatable options also accept comma-separated values: --status new,open."""
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip().lower() for p in v.split(",") if p.strip())
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class FilterOpts:
    """The values of the ticket-filter options, as one value (list and search take them all)."""

    channel: Optional[list[str]] = None
    account: Optional[list[str]] = None
    assignee: Optional[str] = None
    tag: Optional[list[str]] = None
    priority: Optional[list[str]] = None
    overdue: bool = False
    window_closing: Optional[float] = None
    limit: int = 50


_FILTER_OPTIONS = (
    ("channel", Optional[list[str]], ChannelOpt), ("account", Optional[list[str]], AccountOpt), ("assignee", Optional[str], AssigneeOpt),
    ("tag", Optional[list[str]], TagOpt), ("priority", Optional[list[str]], PriorityOpt), ("overdue", bool, OverdueOpt),
    ("window_closing", Optional[float], WindowOpt), ("limit", int, LimitOpt),
)


def filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """A command's `filters: FilterOpts` parameter becomes the eight filter options in its place
    (as sqlite-utils' @output_options): typer sees the options, the command gets one FilterOpts."""
    import functools
    import inspect

    signature = inspect.signature(command)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name == "filters":
            params += [inspect.Parameter(name, param.kind, default=option, annotation=kind) for name, kind, option in _FILTER_OPTIONS]
        else:
            params.append(param)

    @functools.wraps(command)
    def with_filters(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name, _kind, _option in _FILTER_OPTIONS}
        command(filters=FilterOpts(**values), **kwargs)

    with_filters.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_filters.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return with_filters


def ticket_filter(ctx: typer.Context, status: Optional[list[str]], filters: FilterOpts, agent: Optional[str] = None) -> "TicketFilter":
    """The filter options' values as one validated TicketFilter."""
    from inbox.store.types import ACTIVE_STATUSES
    from inbox.tickets.queue import TicketFilter

    statuses = split_values(status)
    who = None
    assignee = filters.assignee
    if assignee:
        who = agent_for(ctx, agent) if assignee == "me" else ("none" if assignee.lower() == "none" else assignee)
    return TicketFilter(
        statuses=None if "all" in statuses else (statuses or ACTIVE_STATUSES),
        channels=split_values(filters.channel),
        accounts=tuple(a for v in filters.account or [] for a in v.split(",") if a),
        assignee=who,
        tags=split_values(filters.tag),
        priorities=split_values(filters.priority),
        overdue=filters.overdue,
        window_closing_hours=filters.window_closing,
        human_agent_tag=state(ctx).settings().replies.human_agent_tag,
        limit=filters.limit,
    ).validate()
