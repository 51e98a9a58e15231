"""Hostile customer text is shown inertly: no escapes, no markup, no bidi tricks, bounded length."""

from __future__ import annotations

import io

import pytest

from inbox import safe_text as tx

HOSTILE = (
    "[bold red]PAY NOW[/] [link=http://evil.example]klik[/link] "
    "\x1b[31mred\x1b[0m \x1b[2J\x1b[H "
    "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 "
    "\x1b]52;c;ZXZpbA==\x07 \x1b]0;title\x1b\\ "
    "\x9b31m c1csi \x9d0;t\x9c "
    "INV/20261120/MPL/\u202e0455627183\u202c "
    "ad\u200bmin\u2060 \ufeff\U000e0041\U000e0042 "
    "\x00\x07\x08bell\rline\r\n"
)


def test_clean_removes_escapes_and_controls() -> None:
    out = tx.clean(HOSTILE)
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\x9d" not in out
    assert all(ch in "\n" or ord(ch) >= 0x20 for ch in out)
    assert all(not (0x7F <= ord(ch) <= 0x9F) for ch in out)
    assert "evil.example\x07" not in out and "ZXZpbA" not in out and "title" not in out
    assert "<U+202E>" in out and "\u202e" not in out  # bidi override made visible
    assert "admin" in out  # zero-width characters removed
    assert "\U000e0041" not in out
    assert "\r" not in out and "bell\nline" in out
    assert "[bold red]PAY NOW[/]" in out  # markup text kept as text


def test_emoji_sequences_survive() -> None:
    family = "👨\u200d👩\u200d👧"
    assert tx.clean(f"terima kasih {family} ❤️") == f"terima kasih {family} ❤️"
    assert tx.clean("a\u200db") == "ab"


def test_escape_and_rendering_is_inert() -> None:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="truecolor", width=200, highlight=False)
    console.print(tx.safe(HOSTILE))
    out = buf.getvalue()
    assert "[bold red]PAY NOW[/]" in out  # printed literally, not styled
    assert "\x1b]8;" not in out  # no hyperlink escape survived (neither ours nor theirs)
    assert "\x1b]52" not in out and "\x1b[2J" not in out


@pytest.mark.parametrize("width", [10, 40, 60])
def test_one_line(width: int) -> None:
    out = tx.one_line("baris satu\nbaris dua\t\x1b[1mtebal\x1b[0m " + "x" * 500, width)
    assert "\n" not in out and "\x1b" not in out
    assert len(out) <= width and out.endswith("…")


def test_fold_bounds_long_text() -> None:
    huge = "A" * 20_000
    out = tx.fold(huge)
    assert len(out) < tx.MAX_DISPLAY_CHARS + 100
    assert "18,000 more characters" in out
    many_lines = "\n".join(["baris"] * 1000)
    assert tx.fold(many_lines).count("\n") <= tx.MAX_DISPLAY_LINES + 1
    assert tx.fold("short") == "short"
    assert tx.fold(None) == ""


def test_display_name() -> None:
    assert tx.display_name("budi\x1b[31m", None) == "@budi"
    assert tx.display_name(None, "Sari [b]x[/b]") == "Sari [b]x[/b]"
    assert tx.display_name(None, None) == "?"
    assert tx.display_name(None, None, "17841\x1b]8;;http://evil\x07id") == "17841id"  # a platform id as fallback


def test_json_output_escapes_terminal_active_characters(engine) -> None:
    """JSON keeps the text exactly, but C1 controls (U+009B is CSI) and bidi controls go out as \\u escapes."""
    import json

    from tests import factories as sf
    from inbox import export
    from inbox.tickets.queue import TicketFilter

    hostile = "pesanan \x9b2J\x9d52;c;ZXZpbA==\x07 \u202eabc\u2028x"
    assert json.loads(tx.json_safe(json.dumps(hostile, ensure_ascii=False))) == hostile
    sf.ticket(engine, texts=[hostile])
    out = io.StringIO()
    assert export.write_jsonl(engine, TicketFilter(statuses=None), out) == 1
    written = out.getvalue()
    assert not any(ch in written for ch in "\x9b\x9d\u202e\u2028")
    assert json.loads(written)["messages"][-1]["text"] == hostile


@pytest.mark.parametrize(("text", "why"), [
    ("Halo kak\x00", "control character (U+0000) at line 1, column 9"),
    ("cek \x1b[31mINV\x1b[0m", "control character (U+001B) at line 1, column 5"),
    ("baris 1\r\nbaris 2\r\nkak\x07", "control character (U+0007) at line 3, column 4"),
    ("baris 1\nbaris 2\nkak\x07", "control character (U+0007) at line 3, column 4"),
    ("a\rb", "control character (U+000D)"),
    ("\u200b\u200b", "empty reply"),
    ("\x1b[31m\u200b", "empty reply"),
])
def test_unsendable_replies_say_why(text: str, why: str) -> None:
    from inbox.safe_text import unsendable

    assert why in (unsendable(text) or ""), repr(text)


@pytest.mark.parametrize("text", ["Halo kak 🙏", "baris 1\nbaris 2\tINV/20261120/MPL/3817265540", "windows\r\nline", "مرحبا"])
def test_ordinary_replies_are_sendable(text: str) -> None:
    from inbox.safe_text import unsendable

    assert unsendable(text) is None


def test_json_output_of_an_undecodable_string_is_valid_utf8() -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates (argv, the environment, standard
    input); one stored before they were refused would otherwise go out as those raw bytes."""
    import json

    encoded = tx.json_safe(json.dumps({"text": "ok\udcff\ud800"}, ensure_ascii=False))
    assert json.loads(encoded.encode("utf-8").decode("utf-8")) == {"text": "ok\udcff\ud800"}
    assert tx.undecodable("ok\udcff") == 2 and tx.undecodable("ok \ufffd 🌸") is None
