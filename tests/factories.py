"""Build small stores for ticket, reply and search tests (bulk Core inserts, both backends)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from connectors.base import InboundMessage, Participant
from connectors.enums import Channel, Direction, MessageKind
from inbox.store.models import PRIORITY_RANK, Account, Contact, Conversation, Message, Ticket

_seq = itertools.count(1)


def now() -> datetime:
    return datetime.now(timezone.utc)


T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
# Platform ids of the brand accounts the builders use unless told otherwise.
PLATFORM_ID = {Channel.FACEBOOK: "104920378912345", Channel.INSTAGRAM: "17841400000000001", Channel.X: "1500000000000000001"}


def inbound(
    eid: str,
    thread: str,
    customer: str | Participant,
    text: str | None,
    at: datetime | float = 0,
    *,
    channel: Channel | str = Channel.FACEBOOK,
    account: str | None = None,
    handle: str | None = None,
    name: str | None = None,
    out: bool = False,
    brand_name: str | None = None,
    raw: dict[str, Any] | None = None,
) -> InboundMessage:
    """The one InboundMessage builder: `at` is a time, or minutes after T0; `out` is the brand's
    message in the customer's thread (an echo)."""
    channel = Channel(channel)
    account = account or PLATFORM_ID[channel]
    cust = customer if isinstance(customer, Participant) else Participant(customer, handle=handle, name=name)
    author = Participant(account, name=brand_name) if out else cust
    sent_at = at if isinstance(at, datetime) else T0 + timedelta(minutes=at)
    return InboundMessage(
        channel, account, eid, thread, Direction.OUT if out else Direction.IN, author, cust, text,
        MessageKind.TEXT, sent_at, raw=raw if raw is not None else {},
    )


@dataclass
class Made:
    account_id: int
    contact_id: int
    conversation_id: int
    ticket_id: int
    message_ids: list[int]


def account(engine: Any, name: str = "tokoshop-ig", channel: str = "instagram", platform_id: str = "17841400000000001") -> int:
    with engine.begin() as conn:
        existing = conn.execute(sa.select(Account.__table__.c.id).where(Account.__table__.c.name == name)).scalar()
        if existing:
            return int(existing)
        return int(
            conn.execute(
                Account.__table__.insert().values(name=name, channel=channel, platform_id=platform_id, created_at=now()).returning(Account.__table__.c.id)
            ).scalar_one()
        )


def ticket(
    engine: Any,
    *,
    account_name: str = "tokoshop-ig",
    channel: str = "instagram",
    handle: str | None = None,
    texts: list[str] | None = None,
    status: str = "new",
    priority: str = "normal",
    last_customer_ago: timedelta = timedelta(hours=1),
    due_in: timedelta | None = timedelta(hours=2),
    assignee: str | None = None,
    thread: str | None = None,
    platform_user: str | None = None,
) -> Made:
    """One customer thread with a ticket; the last text is the customer's latest message."""
    n = next(_seq)
    platform_ids = {"instagram": "17841400000000001", "facebook": "104920378912345", "x": "1500000000000000001"}
    acc = account(engine, account_name, channel, platform_ids[channel])
    t0 = now()
    texts = texts if texts is not None else [f"halo, pesanan saya belum sampai #{n}"]
    last_at = t0 - last_customer_ago
    user = platform_user or f"user{n}"
    with engine.begin() as conn:
        cid = conn.execute(
            sa.select(Contact.__table__.c.id).where(
                Contact.__table__.c.channel == channel,
                Contact.__table__.c.account_id == acc,
                Contact.__table__.c.platform_user_id == user,
            )
        ).scalar()
        if cid is None:
            cid = conn.execute(
                Contact.__table__.insert()
                .values(channel=channel, account_id=acc, platform_user_id=user, handle=handle or f"cust{n}", name=f"Customer {n}", created_at=t0)
                .returning(Contact.__table__.c.id)
            ).scalar_one()
        tid = conn.execute(
            Ticket.__table__.insert()
            .values(
                status=status,
                priority=priority,
                priority_rank=PRIORITY_RANK[priority],
                assignee=assignee,
                channel=channel,
                account_id=acc,
                contact_id=cid,
                subject=texts[0] if texts else None,
                snippet=texts[-1] if texts else None,
                message_count=len(texts),
                created_at=last_at - timedelta(minutes=len(texts)),
                updated_at=last_at,
                last_customer_message_at=last_at,
                first_response_due_at=(t0 + due_in) if due_in is not None else None,
                escalation_due_at=last_at + timedelta(days=3),
            )
            .returning(Ticket.__table__.c.id)
        ).scalar_one()
        conv = conn.execute(
            Conversation.__table__.insert()
            .values(
                channel=channel,
                account_id=acc,
                external_id=thread or f"t_{n}",
                contact_id=cid,
                ticket_id=tid,
                last_message_at=last_at,
                last_customer_message_at=last_at,
                created_at=t0,
            )
            .returning(Conversation.__table__.c.id)
        ).scalar_one()
        mids = []
        for i, text in enumerate(texts):
            sent = last_at - timedelta(minutes=len(texts) - 1 - i)
            mids.append(
                conn.execute(
                    Message.__table__.insert()
                    .values(
                        channel=channel,
                        account_id=acc,
                        external_id=f"m_{n}_{i}",
                        conversation_id=conv,
                        ticket_id=tid,
                        contact_id=cid,
                        direction="in",
                        author_id=user,
                        author_handle=handle or f"cust{n}",
                        text=text,
                        kind="text",
                        sent_at=sent,
                        received_at=t0,
                        attachments=[],
                        raw={},
                    )
                    .returning(Message.__table__.c.id)
                ).scalar_one()
            )
    return Made(acc, int(cid), int(conv), int(tid), mids)


def outbound(engine: Any, made: Made, text: str, external_id: str, sent_at: datetime | None = None, channel: str = "instagram") -> int:
    """An echo of our own message in a thread (as sync would store it)."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                Message.__table__.insert()
                .values(
                    channel=channel,
                    account_id=made.account_id,
                    external_id=external_id,
                    conversation_id=made.conversation_id,
                    ticket_id=made.ticket_id,
                    contact_id=made.contact_id,
                    direction="out",
                    author_id="brand",
                    text=text,
                    kind="text",
                    sent_at=sent_at or now(),
                    received_at=now(),
                    attachments=[],
                    raw={},
                )
                .returning(Message.__table__.c.id)
            ).scalar_one()
        )
