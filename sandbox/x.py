"""X API v2 Direct Message endpoints: lookups, sends, `x-rate-limit-*` budgets, RFC 7807 problems.

Served under `/x`. Lookups are newest first, limited to the last 30 days, with `pagination_token` /
`meta.next_token`; fields that were not asked for are left out; an empty page is exactly
`{"meta":{"result_count":0}}`. Auth: an OAuth 2.0 user token as `Bearer`, or an OAuth 1.0a header whose
consumer key and token match (the signature is not checked).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sandbox import media
from sandbox.state import TWEPOCH_MS, X_ACCESS_TOKEN, X_CONSUMER_KEY, X_HORIZON_MS, X_TOKEN, Person, State, XAccount, XEvent
from sandbox.wire import Reply, Request
from sandbox.x_rates import RateLimits
from sandbox.x_render import PROBLEMS, decode_token, encode_token, invalid, problem, render_event, render_includes, too_many, unauthorized


TEXT_LIMIT = 10_000


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


CONV_RE = re.compile(r"^([0-9]{1,19}-[0-9]{1,19}|[0-9]{15,19})$")


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
        if r.name.endswith("dm_events") and reply.status == 200 and isinstance(reply.payload, dict):
            data = reply.payload.get("data")
            rates.reads.add(acc.me.id, [str(ev.get("id")) for ev in data] if isinstance(data, list) else [], now)
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
    includes = render_includes(acc, events, opts)
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
    includes = render_includes(acc, [ev], opts)
    if includes:
        body["includes"] = includes
    return Reply(200, body)


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
