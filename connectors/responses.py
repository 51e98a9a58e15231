"""Reading a platform response once: its error class and its rate-limit headers.

`classify()` is the single mapping from an HTTP response (Graph error body, X RFC 7807 problem,
v1.1 `errors[]`, or just a status) to the `connectors.errors` hierarchy. `rate_info()` turns
`x-rate-limit-*`, `X-Business-Use-Case-Usage`, `X-App-Usage` and `X-Page-Usage` into a `RateInfo`.
Nothing here sends a request or sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from connectors import safejson
from connectors.base import MAX_COUNT, RateInfo
from connectors.errors import (
    ConnectorError,
    DeliveryUnknownError,
    MalformedResponseError,
    NeedsReauthError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryLaterError,
    ServerError,
    WindowClosedError,
)
from connectors.redact import redact
from connectors.times import http_date

log = logging.getLogger(__name__)

# Graph codes (reference A.4). Rate limits first: they carry a wait.
GRAPH_RATE_CODES = frozenset({4, 17, 32, 341, 613}) | frozenset(range(80000, 80015))
GRAPH_TRANSIENT_CODES = frozenset({1, 2, 1200})
GRAPH_REAUTH_CODES = frozenset({190, 102})
GRAPH_WINDOW_CLOSED = frozenset({(10, 2018278), (10, 2534022), (10, 2018065)})
GRAPH_RECIPIENT_GONE = frozenset({(10, 2018108), (200, 1545041), (551, 1545041), (100, 2018001)})

# When a platform says "rate limited" without saying until when (reference A.5 / B.5: start at 60 s).
DEFAULT_RATE_WAIT = timedelta(seconds=60)
# The longest wait a header can impose: a reset years away (or one that overflows) would pause the
# account for good. Meta's longest documented block is about an hour; X windows are 15 minutes.
MAX_WAIT = timedelta(hours=24)
MAX_USAGE_PCT = 1000.0  # Meta usage percentages run a little past 100 when throttled, never to this


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return safejson.loads(raw)
    except ValueError:
        log.debug("unparsable %s header ignored", name)
        return None


def _finite(value: Any) -> float | None:
    """A finite number from a header or a header's JSON, else None (booleans, NaN, inf, garbage)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number - number == 0 else None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A count from a header (limit, remaining), within what a counter can hold; None when unusable."""
    number = _finite(headers.get(name))
    if number is None or number < 0:
        return None
    return int(min(number, MAX_COUNT))


def _epoch_header(headers: Mapping[str, str], name: str, now: datetime) -> datetime | None:
    """An epoch-seconds header (x-rate-limit-reset) as a time no later than `now + MAX_WAIT`."""
    number = _finite(headers.get(name))
    if number is None:
        return None
    try:
        at = datetime.fromtimestamp(number, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return now + MAX_WAIT if number > 0 else None
    return min(at, now + MAX_WAIT)


def _after(now: datetime, seconds: float) -> datetime:
    """`now + seconds`, with the wait bounded to [0, MAX_WAIT]."""
    return now + timedelta(seconds=max(0.0, min(seconds, MAX_WAIT.total_seconds())))


def _usage_buckets(headers: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """Every usage bucket of the three Meta headers, flattened."""
    buckets: list[Mapping[str, Any]] = []
    buc = _json_header(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, dict):
        for value in buc.values():
            if isinstance(value, list):
                buckets.extend(b for b in value if isinstance(b, dict))
            elif isinstance(value, dict):
                buckets.append(value)
    for name in ("X-App-Usage", "X-Page-Usage", "X-Ad-Account-Usage"):
        value = _json_header(headers, name)
        if isinstance(value, dict):
            buckets.append(value)
    return buckets


def _regain_minutes(headers: Mapping[str, str]) -> float | None:
    """Meta's `estimated_time_to_regain_access` (minutes), the largest across buckets; None when 0/absent."""
    found = (_finite(b.get("estimated_time_to_regain_access")) for b in _usage_buckets(headers))
    best = max((m for m in found if m is not None), default=0.0)
    return best if best > 0 else None


def rate_info(headers: Mapping[str, str], *, now: datetime | None = None) -> RateInfo | None:
    """The rate headroom a response reports, or None when it reports none."""
    now = now or _now()
    limit = _int_header(headers, "x-rate-limit-limit")
    remaining = _int_header(headers, "x-rate-limit-remaining")
    reset_at = _epoch_header(headers, "x-rate-limit-reset", now)
    usage: float | None = None
    for bucket in _usage_buckets(headers):
        for key in ("call_count", "total_cputime", "total_time", "acc_id_util_pct"):
            value = _finite(bucket.get(key))
            # A percentage; far beyond 100 it is no reading at all, and must not stop the account.
            if value is not None and 0 <= value <= MAX_USAGE_PCT:
                usage = max(usage or 0.0, value)
    minutes = _regain_minutes(headers)
    if minutes is not None:
        reset_at = _after(now, minutes * 60)
    if limit is None and remaining is None and reset_at is None and usage is None:
        return None
    return RateInfo(limit=limit, remaining=remaining, reset_at=reset_at, usage_pct=usage)


def retry_hint(headers: Mapping[str, str], *, now: datetime | None = None, rate_limited: bool = True) -> datetime | None:
    """When the platform says to come back: Retry-After, x-rate-limit-reset or Meta's regain estimate.

    The last two describe the rate window, which X reports on every answer; for a failure that is not
    a rate limit (`rate_limited=False`) only Retry-After counts.
    """
    now = now or _now()
    candidates: list[datetime] = []
    retry_after = headers.get("Retry-After")
    if retry_after:
        seconds = _finite(retry_after)
        if seconds is not None:
            candidates.append(_after(now, seconds))
        else:
            at = http_date(retry_after)
            if at is not None:
                # A date on the platform's clock: the wait is from its own `Date` (a platform an hour
                # behind us would otherwise mean "now", one ahead an hour too long), never negative.
                sent = http_date(headers.get("Date"))
                candidates.append(_after(now, (at - (sent or now)).total_seconds()))
    if rate_limited:
        reset = _epoch_header(headers, "x-rate-limit-reset", now)
        if reset is not None:
            candidates.append(reset)
        minutes = _regain_minutes(headers)
        if minutes is not None:
            candidates.append(_after(now, minutes * 60))
    return max(candidates) if candidates else None


def _body(response: requests.Response) -> Any:
    try:
        return safejson.loads(response.content)
    except ValueError:
        return None


def _cut_json(content: bytes) -> bool:
    """A body that starts as JSON (and so was not a proxy's HTML page) but does not parse."""
    return content.lstrip()[:1] in (b"{", b"[")


def _where(response: requests.Response) -> str:
    """METHOD /path for messages: never the query string (it may carry a token)."""
    request = response.request
    method = request.method if request is not None else "?"
    url = (request.url or "") if request is not None else (response.url or "")
    path = requests.utils.urlparse(url).path
    return f"{method} {path}"


def classify(
    response: requests.Response,
    *,
    sending: bool = False,
    account: str | None = None,
    now: datetime | None = None,
) -> ConnectorError | None:
    """The error a response stands for, or None when it is a success.

    `sending` marks a Send API / create-DM call: there a 5xx may have been delivered (so it is
    `DeliveryUnknownError`), and an X 403 means the recipient cannot be messaged.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    now = now or _now()
    body = _body(response)
    where = _where(response)
    if body is None and not sending and _cut_json(response.content):
        # JSON that breaks off: what the platform said is unknown (an expired token, a throttle…),
        # so it is no reason to fail the account; the read is tried again.
        return MalformedResponseError(f"{where}: HTTP {status} with a body that breaks off", status=status, account=account)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _graph_error(body["error"], status, response.headers, where, sending, account, now)
    return _http_error(body, status, response.headers, where, sending, account, now)


def error_in_success(body: Any, response: requests.Response, *, sending: bool = False, account: str | None = None) -> ConnectorError | None:
    """The error a 2xx Graph answer stands for when its body is an error object and nothing else
    (`suppress_http_code`, or a proxy answering 200): classified as if it came with its own status,
    so an expired token is still a reconnect. None for any other body."""
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), Mapping) or "data" in body:
        return None
    return _graph_error(body["error"], response.status_code, response.headers, _where(response), sending, account, _now())


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _server_error(text: str, status: int, sending: bool, hint: datetime | None, kw: dict[str, Any]) -> ConnectorError:
    # A 5xx on a send may hide a delivery; only 503 says "not processed".
    if sending and status != 503:
        return DeliveryUnknownError(text, **kw)
    return ServerError(text, retry_at=hint, **kw)


def _graph_error(
    err: Mapping[str, Any],
    status: int,
    headers: Mapping[str, str],
    where: str,
    sending: bool,
    account: str | None,
    now: datetime,
) -> ConnectorError:
    code = _as_int(err.get("code"))
    subcode = _as_int(err.get("error_subcode"))
    text = f"{where}: {redact(str(err.get('message') or 'Graph API error'))}"
    if err.get("fbtrace_id"):
        text += f" [fbtrace_id {err['fbtrace_id']}]"
    kw: dict[str, Any] = {"status": status, "code": code, "subcode": subcode, "account": account}
    if code in GRAPH_REAUTH_CODES:
        return NeedsReauthError(text, **kw)
    if code in GRAPH_RATE_CODES or status == 429:
        return RateLimitedError(text, retry_at=retry_hint(headers, now=now) or now + DEFAULT_RATE_WAIT,
                                rate=rate_info(headers, now=now), **kw)
    hint = retry_hint(headers, now=now, rate_limited=False)
    if (code, subcode) in GRAPH_WINDOW_CLOSED:
        return WindowClosedError(text, **kw)
    if code == 551 or (code, subcode) in GRAPH_RECIPIENT_GONE:
        return RecipientUnavailableError(text, **kw)
    if code in GRAPH_TRANSIENT_CODES or err.get("is_transient") is True:
        if sending and code == 1 and status >= 500:
            return DeliveryUnknownError(text, **kw)
        return ServerError(text, retry_at=hint, **kw)
    if status >= 500:
        return _server_error(text, status, sending, hint, kw)
    return PermanentError(text, **kw)


def _problem_suffix(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return body["type"].rstrip("/").rsplit("/", 1)[-1]
    return ""


def _http_error(
    body: Any,
    status: int,
    headers: Mapping[str, str],
    where: str,
    sending: bool,
    account: str | None,
    now: datetime,
) -> ConnectorError:
    detail = ""
    v1_codes: list[int] = []
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or "")
        errors = body.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict):
                    if (c := _as_int(item.get("code"))) is not None:
                        v1_codes.append(c)
                    if not detail and item.get("message"):
                        detail = str(item["message"])
    text = f"{where}: {redact(detail) if detail else 'HTTP ' + str(status)}"
    kw: dict[str, Any] = {"status": status, "account": account}
    if v1_codes:
        kw["code"] = v1_codes[0]
    suffix = _problem_suffix(body)
    if status == 401 or 89 in v1_codes or 32 in v1_codes:
        return NeedsReauthError(text, **kw)
    if status == 429 or suffix in ("usage-capped", "rate-limit-exceeded") or 88 in v1_codes:
        return RateLimitedError(text, retry_at=retry_hint(headers, now=now) or now + DEFAULT_RATE_WAIT,
                                rate=rate_info(headers, now=now), **kw)
    hint = retry_hint(headers, now=now, rate_limited=False)
    if status >= 500:
        return _server_error(text, status, sending, hint, kw)
    if sending and (status == 403 or suffix == "not-authorized-for-resource"):
        return RecipientUnavailableError(text, **kw)
    return PermanentError(text, **kw)


def is_retryable(error: ConnectorError, *, method: str) -> bool:
    """Whether `http` may retry by itself. A send is retried only when the platform refused it outright."""
    if method.upper() in ("GET", "HEAD"):
        return isinstance(error, RetryLaterError)
    return isinstance(error, RateLimitedError)
