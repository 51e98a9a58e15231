"""Scheduled failures: the next `count` matching requests fail in a chosen way, and what that looks like."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox import graph, xapi
from sandbox.state import X_USER_ID
from sandbox.wire import JSON_GRAPH, JSON_X, Reply, Request

if TYPE_CHECKING:
    from sandbox.state import MetaAccount

KINDS = ("429", "500", "503", "timeout", "drop", "expired_token", "malformed", "truncated", "cut", "bad_item")
ERROR_KINDS = ("429", "500", "503", "expired_token")


@dataclass
class Fault:
    kind: str
    path: str | None  # substring of the request path
    account: str | None  # account name the request concerns
    count: int
    after_effect: bool  # a send is carried out before the failure (the client cannot know it went through)
    method: str | None = None
    skip: int = 0  # matching requests let through before the fault applies


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, *, path: str | None = None, account: str | None = None, count: int = 1,
            after_effect: bool | None = None, method: str | None = None, skip: int = 0) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if count < 1:
            raise ValueError("count must be at least 1")
        # A timeout still carries the request out (a send is recorded; the client never hears back).
        effect = (kind == "timeout") if after_effect is None else bool(after_effect)
        if skip < 0:
            raise ValueError("skip must not be negative")
        fault = Fault(kind, path, account, count, effect, method.upper() if method else None, skip)
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
                if fault.path is not None and fault.path not in path:
                    continue
                if fault.account is not None and fault.account != account:
                    continue
                if fault.method is not None and fault.method != method:
                    continue
                if fault.skip > 0:  # this request is not this fault's; it waits for a later one
                    fault.skip -= 1
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return Fault(fault.kind, fault.path, fault.account, 1, fault.after_effect, fault.method)
        return None


def error_reply(kind: str, api: str, req: Request, acc: MetaAccount | None, now: float,
                usage: graph.Usage, rates: xapi.RateLimits) -> Reply:
    """The answer for an error-kind fault, with the headers the platform would send along."""
    if api == "x":
        route = xapi.route(req.method, [p for p in req.path.split("/") if p][1:])
        key = (X_USER_ID, route.name if route else req.path)
        reply = {"429": xapi.too_many, "expired_token": xapi.unauthorized}.get(kind, lambda: xapi.server_error(int(kind)))()
        reply.headers.update(rates.peek(key, now, exhausted=kind == "429"))
        reply.headers["content-type"] = JSON_X
        return reply
    obj, bucket = graph.business_object(acc)
    if kind == "429":
        err = graph.rate_error(acc.platform if acc else None)
    elif kind == "expired_token":
        err = graph.expired_token_error(now)
    else:
        err = graph.server_error(int(kind))
    reply = graph.error_reply(err)
    reply.headers["X-Business-Use-Case-Usage"] = usage.header(obj, bucket, now, throttled=kind == "429")
    reply.headers["content-type"] = JSON_GRAPH
    return reply


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
