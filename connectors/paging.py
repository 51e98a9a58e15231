"""Following a platform's paging: Graph `paging.next` URLs and X `meta.next_token` tokens.

A pager is told, after each page, the link the platform gave for the next one and whether the page
was empty; it answers the link to follow, or None when paging ends there. Two platform faults are
caught here, once for every paging loop:

- a link that repeats (a cursor that loops would walk the same pages for ever): `on_repeat` decides,
  raise an error (the pass fails and is retried) or stop as if the link were absent;
- an endless empty tail (Graph may send `next` on an empty page): paging ends after `max_empty`
  empty pages in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

L = TypeVar("L", bound=Hashable)


class Pager(Generic[L]):
    """The paging state of one walk. `key(link)` is what makes two links the same page."""

    def __init__(
        self,
        *,
        on_repeat: Callable[[L], Exception] | None = None,
        max_empty: int | None = None,
        key: Callable[[L], Hashable] | None = None,
    ) -> None:
        self.on_repeat = on_repeat  # None: a repeated link ends paging quietly
        self.max_empty = max_empty  # None: empty pages never end paging by themselves
        self.key = key
        self.seen: set[Hashable] = set()
        self.empty_run = 0
        self.pages = 0

    def advance(self, link: L | None, *, empty: bool = False) -> L | None:
        """The link to follow after a page that offered `link` (None: paging ends here)."""
        self.pages += 1
        self.empty_run = self.empty_run + 1 if empty else 0
        if link is None:
            return None
        if self.max_empty is not None and self.empty_run >= self.max_empty:
            return None
        marker = self.key(link) if self.key is not None else link
        if marker in self.seen:
            if self.on_repeat is not None:
                raise self.on_repeat(link)
            return None
        self.seen.add(marker)
        return link


class NextUrlPager(Pager[str]):
    """Graph's `paging.next` URLs. Give `key` the client's URL normalizer: two links that differ only in
    the token they carry (`access_token` is dropped before the call) are the same page."""


class TokenPager(Pager[str]):
    """X's `pagination_token`s: opaque, compared as they are."""
