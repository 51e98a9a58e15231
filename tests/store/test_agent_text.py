"""Text typed by agents (tags, notes, assignees, agent names, templates) is as hostile as customer text:
whoever wrote it, everything displayed is cleaned. And CSV cells never start a formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

import cli
from tests import factories as sf
from inbox import safe_text as tx

# What one agent can type for another agent's terminal: a title change, a hyperlink, a screen clear,
# a clipboard write, 8-bit CSI, and line breaks a terminal honours but `split("\n")` does not see.
TITLE = "\x1b]0;OWNED\x07"
LINK = "\x1b]8;;http://evil.example\x07klik\x1b]8;;\x07"
BREAKS = "a\u2028b\u2029c\x85d\x0be\x0cf"
NAME = "budi" + TITLE + "\x1b[2J" + "\x9b31m"
NOTE = "cek dulu " + LINK + " \x1b]52;c;ZXZpbA==\x07 " + BREAKS


def _assert_inert(output: str) -> None:
    for bad in ("\x1b", "\x07", "\x9b", "\x9d", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"):
        assert bad not in output, f"{bad!r} reached the terminal"
    assert "OWNED" not in output and "ZXZpbA" not in output


def test_line_and_paragraph_separators_are_line_breaks() -> None:
    assert tx.clean(BREAKS) == "a\nb\nc\nd\ne\nf"
    assert tx.one_line("satu\u2028dua\u2029tiga\x85empat") == "satu dua tiga empat"
    assert tx.fold("x\u2028" * 200).count("\n") <= tx.MAX_DISPLAY_LINES + 1


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from inbox.store import open_store

    db = tmp_path / "inbox.db"
    cfg = tmp_path / "inbox.toml"
    # A template is typed by a person too: TOML escapes put a separator and a title change in it.
    cfg.write_text(f'database = "sqlite:///{db}"\n[templates]\n' + 'thanks = "Terima kasih\\u2028{customer}\\u001b]0;T\\u0007"\n',
                   encoding="utf-8")
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)
    monkeypatch.setenv("INBOX_AGENT", "sari")
    engine = open_store(f"sqlite:///{db}")
    made = sf.ticket(engine, texts=["Halo kak, pesanan INV/20261120/MPL/3817265540 belum sampai refund"])
    engine.dispose()
    return cfg, made.ticket_id


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def test_strings_typed_by_agents_reach_other_agents_terminals_cleaned(store: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg, tid = store
    c = ["-c", str(cfg)]
    writes = [
        ["tag", str(tid), "\x1b]0;X\x07"],  # the example
        ["tag", str(tid), "vip" + TITLE],
        ["assign", str(tid), "budi" + "\u2028" + "s"],  # a separator is no control character: shown as a space
        ["note", str(tid), NOTE, "--agent", "rina"],
        ["priority", str(tid), "high", "--agent", "rina"],
    ]
    # A name holding terminal escapes is refused (exit 2) with an error line that does not echo it.
    refused = [["assign", str(tid), NAME], ["note", str(tid), "ok", "--agent", "rina" + LINK], ["priority", str(tid), "low", "--agent", NAME],
               ["claim", str(tid), "--force", "--agent", NAME]]
    outputs = []
    for argv in writes:
        code, out = _cli(capsys, *c, *argv)
        assert code == 0, out
        outputs.append(out)  # the confirmation lines echo what was typed
    for argv in refused:
        code, out = _cli(capsys, *c, *argv)
        assert code == 2 and "control character" in out, (argv, out)
        outputs.append(out)
    for argv in (["show", str(tid), "--no-pager"], ["show", str(tid), "--full", "--no-pager"], ["list"], ["list", "--assignee", NAME],
                 ["search", "refund"], ["stats"], ["export", "--format", "csv"], ["export", "-o", str(tmp_path / ("out" + TITLE + ".jsonl"))],
                 ["claim", str(tid), "--force", "--agent", "sari"], ["config", "show"]):
        code, out = _cli(capsys, *c, *argv)
        assert code == 0, (argv, out)
        outputs.append(out)
    shown = _cli(capsys, *c, "show", str(tid), "--no-pager")[1]
    assert "vip" in shown and "rina" in shown and "cek dulu" in shown and "klik" in shown  # the words stay readable
    for out in outputs:
        _assert_inert(out)


# ── CSV: the formula guard looks past leading whitespace and control characters ──────────────


@pytest.mark.parametrize("text", [
    "=HYPERLINK(\"http://evil.example\",\"klik\")", "\t=cmd|' /C calc'!A0", "\r=1+1", "\n=1+1", " +1+2", "\x1b[31m-2+3",
    "\u200b@SUM(A1)", "\x01=1", "\uff1d1+1",
])
def test_csv_export_never_starts_a_formula(text: str, engine: Any) -> None:
    from inbox import export
    from inbox.tickets.queue import TicketFilter

    sf.ticket(engine, texts=[text])
    out = io.StringIO()
    export.write_csv(engine, TicketFilter(statuses=None), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    cell = rows[-1]["text"]
    assert cell.startswith("'"), repr(cell)
    first = cell.lstrip("'").lstrip()
    assert first[:1] in ("=", "+", "-", "@", "\uff1d")  # kept, only defused


# What a spreadsheet may read as a formula once it looks past invisible characters, or once it
# folds compatibility forms (small, superscript, full-width) to ASCII, as NFKC does.
FORMULA_TRICKS = ["\x00=1+1", "\ufeff=1+1", "\u200d=1+1", "\u2060=1+1", "\u00ad=1+1", "\U000e0041=1+1", "\u3000=1+1",
                  "\xa0=1+1", "\u2028=1+1", "\x85=1+1", "\x1b]8;;http://evil.example\x07=1+1", "a\n=1+1"[2:],
                  "=cmd|' /C calc'!A0", "\ufe66cmd|' /C calc'!A0", "\ufe62SUM(1)", "\ufe63SUM(1)", "\ufe6bSUM(1)",
                  "\u207a1+1", "\u207b1+1", "\u207c1+1", "\u208c1+1", "\uff20SUM(1)", "\uff0b1", "\uff0d1"]


@pytest.mark.parametrize("text", FORMULA_TRICKS)
def test_csv_export_never_starts_a_formula_in_any_text_column(text: str, engine: Any) -> None:
    """Customer names and handles, tags and assignees are typed by people too, not only message text."""
    import unicodedata

    from inbox import export
    from inbox.store.models import Contact, Ticket
    from inbox.tickets import operations
    from inbox.tickets.queue import TicketFilter

    if engine.dialect.name == "postgresql":
        text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold a NUL: a platform's is stored as U+FFFD
    made = sf.ticket(engine, texts=[text], handle=text)
    with engine.begin() as conn:
        conn.execute(Contact.__table__.update().where(Contact.__table__.c.id == made.contact_id).values(name=text))
    operations.tag(engine, made.ticket_id, text, "ana")
    with engine.begin() as conn:  # stored as is: `assign` refuses a name with a control character
        conn.execute(Ticket.__table__.update().where(Ticket.__table__.c.id == made.ticket_id).values(assignee=text[:100]))
    out = io.StringIO()
    export.write_csv(engine, TicketFilter(statuses=None), out)
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    for column in ("customer_handle", "customer_name", "assignee", "tags", "author", "text"):
        cell = row[column]
        significant = cell.lstrip()[:1]
        assert cell.startswith("'") or not significant or unicodedata.normalize("NFKC", significant)[:1] not in "=+-@", (column, cell)


def test_jsonl_export_is_one_valid_json_value_per_line_whatever_the_text(engine: Any) -> None:
    """Line and paragraph separators, NEL, C1 and bidi controls are line breaks or terminal commands
    to some readers: in JSON Lines they are escapes, so every line is one ticket and the text is exact."""
    import json

    from inbox import export
    from inbox.tickets.queue import TicketFilter

    texts = ["a\u2028b\u2029c", "d\x85e\x9b31m", "\u202eINV\u2066", "\ufffd lone surrogate repaired", "tab\tand\nnewline", "\"}{\\"]
    made = sf.ticket(engine, texts=texts, handle="h\u2028x")
    out = io.StringIO()
    assert export.write_jsonl(engine, TicketFilter(statuses=None), out) == 1
    for bad in ("\u2028", "\u2029", "\x85", "\x9b", "\u202e", "\u2066"):
        assert bad not in out.getvalue()
    [line] = out.getvalue().splitlines()  # str.splitlines also splits at U+2028 and NEL
    ticket = json.loads(line)
    assert ticket["id"] == made.ticket_id and [m["text"] for m in ticket["messages"]] == texts
