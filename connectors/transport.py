"""How a prepared request reaches the wire: the one module that knows requests' and urllib3's internals.

`connectors.http.HttpSession` decides *what* to send and what to do with the answer (timeouts,
pacing, retries, logging); a `Transport` only sends one prepared request and reads its answer:

- `PoolTransport` (the default) sends it on the urllib3 pool requests' adapter chose for the origin,
  with requests' TLS and proxy settings, bypassing `requests.Session.send` (see `PoolTransport.send`).
  It uses `HTTPAdapter.get_connection_with_tls_context`, which exists from requests 2.32.2 on
  (pinned in pyproject.toml), and marks its connections so that a failure can tell whether any byte
  of the request left (`request_left`): a send that never left can be retried, one that did cannot.
- `MockTransport` (as httpx's) hands every request to a function that answers it: no socket.

Both raise requests' exception types (ConnectionError, Timeout, ChunkedEncodingError) and
`ResponseTooLargeError` past the size cap, and return a `requests.Response` whose `json()` is
`safejson.loads` (tweepy and `classify` read it).
"""

from __future__ import annotations

import json as _json
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from connectors import deadline, safejson
from connectors.errors import ResponseTooLargeError

_CHUNK = 64 * 1024  # read and inflate in steps of this size: memory stays near the cap, never the bomb


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How one attempt is sent: settings already merged by the session."""

    timeout: float | tuple[float | None, float | None] | None
    max_body: int  # decoded bytes; more is `ResponseTooLargeError`
    where: str  # "GET /path", for messages (never the query: it may hold a token)
    account: str
    deadline: float | None = None  # seconds for the attempt, renewed while its answer arrives fast enough (`connectors.deadline`)
    verify: Any = True
    cert: Any = None
    proxies: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """Sends one prepared request and returns its answer, body read (see the module docstring)."""

    def send(self, request: requests.PreparedRequest, options: SendOptions) -> requests.Response: ...

    def request_left(self) -> bool:
        """Whether any byte of this thread's latest `send` reached the wire (False: certainly not delivered)."""
        ...

    def close(self) -> None: ...


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The answer did not arrive in full within the attempt's deadline (`connectors.deadline`)."""


def never_sent(exc: BaseException) -> bool:
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
# `PoolTransport` pools make (below), cleared as each send starts: a failure with it unset (invalid
# header, DNS, connection refused, TLS handshake) certainly delivered nothing.
_wire = threading.local()


class _WireMark:
    """Mixin for urllib3 connections: every byte of a request leaves through http.client's `send`."""

    sock: Any
    auto_open: int
    connect: Callable[[], None]

    def send(self, data: Any) -> None:
        watch = getattr(_wire, "watch", None)
        if watch is not None:
            watch.attach(self)
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


_READ = 16 * 1024  # bytes asked of the socket at a time: the deadline sees an answer's progress this often


def _counted(chunks: Iterator[bytes], watch: deadline.Watch) -> Iterator[bytes]:
    for chunk in chunks:
        watch.received += len(chunk)
        yield chunk


def _read_body(raw: Any, limit: int, where: str, account: str, watch: deadline.Watch | None = None) -> bytes:
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
    chunks: Iterator[bytes] = raw.stream(_READ, decode_content=False)
    if watch is not None:
        chunks = _counted(chunks, watch)
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


class PoolTransport:
    """Requests' adapter pools, driven directly (the default `Transport` of `HttpSession`).

    `adapter_for(url)` is the session's `get_adapter`: the adapters mounted on it choose the pools.
    """

    def __init__(self, adapter_for: Callable[[str], Any]) -> None:
        self._adapter_for = adapter_for
        self._pools: dict[tuple[Any, ...], tuple[Any, bool]] = {}

    def request_left(self) -> bool:
        return bool(getattr(_wire, "left", False))

    def send(self, request: requests.PreparedRequest, options: SendOptions) -> requests.Response:
        """One attempt, sent on the urllib3 pool requests' adapter chose.

        `requests.Session.request` also merges cookies, hooks and settings, looks for redirects
        and streams the body in 10 KB chunks on every call; with the adapter's own per-call setup
        that is about half of an API call's CPU here, and a sync makes thousands of calls. These
        APIs need none of it: no cookie is kept, and a redirect comes back as the response it is
        (never followed with the token). What is kept from requests: the request itself (prepared by
        the session), the adapter's pools with their TLS and proxy settings (looked up once per
        origin), its exception types, and a `requests.Response` for tweepy and `classify`.
        """
        _wire.left = False
        watch = _wire.watch = deadline.arm(options.deadline) if options.deadline else None
        try:
            return self._send(request, options, watch)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if watch is not None and watch.disarm():
                raise DeadlineExceeded(f"{options.where}: the answer stalled (less than {deadline.MIN_BYTES_PER_SECOND // 1024} KB "
                                       f"a second for {options.deadline:g}s: the platform sends it too slowly)", request=request) from exc
            raise
        finally:
            _wire.watch = None
            if watch is not None:
                watch.disarm()

    def _send(self, request: requests.PreparedRequest, options: SendOptions, watch: deadline.Watch | None) -> requests.Response:
        prepared = request
        pool, full_url = self._pool(prepared, options.verify, options.cert, options.proxies)
        target = requests.utils.urldefragauth(prepared.url) if full_url else prepared.path_url
        timeout = options.timeout
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
            body = _read_body(raw, options.max_body, options.where, options.account, watch)
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
        # Disarmed before the connection can serve another attempt: it is never cut after this.
        if watch is not None and watch.disarm():
            # Cut at the deadline: what arrived (headers ended by the cut, a short body) is not the answer.
            raw.close()
            raw.release_conn()
            raise requests.exceptions.ConnectionError("the connection was cut at the attempt's deadline", request=prepared)
        raw.release_conn()
        response = _Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.reason = raw.reason
        response.url = prepared.url or ""
        response.request = prepared
        response.raw = raw
        response._content = body  # read here (above): a body that breaks off raises inside the retries
        return response

    def _pool(self, prepared: requests.PreparedRequest, verify: Any, cert: Any, proxies: Mapping[str, str]) -> tuple[Any, bool]:
        """The urllib3 pool requests' adapter uses for this origin and settings, and whether it is an
        HTTP proxy (which takes the full URL). Chosen once per origin: the adapter's lookup costs."""
        parts = urlsplit(prepared.url or "")
        key = (parts.scheme, parts.netloc, repr(verify), repr(cert), tuple(sorted(proxies.items())))
        found = self._pools.get(key)
        if found is None or found[0].pool is None:  # never chosen, or closed since (urllib3 1.x closes what it evicts)
            adapter = self._adapter_for(prepared.url or "")
            try:
                pool = adapter.get_connection_with_tls_context(prepared, verify, proxies=dict(proxies), cert=cert)
            except urllib3.exceptions.LocationValueError as exc:
                raise requests.exceptions.InvalidURL(exc, request=prepared) from exc
            adapter.cert_verify(pool, prepared.url or "", verify, cert)
            if not issubclass(pool.ConnectionCls, _WireMark):
                pool.ConnectionCls = _marked(pool.ConnectionCls)
            found = self._pools[key] = (pool, adapter.request_url(prepared, dict(proxies)) != prepared.path_url)
        return found

    def close(self) -> None:
        self._pools.clear()  # the pools themselves belong to the session's adapters, closed with it


Handler = Callable[[requests.PreparedRequest], requests.Response]


class MockTransport:
    """A `Transport` that answers every request with `handler(request)`, like httpx's MockTransport.

    The handler returns a response (`mock_response` builds one) or raises requests' exceptions to play
    a failure. A request counts as having left once the handler is called; to play one that never left,
    raise `requests.ConnectTimeout` or a `requests.ConnectionError` from a `ConnectionRefusedError`.
    Every request is kept in `requests`, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []
        self._local = threading.local()

    def request_left(self) -> bool:
        return bool(getattr(self._local, "left", False))

    def send(self, request: requests.PreparedRequest, options: SendOptions) -> requests.Response:
        self._local.left = True
        self.requests.append(request)
        response = self.handler(request)
        if len(response.content) > options.max_body:
            raise ResponseTooLargeError(
                f"{options.where}: the response is larger than {options.max_body:,} bytes once decoded; not read",
                status=response.status_code, account=options.account,
            )
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def mock_response(status: int = 200, *, json: Any = None, body: bytes | str | None = None,
                  headers: Mapping[str, str] | None = None) -> requests.Response:
    """A response for `MockTransport`'s handler: a JSON value (`json`) or raw `body` bytes."""
    response = _Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers or {})
    if json is not None:
        content = _json.dumps(json).encode()
        response.headers.setdefault("Content-Type", "application/json")
    else:
        content = body.encode() if isinstance(body, str) else (body or b"")
    response._content = content
    response.encoding = requests.utils.get_encoding_from_headers(response.headers) or "utf-8"
    return response
