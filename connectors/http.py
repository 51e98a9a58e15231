"""The one place that sends HTTP.

`HttpSession` is a `requests.Session` whose `request()` adds, for every call a connector makes
(including the ones tweepy makes through it):

- a timeout, and pacing per account (a minimum interval between calls); the timeout bounds each
  wait for bytes, and `DEADLINE_PER_TIMEOUT` timeouts bound the whole attempt (a trickled answer);
- retries with exponential backoff and jitter, for retryable failures only. A GET is retried on
  timeouts, dropped connections, 5xx and rate limits. A send (POST) is retried only when it never left
  (connection refused) or the platform refused it outright (rate limited); a send that timed out or
  whose connection dropped raises `DeliveryUnknownError`, because it may have been delivered;
- waits taken from `Retry-After`, `x-rate-limit-reset` and Meta's `estimated_time_to_regain_access`,
  but never more than `RetryPolicy.max_sleep` in total: a longer wait is left to the caller, which
  raises `RateLimitedError(retry_at=...)` from `classify()` and lets the scheduler come back;
- redacted debug logging (Graph `paging.next` URLs and tweepy's debug lines carry tokens).

It returns the final response; callers turn a non-2xx response into an error with
`connectors.responses.classify` and decode bodies with `decode_json`.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from connectors import safejson
from connectors.responses import classify, is_retryable, retry_hint
from connectors.errors import DeliveryUnknownError, MalformedResponseError, NotSentError, RateLimitedError, ResponseTooLargeError, ServerError
from connectors.redact import redact
from connectors.times import http_date
from connectors.transport import DeadlineExceeded, PoolTransport, SendOptions, Transport, never_sent

log = logging.getLogger(__name__)

USER_AGENT = "inbox/0.1 (+social-care inbox)"
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # decoded bytes of one response (`sync.max_response_mb`)
# One attempt, sent and answered in full, takes at most this many read timeouts (`connectors.deadline`):
# generous for a large page on a slow link, and a platform trickling its answer cannot hold a pass.
DEADLINE_PER_TIMEOUT = 4.0
# Only what the transport can inflate step by step is asked for (requests would add br and zstd).
ACCEPT_ENCODING = "gzip, deflate"
MAX_CLOCK_DRIFT = timedelta(days=30)  # a platform `Date` further from our clock than this is ignored
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_REQUEST_PARAMS = tuple(inspect.signature(requests.Session.request).parameters)[3:]  # after self, method, url


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard `HttpSession` tries before handing a failure back."""

    max_retries: int = 3
    backoff_base: float = 0.5  # seconds; attempt n waits about base * 2**n
    backoff_cap: float = 8.0  # one wait is never longer than this (unless the platform asks)
    max_sleep: float = 10.0  # total sleep per request; a longer platform wait is raised, not slept

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so clients spread out."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _RedactFilter(logging.Filter):
    """Masks secrets in records of loggers we do not own (urllib3, tweepy) before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_FILTER = _RedactFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "tweepy.client", "requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849"):
    logging.getLogger(_name).addFilter(_FILTER)


class Pacer:
    """Minimum spacing between calls of one account, shared by every session of that account."""

    _registry: dict[str, Pacer] = {}
    _registry_lock = threading.Lock()

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = 0.0

    @classmethod
    def for_account(cls, account: str, interval: float) -> Pacer:
        with cls._registry_lock:
            pacer = cls._registry.get(account)
            if pacer is None:
                pacer = cls._registry[account] = Pacer(interval)
            pacer.interval = interval  # the latest spec wins
            return pacer

    @classmethod
    def _forget(cls) -> None:
        # In a forked child, a lock held by another thread at the fork would never be released.
        cls._registry_lock = threading.Lock()
        cls._registry = {}

    def wait(self, sleep: Callable[[float], None]) -> None:
        with self._lock:
            delay = self._last + self.interval - time.monotonic()
            if delay > 0:
                sleep(delay)
            self._last = time.monotonic()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=Pacer._forget)


def _not_sent_reason(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "a request header is invalid (is there a newline or space at the end of the token's environment variable?)"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return "the URL is invalid (check the account's base_url)"
    return f"the request could not be prepared ({exc.__class__.__name__})"


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path or "/"


class HttpSession(requests.Session):
    """A `requests.Session` for one account: timeouts, pacing, retries, redacted logging.

    `rewrite` maps URL prefixes to replacements (tweepy hard-codes https://api.twitter.com; this is
    how its calls reach the configured base URL, e.g. the sandbox).
    """

    def __init__(
        self,
        *,
        account: str,
        timeout: float,
        min_interval: float = 0.0,
        policy: RetryPolicy | None = None,
        rewrite: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_body: int = DEFAULT_MAX_BODY,
        transport: Transport | None = None,
    ) -> None:
        super().__init__()
        self.account = account
        self.timeout = timeout
        self.max_body = max_body
        self.last_response: requests.Response | None = None  # for tweepy, when it cannot read an error body
        self._platform_date: tuple[datetime, float] | None = None  # (Date header, monotonic time it arrived)
        self.policy = policy or RetryPolicy()
        self.rewrite = dict(rewrite or {})
        self.pacer = Pacer.for_account(account, min_interval)
        self.sleep = sleep
        self.headers["User-Agent"] = USER_AGENT
        self.headers["Accept-Encoding"] = ACCEPT_ENCODING
        # requests reads proxies, the CA bundle and ~/.netrc from the environment on every
        # request (a measurable share of a sync's CPU). Read them once per origin instead and
        # hand them over explicitly: the same settings, looked up once per session.
        self.trust_env = False
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None, Any]] = {}
        self.transport: Transport = transport if transport is not None else PoolTransport(self.get_adapter)
        self._attempt = threading.local()  # per thread: whether the current attempt reached the transport

    def _rewritten(self, url: str) -> str:
        for prefix, target in self.rewrite.items():
            if url.startswith(prefix):
                return target.rstrip("/") + url[len(prefix):]
        return url

    def _from_environment(self, url: str, no_proxy: str | None) -> tuple[dict[str, str], str | None, Any]:
        """What requests' `trust_env` would read for `url`: proxies, CA bundle, .netrc credentials."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        found = self._environment.get(key) if no_proxy is None else None
        if found is None:
            found = (
                requests.utils.get_environ_proxies(url, no_proxy=no_proxy),
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"),
                requests.utils.get_netrc_auth(url),
            )
            if no_proxy is None:
                self._environment[key] = found
        return found

    def _apply_environment(self, url: str, kwargs: dict[str, Any]) -> None:
        # The merge requests does itself when trust_env is on (Session.merge_environment_settings,
        # Session.prepare_request): explicit arguments win over the environment.
        proxies = dict(kwargs.get("proxies") or {})
        env_proxies, ca_bundle, netrc_auth = self._from_environment(url, proxies.get("no_proxy"))
        for k, v in env_proxies.items():
            proxies.setdefault(k, v)
        kwargs["proxies"] = proxies
        if ca_bundle and kwargs.get("verify") in (True, None):
            kwargs["verify"] = ca_bundle
        # Unlike requests, a request that already carries its own Authorization header (the Graph
        # token) keeps it: ~/.netrc credentials would replace the token and be sent to the API.
        given = {str(k).lower() for k in (kwargs.get("headers") or {})} | {k.lower() for k in self.headers}
        if netrc_auth and not kwargs.get("auth") and not self.auth and "authorization" not in given:
            kwargs["auth"] = netrc_auth

    def _prepare(self, method: str, url: str, kwargs: dict[str, Any]) -> tuple[requests.PreparedRequest, SendOptions]:
        """One attempt's request, prepared by requests (URL and params, JSON body, auth such as tweepy's
        OAuth 1.0a signature), and how the transport sends it. Cookies, hooks and redirects are not
        requests' business here: see `PoolTransport.send`."""
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, kwargs.get("params"))
        headers = CaseInsensitiveDict(self.headers)
        for name, value in (kwargs.get("headers") or {}).items():
            if value is None:  # as in requests: None removes a session header
                headers.pop(name, None)
            else:
                headers[name] = value
        prepared.prepare_headers(headers)
        prepared.prepare_body(kwargs.get("data"), kwargs.get("files"), kwargs.get("json"))
        prepared.prepare_auth(kwargs.get("auth") or self.auth, prepared.url)
        prepared.prepare_hooks({})
        proxies = dict(kwargs.get("proxies") or {})
        for scheme, proxy in self.proxies.items():
            proxies.setdefault(scheme, proxy)
        verify = kwargs.get("verify")
        verify = self.verify if verify is None else verify
        timeout = kwargs.get("timeout")
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        options = SendOptions(
            timeout=timeout, max_body=self.max_body, where=f"{prepared.method} {_path(url)}",
            account=self.account, verify=verify, cert=kwargs.get("cert") or self.cert, proxies=proxies,
            deadline=None if read is None else DEADLINE_PER_TIMEOUT * read,
        )
        return prepared, options

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        """One attempt through the transport; the platform's `Date` is noted from its answer."""
        prepared, options = self._prepare(method, url, kwargs)
        self._attempt.sending = True
        response = self.transport.send(prepared, options)
        self._note_date(response.headers.get("Date"))
        return response

    def _request_left(self) -> bool:
        """Whether any byte of the current attempt left: never when it failed before the transport."""
        return bool(getattr(self._attempt, "sending", False)) and self.transport.request_left()

    def close(self) -> None:
        self.transport.close()
        super().close()

    def _note_date(self, value: str | None) -> None:
        """Remember the platform's clock (its `Date` header) when it is believable."""
        at = http_date(value)
        if at is None:
            return
        if abs(at - datetime.now(timezone.utc)) <= MAX_CLOCK_DRIFT:
            self._platform_date = (at, time.monotonic())

    def clock(self) -> datetime:
        """The platform's time now: its last `Date` header plus the time since, else our own clock.

        Items dated after this (plus a small skew) are treated as misdated. A `Date` further than
        `MAX_CLOCK_DRIFT` from our clock is not believed: a platform's clock cannot be trusted
        to move our cursors years ahead either.
        """
        if self._platform_date is None:
            return datetime.now(timezone.utc)
        at, seen = self._platform_date
        return at + timedelta(seconds=time.monotonic() - seen)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method = (method.decode() if isinstance(method, bytes) else method).upper()
        url = self._rewritten(url.decode() if isinstance(url, bytes) else url)
        if args:  # positional parameters of Session.request, by name (so the environment merge sees them)
            kwargs.update(zip(_REQUEST_PARAMS, args))
        unsupported = sorted(k for k in ("cookies", "hooks") if kwargs.get(k))
        if unsupported:
            raise TypeError(f"HttpSession.request does not take {', '.join(unsupported)}")
        kwargs.setdefault("timeout", self.timeout)
        self._apply_environment(url, kwargs)
        idempotent = method in _IDEMPOTENT
        policy = self.policy
        slept = 0.0
        attempt = 0
        while True:
            self.pacer.wait(self.sleep)
            started = time.monotonic()
            self._attempt.sending = False
            try:
                response = self._send(method, url, kwargs)
            except ResponseTooLargeError:
                if not idempotent:  # the platform answered, so it may well have carried the send out
                    raise DeliveryUnknownError(
                        f"{method} {_path(url)}: the answer was too large to read; the send may have been delivered",
                        account=self.account,
                    ) from None
                raise  # not retried: the same request would bring the same body
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                # The status line arrived but the body broke off.
                if not idempotent:
                    raise DeliveryUnknownError(
                        f"{method} {_path(url)}: the response broke off; the send may have been delivered",
                        account=self.account,
                    ) from None
                raise MalformedResponseError(
                    f"{method} {_path(url)}: response body truncated ({exc.__class__.__name__})", account=self.account
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                unsent = never_sent(exc) or not self._request_left()
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if not idempotent and not unsent:
                    log.warning("%s %s %s after the request left; outcome unknown", method, _path(url), kind)
                    raise DeliveryUnknownError(
                        f"{method} {_path(url)}: {kind} after the request was sent; it may have been delivered",
                        account=self.account,
                    ) from None
                if isinstance(exc, DeadlineExceeded):  # that slow now, it will not be faster in a second
                    raise ServerError(str(exc.args[0]), account=self.account) from None
                delay = policy.backoff(attempt)
                if attempt >= policy.max_retries or slept + delay > policy.max_sleep:
                    raise ServerError(
                        f"{method} {_path(url)}: {kind} ({attempt + 1} attempts)", account=self.account
                    ) from None
                log.info("%s %s %s; retry %d in %.2fs", method, _path(url), kind, attempt + 1, delay)
                self.sleep(delay)
                slept += delay
                attempt += 1
                continue
            except Exception as exc:
                if self._request_left():
                    if idempotent:
                        raise
                    raise DeliveryUnknownError(
                        f"{method} {_path(url)}: {exc.__class__.__name__} after the request was sent; it may have been delivered",
                        account=self.account,
                    ) from None
                # Raised before a byte left (a header requests refuses, such as a token ending in a
                # newline; a bad URL): nothing was sent. Never quote the exception: it holds the value.
                raise NotSentError(f"{method} {_path(url)}: {_not_sent_reason(exc)}; nothing was sent", account=self.account) from None
            if log.isEnabledFor(logging.DEBUG):  # redacting costs; only for a line that is written
                elapsed = (time.monotonic() - started) * 1000
                log.debug("%s %s -> %s (%.0f ms)", method, redact(response.url or url), response.status_code, elapsed)
            self.last_response = response
            error = classify(response, sending=not idempotent, account=self.account)
            if error is None or not is_retryable(error, method=method):
                return response
            hint = retry_hint(response.headers, rate_limited=isinstance(error, RateLimitedError))
            delay = policy.backoff(attempt)
            if hint is not None:
                delay = max(delay, (hint - datetime.now(timezone.utc)).total_seconds())
            if attempt >= policy.max_retries or slept + delay > policy.max_sleep:
                return response  # the caller raises the classified error, with its retry_at
            log.info("%s %s -> HTTP %s; retry %d in %.2fs", method, _path(url), response.status_code, attempt + 1, delay)
            response.close()
            self.sleep(delay)
            slept += delay
            attempt += 1


def decode_json(response: requests.Response, *, account: str | None = None) -> Any:
    """The JSON body, or `MalformedResponseError` naming the call (never quoting the body: it may hold a token)."""
    try:
        return safejson.loads(response.content)
    except ValueError:
        request = response.request
        where = f"{request.method} {_path(request.url or '')}" if request is not None else _path(response.url or "")
        ctype = response.headers.get("Content-Type", "unknown type")
        raise MalformedResponseError(
            f"{where}: response is not valid JSON ({len(response.content)} bytes, {ctype})",
            status=response.status_code,
            account=account,
        ) from None


def raise_for(response: requests.Response, *, sending: bool = False, account: str | None = None) -> None:
    """Raise the classified error of a non-2xx response."""
    error = classify(response, sending=sending, account=account)
    if error is not None:
        raise error
