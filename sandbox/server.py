"""The HTTP layer: a threading loopback server whose handler hands every request to the sandbox app.

The app answers with an `Outcome`: bytes to write, optionally after a delay (timeouts), or an order to
drop the connection without a response.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the socket without answering
    cut: bool = False  # announce the full Content-Length, send half the body, close the socket
    delay: float = 0.0  # seconds to wait before answering (stopped early when the server stops)
    trickle: float = 0.0  # > 0: the whole answer (status line, headers, body) leaves `step` bytes every this many seconds
    step: int = 1


class App(Protocol):
    stopping: threading.Event

    def now(self) -> float: ...

    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Outcome: ...


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # a sleeping "timeout" handler must never keep the process alive
    allow_reuse_address = True
    app: App

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and go away are expected here; keep stderr quiet.
        log.debug("connection from %s ended abnormally", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    server: SandboxServer
    server_version = "sandbox"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle plus delayed ACKs add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The `Date` header follows the sandbox clock (`advance`), as a platform's follows its own.
        return super().date_time_string(self.server.app.now() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature from the base class
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        outcome = self.server.app.dispatch(self.command, parts.path, query, headers, body)
        if outcome.delay > 0:
            self.server.app.stopping.wait(outcome.delay)
        if outcome.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        real_wfile = self.wfile
        if outcome.trickle > 0:
            self.wfile = io.BytesIO()  # the answer is composed here, then sent a byte at a time (below)
        try:
            if any(name.lower() == "date" for name in outcome.headers):
                # A `Date` of the answer's own (a header fault: a platform clock that is off) is the
                # only one sent: two would reach the client joined into one unreadable value.
                self.log_request(outcome.status)
                self.send_response_only(outcome.status)
                self.send_header("Server", self.version_string())
            else:
                self.send_response(outcome.status)
            for name, value in outcome.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(outcome.body)))
            self.end_headers()
            if outcome.cut:
                self.wfile.write(outcome.body[: len(outcome.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(outcome.body)
            if outcome.trickle > 0:
                self._trickle(real_wfile, self.wfile.getvalue(), outcome.trickle, max(1, outcome.step))
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired)
        finally:
            self.wfile = real_wfile

    def _trickle(self, out: Any, data: bytes, interval: float, step: int) -> None:
        """A slow platform: each piece arrives well within any read timeout, the answer much later."""
        for i in range(0, len(data), step):
            out.write(data[i : i + step])
            out.flush()
            if self.server.app.stopping.wait(interval):
                self.close_connection = True
                return

    do_GET = do_POST = do_DELETE = do_PUT = _serve


def make_server(app: App, host: str, port: int) -> SandboxServer:
    server = SandboxServer((host, port), Handler)
    server.app = app
    return server
