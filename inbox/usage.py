"""What each account's syncs read from its platform, per UTC day, and what that is estimated to cost.

X bills every DM event a lookup returns, new or not (about $0.01 each on pay-per-use; the
account's `x_cost_per_read`). The sync adds each pass's count once, at its end (also when the pass
fails or stops), to the account's row of the day (`AccountUsage`). The estimate is an upper bound:
X says it does not bill the same event twice on one UTC day ("soft guarantee"), and a dry run's
reads, billed too, are reported by that run and not stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

from connectors.enums import Channel
from inbox.store.engine import write_tx
from inbox.store.fastpath import upsert
from inbox.store.models import AccountUsage

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inbox.settings import AccountSettings

_u = AccountUsage.__table__


def _day(at: datetime) -> str:
    """The UTC day of an aware time, as stored (`YYYY-MM-DD`)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d")


def record_reads(engine: Engine, account_id: int, events: int, *, at: datetime) -> None:
    """Add `events` read to the account's count of `at`'s UTC day (nothing when 0)."""
    if events <= 0:
        return
    with write_tx(engine) as conn:
        stmt = upsert(conn, _u).values(account_id=account_id, day=_day(at), events_read=events)
        conn.execute(stmt.on_conflict_do_update(index_elements=["account_id", "day"],
                                                set_={"events_read": _u.c.events_read + stmt.excluded.events_read}))


def reads_on(engine: Engine, account_ids: Sequence[int], *, at: datetime) -> dict[int, int]:
    """Events read on `at`'s UTC day, by account id (accounts that read none are left out)."""
    if not account_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_u.c.account_id, _u.c.events_read).where(_u.c.day == _day(at), _u.c.account_id.in_(list(account_ids))))
        return {int(a): int(n) for a, n in rows}


def billed_per_read(account: AccountSettings) -> bool:
    """Whether the channel bills each item read (X); Meta's Graph does not."""
    return account.channel == Channel.X


def cost(account: AccountSettings, events: int) -> float | None:
    """Estimated cost of `events` read (USD, to 4 decimals); None where reads are not billed."""
    if not billed_per_read(account):
        return None
    return round(events * account.x_cost_per_read, 4)
