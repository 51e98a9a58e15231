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
from inbox.store import tables as tb
from inbox.replies.windows import describe_route, length_problem, reply_window
from inbox.store.engine import write_tx
from inbox.store.types import utcnow
from inbox.tickets.operations import record_event

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from connectors.base import Connector
    from inbox.settings import Settings

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

ConnectorFactory = Callable[[str], "Connector"]


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
    contact_id: int | None = None

    @property
    def customer(self) -> str:
        from inbox.safe_text import display_name

        return display_name(self.customer_handle, self.customer_name, self.recipient_id)


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    route: Route
    text: str
    policy: ReplyPolicy
    remaining: timedelta | None
    platform_now: datetime
    seen_reply_id: int = 0  # the newest reply on the ticket when the route was shown
    assignee: str | None = None  # who had claimed the ticket then

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


def _thread_label(t: Any) -> str:
    from inbox.safe_text import display_name

    who = display_name(t.handle, t.name, t.platform_user_id or "?")
    return f"contact {t.contact_id} {who} on {t.channel} ({t.account_name})" if t.contact_id else f"thread {t.external_id} on {t.channel} (customer unknown)"


def resolve_route(
    conn: Connection, ticket_id: int, conversation_id: int | None = None, *, via: str | None = None, to: int | None = None
) -> Route:
    """Where a reply to this ticket goes: the thread the agent picked, and that thread's contact.

    Picking: `conversation_id` (a retry: the reply's own thread), else `--to CONTACT` and/or
    `--via CHANNEL`, else the ticket's own channel and account. A ticket whose threads belong to
    more than one customer is never guessed at: without `--to` it is refused with the choices.
    Contacts count as one customer only when linked by an agent or by strong evidence
    (`inbox.dedup.identity`); a link made from weak evidence never routes a reply.
    """
    from inbox.dedup.identity import trusted_persons

    ticket = conn.execute(sa.select(T.c.id, T.c.merged_into_id, T.c.channel, T.c.account_id).where(T.c.id == ticket_id)).first()
    if ticket is None:
        raise NotFoundError(f"no ticket #{ticket_id}")
    if ticket.merged_into_id:
        raise PolicyError(f"ticket #{ticket_id} was merged into #{ticket.merged_into_id}", hint=f"reply to #{ticket.merged_into_id}")
    q = (
        sa.select(
            CV.c.id, CV.c.external_id, CV.c.channel, CV.c.account_id, A.c.name.label("account_name"),
            CV.c.last_customer_message_at, CV.c.contact_id, C.c.platform_user_id, C.c.handle, C.c.name,
        )
        .select_from(CV.join(A, A.c.id == CV.c.account_id).outerjoin(C, C.c.id == CV.c.contact_id))
        .where(CV.c.ticket_id == ticket_id)
        .order_by(CV.c.last_customer_message_at.desc().nulls_last(), CV.c.last_message_at.desc().nulls_last(), CV.c.id.desc())
    )
    threads = conn.execute(q).all()
    if conversation_id is not None:
        picked = [t for t in threads if t.id == conversation_id]
        if not picked:
            raise PolicyError(f"the thread of this reply is no longer on ticket #{ticket_id}", hint="reply again from the ticket")
    else:
        picked = threads
        if to is not None:
            picked = [t for t in picked if t.contact_id == to]
            if not picked:
                raise PolicyError(
                    f"contact {to} has no thread on ticket #{ticket_id}",
                    hint=("its customers: " + "; ".join(_thread_label(t) for t in threads)) if threads else None,
                )
        if via:
            picked = [t for t in picked if t.channel == via]
        trusted = trusted_persons(conn, (t.contact_id for t in picked if t.contact_id))

        def customer(t: Any) -> tuple[str, int]:
            if not t.contact_id:
                return ("thread", t.id)
            return ("person", trusted[t.contact_id]) if t.contact_id in trusted else ("contact", t.contact_id)

        customers = {customer(t) for t in picked}
        if len(customers) > 1:
            seen: dict[tuple[str, int], Any] = {}
            for t in picked:
                seen.setdefault(customer(t), t)
            raise PolicyError(
                f"ticket #{ticket_id} holds threads of {len(customers)} customers: "
                + "; ".join(_thread_label(t) for t in seen.values())
                + " — not guessing which one",
                hint="choose the recipient with --to CONTACT",
            )
        if not via and to is None:
            own = [t for t in picked if t.channel == ticket.channel and t.account_id == ticket.account_id]
            picked = own
        if not picked:
            others = sorted({t.channel for t in threads})
            where = f"on {via}" if via else f"on its own channel ({ticket.channel})"
            raise PolicyError(
                f"ticket #{ticket_id} has no conversation {where} to reply in",
                hint=("its threads are on: " + ", ".join(others) + "; choose one with --via CHANNEL") if others else None,
            )
    conv = picked[0]
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
        contact_id=conv.contact_id,
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
    to: int | None = None,
) -> ReplyPlan:
    """Route and policy for a reply; raises PolicyError (nothing sent) or ConflictError."""
    with engine.connect() as conn:
        route = resolve_route(conn, ticket_id, via=via, to=to)
        pnow = now or platform_now(conn, route.account_id)
        policy, remaining = check_policy(route, text, pnow, human_agent_tag=human_agent_tag)
        doubt = conn.execute(
            sa.select(R.c.id, R.c.state).where(R.c.ticket_id == ticket_id, R.c.state.in_(OPEN_STATES), R.c.text == text).limit(1)
        ).first()
        seen = conn.execute(sa.select(sa.func.max(R.c.id)).where(R.c.ticket_id == ticket_id)).scalar() or 0
        assignee = conn.execute(sa.select(T.c.assignee).where(T.c.id == ticket_id)).scalar()
    if doubt is not None and doubt.state in IN_DOUBT:
        raise ConflictError(
            f"reply #{doubt.id} with this text is {doubt.state}: it may already have reached the customer",
            hint="run `inbox sync`, then `inbox outbox` to see whether it arrived",
        )
    if doubt is not None:
        # A second copy would leave the first one retryable: two deliveries of one answer.
        raise ConflictError(
            f"reply #{doubt.id} with this text is {doubt.state} (not delivered); send that one instead of a copy",
            hint=f"inbox outbox retry {doubt.id}",
        )
    return ReplyPlan(route, text, policy, remaining, pnow, seen_reply_id=int(seen), assignee=assignee)


# ─── sending ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class SendOutcome:
    reply_id: int
    state: str
    external_id: str | None
    error: str | None = None


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


def _new_owner() -> str:
    """This process and a token of its own for one attempt (a pid alone is reused)."""
    return f"pid {os.getpid()} on {socket.gethostname()} #{uuid.uuid4().hex[:12]}"


def _marker(phase: str, owner: str) -> str:
    """Stored in Reply.error while a process works on the reply: how far it got
    ("recorded": the platform has not been called yet; "calling": the request may have left)."""
    return f"{phase}: {owner}"


def _phase(error: str | None) -> str | None:
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
    owner = _new_owner()
    with write_tx(engine) as conn:
        _lock_ticket(conn, plan.route.ticket_id)
        if not again:
            others = others_since(conn, plan.route.ticket_id, plan.seen_reply_id)
            if others:
                raise ReplyRaceError.on(plan.route.ticket_id, others)
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
                error=_marker(RECORDED, owner),
                owner=owner,
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


def _finish(engine: Engine, claim: Claim, state: str, error: str | None) -> bool:
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


def _claim_call(engine: Engine, claim: Claim) -> None:
    """Step 3, the fence: state, owner and phase checked in the statement that takes the call."""
    with write_tx(engine) as conn:
        taken = conn.execute(
            R.update()
            .where(
                R.c.id == claim.reply_id,
                R.c.state == "sending",
                R.c.owner == claim.owner,
                R.c.error == _marker(RECORDED, claim.owner),
            )
            .values(error=_marker(CALLING, claim.owner), updated_at=utcnow())
        ).rowcount
        if taken == 1:
            return
        now = conn.execute(sa.select(R.c.state, R.c.owner).where(R.c.id == claim.reply_id)).first()
    raise LostClaimError(
        f"reply #{claim.reply_id} was taken from this process while it waited (it is now {now.state if now else 'gone'}); "
        "not sending it",
        hint="see `inbox outbox`",
    )


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
        _finish(engine, claim, "failed", f"not sent: {exc.__class__.__name__}: {exc}")
        raise
    try:
        # From here on the request may leave: a crash after this commit leaves the reply in doubt.
        _claim_call(engine, claim)
        try:
            result = connector.send(outbound)
        except DeliveryUnknownError as exc:
            _finish(engine, claim, "unknown", str(exc))
            raise PlatformError(
                f"reply #{reply_id}: outcome unknown ({exc}); it is NOT retried automatically",
                hint="the next `inbox sync` shows whether it arrived; then see `inbox outbox`",
            ) from None
        except (WindowClosedError, TextTooLongError) as exc:
            _finish(engine, claim, "failed", str(exc))
            raise PolicyError(f"reply #{reply_id} refused by the platform: {exc}") from None
        except NeedsReauthError as exc:
            _finish(engine, claim, "failed", str(exc))
            raise AuthError(f"reply #{reply_id} not sent: {exc}", hint="reconnect the account, then `inbox outbox retry`") from None
        except (PermanentError, RetryLaterError) as exc:
            _finish(engine, claim, "failed", str(exc))
            hint = f"fix it, then: inbox outbox retry {reply_id}" if "nothing was sent" in str(exc) else None
            if isinstance(exc, RetryLaterError):
                hint = f"try again later: inbox outbox retry {reply_id}"
            raise PlatformError(f"reply #{reply_id} not sent: {exc}", hint=hint) from None
        except BaseException as exc:
            # Anything else (a bug, Ctrl-C mid-call): we cannot know whether it left. In doubt.
            _finish(engine, claim, "unknown", f"interrupted during the send: {exc.__class__.__name__}")
            raise
    finally:
        try:
            connector.close()
        except Exception:  # noqa: BLE001 - closing must not hide the outcome
            log.debug("closing the connector failed", exc_info=True)
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(R).where(R.c.id == reply_id)).first()
        # Delivered is the truth whoever owns the row now; only a second `sent` is skipped.
        if row.state != "sent":
            _mark_sent(conn, row, result.external_id, result.sent_at, actor, "sent")
    return SendOutcome(reply_id, "sent", result.external_id)


def send_reply(
    engine: Engine, plan: ReplyPlan, make_connector: ConnectorFactory, author: str, *, again: bool = False
) -> SendOutcome:
    """Record, then send. The caller has checked policy (plan_reply) and asked for confirmation."""
    return deliver(engine, record_reply(engine, plan, author, again=again), make_connector, author)


# ─── reconciliation and retry ───────────────────────────────────────────────────────────────


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
    host = rest.split(" #", 1)[0]
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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


def _declare_stopped(conn: Connection, reply: Any, now: datetime) -> bool:
    """A `sending` reply whose process died or overslept its lease: taken from it (fenced on its
    owner and phase, so a process that wakes finds it lost the claim). Before the call: `failed`;
    during the call: `unknown` (the request may have left), settled like any other."""
    phase = _phase(reply.error)
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
    now = now or utcnow()
    settled = 0
    with write_tx(engine) as conn:
        doubtful = conn.execute(
            sa.select(R).where(R.c.account_id == account_id, R.c.state.in_(IN_DOUBT)).order_by(R.c.id)
        ).all()
        if not doubtful:
            return 0
        sync_started = synced_after or _sync_started(conn, account_id)
        for reply in doubtful:
            if reply.state == "sending":
                if _owner_gone(reply.owner) is not True and now - reply.updated_at < timing.lease:
                    continue  # a live process (or one we cannot see) is still sending it
                if not _declare_stopped(conn, reply, now):
                    continue
                if _phase(reply.error) == RECORDED:
                    settled += 1
                    continue
                reply = conn.execute(sa.select(R).where(R.c.id == reply.id)).first()
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
        accounts = [r[0] for r in conn.execute(sa.select(R.c.account_id).where(R.c.state.in_(IN_DOUBT)).distinct())]
    return sum(reconcile_unknown(engine, a, timing=timing) for a in accounts)


def _in_doubt_reason(reply: Any, timing: Timing, now: datetime) -> tuple[str, str]:
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
    owner = _new_owner()
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
            why, hint = _in_doubt_reason(reply, timing, utcnow())
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
                    error=_marker(RECORDED, owner), updated_at=utcnow())
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
