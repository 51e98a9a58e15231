"""Who a message is from: contacts as the dedup rules compare them, order references, normalized text,
and which contacts are one customer for routing a reply.

Handles and names are reduced to letters and digits (`inbox.dedup.chatnorm.ident`) and only
identify a customer across channels. A contact linked into a person counts as that person for
routing only when the link is trusted: made by an agent (`inbox link`, audited with the reason)
or by strong evidence — the same platform identity (reason starting with `STRONG_EVIDENCE`). A
link the sync made from weak evidence (a shared invoice number, a similar name) never decides
where a reply goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from inbox.dedup.chatnorm import chat_text, ident
from inbox.store import tables as tb

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

PE = tb.person_event
C = tb.contact

MIN_SIMILAR_CHARS = 15  # greetings ("halo kak") are alike by nature; not evidence of a duplicate
MIN_RAW_CHARS = 5  # below this no text normalizes to MIN_SIMILAR_CHARS: "g g" (3) -> "tidak tidak" (11), "g g g" (5) -> 17

# The reason a link made without an agent must start with to be trusted for routing.
STRONG_EVIDENCE = "same platform identity"
SYSTEM_ACTORS = frozenset({"sync", "dedup"})


def trusted_persons(conn: Connection, contact_ids: Iterable[int]) -> dict[int, int]:
    """contact id -> person id, for the contacts whose current person link is trusted."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    linked = dict(conn.execute(sa.select(C.c.id, C.c.person_id).where(C.c.id.in_(ids), C.c.person_id.is_not(None))).all())
    if not linked:
        return {}
    out: dict[int, int] = {}
    events = conn.execute(
        sa.select(PE.c.contact_id, PE.c.person_id, PE.c.actor, PE.c.reason)
        .where(PE.c.contact_id.in_(sorted(linked)), PE.c.action == "link")
        .order_by(PE.c.id.desc())
    ).all()
    seen: set[int] = set()
    for ev in events:
        if ev.contact_id in seen or linked.get(ev.contact_id) != ev.person_id:
            continue
        seen.add(ev.contact_id)  # the latest link into its current person decides
        if ev.actor not in SYSTEM_ACTORS or (ev.reason or "").startswith(STRONG_EVIDENCE):
            out[ev.contact_id] = ev.person_id
    return out


@lru_cache(maxsize=16)
def order_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def order_refs(text: str | None, patterns: list[str] | tuple[str, ...]) -> list[str]:
    """Order references quoted in `text`, upper-cased, in order of appearance, without repeats."""
    return refs_in(text, order_regex(tuple(patterns)))


def refs_in(text: str | None, rx: re.Pattern[str] | None) -> list[str]:
    if not text or rx is None:
        return []
    seen: dict[str, None] = {}
    for m in rx.finditer(text):
        seen.setdefault(m.group(0).upper(), None)
    return list(seen)


def normalize_text(text: str | None) -> str:
    """Text as rule 5 compares it (Indonesian chat style undone: `inbox.dedup.chatnorm.chat_text`)."""
    return chat_text(text)


def _ident(text: str | None) -> str | None:
    return ident(text)


@dataclass(slots=True)
class ContactInfo:
    id: int
    channel: str
    person_id: int | None
    handle: str | None
    name: str | None
    _idents: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def idents(self) -> frozenset[str]:
        """Handle and name reduced to letters and digits (computed when first asked: rule 4 only)."""
        if self._idents is None:
            self._idents = frozenset(k for k in (_ident(self.handle), _ident(self.name)) if k)
        return self._idents

    def keys(self) -> list[tuple[str, Any]]:
        """Index keys under which the same human may be found by rule 5 (no names: see above)."""
        out: list[tuple[str, Any]] = [("c", self.id)]
        if self.person_id is not None:
            out.append(("p", self.person_id))
        handle = _ident(self.handle)
        if handle is not None:
            out.append(("h", handle))
        return out

    def same_person(self, other: ContactInfo, *, names: bool = True) -> str | None:
        """Why two contacts are the same human, or None.

        Handles and names only count across channels: on one channel two contacts are two
        platform accounts, and two customers may well share a name. `names=False` (rule 5):
        only the same contact, linked contacts, or the same handle on another channel.
        """
        if self.id == other.id:
            return "same contact"
        if self.person_id is not None and self.person_id == other.person_id:
            return "linked contacts (same person)"
        if self.channel != other.channel:
            if names:
                shared = self.idents & other.idents
                what = "handle/name"
            else:
                mine, theirs = _ident(self.handle), _ident(other.handle)
                shared = frozenset((mine,)) if mine is not None and mine == theirs else frozenset()
                what = "handle"
            if shared:
                key = min(shared)
                return f"same customer by {what}: '{self._source(key)}' on {self.channel}, '{other._source(key)}' on {other.channel}"
        return None

    def describe(self) -> str:
        who = self.handle and "@" + self.handle.lstrip("@") or self.name or f"contact {self.id}"
        return f"{who} on {self.channel}"

    def _source(self, ident: str) -> str:
        return (self.handle if _ident(self.handle) == ident else self.name) or ident
