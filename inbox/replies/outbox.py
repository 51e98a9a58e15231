"""The outbox: replies leave through the channel the customer wrote on, at most once.

Order of a send, each step committed before the next:
1. resolve the route (the thread the agent picked, its contact, channel and account) and check
   policy (reply window on the platform clock, text limit) — a refusal sends nothing;
2. record the Reply with a fresh idempotency key in state `sending`, owned by this attempt
   (`owner`), after checking in the same transaction that no other reply was recorded on the
   ticket since the route was shown;
3. claim the call: one UPDATE conditional on state, owner and phase moves it to "calling" —
   a process that lost the reply meanwhile (declared stopped after `lease`) finds 0 rows and
   never calls the platform;
4. call the connector;
5. store the outcome: `sent` with the platform message id, `failed` (certainly not delivered:
   refused, or the request never left the process), or `unknown` (a timeout or dropped connection
   after the request left: it may have arrived).

A reply in `unknown` is never sent again blindly. `reconcile_unknown` matches it against the
outbound echoes later syncs ingest (same conversation, same text or idempotency key, sent after
the reply was recorded): found means `sent`; a complete sync that *started* at least `quiet`
after the attempt without the echo means it was not delivered (`failed`), and only then may
`retry` send it again — or an agent who checked the customer's thread, with `retry --force`.

Test hook: with INBOX_TEST_PAUSE_BEFORE_SEND=SECONDS the process sleeps between steps 2 and 3,
so a test can kill it exactly there, or let it oversleep its lease.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import OutboundReply
from connectors.enums import ReplyPolicy
from inbox.errors import AuthError, ConflictError, NotFoundError, PlatformError, PolicyError
from inbox.replies.ledger import RECORDED, Claim, Timing, claim_call, finish, mark_sent, marker, new_owner, record_reply
from inbox.replies.reconcile import in_doubt_reason, reconcile_unknown
from inbox.replies.route import ReplyPlan, check_policy, platform_now, resolve_route
from inbox.store import tables as tb
from inbox.store.engine import write_tx
from inbox.store.sqlite_lock import with_page_writers
from inbox.store.types import REPLY_OPEN, utcnow
from inbox.tickets.workflow import record_event

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import Settings

log = logging.getLogger(__name__)

R = tb.reply
CV = tb.conversation
A = tb.account

PAUSE_ENV = "INBOX_TEST_PAUSE_BEFORE_SEND"
ConnectorFactory = Callable[[str], "Connector"]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    reply_id: int
    state: str
    external_id: str | None
    error: str | None = None


def connector_factory(settings: Settings, engine: Engine | None = None) -> ConnectorFactory:
    """Connectors for the configured accounts, by account name.

    With `engine`, the stored account must be the configured platform account: a name re-pointed at
    another platform id is refused (ConfigError) before any call, or the reply would leave from
    another account than the one the customer wrote to.
    """

    def make(account_name: str) -> Connector:
        from inbox.accounts import connector_for, ensure_account

        acc = settings.account(account_name)
        if engine is not None:
            ensure_account(engine, acc)
        return connector_for(settings, acc)

    return make


def _pause_for_tests() -> None:
    value = os.environ.get(PAUSE_ENV)
    if value:
        log.warning("%s=%s: pausing before the send (test hook)", PAUSE_ENV, value)
        time.sleep(float(value))


def deliver(engine: Engine, claim: Claim, make_connector: ConnectorFactory, actor: str) -> SendOutcome:
    """Steps 3 to 5 for a recorded reply this attempt owns. Raises after recording a failure."""
    from connectors.errors import (
        DeliveryUnknownError,
        NeedsReauthError,
        PermanentError,
        RetryLaterError,
        TextTooLongError,
        WindowClosedError,
    )

    reply_id = claim.reply_id
    with engine.connect() as conn:
        reply = conn.execute(sa.select(R, A.c.name.label("account_name")).select_from(R.join(A, A.c.id == R.c.account_id)).where(R.c.id == reply_id)).first()
        thread = conn.execute(sa.select(CV.c.external_id).where(CV.c.id == reply.conversation_id)).scalar() if reply else None
    if reply is None:
        raise NotFoundError(f"no reply #{reply_id}")
    _pause_for_tests()
    outbound = OutboundReply(
        thread_id=thread or "",
        recipient_id=reply.recipient_id,
        text=reply.text,
        policy=ReplyPolicy(reply.policy),
        idempotency_key=reply.idempotency_key,
    )
    try:
        connector = make_connector(reply.account_name)
    except BaseException as exc:
        # No request can have left (a missing token variable, an unknown account): not sent.
        finish(engine, claim, "failed", f"not sent: {exc.__class__.__name__}: {exc}")
        raise
    try:
        # From here on the request may leave: a crash after this commit leaves the reply in doubt.
        claim_call(engine, claim)
        try:
            result = connector.send(outbound)
        except DeliveryUnknownError as exc:
            finish(engine, claim, "unknown", str(exc))
            raise PlatformError(
                f"reply #{reply_id}: outcome unknown ({exc}); it is NOT retried automatically",
                hint="the next `inbox sync` shows whether it arrived; then see `inbox outbox`",
            ) from None
        except (WindowClosedError, TextTooLongError) as exc:
            finish(engine, claim, "failed", str(exc))
            raise PolicyError(f"reply #{reply_id} refused by the platform: {exc}") from None
        except NeedsReauthError as exc:
            finish(engine, claim, "failed", str(exc))
            raise AuthError(f"reply #{reply_id} not sent: {exc}", hint="reconnect the account, then `inbox outbox retry`") from None
        except (PermanentError, RetryLaterError) as exc:
            finish(engine, claim, "failed", str(exc))
            hint = f"fix it, then: inbox outbox retry {reply_id}" if "nothing was sent" in str(exc) else None
            if isinstance(exc, RetryLaterError):
                hint = f"try again later: inbox outbox retry {reply_id}"
            raise PlatformError(f"reply #{reply_id} not sent: {exc}", hint=hint) from None
        except BaseException as exc:
            # Anything else (a bug, Ctrl-C mid-call): we cannot know whether it left. In doubt.
            finish(engine, claim, "unknown", f"interrupted during the send: {exc.__class__.__name__}")
            raise
    finally:
        try:
            connector.close()
        except Exception:  # noqa: BLE001 - closing must not hide the outcome
            log.debug("closing the connector failed", exc_info=True)
    with write_tx(engine) as conn:
        with_page_writers(conn)  # first: a page ingest may be storing the echo right now
        row = conn.execute(sa.select(R).where(R.c.id == reply_id)).first()
        # Delivered is the truth whoever owns the row now; only a second `sent` is skipped.
        if row.state != "sent":
            mark_sent(conn, row, result.external_id, result.sent_at, actor, "sent")
    return SendOutcome(reply_id, "sent", result.external_id)


def send_reply(
    engine: Engine, plan: ReplyPlan, make_connector: ConnectorFactory, author: str, *, again: bool = False
) -> SendOutcome:
    """Record, then send. The caller has checked policy (plan_reply) and asked for confirmation."""
    return deliver(engine, record_reply(engine, plan, author, again=again), make_connector, author)


def retry(
    engine: Engine,
    reply_id: int,
    make_connector: ConnectorFactory,
    actor: str,
    *,
    human_agent_tag: bool = True,
    force: bool = False,
    timing: Timing | None = None,
) -> SendOutcome:
    """Send a reply again — only when it certainly did not arrive (reconciled first), or, with
    `force`, an unknown one an agent checked on the customer's thread (audited)."""
    timing = timing or Timing()
    with engine.connect() as conn:
        account_id = conn.execute(sa.select(R.c.account_id).where(R.c.id == reply_id)).scalar()
    if account_id is None:
        raise NotFoundError(f"no reply #{reply_id}")
    reconcile_unknown(engine, account_id, timing=timing)
    owner = new_owner()
    with write_tx(engine) as conn:
        reply = conn.execute(sa.select(R).where(R.c.id == reply_id).with_for_update()).first()
        if reply.state == "sent":
            raise ConflictError(f"reply #{reply_id} was already delivered (platform id {reply.external_id}); not sending it again")
        if reply.state == "sending":
            raise ConflictError(
                f"reply #{reply_id} is being sent by another process ({reply.owner or 'unknown'}); not sending it again",
                hint=f"wait for it; a sender that stopped is released after {int(timing.lease.total_seconds())} s",
            )
        if reply.state == "unknown" and not force:
            why, hint = in_doubt_reason(reply, timing, utcnow())
            raise ConflictError(why, hint=hint)
        route = resolve_route(conn, reply.ticket_id, reply.conversation_id)
        pnow = platform_now(conn, route.account_id)
        try:
            policy, _ = check_policy(route, reply.text, pnow, human_agent_tag=human_agent_tag)
        except PolicyError:
            conn.execute(R.update().where(R.c.id == reply_id).values(error="refused on retry: window closed or text too long", updated_at=utcnow()))
            raise
        # Compare-and-set on what we read: two retries racing, only one takes it.
        taken = conn.execute(
            R.update()
            .where(R.c.id == reply_id, R.c.state == reply.state, R.c.updated_at == reply.updated_at,
                   (R.c.owner == reply.owner) if reply.owner is not None else R.c.owner.is_(None))
            .values(state="sending", attempts=reply.attempts + 1, policy=policy.value, owner=owner,
                    error=marker(RECORDED, owner), updated_at=utcnow())
        ).rowcount
        if taken != 1:
            # Another process changed it since we read it (PostgreSQL does not lock the read): theirs to send.
            raise ConflictError(f"reply #{reply_id} is being sent by another process; not sending it again")
        detail: dict[str, Any] = {"reply_id": reply_id, "attempt": reply.attempts + 1, "was": reply.state}
        if reply.state == "unknown":
            detail["forced"] = True
            detail["why"] = "the agent checked the customer's thread: the reply is not there"
        record_event(conn, reply.ticket_id, actor, "reply_retry_forced" if reply.state == "unknown" else "reply_retry", detail)
    return deliver(engine, Claim(reply_id, owner), make_connector, actor)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    ticket_id: int
    state: str
    channel: str
    account: str
    recipient_id: str
    policy: str
    attempts: int
    error: str | None
    text: str
    author: str
    created: datetime
    updated: datetime
    external_id: str | None

    def to_json(self) -> dict[str, Any]:
        from inbox.timefmt import json_time as iso

        return {
            "id": self.id, "ticket_id": self.ticket_id, "state": self.state, "channel": self.channel, "account": self.account,
            "recipient_id": self.recipient_id, "policy": self.policy, "attempts": self.attempts, "error": self.error,
            "text": self.text, "author": self.author, "created": iso(self.created), "updated": iso(self.updated),
            "platform_id": self.external_id,
        }


def outbox(engine: Engine, *, states: tuple[str, ...] = REPLY_OPEN, limit: int = 100) -> list[OutboxRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(R, A.c.name.label("account"))
            .select_from(R.join(A, A.c.id == R.c.account_id))
            .where(R.c.state.in_(list(states)))
            .order_by(R.c.id.desc())
            .limit(limit)
        ).all()
    return [
        OutboxRow(
            r.id, r.ticket_id, r.state, r.channel, r.account, r.recipient_id, r.policy, r.attempts, r.error, r.text,
            r.author, r.created_at, r.updated_at, r.external_id,
        )
        for r in rows
    ]
