"""X (Twitter) API v2 direct messages through tweepy.

- Auth: OAuth 2.0 user token as `bearer_token` with `user_auth=False` (flavour `oauth2`), or OAuth 1.0a
  user context with consumer key/secret and access token/secret (`oauth1`, `user_auth=True`).
- tweepy hard-codes https://api.twitter.com; its session is replaced by our `HttpSession`, which
  rewrites that host (and api.x.com) to `spec.base_url` and applies timeouts, pacing and retries.
  `wait_on_rate_limit` stays off and `return_type=requests.Response` keeps the rate headers visible;
  tweepy's status exceptions are mapped with the same `classify()` as every other response.
- Fetch: `GET /2/dm_events` newest-first until the newest stored event id (snowflakes compared as
  ints; there is no `since_id`). Cursor `{"newest_id": "..."}`, advanced only on the final page. Events
  on the stopping page that are older than the cursor but not stored yet (the all-events feed lags
  after a send) are kept too, at no extra call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import requests
import tweepy

from connectors.base import (
    AccountSpec,
    Channel,
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
from connectors.classify import classify, rate_info
from connectors.errors import (
    ConnectorError,
    DeliveryUnknownError,
    MalformedResponseError,
    NeedsReauthError,
    PermanentError,
    TextTooLongError,
)
from connectors.http import HttpSession, RetryPolicy, decode_json
from connectors.redact import redact, register_secret, scrub
from connectors.x_parse import MESSAGE_CREATE, ParseError, created_event, event_items, next_token, parse_event, parse_includes, to_message

log = logging.getLogger(__name__)

TEXT_LIMIT = 10_000
TWEEPY_HOSTS = ("https://api.twitter.com", "https://api.x.com")
DM_EVENT_FIELDS = ["id", "text", "event_type", "created_at", "dm_conversation_id", "sender_id", "attachments", "participant_ids"]
EXPANSIONS = ["sender_id", "attachments.media_keys", "participant_ids"]
USER_FIELDS = ["username", "name"]
MEDIA_FIELDS = ["url", "type", "preview_image_url", "media_key"]

# tweepy logs request headers (with the bearer token) at DEBUG; keep it quieter unless asked.
_tweepy_log = logging.getLogger("tweepy.client")
if _tweepy_log.level == logging.NOTSET:
    _tweepy_log.setLevel(logging.INFO)


class XConnector:
    channel = Channel.X

    def __init__(self, spec: AccountSpec, *, policy: RetryPolicy | None = None) -> None:
        self.spec = spec
        secrets = spec.secrets
        for value in secrets.values():
            register_secret(value)
        base = spec.base_url.rstrip("/")
        self.session = HttpSession(
            account=spec.name, timeout=spec.timeout, min_interval=spec.min_interval,
            policy=policy or RetryPolicy(max_retries=spec.max_retries),
            rewrite={host: base for host in TWEEPY_HOSTS if host != base},
        )
        common: dict[str, Any] = {"wait_on_rate_limit": False, "return_type": requests.Response}
        if (spec.flavour or "oauth2") == "oauth1":
            needed = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
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

    # --- calls --------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *, sending: bool = False, **kwargs: Any) -> Any:
        """Run one tweepy call; tweepy's exceptions become ours, classified once."""
        try:
            response = fn(user_auth=self.user_auth, **kwargs)
        except tweepy.HTTPException as exc:
            self.rate = rate_info(exc.response.headers) or self.rate
            error = classify(exc.response, sending=sending, account=self.spec.name)
            raise (error or PermanentError(redact(str(exc)), account=self.spec.name)) from None
        except tweepy.TweepyException as exc:
            raise PermanentError(redact(str(exc)), account=self.spec.name) from None
        self.rate = rate_info(response.headers) or self.rate
        try:
            return decode_json(response, account=self.spec.name)
        except MalformedResponseError:
            if sending:
                raise DeliveryUnknownError("the DM was created but its response was unreadable", account=self.spec.name) from None
            raise

    def _lookup(self, *, max_results: int, pagination_token: str | None = None, fields: list[str] | None = None) -> Any:
        kwargs: dict[str, Any] = {"dm_event_fields": fields or DM_EVENT_FIELDS, "event_types": MESSAGE_CREATE, "max_results": max_results}
        if fields is None:
            kwargs.update(expansions=EXPANSIONS, user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS)
        if pagination_token:
            kwargs["pagination_token"] = pagination_token
        return self._call(self.client.get_direct_message_events, **kwargs)

    # --- fetch --------------------------------------------------------------------------------
    def fetch(self, cursor: Cursor | None, known: KnownIds) -> Iterator[Page]:
        old_cursor = dict(cursor) if cursor else None
        newest = _cursor_id(old_cursor)
        best = newest
        token: str | None = None
        used: set[str] = set()
        size = max(1, min(100, self.spec.page_size))
        while True:
            body = self._lookup(max_results=size, pagination_token=token)
            try:
                items = event_items(body)
            except ParseError as exc:
                raise MalformedResponseError(f"GET /2/dm_events: {exc}", account=self.spec.name) from None
            includes = parse_includes(body)
            messages: list[InboundMessage] = []
            quarantined: list[QuarantinedItem] = []
            reached = False
            older: list[InboundMessage] = []
            for item in items:
                try:
                    event = parse_event(item)
                except ParseError as exc:
                    quarantined.append(self._quarantine(str(exc), item))
                    continue
                if best is None or event.snowflake > best:
                    best = event.snowflake
                is_old = newest is not None and event.snowflake <= newest
                reached = reached or is_old
                if event.event_type != MESSAGE_CREATE:
                    continue  # joins and leaves are not messages
                try:
                    message = to_message(event, includes, account_id=self.spec.account_id)
                except ParseError as exc:
                    quarantined.append(self._quarantine(str(exc), item, external_id=event.id, thread_id=event.conversation_id))
                    continue
                (older if is_old else messages).append(message)
            if older:  # late arrivals behind the cursor: keep the ones the store lacks
                stored = known([m.external_id for m in older])
                messages.extend(m for m in older if m.external_id not in stored)
            token = next_token(body)
            final = reached or token is None
            if not final and token in used:
                raise MalformedResponseError("GET /2/dm_events: pagination token repeats", account=self.spec.name)
            if token:
                used.add(token)
            messages.sort(key=lambda m: (m.sent_at, int(m.external_id)))
            new_cursor = {"newest_id": str(best)} if best is not None else old_cursor
            yield Page(
                messages=tuple(messages),
                cursor=new_cursor if final else old_cursor,
                quarantined=tuple(quarantined),
                rate=self.rate,
                final=final,
            )
            if final:
                return

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


def _cursor_id(cursor: Cursor | None) -> int | None:
    if not cursor or cursor.get("newest_id") is None:
        return None
    try:
        return int(cursor["newest_id"])
    except (TypeError, ValueError):
        log.warning("unreadable X cursor ignored; doing a full pass")
        return None
