"""Compressed and BOM-prefixed webhook bodies over real HTTP, on both backends.

gzip / deflate bodies are decompressed (bounded by the body limit: a gzip bomb is a 413), signed over
the bytes sent or the decompressed ones; an unknown Content-Encoding is a 415; a UTF-8 BOM is
stripped before the JSON is read. The sandbox sends such deliveries through the real loop.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
import requests

from tests.store.test_webhooks import (
    META_SECRET, X_SECRET, deliveries, hello, meta_sig, messages, new_messages, plain_settings, processed, running,
    sandbox_webhook_settings, stored_once, x_sig,
)
from tests.waiting import wait_until

BOM = b"\xef\xbb\xbf"


def post(base: str, body: bytes, signed: bytes, encoding: str | None = None) -> int:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(signed)}
    if encoding:
        headers["Content-Encoding"] = encoding
    return requests.post(f"{base}/webhooks/meta", data=body, headers=headers, timeout=10).status_code


CASES = [  # (case, plain body -> bytes sent, which bytes are signed, Content-Encoding)
    ("gzip, signed as sent", gzip.compress, "sent", "gzip"),
    ("gzip, signed decompressed", gzip.compress, "plain", "gzip"),
    ("deflate (zlib), signed as sent", zlib.compress, "sent", "deflate"),
    ("raw deflate, signed decompressed", lambda b: zlib.compress(b, wbits=-15), "plain", "deflate"),
    ("gzip in two members", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:]), "sent", "gzip"),
    ("BOM-prefixed", lambda b: b, "sent", None),
    ("BOM-prefixed and gzip", gzip.compress, "plain", "gzip"),
]


@pytest.mark.parametrize(("case", "pack", "signed", "encoding"), CASES, ids=[c[0] for c in CASES])
def test_compressed_and_bom_prefixed_deliveries_are_stored(engine, db_url, case: str, pack: Any, signed: str, encoding: str | None) -> None:
    body = hello(mid=f"m_enc_{len(case)}")
    plain = BOM + body if "BOM" in case else body
    sent = pack(plain)
    with running(engine, plain_settings(db_url)) as base:
        assert post(base, sent, sent if signed == "sent" else plain, encoding) == 200
        wait_until(lambda: processed(engine))
    assert [bytes(d.body) for d in deliveries(engine)] == [body]  # stored decompressed, without the BOM
    assert [r.external_id for r in messages(engine)] == [f"m_enc_{len(case)}"]


def test_a_bomb_an_unknown_encoding_a_bad_signature_and_corrupt_gzip_are_refused(engine, db_url) -> None:
    settings = plain_settings(db_url)  # max_body_bytes = 4096
    bomb = gzip.compress(b" " * 10_000_000)  # ~10 kB sent, 10 MB inflated
    small = hello()
    with running(engine, settings) as base:
        assert post(base, bomb, bomb, "gzip") == 413  # the same answer as an oversized body
        assert post(base, gzip.compress(small), small, "br") == 415
        assert post(base, gzip.compress(small), b"other bytes", "gzip") == 403  # neither the sent nor the plain bytes
        truncated = gzip.compress(small)[:-12]
        assert post(base, truncated, truncated, "gzip") == 400  # signed, but does not decompress: quarantined
        trailing = gzip.compress(small) + b"garbage"
        assert post(base, trailing, trailing, "gzip") == 400
        ok = hello(mid="m_after_bomb")
        assert post(base, gzip.compress(ok), ok, "gzip") == 200  # and the next delivery is taken
        wait_until(lambda: messages(engine, "m_after_bomb"))
    assert [d.state for d in deliveries(engine)] == ["quarantined", "quarantined", "done"]


def test_x_accepts_a_gzip_body_signed_as_sent(engine, db_url) -> None:
    body = b'{"for_user_id":"2975699229","direct_message_events":[]}'
    sent = gzip.compress(BOM + body)
    with running(engine, plain_settings(db_url)) as base:
        r = requests.post(f"{base}/webhooks/x", data=sent, timeout=10, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip", "x-twitter-webhooks-signature": x_sig(sent)})
        assert r.status_code == 200
        wait_until(lambda: processed(engine))
    assert [bytes(d.body) for d in deliveries(engine)] == [body]


@pytest.mark.parametrize(("encoding", "bom", "sign"), [("gzip", False, "sent"), ("gzip", True, "plain"), (None, True, "sent")])
def test_the_sandbox_s_compressed_and_bom_webhooks_are_stored_once(engine, db_url, sandbox, encoding, bom, sign) -> None:
    settings = sandbox_webhook_settings(sandbox, db_url)
    with running(engine, settings, graph=True) as base:
        sender = sandbox.webhooks(base, meta_secret=META_SECRET, x_secret=X_SECRET, encoding=encoding, bom=bom, sign=sign)
        ids = new_messages(sandbox)
        assert sender.wait_idle() and sender.stats.failed == 0
        wait_until(lambda: processed(engine) and len(deliveries(engine)) == len(ids))
    stored_once(engine, list(ids.values()))


@pytest.mark.parametrize(("field", "value"), [("encoding", "br"), ("encoding", "gzip, gzip"), ("sign", "both")])
def test_the_sandbox_refuses_a_switch_it_cannot_honour(field: str, value: str) -> None:
    """A sender asked for an encoding it does not produce would send bytes labelled as something else."""
    from sandbox.webhooks import WebhookConfig

    with pytest.raises(ValueError, match=repr(value)):
        WebhookConfig("http://127.0.0.1:9/meta", None, "s", "x", **{field: value})
