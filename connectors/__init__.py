"""Connectors: the HTTP side of the inbox (Instagram, Facebook Messenger, X).

`connect(spec)` returns the connector for an account. Platform modules are imported only when an
account of that channel is connected, so importing `connectors` stays cheap (no requests, no tweepy).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.base import AccountSpec, Connector

# channel value -> "module:Class"
REGISTRY: dict[str, str] = {
    "facebook": "connectors.facebook:FacebookConnector",
    "instagram": "connectors.instagram:InstagramConnector",
    "x": "connectors.x:XConnector",
}


def connect(spec: AccountSpec, **options: Any) -> Connector:
    """The connector for `spec`. Options (e.g. `policy=RetryPolicy(...)`) go to its constructor."""
    channel = getattr(spec.channel, "value", spec.channel)
    try:
        target = REGISTRY[str(channel)]
    except KeyError:
        raise ValueError(f"no connector for channel {channel!r}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(import_module(module_name), class_name)
    return cls(spec, **options)  # type: ignore[no-any-return]
