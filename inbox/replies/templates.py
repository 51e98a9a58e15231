"""Canned replies (settings.templates) with variables filled from the ticket.

Variables: {customer} (name, else @handle), {handle}, {invoice} (the newest order reference quoted
in the ticket), {ticket} (its id), {agent}. Only these names are allowed; a template naming any
other field, or using attribute/index syntax, is refused before anything is sent.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import sqlalchemy as sa

from inbox.errors import UsageError
from inbox.store import tables as tb

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

VARIABLES = ("customer", "handle", "invoice", "ticket", "agent")


def fields(template: str) -> list[str]:
    """The variable names a template uses; UsageError for anything but plain known names."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"template is malformed: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in VARIABLES or spec or conv:
            raise UsageError(f"template uses {{{name}}}: allowed variables are " + ", ".join("{" + v + "}" for v in VARIABLES))
        names.append(name)
    return names


def ticket_variables(engine: Engine, ticket_id: int, agent: str, order_patterns: list[str] | None = None) -> dict[str, str]:
    t, c, r, m = tb.ticket, tb.contact, tb.ticket_ref, tb.message
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.id, c.c.name, c.c.handle).select_from(t.outerjoin(c, c.c.id == t.c.contact_id)).where(t.c.id == ticket_id)
        ).first()
        if row is None:
            from inbox.errors import NotFoundError

            raise NotFoundError(f"no ticket #{ticket_id}")
        refs = [x[0] for x in conn.execute(sa.select(r.c.ref).where(r.c.ticket_id == ticket_id))]
        invoice = ""
        if order_patterns:
            # The newest quoted reference wins (the customer may have corrected an earlier one).
            from inbox.dedup.identity import order_refs

            texts = conn.execute(
                sa.select(m.c.text).where(m.c.ticket_id == ticket_id, m.c.direction == "in").order_by(m.c.sent_at.desc()).limit(50)
            ).scalars()
            for text in texts:
                found = order_refs(text, order_patterns)
                if found:
                    invoice = found[-1]
                    break
        if not invoice and refs:
            invoice = sorted(refs)[-1]
    from inbox.safe_text import clean

    handle = clean(f"@{row.handle.lstrip('@')}", visible_bidi=False) if row.handle else ""
    return {
        "customer": clean(row.name or handle or "", visible_bidi=False).strip(),
        "handle": handle,
        "invoice": invoice,
        "ticket": str(row.id),
        "agent": agent,
    }


def render(template: str, variables: dict[str, str]) -> str:
    """Fill a template; refuses when a variable it needs has no value (e.g. no invoice quoted)."""
    needed = fields(template)
    missing = sorted({n for n in needed if not variables.get(n)})
    if missing:
        raise UsageError("the template needs " + ", ".join("{" + n + "}" for n in missing) + " but this ticket has no value for it")
    return template.format_map({k: variables.get(k, "") for k in VARIABLES})


def get_template(templates: dict[str, str], name: str) -> str:
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none configured (settings: [templates])"
        raise UsageError(f"no template named '{name}' (known: {known})")
    return templates[name]
