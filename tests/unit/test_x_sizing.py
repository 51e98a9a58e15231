"""The X connector's `max_results` rule, as a table: what a pass asks for first, how it grows, and
what a cursor (hostile ones included) makes of it. No HTTP, no database."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.x import _count, _x_cursor, first_page_size, next_page_size


@pytest.mark.parametrize(
    ("recent", "cap", "backfill", "size"),
    [
        (0, 100, False, 1),  # quiet: one event, the stored newest, shows nothing is new
        (None, 100, False, 1),  # an old cursor that does not say: start small, grow if busy
        (1, 100, False, 2),  # one new last time: that many again plus the stored newest
        (7, 100, False, 8),
        (99, 100, False, 100),
        (500, 100, False, 100),  # never past the channel's page size
        (3, 2, False, 2),  # nor past a smaller configured one
        (0, 100, True, 100),  # a backfill: everything is new
        (None, 25, True, 25),
    ],
)
def test_first_page_size(recent: int | None, cap: int, backfill: bool, size: int) -> None:
    assert first_page_size(recent, cap, backfill=backfill) == size


@pytest.mark.parametrize(
    ("recent", "tail", "size"),
    [
        (0, 0, 1),
        (0, 2, 4),  # the newest, the 2 stored near it, and one beyond: a late arrival among them is seen
        (3, 2, 7),
        (0, -4, 1),
        (50, 80, 100),
    ],
)
def test_first_page_size_reaches_over_the_recent_tail(recent: int, tail: int, size: int) -> None:
    assert first_page_size(recent, 100, tail=tail) == size


@pytest.mark.parametrize(
    ("size", "all_new", "cap", "after"),
    [
        (1, True, 100, 2),
        (2, True, 100, 4),
        (64, True, 100, 100),  # doubling stops at the page size
        (100, True, 100, 100),
        (8, False, 100, 8),  # a page that reached the cursor: the pass is over, the size stays
        (150, False, 100, 100),
    ],
)
def test_next_page_size(size: int, all_new: bool, cap: int, after: int) -> None:
    assert next_page_size(size, all_new=all_new, cap=cap) == after


def test_the_sizes_of_a_burst_double_up_to_the_page_size() -> None:
    sizes = [first_page_size(0, 100)]
    while sizes[-1] < 100:
        sizes.append(next_page_size(sizes[-1], all_new=True, cap=100))
    assert sizes == [1, 2, 4, 8, 16, 32, 64, 100]


@pytest.mark.parametrize(
    ("value", "count"),
    [(0, 0), (5, 5), (10**30, 10**30), (-1, None), (True, None), (False, None), ("5", None), (5.0, None), (None, None), ([3], None), ({}, None)],
)
def test_hostile_cursor_counts_are_ignored(value: Any, count: int | None) -> None:
    assert _count(value) == count
    assert 1 <= first_page_size(_count(value), 100) <= 100


def test_the_cursor_carries_recent_and_the_resume_size() -> None:
    assert _x_cursor(42, None, recent=3) == {"newest_id": "42", "recent": 3}
    assert _x_cursor(42, ("tok" * 6, 99, 16), recent=None) == {"newest_id": "42", "resume": {"token": "tok" * 6, "top": "99", "size": 16}}
    assert _x_cursor(None, ("tok" * 6, None, 4)) == {"resume": {"token": "tok" * 6, "size": 4}}
    assert _x_cursor(None, None, recent=5) is None  # nothing stored yet: no cursor at all
    assert _x_cursor(42, None, recent=0, tail=2) == {"newest_id": "42", "recent": 0, "tail": 2}
