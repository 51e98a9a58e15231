"""Per-account sync leases: two workers never poll the same account at the same time.

The lease is a row, not an advisory lock: `sync_state.lease_owner` / `lease_expires_at`, taken with
one atomic `UPDATE ... WHERE lease is free, expired, or already mine`. On PostgreSQL concurrent
UPDATEs of the row serialize and re-check the WHERE clause, so exactly one worker wins; on SQLite the
`BEGIN IMMEDIATE` write lock does the same. Chosen over `pg_try_advisory_lock` because it works the
same on both backends, needs no connection pinned for the whole sync, shows who holds an account
(`inbox accounts`), and fences writes: every page commit re-checks the owner in the same transaction
as the data (`inbox.ingest.page`), so a worker that lost its lease cannot store a page.

A holder renews the lease with each page. When it dies, the lease is taken over once it expires
(`sync.lease_seconds`), or at once when the holder was a process on this host that no longer exists
(a killed `inbox sync` does not block the next one for minutes).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

from inbox.store.engine import write_tx
from inbox.store.fastpath import upsert
from inbox.errors import ConflictError
from inbox.errors import LeaseLostError
from inbox.runtime.procs import local_process_gone
from inbox.store.engine import write_tx
from inbox.store.models import SyncState
from inbox.store.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
_ss = SyncState.__table__


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, parsed from `lease_owner` ("host:pid:nonce:since-epoch")."""

    host: str
    pid: int | None
    since: datetime | None
    raw: str

    @classmethod
    def parse(cls, owner: str) -> Holder:
        parts = owner.rsplit(":", 3)
        if len(parts) != 4:
            return cls(owner, None, None, owner)
        host, pid, _nonce, since = parts
        try:
            return cls(host, int(pid), datetime.fromtimestamp(int(since), timezone.utc), owner)
        except ValueError:
            return cls(host, None, None, owner)

    def describe(self) -> str:
        who = f"pid {self.pid} on host {self.host}" if self.pid is not None else self.raw
        if self.since is not None:
            who += f" since {self.since.strftime('%Y-%m-%d %H:%M:%S UTC')}"
        return who

    def is_dead_local_process(self) -> bool:
        """True when the holder was a process on this host that has exited."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return False  # another worker thread of this process: alive
        return local_process_gone(self.host, self.pid, zombie_is_gone=True) is True


@dataclass(frozen=True, slots=True)
class Lease:
    account_id: int
    account_name: str
    owner: str
    expires_at: datetime


def new_owner() -> str:
    """A unique owner id for one worker: host, pid, a nonce and when it started."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{int(utcnow().timestamp())}"


def acquire(engine: Engine, account_id: int, account_name: str, *, seconds: float, owner: str | None = None) -> Lease:
    """Take the account's lease or raise `ConflictError` naming who holds it."""
    owner = owner or new_owner()
    for _attempt in range(3):
        now = utcnow()
        expires = now + timedelta(seconds=seconds)
        with write_tx(engine) as conn:
            conn.execute(
                upsert(conn, _ss)
                .values(account_id=account_id, cursor=None, updated_at=now, lease_owner=None, lease_expires_at=None)
                .on_conflict_do_nothing(index_elements=["account_id"])
            )
            taken = conn.execute(
                sa.update(_ss)
                .where(
                    _ss.c.account_id == account_id,
                    sa.or_(
                        _ss.c.lease_owner.is_(None),
                        _ss.c.lease_owner == owner,
                        _ss.c.lease_expires_at.is_(None),
                        _ss.c.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=expires)
            ).rowcount
            if taken == 1:
                return Lease(account_id, account_name, owner, expires)
            row = conn.execute(sa.select(_ss.c.lease_owner, _ss.c.lease_expires_at).where(_ss.c.account_id == account_id)).one()
            if row.lease_owner is None or row.lease_expires_at is None or row.lease_expires_at < now:
                continue  # released between the two statements (PostgreSQL, read committed): try again
            holder = Holder.parse(row.lease_owner)
            if holder.is_dead_local_process():
                # Compare-and-swap on the dead owner, so two workers cannot both take it over.
                taken = conn.execute(
                    sa.update(_ss)
                    .where(_ss.c.account_id == account_id, _ss.c.lease_owner == row.lease_owner)
                    .values(lease_owner=owner, lease_expires_at=expires)
                ).rowcount
                if taken == 1:
                    log.warning("account %s: took over the sync lease of %s (process gone)", account_name, holder.describe())
                    return Lease(account_id, account_name, owner, expires)
                continue
        raise ConflictError(
            f"another sync is running for account {account_name} ({holder.describe()})",
            hint=f"its lease expires at {row.lease_expires_at:%H:%M:%S} UTC unless renewed",
        )
    raise ConflictError(f"another sync is running for account {account_name} (the lease keeps changing hands)")


def renew(engine: Engine, lease: Lease, *, seconds: float) -> Lease:
    """Extend the lease; `LeaseLostError` when another worker has taken it."""
    expires = utcnow() + timedelta(seconds=seconds)
    with write_tx(engine) as conn:
        done = conn.execute(
            sa.update(_ss)
            .where(_ss.c.account_id == lease.account_id, _ss.c.lease_owner == lease.owner)
            .values(lease_expires_at=expires)
        ).rowcount
    if done != 1:
        raise LeaseLostError(f"lost the sync lease for account {lease.account_name}: another worker holds it")
    return Lease(lease.account_id, lease.account_name, lease.owner, expires)


def release(engine: Engine, lease: Lease) -> None:
    """Give the lease up (only if still ours)."""
    with write_tx(engine) as conn:
        conn.execute(
            sa.update(_ss)
            .where(_ss.c.account_id == lease.account_id, _ss.c.lease_owner == lease.owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def holder_of(engine: Engine, account_id: int) -> tuple[Holder, datetime] | None:
    """The current (unexpired) holder of an account's lease, if any."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(_ss.c.lease_owner, _ss.c.lease_expires_at).where(_ss.c.account_id == account_id)).first()
    if row is None or row.lease_owner is None or row.lease_expires_at is None or row.lease_expires_at < utcnow():
        return None
    return Holder.parse(row.lease_owner), row.lease_expires_at
