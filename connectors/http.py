"""The one place that sends HTTP.

`HttpSession` is a `requests.Session` whose `request()` adds, for every call a connector makes
(including the ones tweepy makes through it):

- a timeout, and pacing per account (a minimum interval between calls);
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
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from connectors import safejson
from connectors.responses import classify, is_retryable, retry_hint
from connectors.errors import DeliveryUnknownError, MalformedResponseError, NotSentError, RateLimitedError, ResponseTooLargeError, ServerError
from connectors.redact import redact

log = logging.getLogger(__name__)

USER_AGENT = "inbox/0.1 (+social-care inbox)"
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # decoded bytes of one response (`sync.max_response_mb`)
_CHUNK = 64 * 1024  # read and inflate in steps of this size: memory stays near the cap, never the bomb
# Only what `_read_body` can inflate step by step is asked for (requests would add br and zstd).
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


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never established, so no byte of the request left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError)):
            return True
        if isinstance(cur, urllib3.exceptions.MaxRetryError) and cur.reason is not None:
            cur = cur.reason
            continue
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur = nxt
    return False


# Whether a byte of the current request reached the socket, per thread. Set by the connections
# `HttpSession` pools make (below), cleared before each attempt: a failure with it unset (invalid
# header, DNS, connection refused, TLS handshake) certainly delivered nothing.
_wire = threading.local()


def _request_left() -> bool:
    return bool(getattr(_wire, "left", False))


class _WireMark:
    """Mixin for urllib3 connections: every byte of a request leaves through http.client's `send`."""

    sock: Any
    auto_open: int
    connect: Callable[[], None]

    def send(self, data: Any) -> None:
        if self.sock is None and self.auto_open:
            self.connect()  # a failure here (DNS, refused, TLS) sent nothing
        _wire.left = True
        super().send(data)  # type: ignore[misc]


_MARKED: dict[type, type] = {}


def _marked(cls: type) -> type:
    found = _MARKED.get(cls)
    if found is None:
        found = _MARKED[cls] = type(f"Marked{cls.__name__}", (_WireMark, cls), {})
    return found


_NO_RETRIES = urllib3.Retry(0, read=False)  # requests' adapter default: retrying is ours (`HttpSession.request`)


def _as_requests_error(exc: Exception, request: requests.PreparedRequest) -> Exception:
    """The requests exception its HTTPAdapter raises for this urllib3 failure (or its reason)."""
    e, r = urllib3.exceptions, requests.exceptions
    cause = exc.reason if isinstance(exc, e.MaxRetryError) and exc.reason is not None else exc
    raised_as: tuple[tuple[Any, Any], ...] = (
        (e.NewConnectionError, r.ConnectionError),  # before its base class, ConnectTimeoutError
        (e.ConnectTimeoutError, r.ConnectTimeout),
        (e.ReadTimeoutError, r.ReadTimeout),
        (e.ResponseError, r.RetryError),
        (e.ProxyError, r.ProxyError),
        (e.SSLError, r.SSLError),
        ((e.ProtocolError, e.ClosedPoolError, OSError), r.ConnectionError),
    )
    for kind, error in raised_as:
        if isinstance(cause, kind):
            return error(exc, request=request)  # type: ignore[no-any-return]
    return r.ConnectionError(exc, request=request) if cause is not exc else exc


def _not_sent_reason(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "a request header is invalid (is there a newline or space at the end of the token's environment variable?)"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return "the URL is invalid (check the account's base_url)"
    return f"the request could not be prepared ({exc.__class__.__name__})"


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path or "/"


class _Response(requests.Response):
    """A response whose `json()` is `safejson.loads` (tweepy reads error bodies through it too)."""

    def json(self, **kwargs: Any) -> Any:
        try:
            return safejson.loads(self.content)
        except ValueError as exc:
            raise requests.exceptions.JSONDecodeError(str(exc), "", 0) from None


def _inflate(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """Decompress a stream of chunks in pieces of at most `_CHUNK` bytes (a bomb never expands at once)."""
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise urllib3.exceptions.DecodeError(f"unsupported Content-Encoding {encoding!r}")
    decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    first = True
    for chunk in chunks:
        data = chunk
        while data:
            try:
                out = decoder.decompress(data, _CHUNK)
            except zlib.error as exc:
                if not (first and encoding == "deflate"):
                    raise urllib3.exceptions.DecodeError(str(exc)) from exc
                decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # some servers send raw deflate
                first = False
                continue
            first = False
            if out:
                yield out
            data = decoder.unconsumed_tail
            if not data and decoder.eof and decoder.unused_data:  # a second gzip member follows
                data = decoder.unused_data
                decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)
    rest = decoder.flush()
    if rest:
        yield rest


def _read_body(raw: Any, limit: int, where: str, account: str) -> bytes:
    """The decoded body, read and inflated step by step; `ResponseTooLargeError` past `limit` bytes."""

    def too_large() -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{where}: the response is larger than {limit:,} bytes once decoded; not read "
            "(raise sync.max_response_mb if the platform really sends this much)",
            status=raw.status, account=account,
        )

    encodings = [e.strip().lower() for e in (raw.headers.get("Content-Encoding") or "").split(",")]
    encodings = [e for e in encodings if e and e != "identity"]
    length = raw.headers.get("Content-Length") or ""
    if not encodings and length.isdigit() and int(length) > limit:
        raise too_large()
    chunks: Iterator[bytes] = raw.stream(_CHUNK, decode_content=False)
    for encoding in reversed(encodings):  # listed in the order they were applied
        chunks = _inflate(chunks, encoding)
    parts: list[bytes] = []
    size = 0
    for piece in chunks:
        size += len(piece)
        if size > limit:
            raise too_large()
        parts.append(piece)
    return b"".join(parts)


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
        self._pools: dict[tuple[Any, ...], tuple[Any, bool]] = {}

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

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        """One attempt: prepared by requests, sent on the urllib3 pool requests' adapter chose.

        `requests.Session.request` also merges cookies, hooks and settings, looks for redirects
        and streams the body in 10 KB chunks on every call; with the adapter's own per-call setup
        that is about half of an API call's CPU here, and a sync makes thousands of calls. These
        APIs need none of it: no cookie is kept, and a redirect comes back as the response it is
        (never followed with the token). What is kept from requests: the request itself (URL and
        params, JSON body, auth such as tweepy's OAuth 1.0a signature), the adapter's pools with
        their TLS and proxy settings (looked up once per origin), its exception types, and a
        `requests.Response` for tweepy and `classify`.
        """
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
        cert = kwargs.get("cert") or self.cert
        pool, full_url = self._pool(prepared, verify, cert, proxies)
        target = requests.utils.urldefragauth(prepared.url) if full_url else prepared.path_url
        timeout = kwargs.get("timeout")
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        try:
            raw = pool.urlopen(
                method=prepared.method, url=target, body=prepared.body, headers=prepared.headers, redirect=False,
                assert_same_host=False, preload_content=False, decode_content=False, retries=_NO_RETRIES,
                timeout=urllib3.Timeout(connect=connect, read=read),
                chunked=not (prepared.body is None or "Content-Length" in prepared.headers),
            )
        except Exception as exc:
            raise _as_requests_error(exc, prepared) from exc
        try:
            body = _read_body(raw, self.max_body, f"{prepared.method} {_path(url)}", self.account)
        except ResponseTooLargeError:
            raw.close()  # the rest is never read: the connection cannot be reused
            raw.release_conn()
            raise
        except urllib3.exceptions.ReadTimeoutError as exc:
            raw.release_conn()
            raise requests.exceptions.ReadTimeout(exc, request=prepared) from exc
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, OSError) as exc:
            raw.close()
            raw.release_conn()
            raise requests.exceptions.ChunkedEncodingError(exc, request=prepared) from exc  # the body broke off
        raw.release_conn()
        response = _Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.reason = raw.reason
        response.url = prepared.url or url
        response.request = prepared
        response.raw = raw
        response._content = body  # read here (above): a body that breaks off raises inside the retries
        self._note_date(response.headers.get("Date"))
        return response

    def _note_date(self, value: str | None) -> None:
        """Remember the platform's clock (its `Date` header) when it is believable."""
        if not value:
            return
        try:
            at = parsedate_to_datetime(value).astimezone(timezone.utc)
        except (TypeError, ValueError, OverflowError, IndexError):
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

    def _pool(self, prepared: requests.PreparedRequest, verify: Any, cert: Any, proxies: dict[str, str]) -> tuple[Any, bool]:
        """The urllib3 pool requests' adapter uses for this origin and settings, and whether it is an
        HTTP proxy (which takes the full URL). Chosen once per origin: the adapter's lookup costs."""
        parts = urlsplit(prepared.url or "")
        key = (parts.scheme, parts.netloc, repr(verify), repr(cert), tuple(sorted(proxies.items())))
        found = self._pools.get(key)
        if found is None or found[0].pool is None:  # never chosen, or closed since (urllib3 1.x closes what it evicts)
            adapter = self.get_adapter(prepared.url or "")
            try:
                pool = adapter.get_connection_with_tls_context(prepared, verify, proxies=proxies, cert=cert)
            except urllib3.exceptions.LocationValueError as exc:
                raise requests.exceptions.InvalidURL(exc, request=prepared) from exc
            adapter.cert_verify(pool, prepared.url or "", verify, cert)
            if not issubclass(pool.ConnectionCls, _WireMark):
                pool.ConnectionCls = _marked(pool.ConnectionCls)
            found = self._pools[key] = (pool, adapter.request_url(prepared, proxies) != prepared.path_url)
        return found

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
            _wire.left = False
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
                never_sent = _never_sent(exc) or not _request_left()
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if not idempotent and not never_sent:
                    log.warning("%s %s %s after the request left; outcome unknown", method, _path(url), kind)
                    raise DeliveryUnknownError(
                        f"{method} {_path(url)}: {kind} after the request was sent; it may have been delivered",
                        account=self.account,
                    ) from None
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
                if _request_left():
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
