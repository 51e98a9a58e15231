"""The domain's errors, each with the exit code the CLI documents."""

from __future__ import annotations


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
