"""The Graph conversation of a Meta customer, which a webhook does not name (it names the customer).

The poll stores each message under its Graph conversation id; a webhook's message must land in the
same thread. The store knows the thread once a poll has seen it; otherwise the account's
conversations edge is asked (`user_id=`, one call per new customer). Without either, the thread is
provisional (`user:<customer id>`), so the message is stored now rather than held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.graph_parse import MetaContext
from connectors.meta_webhook import PROVISIONAL, provisional_thread
from inbox.errors import ConfigError, describe
from inbox.vocab import AccountRef
from inbox.store.tables import contact as _c
from inbox.store.tables import conversation as _v
from connectors.channels import CHANNELS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from inbox.settings import Settings

log = logging.getLogger(__name__)

META_CHANNELS = {info.channel for info in CHANNELS.values() if info.webhook_object}  # Meta's webhooks
CACHE_SIZE = 100_000  # customers whose thread is remembered in memory
LOOKUP_BACKOFF = 60  # seconds without conversation lookups after one failed
# Seconds of lookups one batch of deliveries may spend: a slow platform (answering, only slowly)
# would hold a burst of new customers' messages back by a call each; past it, threads are provisional.
LOOKUP_BUDGET = 10.0


class MetaThreads:
    """`thread_of(ctx, customer_id)` for `connectors.meta_webhook.parse`, with a memory of answers."""

    def __init__(self, engine: Engine, refs: Mapping[tuple[str, str], AccountRef],
                 lookup: Callable[[MetaContext, str], str | None] | None = None) -> None:
        self.engine = engine
        self.refs = refs
        self.lookup = lookup
        self.cache: dict[tuple[str, str, str], str] = {}
        self.failing_until: dict[tuple[str, str], float] = {}
        self.checked: set[tuple[str, str, str]] = set()  # looked up in the store by `prefetch`: not there
        self.spent = 0.0  # seconds of lookups in this batch (`prefetch` starts a batch)
        self.clock = time.monotonic

    def __call__(self, ctx: MetaContext, customer_id: str) -> str:
        key = (ctx.channel.value, ctx.account_id, customer_id)
        if key in self.cache:
            return self.cache[key]
        account = (ctx.channel.value, ctx.account_id)
        found = None
        if key not in self.checked:
            ref = self.refs.get(account)
            found = self._stored(ref, [customer_id]).get(customer_id) if ref is not None else None
        if (found is None and self.lookup is not None and self.spent < LOOKUP_BUDGET
                and self.clock() >= self.failing_until.get(account, 0.0)):
            began = self.clock()
            try:
                found = self.lookup(ctx, customer_id)
            except Exception as exc:  # the message is stored anyway, on a provisional thread
                # The platform is away: no more lookups for a while, so intake never waits on it.
                self.failing_until[account] = self.clock() + LOOKUP_BACKOFF
                log.warning("webhook: conversation lookup for an %s customer failed (%s); provisional threads for %d s",
                            ctx.channel.value, describe(exc), LOOKUP_BACKOFF)
            finally:
                self.spent += self.clock() - began
        thread = found or provisional_thread(customer_id)
        if found:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()  # a long-running server meets many customers; the store remembers them
            self.cache[key] = thread
        self.checked.discard(key)  # a later batch asks the store again (a poll may have seen the thread)
        return thread

    def prefetch(self, wanted: set[tuple[MetaContext, str]]) -> None:
        """Look up the stored threads of these customers in one query per account (a batch of
        deliveries asks for hundreds); those the store lacks are asked of the platform one by one,
        within LOOKUP_BUDGET seconds for the batch."""
        self.spent = 0.0
        by_account: dict[tuple[str, str], list[str]] = {}
        for ctx, customer in wanted:
            key = (ctx.channel.value, ctx.account_id)
            if (*key, customer) not in self.cache:
                by_account.setdefault(key, []).append(customer)
        for key, ids in by_account.items():
            ref = self.refs.get(key)
            if ref is None:
                continue
            for start in range(0, len(ids), 500):
                if len(self.cache) >= CACHE_SIZE:
                    self.cache.clear()
                for customer, thread in self._stored(ref, ids[start:start + 500]).items():
                    self.cache[(*key, customer)] = thread
            self.checked.update((*key, c) for c in ids)

    def _stored(self, ref: AccountRef, customer_ids: list[str]) -> dict[str, str]:
        """customer id -> the external id of their most recent stored (not provisional) thread."""
        query = (
            sa.select(_c.c.platform_user_id, _v.c.external_id)
            .select_from(_v.join(_c, _c.c.id == _v.c.contact_id))
            .where(_v.c.account_id == ref.id, _c.c.account_id == ref.id, _c.c.platform_user_id.in_(customer_ids),
                   ~_v.c.external_id.startswith(PROVISIONAL))
            .order_by(_v.c.last_message_at.asc().nulls_first(), _v.c.id.asc())
        )
        with self.engine.connect() as conn:
            return {r.platform_user_id: r.external_id for r in conn.execute(query)}  # the last one wins: the newest


def graph_lookup(settings: Settings) -> Callable[[MetaContext, str], str | None]:
    """Ask the account's conversations edge for the customer's thread (needs the account's token)."""
    from inbox.sync.account import make_connector

    connectors: dict[tuple[str, str], Any] = {}
    by_platform = {(a.channel.value, a.platform_id): a for a in settings.accounts if a.channel in META_CHANNELS}

    def lookup(ctx: MetaContext, customer_id: str) -> str | None:
        key = (ctx.channel.value, ctx.account_id)
        if key not in connectors:
            acc = by_platform.get(key)
            try:
                # One quick try: the message is stored on a provisional thread rather than wait.
                connectors[key] = make_connector(settings, acc, max_retries=0, timeout=min(acc.timeout_seconds, 5.0)) if acc is not None else None
            except ConfigError:
                connectors[key] = None  # no token here: provisional threads
        conn = connectors[key]
        if conn is None:
            return None
        body = conn.client.get(f"{conn.node}/conversations",
                               {"platform": conn.platform, "user_id": customer_id, "fields": "id,participants"})
        return thread_with(body, customer_id)

    return lookup


def thread_with(body: Any, customer_id: str) -> str | None:
    """The id of the first conversation in a `user_id=` answer that the customer takes part in.
    Graph filters on `user_id`; were it ever to ignore the filter, its first row would be another
    customer's thread, and their replies would go to that customer. Unsure: None (provisional)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    for row in data if isinstance(data, list) else []:
        people = row.get("participants") if isinstance(row, Mapping) else None
        people = people.get("data") if isinstance(people, Mapping) else None
        ids = {str(p.get("id")) for p in people if isinstance(p, Mapping)} if isinstance(people, list) else set()
        tid = row.get("id")
        if customer_id in ids and isinstance(tid, (str, int)) and not isinstance(tid, bool) and str(tid):
            return str(tid)
    return None
