"""Small values shared across the domain (sync, intake, ingest, accounts).

The ticket status, priority and reply-state vocabularies live with the schema, in `inbox.store.types`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccountRef:
    """An account as the sync, intake and ingest pass it around: its row id and platform identity."""

    id: int
    name: str
    channel: str
    platform_id: str
