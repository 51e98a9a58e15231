"""An edit (or Instagram unsend) that arrives before its message, on both backends.

Meta does not order webhooks: the edit is kept (a `webhook_delivery` row in state `early_edit`)
and applied when the message comes, by webhook or by poll, with an in-order edit's effects; a
redelivered early edit counts once; one whose message never comes expires.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tests.store.test_webhooks import IG_ID, PAGE_ID, hello, plain_settings, poll, sandbox_webhook_settings

CUSTOMER = "5678"


def edit_body(mid: str, text: str, num_edit: int = 1, page: str = PAGE_ID, sender: str = CUSTOMER) -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": page, "time": 1764640100000, "messaging": [
        {"sender": {"id": sender}, "recipient": {"id": page}, "timestamp": 1764640100000,
         "message_edit": {"mid": mid, "text": text, "num_edit": num_edit}}]}]}).encode()


def stored(engine: Any, mid: str) -> Any:
    from inbox.store.tables import message as m

    with engine.connect() as conn:
        return conn.execute(sa.select(m.c.text, m.c.kind, m.c.raw, m.c.ticket_id).where(m.c.external_id == mid)).one()


def early_rows(engine: Any) -> int:
    from inbox.store.tables import webhook_delivery as d

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(d.c.state == "early_edit")).scalar_one())


def deliver(engine: Any, processor: Any, body: bytes) -> None:
    from inbox.intake import receiver

    receiver.store(engine, "meta", body, "application/json")
    processor.process_pending()


def test_an_edit_before_its_message_by_webhook_is_applied_once_when_the_message_comes(engine, db_url) -> None:
    from inbox.intake import receiver
    from inbox.search import search

    processor = receiver.Processor.build(engine, plain_settings(db_url), graph=False)
    for _ in range(2):  # the early edit, and its redelivery
        deliver(engine, processor, edit_body("m_early", "Halo kak, pesanan INV/20261202/MPL/999999 sudah diedit"))
    assert early_rows(engine) == 1
    deliver(engine, processor, hello(mid="m_early", text="Halo kak, pesanan asli"))
    row = stored(engine, "m_early")
    assert row.text == "Halo kak, pesanan INV/20261202/MPL/999999 sudah diedit"
    assert [(h["num_edit"], h["previous_text"]) for h in row.raw["edits"]] == [(1, "Halo kak, pesanan asli")]  # counted once
    assert early_rows(engine) == 0
    hits = search(engine, "999999")
    assert len(hits) == 1 and hits[0].text == row.text
    with engine.connect() as conn:  # the ticket's subject and snippet show the edited text
        (ticket,) = conn.execute(sa.text("SELECT subject, snippet FROM ticket")).all()
    assert tuple(ticket) == (row.text,) * 2
    deliver(engine, processor, edit_body("m_early", "Halo kak, pesanan INV/20261202/MPL/999999 sudah diedit"))  # late again
    assert len(stored(engine, "m_early").raw["edits"]) == 1 and early_rows(engine) == 0


def test_an_edit_in_order_still_applies_and_keeps_nothing(engine, db_url) -> None:
    from inbox.intake import receiver

    processor = receiver.Processor.build(engine, plain_settings(db_url), graph=False)
    deliver(engine, processor, hello(mid="m_order", text="pertama"))
    deliver(engine, processor, edit_body("m_order", "kedua"))
    assert stored(engine, "m_order").text == "kedua" and early_rows(engine) == 0


def test_an_instagram_unsend_before_its_message_leaves_it_deleted(engine, db_url) -> None:
    from inbox.intake import receiver

    processor = receiver.Processor.build(engine, plain_settings(db_url), graph=False)

    def ig(message: dict[str, Any], ts: int) -> bytes:
        return json.dumps({"object": "instagram", "entry": [{"id": IG_ID, "time": ts, "messaging": [
            {"sender": {"id": "7301"}, "recipient": {"id": IG_ID}, "timestamp": ts, "message": {"mid": "ig_early", **message}}]}]}).encode()

    deliver(engine, processor, ig({"is_deleted": True}, 1764640060000))
    deliver(engine, processor, ig({"text": "alamat saya Jl. Kenanga 12"}, 1764640000000))
    row = stored(engine, "ig_early")
    assert (row.kind, row.text) == ("deleted", None)


def test_an_edit_before_its_message_is_applied_when_a_poll_stores_the_message(engine, db_url, sandbox) -> None:
    from inbox.intake import receiver

    settings = sandbox_webhook_settings(sandbox, db_url)
    poll(engine, settings)  # the seeded history
    fb = next(a for a in settings.accounts if a.name == "tokoshop-fb")
    mid = sandbox.inject("tokoshop-fb", text="pesanan belum sampai")  # its webhook is lost
    processor = receiver.Processor.build(engine, settings, graph=False)
    deliver(engine, processor, edit_body(mid, "pesanan belum sampai, tolong dicek", page=fb.platform_id))
    assert early_rows(engine) == 1
    poll(engine, settings)  # the platform still shows the first text; the kept edit wins
    assert stored(engine, mid).text == "pesanan belum sampai, tolong dicek"
    assert early_rows(engine) == 0


def test_an_early_edit_whose_message_never_comes_expires(engine, db_url) -> None:
    from inbox.intake import early_edits, receiver
    from inbox.store.types import utcnow

    settings = plain_settings(db_url)
    processor = receiver.Processor.build(engine, settings, graph=False)
    deliver(engine, processor, edit_body("m_never", "tidak pernah datang"))
    deliver(engine, processor, hello(mid="m_other"))  # nothing held up
    assert stored(engine, "m_other").text and early_rows(engine) == 1
    ref = next(iter(processor.refs.values()))
    with engine.begin() as conn:
        assert early_edits.waiting(conn, ref, now=utcnow() + early_edits.EXPIRY / 2)  # still kept
        early_edits.waiting(conn, ref, now=utcnow() + early_edits.EXPIRY + early_edits.EXPIRY / 10)
    assert early_rows(engine) == 0


def test_an_early_edit_applies_only_to_its_own_account_s_message(engine, db_url) -> None:
    from inbox.intake import receiver

    processor = receiver.Processor.build(engine, plain_settings(db_url), graph=False)
    deliver(engine, processor, edit_body("m_shared", "teks halaman Facebook yang diedit"))  # kept for the Page
    ig = json.dumps({"object": "instagram", "entry": [{"id": IG_ID, "time": 1764640000000, "messaging": [
        {"sender": {"id": "7301"}, "recipient": {"id": IG_ID}, "timestamp": 1764640000000,
         "message": {"mid": "m_shared", "text": "pesan Instagram"}}]}]}).encode()
    deliver(engine, processor, ig)  # the same mid on the other account: not the edit's message
    assert stored(engine, "m_shared").text == "pesan Instagram" and early_rows(engine) == 1
