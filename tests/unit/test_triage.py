"""Triage keywords: word-ish matching, the most urgent rule winning, and the one-scan matcher
giving exactly what one search per keyword gives."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.settings import DEFAULT_RULES, TriageRule
from inbox.store.models import PRIORITY_RANK
from inbox.tickets.triage import classify

RULES = [
    TriageRule(category="fraud", priority="urgent", keywords=["penipuan", "tipu"]),
    TriageRule(category="blocked", priority="high", keywords=["akun diblokir", "diblokir"]),
    TriageRule(category="refund", priority="high", keywords=["refund", "dana kembali"]),
    TriageRule(category="cancel", priority="normal", keywords=["cancel", "batal"]),
    TriageRule(category="shipping", priority="normal", keywords=["resi", "#kirim", "c.o.d"]),
    TriageRule(category="thanks", priority="low", keywords=["  terima   kasih  "]),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, "normal")),
        (None, (None, "normal")),
        ("halo kak", (None, "normal")),
        ("order cancelled", ("cancel", "normal")),  # a keyword starts a word: "cancel" in "cancelled"
        ("tolong batalkan", ("cancel", "normal")),
        ("presiden", (None, "normal")),  # "resi" inside a word is not a keyword
        ("no resi?", ("shipping", "normal")),
        ("RESI 123", ("shipping", "normal")),  # case-insensitive
        ("mau #kirim", ("shipping", "normal")),  # a keyword starting with punctuation
        ("a#kirim", (None, "normal")),  # the character before a keyword must not be a word character
        ("pakai C.O.D ya", ("shipping", "normal")),
        ("cxoxd", (None, "normal")),  # "." is literal, not any character
        ("dana\n  kembali", ("refund", "high")),  # any whitespace between a keyword's words
        ("danakembali", (None, "normal")),
        ("terima kasih", ("thanks", "low")),  # the keyword's own spaces are trimmed
        ("refund dan batal", ("refund", "high")),  # the most urgent rule wins
        ("batal, akun diblokir, ditipu", ("blocked", "high")),  # "tipu" inside "ditipu" does not count
        ("batal, akun diblokir, tipu", ("fraud", "urgent")),
        ("akun saya diblokir", ("blocked", "high")),
        ("refund diblokir", ("blocked", "high")),  # a tie in urgency: the earlier rule
        ("Penipuan!!", ("fraud", "urgent")),
    ],
)
def test_keyword_table(text: str | None, expected: tuple[str | None, str]) -> None:
    assert classify(text, RULES) == expected


def test_no_rules_and_empty_keywords_match_nothing() -> None:
    assert classify("refund", []) == (None, "normal")
    assert classify("refund", [TriageRule(category="x", priority="high", keywords=["", "  "])]) == (None, "normal")


def _reference(text: str | None, rules: list[TriageRule]) -> tuple[str | None, str]:
    """The rule as the README states it: one search per keyword, the most urgent match, then the earlier rule."""
    if not text:
        return None, "normal"
    best = None
    for order, rule in enumerate(rules):
        for keyword in rule.keywords:
            words = keyword.lower().split()
            if words and re.search(r"(?<!\w)" + r"\s+".join(map(re.escape, words)), text.lower()):
                key = (PRIORITY_RANK[rule.priority], order)
                if best is None or key < best[0]:
                    best = (key, rule.category, rule.priority)
    return (None, "normal") if best is None else (best[1], best[2])


WORDS = ["refund", "batal", "batalkan", "resi", "presiden", "akun", "diblokir", "dana", "kembali", "tipu", "ditipu",
         "#kirim", "c.o.d", "terima", "kasih", "İstanbul", "ß", "ǅ", "kak", "🙏", "INV/20261101/MPL/123456"]
SEPARATORS = [" ", "  ", "\n", "\t", ", ", ".", "", "-", "_", "\u00a0"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=12), st.text(max_size=20))
def test_one_scan_matches_one_search_per_keyword(parts: list[tuple[str, str]], noise: str) -> None:
    text = "".join(w + s for w, s in parts) + noise
    for rules in (RULES, DEFAULT_RULES):
        assert classify(text, rules) == _reference(text, rules)
