"""Graph JSON as the platform renders it: people, messages, threads, fields, cursors and paging links."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import urlencode

from sandbox.fields import FieldSpec, parse_fields
from sandbox.state import MetaAccount, Msg, Person, State, Thread, b64
from sandbox.graph_errors import GraphError
from sandbox.graph_request import Ctx


DAY_MS = 86400 * 1000


CONVERSATION_FIELDS = {
    "id", "updated_time", "participants", "senders", "message_count", "unread_count", "snippet", "can_reply",
    "link", "name", "subject", "former_participants", "is_subscribed", "scoped_thread_key", "wallpaper", "messages",
}
MESSAGE_FIELDS = {
    "id", "created_time", "from", "to", "message", "attachments", "shares", "story", "reactions", "sticker",
    "tags", "is_unsupported", "reply_to",
}


DEFAULT_MESSAGE_FIELDS = "id,created_time"


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ms // 1000))


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


def page_limit(value: str | None, default: int, cap: int = 100) -> int:
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
                  after: str | None, before: str | None, fields_text: str, cap: int | None = None) -> dict[str, Any]:
    """A page of a thread's readable messages (the 20 newest), newest first. `cap`: serve fewer than
    `limit` (a page cut short); its `next` link still asks for `limit`."""
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
    page = readable[start : start + (limit if cap is None else max(0, min(limit, cap)))]
    data = [render_message(acc, m, fields) for m in page]
    out: dict[str, Any] = {"data": data}
    if page:
        first, last = page[0], page[-1]
        paging: dict[str, Any] = {"cursors": {"before": cursor(first.created_ms, first.id), "after": cursor(last.created_ms, last.id)}}
        params = {"fields": fields_text or DEFAULT_MESSAGE_FIELDS, "limit": str(limit)}
        if start > 0:
            paging["previous"] = next_url(ctx, f"{th.id}/messages", {**params, "before": paging["cursors"]["before"]})
        if start + len(page) < len(readable):
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
    return f"{ctx.link_root}/{path}?{urlencode(query)}"


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
            limit = page_limit(spec.mods.get("limit"), 25)
            sub_text = unparse_fields(spec.sub) if spec.sub else DEFAULT_MESSAGE_FIELDS
            out["messages"] = messages_edge(ctx, acc, th, spec.sub, limit, None, None, sub_text, cap=state.nested_cap)
        # subject, wallpaper: not set on these threads, so omitted as Graph does
    if "id" not in out:
        out["id"] = th.id
    return out
