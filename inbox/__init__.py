"""inbox as a library: what the CLI calls, by name, without importing the whole package.

    from inbox import open_store, load_settings, sync_all, list_tickets, plan_reply, send_reply

Each name is imported on first use (PEP 562), so `import inbox.settings` or a CLI start that needs
one module does not pay for the rest. The modules behind them: see the README's layout table.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> module that defines it
API: dict[str, str] = {
    "load_settings": "inbox.settings",
    "open_store": "inbox.store",
    "sync_all": "inbox.sync.pool",
    "sync_account": "inbox.sync.account",
    "ingest_page": "inbox.ingest.page",
    "list_tickets": "inbox.tickets.queue",
    "claim_next": "inbox.tickets.queue",
    "show_ticket": "inbox.tickets.detail",
    "plan_reply": "inbox.replies.route",
    "send_reply": "inbox.replies.outbox",
}

__all__ = sorted(API)


def __getattr__(name: str) -> Any:
    module = API.get(name)
    if module is None:
        raise AttributeError(f"module 'inbox' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
