"""The outbox: replies leave through the channel the customer wrote on, at most once.

Order of a send, each step committed before the next:
1. resolve the route from the ticket (its conversation, channel, account, recipient) and check
   policy (reply window on the platform clock, text limit) — a refusal sends nothing;
2. record the Reply with a fresh idempotency key in state `sending`;
3. call the connector;
4. store the outcome: `sent` with the platform message id, `failed` (certainly not delivered), or
   `unknown` (a timeout or dropped connection after the request left: it may have arrived).

A reply in `unknown` — or left in `sending` by a process that died mid-call — is never sent
again blindly. `reconcile_unknown` matches it against the outbound echoes that later syncs
ingest (same conversation, same text, sent after the reply was recorded): found means `sent`
with that message id; a complete sync that started after the attempt without the echo means it
was not delivered (`failed`), and only then may `retry` send it again.

Test hook: with INBOX_TEST_PAUSE_BEFORE_SEND=SECONDS the process sleeps between steps 2 and 3,
so a test can kill it exactly there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import OutboundReply, ReplyPolicy
from inbox.errors import AuthError, ConflictError, NotFoundError, PlatformError, PolicyError
from inbox import tables as tb
from inbox.policy import describe_route, length_problem, reply_window
from inbox.tickets import record_event, write_tx

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from connectors.base import Connector
    from inbox.config import Settings

log = logging.getLogger(__name__)

R = tb.reply
T = tb.ticket
CV = tb.conversation
C = tb.contact
M = tb.message
A = tb.account

PAUSE_ENV = "INBOX_TEST_PAUSE_BEFORE_SEND"
IN_DOUBT = ("unknown", "sending")
OPEN_STATES = ("queued", "sending", "failed", "unknown")
# How far an echo's platform timestamp may precede our record of the reply (clock differences).
ECHO_TOLERANCE = timedelta(minutes=2)
# A `sending` row from another machine is only judged after this long (its process may be alive).
IN_FLIGHT_GRACE = timedelta(minutes=5)
# A request killed mid-call left no later than this after its "calling" mark (pacing, reconnects).
CALL_BUDGET = timedelta(seconds=60)

ConnectorFactory = Callable[[str], "Connector"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ─── route and policy ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Route:
    ticket_id: int
    conversation_id: int
    thread_id: str  # platform conversation id
    channel: str
    account_id: int
    account_name: str
    recipient_id: str
    customer_handle: str | None
    customer_name: str | None
    last_customer_at: datetime | None

    @property
    def customer(self) -> str:
        from inbox.text import display_name

        return display_name(self.customer_handle, self.customer_name, self.recipient_id)


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    route: Route
    text: str
    policy: ReplyPolicy
    remaining: timedelta | None
    platform_now: datetime

    def describe(self) -> str:
        """`→ Instagram DM @customer · HUMAN_AGENT · 5 d left` (customer text cleaned)."""
        return describe_route(self.route.channel, self.route.customer, self.policy, self.remaining)


def platform_now(conn: Connection, account_id: int, now: datetime | None = None) -> datetime:
    """Our best estimate of the platform's clock: local time, plus how far ahead of us the
    platform's timestamps have run on recently received messages (never behind local time)."""
    now = now or utcnow()
    recent = conn.execute(
        sa.select(M.c.sent_at, M.c.received_at).where(M.c.account_id == account_id).order_by(M.c.id.desc()).limit(50)
    ).all()
    skew = max((r.sent_at - r.received_at for r in recent if r.sent_at and r.received_at), default=timedelta(0))
    return now + max(skew, timedelta(0))


def resolve_route(conn: Connection, ticket_id: int, conversation_id: int | None = None, *, via: str | None = None) -> Route:
    """Where a reply to this ticket goes: by default its originating channel and account (the thread
    there the customer last wrote in). Another of the ticket's threads only when asked (`via`, or
    `conversation_id`) — never as a silent fallback."""
    ticket = conn.execute(sa.select(T.c.id, T.c.merged_into_id, T.c.channel, T.c.account_id).where(T.c.id == ticket_id)).first()
    if ticket is None:
        raise NotFoundError(f"no ticket #{ticket_id}")
    if ticket.merged_into_id:
        raise PolicyError(f"ticket #{ticket_id} was merged into #{ticket.merged_into_id}", hint=f"reply to #{ticket.merged_into_id}")
    q = (
        sa.select(
            CV.c.id, CV.c.external_id, CV.c.channel, CV.c.account_id, A.c.name.label("account_name"),
            CV.c.last_customer_message_at, C.c.platform_user_id, C.c.handle, C.c.name,
        )
        .select_from(CV.join(A, A.c.id == CV.c.account_id).outerjoin(C, C.c.id == CV.c.contact_id))
        .where(CV.c.ticket_id == ticket_id)
        .order_by(CV.c.last_customer_message_at.desc().nulls_last(), CV.c.last_message_at.desc().nulls_last(), CV.c.id.desc())
    )
    if conversation_id is not None:
        q = q.where(CV.c.id == conversation_id)
    elif via:
        q = q.where(CV.c.channel == via)
    else:
        q = q.where(CV.c.channel == ticket.channel, CV.c.account_id == ticket.account_id)
    conv = conn.execute(q.limit(1)).first()
    if conv is None:
        others = sorted({r[0] for r in conn.execute(sa.select(CV.c.channel).where(CV.c.ticket_id == ticket_id))})
        where = f"on {via}" if via else f"on its own channel ({ticket.channel})"
        raise PolicyError(
            f"ticket #{ticket_id} has no conversation {where} to reply in",
            hint=("its threads are on: " + ", ".join(others) + "; choose one with --via CHANNEL") if others else None,
        )
    # The window counts from the customer's last message: taken from the messages themselves
    # (inbound only — our echoes never reopen it).
    last_in = conn.execute(
        sa.select(sa.func.max(M.c.sent_at)).where(M.c.conversation_id == conv.id, M.c.direction == "in")
    ).scalar()
    recipient = conv.platform_user_id
    if not recipient:
        recipient = conn.execute(
            sa.select(M.c.author_id).where(M.c.conversation_id == conv.id, M.c.direction == "in").order_by(M.c.sent_at.desc()).limit(1)
        ).scalar()
    if not recipient:
        raise PolicyError(f"ticket #{ticket_id}: the customer of conversation {conv.external_id} is unknown; cannot address a reply")
    if isinstance(last_in, datetime) and last_in.tzinfo is None:
        last_in = last_in.replace(tzinfo=timezone.utc)
    return Route(
        ticket_id=ticket_id,
        conversation_id=conv.id,
        thread_id=conv.external_id,
        channel=conv.channel,
        account_id=conv.account_id,
        account_name=conv.account_name,
        recipient_id=recipient,
        customer_handle=conv.handle,
        customer_name=conv.name,
        last_customer_at=last_in or conv.last_customer_message_at,
    )


def check_policy(route: Route, text: str, now: datetime, *, human_agent_tag: bool) -> tuple[ReplyPolicy, timedelta | None]:
    """Refuse (PolicyError) before any call: window closed, text too long or empty."""
    problem = length_problem(route.channel, text)
    if problem:
        raise PolicyError(f"not sent: {problem}")
    decision = reply_window(route.channel, route.last_customer_at, now, human_agent_tag=human_agent_tag)
    if not decision.allowed or decision.policy is None:
        raise PolicyError(f"not sent: {decision.reason}", hint="the reply window is Meta's rule; the customer has to write again")
    return decision.policy, decision.remaining


def plan_reply(
    engine: Engine,
    ticket_id: int,
    text: str,
    *,
    human_agent_tag: bool = True,
    now: datetime | None = None,
    via: str | None = None,
) -> ReplyPlan:
    """Route and policy for a reply; raises PolicyError (nothing sent) or ConflictError."""
    with engine.connect() as conn:
        route = resolve_route(conn, ticket_id, via=via)
        pnow = now or platform_now(conn, route.account_id)
        policy, remaining = check_policy(route, text, pnow, human_agent_tag=human_agent_tag)
        doubt = conn.execute(
            sa.select(R.c.id, R.c.state).where(R.c.ticket_id == ticket_id, R.c.state.in_(IN_DOUBT), R.c.text == text).limit(1)
        ).first()
    if doubt is not None:
        raise ConflictError(
            f"reply #{doubt.id} with this text is {doubt.state}: it may already have reached the customer",
            hint="run `inbox sync`, then `inbox outbox` to see whether it arrived",
        )
    return ReplyPlan(route, text, policy, remaining, pnow)


# ─── sending ────────────────────────────────────────────────────────────────────────────────


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
        from connectors import connect

        acc = settings.account(account_name)
        if engine is not None:
            from inbox.accounts import ensure_account

            ensure_account(engine, acc)
        return connect(settings.spec_for(acc))

    return make


def _marker(phase: str) -> str:
    """Stored in Reply.error while a process works on the reply: which process, and how far it got
    ("recorded": the platform has not been called yet; "calling": the request may have left)."""
    return f"{phase}: pid {os.getpid()} on {socket.gethostname()}"


def record_reply(engine: Engine, plan: ReplyPlan, author: str) -> int:
    """Step 2: the Reply row, committed before any call, so a crash leaves evidence of the attempt."""
    now = utcnow()
    with write_tx(engine) as conn:
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
                error=_marker("recorded"),
                author=author[:100],
                created_at=now,
                updated_at=now,
            )
            .returning(R.c.id)
        ).scalar_one()
        record_event(conn, plan.route.ticket_id, author, "reply_queued", {"reply_id": rid, "policy": plan.policy.value, "channel": plan.route.channel})
    return int(rid)


def _pause_for_tests() -> None:
    value = os.environ.get(PAUSE_ENV)
    if value:
        log.warning("%s=%s: pausing before the send (test hook)", PAUSE_ENV, value)
        time.sleep(float(value))


def _mark_sent(conn: Connection, reply: Any, external_id: str, sent_at: datetime, actor: str, how: str) -> None:
    """The reply reached the platform: store its id, and move the ticket to pending."""
    now = utcnow()
    conn.execute(
        R.update()
        .where(R.c.id == reply.id)
        .values(state="sent", external_id=external_id, sent_at=sent_at, error=None, updated_at=now)
    )
    # The echo may already be stored (a sync ran while we waited for the response).
    conn.execute(
        M.update()
        .where(M.c.account_id == reply.account_id, M.c.external_id == external_id, M.c.reply_id.is_(None))
        .values(reply_id=reply.id)
    )
    ticket = conn.execute(sa.select(T.c.status, T.c.first_response_at).where(T.c.id == reply.ticket_id)).first()
    values: dict[str, Any] = {"updated_at": now}
    if ticket is not None and ticket.first_response_at is None:
        values["first_response_at"] = sent_at
    if ticket is not None and ticket.status in ("new", "open"):
        values["status"] = "pending"
    conn.execute(T.update().where(T.c.id == reply.ticket_id).values(**values))
    detail: dict[str, Any] = {"reply_id": reply.id, "external_id": external_id, "policy": reply.policy, "channel": reply.channel, "how": how}
    if "status" in values:
        detail["status"] = {"from": ticket.status, "to": values["status"]}  # type: ignore[union-attr]
    record_event(conn, reply.ticket_id, actor, "reply", detail)


def _finish(engine: Engine, reply_id: int, state: str, error: str | None) -> None:
    with write_tx(engine) as conn:
        conn.execute(R.update().where(R.c.id == reply_id).values(state=state, error=error, updated_at=utcnow()))


def deliver(engine: Engine, reply_id: int, make_connector: ConnectorFactory, actor: str) -> SendOutcome:
    """Steps 3 and 4 for a recorded reply in state `sending`. Raises after recording a failure."""
    from connectors.errors import (
        DeliveryUnknownError,
        NeedsReauthError,
        PermanentError,
        RetryLaterError,
        TextTooLongError,
        WindowClosedError,
    )

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
        _finish(engine, reply_id, "failed", f"not sent: {exc.__class__.__name__}: {exc}")
        raise
    # From here on the request may leave: a crash after this commit leaves the reply in doubt.
    with write_tx(engine) as conn:
        conn.execute(R.update().where(R.c.id == reply_id).values(error=_marker("calling"), updated_at=utcnow()))
    try:
        result = connector.send(outbound)
    except DeliveryUnknownError as exc:
        _finish(engine, reply_id, "unknown", str(exc))
        raise PlatformError(
            f"reply #{reply_id}: outcome unknown ({exc}); it is NOT retried automatically",
            hint="the next `inbox sync` shows whether it arrived; then see `inbox outbox`",
        ) from None
    except (WindowClosedError, TextTooLongError) as exc:
        _finish(engine, reply_id, "failed", str(exc))
        raise PolicyError(f"reply #{reply_id} refused by the platform: {exc}") from None
    except NeedsReauthError as exc:
        _finish(engine, reply_id, "failed", str(exc))
        raise AuthError(f"reply #{reply_id} not sent: {exc}", hint="reconnect the account, then `inbox outbox retry`") from None
    except (PermanentError, RetryLaterError) as exc:
        _finish(engine, reply_id, "failed", str(exc))
        hint = "try again later: inbox outbox retry " + str(reply_id) if isinstance(exc, RetryLaterError) else None
        raise PlatformError(f"reply #{reply_id} not sent: {exc}", hint=hint) from None
    except BaseException as exc:
        # Anything else (a bug, Ctrl-C mid-call): we cannot know whether it left. In doubt.
        _finish(engine, reply_id, "unknown", f"interrupted during the send: {exc.__class__.__name__}")
        raise
    finally:
        try:
            connector.close()
        except Exception:  # noqa: BLE001 - closing must not hide the outcome
            log.debug("closing the connector failed", exc_info=True)
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(R).where(R.c.id == reply_id)).first()
        _mark_sent(conn, row, result.external_id, result.sent_at, actor, "sent")
    return SendOutcome(reply_id, "sent", result.external_id)


def send_reply(engine: Engine, plan: ReplyPlan, make_connector: ConnectorFactory, author: str) -> SendOutcome:
    """Record, then send. The caller has checked policy (plan_reply) and asked for confirmation."""
    reply_id = record_reply(engine, plan, author)
    return deliver(engine, reply_id, make_connector, author)


# ─── reconciliation and retry ───────────────────────────────────────────────────────────────


def _sender(marker: str | None) -> tuple[str | None, bool | None]:
    """For a `sending` row: (phase, gone). `gone` is True when the sending process is known to be
    dead, False when it is alive, None when it ran on another machine or left no marker."""
    if not marker or ": pid " not in marker:
        return None, None
    phase, _, rest = marker.partition(": pid ")
    try:
        pid_part, host = rest.split(" on ", 1)
        pid = int(pid_part)
    except ValueError:
        return phase, None
    if host != socket.gethostname():
        return phase, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return phase, True
    except PermissionError:
        return phase, False
    return phase, False


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


def reconcile_unknown(engine: Engine, account_id: int, *, synced_after: datetime | None = None, now: datetime | None = None) -> int:
    """Settle replies whose outcome is in doubt; returns how many were settled.

    - an outbound message in the same conversation with the same text, sent after the reply was
      recorded and not matched to another reply -> `sent`, with that platform id;
    - otherwise, when a complete sync of the account *started after* the attempt (`synced_after`,
      or the account's last successful sync) and found no such echo -> `failed` (not delivered).
    """
    now = now or utcnow()
    settled = 0
    with write_tx(engine) as conn:
        doubtful = conn.execute(
            sa.select(R).where(R.c.account_id == account_id, R.c.state.in_(IN_DOUBT)).order_by(R.c.id)
        ).all()
        if not doubtful:
            return 0
        account = conn.execute(sa.select(A.c.last_sync_at, A.c.last_success_at).where(A.c.id == account_id)).first()
        sync_started = synced_after
        if sync_started is None and account is not None and account.last_success_at and account.last_sync_at:
            # The last sync that started also succeeded: it began at last_sync_at.
            if account.last_success_at >= account.last_sync_at:
                sync_started = account.last_sync_at
        for reply in doubtful:
            # How late the request may have left: the attempt's start, plus pacing and reconnects.
            left_by = reply.updated_at
            if reply.state == "sending":
                phase, gone = _sender(reply.error)
                if not gone and now - reply.updated_at < IN_FLIGHT_GRACE:
                    continue  # a live process (or one we cannot see) is still sending it
                if phase == "recorded":
                    # The process stopped before calling the platform: certainly not delivered.
                    conn.execute(
                        R.update()
                        .where(R.c.id == reply.id)
                        .values(state="failed", error="not sent: the process stopped before calling the platform", updated_at=now)
                    )
                    record_event(conn, reply.ticket_id, "outbox", "reply_not_delivered", {"reply_id": reply.id, "why": "stopped before the call"})
                    settled += 1
                    continue
                left_by = reply.updated_at + CALL_BUDGET
            candidates = conn.execute(
                sa.select(M.c.id, M.c.external_id, M.c.sent_at, M.c.text, M.c.raw)
                .where(
                    M.c.conversation_id == reply.conversation_id,
                    M.c.direction == "out",
                    M.c.reply_id.is_(None),
                    M.c.sent_at >= reply.created_at - ECHO_TOLERANCE,
                )
                .order_by(M.c.sent_at, M.c.id)
                .limit(200)
            ).all()
            echo = next((c for c in candidates if _is_echo_of(c, reply)), None)
            if echo is not None:
                _mark_sent(conn, reply, echo.external_id, echo.sent_at, "sync", "matched echo")
                conn.execute(M.update().where(M.c.id == echo.id).values(reply_id=reply.id))
                log.info("reply #%s: delivered (echo %s)", reply.id, echo.external_id)
                settled += 1
            elif sync_started is not None and sync_started > left_by:
                conn.execute(
                    R.update()
                    .where(R.c.id == reply.id)
                    .values(
                        state="failed",
                        error=f"not delivered: no echo in the sync that started {sync_started.isoformat(timespec='seconds')}",
                        updated_at=now,
                    )
                )
                record_event(conn, reply.ticket_id, "sync", "reply_not_delivered", {"reply_id": reply.id})
                log.info("reply #%s: not delivered (no echo after a full sync)", reply.id)
                settled += 1
    return settled


def reconcile_all(engine: Engine) -> int:
    with engine.connect() as conn:
        accounts = [r[0] for r in conn.execute(sa.select(R.c.account_id).where(R.c.state.in_(IN_DOUBT)).distinct())]
    return sum(reconcile_unknown(engine, a) for a in accounts)


def retry(
    engine: Engine, reply_id: int, make_connector: ConnectorFactory, actor: str, *, human_agent_tag: bool = True
) -> SendOutcome:
    """Send a reply again — only when it certainly did not arrive (reconciled first)."""
    with engine.connect() as conn:
        account_id = conn.execute(sa.select(R.c.account_id).where(R.c.id == reply_id)).scalar()
    if account_id is None:
        raise NotFoundError(f"no reply #{reply_id}")
    reconcile_unknown(engine, account_id)
    with write_tx(engine) as conn:
        reply = conn.execute(sa.select(R).where(R.c.id == reply_id)).first()
        if reply.state == "sent":
            raise ConflictError(f"reply #{reply_id} was already delivered (platform id {reply.external_id}); not sending it again")
        if reply.state in IN_DOUBT:
            raise ConflictError(
                f"reply #{reply_id} may have been delivered ({reply.state}); it is not sent again until a sync shows it did not arrive",
                hint="run `inbox sync`, then retry",
            )
        route = resolve_route(conn, reply.ticket_id, reply.conversation_id)
        pnow = platform_now(conn, route.account_id)
        try:
            policy, _ = check_policy(route, reply.text, pnow, human_agent_tag=human_agent_tag)
        except PolicyError:
            conn.execute(R.update().where(R.c.id == reply_id).values(error="refused on retry: window closed or text too long", updated_at=utcnow()))
            raise
        taken = conn.execute(
            R.update()
            .where(R.c.id == reply_id, R.c.state.in_(("failed", "queued")))
            .values(state="sending", attempts=reply.attempts + 1, policy=policy.value, error=_marker("recorded"), updated_at=utcnow())
        ).rowcount
        if taken != 1:
            # Another process changed it since we read it (PostgreSQL does not lock the read): theirs to send.
            raise ConflictError(f"reply #{reply_id} is being sent by another process; not sending it again")
        record_event(conn, reply.ticket_id, actor, "reply_retry", {"reply_id": reply_id, "attempt": reply.attempts + 1})
    return deliver(engine, reply_id, make_connector, actor)


# ─── listing ────────────────────────────────────────────────────────────────────────────────


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


def outbox(engine: Engine, *, states: tuple[str, ...] = OPEN_STATES, limit: int = 100) -> list[OutboxRow]:
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
