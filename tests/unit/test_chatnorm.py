"""Chat text is reduced word by word with a per-process cache of reduced words (`inbox.dedup.chatnorm`):
the result must be exactly the whole-text reduction (fold, collapse elongated letters, split, map),
whatever the text: compatibility forms and accents that change word boundaries, underscores,
digits next to letters, and words seen before in another case or spelling."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.dedup import chatnorm
from inbox.dedup.chatnorm import _MAP, chat_text

_SPLIT = re.compile(r"[\W_]+")
_ELONGATED = re.compile(r"([^\W\d_])\1+")


def _whole_text(text: str | None) -> str:
    """The reduction done on the whole text at once, as the rule states it."""
    if not text:
        return ""
    words = [_MAP.get(w, w) for w in _SPLIT.split(_ELONGATED.sub(r"\1", chatnorm._fold(text))) if w]
    return " ".join(w for w in words if w)


_PIECES = sorted(_MAP) + [
    "tolonggg", "kaaak", "GGGAAK", "nggaaak", "250.000", "25.000", "aa", "a_a", "__", "ﬁ", "½", "①", "𝐁𝐮𝐝𝐢",
    "Méláti", "İstanbul", "straße", "ΣΑΣ", "ǅ", "e\u0301", "\u200b", "٣", "日本", "😭🙏", "x9y", "99", " ", "?!", "\n",
]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=6), max_size=10).map("".join))
def test_word_by_word_is_the_whole_text_reduction(text: str) -> None:
    chat_text.cache_clear()  # the whole-text cache would hide the word path on a repeated text
    assert chat_text(text) == _whole_text(text), text
    assert chat_text.__wrapped__(text) == _whole_text(text), text  # again: now every word is cached


def test_a_full_word_cache_starts_afresh_and_still_reduces(monkeypatch) -> None:
    monkeypatch.setattr(chatnorm, "_WORD_CACHE_MAX", 3)
    chatnorm._WORD_CACHE.clear()
    text = "Kak tolonggg pesanan saya blm sampai gk ada kabar yaaa"
    assert chat_text.__wrapped__(text) == _whole_text(text) == "tolong pesanan saya belum sampai tidak ada kabar"
    assert len(chatnorm._WORD_CACHE) <= 3
