"""Settling replies in doubt against what later syncs stored.

A reply in `unknown` is never sent again blindly. `reconcile_unknown` matches it against the
outbound echoes later syncs ingest (same conversation, same text or idempotency key, sent after
the reply was recorded): found means `sent`; a complete sync that *started* at least `quiet`
after the attempt without the echo means it was not delivered (`failed`), and only then may
`retry` send it again.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.replies.ledger import RECORDED, Timing, declare_stopped, mark_sent, phase_of
from inbox.runtime.procs import local_process_gone
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.sqlite_lock import with_page_writers
from inbox.store.types import REPLY_IN_DOUBT, utcnow
from inbox.tickets.workflow import record_event

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

R = tb.reply
M = tb.message
A = tb.account

# How far an echo's platform timestamp may precede the thread's newest message when the reply was
# recorded (both the platform's clock); for replies recorded before that was kept, how far it may
# precede our record of the reply (our clock against the platform's).
ECHO_TOLERANCE = timedelta(minutes=2)
LEGACY_ECHO_TOLERANCE = timedelta(minutes=30)


def _after_recorded(conn: Connection, reply: Any) -> list[Any]:
    """Where a reply's echo can be: stored after the reply was recorded (row order, which no clock
    skews), and sent on the platform no earlier than the thread's newest message was then (both
    the platform's timestamps), or than the reply itself by our clock, less a margin, so a late-stored
    older answer with the same text is not taken for it. Replies recorded before that was
    kept: by our clock alone, with a wider margin."""
    if reply.echo_after_message_id is None:
        return [M.c.sent_at >= reply.created_at - LEGACY_ECHO_TOLERANCE]
    newest = conn.execute(sa.select(M.c.sent_at).where(M.c.id == reply.echo_after_message_id)).scalar()
    since = reply.created_at if newest is None else min(newest, reply.created_at)
    return [M.c.id > reply.echo_after_message_id, M.c.sent_at >= since - ECHO_TOLERANCE]


def _owner_gone(owner: str | None) -> bool | None:
    """True when the owning process is known to be dead, False when it is alive, None when it
    ran on another machine or left no owner."""
    if not owner or not owner.startswith("pid "):
        return None
    try:
        pid_part, rest = owner[4:].split(" on ", 1)
        pid = int(pid_part)
    except ValueError:
        return None
    return local_process_gone(rest.split(" #", 1)[0], pid)


_URL = re.compile(r"https?://\S+")


def _comparable(text: str | None) -> str:
    # Platforms may trim, re-space or shorten links (X wraps URLs in t.co): compare what is left.
    return " ".join(_URL.sub("<url>", text or "").split())


def _is_echo_of(message: Any, reply: Any) -> bool:
    """An outbound message is our reply's echo when it carries our idempotency key (Meta keeps
    `metadata`) or has the same text."""
    if message.raw and reply.idempotency_key in json.dumps(message.raw, ensure_ascii=False, default=str):
        return True
    return bool(message.text) and _comparable(message.text) == _comparable(reply.text)


def _sync_started(conn: Connection, account_id: int) -> datetime | None:
    """When the account's last complete sync started (None when the last one did not complete)."""
    account = conn.execute(sa.select(A.c.last_sync_at, A.c.last_success_at).where(A.c.id == account_id)).first()
    if account is not None and account.last_success_at and account.last_sync_at and account.last_success_at >= account.last_sync_at:
        return account.last_sync_at  # type: ignore[no-any-return]
    return None


def settles_at(reply: Any, timing: Timing) -> datetime:
    """The earliest start of a full sync whose missing echo proves an unknown reply not delivered."""
    return reply.updated_at + timing.quiet  # type: ignore[no-any-return]


def reconcile_unknown(
    engine: Engine,
    account_id: int,
    *,
    synced_after: datetime | None = None,
    now: datetime | None = None,
    timing: Timing | None = None,
) -> int:
    """Settle replies whose outcome is in doubt; returns how many were settled.

    - `sending` with a stopped sender (dead, or untouched for `timing.lease`) -> `failed` when it
      never called the platform, else `unknown`;
    - an outbound message in the same conversation with our key or text, sent after the reply was
      recorded and not matched to another reply -> `sent`, with that platform id;
    - `unknown` when a complete sync of the account that *started* at least `timing.quiet` after
      the attempt (`synced_after`, or the account's last successful sync) found no echo -> `failed`.
    """
    timing = timing or Timing()
    given_now = now
    settled = 0
    with write_tx(engine) as conn:
        doubtful = conn.execute(
            sa.select(R).where(R.c.account_id == account_id, R.c.state.in_(REPLY_IN_DOUBT)).order_by(R.c.id)
        ).all()
        if not doubtful:
            return 0
        with_page_writers(conn)  # an echo a page is storing now is seen, not declared missing
        now = given_now or utcnow()  # read after the wait: a settled reply is stamped when it was settled
        sync_started = synced_after or _sync_started(conn, account_id)
        for reply in doubtful:
            if reply.state == "sending":
                if _owner_gone(reply.owner) is not True and now - reply.updated_at < timing.lease:
                    continue  # a live process (or one we cannot see) is still sending it
                if not declare_stopped(conn, reply, now):
                    continue
                if phase_of(reply.error) == RECORDED:
                    settled += 1
                    continue
                reply = conn.execute(sa.select(R).where(R.c.id == reply.id)).first()
            candidates = conn.execute(
                sa.select(M.c.id, M.c.external_id, M.c.sent_at, M.c.text, M.c.raw, M.c.direction)
                .where(
                    M.c.conversation_id == reply.conversation_id,
                    # Ours, or taken as the customer's for want of a sender (an X event names no
                    # recipient): left unmatched, the reply would fail and could be sent twice.
                    sa.or_(M.c.direction == "out", sa.and_(M.c.direction == "in", M.c.flags.contains("sender_inferred"))),
                    M.c.reply_id.is_(None),
                    *_after_recorded(conn, reply),
                )
                .order_by(M.c.sent_at, M.c.id)
                .limit(200)
            ).all()
            echo = next((c for c in candidates if _is_echo_of(c, reply)), None)
            if echo is not None:
                mark_sent(conn, reply, echo.external_id, echo.sent_at, "sync", "matched echo")
                conn.execute(M.update().where(M.c.id == echo.id).values(reply_id=reply.id, direction="out"))
                log.info("reply #%s: delivered (echo %s)", reply.id, echo.external_id)
                settled += 1
            elif sync_started is not None and sync_started >= settles_at(reply, timing):
                conn.execute(
                    R.update()
                    .where(R.c.id == reply.id, R.c.state == "unknown", R.c.updated_at == reply.updated_at)
                    .values(
                        state="failed",
                        error=f"not delivered: no echo in the full sync that started {sync_started.isoformat(timespec='seconds')}",
                        updated_at=now,
                    )
                )
                record_event(conn, reply.ticket_id, "sync", "reply_not_delivered", {"reply_id": reply.id})
                log.info("reply #%s: not delivered (no echo after a full sync)", reply.id)
                settled += 1
    return settled


def reconcile_all(engine: Engine, timing: Timing | None = None) -> int:
    with engine.connect() as conn:
        accounts = [r[0] for r in conn.execute(sa.select(R.c.account_id).where(R.c.state.in_(REPLY_IN_DOUBT)).distinct())]
    return sum(reconcile_unknown(engine, a, timing=timing) for a in accounts)


def in_doubt_reason(reply: Any, timing: Timing, now: datetime) -> tuple[str, str]:
    """Why an unknown reply cannot be retried yet, and what settles it."""
    since = reply.updated_at.astimezone(timezone.utc)
    ready = settles_at(reply, timing).astimezone(timezone.utc)
    why = f"reply #{reply.id} may have been delivered (unknown since {since:%Y-%m-%d %H:%M:%S} UTC: {reply.error or 'no answer'})"
    if ready > now:
        when = f"a full `inbox sync` started after {ready:%H:%M:%S} UTC"
    else:
        when = "the next full `inbox sync`"
    hint = (
        f"it is settled by its echo, or as not delivered by {when} that finds none; "
        f"if you checked the customer's thread and it is not there: inbox outbox retry {reply.id} --force"
    )
    return why + "; not sending it again", hint
