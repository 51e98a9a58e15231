"""Masking of secrets in anything that may be printed or logged."""

from __future__ import annotations

import re
import threading
from typing import Any

_lock = threading.Lock()
_known: set[str] = set()

# Query/form parameters that carry a secret; `scrub()` looks for the same names.
_SECRET_PARAMS = ("access_token", "client_secret", "fb_exchange_token", "refresh_token", "oauth_token", "oauth_signature", "appsecret_proof")

_PATTERNS = [
    # access_token=..., client_secret=..., in URLs, bodies and messages
    re.compile(r"(?i)((?:" + "|".join(_SECRET_PARAMS) + r")=)[^&\s\"']+"),
    re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9._~+/=%-]+"),
    re.compile(r"(?i)(\"(?:access_token|token|secret)\"\s*:\s*\")[^\"]+"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret so that any later text containing it is masked."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


def mask(value: str | None) -> str:
    """A secret as it may be shown: its last 4 characters at most."""
    if not value:
        return "(unset)"
    if len(value) <= 8:
        return "****"
    return "****" + value[-4:]


def redact(text: str) -> str:
    """Mask every known secret and every token-shaped parameter in `text`."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "****", text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "****")
    return text


_URL_SECRET_MARKERS = tuple(f"{name}=" for name in _SECRET_PARAMS)


def _has_secret_param(text: str) -> bool:
    # Any case, as `redact` matches them: ACCESS_TOKEN= in a URL is still a token.
    lowered = text.lower()
    return any(marker in lowered for marker in _URL_SECRET_MARKERS)


def scrub(value: Any) -> Any:
    """A decoded JSON payload with token-bearing strings redacted (a copy; the same object if clean).

    Graph nests `paging.next` URLs that carry `access_token` inside message payloads (e.g. the
    attachments edge); payloads are kept as `raw`, so they are scrubbed before they leave a connector.
    """
    if isinstance(value, str):
        return redact(value) if _has_secret_param(value) else value
    # Almost every payload holds no token: one look at its repr (built in C) settles that,
    # instead of copying it string by string.
    if isinstance(value, (dict, list)) and not _has_secret_param(repr(value)):
        return value
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value
