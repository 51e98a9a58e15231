"""Full-text search over messages on both backends (SQLite FTS5, PostgreSQL tsvector + GIN)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests import factories as sf
from inbox import search as srch
from inbox.tickets import operations, queue
from inbox.errors import UsageError
from inbox.store.models import Message


def ids(hits: list[srch.SearchHit]) -> list[int]:
    return [h.ticket.id for h in hits]


def test_words_invoice_numbers_and_filters(engine) -> None:
    refund = sf.ticket(engine, texts=["Halo kak, saya mau refund pesanan INV/20261120/MPL/3817265540"], priority="high")
    late = sf.ticket(engine, texts=["Paket saya belum sampai, sudah 5 hari"], channel="x", account_name="tokoshop-x")
    english = sf.ticket(engine, texts=["I was charged twice for my order, please refund"], channel="facebook", account_name="tokoshop-fb")
    sf.ticket(engine, texts=["Terima kasih banyak!"])

    assert ids(srch.search(engine, "refund")) == [refund.ticket_id, english.ticket_id]
    assert ids(srch.search(engine, "REFUND pesanan")) == [refund.ticket_id]  # all words, any case
    assert ids(srch.search(engine, "INV/20261120/MPL/3817265540")) == [refund.ticket_id]
    assert ids(srch.search(engine, "3817265540")) == [refund.ticket_id]  # a part of the number
    assert ids(srch.search(engine, "belum sampai")) == [late.ticket_id]
    assert ids(srch.search(engine, "refund", queue.TicketFilter(channels=("facebook",)))) == [english.ticket_id]
    assert srch.search(engine, "nonexistentword") == []
    hit = srch.search(engine, "charged")[0]
    assert hit.text and "charged twice" in hit.text


def test_hostile_queries_are_plain_words(engine) -> None:
    made = sf.ticket(engine, texts=["order OR refund NEAR cancel"])
    # FTS5 / tsquery operators and SQL in the query are just words.
    assert ids(srch.search(engine, 'refund" OR "x')) == []
    assert ids(srch.search(engine, "NEAR")) == [made.ticket_id]
    assert srch.search(engine, "x'; DROP TABLE message; --") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Message.__table__)).scalar() == 1
    with pytest.raises(UsageError):
        srch.search(engine, "  !!! ")


def test_index_follows_updates_and_deletes(engine) -> None:
    made = sf.ticket(engine, texts=["pembayaran gagal"])
    m = Message.__table__
    with engine.begin() as conn:
        conn.execute(m.update().where(m.c.id == made.message_ids[0]).values(text="akun diblokir"))
    assert srch.search(engine, "pembayaran") == []
    assert ids(srch.search(engine, "diblokir")) == [made.ticket_id]
    with engine.begin() as conn:
        conn.execute(m.delete().where(m.c.id == made.message_ids[0]))
    assert srch.search(engine, "diblokir") == []


def test_merged_ticket_matches_count_for_target(engine) -> None:
    a = sf.ticket(engine, texts=["halo"])
    b = sf.ticket(engine, texts=["barang rusak saat diterima"])
    operations.merge(engine, b.ticket_id, a.ticket_id, "ana")
    assert ids(srch.search(engine, "rusak")) == [a.ticket_id]


HOSTILE_QUERIES = ['"', '""', "AND", "OR", "NOT x", "*", "foo*", "NEAR(a b)", "-x", "a:b", "(", ")", '"foo', 'foo"', "^",
                   "^foo", "a\x00b", "x" * 5000, "foo " * 1250, "-".join(["foo"] * 1666), "é" * 2500, "🌸🤬🙏",
                   " " * 40, "\u200b", "\ud800", "a_b", "²", "\u0301", "message_fts:foo", "{foo bar}", "foo + bar",
                   "text:foo OR 1=1", "'; DROP TABLE message; --", "foo & !bar | baz <-> qux",
                   "-".join(["foo"] * 20_000), "é-" * 30_000]  # a phrase of tens of thousands of parts: PostgreSQL's stack


def test_every_query_a_person_might_type_gives_results_or_a_usage_error(engine) -> None:
    """FTS5 and tsquery syntax, words longer than PostgreSQL indexes (2,047 bytes), phrases of
    thousands of parts, nothing searchable: never a database error."""
    foo = sf.ticket(engine, texts=["foo and bar, baz qux", "x" * 5000, "é" * 2500])
    for query in HOSTILE_QUERIES:
        try:
            hits = srch.search(engine, query)
        except UsageError as exc:
            assert "no words to look for" in exc.message, query
        else:
            assert ids(hits) in ([], [foo.ticket_id]), query
    assert ids(srch.search(engine, "foo*")) == [foo.ticket_id]  # the word, not a prefix query
    assert ids(srch.search(engine, "NOT foo")) == []  # NOT is a word like any other
    assert ids(srch.search(engine, "^foo")) == [foo.ticket_id]
    assert ids(srch.search(engine, "foo-and-bar-baz-qux")) == [foo.ticket_id]  # a phrase still
