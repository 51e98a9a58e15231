"""Platform JSON decoded into values the store can always keep.

Every platform body is decoded here (`loads`), so nothing downstream meets a value that cannot be
stored or encoded again. Each repair is visible rather than silent:

- bytes that are not UTF-8, NUL characters (`\\u0000`, which PostgreSQL refuses in text, json and
  jsonb) and lone surrogate escapes (`\\ud800`, which no UTF-8 encoder accepts) become U+FFFD;
- NaN and Infinity (not JSON, but Python's decoder reads them; PostgreSQL refuses them) become null;
  integers beyond 64 bits (and beyond Python's 4,300-digit conversion limit) stay as their digits, a
  string, so no id or count overflows a column or an encoder;
- containers nested deeper than `MAX_DEPTH` (decoders and encoders recurse; Graph nests about six
  levels) are replaced by the string `TOO_DEEP`.

`clean_text` applies the same string repair to anything else that came off the wire (error
messages, header text) before it is stored or logged.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
TOO_DEEP = f"\ufffd(nested deeper than {MAX_DEPTH} levels; dropped)"
REPLACEMENT = "\ufffd"
_INT64 = 2**63

# A run of backslashes, then `u` and four hex digits that are NUL, a surrogate pair, or a lone
# surrogate. Only an odd run is an escape (an even run is escaped backslashes before a literal "u").
# A match starts only where a run starts (the lookbehind): tried from inside a run too, a long run
# of backslashes (a customer's text) costs the square of its length.
_ESCAPE = re.compile(
    r"(?<!\\)(\\+)u(0000|[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|[dD][89a-fA-F][0-9a-fA-F]{2})"
)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _fix_escape(match: re.Match[str]) -> str:
    slashes, code = match.group(1), match.group(2)
    if len(slashes) % 2 == 0 or len(code) > 4:  # not an escape, or a valid surrogate pair
        return match.group(0)
    return slashes + "ufffd"


def _int(digits: str) -> int | str:
    if len(digits) > 20:
        return digits
    value = int(digits)
    return value if -_INT64 <= value < _INT64 else digits


def _float(text: str) -> float | None:
    value = float(text)
    return value if value - value == 0 else None  # inf - inf and nan - nan are nan


def _constant(_name: str) -> None:
    return None


def depth(text: str) -> int:
    """How deeply the containers of a JSON text nest (strings skipped; C-speed scans)."""
    brackets = re.sub(r"[^\[\]{}]", "", _STRING.sub("", text))
    if not brackets:
        return 0
    deepest = level = 0
    # Only the bracket characters are walked, a small fraction of a body.
    for char in brackets:
        if char in "[{":
            level += 1
            if level > deepest:
                deepest = level
        else:
            level -= 1
    return deepest


def _truncate_depth(text: str) -> str:
    """The JSON text with every container deeper than MAX_DEPTH replaced by the TOO_DEEP string."""
    out: list[str] = []
    level = 0
    skip_from = -1  # the level at which a dropped container opened
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            match = _STRING.match(text, i)
            end = match.end() if match else n
            if skip_from < 0:
                out.append(text[i:end])
            i = end
            continue
        if char in "[{":
            level += 1
            if skip_from < 0 and level > MAX_DEPTH:
                skip_from = level
                out.append(json.dumps(TOO_DEEP))
            elif skip_from < 0:
                out.append(char)
        elif char in "]}":
            if skip_from < 0:
                out.append(char)
            elif level == skip_from:
                skip_from = -1
            level -= 1
        elif skip_from < 0:
            out.append(char)
        i += 1
    return "".join(out)


def loads(body: bytes | str) -> Any:
    """Decode a platform body; ValueError when it is not JSON at all."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else body
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if "\\" in text:
        text = _ESCAPE.sub(_fix_escape, text)
    if _SURROGATE.search(text):  # only a str given directly can hold them
        text = _SURROGATE.sub(REPLACEMENT, text)
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(text) > MAX_DEPTH:
        text = _truncate_depth(text)
    try:
        return json.loads(text, strict=False, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:  # defensive: depth() above keeps nesting far below the interpreter's limit
        raise ValueError("JSON nested too deeply") from None


def clean_text(text: str) -> str:
    """A string with NUL characters and lone surrogates replaced by U+FFFD (storable and printable)."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(REPLACEMENT, text)
    return text
