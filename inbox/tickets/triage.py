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


def _keyword_pattern(keyword: str) -> str:
    parts = [re.escape(p) for p in keyword.strip().split()]
    return r"(?<!\w)" + r"\s+".join(parts)


@lru_cache(maxsize=16)
def _compiled(rules: tuple[tuple[str, str, tuple[str, ...]], ...]) -> tuple[tuple[str, re.Pattern[str], str, str, int], ...]:
    """Per keyword: a cheap substring probe (its first word) and the exact word-ish pattern."""
    out = []
    for order, (category, priority, keywords) in enumerate(rules):
        for keyword in keywords:
            words = keyword.lower().split()
            if words:
                out.append((words[0], re.compile(_keyword_pattern(keyword.lower())), category, priority, order))
    return tuple(out)


_last: tuple[object, tuple[tuple[str, re.Pattern[str], str, str, int], ...]] | None = None


def _compiled_rules(rules: list[TriageRule] | tuple[TriageRule, ...]) -> tuple[tuple[str, re.Pattern[str], str, str, int], ...]:
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
    best: tuple[int, int, str, str] | None = None
    for probe, pattern, category, priority, order in _compiled_rules(rules):
        # most keywords are absent: the substring probe (C speed) skips the regex for them
        if probe in lowered and pattern.search(lowered):
            key = (PRIORITY_RANK[priority], order, category, priority)
            if best is None or key < best:
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
