"""Graph API endpoints: Page and Instagram conversations, messages, message nodes and the Send API.

Served under `/facebook/vNN.0` (graph.facebook.com: Messenger and Instagram through the Page) and
`/instagram/vNN.0` (graph.instagram.com: Instagram Login). Shapes follow the reference payloads:
newest first, cursor paging whose `next` is an absolute URL carrying the access token, only the 20 newest
messages of a thread readable, Graph error bodies, `X-Business-Use-Case-Usage` on every answer.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sandbox import media
from sandbox.fields import FieldSpec, FieldSyntaxError, parse_fields
from sandbox.state import (
    IG_DIRECT_ID,
    IG_FB_ID,
    PAGE_ID,
    MetaAccount,
    Msg,
    Person,
    State,
    Thread,
    b64,
)
from sandbox.wire import Reply, Request

VERSION_RE = re.compile(r"^v\d{1,2}\.0$")
DAY_MS = 86400 * 1000
TEXT_LIMIT_MESSENGER = 2000  # characters
TEXT_LIMIT_INSTAGRAM = 1000  # UTF-8 bytes
METADATA_LIMIT = 1000
OUTSIDE_WINDOW_SUBCODE = {"messenger": 2018278, "instagram": 2534022}
MESSENGER_ONLY_TAGS = {"ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"}

CONVERSATION_FIELDS = {
    "id", "updated_time", "participants", "senders", "message_count", "unread_count", "snippet", "can_reply",
    "link", "name", "subject", "former_participants", "is_subscribed", "scoped_thread_key", "wallpaper", "messages",
}
MESSAGE_FIELDS = {
    "id", "created_time", "from", "to", "message", "attachments", "shares", "story", "reactions", "sticker",
    "tags", "is_unsupported", "reply_to",
}
DEFAULT_CONVERSATION_FIELDS = "id,updated_time"
DEFAULT_MESSAGE_FIELDS = "id,created_time"


class GraphError(Exception):
    def __init__(self, code: int, message: str, subcode: int | None = None, status: int = 400,
                 type_: str = "OAuthException", transient: bool | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode, self.status, self.type, self.transient = code, message, subcode, status, type_, transient


def fbtrace() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii").rstrip("=").replace("/", "_").replace("+", "-")[:23]


def error_body(err: GraphError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": err.message, "type": err.type, "code": err.code}
    if err.subcode is not None:
        body["error_subcode"] = err.subcode
    if err.transient is not None:
        body["is_transient"] = err.transient
    body["fbtrace_id"] = fbtrace()
    return {"error": body}


def error_reply(err: GraphError) -> Reply:
    return Reply(err.status, error_body(err))


def not_found(obj: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported get request. Object with ID '{obj}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation.",
        subcode=33,
        type_="GraphMethodException",
    )


def expired_token_error(now: float) -> GraphError:
    stamp = time.strftime("%A, %d-%b-%y %H:%M:%S", time.gmtime(now - 3600))
    return GraphError(190, f"Error validating access token: Session has expired on {stamp} UTC. The current time is "
                      f"{time.strftime('%A, %d-%b-%y %H:%M:%S', time.gmtime(now))} UTC.", subcode=463)


def rate_error(platform: str | None) -> GraphError:
    if platform == "instagram":
        return GraphError(80002, "(#80002) There have been too many calls to this Instagram account. Wait a bit and try again. "
                          "For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.", transient=True)
    if platform == "messenger":
        return GraphError(80006, "(#80006) There have been too many messenger api calls to this Page account. Wait a bit and "
                          "try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.", transient=True)
    return GraphError(32, "(#32) Page request limit reached", transient=True)


def server_error(status: int) -> GraphError:
    if status == 503:
        return GraphError(2, "Service temporarily unavailable", status=503, transient=True)
    return GraphError(1, "An unknown error has occurred. Please retry your request later.", status=status, transient=True)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ms // 1000))


# ── usage accounting ────────────────────────────────────────────────────────────────────────
UNLIMITED_CALLS_PER_SECOND = 1000
class Usage:
    """Calls per business object, for X-Business-Use-Case-Usage and throttling.

    Two models. By default, usage is calls in the last minute against `calls_per_second` (which also
    throttles reads beyond it; unset, a notional 1,000 calls/s and no throttling). With a call budget
    (`set_budget`), usage grows by 100/`calls` per call within a fixed window per business object:
    the call that spends the budget reports 100 %, and every read after it gets 80006 / 80002 with
    `estimated_time_to_regain_access` until the window passes (on the sandbox clock).
    """

    def __init__(self, calls_per_second: float | None) -> None:
        self.calls_per_second = calls_per_second
        self.calls: dict[str, deque[float]] = {}
        self.blocked_until: dict[str, float] = {}
        self.budget: int | None = None
        self.window = 3600.0
        self.spent: dict[str, list[float]] = {}  # obj -> [window start, calls spent]

    def set_budget(self, calls: int | None, window_seconds: float = 3600.0, used: dict[str, int] | None = None) -> None:
        """`calls` per `window_seconds` per business object (None: back to the per-minute model);
        `used` presets calls already spent in the current window (e.g. by another app of the Page)."""
        self.budget = calls
        self.window = window_seconds
        self.spent = {}
        for obj, n in (used or {}).items():
            self.spent[obj] = [-math.inf, float(n)]  # started "now" on first use, below

    def _spent(self, obj: str, now: float) -> list[float]:
        win = self.spent.get(obj)
        if win is None:
            win = self.spent[obj] = [now, 0.0]
        elif win[0] == -math.inf:
            win[0] = now
        elif now >= win[0] + self.window:
            win[0], win[1] = now, 0.0
        return win

    def record(self, obj: str, now: float) -> None:
        q = self.calls.setdefault(obj, deque())
        q.append(now)
        while q and q[0] < now - 60:
            q.popleft()
        if self.budget is not None:
            self._spent(obj, now)[1] += 1

    def over_limit(self, obj: str, now: float) -> bool:
        if self.budget is not None:
            return self._spent(obj, now)[1] >= self.budget
        if self.calls_per_second is None:
            return False
        if self.blocked_until.get(obj, 0) > now:
            return True
        recent = 0
        for t in reversed(self.calls.get(obj, ())):  # newest first: stop at the first call over a second old
            if t <= now - 1.0:
                break
            recent += 1
        if recent >= self.calls_per_second:
            self.blocked_until[obj] = now + 1.0
            return True
        return False

    def header(self, obj: str, bucket: str, now: float, throttled: bool = False) -> str:
        regain = 1 if throttled else 0  # minutes
        if self.budget is not None:
            win = self._spent(obj, now)
            pct = math.ceil(win[1] * 100 / max(1, self.budget))
            if throttled:
                regain = max(1, math.ceil((win[0] + self.window - now) / 60))
        else:
            q = self.calls.get(obj, deque())
            while q and q[0] < now - 60:
                q.popleft()
            # Without a limit nothing is throttled, so usage is reported against a notional 1,000
            # calls/s: a client that believes the header is never stopped by it.
            per_minute = (self.calls_per_second or UNLIMITED_CALLS_PER_SECOND) * 60
            pct = math.ceil(len(q) * 100 / per_minute)
        if throttled:
            pct = max(pct, 100)
        entry = {
            "type": bucket,
            "call_count": pct,
            "total_cputime": pct // 3,
            "total_time": pct // 2,
            "estimated_time_to_regain_access": regain,
        }
        return json.dumps({obj: [entry]}, separators=(",", ":"))


# ── request context ─────────────────────────────────────────────────────────────────────────
@dataclass
class Ctx:
    req: Request
    host: str  # "facebook" | "instagram"
    version: str
    parts: list[str]
    token: str | None

    @property
    def root(self) -> str:
        return f"{self.req.base_url}/{self.host}/{self.version}"


def split(req: Request) -> Ctx | None:
    parts = [p for p in req.path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("facebook", "instagram") or not VERSION_RE.match(parts[1]):
        return None
    token = req.query.get("access_token")
    auth = req.headers.get("authorization", "")
    if not token and auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    if not token and req.method == "POST":
        try:
            token = req.form().get("access_token")
        except ValueError:
            token = None
    return Ctx(req, parts[0], parts[1], parts[2:], token)


def attribute(state: State, ctx: Ctx) -> MetaAccount | None:
    """Which account a request concerns (for faults, the call log and usage), without side effects."""
    if ctx.host == "instagram":
        return state.meta.get("tokoshop-ig-direct")
    if not ctx.parts:
        return state.meta.get("tokoshop-fb")
    head = ctx.parts[0]
    if head == IG_FB_ID:
        return state.meta.get("tokoshop-ig")
    if head in (PAGE_ID, "me"):
        if len(ctx.parts) > 1 and ctx.parts[1] == "conversations":
            platform = ctx.req.query.get("platform", "messenger").lower()
            return state.meta.get("tokoshop-ig" if platform == "instagram" else "tokoshop-fb")
        if len(ctx.parts) > 1 and ctx.parts[1] == "messages" and ctx.req.method == "POST":
            try:
                rid = str((ctx.req.form().get("recipient") or {}).get("id", ""))
            except (ValueError, AttributeError):
                rid = ""
            ig = state.meta.get("tokoshop-ig")
            if ig is not None and rid in ig.by_customer:
                return ig
        return state.meta.get("tokoshop-fb")
    th = state.thread_index.get(head)
    if th is not None:
        return state.meta.get(th.account)
    msg = state.msg_index.get(head)
    if msg is not None:
        return state.meta.get(msg.thread.account)
    return state.meta.get("tokoshop-fb")


def business_object(acc: MetaAccount | None) -> tuple[str, str]:
    """(key, bucket type) for the usage header."""
    if acc is None:
        return PAGE_ID, "pages"
    if acc.platform == "instagram":
        return acc.spec.platform_id, "instagram"
    return acc.spec.platform_id, "messenger"


# ── rendering ───────────────────────────────────────────────────────────────────────────────
def person_json(acc: MetaAccount, person: Person) -> dict[str, Any]:
    if acc.platform == "messenger":
        return {"name": person.name, "email": person.email or f"{person.id}@facebook.com", "id": person.id}
    return {"username": person.username, "id": person.id}


def cursor(*parts: Any) -> str:
    return b64(("QVFI|" + "|".join(str(p) for p in parts)).encode())


def uncursor(value: str) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise GraphError(100, "(#100) Invalid cursor", type_="GraphMethodException") from None
    parts = raw.split("|")
    if parts[0] != "QVFI" or len(parts) != 3 or not parts[1].lstrip("-").isdigit():
        raise GraphError(100, "(#100) Invalid cursor", type_="GraphMethodException")
    return parts[1:]


def render_message(acc: MetaAccount, msg: Msg, fields: dict[str, FieldSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        if name not in MESSAGE_FIELDS:
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({name}) on node type (Message)", type_="GraphMethodException")
        if name == "id":
            out["id"] = msg.id
        elif name == "created_time":
            out["created_time"] = iso(msg.created_ms)
        elif name == "from":
            out["from"] = person_json(acc, msg.sender)
        elif name == "to":
            other = msg.thread.customer if msg.outbound else acc.brand
            out["to"] = {"data": [person_json(acc, other)]}
        elif name == "message":
            if msg.text:
                out["message"] = msg.text
        elif name == "attachments":
            if msg.attachments:
                out["attachments"] = {"data": msg.attachments, "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}}
        elif name == "shares":
            if msg.shares:
                out["shares"] = {"data": msg.shares, "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}}
        elif name == "story":
            if msg.story:
                out["story"] = msg.story
        elif name == "sticker":
            if msg.sticker:
                out["sticker"] = msg.sticker
        elif name == "reactions":
            if msg.reactions:
                out["reactions"] = {"data": msg.reactions}
        elif name == "tags":
            tags = [{"name": "inbox"}, {"name": "sent" if msg.outbound else "read"}]
            out["tags"] = {"data": tags}
        elif name == "reply_to":
            if msg.reply_to:
                out["reply_to"] = msg.reply_to
        elif name == "is_unsupported":
            out["is_unsupported"] = msg.unsupported
    if "id" not in out:
        out["id"] = msg.id  # Graph always returns the node id
    return out


def _limit(value: str | None, default: int, cap: int = 100) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise GraphError(100, f"(#100) Param limit must be a positive integer, got '{value}'", type_="GraphMethodException") from None
    if n < 1:
        raise GraphError(100, "(#100) Param limit must be a positive integer", type_="GraphMethodException")
    return min(n, cap)


def messages_edge(ctx: Ctx, acc: MetaAccount, th: Thread, sub: dict[str, FieldSpec] | None, limit: int,
                  after: str | None, before: str | None, fields_text: str) -> dict[str, Any]:
    fields = sub if sub else parse_fields(DEFAULT_MESSAGE_FIELDS)
    readable = th.readable()
    start = 0
    if after:
        c_ms, c_id = uncursor(after)[:2]
        start = _position(readable, int(c_ms), c_id) + 1
    elif before:
        c_ms, c_id = uncursor(before)[:2]
        end = _position(readable, int(c_ms), c_id)
        start = max(0, end - limit)
    page = readable[start : start + limit]
    data = [render_message(acc, m, fields) for m in page]
    out: dict[str, Any] = {"data": data}
    if page:
        first, last = page[0], page[-1]
        paging: dict[str, Any] = {"cursors": {"before": cursor(first.created_ms, first.id), "after": cursor(last.created_ms, last.id)}}
        params = {"fields": fields_text or DEFAULT_MESSAGE_FIELDS, "limit": str(limit)}
        if start > 0:
            paging["previous"] = next_url(ctx, f"{th.id}/messages", {**params, "before": paging["cursors"]["before"]})
        if start + limit < len(readable):
            paging["next"] = next_url(ctx, f"{th.id}/messages", {**params, "after": paging["cursors"]["after"]})
        out["paging"] = paging
    return out


def _position(readable: list[Msg], created_ms: int, mid: str) -> int:
    for i, m in enumerate(readable):
        if m.id == mid:
            return i
    # The cursor's message fell off the readable window: continue after its time.
    for i, m in enumerate(readable):
        if m.created_ms < created_ms:
            return i - 1
    return len(readable)


def next_url(ctx: Ctx, path: str, params: dict[str, str]) -> str:
    # The real `next` carries the access token in the URL; so does ours.
    query = {"access_token": ctx.token or "", "pretty": "0", **params}
    return f"{ctx.root}/{path}?{urlencode(query)}"


def unparse_fields(fields: dict[str, FieldSpec]) -> str:
    parts = []
    for name, spec in fields.items():
        text = name + "".join(f".{k}({v})" for k, v in spec.mods.items())
        if spec.sub:
            text += "{" + unparse_fields(spec.sub) + "}"
        parts.append(text)
    return ",".join(parts)


def render_thread(ctx: Ctx, state: State, acc: MetaAccount, th: Thread, fields: dict[str, FieldSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in CONVERSATION_FIELDS:
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({name}) on node type (UnifiedThread)", type_="GraphMethodException")
        if name == "id":
            out["id"] = th.id
        elif name == "updated_time":
            out["updated_time"] = iso(th.updated_ms)
        elif name in ("participants", "senders"):
            people = [th.customer, acc.brand] if acc.platform == "messenger" else [acc.brand, th.customer]
            out[name] = {"data": [person_json(acc, p) for p in people]}
        elif name == "former_participants":
            out[name] = {"data": []}
        elif name == "message_count":
            out[name] = len(th.messages)
        elif name == "unread_count":
            unread = 0
            for m in reversed(th.messages):
                if m.outbound:
                    break
                unread += 1
            out[name] = unread
        elif name == "snippet":
            newest = th.messages[-1] if th.messages else None
            out[name] = (newest.text or "")[:100] if newest else ""
        elif name == "can_reply":
            last = th.last_customer_ms()
            out[name] = last is not None and state.now_ms() - last <= 7 * DAY_MS
        elif name == "link":
            out[name] = f"/{acc.spec.platform_id}/inbox/{th.id}"
        elif name == "name":
            out[name] = th.customer.name or th.customer.username or ""
        elif name == "is_subscribed":
            out[name] = True
        elif name == "scoped_thread_key":
            out[name] = f"t_{th.customer.id}"
        elif name == "messages":
            limit = _limit(spec.mods.get("limit"), 25)
            sub_text = unparse_fields(spec.sub) if spec.sub else DEFAULT_MESSAGE_FIELDS
            out["messages"] = messages_edge(ctx, acc, th, spec.sub, limit, None, None, sub_text)
        # subject, wallpaper: not set on these threads, so omitted as Graph does
    if "id" not in out:
        out["id"] = th.id
    return out


# ── endpoints ───────────────────────────────────────────────────────────────────────────────
def handle(state: State, ctx: Ctx, usage: Usage) -> Reply:
    """Answer one Graph request (the caller holds the state lock)."""
    acc = attribute(state, ctx)
    obj, bucket = business_object(acc)
    now = state.now()
    try:
        expected = state.tokens[ctx.host]
        if not ctx.token or ctx.token != expected:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        reading = ctx.req.method == "GET"
        if reading and usage.over_limit(obj, now):
            reply = error_reply(rate_error(acc.platform if acc else None))
            reply.headers["X-Business-Use-Case-Usage"] = usage.header(obj, bucket, now, throttled=True)
            return reply
        usage.record(obj, now)
        reply = _route(state, ctx)
    except GraphError as err:
        reply = error_reply(err)
    except FieldSyntaxError as exc:
        reply = error_reply(GraphError(100, f"(#100) Syntax error in fields: {exc}", type_="GraphMethodException"))
    except ValueError:
        reply = error_reply(GraphError(100, "(#100) Invalid request body", type_="GraphMethodException"))
    reply.headers["X-Business-Use-Case-Usage"] = usage.header(obj, bucket, now)
    return reply


def _route(state: State, ctx: Ctx) -> Reply:
    parts, method, q = ctx.parts, ctx.req.method, ctx.req.query
    if not parts:
        raise GraphError(100, "(#100) Unsupported request", type_="GraphMethodException")
    head = parts[0]
    if parts == ["debug_token"] and method == "GET":
        return Reply(200, debug_token(state, ctx))
    if len(parts) == 2 and parts[1] == "conversations" and method == "GET":
        return Reply(200, list_conversations(state, ctx, _owner_for_listing(state, ctx, head)))
    if len(parts) == 2 and parts[1] == "messages" and method == "POST":
        return send(state, ctx, _owners_for_send(state, ctx, head))
    if len(parts) == 2 and parts[1] == "messages" and method == "GET":
        th = _thread(state, ctx, head)
        acc = state.meta[th.account]
        fields = parse_fields(q.get("fields") or DEFAULT_MESSAGE_FIELDS)
        limit = _limit(q.get("limit"), 25)
        return Reply(200, messages_edge(ctx, acc, th, fields, limit, q.get("after"), q.get("before"), q.get("fields") or ""))
    if len(parts) == 1 and method == "GET":
        return Reply(200, get_node(state, ctx, head))
    raise GraphError(100, f"(#100) Unsupported {method.lower()} request.", type_="GraphMethodException")


def _owner_for_listing(state: State, ctx: Ctx, head: str) -> MetaAccount:
    if ctx.host == "instagram":
        if head in ("me", IG_DIRECT_ID):
            return state.meta["tokoshop-ig-direct"]
        raise not_found(head)
    if head in ("me", PAGE_ID):
        platform = ctx.req.query.get("platform", "messenger").lower()
        if platform not in ("messenger", "instagram"):
            raise GraphError(100, "(#100) platform must be one of the following values: messenger, instagram", type_="GraphMethodException")
        return state.meta["tokoshop-ig" if platform == "instagram" else "tokoshop-fb"]
    if head == IG_FB_ID:
        return state.meta["tokoshop-ig"]
    raise not_found(head)


def _owners_for_send(state: State, ctx: Ctx, head: str) -> list[MetaAccount]:
    if ctx.host == "instagram":
        if head in ("me", IG_DIRECT_ID):
            return [state.meta["tokoshop-ig-direct"]]
        raise not_found(head)
    if head in ("me", PAGE_ID):
        return [state.meta["tokoshop-fb"], state.meta["tokoshop-ig"]]
    if head == IG_FB_ID:
        return [state.meta["tokoshop-ig"]]
    raise not_found(head)


def _thread(state: State, ctx: Ctx, tid: str) -> Thread:
    th = state.thread_index.get(tid)
    if th is None or state.meta[th.account].host != ctx.host:
        raise not_found(tid)
    return th


def list_conversations(state: State, ctx: Ctx, acc: MetaAccount) -> dict[str, Any]:
    q = ctx.req.query
    fields_text = q.get("fields") or DEFAULT_CONVERSATION_FIELDS
    fields = parse_fields(fields_text)
    limit = _limit(q.get("limit"), 25)
    index = acc.index
    user_id = q.get("user_id")
    if user_id:
        th = acc.by_customer.get(user_id)
        return {"data": [render_thread(ctx, state, acc, th, fields)] if th else []}
    start = 0
    if q.get("after"):
        neg, tid = uncursor(q["after"])[:2]
        start = bisect_right(index, (int(neg), tid))
    elif q.get("before"):
        neg, tid = uncursor(q["before"])[:2]
        start = max(0, bisect_left(index, (int(neg), tid)) - limit)
    keys = index[start : start + limit]
    data = [render_thread(ctx, state, acc, acc.threads[tid], fields) for _, tid in keys]
    out: dict[str, Any] = {"data": data}
    if keys:
        paging: dict[str, Any] = {"cursors": {"before": cursor(*keys[0]), "after": cursor(*keys[-1])}}
        params = {"fields": fields_text, "limit": str(limit)}
        if ctx.host == "facebook":
            params["platform"] = acc.platform
        if start > 0:
            paging["previous"] = next_url(ctx, f"{ctx.parts[0]}/conversations", {**params, "before": paging["cursors"]["before"]})
        if start + limit < len(index):
            paging["next"] = next_url(ctx, f"{ctx.parts[0]}/conversations", {**params, "after": paging["cursors"]["after"]})
        out["paging"] = paging
    return out


def get_node(state: State, ctx: Ctx, head: str) -> dict[str, Any]:
    q = ctx.req.query
    th = state.thread_index.get(head)
    if th is not None:
        th = _thread(state, ctx, head)
        return render_thread(ctx, state, state.meta[th.account], th, parse_fields(q.get("fields") or DEFAULT_CONVERSATION_FIELDS))
    msg = state.msg_index.get(head)
    if msg is not None:
        acc = state.meta[msg.thread.account]
        if acc.host != ctx.host:
            raise not_found(head)
        if msg not in msg.thread.readable():
            # Meta: only the 20 newest messages of a conversation can be read; older ones read as deleted.
            raise GraphError(100, "(#100) This message has been deleted or is no longer available.",
                             type_="GraphMethodException")
        return render_message(acc, msg, parse_fields(q.get("fields") or DEFAULT_MESSAGE_FIELDS))
    return _profile(state, ctx, head)


def debug_token(state: State, ctx: Ctx) -> dict[str, Any]:
    """Token introspection, as health checks use it: validity, type and granted scopes."""
    expected = state.tokens[ctx.host]
    valid = ctx.req.query.get("input_token", ctx.token) == expected
    scopes = (["pages_show_list", "pages_manage_metadata", "pages_read_engagement", "pages_messaging", "instagram_basic",
               "instagram_manage_messages", "business_management"] if ctx.host == "facebook"
              else ["instagram_business_basic", "instagram_business_manage_messages"])
    data: dict[str, Any] = {"app_id": "1517776481860111", "type": "PAGE" if ctx.host == "facebook" else "USER",
                            "application": "TokoShop Inbox", "is_valid": valid, "expires_at": 0,
                            "data_access_expires_at": int(state.now()) + 90 * 86400}
    if valid:
        data["scopes"] = scopes
        data["profile_id" if ctx.host == "facebook" else "user_id"] = PAGE_ID if ctx.host == "facebook" else IG_DIRECT_ID
    else:
        data["error"] = {"code": 190, "message": "Invalid OAuth access token.", "subcode": 0}
    return {"data": data}


def _profile(state: State, ctx: Ctx, head: str) -> dict[str, Any]:
    """Page / Instagram account nodes, leniently: known fields answered, others left out."""
    wanted = parse_fields(ctx.req.query.get("fields") or "id,name")
    if ctx.host == "instagram" and head in ("me", IG_DIRECT_ID):
        acc = state.meta["tokoshop-ig-direct"]
        known = {"id": IG_DIRECT_ID, "user_id": IG_DIRECT_ID, "username": acc.brand.username, "name": acc.brand.name,
                 "account_type": "BUSINESS"}
    elif ctx.host == "facebook" and head in ("me", PAGE_ID):
        acc = state.meta["tokoshop-fb"]
        known = {"id": PAGE_ID, "name": acc.brand.name, "instagram_business_account": {"id": IG_FB_ID},
                 "tasks": ["ANALYZE", "ADVERTISE", "MESSAGING", "MODERATE", "CREATE_CONTENT", "MANAGE"]}
    elif ctx.host == "facebook" and head == IG_FB_ID:
        acc = state.meta["tokoshop-ig"]
        known = {"id": IG_FB_ID, "username": acc.brand.username, "name": acc.brand.name}
    else:
        raise not_found(head)
    out = {k: known[k] for k in wanted if k in known}
    out.setdefault("id", known["id"])
    return out


def send(state: State, ctx: Ctx, owners: list[MetaAccount]) -> Reply:
    body = ctx.req.form()
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        raise GraphError(100, "(#100) The parameter recipient is required", type_="OAuthException")
    rid = str(recipient["id"])
    acc = th = None
    for owner in owners:
        th = owner.by_customer.get(rid)
        if th is not None:
            acc = owner
            break
    if acc is None or th is None:
        raise GraphError(100, "(#100) No matching user found", subcode=2018001)
    if body.get("sender_action") and not body.get("message"):
        return Reply(200, {"recipient_id": rid})
    message = body.get("message")
    if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
        raise GraphError(100, "(#100) The parameter message is required and must contain text or an attachment")
    messaging_type = str(body.get("messaging_type") or "")
    tag = body.get("tag")
    text = message.get("text")
    if text is not None and not isinstance(text, str):
        raise GraphError(100, "(#100) Param message[text] must be a string")
    if text:
        if acc.platform == "messenger" and len(text) > TEXT_LIMIT_MESSENGER:
            raise GraphError(100, f"(#100) Length of param message[text] must be less than or equal to {TEXT_LIMIT_MESSENGER}")
        if acc.platform == "instagram" and len(text.encode("utf-8")) > TEXT_LIMIT_INSTAGRAM:
            raise GraphError(100, "(#100) Length of param message[text] must be less than or equal to 1000 bytes")
    metadata = message.get("metadata")
    if metadata is not None and len(str(metadata)) > METADATA_LIMIT:
        raise GraphError(100, f"(#100) Length of param message[metadata] must be less than or equal to {METADATA_LIMIT}")
    _check_window(state, acc, th, messaging_type, tag)
    now = state.now()
    msg = state.add_msg(th, int(now * 1000), True, text or None)
    msg.metadata = str(metadata) if metadata is not None else None
    attachment = message.get("attachment")
    if isinstance(attachment, dict):
        payload = attachment.get("payload") or {}
        spec = {"type": attachment.get("type", "file"), "url": payload.get("url") if isinstance(payload, dict) else None}
        msg.attachments = [media.from_spec(state.rng, now, spec)]
    acc.sent.append({
        "message_id": msg.id,
        "recipient_id": rid,
        "thread_id": th.id,
        "text": text,
        "messaging_type": messaging_type,
        "tag": tag,
        "metadata": msg.metadata,
        "attachment": attachment,
        "at": now,
    })
    return Reply(200, {"recipient_id": rid, "message_id": msg.id})


def _check_window(state: State, acc: MetaAccount, th: Thread, messaging_type: str, tag: Any) -> None:
    if messaging_type not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
        raise GraphError(100, "(#100) param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
    last = th.last_customer_ms()
    age = state.now_ms() - last if last is not None else None
    allowed: bool
    if messaging_type in ("RESPONSE", "UPDATE"):
        allowed = age is not None and age <= DAY_MS
    else:
        if not tag:
            raise GraphError(100, "(#100) Param tag is required when messaging_type is MESSAGE_TAG")
        if tag == "HUMAN_AGENT":
            allowed = age is not None and age <= 7 * DAY_MS
        elif acc.platform == "messenger" and tag in MESSENGER_ONLY_TAGS:
            allowed = True
        elif acc.platform == "messenger" and tag == "CUSTOMER_FEEDBACK":
            allowed = age is not None and age <= 7 * DAY_MS
        else:
            raise GraphError(100, f"(#100) Invalid tag: {tag}")
    if not allowed:
        raise GraphError(
            10,
            "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
            "https://developers.facebook.com/docs/messenger-platform/policy-overview",
            subcode=OUTSIDE_WINDOW_SUBCODE[acc.platform],
        )
