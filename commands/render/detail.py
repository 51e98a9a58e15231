"""`inbox show`: the ticket's header, the conversation across its threads, notes and events,
and `--why`; also one quarantined item. Customer text always goes in as plain Text, never markup.
"""

from __future__ import annotations

from typing import Any

from commands.render.cells import PRIORITY_STYLE, STATUS_STYLE, window


def print_detail(out: Any, detail: Any, *, full: bool, human_agent_tag: bool = True, zone: Any = None) -> None:
    """The ticket's header lines, gaps, the conversation, private notes and events."""
    from datetime import datetime, timezone

    from rich.rule import Rule
    from rich.text import Text

    from connectors.channels import find
    from inbox.replies.windows import format_duration, is_meta, reply_window
    from inbox.safe_text import clean, display_name, fold, one_line

    from inbox.timefmt import local_time, resolve_zone

    zone = zone or resolve_zone()
    t = detail.ticket
    now = datetime.now(timezone.utc)
    info = find(t.channel)
    label = info.label if info is not None else t.channel
    head = Text.assemble(
        (f"#{t.id} ", "bold"), (label, "bold"), f" · {one_line(t.account, 100)} · ", (display_name(t.customer_handle, t.customer_name), "bold"),
        f" (contact {t.contact_id}" + (f", person {t.person_id})" if t.person_id else ")"),
    )
    out.print(head)
    out.print(Text.assemble(
        "status ", (t.status, STATUS_STYLE.get(t.status, "")), " · priority ", (t.priority, PRIORITY_STYLE.get(t.priority, "")),
        " · assignee ", (one_line(t.assignee, 40) if t.assignee else "none"),
        " · tags ", (one_line(", ".join(t.tags), 200) or "none"), (f" · category {one_line(t.category, 60)}" if t.category else ""),
    ))
    line = Text.assemble("created ", local_time(t.created, zone), " · updated ", local_time(t.updated, zone))
    due = t.next_deadline()
    if due and t.status in ("new", "open", "pending"):
        what = "first response" if t.first_response_at is None else "escalation"
        left = due - now
        line.append(f" · {what} " + (f"overdue by {format_duration(-left)}" if left.total_seconds() < 0 else f"due in {format_duration(left)}"),
                    style="bold red" if left.total_seconds() < 0 else "")
    if is_meta(t.channel):
        d = reply_window(t.channel, t.last_customer_message_at, now, human_agent_tag=human_agent_tag)
        line.append(" · reply window ")
        line.append(f"{d.policy.value}, " if d.policy else "", style="")
        line.append(*window(t, now, human_agent_tag))
    out.print(line)
    related = []
    for key, ids in detail.related.items():
        related.append(f"{key.replace('_', ' ')} " + ", ".join(f"#{i}" for i in ids))
    if detail.merged_ids:
        related.append("merged here: " + ", ".join(f"#{i}" for i in detail.merged_ids))
    if t.repeated:
        related.append(t.repeated)
    if related:
        out.print(Text(" · ".join(related), style="magenta"))
    for g in detail.gaps:
        out.print(Text("⚠ " + gap_text(g, zone) + f" (detected {local_time(g.detected_at, zone)})", style="bold yellow"))
    if t.has_gap and not detail.gaps:
        out.print(Text("⚠ some older messages of this thread could not be read (platform history limit)", style="bold yellow"))
    # Where the agent reads: in the conversation, just before the oldest message still readable.
    gap_before: dict[int, Any] = {}  # id() of the message the gap comes just before -> the gap
    for g in detail.gaps:
        first = next((m for m in detail.messages if m.conversation_id == g.conversation_id and (g.before is None or m.sent_at >= g.before)), None)
        if first is not None:
            gap_before.setdefault(id(first), g)
    # Titles as Text (what a str title becomes, without the markup and emoji parsing).
    out.print(Rule(Text("conversation", style="rule.text"), style="dim"))
    for m in detail.messages:
        if id(m) in gap_before:
            out.print(Text("┄┄ " + gap_text(gap_before[id(m)], zone) + " ┄┄", style="yellow"))
        who = display_name(m.author_handle, m.author_name, m.author_id) if m.direction == "in" else f"{m.account}"
        arrow = "←" if m.direction == "in" else "→"
        head = Text.assemble(
            (local_time(m.sent_at, zone), "dim"), "  ", (arrow + " ", "cyan" if m.direction == "in" else "green"), (who, "bold"),
            (f"  {m.channel}", "dim"), (f"  [{m.kind}]" if m.kind != "text" else "", "magenta"),
            (f"  reply #{m.reply_id}" if m.reply_id else "", "green"), (f"  #{m.ticket_id}" if m.ticket_id != t.id else "", "dim"),
        )
        out.print(head)
        body = clean(m.text) if full else fold(m.text)
        if body:
            out.print(Text(body), overflow="fold")
        for a in m.attachments:
            desc = " ".join(p for p in (one_line(str(a.get("type") or "file"), 40), one_line(str(a.get("mime") or ""), 80),
                                        f"{a['size']:,} bytes" if isinstance(a.get("size"), int) else "", one_line(str(a.get("name") or ""), 60),
                                        one_line(str(a.get("url") or ""), 100)) if p)
            out.print(Text("   📎 " + desc, style="blue"), overflow="fold")
        for flag in m.flags:
            out.print(Text(f"   ⚠ {flag_text(flag)}", style="yellow"), overflow="fold")
        if m.dedup_rule:
            score = f" (score {m.dedup_score:.2f})" if isinstance(m.dedup_score, (int, float)) else ""
            repeat = f" · repeat of message {m.repeat_of_id}" if m.repeat_of_id else ""
            out.print(Text(f"   message {m.id} · dedup: {clean(m.dedup_rule)}{score}{repeat} — {one_line(m.dedup_reason, 200)}", style="dim"))
    if not detail.messages:
        out.print(Text("(no messages)", style="dim"))
    if detail.notes:
        out.print(Rule(Text("notes (private)", style="rule.text"), style="dim"))
        for n in detail.notes:
            out.print(Text.assemble((local_time(n.at, zone), "dim"), "  ", (one_line(n.actor, 40), "bold"), ": "), end="")
            out.print(Text(fold((n.detail or {}).get("text"))), overflow="fold")
    events = [e for e in detail.events if e.action != "note"]
    if events:
        out.print(Rule(Text("events", style="rule.text"), style="dim"))
        for e in events:
            d = e.detail or {}
            if e.action == "dedup" and "rule" in d:
                # The message ids are in --json; here the decision and its reason are what matter.
                detail_text = f"{d.get('rule')}: {d.get('reason')}" + (f" ({d['count']} messages)" if d.get("count", 1) != 1 else "")
            else:
                detail_text = ", ".join(f"{k}={v}" for k, v in d.items())
            out.print(Text.assemble((local_time(e.at, zone), "dim"), "  ", (one_line(e.actor, 40), "bold"), f" {e.action} ",
                                    (one_line(detail_text, 160), "dim")))


def gap_text(g: Any, zone: Any) -> str:
    """`6 messages missing, written after 2026-11-20 15:00 WIB and before 2026-11-21 16:13 WIB …`"""
    from inbox.timefmt import local_time

    count = "an unknown number of messages" if g.missing is None else f"{g.missing:,} message{'' if g.missing == 1 else 's'}"
    when = []
    if g.after is not None:
        when.append(f"after {local_time(g.after, zone)}")
    elif g.before is not None:
        when.append("since the thread began")
    if g.before is not None:
        when.append(f"before {local_time(g.before, zone)}")
    return f"{count} missing" + (", written " + " and ".join(when) if when else "") + ": past the platform's readable history"


def print_why(out: Any, detail: Any) -> None:
    """`inbox show --why`: the other tickets dedup considered for this one, and why they were not chosen."""
    from rich.rule import Rule
    from rich.text import Text

    from inbox.safe_text import one_line

    out.print(Rule(Text("why: other tickets considered", style="rule.text"), style="dim"))
    lines = []
    for e in detail.events:
        d = e.detail or {}
        if e.action == "dedup":
            for c in d.get("considered") or []:
                lines.append(f"#{c.get('ticket')}: not chosen — {c.get('why_not')}")
            if d.get("possible_duplicate_of"):
                lines.append(f"#{d['possible_duplicate_of']}: flagged possible duplicate, not grouped — {d.get('reason')}")
        elif e.action in ("merge", "merge_in") and d.get("reason"):
            other = d.get("into") or d.get("from")
            lines.append(f"#{other}: merged — {d.get('reason')}")
    seen: set[str] = set()
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.print(Text(one_line(line, 240)))
    if not lines:
        out.print(Text("no other ticket was considered: no shared order reference, linked person or near-identical text", style="dim"))


def flag_text(flag: str) -> str:
    from connectors.enums import MessageFlag
    from inbox.safe_text import clean

    try:
        return MessageFlag(flag).description
    except ValueError:  # a flag this version does not know
        return clean(flag)


def print_quarantined(out: Any, item: Any, zone: Any) -> None:
    """One quarantined item: why, where from, and its raw payload exactly as received (shown safely)."""
    import json

    from rich.text import Text

    from inbox.safe_text import clean, one_line
    from inbox.timefmt import local_time

    out.print(Text.assemble((f"#{item.id} ", "bold"), f"{one_line(item.account, 40)} · {item.channel} · received ",
                            local_time(item.received_at, zone), (" · resolved" if item.resolved_at else "", "dim")))
    if item.external_id or item.thread_id:
        out.print(Text(f"platform id {one_line(item.external_id or '–', 120)} · thread {one_line(item.thread_id or '–', 120)}"))
    out.print(Text(f"reason: {one_line(item.reason, 500)}", style="yellow"))
    # The payload is the platform's (or a customer's) text: through the safe-text cleaner, never markup.
    out.print(Text(clean(json.dumps(item.raw, ensure_ascii=False, indent=2, default=str))), overflow="fold")
