"""Arbitrary signed bodies over real HTTP (random bytes, cut gzip, BOM + garbage, lying gzip sizes):
the receiver answers 200 or a 4xx, never a 5xx, and the account keeps taking valid deliveries."""

from __future__ import annotations

import gzip
import struct
import zlib

import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.store.test_webhook_encoding import BOM, post
from tests.store.test_webhooks import hello, messages, plain_settings, running
from tests.waiting import wait_until

VALID = hello(mid="m_fuzz_base")


def _lying_size(data: bytes) -> bytes:
    """A gzip member whose trailer declares a huge size (ISIZE), as a bomb's would."""
    packed = gzip.compress(data)
    return packed[:-4] + struct.pack("<I", 0xFFFFFFFF)


BODIES = st.one_of(
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=len(gzip.compress(VALID))).map(lambda n: gzip.compress(VALID)[:n]),
    st.binary(max_size=512).map(lambda b: BOM + b),
    st.binary(max_size=512).map(lambda b: gzip.compress(BOM + b)),
    st.binary(max_size=512).map(_lying_size),
    st.binary(max_size=512).map(zlib.compress),
    st.integers(min_value=5_000, max_value=200_000).map(lambda n: gzip.compress(b"[" * n)),
)
ENCODINGS = st.sampled_from([None, "gzip", "deflate", "x-gzip", "identity", "br", "gzip, gzip", "\u00e9"])


def test_arbitrary_bodies_are_answered_200_or_4xx_and_the_account_keeps_taking_deliveries(engine, db_url) -> None:
    with running(engine, plain_settings(db_url)) as base:

        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(body=BODIES, encoding=ENCODINGS, signed_plain=st.booleans())
        def one(body: bytes, encoding: str | None, signed_plain: bool) -> None:
            signed = body
            if signed_plain:
                try:
                    signed = gzip.decompress(body)
                except Exception:
                    signed = body
            try:
                status = post(base, body, signed, encoding)
            except (UnicodeEncodeError, requests.exceptions.InvalidHeader):
                return  # a header requests itself refuses to send
            assert status == 200 or 400 <= status < 500, status

        one()
        assert post(base, VALID, VALID) == 200
        wait_until(lambda: messages(engine, "m_fuzz_base"))
