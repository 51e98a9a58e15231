"""Edits and unsends that arrive before their message, kept until it does (Meta does not order webhooks).

They are kept durably as rows of `webhook_delivery` in their own state (`early_edit`), so no new
table: the body is the edit as JSON. The next `apply_edits` of the account (a webhook batch, or a
poll that stored new messages) applies those whose message is now stored. One whose message never
comes is dropped after `EXPIRY`: Meta documents no retry schedule, so a generous two days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from connectors.base import Edit
from inbox.store.tables import webhook_delivery as _d
from inbox.store.types import utcnow
from inbox.vocab import AccountRef

EARLY = "early_edit"
EXPIRY = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Waiting:
    row_id: int
    edit: Edit


def _key(edit: Edit) -> tuple[str, str | None, int]:
    return edit.external_id, edit.text, edit.num_edit


def any_kept(engine: Engine) -> bool:
    """Whether any early edit is kept (one indexed read, outside any write transaction)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(_d.c.id).where(_d.c.state == EARLY).limit(1)).first() is not None


def waiting(conn: Connection, ref: AccountRef, now: datetime | None = None) -> list[Waiting]:
    """The account's kept early edits; expired ones are deleted first (so they never grow without bound)."""
    now = now or utcnow()
    conn.execute(sa.delete(_d).where(_d.c.state == EARLY, _d.c.received_at < now - EXPIRY))
    out = []
    for row in conn.execute(sa.select(_d.c.id, _d.c.body).where(_d.c.state == EARLY).order_by(_d.c.id)):
        data = orjson.loads(bytes(row.body))
        if data.get("account") != ref.id:
            continue
        edit = Edit(str(data["external_id"]), data.get("text"), int(data.get("num_edit") or 0),
                    datetime.fromisoformat(str(data["edited_at"])))
        out.append(Waiting(int(row.id), edit))
    return out


def keep(conn: Connection, ref: AccountRef, edit: Edit, kept: list[Waiting]) -> None:
    """Keep `edit` (its message is not stored yet), once: a redelivery of a kept edit adds nothing."""
    if any(_key(w.edit) == _key(edit) for w in kept):
        return
    body = orjson.dumps({"account": ref.id, "external_id": edit.external_id, "text": edit.text,
                         "num_edit": edit.num_edit, "edited_at": edit.edited_at.isoformat()})
    row_id = conn.execute(sa.insert(_d).values(
        source="meta", received_at=utcnow(), content_type="application/json", body=body, state=EARLY, attempts=0,
        error="an edit of a message not stored yet", processed_at=None,
    ).returning(_d.c.id)).scalar_one()
    kept.append(Waiting(int(row_id), edit))


def forget(conn: Connection, row_ids: list[int]) -> None:
    """Applied: the kept rows go."""
    for start in range(0, len(row_ids), 500):
        conn.execute(sa.delete(_d).where(_d.c.id.in_(row_ids[start:start + 500]), _d.c.state == EARLY))
