"""What Messenger and Instagram share: the Graph client, the polling pass and the Send API.

A polling pass (reference C.2-C.4) costs one call per page of the conversation list when nothing is
cut short: the list carries each thread's readable messages by field expansion.

1. List conversations newest-first (`fields=id,updated_time,participants,message_count,
   messages.limit(20){...}`, `limit=page_size`), following `paging.next` within the pass only (Graph
   cursors break when an item is deleted, so none is persisted). Listing stops at the first page
   holding a thread whose `updated_time` is at or below the high-water mark minus the overlap
   (`spec.overlap_seconds`): Graph timestamps have one-second resolution and listings lag, so a thread
   can surface with an `updated_time` just below the mark after the previous pass ended.
2. A thread above that line is read unless the cursor remembers it with the same `updated_time` and
   `message_count` (threads inside the overlap window are remembered, so a pass with nothing new costs
   exactly one list call).
3. A changed thread's messages are taken newest-first from its nested `messages` edge until a message
   id the store already knows (asked through `known`, one batch per list page for all its threads).
   Only where the nested read is cut short -- its `paging.next` set while fewer than the readable 20
   were seen, and no known id was reached or no remembered count says every new one was found (a
   lost webhook's message may sit below the one stored; the same holds for any page cut short) --
   does the thread cost calls of its own:
   `/{conversation-id}/messages` from that `next`, one `known` batch per page. A row whose nested edge is missing or not an
   edge (Graph may leave an expansion out, or answer it with an error) is read through
   `/{conversation-id}/messages` (`limit=20`) from the start. When the cursor remembers the thread's
   `message_count` and it grew by more than the new messages above the first known one, a message
   was delivered late (dated before stored ones): the read goes on past known ids until it has found
   as many new ones as the count grew by, or reached the horizon. A known message dated in the
   future (or undated) never ends the read: Graph keeps it on top of its thread.
4. Only the 20 newest messages of a thread are readable. When all of them are new, older new ones
   may be lost. A `Gap` is reported when all readable messages are new, the horizon was reached, and
   either Graph says the thread holds more messages than we could read (`message_count`), or -- count
   unknown -- we had synced before and even the oldest readable message is newer than the previous
   pass (so something between the previous pass and it may be missing). On a first sync the count
   alone decides: a thread of 26 messages has 6 that can never be read, and that is reported; without
   a count a first sync reports nothing, since nothing shows that older messages exist.
5. A broken conversation row or message is quarantined with its raw payload (scrubbed of tokens) and
   the pass goes on; a thread its own read cannot reach (deleted, permission) is quarantined too.

Each conversation-list page becomes one `Page` with the messages of its changed threads (ascending
by time). The last page of the pass carries the new cursor
`{"hwm": newest updated_time, "recent": {thread: [updated_time, message_count]}}`. Intermediate pages
keep the old high-water mark and add the threads read so far to `recent`; a pass that stops early
(the usage budget is spent, `connectors.budget`; throttled; the platform failing -- on the list call
or on a thread's own read) first hands back the threads it finished. So the next pass skips what is
stored and reads on, while the high-water mark never moves past a thread not read yet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from connectors.base import (
    MAX_ID_LENGTH,
    AccountSpec,
    Cursor,
    Gap,
    Health,
    InboundMessage,
    KnownIds,
    OutboundReply,
    Page,
    QuarantinedItem,
    SendResult,
)
from connectors.enums import Channel, ReplyPolicy
from connectors.channels import GRAPH_THREAD_HORIZON, ChannelInfo
from connectors.errors import (
    ConnectorError,
    DeliveryUnknownError,
    MalformedResponseError,
    NeedsReauthError,
    ParseError,
    PermanentError,
    TextTooLongError,
)
from connectors.graph_client import GraphClient, after_cursor, next_link
from connectors.http import RetryPolicy
from connectors.paging import NextUrlPager
from connectors.graph_parse import (
    Conversation,
    MetaContext,
    iter_ids,
    message_items,
    nested_messages,
    parse_conversation,
    parse_message,
    sent_message_id,
)
from connectors.redact import scrub
from connectors.times import format_time, parse_time, platform_time

log = logging.getLogger(__name__)

HORIZON = GRAPH_THREAD_HORIZON  # only the 20 newest messages of a thread are readable
MESSAGE_FIELDS = "id,created_time,from,to,message,attachments,story,shares,sticker,is_unsupported"
CONVERSATION_FIELDS = "id,updated_time,participants,message_count"
# Each row carries its thread's readable messages, with the fields a thread's own read asks.
LISTING_FIELDS = f"{CONVERSATION_FIELDS},messages.limit({HORIZON}){{{MESSAGE_FIELDS}}}"
MAX_EMPTY_PAGES = 3  # Graph may send `next` on an empty page; do not walk an endless empty tail


class MetaConnector:
    """Base of the Messenger and Instagram connectors; leaves declare the class attributes below."""

    info: ClassVar[ChannelInfo]  # the channel's facts (text limit among them)
    channel: ClassVar[Channel]
    platform: ClassVar[str]  # the `platform` parameter of the conversations edge

    def __init__(self, spec: AccountSpec, *, policy: RetryPolicy | None = None) -> None:
        self.spec = spec
        self.overlap = timedelta(seconds=spec.overlap_seconds)
        self.skew = timedelta(seconds=spec.clock_skew_seconds)
        self.client = GraphClient(spec, policy=policy)
        self.ctx = MetaContext(
            channel=self.channel,
            account_id=spec.account_id,
            own_ids=frozenset(i for i in (spec.account_id, spec.page_id) if i),
        )

    # --- what a leaf may override -------------------------------------------------------------
    @property
    def node(self) -> str:
        """The Graph node that owns the conversations and sends messages."""
        return self.spec.page_id or self.spec.account_id

    # --- fetch --------------------------------------------------------------------------------
    def fetch(self, cursor: Cursor | None, known: KnownIds) -> Iterator[Page]:
        old_cursor = dict(cursor) if cursor else None
        hwm = _cursor_time(old_cursor)
        recent: dict[str, list[Any]] = dict((old_cursor or {}).get("recent") or {})
        threshold = hwm - self.overlap if hwm is not None else None
        new_hwm = hwm
        seen: dict[str, list[Any]] = {}
        done: dict[str, list[Any]] = {}  # threads this pass has read and handed back, with their signatures
        url: str = f"{self.node}/conversations"
        params: dict[str, Any] | None = {"platform": self.platform, "fields": LISTING_FIELDS, "limit": self.spec.page_size}
        pager = NextUrlPager(
            key=self.client.url, max_empty=MAX_EMPTY_PAGES,
            on_repeat=lambda _: MalformedResponseError(f"GET /{self.node}/conversations: paging loops", account=self.spec.name),
        )
        while True:
            messages: list[InboundMessage] = []
            quarantined: list[QuarantinedItem] = []
            gaps: list[Gap] = []
            read: dict[str, list[Any]] = {}  # threads of this list page read so far
            owners: list[tuple[str, str]] = []  # (thread, customer) of those threads
            reached_old = False
            try:
                body = self.client.get(url, params)
                if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
                    raise MalformedResponseError(f"GET /{self.node}/conversations: no data list", account=self.spec.name)
                received = self.client.session.clock()
                changed: list[tuple[Conversation, list[Any], Mapping[str, Any] | None]] = []
                for item in body["data"]:
                    try:
                        conv = parse_conversation(item, received=received, skew=self.skew)
                    except ParseError as exc:
                        quarantined.append(self._quarantine(f"conversation: {exc}", item))
                        continue
                    if conv.stamp is not None:
                        # A time the platform did not really give: the thread is read, but its time
                        # neither moves the high-water mark nor ends the listing.
                        log.warning("%s: thread %s has an unusable updated_time %r; read anyway", self.spec.name, conv.id,
                                    conv.stamp)
                    elif new_hwm is None or conv.updated_time > new_hwm:
                        new_hwm = conv.updated_time
                    if conv.stamp is None and threshold is not None and conv.updated_time <= threshold:
                        reached_old = True
                        continue
                    # A repaired time is remembered as the platform gave it, so an unchanged thread is not re-read.
                    signature = [conv.stamp or format_time(conv.updated_time), conv.message_count]
                    seen[conv.id] = signature
                    if conv.message_count is not None and recent.get(conv.id) == signature:
                        # Unchanged since a pass (or an unfinished one) read it. Without a count the
                        # time alone cannot say so (one-second resolution): the thread is read.
                        continue
                    changed.append((conv, signature, nested_messages(item)))
                # One question to the store for the nested messages of every changed thread of the page.
                nested_ids = [i for _c, _s, edge in changed if edge is not None for i in iter_ids(edge["data"])]
                stored = known(nested_ids) if nested_ids else set()
                for conv, signature, edge in changed:
                    msgs, quar, gap = self._read_thread(conv, known, threshold, nested=edge, stored=stored,
                                                        grew=_count_growth(recent.get(conv.id), conv.message_count))
                    messages.extend(msgs)
                    quarantined.extend(quar)
                    if gap is not None:
                        gaps.append(gap)
                    read[conv.id] = signature
                    # Whose thread it is, only where the row says so plainly: one customer.
                    others = {p.id for p in conv.participants[:8] if p.id not in self.ctx.own_ids}
                    owners.extend((conv.id, c) for c in others if len(others) == 1)
            except ConnectorError:
                # The pass stops here (budget spent, throttled, the platform failing): hand back the
                # threads read so far, with a cursor that skips them next time, so every pass gains
                # ground however small the budget. The high-water mark stays where it was: threads
                # below this point are not read yet.
                if messages or quarantined or gaps or read:
                    done.update(read)
                    messages.sort(key=lambda m: (m.sent_at, m.thread_id))  # stable: a thread keeps the platform's order within a second
                    yield self._page(messages, quarantined, gaps, owners, self._progress_cursor(old_cursor, recent, done))
                raise
            done.update(read)
            messages.sort(key=lambda m: (m.sent_at, m.thread_id))  # stable: a thread keeps the platform's order within a second
            try:
                link = None if reached_old else pager.advance(next_link(body), empty=not body["data"])
            except MalformedResponseError:
                # The link leads back to a page already read (paging loops): what this page read is
                # kept, then the pass stops, the high-water mark unmoved (threads past it are unread).
                yield self._page(messages, quarantined, gaps, owners, self._progress_cursor(old_cursor, recent, done))
                raise
            final = link is None
            cursor = self._new_cursor(new_hwm, recent, seen) if final else self._progress_cursor(old_cursor, recent, done)
            yield self._page(messages, quarantined, gaps, owners, cursor, final=final)
            if final:
                return
            url, params = link, None

    def _page(self, messages: list[InboundMessage], quarantined: list[QuarantinedItem], gaps: list[Gap],
              owners: list[tuple[str, str]], cursor: Cursor | None, *, final: bool = False) -> Page:
        return Page(messages=tuple(messages), cursor=cursor, quarantined=tuple(quarantined), gaps=tuple(gaps),
                    rate=self.client.rate, final=final, threads=tuple(owners))

    @staticmethod
    def _progress_cursor(old: Mapping[str, Any] | None, recent: Mapping[str, list[Any]], done: Mapping[str, list[Any]]) -> dict[str, Any] | None:
        """The cursor of an unfinished pass: the old high-water mark, and the threads read so far as
        "recent" (skipped while unchanged), so the next pass resumes instead of reading them again."""
        if not done:
            return dict(old) if old else None
        return {**(old or {}), "v": 1, "recent": {**recent, **done}}

    def _new_cursor(self, hwm: datetime | None, recent: Mapping[str, list[Any]], seen: Mapping[str, list[Any]]) -> dict[str, Any] | None:
        if hwm is None:
            return None
        floor = hwm - self.overlap
        merged = {**recent, **seen}
        keep = {tid: sig for tid, sig in merged.items() if _sig_time(sig) is not None and _sig_time(sig) > floor}  # type: ignore[operator]
        return {"v": 1, "hwm": format_time(hwm), "recent": keep}

    def _read_thread(
        self, conv: Conversation, known: KnownIds, threshold: datetime | None, *,
        nested: Mapping[str, Any] | None = None, stored: set[str] | None = None, grew: int | None = None,
    ) -> tuple[list[InboundMessage], list[QuarantinedItem], Gap | None]:
        """A changed thread's messages the store lacks, newest first, page by page until a page that
        reaches a known one: from the list row's nested edge (`nested`; the stored ones among its ids
        in `stored`), read on through the thread's own edge only where that is cut short; without a
        nested edge, through its own edge from the start."""
        url: str = f"{conv.id}/messages"
        params: dict[str, Any] | None = {"fields": MESSAGE_FIELDS, "limit": HORIZON}
        messages: list[InboundMessage] = []
        quarantined: list[QuarantinedItem] = []
        readable = 0
        saw_known = False
        pager = NextUrlPager(key=self.client.url, max_empty=1)  # a repeated link ends the thread (HORIZON bounds it too)
        from_nested = False
        while True:
            if nested is not None:
                body: Any = nested
                items: list[Any] = list(nested["data"])
                nested, from_nested = None, True
                stored = stored if stored is not None else set()
            else:
                try:
                    body = self.client.get(url, params)
                    items = message_items(body)
                except PermanentError as exc:
                    # One unreadable thread (deleted, permission) must not stop the account's sync.
                    quarantined.append(self._quarantine(f"thread unreadable: {exc}", {"conversation_id": conv.id}, thread_id=conv.id))
                    return messages, quarantined, None
                except ParseError as exc:
                    quarantined.append(self._quarantine(f"thread messages: {exc}", body, thread_id=conv.id))
                    return messages, quarantined, None
                ids = iter_ids(items)
                stored = known(ids) if ids else set()
            received = self.client.session.clock()
            for item in items:
                readable += 1
                if isinstance(item, Mapping) and str(item.get("id")) in stored:
                    # A page already read is read to its end, past the stored ones: a message stored
                    # by webhook says nothing of the older ones (its neighbour's webhook may have been
                    # lost), and one delivered late sits below newer ones. Unstored ones cost a parse.
                    if platform_time(item.get("created_time"), received, self.skew)[1] is None:
                        saw_known = True  # a misdated one stays on top, above messages written after it
                    continue
                try:
                    message = parse_message(item, self.ctx, thread_id=conv.id, participants=conv.participants,
                                            received=received, skew=self.skew)
                except ParseError as exc:
                    ext = item.get("id") if isinstance(item, Mapping) else None
                    ext = str(ext)[:MAX_ID_LENGTH] if isinstance(ext, (str, int)) and not isinstance(ext, bool) else None
                    quarantined.append(self._quarantine(f"message: {exc}", item, thread_id=conv.id, external_id=ext))
                    continue
                if message.flags:
                    log.warning("%s: message %s stored with repairs: %s", self.spec.name, message.external_id,
                                ", ".join(f.value for f in message.flags))
                messages.append(message)
            link = next_link(body) if isinstance(body, Mapping) else None
            if isinstance(body, Mapping) and isinstance(body.get("messages"), Mapping):
                link = next_link(body["messages"])
            # The next page only while no known message was reached, or fewer new ones were found
            # than the thread's count grew by (late deliveries below the known ones); a page cut short
            # of the horizon (nested or not), without that count, is read on to the horizon.
            counted = grew is not None or link is None
            if (saw_known and counted and len(messages) + len(quarantined) >= (grew or 0)) or readable >= HORIZON:
                break
            link = pager.advance(link, empty=not items)
            if link is None:
                break
            url, params = link, None
            after = after_cursor(body) if from_nested else None
            if after is not None:
                # Read on from the nested edge's cursor with our own fields (its `next` is built by
                # Graph from the expansion, and carries the token).
                url, params = f"{conv.id}/messages", {"fields": MESSAGE_FIELDS, "limit": HORIZON, "after": after}
            from_nested = False
        gap = None
        if not saw_known and readable >= HORIZON:
            oldest = min((m.sent_at for m in messages), default=None)
            if conv.message_count is not None:
                lost = conv.message_count > readable
            else:
                lost = threshold is not None and oldest is not None and oldest > threshold
            if lost:
                detail = f"all {readable} readable messages are new; older ones are past the {HORIZON}-message horizon"
                if conv.message_count is not None:
                    detail += f" (the thread holds {conv.message_count})"
                older = conv.message_count - readable if conv.message_count is not None else None
                gap = Gap(thread_id=conv.id, detail=detail, oldest_readable_at=oldest, older=older)
                log.warning("%s: gap in thread %s: %s", self.spec.name, conv.id, detail)
        # Oldest first in the platform's own order: times have whole seconds, and within one second
        # only this order says which message answered which.
        messages.reverse()
        return messages, quarantined, gap

    def _quarantine(self, reason: str, raw: Any, *, thread_id: str | None = None, external_id: str | None = None) -> QuarantinedItem:
        log.warning("%s: quarantined %s", self.spec.name, reason)
        return QuarantinedItem(
            channel=self.channel, account_id=self.spec.account_id, reason=reason, raw=scrub(raw),
            external_id=external_id, thread_id=thread_id,
        )

    # --- send ---------------------------------------------------------------------------------
    def check_text(self, text: str) -> None:
        """TextTooLongError before any HTTP call (Messenger: 2,000 characters; Instagram: 1,000 UTF-8 bytes)."""
        limit = self.info.text_limit
        size = limit.measure(text)
        if size > limit.limit:
            unit = "UTF-8 bytes" if limit.unit == "bytes" else "characters"
            raise TextTooLongError(
                f"{self.channel.label} replies are limited to {limit.limit} {unit}; this one has {size}",
                account=self.spec.name,
            )
        if not text.strip():
            raise PermanentError("empty reply text", account=self.spec.name)

    def send(self, reply: OutboundReply) -> SendResult:
        self.check_text(reply.text)
        body: dict[str, Any] = {
            "recipient": {"id": reply.recipient_id},
            "message": {"text": reply.text, "metadata": reply.idempotency_key},
        }
        if reply.policy is ReplyPolicy.HUMAN_AGENT:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        else:
            body["messaging_type"] = "RESPONSE"
        data = self.client.post(f"{self.node}/messages", body)
        try:
            message_id = sent_message_id(data)
        except ParseError:
            raise DeliveryUnknownError("the Send API answered without a message_id", account=self.spec.name) from None
        return SendResult(external_id=message_id, thread_id=reply.thread_id, sent_at=datetime.now(timezone.utc), raw=scrub(dict(data)))

    # --- health -------------------------------------------------------------------------------
    def health(self) -> Health:
        """One cheap read of the conversations edge: proves the token and the messaging permission."""
        try:
            self.client.get(f"{self.node}/conversations", {"platform": self.platform, "fields": "id", "limit": 1})
        except NeedsReauthError as exc:
            return Health(ok=False, detail=str(exc), token_valid=False, rate=self.client.rate)
        except ConnectorError as exc:
            return Health(ok=False, detail=str(exc), token_valid=None, rate=self.client.rate)
        rate = self.client.rate
        detail = "token valid"
        if rate is not None and rate.usage_pct is not None:
            detail += f"; {rate.usage_pct:.0f}% of the usage budget used"
        return Health(ok=True, detail=detail, token_valid=True, rate=rate)

    def close(self) -> None:
        self.client.close()


def _count_growth(signature: Any, count: int | None) -> int | None:
    """How many messages a thread gained since a pass remembered it (`recent`: [time, count]): a
    late arrival dated before the stored newest one shows only here. None when either count is unknown."""
    old = signature[1] if isinstance(signature, list) and len(signature) > 1 else None
    if count is None or isinstance(old, bool) or not isinstance(old, int) or old < 0:
        return None
    return max(0, min(count - old, HORIZON))


def _cursor_time(cursor: Mapping[str, Any] | None) -> datetime | None:
    if not cursor or not cursor.get("hwm"):
        return None
    try:
        return parse_time(cursor["hwm"])
    except ValueError:
        log.warning("unreadable cursor high-water mark ignored; doing a full pass")
        return None


def _sig_time(signature: Any) -> datetime | None:
    try:
        return parse_time(signature[0])
    except (TypeError, ValueError, IndexError):
        return None
