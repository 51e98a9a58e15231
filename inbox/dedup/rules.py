"""Dedup against existing tickets: which ticket does each new message of a page belong to?

The rules of the README ("Dedup rules"), in order, each decision carrying its rule, reason, score
and the other tickets it considered:

1. same platform message id  -> already stored, nothing to do (done by the ingest's key lookup);
2. our own message (echo)    -> outbound message on its ticket (the Reply's, else the thread's);
3. thread with an active ticket -> append; resolved within `reopen_days` -> reopen;
   resolved longer ago, or closed -> a new ticket linked to the old one;
4. the same order reference quoted within `order_window_days` in another active ticket by a
   matching customer (the same contact, contacts an agent linked into one person, or the same
   handle / name on another channel, compared without case, accents, spacing or emoji) -> one
   ticket: a message that would open a ticket is attached (score 1.0); a thread that already has
   its ticket has the other ticket merged into the older one (audited, `inbox unmerge` undoes it).
   An active ticket of the same linked person -> attach (0.9). The same order reference from
   someone else -> flagged "possible duplicate", both tickets pointing at each other; never
   attached, never a person link (an order number is not an identity);
5. near-identical text after Indonesian chat normalization (`inbox.dedup.chatnorm`) from the same
   person (the same contact, linked contacts, or the same handle on another channel) within
   `similarity_window_hours`: in another thread -> new ticket flagged as possible duplicate; in
   the same thread -> stored as a repeat of the earlier message (ticket's repeat count; past its
   first-response due it raises the priority one step). Never dropped. A display name alone is
   not enough here: complaints are alike ("akun saya diblokir") and so are names.

Rule 4 is what makes the grouping independent of the order in which accounts are polled and pages
stored: whichever of two matching messages is stored second finds the first (in the store, or
earlier in the same transaction) and joins it, and a reference that shows up later in a thread
joins the tickets then.

`decide` is pure: it does no I/O and reads only the page's `Candidates`, loaded beforehand by
`inbox.dedup.candidates.load_candidates` in a few queries; it runs message by message in time
order and updates them, so matches *within* the same page work too. Rule 5's text comparisons are
in `inbox.dedup.similar`; the ticket transitions (append, reopen, a new ticket, the raised
priority) in `inbox.tickets.workflow`.
"""

from __future__ import annotations

from typing import NamedTuple

from connectors.base import InboundMessage
from connectors.enums import Direction
from inbox.dedup.state import Candidates, Flag, Merge, RefHit, Recent, Said
from inbox.dedup.identity import MIN_RAW_CHARS, ContactInfo
from inbox.dedup.similar import repeat_reason, repeated, similar_elsewhere
from inbox.tickets.workflow import TicketState, brand_wrote, customer_wrote, escalate_on_repeat, new_ticket, reopen

# Rule labels stored on Message.dedup_rule and in TicketEvent details.
R_ECHO = "2:echo"
R_THREAD = "3:thread"
R_REOPEN = "3:reopen"
R_FOLLOWUP = "3:follow-up"
R_ORDER = "4:order"
R_PERSON = "4:person"
R_ORDER_WEAK = "4:order-weak"
R_SIMILAR = "5:similar"
R_REPEAT = "5:repeat"
R_NEW = "new"

MAX_CONSIDERED = 10  # other tickets listed per decision (`inbox show --why`)


class Decision(NamedTuple):
    """What rule placed a message where (an immutable value; one per new message, so a tuple)."""

    rule: str
    reason: str
    score: float
    ticket_key: int | None  # None: an echo in a thread without a ticket yet
    reply_id: int | None = None
    considered: tuple[tuple[int, str], ...] = ()  # (other ticket key, why it was not chosen)
    repeat_of: int | str | None = None  # rule 5 in its thread: the earlier message's id (or platform id, same page)


def _canonical(key: int) -> tuple[bool, int]:
    """Which of several tickets found to be one survives: the oldest stored one, else the first
    created on this page (keys count down from -1)."""
    return (key < 0, abs(key))


def decide(msg: InboundMessage, cands: Candidates, conv_id: int, contact: ContactInfo) -> Decision:
    """The ticket of one new message of the page (`conv_id` its thread, `contact` its customer), with
    the rule, reason, score and the other tickets considered. No I/O: it reads and updates `cands`."""
    if msg.direction is Direction.OUT:
        return _echo(cands, msg, conv_id)
    current = cands.resolve(cands.conv_ticket.get(conv_id))
    if current is not None:
        cands.conv_ticket[conv_id] = current
    ticket = cands.tickets.get(current) if current is not None else None
    decision: Decision | None = None
    if ticket is not None:
        if ticket.active:
            decision = Decision(R_THREAD, f"thread has {ticket.status} ticket {_label(ticket)}", 1.0, ticket.key)
        elif ticket.resolved_at is not None and msg.sent_at <= ticket.resolved_at:
            # Written before the ticket was resolved (late delivery): history, not a reopen.
            decision = Decision(R_THREAD, f"written before ticket #{ticket.key} was resolved", 1.0, ticket.key)
        elif (
            ticket.status == "resolved"
            and ticket.merged_into_id is None
            and ticket.resolved_at is not None
            and msg.sent_at - ticket.resolved_at <= cands.reopen_window
        ):
            reopen(ticket)
            days = (msg.sent_at - ticket.resolved_at).total_seconds() / 86400
            decision = Decision(
                R_REOPEN,
                f"ticket #{ticket.key} was resolved {days:.1f} days ago (reopen window {cands.settings.dedup.reopen_days:g} days)",
                1.0,
                ticket.key,
            )
    if decision is not None:
        assert ticket is not None
        decision = _same_order_elsewhere(cands, msg, contact, ticket, decision)
        home = cands.tickets[decision.ticket_key]  # type: ignore[index]
        _append(cands, home, msg, contact)
        decision = _repeat(cands, msg, conv_id, home, decision)
    else:
        previous = ticket.key if ticket is not None else None
        decision = _cross_channel(cands, msg, contact, previous)
        cands.conv_ticket[conv_id] = decision.ticket_key
    _remember_said(cands, conv_id, msg)
    return decision


def _label(t: TicketState | int) -> str:
    key = t if isinstance(t, int) else t.key
    return f"#{key}" if key > 0 else "(new in this sync)"


def _echo(cands: Candidates, msg: InboundMessage, conv_id: int, *, adopted: bool = False) -> Decision:
    reply = cands.replies.get(msg.external_id)
    key: int | None
    if reply is not None:
        key = cands.resolve(reply[1])
        reason = f"echo of our reply #{reply[0]}"
    else:
        key = cands.resolve(cands.conv_ticket.get(conv_id))
        reason = "sent by the brand account (native app or another tool)"
    ticket = cands.tickets.get(key) if key is not None else None
    if ticket is not None:
        brand_wrote(ticket, msg.sent_at, adopted=adopted)
    return Decision(R_ECHO, reason, 1.0, key, reply[0] if reply else None)


def adopt_echoes(cands: Candidates, messages: list[InboundMessage], made: list[Decision], msg_conv: list[int]) -> None:
    """Our messages decided before their thread had a ticket (the oldest readable message of a
    thread, or older than the customer's first message on this page) join the ticket the page
    gave the thread: every message of a ticketed thread belongs to its ticket."""
    for i, d in enumerate(made):
        if d.rule == R_ECHO and d.ticket_key is None and cands.resolve(cands.conv_ticket.get(msg_conv[i])) is not None:
            made[i] = _echo(cands, messages[i], msg_conv[i], adopted=True)


def _append(cands: Candidates, ticket: TicketState, msg: InboundMessage, contact: ContactInfo) -> None:
    """A customer message joins `ticket`: the workflow's transition, plus what later rules look at."""
    customer_wrote(ticket, msg)
    sent_at = msg.sent_at
    for ref in cands.refs(msg):
        cands.add_hit(ref, RefHit(ticket.key, contact.id, sent_at))
        if (ticket.key, ref) not in cands.known_refs:
            cands.known_refs.add((ticket.key, ref))
            ticket.new_refs.add(ref)
    text = msg.text
    if text is not None and len(text) >= MIN_RAW_CHARS:
        cands.add_recent(Recent(ticket.key, contact, text, sent_at))


def _remember_said(cands: Candidates, conv_id: int, msg: InboundMessage) -> None:
    if msg.text is not None and len(msg.text) >= MIN_RAW_CHARS:
        cands.said[conv_id].append(Said(msg.external_id, msg.text, msg.sent_at))


# ── rule 4: order references ───────────────────────────────────────────────────────────


def _order_matches(cands: Candidates, msg: InboundMessage, contact: ContactInfo, own: int | None
) -> tuple[dict[int, str], dict[int, str], list[tuple[int, str]]]:
    """Other tickets quoting the message's order references: (same customer: key -> why,
    another customer: key -> why, considered and not chosen: (key, why not))."""
    strong: dict[int, str] = {}
    weak: dict[int, str] = {}
    considered: dict[int, str] = {}
    for ref in cands.refs(msg):
        for hit in cands.ref_hits.get(ref, ()):
            key = cands.resolve(hit.ticket_key)
            if key is None or key == own or key in strong:
                continue
            cand = cands.tickets.get(key)
            if cand is None:
                continue
            if not cand.active:
                considered.setdefault(key, f"quotes {ref} but is {cand.status}")
                continue
            if not cands.synced(cand):
                considered.setdefault(key, f"quotes {ref} but belongs to an account no longer synced")
                continue
            apart = abs(hit.sent_at - msg.sent_at)
            if apart > cands.order_window:
                considered.setdefault(key, f"quotes {ref} {apart.total_seconds() / 86400:.0f} days apart (window {cands.settings.dedup.order_window_days:g} days)")
                continue
            other = cands.contacts.get(hit.contact_id)
            why = contact.same_person(other) if other is not None else None
            if why:
                strong[key] = f"same invoice {ref} and {why}"
                weak.pop(key, None)
                considered.pop(key, None)
            elif key not in weak:
                who = other.describe() if other is not None else "another customer"
                weak[key] = f"invoice {ref} is also in active ticket {_label(key)} from another customer ({who})"
        for key in sorted(cands.ref_tickets.get(ref, ())):
            cand = cands.tickets.get(key)
            if cand is not None and not cand.active and key != own:
                considered.setdefault(key, f"quotes {ref} but is {cand.status}")
    for key in list(considered):
        if key in strong or key in weak:
            del considered[key]
    return strong, weak, sorted(considered.items(), key=lambda kv: _canonical(kv[0]))


def _merge(cands: Candidates, keys: list[int], reason: str) -> int:
    """Fold tickets found to be one into the canonical survivor (written after the page)."""
    roots = sorted({k for k in (cands.resolve(k) for k in keys) if k is not None}, key=_canonical)
    survivor = roots[0]
    for loser in roots[1:]:
        t = cands.tickets[loser]
        t.merged_into_id = survivor
        cands.merges.append(Merge(loser, survivor, reason))
        for conv_id, key in list(cands.conv_ticket.items()):
            if key == loser:
                cands.conv_ticket[conv_id] = survivor
    return survivor


def _flag(cands: Candidates, key: int, other: int, rule: str, reason: str) -> None:
    """`key` is a possible duplicate of `other`; the other ticket points back unless it already points somewhere."""
    mine, theirs = cands.tickets[key], cands.tickets[other]
    if mine.possible_duplicate_of_id is None:
        mine.possible_duplicate_of_id = other
        if not mine.is_new:
            mine.set_duplicate_of = other
    if theirs.possible_duplicate_of_id is None:
        theirs.possible_duplicate_of_id = key
        if not theirs.is_new:
            theirs.set_duplicate_of = key
    cands.flags.append(Flag(key, other, rule, reason))


def _same_order_elsewhere(cands: Candidates, msg: InboundMessage, contact: ContactInfo, home: TicketState, decision: Decision) -> Decision:
    """A message added to its thread's ticket quoting a reference another active ticket quotes:
    the same customer -> the two tickets are one (merged); someone else -> both flagged."""
    refs = cands.refs(msg)
    if not refs or not home.active:  # a late message of a resolved ticket is its history
        return decision
    own = {home.key}
    hit_keys, ref_tickets = cands.hit_keys, cands.ref_tickets
    if all(hit_keys.get(ref, own) <= own and ref_tickets.get(ref, own) <= own for ref in refs):
        return decision  # only its own ticket quotes these (the usual case)
    strong, weak, considered = _order_matches(cands, msg, contact, home.key)
    if strong:
        first = min(strong, key=_canonical)
        why = strong[first]
        survivor = _merge(cands, [home.key, *strong], f"{why}: tickets {', '.join(_label(k) for k in sorted({home.key, *strong}, key=_canonical))} are one")
        for key, reason in sorted(strong.items(), key=lambda kv: _canonical(kv[0])):
            considered.append((key, f"merged: {reason}"))
        # The thread now feeds the surviving ticket, and so does this message.
        return decision._replace(
            reason=f"{decision.reason}; {why}: merged with ticket {_label(first)}",
            ticket_key=survivor,
            considered=tuple(considered[:MAX_CONSIDERED]),
        )
    if weak:
        other = min(weak, key=_canonical)
        _flag(cands, home.key, other, R_ORDER_WEAK, weak[other])
        extra = [(k, f"{why}: only flagged") for k, why in sorted(weak.items(), key=lambda kv: _canonical(kv[0]))]
        return decision._replace(reason=f"{decision.reason}; {weak[other]}: flagged possible duplicate", considered=tuple((extra + considered)[:MAX_CONSIDERED]))
    return decision._replace(considered=tuple(considered[:MAX_CONSIDERED])) if considered else decision


def _cross_channel(cands: Candidates, msg: InboundMessage, contact: ContactInfo, previous: int | None) -> Decision:
    strong, weak, considered = _order_matches(cands, msg, contact, previous)
    # Rule 4a: the same order reference from the same customer in an active ticket.
    if strong:
        ordered = sorted(strong, key=_canonical)
        key = _merge(cands, ordered, f"{strong[ordered[0]]}: tickets {', '.join(_label(k) for k in ordered)} are one") if len(ordered) > 1 else ordered[0]
        cand = cands.tickets[key]
        _append(cands, cand, msg, contact)
        for k, why in weak.items():
            considered.append((k, f"{why}: a different customer"))
        return Decision(R_ORDER, f"{strong[ordered[0]]}: attached to ticket {_label(cand)}", 1.0, key,
                        considered=tuple(considered[:MAX_CONSIDERED]))
    # Rule 4b: the same (linked) person has an active ticket on another thread.
    if contact.person_id is not None:
        for k in cands.by_person.get(contact.person_id, ()):
            key = cands.resolve(k)
            cand = cands.tickets.get(key) if key is not None else None
            if cand is None or not cand.active or key == previous or not cands.synced(cand):
                continue
            _append(cands, cand, msg, contact)
            return Decision(R_PERSON, f"same person has active ticket {_label(cand)} on another thread", 0.9, cand.key,
                            considered=tuple(considered[:MAX_CONSIDERED]))
    # A new ticket, maybe flagged.
    ticket = _new_ticket(cands, msg, contact)
    if previous is not None:
        ticket.linked_ticket_id = previous
    if weak:
        key = min(weak, key=_canonical)
        _flag(cands, ticket.key, key, R_ORDER_WEAK, weak[key])
        _append(cands, ticket, msg, contact)
        others = [(k, f"{why}: only flagged") for k, why in sorted(weak.items(), key=lambda kv: _canonical(kv[0]))]
        return Decision(R_ORDER_WEAK, weak[key], 0.5, ticket.key, considered=tuple((others + considered)[:MAX_CONSIDERED]))
    similar = similar_elsewhere(cands, msg, contact, ticket.key)
    _append(cands, ticket, msg, contact)
    if similar is not None:
        key, score, why = similar
        reason = f"near-identical text ({score:.0f}%) to ticket {_label(key)}, {why}"
        if key in cands.tickets:
            _flag(cands, ticket.key, key, R_SIMILAR, reason)
        else:
            ticket.possible_duplicate_of_id = key
        return Decision(R_SIMILAR, reason, round(score / 100, 3), ticket.key, considered=tuple(considered[:MAX_CONSIDERED]))
    if previous is not None:
        old = cands.tickets[previous]
        why = "closed" if old.status == "closed" else "resolved more than the reopen window ago"
        return Decision(R_FOLLOWUP, f"thread's ticket #{previous} was {why}: follow-up ticket", 1.0, ticket.key,
                        considered=tuple(considered[:MAX_CONSIDERED]))
    return Decision(R_NEW, "no open ticket for this thread, order reference or person", 1.0, ticket.key,
                    considered=tuple(considered[:MAX_CONSIDERED]))


# ── rule 5 ─────────────────────────────────────────────────────────────────────────────


def _repeat(cands: Candidates, msg: InboundMessage, conv_id: int, ticket: TicketState, decision: Decision) -> Decision:
    """The customer sent the same thing again in this thread: stored, marked, counted, and past the
    first-response due the ticket's priority goes up one step."""
    found = repeated(cands, msg, conv_id)
    if found is None:
        return decision
    said, score = found
    ticket.repeats += 1
    reason = f"{decision.reason}; {repeat_reason(said.ref, score)}"
    raised = escalate_on_repeat(ticket, msg, enabled=cands.settings.dedup.repeat_raises_priority)
    if raised is not None:
        reason += f"; past the first-response due: priority raised to {raised}"
    return decision._replace(rule=R_REPEAT, reason=reason, score=round(score / 100, 3), repeat_of=said.ref)


def _new_ticket(cands: Candidates, msg: InboundMessage, contact: ContactInfo) -> TicketState:
    key = cands.next_new
    cands.next_new -= 1
    ticket = cands.tickets[key] = new_ticket(key, msg, contact.id, contact.person_id)
    if contact.person_id is not None:
        cands.by_person[contact.person_id].append(key)
    return ticket
