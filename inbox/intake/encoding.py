"""A webhook body as sent (maybe gzip / deflate compressed, maybe BOM-prefixed) made plain JSON bytes.

Decompression is incremental with a cap: a small body that inflates past the body limit (a gzip
bomb) is refused like an oversized body, without ever holding more than the limit in memory.
"""

from __future__ import annotations

import zlib

BOM = b"\xef\xbb\xbf"


class TooLarge(Exception):
    """Decompressed past the body limit (answered 413, as an oversized body)."""


class Unsupported(Exception):
    """A Content-Encoding we cannot decode (answered 415)."""


class Corrupt(Exception):
    """Compressed bytes that do not decompress (answered 400)."""


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    out = b""
    rest = body
    while True:  # a gzip body may hold several members, one after the other (RFC 1952)
        d = zlib.decompressobj(wbits)
        try:
            # at most one byte past what is left of the limit: enough to refuse, never a bomb in memory
            out += d.decompress(rest, limit - len(out) + 1)
            if len(out) > limit or d.unconsumed_tail:
                raise TooLarge
            out += d.flush()
        except zlib.error as exc:
            raise Corrupt(str(exc)[:200]) from None
        if len(out) > limit:
            raise TooLarge
        if not d.eof:
            raise Corrupt("truncated compressed body")
        rest = d.unused_data
        if not rest:
            return out


def decode(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The decompressed bytes (`body` itself when not encoded); raises TooLarge, Unsupported, Corrupt."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if coding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some senders send raw deflate: 32 + MAX_WBITS takes zlib or gzip.
        try:
            return _inflate(body, 32 + zlib.MAX_WBITS, limit)
        except Corrupt:
            return _inflate(body, -zlib.MAX_WBITS, limit)
    raise Unsupported(coding[:60])


def strip_bom(body: bytes) -> bytes:
    """JSON without a leading UTF-8 BOM (some senders prefix one; the JSON decoder refuses it)."""
    return body[len(BOM):] if body.startswith(BOM) else body
