"""The page pipeline of a pass: a prefetch thread ahead of the page writer, pages batched while the
store's write lock is busy, and the platform ids already stored (or waiting to be) for the connector."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import Page
from inbox.store.models import Message

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inbox.vocab import AccountRef

BATCH_MESSAGES = 1000  # pages already fetched are stored together up to this many messages
FETCH_NICENESS = 19


class KnownIds:
    """`KnownIds` for a connector: which of these platform ids are stored for the account.

    Meta connectors ask once per changed thread, so this keeps one connection for the pass and
    ends its read transaction after every question (a SQLite reader must not pin the WAL). On
    SQLite the question goes straight to the driver in autocommit mode (each SELECT is its own
    read transaction, ended when its rows are read).

    Ids of pages fetched but still waiting to be stored (`pending`) count as known: the answer
    is the one the connector would get if every page before it were already stored.
    """

    def __init__(self, engine: Engine, ref: AccountRef) -> None:
        m = Message.__table__
        self.ref = ref
        self.engine = engine
        self.conn: Any = None
        self.raw: Any = None
        self.sqlite = engine.dialect.name == "sqlite"
        self.query = sa.select(m.c.external_id).where(
            m.c.channel == ref.channel, m.c.account_id == ref.id, m.c.external_id.in_(sa.bindparam("ids", expanding=True))
        )
        self._pending: dict[str, int] = {}  # id -> number of queued pages holding it
        self._lock = threading.Lock()

    def add_pending(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self._pending[i] = self._pending.get(i, 0) + 1

    def drop_pending(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                left = self._pending.get(i, 0) - 1
                if left > 0:
                    self._pending[i] = left
                else:
                    self._pending.pop(i, None)

    def __call__(self, external_ids: Sequence[str], /) -> set[str]:
        ids = list(dict.fromkeys(external_ids))
        if not ids:
            return set()
        # Pending ids first: a page is dropped from `pending` only after its commit, so an id
        # missed here is in the store by the time the query below reads it.
        with self._lock:
            out = {i for i in ids if i in self._pending}
        if self.sqlite:
            if self.raw is None:
                self.raw = self.engine.raw_connection()
            driver = self.raw.driver_connection
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                sql = _KNOWN_SQL + ", ".join("?" * len(chunk)) + ")"
                out.update(r[0] for r in driver.execute(sql, (self.ref.channel, self.ref.id, *chunk)).fetchall())
            return out
        if self.conn is None:
            self.conn = self.engine.connect()
        try:
            for i in range(0, len(ids), 500):
                out.update(self.conn.execute(self.query, {"ids": ids[i : i + 500]}).scalars())
        finally:
            self.conn.rollback()
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.raw is not None:
            self.raw.close()
            self.raw = None


# Placeholders only; every value is bound. The store's isolation_level=None (inbox/store/engine.py) keeps
# the driver in autocommit, so no read transaction outlives the fetch.
_KNOWN_SQL = "SELECT external_id FROM message WHERE channel = ? AND account_id = ? AND external_id IN ("


class Prefetch:
    """Fetch a connector's pages in a thread of their own, up to `depth` pages ahead of the consumer (`batches`).

    The network (and parsing) of the next pages overlaps the storing of the current one; the
    bounded queue keeps memory flat. Pages come out in order and an error of the connector comes
    out where it happened, after the pages before it. Nothing here stores anything: each page
    and its cursor are still stored together, in order, by the consumer.
    """

    _DONE = object()

    def __init__(
        self, pages: Iterator[Page], known: KnownIds | None, *, stop_event: threading.Event | None = None, depth: int = 4
    ) -> None:
        self._pages = pages
        self._stop = stop_event
        self._known = known
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{threading.current_thread().name}-fetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        _lower_priority()
        try:
            for page in self._pages:
                if self._stop is not None and self._stop.is_set() and not page.final:
                    # The consumer stops after the page it is storing (it sees the same event),
                    # so it takes at most this one: fetching more would spend platform calls
                    # (X: 15 per 15 minutes) on pages never stored.
                    self._put(page)
                    return
                if self._known is not None:
                    self._known.add_pending([m.external_id for m in page.messages])
                if not self._put(page):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Raised(exc))
            return
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()
        self._put(self._DONE)

    def batches(self, max_messages: int) -> Iterator[list[Page]]:
        """The pages in order, each time the next one and those already waiting behind it.

        Stored together (`merge_pages`), they share one transaction and one turn at the store's
        write lock: while the lock is busy, pages queue up here and the next write takes them
        all. A batch stops after `max_messages` or at a page that ends the pass.
        """
        held: Any = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is self._DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            batch = [item]
            count = len(item.messages)
            while count < max_messages and not batch[-1].final:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is self._DONE or isinstance(nxt, _Raised):
                    held = nxt  # after this batch is stored, as it would be page by page
                    break
                batch.append(nxt)
                count += len(nxt.messages)
            yield batch

    def stored(self, page: Page) -> None:
        """The page is committed: its ids are in the store now."""
        if self._known is not None:
            self._known.drop_pending([m.external_id for m in page.messages])

    def close(self) -> None:
        """Stop fetching (pages not consumed are dropped: not stored, their cursor not written)."""
        self._cancel.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


@dataclass(frozen=True, slots=True)
class _Raised:
    exc: BaseException


def _lower_priority() -> None:
    """Run the fetching thread at a lower CPU priority than the thread storing pages (Linux).

    With several accounts in worker processes on few cores, the page writer holds the store's
    write lock, which every other account waits for: it should not lose its core to fetching
    and parsing, which can wait (the queue ahead of the writer is short anyway). The fetching
    thread mostly waits on the network, so on an idle machine this changes nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FETCH_NICENESS)
    except (AttributeError, OSError):  # no per-thread priorities here; nothing lost
        pass


def merge_pages(pages: Sequence[Page]) -> Page:
    """Consecutive pages of one pass as one: what storing them one by one, in order, would store.

    The cursor is the last one any of them carries (each page's cursor is written after its
    messages), and the pass ends where the last page says.
    """
    if len(pages) == 1:
        return pages[0]
    return Page(
        messages=tuple(m for p in pages for m in p.messages),
        cursor=next((p.cursor for p in reversed(pages) if p.cursor is not None), None),
        quarantined=tuple(q for p in pages for q in p.quarantined),
        gaps=tuple(g for p in pages for g in p.gaps),
        rate=next((p.rate for p in reversed(pages) if p.rate is not None), None),
        final=pages[-1].final,
        events_read=sum(p.events_read for p in pages),
        threads=tuple(t for p in pages for t in p.threads),
    )


def make_known(engine: Engine, ref: AccountRef) -> KnownIds:
    return KnownIds(engine, ref)
