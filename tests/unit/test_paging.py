"""The pagers every paging loop uses: repeated links, empty tails, normalized keys."""

from __future__ import annotations

import pytest

from connectors.errors import MalformedResponseError
from connectors.paging import NextUrlPager, TokenPager


def _loops(link: str) -> Exception:
    return MalformedResponseError(f"paging loops at {link}")


def test_links_are_followed_until_there_is_none() -> None:
    pager = TokenPager(on_repeat=_loops)
    assert pager.advance("t1") == "t1"
    assert pager.advance("t2") == "t2"
    assert pager.advance(None) is None
    assert pager.pages == 3


def test_a_repeated_token_raises() -> None:
    pager = TokenPager(on_repeat=_loops)
    pager.advance("t1")
    pager.advance("t2")
    with pytest.raises(MalformedResponseError, match="loops at t1"):
        pager.advance("t1")


def test_a_repeated_link_without_on_repeat_ends_paging_quietly() -> None:
    pager = NextUrlPager()
    assert pager.advance("https://g/next?after=a") == "https://g/next?after=a"
    assert pager.advance("https://g/next?after=a") is None


def test_links_equal_under_the_key_are_the_same_page() -> None:
    pager = NextUrlPager(key=lambda url: url.split("&access_token=")[0], on_repeat=_loops)
    pager.advance("https://g/c?after=a&access_token=one")
    with pytest.raises(MalformedResponseError):
        pager.advance("https://g/c?after=a&access_token=two")


def test_an_empty_tail_is_cut_off() -> None:
    pager = NextUrlPager(max_empty=3, on_repeat=_loops)
    assert pager.advance("p1", empty=True) == "p1"
    assert pager.advance("p2", empty=True) == "p2"
    assert pager.advance("p3", empty=True) is None  # the third empty page in a row ends it


def test_a_page_with_items_resets_the_empty_run() -> None:
    pager = NextUrlPager(max_empty=2)
    assert pager.advance("p1", empty=True) == "p1"
    assert pager.advance("p2", empty=False) == "p2"
    assert pager.advance("p3", empty=True) == "p3"
    assert pager.advance("p4", empty=True) is None


def test_one_empty_page_ends_paging_when_max_empty_is_one() -> None:
    pager = NextUrlPager(max_empty=1)
    assert pager.advance("p1", empty=False) == "p1"
    assert pager.advance("p2", empty=True) is None


def test_no_empty_limit_means_empty_pages_go_on() -> None:
    pager = TokenPager()
    assert all(pager.advance(f"t{i}", empty=True) == f"t{i}" for i in range(10))
