"""Ticket queries and operations on both backends, each change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests import factories as sf
from inbox.tickets import operations, people, queue
from inbox.tickets.detail import show_ticket
from inbox.errors import ConflictError, NotFoundError, UsageError
from inbox.store.models import PersonEvent, TicketEvent


def events(engine, ticket_id: int) -> list[tuple[str, str, dict]]:
    te = TicketEvent.__table__
    with engine.connect() as conn:
        return [
            (r.actor, r.action, r.detail)
            for r in conn.execute(sa.select(te).where(te.c.ticket_id == ticket_id).order_by(te.c.id))
        ]


def test_list_sorts_by_priority_then_sla_and_filters(engine) -> None:
    low = sf.ticket(engine, priority="low", due_in=timedelta(minutes=5))
    late = sf.ticket(engine, priority="high", due_in=timedelta(hours=3))
    soon = sf.ticket(engine, priority="high", due_in=timedelta(minutes=30))
    undue = sf.ticket(engine, priority="urgent", due_in=None)  # no SLA due time: last among urgent
    urgent = sf.ticket(engine, priority="urgent", channel="x", account_name="tokoshop-x")
    done = sf.ticket(engine, status="resolved", priority="urgent")
    fb = sf.ticket(engine, channel="facebook", account_name="tokoshop-fb", status="open", assignee="ana")

    ids = [t.id for t in queue.list_tickets(engine)]
    assert ids[:4] == [urgent.ticket_id, undue.ticket_id, soon.ticket_id, late.ticket_id]
    assert ids.index(low.ticket_id) == len(ids) - 1
    assert done.ticket_id not in ids  # default: active statuses only

    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(statuses=("resolved",)))] == [done.ticket_id]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(channels=("x",)))] == [urgent.ticket_id]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(limit=2))] == [urgent.ticket_id, undue.ticket_id]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(accounts=("tokoshop-fb",)))] == [fb.ticket_id]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(assignee="ana"))] == [fb.ticket_id]
    assert fb.ticket_id not in [t.id for t in queue.list_tickets(engine, queue.TicketFilter(assignee="none"))]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(statuses=("open",), channels=("facebook",)))] == [fb.ticket_id]
    assert [t.id for t in queue.list_tickets(engine, queue.TicketFilter(priorities=("low",)))] == [low.ticket_id]
    assert len(queue.list_tickets(engine, queue.TicketFilter(limit=2))) == 2
    with pytest.raises(UsageError):
        queue.list_tickets(engine, queue.TicketFilter(statuses=("bogus",)))


def test_overdue_and_window_closing(engine) -> None:
    overdue = sf.ticket(engine, due_in=timedelta(minutes=-10))
    fine = sf.ticket(engine, due_in=timedelta(hours=1))
    closing = sf.ticket(engine, last_customer_ago=timedelta(hours=22))  # RESPONSE window: 2 h left
    wide = sf.ticket(engine, last_customer_ago=timedelta(hours=1))  # 23 h left
    human = sf.ticket(engine, last_customer_ago=timedelta(days=6, hours=21))  # human-agent window: 3 h left
    x = sf.ticket(engine, channel="x", account_name="tokoshop-x", last_customer_ago=timedelta(hours=23))

    over = [t.id for t in queue.list_tickets(engine, queue.TicketFilter(overdue=True))]
    assert overdue.ticket_id in over and fine.ticket_id not in over

    ids = {t.id for t in queue.list_tickets(engine, queue.TicketFilter(window_closing_hours=4))}
    assert closing.ticket_id in ids and human.ticket_id in ids
    assert wide.ticket_id not in ids and x.ticket_id not in ids
    no_tag = {t.id for t in queue.list_tickets(engine, queue.TicketFilter(window_closing_hours=4, human_agent_tag=False))}
    assert human.ticket_id not in no_tag and closing.ticket_id in no_tag

    row = queue.get_ticket(engine, closing.ticket_id)
    left = row.window_left(sf.now())
    assert left is not None and timedelta(hours=1, minutes=55) < left <= timedelta(hours=2)
    assert queue.get_ticket(engine, x.ticket_id).window_left(sf.now()) is None


def test_json_shape_is_stable(engine) -> None:
    made = sf.ticket(engine, handle="budi")
    operations.tag(engine, made.ticket_id, "Refund", "ana")
    data = queue.get_ticket(engine, made.ticket_id).to_json()
    assert set(data) >= {
        "id", "status", "priority", "channel", "account", "customer", "assignee", "tags", "created",
        "updated", "first_response_due", "escalation_due", "message_count",
    }
    assert data["tags"] == ["refund"] and data["customer"]["handle"] == "budi"
    assert data["created"].endswith("Z") and data["message_count"] == 1


def test_operations_are_audited(engine) -> None:
    made = sf.ticket(engine)
    tid = made.ticket_id
    operations.assign(engine, tid, "ana", "lead")
    operations.assign(engine, tid, "ana", "lead")  # no change, no event
    operations.set_status(engine, tid, "pending", "ana")
    row = operations.set_priority(engine, tid, "urgent", "ana", first_response_minutes={"urgent": 30})
    assert row.priority == "urgent"
    assert row.first_response_due == row.created + timedelta(minutes=30)
    operations.tag(engine, tid, "refund", "ana")
    row = operations.tag(engine, tid, "refund", "ana", remove=True)
    assert row.tags == ()
    operations.add_note(engine, tid, "customer called twice [bold]x[/]", "ana")
    row = operations.set_status(engine, tid, "resolved", "ana")
    assert row.status == "resolved"
    operations.set_status(engine, tid, "open", "ana")
    operations.assign(engine, tid, "none", "lead")

    log = [(actor, action) for actor, action, _ in events(engine, tid)]
    assert log == [
        ("lead", "assign"), ("ana", "status"), ("ana", "priority"), ("ana", "tag"), ("ana", "tag"),
        ("ana", "note"), ("ana", "status"), ("ana", "status"), ("lead", "assign"),
    ]
    details = [d for _, _, d in events(engine, tid)]
    assert details[1] == {"from": "new", "to": "pending"}
    assert details[-1] == {"from": "ana", "to": None}
    detail = show_ticket(engine, tid)
    assert [n.detail["text"] for n in detail.notes] == ["customer called twice [bold]x[/]"]

    with pytest.raises(UsageError):
        operations.set_status(engine, tid, "done", "ana")
    with pytest.raises(UsageError):
        operations.set_priority(engine, tid, "asap", "ana")
    with pytest.raises(NotFoundError):
        operations.assign(engine, 999999, "ana", "lead")


def test_claim_specific_conflicts_unless_forced(engine) -> None:
    made = sf.ticket(engine)
    row = queue.claim(engine, made.ticket_id, "ana")
    assert row.assignee == "ana" and row.status == "open"
    assert queue.claim(engine, made.ticket_id, "ana").assignee == "ana"  # idempotent for the holder
    with pytest.raises(ConflictError, match="already claimed by ana"):
        queue.claim(engine, made.ticket_id, "budi")
    assert queue.claim(engine, made.ticket_id, "budi", force=True).assignee == "budi"
    actions = [(a, act, d.get("forced")) for a, act, d in events(engine, made.ticket_id)]
    assert actions == [("ana", "claim", None), ("budi", "claim", True)]


def test_claim_next_takes_best_unassigned(engine) -> None:
    normal = sf.ticket(engine, priority="normal")
    urgent = sf.ticket(engine, priority="urgent")
    sf.ticket(engine, priority="urgent", assignee="someone")
    sf.ticket(engine, priority="urgent", status="resolved")
    assert queue.claim_next(engine, "ana").id == urgent.ticket_id
    assert queue.claim_next(engine, "budi").id == normal.ticket_id
    assert queue.claim_next(engine, "citra") is None


def test_show_spans_threads_merges_and_events(engine) -> None:
    ig = sf.ticket(engine, texts=["halo", "pesanan INV/20261120/MPL/3817265540 belum sampai"], platform_user="p1")
    fb = sf.ticket(engine, channel="facebook", account_name="tokoshop-fb", texts=["same invoice INV/20261120/MPL/3817265540"])
    sf.outbound(engine, ig, "Baik kak, kami cek", "m_out_1")

    merged = operations.merge(engine, fb.ticket_id, ig.ticket_id, "ana")
    assert merged.message_count == 3
    detail = show_ticket(engine, ig.ticket_id)
    assert [m.channel for m in detail.messages].count("facebook") == 1
    assert len(detail.messages) == 4
    assert [m.sent_at for m in detail.messages] == sorted(m.sent_at for m in detail.messages)
    assert detail.merged_ids == (fb.ticket_id,)
    assert queue.get_ticket(engine, fb.ticket_id).status == "closed"
    assert fb.ticket_id not in [t.id for t in queue.list_tickets(engine, queue.TicketFilter(statuses=None))]
    js = detail.to_json()
    assert {"direction", "channel", "text", "time", "platform_id", "kind", "attachments"} <= set(js["messages"][0])

    with pytest.raises(ConflictError):
        operations.merge(engine, fb.ticket_id, ig.ticket_id, "ana")
    with pytest.raises(ConflictError):
        operations.merge(engine, ig.ticket_id, fb.ticket_id, "ana")
    for status in ("open", "resolved"):  # a merged ticket's status is the merge's; unmerge would undo it
        with pytest.raises(ConflictError, match=f"#{fb.ticket_id} is merged into #{ig.ticket_id}"):
            operations.set_status(engine, fb.ticket_id, status, "ana")
    operations.set_status(engine, fb.ticket_id, "closed", "ana")  # what it is: nothing to change

    back = operations.unmerge(engine, fb.ticket_id, "ana")
    assert back.status == "new" and back.merged_into_id is None
    assert len(show_ticket(engine, ig.ticket_id).messages) == 3
    assert len(show_ticket(engine, fb.ticket_id).messages) == 1
    assert queue.get_ticket(engine, ig.ticket_id).message_count == 2
    assert [a for _, a, _ in events(engine, ig.ticket_id)] == ["merge_in", "unmerge_out"]
    with pytest.raises(ConflictError):
        operations.unmerge(engine, fb.ticket_id, "ana")


def test_link_and_unlink_contacts_into_person(engine) -> None:
    ig = sf.ticket(engine)
    fb = sf.ticket(engine, channel="facebook", account_name="tokoshop-fb")
    x = sf.ticket(engine, channel="x", account_name="tokoshop-x")
    person = people.link_contacts(engine, [ig.contact_id, fb.contact_id], "same invoice number", "ana")
    assert queue.get_ticket(engine, ig.ticket_id).person_id == person
    assert queue.get_ticket(engine, fb.ticket_id).person_id == person
    assert show_ticket(engine, ig.ticket_id).related["same_person"] == [fb.ticket_id]

    # Linking a third contact to a linked one joins the same person.
    assert people.link_contacts(engine, [x.contact_id, fb.contact_id], "agent decision", "budi") == person
    pe = PersonEvent.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(pe.c.contact_id, pe.c.action, pe.c.actor, pe.c.reason).order_by(pe.c.id)).all()
    assert [(r.contact_id, r.action, r.actor) for r in rows] == [
        (ig.contact_id, "link", "ana"), (fb.contact_id, "link", "ana"), (x.contact_id, "link", "budi"),
    ]
    assert rows[0].reason == "same invoice number"

    assert people.unlink_contact(engine, fb.contact_id, "wrong person", "ana") == person
    assert queue.get_ticket(engine, fb.ticket_id).person_id is None
    with pytest.raises(ConflictError):
        people.unlink_contact(engine, fb.contact_id, "again", "ana")
    with pytest.raises(UsageError):
        people.link_contacts(engine, [ig.contact_id], "alone", "ana")
    with pytest.raises(NotFoundError):
        people.link_contacts(engine, [ig.contact_id, 987654], "ghost", "ana")


def test_agent_identity_order(monkeypatch) -> None:
    monkeypatch.setenv("INBOX_AGENT", "env-agent")
    assert operations.resolve_agent("cli-agent", "cfg") == "cli-agent"
    assert operations.resolve_agent(None, "cfg") == "env-agent"
    monkeypatch.delenv("INBOX_AGENT")
    assert operations.resolve_agent(None, "cfg") == "cfg"
    assert operations.resolve_agent(None, None)  # the OS user name


def test_core_tables_match_the_models() -> None:
    """inbox.store.tables (the CLI's light tables) must mirror inbox.store.models column for column."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlmodel import SQLModel

    import inbox.store.models as models
    from inbox.store import tables, types

    for name, light in tables.metadata.tables.items():
        full = SQLModel.metadata.tables[name]
        assert [c.name for c in light.columns] == [c.name for c in full.columns], name
        for lc in light.columns:
            fc = full.columns[lc.name]
            assert lc.primary_key == fc.primary_key, (name, lc.name)
            assert isinstance(lc.type, tables.UTCDateTime) == isinstance(fc.type, models.UTCDateTime), (name, lc.name)
            for dialect in (sqlite.dialect(), postgresql.dialect()):
                assert str(lc.type.compile(dialect=dialect)) == str(fc.type.compile(dialect=dialect)), (name, lc.name)
    assert types.ACTIVE_STATUSES == models.ACTIVE_STATUSES
    assert types.STATUSES == tuple(s.value for s in models.TicketStatus)
    assert types.PRIORITY_RANK == models.PRIORITY_RANK
    assert types.REPLY_STATES == tuple(s.value for s in models.ReplyState)


def test_stats_backlog_breaches_and_first_response(engine) -> None:
    from inbox import stats
    from inbox.store.tables import ticket as T

    sf.ticket(engine, due_in=timedelta(minutes=-5))  # unanswered, past due
    sf.ticket(engine, channel="x", account_name="tokoshop-x", status="open")
    answered = [sf.ticket(engine, status="pending") for _ in range(4)]
    old = sf.ticket(engine, last_customer_ago=timedelta(days=4))  # open past the escalation time
    with engine.begin() as conn:
        for made, minutes in zip(answered, (10, 20, 30, 100)):
            created = conn.execute(sa.select(T.c.created_at).where(T.c.id == made.ticket_id)).scalar()
            conn.execute(T.update().where(T.c.id == made.ticket_id).values(
                first_response_at=created + timedelta(minutes=minutes),
                first_response_due_at=created + timedelta(minutes=25)))
    s = stats.compute(engine)
    assert s.backlog == {"instagram": {"new": 2, "pending": 4}, "x": {"open": 1}}
    assert s.first_response_overdue == 1 and s.escalated == 1
    assert s.first_response_count == 4 and s.answered_late == 2
    assert s.first_response_median_minutes == pytest.approx(25.0)
    assert s.first_response_p90_minutes == pytest.approx(79.0)
    assert old.ticket_id
    assert stats.percentile([], 0.5) is None
