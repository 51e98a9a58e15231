"""The gap is on the ticket: `inbox show` (text and --json) says how many messages are missing and when.

Through the CLI against the sandbox over real HTTP, on both backends.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from inbox.timefmt import local_time, resolve_zone
from tests.store.test_echo_tickets import store, ticket_row  # noqa: F401  (the fixture)
from tests.store.test_sync_many import run


def _at(sb: Any, account: str, thread: str, message_id: str) -> datetime:
    ms = next(m["created_ms"] for m in sb.thread_messages(account, thread) if m["id"] == message_id)
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _iso(value: datetime) -> str:
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def test_show_says_how_many_messages_are_missing_and_since_when(
    sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TZ", "Asia/Jakarta")
    cfg, engine = store
    first = sandbox.inject("tokoshop-ig", text="kak, refund saya belum masuk", customer="maya.putri", at=sandbox.now() - 7200)
    thread = sandbox.thread_of("tokoshop-ig", first)
    run(cfg, "sync", capsys=capsys)
    burst = sandbox.burst("tokoshop-ig", thread, 25)  # 25 new: the 5 oldest of them are past the 20 readable
    run(cfg, "sync", capsys=capsys)

    ticket = ticket_row(engine, first)
    shown = json.loads(run(cfg, "show", str(ticket.id), "--json", capsys=capsys))
    assert shown["ticket"]["has_gap"] is True
    (gap,) = shown["gaps"]
    assert gap["missing"] == 5
    assert gap["thread_id"] == thread
    assert gap["after"] == _iso(_at(sandbox, "tokoshop-ig", thread, first))  # the last message we have before the gap
    assert gap["before"] == _iso(_at(sandbox, "tokoshop-ig", thread, burst[5]))  # the oldest one still readable
    assert shown["messages"][0]["platform_id"] == first
    assert sorted(m["platform_id"] for m in shown["messages"][1:]) == sorted(burst[5:])

    text = run(cfg, "show", str(ticket.id), "--no-pager", capsys=capsys)
    zone = resolve_zone()  # the team's zone ($TZ, set above)
    after = local_time(_at(sandbox, "tokoshop-ig", thread, first), zone)
    before = local_time(_at(sandbox, "tokoshop-ig", thread, burst[5]), zone)
    assert after.endswith(" WIB")
    line = f"5 messages missing, written after {after} and before {before}"
    assert f"⚠ {line}" in text
    # ... and in the conversation itself, between the message before the gap and the first one after it
    conversation = text.split("conversation", 1)[1]
    assert conversation.index("refund saya belum masuk") < conversation.index(f"┄┄ {line}") < conversation.index("pesan ke-")


def test_a_thread_first_seen_past_its_horizon(
    sandbox: Any, store: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seeded Messenger thread holds 26 messages: 6 were never readable, since the thread began."""
    monkeypatch.setenv("COLUMNS", "200")
    cfg, engine = store
    run(cfg, "sync", capsys=capsys)
    (line,) = [json.loads(x) for x in run(cfg, "export", "--account", "tokoshop-fb", capsys=capsys).splitlines() if '"has_gap": true' in x]
    shown = json.loads(run(cfg, "show", str(line["id"]), "--json", capsys=capsys))
    (gap,) = shown["gaps"]
    assert (gap["missing"], gap["after"]) == (6, None)
    assert gap["before"] == shown["messages"][0]["time"]
    assert "6 messages missing, written since the thread began and before" in run(cfg, "show", str(line["id"]), "--no-pager", capsys=capsys)
