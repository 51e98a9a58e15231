"""X API v2 Direct Message endpoints: lookups, sends, `x-rate-limit-*` budgets, RFC 7807 problems.

Served under `/x`. Lookups are newest first, limited to the last 30 days, with `pagination_token` /
`meta.next_token`; fields that were not asked for are left out; an empty page is exactly
`{"meta":{"result_count":0}}`. Auth: an OAuth 2.0 user token as `Bearer`, or an OAuth 1.0a header whose
consumer key and token match (the signature is not checked).
"""

from __future__ import annotations

import base64
import re
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sandbox import media
from sandbox.state import TWEPOCH_MS, X_ACCESS_TOKEN, X_CONSUMER_KEY, X_HORIZON_MS, X_TOKEN, Person, State, XAccount, XEvent
from sandbox.wire import Reply, Request

TEXT_LIMIT = 10_000
PROBLEMS = "https://api.twitter.com/2/problems/"
DM_EVENT_FIELDS = ("attachments", "created_at", "dm_conversation_id", "entities", "event_type", "id",
                   "participant_ids", "referenced_tweets", "sender_id", "text")
EXPANSIONS = ("attachments.media_keys", "participant_ids", "referenced_tweets.id", "sender_id")
EVENT_TYPES = ("MessageCreate", "ParticipantsJoin", "ParticipantsLeave")
USER_FIELDS = ("affiliation", "connection_status", "created_at", "description", "entities", "id", "location",
               "most_recent_tweet_id", "name", "pinned_tweet_id", "profile_banner_url", "profile_image_url", "protected",
               "public_metrics", "receives_your_dm", "subscription_type", "url", "username", "verified",
               "verified_type", "withheld")
MEDIA_FIELDS = ("alt_text", "duration_ms", "height", "media_key", "non_public_metrics", "organic_metrics",
                "preview_image_url", "promoted_metrics", "public_metrics", "type", "url", "variants", "width")
TWEET_FIELDS = ("id", "text", "created_at", "author_id", "conversation_id", "lang", "entities")
LOOKUP_PARAMS = ("dm_event.fields", "event_types", "expansions", "max_results", "media.fields", "pagination_token",
                 "tweet.fields", "user.fields", "post.fields")
STATUS_URL = re.compile(r"https?://(?:x|twitter)\.com/\w+/status/(\d+)")
URL_RE = re.compile(r"https?://\S+")
MENTION_RE = re.compile(r"(?<!\w)@(\w{1,15})")
HASHTAG_RE = re.compile(r"(?<!\w)#(\w+)")
CONV_RE = re.compile(r"^([0-9]{1,19}-[0-9]{1,19}|[0-9]{15,19})$")


def problem(status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> Reply:
    body: dict[str, Any] = {**extra, "title": title, "detail": detail, "type": type_}
    if type_ == "about:blank":
        body["status"] = status
    return Reply(status, body)


def invalid(name: str, value: str, message: str) -> Reply:
    return problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                   PROBLEMS + "invalid-request", errors=[{"parameters": {name: [value]}, "message": message}])


def unauthorized() -> Reply:
    return problem(401, "Unauthorized", "Unauthorized")


def too_many() -> Reply:
    return problem(429, "Too Many Requests", "Too Many Requests")


def server_error(status: int) -> Reply:
    title = "Service Unavailable" if status == 503 else "Internal Server Error"
    return problem(status, title, title)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def encode_token(kind: str, num: int) -> str:
    return base64.b32encode(f"{kind}{num}".encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, int] | None:
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
        return raw[0], int(raw[1:])
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


# ── rate limits ─────────────────────────────────────────────────────────────────────────────
class RateLimits:
    """A fixed window per (user, endpoint), as the x-rate-limit-* headers describe."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self.windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, used]

    def _current(self, key: tuple[str, str], now: float) -> list[float]:
        win = self.windows.get(key)
        if win is None or now >= win[0] + self.window:
            win = [now, 0]
            self.windows[key] = win
        return win

    def take(self, key: tuple[str, str], now: float, limit: int | None = None) -> tuple[bool, dict[str, str]]:
        """Spend one call if the budget allows; return (allowed, headers)."""
        lim = limit or self.limit
        win = self._current(key, now)
        allowed = win[1] < lim
        if allowed:
            win[1] += 1
        return allowed, self._headers(win, lim)

    def peek(self, key: tuple[str, str], now: float, limit: int | None = None, exhausted: bool = False) -> dict[str, str]:
        lim = limit or self.limit
        win = self._current(key, now)
        headers = self._headers(win, lim)
        if exhausted:
            headers["x-rate-limit-remaining"] = "0"
        return headers

    def _headers(self, win: list[float], lim: int) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(lim),
            "x-rate-limit-remaining": str(max(0, lim - int(win[1]))),
            "x-rate-limit-reset": str(int(win[0] + self.window)),
        }


# ── routing ─────────────────────────────────────────────────────────────────────────────────
@dataclass
class Route:
    name: str  # endpoint template, the rate-limit key
    args: dict[str, str]
    limit: int | None = None


def route(method: str, parts: list[str]) -> Route | None:
    """parts: path segments after /x."""
    if len(parts) < 2 or parts[0] != "2":
        return None
    p = parts[1:]
    if method == "GET":
        if p == ["dm_events"]:
            return Route("GET /2/dm_events", {})
        if len(p) == 2 and p[0] == "dm_events":
            return Route("GET /2/dm_events/:event_id", {"event_id": p[1]})
        if len(p) == 4 and p[:2] == ["dm_conversations", "with"] and p[3] == "dm_events":
            return Route("GET /2/dm_conversations/with/:participant_id/dm_events", {"participant_id": p[2]})
        if len(p) == 3 and p[0] == "dm_conversations" and p[2] == "dm_events":
            return Route("GET /2/dm_conversations/:dm_conversation_id/dm_events", {"dm_conversation_id": p[1]})
        if p == ["users", "me"]:
            return Route("GET /2/users/me", {}, limit=75)
    if method == "POST":
        if len(p) == 4 and p[:2] == ["dm_conversations", "with"] and p[3] == "messages":
            return Route("POST /2/dm_conversations/with/:participant_id/messages", {"participant_id": p[2]})
        if len(p) == 3 and p[0] == "dm_conversations" and p[2] == "messages":
            return Route("POST /2/dm_conversations/:dm_conversation_id/messages", {"dm_conversation_id": p[1]})
        if p == ["dm_conversations"]:
            return Route("POST /2/dm_conversations", {})
    return None


def authenticate(req: Request, bearer: str = X_TOKEN) -> bool:
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() == bearer
    if auth.startswith("OAuth "):
        params = dict(re.findall(r'(\w+)="([^"]*)"', auth))
        return unquote(params.get("oauth_consumer_key", "")) == X_CONSUMER_KEY and unquote(params.get("oauth_token", "")) == X_ACCESS_TOKEN
    return False


def handle(state: State, req: Request, parts: list[str], rates: RateLimits) -> Reply:
    """Answer one X request (the caller holds the state lock)."""
    acc = state.x["tokoshop-x"]
    r = route(req.method, parts)
    if r is None:
        return Reply(404, {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]})
    now = state.now()
    key = (acc.me.id, r.name)
    if not authenticate(req, state.tokens["x"]):
        reply = unauthorized()
        reply.headers.update(rates.peek(key, now, r.limit))
        return reply
    allowed, headers = rates.take(key, now, r.limit)
    if not allowed:
        reply = too_many()
    else:
        reply = _dispatch(state, acc, req, r)
    reply.headers.update(headers)
    return reply


def _dispatch(state: State, acc: XAccount, req: Request, r: Route) -> Reply:
    if r.name == "GET /2/users/me":
        return Reply(200, {"data": {"id": acc.me.id, "name": acc.me.name, "username": acc.me.username}})
    if r.name == "GET /2/dm_events":
        return lookup(state, acc, req, None)
    if r.name == "GET /2/dm_conversations/with/:participant_id/dm_events":
        pid = r.args["participant_id"]
        if not pid.isdigit():
            return invalid("participant_id", pid, f"The `participant_id` path parameter value [{pid}] is not valid")
        return lookup(state, acc, req, state.conv_id(pid, acc.me.id))
    if r.name == "GET /2/dm_conversations/:dm_conversation_id/dm_events":
        cid = r.args["dm_conversation_id"]
        if not CONV_RE.match(cid):
            return invalid("dm_conversation_id", cid, f"The `dm_conversation_id` path parameter value [{cid}] does not match ^([0-9]{{1,19}}-[0-9]{{1,19}}|[0-9]{{15,19}})$")
        return lookup(state, acc, req, cid)
    if r.name == "GET /2/dm_events/:event_id":
        return single(state, acc, req, r.args["event_id"])
    return send(state, acc, req, r)


# ── lookups ─────────────────────────────────────────────────────────────────────────────────
def _csv(req: Request, name: str, allowed: tuple[str, ...]) -> tuple[list[str], Reply | None]:
    raw = req.query.get(name)
    if raw is None:
        return [], None
    values = [v for v in raw.split(",") if v]
    for v in values:
        if v not in allowed:
            return [], invalid(name, v, f"The `{name}` query parameter value [{v}] is not one of [{','.join(allowed)}]")
    return values, None


def _options(req: Request, allowed_params: tuple[str, ...]) -> tuple[dict[str, list[str]], Reply | None]:
    for name in req.query:
        if name not in allowed_params:
            return {}, invalid(name, req.query[name], f"The query parameter [{name}] is not one of [{','.join(allowed_params)}]")
    opts: dict[str, list[str]] = {}
    for name, allowed in (("dm_event.fields", DM_EVENT_FIELDS), ("expansions", EXPANSIONS), ("event_types", EVENT_TYPES),
                          ("user.fields", USER_FIELDS), ("media.fields", MEDIA_FIELDS), ("tweet.fields", TWEET_FIELDS),
                          ("post.fields", TWEET_FIELDS)):
        values, err = _csv(req, name, allowed)
        if err:
            return {}, err
        opts[name] = values
    return opts, None


def lookup(state: State, acc: XAccount, req: Request, conv: str | None) -> Reply:
    opts, err = _options(req, LOOKUP_PARAMS)
    if err:
        return err
    raw_max = req.query.get("max_results", "100")
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= 100:
        return invalid("max_results", raw_max, f"The `max_results` query parameter value [{raw_max}] is not between 1 and 100")
    max_results = int(raw_max)
    nums = acc.order if conv is None else acc.by_conv.get(conv, [])
    lo = bisect_left(nums, (state.now_ms() - X_HORIZON_MS - TWEPOCH_MS) << 22)
    hi = len(nums)
    token = req.query.get("pagination_token")
    types = set(opts["event_types"] or EVENT_TYPES)
    picked: list[XEvent] = []
    more = False
    if token is not None:
        decoded = decode_token(token) if len(token) >= 16 else None
        if decoded is None:
            return invalid("pagination_token", token, f"The `pagination_token` query parameter value [{token}] is not valid")
        kind, num = decoded
        if kind == "p":  # previous_token: the page of newer events just above `num`
            start = bisect_right(nums, num)
            i = start
            while i < len(nums) and len(picked) < max_results:
                ev = acc.events[nums[i]]
                if ev.event_type in types:
                    picked.append(ev)
                i += 1
            picked.reverse()
            more = lo < start
            return _page(acc, picked, opts, more_older=more)
        hi = bisect_left(nums, num)
    i = hi - 1
    while i >= lo:
        ev = acc.events[nums[i]]
        if ev.event_type in types:
            if len(picked) == max_results:
                more = True
                break
            picked.append(ev)
        i -= 1
    return _page(acc, picked, opts, more_older=more)


def _page(acc: XAccount, events: list[XEvent], opts: dict[str, list[str]], *, more_older: bool) -> Reply:
    if not events:
        return Reply(200, {"meta": {"result_count": 0}})
    body: dict[str, Any] = {"data": [render_event(ev, opts["dm_event.fields"]) for ev in events]}
    includes = _includes(acc, events, opts)
    if includes:
        body["includes"] = includes
    meta: dict[str, Any] = {"result_count": len(events)}
    if more_older:
        meta["next_token"] = encode_token("n", events[-1].num)
    # X sends previous_token even on the first page (recorded); following it yields newer events, if any.
    meta["previous_token"] = encode_token("p", events[0].num)
    body["meta"] = meta
    return Reply(200, body)


def single(state: State, acc: XAccount, req: Request, event_id: str) -> Reply:
    opts, err = _options(req, ("dm_event.fields", "expansions", "media.fields", "tweet.fields", "user.fields", "post.fields"))
    if err:
        return err
    ev = acc.events.get(int(event_id)) if event_id.isdigit() else None
    if ev is None or ev.created_ms < state.now_ms() - X_HORIZON_MS:
        return problem(404, "Not Found Error", f"Could not find DM event with id: [{event_id}].", PROBLEMS + "resource-not-found",
                       resource_type="dm_event", resource_id=event_id, parameter="event_id", value=event_id)
    body: dict[str, Any] = {"data": render_event(ev, opts["dm_event.fields"])}
    includes = _includes(acc, [ev], opts)
    if includes:
        body["includes"] = includes
    return Reply(200, body)


def render_event(ev: XEvent, fields: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ev.id, "event_type": ev.event_type}
    if ev.event_type == "MessageCreate":
        out["text"] = ev.text or ""
    elif ev.participants:
        out["participant_ids"] = list(ev.participants)
    for name in fields:
        if name == "sender_id" and ev.event_type == "MessageCreate":
            out["sender_id"] = ev.sender
        elif name == "dm_conversation_id":
            out["dm_conversation_id"] = ev.conv
        elif name == "created_at":
            out["created_at"] = iso(ev.created_ms)
        elif name == "attachments" and ev.media:
            out["attachments"] = {"media_keys": [ev.media["media_key"]]}
        elif name == "referenced_tweets" and ev.text:
            refs = STATUS_URL.findall(ev.text)
            if refs:
                out["referenced_tweets"] = [{"id": r} for r in refs]
        elif name == "entities" and ev.text:
            ents = entities(ev.text)
            if ents:
                out["entities"] = ents
        elif name == "participant_ids" and ev.participants:
            out["participant_ids"] = list(ev.participants)
    return out


def entities(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    urls = [{"start": m.start(), "end": m.end(), "url": m.group(0), "expanded_url": m.group(0),
             "display_url": m.group(0).split("://", 1)[1][:26]} for m in URL_RE.finditer(text)]
    mentions = [{"start": m.start(), "end": m.end(), "username": m.group(1)} for m in MENTION_RE.finditer(text)]
    tags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in HASHTAG_RE.finditer(text)]
    if urls:
        out["urls"] = urls
    if mentions:
        out["mentions"] = mentions
    if tags:
        out["hashtags"] = tags
    return out


def _user(acc: XAccount, uid: str, fields: list[str]) -> dict[str, Any]:
    person = acc.users.get(uid) or Person(uid, f"user{uid[-4:]}", f"user{uid}")
    out: dict[str, Any] = {"id": uid, "name": person.name or person.username or uid, "username": person.username or f"user{uid}"}
    extra = {
        "protected": False,
        "verified": uid == acc.me.id,
        "profile_image_url": f"https://pbs.twimg.com/profile_images/{uid[-10:]}/avatar_normal.jpg",
        "description": "Official customer care of TokoShop Indonesia" if uid == acc.me.id else "",
    }
    for name in fields:
        if name in extra:
            out[name] = extra[name]
    return out


def _includes(acc: XAccount, events: list[XEvent], opts: dict[str, list[str]]) -> dict[str, Any]:
    exp = set(opts["expansions"])
    includes: dict[str, Any] = {}
    if "sender_id" in exp or "participant_ids" in exp:
        ids: list[str] = []
        for ev in events:
            if "sender_id" in exp and ev.event_type == "MessageCreate" and ev.sender not in ids:
                ids.append(ev.sender)
            if "participant_ids" in exp:
                for pid in ev.participants or ():
                    if pid not in ids:
                        ids.append(pid)
        if ids:
            includes["users"] = [_user(acc, uid, opts["user.fields"]) for uid in ids]
    if "attachments.media_keys" in exp:
        items = []
        for ev in events:
            if ev.media:
                m = {"media_key": ev.media["media_key"], "type": ev.media["type"]}
                for name in opts["media.fields"]:
                    if name in ev.media:
                        m[name] = ev.media[name]
                items.append(m)
        if items:
            includes["media"] = items
    if "referenced_tweets.id" in exp:
        tweets = []
        for ev in events:
            for tid in STATUS_URL.findall(ev.text or ""):
                tweets.append({"id": tid, "text": "Update: pengiriman ke wilayah Jabodetabek mengalami keterlambatan 1-2 hari karena banjir. Mohon maaf 🙏"})
        if tweets:
            includes["tweets"] = tweets
    return includes


# ── sends ───────────────────────────────────────────────────────────────────────────────────
def send(state: State, acc: XAccount, req: Request, r: Route) -> Reply:
    try:
        body = req.form()
    except ValueError:
        return problem(400, "Invalid Request", "The request body is not valid JSON.", PROBLEMS + "invalid-request")
    me = acc.me.id
    if r.name == "POST /2/dm_conversations":
        participants = [str(p) for p in body.get("participant_ids") or []]
        if body.get("conversation_type") != "Group" or not participants:
            return invalid("conversation_type", str(body.get("conversation_type")), "conversation_type must be Group with participant_ids")
        message = body.get("message") or {}
        conv = str(state.snowflake(state.now_ms()))
    else:
        message = body
        if r.name.startswith("POST /2/dm_conversations/with/"):
            pid = r.args["participant_id"]
            if not pid.isdigit() or pid == me:
                return invalid("participant_id", pid, f"The `participant_id` path parameter value [{pid}] is not valid")
            conv = state.conv_id(pid, me)
            acc.users.setdefault(pid, Person(pid, None, f"user{pid}"))
        else:
            conv = r.args["dm_conversation_id"]
            if not CONV_RE.match(conv):
                return invalid("dm_conversation_id", conv, f"The `dm_conversation_id` path parameter value [{conv}] is not valid")
            if conv not in acc.by_conv and (("-" not in conv) or me not in conv.split("-")):
                return problem(404, "Not Found Error", f"Could not find dm_conversation with id: [{conv}].",
                               PROBLEMS + "resource-not-found", resource_type="dm_conversation", resource_id=conv,
                               parameter="dm_conversation_id", value=conv)
    text = message.get("text") if isinstance(message, dict) else None
    attachments = message.get("attachments") if isinstance(message, dict) else None
    if not text and not attachments:
        return invalid("text", "", "One of `text` or `attachments` is required")
    if text is not None and not isinstance(text, str):
        return invalid("text", str(text), "`text` must be a string")
    if text and len(text) > TEXT_LIMIT:
        return invalid("text", text[:20] + "…", f"The `text` value is longer than {TEXT_LIMIT} characters")
    now_ms = state.now_ms()
    ev = state.add_event(acc, conv, me, now_ms, text or "")
    if attachments:
        ev.media = media.x_photo(state.rng, ev.id)
        first = attachments[0] if isinstance(attachments, list) and attachments else {}
        if isinstance(first, dict) and first.get("media_id"):
            ev.media["media_key"] = f"3_{first['media_id']}"
    others = [p for p in conv.split("-") if p != me] if "-" in conv else []
    acc.sent.append({"dm_event_id": ev.id, "dm_conversation_id": conv, "recipient_id": others[0] if others else None,
                     "text": text, "attachments": attachments, "at": now_ms / 1000})
    reply = Reply(201, {"data": {"dm_conversation_id": conv, "dm_event_id": ev.id}})
    reply.headers["location"] = f'{req.base_url}/x/2/dm_events/"{ev.id}"'
    return reply
