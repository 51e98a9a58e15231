"""The poison table: every field of every payload shape, given hostile values by the sandbox over real
HTTP, on both backends. Each case asserts that the poisoned item ends up stored or quarantined, that
the account keeps syncing with the poison still there, and that the next normal message is stored.

One sandbox and one store per backend serve the whole module (each case injects its own thread), so
the table stays quick. Hostile values are raw JSON text, spliced into the answer as the platform
would send them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.times import parse_time, snowflake_time
from inbox.store.models import Account, Message, Quarantine, SyncState
from tests.store.test_sync import sandbox_settings

NUL = '"a\\u0000b"'
LONE_SURROGATE = '"x\\ud800y"'
LONE_LOW_SURROGATE = '"\\udfff"'
INVALID_UTF8 = '"caf\udce9"'  # the byte 0xE9 alone on the wire (the sandbox encodes with surrogatepass)
HUGE_STRING = json.dumps("x" * 300_000)
OVERFLOW = "1e400"
BIG_INT = "123456789012345678901234567890"
NEGATIVE = "-1"
FLOAT = "1.5"
NAN = "NaN"
LIST = "[1, 2]"
OBJECT = '{"a": 1}'
NULL = "null"
DEEP = "[" * 1000 + "]" * 1000
BAD_TIME = '"2026-13-45T99:99:99+0000"'
FUTURE_TIME = '"2100-01-01T00:00:00+0000"'
EPOCH_OVERFLOW = "1e20"
LONG_ID = json.dumps("9" * 300)

EVERY_VALUE = (NUL, LONE_SURROGATE, LONE_LOW_SURROGATE, INVALID_UTF8, HUGE_STRING, OVERFLOW, BIG_INT, NEGATIVE, FLOAT,
               NAN, LIST, OBJECT, NULL, DEEP)
TIME_VALUES = (BAD_TIME, FUTURE_TIME, EPOCH_OVERFLOW)
META = ("tokoshop-fb", "tokoshop-ig")

# (shape, accounts, target, fields): target is what the poisoned object's `id` is — the injected
# "message", its "thread", its "customer" (X includes.users), or "root" (the answer itself).
SHAPES: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("graph-conversation", META, "thread",
     ("", "id", "updated_time", "participants", "participants.data", "participants.data.0", "participants.data.0.id",
      "participants.data.0.name", "participants.data.0.username", "message_count")),
    ("graph-message", META, "message",
     ("", "id", "created_time", "from", "from.id", "to", "to.data.0.id", "message", "attachments", "sticker", "story",
      "shares", "is_unsupported")),
    ("graph-attachment", ("tokoshop-fb",), "message",
     ("attachments.data.0", "attachments.data.0.id", "attachments.data.0.image_data", "attachments.data.0.image_data.url",
      "attachments.data.0.mime_type", "attachments.data.0.size", "attachments.data.0.name")),
    ("graph-profile", META, "message", ("from.name", "from.username", "from.email")),
    ("x-event", ("tokoshop-x",), "message",
     ("", "id", "created_at", "text", "sender_id", "dm_conversation_id", "event_type", "attachments",
      "attachments.media_keys", "participant_ids")),
    ("x-includes-user", ("tokoshop-x",), "customer", ("", "id", "name", "username")),
    ("x-answer", ("tokoshop-x",), "root", ("includes", "includes.users", "includes.media", "meta")),
)


def _values(field: str) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if field.endswith(("_time", "created_at")):
        extra += TIME_VALUES
    if field.endswith("id"):
        extra += (LONG_ID,)
    return EVERY_VALUE + extra


QUICK_EVERY = 8  # the quick table gives each field every 8th value (rotating) plus its time / id values


def _cases() -> Iterator[Any]:
    """Every (shape, field, value); the full cross product is `slow`, a rotating eighth of it is not."""
    for shape, accounts, target, fields in SHAPES:
        for account in accounts:
            for i, field in enumerate(fields):
                for j, value in enumerate(_values(field)):
                    label = f"{shape}-{account.removeprefix('tokoshop-')}-{field or 'item'}-{_label(value)}"
                    quick = account != "tokoshop-ig" and ((j - i) % QUICK_EVERY == 0 or j >= len(EVERY_VALUE))
                    marks = () if quick else (pytest.mark.slow,)
                    yield pytest.param(shape, account, target, field, value, id=label, marks=marks)


def _label(value: str) -> str:
    names = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, str) and k not in ("META",)}
    return names.get(value, "value").lower()


# ── one sandbox and one store per backend for the module ───────────────────────────────────────


@pytest.fixture(scope="module")
def sb() -> Iterator[Any]:
    from sandbox import Sandbox

    # X allows 15 lookups per 15 minutes; the table makes hundreds (the budget has tests of its own).
    with Sandbox(seed=11, x_rate_limit=1_000_000).start() as box, pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        yield box


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, sb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(engine, settings, factory) with every account synced once."""
    from tests.conftest import PG_URL, _pg_schema_url
    from inbox.store import open_store

    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('poison') / 'inbox.db'}"
    else:
        if not PG_URL:
            if os.environ.get("CI") == "true":
                pytest.fail("INBOX_TEST_PG_URL is not set in CI: PostgreSQL tests must run")
            pytest.skip("PostgreSQL not configured: set INBOX_TEST_PG_URL to run the PostgreSQL variant")
        schema = "t_" + uuid.uuid4().hex[:12]
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = _pg_schema_url(PG_URL, schema)
    engine = open_store(url)
    # A short overlap: each case's thread is newer than the mark, and passes stay one list call.
    settings = sandbox_settings(sb, url, overlap_seconds=5)
    factory = poison_factory(settings)
    from inbox.sync.pool import sync_all

    assert {r.status for r in sync_all(engine, settings, connector_factory=factory)} == {"ok"}
    try:
        yield engine, settings, factory
    finally:
        engine.dispose()
        if schema is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()


def poison_factory(settings: Any):  # type: ignore[no-untyped-def]
    """The sync's own connector specs (size cap, clock skew), without pacing or retries (loopback)."""
    from connectors import connect
    from connectors.http import RetryPolicy

    def make(acc: Any) -> Any:
        spec = replace(settings.spec_for(acc), min_interval=0.0, overlap_seconds=float(settings.sync.overlap_seconds))
        return connect(spec, policy=RetryPolicy(max_retries=0, backoff_base=0.01, backoff_cap=0.05))

    return make


@dataclass
class Injected:
    message: str
    thread: str
    customer: str


def inject(sb: Any, account: str, text: str) -> Injected:
    mid = sb.inject(account, text=text, customer=f"poison {uuid.uuid4().hex[:8]}", attachments=[{"type": "image"}])
    thread = sb.threads(account)[0]
    last = sb.thread_messages(account, thread)[-1]
    assert last["id"] == mid
    return Injected(mid, thread, str(last.get("sender_id") or last.get("from_id")))


def stored(engine: Any, account: str) -> set[str]:
    a, m = Account.__table__, Message.__table__
    with engine.connect() as conn:
        return set(conn.execute(sa.select(m.c.external_id).join(a, a.c.id == m.c.account_id).where(a.c.name == account)).scalars())


def quarantined(engine: Any, account: str) -> list[Any]:
    a, q = Account.__table__, Quarantine.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(q).join(a, a.c.id == q.c.account_id).where(a.c.name == account)).all()


def assert_cursor_not_ahead(engine: Any, account: str, skew: timedelta) -> None:
    a, ss = Account.__table__, SyncState.__table__
    with engine.connect() as conn:
        cursor = conn.execute(sa.select(ss.c.cursor).join(a, a.c.id == ss.c.account_id).where(a.c.name == account)).scalar()
    assert cursor, account
    newest = parse_time(cursor["hwm"]) if "hwm" in cursor else snowflake_time(cursor["newest_id"])
    assert newest <= datetime.now(timezone.utc) + skew, cursor


def sync(engine: Any, settings: Any, factory: Any, account: str) -> Any:
    from inbox.sync.pool import sync_all

    [result] = sync_all(engine, settings, accounts=[account], connector_factory=factory)
    return result


@pytest.mark.parametrize(("shape", "account", "target", "field", "value"), list(_cases()))
def test_poison(store: Any, sb: Any, shape: str, account: str, target: str, field: str, value: str) -> None:
    engine, settings, factory = store
    skew = timedelta(seconds=settings.sync.clock_skew_seconds)
    victim = inject(sb, account, f"{shape} {field}: paket saya belum sampai")
    target_id = {"message": victim.message, "thread": victim.thread, "customer": victim.customer, "root": ""}[target]
    before = len(quarantined(engine, account))
    sb.fault("poison", account=account, target=target_id, field=field, value=value)
    try:
        first = sync(engine, settings, factory, account)
        assert first.status == "ok" and first.complete, first.error
        # The poisoned item is somewhere an agent can find it: stored (repaired), or quarantined with its reason.
        held = victim.message in stored(engine, account) or len(quarantined(engine, account)) > before
        assert held or first.counts.new_messages >= 1, "the poisoned item vanished"
        assert_cursor_not_ahead(engine, account, skew)

        # The poison stays on the platform; the account keeps syncing and takes the next messages.
        elsewhere = inject(sb, account, "pesanan INV/20261120/MPL/3817265540 kok belum dikirim")
        thread_poisoned = target == "thread" and field in ("", "id")
        same = None if thread_poisoned else sb.inject(account, text="halo kak, masih ada?", thread=victim.thread)
        second = sync(engine, settings, factory, account)
        assert second.status == "ok" and second.complete, second.error
        now_stored = stored(engine, account)
        assert elsewhere.message in now_stored
        if same is not None:
            assert same in now_stored
        assert_cursor_not_ahead(engine, account, skew)
    finally:
        sb.clear_faults()


# ── headers ────────────────────────────────────────────────────────────────────────────────────

HEADER_VALUES = ("1e400", "-5", "99999999999999999999999999", "NaN", "1.5", "soon", "")
X_HEADERS = ("x-rate-limit-reset", "x-rate-limit-limit", "x-rate-limit-remaining", "Retry-After")
META_USAGE = (
    '{"104920378912345": [{"type": "messenger", "call_count": 1e400, "estimated_time_to_regain_access": 1e300}]}',
    '{"104920378912345": [{"call_count": "NaN", "estimated_time_to_regain_access": -1}]}',
    '{"104920378912345": {"call_count": 99999999999999999999999}}',
    '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[',
    "not json",
)


def _header_cases() -> Iterator[Any]:
    for name in X_HEADERS:
        for value in HEADER_VALUES:
            yield pytest.param("tokoshop-x", name, value, id=f"x-{name}-{value or 'empty'}")
    for value in META_USAGE:
        yield pytest.param("tokoshop-fb", "X-Business-Use-Case-Usage", value, id=f"fb-usage-{value[:12]}")


@pytest.mark.parametrize(("account", "name", "value"), list(_header_cases()))
def test_hostile_header_on_every_answer(store: Any, sb: Any, account: str, name: str, value: str) -> None:
    """On every answer, successful or rate limited: the account keeps syncing, and no header can
    pause it for longer than a day or put a number in health that the store cannot hold."""
    engine, settings, factory = store
    sb.fault("header", account=account, name=name, value=value)
    try:
        victim = inject(sb, account, "tolong dicek kak")
        result = sync(engine, settings, factory, account)
        assert result.status == "ok", result.error
        assert victim.message in stored(engine, account)
        sb.fault("429", account=account, count=1)
        limited = sync(engine, settings, factory, account)
        assert limited.status == "retry-later"
        assert limited.retry_at is not None and limited.retry_at <= datetime.now(timezone.utc) + timedelta(hours=24, minutes=1)
    finally:
        sb.clear_faults()
        from inbox import accounts as accounts_mod

        accounts_mod.reset(engine, settings, account)  # the pause ends (as it would, within the day)
    after = inject(sb, account, "masih belum ada kabar")
    assert sync(engine, settings, factory, account).status == "ok"
    assert after.message in stored(engine, account)


def test_id_limits_match_the_store_columns() -> None:
    from connectors.base import MAX_ID_LENGTH, MAX_USER_ID_LENGTH
    from inbox.store.models import Contact, Conversation

    assert Message.__table__.c.external_id.type.length == MAX_ID_LENGTH
    assert Conversation.__table__.c.external_id.type.length == MAX_ID_LENGTH
    assert Quarantine.__table__.c.external_id.type.length == MAX_ID_LENGTH
    assert Contact.__table__.c.platform_user_id.type.length == MAX_USER_ID_LENGTH
    assert Message.__table__.c.author_id.type.length == MAX_USER_ID_LENGTH
