"""HTTP control endpoints under /_sandbox/ for tests that drive a sandbox in another process."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.core import Sandbox


def handle_control(sb: Sandbox, method: str, name: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
    try:
        data: dict[str, Any] = json.loads(body) if body else {}
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return _route(sb, method, name, query, data)
    except (KeyError, ValueError, TypeError) as exc:
        return 400, {"error": f"{exc.__class__.__name__}: {exc}"}


def _route(sb: Sandbox, method: str, name: str, query: dict[str, str], data: dict[str, Any]) -> tuple[int, Any]:
    if method == "POST" and name == "inject":
        mid = sb.inject(data["account"], text=data.get("text"), thread=data.get("thread"), customer=data.get("customer"),
                        attachments=data.get("attachments"), at=data.get("at"))
        return 200, {"id": mid}
    if method == "POST" and name == "burst":
        return 200, {"ids": sb.burst(data["account"], data["thread"], int(data.get("n", 25)))}
    if method == "POST" and name == "fault":
        sb.fault(data["kind"], path=data.get("path"), account=data.get("account"), count=int(data.get("count", 1)),
                 after_effect=data.get("after_effect"), method=data.get("method"), skip=int(data.get("skip", 0)))
        return 200, {"ok": True}
    if method == "POST" and name == "clear_faults":
        sb.clear_faults()
        return 200, {"ok": True}
    if method == "GET" and name == "calls":
        return 200, [asdict(c) for c in sb.calls]
    if method == "POST" and name == "clear_calls":
        sb.clear_calls()
        return 200, {"ok": True}
    if method == "GET" and name == "sent":
        return 200, sb.sent(query["account"])
    if method == "POST" and name == "advance":
        return 200, {"now": sb.advance(float(data.get("seconds", 0)))}
    if method == "GET" and name == "threads":
        return 200, sb.threads(query["account"])
    if method == "GET" and name == "thread":
        return 200, sb.thread_messages(query["account"], query["thread"])
    if method == "GET" and name == "accounts":
        return 200, {k: {**asdict(v), "token": None} for k, v in sb.accounts.items()}
    if method == "GET" and name == "config":
        return 200, sb.config_toml(database=query.get("database", "sqlite:///inbox.db"),
                                   include_ig_login=query.get("include_ig_login") in ("1", "true"))
    return 404, {"error": f"unknown control endpoint {method} /_sandbox/{name}"}
