"""Rule 5's shortcut: a text shorter than MIN_RAW_CHARS is never compared, so none may normalize to
MIN_SIMILAR_CHARS or more (the chat-style map lengthens words: "g" -> "tidak")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inbox.dedup.chatnorm import _MAP, chat_text
from inbox.dedup.identity import MIN_RAW_CHARS, MIN_SIMILAR_CHARS

_WORDS = sorted(_MAP) + ["a", "ok", "kak", "min"]
_SEPARATORS = [" ", "?", "!", ".", ",", "  "]


def _short_texts() -> st.SearchStrategy[str]:
    word = st.sampled_from(_WORDS)
    parts = st.lists(st.tuples(word, st.sampled_from(_SEPARATORS)), min_size=1, max_size=4)
    joined = parts.map(lambda ps: "".join(w + sep for w, sep in ps).rstrip())
    return joined.filter(lambda t: len(t) < MIN_RAW_CHARS) | st.text(max_size=MIN_RAW_CHARS - 1)


@given(_short_texts())
def test_no_text_below_the_raw_bound_normalizes_long_enough_to_compare(text: str) -> None:
    assert len(chat_text(text)) < MIN_SIMILAR_CHARS, (text, chat_text(text))


def test_the_longest_expansion_is_within_the_bound() -> None:
    widest = max(_MAP, key=lambda k: (len(_MAP[k]) + 1) / (len(k) + 1))
    text = " ".join([widest] * 8)[: MIN_RAW_CHARS - 1].rstrip()
    assert len(chat_text(text)) < MIN_SIMILAR_CHARS
