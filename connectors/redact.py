"""Masking of secrets in anything that may be printed, logged or stored as a raw payload.

Two nets, both applied by `redact()`:
- shapes: secret parameters (`access_token=…`, OAuth 1.0a `oauth_signature="…"` and `oauth_nonce`,
  their URL-encoded forms inside nested links and signature base strings, JSON or tuple pairs),
  `Bearer …` credentials and passwords in URLs (`://user:pw@`, `://:pw@`, `?password=`);
- values: every secret the process resolved (`register_secret`), in every form it may take in text:
  as is, without the whitespace around it, URL-encoded, and as `repr()` escapes it in a traceback.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

_lock = threading.Lock()
_known: set[str] = set()
_known_sorted: tuple[str, ...] = ()  # longest first, rebuilt when one is added (read on every line)

MASK = "****"

# Parameter names that carry a secret (any case), in queries, forms, OAuth headers, JSON keys.
_SECRET_PARAMS = (
    "access_token", "access_token_secret", "client_secret", "fb_exchange_token", "refresh_token", "appsecret_proof",
    "oauth_token", "oauth_token_secret", "oauth_signature", "oauth_nonce", "password", "passwd",
)
_NAMES = "|".join(sorted(_SECRET_PARAMS, key=len, reverse=True))
# A value runs to the next separator, including URL-encoded ones (`%26` is `&`, `%2526` is `%26`).
_VALUE = r"(?:(?!%26|%2526|%22|%2522)[^&\s\"',;)\]])+"

_PATTERNS = [
    # name=value, name="value" (OAuth header), name%3Dvalue and name%253Dvalue (nested, encoded links)
    re.compile(rf"(?i)((?:{_NAMES})(?:=\"?|%3D|%253D))" + _VALUE),
    # "name": "value" (JSON), ('name', 'value') (logged parameter lists)
    re.compile(rf"(?i)([\"'](?:{_NAMES}|token|secret)[\"']\s*[:,]\s*[\"'])[^\"']+"),
    # Authorization: Bearer … (8+ characters: "bearer of bad news" in a message is not a credential)
    re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9._~+/=%-]{8,}"),
    # oauthlib's "Signature: …" debug line
    re.compile(r"(?m)^(Signature:\s+)\S+"),
    # passwords in URLs: scheme://user:pw@host and scheme://:pw@host
    re.compile(r"(://[^:/@\s]*:)[^@\s/]+(?=@)"),
]

# What makes a payload worth a closer look in `scrub` (lower case).
_MARKERS = (*_SECRET_PARAMS, "bearer")


def _forms(value: str) -> set[str]:
    """The ways a secret shows up in text: as is, stripped, URL-encoded, and escaped as repr() shows it."""
    forms = {value, value.strip(), quote(value, safe=""), quote_plus(value), repr(value)[1:-1], repr(value.strip())[1:-1]}
    return {f for f in forms if len(f) >= 6}


def register_secret(value: str | None) -> None:
    """Remember a secret so that any later text containing it is masked."""
    global _known_sorted
    if value and len(value.strip()) >= 6:
        with _lock:
            _known.update(_forms(value))
            _known_sorted = tuple(sorted(_known, key=len, reverse=True))


def mask(value: str | None) -> str:
    """A secret as it may be shown: its last 4 characters at most."""
    if not value:
        return "(unset)"
    if len(value) <= 8:
        return MASK
    return MASK + value[-4:]


def mask_url(url: str) -> str:
    """A URL (a database URL, a base URL) as it may be shown: every password form masked."""
    return redact(url)


def redact(text: str) -> str:
    """Mask every known secret and every secret-shaped parameter in `text`."""
    if not text:
        return text
    for secret in _known_sorted:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _MARKERS) or any(secret in text for secret in _known_sorted)


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in _SECRET_PARAMS


def scrub(value: Any) -> Any:
    """A decoded JSON payload with its secrets masked (a copy; the same object if clean).

    Payloads are kept as `raw`, so they are scrubbed before they leave a connector: Graph nests
    `paging.next` URLs carrying `access_token` (also URL-encoded, inside other links), an error or
    token body is `{"access_token": …}`, a string may quote `Bearer …`, and any string may hold the
    account's own token (registered by its connector) in any of its forms.
    """
    if isinstance(value, str):
        return redact(value) if _may_hold_secret(value) else value
    # Almost every payload holds no secret: one look at its repr (built in C) settles that,
    # instead of copying it string by string.
    if isinstance(value, (dict, list)) and not _may_hold_secret(repr(value)):
        return value
    if isinstance(value, dict):
        return {key: MASK if _secret_key(key) and isinstance(item, str) and item else scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value
