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
        ["assign", str(tid), NAME],
        ["note", str(tid), NOTE, "--agent", "rina" + LINK],
        ["priority", str(tid), "high", "--agent", NAME],
    ]
    outputs = []
    for argv in writes:
        code, out = _cli(capsys, *c, *argv)
        assert code == 0, out
        outputs.append(out)  # the confirmation lines echo what was typed
    for argv in (["show", str(tid), "--no-pager"], ["show", str(tid), "--full", "--no-pager"], ["list"], ["list", "--assignee", NAME],
                 ["search", "refund"], ["stats"], ["export", "--format", "csv"], ["export", "-o", str(tmp_path / ("out" + TITLE + ".jsonl"))],
                 ["claim", str(tid), "--force", "--agent", NAME], ["config", "show"]):
        code, out = _cli(capsys, *c, *argv)
        assert code == 0, (argv, out)
        outputs.append(out)
    shown = _cli(capsys, *c, "show", str(tid), "--no-pager")[1]
    assert "vip" in shown and "budi" in shown and "cek dulu" in shown and "klik" in shown  # the words stay readable
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
