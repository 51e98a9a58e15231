"""Text reduced for comparison (dedup): customer names and handles, and Indonesian chat text.

Two customers' names are compared after case, diacritics, spacing, punctuation and emoji are
removed ("Méláti  Sari 🌸" and "@melati.sari" both become "melatisari"). Two complaints are
compared after the habits of Indonesian chat are undone: elongated letters ("tolonggg"), the many
spellings of "no" (gk, ga, gak, nggak…), salutations (kak, min, gan…) and particles (ya, dong…),
common abbreviations (blm, udh, yg…), punctuation and emoji. Nothing here is ever shown.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NON_ALNUM = re.compile(r"[\W_]+")
_ELONGATED = re.compile(r"([^\W\d_])\1+")  # letters only: "250.000" must stay a different amount from "25.000"


def _fold(text: str) -> str:
    """Compatibility forms (𝐁𝐮𝐝𝐢 → Budi), accents removed, case-folded."""
    if text.isascii():  # most chat text: nothing to decompose
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=1 << 16)  # names and handles repeat across every page; bounded
def ident(text: str | None, min_chars: int = 5) -> str | None:
    """A handle or name reduced to letters and digits, or None when too short to tell people apart
    (too many people are "budi")."""
    if not text:
        return None
    key = _NON_ALNUM.sub("", _fold(text))
    return key if len(key) >= min_chars else None


def _collapse(word: str) -> str:
    return _ELONGATED.sub(r"\1", word)


_NEGATION = ("gk", "g", "ga", "gak", "nggak", "ngga", "ngak", "enggak", "engga", "kagak", "tdk", "tak", "nda", "ndak", "gag")
_DROPPED = (
    # salutations
    "kak", "ka", "kk", "kakak", "min", "mimin", "admin", "gan", "agan", "sis", "sist", "bang", "mas", "mba", "mbak", "bro", "om",
    # particles
    "ya", "yah", "yaa", "dong", "deh", "sih", "nih", "tuh", "kok", "loh", "lho", "lah", "kah", "pun", "nya",
)
_WORDS = {
    "blm": "belum", "belom": "belum", "udh": "sudah", "udah": "sudah", "sdh": "sudah", "dah": "sudah",
    "yg": "yang", "dgn": "dengan", "tp": "tapi", "tpi": "tapi", "sy": "saya", "aku": "saya", "gw": "saya", "gue": "saya",
    "sampe": "sampai", "gmn": "gimana", "bgmn": "bagaimana", "bgt": "banget", "krn": "karena", "karna": "karena",
    "utk": "untuk", "jg": "juga", "lg": "lagi", "dr": "dari", "sm": "sama", "tlg": "tolong", "mohon": "tolong",
    "trs": "terus", "trus": "terus", "org": "orang", "pesenan": "pesanan", "brg": "barang", "knp": "kenapa",
}
# Keys and values as they are after elongated letters are collapsed ("nggak" -> "ngak").
_MAP: dict[str, str] = {_collapse(k): "tidak" for k in _NEGATION}
_MAP.update({_collapse(k): "" for k in _DROPPED})
_MAP.update({_collapse(k): _collapse(v) for k, v in _WORDS.items()})


_TOKEN = re.compile(r"[^\W_]+")  # the words `_NON_ALNUM` separates, found directly
_WORD_CACHE: dict[str, str] = {}  # folded word -> its reduced form ("" when dropped)
_WORD_CACHE_MAX = 1 << 16


def _reduced(word: str) -> str:
    """A folded word with its elongated letters collapsed, then mapped (negation, salutation, abbreviation)."""
    collapsed = _ELONGATED.sub(r"\1", word)
    out = _MAP.get(collapsed, collapsed)
    if len(_WORD_CACHE) >= _WORD_CACHE_MAX:  # bounded: a flood of distinct words starts it afresh
        _WORD_CACHE.clear()
    _WORD_CACHE[word] = out
    return out


@lru_cache(maxsize=1 << 14)  # the same complaint arrives again and again; bounded
def chat_text(text: str | None) -> str:
    """Chat text reduced for near-duplicate comparison (RapidFuzz), words separated by one space.

    Word by word, each distinct word reduced once per process: a run of one letter never spans a
    separator (letters are word characters), so collapsing it inside each word is collapsing it in
    the text, and the words of a complaint ("pesanan", "belum", "kak") recur in nearly every text.
    """
    if not text:
        return ""
    get = _WORD_CACHE.get
    out = []
    for word in _TOKEN.findall(_fold(text)):
        reduced = get(word)
        if reduced is None:
            reduced = _reduced(word)
        if reduced:
            out.append(reduced)
    return " ".join(out)
