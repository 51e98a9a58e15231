"""One error hierarchy, classified by what the caller should do next.

- `RetryLaterError`: transient (429, 5xx, timeouts, Graph 1/2/4/17/32/613/80000-range); carries when.
- `NeedsReauthError`: the token is dead (Graph 190/102, X 401); stop the account and tell the team.
- `PermanentError`: retrying will not help (bad request, window closed, text too long, recipient gone).
- `NotSentError` (a `PermanentError`): the request failed before it left the process; not delivered.
- `DeliveryUnknownError`: a send may or may not have reached the platform; reconcile, never blindly retry.
- `ParseError` (a `ValueError`, beside the tree): one item could not be parsed; it is quarantined.

Every message is redacted before it is stored on the exception.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import RateInfo


class ParseError(ValueError):
    """An item that cannot become a value; the message says which field is wrong.

    Not a `ConnectorError`: it never leaves a connector. The connector catches it and turns the item
    into a quarantine record, so a `ConnectorError` handler never sees it.
    """


class ConnectorError(Exception):
    """Root of every error a connector raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        account: str | None = None,
    ) -> None:
        from connectors.redact import redact

        from connectors.safejson import clean_text

        self.message = clean_text(redact(message))  # platform text: stored on the account, logged
        self.status = status
        self.code = code
        self.subcode = subcode
        self.account = account
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"(code {self.code}" + (f"/{self.subcode})" if self.subcode else ")"))
        elif self.status is not None:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)


class RetryLaterError(ConnectorError):
    """Transient: try again at `retry_at` (or after a backoff when None)."""

    def __init__(self, message: str, *, retry_at: datetime | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_at = retry_at

    @property
    def retry_after(self) -> float | None:
        if self.retry_at is None:
            return None
        return max(0.0, (self.retry_at - datetime.now(timezone.utc)).total_seconds())


class RateLimitedError(RetryLaterError):
    """The platform's rate limit was hit; `retry_at` is the reset time when known, `rate` what it reported."""

    def __init__(self, message: str, *, retry_at: datetime | None = None, rate: RateInfo | None = None, **kw: object) -> None:
        super().__init__(message, retry_at=retry_at, **kw)
        self.rate = rate


class BudgetSpentError(RateLimitedError):
    """Not refused yet: the next call would reach the limit, so the pass stopped itself (`connectors.budget`)."""


class ServerError(RetryLaterError):
    """5xx, timeouts and dropped connections while reading."""


class ResponseTooLargeError(ServerError):
    """The decoded response exceeded the size cap (`sync.max_response_mb`); it was not read."""


class MalformedResponseError(RetryLaterError):
    """The whole response could not be decoded (truncated or not JSON). Items are quarantined instead."""


class NeedsReauthError(ConnectorError):
    """The token is invalid or expired. Polling this account stops until it is reconnected."""


class PermanentError(ConnectorError):
    """Retrying will not help: skip and record."""


class WindowClosedError(PermanentError):
    """Meta's messaging window is closed for this conversation (10/2018278, 10/2534022)."""


class TextTooLongError(PermanentError):
    """The reply exceeds the channel's text limit."""


class RecipientUnavailableError(PermanentError):
    """The customer cannot receive messages (blocked the account, deactivated, 551, X 403)."""


class NotSentError(PermanentError):
    """The request failed before any byte of it left the process (an invalid header, a bad URL):
    certainly not delivered, and sending it again unchanged fails the same way."""


class DeliveryUnknownError(ConnectorError):
    """A send timed out or the connection dropped after the request left: outcome unknown."""
