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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import RateInfo
from connectors.errors import ConnectorError, NeedsReauthError, RateLimitedError, RetryLaterError
from connectors.redact import redact
from inbox import accounts, leases, usage
from inbox.errors import ConfigError, ConflictError, InboxError, describe
from inbox.ingest.page import IngestResult, MessageDecision, ingest_page
from inbox.intake.edits import apply_edits
from inbox.vocab import AccountRef
from inbox.safe_text import one_line
from inbox.store.models import Account, SyncState
from inbox.store.types import utcnow
from inbox.sync.pipeline import BATCH_MESSAGES, KnownIds, Prefetch, make_known, merge_pages
from inbox.timefmt import json_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import AccountSettings, Settings

log = logging.getLogger(__name__)


class SyncStatus(StrEnum):
    """The outcome of an account's pass; the value is what `inbox sync --json` says."""

    OK = "ok"
    DRY_RUN = "dry-run"
    STOPPED = "stopped"  # a stop was requested; the pages so far are stored
    SKIPPED = "skipped"  # paused until the platform's reset, or disabled
    RETRY_LATER = "retry-later"
    NEEDS_REAUTH = "needs-reauth"
    CONFLICT = "conflict"  # another worker holds the account
    FAILED = "failed"
    CONFIG_ERROR = "config-error"  # the account's config or environment is wrong (e.g. its token variable is unset)


ERROR_STATUSES = (SyncStatus.RETRY_LATER, SyncStatus.NEEDS_REAUTH, SyncStatus.CONFLICT, SyncStatus.FAILED, SyncStatus.CONFIG_ERROR)
MAX_DECISIONS = 500  # kept per account for a dry run's report; counts are always complete
DEFAULT_RETRY_SECONDS = 60
X_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Reported after every stored page (and once at the start and end of an account)."""

    account: str
    pages: int
    counts: IngestResult
    done: bool = False
    status: SyncStatus | None = None


@dataclass(frozen=True, slots=True)
class AccountSyncResult:
    account: str
    channel: str
    status: SyncStatus
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
    events_read: int | None = None  # DM events X returned to this pass, new or not (None: not billed per read)
    est_cost: float | None = None  # their estimated cost (X bills each DM event read); None: not billed per read
    events_read_today: int | None = None  # the account's count for today (UTC), this pass included
    est_cost_today: float | None = None

    @property
    def failed(self) -> bool:
        return self.status in ERROR_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "channel": self.channel,
            "status": str(self.status),
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
            "events_read": self.events_read,
            "est_cost": self.est_cost,
            "events_read_today": self.events_read_today,
            "est_cost_today": self.est_cost_today,
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[SyncProgress], None]
ConnectorFactory = Callable[["AccountSettings"], "Connector"]


def make_connector(settings: Settings, account_settings: AccountSettings, **spec_overrides: Any) -> Connector:
    """The account's connector, with the sync settings that concern it (high-water-mark overlap)."""
    # X counts requests, not events: 100 events per lookup (the API's maximum) makes the
    # 15-requests-per-15-minutes budget go four times as far as the default 25.
    overrides: dict[str, Any] = {"overlap_seconds": float(settings.sync.overlap_seconds)}
    if account_settings.channel.value == "x":
        overrides["page_size"] = X_PAGE_SIZE
    overrides.update(spec_overrides)
    return accounts.connector_for(settings, account_settings, **overrides)


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
    ref = ref or accounts.ensure_account(engine, account_settings)

    read = 0  # events the pass's pages returned (counted as they are stored, recorded at the end)

    def result(status: SyncStatus, **kw: Any) -> AccountSyncResult:
        if kw.get("error"):
            kw["error"] = redact(kw["error"])  # shown by `inbox sync` and its --json, not only logged
        kw.update(_usage(engine, account_settings, ref, read, dry_run=dry_run))
        res = AccountSyncResult(name, channel, status, started_at=started, seconds=time.monotonic() - clock, **kw)
        if progress is not None:
            progress(SyncProgress(name, res.pages, res.counts, done=True, status=status))
        log_result(res)
        return res

    row = _account_row(engine, ref.id)
    if row.needs_reauth and not accounts.config_changed_since(settings, row.last_error_at):
        return result(SyncStatus.NEEDS_REAUTH, error=f"needs re-auth since {row.last_error_at:%Y-%m-%d %H:%M} UTC ({row.last_error}); "
                      + accounts.reauth_hint(account_settings))
    if row.paused_until is not None and row.paused_until > started:
        return result(SyncStatus.SKIPPED, error=f"paused until {row.paused_until:%H:%M:%S} UTC (rate limit)", retry_at=row.paused_until)

    lease = None
    if not dry_run:
        try:
            lease = leases.acquire(engine, ref.id, name, seconds=settings.sync.lease_seconds, owner=owner)
        except ConflictError as exc:
            return result(SyncStatus.CONFLICT, error=exc.message)
        accounts.record_start(engine, ref.id, started)

    own_connector = connector is None
    known: KnownIds | None = None
    prefetch: Prefetch | None = None
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
        prefetch = Prefetch(connector.fetch(cursor, known), None if dry_run else known, stop_event=stop_event)
        for batch in prefetch.batches(BATCH_MESSAGES):
            page = merge_pages(batch)
            read += page.events_read  # billed when fetched, whatever storing it does
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
            if got.new_messages and not dry_run:  # an edit that came by webhook before its message applies now
                apply_edits(engine, ref, (), settings.sync.writer_lock_timeout_seconds)
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
        status = SyncStatus.OK if complete else SyncStatus.STOPPED
        if dry_run:
            status = SyncStatus.DRY_RUN
        reconciled = 0
        if not dry_run and complete:
            accounts.record_success(engine, ref.id, at=started, rate=rate)
            reconciled = _reconcile(engine, ref.id, started, settings)
        elif not dry_run:
            accounts.record_rate(engine, ref.id, rate)
        return result(status, counts=counts, pages=pages, complete=complete, rate=rate, reconciled=reconciled, decisions=tuple(decisions))
    except NeedsReauthError as exc:
        if not dry_run:
            accounts.record_error(engine, ref.id, str(exc), at=utcnow(), needs_reauth=True, rate=rate)
        return result(SyncStatus.NEEDS_REAUTH, counts=counts, pages=pages, rate=rate, error=str(exc), decisions=tuple(decisions))
    except RetryLaterError as exc:
        rate = getattr(exc, "rate", None) or rate  # a rate limit says how much is left
        retry_at = exc.retry_at
        if retry_at is None and isinstance(exc, RateLimitedError):
            retry_at = utcnow() + timedelta(seconds=DEFAULT_RETRY_SECONDS)
        if not dry_run:
            accounts.record_error(engine, ref.id, str(exc), at=utcnow(), paused_until=retry_at, rate=rate)
        return result(SyncStatus.RETRY_LATER, counts=counts, pages=pages, rate=rate, error=str(exc), retry_at=retry_at, decisions=tuple(decisions))
    except ConflictError as exc:  # the lease was taken over (we stalled past its expiry)
        return result(SyncStatus.CONFLICT, counts=counts, pages=pages, rate=rate, error=exc.message)
    except ConfigError as exc:  # nothing the platform did: trying again later will not help
        if not dry_run:
            accounts.record_error(engine, ref.id, exc.message, at=utcnow(), rate=rate)
        return result(SyncStatus.CONFIG_ERROR, counts=counts, pages=pages, rate=rate, error=exc.message, decisions=tuple(decisions))
    except (ConnectorError, InboxError) as exc:
        if not dry_run:
            accounts.record_error(engine, ref.id, str(exc), at=utcnow(), rate=rate)
        return result(SyncStatus.FAILED, counts=counts, pages=pages, rate=rate, error=str(exc), decisions=tuple(decisions))
    except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the others
        # The result line says what failed, in one line; the traceback (which quotes the driver's
        # DETAIL lines, i.e. row values) only with --debug.
        log.debug("account %s: sync failed", name, exc_info=True)
        message = redact(describe(exc))
        if not dry_run:
            try:
                accounts.record_error(engine, ref.id, message, at=utcnow(), rate=rate)
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                log.exception("account %s: could not record the error", name)
        return result(SyncStatus.FAILED, counts=counts, pages=pages, rate=rate, error=message, decisions=tuple(decisions))
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


def _usage(engine: Engine, account: AccountSettings, ref: AccountRef, read: int, *, dry_run: bool) -> dict[str, Any]:
    """Record the pass's reads on today's count (not in a dry run); its result's usage fields."""
    now = utcnow()
    if not usage.billed_per_read(account):
        return {}  # null in the result: Graph does not bill per item read
    out: dict[str, Any] = {"events_read": read, "est_cost": usage.cost(account, read)}
    try:
        if not dry_run:
            usage.record_reads(engine, ref.id, read, at=now)
        today = usage.reads_on(engine, [ref.id], at=now).get(ref.id, 0) + (read if dry_run else 0)
    except Exception:  # noqa: BLE001 - an estimate must not fail the pass
        log.warning("account %s: could not record the events read", account.name, exc_info=True)
        return out
    return {**out, "events_read_today": today, "est_cost_today": usage.cost(account, today)}


def _reconcile(engine: Engine, account_id: int, started: datetime, settings: Settings) -> int:
    """Settle replies whose delivery was unknown against the echoes this pass stored."""
    from inbox.replies import ledger, reconcile

    try:
        return reconcile.reconcile_unknown(engine, account_id, synced_after=started, timing=ledger.Timing.of(settings))
    except Exception:  # noqa: BLE001 - the outbox must not break the sync
        log.exception("reconciling replies of account %s failed", account_id)
        return 0


def log_result(res: AccountSyncResult) -> None:
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


def exit_code(results: Sequence[AccountSyncResult]) -> int:
    """0 when every account synced; 3 when one's config is wrong; 4 when one needs re-auth; 7 when one
    failed; 6 on a lease conflict."""
    statuses = {r.status for r in results}
    if SyncStatus.CONFIG_ERROR in statuses:
        return 3
    if SyncStatus.NEEDS_REAUTH in statuses:
        return 4
    if SyncStatus.FAILED in statuses or SyncStatus.RETRY_LATER in statuses:
        return 7
    if SyncStatus.CONFLICT in statuses:
        return 6
    return 0


def totals(results: Sequence[AccountSyncResult]) -> dict[str, int]:
    """The counts of a sync summed over its accounts (`inbox sync --json`'s totals; pages are per account)."""
    summed: dict[str, int] = {}
    for r in results:
        for k, v in r.as_dict().items():
            if isinstance(v, int) and not isinstance(v, bool) and k != "pages":
                summed[k] = summed.get(k, 0) + v
    return summed
