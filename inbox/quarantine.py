"""Quarantined items: what a sync could not store as a message, kept whole with the reason.

Only items that cannot be stored end up here (no usable id, an id no platform issues, a thread that
cannot be read); a message with a missing time or sender is stored, marked, on its ticket. Agents
list them (`inbox quarantine`) and read one's raw payload (`inbox quarantine show ID`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import MAX_ID_LENGTH, QuarantinedItem
from connectors.redact import scrub
from connectors.safejson import clean_text
from inbox.errors import NotFoundError
from inbox.store.models import Account, Quarantine
from inbox.timefmt import json_time as _iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from inbox.vocab import AccountRef

_q = Quarantine.__table__
_a = Account.__table__


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    id: int
    account: str
    channel: str
    external_id: str | None
    thread_id: str | None
    reason: str
    received_at: datetime
    resolved_at: datetime | None
    raw: Any = None  # only when one item is asked for

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "account": self.account,
            "channel": self.channel,
            "platform_id": self.external_id,
            "thread_id": self.thread_id,
            "reason": self.reason,
            "received": _iso(self.received_at),
            "resolved": _iso(self.resolved_at),
        }
        if self.raw is not None:
            out["raw"] = self.raw
        return out


def _select(*extra: Any) -> Any:
    return sa.select(
        _q.c.id, _a.c.name.label("account"), _q.c.channel, _q.c.external_id, _q.c.thread_id, _q.c.reason,
        _q.c.received_at, _q.c.resolved_at, *extra,
    ).select_from(_q.join(_a, _a.c.id == _q.c.account_id))


def _row(r: Any, raw: Any = None) -> QuarantinedRow:
    return QuarantinedRow(r.id, r.account, r.channel, r.external_id, r.thread_id, r.reason, r.received_at, r.resolved_at, raw)


def list_items(engine: Engine, *, account: str | None = None, include_resolved: bool = False, limit: int = 100) -> list[QuarantinedRow]:
    """Newest first; unresolved only unless `include_resolved`."""
    query = _select().order_by(_q.c.received_at.desc(), _q.c.id.desc()).limit(limit)
    if account is not None:
        query = query.where(_a.c.name == account)
    if not include_resolved:
        query = query.where(_q.c.resolved_at.is_(None))
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def get_item(engine: Engine, item_id: int) -> QuarantinedRow:
    with engine.connect() as conn:
        r = conn.execute(_select(_q.c.raw).where(_q.c.id == item_id)).first()
    if r is None:
        raise NotFoundError(f"no quarantined item #{item_id} (see `inbox quarantine`)")
    return _row(r, r.raw if r.raw is not None else {})


def store_quarantined(conn: Connection, ref: AccountRef, quarantined: Sequence[QuarantinedItem], now: datetime) -> int:
    """A page's broken items, each stored once while unresolved (a re-delivered one is not stored again)."""
    if not quarantined:
        return 0
    items = []
    for q in quarantined:
        # Ids as far as the columns hold them (the item may be quarantined for an over-long id),
        # and every string storable: the reason and ids may quote what the platform sent, secrets
        # too (scrubbed like the raw payload beside them, which `inbox quarantine` shows with them).
        items.append((
            None if q.external_id is None else scrub(clean_text(q.external_id))[:MAX_ID_LENGTH],
            None if q.thread_id is None else scrub(clean_text(q.thread_id))[:MAX_ID_LENGTH],
            scrub(clean_text(q.reason))[:2000],
            q.raw if isinstance(q.raw, (dict, list)) else {"text": clean_text(str(q.raw))},
            q.channel.value,
        ))
    existing = {
        (r.external_id, r.thread_id, r.reason, json.dumps(r.raw, sort_keys=True, default=str))
        for r in conn.execute(
            sa.select(_q.c.external_id, _q.c.thread_id, _q.c.reason, _q.c.raw).where(
                _q.c.account_id == ref.id,
                _q.c.resolved_at.is_(None),
                _q.c.thread_id.in_([i[1] for i in items if i[1]])
                | _q.c.external_id.in_([i[0] for i in items if i[0]])
                | _q.c.thread_id.is_(None),
            )
        )
    }
    rows = []
    for external_id, thread_id, reason, raw, channel in items:
        key = (external_id, thread_id, reason, json.dumps(raw, sort_keys=True, default=str))
        if key in existing:
            continue  # the same broken item re-delivered
        existing.add(key)
        rows.append(
            {
                "account_id": ref.id,
                "channel": channel,
                "external_id": external_id,
                "thread_id": thread_id,
                "reason": reason,
                "raw": raw,
                "received_at": now,
                "resolved_at": None,
            }
        )
    if rows:
        conn.execute(sa.insert(_q), rows)
    return len(rows)
