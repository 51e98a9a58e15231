"""A page's audit trail: one `dedup` event per (ticket, rule), created and status events, the
repeats' pointers to the messages they repeat, and the merges rule 4 found."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import InboundMessage
from inbox.dedup.state import Candidates
from inbox.dedup.rules import R_ECHO, R_FOLLOWUP, R_ORDER_WEAK, R_SIMILAR, R_THREAD, Decision
from inbox.dedup.similar import repeat_reason
from inbox.store.fastpath import insert_values, many
from inbox.store.tables import message as _m, ticket_event as _ev
from inbox.tickets.workflow import merge_in_tx, transition_events

if TYPE_CHECKING:
    from inbox.ingest.writer import PageWriter

ACTOR = "sync"


def write_events(w: PageWriter, dd: Candidates, msgs: list[InboundMessage], made: list[Decision], tid: Any) -> None:
    """One `dedup` event per (ticket, rule) of the page, plus created / status events.

    A message simply added to its own thread's ticket (rule 3, or the brand's own message, rule
    2) is routine: its decision is on the message row, and an event per page per thread would
    bury the decisions an agent needs to see (attached, reopened, flagged, follow-up, our reply
    confirmed by its echo) under "appended" lines.
    """
    groups: dict[tuple[int, str], list[tuple[InboundMessage, Decision]]] = defaultdict(list)
    for m, d in zip(msgs, made):
        if d.ticket_key is None or d.rule == R_THREAD or (d.rule == R_ECHO and d.reply_id is None):
            continue
        groups[(d.ticket_key, d.rule)].append((m, d))
    rows = []
    for t in dd.tickets.values():
        for ev in t.events:
            rows.append((tid(t.key), w.now, ACTOR, ev["action"], ev["detail"]))
        rows += transition_events(t, tid, w.now, ACTOR)
    for (key, rule), items in groups.items():
        first = items[0][1]
        detail: dict[str, Any] = {
            "rule": rule,
            "reason": first.reason,
            "score": max(d.score for _m, d in items),
            "count": len(items),
            "messages": [m.external_id for m, _d in items[:20]],
        }
        considered: dict[Any, str] = {}
        for _m2, d in items:
            for k, why in d.considered:
                considered.setdefault(tid(k), why)
        if considered:
            detail["considered"] = [{"ticket": k, "why_not": why} for k, why in list(considered.items())[:10]]
        t = dd.tickets.get(key)
        if t is not None and t.possible_duplicate_of_id is not None and rule in (R_ORDER_WEAK, R_SIMILAR):
            detail["possible_duplicate_of"] = tid(t.possible_duplicate_of_id)
        if t is not None and t.linked_ticket_id is not None and rule == R_FOLLOWUP:
            detail["linked_ticket"] = t.linked_ticket_id
        rows.append((tid(key), w.now, ACTOR, "dedup", detail))
    for f in dd.flags:
        # The other ticket learns of it too: both point at each other.
        rows.append((tid(f.other), w.now, ACTOR, "dedup", {
            "rule": f.rule, "reason": f"ticket #{tid(f.ticket)} may be a duplicate of this one: {f.reason}",
            "score": 0.5, "count": 1, "possible_duplicate_of": tid(f.ticket),
        }))
        if f.rule == R_ORDER_WEAK and not dd.tickets[f.ticket].is_new:
            rows.append((tid(f.ticket), w.now, ACTOR, "dedup", {
                "rule": f.rule, "reason": f.reason, "score": 0.5, "count": 1, "possible_duplicate_of": tid(f.other),
            }))
    for t in dd.tickets.values():
        for change in t.priority_changes:
            rows.append((tid(t.key), w.now, ACTOR, "priority", dict(change)))
    names = ("ticket_id", "at", "actor", "action", "detail")
    many(w.conn, "event+", lambda: insert_values(w.conn, _ev, names), names, rows)


def point_repeats(msgs: list[InboundMessage], made: list[Decision], ids: dict[str, int]) -> tuple[list[Decision], list[int]]:
    """Repeats of a message of this same page point at it by id (`ids`: platform id -> message id):
    the decisions with the earlier message's id and reason, and the positions that changed."""
    out, changed = made, []
    for i, d in enumerate(made):
        if not isinstance(d.repeat_of, str):
            continue
        earlier = ids.get(d.repeat_of)
        if earlier is None:
            continue
        if out is made:
            out = list(made)
        head, _sep, _old = d.reason.rpartition("; customer repeated")
        out[i] = d._replace(reason=f"{head}; {repeat_reason(earlier, d.score * 100)}", repeat_of=earlier)
        changed.append(i)
    return out, changed


def page_ids(msgs: list[InboundMessage], first_id: int) -> dict[str, int]:
    """The ids a page's messages take when inserted in order from `first_id` (SQLite, under the write lock)."""
    return {m.external_id: first_id + i for i, m in enumerate(msgs)}


def mark_repeats(w: PageWriter, msgs: list[InboundMessage], made: list[Decision]) -> list[Decision]:
    """After the insert, where ids were not known before it (PostgreSQL): repeats of a message
    stored on this same page point at it, read back by platform id."""
    wanted = sorted({d.repeat_of for d in made if isinstance(d.repeat_of, str)})
    if not wanted:
        return made
    ids = {r.external_id: r.id for r in w.of_account("message?ids", _m, (_m.c.id, _m.c.external_id), "external_id", wanted)}
    out, changed = point_repeats(msgs, made, ids)
    rows = [(w.ref.channel, w.ref.id, msgs[i].external_id, out[i].repeat_of, out[i].reason) for i in changed]
    many(
        w.conn,
        "message~repeat",
        lambda: sa.update(_m)
        .where(_m.c.channel == sa.bindparam("b_channel"), _m.c.account_id == sa.bindparam("b_account"), _m.c.external_id == sa.bindparam("b_ext"))
        .values(repeat_of_id=sa.bindparam("b_of", type_=sa.Integer()), dedup_reason=sa.bindparam("b_reason", type_=sa.String())),
        ("b_channel", "b_account", "b_ext", "b_of", "b_reason"),
        rows,
    )
    return out


def merge_tickets(w: PageWriter, dd: Candidates, tid: Any) -> int:
    """Tickets rule 4 found to be one customer's: folded as `inbox merge` does (audited, `inbox unmerge` undoes it)."""
    for m in dd.merges:
        merge_in_tx(w.conn, tid(m.loser), tid(m.survivor), ACTOR, reason=m.reason)
    return len(dd.merges)
