"""Scheduled failures: the next `count` matching requests fail in a chosen way, and what that looks like.

Two kinds stay until `clear_faults()` instead of being used up, because a hostile value stays on the
platform and comes back on every read: `poison` (one field of one item gets a hostile JSON value) and
`header` (a response header gets a hostile value).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
import zlib
from urllib.parse import urlencode
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox import x as x_api
from sandbox.graph_errors import error_reply as graph_error_reply, expired_token_error, rate_error, server_error
from sandbox.graph_request import business_object
from sandbox.graph_usage import Usage
from sandbox.x_rates import RateLimits
from sandbox.x_render import server_error as x_server_error, too_many, unauthorized
from sandbox.state import X_USER_ID
from sandbox.wire import JSON_GRAPH, JSON_X, Reply, Request

if TYPE_CHECKING:
    from sandbox.state import MetaAccount

KINDS = ("429", "500", "503", "timeout", "late", "drop", "expired_token", "malformed", "truncated", "cut", "bad_item",
         "oversize", "gzip_bomb", "poison", "header", "loop", "empty_tail", "duplicate", "answer", "encoded", "slow")
ERROR_KINDS = ("429", "500", "503", "expired_token")
STANDING_KINDS = ("poison", "header")  # applied to every matching answer until cleared
_OPTIONS = {"encoded": ("encoding",), "answer": ("status", "body", "content_type"), "late": ("delay",), "slow": ("interval", "step"), "oversize": ("size",), "gzip_bomb": ("size",), "poison": ("target", "field", "value"), "header": ("name", "value")}


@dataclass
class Fault:
    kind: str
    path: str | None  # substring of the request path
    account: str | None  # account name the request concerns
    count: int
    after_effect: bool  # a send is carried out before the failure (the client cannot know it went through)
    method: str | None = None
    skip: int = 0  # matching requests let through before the fault applies
    options: dict[str, Any] = field(default_factory=dict)  # per kind: see _OPTIONS


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, *, path: str | None = None, account: str | None = None, count: int = 1,
            after_effect: bool | None = None, method: str | None = None, skip: int = 0, **options: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if count < 1:
            raise ValueError("count must be at least 1")
        unknown = sorted(set(options) - set(_OPTIONS.get(kind, ())))
        if unknown:
            raise ValueError(f"fault {kind!r} takes no option {', '.join(unknown)}")
        if kind == "header" and not options.get("name"):
            raise ValueError("a header fault needs name=")
        # A timeout still carries the request out (a send is recorded; the client never hears back);
        # a late one carries it out only after its delay.
        effect = (kind in ("timeout", "late")) if after_effect is None else bool(after_effect)
        if skip < 0:
            raise ValueError("skip must not be negative")
        fault = Fault(kind, path, account, count, effect, method.upper() if method else None, skip, dict(options))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, account: str | None) -> Fault | None:
        """The first fault matching this request, with one use spent; None if nothing matches."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in STANDING_KINDS or not _matches(fault, method, path, account):
                    continue
                if fault.skip > 0:  # this request is not this fault's; it waits for a later one
                    fault.skip -= 1
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return Fault(fault.kind, fault.path, fault.account, 1, fault.after_effect, fault.method, 0, dict(fault.options))
        return None

    def standing(self, method: str, path: str, account: str | None) -> list[Fault]:
        """The poison and header faults that apply to this request (never used up)."""
        with self._lock:
            return [f for f in self._faults if f.kind in STANDING_KINDS and _matches(f, method, path, account)]


def _matches(fault: Fault, method: str, path: str, account: str | None) -> bool:
    return (
        (fault.path is None or fault.path in path)
        and (fault.account is None or fault.account == account)
        and (fault.method is None or fault.method == method)
    )


def error_reply(kind: str, api: str, req: Request, acc: MetaAccount | None, now: float,
                usage: Usage, rates: RateLimits) -> Reply:
    """The answer for an error-kind fault, with the headers the platform would send along."""
    if api == "x":
        route = x_api.route(req.method, [p for p in req.path.split("/") if p][1:])
        key = (X_USER_ID, route.name if route else req.path)
        reply = {"429": too_many, "expired_token": unauthorized}.get(kind, lambda: x_server_error(int(kind)))()
        reply.headers.update(rates.peek(key, now, exhausted=kind == "429"))
        reply.headers["content-type"] = JSON_X
        return reply
    obj, bucket = business_object(acc)
    if kind == "429":
        err = rate_error(acc.platform if acc else None)
    elif kind == "expired_token":
        err = expired_token_error(now)
    else:
        err = server_error(int(kind))
    reply = graph_error_reply(err)
    reply.headers["X-Business-Use-Case-Usage"] = usage.header(obj, bucket, now, throttled=kind == "429")
    reply.headers["content-type"] = JSON_GRAPH
    return reply


def loop_back(api: str, req: Request, payload: Any) -> None:
    """Point the answer's paging link back at the page just asked for (a cursor that repeats): Graph's
    `paging.next` becomes the request's own URL, X's `meta.next_token` the request's own token. A first
    page (no `after`, no `pagination_token`) keeps its link, so the loop starts on the page after it."""
    if not isinstance(payload, dict):
        return
    if api == "x":
        token = req.query.get("pagination_token")
        if token and isinstance(payload.get("meta"), dict):
            payload["meta"]["next_token"] = token
        return
    if req.query.get("after") and isinstance(payload.get("paging"), dict):
        payload["paging"]["next"] = f"{req.base_url}{req.path}?{urlencode(req.query)}"


def empty_tail(api: str, req: Request, payload: Any) -> Any:
    """An empty page whose paging link leads to yet another empty page, never the same twice (Graph
    documents that `next` may appear on an empty page); a first page is answered as it is."""
    token = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    if api == "x":
        return {"meta": {"result_count": 0, "next_token": token}} if req.query.get("pagination_token") else payload
    if not req.query.get("after"):
        return payload
    query = {**req.query, "after": token}
    return {"data": [], "paging": {"cursors": {"before": token, "after": token}, "next": f"{req.base_url}{req.path}?{urlencode(query)}"}}


def duplicate_item(payload: Any) -> None:
    """The page's first item once more at its end (a listing that shifted while it was read)."""
    found = _default_item(payload)
    if found is not None:
        items, _ = found
        items.append(copy.deepcopy(items[0]))


def break_one_item(api: str, payload: Any) -> None:
    """Give one item of the page a broken shape (timestamp gone, author unusable), keeping its id."""
    if not isinstance(payload, dict):
        return
    items = payload.get("data")
    if isinstance(payload.get("messages"), dict):
        items = payload["messages"].get("data")
    if isinstance(items, dict):  # X single-event lookup
        items = [items]
    if items is None and "id" in payload:
        items = [payload]  # a single Graph node
    if not items:
        return
    item = items[len(items) // 2]
    if api == "x":
        broke = item.pop("created_at", None) is not None
        if "sender_id" in item:
            item["sender_id"] = None
            broke = True
        if not broke:
            item["event_type"] = None
        return
    broke = item.pop("created_time", None) is not None or item.pop("updated_time", None) is not None
    if "from" in item:
        item["from"] = None
        broke = True
    if not broke:
        item["id"] = None


# ── hostile values ──────────────────────────────────────────────────────────────────────────────

_TOKEN = "\u0001sandbox-poison-{}\u0001"


def _find(obj: Any, target: str) -> tuple[Any, Any] | None:
    """(container, key) of the first object whose `id` is `target`, depth first in document order."""
    stack: list[tuple[Any, Any, Any]] = [(None, None, obj)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("id")) == target and parent is not None:
                return parent, key
            stack.extend((node, k, v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((node, i, v) for i, v in reversed(list(enumerate(node))))
    return None


def _default_item(payload: Any) -> tuple[Any, Any] | None:
    items = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and isinstance(payload.get("messages"), dict):
        items = payload["messages"].get("data")
    if isinstance(items, list) and items:
        return items, len(items) // 2
    return None


def poisoned_body(payload: Any, faults: list[Fault]) -> bytes | None:
    """The answer's JSON with each poison fault's field set to its raw JSON text (or removed when the
    value is None); None when no fault found its target in this answer."""
    values: list[str] = []
    for fault in faults:
        target = fault.options.get("target")
        if target == "":  # the answer itself
            where: tuple[Any, Any] | None = ([payload], 0)
        else:
            where = _default_item(payload) if target is None else _find(payload, str(target))
        if where is None:
            continue
        container, key = where
        path = [p for p in str(fault.options.get("field") or "").split(".") if p]
        raw = fault.options.get("value")
        if not path:  # the item itself
            if raw is None:
                continue
            container[key] = _TOKEN.format(len(values))
            values.append(raw)
            continue
        node = container[key]
        for part in path[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                node = None
                break
        last: Any = path[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            last = int(last)
        elif not isinstance(node, dict):
            continue  # the path runs through a value that has no fields
        if raw is None:
            if isinstance(node, dict):
                node.pop(last, None)
            continue
        node[last] = _TOKEN.format(len(values))
        values.append(raw)
    if not values and not any(f.options.get("value") is None for f in faults):
        return None
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for i, raw in enumerate(values):
        text = text.replace(json.dumps(_TOKEN.format(i), ensure_ascii=False), raw)
    # Hostile text (lone surrogates) leaves as the bytes it would arrive as: surrogatepass, then the
    # client sees invalid UTF-8; an escape (\\ud800) in `value` arrives as the escape.
    return text.encode("utf-8", errors="surrogatepass")


def encoded(body: bytes, encoding: str) -> tuple[bytes, str]:
    """The body compressed as `encoding` and the Content-Encoding header to send: "gzip", "deflate"
    (zlib-wrapped, as the RFC says), "raw-deflate" (sent as "deflate", as some servers do), or a list
    applied in order ("deflate, gzip"); any other name is sent as it is over the plain body."""
    names = [e.strip() for e in encoding.split(",") if e.strip()]
    sent: list[str] = []
    for name in names:  # content codings are case-insensitive: "GZIP" is gzip, sent as written
        if name.lower() == "gzip":
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif name.lower() == "deflate":
            packer = zlib.compressobj(6, zlib.DEFLATED, 15)
        elif name.lower() == "raw-deflate":
            packer, name = zlib.compressobj(6, zlib.DEFLATED, -15), "deflate"
        else:
            sent.append(name)
            continue
        body = packer.compress(body) + packer.flush()
        sent.append(name)
    return body, ", ".join(sent)


def padded(payload: Any, size: int) -> tuple[bytes, bytes, bytes]:
    """(head, filler byte, tail): the answer as JSON with a `padding` string making it `size` bytes."""
    base = dict(payload) if isinstance(payload, dict) else {"data": payload}
    base["padding"] = ""
    text = json.dumps(base, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    cut = text.rindex(b'"padding":""') + len(b'"padding":"')
    return text[:cut], b"0", text[cut:]


def oversize_body(payload: Any, size: int) -> bytes:
    head, fill, tail = padded(payload, size)
    return head + fill * max(0, size - len(head) - len(tail)) + tail


def gzip_bomb(payload: Any, size: int) -> bytes:
    """The padded answer gzip-compressed, built chunk by chunk (about 1 KB per MB it expands to)."""
    head, fill, tail = padded(payload, size)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(head)]
    left = max(0, size - len(head) - len(tail))
    block = fill * (1 << 20)
    while left > 0:
        step = min(left, len(block))
        parts.append(packer.compress(block[:step]))
        left -= step
    parts.append(packer.compress(tail))
    parts.append(packer.flush())
    return b"".join(parts)
