"""Paging as real platforms do it and emulators often do not, over real HTTP: links on the platform's
public host, links that loop, endless empty tails, items twice on a page, ids written another way,
messages delivered late. Each case asserts that the account keeps going: every reachable message
stored once, the cursor not past unsaved data, no token on the wire where it should not be.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.contract.test_connectors_contract import META, Store, drain, make_spec, open_connector, reachable_ids
from tests.contract.test_connectors_contract import sb  # noqa: F401 - the contract tests' sandbox fixture

TOKEN_PARAM = "access_token"




@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize("cut", [None, 2])
def test_paging_links_on_the_platforms_public_host_are_followed_on_the_base_url(sb: Any, name: str, cut: int | None) -> None:
    """Real Graph writes `paging.next` as https://graph.facebook.com/vNN.0/...: the client follows it
    under its own base URL (a proxy's or an emulator's path prefix included), never on that host."""
    sb.public_links()
    if cut is not None:
        sb.cut_nested(cut)  # the nested edges' `next` links are read on too
    sb.clear_calls()
    messages, pages, _cursor = drain(open_connector(sb, name, page_size=1), None, Store())
    ids = [m.external_id for m in messages]
    assert set(ids) == reachable_ids(sb, name)
    assert len(ids) == len(set(ids))
    assert not any(p.quarantined for p in pages), [q.reason for p in pages for q in p.quarantined]
    calls = [c for c in sb.calls if c.method == "GET"]
    prefix = make_spec(sb, name).base_url.removeprefix(sb.base_url)
    assert len(calls) > 1 and all(c.path.startswith(prefix + "/") and c.status == 200 for c in calls), [
        (c.path, c.status) for c in calls if not c.path.startswith(prefix + "/") or c.status != 200
    ]
    assert not any(TOKEN_PARAM in c.query for c in calls)


@pytest.mark.parametrize(("link", "expected"), [
    ("https://graph.facebook.com/v23.0/t_1/messages?after=QQ&access_token=EAAtestlinktoken9f3c", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://evil.example/v19.0/t_1/messages?after=QQ&ACCESS_TOKEN=EAAtestlinktoken9f3c", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://graph.facebook.com/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/proxy/graph/v23.0/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/v23.0/t_1/messages", "/proxy/graph/v23.0/t_1/messages"),
])
def test_a_paging_link_is_followed_under_the_base_url_without_its_token(link: str, expected: str) -> None:
    from connectors.base import AccountSpec
    from connectors.enums import Channel
    from connectors.graph_client import GraphClient

    spec = AccountSpec(name="a", channel=Channel.FACEBOOK, account_id="1", base_url="http://127.0.0.1:9/proxy/graph/v23.0",
                       secrets={"access_token": "EAAtestlinktoken9f3c"})
    client = GraphClient(spec)
    try:
        assert client.url(link) == "http://127.0.0.1:9" + expected
    finally:
        client.close()


# ── paging links that loop ─────────────────────────────────────────────────────────────────────


def passes(conn: Any, cursor: Any, store: Store) -> tuple[list[Any], Any, Exception | None]:
    """One pass, storing each page as the sync does (messages and cursor together), up to its error."""
    pages: list[Any] = []
    try:
        for page in conn.fetch(cursor, store):
            pages.append(page)
            store.ids.update(m.external_id for m in page.messages)
            cursor = page.cursor
    except Exception as exc:  # noqa: BLE001 - the error a pass ends with is what is asserted
        return pages, cursor, exc
    return pages, cursor, None


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-ig", "tokoshop-x"])
def test_a_paging_link_that_loops_keeps_the_page_it_came_with_and_never_starves_the_account(sb: Any, name: str) -> None:
    """The second page's link points back at itself, for as long as the platform is broken: the pass
    stores what the pages it read hold (the looping one included), ends with a clear error, and the
    next pass still takes new messages instead of walking back into the loop."""
    from connectors.errors import MalformedResponseError

    x = name == "tokoshop-x"
    conn = open_connector(sb, name, page_size=3 if x else 1)
    sb.fault("loop", account=name, path="/2/dm_events" if x else "/conversations", count=10_000)
    store = Store()
    pages, cursor, error = passes(conn, None, store)
    assert isinstance(error, MalformedResponseError) and ("loop" in str(error) or "repeat" in str(error)), error
    looped = [c for c in sb.calls if c.account == name and c.fault == "loop" and (c.query.get("after") or c.query.get("pagination_token"))]
    assert looped, "the fault never applied"
    # Everything the looping page showed is stored: read it again by hand.
    first_looping = looped[0]
    sb.clear_faults()
    if x:
        seen = {e["id"] for e in _x_page(sb, first_looping.query)}
    else:
        seen = {m for t in _graph_page_threads(sb, name, first_looping.query) for m in _readable(sb, name, t)}
    assert seen and seen <= store.ids, sorted(seen - store.ids)
    sb.fault("loop", account=name, path="/2/dm_events" if x else "/conversations", count=10_000)

    fresh = sb.inject(name, text="kak, pesanan INV/20261120/MPL/3817265540 belum sampai", customer="pembeli baru")
    for _ in range(2):  # the loop is still there: each pass takes what is new above it
        _pages, cursor, error = passes(conn, cursor, store)
        assert error is not None
    assert fresh in store.ids
    if not x:
        assert cursor is None or "hwm" not in cursor  # the high-water mark never passed threads not read
    conn.close()


def _x_page(sb: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    import requests

    acc = sb.accounts["tokoshop-x"]
    r = requests.get(f"{sb.base_url}/x/2/dm_events", params=query, headers={"Authorization": f"Bearer {acc.token}"}, timeout=5)
    return r.json().get("data") or []


def _graph_page_threads(sb: Any, name: str, query: dict[str, str]) -> list[str]:
    import requests

    spec = make_spec(sb, name)
    node = spec.page_id or spec.account_id
    r = requests.get(f"{spec.base_url}/{node}/conversations", params={**query, "fields": "id"},
                     headers={"Authorization": f"Bearer {spec.secrets['access_token']}"}, timeout=5)
    return [row["id"] for row in r.json()["data"]]


def _readable(sb: Any, name: str, thread: str) -> list[str]:
    return [m["id"] for m in sb.thread_messages(name, thread) if m["readable"]]


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-x"])
def test_an_endless_empty_tail_ends_the_pass(sb: Any, name: str) -> None:
    """Past the first page, empty pages whose link leads to another empty page, for ever: the pass
    ends after a few of them, with every message of the first page stored; it does not walk on until
    the rate budget (or, with a large one, never) stops it."""
    x = name == "tokoshop-x"
    conn = open_connector(sb, name, page_size=3 if x else 1)
    sb.fault("empty_tail", account=name, path="/2/dm_events" if x else "/conversations", count=50)
    store = Store()
    pages, _cursor, error = passes(conn, None, store)
    assert error is None, error
    tail = [c for c in sb.calls if c.account == name and c.fault == "empty_tail" and (c.query.get("after") or c.query.get("pagination_token"))]
    assert 1 <= len(tail) <= 3, len(tail)
    assert pages and pages[-1].final and pages[0].messages
    conn.close()


# ── ids with leading zeros ─────────────────────────────────────────────────────────────────────


def test_x_ids_written_with_leading_zeros_are_the_same_users_threads_and_events(sb: Any) -> None:
    """X ids are numbers (tweepy reads them as ints): `"0900"` is user 900. Our own DM whose sender_id
    comes zero-padded is still ours (not a customer's message opening a ticket), a customer's padded
    sender_id lands in the customer's one thread, and a padded event id is the event's own id."""
    name = "tokoshop-x"
    own = make_spec(sb, name).account_id
    customer_event = sb.inject(name, text="kak, refund saya belum masuk", customer="pembeli nol")
    thread = next(t for t in sb.threads(name) if any(m["id"] == customer_event for m in sb.thread_messages(name, t)))
    customer = next(m for m in sb.thread_messages(name, thread) if m["id"] == customer_event)["sender_id"]
    ours = sb.inject_own(name, thread, "baik kak, kami cek dulu ya")
    again = sb.inject(name, text="sudah dicek belum kak?", thread=thread)
    sb.fault("poison", account=name, target=ours, field="sender_id", value=json.dumps("00" + own))
    sb.fault("poison", account=name, target=customer_event, field="sender_id", value=json.dumps("0" + str(customer)))
    sb.fault("poison", account=name, target=again, field="id", value=json.dumps("0" + again))
    messages, _pages, _cursor = drain(open_connector(sb, name), None, Store())
    got = {m.external_id: m for m in messages}
    assert set(got) >= {customer_event, ours, again}, sorted(got)
    assert got[ours].direction.value == "out" and got[ours].author.id == own and got[ours].customer.id == str(customer)
    assert got[customer_event].direction.value == "in" and got[customer_event].author.id == str(customer)
    assert {got[i].thread_id for i in (customer_event, ours, again)} == {thread}


# ── the same item twice on a page ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["tokoshop-fb", "tokoshop-ig", "tokoshop-x"])
def test_an_item_twice_on_a_page_is_stored_once(engine: Any, db_url: str, sandbox: Any, name: str) -> None:
    """Every answer repeats its first item (a thread, a message, a DM event): each message is stored
    once, one ticket per thread, nothing quarantined, and the account goes on taking new messages."""
    import sqlalchemy as sa

    from inbox.store.models import Account, Message, Quarantine
    from inbox.sync.pool import sync_all
    from tests.contract.test_platform_bounds import spec_factory
    from tests.store.test_sync import sandbox_settings

    settings = sandbox_settings(sandbox, db_url, overlap_seconds=5)
    factory = spec_factory(settings)
    sandbox.fault("duplicate", account=name, count=10_000)
    fresh = sandbox.inject(name, text="kak, paket saya belum sampai", customer="pembeli ganda")
    for _ in range(2):
        [result] = sync_all(engine, settings, accounts=[name], connector_factory=factory)
        assert result.status == "ok", result.error
    assert any(c.fault == "duplicate" for c in sandbox.calls)
    a, m, q = Account.__table__, Message.__table__, Quarantine.__table__
    with engine.connect() as conn:
        account_id = conn.execute(sa.select(a.c.id).where(a.c.name == name)).scalar_one()
        ids = list(conn.execute(sa.select(m.c.external_id).where(m.c.account_id == account_id)).scalars())
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.account_id == account_id)).scalar_one()
        threads = conn.execute(sa.select(sa.func.count(sa.distinct(m.c.conversation_id))).where(m.c.account_id == account_id)).scalar_one()
        opened = conn.execute(sa.select(sa.func.count(sa.distinct(m.c.ticket_id))).where(m.c.account_id == account_id)).scalar_one()
    assert len(ids) == len(set(ids)) and fresh in ids
    assert quarantined == 0
    assert opened <= threads


# ── late deliveries ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", META)
def test_a_meta_message_that_shows_up_late_below_a_stored_one_is_still_found(sb: Any, name: str) -> None:
    """Graph lists a message that arrived late (dated before the thread's newest, which is stored):
    the thread's updated_time does not move, its message_count does. The read goes on past the
    stored newest message until it has found as many new ones as the count grew by."""
    from datetime import datetime, timedelta, timezone

    conn = open_connector(sb, name)
    store = Store()
    _messages, _pages, cursor = drain(conn, None, store)
    thread = sb.threads(name)[0]  # the most recently updated thread: inside the overlap window
    newest = sb.thread_messages(name, thread)[-1]
    at = datetime.fromtimestamp(newest["created_ms"] / 1000, tz=timezone.utc) - timedelta(seconds=90)
    late = sb.inject(name, text="maaf kak, ini pesan yang tadi", thread=thread, at=at)
    assert sb.thread_messages(name, thread)[-1]["id"] == newest["id"]  # the newest is still the newest
    messages, pages, cursor = drain(conn, cursor, store)
    assert late in {m.external_id for m in messages}
    assert not any(p.gaps for p in pages)
    sb.clear_calls()
    again, _pages, _cursor = drain(conn, cursor, store)
    assert not again and len([c for c in sb.calls if c.account == name]) == 1  # nothing new costs one call
    conn.close()
