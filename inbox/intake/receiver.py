"""Webhook intake: verify, store the raw delivery, acknowledge; then ingest it like a polled page.

`receive` answers a POST. A delivery whose signature does not verify is refused (403) and nothing
is stored. One that verifies is committed to `webhook_delivery` before the 200 goes out, so an
acknowledged delivery survives a crash; a body that is not JSON is kept there as quarantined (400).

`process_pending` (the `IntakeWorker` thread of `inbox serve`, and every start of it) parses the
pending deliveries with the connectors' webhook parsers and stores their messages through
`ingest_page` with no cursor: the same unique keys, dedup rules, echo matching and quarantine as
the poll, and the poll's cursor never moves. A delivery is marked done only after its messages are
committed; a crash in between processes it again on restart, which stores nothing twice (the
messages' platform ids are unique keys). A delivery that cannot be read is quarantined and never
holds up the next one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from connectors import meta_webhook, safejson, x_webhook
from connectors.base import AccountBatch, Page, ParsedDelivery
from connectors.enums import Channel
from connectors.graph_parse import MetaContext
from connectors.webhook import DeliveryError
from inbox.errors import ConfigError, ConflictError, describe
from inbox.ingest.page import IngestResult, ingest_page
from inbox.vocab import AccountRef
from inbox.intake import encoding
from inbox.intake.edits import apply_edits
from inbox.intake.meta_threads import META_CHANNELS, MetaThreads, graph_lookup
from inbox.settings import WebhookSettings
from inbox.store.types import utcnow
from inbox.store.tables import webhook_delivery as _d

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inbox.settings import Settings

log = logging.getLogger(__name__)

PENDING, DONE, QUARANTINED = "pending", "done", "quarantined"
SOURCES = ("meta", "x")
MAX_ATTEMPTS = 5  # a delivery whose messages fail to store this often is quarantined (never blocks the rest)
BATCH = 500  # deliveries ingested together (one page per account): a burst costs one transaction, not hundreds
# ...and at most this many bytes of their bodies (at least one delivery): a backlog of full deliveries
# (Meta's hold up to 1,000 events) read and decoded 500 at a time is gigabytes, met again on every restart.
BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Secrets:
    """The webhook keys, resolved from the environment (None: not configured or not set)."""

    meta_app_secret: str | None = field(default=None, repr=False)
    meta_verify_token: str | None = field(default=None, repr=False)
    x_consumer_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    media_type: str = "application/json"

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        return cls(status, orjson.dumps(data))


def enabled_channels(settings: Settings) -> set[Channel]:
    return {a.channel for a in settings.accounts if a.enabled}


def resolve_secrets(settings: Settings, environ: Mapping[str, str] | None = None, *, strict: bool = True) -> Secrets:
    """The webhook keys. With `strict`, a key an enabled account's channel needs and that is not set
    is a ConfigError naming its variable (`inbox serve` exits 3)."""
    from connectors.redact import register_secret

    env = os.environ if environ is None else environ
    wh = settings.webhooks
    if strict:
        problems = wh.missing(enabled_channels(settings), dict(env))
        if problems:
            raise ConfigError(problems[0], problems=tuple(problems),
                              hint="export the variable, or name it in the config's [webhooks] section")

    def get(var: str | None) -> str | None:
        value = (env.get(var) or "").strip() if var else ""
        register_secret(value or None)
        return value or None

    return Secrets(get(wh.meta_app_secret_env), get(wh.meta_verify_token_env), get(wh.x_consumer_secret_env))


# ── receiving ──────────────────────────────────────────────────────────────────────────────


def meta_handshake(secrets: Secrets, params: Mapping[str, str]) -> Response:
    challenge = meta_webhook.handshake(params, secrets.meta_verify_token) if secrets.meta_verify_token else None
    if challenge is None:
        return Response.json(403, {"error": "verification failed"})
    return Response(200, challenge.encode("utf-8"), "text/plain")


def x_crc(secrets: Secrets, params: Mapping[str, str]) -> Response:
    token = params.get("crc_token")
    if not secrets.x_consumer_secret:
        return Response.json(403, {"error": "X webhooks are not configured"})
    if not token:
        return Response.json(400, {"error": "crc_token missing"})
    return Response.json(200, x_webhook.crc_response(secrets.x_consumer_secret, token))


_DEFAULT_LIMIT: int = WebhookSettings.model_fields["max_body_bytes"].default  # `[webhooks] max_body_bytes` unset


def verified(secrets: Secrets, source: str, body: bytes, headers: Mapping[str, str]) -> bool:
    if source == "meta":
        return bool(secrets.meta_app_secret) and meta_webhook.verify(secrets.meta_app_secret or "", body, headers.get("x-hub-signature-256"))
    return bool(secrets.x_consumer_secret) and x_webhook.verify(secrets.x_consumer_secret or "", body, headers.get("x-twitter-webhooks-signature"))


def receive(engine: Engine, secrets: Secrets, source: str, body: bytes, headers: Mapping[str, str],
            limit: int = _DEFAULT_LIMIT) -> tuple[Response, int | None]:
    """Answer one POST: (response, id of the stored delivery or None). Headers with lower-case names.

    `body` is the bytes as sent: a gzip / deflate body is decompressed (to at most `limit` bytes), and
    the signature may be over the bytes sent or the decompressed ones (the platforms do not document
    which), never neither. A leading BOM is stripped before the JSON is read and stored.
    """
    problem = None
    try:
        plain = encoding.decode(body, headers.get("content-encoding"), limit)
    except encoding.Unsupported as exc:
        return Response.json(415, {"error": f"content encoding {str(exc)!r} is not supported"}), None
    except encoding.TooLarge:
        return Response.json(413, {"error": "decompressed body over the body limit"}), None
    except encoding.Corrupt as exc:
        plain, problem = body, f"compressed body does not decompress: {exc}"
    if not (verified(secrets, source, body, headers) or (plain is not body and verified(secrets, source, plain, headers))):
        return Response.json(403, {"error": "invalid signature"}), None
    plain = encoding.strip_bom(plain)
    content_type = (headers.get("content-type") or "")[:200]
    if problem is None and content_type.split(";", 1)[0].strip().lower() != "application/json":
        problem = f"content type {content_type[:60] or '(none)'!r} is not application/json"
    elif problem is None:
        try:
            safejson.loads(plain)  # the poll's decoder: NULs, lone surrogates and huge numbers repaired, not refused
        except ValueError as exc:
            problem = f"invalid JSON: {str(exc)[:200]}"
    delivery_id = store(engine, source, plain, content_type or None, None if problem is None else problem)
    if problem is not None:
        return Response.json(400, {"error": problem}), delivery_id
    return Response.json(200, {"ok": True}), delivery_id


def store(engine: Engine, source: str, body: bytes, content_type: str | None, quarantine_reason: str | None = None) -> int:
    """Commit one delivery (pending, or quarantined with the reason)."""
    now = utcnow()
    values = {
        "source": source, "received_at": now, "content_type": content_type, "body": body,
        "state": PENDING if quarantine_reason is None else QUARANTINED, "attempts": 0,
        "error": quarantine_reason, "processed_at": None if quarantine_reason is None else now,
    }
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(_d).values(**values).returning(_d.c.id)).scalar_one())


# ── processing ─────────────────────────────────────────────────────────────────────────────


@dataclass
class Processor:
    """Parses pending deliveries and ingests their messages (one page per account per batch)."""

    engine: Engine
    settings: Settings
    refs: Mapping[tuple[str, str], AccountRef]  # (channel, platform id) -> account
    threads: Callable[[MetaContext, str], str]

    @classmethod
    def build(cls, engine: Engine, settings: Settings, *, lookup: Callable[[MetaContext, str], str | None] | None = None,
              graph: bool = True) -> Processor:
        from inbox.accounts import ensure_accounts

        named = ensure_accounts(engine, [a for a in settings.accounts if a.enabled])
        refs = {(r.channel, r.platform_id): r for r in named.values()}
        if lookup is None and graph:
            lookup = graph_lookup(settings)
        return cls(engine, settings, refs, MetaThreads(engine, refs, lookup))

    @property
    def skew(self) -> timedelta:
        return timedelta(seconds=float(self.settings.sync.clock_skew_seconds))

    def meta_accounts(self) -> dict[tuple[Channel, str], MetaContext]:
        out = {}
        for a in self.settings.accounts:
            if a.enabled and a.channel in META_CHANNELS:
                out[(a.channel, a.platform_id)] = MetaContext(a.channel, a.platform_id, frozenset(i for i in (a.platform_id, a.page_id) if i))
        return out

    def parse(self, source: str, body: bytes | Any, received: datetime) -> ParsedDelivery:
        data = safejson.loads(body) if isinstance(body, bytes) else body
        if source == "meta":
            return meta_webhook.parse(data, self.meta_accounts(), self.threads, received=received, skew=self.skew)
        xs = frozenset(a.platform_id for a in self.settings.accounts if a.enabled and a.channel is Channel.X)
        return x_webhook.parse(data, xs, received=received, skew=self.skew)

    def pending(self, limit: int = BATCH) -> list[Any]:
        """The oldest pending deliveries: `limit` of them, or fewer whose bodies fill `BATCH_BYTES`."""
        with self.engine.connect() as conn:
            sizes = conn.execute(
                sa.select(_d.c.id, sa.func.length(_d.c.body).label("size")).where(_d.c.state == PENDING).order_by(_d.c.id).limit(limit)
            ).all()
            ids, total = [], 0
            for row in sizes:
                total += row.size or 0
                if ids and total > BATCH_BYTES:
                    break
                ids.append(row.id)
            if not ids:
                return []
            return conn.execute(
                sa.select(_d.c.id, _d.c.source, _d.c.body, _d.c.received_at, _d.c.attempts)
                .where(_d.c.id.in_(ids), _d.c.state == PENDING).order_by(_d.c.id)
            ).all()

    def process_pending(self, limit: int = BATCH) -> IngestResult:
        """One batch of pending deliveries (oldest first); what was stored."""
        rows = self.pending(limit)
        total = IngestResult()
        if not rows:
            return total
        parsed: list[tuple[Any, ParsedDelivery]] = []
        bodies: dict[int, Any] = {}
        for row in rows:
            try:
                bodies[row.id] = safejson.loads(bytes(row.body))
            except ValueError:
                pass  # quarantined below
        if isinstance(self.threads, MetaThreads):
            accounts = self.meta_accounts()
            self.threads.prefetch({pair for row in rows if row.source == "meta" and row.id in bodies
                                   for pair in meta_webhook.customers(bodies[row.id], accounts)})
        for row in rows:
            try:
                result = self.parse(row.source, bodies[row.id] if row.id in bodies else bytes(row.body), row.received_at)
            except (ValueError, DeliveryError) as exc:  # ParseError and DeliveryError are ValueErrors too
                self._finish([row.id], QUARANTINED, f"unreadable delivery: {str(exc)[:300]}")
                continue
            except Exception as exc:  # a parser bug must not hold up every later delivery
                log.warning("webhook delivery %s could not be parsed: %s", row.id, describe(exc))
                self._finish([row.id], QUARANTINED, f"parse failed: {describe(exc)[:300]}")
                continue
            for ig in result.ignored:
                log.info("webhook delivery %s: %s ignored: %s", row.id, ig.what, ig.reason)
            parsed.append((row, result))
        try:
            total = self._ingest([p for _row, p in parsed])
        except Exception as exc:
            if store_away(exc):
                raise  # the writer lock is busy or the store is away: the whole batch again later, no attempt counted
            log.warning("webhook: a batch of %d deliveries failed to store (%s); storing them one by one", len(parsed), describe(exc))
            for row, p in parsed:
                try:
                    total = total + self._ingest([p])
                except Exception as one:
                    state = QUARANTINED if row.attempts + 1 >= MAX_ATTEMPTS else PENDING
                    self._finish([row.id], state, f"store failed: {describe(one)[:300]}", attempt=True)
                    continue
                self._finish([row.id], DONE, None)
            return total
        self._finish([row.id for row, _p in parsed], DONE, None)
        return total

    def _ingest(self, deliveries: Sequence[ParsedDelivery]) -> IngestResult:
        merged: dict[tuple[str, str], list[AccountBatch]] = {}
        for d in deliveries:
            for b in d.batches:
                merged.setdefault((b.channel.value, b.account_id), []).append(b)
        total = IngestResult()
        for key, batches in merged.items():
            ref = self.refs.get(key)
            if ref is None:
                continue  # an account disabled since the parse: the poll covers it
            page = Page(
                messages=tuple(m for b in batches for m in b.messages),
                cursor=None,  # a webhook never moves the poll's cursor
                quarantined=tuple(q for b in batches for q in b.quarantined),
            )
            got = ingest_page(self.engine, ref, page, self.settings, via="webhook")
            total = total + got
            edits = [e for b in batches for e in b.edits]
            if edits or got.new_messages:  # new messages: an edit kept for one of them applies now
                apply_edits(self.engine, ref, edits, self.settings.sync.writer_lock_timeout_seconds)
        return total

    def _finish(self, ids: list[int], state: str, error: str | None, *, attempt: bool = False) -> None:
        if not ids:
            return
        values: dict[str, Any] = {"state": state, "error": error}
        if state != PENDING:
            values["processed_at"] = utcnow()
        if attempt:
            values["attempts"] = _d.c.attempts + 1
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(sa.update(_d).where(_d.c.id.in_(ids[start:start + 500])).values(**values))


def store_away(exc: BaseException) -> bool:
    """The writer lock is busy or the store is away: not the deliveries' fault. A limit of the store
    (PostgreSQL's class 54, "program limit exceeded", is an OperationalError as a lost connection
    is; SQLite's too many variables) refuses these deliveries, and would refuse them for ever."""
    if isinstance(exc, (ConflictError, sa.exc.InterfaceError)):
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    code = str(getattr(exc.orig, "sqlstate", None) or "")
    return not code.startswith("54") and "too many SQL variables" not in str(exc.orig)


class IntakeWorker:
    """The thread that drains pending deliveries, woken by each new one (and every `idle` seconds)."""

    def __init__(self, processor: Processor, *, idle: float = 5.0) -> None:
        self.processor = processor
        self.idle = idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in hand, then stop (what is left stays pending for the next start)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.processor.pending(1):
                    self.processor.process_pending()
            except Exception as exc:  # the writer lock is busy or the store is away: the batch again shortly
                log.warning("webhook intake: %s; trying again", describe(exc))
                self._stop.wait(1.0)
                continue
            self._wake.wait(self.idle)

