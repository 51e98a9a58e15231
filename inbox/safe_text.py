"""Safe display of hostile customer text.

Everything a customer (or an agent, in a tag, note or name) writes may carry terminal escape sequences (ANSI colours, OSC 8 hyperlinks,
OSC 52 clipboard writes), control characters, bidi overrides that reverse what an agent reads,
zero-width characters, Rich markup, line separators, or 20,000 characters in one line. Every string
shown goes through `clean()` (and `escape()` when it ends up inside Rich markup): the console the
commands print through (`safe_console_class`) cleans every text segment it writes, whoever wrote it. Raw
bytes stay only in the stored raw payload.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC
# (ESC P/X/^/_ ... ST), and two-character escapes (ESC + one byte). 8-bit forms (U+009B CSI,
# U+009D OSC, ...) are matched too; anything left over is removed as a control character below.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?            # CSI
    | (?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|$)   # OSC (hyperlinks, clipboard, titles)
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|$)  # DCS, SOS, PM, APC
    | \x1b[ -/]*[0-~]?                           # other escapes (charset, keypad, RIS...)
    """,
    re.VERBOSE | re.DOTALL,
)

# C0 controls except tab and newline, DEL, C1 controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Bidi embedding/override/isolate controls: shown as a visible marker, because a reversed
# invoice number or link is exactly what a fraudster wants an agent to misread.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")

# Invisible characters: zero-width space/non-joiner, word joiner, BOM, Mongolian vowel separator,
# invisible math operators, the Unicode tag block (invisible "ASCII smuggling"), variation
# selectors are kept (emoji need them). Zero-width joiner is kept only between two non-ASCII
# symbols (emoji sequences such as families), elsewhere it is removed.
_INVISIBLE = re.compile("[\u200b\u200c\u2060-\u2064\ufeff\u180e\u00ad\U000e0000-\U000e007f]")
_ZWJ = re.compile(r"(?<![^\x00-\x7f])\u200d|\u200d(?![^\x00-\x7f])|^\u200d|\u200d$")

MAX_DISPLAY_CHARS = 2000
MAX_DISPLAY_LINES = 80


# Every other line break a terminal or a renderer honours (VT, FF, the file/group/record separators,
# NEL, U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR): what `str.splitlines()` splits on.
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def clean(text: str | None, *, visible_bidi: bool = True) -> str:
    """Remove terminal escapes and control characters; expose bidi controls; drop invisibles.

    For any text shown, whoever wrote it: customers, agents (tags, notes, names), operators (config).
    Newlines and tabs survive (tabs become spaces; CR, CRLF and the other line breaks become newlines).
    """
    if not text:
        return ""
    text = _LINE_BREAKS.sub("\n", text)
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    text = text.replace("\t", "    ")
    text = _INVISIBLE.sub("", text)
    text = _ZWJ.sub("", text)
    if visible_bidi:
        text = _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    else:
        text = _BIDI.sub("", text)
    return text


def unsendable(text: str) -> str | None:
    """Why a reply's text cannot go to a customer, or None: a control character or a terminal escape
    (pasted terminal output, a stray NUL) means nothing to the customer's app, and text with
    nothing visible left once those are gone is an empty reply."""
    text = text.replace("\r\n", "\n")  # a pasted Windows line end is a line end
    bad = _ESCAPES.search(text) or _CONTROLS.search(text)
    if not clean(text).strip():
        return "empty reply: nothing sent"
    if bad:
        char, at = bad.group(0)[0], bad.start()
        # Line and column: the editor's terms, and the same whatever line ends were pasted.
        line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        return f"not sent: the reply has a control character (U+{ord(char):04X}) at line {line}, column {column}; remove it"
    return None


# Characters JSON leaves raw with ensure_ascii=False that a terminal may still act on or that
# reorder what is read: DEL and C1 controls (U+009B is CSI), bidi controls, line/paragraph separators.
# Lone surrogates too: what bytes that are not UTF-8 become in Python (below); raw, they cannot be
# written as UTF-8 and go out as the original bytes, which is not JSON text.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}\ud800-\udfff]")


def json_safe(encoded: str) -> str:
    """JSON text (from json.dumps(..., ensure_ascii=False)) with terminal-active characters as \\u escapes:
    the same JSON value, safe to write to a terminal."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


_SURROGATE = re.compile("[\ud800-\udfff]")


def undecodable(text: str) -> int | None:
    """Where `text` holds a lone surrogate, or None. Python reads bytes that are not UTF-8 in argv,
    the environment and standard input as surrogates (the byte 0xFF as U+DCFF): text no store
    keeps and no UTF-8 output can carry."""
    found = _SURROGATE.search(text)
    return found.start() if found else None


def control_problem(text: str, what: str) -> str | None:
    """`"{what} has a control character (U+0000)"` for a one-line name (a NUL or a line break written
    into the config, pasted terminal output), or None. PostgreSQL cannot store a NUL at all."""
    bad = _CONTROLS.search(text) or re.search(r"[\n\t\r]", text)
    return None if bad is None else f"{what} has a control character (U+{ord(bad.group(0)):04X}); remove it"


def utf8_problem(text: str, what: str) -> str | None:
    """`"{what} is not valid UTF-8 …"`, saying which byte and where, or None when it is valid."""
    at = undecodable(text)
    if at is None:
        return None
    code = ord(text[at])
    byte = f"byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    return f"{what} is not valid UTF-8 ({byte} at character {at + 1}); retype it, or check the terminal's encoding (LANG, LC_ALL)"


def escape(text: str) -> str:
    """Escape Rich markup so `[bold red]x[/]` prints literally inside a markup string."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def safe(text: str | None) -> str:
    """Clean and markup-escape: for customer text embedded in a Rich markup string."""
    return escape(clean(text))


def one_line(text: str | None, width: int = 60) -> str:
    """A single-line snippet: cleaned, whitespace collapsed, cut to `width` characters with an ellipsis."""
    flat = " ".join(clean(text).split())
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 1)].rstrip() + "…"


def fold(text: str | None, *, max_chars: int = MAX_DISPLAY_CHARS, max_lines: int = MAX_DISPLAY_LINES) -> str:
    """Cleaned text bounded in characters and lines, with a note saying how much was left out."""
    cleaned = clean(text)
    cut = cleaned
    lines = cut.split("\n")
    if len(lines) > max_lines:
        cut = "\n".join(lines[:max_lines])
    if len(cut) > max_chars:
        cut = cut[:max_chars]
    hidden = len(cleaned) - len(cut)
    if hidden > 0:
        cut = cut.rstrip() + f"\n… ({hidden:,} more characters not shown; --full shows everything)"
    return cut


def display_name(handle: str | None, name: str | None, fallback: str = "?") -> str:
    """`@handle` or the name (else the fallback, often a platform id), cleaned and bounded, for customer columns."""
    if handle:
        return one_line("@" + handle.lstrip("@"), 40)
    if name:
        return one_line(name, 40)
    return one_line(fallback, 40)


# Text needing no cleaning: printable ASCII and newlines (most of every table); checked before `clean`.
_PLAIN = re.compile(r"[\x20-\x7e\n]*")


@functools.cache
def safe_console_class() -> type[Any]:
    """A rich Console whose every text segment goes through `clean()` on its way out, so a string that
    missed cleaning at its source (a tag, a note, an agent's name in a new column) still prints inert.
    Rich's own control segments (cursor moves of live displays) and styles are left alone.
    (A function, so rich is imported only by the commands that print with it.)"""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(
                segment if segment.control or _PLAIN.fullmatch(segment.text) else Segment(clean(segment.text), segment.style, segment.control)
                for segment in buffer
            )

    return SafeConsole
