"""`inbox serve`: the webhook endpoints as an ASGI app (Starlette) under uvicorn.

One process: uvicorn's event loop answers requests, the store work runs in its thread pool, and an
`IntakeWorker` thread ingests what was stored. SIGTERM / SIGINT stop accepting, finish the requests
in flight, stop the worker after its batch, and exit 0 (uvicorn's own shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.intake import receiver

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from starlette.applications import Starlette
    from starlette.requests import Request

    from inbox.settings import Settings

log = logging.getLogger(__name__)


# Meta and X send a delivery in one go: a body still arriving after this many seconds is a client
# holding a connection open (a byte at a time), answered 408 instead of waited for.
BODY_SECONDS = 10.0


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past `limit` bytes without reading the rest into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(
    engine: Engine,
    settings: Settings,
    secrets: receiver.Secrets,
    *,
    worker: receiver.IntakeWorker | None = None,
) -> Starlette:
    """The ASGI app. `worker` is started and stopped with the app (its lifespan)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    limit = settings.webhooks.max_body_bytes

    def answer(r: receiver.Response) -> Response:
        return Response(r.body, status_code=r.status, media_type=r.media_type)

    async def healthz(_request: Request) -> Response:
        def ping() -> bool:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return True
            except Exception:
                return False

        ok = await run_in_threadpool(ping)
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    async def meta_get(request: Request) -> Response:
        return answer(receiver.meta_handshake(secrets, request.query_params))

    async def x_get(request: Request) -> Response:
        return answer(receiver.x_crc(secrets, request.query_params))

    def poster(source: str) -> Callable[[Request], Any]:
        async def post(request: Request) -> Response:
            try:
                body = await asyncio.wait_for(_read_body(request, limit), BODY_SECONDS)
            except _TooLarge:
                return JSONResponse({"error": f"body over {limit} bytes"}, status_code=413)
            except asyncio.TimeoutError:
                return JSONResponse({"error": f"body not received within {BODY_SECONDS:g} s"}, status_code=408,
                                    headers={"Connection": "close"})
            headers = {k.lower(): v for k, v in request.headers.items()}
            response, stored = await run_in_threadpool(receiver.receive, engine, secrets, source, body, headers, limit)
            if stored is not None and response.status == 200 and worker is not None:
                worker.notify()
            return answer(response)

        return post

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/webhooks/meta", meta_get, methods=["GET"]),
        Route("/webhooks/meta", poster("meta"), methods=["POST"]),
        Route("/webhooks/x", x_get, methods=["GET"]),
        Route("/webhooks/x", poster("x"), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the caller knows the address before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def server(app: Starlette, *, log_level: str = "warning") -> Any:
    """A uvicorn server for `app`; `.run(sockets=[sock])` serves on a bound socket until SIGTERM / SIGINT."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level.lower(), lifespan="on", access_log=False, timeout_graceful_shutdown=30)
    return uvicorn.Server(config)


def serve(engine: Engine, settings: Settings, secrets: receiver.Secrets, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve until stopped; pending deliveries of an earlier run are processed first thing."""
    processor = receiver.Processor.build(engine, settings)
    worker = receiver.IntakeWorker(processor)
    app = make_app(engine, settings, secrets, worker=worker)
    srv = server(app, log_level=log_level)
    # uvicorn finishes the requests in flight on SIGTERM / SIGINT, then raises the signal again for
    # the handler it found: a quiet one here, so a requested stop exits 0 (not 143, nor 130).
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        srv.run(sockets=[sock])
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)


class InThread:
    """`inbox serve` in a thread of this process (the demo, the benchmark): `with InThread(...) as url:`."""

    def __init__(self, engine: Engine, settings: Settings, secrets: receiver.Secrets, *, host: str = "127.0.0.1", port: int = 0,
                 graph: bool = True) -> None:
        self.engine, self.settings, self.secrets = engine, settings, secrets
        self.host, self.port, self.graph = host, port, graph
        self._srv: Any = None
        self._thread: Any = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> str:
        import threading
        import time

        processor = receiver.Processor.build(self.engine, self.settings, graph=self.graph)
        app = make_app(self.engine, self.settings, self.secrets, worker=receiver.IntakeWorker(processor))
        self._sock = bind(self.host, self.port)
        self._srv = server(app)
        self._thread = threading.Thread(target=self._srv.run, kwargs={"sockets": [self._sock]}, name="inbox-serve", daemon=True)
        self._thread.start()
        while not self._srv.started and self._thread.is_alive():
            time.sleep(0.005)
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        if self._srv is not None:
            self._srv.should_exit = True
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
