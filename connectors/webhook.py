"""What both webhook parsers share: the signature check and `DeliveryError`.

What a parser returns (`ParsedDelivery`: per brand account an `AccountBatch` of messages,
quarantined items and edits, plus the `Ignored` events) are contract values in `connectors.base`.
A webhook never moves the poll's cursor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class DeliveryError(ValueError):
    """The whole delivery is unreadable (not an object, wrong shape): it is quarantined whole."""


def hmac_sha256(key: str, data: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).digest()


def check_signature(header: str | None, expected: bytes, *, encoding: str) -> bool:
    """`sha256=<digest>` in `encoding` ("hex" for Meta, "base64" for X), compared in constant time.

    A missing header, another algorithm, a truncated or undecodable digest: False.
    """
    if not header:
        return False
    algorithm, sep, value = header.strip().partition("=")
    if not sep or algorithm.strip().lower() != "sha256":
        return False
    value = value.strip()
    if encoding == "hex":
        want = expected.hex()
        got = value.lower()
    else:
        want = base64.b64encode(expected).decode("ascii")
        got = value
    return hmac.compare_digest(want.encode("ascii"), got.encode("ascii", "replace"))
