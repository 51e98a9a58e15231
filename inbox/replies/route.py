"""Where a reply goes and whether it may: the route (thread, contact, channel, account), the reply
window on the platform's clock and the text limit, checked before anything is recorded or sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.enums import Direction, ReplyPolicy
from inbox.errors import ConflictError, NotFoundError, PolicyError, UsageError
from inbox.replies.windows import describe_route, length_problem, reply_window
from inbox.safe_text import unsendable
from inbox.store import tables as tb
from inbox.store.types import REPLY_IN_DOUBT, REPLY_OPEN, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

R = tb.reply
T = tb.ticket
CV = tb.conversation
C = tb.contact
M = tb.message
A = tb.account


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
    again: bool = False,
) -> ReplyPlan:
    """Route and policy for a reply; raises PolicyError (nothing sent) or ConflictError.

    `again`: the agent means another copy of a text the ticket's last reply already delivered."""
    problem = unsendable(text)
    if problem:
        raise UsageError(problem)
    with engine.connect() as conn:
        route = resolve_route(conn, ticket_id, via=via, to=to)
        pnow = now or platform_now(conn, route.account_id)
        policy, remaining = check_policy(route, text, pnow, human_agent_tag=human_agent_tag)
        doubt = conn.execute(
            sa.select(R.c.id, R.c.state).where(R.c.ticket_id == ticket_id, R.c.state.in_(REPLY_OPEN), R.c.text == text).limit(1)
        ).first()
        last = conn.execute(
            sa.select(R.c.id, R.c.state, R.c.text, R.c.created_at, R.c.echo_after_message_id)
            .where(R.c.ticket_id == ticket_id)
            .order_by(R.c.id.desc())
            .limit(1)
        ).first()
        seen = last.id if last is not None else 0
        assignee = conn.execute(sa.select(T.c.assignee).where(T.c.id == ticket_id)).scalar()
        delivered = None if again or doubt is not None else _delivered_unanswered(conn, ticket_id, last, text)
    if doubt is not None and doubt.state in REPLY_IN_DOUBT:
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
    if delivered is not None:
        # The same command run again (a terminal that died after the send, a script retried):
        # the customer has the answer already. Once they write again, the same text is a new answer.
        raise ConflictError(
            f"reply #{delivered.id} with this text was already sent on ticket #{ticket_id}"
            f" ({delivered.created_at:%Y-%m-%d %H:%M} UTC) and the customer has not written since",
            hint="pass --again to send it once more",
        )
    return ReplyPlan(route, text, policy, remaining, pnow, seen_reply_id=int(seen), assignee=assignee)


def _delivered_unanswered(conn: Connection, ticket_id: int, last: Any, text: str) -> Any:
    """`last` (the ticket's newest reply) when it is `sent` with this text and no customer message
    was stored on the ticket after it was recorded; else None. "After" is by message id (the newest
    message of the thread when the reply was recorded), not by clocks that may disagree."""
    if last is None or last.state != "sent" or last.text != text:
        return None
    since = M.c.id > last.echo_after_message_id if last.echo_after_message_id is not None else M.c.sent_at > last.created_at
    wrote = conn.execute(
        sa.select(M.c.id).where(M.c.ticket_id == ticket_id, M.c.direction == Direction.IN.value, since).limit(1)
    ).first()
    return None if wrote is not None else last
