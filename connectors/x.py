"""X (Twitter) API v2 direct messages through tweepy.

- Auth: OAuth 2.0 user token as `bearer_token` with `user_auth=False` (flavour `oauth2`), or OAuth 1.0a
  user context with consumer key/secret and access token/secret (`oauth1`, `user_auth=True`).
- tweepy hard-codes https://api.twitter.com; its session is replaced by our `HttpSession`, which
  rewrites that host (and api.x.com) to `spec.base_url` and applies timeouts, pacing and retries.
  `wait_on_rate_limit` stays off and `return_type=requests.Response` keeps the rate headers visible;
  tweepy's status exceptions are mapped with the same `classify()` as every other response.
- Fetch: `GET /2/dm_events` newest-first until the newest stored event id (snowflakes compared as
  ints; there is no `since_id`). Cursor `{"newest_id": "..."}`, advanced only when the walk down
  reaches it. Events on the stopping page that are older than the cursor but not stored yet (the
  all-events feed lags after a send) are kept too, at no extra call.
- Budget: no lookup is made once `x-rate-limit-remaining` says 0 before the reset
  (`connectors.budget`); the pass stops there. Each page's cursor also says where an unfinished pass
  goes on (`resume: {token, top}`), so the next pass reads on from the pagination token instead of
  spending its 15 lookups on pages already stored, then reads what is newer than `top`.
- Cost: X bills every event a lookup returns, new or not (`Page.events_read` counts them). A pass's
  first lookup asks for what is likely new: the cursor remembers how many new events the last pass
  found (`recent`), so a quiet account reads one event (the stored newest, which shows nothing is new);
  while a page is all new the next one doubles, up to the channel's page size (`first_page_size`, `next_page_size`). A
  resumed pass goes on at the size it had reached (`resume.size`).
- Late arrivals: the all-events feed can show an event up to `LAG` after its date (an echo after a
  send, a customer's message), behind events stored since. The cursor keeps when the last complete
  pass read the feed (`read_at`, the platform's clock from its `Date` header); while the newest stored
  event is dated within `LAG` before that, the walk goes on below the cursor down to `read_at - LAG`
  and keeps what the store lacks, however many newer events came since (the first lookup is sized
  for it: `tail`). X bills a re-read on the same UTC day once; an unknown reply is settled against its
  echo on the same assumption (`inbox.replies.ledger.Timing.quiet`). Old cursors without these keys work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
import tweepy

from connectors.base import (
    MAX_ID_LENGTH,
    AccountSpec,
    Cursor,
    Health,
    InboundMessage,
    KnownIds,
    OutboundReply,
    Page,
    QuarantinedItem,
    RateInfo,
    SendResult,
)
from connectors.enums import Channel
from connectors.budget import CallBudget
from connectors.channels import X
from connectors.responses import classify, rate_info
from connectors.errors import (
    ConnectorError,
    DeliveryUnknownError,
    MalformedResponseError,
    NeedsReauthError,
    ParseError,
    PermanentError,
    TextTooLongError,
)
from connectors.http import HttpSession, RetryPolicy, decode_json
from connectors.paging import TokenPager
from connectors.redact import redact, register_secret, scrub
from connectors.x_cursor import (
    count_of,
    cursor_id,
    first_page_size,
    id_time,
    lowest_snowflake_at,
    next_page_size,
    read_at_of,
    snowflake_of,
    x_cursor,
)
from connectors.x_parse import (
    MESSAGE_CREATE,
    created_event,
    event_items,
    next_token,
    parse_event,
    parse_includes,
    to_message,
)

log = logging.getLogger(__name__)

TEXT_LIMIT = X.text_limit.limit  # characters
NOT_MESSAGES = frozenset({"ParticipantsJoin", "ParticipantsLeave"})  # event types that carry no message
TWEEPY_HOSTS = ("https://api.twitter.com", "https://api.x.com")
DM_EVENT_FIELDS = ["id", "text", "event_type", "created_at", "dm_conversation_id", "sender_id", "attachments", "participant_ids"]
EXPANSIONS = ["sender_id", "attachments.media_keys", "participant_ids"]
USER_FIELDS = ["username", "name"]
MAX_EMPTY_PAGES = 3  # empty pages in a row that still carry a next_token: the tail ends there, not at the budget
LAG = timedelta(minutes=10)  # how long a sent event may take to show up in GET /2/dm_events
MEDIA_FIELDS = ["url", "type", "preview_image_url", "media_key"]

# tweepy logs request headers (with the bearer token) at DEBUG; keep it quieter unless asked.
_tweepy_log = logging.getLogger("tweepy.client")
if _tweepy_log.level == logging.NOTSET:
    _tweepy_log.setLevel(logging.INFO)


class XConnector:
    info = X
    channel = X.channel

    def __init__(self, spec: AccountSpec, *, policy: RetryPolicy | None = None) -> None:
        self.spec = spec
        secrets = spec.secrets
        for value in secrets.values():
            register_secret(value)
        base = spec.base_url.rstrip("/")
        self.session = HttpSession(
            account=spec.name, timeout=spec.timeout, min_interval=spec.min_interval,
            policy=policy or RetryPolicy(max_retries=spec.max_retries),
            rewrite={host: base for host in TWEEPY_HOSTS if host != base}, max_body=spec.max_response_bytes,
        )
        self.skew = timedelta(seconds=spec.clock_skew_seconds)
        common: dict[str, Any] = {"wait_on_rate_limit": False, "return_type": requests.Response}
        flavour = spec.flavour or X.default_flavour
        if flavour == "oauth1":
            needed = X.secret_keys(flavour)
            missing = [k for k in needed if not secrets.get(k)]
            if missing:
                raise NeedsReauthError(f"account '{spec.name}' lacks {', '.join(missing)}", account=spec.name)
            self.client = tweepy.Client(**{k: secrets[k] for k in needed}, **common)
            self.user_auth = True
        else:
            if not secrets.get("access_token"):
                raise NeedsReauthError(f"account '{spec.name}' has no access token", account=spec.name)
            self.client = tweepy.Client(bearer_token=secrets["access_token"], **common)
            self.user_auth = False
        self.client.session.close()
        self.client.session = self.session
        self.rate: RateInfo | None = None
        self.budget = CallBudget(spec.name, interval=spec.min_interval, sleep=self.session.sleep)

    # --- calls --------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *, sending: bool = False, **kwargs: Any) -> Any:
        """Run one tweepy call; tweepy's exceptions become ours, classified once."""
        try:
            response = fn(user_auth=self.user_auth, **kwargs)
        except tweepy.HTTPException as exc:
            reported = rate_info(exc.response.headers)
            self.budget.observe(reported)
            self.rate = reported or self.rate
            error = classify(exc.response, sending=sending, account=self.spec.name)
            raise (error or PermanentError(redact(str(exc)), account=self.spec.name)) from None
        except tweepy.TweepyException as exc:
            raise PermanentError(redact(str(exc)), account=self.spec.name) from None
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # tweepy reads error bodies and headers itself and chokes on unexpected ones ({"errors": 5},
            # x-rate-limit-reset: 1.5): the response is classified here instead, as any other.
            last = self.session.last_response
            error = classify(last, sending=sending, account=self.spec.name) if last is not None else None
            if error is None:
                raise MalformedResponseError(f"unreadable X answer ({exc.__class__.__name__})", account=self.spec.name) from None
            reported = rate_info(last.headers)  # type: ignore[union-attr]
            self.budget.observe(reported)
            self.rate = reported or self.rate
            raise error from None
        reported = rate_info(response.headers)
        self.budget.observe(reported)
        self.rate = reported or self.rate
        try:
            return decode_json(response, account=self.spec.name)
        except MalformedResponseError:
            if sending:
                raise DeliveryUnknownError("the DM was created but its response was unreadable", account=self.spec.name) from None
            raise

    def _lookup(self, *, max_results: int, pagination_token: str | None = None, fields: list[str] | None = None) -> Any:
        self.budget.before_call()  # never the call that would be refused (15 per 15 minutes)
        kwargs: dict[str, Any] = {"dm_event_fields": fields or DM_EVENT_FIELDS, "event_types": MESSAGE_CREATE, "max_results": max_results}
        if fields is None:
            kwargs.update(expansions=EXPANSIONS, user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS)
        if pagination_token:
            kwargs["pagination_token"] = pagination_token
        return self._call(self.client.get_direct_message_events, **kwargs)

    # --- fetch --------------------------------------------------------------------------------
    def fetch(self, cursor: Cursor | None, known: KnownIds) -> Iterator[Page]:
        old_cursor = dict(cursor) if cursor else None
        newest = cursor_id(old_cursor)
        recent = count_of((old_cursor or {}).get("recent"))
        cap = max(1, min(X.max_page_size or 100, self.spec.page_size))
        tail = count_of((old_cursor or {}).get("tail")) or 0
        # When the last pass ran (old cursors: now). A late arrival is an event dated within LAG
        # before the newest stored one that showed up after that pass read past it.
        last_read = read_at_of((old_cursor or {}).get("read_at"))
        read_at = last_read or self.session.clock()
        floor = newest
        reach_back = newest is not None and id_time(newest) >= read_at - LAG
        if not reach_back:
            tail = 0  # nothing stored is recent enough for a late arrival behind it
        else:
            # It may hide behind any event dated later than LAG before that pass, however many newer
            # ones came since: the walk stops only below that (read_at is the platform's clock).
            floor = min(newest, lowest_snowflake_at(read_at - LAG))  # type: ignore[type-var]
        resume = (old_cursor or {}).get("resume")
        if isinstance(resume, Mapping) and isinstance(resume.get("token"), str) and resume["token"]:
            # An unfinished pass stored everything from `top` down to where `token` continues: read
            # on from there to the cursor first, then the events newer than `top` from the top.
            size = min(cap, count_of(resume.get("size")) or cap)
            try:
                newest = yield from self._walk(known, newest=newest, token=resume["token"], top=snowflake_of(resume.get("top")),
                                                  last=False, size=size, cap=cap, recent=recent, tail=tail, floor=floor,
                                                  last_read=last_read)
            except PermanentError as exc:
                log.warning("%s: could not resume the unfinished pass (%s); reading from the newest event again", self.spec.name, exc)
        yield from self._walk(known, newest=newest, token=None, top=None, last=True,
                              size=first_page_size(recent, cap, backfill=newest is None, tail=tail, reach_back=reach_back),
                              cap=cap, recent=recent, tail=tail, last_read=last_read,
                              floor=floor if newest is not None and floor is not None and floor < newest else newest)

    def _walk(self, known: KnownIds, *, newest: int | None, token: str | None, top: int | None, last: bool,
              size: int, cap: int, recent: int | None, tail: int, floor: int | None = None,
              last_read: datetime | None = None) -> Generator[Page, None, int | None]:
        """Events newest-first from `token` (None: the newest) down to `newest`, one `Page` per lookup.

        Until the walk reaches `newest`, each page's cursor keeps `newest_id` and says where to resume
        (`resume: {token, top, size}`): everything from `top` down to that page is stored. The page that
        reaches it carries the new `newest_id`, `recent` (the events newer than the old `newest_id` this
        walk found) and `tail`; the new `newest_id` is also returned (pages before it keep the old
        `recent` and `tail`). `last`: that page ends the pass. The first lookup asks for `size`
        events; each all-new page doubles it, up to `cap`. The walk ends below `floor` (default
        `newest`): events between it and `newest` are late arrivals when the store lacks them.
        """
        floor = newest if floor is None else floor
        best = max((i for i in (newest, top) if i is not None), default=None)
        pager = TokenPager(on_repeat=lambda _: MalformedResponseError("GET /2/dm_events: pagination token repeats", account=self.spec.name),
                           max_empty=MAX_EMPTY_PAGES)
        fresh = 0  # events newer than `newest` read by this walk
        seen: list[int] = []  # the ids it read (for `tail`)
        while True:
            body = self._lookup(max_results=size, pagination_token=token)
            try:
                items = event_items(body)
            except ParseError as exc:
                raise MalformedResponseError(f"GET /2/dm_events: {exc}", account=self.spec.name) from None
            includes = parse_includes(body)
            messages: list[InboundMessage] = []
            quarantined: list[QuarantinedItem] = []
            reached = False  # the page holds an event the cursor covers
            below = False  # ... and one below the floor: the walk is done
            older: list[InboundMessage] = []
            received = self.session.clock()
            for item in items:
                try:
                    event = parse_event(item, received=received, skew=self.skew)
                except ParseError as exc:
                    ext = item.get("id") if isinstance(item, dict) else None
                    ext = str(ext)[:MAX_ID_LENGTH] if isinstance(ext, (str, int)) and not isinstance(ext, bool) else None
                    quarantined.append(self._quarantine(str(exc), item, external_id=ext))
                    fresh += 1
                    continue
                # An id dated in the future (by its own snowflake time) never moves the cursor: every
                # real event after it would look older than the cursor and be skipped.
                if event.plausible and (best is None or event.snowflake > best):
                    best = event.snowflake
                if event.plausible:
                    seen.append(event.snowflake)
                is_old = newest is not None and event.snowflake <= newest
                reached = reached or is_old
                below = below or (floor is not None and event.snowflake <= floor)
                fresh += not is_old
                if event.event_type in NOT_MESSAGES:
                    continue  # joins and leaves are not messages
                if event.event_type != MESSAGE_CREATE:
                    quarantined.append(self._quarantine(f"unknown event_type {event.event_type[:40]!r}", item, external_id=event.id))
                    continue
                try:
                    message = to_message(event, includes, account_id=self.spec.account_id)
                except ParseError as exc:
                    quarantined.append(self._quarantine(str(exc), item, external_id=event.id, thread_id=event.conversation_id))
                    continue
                if message.flags:
                    log.warning("%s: DM event %s stored with repairs: %s", self.spec.name, message.external_id,
                                ", ".join(f.value for f in message.flags))
                (older if is_old else messages).append(message)
            if older:  # late arrivals behind the cursor: keep the ones the store lacks
                stored = known([m.external_id for m in older])
                messages.extend(m for m in older if m.external_id not in stored)
            token = next_token(body)
            try:
                done = below or pager.advance(token, empty=not items) is None
            except MalformedResponseError:
                # The token leads back to a page already read (paging loops): this page is kept under
                # the cursor the walk started from, without a resume token (resuming would walk into
                # the loop again and never reach the new events above it), then the pass stops.
                messages.sort(key=lambda m: (m.sent_at, int(m.external_id)))
                yield Page(messages=tuple(messages), cursor=x_cursor(newest, None, recent=recent, tail=tail, read_at=last_read),
                           quarantined=tuple(quarantined), rate=self.rate, final=False, events_read=len(items))
                raise
            size = next_page_size(size, all_new=not reached, cap=cap)
            messages.sort(key=lambda m: (m.sent_at, int(m.external_id)))
            # A backfill (no cursor yet) says nothing about how many events a poll finds.
            found = (0 if newest is None else fresh) if done else recent
            near = tail  # the stored events within LAG of the newest, besides it (snowflakes hold ms << 22)
            if done and best is not None:
                near = sum(1 for i in seen if best - (int(LAG.total_seconds() * 1000) << 22) <= i < best)
            yield Page(
                messages=tuple(messages),
                cursor=x_cursor(best if done else newest, None if done else (token, best, size), recent=found, tail=near,
                                 read_at=received if done else last_read),
                quarantined=tuple(quarantined),
                rate=self.rate,
                final=done and last,
                events_read=len(items),
            )
            if done:
                return best

    def _quarantine(self, reason: str, raw: Any, *, external_id: str | None = None, thread_id: str | None = None) -> QuarantinedItem:
        log.warning("%s: quarantined DM event: %s", self.spec.name, reason)
        return QuarantinedItem(
            channel=Channel.X, account_id=self.spec.account_id, reason=reason, raw=scrub(raw),
            external_id=external_id, thread_id=thread_id,
        )

    # --- send ---------------------------------------------------------------------------------
    def send(self, reply: OutboundReply) -> SendResult:
        if len(reply.text) > TEXT_LIMIT:
            raise TextTooLongError(
                f"X direct messages are limited to {TEXT_LIMIT} characters; this one has {len(reply.text)}",
                account=self.spec.name,
            )
        if not reply.text.strip():
            raise PermanentError("empty reply text", account=self.spec.name)
        target: dict[str, Any] = (
            {"dm_conversation_id": reply.thread_id} if reply.thread_id else {"participant_id": reply.recipient_id}
        )
        body = self._call(self.client.create_direct_message, sending=True, text=reply.text, **target)
        try:
            event_id, conversation_id = created_event(body)
        except ParseError:
            raise DeliveryUnknownError("the create-DM answer has no dm_event_id", account=self.spec.name) from None
        return SendResult(
            external_id=event_id,
            thread_id=conversation_id or reply.thread_id or None,
            sent_at=datetime.now(timezone.utc),
            raw=scrub(dict(body)),
        )

    # --- health -------------------------------------------------------------------------------
    def health(self) -> Health:
        """One minimal lookup (`max_results=1`, ids only): proves the token and DM scope, reads the rate headers."""
        try:
            self._lookup(max_results=1, fields=["id"])
        except NeedsReauthError as exc:
            return Health(ok=False, detail=str(exc), token_valid=False, rate=self.rate)
        except ConnectorError as exc:
            return Health(ok=False, detail=str(exc), token_valid=None, rate=self.rate)
        detail = "token valid"
        if self.rate is not None and self.rate.remaining is not None:
            detail += f"; {self.rate.remaining}/{self.rate.limit} lookups left in this window"
        return Health(ok=True, detail=detail, token_valid=True, rate=self.rate)

    def close(self) -> None:
        self.session.close()
