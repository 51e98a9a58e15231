"""One sync pass: for each account, fetch everything newer than its cursor and ingest page by page.

The same `sync_account` runs for `inbox sync` and for every scheduler job. Per account:
take the lease, read the cursor, stream pages from the connector, store each page (and the cursor
it carries) in one transaction, record health. Errors are classified by the connectors:

- retry later (429, 5xx, timeouts, malformed responses): keep what was stored, note the error,
  pause the account until the platform's reset when it said one;
- needs re-auth (expired token): stop the account until it is reconnected (`inbox accounts reset`,
  or the config file changes);
- anything else: recorded on the account. One account failing never stops the others.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import Page, RateInfo
from connectors.errors import ConnectorError, NeedsReauthError, RateLimitedError, RetryLaterError
from connectors.redact import redact
from inbox import accounts as accounts_mod
from inbox import leases
from inbox.errors import ConfigError, ConflictError, InboxError, describe
from inbox.ingest.page import AccountRef, IngestResult, MessageDecision, ingest_page
from inbox.store.models import Account, Message, SyncState
from inbox.store.types import utcnow
from inbox.safe_text import one_line
from inbox.timefmt import json_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import AccountSettings, Settings

log = logging.getLogger(__name__)

# Statuses of an account's pass.
OK = "ok"
DRY_RUN = "dry-run"
STOPPED = "stopped"  # a stop was requested; the pages so far are stored
SKIPPED = "skipped"  # paused until the platform's reset, or disabled
RETRY_LATER = "retry-later"
NEEDS_REAUTH = "needs-reauth"
CONFLICT = "conflict"  # another worker holds the account
FAILED = "failed"
CONFIG_ERROR = "config-error"  # the account's config or environment is wrong (e.g. its token variable is unset)
ERROR_STATUSES = (RETRY_LATER, NEEDS_REAUTH, CONFLICT, FAILED, CONFIG_ERROR)
MAX_DECISIONS = 500  # kept per account for a dry run's report; counts are always complete
DEFAULT_RETRY_SECONDS = 60
X_PAGE_SIZE = 100
BATCH_MESSAGES = 1000  # pages already fetched are stored together up to this many messages
FETCH_NICENESS = 19


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Reported after every stored page (and once at the start and end of an account)."""

    account: str
    pages: int
    counts: IngestResult
    done: bool = False
    status: str | None = None


@dataclass(frozen=True, slots=True)
class AccountSyncResult:
    account: str
    channel: str
    status: str
    counts: IngestResult = field(default_factory=IngestResult)
    pages: int = 0
    complete: bool = False  # the pass reached the connector's final page
    error: str | None = None
    retry_at: datetime | None = None
    rate: RateInfo | None = None
    started_at: datetime | None = None
    seconds: float = 0.0
    reconciled: int = 0
    decisions: tuple[MessageDecision, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in ERROR_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "channel": self.channel,
            "status": self.status,
            "complete": self.complete,
            "pages": self.pages,
            **self.counts.counts(),
            "errors": 1 if self.failed else 0,
            "error": self.error,
            "retry_at": json_time(self.retry_at),
            "rate": None
            if self.rate is None
            else {
                "limit": self.rate.limit,
                "remaining": self.rate.remaining,
                "reset_at": json_time(self.rate.reset_at),
                "usage_pct": self.rate.usage_pct,
            },
            "reconciled_replies": self.reconciled,
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[SyncProgress], None]


class KnownIds:
    """`KnownIds` for a connector: which of these platform ids are stored for the account.

    Meta connectors ask once per changed thread, so this keeps one connection for the pass and
    ends its read transaction after every question (a SQLite reader must not pin the WAL). On
    SQLite the question goes straight to the driver in autocommit mode (each SELECT is its own
    read transaction, ended when its rows are read).

    Ids of pages fetched but still waiting to be stored (`pending`) count as known: the answer
    is the one the connector would get if every page before it were already stored.
    """

    def __init__(self, engine: Engine, ref: AccountRef) -> None:
        m = Message.__table__
        self.ref = ref
        self.engine = engine
        self.conn: Any = None
        self.raw: Any = None
        self.sqlite = engine.dialect.name == "sqlite"
        self.query = sa.select(m.c.external_id).where(
            m.c.channel == ref.channel, m.c.account_id == ref.id, m.c.external_id.in_(sa.bindparam("ids", expanding=True))
        )
        self._pending: dict[str, int] = {}  # id -> number of queued pages holding it
        self._lock = threading.Lock()

    def add_pending(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self._pending[i] = self._pending.get(i, 0) + 1

    def drop_pending(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                left = self._pending.get(i, 0) - 1
                if left > 0:
                    self._pending[i] = left
                else:
                    self._pending.pop(i, None)

    def __call__(self, external_ids: Sequence[str], /) -> set[str]:
        ids = list(dict.fromkeys(external_ids))
        if not ids:
            return set()
        # Pending ids first: a page is dropped from `pending` only after its commit, so an id
        # missed here is in the store by the time the query below reads it.
        with self._lock:
            out = {i for i in ids if i in self._pending}
        if self.sqlite:
            if self.raw is None:
                self.raw = self.engine.raw_connection()
            driver = self.raw.driver_connection
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                sql = _KNOWN_SQL + ", ".join("?" * len(chunk)) + ")"
                out.update(r[0] for r in driver.execute(sql, (self.ref.channel, self.ref.id, *chunk)).fetchall())
            return out
        if self.conn is None:
            self.conn = self.engine.connect()
        try:
            for i in range(0, len(ids), 500):
                out.update(self.conn.execute(self.query, {"ids": ids[i : i + 500]}).scalars())
        finally:
            self.conn.rollback()
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.raw is not None:
            self.raw.close()
            self.raw = None


# Placeholders only; every value is bound. The store's isolation_level=None (inbox/store/engine.py) keeps
# the driver in autocommit, so no read transaction outlives the fetch.
_KNOWN_SQL = "SELECT external_id FROM message WHERE channel = ? AND account_id = ? AND external_id IN ("


class _Prefetch:
    """Fetch a connector's pages in a thread of their own, up to `depth` pages ahead of the consumer (`batches`).

    The network (and parsing) of the next pages overlaps the storing of the current one; the
    bounded queue keeps memory flat. Pages come out in order and an error of the connector comes
    out where it happened, after the pages before it. Nothing here stores anything: each page
    and its cursor are still stored together, in order, by the consumer.
    """

    _DONE = object()

    def __init__(
        self, pages: Iterator[Page], known: KnownIds | None, *, stop_event: threading.Event | None = None, depth: int = 4
    ) -> None:
        self._pages = pages
        self._stop = stop_event
        self._known = known
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{threading.current_thread().name}-fetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        _lower_priority()
        try:
            for page in self._pages:
                if self._stop is not None and self._stop.is_set() and not page.final:
                    # The consumer stops after the page it is storing (it sees the same event),
                    # so it takes at most this one: fetching more would spend platform calls
                    # (X: 15 per 15 minutes) on pages never stored.
                    self._put(page)
                    return
                if self._known is not None:
                    self._known.add_pending([m.external_id for m in page.messages])
                if not self._put(page):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Raised(exc))
            return
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()
        self._put(self._DONE)

    def batches(self, max_messages: int) -> Iterator[list[Page]]:
        """The pages in order, each time the next one and those already waiting behind it.

        Stored together (`merge_pages`), they share one transaction and one turn at the store's
        write lock: while the lock is busy, pages queue up here and the next write takes them
        all. A batch stops after `max_messages` or at a page that ends the pass.
        """
        held: Any = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is self._DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            batch = [item]
            count = len(item.messages)
            while count < max_messages and not batch[-1].final:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is self._DONE or isinstance(nxt, _Raised):
                    held = nxt  # after this batch is stored, as it would be page by page
                    break
                batch.append(nxt)
                count += len(nxt.messages)
            yield batch

    def stored(self, page: Page) -> None:
        """The page is committed: its ids are in the store now."""
        if self._known is not None:
            self._known.drop_pending([m.external_id for m in page.messages])

    def close(self) -> None:
        """Stop fetching (pages not consumed are dropped: not stored, their cursor not written)."""
        self._cancel.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


@dataclass(frozen=True, slots=True)
class _Raised:
    exc: BaseException


def _lower_priority() -> None:
    """Run the fetching thread at a lower CPU priority than the thread storing pages (Linux).

    With several accounts in worker processes on few cores, the page writer holds the store's
    write lock, which every other account waits for: it should not lose its core to fetching
    and parsing, which can wait (the queue ahead of the writer is short anyway). The fetching
    thread mostly waits on the network, so on an idle machine this changes nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FETCH_NICENESS)
    except (AttributeError, OSError):  # no per-thread priorities here; nothing lost
        pass


def merge_pages(pages: Sequence[Page]) -> Page:
    """Consecutive pages of one pass as one: what storing them one by one, in order, would store.

    The cursor is the last one any of them carries (each page's cursor is written after its
    messages), and the pass ends where the last page says.
    """
    if len(pages) == 1:
        return pages[0]
    return Page(
        messages=tuple(m for p in pages for m in p.messages),
        cursor=next((p.cursor for p in reversed(pages) if p.cursor is not None), None),
        quarantined=tuple(q for p in pages for q in p.quarantined),
        gaps=tuple(g for p in pages for g in p.gaps),
        rate=next((p.rate for p in reversed(pages) if p.rate is not None), None),
        final=pages[-1].final,
    )


def make_known(engine: Engine, ref: AccountRef) -> KnownIds:
    return KnownIds(engine, ref)


ConnectorFactory = Callable[["AccountSettings"], "Connector"]


def make_connector(settings: Settings, account_settings: AccountSettings, **spec_overrides: Any) -> Connector:
    """The account's connector, with the sync settings that concern it (high-water-mark overlap)."""
    from dataclasses import replace

    from connectors import connect

    spec = settings.spec_for(account_settings)
    # X counts requests, not events: 100 events per lookup (the API's maximum) makes the
    # 15-requests-per-15-minutes budget go four times as far as the default 25.
    overrides: dict[str, Any] = {"overlap_seconds": float(settings.sync.overlap_seconds)}
    if spec.channel.value == "x":
        overrides["page_size"] = X_PAGE_SIZE
    overrides.update(spec_overrides)
    return connect(replace(spec, **overrides))


def read_cursor(engine: Engine, account_id: int) -> dict[str, Any] | None:
    st = SyncState.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(st.c.cursor).where(st.c.account_id == account_id)).scalar()


def _account_row(engine: Engine, account_id: int) -> Any:
    a = Account.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(a).where(a.c.id == account_id)).one()


def sync_account(
    engine: Engine,
    settings: Settings,
    account_settings: AccountSettings,
    *,
    connector: Connector | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    owner: str | None = None,
    ref: AccountRef | None = None,
    connector_factory: ConnectorFactory | None = None,
) -> AccountSyncResult:
    """One pass over one account. Never raises for platform or lease problems: see `status`."""
    name = account_settings.name
    channel = account_settings.channel.value
    started = utcnow()
    clock = time.monotonic()
    ref = ref or accounts_mod.ensure_account(engine, account_settings)

    def result(status: str, **kw: Any) -> AccountSyncResult:
        if kw.get("error"):
            kw["error"] = redact(kw["error"])  # shown by `inbox sync` and its --json, not only logged
        res = AccountSyncResult(name, channel, status, started_at=started, seconds=time.monotonic() - clock, **kw)
        if progress is not None:
            progress(SyncProgress(name, res.pages, res.counts, done=True, status=status))
        _log_result(res)
        return res

    row = _account_row(engine, ref.id)
    if row.needs_reauth and not accounts_mod.config_changed_since(settings, row.last_error_at):
        return result(NEEDS_REAUTH, error=f"needs re-auth since {row.last_error_at:%Y-%m-%d %H:%M} UTC ({row.last_error}); "
                      f"reconnect, then `inbox accounts reset {name}`")
    if row.paused_until is not None and row.paused_until > started:
        return result(SKIPPED, error=f"paused until {row.paused_until:%H:%M:%S} UTC (rate limit)", retry_at=row.paused_until)

    lease = None
    if not dry_run:
        try:
            lease = leases.acquire(engine, ref.id, name, seconds=settings.sync.lease_seconds, owner=owner)
        except ConflictError as exc:
            return result(CONFLICT, error=exc.message)
        accounts_mod.record_start(engine, ref.id, started)

    own_connector = connector is None
    known: KnownIds | None = None
    prefetch: _Prefetch | None = None
    counts = IngestResult()
    decisions: list[MessageDecision] = []
    pages = 0
    rate: RateInfo | None = None
    complete = False
    try:
        if connector is None:
            connector = connector_factory(account_settings) if connector_factory else make_connector(settings, account_settings)
        if progress is not None:
            progress(SyncProgress(name, 0, counts))
        cursor = read_cursor(engine, ref.id)
        known = make_known(engine, ref)
        # A dry run stores nothing, so nothing is pending: the connector sees the store as it is.
        prefetch = _Prefetch(connector.fetch(cursor, known), None if dry_run else known, stop_event=stop_event)
        for batch in prefetch.batches(BATCH_MESSAGES):
            page = merge_pages(batch)
            got = ingest_page(
                engine,
                ref,
                page,
                settings,
                dry_run=dry_run,
                lease_owner=lease.owner if lease else None,
                lease_seconds=settings.sync.lease_seconds,
            )
            prefetch.stored(page)
            pages += len(batch)
            counts = counts + IngestResult(**got.counts())
            if dry_run and len(decisions) < MAX_DECISIONS:
                decisions.extend(got.decisions[: MAX_DECISIONS - len(decisions)])
            rate = page.rate or rate
            complete = page.final
            if progress is not None:
                progress(SyncProgress(name, pages, counts))
            if stop_event is not None and stop_event.is_set() and not page.final:
                break
        else:
            complete = True
        status = OK if complete else STOPPED
        if dry_run:
            status = DRY_RUN
        reconciled = 0
        if not dry_run and complete:
            accounts_mod.record_success(engine, ref.id, at=started, rate=rate)
            reconciled = _reconcile(engine, ref.id, started, settings)
        elif not dry_run:
            accounts_mod.record_rate(engine, ref.id, rate)
        return result(status, counts=counts, pages=pages, complete=complete, rate=rate, reconciled=reconciled, decisions=tuple(decisions))
    except NeedsReauthError as exc:
        if not dry_run:
            accounts_mod.record_error(engine, ref.id, str(exc), at=utcnow(), needs_reauth=True, rate=rate)
        return result(NEEDS_REAUTH, counts=counts, pages=pages, rate=rate, error=str(exc), decisions=tuple(decisions))
    except RetryLaterError as exc:
        rate = getattr(exc, "rate", None) or rate  # a rate limit says how much is left
        retry_at = exc.retry_at
        if retry_at is None and isinstance(exc, RateLimitedError):
            retry_at = utcnow() + timedelta(seconds=DEFAULT_RETRY_SECONDS)
        if not dry_run:
            accounts_mod.record_error(engine, ref.id, str(exc), at=utcnow(), paused_until=retry_at, rate=rate)
        return result(RETRY_LATER, counts=counts, pages=pages, rate=rate, error=str(exc), retry_at=retry_at, decisions=tuple(decisions))
    except ConflictError as exc:  # the lease was taken over (we stalled past its expiry)
        return result(CONFLICT, counts=counts, pages=pages, rate=rate, error=exc.message)
    except ConfigError as exc:  # nothing the platform did: trying again later will not help
        if not dry_run:
            accounts_mod.record_error(engine, ref.id, exc.message, at=utcnow(), rate=rate)
        return result(CONFIG_ERROR, counts=counts, pages=pages, rate=rate, error=exc.message, decisions=tuple(decisions))
    except (ConnectorError, InboxError) as exc:
        if not dry_run:
            accounts_mod.record_error(engine, ref.id, str(exc), at=utcnow(), rate=rate)
        return result(FAILED, counts=counts, pages=pages, rate=rate, error=str(exc), decisions=tuple(decisions))
    except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the others
        # The result line says what failed, in one line; the traceback (which quotes the driver's
        # DETAIL lines, i.e. row values) only with --debug.
        log.debug("account %s: sync failed", name, exc_info=True)
        message = redact(describe(exc))
        if not dry_run:
            try:
                accounts_mod.record_error(engine, ref.id, message, at=utcnow(), rate=rate)
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                log.exception("account %s: could not record the error", name)
        return result(FAILED, counts=counts, pages=pages, rate=rate, error=message, decisions=tuple(decisions))
    finally:
        if prefetch is not None:
            prefetch.close()  # before the connector and the known-id connection it uses
        if known is not None:
            known.close()
        if own_connector and connector is not None:
            try:
                connector.close()
            except Exception:  # noqa: BLE001
                log.debug("closing connector of %s failed", name, exc_info=True)
        if lease is not None:
            try:
                leases.release(engine, lease)
            except Exception:  # noqa: BLE001 - it expires anyway
                log.warning("account %s: could not release the sync lease", name, exc_info=True)


def _reconcile(engine: Engine, account_id: int, started: datetime, settings: Settings) -> int:
    """Settle replies whose delivery was unknown against the echoes this pass stored."""
    from inbox.replies import ledger, reconcile

    try:
        return reconcile.reconcile_unknown(engine, account_id, synced_after=started, timing=ledger.Timing.of(settings))
    except Exception:  # noqa: BLE001 - the outbox must not break the sync
        log.exception("reconciling replies of account %s failed", account_id)
        return 0


def _log_result(res: AccountSyncResult) -> None:
    c = res.counts
    line = (
        f"sync {res.account}: {res.status}, {res.pages} page(s), {c.new_messages} new message(s), "
        f"{c.new_tickets} new ticket(s), {c.attached} attached, {c.reopened} reopened, {c.flagged} flagged, "
        f"{c.gaps} gap(s), {c.quarantined} quarantined in {res.seconds:.1f}s"
    )
    if res.error:
        line += f" — {one_line(res.error, 500)}"  # platform text: no escapes or extra lines in the log
    if res.retry_at:
        line += f" (retry at {res.retry_at:%H:%M:%S} UTC)"
    (log.warning if res.failed else log.info)(line)


def selected_accounts(settings: Settings, names: Sequence[str] | None = None) -> list[AccountSettings]:
    """The accounts to sync: the named ones (even if disabled), else every enabled one."""
    if names:
        return [settings.account(n) for n in names]
    return [a for a in settings.accounts if a.enabled]


def sync_all(
    engine: Engine,
    settings: Settings,
    *,
    accounts: Sequence[str] | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    connectors: dict[str, Connector] | None = None,
    connector_factory: ConnectorFactory | None = None,
) -> list[AccountSyncResult]:
    """One pass over the accounts, polled concurrently (`sync.concurrency`); results in config order.

    With `sync.processes` (the default, Linux) each account runs in a worker process of its own
    (`inbox.runtime.procs`), so the pass uses every core; otherwise, or with `connectors` given, in threads.
    """
    chosen = selected_accounts(settings, accounts)
    if not chosen:
        return []
    refs = accounts_mod.ensure_accounts(engine, chosen)
    workers = max(1, min(settings.sync.concurrency, len(chosen)))

    def one(acc: AccountSettings) -> AccountSyncResult:
        return sync_account(
            engine,
            settings,
            acc,
            connector=(connectors or {}).get(acc.name),
            dry_run=dry_run,
            progress=progress,
            stop_event=stop_event,
            ref=refs[acc.name],
            connector_factory=connector_factory,
        )

    if workers == 1:
        return [one(acc) for acc in chosen]
    from inbox.runtime import procs as worker_processes

    if settings.sync.processes and not connectors and worker_processes.available():
        jobs = [_process_job(engine, settings, acc, refs[acc.name], dry_run=dry_run, progress=progress is not None,
                             connector_factory=connector_factory) for acc in chosen]
        return worker_processes.run_jobs(jobs, workers=workers, progress=progress, stop_event=stop_event)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
        return list(pool.map(one, chosen))


def _process_job(
    engine: Engine,
    settings: Settings,
    acc: AccountSettings,
    ref: AccountRef,
    *,
    dry_run: bool,
    progress: bool,
    connector_factory: ConnectorFactory | None,
) -> Any:
    """`sync_account` for one account as a job of `inbox.runtime.procs` (a forked process of its own)."""
    from inbox.runtime.procs import Job

    def run(report: Callable[[Any], None], stop: Any) -> AccountSyncResult:
        engine.dispose(close=False)  # the parent's pooled connections are not ours to use or close
        try:
            return sync_account(engine, settings, acc, dry_run=dry_run, progress=report if progress else None, stop_event=stop,
                                ref=ref, connector_factory=connector_factory)
        finally:
            engine.dispose()

    def failed(message: str) -> AccountSyncResult:
        # The child died without a result (killed, out of memory): say so where `inbox accounts` looks.
        if not dry_run:
            try:
                accounts_mod.record_error(engine, ref.id, message, at=utcnow())
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                log.exception("account %s: could not record the error", acc.name)
        res = AccountSyncResult(acc.name, acc.channel.value, FAILED, error=message)
        _log_result(res)
        return res

    return Job(acc.name, run, failed)


def exit_code(results: Sequence[AccountSyncResult]) -> int:
    """0 when every account synced; 3 when one's config is wrong; 4 when one needs re-auth; 7 when one
    failed; 6 on a lease conflict."""
    statuses = {r.status for r in results}
    if CONFIG_ERROR in statuses:
        return 3
    if NEEDS_REAUTH in statuses:
        return 4
    if FAILED in statuses or RETRY_LATER in statuses:
        return 7
    if CONFLICT in statuses:
        return 6
    return 0
