"""Category, priority and SLA clocks for a new ticket, from the configurable keyword rules.

Matching is case-insensitive and word-ish: a keyword must start at a word boundary, so
"cancel" matches "cancelled" and "batal" matches "batalkan", but "resi" inside "presiden" does not.
When several rules match, the most urgent one wins (ties: the earlier rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from inbox.store.models import PRIORITY_RANK, Priority

if TYPE_CHECKING:
    from inbox.settings import Settings, TriageRule


@dataclass(frozen=True, slots=True)
class Triage:
    category: str | None
    priority: str
    priority_rank: int
    first_response_due_at: datetime
    escalation_due_at: datetime


def _keyword_body(keyword: str) -> str:
    """The keyword as a regex: its words in order, any whitespace between them (the word boundary
    before it is checked by the scan)."""
    return r"\s+".join(re.escape(p) for p in keyword.split())


@dataclass(frozen=True, slots=True)
class _Matcher:
    """The keyword rules compiled: one scan finds every place a keyword may start, then only the
    keywords beginning with that character are tried there."""

    scan: re.Pattern[str]  # zero-width: each position where some keyword matches
    by_first: dict[str, tuple[tuple[re.Pattern[str], tuple[int, int, str, str]], ...]]  # (pattern, rank key)


@lru_cache(maxsize=16)
def _compiled(rules: tuple[tuple[str, str, tuple[str, ...]], ...]) -> _Matcher:
    by_first: dict[str, list[tuple[re.Pattern[str], tuple[int, int, str, str]]]] = {}
    alternatives = []
    for order, (category, priority, keywords) in enumerate(rules):
        for keyword in keywords:
            lowered = keyword.lower().strip()
            if not lowered:
                continue
            body = _keyword_body(lowered)
            alternatives.append(body)
            key = (PRIORITY_RANK[priority], order, category, priority)
            by_first.setdefault(lowered[0], []).append((re.compile(body), key))
    # No keyword: a pattern that never matches.
    scan = re.compile(r"(?<!\w)(?=" + "|".join(alternatives) + ")" if alternatives else r"(?!)")
    return _Matcher(scan, {c: tuple(v) for c, v in by_first.items()})


_last: tuple[object, _Matcher] | None = None


def _compiled_rules(rules: list[TriageRule] | tuple[TriageRule, ...]) -> _Matcher:
    """`_compiled` for the settings' rules; the same rules object as last time (every new ticket of
    a sync) skips rebuilding the cache key from the rule models. Settings are never mutated."""
    global _last
    last = _last
    if last is not None and last[0] is rules:
        return last[1]
    compiled = _compiled(tuple((r.category, r.priority, tuple(r.keywords)) for r in rules))
    _last = (rules, compiled)
    return compiled


def classify(text: str | None, rules: list[TriageRule] | tuple[TriageRule, ...]) -> tuple[str | None, str]:
    """(category, priority) for a customer's text; (None, "normal") when nothing matches."""
    if not text:
        return None, Priority.NORMAL.value
    lowered = text.lower()
    matcher = _compiled_rules(rules)
    by_first = matcher.by_first
    best: tuple[int, int, str, str] | None = None
    # One pass of the text (in C) instead of one per keyword; keywords are few per position.
    for found in matcher.scan.finditer(lowered):
        pos = found.start()
        for pattern, key in by_first.get(lowered[pos], ()):
            if (best is None or key < best) and pattern.match(lowered, pos):
                best = key
    if best is None:
        return None, Priority.NORMAL.value
    return best[2], best[3]


def due_times(created_at: datetime, priority: str, settings: Settings) -> tuple[datetime, datetime]:
    """(first response due, escalation due) for a ticket created at `created_at`."""
    minutes = settings.sla.first_response_minutes
    first = minutes.get(priority, minutes.get(Priority.NORMAL.value, 240))
    return (
        created_at + timedelta(minutes=first),
        created_at + timedelta(days=settings.sla.escalation_days),
    )


def triage(text: str | None, created_at: datetime, settings: Settings) -> Triage:
    category, priority = classify(text, settings.rules)
    first_due, escalation_due = due_times(created_at, priority, settings)
    return Triage(category, priority, PRIORITY_RANK[priority], first_due, escalation_due)
