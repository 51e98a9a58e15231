"""Graph API endpoints: Page and Instagram conversations, messages, message nodes and the Send API.

Served under `/facebook/vNN.0` (graph.facebook.com: Messenger and Instagram through the Page) and
`/instagram/vNN.0` (graph.instagram.com: Instagram Login). Shapes follow the reference payloads:
newest first, cursor paging whose `next` is an absolute URL carrying the access token, only the 20 newest
messages of a thread readable, Graph error bodies, `X-Business-Use-Case-Usage` on every answer.

This module routes the requests and answers the reads; the request context is in `graph_request`,
the JSON rendering in `graph_render`, the Send API in `graph_send`, errors in `graph_errors` and the
usage headers in `graph_usage`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import replace
from typing import Any

from sandbox.fields import FieldSyntaxError, parse_fields
from sandbox.state import IG_DIRECT_ID, IG_FB_ID, PAGE_ID, MetaAccount, State, Thread
from sandbox.wire import Reply
from sandbox.graph_errors import GraphError, error_reply, not_found, rate_error
from sandbox.graph_render import DEFAULT_MESSAGE_FIELDS, page_limit, cursor, messages_edge, next_url, render_message, render_thread, uncursor
from sandbox.graph_request import PUBLIC_ORIGINS, Ctx, attribute, business_object
from sandbox.graph_send import send
from sandbox.graph_usage import Usage


DEFAULT_CONVERSATION_FIELDS = "id,updated_time"


# ── endpoints ───────────────────────────────────────────────────────────────────────────────
def handle(state: State, ctx: Ctx, usage: Usage) -> Reply:
    """Answer one Graph request (the caller holds the state lock)."""
    if state.public_links:
        ctx = replace(ctx, link_origin=PUBLIC_ORIGINS[ctx.host])
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
        limit = page_limit(q.get("limit"), 25)
        return Reply(200, messages_edge(ctx, acc, th, fields, limit, q.get("after"), q.get("before"), q.get("fields") or "",
                                        cap=state.page_cap))
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
    limit = page_limit(q.get("limit"), 25)
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
