"""Unsent reply drafts: what an agent wrote in the editor and did not send is kept, not thrown away.

One file per (store, ticket) under `$XDG_STATE_HOME/inbox/drafts` (default `~/.local/state/inbox/
drafts`), readable by its owner only. `inbox reply ID --editor` opens the draft again; a reply
handed to the outbox removes it (the outbox has the text from then on).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from inbox.runtime.files import open_private


def drafts_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "inbox" / "drafts"


def draft_path(database_url: str, ticket_id: int) -> Path:
    # The store is part of the name (ticket 42 of one database is not ticket 42 of another); a hash,
    # so the URL (and any password in it) is not written into a file name.
    store = hashlib.sha256(database_url.encode("utf-8")).hexdigest()[:10]
    return drafts_dir() / f"ticket-{ticket_id}-{store}.txt"


def load(database_url: str, ticket_id: int) -> str | None:
    try:
        text = draft_path(database_url, ticket_id).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.strip() else None


def save(database_url: str, ticket_id: int, text: str) -> Path:
    path = draft_path(database_url, ticket_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open_private(path) as fh:
        fh.write(text)
    return path


def discard(database_url: str, ticket_id: int) -> None:
    try:
        draft_path(database_url, ticket_id).unlink()
    except FileNotFoundError:
        pass
