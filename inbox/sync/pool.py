"""One pass over many accounts: `sync_all` runs `sync_account` for each, concurrently
(`sync.concurrency`), in forked worker processes (`inbox.runtime.procs`) or in threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from inbox.accounts import ensure_accounts, record_error
from inbox.store.types import utcnow
from inbox.sync.account import AccountSyncResult, ConnectorFactory, ProgressFn, SyncStatus, log_result, selected_accounts, sync_account

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.vocab import AccountRef
    from inbox.settings import AccountSettings, Settings

log = logging.getLogger(__name__)


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
    refs = ensure_accounts(engine, chosen)
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
    from inbox.runtime import procs

    if settings.sync.processes and not connectors and procs.available():
        jobs = [_process_job(engine, settings, acc, refs[acc.name], dry_run=dry_run, progress=progress is not None,
                             connector_factory=connector_factory) for acc in chosen]
        return procs.run_jobs(jobs, workers=workers, progress=progress, stop_event=stop_event)
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
                record_error(engine, ref.id, message, at=utcnow())
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                log.exception("account %s: could not record the error", acc.name)
        res = AccountSyncResult(acc.name, acc.channel.value, SyncStatus.FAILED, error=message)
        log_result(res)
        return res

    return Job(acc.name, run, failed)
