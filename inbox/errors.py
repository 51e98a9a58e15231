"""The domain's errors, each with the exit code the CLI documents."""

from __future__ import annotations

import re
import sys


class InboxError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        from connectors.redact import redact

        self.message = redact(message)
        self.hint = hint
        super().__init__(self.message)


class UsageError(InboxError):
    exit_code = 2


class ConfigError(InboxError):
    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        from connectors.redact import redact

        self.problems = tuple(redact(p) for p in problems) or (self.message,)  # every problem found, one line each


class AuthError(InboxError):
    exit_code = 4


class NotFoundError(InboxError):
    exit_code = 5


class ConflictError(InboxError):
    """Somebody else holds it: a claimed ticket, a running sync, a lease."""

    exit_code = 6


class LeaseLostError(ConflictError):
    """Another worker took this account's lease; the page was not stored."""


class PlatformError(InboxError):
    """The platform refused or failed (rate limit, server error) after retries."""

    exit_code = 7


class PolicyError(InboxError):
    """A reply refused before sending (window closed, text too long, no route)."""

    exit_code = 8


EXIT_CODES = {
    0: "success",
    1: "unexpected error, or an unhealthy account (inbox accounts)",
    2: "usage: bad arguments or input",
    3: "config: the config file or an environment variable is wrong",
    4: "auth: a token is invalid or expired; reconnect the account",
    5: "not found: no such ticket, reply or account",
    6: "conflict: already claimed, or another sync holds the account or the database's writer lock",
    7: "platform error: rate limited or the platform failed; try again later",
    8: "refused by policy: reply window closed, text too long, no route",
    130: "interrupted (Ctrl-C)",
}


# The first words of a statement: its kind and the table it touches, e.g. "INSERT INTO message".
_STATEMENT_KIND = re.compile(r'^\s*(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|SELECT|WITH|CREATE|ALTER|DROP|PRAGMA)\b\s*("?[\w.]+"?)?', re.I)
# A value quoted at the end of a driver message ('invalid input syntax for type integer: "…"').
_QUOTED_VALUE = re.compile(r""":\s*(["']).*\1\s*$""")


def describe(exc: BaseException) -> str:
    """One line for an unexpected exception, safe to print and to keep in `last_error`.

    A database error says what failed and in which kind of statement ("INSERT INTO message"), never
    the statement's parameters nor the driver's DETAIL lines: both quote customer text.
    """
    sa_exc = sys.modules.get("sqlalchemy.exc")  # only loaded if something touched the database
    if sa_exc is not None and isinstance(exc, sa_exc.StatementError):
        orig = exc.orig if exc.orig is not None else exc
        lines = str(orig).strip().splitlines() if exc.orig is not None else []
        detail = _QUOTED_VALUE.sub(": (value not shown)", lines[0]) if lines else type(orig).__name__
        kind = _STATEMENT_KIND.match(exc.statement or "")
        where = f" in {' '.join(kind.group(1).upper().split())}{' ' + kind.group(2).strip(chr(34)) if kind.group(2) else ''}" if kind else ""
        return f"database error{where}: {type(orig).__name__}: {detail}"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
