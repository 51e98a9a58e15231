"""The Reply row's state machine: recorded (`sending`, phase "recorded") before any call, the call
claimed (phase "calling"), then `sent`, `failed` or `unknown`; a stopped sender's reply taken from it.

Every step is one conditional UPDATE on state, owner and phase, committed before the next, so a
process that lost the reply (declared stopped after `Timing.lease`) finds 0 rows and never calls
the platform.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.errors import ConflictError
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.types import utcnow
from inbox.tickets.workflow import brand_replied, record_event

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from inbox.replies.route import ReplyPlan
    from inbox.settings import Settings

log = logging.getLogger(__name__)

R = tb.reply
T = tb.ticket
M = tb.message

RECORDED = "recorded"  # phase: the platform has not been called
CALLING = "calling"  # phase: the request may have left


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the outbox waits before judging a reply (settings: `replies.*`)."""

    lease: timedelta = timedelta(minutes=5)  # a `sending` reply untouched this long: its sender is declared stopped
    quiet: timedelta = timedelta(minutes=10)  # an unknown reply fails only on a full sync starting this long after

    @classmethod
    def of(cls, settings: Settings | None) -> Timing:
        if settings is None:
            return cls()
        r = settings.replies
        return cls(lease=timedelta(seconds=r.lease_seconds), quiet=timedelta(seconds=r.settle_after_seconds))


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt at a reply: only the holder of `owner` may move it on."""

    reply_id: int
    owner: str


@dataclass(frozen=True, slots=True)
class OtherReply:
    """A reply recorded on the ticket by someone else after our route was shown."""

    id: int
    author: str
    state: str
    text: str
    created: datetime


class ReplyRaceError(ConflictError):
    """Another reply was recorded on the ticket since the route was shown: ask again."""

    def __init__(self, message: str, *, hint: str | None = None, others: tuple[OtherReply, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.others = others

    @classmethod
    def on(cls, ticket_id: int, others: list[OtherReply]) -> ReplyRaceError:
        names = ", ".join(sorted({o.author for o in others}))
        return cls(
            f"not sent: {len(others)} other repl{'y was' if len(others) == 1 else 'ies were'} recorded on ticket #{ticket_id} "
            f"since the route was shown (by {names})",
            hint=f"read it (`inbox show {ticket_id}`), then send yours with --again if it is still needed",
            others=tuple(others),
        )


def new_owner() -> str:
    """This process and a token of its own for one attempt (a pid alone is reused)."""
    return f"pid {os.getpid()} on {socket.gethostname()} #{uuid.uuid4().hex[:12]}"


def marker(phase: str, owner: str) -> str:
    """Stored in Reply.error while a process works on the reply: how far it got
    ("recorded": the platform has not been called yet; "calling": the request may have left)."""
    return f"{phase}: {owner}"


def phase_of(error: str | None) -> str | None:
    head = (error or "").partition(":")[0]
    return head if head in (RECORDED, CALLING) else None


def others_since(conn: Connection, ticket_id: int, after_id: int) -> list[OtherReply]:
    rows = conn.execute(
        sa.select(R.c.id, R.c.author, R.c.state, R.c.text, R.c.created_at)
        .where(R.c.ticket_id == ticket_id, R.c.id > after_id)
        .order_by(R.c.id)
    ).all()
    return [OtherReply(r.id, r.author, r.state, r.text, r.created_at) for r in rows]


def _lock_ticket(conn: Connection, ticket_id: int) -> None:
    """Serialize reply recording per ticket (PostgreSQL row lock; SQLite's write lock is already held)."""
    conn.execute(sa.select(T.c.id).where(T.c.id == ticket_id).with_for_update())


def record_reply(engine: Engine, plan: ReplyPlan, author: str, *, again: bool = False) -> Claim:
    """Step 2: the Reply row, committed before any call, so a crash leaves evidence of the attempt.

    In the same transaction (the ticket locked): when another reply was recorded on the ticket
    since the route was shown, raise ReplyRaceError instead — unless `again` (the agent saw it)."""
    now = utcnow()
    owner = new_owner()
    with write_tx(engine) as conn:
        _lock_ticket(conn, plan.route.ticket_id)
        if not again:
            others = others_since(conn, plan.route.ticket_id, plan.seen_reply_id)
            if others:
                raise ReplyRaceError.on(plan.route.ticket_id, others)
        newest = conn.execute(
            sa.select(sa.func.max(M.c.id)).where(M.c.conversation_id == plan.route.conversation_id)
        ).scalar()
        rid = conn.execute(
            R.insert()
            .values(
                idempotency_key=uuid.uuid4().hex,
                ticket_id=plan.route.ticket_id,
                conversation_id=plan.route.conversation_id,
                channel=plan.route.channel,
                account_id=plan.route.account_id,
                recipient_id=plan.route.recipient_id,
                text=plan.text,
                policy=plan.policy.value,
                state="sending",
                attempts=1,
                error=marker(RECORDED, owner),
                owner=owner,
                echo_after_message_id=newest,
                author=author[:100],
                created_at=now,
                updated_at=now,
            )
            .returning(R.c.id)
        ).scalar_one()
        detail: dict[str, Any] = {"reply_id": rid, "policy": plan.policy.value, "channel": plan.route.channel,
                                  "contact_id": plan.route.contact_id, "recipient_id": plan.route.recipient_id}
        if again:
            detail["again"] = True
        record_event(conn, plan.route.ticket_id, author, "reply_queued", detail)
    return Claim(int(rid), owner)


def mark_sent(conn: Connection, reply: Any, external_id: str, sent_at: datetime, actor: str, how: str) -> None:
    """The reply reached the platform: store its id, and move the ticket to pending."""
    now = utcnow()
    conn.execute(
        R.update()
        .where(R.c.id == reply.id)
        .values(state="sent", external_id=external_id, sent_at=sent_at, error=None, updated_at=now)
    )
    # The echo may already be stored (a sync ran while we waited for the response), taken as the
    # customer's if it came without a sender (`sender_inferred`): its id says it is ours.
    conn.execute(
        M.update()
        .where(M.c.account_id == reply.account_id, M.c.external_id == external_id, M.c.reply_id.is_(None))
        .values(reply_id=reply.id, direction=sa.case(
            (sa.and_(M.c.direction == "in", M.c.flags.contains("sender_inferred")), "out"), else_=M.c.direction))
    )
    status = brand_replied(conn, reply.ticket_id, at=sent_at, now=now)
    detail: dict[str, Any] = {"reply_id": reply.id, "external_id": external_id, "policy": reply.policy, "channel": reply.channel, "how": how}
    if status is not None:
        detail["status"] = status
    record_event(conn, reply.ticket_id, actor, "reply", detail)


def finish(engine: Engine, claim: Claim, state: str, error: str | None) -> bool:
    """Store a failed/unknown outcome — only while this attempt still owns the reply (a reply
    settled meanwhile, by its echo or by another process, keeps what was learnt)."""
    with write_tx(engine) as conn:
        done = conn.execute(
            R.update()
            .where(R.c.id == claim.reply_id, R.c.owner == claim.owner, R.c.state.in_(("sending", "unknown")))
            .values(state=state, error=error, updated_at=utcnow())
        ).rowcount
    if done != 1:
        log.warning("reply #%s: outcome %s not stored: another process settled it meanwhile", claim.reply_id, state)
    return done == 1


class LostClaimError(ConflictError):
    """This process no longer holds the reply (declared stopped, taken over): it must not send."""


def claim_call(engine: Engine, claim: Claim) -> None:
    """Step 3, the fence: state, owner and phase checked in the statement that takes the call."""
    with write_tx(engine) as conn:
        taken = conn.execute(
            R.update()
            .where(
                R.c.id == claim.reply_id,
                R.c.state == "sending",
                R.c.owner == claim.owner,
                R.c.error == marker(RECORDED, claim.owner),
            )
            .values(error=marker(CALLING, claim.owner), updated_at=utcnow())
        ).rowcount
        if taken == 1:
            return
        now = conn.execute(sa.select(R.c.state, R.c.owner).where(R.c.id == claim.reply_id)).first()
    raise LostClaimError(
        f"reply #{claim.reply_id} was taken from this process while it waited (it is now {now.state if now else 'gone'}); "
        "not sending it",
        hint="see `inbox outbox`",
    )


def declare_stopped(conn: Connection, reply: Any, now: datetime) -> bool:
    """A `sending` reply whose process died or overslept its lease: taken from it (fenced on its
    owner and phase, so a process that wakes finds it lost the claim). Before the call: `failed`;
    during the call: `unknown` (the request may have left), settled like any other."""
    phase = phase_of(reply.error)
    if phase == RECORDED:
        values = {"state": "failed", "error": "not sent: the sending process stopped before calling the platform"}
        event, why = "reply_not_delivered", "stopped before the call"
    else:
        values = {"state": "unknown", "error": "outcome unknown: the sending process stopped during the call"}
        event, why = "reply_in_doubt", "stopped during the call"
    done = conn.execute(
        R.update()
        .where(R.c.id == reply.id, R.c.state == "sending", R.c.owner == reply.owner, R.c.error == reply.error)
        .values(**values, updated_at=now)
    ).rowcount
    if done == 1:
        record_event(conn, reply.ticket_id, "outbox", event, {"reply_id": reply.id, "why": why, "owner": reply.owner})
    return done == 1
